//! Deploying a certificate: checks before install, the atomic versioned set, permissions.
//!
//! `pem` does the checks, `files` the layout, `dirfd` the fd-relative file operations under
//! `<output_dir>/<name>`, `manifest` which directories are ours, `versions` the versions `live`
//! does not name (for the rebuild).

mod dirfd;
mod files;
mod manifest;
mod pem;
pub mod versions;

pub use files::ids as ownership_ids;
pub use files::{inspect_live, install, live_is, preflight, read_live_set};
pub use manifest::{LiveManifest, Manifest, Origin};

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use cas_api::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("certificate does not parse: {0}")]
    BadCertificate(String),
    #[error("private key does not parse: {0}")]
    BadKey(String),
    #[error("the certificate's public key does not match our private key")]
    KeyMismatch,
    #[error("the certificate names {got:?}, the configuration asks for {want:?}")]
    WrongNames { got: Vec<String>, want: Vec<String> },
    #[error("the certificate expired at {0}")]
    Expired(DateTime<Utc>),
    /// A directory others could change under the daemon (sshd's StrictModes rule).
    #[error("refusing {path}: it {reason}")]
    Untrusted { path: PathBuf, reason: String },
    /// An existing `<output_dir>/<name>` that cas-certd did not make.
    #[error(
        "refusing {path}: it exists and was not made by cas-certd ({reason}); nothing in it was \
         changed. Move it away, or give this certificate another `name`"
    )]
    NotOurs { path: PathBuf, reason: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What gets installed: leaf, the rest of the chain, and our key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemSet {
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// Intermediates, PEM, possibly empty.
    pub chain_pem: String,
    pub key_pem: Secret,
}

/// Facts about a certificate that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub serial_hex: String,
    /// SAN DNS names, lower case.
    pub names: Vec<String>,
    /// Hex SHA-256 of the leaf DER.
    pub fingerprint_sha256: String,
}

/// Paths of an installed set (through the `live` symlink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub chain: PathBuf,
    pub fullchain: PathBuf,
    pub key: PathBuf,
    pub info: CertInfo,
}

/// Splits a CAS `Certificate` field (PEM chain, leaf first) into leaf and chain.
pub fn split_chain(pem_chain: &str) -> Result<(String, String), DeployError> {
    pem::split(pem_chain)
}

/// The checks before deploying: the key is ours, SANs are exactly `domains`, the chain parses,
/// notAfter is after `now`.
pub fn check(
    set: &PemSet,
    domains: &[String],
    now: DateTime<Utc>,
) -> Result<CertInfo, DeployError> {
    pem::check(set, domains, now)
}

/// The manifest of the live set of `name` (what was deployed, from which order), when there is
/// one nobody but the daemon's user or root could have written.
pub fn live_manifest(output_dir: &Path, name: &str) -> Result<Option<Manifest>, DeployError> {
    manifest::live_manifest(output_dir, name)
}

/// The public key type of a certificate: `("ec", bits)` or `("rsa", bits)`; `None` for others.
pub fn key_type(cert_pem: &str) -> Result<Option<(&'static str, usize)>, DeployError> {
    pem::key_type(cert_pem)
}

/// The live set's manifest, telling a missing one from one that is refused.
pub fn live_manifest_state(output_dir: &Path, name: &str) -> Result<LiveManifest, DeployError> {
    manifest::live_manifest_state(output_dir, name)
}

/// The lock every installer of `name` in this process holds across "look at what is live,
/// then install": in fleet mode the owner's lifecycle and this host's set watcher both
/// install, and one must not replace what the other just made live with an older set.
/// Held only around synchronous file work, never across an await.
pub fn install_lock(name: &str) -> std::sync::Arc<std::sync::Mutex<()>> {
    use std::collections::HashMap;
    use std::sync::{Arc, LazyLock, Mutex};
    // One small entry per certificate name, kept for the process's life.
    static LOCKS: LazyLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = LazyLock::new(Mutex::default);
    LOCKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(name.to_string())
        .or_default()
        .clone()
}
