//! The validation deadline: an order still in domain_verify `validation_timeout` after it was
//! created is cancelled and deleted, its proof removed, and the certificate retries.
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::fakes::*;
use super::{file_challenge, script_describe};
use crate::config::Certificate;
use crate::lifecycle::machine::{self, Effect, Event, Next, Observation, Request};
use crate::lifecycle::schedule;
use crate::lifecycle::StepOutcome;
use crate::store::{CertRecord, Phase};
use crate::validation::{Presented, ValidationError};
use cas_api::model::{CertificateState, OrderId};

const HOUR: Duration = Duration::from_secs(3600);

fn hour() -> TimeDelta {
    TimeDelta::hours(1)
}

fn cert_with_timeout(timeout: Duration) -> Certificate {
    let mut c = cert("www", &["a.test"]);
    c.validation_timeout = timeout;
    c
}

fn set_now(f: &Fakes, t: DateTime<Utc>) {
    *f.now.lock().unwrap() = t;
}

/// An order 8 created at `ordered_at` (`None`: a record from before it was kept) whose FILE
/// proof was published at `presented_at`.
fn presented(ordered_at: Option<DateTime<Utc>>, presented_at: DateTime<Utc>) -> CertRecord {
    let mut rec = CertRecord::new("www", vec!["a.test".into()]);
    rec.phase = Phase::Presented {
        pending: Default::default(),
        order_id: OrderId(8),
        presented: Presented::File { path: "/p".into() },
        presented_at,
        ordered_at,
        attempt: 3,
    };
    rec
}

fn events(e: &[Effect]) -> Vec<Event> {
    e.iter()
        .filter_map(|e| match e {
            Effect::Log(ev) => Some(ev.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_order_unverified_at_its_deadline_is_cancelled_deleted_and_retried_with_backoff() {
    let f = Fakes::new();
    let c = cert_with_timeout(HOUR);
    script_describe(&f, (0..5).map(|_| Ok(file_challenge())).collect());
    f.wake(&c).await; // ordered and published at t0
    assert!(matches!(
        f.rec().phase,
        Phase::Presented {
            ordered_at: Some(at),
            ..
        } if at == t0()
    ));

    // One second before the deadline: published again, nothing cancelled, and the next poll is
    // the deadline itself (the backoff would be later).
    set_now(&f, t0() + hour() - secs(1));
    f.wake(&c).await;
    assert!(matches!(f.rec().phase, Phase::Presented { .. }));
    assert_eq!(f.count("cancel"), 0);
    assert_eq!(f.rec().next_due, t0() + hour());

    // At the deadline: given up.
    f.to_due();
    let out = f.wake(&c).await;
    assert_eq!(out.last(), Some(&StepOutcome::Waiting(f.now() + secs(60))));
    let r = f.rec();
    assert!(matches!(r.phase, Phase::Failed { .. }), "{:?}", r.phase);
    assert!(
        r.last_error
            .as_deref()
            .unwrap()
            .contains("validation_timeout (1h)"),
        "{:?}",
        r.last_error
    );
    assert_eq!((f.count("cancel 1000"), f.count("delete 1000")), (1, 1));
    assert!(f.orders()[0].deleted, "quota back");
    assert!(r.orders_to_clean.is_empty());
    assert!(
        r.retired_orders.contains(&OrderId(1000)),
        "never adopted again"
    );
    assert_eq!(f.count(&format!("cleanup {WEBROOT_PROOF}")), 1);

    // The retry orders anew; when that order also times out, the usual failure backoff has
    // doubled.
    f.to_due();
    let second_order_at = f.now();
    f.wake(&c).await;
    assert_eq!(f.paid(), 2);
    set_now(&f, second_order_at + hour());
    f.wake(&c).await;
    assert_eq!(f.rec().failures, 2);
    assert_eq!(f.rec().next_due, f.now() + secs(120));
    assert!(f.orders()[1].deleted);
}

#[test]
fn the_deadline_logs_one_event_cleans_the_proof_and_queues_the_order() {
    let c = cert_with_timeout(HOUR);
    let mut rec = presented(Some(t0()), t0() + secs(2));
    rec.last_error = Some("earlier trouble".into());
    let now = t0() + hour();
    let cx = cx_at(&c, now);
    let t = machine::observe(rec, &cx, Observation::Described(Ok(file_challenge())));
    assert_eq!(
        t.effects[0],
        Effect::Log(Event::ValidationTimeout {
            order_id: OrderId(8),
            since: t0(),
            timeout: HOUR,
            last_error: Some("earlier trouble".into()),
            proof: None,
        })
    );
    assert_eq!(
        t.effects[1],
        Effect::CleanupProof(Presented::File { path: "/p".into() })
    );
    let evs = events(&t.effects);
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert!(matches!(
        &evs[1],
        Event::RenewFailed { permanent: false, api: false, retry_at, .. } if *retry_at == now + secs(60)
    ));
    assert_eq!(t.rec.orders_to_clean, vec![OrderId(8)]);
    assert_eq!(t.next, Next::Call(Request::CleanOrders(vec![OrderId(8)])));
    // Once deleted, the step ends waiting for the retry: no second event.
    let t = machine::observe(
        t.rec,
        &cx,
        Observation::Cleaned {
            gone: vec![OrderId(8)],
        },
    );
    assert!(events(&t.effects).is_empty(), "{:?}", t.effects);
    assert_eq!(t.next, Next::Done(StepOutcome::Waiting(now + secs(60))));
}

/// The event carries what the last self-check of this order saw; one of an older order does not count.
#[test]
fn the_deadline_event_carries_the_last_self_check_of_the_order() {
    let c = cert_with_timeout(HOUR);
    let cx = cx_at(&c, t0() + hour());
    let proof_of = |order: u64| {
        let mut rec = presented(Some(t0()), t0() + secs(2));
        rec.proof = Some(crate::store::ProofStatus {
            order_id: OrderId(order),
            at: t0() + secs(30),
            failure: Some("HTTP 403 from 127.0.0.1:8080".into()),
            reported: vec!["HTTP 403 from 127.0.0.1:8080".into()],
        });
        let t = machine::observe(rec, &cx, Observation::Described(Ok(file_challenge())));
        match &t.effects[0] {
            Effect::Log(Event::ValidationTimeout { proof, .. }) => proof.clone(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(proof_of(8).as_deref(), Some("HTTP 403 from 127.0.0.1:8080"));
    assert_eq!(proof_of(7), None);
}

#[test]
fn before_the_deadline_the_proof_is_published_again_and_nothing_is_given_up() {
    let c = cert_with_timeout(HOUR);
    let rec = presented(Some(t0()), t0());
    let cx = cx_at(&c, t0() + hour() - secs(1));
    let t = machine::observe(rec, &cx, Observation::Described(Ok(file_challenge())));
    assert!(t.effects.is_empty(), "{:?}", t.effects);
    assert!(matches!(t.next, Next::Call(Request::Republish(_))));
}

#[test]
fn the_deadline_counts_from_the_order_not_from_the_proof() {
    let c = cert_with_timeout(HOUR);
    // Published half an hour after the order (a busy proof path): the order's hour is up.
    let rec = presented(Some(t0()), t0() + TimeDelta::minutes(30));
    let cx = cx_at(&c, t0() + hour());
    let t = machine::observe(rec, &cx, Observation::Described(Ok(file_challenge())));
    assert!(matches!(
        t.effects[0],
        Effect::Log(Event::ValidationTimeout { .. })
    ));
    // A record from before `ordered_at` was kept counts from the proof.
    let rec = presented(None, t0() + TimeDelta::minutes(30));
    let t = machine::observe(rec, &cx, Observation::Described(Ok(file_challenge())));
    assert!(matches!(t.next, Next::Call(Request::Republish(_))));
}

#[tokio::test]
async fn an_order_whose_proof_path_stays_busy_times_out_too() {
    let f = Fakes::new();
    let c = cert_with_timeout(Duration::from_secs(60));
    script_describe(&f, (0..2).map(|_| Ok(file_challenge())).collect());
    for _ in 0..2 {
        f.present_script
            .lock()
            .unwrap()
            .push_back(Err(ValidationError::Busy("another proof".into())));
    }
    f.wake(&c).await;
    assert!(matches!(f.rec().phase, Phase::Ordered { .. }));
    set_now(&f, t0() + secs(60));
    f.wake(&c).await;
    assert!(
        matches!(f.rec().phase, Phase::Failed { .. }),
        "{:?}",
        f.rec().phase
    );
    assert!(f.orders()[0].deleted);
    assert_eq!(f.count("cleanup"), 0, "nothing was published");
}

#[test]
fn an_order_under_review_is_never_timed_out() {
    let c = cert_with_timeout(HOUR);
    let rec = presented(Some(t0()), t0());
    let cx = cx_at(&c, t0() + TimeDelta::days(3));
    let t = machine::observe(
        rec,
        &cx,
        Observation::Described(Ok(CertificateState::Process)),
    );
    assert!(events(&t.effects).is_empty(), "{:?}", t.effects);
    assert!(matches!(t.rec.phase, Phase::Polling { .. }));
    // Its polls follow the backoff, with no deadline to cut them short.
    let wait = schedule::backoff(POLL_MIN, POLL_MAX, 4);
    assert_eq!(t.rec.next_due, cx.now + TimeDelta::from_std(wait).unwrap());
}
