//! The lifecycle over in-memory fakes: every transition, through the executor (calls, durable
//! writes, what the CA holds) and through the machine alone (events and crash points).
#![allow(clippy::unwrap_used)]

mod deadline;
mod dropped;
mod fakes;
mod machine_only;
mod quota;
mod selfcheck;

use chrono::TimeDelta;

use super::machine::StepOutcome;
use super::schedule;
use crate::config::{KeyKind, Validation};
use crate::deploy::{CertInfo, DeployError};
use crate::store::{CertRecord, DeployedCert, PendingKey, Phase};
use crate::validation::{Presented, ValidationError};
use cas_api::model::{CertificateState, Challenge, IssuedCertificate, OrderId, ValidateType};
use cas_api::secret::Secret;
use fakes::*;

fn file_ch() -> Challenge {
    Challenge::File {
        domain: "a.test".into(),
        uri: "/.well-known/pki-validation/fileauth.txt".into(),
        content: "tok".into(),
    }
}

fn file_challenge() -> CertificateState {
    CertificateState::DomainVerify(file_ch())
}

fn dns_challenge() -> CertificateState {
    CertificateState::DomainVerify(Challenge::Dns {
        record_domain: "_dnsauth".into(),
        record_type: "TXT".into(),
        record_value: "v".into(),
    })
}

fn script_describe(f: &Fakes, states: Vec<Result<CertificateState, cas_api::ApiError>>) {
    f.ca.lock().unwrap().describe_script.extend(states);
}

fn script_create(f: &Fakes, r: CreateResult) {
    f.ca.lock().unwrap().create_script.push_back(r);
}

/// A record with `order` deployed, valid for 90 days from `t0()`.
fn deployed_record(name: &str, domains: &[&str], order: u64) -> CertRecord {
    let domains: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
    let mut r = CertRecord::new(name, domains.clone());
    r.deployed = Some(DeployedCert {
        order_id: OrderId(order),
        info: CertInfo {
            not_before: t0(),
            not_after: t0() + TimeDelta::days(90),
            serial_hex: "01".into(),
            names: domains,
            fingerprint_sha256: "f".into(),
        },
        cert_pem: "OLD-LEAF".into(),
        chain_pem: String::new(),
        key_pem: Secret::new("OLD-KEY"),
    });
    r.phase = Phase::Deployed {
        order_id: OrderId(order),
        at: t0(),
    };
    r.next_due = t0() + TimeDelta::days(60);
    r
}

/// A record whose intent was persisted at `at` and then the daemon died.
fn intent_record(
    name: &str,
    domains: &[&str],
    product: Option<&str>,
    at: chrono::DateTime<chrono::Utc>,
) -> CertRecord {
    let mut r = CertRecord::new(name, domains.iter().map(|d| d.to_string()).collect());
    r.phase = Phase::Intent {
        pending: PendingKey {
            key: Some(Secret::new("KEY-0")),
            csr: Some("CSR-0".into()),
        },
        created_at: at,
        csr_fingerprint: String::new(),
        product: product.map(str::to_string),
    };
    r.next_due = at;
    r
}

// ---------------------------------------------------------------- first issuance

#[tokio::test]
async fn first_issuance_pays_once_and_deploys_with_our_key() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    script_describe(&f, vec![Ok(file_challenge())]);
    assert!(f.until_deployed(&c, 5).await);
    assert_eq!(f.paid(), 1);
    let r = f.rec();
    assert!(
        matches!(
            r.phase,
            Phase::Deployed {
                order_id: OrderId(1000),
                ..
            }
        ),
        "{:?}",
        r.phase
    );
    let d = r.deployed.as_ref().unwrap();
    assert_eq!(d.key_pem.expose(), "KEY-1");
    assert_eq!(d.cert_pem, "LEAF-1000");
    assert!(r.phase.pending().is_none());
    assert_eq!((r.failures, r.last_error.as_deref()), (0, None));
    assert_eq!(r.last_success, Some(f.now()));
    // The proof was removed once the certificate was issued.
    assert_eq!(f.count(&format!("cleanup {WEBROOT_PROOF}")), 1);
    // The order CAS got carried our CSR.
    assert_eq!(f.orders()[0].csr.as_deref(), Some("CSR-1"));
}

#[tokio::test]
async fn the_intent_is_durable_before_the_create_and_the_order_right_after() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    f.wake(&c).await;
    let j = f.journal();
    let pos = |e: &str| {
        j.iter()
            .position(|x| x == e)
            .unwrap_or_else(|| panic!("{e} in {j:?}"))
    };
    assert!(pos("deploy preflight") < pos("keygen EcdsaP256"));
    assert!(pos("keygen EcdsaP256") < pos("put key_ready"));
    assert!(pos("proof preflight") < pos("put intent"));
    assert!(pos("put intent") < pos("create digicert-free-1-free"));
    assert!(pos("create digicert-free-1-free") < pos("put ordered"));
}

#[tokio::test]
async fn a_record_not_due_makes_no_call() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    f.set_rec(deployed_record("www", &["a.test"], 7));
    let out = f.wake(&c).await;
    assert_eq!(out, vec![StepOutcome::Waiting(t0() + TimeDelta::days(60))]);
    assert!(f.journal().is_empty(), "{:?}", f.journal());
}

#[tokio::test]
async fn deployment_schedules_the_renewal_and_learns_the_time_to_issue() {
    let f = Fakes::new();
    let mut c = cert("www", &["a.test"]);
    c.reload = Some(crate::config::Hook {
        argv: vec!["true".into()],
        timeout: std::time::Duration::from_secs(1),
        pass_env: vec![],
    });
    script_describe(
        &f,
        vec![Ok(file_challenge()), Ok(CertificateState::Process)],
    );
    f.wake(&c).await; // ordered, published
    let presented_at = f.now();
    f.to_due();
    f.wake(&c).await; // process
    f.to_due();
    assert!(f.wake(&c).await.contains(&StepOutcome::Deployed));
    let r = f.rec();
    let info = &r.deployed.as_ref().unwrap().info;
    let plan = schedule::renew_at(info.not_before, info.not_after, c.renew_before, 0.0);
    assert_eq!(r.next_due, plan.at);
    assert!(r.hook_pending, "a reload hook is configured");
    let learned = f.ewma.lock().unwrap().unwrap();
    assert_eq!(learned, (f.now() - presented_at).num_seconds() as f64);
}

#[tokio::test]
async fn the_first_poll_waits_the_learned_time_to_issue() {
    let f = Fakes::new();
    *f.ewma.lock().unwrap() = Some(42.0);
    let c = cert("www", &["a.test"]);
    script_describe(&f, vec![Ok(file_challenge())]);
    f.wake(&c).await;
    assert!(matches!(f.rec().phase, Phase::Presented { attempt: 0, .. }));
    assert_eq!(f.rec().next_due, f.now() + TimeDelta::seconds(42));
}

// ---------------------------------------------------------------- crash in Intent

#[tokio::test]
async fn a_crash_in_intent_adopts_the_order_the_create_made() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    let at = t0() - secs(30);
    f.set_rec(intent_record(
        "www",
        &["a.test"],
        Some("digicert-free-1-free"),
        at,
    ));
    f.existing_order(555, &["a.test"], "digicert-free-1-free", at + secs(1));
    f.step(&c).await;
    let r = f.rec();
    assert!(
        matches!(
            r.phase,
            Phase::Ordered {
                order_id: OrderId(555),
                ..
            }
        ),
        "{:?}",
        r.phase
    );
    assert_eq!(f.count("create"), 0, "never a second create");
    assert_eq!(
        r.pending_key().unwrap().expose(),
        "KEY-0",
        "the intent's key is kept"
    );
    assert!(f.until_deployed(&c, 3).await);
    assert_eq!(f.paid(), 1);
}

#[tokio::test]
async fn a_crash_in_intent_before_the_create_creates_exactly_once() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    f.set_rec(intent_record(
        "www",
        &["a.test"],
        Some("digicert-free-1-free"),
        t0() - secs(30),
    ));
    f.step(&c).await;
    assert!(matches!(f.rec().phase, Phase::KeyReady { .. }));
    assert!(f.until_deployed(&c, 3).await);
    assert_eq!(f.count("create"), 1);
    assert_eq!(f.paid(), 1);
}

#[tokio::test]
async fn an_intent_from_before_the_default_product_changed_is_still_adopted() {
    // Written by the previous release (no product recorded), whose default was
    // symantec-free-1-free; the config now defaults to digicert-free-1-free.
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    let at = t0() - secs(30);
    f.set_rec(intent_record("www", &["a.test"], None, at));
    f.existing_order(556, &["a.test"], "symantec-free-1-free", at);
    f.step(&c).await;
    assert!(matches!(
        f.rec().phase,
        Phase::Ordered {
            order_id: OrderId(556),
            ..
        }
    ));
    // The same with the product recorded: the intent's product counts, not the config's.
    let f = Fakes::new();
    f.set_rec(intent_record(
        "www",
        &["a.test"],
        Some("symantec-free-1-free"),
        at,
    ));
    f.existing_order(557, &["a.test"], "symantec-free-1-free", at);
    f.step(&c).await;
    assert!(matches!(
        f.rec().phase,
        Phase::Ordered {
            order_id: OrderId(557),
            ..
        }
    ));
    assert_eq!(f.count("create"), 0);
}

#[tokio::test]
async fn adoption_never_picks_an_order_of_another_product_or_one_we_retired() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    let at = t0() - secs(30);
    let mut r = intent_record("www", &["a.test"], Some("digicert-free-1-free"), at);
    r.retire(OrderId(558));
    f.set_rec(r);
    f.existing_order(558, &["a.test"], "digicert-free-1-free", at);
    f.existing_order(559, &["a.test"], "geotrust-dv-1-starter", at);
    f.step(&c).await;
    assert!(
        matches!(f.rec().phase, Phase::KeyReady { .. }),
        "nothing adoptable: create"
    );
}

#[tokio::test]
async fn a_failed_order_list_keeps_the_intent_and_retries_later() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    f.set_rec(intent_record("www", &["a.test"], None, t0()));
    f.ca.lock().unwrap().list_script.push_back(transient());
    assert_eq!(f.step(&c).await, StepOutcome::Waiting(t0() + secs(60)));
    let r = f.rec();
    assert!(
        matches!(r.phase, Phase::Intent { .. }),
        "never create while unsure"
    );
    assert_eq!(r.failures, 1);
    assert_eq!(f.count("create"), 0);
}

// ---------------------------------------------------------------- create failures

#[tokio::test]
async fn a_lost_create_answer_looks_for_the_order_before_creating_again() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    script_create(&f, CreateResult::Lost);
    let out = f.wake(&c).await;
    assert_eq!(
        out.last(),
        Some(&StepOutcome::Waiting(t0() + POLL_MIN_DELTA()))
    );
    let r = f.rec();
    assert!(matches!(r.phase, Phase::Intent { .. }), "{:?}", r.phase);
    assert!(r
        .last_error
        .as_deref()
        .unwrap()
        .contains("connection reset"));
    assert_eq!(r.failures, 0, "an unknown outcome is not a failure");
    f.to_due();
    assert!(f.until_deployed(&c, 3).await);
    assert_eq!(f.count("create"), 1);
    assert_eq!(f.paid(), 1, "the lost order was adopted, not paid again");
}

#[allow(non_snake_case)]
fn POLL_MIN_DELTA() -> TimeDelta {
    TimeDelta::from_std(POLL_MIN).unwrap()
}

#[tokio::test]
async fn a_lost_create_that_made_nothing_creates_once_more() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    script_create(&f, CreateResult::Fail(lost()));
    f.wake(&c).await;
    f.to_due();
    assert!(f.until_deployed(&c, 3).await);
    assert_eq!(f.count("list"), 1);
    assert_eq!(f.count("create"), 2);
    assert_eq!(f.paid(), 1);
}

#[tokio::test]
async fn a_transient_create_error_keeps_the_key_and_retries_after_a_minute() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    script_create(&f, CreateResult::Fail(transient()));
    assert_eq!(
        f.wake(&c).await.last(),
        Some(&StepOutcome::Waiting(t0() + secs(60)))
    );
    let r = f.rec();
    assert!(
        matches!(r.phase, Phase::KeyReady { .. }),
        "certainly not created"
    );
    assert_eq!(r.pending_key().unwrap().expose(), "KEY-1");
    assert_eq!(r.failures, 1);
    f.to_due();
    assert!(f.until_deployed(&c, 3).await);
    assert_eq!(*f.keys_made.lock().unwrap(), 1, "the same key is used");
}

#[tokio::test]
async fn permanent_errors_back_off_to_six_hours_transient_ones_to_one() {
    for (err, cap) in [(permanent(), 6 * 3600), (transient(), 3600)] {
        let f = Fakes::new();
        let c = cert("www", &["a.test"]);
        let mut last = TimeDelta::zero();
        for _ in 0..12 {
            script_create(
                &f,
                CreateResult::Fail(match &err {
                    e if e.class() == cas_api::ErrorClass::Permanent => permanent(),
                    _ => transient(),
                }),
            );
            f.wake(&c).await;
            last = f.rec().next_due - f.now();
            f.to_due();
        }
        assert_eq!(last, secs(cap), "{err}");
        assert_eq!(f.rec().failures, 12);
    }
}

// ---------------------------------------------------------------- validation

#[tokio::test]
async fn verify_fail_deletes_the_order_and_retries_with_a_new_one() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    script_describe(
        &f,
        vec![Ok(file_challenge()), Ok(CertificateState::VerifyFail)],
    );
    f.wake(&c).await;
    f.to_due();
    let out = f.wake(&c).await;
    assert_eq!(out.last(), Some(&StepOutcome::Waiting(f.now() + secs(60))));
    let r = f.rec();
    assert!(matches!(r.phase, Phase::Failed { .. }), "{:?}", r.phase);
    assert!(r.orders_to_clean.is_empty(), "deleted at once");
    assert!(r.pending_key().is_none());
    assert!(f.orders()[0].deleted, "quota back");
    assert_eq!(f.count("cancel 1000"), 1);
    assert_eq!(f.count(&format!("cleanup {WEBROOT_PROOF}")), 1);
    f.to_due();
    assert!(f.until_deployed(&c, 3).await);
    assert_eq!(f.paid(), 2);
    let r = f.rec();
    assert_eq!(r.deployed.as_ref().unwrap().order_id, OrderId(1001));
    // The deployment ends the failure streak: the next failure backs off from the start.
    assert_eq!((r.failures, r.last_error.as_deref()), (0, None));
}

#[tokio::test]
async fn an_order_that_cannot_be_deleted_now_is_deleted_at_the_next_step() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    script_describe(
        &f,
        vec![Ok(file_challenge()), Ok(CertificateState::VerifyFail)],
    );
    f.ca.lock().unwrap().delete_script.push_back(transient());
    f.wake(&c).await;
    f.to_due();
    f.wake(&c).await;
    assert_eq!(f.rec().orders_to_clean, vec![OrderId(1000)]);
    assert_eq!(f.rec().retired_orders, vec![OrderId(1000)]);
    f.to_due();
    f.step(&c).await;
    assert!(f.orders()[0].deleted);
    assert!(f.rec().orders_to_clean.is_empty());
}

#[tokio::test]
async fn a_busy_proof_path_waits_without_counting_a_failure() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    script_describe(&f, vec![Ok(file_challenge())]);
    f.present_script
        .lock()
        .unwrap()
        .push_back(Err(ValidationError::Busy(
            "another certificate's proof".into(),
        )));
    assert_eq!(
        f.wake(&c).await.last(),
        Some(&StepOutcome::Waiting(t0() + POLL_MIN_DELTA()))
    );
    let r = f.rec();
    assert!(matches!(r.phase, Phase::Ordered { .. }), "{:?}", r.phase);
    assert_eq!(r.failures, 0);
}

#[tokio::test]
async fn a_proof_that_cannot_be_published_gives_the_order_up() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    script_describe(&f, vec![Ok(file_challenge())]);
    f.present_script
        .lock()
        .unwrap()
        .push_back(Err(ValidationError::Unsafe("bad uri".into())));
    f.wake(&c).await;
    let r = f.rec();
    assert!(matches!(r.phase, Phase::Failed { .. }));
    assert!(r
        .last_error
        .unwrap()
        .starts_with("validation: unsafe challenge"));
    assert!(f.orders()[0].deleted);
}

#[tokio::test]
async fn an_unverified_file_proof_is_published_again_at_each_poll() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    script_describe(
        &f,
        vec![
            Ok(file_challenge()),
            Ok(file_challenge()),
            Ok(file_challenge()),
        ],
    );
    f.wake(&c).await;
    f.to_due();
    f.wake(&c).await;
    f.to_due();
    f.wake(&c).await;
    assert_eq!(f.count("present"), 3);
    assert!(matches!(f.rec().phase, Phase::Presented { attempt: 2, .. }));
    let step = schedule::backoff(POLL_MIN, POLL_MAX, 2);
    assert_eq!(
        f.rec().next_due,
        f.now() + TimeDelta::from_std(step).unwrap()
    );
}

#[tokio::test]
async fn manual_validation_publishes_nothing_and_waits_for_the_operator() {
    let f = Fakes::new();
    let mut c = cert("www", &["a.test"]);
    c.validation = Validation::Manual {
        validate_type: ValidateType::Dns,
    };
    script_describe(
        &f,
        vec![
            Ok(dns_challenge()),
            Ok(dns_challenge()),
            Ok(dns_challenge()),
        ],
    );
    f.wake(&c).await;
    f.to_due();
    f.wake(&c).await;
    f.to_due();
    f.wake(&c).await;
    assert_eq!(
        f.count("present"),
        1,
        "instructions once, nothing republished"
    );
    let r = f.rec();
    assert!(matches!(
        &r.phase,
        Phase::Presented {
            presented: Presented::Manual { .. },
            attempt: 2,
            ..
        }
    ));
    assert_eq!(
        crate::store::StatusRow::from_record(&r)
            .instructions
            .as_deref(),
        Some("publish it")
    );
    f.to_due();
    assert!(f.until_deployed(&c, 2).await);
    assert_eq!(f.count("cleanup"), 1);
}

#[tokio::test]
async fn ca_review_polls_with_a_growing_backoff() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    script_describe(
        &f,
        vec![
            Ok(file_challenge()),
            Ok(CertificateState::Process),
            Ok(CertificateState::Process),
        ],
    );
    f.wake(&c).await;
    for attempt in 1..=2u32 {
        f.to_due();
        f.wake(&c).await;
        let r = f.rec();
        let Phase::Polling {
            attempt: a,
            presented,
            next_poll,
            ..
        } = &r.phase
        else {
            panic!("{:?}", r.phase)
        };
        assert_eq!(*a, attempt);
        assert!(presented.is_some(), "still to clean up");
        let wait = TimeDelta::from_std(schedule::backoff(POLL_MIN, POLL_MAX, attempt)).unwrap();
        assert_eq!((r.next_due, *next_poll), (f.now() + wait, f.now() + wait));
    }
}

#[tokio::test]
async fn an_unknown_order_state_counts_as_a_failure_and_looks_again() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    script_describe(&f, vec![Ok(CertificateState::Other("odd".into()))]);
    f.wake(&c).await;
    let r = f.rec();
    assert!(matches!(r.phase, Phase::Ordered { .. }));
    assert_eq!(r.failures, 1);
    assert!(r.last_error.unwrap().contains("is in state Other"));
    let wait = TimeDelta::from_std(schedule::backoff(POLL_MIN, POLL_MAX, 1)).unwrap();
    assert_eq!(f.rec().next_due, f.now() + wait);
}

#[tokio::test]
async fn a_transient_describe_error_keeps_the_order() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    script_describe(&f, vec![Err(transient())]);
    f.wake(&c).await;
    let r = f.rec();
    assert!(matches!(
        r.phase,
        Phase::Ordered {
            order_id: OrderId(1000),
            ..
        }
    ));
    assert_eq!(r.next_due, f.now() + secs(60));
    assert!(!f.orders()[0].deleted);
}

#[tokio::test]
async fn a_permanent_describe_error_abandons_and_deletes_the_order() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    script_describe(&f, vec![Ok(file_challenge()), Err(permanent())]);
    f.wake(&c).await;
    f.to_due();
    f.wake(&c).await;
    let r = f.rec();
    assert!(matches!(r.phase, Phase::Failed { .. }), "{:?}", r.phase);
    assert!(f.orders()[0].deleted);
    assert_eq!(f.count(&format!("cleanup {WEBROOT_PROOF}")), 1);
    assert!(
        r.known_orders().contains(&OrderId(1000)),
        "never adopted again"
    );
}

// ---------------------------------------------------------------- issuance and deploy

#[tokio::test]
async fn a_refused_issued_certificate_is_never_installed_and_its_order_is_deleted() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    *f.refuse.lock().unwrap() = Some(DeployError::KeyMismatch);
    f.wake(&c).await;
    let r = f.rec();
    assert!(matches!(r.phase, Phase::Failed { .. }));
    assert!(r
        .last_error
        .as_deref()
        .unwrap()
        .contains("issued certificate refused"));
    assert_eq!(f.count("install"), 0);
    assert!(f.orders()[0].deleted, "quota back");
    assert!(r.deployed.is_none());
}

#[tokio::test]
async fn an_unusable_chain_fails_the_attempt() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    script_describe(
        &f,
        vec![Ok(CertificateState::Issued(IssuedCertificate {
            certificate: "garbage".into(),
            private_key: None,
            cert_id: None,
        }))],
    );
    f.wake(&c).await;
    let r = f.rec();
    assert!(matches!(r.phase, Phase::Failed { .. }));
    assert_eq!(
        r.last_error.as_deref(),
        Some("order 1000: certificate does not parse: no certificate in the answer")
    );
    assert_eq!(f.count("check"), 0);
}

#[tokio::test]
async fn a_deploy_failure_keeps_the_order_and_retries_the_write_without_a_new_order() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    *f.install_failures.lock().unwrap() = 2;
    f.wake(&c).await;
    let r = f.rec();
    assert!(
        matches!(
            &r.phase,
            Phase::Polling {
                order_id: OrderId(1000),
                presented: None,
                ..
            }
        ),
        "{:?}",
        r.phase
    );
    assert_eq!(r.pending_key().unwrap().expose(), "KEY-1", "our key stays");
    assert!(r.last_error.unwrap().starts_with("deploy: write /out/x"));
    let wait = TimeDelta::from_std(schedule::backoff(POLL_MIN, POLL_MAX, 1)).unwrap();
    assert_eq!(r.next_due, f.now() + wait, "retried with the poll backoff");
    assert!(!f.orders()[0].deleted);
    f.to_due();
    f.wake(&c).await;
    assert_eq!(f.rec().failures, 2);
    f.to_due();
    assert!(f.until_deployed(&c, 1).await);
    assert_eq!(f.paid(), 1, "no new order");
    assert_eq!(f.count("install 1000"), 3);
}

#[tokio::test]
async fn a_key_made_by_cas_is_deployed_and_no_csr_is_sent() {
    let f = Fakes::new();
    let mut c = cert("www", &["a.test"]);
    c.key = KeyKind::Cas;
    f.ca.lock().unwrap().cas_key = Some(Secret::new("CAS-KEY"));
    assert!(f.until_deployed(&c, 2).await);
    assert_eq!(f.count("keygen"), 0);
    assert_eq!(f.orders()[0].csr, None);
    assert_eq!(f.rec().deployed.unwrap().key_pem.expose(), "CAS-KEY");
}

#[tokio::test]
async fn an_issued_certificate_without_any_key_fails_permanently() {
    let f = Fakes::new();
    let mut c = cert("www", &["a.test"]);
    c.key = KeyKind::Cas;
    f.wake(&c).await;
    let r = f.rec();
    assert!(matches!(r.phase, Phase::Failed { .. }));
    assert_eq!(
        r.last_error.as_deref(),
        Some("order 1000: issued without a key")
    );
    assert_eq!(f.count("install"), 0);
}

// ---------------------------------------------------------------- before anything is paid

#[tokio::test]
async fn an_output_directory_the_install_would_refuse_stops_before_the_key() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    *f.deploy_preflight.lock().unwrap() = Some(DeployError::NotOurs {
        path: "/out/www".into(),
        reason: "no manifest".into(),
    });
    f.wake(&c).await;
    let r = f.rec();
    assert!(matches!(r.phase, Phase::Failed { .. }));
    assert!(r
        .last_error
        .unwrap()
        .starts_with("deploy: refusing /out/www"));
    assert_eq!((f.count("keygen"), f.count("create")), (0, 0));
}

#[tokio::test]
async fn a_proof_that_could_not_be_published_orders_nothing() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    *f.proof_problems.lock().unwrap() =
        vec!["webroot /srv/www does not exist; fix: create it".into()];
    f.wake(&c).await;
    let r = f.rec();
    assert!(matches!(r.phase, Phase::Failed { .. }));
    assert_eq!(
        r.last_error.as_deref(),
        Some("cannot publish the proof, nothing ordered: webroot /srv/www does not exist; fix: create it")
    );
    assert_eq!(f.count("create"), 0);
    assert!(r.pending_key().is_none(), "the attempt's key is dropped");
}

#[tokio::test]
async fn a_key_that_cannot_be_made_fails_the_attempt() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    *f.key_error.lock().unwrap() = Some(crate::keys::KeyError::Generate("no entropy".into()));
    f.wake(&c).await;
    let r = f.rec();
    assert_eq!(
        r.last_error.as_deref(),
        Some("key: key generation failed: no entropy")
    );
    assert_eq!(r.next_due, f.now() + secs(60));
    assert_eq!(f.count("create"), 0);
}

// ---------------------------------------------------------------- renewal

#[tokio::test]
async fn a_free_product_renews_with_a_new_order() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    f.set_rec(deployed_record("www", &["a.test"], 7));
    f.to_due();
    assert!(f.until_deployed(&c, 2).await);
    assert_eq!(f.count("create digicert-free-1-free"), 1);
    assert_eq!(f.count("renew"), 0);
    let r = f.rec();
    assert_eq!(r.deployed.unwrap().order_id, OrderId(1000));
    assert!(
        r.retired_orders.contains(&OrderId(7)),
        "the replaced order is never adopted"
    );
}

#[tokio::test]
async fn a_paid_product_renews_the_deployed_order() {
    let f = Fakes::new();
    let mut c = cert("www", &["a.test"]);
    c.product_code = "geotrust-dv-1-starter".into();
    f.existing_order(7, &["a.test"], "geotrust-dv-1-starter", t0());
    f.set_rec(deployed_record("www", &["a.test"], 7));
    f.to_due();
    assert!(f.until_deployed(&c, 2).await);
    assert_eq!(f.count("renew 7"), 1);
    assert_eq!(f.count("create"), 0);
    assert_eq!(f.orders()[1].csr.as_deref(), Some("CSR-1"));
}

#[tokio::test]
async fn a_paid_certificate_expired_at_this_instant_is_ordered_anew() {
    let f = Fakes::new();
    let mut c = cert("www", &["a.test"]);
    c.product_code = "geotrust-dv-1-starter".into();
    f.set_rec(deployed_record("www", &["a.test"], 7));
    *f.now.lock().unwrap() = t0() + TimeDelta::days(90);
    f.wake(&c).await;
    assert_eq!(f.count("renew"), 0, "an expired order is not renewed");
    assert_eq!(f.count("create geotrust-dv-1-starter"), 1);
}

#[tokio::test]
async fn a_paid_product_whose_domains_changed_orders_anew() {
    let f = Fakes::new();
    let mut c = cert("www", &["a.test", "b.test"]);
    c.product_code = "geotrust-dv-1-starter".into();
    let mut r = deployed_record("www", &["a.test"], 7);
    r.force_renew = true;
    r.phase = Phase::Idle;
    f.set_rec(r);
    assert!(
        f.until_deployed(&c, 2).await,
        "forced: at once, not at next_due"
    );
    assert_eq!(f.count("create geotrust-dv-1-starter"), 1);
    assert_eq!(f.count("renew"), 0);
    let r = f.rec();
    assert_eq!(r.domains, vec!["a.test".to_string(), "b.test".to_string()]);
    assert_eq!(r.deployed.unwrap().info.names, r.domains);
    assert!(!r.force_renew);
}

#[tokio::test]
async fn a_forced_renewal_that_fails_waits_out_its_retry_time() {
    let f = Fakes::new();
    let c = cert("www", &["a.test", "b.test"]);
    let mut r = deployed_record("www", &["a.test"], 7);
    r.force_renew = true;
    r.phase = Phase::Idle;
    f.set_rec(r);
    *f.proof_problems.lock().unwrap() = vec!["no webroot".into()];
    f.wake(&c).await;
    let r = f.rec();
    assert!(
        matches!(r.phase, Phase::Failed { .. }),
        "{:?} {:?}",
        r.phase,
        f.journal()
    );
    assert_eq!(r.next_due, f.now() + secs(60));
    // Woken again at once (the daemon's queue, a reload): the failure's retry time holds.
    let out = f.wake(&c).await;
    assert_eq!(out, vec![StepOutcome::Waiting(f.now() + secs(60))]);
    assert_eq!(
        f.count("proof preflight"),
        1,
        "retried at once: {:?}",
        f.journal()
    );
    // Once due it retries, and still orders anew for the new names.
    f.proof_problems.lock().unwrap().clear();
    f.to_due();
    assert!(f.until_deployed(&c, 2).await);
    assert_eq!(f.rec().deployed.unwrap().info.names.len(), 2);
}

#[tokio::test]
async fn a_forced_renewal_never_skips_the_poll_backoff() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    let mut r = deployed_record("www", &["a.test"], 7);
    r.force_renew = true;
    r.phase = Phase::Polling {
        pending: Default::default(),
        order_id: OrderId(9),
        presented: None,
        presented_at: t0(),
        next_poll: t0() + secs(30),
        attempt: 1,
    };
    r.next_due = t0() + secs(30);
    f.set_rec(r);
    assert_eq!(
        f.wake(&c).await,
        vec![StepOutcome::Waiting(t0() + secs(30))]
    );
    assert!(f.journal().is_empty());
}

// ---------------------------------------------------------------- clean-up, removal, restore

#[tokio::test]
async fn orders_given_up_on_are_deleted_before_the_next_step() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    let mut r = deployed_record("www", &["a.test"], 7);
    r.orders_to_clean = vec![OrderId(3), OrderId(4)];
    f.set_rec(r);
    f.existing_order(3, &["a.test"], "p", t0());
    f.existing_order(4, &["a.test"], "p", t0());
    f.ca.lock().unwrap().delete_script.push_back(transient());
    f.step(&c).await;
    assert_eq!(
        f.rec().orders_to_clean,
        vec![OrderId(3)],
        "the one that failed stays queued"
    );
    assert!(f.orders()[1].deleted);
    assert_eq!(f.count("put"), 1);
}

#[tokio::test]
async fn removal_cleans_the_proof_cancels_and_deletes_and_forgets() {
    let f = Fakes::new();
    let mut r = CertRecord::new("www", vec!["a.test".into()]);
    r.phase = Phase::Presented {
        pending: Default::default(),
        order_id: OrderId(11),
        presented: Presented::File {
            path: WEBROOT_PROOF.into(),
        },
        presented_at: t0(),
        ordered_at: None,
        attempt: 0,
    };
    r.orders_to_clean = vec![OrderId(10)];
    f.set_rec(r);
    f.existing_order(10, &["a.test"], "p", t0());
    f.existing_order(11, &["a.test"], "p", t0());
    super::exec::remove(&f, &f, &f, "www").await.unwrap();
    assert_eq!(
        f.journal(),
        vec![
            format!("cleanup {WEBROOT_PROOF}"),
            "cancel 10".into(),
            "delete 10".into(),
            "cancel 11".into(),
            "delete 11".into(),
            "forget www".into(),
        ]
    );
    assert!(f.orders().iter().all(|o| o.deleted));
    assert!(f.record.lock().unwrap().is_none());
    // Nothing stored: nothing to do.
    super::exec::remove(&f, &f, &f, "www").await.unwrap();
    assert_eq!(f.journal().len(), 6);
}

#[tokio::test]
async fn an_order_that_is_already_gone_counts_as_deleted() {
    let f = Fakes::new();
    f.ca.lock().unwrap().delete_script.push_back(permanent());
    assert!(super::exec::cancel_and_delete(&f, OrderId(1)).await);
    f.ca.lock().unwrap().delete_script.push_back(transient());
    assert!(!super::exec::cancel_and_delete(&f, OrderId(1)).await);
}

#[tokio::test]
async fn missing_live_files_are_restored_from_the_record() {
    let f = Fakes::new();
    let c = cert("www", &["a.test"]);
    let r = deployed_record("www", &["a.test"], 7);
    assert!(
        !super::exec::restore_live(&f, &c, &r),
        "intact: nothing to do"
    );
    *f.live_ok.lock().unwrap() = false;
    assert!(super::exec::restore_live(&f, &c, &r));
    let installed = f.installed.lock().unwrap().clone();
    assert_eq!(installed.len(), 1);
    assert_eq!(installed[0].0.key_pem.expose(), "OLD-KEY");
    assert_eq!(installed[0].1.order_id, 7);
    assert!(!super::exec::restore_live(
        &f,
        &c,
        &CertRecord::new("www", vec![])
    ));
}

#[test]
fn free_products_are_recognised() {
    use cas_api::model::is_free_product;
    assert!(is_free_product("symantec-free-1-free"));
    assert!(is_free_product("digicert-free-1-free"));
    assert!(!is_free_product("geotrust-dv-1-starter"));
}

#[test]
fn resting_phases_are_the_ones_without_anything_in_flight() {
    let t = t0();
    let id = OrderId(1);
    let resting = [
        Phase::Idle,
        Phase::Deployed {
            order_id: id,
            at: t,
        },
        Phase::Failed {
            reason: String::new(),
            at: t,
            attempt: 1,
        },
    ];
    let in_flight = [
        Phase::KeyReady {
            pending: Default::default(),
        },
        Phase::Intent {
            pending: Default::default(),
            created_at: t,
            csr_fingerprint: String::new(),
            product: None,
        },
        Phase::Ordered {
            pending: Default::default(),
            order_id: id,
            created_at: t,
        },
        Phase::Polling {
            pending: Default::default(),
            order_id: id,
            presented: None,
            presented_at: t,
            next_poll: t,
            attempt: 0,
        },
    ];
    assert!(resting.iter().all(Phase::is_resting));
    assert!(!in_flight.iter().any(Phase::is_resting));
}
