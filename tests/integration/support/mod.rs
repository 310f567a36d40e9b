//! Shared helpers: paths to the binary and the Python interpreter with Alibaba's SDKs.
#![allow(dead_code)]

use std::path::PathBuf;

pub mod etcd;
#[cfg(feature = "fleet")]
pub mod fleet;
pub mod world;

/// The `cas-certd` binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cas-certd"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Python with the official SDKs (`scripts/setup-python.sh` makes `.venv`); override with
/// `CAS_CERTD_PYTHON`. Missing is a test failure with instructions, never a silent skip.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("CAS_CERTD_PYTHON") {
        return PathBuf::from(p);
    }
    let p = repo_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run scripts/setup-python.sh (or set CAS_CERTD_PYTHON)",
        p.display()
    );
    p
}

/// A port free on loopback right now (bound and released).
pub fn free_port() -> u16 {
    #[allow(clippy::unwrap_used)] // tests: a panic is the failure report
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
