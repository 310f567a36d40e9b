//! The loop's side of expiry warnings: one sweep over the index (at start, after a reload,
//! then every [`SWEEP_EVERY`]) and a look at a certificate whenever its step finishes, with the
//! rule in `lifecycle::expiry`. No timer per certificate: a sweep reads only the in-memory
//! index, so 10 000 certificates cost one pass over a map.
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{error, warn};

use super::State;
use crate::lifecycle::expiry::{self, Facts, Level};

/// How often every certificate is looked at.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(3600);

impl State {
    /// Every configured certificate (start, reload, hourly); forgets removed ones.
    pub(super) fn expiry_sweep(&mut self) {
        let now = Utc::now();
        let names: Vec<String> = self
            .config
            .certificates
            .iter()
            .map(|c| c.name.clone())
            .collect();
        self.warned.retain(|n, _| self.cert_pos.contains_key(n));
        for n in &names {
            self.expiry_check(n, now);
        }
    }

    /// Logs `cert.expiring` for `name` when [`expiry::due`] says so.
    pub(super) fn expiry_check(&mut self, name: &str, now: DateTime<Utc>) {
        let (Some(cert), Some(e)) = (self.cert(name), self.index.get(name)) else {
            return;
        };
        let row = &e.row;
        let facts = Facts {
            not_after: row.not_after,
            waiting_for_renewal_time: matches!(row.state.as_str(), "deployed" | "idle")
                && row.last_error.is_none()
                && !e.force_renew
                && e.next_due > now,
        };
        let Some(w) = expiry::due(now, facts, cert.expiry_warn, self.warned.get(name).copied())
        else {
            return;
        };
        let (domains, last_error, next_attempt) = (&row.domains, &row.last_error, e.next_due);
        let last_error = last_error.as_deref().unwrap_or("-");
        let not_after = w.not_after;
        let days_left = w.days_left;
        match w.level {
            Level::Error => error!(event = "cert.expiring", cert = %name, domains = ?domains,
                not_after = %not_after, days_left, last_error, next_attempt = %next_attempt,
                "the certificate expires soon and its renewal has not succeeded"),
            Level::Warn => warn!(event = "cert.expiring", cert = %name, domains = ?domains,
                not_after = %not_after, days_left, last_error, next_attempt = %next_attempt,
                "the certificate expires soon and its renewal has not succeeded"),
        }
        self.warned.insert(name.to_string(), w.warned(now));
    }
}
