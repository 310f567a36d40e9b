//! The small traits the executor drives the lifecycle through: the CA, the record store, the
//! proof publisher, the deployer, the key maker and the clock. `real.rs` implements them over
//! the CAS client, sled, `validation`, `deploy` and `keys`; the unit tests over in-memory fakes.
use std::future::Future;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::config::{Certificate, KeyKind};
use crate::deploy::{CertInfo, DeployError, Origin, PemSet};
use crate::keys::KeyError;
use crate::store::{CertRecord, StoreError};
use crate::validation::selfcheck::ProofCheck;
use crate::validation::{Presented, ValidationError};
use cas_api::model::{
    CertificateState, Challenge, CreateOrder, ListOrders, OrderId, OrderSummary, PackageState,
};
use cas_api::secret::Secret;
use cas_api::ApiError;

/// The certificate authority (CAS).
pub trait Ca: Sync {
    /// Spends one unit of the product.
    fn create(&self, req: &CreateOrder) -> impl Future<Output = Result<OrderId, ApiError>> + Send;
    /// Renews a deployed paid order (one unit).
    fn renew(
        &self,
        from: OrderId,
        csr: Option<&str>,
    ) -> impl Future<Output = Result<OrderId, ApiError>> + Send;
    fn list(
        &self,
        q: &ListOrders,
    ) -> impl Future<Output = Result<Vec<OrderSummary>, ApiError>> + Send;
    fn describe(
        &self,
        id: OrderId,
    ) -> impl Future<Output = Result<CertificateState, ApiError>> + Send;
    /// Back to pending (only from domain_verify or process).
    fn cancel(&self, id: OrderId) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Gone, quota back.
    fn delete(&self, id: OrderId) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// DescribePackageState: the product's total and used units.
    fn package_state(
        &self,
        product: &str,
    ) -> impl Future<Output = Result<PackageState, ApiError>> + Send;
}

/// Where records live; a write that precedes an external effect must be durable.
///
/// [`StoreError::NotOurs`] and [`StoreError::Unavailable`] (fleet mode) drop the step, with
/// nothing recorded as failed; any other error is a broken store.
pub trait Records: Sync {
    fn get(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<CertRecord>, StoreError>> + Send;
    fn put_durable(&self, rec: &CertRecord) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Forgets a record, durably.
    fn remove_durable(&self, name: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The learned time from publishing a proof to issuance, in seconds.
    fn issue_ewma(&self) -> Result<Option<f64>, StoreError>;
    fn observe_issue_time(&self, secs: f64) -> Result<(), StoreError>;
    /// Whether a call that spends quota (create, renew) for `name` may be made now; checked
    /// after the intent is durable, just before the call. A single host always may; a fleet
    /// host only while its lease has most of its TTL left (`Unavailable`: the step waits).
    fn may_spend(&self, _name: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Publishes and removes proofs of domain control.
pub trait Proofs: Sync {
    /// What stands in the way of publishing `cert`'s proof (empty: nothing).
    fn preflight(&self, cert: &Certificate) -> impl Future<Output = Vec<String>> + Send;
    /// Publishes the proof of `order`'s `challenge`.
    fn present(
        &self,
        cert: &Certificate,
        order: OrderId,
        challenge: &Challenge,
    ) -> impl Future<Output = Result<Presented, ValidationError>> + Send;
    /// Looks at the published proof of `challenge` from outside, as the CA would
    /// (`presented`: where it was published, when known).
    fn self_check(
        &self,
        cert: &Certificate,
        challenge: &Challenge,
        presented: Option<&Presented>,
    ) -> impl Future<Output = ProofCheck> + Send;
    /// Idempotent: what is already gone is not an error.
    fn cleanup(
        &self,
        name: &str,
        domains: &[String],
        presented: &Presented,
    ) -> impl Future<Output = Result<(), ValidationError>> + Send;
}

/// Writes certificate sets under the output directory.
pub trait Deployer: Sync {
    /// Whether the set of `name` could be installed (changes nothing).
    fn preflight(&self, name: &str) -> Result<(), DeployError>;
    /// Splits a PEM chain (leaf first) into leaf and intermediates.
    fn split(&self, chain_pem: &str) -> Result<(String, String), DeployError>;
    /// The key is ours, the names are `domains`, the dates hold at `now`.
    fn check(
        &self,
        set: &PemSet,
        domains: &[String],
        now: DateTime<Utc>,
    ) -> Result<CertInfo, DeployError>;
    /// Installs `set` atomically; returns the new version's directory.
    fn install(
        &self,
        cert: &Certificate,
        set: &PemSet,
        origin: &Origin,
    ) -> Result<PathBuf, DeployError>;
    /// Whether the live files of `name` are exactly `set`.
    fn live_is(&self, name: &str, set: &PemSet) -> Result<bool, DeployError>;
}

/// Makes private keys and CSRs.
pub trait KeyMaker: Sync {
    fn generate(&self, kind: KeyKind, domains: &[String]) -> Result<(Secret, String), KeyError>;
}

/// The time, and the randomness renewal jitter draws on.
pub trait Clock: Sync {
    fn now(&self) -> DateTime<Utc>;
    /// Random in [0, 1).
    fn jitter01(&self) -> f64;
}
