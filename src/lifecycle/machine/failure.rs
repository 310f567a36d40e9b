//! The one failure tail, and giving up an order.

use chrono::{DateTime, Utc};

use super::{pending, Cx, Effect, Event, Request, StepOutcome, Transition};
use crate::lifecycle::schedule::{self, dur};
use crate::store::{CertRecord, Phase};
use cas_api::model::OrderId;
use cas_api::{ApiError, ErrorClass};

/// Gives up on the order in flight: its proof is cleaned up (the returned effects), and it is
/// retired and queued for cancel and delete (quota back) by the failure that follows.
pub(super) fn abandon(mut rec: CertRecord) -> (CertRecord, Vec<Effect>) {
    let cleanup = rec
        .phase
        .presented()
        .map(|p| Effect::CleanupProof(p.clone()))
        .into_iter()
        .collect();
    if let Some(order_id) = rec.phase.open_order() {
        give_up(&mut rec, order_id);
        rec.phase = Phase::Idle;
    }
    (rec, cleanup)
}

/// `order_id` is finished with: never adopted again, and deleted at the next clean.
pub(super) fn give_up(rec: &mut CertRecord, order_id: OrderId) {
    rec.retire(order_id);
    if !rec.orders_to_clean.contains(&order_id) {
        rec.orders_to_clean.push(order_id);
    }
}

/// What failed, and what that means for the record.
#[derive(Debug)]
pub(super) struct Failure {
    reason: String,
    kind: FailKind,
}

#[derive(Debug)]
pub(super) enum FailKind {
    /// The attempt is over: its order (if any) is given up, its key dropped; the next attempt
    /// starts afresh after the retry backoff.
    Attempt { permanent: bool, severe: bool },
    /// An API call failed: the same step is tried again after the retry backoff (the caller
    /// chose the phase).
    Api { permanent: bool },
    /// The issued certificate could not be written: the order and key stay, and the write is
    /// tried again with the poll backoff, without a new order.
    Deploy {
        order_id: OrderId,
        presented_at: Option<DateTime<Utc>>,
        error: String,
    },
}

impl Failure {
    pub(super) fn new(reason: String, kind: FailKind) -> Failure {
        Failure { reason, kind }
    }

    pub(super) fn attempt(reason: String, permanent: bool) -> Failure {
        Failure::new(
            reason,
            FailKind::Attempt {
                permanent,
                severe: false,
            },
        )
    }

    pub(super) fn severe(reason: String, permanent: bool) -> Failure {
        Failure::new(
            reason,
            FailKind::Attempt {
                permanent,
                severe: true,
            },
        )
    }

    pub(super) fn api(e: &ApiError) -> Failure {
        let permanent = e.class() == ErrorClass::Permanent;
        Failure::new(e.to_string(), FailKind::Api { permanent })
    }
}

/// The one failure tail: count it, say why, schedule the retry, persist, and clean up what the
/// attempt leaves behind.
pub(super) fn failed(mut rec: CertRecord, cx: &Cx<'_>, f: Failure) -> Transition {
    let now = cx.now;
    rec.failures += 1;
    rec.last_error = Some(f.reason.clone());
    let (event, failpoint) = match f.kind {
        FailKind::Attempt { permanent, severe } => {
            if let Some(order_id) = rec.phase.open_order() {
                give_up(&mut rec, order_id);
            }
            rest_failed(&mut rec, &f.reason, permanent, now);
            let event = Event::RenewFailed {
                error: f.reason,
                permanent,
                severe,
                retry_at: rec.next_due,
                api: false,
            };
            (event, Some("after_failed"))
        }
        FailKind::Api { permanent } => {
            if rec.phase.is_resting() {
                rest_failed(&mut rec, &f.reason, permanent, now);
            } else {
                // An API failure in flight keeps the phase: the order goes on after the retry time.
                rec.next_due = now + dur(schedule::retry_backoff(rec.failures - 1, permanent));
            }
            let event = Event::RenewFailed {
                error: f.reason,
                permanent,
                severe: false,
                retry_at: rec.next_due,
                api: true,
            };
            (event, None)
        }
        FailKind::Deploy {
            order_id,
            presented_at,
            error,
        } => {
            rec.next_due = now + dur(schedule::backoff(cx.poll_min, cx.poll_max, rec.failures));
            // The proof is already cleaned up: nothing left to present or clean.
            rec.phase = Phase::Polling {
                pending: pending(&rec),
                order_id,
                presented: None,
                presented_at: presented_at.unwrap_or(now),
                next_poll: rec.next_due,
                attempt: 0,
            };
            let event = Event::DeployFailed {
                order_id,
                error,
                retry_at: rec.next_due,
            };
            (event, None)
        }
    };
    // A failed attempt waits out its retry time, forced or not (a forced renewal that kept
    // skipping the wait would retry at once, again and again).
    rec.force_renew = false;
    let at = rec.next_due;
    // Persisted before it is said: a write the store refuses (fleet mode: the certificate is
    // no longer this host's) drops the step, and a failure that was not recorded is not
    // announced (a default notify event) nor counted.
    let mut t = Transition::new(rec)
        .effect(Effect::Persist)
        .log(event)
        .effect(Effect::MetricRenewalFailed);
    if let Some(fp) = failpoint {
        t = t.effect(Effect::Failpoint(fp));
    }
    // Given-up orders are deleted at once (quota back); what cannot be deleted now stays
    // queued for the next step.
    if t.rec.orders_to_clean.is_empty() {
        t.done(StepOutcome::Waiting(at))
    } else {
        let ids = t.rec.orders_to_clean.clone();
        t.call(Request::CleanOrders(ids))
    }
}

/// The record at rest after a failure: waiting out its retry backoff.
fn rest_failed(rec: &mut CertRecord, reason: &str, permanent: bool, now: DateTime<Utc>) {
    rec.next_due = now + dur(schedule::retry_backoff(rec.failures - 1, permanent));
    rec.phase = Phase::Failed {
        reason: reason.to_string(),
        at: now,
        attempt: rec.failures,
    };
}
