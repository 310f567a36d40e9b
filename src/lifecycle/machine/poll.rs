//! An order in flight: what CAS says of it, publishing its proof, polling with backoff, and
//! the validation deadline.

use chrono::{DateTime, Utc};

use super::failure::{abandon, failed, Failure};
use super::issue::issued;
use super::proof::then_check;
use super::{decide, pending, Cx, Effect, Event, Request, StepOutcome, Transition};
use crate::lifecycle::schedule::{self, dur};
use crate::store::{CertRecord, Phase};
use crate::validation::{Presented, ValidationError};
use cas_api::model::{CertificateState, OrderId};
use cas_api::ErrorClass;

/// When the order in flight must have left domain_verify: `validation_timeout` after it was
/// created (after its proof was published, in records too old to know). Only orders waiting for
/// validation have one: one CAS moved on to review (`process`) was validated.
pub(super) fn validation_deadline(rec: &CertRecord, cx: &Cx<'_>) -> Option<DateTime<Utc>> {
    let since = match &rec.phase {
        Phase::Ordered { created_at, .. } => *created_at,
        Phase::Presented {
            ordered_at,
            presented_at,
            ..
        } => ordered_at.unwrap_or(*presented_at),
        _ => return None,
    };
    Some(since + dur(cx.cert.validation_timeout))
}

/// Gives the order up at its deadline (cancelled and deleted: quota back; proof removed) and
/// fails the attempt, so the certificate retries with the failure backoff.
fn timed_out(
    rec: CertRecord,
    cx: &Cx<'_>,
    order_id: OrderId,
    deadline: DateTime<Utc>,
) -> Transition {
    let timeout = cx.cert.validation_timeout;
    let event = Event::ValidationTimeout {
        order_id,
        since: deadline - dur(timeout),
        timeout,
        last_error: rec.last_error.clone(),
        proof: rec.proof_now(),
    };
    let (rec, cleanup) = abandon(rec);
    let reason = format!(
        "order {order_id}: not validated within validation_timeout ({}); order cancelled and deleted",
        humantime::format_duration(timeout)
    );
    failed(rec, cx, Failure::attempt(reason, false))
        .prepend(cleanup)
        .prepend(vec![Effect::Log(event)])
}

pub(super) fn described(mut rec: CertRecord, cx: &Cx<'_>, state: CertificateState) -> Transition {
    let now = cx.now;
    let Some(order_id) = rec.phase.open_order() else {
        return decide(rec, cx);
    };
    match state {
        CertificateState::DomainVerify(ch) => match validation_deadline(&rec, cx) {
            Some(deadline) if now >= deadline => timed_out(rec, cx, order_id, deadline),
            _ => still_unverified(rec, cx, ch),
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
            let next_poll = now + dur(schedule::backoff(cx.poll_min, cx.poll_max, attempt + 1));
            rec.phase = Phase::Polling {
                pending: pending(&rec),
                order_id,
                presented,
                presented_at,
                next_poll,
                attempt: attempt + 1,
            };
            wait_poll(rec, cx, attempt + 1)
        }
        CertificateState::VerifyFail => {
            let (rec, cleanup) = abandon(rec);
            let reason = format!("order {order_id}: verification failed");
            failed(rec, cx, Failure::attempt(reason, false))
                .prepend(cleanup)
                .prepend(vec![Effect::Log(Event::VerifyFailed { order_id })])
        }
        CertificateState::Issued(ic) => issued(rec, cx, order_id, ic),
        other => {
            // payed/unknow/anything new: look again later.
            let attempt = rec.failures + 1;
            rec.last_error = Some(format!("order {order_id} is in state {other:?}"));
            rec.failures = attempt;
            wait_poll(rec, cx, attempt)
        }
    }
}

/// CAS has not validated the order yet: publish its proof (again), or wait.
fn still_unverified(rec: CertRecord, cx: &Cx<'_>, ch: cas_api::model::Challenge) -> Transition {
    match rec.phase {
        Phase::Ordered { .. } => Transition::new(rec).call(Request::Publish(ch)),
        // Still unverified: publish a FILE proof again. After a restart, or after someone
        // else's write, the file may be gone or hold other content.
        Phase::Presented {
            presented: Presented::File { .. },
            ..
        } => Transition::new(rec).call(Request::Republish(ch)),
        Phase::Presented { .. } => then_check(unverified(rec, cx), cx, ch),
        _ => wait_poll(rec, cx, 0),
    }
}

pub(super) fn published(
    mut rec: CertRecord,
    cx: &Cx<'_>,
    result: Result<Presented, ValidationError>,
    issue_ewma: Option<f64>,
) -> Transition {
    let now = cx.now;
    let Some(order_id) = rec.phase.open_order() else {
        return decide(rec, cx);
    };
    match result {
        Ok(presented) => {
            let mut first = vec![Effect::Failpoint("after_publish")];
            if let Presented::Manual { instructions } = &presented {
                first.push(Effect::Log(Event::ManualInstructions {
                    order_id,
                    instructions: instructions.clone(),
                }));
            }
            let ordered_at = match &rec.phase {
                Phase::Ordered { created_at, .. } => Some(*created_at),
                _ => None,
            };
            rec.phase = Phase::Presented {
                pending: pending(&rec),
                order_id,
                presented,
                presented_at: now,
                ordered_at,
                attempt: 0,
            };
            let delay = schedule::first_poll_delay(issue_ewma, cx.poll_min, cx.poll_max);
            rec.next_due = at_most_deadline(&rec, cx, now + dur(delay));
            rec.last_error = None;
            Transition::new(rec)
                .persist("after_presented")
                .log(Event::ChallengePresented { order_id })
                .prepend(first)
        }
        Err(ValidationError::Busy(why)) => {
            wait_poll(rec, cx, 0).prepend(vec![Effect::Log(Event::PublishBusy { order_id, why })])
        }
        // The DNS API refused for now (throttling, a 5xx, the network): the order stays and
        // the publish is tried again after the retry backoff; giving it up would pay again.
        Err(ValidationError::Dns(e)) if e.class() == ErrorClass::Retryable => {
            failed(rec, cx, Failure::api(&e))
        }
        Err(e) => failed(rec, cx, Failure::attempt(format!("validation: {e}"), false)),
    }
}

/// Published, still unverified: count the attempt and poll again with backoff.
pub(super) fn unverified(mut rec: CertRecord, cx: &Cx<'_>) -> Transition {
    let attempt = match &mut rec.phase {
        Phase::Presented { attempt, .. } => {
            *attempt += 1;
            *attempt
        }
        _ => 0,
    };
    wait_poll(rec, cx, attempt)
}

pub(super) fn wait_poll(mut rec: CertRecord, cx: &Cx<'_>, attempt: u32) -> Transition {
    let next = cx.now + dur(schedule::backoff(cx.poll_min, cx.poll_max, attempt));
    rec.next_due = at_most_deadline(&rec, cx, next);
    let at = rec.next_due;
    Transition::new(rec)
        .persist("after_poll")
        .done(StepOutcome::Waiting(at))
}

/// `next`, or the validation deadline when that comes first: the poll that finds the order
/// still unverified is the one at its deadline, not up to `poll_max` later.
fn at_most_deadline(rec: &CertRecord, cx: &Cx<'_>, next: DateTime<Utc>) -> DateTime<Utc> {
    match validation_deadline(rec, cx) {
        Some(deadline) => next.min(deadline.max(cx.now)),
        None => next,
    }
}
