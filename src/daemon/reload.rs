//! Configuration changes: a reload (SIGHUP), and records of certificates no longer configured
//! at start. In fleet mode a host acts only on what it owns, through the fleet's records: a
//! removed certificate is given up, never cancelled (the other hosts may still serve it, and
//! its owner's order stays the fleet's); a certificate whose domains changed is ordered anew
//! by its owner only, at its next step (`work.rs`), and only once the host's new list agrees
//! with the fleet's. The local mirror of another host's certificate is never acted on.
use std::sync::Arc;

use chrono::Utc;
use tracing::{error, info, warn};

use super::State;
use crate::config::{self, Certificate};
use crate::lifecycle;
use crate::lifecycle::ports::Records;
use crate::store::{CertRecord, Phase};
use cas_api::Client;

impl State {
    /// Records of certificates no longer configured (config edited while stopped).
    pub(super) async fn forget_unconfigured(&mut self) {
        let Ok(names) = self.store.names() else {
            return;
        };
        for name in names {
            if self.cert(&name).is_none() {
                self.forget(&name).await;
            }
        }
    }

    /// `name` left the configuration: on one host its open order is cancelled and its record
    /// removed; in fleet mode it is given up (see the module doc).
    async fn forget(&mut self, name: &str) {
        #[cfg(feature = "fleet")]
        if let Some(f) = &self.fleet {
            match f.records.release(name).await {
                Ok(()) => info!(event = "cert.removed", cert = %name,
                    "certificate removed from this host's configuration: given up to the fleet; \
                    its files stay"),
                Err(e) => error!(cert = %name, error = %e, "cannot give the certificate up"),
            }
            return;
        }
        if let Err(e) = lifecycle::remove(&self.services.client, &self.store, name).await {
            error!(cert = %name, error = %e, "cannot remove the record");
        }
    }

    pub(super) async fn reload(&mut self) {
        self.services.notifier.reloading();
        let Some(path) = self.config.source.clone() else {
            warn!("SIGHUP: the configuration has no file to reload from");
            self.services.notifier.ready();
            return;
        };
        // The notifier's files (webhook credentials) are read before anything else changes.
        let loaded = config::load(&path)
            .map_err(|e| e.to_string())
            .and_then(|new| match self.alerts.reconfigure(new.notify.as_ref()) {
                Ok(()) => Ok(new),
                Err(e) => Err(e.to_string()),
            });
        match loaded {
            Err(errs) => {
                error!(event = "config.reload_failed", errors = %errs,
                    "the new configuration is invalid; keeping the running one");
            }
            Ok(new) => {
                let d = config::diff(&self.config, &new);
                info!(event = "config.reloaded", added = ?d.added, changed = ?d.changed,
                    removed = ?d.removed, "configuration reloaded");
                for name in &d.removed {
                    self.forget(name).await;
                    self.services.metrics.remove_certificate(name);
                    self.hook_retry.remove(name);
                }
                for name in &d.changed {
                    if let Some(c) = new.certificates.iter().find(|c| &c.name == name) {
                        self.domains_changed(c).await;
                    }
                }
                #[cfg(feature = "fleet")]
                if let Some(f) = &self.fleet {
                    f.reconfigure(&new);
                }
                self.config = Arc::new(new);
                self.newcomers(&d.added).await;
                self.refresh_all();
                self.expiry_sweep();
                self.snapshot_dirty = true;
            }
        }
        self.services.notifier.ready();
    }

    /// A certificate whose domains changed is ordered anew; an order in flight for the old
    /// names is abandoned (quota back). Other changes apply at the next step.
    async fn domains_changed(&mut self, c: &Certificate) {
        let client = self.services.client.clone();
        // Fleet mode: left to the owner's next step (`work.rs`), once this host's new list
        // was compared with the fleet's.
        #[cfg(feature = "fleet")]
        if self.fleet.is_some() {
            return;
        }
        if let Err(e) = new_names(&client, &self.store, c).await {
            error!(cert = %c.name, error = %e, "state store failure");
        }
    }
}

/// Whether `rec` was made for other names than `c`'s (ordered or deployed).
pub(super) fn names_differ(rec: &CertRecord, c: &Certificate) -> bool {
    let names_now = rec
        .deployed
        .as_ref()
        .map(|d| &d.info.names)
        .unwrap_or(&rec.domains);
    *names_now != c.domains || rec.domains != c.domains
}

/// Orders `c` anew when its record was made for other names: an open order for the old names
/// is cancelled and deleted (or queued for clean-up), and the record is due now.
pub(super) async fn new_names<R: Records>(
    client: &Client,
    records: &R,
    c: &Certificate,
) -> Result<(), crate::store::StoreError> {
    let Some(mut r) = records.get(&c.name).await? else {
        return Ok(());
    };
    if !names_differ(&r, c) {
        return Ok(());
    }
    if let Some(id) = r.phase.open_order() {
        if !lifecycle::cancel_and_delete(client, id).await {
            r.orders_to_clean.push(id);
        }
    }
    r.phase = Phase::Idle;
    r.domains = c.domains.clone();
    r.force_renew = true;
    r.next_due = Utc::now();
    records.put_durable(&r).await
}
