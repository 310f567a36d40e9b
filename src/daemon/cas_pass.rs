//! The rebuild's CAS pass ([`crate::rebuild::cas`]): the certificates that had no usable
//! record at start, or were added by a reload without one, wait (no step runs for them) until
//! the account's orders were listed once and matched; the records it makes (an adopted order,
//! orders to clean) feed the usual lifecycle. When CAS cannot be asked, they keep waiting and
//! the pass is retried with backoff. A certificate that joins while a pass runs waits for the
//! next one.
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::lifecycle;
use crate::lifecycle::ports::Records;
use crate::rebuild::cas;
use crate::store::{CertRecord, StatusRow, StoreError};
use cas_api::Client;

/// The pass's state in the loop.
#[derive(Debug, Default)]
pub(super) struct Pass {
    /// Certificates waiting for it.
    pub(super) waiting: HashSet<String>,
    pub(super) running: bool,
    pub(super) attempt: u32,
    /// When a failed pass is tried again.
    pub(super) retry_at: Option<DateTime<Utc>>,
    pub(super) last_error: Option<String>,
}

impl Pass {
    pub(super) fn new(names: Vec<String>) -> Pass {
        Pass {
            waiting: names.into_iter().collect(),
            ..Pass::default()
        }
    }

    /// The pass at start: the rebuild's waiting list on one host. In fleet mode the local
    /// store is a mirror, not the record: the certificates wait when this host claims one
    /// that etcd has no record of (`fleet::store`), not because the mirror lacks it.
    pub(super) fn at_start(names: Vec<String>, fleet: bool) -> Pass {
        if fleet {
            if !names.is_empty() {
                info!(
                    certificates = names.len(),
                    "fleet mode: certificates without a local record wait for the CAS pass \
                    only when this host claims them and etcd has no record either"
                );
            }
            return Pass::default();
        }
        Pass::new(names)
    }

    /// Whether the pass should start now.
    pub(super) fn due(&self, now: DateTime<Utc>) -> bool {
        !self.waiting.is_empty() && !self.running && self.retry_at.is_none_or(|t| t <= now)
    }

    /// When the loop must wake for a retry.
    pub(super) fn wake_at(&self) -> Option<DateTime<Utc>> {
        (!self.waiting.is_empty() && !self.running)
            .then_some(self.retry_at)
            .flatten()
    }

    /// What `status` says of a waiting certificate.
    pub(super) fn row(&self, row: &mut StatusRow) {
        if self.waiting.contains(&row.name) {
            row.next_action =
                "wait for the rebuild to ask CAS for its orders (no order before)".to_string();
            if let Some(e) = &self.last_error {
                row.last_error = Some(format!("cannot ask CAS for the orders: {e}"));
            }
        }
    }

    /// A pass ran for `names`: they stop waiting (and leave the list on disk); certificates
    /// that joined while it ran (a reload) still wait, for the next pass.
    pub(super) fn done(&mut self, names: &[String], state_dir: &std::path::Path) {
        for n in names {
            self.waiting.remove(n);
        }
        crate::rebuild::pass_done(state_dir, names);
        self.running = false;
        self.attempt = 0;
        self.retry_at = None;
        self.last_error = None;
    }

    /// A failed pass: retried after 5 s, doubling, at most 5 minutes.
    pub(super) fn failed(&mut self, error: String, now: DateTime<Utc>) {
        self.running = false;
        self.attempt += 1;
        let secs = 5u64
            .saturating_mul(1 << self.attempt.min(6).saturating_sub(1))
            .min(300);
        let at = now + chrono::TimeDelta::seconds(secs as i64);
        warn!(event = "store.cas_pass_failed", error = %error, waiting = self.waiting.len(),
            retry_at = %at,
            "cannot ask CAS which orders the certificates without a record already have; \
             they wait (nothing is ordered) and the pass is tried again");
        self.retry_at = Some(at);
        self.last_error = Some(error);
    }
}

/// What one pass did.
#[derive(Debug, Default)]
pub(super) struct Report {
    pub(super) names: Vec<String>,
}

/// Lists every order once, matches each waiting certificate, writes the records (through
/// `records`: the local store, or the fleet's for the certificates this host owns) and cleans
/// the orders that only hold quota. An error leaves every certificate waiting; a certificate
/// that is no longer this host's (fleet mode) is passed over.
pub(super) async fn run<R: Records>(
    names: Vec<String>,
    cfg: Arc<Config>,
    client: Client,
    records: &R,
) -> Result<Report, String> {
    let mut calls = 0;
    let listed = cas::list_all(&client, &mut calls)
        .await
        .map_err(|e| e.to_string())?;
    let listed = cas::Listed::new(listed);
    let now = Utc::now();
    let certs: HashMap<&str, &crate::config::Certificate> = cfg
        .certificates
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    let (mut adopted, mut cleaned, mut refused) = (0usize, 0usize, 0usize);
    for name in &names {
        let Some(cert) = certs.get(name.as_str()) else {
            continue;
        };
        let rec = match records.get(name).await {
            Ok(r) => r,
            Err(StoreError::NotOurs { .. }) => continue,
            Err(e) => return Err(e.to_string()),
        };
        let deployed = rec
            .as_ref()
            .and_then(|r| r.deployed.as_ref())
            .map(|d| (d.order_id, d.info.not_after));
        let f = cas::judge(cert, deployed, &listed.for_cert(cert), now);
        if let Some(a) = f.adopt {
            adopted += 1;
            info!(event = "cert.adopted", source = "cas", cert = %name, domains = ?cert.domains,
                order_id = %a.order_id, issued = a.issued,
                "adopted the order CAS holds for these names (CAS made its key): no new order");
        }
        for (id, why) in f.refused.iter().chain(&f.clean) {
            warn!(event = "cert.not_adopted", source = "cas", cert = %name, order_id = %id,
                reason = %why, "an order CAS holds for these names is not adopted");
        }
        refused += f.refused.len();
        let Some(mut new) = cas::apply(rec.clone(), cert, &f, now) else {
            continue;
        };
        if Some(&new) == rec.as_ref() {
            continue;
        }
        records.put_durable(&new).await.map_err(|e| e.to_string())?;
        // Quota back now, not at the next step (a deployed record's is months away); what
        // fails stays queued for the lifecycle's own clean.
        let before = new.orders_to_clean.len();
        for (id, _) in &f.clean {
            if lifecycle::cancel_and_delete(&client, *id).await {
                new.orders_to_clean.retain(|o| o != id);
                cleaned += 1;
            }
        }
        if new.orders_to_clean.len() != before {
            records.put_durable(&new).await.map_err(|e| e.to_string())?;
        }
    }
    info!(
        event = "store.cas_pass",
        certificates = names.len(),
        orders = listed.len(),
        calls,
        adopted,
        cleaned,
        not_adopted = refused,
        "asked CAS which orders the certificates without a record already have"
    );
    Ok(Report { names })
}

impl super::State {
    /// Starts the CAS pass when certificates wait for it (at start, or its retry time; in
    /// fleet mode, when this host claimed certificates etcd has no record of).
    pub(super) fn maybe_cas_pass(&mut self) {
        #[cfg(feature = "fleet")]
        if let Some(f) = &self.fleet {
            self.cas.waiting.extend(f.records.awaiting_pass());
        }
        if !self.cas.due(Utc::now()) || self.stopping.load(Ordering::SeqCst) {
            return;
        }
        self.cas.running = true;
        let names: Vec<String> = self
            .config
            .certificates
            .iter()
            .filter(|c| self.cas.waiting.contains(&c.name))
            .map(|c| c.name.clone())
            .collect();
        let (cfg, client, store) = (
            self.config.clone(),
            self.services.client.clone(),
            self.store.clone(),
        );
        #[cfg(feature = "fleet")]
        if let Some(f) = self.fleet.as_ref().map(|f| f.records.clone()) {
            self.tasks.spawn(async move {
                super::TaskResult::CasPass(run(names, cfg, client, &*f).await)
            });
            return;
        }
        self.tasks.spawn(async move {
            super::TaskResult::CasPass(run(names, cfg, client, &store).await)
        });
    }

    /// Certificates added without a record go through the rebuild as at start (their files
    /// judged, then the CAS pass) before anything is ordered; removed ones stop waiting.
    pub(super) async fn newcomers(&mut self, added: &[String]) {
        let configured: HashSet<&str> = self
            .config
            .certificates
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        self.cas.waiting.retain(|n| configured.contains(n.as_str()));
        let waiting = match crate::rebuild::newcomers(&self.config, &self.store, added) {
            Ok(w) => w,
            Err(e) => {
                // Their files could not be judged: they still wait for CAS (nothing ordered).
                error!(error = %e, "state store failure while rebuilding the added certificates");
                added.to_vec()
            }
        };
        if let Err(e) = self.store.flush().await {
            error!(error = %e, "state store failure");
        }
        // In fleet mode they wait only when claimed with no record in etcd (`at_start`).
        #[cfg(feature = "fleet")]
        if self.fleet.is_some() {
            return;
        }
        self.cas.waiting.extend(waiting);
    }
}

/// `rec`'s status row as the loop shows it.
pub(super) fn row_of(pass: &Pass, rec: &CertRecord) -> StatusRow {
    let mut row = StatusRow::from_record(rec);
    pass.row(&mut row);
    row
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::Pass;

    #[test]
    fn a_certificate_that_joined_while_the_pass_ran_still_waits_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Pass::new(vec!["a".into()]);
        p.running = true;
        // A reload adds b while the pass for a runs.
        p.waiting.insert("b".into());
        let now = chrono::Utc::now();
        assert!(!p.due(now));
        p.done(&["a".to_string()], dir.path());
        assert_eq!(p.waiting.iter().collect::<Vec<_>>(), ["b"]);
        assert!(p.due(now), "b's pass must run next");
    }
}
