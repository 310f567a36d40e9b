//! In-memory fakes of the lifecycle's ports, sharing one call journal so tests can assert the
//! order of calls and durable writes.
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};

use crate::config::{Certificate, FileOwnership, KeyKind, RenewBefore, Validation};
use crate::deploy::{CertInfo, DeployError, Origin, PemSet};
use crate::keys::KeyError;
use crate::lifecycle::exec::Exec;
use crate::lifecycle::ports::{Ca, Clock, Deployer, KeyMaker, Proofs, Records};
use crate::lifecycle::quota::QuotaCache;
use crate::lifecycle::StepOutcome;
use crate::metrics::Metrics;
use crate::store::{CertRecord, StoreError};
use crate::validation::selfcheck::{ProofCheck, ProofFailure};
use crate::validation::{Presented, ValidationError};
use cas_api::model::{
    CertificateState, Challenge, Contact, CreateOrder, IssuedCertificate, ListOrders, OrderId,
    OrderSummary, PackageState,
};
use cas_api::secret::Secret;
use cas_api::ApiError;

pub const POLL_MIN: Duration = Duration::from_secs(5);
pub const POLL_MAX: Duration = Duration::from_secs(300);
pub const WEBROOT_PROOF: &str = "/srv/www/.well-known/pki-validation/fileauth.txt";

/// The machine's context for `c` at `now`, with the test poll bounds and no jitter.
pub fn cx_at(c: &Certificate, now: DateTime<Utc>) -> crate::lifecycle::machine::Cx<'_> {
    crate::lifecycle::machine::Cx {
        cert: c,
        poll_min: POLL_MIN,
        poll_max: POLL_MAX,
        now,
        jitter01: 0.0,
    }
}

/// A record whose key and CSR are made: the next step asks for the quota, then orders.
pub fn key_ready() -> CertRecord {
    let mut rec = CertRecord::new("www", vec!["a.test".into()]);
    rec.phase = crate::store::Phase::KeyReady {
        pending: crate::store::PendingKey {
            key: Some(Secret::new("K")),
            csr: Some("CSR".into()),
        },
    };
    rec
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).single().unwrap()
}

pub fn secs(s: i64) -> TimeDelta {
    TimeDelta::seconds(s)
}

pub fn transient() -> ApiError {
    ApiError::Service {
        action: "X".into(),
        status: 503,
        code: "ServiceUnavailable".into(),
        message: "try later".into(),
        request_id: "r".into(),
    }
}

pub fn permanent() -> ApiError {
    ApiError::Service {
        action: "X".into(),
        status: 400,
        code: "NotRemainCount".into(),
        message: "no quota".into(),
        request_id: "r".into(),
    }
}

/// A create that reached CAS but whose answer was lost.
pub fn lost() -> ApiError {
    ApiError::Transport {
        action: "CreateCertificateForPackageRequest".into(),
        detail: "connection reset".into(),
        maybe_sent: true,
    }
}

pub fn cert(name: &str, domains: &[&str]) -> Certificate {
    Certificate {
        name: name.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        validation: Validation::File {
            webroot: "/srv/www".into(),
        },
        product_code: "digicert-free-1-free".into(),
        key: KeyKind::EcdsaP256,
        renew_before: RenewBefore::Fraction(1.0 / 3.0),
        contact: Contact::default(),
        reload: None,
        files: FileOwnership {
            owner: None,
            group: None,
            cert_mode: 0o644,
            key_mode: 0o600,
        },
        keep_versions: 2,
        validation_timeout: std::time::Duration::from_secs(24 * 3600),
        expiry_warn: std::time::Duration::from_secs(14 * 24 * 3600),
        self_check: Default::default(),
    }
}

/// One order the fake CA holds.
#[derive(Debug, Clone)]
pub struct Order {
    pub id: OrderId,
    pub domains: Vec<String>,
    pub product: String,
    pub bought: DateTime<Utc>,
    pub csr: Option<String>,
    pub deleted: bool,
}

#[derive(Default)]
pub struct CaState {
    pub orders: Vec<Order>,
    /// What the next creates/renews do (default: succeed).
    pub create_script: VecDeque<CreateResult>,
    /// What the next describes answer (default: issued, with a certificate for the order).
    pub describe_script: VecDeque<Result<CertificateState, ApiError>>,
    pub list_script: VecDeque<ApiError>,
    pub delete_script: VecDeque<ApiError>,
    pub renewed_from: Vec<OrderId>,
    /// The private key CAS returns at issuance (key = "cas").
    pub cas_key: Option<Secret>,
    /// Units of every product (default 1000); creates past it are refused (NotRemainCount).
    pub quota: Option<i64>,
    /// What the next DescribePackageState calls fail with (default: they answer).
    pub package_script: VecDeque<ApiError>,
}

pub enum CreateResult {
    Fail(ApiError),
    /// The order is made, the answer is lost.
    Lost,
}

pub struct Fakes {
    pub journal: Arc<Mutex<Vec<String>>>,
    pub ca: Mutex<CaState>,
    pub record: Mutex<Option<CertRecord>>,
    pub ewma: Mutex<Option<f64>>,
    pub now: Mutex<DateTime<Utc>>,
    pub proof_problems: Mutex<Vec<String>>,
    pub present_script: Mutex<VecDeque<Result<Presented, ValidationError>>>,
    /// What the next self-checks answer (default: the proof is seen).
    pub self_check_script: Mutex<VecDeque<Result<(), ProofFailure>>>,
    pub deploy_preflight: Mutex<Option<DeployError>>,
    pub refuse: Mutex<Option<DeployError>>,
    pub install_failures: Mutex<u32>,
    pub live_ok: Mutex<bool>,
    pub keys_made: Mutex<u32>,
    pub key_error: Mutex<Option<KeyError>>,
    pub installed: Mutex<Vec<(PemSet, Origin)>>,
    pub metrics: Metrics,
    pub quota: QuotaCache,
    /// The next durable write fails with this (the fleet store's fence or outage).
    pub put_refusal: Mutex<Option<StoreError>>,
    /// While set, `may_spend` refuses with this reason (a fleet lease too short).
    pub spend_refusal: Mutex<Option<String>>,
}

impl Fakes {
    pub fn new() -> Fakes {
        Fakes {
            journal: Arc::default(),
            ca: Mutex::default(),
            record: Mutex::default(),
            ewma: Mutex::default(),
            now: Mutex::new(t0()),
            proof_problems: Mutex::default(),
            present_script: Mutex::default(),
            self_check_script: Mutex::default(),
            deploy_preflight: Mutex::default(),
            refuse: Mutex::default(),
            install_failures: Mutex::default(),
            live_ok: Mutex::new(true),
            keys_made: Mutex::default(),
            key_error: Mutex::default(),
            installed: Mutex::default(),
            metrics: Metrics::new(),
            quota: QuotaCache::new(),
            put_refusal: Mutex::default(),
            spend_refusal: Mutex::default(),
        }
    }

    fn note(&self, s: impl Into<String>) {
        self.journal.lock().unwrap().push(s.into());
    }

    pub fn journal(&self) -> Vec<String> {
        self.journal.lock().unwrap().clone()
    }

    /// How many journal entries start with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.journal()
            .iter()
            .filter(|e| e.starts_with(prefix))
            .count()
    }

    pub fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap()
    }

    /// Moves the clock to the record's next due time.
    pub fn to_due(&self) {
        let due = self.rec().next_due;
        let mut now = self.now.lock().unwrap();
        *now = (*now).max(due);
    }

    pub fn rec(&self) -> CertRecord {
        self.record.lock().unwrap().clone().expect("a record")
    }

    pub fn set_rec(&self, r: CertRecord) {
        *self.record.lock().unwrap() = Some(r);
    }

    pub fn orders(&self) -> Vec<Order> {
        self.ca.lock().unwrap().orders.clone()
    }

    /// Orders created (creates and renewals), deleted or not.
    pub fn paid(&self) -> usize {
        self.orders().len()
    }

    /// Places an order in the CA as if a create had been made at `bought`.
    pub fn existing_order(&self, id: u64, domains: &[&str], product: &str, bought: DateTime<Utc>) {
        self.ca.lock().unwrap().orders.push(Order {
            id: OrderId(id),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            product: product.into(),
            bought,
            csr: None,
            deleted: false,
        });
    }

    pub fn exec(&self) -> Exec<'_, Self, Self, Self, Self, Self, Self> {
        Exec {
            ca: self,
            records: self,
            proofs: self,
            deployer: self,
            keys: self,
            clock: self,
            metrics: &self.metrics,
            quota: &self.quota,
            quota_warn: 3,
            poll_min: POLL_MIN,
            poll_max: POLL_MAX,
        }
    }

    /// One step, from the stored record (a new one when none).
    pub async fn step(&self, c: &Certificate) -> StepOutcome {
        let rec = self
            .record
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| CertRecord::new(&c.name, c.domains.clone()));
        self.exec().step(c, rec).await.unwrap()
    }

    /// Steps until the certificate waits (the daemon's wake-up), at most 32 steps.
    pub async fn wake(&self, c: &Certificate) -> Vec<StepOutcome> {
        let mut out = Vec::new();
        for _ in 0..32 {
            let o = self.step(c).await;
            out.push(o);
            if let StepOutcome::Waiting(_) | StepOutcome::Dropped(_) = o {
                break;
            }
        }
        out
    }

    /// Wakes at each due time until a deployment, at most `n` wake-ups.
    pub async fn until_deployed(&self, c: &Certificate, n: usize) -> bool {
        for _ in 0..n {
            if self.wake(c).await.contains(&StepOutcome::Deployed) {
                return true;
            }
            self.to_due();
        }
        false
    }

    fn new_order(
        &self,
        st: &mut CaState,
        domains: Vec<String>,
        product: String,
        csr: Option<&str>,
    ) -> OrderId {
        let id = OrderId(1000 + st.orders.len() as u64);
        st.orders.push(Order {
            id,
            domains,
            product,
            bought: self.now(),
            csr: csr.map(str::to_string),
            deleted: false,
        });
        id
    }

    fn create_or_renew(
        &self,
        domains: Vec<String>,
        product: String,
        csr: Option<&str>,
    ) -> Result<OrderId, ApiError> {
        let mut st = self.ca.lock().unwrap();
        let used = st.orders.iter().filter(|o| !o.deleted).count() as i64;
        if st.quota.is_some_and(|q| used >= q) {
            return Err(ApiError::Service {
                action: "CreateCertificateForPackageRequest".into(),
                status: 400,
                code: "NotRemainCount".into(),
                message: "no quota".into(),
                request_id: "r".into(),
            });
        }
        match st.create_script.pop_front() {
            Some(CreateResult::Fail(e)) => Err(e),
            Some(CreateResult::Lost) => {
                self.new_order(&mut st, domains, product, csr);
                Err(lost())
            }
            None => Ok(self.new_order(&mut st, domains, product, csr)),
        }
    }
}

impl Ca for Fakes {
    async fn create(&self, req: &CreateOrder) -> Result<OrderId, ApiError> {
        self.note(format!("create {}", req.product_code));
        self.create_or_renew(
            req.domains.clone(),
            req.product_code.clone(),
            req.csr.as_deref(),
        )
    }

    async fn renew(&self, from: OrderId, csr: Option<&str>) -> Result<OrderId, ApiError> {
        self.note(format!("renew {from}"));
        let (domains, product) = {
            let mut st = self.ca.lock().unwrap();
            st.renewed_from.push(from);
            let o = st.orders.iter().find(|o| o.id == from).cloned();
            o.map(|o| (o.domains, o.product)).unwrap_or_default()
        };
        self.create_or_renew(domains, product, csr)
    }

    async fn list(&self, q: &ListOrders) -> Result<Vec<OrderSummary>, ApiError> {
        self.note("list");
        let mut st = self.ca.lock().unwrap();
        if let Some(e) = st.list_script.pop_front() {
            return Err(e);
        }
        let kw = q.keyword.clone().unwrap_or_default();
        Ok(st
            .orders
            .iter()
            .filter(|o| !o.deleted && o.domains.iter().any(|d| d.contains(&kw)))
            .map(|o| OrderSummary {
                order_id: o.id,
                instance_id: None,
                domain: Some(o.domains.join(",")),
                domain_count: None,
                status: Some("CHECKING".into()),
                product_code: Some(o.product.clone()),
                cert_type: None,
                domain_type: None,
                cert_start_time: None,
                cert_end_time: None,
                buy_date: Some(o.bought.timestamp_millis()),
                algorithm: None,
            })
            .collect())
    }

    async fn describe(&self, id: OrderId) -> Result<CertificateState, ApiError> {
        self.note(format!("describe {id}"));
        let mut st = self.ca.lock().unwrap();
        if let Some(r) = st.describe_script.pop_front() {
            return r;
        }
        Ok(CertificateState::Issued(IssuedCertificate {
            certificate: format!("CHAIN-{id}"),
            private_key: st.cas_key.clone(),
            cert_id: None,
        }))
    }

    async fn cancel(&self, id: OrderId) -> Result<(), ApiError> {
        self.note(format!("cancel {id}"));
        Ok(())
    }

    async fn package_state(&self, product: &str) -> Result<PackageState, ApiError> {
        self.note(format!("package_state {product}"));
        let mut st = self.ca.lock().unwrap();
        if let Some(e) = st.package_script.pop_front() {
            return Err(e);
        }
        Ok(PackageState {
            product_code: product.into(),
            total_count: st.quota.unwrap_or(1000),
            used_count: st.orders.iter().filter(|o| !o.deleted).count() as i64,
            issued_count: 0,
        })
    }

    async fn delete(&self, id: OrderId) -> Result<(), ApiError> {
        self.note(format!("delete {id}"));
        let mut st = self.ca.lock().unwrap();
        if let Some(e) = st.delete_script.pop_front() {
            return Err(e);
        }
        for o in st.orders.iter_mut().filter(|o| o.id == id) {
            o.deleted = true;
        }
        Ok(())
    }
}

impl Records for Fakes {
    async fn get(&self, _name: &str) -> Result<Option<CertRecord>, StoreError> {
        Ok(self.record.lock().unwrap().clone())
    }

    async fn put_durable(&self, rec: &CertRecord) -> Result<(), StoreError> {
        if let Some(e) = self.put_refusal.lock().unwrap().take() {
            self.note(format!("put refused {}", rec.phase.name()));
            return Err(e);
        }
        self.note(format!("put {}", rec.phase.name()));
        *self.record.lock().unwrap() = Some(rec.clone());
        Ok(())
    }

    async fn remove_durable(&self, name: &str) -> Result<(), StoreError> {
        self.note(format!("forget {name}"));
        *self.record.lock().unwrap() = None;
        Ok(())
    }

    fn issue_ewma(&self) -> Result<Option<f64>, StoreError> {
        Ok(*self.ewma.lock().unwrap())
    }

    fn observe_issue_time(&self, secs: f64) -> Result<(), StoreError> {
        *self.ewma.lock().unwrap() = Some(secs);
        Ok(())
    }

    fn may_spend(&self, _name: &str) -> Result<(), StoreError> {
        match &*self.spend_refusal.lock().unwrap() {
            Some(why) => {
                self.note("spend refused");
                Err(StoreError::Unavailable(why.clone()))
            }
            None => Ok(()),
        }
    }
}

impl Proofs for Fakes {
    async fn preflight(&self, _cert: &Certificate) -> Vec<String> {
        self.note("proof preflight");
        self.proof_problems.lock().unwrap().clone()
    }

    async fn present(
        &self,
        cert: &Certificate,
        _order: OrderId,
        _challenge: &Challenge,
    ) -> Result<Presented, ValidationError> {
        self.note("present");
        if let Some(r) = self.present_script.lock().unwrap().pop_front() {
            return r;
        }
        Ok(match &cert.validation {
            Validation::Manual { .. } => Presented::Manual {
                instructions: "publish it".into(),
            },
            _ => Presented::File {
                path: PathBuf::from(WEBROOT_PROOF),
            },
        })
    }

    async fn self_check(
        &self,
        _cert: &Certificate,
        _challenge: &Challenge,
        _presented: Option<&Presented>,
    ) -> ProofCheck {
        self.note("self-check");
        self.self_check_script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Ok(()))
    }

    async fn cleanup(
        &self,
        _name: &str,
        _domains: &[String],
        presented: &Presented,
    ) -> Result<(), ValidationError> {
        let what = match presented {
            Presented::File { path } => path.display().to_string(),
            other => format!("{other:?}"),
        };
        self.note(format!("cleanup {what}"));
        Ok(())
    }
}

impl Deployer for Fakes {
    fn preflight(&self, _name: &str) -> Result<(), DeployError> {
        self.note("deploy preflight");
        match self.deploy_preflight.lock().unwrap().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn split(&self, chain_pem: &str) -> Result<(String, String), DeployError> {
        if chain_pem.starts_with("CHAIN-") {
            Ok((chain_pem.replace("CHAIN", "LEAF"), "INTERMEDIATE".into()))
        } else {
            Err(DeployError::BadCertificate(
                "no certificate in the answer".into(),
            ))
        }
    }

    fn check(
        &self,
        set: &PemSet,
        domains: &[String],
        now: DateTime<Utc>,
    ) -> Result<CertInfo, DeployError> {
        self.note("check");
        if let Some(e) = self.refuse.lock().unwrap().take() {
            return Err(e);
        }
        Ok(CertInfo {
            not_before: now - secs(60),
            not_after: now + TimeDelta::days(90),
            serial_hex: "01".into(),
            names: domains.to_vec(),
            fingerprint_sha256: set.cert_pem.clone(),
        })
    }

    fn install(
        &self,
        cert: &Certificate,
        set: &PemSet,
        origin: &Origin,
    ) -> Result<PathBuf, DeployError> {
        self.note(format!("install {}", origin.order_id));
        let mut fails = self.install_failures.lock().unwrap();
        if *fails > 0 {
            *fails -= 1;
            return Err(DeployError::Io {
                op: "write",
                path: "/out/x".into(),
                source: std::io::Error::other("disk full"),
            });
        }
        self.installed
            .lock()
            .unwrap()
            .push((set.clone(), origin.clone()));
        Ok(PathBuf::from(format!(
            "/out/{}/v{}",
            cert.name, origin.order_id
        )))
    }

    fn live_is(&self, _name: &str, _set: &PemSet) -> Result<bool, DeployError> {
        Ok(*self.live_ok.lock().unwrap())
    }
}

impl KeyMaker for Fakes {
    fn generate(&self, kind: KeyKind, _domains: &[String]) -> Result<(Secret, String), KeyError> {
        self.note(format!("keygen {kind:?}"));
        if let Some(e) = self.key_error.lock().unwrap().take() {
            return Err(e);
        }
        let mut n = self.keys_made.lock().unwrap();
        *n += 1;
        Ok((Secret::new(format!("KEY-{n}")), format!("CSR-{n}")))
    }
}

impl Clock for Fakes {
    fn now(&self) -> DateTime<Utc> {
        Fakes::now(self)
    }

    fn jitter01(&self) -> f64 {
        0.0
    }
}
