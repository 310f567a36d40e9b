//! One persisted step of one certificate. API failures never escape: they are recorded in the
//! record (`last_error`, backoff in `next_due`); only a store failure is returned as an error.
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tracing::{debug, error, info, warn};

use super::schedule::{self, dur, AdoptQuery};
use crate::cas::model::{CertificateState, CreateOrder, ListOrders, OrderId};
use crate::cas::{ApiError, Client, ErrorClass};
use crate::config::{Certificate, KeyKind};
use crate::deploy::{self, PemSet};
use crate::failpoint;
use crate::metrics::Metrics;
use crate::store::{CertRecord, DeployedCert, Phase, Store, StoreError};
use crate::validation::{self, Presented};

/// Everything a step needs. `now` and `jitter01` are inputs so decisions are reproducible.
pub struct StepCtx<'a> {
    pub client: &'a Client,
    pub store: &'a Store,
    pub cert: &'a Certificate,
    pub output_dir: &'a Path,
    pub poll_min: Duration,
    pub poll_max: Duration,
    pub metrics: &'a Metrics,
    pub now: DateTime<Utc>,
    /// Random in [0, 1) for renewal jitter.
    pub jitter01: f64,
}

/// What a step did.
#[derive(Debug)]
pub enum StepOutcome {
    /// Nothing to do before this time.
    Waiting(DateTime<Utc>),
    /// A step was taken; call again at once.
    Progressed,
    /// A new certificate was deployed (the reload hook is due).
    Deployed(Box<deploy::Deployed>),
}

/// Does one step for `rec` and persists it. The record passed in must be the stored one.
pub async fn step(ctx: &StepCtx<'_>, rec: &mut CertRecord) -> Result<StepOutcome, StoreError> {
    clean_abandoned(ctx, rec).await?;
    let now = ctx.now;
    let resting = matches!(
        rec.phase,
        Phase::Idle | Phase::Deployed { .. } | Phase::Failed { .. }
    );
    // A forced renewal skips the wait only while nothing is in flight (never the poll backoff).
    if rec.next_due > now && !(resting && rec.force_renew) {
        return Ok(StepOutcome::Waiting(rec.next_due));
    }
    match rec.phase.clone() {
        Phase::Idle | Phase::Deployed { .. } | Phase::Failed { .. } => {
            if rec.deployed.is_some() {
                info!(event = "cert.renew_due", cert = %rec.name, domains = ?rec.domains,
                    forced = rec.force_renew, "renewal due");
            }
            make_key(ctx, rec).await
        }
        Phase::KeyReady => create(ctx, rec).await,
        Phase::Intent { created_at, .. } => adopt(ctx, rec, created_at).await,
        Phase::Ordered { order_id, .. }
        | Phase::Presented { order_id, .. }
        | Phase::Polling { order_id, .. } => poll(ctx, rec, order_id).await,
    }
}

async fn make_key(ctx: &StepCtx<'_>, rec: &mut CertRecord) -> Result<StepOutcome, StoreError> {
    rec.domains = ctx.cert.domains.clone();
    if ctx.cert.key == KeyKind::Cas {
        rec.pending_key = None;
        rec.pending_csr = None;
    } else {
        match crate::keys::generate(ctx.cert.key, &ctx.cert.domains) {
            Ok((key, csr)) => {
                rec.pending_key = Some(key);
                rec.pending_csr = Some(csr);
            }
            Err(e) => return fail(ctx, rec, format!("key: {e}"), true).await,
        }
    }
    rec.phase = Phase::KeyReady;
    ctx.store.put_durable(rec).await?;
    failpoint::hit("after_key_ready");
    Ok(StepOutcome::Progressed)
}

async fn create(ctx: &StepCtx<'_>, rec: &mut CertRecord) -> Result<StepOutcome, StoreError> {
    let now = ctx.now;
    // Nothing is paid for while the proof could not be published (a missing webroot, no
    // Alidns zone, a validator that cannot run): the order would only hold quota and fail.
    let v = &ctx.cert.validation;
    let problems = validation::preflight(v, &ctx.cert.domains, Some(ctx.client)).await;
    if !problems.is_empty() {
        let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let reason = format!(
            "cannot publish the proof, nothing ordered: {}",
            all.join("; ")
        );
        return fail(ctx, rec, reason, false).await;
    }
    let csr_fingerprint = rec
        .pending_csr
        .as_deref()
        .map(|c| hex::encode(Sha256::digest(c.as_bytes())))
        .unwrap_or_default();
    // The intent is durable before the call that spends quota (invariant 1).
    rec.phase = Phase::Intent {
        created_at: now,
        csr_fingerprint,
    };
    ctx.store.put_durable(rec).await?;
    failpoint::hit("after_intent");

    let renew_from = rec
        .deployed
        .as_ref()
        .filter(|d| {
            !schedule::is_free_product(&ctx.cert.product_code)
                && !rec.force_renew
                && d.info.not_after > now
                && d.info.names == ctx.cert.domains
        })
        .map(|d| d.order_id);
    let result = match renew_from {
        Some(old) => {
            ctx.client
                .renew_certificate_order(old, rec.pending_csr.as_deref())
                .await
        }
        None => {
            let req = CreateOrder {
                product_code: ctx.cert.product_code.clone(),
                domains: ctx.cert.domains.clone(),
                csr: rec.pending_csr.clone(),
                validate_type: validation::validate_type(&ctx.cert.validation),
                contact: ctx.cert.contact.clone(),
                company_name: None,
                tags: vec![("managed-by".into(), "cas-certd".into())],
            };
            ctx.client.create_certificate_for_package(&req).await
        }
    };
    match result {
        Ok(order_id) => {
            failpoint::hit("after_create");
            rec.phase = Phase::Ordered {
                order_id,
                created_at: now,
            };
            rec.next_due = now;
            rec.last_error = None;
            ctx.store.put_durable(rec).await?;
            failpoint::hit("after_ordered");
            ctx.metrics.order_created(&rec.name);
            // A renewal replaces a deployed certificate, whichever call made the order (free
            // products and forced renewals order anew rather than through RenewCertificateOrder).
            info!(event = "cert.ordered", cert = %rec.name, domains = ?rec.domains,
                order_id = %order_id, renewal = rec.deployed.is_some(), "order created");
            Ok(StepOutcome::Progressed)
        }
        Err(e) => match e.class() {
            // The order may exist: stay in Intent so the next step looks for it first.
            ErrorClass::OutcomeUnknown => {
                warn!(event = "cert.renew_failed", cert = %rec.name, error = %e,
                    days_left = rec.days_left(now),
                    "create outcome unknown; will look for the order before creating again");
                rec.last_error = Some(e.to_string());
                rec.next_due = now + dur(ctx.poll_min);
                ctx.store.put_durable(rec).await?;
                failpoint::hit("after_create_unknown");
                Ok(StepOutcome::Waiting(rec.next_due))
            }
            class => {
                // Certainly not created: back to KeyReady, retry later.
                rec.phase = Phase::KeyReady;
                api_failure(ctx, rec, &e, class == ErrorClass::Permanent).await
            }
        },
    }
}

async fn adopt(
    ctx: &StepCtx<'_>,
    rec: &mut CertRecord,
    intent_at: DateTime<Utc>,
) -> Result<StepOutcome, StoreError> {
    let now = ctx.now;
    let Some(first) = ctx.cert.domains.first() else {
        return fail(ctx, rec, "no domains".into(), true).await;
    };
    let q = ListOrders {
        keyword: Some(first.clone()),
        current_page: 1,
        show_size: 50,
        ..Default::default()
    };
    let page = match ctx.client.list_user_certificate_order(&q).await {
        Ok(p) => p,
        Err(e) => {
            let permanent = e.class() == ErrorClass::Permanent;
            return api_failure(ctx, rec, &e, permanent).await;
        }
    };
    let known = rec.known_orders();
    let query = AdoptQuery {
        domains: &ctx.cert.domains,
        product_code: &ctx.cert.product_code,
        intent_at,
        known: &known,
    };
    match schedule::pick_adoptable(&query, &page.orders) {
        Some(order_id) => {
            rec.phase = Phase::Ordered {
                order_id,
                created_at: intent_at,
            };
            rec.next_due = now;
            ctx.store.put_durable(rec).await?;
            failpoint::hit("after_adopted");
            info!(event = "cert.order_adopted", cert = %rec.name, domains = ?rec.domains,
                order_id = %order_id, "adopted the order an interrupted create made");
        }
        None => {
            // No order was made: creating now cannot double-spend.
            rec.phase = Phase::KeyReady;
            ctx.store.put_durable(rec).await?;
            failpoint::hit("after_no_order_found");
        }
    }
    Ok(StepOutcome::Progressed)
}

async fn poll(
    ctx: &StepCtx<'_>,
    rec: &mut CertRecord,
    order_id: OrderId,
) -> Result<StepOutcome, StoreError> {
    let now = ctx.now;
    let state = match ctx.client.describe_certificate_state(order_id).await {
        Ok(s) => s,
        Err(e) => {
            let permanent = e.class() == ErrorClass::Permanent;
            if permanent {
                // The order is gone or unusable: start over later (never a panic, never a loop).
                abandon(ctx, rec, order_id).await;
                rec.phase = Phase::Failed {
                    reason: e.to_string(),
                    at: now,
                    attempt: rec.failures,
                };
            }
            return api_failure(ctx, rec, &e, permanent).await;
        }
    };
    let vctx = validation::Ctx {
        cert_name: &rec.name,
        domains: &ctx.cert.domains,
        client: ctx.client,
    };
    match state {
        CertificateState::DomainVerify(ch) => match rec.phase.clone() {
            Phase::Ordered { .. } => {
                match validation::present(&ctx.cert.validation, &ch, &vctx).await {
                    Ok(presented) => {
                        failpoint::hit("after_publish");
                        if let Presented::Manual { instructions } = &presented {
                            warn!(cert = %rec.name, order_id = %order_id,
                            "manual validation: publish this: {instructions}");
                        }
                        rec.phase = Phase::Presented {
                            order_id,
                            presented,
                            presented_at: now,
                            attempt: 0,
                        };
                        let d = schedule::first_poll_delay(
                            ctx.store.issue_ewma()?,
                            ctx.poll_min,
                            ctx.poll_max,
                        );
                        rec.next_due = now + dur(d);
                        rec.last_error = None;
                        ctx.store.put_durable(rec).await?;
                        failpoint::hit("after_presented");
                        info!(event = "cert.challenge_presented", cert = %rec.name,
                        domains = ?rec.domains, order_id = %order_id, "challenge published");
                        Ok(StepOutcome::Progressed)
                    }
                    // Another certificate's FILE challenge holds the same path: not a
                    // failure, just come back at the next poll.
                    Err(validation::ValidationError::Busy(why)) => {
                        debug!(cert = %rec.name, order_id = %order_id, "{why}");
                        wait_poll(ctx, rec, 0).await
                    }
                    Err(e) => fail(ctx, rec, format!("validation: {e}"), false).await,
                }
            }
            Phase::Presented {
                presented,
                presented_at,
                attempt,
                ..
            } => {
                // Still unverified: publish a FILE proof again. After a restart, or after
                // someone else's write, the file may be gone or hold other content.
                if let Presented::File { .. } = presented {
                    if let Err(e) = validation::present(&ctx.cert.validation, &ch, &vctx).await {
                        debug!(cert = %rec.name, order_id = %order_id, "re-publishing: {e}");
                    }
                }
                rec.phase = Phase::Presented {
                    order_id,
                    presented,
                    presented_at,
                    attempt: attempt + 1,
                };
                wait_poll(ctx, rec, attempt + 1).await
            }
            _ => wait_poll(ctx, rec, 0).await,
        },
        CertificateState::Process => {
            let (presented, presented_at, attempt) = match &rec.phase {
                Phase::Presented {
                    presented,
                    presented_at,
                    attempt,
                    ..
                } => (Some(presented.clone()), *presented_at, *attempt),
                Phase::Polling {
                    presented,
                    presented_at,
                    attempt,
                    ..
                } => (presented.clone(), *presented_at, *attempt),
                _ => (None, now, 0),
            };
            let next = now + dur(schedule::backoff(ctx.poll_min, ctx.poll_max, attempt + 1));
            rec.phase = Phase::Polling {
                order_id,
                presented,
                presented_at,
                next_poll: next,
                attempt: attempt + 1,
            };
            wait_poll(ctx, rec, attempt + 1).await
        }
        CertificateState::VerifyFail => {
            warn!(event = "cert.verify_failed", cert = %rec.name, domains = ?rec.domains,
                order_id = %order_id, "CA could not verify the domains; order deleted, will retry");
            abandon(ctx, rec, order_id).await;
            fail(
                ctx,
                rec,
                format!("order {order_id}: verification failed"),
                false,
            )
            .await
        }
        CertificateState::Issued(ic) => issued(ctx, rec, order_id, ic).await,
        other => {
            // payed/unknow/anything new: look again later.
            let attempt = rec.failures + 1;
            rec.last_error = Some(format!("order {order_id} is in state {other:?}"));
            rec.failures = attempt;
            wait_poll(ctx, rec, attempt).await
        }
    }
}

async fn issued(
    ctx: &StepCtx<'_>,
    rec: &mut CertRecord,
    order_id: OrderId,
    ic: crate::cas::model::IssuedCertificate,
) -> Result<StepOutcome, StoreError> {
    let now = ctx.now;
    let presented_at = match &rec.phase {
        Phase::Presented { presented_at, .. } | Phase::Polling { presented_at, .. } => {
            Some(*presented_at)
        }
        _ => None,
    };
    cleanup_presented(ctx, rec).await;
    let key = match rec.pending_key.clone().or(ic.private_key.clone()) {
        Some(k) if !k.is_empty() => k,
        _ => {
            return fail(
                ctx,
                rec,
                format!("order {order_id}: issued without a key"),
                true,
            )
            .await
        }
    };
    let (cert_pem, chain_pem) = match deploy::split_chain(&ic.certificate) {
        Ok(x) => x,
        Err(e) => return fail(ctx, rec, format!("order {order_id}: {e}"), false).await,
    };
    let set = PemSet {
        cert_pem,
        chain_pem,
        key_pem: key,
    };
    let info = match deploy::check(&set, &ctx.cert.domains, now) {
        Ok(i) => i,
        Err(e) => {
            // A CA answer we refuse is an error, not a routine retry: one line, at error level.
            let reason = format!("order {order_id}: issued certificate refused: {e}");
            return fail_at(ctx, rec, reason, false, true).await;
        }
    };
    info!(event = "cert.issued", cert = %rec.name, domains = ?rec.domains, order_id = %order_id,
        not_after = %info.not_after, "certificate issued");
    let deployed = match deploy::install(
        ctx.output_dir,
        &rec.name,
        &set,
        &ctx.cert.files,
        ctx.cert.keep_versions,
    ) {
        Ok(d) => d,
        Err(e) => return deploy_failed(ctx, rec, order_id, presented_at, &e).await,
    };
    failpoint::hit("after_install");
    if let Some(p) = presented_at {
        let secs = (now - p).num_milliseconds() as f64 / 1000.0;
        ctx.store.observe_issue_time(secs.max(0.0))?;
    }
    let plan = schedule::renew_at(
        info.not_before,
        info.not_after,
        ctx.cert.renew_before,
        ctx.jitter01,
    );
    if plan.clamped {
        warn!(cert = %rec.name, "renew_before is longer than most of the certificate's lifetime; \
            renewing with a third of the lifetime left instead, to avoid a renewal loop");
    }
    if let Some(old) = rec.deployed.as_ref().map(|d| d.order_id) {
        rec.retire(old);
    }
    rec.deployed = Some(DeployedCert {
        order_id,
        info: info.clone(),
        cert_pem: set.cert_pem,
        chain_pem: set.chain_pem,
        key_pem: set.key_pem,
    });
    rec.phase = Phase::Deployed { order_id, at: now };
    rec.pending_key = None;
    rec.pending_csr = None;
    rec.force_renew = false;
    rec.failures = 0;
    rec.last_error = None;
    rec.last_success = Some(now);
    rec.hook_pending = ctx.cert.reload.is_some();
    rec.hook_attempt = 0;
    rec.next_due = plan.at;
    ctx.store.put_durable(rec).await?;
    failpoint::hit("after_deployed");
    info!(event = "cert.deployed", cert = %rec.name, domains = ?rec.domains, order_id = %order_id,
        dir = %deployed.dir.display(), renew_at = %plan.at, "certificate deployed");
    ctx.metrics.set_certificate(
        &rec.name,
        Some(info.not_after.timestamp()),
        rec.phase.name(),
        Some(now.timestamp()),
    );
    Ok(StepOutcome::Deployed(Box::new(deployed)))
}

/// Writing the new set failed (read-only or full disk): the old set is untouched and no hook
/// runs. The issued order and our key stay in the record, so the next attempt fetches the
/// certificate again and retries the write — soon (poll backoff), and without a new order.
async fn deploy_failed(
    ctx: &StepCtx<'_>,
    rec: &mut CertRecord,
    order_id: OrderId,
    presented_at: Option<DateTime<Utc>>,
    e: &deploy::DeployError,
) -> Result<StepOutcome, StoreError> {
    let now = ctx.now;
    rec.failures += 1;
    rec.last_error = Some(format!("deploy: {e}"));
    rec.next_due = now + dur(schedule::backoff(ctx.poll_min, ctx.poll_max, rec.failures));
    // The challenge is already cleaned up: nothing left to present or clean.
    rec.phase = Phase::Polling {
        order_id,
        presented: None,
        presented_at: presented_at.unwrap_or(now),
        next_poll: rec.next_due,
        attempt: 0,
    };
    error!(event = "cert.deploy_failed", cert = %rec.name, domains = ?rec.domains,
        order_id = %order_id, error = %e, days_left = rec.days_left(now),
        retry_at = %rec.next_due,
        "cannot write the new certificate set; the old set stays, no reload hook runs; will retry");
    ctx.metrics.renewal_failed(&rec.name);
    ctx.store.put_durable(rec).await?;
    Ok(StepOutcome::Waiting(rec.next_due))
}

async fn wait_poll(
    ctx: &StepCtx<'_>,
    rec: &mut CertRecord,
    attempt: u32,
) -> Result<StepOutcome, StoreError> {
    rec.next_due = ctx.now + dur(schedule::backoff(ctx.poll_min, ctx.poll_max, attempt));
    ctx.store.put_durable(rec).await?;
    failpoint::hit("after_poll");
    Ok(StepOutcome::Waiting(rec.next_due))
}

/// Records a failed API call and schedules the retry.
async fn api_failure(
    ctx: &StepCtx<'_>,
    rec: &mut CertRecord,
    e: &ApiError,
    permanent: bool,
) -> Result<StepOutcome, StoreError> {
    rec.failures += 1;
    rec.last_error = Some(e.to_string());
    rec.next_due = ctx.now + dur(schedule::retry_backoff(rec.failures - 1, permanent));
    warn!(event = "cert.renew_failed", cert = %rec.name, domains = ?rec.domains, error = %e,
        days_left = rec.days_left(ctx.now),
        permanent, retry_at = %rec.next_due, "API call failed");
    ctx.metrics.renewal_failed(&rec.name);
    ctx.store.put_durable(rec).await?;
    Ok(StepOutcome::Waiting(rec.next_due))
}

/// Records a failure of this attempt: the pending order (if any) is already dealt with; the
/// deployed certificate stays.
async fn fail(
    ctx: &StepCtx<'_>,
    rec: &mut CertRecord,
    reason: String,
    permanent: bool,
) -> Result<StepOutcome, StoreError> {
    fail_at(ctx, rec, reason, permanent, false).await
}

/// [`fail`], logged at error level when `severe` (a refused certificate).
async fn fail_at(
    ctx: &StepCtx<'_>,
    rec: &mut CertRecord,
    reason: String,
    permanent: bool,
    severe: bool,
) -> Result<StepOutcome, StoreError> {
    rec.failures += 1;
    rec.last_error = Some(reason.clone());
    rec.next_due = ctx.now + dur(schedule::retry_backoff(rec.failures - 1, permanent));
    if let Some(order_id) = rec.phase.open_order() {
        rec.retire(order_id);
        if !rec.orders_to_clean.contains(&order_id) {
            rec.orders_to_clean.push(order_id);
        }
    }
    rec.phase = Phase::Failed {
        reason: reason.clone(),
        at: ctx.now,
        attempt: rec.failures,
    };
    rec.pending_key = None;
    rec.pending_csr = None;
    if severe {
        error!(event = "cert.renew_failed", cert = %rec.name, domains = ?rec.domains,
            days_left = rec.days_left(ctx.now), error = %reason, retry_at = %rec.next_due,
            "attempt failed");
    } else {
        warn!(event = "cert.renew_failed", cert = %rec.name, domains = ?rec.domains,
            days_left = rec.days_left(ctx.now), error = %reason, retry_at = %rec.next_due,
            "attempt failed");
    }
    ctx.metrics.renewal_failed(&rec.name);
    ctx.store.put_durable(rec).await?;
    failpoint::hit("after_failed");
    Ok(StepOutcome::Waiting(rec.next_due))
}

async fn cleanup_presented(ctx: &StepCtx<'_>, rec: &CertRecord) {
    if let Some(p) = rec.phase.presented() {
        let vctx = validation::Ctx {
            cert_name: &rec.name,
            domains: &rec.domains,
            client: ctx.client,
        };
        if let Err(e) = validation::cleanup(p, &vctx).await {
            warn!(cert = %rec.name, error = %e, "challenge cleanup failed");
        }
    }
}

/// Cleans up the challenge and deletes the order so its quota comes back; an order that cannot
/// be deleted now is remembered in `orders_to_clean`.
async fn abandon(ctx: &StepCtx<'_>, rec: &mut CertRecord, order_id: OrderId) {
    cleanup_presented(ctx, rec).await;
    rec.retire(order_id);
    if !cancel_and_delete(ctx.client, order_id).await && !rec.orders_to_clean.contains(&order_id) {
        rec.orders_to_clean.push(order_id);
    }
    if let Phase::Ordered { .. } | Phase::Presented { .. } | Phase::Polling { .. } = rec.phase {
        rec.phase = Phase::Idle;
    }
}

/// Cancel (to pending) then delete (quota back). True when the order is gone or was never
/// deletable for a permanent reason (nothing more to try).
pub async fn cancel_and_delete(client: &Client, order_id: OrderId) -> bool {
    // Cancel fails on orders not in domain_verify/process (e.g. verify_fail): that is fine.
    if let Err(e) = client.cancel_order(order_id).await {
        if e.class() != ErrorClass::Permanent {
            return false;
        }
    }
    match client.delete_certificate(order_id).await {
        Ok(()) => true,
        Err(e) => e.class() == ErrorClass::Permanent,
    }
}

async fn clean_abandoned(ctx: &StepCtx<'_>, rec: &mut CertRecord) -> Result<(), StoreError> {
    if rec.orders_to_clean.is_empty() {
        return Ok(());
    }
    let mut keep = Vec::new();
    for id in rec.orders_to_clean.clone() {
        if !cancel_and_delete(ctx.client, id).await {
            keep.push(id);
        }
    }
    if keep != rec.orders_to_clean {
        rec.orders_to_clean = keep;
        ctx.store.put_durable(rec).await?;
    }
    Ok(())
}

/// Stops managing a certificate removed from the config: its unfinished order is cancelled and
/// deleted (quota back), its challenge cleaned, its record forgotten; its files stay.
pub async fn remove(client: &Client, store: &Store, name: &str) -> Result<(), StoreError> {
    let Some(rec) = store.get(name)? else {
        return Ok(());
    };
    if let Some(p) = rec.phase.presented() {
        let vctx = validation::Ctx {
            cert_name: &rec.name,
            domains: &rec.domains,
            client,
        };
        if let Err(e) = validation::cleanup(p, &vctx).await {
            warn!(cert = %name, error = %e, "challenge cleanup failed");
        }
    }
    let mut orders = rec.orders_to_clean.clone();
    orders.extend(rec.phase.open_order());
    for id in orders {
        if !cancel_and_delete(client, id).await {
            warn!(cert = %name, order_id = %id, "could not delete the unfinished order");
        }
    }
    store.remove(name)?;
    store.flush().await?;
    info!(event = "cert.removed", cert = %name, domains = ?rec.domains,
        "certificate removed from the configuration; its files stay");
    Ok(())
}

/// On start: a deployed set that is missing or altered on disk is installed again.
pub fn restore_live(cert: &Certificate, output_dir: &Path, rec: &CertRecord) -> bool {
    let Some(d) = &rec.deployed else {
        return false;
    };
    let set = PemSet {
        cert_pem: d.cert_pem.clone(),
        chain_pem: d.chain_pem.clone(),
        key_pem: d.key_pem.clone(),
    };
    // Byte comparison with the record, not a parse: cheap enough for thousands at start.
    match deploy::live_is(output_dir, &rec.name, &set) {
        Ok(true) => false,
        Ok(false) | Err(_) => {
            match deploy::install(output_dir, &rec.name, &set, &cert.files, cert.keep_versions) {
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
    }
}
