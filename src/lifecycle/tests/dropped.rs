//! A store that says "not ours" or "not now" (fleet mode) drops the step: no call after the
//! refusal, nothing recorded as failed, no spending call while the store says to wait.
use super::fakes::*;
use crate::lifecycle::{Dropped, StepOutcome};
use crate::store::StoreError;

/// The intent's write is refused by the fence: no create, the record stays as it was (no
/// failure, no backoff), and the step says NotOurs.
#[tokio::test]
async fn a_fenced_intent_write_drops_the_step_with_no_create_and_no_failure() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    f.set_rec(key_ready());
    *f.put_refusal.lock().unwrap() = Some(StoreError::NotOurs {
        name: "www".into(),
        why: "web-2 holds it".into(),
    });
    assert_eq!(f.step(&c).await, StepOutcome::Dropped(Dropped::NotOurs));
    assert_eq!(f.count("put refused intent"), 1, "{:?}", f.journal());
    assert_eq!(f.paid(), 0, "no create after a refused intent");
    assert_eq!(
        f.rec(),
        key_ready(),
        "nothing recorded: no failure, no backoff"
    );
}

/// An unreachable store drops the step as Unavailable, with nothing recorded either.
#[tokio::test]
async fn an_unreachable_store_drops_the_step_as_unavailable() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    f.set_rec(key_ready());
    *f.put_refusal.lock().unwrap() = Some(StoreError::Unavailable("etcd: no answer".into()));
    assert_eq!(f.step(&c).await, StepOutcome::Dropped(Dropped::Unavailable));
    assert_eq!(f.paid(), 0);
    assert_eq!(f.rec(), key_ready());
}

/// While the store says not to spend (a fleet lease too short), the intent is durable but
/// no create is made; once it allows, the next step goes on from the intent and orders once.
#[tokio::test]
async fn no_create_while_the_store_says_not_to_spend_then_exactly_one() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    f.set_rec(key_ready());
    *f.spend_refusal.lock().unwrap() = Some("lease has 1s of 3s left".into());
    assert_eq!(f.step(&c).await, StepOutcome::Dropped(Dropped::Unavailable));
    assert_eq!(f.count("spend refused"), 1, "{:?}", f.journal());
    assert_eq!(f.paid(), 0, "no create with the lease short");
    assert_eq!(f.rec().phase.name(), "intent");
    assert_eq!(f.rec().last_error, None, "nothing recorded as failed");
    *f.spend_refusal.lock().unwrap() = None;
    assert!(f.until_deployed(&c, 10).await);
    assert_eq!(f.paid(), 1, "one order: {:?}", f.journal());
}

/// A single host's store (the default) never refuses to spend.
#[tokio::test]
async fn a_single_host_orders_as_before() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    assert!(f.until_deployed(&c, 10).await);
    assert_eq!(f.paid(), 1);
    assert_eq!(f.count("spend refused"), 0);
}
