//! Private keys and CSRs made locally (the key never leaves the host).
//!
//! INTERFACE PINNED FOR PARALLEL WORK — bodies filled by issue 4 (config/deploy work).
#![allow(unused_variables)]

use crate::config::KeyKind;
use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("CSR generation failed: {0}")]
    Csr(String),
    #[error("CAS makes this key: there is nothing to generate")]
    CasManaged,
}

/// A new key (PKCS#8 PEM) and a CSR for `domains` (CN = first domain, SANs = all).
pub fn generate(kind: KeyKind, domains: &[String]) -> Result<(Secret, String), KeyError> {
    todo!("issue 4")
}

/// A CSR for an existing key (renewal with the same key is not our default, but a CSR may
/// need re-making after a crash).
pub fn csr_for_key(key_pem: &Secret, domains: &[String]) -> Result<String, KeyError> {
    todo!("issue 4")
}
