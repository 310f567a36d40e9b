//! Which `<output_dir>/<name>` directories are ours, and the manifest that says so.
//!
//! Each version directory holds `manifest.json` (non-secret, as readable as the certificate):
//! what was deployed and from which order, enough to rebuild a lost store (issue 13). An
//! existing `<name>` directory is taken over only when it is ours (issue 18, item 6):
//! - empty, or holding nothing but an interrupted first install (`.tmp-*` entries, and a
//!   `versions/` whose versions are named and filled as we name and fill them);
//! - a version directory in it has our manifest;
//! - or it has exactly the layout versions before the manifest made: `live -> versions/<v>`
//!   with our four files there, and `privkey.pem -> live/privkey.pem` (the upgrade path; the
//!   next install adds a manifest).

use std::path::Path;

use chrono::{DateTime, Utc};

use super::dirfd::Dir;
use super::files::{FILES, TMP_PREFIX};
use super::{CertInfo, DeployError};

/// The manifest's file name inside each version directory.
pub(crate) const MANIFEST: &str = "manifest.json";

/// Where a deployed set came from: what the lifecycle knows and the files do not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The CAS order the certificate was issued for.
    pub order_id: u64,
    /// The CAS product code it was ordered as.
    pub product: String,
}

/// The contents of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// Format version of this file.
    pub format: u32,
    pub order_id: u64,
    pub product: String,
    /// SAN DNS names, lower case.
    pub domains: Vec<String>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub serial_hex: String,
    /// Hex SHA-256 of the leaf DER.
    pub cert_sha256: String,
    /// Hex SHA-256 of the key's SubjectPublicKeyInfo DER (public: identifies the key, reveals
    /// nothing of it).
    pub key_sha256: String,
    pub deployed_at: DateTime<Utc>,
}

impl Manifest {
    pub(crate) fn new(origin: &Origin, info: &CertInfo, key_sha256: String) -> Manifest {
        Manifest {
            format: 1,
            order_id: origin.order_id,
            product: origin.product.clone(),
            domains: info.names.clone(),
            not_before: info.not_before,
            not_after: info.not_after,
            serial_hex: info.serial_hex.clone(),
            cert_sha256: info.fingerprint_sha256.clone(),
            key_sha256,
            deployed_at: Utc::now(),
        }
    }
}

fn not_ours(dir: &Dir, reason: &str) -> DeployError {
    DeployError::NotOurs {
        path: dir.path().to_path_buf(),
        reason: reason.to_string(),
    }
}

fn is_tmp(n: &std::ffi::OsStr) -> bool {
    n.as_encoded_bytes().starts_with(TMP_PREFIX.as_bytes())
}

/// Refuses `dir` (an existing `<output_dir>/<name>`) unless it is ours, as the module docs
/// define it. Reads only; never changes anything.
pub(crate) fn claim(dir: &Dir) -> Result<(), DeployError> {
    let entries: Vec<_> = dir.names()?.into_iter().filter(|n| !is_tmp(n)).collect();
    if entries.is_empty() {
        return Ok(());
    }
    let Some(versions) = dir.open("versions")? else {
        return Err(not_ours(
            dir,
            "it has files but no versions/ directory of cas-certd",
        ));
    };
    // Whether every version is one an earlier cas-certd wrote (checked for the case below).
    let mut all_earlier_versions = true;
    for v in versions.names()? {
        if is_tmp(&v) {
            continue;
        }
        let Some(vd) = versions.open_quiet(&v)? else {
            all_earlier_versions = false;
            continue;
        };
        if vd.kind(MANIFEST)? == Some(rustix::fs::FileType::RegularFile) {
            return Ok(());
        }
        all_earlier_versions &= v.to_str().is_some_and(is_version_name) && {
            let mut names = vd.names()?;
            names.sort();
            names == FILES
        };
    }
    if entries.len() == 1 && all_earlier_versions {
        // Only `versions/` holding temporaries or complete versions an earlier cas-certd
        // wrote: a first install cut short before `live` was made.
        return Ok(());
    }
    if made_before_manifests(dir, &versions)? {
        return Ok(());
    }
    Err(not_ours(
        dir,
        "no version in it has a cas-certd manifest (versions/*/manifest.json), and it is not \
         the layout an earlier cas-certd made",
    ))
}

/// Whether `v` is named as [`super::files`] names versions: `YYYYMMDDTHHMMSSZ-<serial hex>`.
pub(crate) fn is_version_name(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() > 17
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && &b[15..17] == b"Z-"
}

/// The layout of versions before the manifest: `live -> versions/<v>` holding our four files
/// as regular files, and the stable key path a link through `live`.
fn made_before_manifests(dir: &Dir, versions: &Dir) -> Result<bool, DeployError> {
    let Some(target) = dir.read_link("live") else {
        return Ok(false);
    };
    let Some(v) = super::files::version_of(&target) else {
        return Ok(false);
    };
    let Some(vd) = versions.open_quiet(v)? else {
        return Ok(false);
    };
    for f in FILES {
        if vd.kind(f)? != Some(rustix::fs::FileType::RegularFile) {
            return Ok(false);
        }
    }
    Ok(dir.read_link("privkey.pem").as_deref() == Some(std::path::Path::new("live/privkey.pem")))
}

/// The manifest of the live version of `<output_dir>/<name>`, read through `O_NOFOLLOW` fds;
/// `None` when there is none, or when it or its directories could be changed by others (a
/// symlinked, group- or world-writable manifest is not evidence of anything).
pub(crate) fn live_manifest(
    output_dir: &Path,
    name: &str,
) -> Result<Option<Manifest>, DeployError> {
    let Some((dir, v)) = super::files::open_live(output_dir, name)? else {
        return Ok(None);
    };
    let Some(versions) = dir.open_quiet("versions")? else {
        return Ok(None);
    };
    if dir.check_trusted().is_err() || versions.check_trusted().is_err() {
        return Ok(None);
    }
    let Some(vd) = versions.open_quiet(v)? else {
        return Ok(None);
    };
    Ok(vd
        .read_trusted_text(MANIFEST)?
        .and_then(|t| serde_json::from_str(&t).ok()))
}

/// What the live version of `<output_dir>/<name>` (or another version, see
/// [`super::versions`]) says about where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveManifest {
    /// No live version, or one without a manifest (made before manifests, or by hand).
    Absent,
    /// A manifest only the daemon's user or root could have written.
    Trusted(Manifest),
    /// A manifest that is there but proves nothing: symlinked, not a regular file, writable by
    /// others, in a directory others can write, or not ours to parse. Never adopted.
    Refused(String),
}

/// [`live_manifest`], telling a missing manifest from one that is refused.
pub(crate) fn live_manifest_state(
    output_dir: &Path,
    name: &str,
) -> Result<LiveManifest, DeployError> {
    let Some((dir, v)) = super::files::open_live(output_dir, name)? else {
        return Ok(LiveManifest::Absent);
    };
    let Some(versions) = dir.open_quiet("versions")? else {
        return Ok(LiveManifest::Absent);
    };
    let Some(vd) = versions.open_quiet(&v)? else {
        return Ok(LiveManifest::Absent);
    };
    manifest_in(&dir, &versions, &vd)
}

/// The manifest of the version directory `vd` (in `versions`, in `dir`), with the trust rules
/// of [`live_manifest_state`]: for the live version and for any other.
pub(crate) fn manifest_in(
    dir: &Dir,
    versions: &Dir,
    vd: &Dir,
) -> Result<LiveManifest, DeployError> {
    if vd.kind(MANIFEST)?.is_none() {
        return Ok(LiveManifest::Absent);
    }
    if let Err(e) = dir.check_trusted().and_then(|()| versions.check_trusted()) {
        return Ok(LiveManifest::Refused(e.to_string()));
    }
    let Some(text) = vd.read_trusted_text(MANIFEST)? else {
        return Ok(LiveManifest::Refused(format!(
            "{} is a symlink, not a regular file, or writable by others",
            vd.join(MANIFEST).display()
        )));
    };
    Ok(match serde_json::from_str(&text) {
        Ok(m) => LiveManifest::Trusted(m),
        Err(e) => LiveManifest::Refused(format!("{}: {e}", vd.join(MANIFEST).display())),
    })
}
