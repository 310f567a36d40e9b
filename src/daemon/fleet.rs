//! The daemon in fleet mode (feature `fleet`): this host's lease and node key, which
//! certificates it claims, and when their steps may run. The lifecycle runs over
//! [`FleetRecords`] for the certificates this host owns and does nothing for the others.
//!
//! Claims: every `lease_ttl / 3` this host lists the live nodes (`<prefix>/nodes/<node>`,
//! bound to each node's lease) and claims each certificate that rendezvous hashing gives to
//! it, and any certificate nobody has held for a grace period (its preferred node is away).
//! The first round waits one TTL after registering, so hosts starting together see each
//! other before claiming. A lost lease ends every ownership; a new lease is granted and the
//! claims start again. etcd not answering is said once per outage (`fleet.unavailable`) and
//! its return once (`fleet.available`); meanwhile nothing is ordered and deployed sets stay.
//!
//! Fan-out: every host runs a proof watcher and a set watcher (`fleet::fanout`), so FILE
//! proofs land in every host's webroot and issued sets in every host's `output_dir`; the
//! owner publishes them through its lifecycle's ports (`fleet::proofs_port`,
//! `fleet::store`). The watchers are restarted with the new targets on reload.
//!
//! Each node publishes what it orders (`confighash`, lease-bound): the summary of its list
//! (`<prefix>/config/<node>`: a hash and a count) and its per-certificate digests in chunks
//! (`<prefix>/config_digests/<node>/<hash>/<n>`). A round compares the summaries; only a node
//! whose hash is not the majority's reads digests (once per list, at the summaries'
//! revision), says which certificates differ (`fleet.config_mismatch`), claims nothing and
//! orders nothing, and serves what it has.
//!
//! A round's reads do not grow with the number of certificates beyond paging: the live
//! nodes, the whole `owner/` directory (who holds what), the summaries.
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::PutOptions;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info};

use super::DaemonError;
use crate::config::{Config, FleetSettings};
use crate::fleet::confighash::{self, Digests};
use crate::fleet::fanout::{ProofHost, ProofTarget, SetHost, SetTarget};
use crate::fleet::keyfile::FleetKey;
use crate::fleet::store::{preferred, FleetRecords};
use crate::fleet::{claim, live_nodes, read_range, Claim, EtcdRecords, Fleet, FleetError, Lease};
use crate::lifecycle::Dropped;
use crate::store::Store;

/// Keys per page of the `owner/` read (about 80 B each with value and revisions: about
/// 400 KB a page).
const OWNER_PAGE: i64 = 5000;

/// How long a step dropped for "not now" waits before it is tried again.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(2);

/// The daemon's view of the fleet.
pub(super) struct FleetMode {
    pub(super) records: Arc<FleetRecords>,
    /// Certificates whose last step was dropped as Unavailable: not before then.
    retry_at: Mutex<HashMap<String, Instant>>,
    /// What this host orders, per certificate (updated on reload).
    names: Arc<Mutex<Digests>>,
    fleet: Fleet,
    key: FleetKey,
    /// This host's proof and set watchers (restarted on reload).
    watchers: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl FleetMode {
    /// Whether `name`'s steps may run now: owned, and not waiting after a dropped step.
    pub(super) fn may_step(&self, name: &str) -> bool {
        if !self.records.owns(name) {
            return false;
        }
        let mut r = self.retry_at.lock().unwrap_or_else(|p| p.into_inner());
        match r.get(name) {
            Some(t) if Instant::now() < *t => false,
            Some(_) => {
                r.remove(name);
                true
            }
            None => true,
        }
    }

    pub(super) fn dropped(&self, name: &str, why: Dropped) {
        if why == Dropped::Unavailable {
            self.retry_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.to_string(), Instant::now() + UNAVAILABLE_RETRY);
        }
    }

    /// Takes `config` (at start and on reload): what is ordered, the products the sets
    /// name, and the watchers' targets.
    pub(super) fn reconfigure(&self, config: &Config) {
        *self.names.lock().unwrap_or_else(|p| p.into_inner()) =
            confighash::digests(&config.certificates);
        // Nothing is ordered on the new list until the claims loop compared it with the
        // fleet's (its next round clears this when they agree).
        self.records.set_refusing(true);
        self.records.set_products(
            config
                .certificates
                .iter()
                .map(|c| (c.name.clone(), c.product_code.clone()))
                .collect(),
        );
        let mut w = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        for h in w.drain(..) {
            h.abort();
        }
        let proofs = ProofHost::new(
            self.fleet.clone(),
            ProofTarget::from_config(&config.certificates),
        );
        let sets = SetHost::new(
            self.fleet.clone(),
            &self.key,
            SetTarget::from_config(&config.output_dir, &config.certificates),
        );
        w.push(tokio::spawn(proofs.run()).abort_handle());
        w.push(tokio::spawn(sets.run()).abort_handle());
    }
}

/// How long a create or renew may be in flight: every attempt within the retry budget, and
/// the last one's connect and read.
fn in_flight_bound(config: &Config) -> Duration {
    let a = &config.api;
    a.max_retry_time + a.connect_timeout + a.read_timeout
}

/// Connects to the fleet (the first request happens in the background: etcd may be away at
/// start) and starts the claims; `poke` wakes the daemon's loop when ownership changes.
pub(super) async fn start(
    s: &FleetSettings,
    config: &Config,
    store: Store,
    poke: mpsc::Sender<()>,
) -> Result<Arc<FleetMode>, DaemonError> {
    let fleet = Fleet::connect(s)
        .await
        .map_err(|e| DaemonError::Fleet(e.to_string()))?;
    let key = crate::fleet::keyfile::load(&s.key, |v| std::env::var(v).ok())
        .map_err(|e| DaemonError::Fleet(e.to_string()))?;
    let records = Arc::new(
        FleetRecords::new(
            EtcdRecords::new(fleet.clone(), &key),
            store,
            in_flight_bound(config),
        )
        .publishing(&key),
    );
    let mode = Arc::new(FleetMode {
        records: records.clone(),
        retry_at: Mutex::default(),
        names: Arc::new(Mutex::new(Digests::default())),
        fleet: fleet.clone(),
        key,
        watchers: Mutex::default(),
    });
    mode.reconfigure(config);
    info!(node = %fleet.node(), etcd = ?s.etcd, lease_ttl = ?s.lease_ttl,
        in_flight = ?in_flight_bound(config), "fleet mode: this host orders only what it owns");
    tokio::spawn(claims(
        fleet,
        s.lease_ttl,
        records,
        mode.names.clone(),
        poke,
    ));
    Ok(mode)
}

/// This host's lease, when it registered, and the list it published through it.
struct Joined {
    lease: Arc<Lease>,
    at: Instant,
    published: Option<Digests>,
}

/// What the claims loop carries from round to round.
#[derive(Default)]
struct Rounds {
    joined: Option<Joined>,
    unowned_since: HashMap<String, Instant>,
    /// The certificates last said to differ (`fleet.config_mismatch` once per change).
    mismatch: BTreeSet<String>,
    /// Other nodes' lists read to name what differs, by hash (a hash is its list's: kept
    /// while some live node still publishes it).
    lists: BTreeMap<String, Digests>,
}

/// The claims loop (see the module doc).
async fn claims(
    fleet: Fleet,
    ttl: Duration,
    records: Arc<FleetRecords>,
    names: Arc<Mutex<Digests>>,
    poke: mpsc::Sender<()>,
) {
    let mut rounds = Rounds::default();
    let mut down = false;
    let period = (ttl / 3).max(Duration::from_millis(300));
    loop {
        let list = names.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match round(&fleet, ttl, &records, &list, &mut rounds).await {
            Ok(changed) => {
                if down {
                    info!(event = "fleet.available", node = %fleet.node(),
                        "etcd answers again; ordering resumes for the certificates this host owns");
                    down = false;
                }
                if changed {
                    let _ = poke.try_send(());
                }
            }
            Err(e) => {
                if !down {
                    error!(event = "fleet.unavailable", node = %fleet.node(), error = %e,
                        "etcd cannot be reached: nothing is ordered until it answers; \
                        deployed certificates stay served");
                    down = true;
                }
            }
        }
        if poke.is_closed() {
            return;
        }
        tokio::time::sleep(period).await;
    }
}

/// One round: the lease (granted anew when lost), the live nodes, the claims. True when this
/// host took a certificate.
async fn round(
    fleet: &Fleet,
    ttl: Duration,
    records: &FleetRecords,
    mine: &Digests,
    rounds: &mut Rounds,
) -> Result<bool, FleetError> {
    let Rounds {
        joined,
        unowned_since,
        mismatch,
        lists,
    } = rounds;
    if let Some(j) = joined.as_ref() {
        j.lease.say_if_lost();
    }
    if joined.as_ref().is_none_or(|j| !j.lease.is_live()) {
        let lost = records.drop_lost();
        if !lost.is_empty() {
            info!(node = %fleet.node(), certificates = ?lost,
                "the fleet lease was lost: these certificates are no longer this host's");
        }
        *joined = None;
        let lease = Lease::grant(fleet, ttl).await?;
        register(fleet, &lease).await?;
        *joined = Some(Joined {
            lease,
            at: Instant::now(),
            published: None,
        });
    }
    let Some(j) = joined.as_mut() else {
        return Ok(false);
    };
    if j.published.as_ref() != Some(mine) {
        confighash::publish(fleet, &j.lease, mine, j.published.as_ref()).await?;
        j.published = Some(mine.clone());
    }
    // Nodes starting together see each other before anything is claimed.
    if j.at.elapsed() < ttl {
        live_nodes(fleet).await?;
        return Ok(false);
    }
    let nodes = live_nodes(fleet).await?;
    records.set_nodes(nodes.clone());
    let differ = confighash::compare(fleet, &nodes, mine, lists).await?;
    records.set_refusing(!differ.is_empty());
    if differ != *mismatch {
        if !differ.is_empty() {
            error!(event = "fleet.config_mismatch", node = %fleet.node(), certificates = ?differ,
                "this host's certificates (names, domains, product, key type or validation \
                method) differ from the fleet's: it orders nothing, and still serves what it has");
        }
        *mismatch = differ;
    }
    if !mismatch.is_empty() {
        return Ok(false);
    }
    let grace = ttl * 2;
    let mut changed = false;
    let names: Vec<&String> = mine.keys().collect();
    let configured: HashSet<&String> = names.iter().copied().collect();
    unowned_since.retain(|n, _| configured.contains(n));
    let held = holders(fleet).await?;
    // Held through this lease (whether or not its steps may run yet: one waiting for the
    // CAS pass is not claimed and taken again every round).
    let taken: HashSet<String> = records.owned_names().into_iter().collect();
    for cert in names {
        if taken.contains(cert) {
            continue;
        }
        // Held by another node: nothing to claim (the claim would be refused). One held under
        // this node's name but not taken here (a take that failed, or a key of this node's
        // lease before a restart) goes on: the claim tells which.
        if held.get(cert).is_some_and(|n| n != fleet.node()) {
            unowned_since.remove(cert);
            continue;
        }
        if preferred(cert, &nodes) != Some(fleet.node()) {
            if held.contains_key(cert) {
                unowned_since.remove(cert);
                continue;
            }
            let since = *unowned_since
                .entry(cert.clone())
                .or_insert_with(Instant::now);
            if since.elapsed() < grace {
                continue;
            }
        }
        if let Claim::Owned(o) = claim(fleet, &j.lease, cert).await? {
            info!(event = "fleet.claimed", cert = %cert, node = %fleet.node(), token = o.token(),
                "this host owns the certificate now");
            records.take(o).await?;
            unowned_since.remove(cert);
            changed = true;
        }
    }
    Ok(changed)
}

/// Who holds each certificate now (certificate → node name): the whole `owner/` directory
/// in one paged read, rather than one read per certificate (300 000 reads a second at 100
/// hosts × 10 000 certificates).
async fn holders(fleet: &Fleet) -> Result<HashMap<String, String>, FleetError> {
    let dir = fleet.dir("owner");
    let (_, kvs) = read_range(fleet, &dir, OWNER_PAGE, None).await?;
    Ok(kvs
        .iter()
        .filter_map(|kv| {
            let cert = std::str::from_utf8(kv.key()).ok()?.strip_prefix(&dir)?;
            Some((
                cert.to_string(),
                String::from_utf8_lossy(kv.value()).into_owned(),
            ))
        })
        .collect())
}

/// Puts this node's key, bound to its lease (so it disappears with the lease).
async fn register(fleet: &Fleet, lease: &Lease) -> Result<(), FleetError> {
    let (key, node, id) = (
        fleet.node_key(fleet.node()),
        fleet.node().to_string(),
        lease.id(),
    );
    fleet
        .call_idempotent(|mut c| {
            let (key, node) = (key.clone(), node.clone());
            async move {
                c.put(key, node, Some(PutOptions::new().with_lease(id)))
                    .await
            }
        })
        .await?;
    Ok(())
}
