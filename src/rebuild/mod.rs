//! The order database is a cache: at start, before anything is ordered, the store is checked
//! against what is deployed, and rebuilt from the deployed sets where it lost something.
//!
//! - A database that fails to open, or holds a record that does not decode, is moved aside
//!   (`<state_dir>/db.corrupt-<time>`, never deleted) and a fresh one starts with every record
//!   that could still be read.
//! - A live set whose manifest names a certificate the record does not know (record missing,
//!   or older than the manifest) means the store lost data; the database is moved aside too.
//! - A certificate without a usable record whose live set is valid and matches the
//!   configuration is adopted as deployed ([`adopt`]): no order, no hook. The same holds for a
//!   first start on a host whose sets were made before manifests.
//!
//! One `store.recovered` event (error) says what was lost and rebuilt; one `cert.adopted`
//! event per adopted certificate.
//!
//! Every certificate that had no usable record (lost, or a first start) then waits for the
//! CAS pass ([`cas`], run by the daemon): nothing is ordered for it before CAS was asked which
//! orders it already has. Which certificates wait is written to `<state_dir>/cas-pass.pending`
//! before any record is, so a crash before the pass does not forget them.
pub mod adopt;
pub mod cas;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use crate::config::{Certificate, Config};
use crate::store::{self, CertRecord, Store, StoreError};
use adopt::Verdict;
use cas_api::model::OrderId;

/// What the rebuild would do with one configured certificate.
#[derive(Debug)]
pub enum Action {
    /// Its record is usable: nothing to do.
    Keep,
    /// Adopt a deployed set as deployed (the new record). `lost`: a manifest shows the store
    /// once had a record for it. `version`: the set is `versions/<v>`, which `live` does not
    /// name (a swap cut short); the daemon makes it live at start (the record's set is
    /// restored) and runs the reload hook.
    Adopt {
        record: Box<CertRecord>,
        lost: bool,
        version: Option<String>,
    },
    /// No usable record and no set to adopt: the normal path orders (with the reason a set
    /// that is there was refused, if any).
    Order { refused: Option<String> },
    /// The record is older than the live set, but an attempt is in flight (the lifecycle
    /// finishes it from its order), or the set is refused: left alone.
    Stale,
}

/// The rebuild's plan: one action per configured certificate, in configuration order.
#[derive(Debug, Default)]
pub struct Plan {
    pub actions: Vec<(String, Action)>,
}

impl Plan {
    /// Names the store lost (a manifest vouches for a set the record does not know).
    pub fn lost(&self) -> Vec<&str> {
        self.actions
            .iter()
            .filter(|(_, a)| matches!(a, Action::Adopt { lost: true, .. } | Action::Stale))
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

/// Decides, for every configured certificate, what the rebuild does; `get` reads a record
/// (`None` when missing or undecodable). Changes nothing.
pub fn plan(config: &Config, get: impl Fn(&str) -> Option<CertRecord>, now: DateTime<Utc>) -> Plan {
    plan_certs(&config.certificates, &config.output_dir, get, now)
}

/// [`plan`] for some of the configured certificates.
fn plan_certs<'a>(
    certs: impl IntoIterator<Item = &'a Certificate>,
    output_dir: &Path,
    get: impl Fn(&str) -> Option<CertRecord>,
    now: DateTime<Utc>,
) -> Plan {
    let mut plan = Plan::default();
    for cert in certs {
        let rec = get(&cert.name);
        let verdict = || {
            found(
                cert,
                adopt::judge(cert, output_dir, now, rand::random::<f64>()),
                output_dir,
                now,
            )
        };
        let action = match rec {
            None => verdict(),
            Some(rec) => match newer_live_order(&rec, output_dir) {
                None => Action::Keep,
                // An attempt in flight (a crash after the install, or a record rolled back to
                // one): the lifecycle finishes it from its order, and cleans up its proof.
                Some(_) if !rec.phase.is_resting() => Action::Stale,
                Some(_) => match verdict() {
                    Action::Adopt {
                        mut record,
                        version,
                        ..
                    } => {
                        // What the old record knew of orders still matters to adoption.
                        record.orders_to_clean = rec.orders_to_clean.clone();
                        for id in &rec.retired_orders {
                            record.retire(*id);
                        }
                        if let Some(d) = &rec.deployed {
                            record.retire(d.order_id);
                        }
                        // The set changed after the record was written: whether its reload
                        // hook ran is unknown, and one reload too many is harmless.
                        record.hook_pending = cert.reload.is_some();
                        Action::Adopt {
                            record,
                            lost: true,
                            version,
                        }
                    }
                    _ => Action::Stale,
                },
            },
        };
        plan.actions.push((cert.name.clone(), action));
    }
    plan
}

/// What to do with what is deployed for a certificate without a usable record, given the
/// verdict on its live set: a version `live` does not name that is newer than the live set
/// (or stands in for a live set that is missing or refused) wins, since a swap cut short by a
/// crash leaves its paid certificate there; otherwise the live set's verdict stands.
fn found(cert: &Certificate, live: Verdict, output_dir: &Path, now: DateTime<Utc>) -> Action {
    let live_expires = match &live {
        Verdict::Adopt { record, .. } => record.deployed.as_ref().map(|d| d.info.not_after),
        _ => None,
    };
    let (newer, refused) =
        adopt::newest_version(cert, output_dir, now, live_expires, rand::random::<f64>());
    if let Some(v) = newer {
        let mut record = v.record;
        // The live set is replaced: its order is done with.
        if let Verdict::Adopt { record: old, .. } = &live {
            if let Some(d) = &old.deployed {
                record.retire(d.order_id);
            }
        }
        // The set was never live: the server has not loaded it.
        record.hook_pending = cert.reload.is_some();
        return Action::Adopt {
            record,
            lost: true,
            version: Some(v.version),
        };
    }
    match live {
        Verdict::Adopt { record, manifest } => Action::Adopt {
            record,
            lost: manifest,
            version: None,
        },
        Verdict::Refused(why) => Action::Order {
            refused: Some(
                std::iter::once(why)
                    .chain(refused)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        },
        Verdict::Nothing if refused.is_empty() => Action::Order { refused: None },
        Verdict::Nothing => Action::Order {
            refused: Some(refused.join("; ")),
        },
    }
}

/// The order of the live set, when its manifest names a certificate newer than the one `rec`
/// deployed (the record is older than what is deployed).
fn newer_live_order(rec: &CertRecord, output_dir: &Path) -> Option<OrderId> {
    let Ok(crate::deploy::LiveManifest::Trusted(m)) =
        crate::deploy::live_manifest_state(output_dir, &rec.name)
    else {
        return None;
    };
    let newer = match &rec.deployed {
        None => true,
        Some(d) => {
            !d.info
                .fingerprint_sha256
                .eq_ignore_ascii_case(&m.cert_sha256)
                && d.info.not_after < m.not_after
        }
    };
    newer.then_some(OrderId(m.order_id))
}

/// What [`open`] found and did, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Where the damaged database was moved.
    pub moved_aside: Option<PathBuf>,
    /// Why it was moved (open error, undecodable records, lost records).
    pub damage: Vec<String>,
    /// Certificates the store had lost.
    pub lost: Vec<String>,
    /// Certificates adopted from their live sets.
    pub adopted: Vec<String>,
    /// Certificates that had no usable record: the CAS pass must run for them before anything
    /// is ordered.
    pub cas_pass: Vec<String>,
}

impl Recovery {
    /// Whether the store lost something (what `store.recovered` reports).
    pub fn is_loss(&self) -> bool {
        self.moved_aside.is_some() || !self.lost.is_empty()
    }

    /// One line for `status`.
    pub fn summary(&self) -> String {
        format!(
            "the state store lost data ({}); lost: {:?}; rebuilt from the deployed files: \
             {:?}; damaged database kept at {}",
            self.damage.join("; "),
            self.lost,
            self.adopted,
            self.moved_aside
                .as_ref()
                .map_or("(none)".into(), |p| p.display().to_string())
        )
    }
}

/// The note `status` shows after a recovery, until the next successful deploy.
const NOTE: &str = "recovered.txt";

/// The recovery note in `state_dir`, if the store lost something since the last deploy.
pub fn note(state_dir: &Path) -> Option<String> {
    std::fs::read_to_string(state_dir.join(NOTE)).ok()
}

/// Forgets the recovery note (a deployment succeeded: the store is whole again).
pub fn clear_note(state_dir: &Path) {
    let _ = std::fs::remove_file(state_dir.join(NOTE));
}

fn write_note(state_dir: &Path, rec: &Recovery) {
    let text = format!(
        "{}: {}\n",
        Utc::now().format("%Y-%m-%d %H:%M:%S UTC"),
        rec.summary()
    );
    if let Err(e) = write_private(&state_dir.join(NOTE), &text) {
        warn!(error = %e, "cannot write the recovery note for status");
    }
}

/// Writes `text` to `path` (0600, replaced whole, flushed).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// The certificates still waiting for the CAS pass, one name a line.
const PASS_PENDING: &str = "cas-pass.pending";

fn pending_pass(state_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(state_dir.join(PASS_PENDING))
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Writes the waiting list (removed when empty).
fn write_pending(state_dir: &Path, names: &[String]) -> Result<(), StoreError> {
    let path = state_dir.join(PASS_PENDING);
    if names.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Io {
                op: "remove",
                path,
                source: e,
            }),
            _ => Ok(()),
        };
    }
    write_private(&path, &(names.join("\n") + "\n")).map_err(|source| StoreError::Io {
        op: "write",
        path,
        source,
    })
}

/// The CAS pass ran for `names`: they leave the waiting list (others, added by a reload while
/// it ran, stay).
pub fn pass_done(state_dir: &Path, names: &[String]) {
    let done: std::collections::HashSet<&String> = names.iter().collect();
    let left: Vec<String> = pending_pass(state_dir)
        .into_iter()
        .filter(|n| !done.contains(n))
        .collect();
    if let Err(e) = write_pending(state_dir, &left) {
        warn!(error = %e, "cannot update the CAS pass's waiting list");
    }
}

/// Certificates added by a configuration reload that have no record go through the rebuild
/// as at start (the rule in the README's "Lost or damaged state"): a valid matching set on
/// disk is adopted (`cert.adopted`), and every one of them then waits for a CAS pass (this
/// run's, if it is still pending, running or failed; a new one otherwise) before anything is
/// ordered. They join the waiting list on disk before any record is written. Returns who
/// waits; the caller flushes the store.
pub fn newcomers(
    config: &Config,
    store: &Store,
    added: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut certs = Vec::new();
    for c in &config.certificates {
        if added.contains(&c.name) && store.get(&c.name)?.is_none() {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Ok(Vec::new());
    }
    let plan = plan_certs(certs, &config.output_dir, |_| None, Utc::now());
    let waiting: Vec<String> = plan.actions.iter().map(|(n, _)| n.clone()).collect();
    let mut list = pending_pass(&config.state_dir);
    list.extend(
        waiting
            .iter()
            .filter(|n| !list.contains(n))
            .cloned()
            .collect::<Vec<_>>(),
    );
    write_pending(&config.state_dir, &list)?;
    apply(store, plan)?;
    Ok(waiting)
}

/// Opens the store for the daemon, recovering from damage and rebuilding lost records from
/// the deployed sets (see the module docs). Another daemon's lock is still an error.
pub fn open(config: &Config) -> Result<(Store, Recovery), StoreError> {
    let state_dir = &config.state_dir;
    let existed = store::exists(state_dir);
    let mut rec = Recovery::default();
    let mut store = match open_catching(state_dir) {
        Ok(s) => s,
        Err(e @ StoreError::Locked(_)) => return Err(e),
        Err(e) => {
            rec.damage.push(format!("cannot open: {e}"));
            rec.moved_aside = Some(move_aside(state_dir)?);
            Store::open(state_dir)?
        }
    };
    // Every record, decoded once: the good ones survive a move aside.
    let mut good = Vec::new();
    for r in store.list()? {
        match r {
            Ok(r) => good.push(r),
            // A newer daemon's record is not damage: leave the database alone.
            Err(e @ StoreError::TooNew { .. }) => return Err(e),
            Err(e) => rec.damage.push(e.to_string()),
        }
    }
    // By name: a linear search per certificate is quadratic at thousands of them.
    let by_name: std::collections::HashMap<&str, &CertRecord> =
        good.iter().map(|r| (r.name.as_str(), r)).collect();
    let plan = plan(config, |n| by_name.get(n).map(|r| (*r).clone()), Utc::now());
    rec.lost = plan.lost().into_iter().map(str::to_string).collect();
    if !rec.lost.is_empty() && existed {
        rec.damage
            .push("records missing or older than the deployed sets' manifests".into());
    }
    if existed && rec.moved_aside.is_none() && !rec.damage.is_empty() {
        drop(store);
        rec.moved_aside = Some(move_aside(state_dir)?);
        store = Store::open(state_dir)?;
        for r in &good {
            store.put(r)?;
        }
    }
    // Who waits for the CAS pass: no usable record now, or still waiting since a crash.
    let earlier: std::collections::HashSet<String> = pending_pass(state_dir).into_iter().collect();
    rec.cas_pass = plan
        .actions
        .iter()
        .filter(|(n, a)| {
            matches!(a, Action::Adopt { .. } | Action::Order { .. }) || earlier.contains(n)
        })
        .map(|(n, _)| n.clone())
        .collect();
    if !rec.cas_pass.is_empty() {
        // Before any record is written: a crash now must not skip the pass at the next start.
        write_pending(state_dir, &rec.cas_pass)?;
    }
    rec.adopted = apply(&store, plan)?;
    store.flush_blocking()?;
    if rec.is_loss() {
        error!(event = "store.recovered", lost = ?rec.lost, rebuilt = ?rec.adopted,
            damage = ?rec.damage, moved_aside = ?rec.moved_aside.as_ref().map(|p| p.display().to_string()),
            "{}", rec.summary());
        write_note(state_dir, &rec);
    }
    Ok((store, rec))
}

/// Writes the plan's adopted records (not flushed) and reports what it refused; returns the
/// names adopted.
fn apply(store: &Store, plan: Plan) -> Result<Vec<String>, StoreError> {
    let mut adopted = Vec::new();
    for (name, action) in plan.actions {
        match action {
            Action::Adopt {
                record,
                lost,
                version,
            } => {
                let d = record.deployed.as_ref();
                match &version {
                    None => info!(event = "cert.adopted", source = "files", cert = %name,
                        domains = ?record.domains, order_id = ?d.map(|d| d.order_id),
                        not_after = ?d.map(|d| d.info.not_after), renew_at = %record.next_due,
                        lost, "adopted the deployed set as is: no order, no reload hook"),
                    Some(v) => info!(event = "cert.adopted", source = "files", cert = %name,
                        domains = ?record.domains, order_id = ?d.map(|d| d.order_id),
                        not_after = ?d.map(|d| d.info.not_after), renew_at = %record.next_due,
                        lost, version = %v,
                        "adopted an issued set that was never made live (a swap cut short): \
                         no order; it is made live now and the reload hook runs"),
                }
                store.put(&record)?;
                adopted.push(name);
            }
            Action::Order { refused: Some(why) } => {
                warn!(event = "cert.not_adopted", cert = %name, reason = %why,
                    "the deployed set is not adopted; the certificate is ordered as usual");
            }
            Action::Stale => {
                warn!(event = "cert.not_adopted", cert = %name,
                    "the record is older than the deployed set; its attempt in flight goes on \
                     (no new order), or the set is refused");
            }
            Action::Keep | Action::Order { refused: None } => {}
        }
    }
    Ok(adopted)
}

/// [`Store::open`], with a panic in sled over a damaged file turned into an error.
fn open_catching(state_dir: &Path) -> Result<Store, StoreError> {
    let dir = state_dir.to_path_buf();
    std::panic::catch_unwind(move || Store::open(&dir)).unwrap_or_else(|_| {
        Err(StoreError::Open {
            path: state_dir.join("db"),
            reason: "the database library panicked reading it".into(),
        })
    })
}

/// Renames `<state_dir>/db` to `<state_dir>/db.corrupt-<time>` (kept, never deleted).
fn move_aside(state_dir: &Path) -> Result<PathBuf, StoreError> {
    let from = state_dir.join("db");
    let mut to = state_dir.join(format!(
        "db.corrupt-{}",
        Utc::now().format("%Y%m%dT%H%M%SZ")
    ));
    let mut n = 1;
    while to.exists() {
        n += 1;
        to = state_dir.join(format!(
            "db.corrupt-{}-{n}",
            Utc::now().format("%Y%m%dT%H%M%SZ")
        ));
    }
    std::fs::rename(&from, &to).map_err(|source| StoreError::Io {
        op: "move aside",
        path: from,
        source,
    })?;
    Ok(to)
}
