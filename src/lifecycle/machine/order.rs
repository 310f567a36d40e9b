//! Starting an attempt: the key, the durable intent, the create and its answer, and adopting
//! the order an interrupted create made.

use sha2::{Digest, Sha256};

use super::failure::{failed, FailKind, Failure};
use super::{decide, pending, Cx, Effect, Event, QuotaLook, Request, StepOutcome, Transition};
use crate::lifecycle::schedule::{self, dur, AdoptQuery};
use crate::store::{CertRecord, PendingKey, Phase};
use crate::validation;
use cas_api::model::{is_free_product, CreateOrder, OrderId, OrderSummary};
use cas_api::secret::Secret;
use cas_api::{ApiError, ErrorClass};

pub(super) fn key_ready(
    mut rec: CertRecord,
    cx: &Cx<'_>,
    key: Option<(Secret, String)>,
) -> Transition {
    let (key, csr) = key.unzip();
    rec.phase = Phase::KeyReady {
        pending: PendingKey { key, csr },
    };
    // The attempt goes on at once, also when it was forced before its renewal time.
    rec.next_due = rec.next_due.min(cx.now);
    Transition::new(rec).persist("after_key_ready")
}

/// What the product's quota allows: nothing left fails the attempt without a create (retried
/// with the failure backoff); a low count is said (`quota.low`); an unknown one goes on (CAS
/// refuses the create if nothing is left). A look that failed is said and goes on, unless CAS
/// refused the request itself (credentials, clock): the create would be refused alike.
pub(super) fn quota_known(
    rec: CertRecord,
    cx: &Cx<'_>,
    look: QuotaLook,
    error: Option<ApiError>,
) -> Transition {
    let product = cx.cert.product_code.clone();
    let mut said = Vec::new();
    if let Some(e) = error {
        if e.is_auth() || e.code() == Some("InvalidTimeStamp.Expired") {
            return failed(rec, cx, Failure::api(&e));
        }
        said.push(Effect::Log(Event::QuotaUnknown {
            product: product.clone(),
            error: e.to_string(),
        }));
    }
    let QuotaLook::Known { total, used, warn } = look else {
        return intent(rec, cx).prepend(said);
    };
    if warn {
        said.push(Effect::Log(Event::QuotaLow {
            product: product.clone(),
            total,
            used,
        }));
    }
    let t = if used >= total {
        let reason = format!("quota exhausted for {product} ({used} of {total} used)");
        failed(rec, cx, Failure::attempt(reason, true))
    } else {
        intent(rec, cx)
    };
    t.prepend(said)
}

/// Records the intent durably, then asks for the call that spends quota.
fn intent(mut rec: CertRecord, cx: &Cx<'_>) -> Transition {
    let now = cx.now;
    let pending = pending(&rec);
    let csr = pending.csr.clone();
    let csr_fingerprint = csr
        .as_deref()
        .map(|c| hex::encode(Sha256::digest(c.as_bytes())))
        .unwrap_or_default();
    rec.phase = Phase::Intent {
        created_at: now,
        csr_fingerprint,
        product: Some(cx.cert.product_code.clone()),
        pending,
    };
    // Paid products renew the deployed order; free ones, forced renewals and changed names
    // order anew.
    let renew_from = rec
        .deployed
        .as_ref()
        .filter(|d| {
            !is_free_product(&cx.cert.product_code)
                && !rec.force_renew
                && d.info.not_after > now
                && d.info.names == cx.cert.domains
        })
        .map(|d| d.order_id);
    let call = match renew_from {
        Some(from) => Request::Renew { from, csr },
        None => Request::Create(CreateOrder {
            product_code: cx.cert.product_code.clone(),
            domains: cx.cert.domains.clone(),
            csr,
            validate_type: validation::validate_type(&cx.cert.validation),
            contact: cx.cert.contact.clone(),
            company_name: None,
            tags: vec![("managed-by".into(), "cas-certd".into())],
        }),
    };
    Transition::new(rec).persist("after_intent").call(call)
}

pub(super) fn created(
    mut rec: CertRecord,
    cx: &Cx<'_>,
    result: Result<OrderId, ApiError>,
) -> Transition {
    let now = cx.now;
    match result {
        Ok(order_id) => {
            rec.phase = Phase::Ordered {
                order_id,
                created_at: now,
                pending: pending(&rec),
            };
            rec.next_due = now;
            rec.last_error = None;
            // A renewal replaces a deployed certificate, whichever call made the order.
            let renewal = rec.deployed.is_some();
            Transition::new(rec)
                .effect(Effect::Failpoint("after_create"))
                .persist("after_ordered")
                .effect(Effect::MetricOrderCreated)
                .log(Event::Ordered { order_id, renewal })
                .done(StepOutcome::Progressed)
        }
        // The order may exist: stay in Intent so the next step looks for it first.
        Err(e) if e.class() == ErrorClass::OutcomeUnknown => {
            rec.last_error = Some(e.to_string());
            rec.next_due = now + dur(cx.poll_min);
            let at = rec.next_due;
            Transition::new(rec)
                .log(Event::CreateOutcomeUnknown {
                    error: e.to_string(),
                })
                .persist("after_create_unknown")
                .done(StepOutcome::Waiting(at))
        }
        Err(e) => {
            // Certainly not created: back to KeyReady (same key), retry later.
            rec.phase = Phase::KeyReady {
                pending: pending(&rec),
            };
            // A quota refusal in the operator's words (the same as `check` and `package`).
            let f = match e.quota_message(&cx.cert.product_code) {
                Some(reason) => Failure::new(reason, FailKind::Api { permanent: true }),
                None => Failure::api(&e),
            };
            failed(rec, cx, f)
        }
    }
}

pub(super) fn adopt(mut rec: CertRecord, cx: &Cx<'_>, orders: &[OrderSummary]) -> Transition {
    let Phase::Intent {
        created_at: intent_at,
        product,
        ..
    } = rec.phase.clone()
    else {
        return decide(rec, cx);
    };
    let known = rec.known_orders();
    let query = AdoptQuery {
        domains: &cx.cert.domains,
        product_code: product.as_deref(),
        intent_at,
        known: &known,
    };
    match schedule::pick_adoptable(&query, orders) {
        Some(order_id) => {
            rec.phase = Phase::Ordered {
                order_id,
                created_at: intent_at,
                pending: pending(&rec),
            };
            rec.next_due = cx.now;
            Transition::new(rec)
                .persist("after_adopted")
                .log(Event::OrderAdopted { order_id })
        }
        None => {
            // No order was made: creating now cannot double-spend.
            rec.phase = Phase::KeyReady {
                pending: pending(&rec),
            };
            Transition::new(rec).persist("after_no_order_found")
        }
    }
}
