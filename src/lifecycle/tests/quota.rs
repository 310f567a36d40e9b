//! Quota before a create: nothing left means no create, a low count is said, an unknown one
//! goes on; through the executor, the shared cache keeps DescribePackageState calls few.
use super::fakes::*;
use crate::lifecycle::machine::{self, Cx, Effect, Event, Next, Observation, QuotaLook, Request};
use crate::lifecycle::StepOutcome;
use crate::store::Phase;
use cas_api::ApiError;

fn cx(c: &crate::config::Certificate) -> Cx<'_> {
    cx_at(c, t0())
}

/// The transition after the proof preflight passed and the quota answered `look`.
fn after_quota(look: QuotaLook) -> machine::Transition {
    after_look(look, None)
}

/// The same when the look just failed with `error`.
fn after_look(look: QuotaLook, error: Option<ApiError>) -> machine::Transition {
    let c = cert("www", &["a.test"]);
    let cx = cx(&c);
    let t = machine::start(key_ready(), &cx);
    assert_eq!(t.next, Next::Call(Request::PreflightProof));
    let t = machine::observe(t.rec, &cx, Observation::ProofPreflight(vec![]));
    assert_eq!(
        t.next,
        Next::Call(Request::Quota("digicert-free-1-free".into()))
    );
    assert!(t.effects.is_empty(), "nothing persisted before the look");
    machine::observe(t.rec, &cx, Observation::Quota { look, error })
}

fn events(e: &[Effect]) -> Vec<Event> {
    e.iter()
        .filter_map(|e| match e {
            Effect::Log(ev) => Some(ev.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn nothing_left_fails_the_attempt_without_a_create() {
    let t = after_quota(QuotaLook::Known {
        total: 20,
        used: 20,
        warn: false,
    });
    assert!(!matches!(
        t.next,
        Next::Call(Request::Create(_) | Request::Renew { .. })
    ));
    assert_eq!(t.next, Next::Done(StepOutcome::Waiting(t0() + secs(60))));
    let evs = events(&t.effects);
    assert!(
        matches!(
            &evs[..],
            [Event::RenewFailed { error, permanent: true, api: false, .. }]
                if error == "quota exhausted for digicert-free-1-free (20 of 20 used)"
        ),
        "{evs:?}"
    );
    assert!(
        matches!(t.rec.phase, Phase::Failed { .. }),
        "{:?}",
        t.rec.phase
    );
    assert!(!t.effects.contains(&Effect::Failpoint("after_intent")));
}

#[test]
fn a_low_count_is_said_when_the_cache_says_so_and_the_create_goes_on() {
    let t = after_quota(QuotaLook::Known {
        total: 20,
        used: 18,
        warn: true,
    });
    assert_eq!(
        events(&t.effects),
        [Event::QuotaLow {
            product: "digicert-free-1-free".into(),
            total: 20,
            used: 18
        }]
    );
    assert!(matches!(t.next, Next::Call(Request::Create(_))));
    assert!(matches!(t.rec.phase, Phase::Intent { .. }));
    // Not said again when the cache does not ask for it (once a day is the cache's rule).
    let t = after_quota(QuotaLook::Known {
        total: 20,
        used: 19,
        warn: false,
    });
    assert!(events(&t.effects).is_empty());
    assert!(matches!(t.next, Next::Call(Request::Create(_))));
}

#[test]
fn an_unknown_count_goes_on_with_the_create() {
    let t = after_quota(QuotaLook::Unknown);
    assert!(events(&t.effects).is_empty());
    assert!(matches!(t.next, Next::Call(Request::Create(_))));
}

#[test]
fn a_failed_look_is_said_and_the_create_goes_on_unless_the_request_itself_was_refused() {
    let unreachable = ApiError::Transport {
        action: "DescribePackageState".into(),
        detail: "connection refused".into(),
        maybe_sent: false,
    };
    let t = after_look(QuotaLook::Unknown, Some(unreachable));
    assert!(
        matches!(&events(&t.effects)[..], [Event::QuotaUnknown { error, .. }] if error.contains("connection refused"))
    );
    assert!(matches!(t.next, Next::Call(Request::Create(_))));
    // No permission for DescribePackageState: the create may still be allowed.
    let t = after_look(QuotaLook::Unknown, Some(service("Forbidden.RAM", 403)));
    assert!(matches!(t.next, Next::Call(Request::Create(_))));
    // A clock or a key CAS refuses would refuse the create too: no create, retried later.
    for code in ["InvalidTimeStamp.Expired", "InvalidAccessKeyId.NotFound"] {
        let t = after_look(QuotaLook::Unknown, Some(service(code, 400)));
        assert!(
            !matches!(t.next, Next::Call(Request::Create(_))),
            "{code}: {:?}",
            t.next
        );
        assert!(matches!(
            &events(&t.effects)[..],
            [Event::RenewFailed { api: true, .. }]
        ));
    }
}

fn service(code: &str, status: u16) -> ApiError {
    ApiError::Service {
        action: "DescribePackageState".into(),
        status,
        code: code.into(),
        message: "m".into(),
        request_id: "r".into(),
    }
}

#[tokio::test]
async fn with_two_units_for_three_certificates_the_third_creates_nothing() {
    let f = Fakes::new();
    f.ca.lock().unwrap().quota = Some(2);
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        *f.record.lock().unwrap() = None;
        let c = cert(name, &[&format!("{name}.test")]);
        let deployed = f.until_deployed(&c, 3).await;
        assert_eq!(deployed, i < 2, "{name}");
    }
    assert_eq!(f.count("create"), 2, "{:?}", f.journal());
    assert_eq!(f.count("package_state"), 1, "one look for the three");
    let r = f.rec();
    assert_eq!(r.name, "c");
    assert_eq!(
        r.last_error.as_deref(),
        Some("quota exhausted for digicert-free-1-free (2 of 2 used)")
    );
    assert!(f
        .metrics
        .render()
        .contains("cas_certd_quota_remaining{product=\"digicert-free-1-free\"} 0"));
}

#[tokio::test]
async fn a_failed_look_does_not_block_the_create_and_a_refusal_for_quota_is_a_clean_failure() {
    let f = Fakes::new();
    {
        let mut ca = f.ca.lock().unwrap();
        ca.quota = Some(0);
        ca.package_script.push_back(ApiError::Transport {
            action: "DescribePackageState".into(),
            detail: "connection refused".into(),
            maybe_sent: false,
        });
    }
    let c = cert("www", &["a.test"]);
    let out = f.wake(&c).await;
    assert_eq!(f.count("create"), 1, "ordered despite the failed look");
    assert_eq!(f.paid(), 0, "refused by CAS");
    let r = f.rec();
    assert_eq!(
        r.last_error.as_deref(),
        Some("quota exhausted for digicert-free-1-free (NotRemainCount)")
    );
    assert!(matches!(r.phase, Phase::KeyReady { .. }), "{:?}", r.phase);
    assert_eq!(out.last(), Some(&StepOutcome::Waiting(t0() + secs(60))));
    // The refusal makes the next attempt look again at once (and now the look works): zero
    // left, no second create.
    f.to_due();
    f.wake(&c).await;
    assert_eq!(f.count("package_state"), 2);
    assert_eq!(f.count("create"), 1);
    assert!(f
        .rec()
        .last_error
        .unwrap()
        .contains("quota exhausted for digicert-free-1-free (0 of 0 used)"));
}
