//! Operator-requested renewals (`cas-certd renew NAME`): whether one is due, and what an early
//! one costs. Shared by the daemon (answering its control socket) and the command (marking the
//! store when no daemon runs), so both decide and word it the same way.
//!
//! Every renewal spends one unit of the certificate's product. A due certificate — never
//! issued, inside its renewal window, or one the daemon already wants to renew (domains
//! changed, a failed attempt to retry) — was going to spend it anyway, so it renews at once. One that is not due spends a unit early and needs an
//! explicit confirmation (`--yes`).
use chrono::{DateTime, Utc};

use super::schedule::renew_at;
use crate::config::RenewBefore;
use crate::store::{CertRecord, Phase};

/// What a `renew` of one certificate would do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Something is already under way (a key made, an order created or polled): its
    /// certificate is on the way, nothing more is ordered. Holds the phase's name.
    InFlight(&'static str),
    /// Due: renewing now spends nothing that would not be spent anyway.
    Due(DueBecause),
    /// Not due until `due_at`: renewing now spends a unit early.
    NotDue { due_at: DateTime<Utc> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueBecause {
    NeverIssued,
    /// Inside the renewal window (or past the daemon's jittered renewal time).
    InWindow,
    /// The daemon already decided to order anew (the domains changed).
    Reordering,
    /// An attempt failed or was abandoned; the daemon retries it by itself.
    Retrying,
}

impl std::fmt::Display for DueBecause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DueBecause::NeverIssued => "never issued",
            DueBecause::InWindow => "inside its renewal window",
            DueBecause::Reordering => "its domains changed",
            DueBecause::Retrying => "a failed renewal is being retried",
        })
    }
}

/// Whether renewing `rec` now is due. Only a deployed certificate at rest can be not due:
/// after a failed or abandoned attempt (`Failed`, `Idle`) the daemon retries the renewal by
/// itself at `next_due`, so renewing now only moves that retry earlier. The window is the
/// configured `renew_before` without the daemon's jitter (the latest renewal time); the
/// jittered time the daemon stored counts too once it has passed.
pub fn decide(rec: &CertRecord, renew_before: RenewBefore, now: DateTime<Utc>) -> Decision {
    if !rec.phase.is_resting() {
        return Decision::InFlight(rec.phase.name());
    }
    let Some(d) = &rec.deployed else {
        return Decision::Due(DueBecause::NeverIssued);
    };
    if rec.force_renew {
        return Decision::Due(DueBecause::Reordering);
    }
    if !matches!(rec.phase, Phase::Deployed { .. }) {
        return Decision::Due(DueBecause::Retrying);
    }
    let window = renew_at(d.info.not_before, d.info.not_after, renew_before, 0.0).at;
    let due_at = window.min(rec.next_due);
    if now >= due_at {
        Decision::Due(DueBecause::InWindow)
    } else {
        Decision::NotDue { due_at }
    }
}

/// What renewing a certificate that is not due costs, and how to confirm. `left` is the
/// product's remaining count (DescribePackageState), or why it is unknown.
pub fn cost_message(
    name: &str,
    product: &str,
    due_at: DateTime<Utc>,
    left: Result<i64, String>,
) -> String {
    let left = match left {
        Ok(n) => format!("{n} left"),
        Err(why) => format!("remaining count unknown: {why}"),
    };
    format!(
        "{name} is not due for renewal until {}: renewing it now orders a new certificate, \
         this will use one unit of {product} ({left}); add --yes to confirm",
        due_at.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::deploy::CertInfo;
    use crate::store::DeployedCert;
    use cas_api::model::OrderId;
    use cas_api::secret::Secret;
    use chrono::TimeZone;

    fn deployed(nb: DateTime<Utc>, na: DateTime<Utc>) -> CertRecord {
        let mut r = CertRecord::new("www", vec!["a.test".into()]);
        r.deployed = Some(DeployedCert {
            order_id: OrderId(1),
            info: CertInfo {
                not_before: nb,
                not_after: na,
                serial_hex: "01".into(),
                names: vec!["a.test".into()],
                fingerprint_sha256: String::new(),
            },
            cert_pem: String::new(),
            chain_pem: String::new(),
            key_pem: Secret::new("k"),
        });
        r
    }

    #[test]
    fn due_when_never_issued_in_window_past_the_stored_time_or_retrying() {
        let t = |d: u32| Utc.with_ymd_and_hms(2026, 1, d, 0, 0, 0).unwrap();
        let third = RenewBefore::Fraction(1.0 / 3.0);
        assert_eq!(
            decide(&CertRecord::new("n", vec![]), third, t(2)),
            Decision::Due(DueBecause::NeverIssued)
        );
        // 30 days, renew in the last 10: the window opens on day 21.
        let mut r = deployed(t(1), t(31));
        r.phase = Phase::Deployed {
            order_id: OrderId(1),
            at: t(1),
        };
        r.next_due = t(25);
        assert_eq!(decide(&r, third, t(5)), Decision::NotDue { due_at: t(21) });
        assert_eq!(
            decide(&r, third, t(22)),
            Decision::Due(DueBecause::InWindow)
        );
        // The daemon's jittered time (day 20) counts once passed.
        r.next_due = t(20);
        assert_eq!(decide(&r, third, t(5)), Decision::NotDue { due_at: t(20) });
        assert_eq!(
            decide(&r, third, t(20)),
            Decision::Due(DueBecause::InWindow)
        );
        r.force_renew = true;
        assert_eq!(
            decide(&r, third, t(5)),
            Decision::Due(DueBecause::Reordering)
        );
        r.force_renew = false;
        // A failed attempt is retried by the daemon anyway, backoff or not.
        r.phase = Phase::Failed {
            reason: "refused".into(),
            at: t(4),
            attempt: 1,
        };
        r.next_due = t(6);
        assert_eq!(decide(&r, third, t(5)), Decision::Due(DueBecause::Retrying));
        r.phase = Phase::KeyReady {
            pending: Default::default(),
        };
        assert_eq!(decide(&r, third, t(5)), Decision::InFlight("key_ready"));
    }

    #[test]
    fn the_cost_names_the_product_and_what_is_left() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let m = cost_message("www", "p-free", at, Ok(19));
        assert!(
            m.contains("this will use one unit of p-free (19 left)"),
            "{m}"
        );
        assert!(m.contains("--yes") && m.contains("2026-03-01"), "{m}");
        let m = cost_message("www", "p", at, Err("no credentials".into()));
        assert!(
            m.contains("(remaining count unknown: no credentials)"),
            "{m}"
        );
    }
}
