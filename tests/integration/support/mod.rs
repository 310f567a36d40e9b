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

/// The head of an HTTP/1 request on `rd`, for the stand-in servers: its method, its target, and
/// its headers by lower-cased name. The body, if any, is left to read.
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
pub fn read_request_head(
    rd: &mut impl std::io::BufRead,
) -> (String, String, std::collections::HashMap<String, String>) {
    let mut line = String::new();
    rd.read_line(&mut line).unwrap();
    let mut w = line.split_whitespace();
    let (method, target) = (
        w.next().unwrap_or("").to_string(),
        w.next().unwrap_or("").to_string(),
    );
    let mut headers = std::collections::HashMap::new();
    loop {
        let mut h = String::new();
        rd.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    (method, target, headers)
}
