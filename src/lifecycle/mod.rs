//! The per-certificate lifecycle: order, prove control, poll, deploy, renew.
//!
//! - [`machine`]: the pure transition — record, configuration and time in; the next call, the
//!   new record and the effects out.
//! - [`exec`]: the executor — makes those calls and carries out the effects over [`ports`]; one
//!   persisted step per [`exec::Exec::step`], flushed before every call with an effect outside
//!   this host.
//! - [`ports`]: the small traits (CA, records, proofs, deployer, keys, clock); [`real`]: their
//!   implementations over the CAS client, sled, `validation`, `deploy` and `keys`.
//! - [`expiry`]: when a certificate close to expiry is announced (`cert.expiring`).
//! - [`quota`]: each product's quota as last seen, shared by every certificate.
//! - [`schedule`]: pure timing (renewal time, jitter, backoff, adoption); [`manual`]: operator
//!   renewals.
pub mod exec;
pub mod expiry;
pub mod machine;
pub mod manual;
pub mod ports;
pub mod quota;
pub mod real;
pub mod schedule;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use machine::{Dropped, StepOutcome};

use crate::config::Certificate;
use crate::store::{CertRecord, Store, StoreError};
use cas_api::model::OrderId;
use cas_api::Client;

/// [`exec::cancel_and_delete`] through the CAS client.
pub async fn cancel_and_delete(client: &Client, order_id: OrderId) -> bool {
    exec::cancel_and_delete(client, order_id).await
}

/// [`exec::remove`] through the CAS client and the store.
pub async fn remove(client: &Client, store: &Store, name: &str) -> Result<(), StoreError> {
    exec::remove(client, store, &real::Validators { client }, name).await
}

/// [`exec::restore_live`] under `output_dir`.
pub fn restore_live(cert: &Certificate, output_dir: &Path, rec: &CertRecord) -> bool {
    exec::restore_live(&real::OutputDir { path: output_dir }, cert, rec)
}
