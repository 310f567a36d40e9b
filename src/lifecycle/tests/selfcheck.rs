//! The proof self-check's rules: when it runs, one event per order and reason, a new order
//! starts afresh, `ok` after a failure is reported, and no result ever fails the order.
use super::fakes::*;
use super::{file_ch, file_challenge, script_describe};
use crate::lifecycle::machine::{self, Cx, Effect, Event, Next, Observation, Request};
use crate::store::{CertRecord, Phase, ProofStatus, StatusRow};
use crate::validation::selfcheck::{FailureKind, ProofFailure};
use crate::validation::Presented;
use cas_api::model::{CertificateState, OrderId};

fn cx(c: &crate::config::Certificate) -> Cx<'_> {
    cx_at(c, t0())
}

fn presented_record(order: u64) -> CertRecord {
    let mut r = CertRecord::new("www", vec!["a.test".into()]);
    r.phase = Phase::Presented {
        pending: Default::default(),
        order_id: OrderId(order),
        presented: Presented::File {
            path: WEBROOT_PROOF.into(),
        },
        presented_at: t0(),
        ordered_at: Some(t0()),
        attempt: 1,
    };
    r
}

fn http(code: u16) -> ProofFailure {
    ProofFailure::new(
        FailureKind::Http,
        format!("HTTP {code} from 127.0.0.1:8080"),
    )
}

/// The events of feeding one self-check result to `rec`.
fn check(rec: CertRecord, result: Result<(), ProofFailure>) -> (CertRecord, Vec<Event>) {
    let c = cert("www", &["a.test"]);
    let t = machine::observe(rec, &cx(&c), Observation::SelfChecked(result));
    let events = t
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Log(ev) => Some(ev.clone()),
            _ => None,
        })
        .collect();
    (t.rec, events)
}

fn unreachable(order: u64, code: u16) -> Event {
    Event::ProofUnreachable {
        order_id: OrderId(order),
        reason: format!("HTTP {code} from 127.0.0.1:8080"),
    }
}

#[tokio::test]
async fn the_proof_is_checked_after_publishing_and_at_each_unverified_poll() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    script_describe(&f, vec![Ok(file_challenge()), Ok(file_challenge())]);
    f.wake(&c).await;
    let j = f.journal();
    let present = j.iter().position(|e| e == "present").unwrap();
    let checked = j.iter().position(|e| e == "self-check").unwrap();
    // Published and stored first, then checked, then the result stored.
    assert_eq!(
        j[present..],
        ["present", "put presented", "self-check", "put presented"],
        "{j:?}"
    );
    assert!(checked > present);
    assert_eq!(f.count("self-check"), 1);
    f.to_due();
    f.wake(&c).await; // still domain_verify: re-published, then checked
    assert_eq!(f.count("self-check"), 2, "{:?}", f.journal());
    let last: Vec<String> = f.journal().into_iter().rev().take(3).collect();
    assert_eq!(last[0], "put presented", "the result is stored: {last:?}");
    assert_eq!(last[1], "self-check", "{last:?}");
    assert_eq!(f.rec().proof_now().as_deref(), Some("ok"));
}

#[tokio::test]
async fn a_dns_proof_is_checked_at_each_poll_too() {
    let f = Fakes::new();
    let mut c = cert("www", &["a.test"]);
    c.validation = crate::config::Validation::Manual {
        validate_type: cas_api::model::ValidateType::Dns,
    };
    let dns = || {
        Ok(CertificateState::DomainVerify(
            cas_api::model::Challenge::Dns {
                record_domain: "_dnsauth".into(),
                record_type: "TXT".into(),
                record_value: "v".into(),
            },
        ))
    };
    script_describe(&f, vec![dns(), dns()]);
    f.wake(&c).await;
    f.to_due();
    f.wake(&c).await;
    assert_eq!(f.count("self-check"), 2, "{:?}", f.journal());
}

#[tokio::test]
async fn self_checks_off_check_nothing() {
    let f = Fakes::new();
    let mut c = cert("www", &["a.test"]);
    c.self_check.enabled = false;
    script_describe(&f, vec![Ok(file_challenge()), Ok(file_challenge())]);
    f.wake(&c).await;
    f.to_due();
    f.wake(&c).await;
    assert_eq!(f.count("self-check"), 0, "{:?}", f.journal());
    assert_eq!(f.rec().proof_now(), None);
}

#[test]
fn each_reason_is_reported_once_per_order() {
    let (r, ev) = check(presented_record(7), Err(http(403)));
    assert_eq!(ev, [unreachable(7, 403)]);
    assert_eq!(
        r.proof_now().as_deref(),
        Some("HTTP 403 from 127.0.0.1:8080")
    );
    let (r, ev) = check(r, Err(http(403)));
    assert!(ev.is_empty(), "{ev:?}");
    let (r, ev) = check(r, Err(http(404)));
    assert_eq!(ev, [unreachable(7, 404)]);
    // Back to the first reason: already reported for this order.
    let (r, ev) = check(r, Err(http(403)));
    assert!(ev.is_empty(), "{ev:?}");
    assert_eq!(r.proof.as_ref().unwrap().reported.len(), 2);
}

#[test]
fn a_new_order_reports_its_reasons_afresh() {
    let (r, _) = check(presented_record(7), Err(http(403)));
    let mut next = presented_record(8);
    next.proof = r.proof;
    let (r, ev) = check(next, Err(http(403)));
    assert_eq!(ev, [unreachable(8, 403)]);
    assert_eq!(r.proof.as_ref().unwrap().reported.len(), 1);
    assert_eq!(r.proof.as_ref().unwrap().order_id, OrderId(8));
}

#[test]
fn a_proof_seen_after_a_failure_is_reported_once() {
    let (r, _) = check(presented_record(7), Err(http(403)));
    let (r, ev) = check(r, Ok(()));
    assert_eq!(
        ev,
        [Event::ProofReachable {
            order_id: OrderId(7)
        }]
    );
    assert_eq!(r.proof_now().as_deref(), Some("ok"));
    let (r, ev) = check(r, Ok(()));
    assert!(ev.is_empty(), "{ev:?}");
    // A first check that succeeds says nothing either.
    let (_, ev) = check(presented_record(9), Ok(()));
    assert!(ev.is_empty(), "{ev:?}");
    // The same failure again after the fix is not news for this order.
    let (_, ev) = check(r, Err(http(403)));
    assert!(ev.is_empty(), "{ev:?}");
}

#[test]
fn every_failure_counts_in_the_metric_and_the_result_is_persisted() {
    let c = cert("www", &["a.test"]);
    let mut rec = presented_record(7);
    rec.next_due = t0() + secs(30);
    for _ in 0..2 {
        let t = machine::observe(rec, &cx(&c), Observation::SelfChecked(Err(http(403))));
        assert!(t
            .effects
            .contains(&Effect::MetricProofCheckFailed(FailureKind::Http)));
        assert!(t.effects.contains(&Effect::Persist));
        // The step ends waiting for the poll already planned: the check changes no timing.
        assert_eq!(
            t.next,
            Next::Done(machine::StepOutcome::Waiting(t0() + secs(30)))
        );
        rec = t.rec;
    }
}

#[test]
fn publishing_asks_for_a_check_of_the_published_challenge() {
    let c = cert("www", &["a.test"]);
    let mut rec = CertRecord::new("www", vec!["a.test".into()]);
    rec.phase = Phase::Ordered {
        pending: Default::default(),
        order_id: OrderId(3),
        created_at: t0(),
    };
    let t = machine::observe(
        rec,
        &cx(&c),
        Observation::Published {
            result: Ok(Presented::File {
                path: WEBROOT_PROOF.into(),
            }),
            issue_ewma: None,
            challenge: file_ch(),
        },
    );
    assert_eq!(t.next, Next::Call(Request::SelfCheck(file_ch())));
}

#[tokio::test]
async fn a_failing_self_check_never_fails_or_cancels_the_order() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    f.self_check_script
        .lock()
        .unwrap()
        .extend([Err(http(403)), Err(http(404)), Err(http(403))]);
    script_describe(
        &f,
        vec![
            Ok(file_challenge()),
            Ok(file_challenge()),
            Ok(file_challenge()),
            Ok(CertificateState::Process),
        ],
    );
    assert!(f.until_deployed(&c, 8).await);
    assert_eq!(f.paid(), 1);
    assert_eq!(f.count("cancel"), 0);
    assert_eq!(f.count("delete"), 0);
    let r = f.rec();
    assert_eq!((r.failures, r.last_error.as_deref()), (0, None));
    // Deployed: no order is open, so status shows no proof.
    assert_eq!(StatusRow::from_record(&r).proof, None);
    assert!(matches!(
        r.proof,
        Some(ProofStatus {
            order_id: OrderId(1000),
            ..
        })
    ));
}
