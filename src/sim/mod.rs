//! The CAS + Alidns simulator: a real HTTP server with signature checks, the order state
//! machine, real domain validation and a local test CA.
//!
//! INTERFACE PINNED FOR PARALLEL WORK — bodies filled by issue 3.
#![allow(unused_variables)]

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulator: {0}")]
    Other(String),
}

/// Everything `cas-certd simulate` can be told (see its `--help`).
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    pub listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    /// (AccessKeyId, secret) pairs accepted.
    pub credentials: Vec<(String, crate::secret::Secret)>,
    /// (domain pattern, address) — `*.example.com` allowed.
    pub resolve: Vec<(String, SocketAddr)>,
    pub zones: Vec<String>,
    pub admin: bool,
}

/// A running simulator.
#[derive(Debug)]
pub struct SimHandle {
    pub addr: SocketAddr,
    /// The test CA's root certificate, PEM, for `openssl verify` or curl.
    pub root_pem: PathBuf,
}

impl SimHandle {
    /// Stops the server and waits for it to finish writing its books.
    pub async fn shutdown(self) {}
}

/// Starts a simulator in this process.
pub async fn start(opts: SimOptions) -> Result<SimHandle, SimError> {
    todo!("issue 3")
}
