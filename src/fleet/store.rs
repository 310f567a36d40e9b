//! The lifecycle's `Records` port over etcd, for the certificates this host owns. etcd holds
//! the record (fenced, keys sealed: `records`); the local store keeps a mirror of each record
//! this host read or wrote, which the daemon's index, status and hooks read as on one host,
//! and the learned time-to-issue (a host-local figure).
//!
//! Publishing: once a record is deployed, the owner publishes its set for every host
//! (`fanout::publish_set`, fenced) after the record's write, and again at the next read when
//! that publication did not happen (a crash or an etcd error between the two writes): what
//! etcd's `sets/<cert>` holds always catches up with the owner's deployed record.
//!
//! Host-local parts of the mirror: whether the reload hook is pending here (and its attempts)
//! belongs to this host, not to the record in etcd; a record read from etcd keeps the mirror's
//! hook state for the same deployed order, so a hook run here is not run again because etcd
//! still says "pending".
//!
//! A certificate claimed with no record in etcd takes this host's record when it has one
//! with an order or a deployed set (a host moving from single-host mode: what it paid for and
//! deployed is carried over, not ordered again); with neither, it waits for the CAS pass
//! (`daemon::cas_pass`) as a lost single-host record does, before anything is ordered.
//!
//! What the port's errors mean here: a write the fence refused, or a certificate this host
//! does not own, is `StoreError::NotOurs` (the ownership is dropped); etcd not answering, a
//! lease too short to spend quota through, or an order a predecessor may still have in flight
//! is `StoreError::Unavailable` (the step waits). Neither is recorded as a failure.
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::fanout::{self, IssuedSet};
use super::keyfile::FleetKey;
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
    /// The order whose set `sets/<cert>` holds, as last read or published by this host.
    published: HashMap<String, u64>,
    /// Claimed with no record in etcd nor here: no step runs until the CAS pass matched the
    /// account's orders (an order paid before etcd lost the record is adopted, not repeated).
    awaiting_pass: HashSet<String>,
}

/// What the owner needs to publish its deployed sets.
struct Publishing {
    key: FleetKey,
    /// The product of each certificate (the set's manifest names it), from the configuration.
    products: Mutex<HashMap<String, String>>,
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
    /// `None`: deployed sets are not published (a store used without the fan-out).
    publishing: Option<Publishing>,
    /// The live nodes, as the claims loop last listed them.
    nodes: Mutex<Vec<String>>,
}

impl FleetRecords {
    pub fn new(etcd: EtcdRecords, local: Store, in_flight: Duration) -> FleetRecords {
        FleetRecords {
            etcd,
            local,
            owned: Mutex::new(Owned::default()),
            in_flight,
            refusing: AtomicBool::new(false),
            publishing: None,
            nodes: Mutex::default(),
        }
    }

    /// Publishes every deployed set for the fleet's hosts, sealed under `key`.
    pub fn publishing(mut self, key: &FleetKey) -> FleetRecords {
        self.publishing = Some(Publishing {
            key: key.clone(),
            products: Mutex::default(),
        });
        self
    }

    /// The product each certificate is ordered with (for the published sets' manifests).
    pub fn set_products(&self, products: HashMap<String, String>) {
        if let Some(p) = &self.publishing {
            *p.products.lock().unwrap_or_else(|e| e.into_inner()) = products;
        }
    }

    pub fn set_nodes(&self, nodes: Vec<String>) {
        *self.nodes.lock().unwrap_or_else(|p| p.into_inner()) = nodes;
    }

    /// The live nodes, as last listed.
    pub fn nodes(&self) -> Vec<String> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn fleet(&self) -> &super::Fleet {
        self.etcd.fleet()
    }

    /// This host's ownership of `name`, while it lasts.
    pub fn owned(&self, name: &str) -> Option<Ownership> {
        self.ownership(name).ok()
    }

    /// Writes `rec` into the local mirror with this host's hook state (see the module doc):
    /// the mirror's when both name the same deployed order; for another order, `rec`'s own
    /// when this host's lifecycle wrote it (it installed the set here), none when it was read
    /// from etcd (the set watcher installs such a set and runs the hook itself).
    fn mirror(&self, rec: &CertRecord, written_here: bool) -> Result<(), StoreError> {
        let here = self.local.get(&rec.name)?;
        let mut m = rec.clone();
        (m.hook_pending, m.hook_attempt) = hook_here(here.as_ref(), rec, written_here);
        self.local.put(&m)
    }

    /// Publishes `rec`'s deployed set unless `sets/<cert>` holds its order already.
    async fn publish_deployed(&self, o: &Ownership, rec: &CertRecord) -> Result<(), FleetError> {
        let (Some(p), Some(d)) = (&self.publishing, &rec.deployed) else {
            return Ok(());
        };
        if self.lock().published.get(&rec.name) == Some(&d.order_id.0) {
            return Ok(());
        }
        let product = p
            .products
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&rec.name)
            .cloned()
            .unwrap_or_default();
        let set = IssuedSet {
            order_id: d.order_id.0,
            product,
            cert_pem: d.cert_pem.clone(),
            chain_pem: d.chain_pem.clone(),
            key_pem: d.key_pem.clone(),
        };
        let version = fanout::publish_set(self.etcd.fleet(), &p.key, o, &set).await?;
        tracing::info!(event = "fleet.set_published", cert = %rec.name, version,
            order_id = d.order_id.0, "published the deployed set for every host");
        self.lock().published.insert(rec.name.clone(), d.order_id.0);
        Ok(())
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

    /// Whether this host owns `name` and its steps may run (not waiting for the CAS pass).
    pub fn owns(&self, name: &str) -> bool {
        let owned = self.lock();
        owned.by_cert.get(name).is_some_and(|o| o.lease().is_live())
            && !owned.awaiting_pass.contains(name)
    }

    /// The owned certificates that wait for the CAS pass.
    pub fn awaiting_pass(&self) -> Vec<String> {
        self.lock().awaiting_pass.iter().cloned().collect()
    }

    /// Whether `name` is owned here and waits for the CAS pass.
    pub fn is_awaiting_pass(&self, name: &str) -> bool {
        self.lock().awaiting_pass.contains(name)
    }

    /// The CAS pass ran for `names`: their steps may run.
    pub fn pass_done(&self, names: &[String]) {
        let mut owned = self.lock();
        for n in names {
            owned.awaiting_pass.remove(n);
        }
    }

    pub fn owned_names(&self) -> Vec<String> {
        self.lock().by_cert.keys().cloned().collect()
    }

    /// Takes `o` (a fresh claim): its record is read from etcd, mirrored, and when it is in
    /// `Intent` (a predecessor was about to order, or did) nothing is done with it until the
    /// predecessor's call can no longer be in flight.
    pub async fn take(&self, o: Ownership) -> Result<(), FleetError> {
        let name = o.cert().to_string();
        let mut rec = self.etcd.get(&name).await?;
        match &rec {
            Some(r) => self.mirror(r, false)?,
            None => rec = self.carry_over(&o).await?,
        }
        let wait_for_pass = rec.is_none();
        let published = match &self.publishing {
            Some(_) => fanout::published_order(self.etcd.fleet(), &name).await?,
            None => None,
        };
        {
            let mut owned = self.lock();
            match published {
                Some(order) => owned.published.insert(name.clone(), order),
                None => owned.published.remove(&name),
            };
        }
        // A deployed record whose set is not published (carried over, or a predecessor's
        // publication failed): published now, not at a step that may be months away.
        if let Some(r) = &rec {
            self.publish_deployed(&o, r).await?;
        }
        let mut owned = self.lock();
        if matches!(rec.as_ref().map(|r| &r.phase), Some(Phase::Intent { .. })) {
            owned
                .in_doubt
                .insert(name.clone(), Instant::now() + self.in_flight);
        }
        if wait_for_pass {
            owned.awaiting_pass.insert(name.clone());
        }
        owned.by_cert.insert(name, o);
        Ok(())
    }

    /// This host's record of `o`'s certificate, written to etcd as the fleet's when it holds
    /// an order or a deployed set (see the module doc); `None` when there is nothing to carry.
    async fn carry_over(&self, o: &Ownership) -> Result<Option<CertRecord>, FleetError> {
        let Some(local) = self.local.get(o.cert())? else {
            return Ok(None);
        };
        if local.deployed.is_none() && local.phase.open_order().is_none() {
            return Ok(None);
        }
        self.etcd.put_durable(o, &local).await?;
        let order = local
            .phase
            .open_order()
            .or(local.deployed.as_ref().map(|d| d.order_id));
        tracing::info!(event = "fleet.carried_over", cert = %o.cert(),
            order_id = order.map_or(0, |o| o.0),
            "etcd had no record of this certificate: this host's record is now the fleet's");
        Ok(Some(local))
    }

    /// Stops holding `name` (it left this host's configuration): its owner key is deleted so
    /// a host that still serves it can claim it; the fleet's record and any order stay (the
    /// fleet may still want them). The local mirror is forgotten.
    pub async fn release(&self, name: &str) -> Result<(), FleetError> {
        let held = {
            let mut owned = self.lock();
            owned.in_doubt.remove(name);
            owned.published.remove(name);
            owned.awaiting_pass.remove(name);
            owned.by_cert.remove(name)
        };
        self.local.remove(name)?;
        if let Some(o) = held {
            super::release(self.etcd.fleet(), &o).await?;
        }
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
            owned.published.remove(n);
            owned.awaiting_pass.remove(n);
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
                owned.published.remove(name);
                owned.awaiting_pass.remove(name);
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

/// This host's reload-hook state (pending, attempts) for `rec` going into the mirror, where
/// `here` was: see [`FleetRecords::mirror`].
fn hook_here(here: Option<&CertRecord>, rec: &CertRecord, written_here: bool) -> (bool, u32) {
    let same_order = here.is_some_and(
        |h| matches!((&h.deployed, &rec.deployed), (Some(x), Some(y)) if x.order_id == y.order_id),
    );
    match here {
        Some(h) if same_order => (h.hook_pending, h.hook_attempt),
        _ if written_here => (rec.hook_pending, rec.hook_attempt),
        _ => (false, 0),
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
        let o = self.ownership(name)?;
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
            self.mirror(r, false)?;
            self.publish_deployed(&o, r)
                .await
                .map_err(|e| self.port_error(name, e))?;
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
        self.mirror(rec, true)?;
        self.publish_deployed(&o, rec)
            .await
            .map_err(|e| self.port_error(&rec.name, e))
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn deployed(order: u64, hook_pending: bool, hook_attempt: u32) -> CertRecord {
        let mut r = CertRecord::new("www", vec!["www.example.test".into()]);
        r.deployed = Some(crate::store::DeployedCert {
            order_id: cas_api::model::OrderId(order),
            info: crate::deploy::CertInfo {
                not_before: chrono::DateTime::UNIX_EPOCH,
                not_after: chrono::DateTime::UNIX_EPOCH,
                serial_hex: String::new(),
                names: vec![],
                fingerprint_sha256: String::new(),
            },
            cert_pem: String::new(),
            chain_pem: String::new(),
            key_pem: cas_api::secret::Secret::new(""),
        });
        r.hook_pending = hook_pending;
        r.hook_attempt = hook_attempt;
        r
    }

    /// The hook state is this host's: etcd's "pending" for an order whose hook already ran
    /// here does not make it run again; a record read from etcd for another order brings no
    /// pending hook (the set watcher runs it when it installs); this host's own write of a new
    /// deployment does.
    #[test]
    fn the_reload_hook_state_in_the_mirror_is_this_hosts() {
        let ran_here = deployed(1, false, 0);
        let failing_here = deployed(1, true, 3);
        let from_etcd = deployed(1, true, 0);
        assert_eq!(hook_here(Some(&ran_here), &from_etcd, false), (false, 0));
        assert_eq!(hook_here(Some(&ran_here), &from_etcd, true), (false, 0));
        assert_eq!(hook_here(Some(&failing_here), &from_etcd, true), (true, 3));
        let newer = deployed(2, true, 0);
        assert_eq!(hook_here(Some(&ran_here), &newer, false), (false, 0));
        assert_eq!(hook_here(None, &newer, false), (false, 0));
        assert_eq!(hook_here(Some(&ran_here), &newer, true), (true, 0));
        assert_eq!(hook_here(None, &newer, true), (true, 0));
        let undeployed = CertRecord::new("www", vec![]);
        assert_eq!(hook_here(Some(&undeployed), &newer, true), (true, 0));
    }

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
