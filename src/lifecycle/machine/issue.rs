//! An issued certificate: checked against our key and names, installed, the renewal planned.
use std::path::PathBuf;

use super::failure::{failed, FailKind, Failure};
use super::{decide, pending, CheckError, Cx, Effect, Event, Request, StepOutcome, Transition};
use crate::deploy::{CertInfo, DeployError, PemSet};
use crate::lifecycle::schedule;
use crate::store::{CertRecord, Phase};
use cas_api::model::{IssuedCertificate, OrderId};

pub(super) fn issued(
    rec: CertRecord,
    cx: &Cx<'_>,
    order_id: OrderId,
    ic: IssuedCertificate,
) -> Transition {
    // The proof has done its work: remove it whatever happens next.
    let cleanup: Vec<Effect> = rec
        .phase
        .presented()
        .map(|p| Effect::CleanupProof(p.clone()))
        .into_iter()
        .collect();
    let key = pending(&rec)
        .key
        .or(ic.private_key)
        .filter(|k| !k.expose().is_empty());
    let t = match key {
        Some(key_pem) => Transition::new(rec).call(Request::Check {
            chain_pem: ic.certificate,
            key_pem,
        }),
        None => {
            let reason = format!("order {order_id}: issued without a key");
            failed(rec, cx, Failure::attempt(reason, true))
        }
    };
    t.prepend(cleanup)
}

pub(super) fn checked(
    rec: CertRecord,
    cx: &Cx<'_>,
    result: Result<(PemSet, CertInfo), CheckError>,
) -> Transition {
    let Some(order_id) = rec.phase.open_order() else {
        return decide(rec, cx);
    };
    match result {
        Ok((set, info)) => {
            let not_after = info.not_after;
            Transition::new(rec)
                .log(Event::Issued {
                    order_id,
                    not_after,
                })
                .call(Request::Install { set, info })
        }
        Err(CheckError::Unusable(e)) => failed(
            rec,
            cx,
            Failure::attempt(format!("order {order_id}: {e}"), false),
        ),
        // A CA answer we refuse is an error, not a routine retry: one line, at error level.
        Err(CheckError::Refused(e)) => {
            let reason = format!("order {order_id}: issued certificate refused: {e}");
            failed(rec, cx, Failure::severe(reason, false))
        }
    }
}

pub(super) fn installed(
    mut rec: CertRecord,
    cx: &Cx<'_>,
    set: PemSet,
    info: CertInfo,
    result: Result<PathBuf, DeployError>,
) -> Transition {
    let now = cx.now;
    let Some(order_id) = rec.phase.open_order() else {
        return decide(rec, cx);
    };
    let presented_at = match &rec.phase {
        Phase::Presented { presented_at, .. } | Phase::Polling { presented_at, .. } => {
            Some(*presented_at)
        }
        _ => None,
    };
    let dir = match result {
        Ok(dir) => dir,
        Err(e) => {
            let kind = FailKind::Deploy {
                order_id,
                presented_at,
                error: e.to_string(),
            };
            return failed(rec, cx, Failure::new(format!("deploy: {e}"), kind));
        }
    };
    let mut first = vec![Effect::Failpoint("after_install")];
    if let Some(p) = presented_at {
        let secs = (now - p).num_milliseconds() as f64 / 1000.0;
        first.push(Effect::ObserveIssueTime(secs.max(0.0)));
    }
    let plan = schedule::renew_at(
        info.not_before,
        info.not_after,
        cx.cert.renew_before,
        cx.jitter01,
    );
    if plan.clamped {
        first.push(Effect::Log(Event::RenewBeforeClamped));
    }
    rec.set_deployed(order_id, info, set, now, plan.at);
    rec.hook_pending = cx.cert.reload.is_some();
    rec.hook_attempt = 0;
    Transition::new(rec)
        .prepend(first)
        .persist("after_deployed")
        .log(Event::Deployed {
            order_id,
            dir,
            renew_at: plan.at,
        })
        .effect(Effect::MetricDeployed)
        .done(StepOutcome::Deployed)
}
