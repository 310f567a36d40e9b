//! FILE proofs on every host. The owner of a certificate publishes the proof of its order
//! under `<prefix>/proofs/<cert>` ([`publish_proof`], fenced by its token) and withdraws it
//! after validation ([`withdraw_proof`]). Every host runs a [`ProofHost`]: it writes the proof
//! into its own webroot for that certificate with the single-host provider's checks
//! (`validation::file`: the Uri, the domain against this host's configuration, the content,
//! every path part without following links), acknowledges under
//! `<prefix>/proof_acks/<cert>/<node>` (value: the order id), and removes the file when the
//! key is deleted. DNS proofs live in the zone: no fan-out.
use std::collections::HashMap;
use std::path::PathBuf;

use etcd_client::{DeleteOptions, TxnOp};
use serde::{Deserialize, Serialize};

use super::follow::{follow, Follower};
use super::{fenced, read_dir, read_one};
use crate::config::{Certificate, Validation};
use crate::fleet::{Fleet, FleetError, Ownership};
use crate::validation::file;

const PROOFS: &str = "proofs";
const ACKS: &str = "proof_acks";

/// A FILE proof as the owner publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    pub order_id: u64,
    /// The order's domains.
    pub domains: Vec<String>,
    /// The domain the challenge is for.
    pub domain: String,
    /// CAS's Uri (`/.well-known/pki-validation/fileauth.txt`).
    pub uri: String,
    pub content: String,
}

/// Publishes `proof` for `owner`'s certificate (replacing an earlier one). Fenced: refused
/// with nothing written once this host no longer owns the certificate.
pub async fn publish_proof(
    fleet: &Fleet,
    owner: &Ownership,
    proof: &Proof,
) -> Result<(), FleetError> {
    let value = serde_json::to_vec(proof).map_err(|e| FleetError::Unexpected {
        cert: owner.cert().to_string(),
        what: format!("a proof that does not encode: {e}"),
    })?;
    let key = format!("{}{}", fleet.dir(PROOFS), owner.cert());
    fenced(fleet, owner, None, vec![TxnOp::put(key, value, None)]).await
}

/// Withdraws `owner`'s proof and its acknowledgements; every host removes its file. Fenced.
pub async fn withdraw_proof(fleet: &Fleet, owner: &Ownership) -> Result<(), FleetError> {
    let cert = owner.cert();
    fenced(
        fleet,
        owner,
        None,
        vec![
            TxnOp::delete(format!("{}{cert}", fleet.dir(PROOFS)), None),
            TxnOp::delete(
                format!("{}{cert}/", fleet.dir(ACKS)),
                Some(DeleteOptions::new().with_prefix()),
            ),
        ],
    )
    .await
}

/// Where a published proof stands: which of the `nodes` given acknowledged this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofStatus {
    pub order_id: u64,
    /// Nodes that wrote this order's proof, sorted.
    pub acked: Vec<String>,
    /// Nodes among those asked about that have not (or acknowledged another order), sorted.
    pub missing: Vec<String>,
}

/// The proof published for `cert` and which of `nodes` have not acknowledged it; `None` when
/// no proof is published. (The fleet has no list of its hosts yet: the caller names them.)
pub async fn proof_status(
    fleet: &Fleet,
    cert: &str,
    nodes: &[String],
) -> Result<Option<ProofStatus>, FleetError> {
    let key = format!("{}{cert}", fleet.dir(PROOFS));
    let Some(proof) = read_one(fleet, &key)
        .await?
        .and_then(|(v, _)| serde_json::from_slice::<Proof>(&v).ok())
    else {
        return Ok(None);
    };
    let (_, acks) = read_dir(fleet, &format!("{}{cert}/", fleet.dir(ACKS))).await?;
    let want = proof.order_id.to_string();
    let mut acked: Vec<String> = acks
        .into_iter()
        .filter(|(_, v, _)| v.as_slice() == want.as_bytes())
        .map(|(node, _, _)| node)
        .collect();
    acked.sort();
    let mut missing: Vec<String> = nodes
        .iter()
        .filter(|n| !acked.contains(n))
        .cloned()
        .collect();
    missing.sort();
    Ok(Some(ProofStatus {
        order_id: proof.order_id,
        acked,
        missing,
    }))
}

/// What this host serves for one certificate: its configured domains and webroots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofTarget {
    pub cert: String,
    pub domains: Vec<String>,
    pub webroots: Vec<PathBuf>,
}

impl ProofTarget {
    /// One target per FILE-validated certificate of this host's configuration.
    pub fn from_config(certs: &[Certificate]) -> Vec<ProofTarget> {
        certs
            .iter()
            .filter_map(|c| match &c.validation {
                Validation::File { webroot } => Some(ProofTarget {
                    cert: c.name.clone(),
                    domains: c.domains.clone(),
                    webroots: vec![webroot.clone()],
                }),
                _ => None,
            })
            .collect()
    }
}

/// This host's proof watcher.
#[derive(Debug)]
pub struct ProofHost {
    fleet: Fleet,
    targets: HashMap<String, ProofTarget>,
    /// Files written, per certificate: the order and the paths.
    written: HashMap<String, (u64, Vec<PathBuf>)>,
    /// Proofs waiting for a webroot's proof file another certificate's proof holds (CAS's
    /// file name is always `fileauth.txt`): written when that one is removed.
    waiting: HashMap<String, Vec<u8>>,
}

impl ProofHost {
    pub fn new(fleet: Fleet, targets: Vec<ProofTarget>) -> ProofHost {
        ProofHost {
            fleet,
            targets: targets.into_iter().map(|t| (t.cert.clone(), t)).collect(),
            written: HashMap::new(),
            waiting: HashMap::new(),
        }
    }

    /// Follows the published proofs for ever; spawn it and abort the task to stop.
    pub async fn run(mut self) {
        let fleet = self.fleet.clone();
        follow(&fleet, &fleet.dir(PROOFS), &mut self).await
    }

    /// Writes `value`'s proof into every webroot of `cert` and acknowledges it.
    async fn write(&mut self, cert: &str, value: &[u8]) {
        let Some(t) = self.targets.get(cert) else {
            // Not a certificate this host serves (or not by FILE): nothing to do.
            return;
        };
        let proof = match serde_json::from_slice::<Proof>(value) {
            Ok(p) => p,
            Err(e) => return refused(self.fleet.node(), cert, None, &format!("not a proof: {e}")),
        };
        if self.written.get(cert).map(|(o, _)| *o) == Some(proof.order_id) {
            return;
        }
        // The order's names must be this host's: a proof published from another
        // configuration is not written here (the domain itself is checked by `present`).
        let same = |a: &[String], b: &[String]| {
            let mut a: Vec<_> = a.iter().map(|d| d.to_ascii_lowercase()).collect();
            let mut b: Vec<_> = b.iter().map(|d| d.to_ascii_lowercase()).collect();
            a.sort();
            b.sort();
            a == b
        };
        if !same(&proof.domains, &t.domains) {
            return refused(
                self.fleet.node(),
                cert,
                Some(proof.order_id),
                &format!(
                    "the order names {:?}, this host's configuration {:?}",
                    proof.domains, t.domains
                ),
            );
        }
        let mut paths = Vec::new();
        for webroot in &t.webroots {
            let written = file::target(webroot, &proof.uri)
                .and_then(|path| file::claim(&path, cert).map(|_| path))
                .and_then(|path| {
                    file::present(
                        webroot,
                        &proof.domain,
                        &proof.uri,
                        &proof.content,
                        &t.domains,
                    )
                    .map(|_| path)
                });
            match written {
                Ok(p) => paths.push(p),
                Err(e) => {
                    // No half-written proof stays behind: the webroots done so far are undone.
                    for p in &paths {
                        let _ = file::cleanup(p);
                        file::release(p, cert);
                    }
                    // Taking turns on a shared webroot is routine, as on one host: not an
                    // error, and written as soon as the other proof is removed.
                    if matches!(e, crate::validation::ValidationError::Busy(_)) {
                        tracing::debug!(cert = %cert, order_id = proof.order_id, reason = %e,
                            "the proof waits for the webroot's proof file");
                        self.waiting.insert(cert.to_string(), value.to_vec());
                        return;
                    }
                    return refused(
                        self.fleet.node(),
                        cert,
                        Some(proof.order_id),
                        &e.to_string(),
                    );
                }
            }
        }
        self.waiting.remove(cert);
        tracing::info!(event = "fleet.proof_written", cert = %cert, order_id = proof.order_id,
            files = paths.len(), "wrote the fleet's proof into this host's webroot");
        self.written
            .insert(cert.to_string(), (proof.order_id, paths));
        let ack = format!("{}{cert}/{}", self.fleet.dir(ACKS), self.fleet.node());
        let order = proof.order_id.to_string();
        let r = self
            .fleet
            .call_idempotent(|mut c| {
                let (ack, order) = (ack.clone(), order.clone());
                async move { c.put(ack, order, None).await }
            })
            .await;
        if let Err(e) = r {
            // Acknowledged again at the next read of everything.
            tracing::warn!(event = "fleet.watch_failed", cert = %cert, error = %e,
                "could not acknowledge the proof");
            self.written.remove(cert);
        }
    }

    /// Removes `cert`'s proof files from this host, then writes the proofs that waited for
    /// them.
    async fn remove_and_retry(&mut self, cert: &str) {
        self.waiting.remove(cert);
        if !self.remove(cert) {
            return;
        }
        let waiting: Vec<(String, Vec<u8>)> = self.waiting.drain().collect();
        for (c, v) in waiting {
            self.write(&c, &v).await;
        }
    }

    /// Removes `cert`'s proof files from this host; false when it had none.
    fn remove(&mut self, cert: &str) -> bool {
        let Some((order_id, paths)) = self.written.remove(cert) else {
            return false;
        };
        for p in &paths {
            if let Err(e) = file::cleanup(p) {
                tracing::warn!(event = "fleet.proof_refused", node = %self.fleet.node(), cert = %cert, error = %e,
                    "could not remove the proof file");
            }
            file::release(p, cert);
        }
        tracing::info!(event = "fleet.proof_removed", cert = %cert, order_id,
            "removed the fleet's proof from this host's webroot");
        true
    }
}

fn refused(node: &str, cert: &str, order_id: Option<u64>, why: &str) {
    tracing::error!(event = "fleet.proof_refused", node = %node, cert = %cert, order_id = ?order_id,
        reason = %why, "a published proof was not written on this host");
}

impl Follower for ProofHost {
    async fn resync(&mut self, all: Vec<(String, Vec<u8>, i64)>) {
        let gone: Vec<String> = self
            .written
            .keys()
            .filter(|c| !all.iter().any(|(n, _, _)| n == *c))
            .cloned()
            .collect();
        for c in gone {
            self.remove(&c);
        }
        self.waiting
            .retain(|c, _| all.iter().any(|(n, _, _)| n == c));
        for (cert, value, _) in all {
            self.write(&cert, &value).await;
        }
    }

    async fn put(&mut self, name: String, value: Vec<u8>, _version: i64) {
        self.write(&name, &value).await
    }

    async fn delete(&mut self, name: String) {
        self.remove_and_retry(&name).await
    }
}
