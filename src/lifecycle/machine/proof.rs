//! The proof self-check's rules: when to look (after publishing, and at each poll while CAS
//! still says domain_verify), and what a result does. It is reported, never acted on: one
//! `cert.proof_unreachable` per order and distinct reason, `cert.proof_reachable` when a
//! failure clears, a metric per failure, and the last result in the record for `status`. No
//! result cancels, fails or delays anything.
use super::{decide, Cx, Effect, Event, Next, Request, StepOutcome, Transition};
use crate::store::{CertRecord, ProofStatus, REPORTED_KEEP};
use crate::validation::selfcheck::ProofCheck;
use cas_api::model::Challenge;

/// `t` (a transition that ends the step), followed by a self-check of `challenge` when the
/// certificate has them on.
pub(super) fn then_check(t: Transition, cx: &Cx<'_>, challenge: Challenge) -> Transition {
    if cx.cert.self_check.enabled && matches!(t.next, Next::Done(_)) {
        t.call(Request::SelfCheck(challenge))
    } else {
        t
    }
}

pub(super) fn self_checked(mut rec: CertRecord, cx: &Cx<'_>, result: ProofCheck) -> Transition {
    let Some(order_id) = rec.phase.open_order() else {
        return decide(rec, cx);
    };
    // What was reported belongs to the order it was about: a new order starts afresh.
    let prev = rec.proof.take().filter(|p| p.order_id == order_id);
    let was_failing = prev.as_ref().is_some_and(|p| p.failure.is_some());
    let mut reported = prev.map(|p| p.reported).unwrap_or_default();
    let mut effects = Vec::new();
    let failure = match result {
        Ok(()) => {
            if was_failing {
                effects.push(Effect::Log(Event::ProofReachable { order_id }));
            }
            None
        }
        Err(f) => {
            effects.push(Effect::MetricProofCheckFailed(f.kind));
            if !reported.contains(&f.reason) {
                reported.push(f.reason.clone());
                let excess = reported.len().saturating_sub(REPORTED_KEEP);
                reported.drain(..excess);
                effects.push(Effect::Log(Event::ProofUnreachable {
                    order_id,
                    reason: f.reason.clone(),
                }));
            }
            Some(f.reason)
        }
    };
    rec.proof = Some(ProofStatus {
        order_id,
        at: cx.now,
        failure,
        reported,
    });
    let at = rec.next_due;
    let mut t = Transition::new(rec).effect(Effect::Persist);
    t.effects.extend(effects);
    t.done(StepOutcome::Waiting(at))
}
