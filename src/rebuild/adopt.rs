//! Whether the live set of one certificate can stand in for a lost record: it must be valid
//! and match the configuration (names, key and certificate, not expired, key type; product
//! and certificate as its manifest says). Reads only.
//!
//! A version that `live` does not name stands in too ([`newest_version`]) when it is newer
//! than the live set, or the live set is missing or refused: a swap cut short by a crash
//! leaves an issued, paid set there, and ordering again would pay twice.
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::config::{Certificate, KeyKind};
use crate::deploy::{self, LiveManifest, Manifest, PemSet};
use crate::lifecycle::schedule;
use crate::store::CertRecord;
use cas_api::model::{is_free_product, OrderId};

/// What a live set is worth to a certificate without a usable record.
#[derive(Debug)]
pub enum Verdict {
    /// Adopt it: the record it stands for (deployed, renewal scheduled), and whether a
    /// manifest vouched for it (a manifest means a record existed once).
    Adopt {
        record: Box<CertRecord>,
        manifest: bool,
    },
    /// A set is there but is not adopted, for this reason; the normal path runs.
    Refused(String),
    /// No live set: the normal path runs.
    Nothing,
}

/// The key type `kind` makes, as [`deploy::key_type`] names it; `None` when CAS makes the key
/// (any type it chose is fine).
fn expected_key(kind: KeyKind) -> Option<(&'static str, usize)> {
    match kind {
        KeyKind::EcdsaP256 => Some(("ec", 256)),
        KeyKind::EcdsaP384 => Some(("ec", 384)),
        KeyKind::Rsa2048 => Some(("rsa", 2048)),
        KeyKind::Rsa3072 => Some(("rsa", 3072)),
        KeyKind::Rsa4096 => Some(("rsa", 4096)),
        KeyKind::Cas => None,
    }
}

/// Judges the live set of `cert` under `output_dir` at `now`.
pub fn judge(cert: &Certificate, output_dir: &Path, now: DateTime<Utc>, jitter01: f64) -> Verdict {
    match judge_inner(cert, output_dir, now, jitter01) {
        Ok(v) => v,
        Err(e) => Verdict::Refused(e.to_string()),
    }
}

fn judge_inner(
    cert: &Certificate,
    output_dir: &Path,
    now: DateTime<Utc>,
    jitter01: f64,
) -> Result<Verdict, deploy::DeployError> {
    let manifest = match deploy::live_manifest_state(output_dir, &cert.name)? {
        LiveManifest::Refused(why) => return Ok(Verdict::Refused(format!("manifest: {why}"))),
        LiveManifest::Trusted(m) => Some(m),
        LiveManifest::Absent => None,
    };
    let Some(set) = deploy::read_live_set(output_dir, &cert.name)? else {
        return Ok(Verdict::Nothing);
    };
    // Directories others could write to, or one that is not ours, vouch for nothing.
    deploy::preflight(output_dir, &cert.name)?;
    judge_set(cert, manifest, set, now, jitter01)
}

/// The checks of an issued certificate, for a set found on disk (live or not) and the
/// manifest of its version, if any.
fn judge_set(
    cert: &Certificate,
    manifest: Option<Manifest>,
    set: PemSet,
    now: DateTime<Utc>,
    jitter01: f64,
) -> Result<Verdict, deploy::DeployError> {
    let info = deploy::check(&set, &cert.domains, now)?;
    if let Some(want) = expected_key(cert.key) {
        let got = deploy::key_type(&set.cert_pem)?;
        if got != Some(want) {
            return Ok(Verdict::Refused(format!(
                "its key is {got:?}, the configuration asks for {want:?}"
            )));
        }
    }
    let (order_id, last_success) = match &manifest {
        Some(m) => {
            if !m.cert_sha256.eq_ignore_ascii_case(&info.fingerprint_sha256) {
                return Ok(Verdict::Refused(
                    "the manifest names another certificate".into(),
                ));
            }
            if m.product != cert.product_code {
                return Ok(Verdict::Refused(format!(
                    "it was ordered as product {:?}, the configuration asks for {:?}",
                    m.product, cert.product_code
                )));
            }
            (OrderId(m.order_id), m.deployed_at)
        }
        // A paid certificate renews from its order, which only a manifest names.
        None if !is_free_product(&cert.product_code) => {
            return Ok(Verdict::Refused(
                "no manifest names the paid order it came from".into(),
            ))
        }
        None => (OrderId(0), now),
    };
    Ok(Verdict::Adopt {
        record: Box::new(record(cert, set, info, order_id, last_success, jitter01)),
        manifest: manifest.is_some(),
    })
}

/// The record of a deployed set, its renewal time computed as after a deployment.
fn record(
    cert: &Certificate,
    set: PemSet,
    info: deploy::CertInfo,
    order_id: OrderId,
    last_success: DateTime<Utc>,
    jitter01: f64,
) -> CertRecord {
    let plan = schedule::renew_at(info.not_before, info.not_after, cert.renew_before, jitter01);
    let mut rec = CertRecord::new(&cert.name, cert.domains.clone());
    rec.set_deployed(order_id, info, set, last_success, plan.at);
    rec
}

/// A version that `live` does not name, adopted in the live set's place.
#[derive(Debug)]
pub struct FromVersion {
    /// The record it stands for (deployed, renewal scheduled).
    pub record: Box<CertRecord>,
    /// Its name under `versions/`.
    pub version: String,
}

/// The newest version of `cert` that `live` does not name and that can stand in for a lost
/// record: a trusted manifest naming its order (a version without one names no order), files
/// passing the checks of [`judge`], and a certificate expiring after `newer_than` (the live
/// set's, when that one is adoptable). Also returns why newer versions were refused.
pub fn newest_version(
    cert: &Certificate,
    output_dir: &Path,
    now: DateTime<Utc>,
    newer_than: Option<DateTime<Utc>>,
    jitter01: f64,
) -> (Option<FromVersion>, Vec<String>) {
    let mut refused = Vec::new();
    let versions = match deploy::preflight(output_dir, &cert.name)
        .and_then(|()| deploy::versions::others(output_dir, &cert.name))
    {
        Ok(v) => v,
        Err(e) => return (None, vec![e.to_string()]),
    };
    let mut candidates = Vec::new();
    for v in versions {
        match v.manifest {
            LiveManifest::Trusted(m) if newer_than.is_none_or(|t| m.not_after > t) => {
                candidates.push((m, v.set, v.name));
            }
            LiveManifest::Trusted(_) | LiveManifest::Absent => {}
            LiveManifest::Refused(why) => refused.push(format!("versions/{}: {why}", v.name)),
        }
    }
    // The certificate that lasts longest is the newest.
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0.not_after));
    for (m, set, name) in candidates {
        let Some(set) = set else {
            refused.push(format!("versions/{name}: its files are incomplete"));
            continue;
        };
        match judge_set(cert, Some(m), set, now, jitter01) {
            Ok(Verdict::Adopt { record, .. }) => {
                return (
                    Some(FromVersion {
                        record,
                        version: name,
                    }),
                    refused,
                )
            }
            Ok(Verdict::Refused(why)) => refused.push(format!("versions/{name}: {why}")),
            Ok(Verdict::Nothing) => {}
            Err(e) => refused.push(format!("versions/{name}: {e}")),
        }
    }
    (None, refused)
}
