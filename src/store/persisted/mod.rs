//! The on-disk record format (first step: the fixtures of today's format, read by today's code).
use super::{CertRecord, StoreError};

pub(crate) fn encode(r: &CertRecord) -> Result<Vec<u8>, StoreError> {
    r.encode()
}

pub(crate) fn decode(name: &str, bytes: &[u8]) -> Result<CertRecord, StoreError> {
    CertRecord::decode(name, bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod v1_fixtures;
