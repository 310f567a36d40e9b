//! The lifecycle's traits over the real things: the CAS client, the sled store, `validation`
//! (webroot file, Alidns, command, manual), `deploy` under the output directory, `keys`, and
//! the system clock.
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::ports::{Ca, Clock, Deployer, KeyMaker, Proofs, Records};
use crate::config::{Certificate, KeyKind};
use crate::deploy::{self, CertInfo, DeployError, Origin, PemSet};
use crate::keys::KeyError;
use crate::store::{CertRecord, Store, StoreError};
use crate::validation::selfcheck::{self, ProofCheck};
use crate::validation::{self, Presented, ValidationError};
use cas_api::model::{
    CertificateState, Challenge, CreateOrder, ListOrders, OrderId, OrderSummary, PackageState,
};
use cas_api::secret::Secret;
use cas_api::{ApiError, Client};

impl Ca for Client {
    async fn create(&self, req: &CreateOrder) -> Result<OrderId, ApiError> {
        self.create_certificate_for_package(req).await
    }

    async fn renew(&self, from: OrderId, csr: Option<&str>) -> Result<OrderId, ApiError> {
        self.renew_certificate_order(from, csr).await
    }

    async fn list(&self, q: &ListOrders) -> Result<Vec<OrderSummary>, ApiError> {
        Ok(self.list_user_certificate_order(q).await?.orders)
    }

    async fn describe(&self, id: OrderId) -> Result<CertificateState, ApiError> {
        self.describe_certificate_state(id).await
    }

    async fn cancel(&self, id: OrderId) -> Result<(), ApiError> {
        self.cancel_order(id).await
    }

    async fn delete(&self, id: OrderId) -> Result<(), ApiError> {
        self.delete_certificate(id).await
    }

    async fn package_state(&self, product: &str) -> Result<PackageState, ApiError> {
        self.describe_package_state(product).await
    }
}

impl Records for Store {
    async fn get(&self, name: &str) -> Result<Option<CertRecord>, StoreError> {
        Store::get(self, name)
    }

    async fn put_durable(&self, rec: &CertRecord) -> Result<(), StoreError> {
        Store::put_durable(self, rec).await
    }

    async fn remove_durable(&self, name: &str) -> Result<(), StoreError> {
        self.remove(name)?;
        self.flush().await
    }

    fn issue_ewma(&self) -> Result<Option<f64>, StoreError> {
        Store::issue_ewma(self)
    }

    fn observe_issue_time(&self, secs: f64) -> Result<(), StoreError> {
        Store::observe_issue_time(self, secs).map(|_| ())
    }
}

/// Proofs published the configured way; Alidns goes through `client`.
pub struct Validators<'a> {
    pub client: &'a Client,
}

impl Proofs for Validators<'_> {
    async fn preflight(&self, cert: &Certificate) -> Vec<String> {
        validation::preflight(&cert.validation, &cert.domains, Some(self.client))
            .await
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    async fn present(
        &self,
        cert: &Certificate,
        _order: OrderId,
        challenge: &Challenge,
    ) -> Result<Presented, ValidationError> {
        let vctx = validation::Ctx {
            cert_name: &cert.name,
            domains: &cert.domains,
            client: self.client,
        };
        validation::present(&cert.validation, challenge, &vctx).await
    }

    async fn self_check(
        &self,
        cert: &Certificate,
        challenge: &Challenge,
        presented: Option<&Presented>,
    ) -> ProofCheck {
        selfcheck::check(&cert.self_check, &cert.domains, challenge, presented).await
    }

    async fn cleanup(
        &self,
        name: &str,
        domains: &[String],
        presented: &Presented,
    ) -> Result<(), ValidationError> {
        let vctx = validation::Ctx {
            cert_name: name,
            domains,
            client: self.client,
        };
        validation::cleanup(presented, &vctx).await
    }
}

/// Certificate sets under `output_dir` (see [`deploy`]).
pub struct OutputDir<'a> {
    pub path: &'a Path,
}

impl Deployer for OutputDir<'_> {
    fn preflight(&self, name: &str) -> Result<(), DeployError> {
        deploy::preflight(self.path, name)
    }

    fn split(&self, chain_pem: &str) -> Result<(String, String), DeployError> {
        deploy::split_chain(chain_pem)
    }

    fn check(
        &self,
        set: &PemSet,
        domains: &[String],
        now: DateTime<Utc>,
    ) -> Result<CertInfo, DeployError> {
        deploy::check(set, domains, now)
    }

    fn install(
        &self,
        cert: &Certificate,
        set: &PemSet,
        origin: &Origin,
    ) -> Result<PathBuf, DeployError> {
        let lock = deploy::install_lock(&cert.name);
        let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
        let d = deploy::install(
            self.path,
            &cert.name,
            set,
            &cert.files,
            cert.keep_versions,
            origin,
        )?;
        Ok(d.dir)
    }

    fn live_is(&self, name: &str, set: &PemSet) -> Result<bool, DeployError> {
        deploy::live_is(self.path, name, set)
    }
}

/// Keys made on this host ([`crate::keys`]).
pub struct LocalKeys;

impl KeyMaker for LocalKeys {
    fn generate(&self, kind: KeyKind, domains: &[String]) -> Result<(Secret, String), KeyError> {
        crate::keys::generate(kind, domains)
    }
}

/// The system clock; jitter from the thread's random generator.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn jitter01(&self) -> f64 {
        rand::random::<f64>()
    }
}
