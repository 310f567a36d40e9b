//! The lifecycle's `Records` port over etcd, for the certificates this host owns. etcd holds
//! the record (fenced, keys sealed: `records`); the local store keeps a mirror of each record
//! this host read or wrote, which the daemon's index, status and hooks read as on one host,
//! and the learned time-to-issue (a host-local figure).
//!
//! What the port's errors mean here: a write the fence refused, or a certificate this host
//! does not own, is `StoreError::NotOurs` (the ownership is dropped); etcd not answering, a
//! lease too short to spend quota through, or an order a predecessor may still have in flight
//! is `StoreError::Unavailable` (the step waits). Neither is recorded as a failure.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{EtcdRecords, FleetError, Lease, Ownership};
use crate::lifecycle::ports::Records;
use crate::store::{CertRecord, Phase, Store, StoreError};

/// What this host owns, and until when an owned record in `Intent` must not be acted on.
#[derive(Default)]
struct Owned {
    by_cert: HashMap<String, Ownership>,
    /// A record found in `Intent` at takeover: the old owner's create may still be in flight
    /// until then; adoption (`ListOrders`) waits for it.
    in_doubt: HashMap<String, Instant>,
}

/// The fleet's records as the lifecycle's store (see the module doc).
pub struct FleetRecords {
    etcd: EtcdRecords,
    local: Store,
    owned: Mutex<Owned>,
    /// How long a create or renew call may be in flight (the API client's retries and
    /// timeouts): how long a successor waits before it adopts an interrupted order.
    in_flight: Duration,
    /// This host's list of what is ordered differs from the fleet's: it orders nothing.
    refusing: AtomicBool,
}

impl FleetRecords {
    pub fn new(etcd: EtcdRecords, local: Store, in_flight: Duration) -> FleetRecords {
        FleetRecords {
            etcd,
            local,
            owned: Mutex::new(Owned::default()),
            in_flight,
            refusing: AtomicBool::new(false),
        }
    }

    /// Whether this host's configuration differs from the fleet's (then nothing is ordered).
    pub fn set_refusing(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::SeqCst);
    }

    pub fn refusing(&self) -> bool {
        self.refusing.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Owned> {
        self.owned.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn owns(&self, name: &str) -> bool {
        self.lock()
            .by_cert
            .get(name)
            .is_some_and(|o| o.lease().is_live())
    }

    pub fn owned_names(&self) -> Vec<String> {
        self.lock().by_cert.keys().cloned().collect()
    }

    /// Takes `o` (a fresh claim): its record is read from etcd, mirrored, and when it is in
    /// `Intent` (a predecessor was about to order, or did) nothing is done with it until the
    /// predecessor's call can no longer be in flight.
    pub async fn take(&self, o: Ownership) -> Result<(), FleetError> {
        let name = o.cert().to_string();
        let rec = self.etcd.get(&name).await?;
        if let Some(r) = &rec {
            self.local.put(r)?;
        }
        let mut owned = self.lock();
        if matches!(rec.as_ref().map(|r| &r.phase), Some(Phase::Intent { .. })) {
            owned
                .in_doubt
                .insert(name.clone(), Instant::now() + self.in_flight);
        }
        owned.by_cert.insert(name, o);
        Ok(())
    }

    /// Forgets every ownership held through a lost lease.
    pub fn drop_lost(&self) -> Vec<String> {
        let mut owned = self.lock();
        let lost: Vec<String> = owned
            .by_cert
            .iter()
            .filter(|(_, o)| !o.lease().is_live())
            .map(|(n, _)| n.clone())
            .collect();
        for n in &lost {
            owned.by_cert.remove(n);
            owned.in_doubt.remove(n);
        }
        lost
    }

    fn ownership(&self, name: &str) -> Result<Ownership, StoreError> {
        let owned = self.lock();
        let Some(o) = owned.by_cert.get(name) else {
            return Err(StoreError::NotOurs {
                name: name.to_string(),
                why: "this host has not claimed it".into(),
            });
        };
        if !o.lease().is_live() {
            return Err(StoreError::NotOurs {
                name: name.to_string(),
                why: "this host's fleet lease is lost".into(),
            });
        }
        Ok(o.clone())
    }

    /// The port's error for `e`; a fenced write ends the ownership.
    fn port_error(&self, name: &str, e: FleetError) -> StoreError {
        match e {
            FleetError::Fenced { .. } => {
                let mut owned = self.lock();
                owned.by_cert.remove(name);
                owned.in_doubt.remove(name);
                StoreError::NotOurs {
                    name: name.to_string(),
                    why: e.to_string(),
                }
            }
            // etcd not answering, or the record moved (read again at the next step).
            FleetError::Etcd(_) | FleetError::Conflict { .. } => {
                StoreError::Unavailable(e.to_string())
            }
            FleetError::Store(s) => s,
            e => StoreError::Db(format!("fleet: {e}")),
        }
    }
}

/// Whether `lease` has most (at least two thirds) of its TTL left: only then may a call that
/// spends quota start, so that a pause cannot outlast the lease between the check and the
/// call's arrival.
pub fn may_spend_through(lease: &Lease) -> Result<(), String> {
    let (left, ttl) = (lease.remaining(), lease.ttl());
    if left * 3 >= ttl * 2 {
        Ok(())
    } else {
        Err(format!(
            "the fleet lease has {} ms of its {} s left; ordering waits for a keep-alive",
            left.as_millis(),
            ttl.as_secs()
        ))
    }
}

impl Records for FleetRecords {
    async fn get(&self, name: &str) -> Result<Option<CertRecord>, StoreError> {
        self.ownership(name)?;
        let waiting = self.lock().in_doubt.get(name).copied();
        if let Some(until) = waiting {
            if Instant::now() < until {
                return Err(StoreError::Unavailable(format!(
                    "{name}: the previous owner's order may still be in flight for {} s; \
                    looking for it after that",
                    until.saturating_duration_since(Instant::now()).as_secs()
                )));
            }
            self.lock().in_doubt.remove(name);
        }
        let rec = self
            .etcd
            .get(name)
            .await
            .map_err(|e| self.port_error(name, e))?;
        if let Some(r) = &rec {
            self.local.put(r)?;
        }
        Ok(rec)
    }

    async fn put_durable(&self, rec: &CertRecord) -> Result<(), StoreError> {
        let o = self.ownership(&rec.name)?;
        self.etcd
            .put_durable(&o, rec)
            .await
            .map_err(|e| self.port_error(&rec.name, e))?;
        // The mirror: etcd already holds the record durably.
        self.local.put(rec)
    }

    async fn remove_durable(&self, name: &str) -> Result<(), StoreError> {
        let o = self.ownership(name)?;
        self.etcd
            .remove_durable(&o)
            .await
            .map_err(|e| self.port_error(name, e))?;
        self.local.remove(name)
    }

    fn issue_ewma(&self) -> Result<Option<f64>, StoreError> {
        self.local.issue_ewma()
    }

    fn observe_issue_time(&self, secs: f64) -> Result<(), StoreError> {
        self.local.observe_issue_time(secs).map(|_| ())
    }

    fn may_spend(&self, name: &str) -> Result<(), StoreError> {
        let o = self.ownership(name)?;
        if self.refusing() {
            return Err(StoreError::Unavailable(
                "this host's certificates differ from the fleet's (fleet.config_mismatch); \
                it orders nothing"
                    .into(),
            ));
        }
        may_spend_through(o.lease()).map_err(StoreError::Unavailable)
    }
}

/// Rendezvous (highest random weight) hashing: the node `cert` prefers among `nodes`. Every
/// host computes the same answer from the same list, and a node joining or leaving moves only
/// the certificates it wins or held.
pub fn preferred<'a>(cert: &str, nodes: &'a [String]) -> Option<&'a str> {
    use sha2::{Digest, Sha256};
    nodes
        .iter()
        .max_by_key(|n| {
            let d = Sha256::new()
                .chain_update(cert.as_bytes())
                .chain_update([0])
                .chain_update(n.as_bytes())
                .finalize();
            let mut w = [0u8; 8];
            w.copy_from_slice(&d[..8]);
            (u64::from_be_bytes(w), n.as_str())
        })
        .map(String::as_str)
}

/// `Arc` so the daemon's tasks share it.
pub type SharedRecords = Arc<FleetRecords>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_spreads_and_is_stable_when_another_node_leaves() {
        let nodes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut count = HashMap::new();
        let mut pick = HashMap::new();
        for i in 0..300 {
            let c = format!("cert-{i}");
            let p = preferred(&c, &nodes).map(str::to_string);
            *count.entry(p.clone()).or_insert(0) += 1;
            pick.insert(c, p);
        }
        assert_eq!(count.len(), 3);
        assert!(count.values().all(|&n| n > 60), "{count:?}");
        // "c" leaves: only its certificates move.
        let two: Vec<String> = nodes[..2].to_vec();
        for (c, p) in &pick {
            if p.as_deref() != Some("c") {
                assert_eq!(preferred(c, &two), p.as_deref());
            }
        }
        assert_eq!(preferred("x", &[]), None);
    }
}
