//! The catalogue of log events (the `event` field), and the ones sent by default.

/// Every event the daemon logs (docs/monitoring.md describes each), and those it is about to
/// (a name in `[notify] events` must be one of these, so a typo is an error, not silence).
pub const ALL_EVENTS: &[&str] = &[
    "api.clock_skew",
    "cert.adopted",
    "cert.challenge_presented",
    "cert.deploy_failed",
    "cert.deployed",
    "cert.expiring",
    "cert.issued",
    "cert.not_adopted",
    "cert.order_adopted",
    "cert.ordered",
    "cert.proof_reachable",
    "cert.proof_unreachable",
    "cert.removed",
    "cert.renew_due",
    "cert.renew_failed",
    "cert.renew_requested",
    "cert.validation_timeout",
    "cert.verify_failed",
    "config.reload_failed",
    "config.reloaded",
    "control.dropped",
    "control.refused",
    "fd.limit",
    "fd.limit_low",
    "fd.limit_unchanged",
    "fleet.available",
    "fleet.carried_over",
    "fleet.claimed",
    "fleet.config_mismatch",
    "fleet.fenced",
    "fleet.lease_lost",
    "fleet.proof_refused",
    "fleet.proof_removed",
    "fleet.proof_written",
    "fleet.set_deployed",
    "fleet.set_failed",
    "fleet.set_published",
    "fleet.set_refused",
    "fleet.unavailable",
    "fleet.watch_failed",
    "hook.failed",
    "hook.ok",
    "listener.accept_failed",
    "listener.accept_recovered",
    "metrics.bad_request",
    "metrics.header_timeout",
    "metrics.write_timeout",
    "notify.failed",
    "quota.low",
    "store.cas_pass",
    "store.cas_pass_failed",
    "store.recovered",
];

/// Sent when `[notify] events` is not given: failures and warnings that need a person
/// (`cert.expiring` among them: issue 14's "failures and expiry warnings").
pub const DEFAULT_EVENTS: &[&str] = &[
    "api.clock_skew",
    "cert.deploy_failed",
    "cert.expiring",
    "cert.not_adopted",
    "cert.proof_unreachable",
    "cert.renew_failed",
    "cert.validation_timeout",
    "cert.verify_failed",
    "config.reload_failed",
    "control.refused",
    "hook.failed",
    "quota.low",
    "store.cas_pass_failed",
    "store.recovered",
];

/// The notifier's own events (`notification.failed`, `notification.dropped`): never sent, or a
/// failing webhook would feed itself.
pub const OWN_PREFIX: &str = "notification.";

/// Whether `name` may be given in `[notify] events`; the error says why not.
pub fn check_event_name(name: &str) -> Result<(), String> {
    if ALL_EVENTS.contains(&name) {
        return Ok(());
    }
    if name.starts_with(OWN_PREFIX) {
        return Err(format!(
            "{name:?} is the notifier's own event and is only logged"
        ));
    }
    Err(format!(
        "unknown event {name:?} (see the events table in docs/monitoring.md, or \"*\" for all)"
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every `event = "…"` in the daemon's and the API client's sources is in the catalogue, so
    /// a new event can be subscribed to (and a typo cannot).
    #[test]
    fn the_catalogue_holds_every_event_the_sources_log() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut missing = Vec::new();
        let mut stack = vec![root.join("src"), root.join("crates/cas-api/src")];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                if p.extension().is_none_or(|x| x != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                for part in text.split("event = \"").skip(1) {
                    let name = part.split('"').next().unwrap_or("");
                    let real = name.contains('.')
                        && name
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_');
                    if real && !name.starts_with(OWN_PREFIX) && !ALL_EVENTS.contains(&name) {
                        missing.push(format!("{}: {name}", p.display()));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "not in ALL_EVENTS: {missing:?}");
        for d in DEFAULT_EVENTS {
            assert!(ALL_EVENTS.contains(d), "{d}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_event_name("hook.failed").is_ok());
        assert!(check_event_name("hook.faild")
            .unwrap_err()
            .contains("unknown"));
        assert!(check_event_name("notification.failed")
            .unwrap_err()
            .contains("own event"));
    }
}
