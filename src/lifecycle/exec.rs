//! The executor: makes the calls the machine asks for and carries out its effects (durable
//! writes, crash points, log lines, metrics, proof clean-up), over the traits in `ports.rs`.
//! It decides nothing; what a result means is the machine's.
use std::time::Duration;

use tracing::{debug, error, info, warn};

use super::machine::{
    self, CheckError, Cx, Effect, Event, Next, Observation, Request, StepOutcome,
};
use super::ports::{Ca, Clock, Deployer, KeyMaker, Proofs, Records};
use super::quota::QuotaCache;
use crate::config::Certificate;
use crate::deploy::{Origin, PemSet};
use crate::failpoint;
use crate::metrics::Metrics;
use crate::store::{CertRecord, StoreError};
use cas_api::model::OrderId;
use cas_api::ErrorClass;

/// Everything a step goes through.
pub struct Exec<'a, C, R, P, D, K, T> {
    pub ca: &'a C,
    pub records: &'a R,
    pub proofs: &'a P,
    pub deployer: &'a D,
    pub keys: &'a K,
    pub clock: &'a T,
    pub metrics: &'a Metrics,
    /// The daemon's one quota cache.
    pub quota: &'a QuotaCache,
    /// `quota_warn`: fewer units left than this is `quota.low`.
    pub quota_warn: u32,
    pub poll_min: Duration,
    pub poll_max: Duration,
}

impl<C, R, P, D, K, T> Exec<'_, C, R, P, D, K, T>
where
    C: Ca,
    R: Records,
    P: Proofs,
    D: Deployer,
    K: KeyMaker,
    T: Clock,
{
    /// Does one step for `rec` (the stored record of `cert`) and persists it. API failures
    /// never escape: they are recorded in the record; only a store failure is an error. A
    /// store that says the record is not (or not now) ours drops the step
    /// ([`StepOutcome::Dropped`]): nothing more is called or written, no failure recorded.
    pub async fn step(
        &self,
        cert: &Certificate,
        rec: CertRecord,
    ) -> Result<StepOutcome, StoreError> {
        match self.step_inner(cert, rec).await {
            Err(e) => match e.dropped() {
                Some(why) => {
                    info!(cert = %cert.name, error = %e, "step dropped; nothing recorded");
                    Ok(StepOutcome::Dropped(why))
                }
                None => Err(e),
            },
            ok => ok,
        }
    }

    async fn step_inner(
        &self,
        cert: &Certificate,
        rec: CertRecord,
    ) -> Result<StepOutcome, StoreError> {
        let cx = Cx {
            cert,
            poll_min: self.poll_min,
            poll_max: self.poll_max,
            now: self.clock.now(),
            jitter01: self.clock.jitter01(),
        };
        let mut t = machine::start(rec, &cx);
        loop {
            for e in &t.effects {
                self.apply(&cx, &t.rec, e).await?;
            }
            match t.next {
                Next::Done(outcome) => return Ok(outcome),
                Next::Call(req) => {
                    let obs = self.perform(&cx, &t.rec, req).await?;
                    t = machine::observe(t.rec, &cx, obs);
                }
            }
        }
    }

    async fn perform(
        &self,
        cx: &Cx<'_>,
        rec: &CertRecord,
        req: Request,
    ) -> Result<Observation, StoreError> {
        let cert = cx.cert;
        Ok(match req {
            Request::CleanOrders(ids) => {
                let mut gone = Vec::new();
                for id in ids {
                    if cancel_and_delete(self.ca, id).await {
                        gone.push(id);
                    }
                }
                Observation::Cleaned { gone }
            }
            Request::PreflightDeploy => {
                Observation::DeployPreflight(self.deployer.preflight(&rec.name))
            }
            Request::MakeKey(kind) => Observation::KeyMade(
                self.keys
                    .generate(kind, &cert.domains)
                    .map(Some)
                    .map_err(|e| e.to_string()),
            ),
            Request::PreflightProof => {
                Observation::ProofPreflight(self.proofs.preflight(cert).await)
            }
            Request::Quota(product) => {
                let describe = || self.ca.package_state(&product);
                let (look, left, error) = self
                    .quota
                    .before_create(&product, cx.now, self.quota_warn, describe)
                    .await;
                if let Some(left) = left {
                    self.metrics.quota_remaining(&product, left);
                }
                Observation::Quota { look, error }
            }
            Request::Create(order) => {
                self.records.may_spend(&rec.name)?;
                let result = self.ca.create(&order).await;
                self.spent(&order.product_code, &result).await;
                Observation::Created(result)
            }
            Request::Renew { from, csr } => {
                self.records.may_spend(&rec.name)?;
                let result = self.ca.renew(from, csr.as_deref()).await;
                self.spent(&cert.product_code, &result).await;
                Observation::Created(result)
            }
            Request::ListOrders(q) => Observation::Listed(self.ca.list(&q).await),
            Request::Describe(id) => Observation::Described(self.ca.describe(id).await),
            Request::Publish(ch) => {
                let result = self.proofs.present(cert, order_of(rec), &ch).await;
                let issue_ewma = match result {
                    Ok(_) => self.records.issue_ewma()?,
                    Err(_) => None,
                };
                Observation::Published {
                    result,
                    issue_ewma,
                    challenge: ch,
                }
            }
            Request::Republish(ch) => Observation::Republished {
                result: self
                    .proofs
                    .present(cert, order_of(rec), &ch)
                    .await
                    .map(|_| ()),
                challenge: ch,
            },
            Request::SelfCheck(ch) => Observation::SelfChecked(
                self.proofs
                    .self_check(cert, &ch, rec.phase.presented())
                    .await,
            ),
            Request::Check { chain_pem, key_pem } => {
                let checked = match self.deployer.split(&chain_pem) {
                    Err(e) => Err(CheckError::Unusable(e)),
                    Ok((cert_pem, chain_pem)) => {
                        let set = PemSet {
                            cert_pem,
                            chain_pem,
                            key_pem,
                        };
                        match self.deployer.check(&set, &cert.domains, cx.now) {
                            Ok(info) => Ok((set, info)),
                            Err(e) => Err(CheckError::Refused(e)),
                        }
                    }
                };
                Observation::Checked(checked)
            }
            Request::Install { set, info } => {
                let origin = Origin {
                    order_id: rec.phase.open_order().map(|o| o.0).unwrap_or_default(),
                    product: cert.product_code.clone(),
                };
                let result = self.deployer.install(cert, &set, &origin);
                Observation::Installed { set, info, result }
            }
        })
    }

    /// Tells the quota cache what became of the unit it held for a create.
    async fn spent(&self, product: &str, result: &Result<OrderId, cas_api::ApiError>) {
        if let Some(left) = self.quota.after_create(product, result).await {
            self.metrics.quota_remaining(product, left);
        }
    }

    async fn apply(&self, cx: &Cx<'_>, rec: &CertRecord, e: &Effect) -> Result<(), StoreError> {
        match e {
            Effect::Persist => self.records.put_durable(rec).await?,
            Effect::Failpoint(name) => failpoint::hit(name),
            Effect::Log(ev) => log(cx, rec, ev),
            Effect::CleanupProof(p) => {
                if let Err(e) = self.proofs.cleanup(&rec.name, &rec.domains, p).await {
                    warn!(cert = %rec.name, error = %e, "challenge cleanup failed");
                }
            }
            Effect::ObserveIssueTime(secs) => self.records.observe_issue_time(*secs)?,
            Effect::MetricOrderCreated => self.metrics.order_created(&rec.name),
            Effect::MetricRenewalFailed => self.metrics.renewal_failed(&rec.name),
            Effect::MetricProofCheckFailed(kind) => self.metrics.proof_check_failed(kind.as_str()),
            Effect::MetricDeployed => self.metrics.set_certificate(
                &rec.name,
                rec.deployed.as_ref().map(|d| d.info.not_after.timestamp()),
                rec.phase.name(),
                rec.last_success.map(|t| t.timestamp()),
            ),
        }
        Ok(())
    }
}

/// One log line per event; names and fields are listed in docs/monitoring.md.
fn log(cx: &Cx<'_>, rec: &CertRecord, ev: &Event) {
    let cert = &rec.name;
    let domains = &rec.domains;
    let days_left = rec.days_left(cx.now);
    match ev {
        Event::RenewDue { domains, forced } => {
            info!(event = "cert.renew_due", cert = %cert, domains = ?domains, forced,
                "renewal due");
        }
        Event::Ordered { order_id, renewal } => {
            info!(event = "cert.ordered", cert = %cert, domains = ?domains,
                order_id = %order_id, renewal, "order created");
        }
        Event::CreateOutcomeUnknown { error } => {
            warn!(event = "cert.renew_failed", cert = %cert, error = %error, days_left,
                "create outcome unknown; will look for the order before creating again");
        }
        Event::OrderAdopted { order_id } => {
            info!(event = "cert.order_adopted", cert = %cert, domains = ?domains,
                order_id = %order_id, "adopted the order an interrupted create made");
        }
        Event::ManualInstructions {
            order_id,
            instructions,
        } => {
            warn!(cert = %cert, order_id = %order_id,
                "manual validation: publish this: {instructions}");
        }
        Event::ChallengePresented { order_id } => {
            info!(event = "cert.challenge_presented", cert = %cert, domains = ?domains,
                order_id = %order_id, "challenge published");
        }
        Event::QuotaLow {
            product,
            total,
            used,
        } => {
            warn!(event = "quota.low", cert = %cert, product = %product, total, used,
                left = (total - used).max(0),
                "few certificates left in the product's quota; buy more before it runs out \
                (said once a day per product)");
        }
        Event::QuotaUnknown { product, error } => {
            warn!(cert = %cert, product = %product, error = %error,
                "cannot learn the quota (DescribePackageState); ordering anyway, CAS refuses \
                the order if none is left");
        }
        Event::PublishBusy { order_id, why } => {
            debug!(cert = %cert, order_id = %order_id, "{why}");
        }
        Event::RepublishFailed { order_id, error } => {
            debug!(cert = %cert, order_id = %order_id, "re-publishing: {error}");
        }
        Event::VerifyFailed { order_id } => {
            warn!(event = "cert.verify_failed", cert = %cert, domains = ?domains,
                order_id = %order_id,
                "CA could not verify the domains; order deleted, will retry");
        }
        Event::ValidationTimeout {
            order_id,
            since,
            timeout,
            last_error,
            proof,
        } => {
            warn!(event = "cert.validation_timeout", cert = %cert, domains = ?domains,
                order_id = %order_id, ordered_at = %since,
                validation_timeout = %humantime::format_duration(*timeout),
                last_error = last_error.as_deref().unwrap_or(""),
                proof = proof.as_deref().unwrap_or(""),
                "CA did not validate the domains within validation_timeout; order cancelled \
                and deleted, will retry");
        }
        Event::ProofUnreachable { order_id, reason } => {
            warn!(event = "cert.proof_unreachable", cert = %cert, domains = ?domains,
                order_id = %order_id, reason = %reason,
                "the published proof cannot be seen from outside, so CAS cannot see it either");
        }
        Event::ProofReachable { order_id } => {
            info!(event = "cert.proof_reachable", cert = %cert, domains = ?domains,
                order_id = %order_id, "the published proof can be seen from outside now");
        }
        Event::Issued {
            order_id,
            not_after,
        } => {
            info!(event = "cert.issued", cert = %cert, domains = ?domains,
                order_id = %order_id, not_after = %not_after, "certificate issued");
        }
        Event::RenewBeforeClamped => {
            warn!(cert = %cert, "renew_before is longer than most of the certificate's \
                lifetime; renewing with a third of the lifetime left instead, to avoid a \
                renewal loop");
        }
        Event::Deployed {
            order_id,
            dir,
            renew_at,
        } => {
            info!(event = "cert.deployed", cert = %cert, domains = ?domains,
                order_id = %order_id, dir = %dir.display(), renew_at = %renew_at,
                "certificate deployed");
        }
        Event::DeployFailed {
            order_id,
            error,
            retry_at,
        } => {
            error!(event = "cert.deploy_failed", cert = %cert, domains = ?domains,
                order_id = %order_id, error = %error, days_left, retry_at = %retry_at,
                "cannot write the new certificate set; the old set stays, no reload hook \
                runs; will retry");
        }
        Event::RenewFailed {
            error,
            permanent,
            severe,
            retry_at,
            api,
        } => {
            let what = if *api {
                "API call failed"
            } else {
                "attempt failed"
            };
            if *severe {
                error!(event = "cert.renew_failed", cert = %cert, domains = ?domains,
                    days_left, error = %error, permanent, retry_at = %retry_at, "{what}");
            } else {
                warn!(event = "cert.renew_failed", cert = %cert, domains = ?domains,
                    days_left, error = %error, permanent, retry_at = %retry_at, "{what}");
            }
        }
    }
}

/// Cancel (to pending) then delete (quota back). True when the order is gone or was never
/// deletable for a permanent reason (nothing more to try).
pub async fn cancel_and_delete<C: Ca>(ca: &C, order_id: OrderId) -> bool {
    // Cancel fails on orders not in domain_verify/process (e.g. verify_fail): that is fine.
    if let Err(e) = ca.cancel(order_id).await {
        if e.class() != ErrorClass::Permanent {
            return false;
        }
    }
    match ca.delete(order_id).await {
        Ok(()) => true,
        Err(e) => e.class() == ErrorClass::Permanent,
    }
}

/// Stops managing a certificate removed from the config: its unfinished orders are cancelled
/// and deleted (quota back), its proof cleaned up, its record forgotten; its files stay.
pub async fn remove<C: Ca, R: Records, P: Proofs>(
    ca: &C,
    records: &R,
    proofs: &P,
    name: &str,
) -> Result<(), StoreError> {
    let Some(rec) = records.get(name).await? else {
        return Ok(());
    };
    let plan = machine::removal(&rec);
    if let Some(p) = &plan.cleanup {
        if let Err(e) = proofs.cleanup(&rec.name, &rec.domains, p).await {
            warn!(cert = %name, error = %e, "challenge cleanup failed");
        }
    }
    for id in plan.orders {
        if !cancel_and_delete(ca, id).await {
            warn!(cert = %name, order_id = %id, "could not delete the unfinished order");
        }
    }
    records.remove_durable(name).await?;
    info!(event = "cert.removed", cert = %name, domains = ?rec.domains,
        "certificate removed from the configuration; its files stay");
    Ok(())
}

/// On start: a deployed set that is missing or altered on disk is installed again. True when
/// it was.
pub fn restore_live<D: Deployer>(deployer: &D, cert: &Certificate, rec: &CertRecord) -> bool {
    let Some(d) = &rec.deployed else {
        return false;
    };
    let set = PemSet {
        cert_pem: d.cert_pem.clone(),
        chain_pem: d.chain_pem.clone(),
        key_pem: d.key_pem.clone(),
    };
    // Byte comparison with the record, not a parse: cheap enough for thousands at start.
    if let Ok(true) = deployer.live_is(&rec.name, &set) {
        return false;
    }
    let origin = Origin {
        order_id: d.order_id.0,
        product: cert.product_code.clone(),
    };
    match deployer.install(cert, &set, &origin) {
        Ok(_) => {
            warn!(event = "cert.deployed", cert = %rec.name, order_id = %d.order_id,
                "live files were missing or altered; restored");
            true
        }
        Err(e) => {
            error!(cert = %rec.name, error = %e, "cannot restore the live files");
            false
        }
    }
}

/// The open order of `rec` (a proof is published only for one; 0 never names an order).
fn order_of(rec: &CertRecord) -> OrderId {
    rec.phase.open_order().unwrap_or(OrderId(0))
}
