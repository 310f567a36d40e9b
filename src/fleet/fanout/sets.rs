//! Issued sets on every host. The owner publishes each issued set under
//! `<prefix>/sets/<cert>` ([`publish_set`], fenced): chain, order, and the private key sealed
//! (`fleet::seal`) bound to the certificate's name and the key's etcd version, which is the
//! set's version. Every host runs a [`SetHost`]: it opens the key, checks the set exactly as
//! an issued certificate is checked on one host (`deploy::check`: SANs = this host's
//! configuration, key match, dates, chain), installs it atomically in its own `output_dir`
//! (`deploy::install`), runs its own reload hook, and reports the version it has live under
//! `<prefix>/live/<cert>/<node>`. A set that fails a check is refused (`fleet.set_refused`)
//! and never deployed; the host keeps serving what it had.
use std::collections::HashMap;
use std::path::PathBuf;

use chrono::Utc;
use etcd_client::TxnOp;
use serde::{Deserialize, Serialize};

use super::follow::{follow, Follower};
use super::{fenced, read_dir, read_one};
use crate::config::{Certificate, FileOwnership, Hook};
use crate::deploy::{self, Origin, PemSet};
use crate::fleet::keyfile::FleetKey;
use crate::fleet::seal::{Binding, Sealer};
use crate::fleet::{Fleet, FleetError, Ownership};
use cas_api::secret::Secret;

const SETS: &str = "sets";
const LIVE: &str = "live";
/// The seal's slot for a published set's key.
const SLOT: &str = "set_key";

/// An issued set, as the owner has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedSet {
    pub order_id: u64,
    pub product: String,
    pub cert_pem: String,
    pub chain_pem: String,
    pub key_pem: Secret,
}

/// `<prefix>/sets/<cert>`'s value: the key sealed, never in clear.
#[derive(Debug, Serialize, Deserialize)]
struct Published {
    version: i64,
    order_id: u64,
    product: String,
    cert_pem: String,
    chain_pem: String,
    key_sealed: String,
}

/// Publishes `set` for `owner`'s certificate; returns its version. Fenced, and refused with
/// [`FleetError::Conflict`] when another set was published since this host read the version.
pub async fn publish_set(
    fleet: &Fleet,
    key: &FleetKey,
    owner: &Ownership,
    set: &IssuedSet,
) -> Result<i64, FleetError> {
    let cert = owner.cert();
    let k = format!("{}{cert}", fleet.dir(SETS));
    let r = fleet
        .call_idempotent(|mut c| {
            let k = k.clone();
            async move {
                c.get(k, Some(etcd_client::GetOptions::new().with_keys_only()))
                    .await
            }
        })
        .await?;
    let before = r.kvs().first().map_or(0, |kv| kv.version());
    // etcd counts a key's versions from 1; the put makes the next one.
    let version = before + 1;
    let sealed = Sealer::new(key).seal(
        Binding {
            name: cert,
            version,
            slot: SLOT,
        },
        &set.key_pem,
    )?;
    let value = serde_json::to_vec(&Published {
        version,
        order_id: set.order_id,
        product: set.product.clone(),
        cert_pem: set.cert_pem.clone(),
        chain_pem: set.chain_pem.clone(),
        key_sealed: sealed,
    })
    .map_err(|e| FleetError::Unexpected {
        cert: cert.to_string(),
        what: format!("a set that does not encode: {e}"),
    })?;
    fenced(
        fleet,
        owner,
        Some((&k, before)),
        vec![TxnOp::put(k.clone(), value, None)],
    )
    .await?;
    Ok(version)
}

/// The fleet's view of one certificate: the published version and, per node, the version it
/// reports live (sorted by node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetView {
    pub published: Option<i64>,
    pub live: Vec<(String, i64)>,
}

/// What etcd says of `cert` (for `status`).
pub async fn fleet_view(fleet: &Fleet, cert: &str) -> Result<FleetView, FleetError> {
    let published = read_one(fleet, &format!("{}{cert}", fleet.dir(SETS)))
        .await?
        .map(|(_, version)| version);
    let (_, live) = read_dir(fleet, &format!("{}{cert}/", fleet.dir(LIVE))).await?;
    let mut live: Vec<(String, i64)> = live
        .into_iter()
        .filter_map(|(node, v, _)| Some((node, std::str::from_utf8(&v).ok()?.parse().ok()?)))
        .collect();
    live.sort();
    Ok(FleetView { published, live })
}

/// Where and how this host deploys one certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct SetTarget {
    pub cert: String,
    /// This host's configured names: a set must name exactly these.
    pub domains: Vec<String>,
    pub output_dir: PathBuf,
    pub files: FileOwnership,
    pub keep_versions: usize,
    pub reload: Option<Hook>,
}

impl SetTarget {
    /// One target per certificate of this host's configuration.
    pub fn from_config(output_dir: &std::path::Path, certs: &[Certificate]) -> Vec<SetTarget> {
        certs
            .iter()
            .map(|c| SetTarget {
                cert: c.name.clone(),
                domains: c.domains.clone(),
                output_dir: output_dir.to_path_buf(),
                files: c.files.clone(),
                keep_versions: c.keep_versions,
                reload: c.reload.clone(),
            })
            .collect()
    }
}

/// This host's set watcher.
pub struct SetHost {
    fleet: Fleet,
    sealer: Sealer,
    targets: HashMap<String, SetTarget>,
    /// The version each certificate has live here (deployed or found live).
    live: HashMap<String, i64>,
}

impl std::fmt::Debug for SetHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetHost")
            .field("fleet", &self.fleet)
            .field("live", &self.live)
            .finish()
    }
}

impl SetHost {
    pub fn new(fleet: Fleet, key: &FleetKey, targets: Vec<SetTarget>) -> SetHost {
        SetHost {
            fleet,
            sealer: Sealer::new(key),
            targets: targets.into_iter().map(|t| (t.cert.clone(), t)).collect(),
            live: HashMap::new(),
        }
    }

    /// Follows the published sets for ever; spawn it and abort the task to stop.
    pub async fn run(mut self) {
        let fleet = self.fleet.clone();
        follow(&fleet, &fleet.dir(SETS), &mut self).await
    }

    async fn apply(&mut self, cert: &str, value: &[u8], version: i64) {
        let Some(t) = self.targets.get(cert).cloned() else {
            return;
        };
        if self.live.get(cert) == Some(&version) {
            return;
        }
        let (set, origin) = match open_set(&self.sealer, cert, value, version) {
            Ok(s) => s,
            Err(why) => return refused(self.fleet.node(), cert, version, &why),
        };
        // The same checks as a set issued to this host: names, key, dates, chain.
        let info = match deploy::check(&set, &t.domains, Utc::now()) {
            Ok(i) => i,
            Err(e) => return refused(self.fleet.node(), cert, version, &e.to_string()),
        };
        match install_unless_newer(&t, cert, &set, &info, &origin) {
            Err(e) => {
                tracing::error!(event = "fleet.set_failed", cert = %cert, version, error = %e,
                    "could not deploy the fleet's set on this host");
                return;
            }
            // Something newer is live here (the owner's own install of a set it has not
            // published yet): not taken down, and this version not reported.
            Ok(Installed::Newer) => return,
            Ok(Installed::Already) => {}
            Ok(Installed::Now) => {
                tracing::info!(event = "fleet.set_deployed", cert = %cert, version,
                    order_id = origin.order_id, "deployed the fleet's set on this host");
                if let Some(hook) = &t.reload {
                    let env = crate::hook::reload_env(&t.output_dir, cert, &t.domains);
                    match crate::hook::run(hook, &env).await {
                        Ok(_) => tracing::info!(event = "hook.ok", cert = %cert, "reload hook ran"),
                        Err(e) => tracing::error!(event = "hook.failed", cert = %cert, error = %e,
                            "reload hook failed"),
                    }
                }
            }
        }
        self.live.insert(cert.to_string(), version);
        self.report(cert, version).await;
    }

    /// `<prefix>/live/<cert>/<node>` = `version`.
    async fn report(&self, cert: &str, version: i64) {
        let key = format!("{}{cert}/{}", self.fleet.dir(LIVE), self.fleet.node());
        let r = self
            .fleet
            .call_idempotent(|mut c| {
                let key = key.clone();
                async move { c.put(key, version.to_string(), None).await }
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(event = "fleet.watch_failed", cert = %cert, error = %e,
                "could not report the live version");
        }
    }
}

/// What [`install_unless_newer`] did.
enum Installed {
    Now,
    /// The set was live already.
    Already,
    /// A set that expires later is live: left as it is.
    Newer,
}

/// Installs `set` unless it, or a set expiring later, is live already; under the install
/// lock the owner's lifecycle holds too (`deploy::install_lock`).
fn install_unless_newer(
    t: &SetTarget,
    cert: &str,
    set: &PemSet,
    info: &deploy::CertInfo,
    origin: &Origin,
) -> Result<Installed, deploy::DeployError> {
    let lock = deploy::install_lock(cert);
    let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(live) = deploy::read_live_set(&t.output_dir, cert)? {
        if live == *set {
            return Ok(Installed::Already);
        }
        let newer = deploy::check(&live, &t.domains, Utc::now())
            .is_ok_and(|l| l.not_after > info.not_after);
        if newer {
            return Ok(Installed::Newer);
        }
    }
    deploy::install(&t.output_dir, cert, set, &t.files, t.keep_versions, origin)?;
    Ok(Installed::Now)
}

/// The order of the set published for `cert`, if any (what the owner compares with its
/// record to know whether its deployed set still has to be published).
pub async fn published_order(fleet: &Fleet, cert: &str) -> Result<Option<u64>, FleetError> {
    Ok(read_one(fleet, &format!("{}{cert}", fleet.dir(SETS)))
        .await?
        .and_then(|(v, _)| serde_json::from_slice::<Published>(&v).ok())
        .map(|p| p.order_id))
}

/// The set in `value` at etcd `version`, its key opened; why not, in words.
fn open_set(
    sealer: &Sealer,
    cert: &str,
    value: &[u8],
    version: i64,
) -> Result<(PemSet, Origin), String> {
    let p: Published =
        serde_json::from_slice(value).map_err(|e| format!("not a published set: {e}"))?;
    if p.version != version {
        return Err(format!(
            "says version {} but is etcd's version {version}",
            p.version
        ));
    }
    // Bound to this certificate and this version: a key moved from another certificate
    // or replayed from an older put does not open.
    let key_pem = sealer
        .open(
            Binding {
                name: cert,
                version,
                slot: SLOT,
            },
            &p.key_sealed,
        )
        .map_err(|e| e.to_string())?;
    Ok((
        PemSet {
            cert_pem: p.cert_pem,
            chain_pem: p.chain_pem,
            key_pem,
        },
        Origin {
            order_id: p.order_id,
            product: p.product,
        },
    ))
}

fn refused(node: &str, cert: &str, version: i64, why: &str) {
    tracing::error!(event = "fleet.set_refused", node = %node, cert = %cert, version, reason = %why,
        "a published set failed this host's checks; not deployed, the live set stays");
}

impl Follower for SetHost {
    async fn resync(&mut self, all: Vec<(String, Vec<u8>, i64)>) {
        for (cert, value, version) in all {
            self.apply(&cert, &value, version).await;
        }
    }

    async fn put(&mut self, name: String, value: Vec<u8>, version: i64) {
        self.apply(&name, &value, version).await
    }

    /// A set is never taken down because its key went: the host keeps serving it.
    async fn delete(&mut self, _name: String) {}
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn value(s: &Sealer, cert: &str, version: i64, field_version: i64) -> Vec<u8> {
        let key_sealed = s
            .seal(
                Binding {
                    name: cert,
                    version,
                    slot: SLOT,
                },
                &Secret::new("-----BEGIN PRIVATE KEY-----\nK\n-----END PRIVATE KEY-----\n"),
            )
            .unwrap();
        serde_json::to_vec(&Published {
            version: field_version,
            order_id: 9,
            product: "p".into(),
            cert_pem: "CERT".into(),
            chain_pem: String::new(),
            key_sealed,
        })
        .unwrap()
    }

    /// A set opens only as the certificate and etcd version it was sealed for: not replayed
    /// at a later version (with or without its version field changed), not under another
    /// certificate's name, not with a key in clear, not under another fleet key.
    #[test]
    fn a_set_opens_only_where_and_when_it_was_published() {
        let s = Sealer::new(&FleetKey::from_bytes([1; 32]));
        let (set, origin) = open_set(&s, "www", &value(&s, "www", 3, 3), 3).unwrap();
        assert!(set.key_pem.expose().contains("PRIVATE KEY"));
        assert_eq!(origin.order_id, 9);
        // Put again later (etcd version 4): the field says 3.
        assert!(open_set(&s, "www", &value(&s, "www", 3, 3), 4).is_err());
        // The field rewritten to match: the seal is bound to 3.
        assert!(open_set(&s, "www", &value(&s, "www", 3, 4), 4).is_err());
        // Sealed for another certificate.
        assert!(open_set(&s, "www", &value(&s, "api", 3, 3), 3).is_err());
        // Another fleet key.
        let other = Sealer::new(&FleetKey::from_bytes([2; 32]));
        assert!(open_set(&other, "www", &value(&s, "www", 3, 3), 3).is_err());
        // A key in clear where the sealed one belongs.
        let mut clear: serde_json::Value = serde_json::from_slice(&value(&s, "www", 3, 3)).unwrap();
        clear["key_sealed"] = "-----BEGIN PRIVATE KEY-----".into();
        let err = open_set(&s, "www", &serde_json::to_vec(&clear).unwrap(), 3).unwrap_err();
        assert!(!err.contains("BEGIN"), "{err}");
    }
}
