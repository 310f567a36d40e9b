//! The machine alone: which calls it asks for, and the events and crash points it emits, in
//! order (the executor's tests cannot see them: it logs events and the crash points are off).
use chrono::TimeDelta;

use super::fakes::{cert, cx_at, lost, permanent, secs, t0, POLL_MIN};
use super::{deployed_record, file_ch, file_challenge};
use crate::config::Certificate;
use crate::deploy::{CertInfo, DeployError, PemSet};
use crate::lifecycle::machine::{
    self, CheckError, Cx, Effect, Event, Next, Observation, QuotaLook, Request, StepOutcome,
    Transition,
};
use crate::store::{CertRecord, PendingKey, Phase};
use crate::validation::Presented;
use cas_api::model::{CertificateState, IssuedCertificate, OrderId};
use cas_api::secret::Secret;

fn cx(c: &crate::config::Certificate) -> Cx<'_> {
    cx_at(c, t0())
}

/// Starts a step and feeds `obs` one by one; every transition but the last must ask for a call.
fn drive(rec: CertRecord, cx: &Cx<'_>, obs: Vec<Observation>) -> (Transition, Vec<Effect>) {
    let mut t = machine::start(rec, cx);
    let mut all = t.effects.clone();
    for o in obs {
        assert!(
            matches!(t.next, Next::Call(_)),
            "expected a call before {o:?}, got {:?}",
            t.next
        );
        t = machine::observe(t.rec, cx, o);
        all.extend(t.effects.iter().cloned());
    }
    (t, all)
}

fn failpoints(e: &[Effect]) -> Vec<&'static str> {
    e.iter()
        .filter_map(|e| match e {
            Effect::Failpoint(n) => Some(*n),
            _ => None,
        })
        .collect()
}

fn events(e: &[Effect]) -> Vec<Event> {
    e.iter()
        .filter_map(|e| match e {
            Effect::Log(ev) => Some(ev.clone()),
            _ => None,
        })
        .collect()
}

fn info(c: &Certificate) -> CertInfo {
    CertInfo {
        not_before: t0(),
        not_after: t0() + TimeDelta::days(90),
        serial_hex: "01".into(),
        names: c.domains.clone(),
        fingerprint_sha256: "f".into(),
    }
}

fn set() -> PemSet {
    PemSet {
        cert_pem: "LEAF".into(),
        chain_pem: String::new(),
        key_pem: Secret::new("KEY"),
    }
}

fn issued() -> CertificateState {
    CertificateState::Issued(IssuedCertificate {
        certificate: "CHAIN".into(),
        private_key: None,
        cert_id: None,
    })
}

/// A whole first issuance, step by step as the executor would run it (`now` fixed).
#[test]
fn a_first_issuance_hits_every_crash_point_after_its_durable_write() {
    let c = cert("www", &["a.test"]);
    let cx = cx(&c);
    let rec = CertRecord::new("www", c.domains.clone());
    let mut all = Vec::new();
    let mut step = |rec: CertRecord, obs: Vec<Observation>| {
        let (t, e) = drive(rec, &cx, obs);
        all.extend(e);
        t
    };
    let t = step(
        rec,
        vec![
            Observation::DeployPreflight(Ok(())),
            Observation::KeyMade(Ok(Some((Secret::new("K"), "CSR".into())))),
        ],
    );
    assert_eq!(t.next, Next::Done(StepOutcome::Progressed));
    let t = step(
        t.rec,
        vec![
            Observation::ProofPreflight(vec![]),
            Observation::Quota {
                look: QuotaLook::Unknown,
                error: None,
            },
            Observation::Created(Ok(OrderId(5))),
        ],
    );
    let t = step(
        t.rec,
        vec![
            Observation::Described(Ok(file_challenge())),
            Observation::Published {
                result: Ok(Presented::File { path: "/p".into() }),
                issue_ewma: None,
                challenge: file_ch(),
            },
            Observation::SelfChecked(Ok(())),
        ],
    );
    assert_eq!(
        t.rec.next_due,
        t0() + TimeDelta::from_std(POLL_MIN).unwrap()
    );
    let mut rec = t.rec;
    rec.next_due = t0();
    let t = step(
        rec,
        vec![
            Observation::Described(Ok(issued())),
            Observation::Checked(Ok((set(), info(&c)))),
            Observation::Installed {
                set: set(),
                info: info(&c),
                result: Ok("/out/www/v1".into()),
            },
        ],
    );
    assert_eq!(t.next, Next::Done(StepOutcome::Deployed));
    assert_eq!(
        failpoints(&all),
        [
            "after_key_ready",
            "after_intent",
            "after_create",
            "after_ordered",
            "after_publish",
            "after_presented",
            "after_install",
            "after_deployed"
        ]
    );
    // Each crash point that follows a write comes right after it.
    for (i, e) in all.iter().enumerate() {
        if let Effect::Failpoint(n) = e {
            if !["after_create", "after_publish", "after_install"].contains(n) {
                assert_eq!(all[i - 1], Effect::Persist, "{n}");
            }
        }
    }
    let names: Vec<&str> = events(&all)
        .iter()
        .map(|e| match e {
            Event::Ordered { renewal: false, .. } => "ordered",
            Event::ChallengePresented { .. } => "presented",
            Event::Issued { .. } => "issued",
            Event::Deployed { .. } => "deployed",
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["ordered", "presented", "issued", "deployed"]);
    assert!(all.contains(&Effect::CleanupProof(Presented::File { path: "/p".into() })));
    assert!(all.contains(&Effect::MetricOrderCreated) && all.contains(&Effect::MetricDeployed));
}

#[test]
fn the_create_is_asked_for_only_after_the_intent_is_persisted() {
    let c = cert("www", &["a.test"]);
    let mut rec = CertRecord::new("www", c.domains.clone());
    rec.phase = Phase::KeyReady {
        pending: PendingKey {
            key: Some(Secret::new("K")),
            csr: Some("CSR".into()),
        },
    };
    let (t, _) = drive(
        rec,
        &cx(&c),
        vec![
            Observation::ProofPreflight(vec![]),
            Observation::Quota {
                look: QuotaLook::Known {
                    total: 10,
                    used: 0,
                    warn: false,
                },
                error: None,
            },
        ],
    );
    assert_eq!(
        t.effects,
        [Effect::Persist, Effect::Failpoint("after_intent")]
    );
    let Next::Call(Request::Create(order)) = &t.next else {
        panic!("{:?}", t.next)
    };
    assert_eq!(order.csr.as_deref(), Some("CSR"));
    assert_eq!(
        order.tags,
        [("managed-by".to_string(), "cas-certd".to_string())]
    );
    let Phase::Intent {
        product,
        csr_fingerprint,
        ..
    } = &t.rec.phase
    else {
        panic!()
    };
    assert_eq!(product.as_deref(), Some("digicert-free-1-free"));
    assert_eq!(csr_fingerprint.len(), 64, "hex SHA-256 of the CSR");
}

#[test]
fn a_lost_create_answer_is_logged_persisted_and_waits_a_poll() {
    let c = cert("www", &["a.test"]);
    let mut rec = CertRecord::new("www", c.domains.clone());
    rec.phase = Phase::Intent {
        pending: Default::default(),
        created_at: t0(),
        csr_fingerprint: String::new(),
        product: None,
    };
    let t = machine::observe(rec, &cx(&c), Observation::Created(Err(lost())));
    assert!(
        matches!(&t.effects[0], Effect::Log(Event::CreateOutcomeUnknown { error }) if error.contains("reset"))
    );
    assert_eq!(
        t.effects[1..],
        [Effect::Persist, Effect::Failpoint("after_create_unknown")]
    );
    assert_eq!(t.next, Next::Done(StepOutcome::Waiting(t0() + secs(5))));
}

#[test]
fn adoption_persists_before_it_says_so() {
    let c = cert("www", &["a.test"]);
    let mut rec = CertRecord::new("www", c.domains.clone());
    rec.phase = Phase::Intent {
        pending: Default::default(),
        created_at: t0(),
        csr_fingerprint: String::new(),
        product: None,
    };
    let order = cas_api::model::OrderSummary {
        order_id: OrderId(77),
        instance_id: None,
        domain: Some("a.test".into()),
        domain_count: None,
        status: Some("CHECKING".into()),
        product_code: None,
        cert_type: None,
        domain_type: None,
        cert_start_time: None,
        cert_end_time: None,
        buy_date: Some(t0().timestamp_millis()),
        algorithm: None,
    };
    let t = machine::observe(rec.clone(), &cx(&c), Observation::Listed(Ok(vec![order])));
    assert_eq!(
        t.effects,
        [
            Effect::Persist,
            Effect::Failpoint("after_adopted"),
            Effect::Log(Event::OrderAdopted {
                order_id: OrderId(77)
            })
        ]
    );
    let t = machine::observe(rec, &cx(&c), Observation::Listed(Ok(vec![])));
    assert!(matches!(t.rec.phase, Phase::KeyReady { .. }));
    assert_eq!(
        t.effects,
        [Effect::Persist, Effect::Failpoint("after_no_order_found")]
    );
}

#[test]
fn verify_fail_logs_cleans_up_fails_then_deletes_the_order() {
    let c = cert("www", &["a.test"]);
    let mut rec = CertRecord::new("www", c.domains.clone());
    let p = Presented::File { path: "/p".into() };
    rec.phase = Phase::Presented {
        pending: Default::default(),
        order_id: OrderId(8),
        presented: p.clone(),
        presented_at: t0(),
        ordered_at: None,
        attempt: 0,
    };
    let t = machine::observe(
        rec,
        &cx(&c),
        Observation::Described(Ok(CertificateState::VerifyFail)),
    );
    assert_eq!(
        t.effects[0],
        Effect::Log(Event::VerifyFailed {
            order_id: OrderId(8)
        })
    );
    assert_eq!(t.effects[1], Effect::CleanupProof(p));
    // Persisted before the failure is said and counted.
    assert_eq!(t.effects[2], Effect::Persist);
    assert!(matches!(
        &t.effects[3],
        Effect::Log(Event::RenewFailed {
            permanent: false,
            severe: false,
            api: false,
            ..
        })
    ));
    assert_eq!(
        t.effects[4..],
        [
            Effect::MetricRenewalFailed,
            Effect::Failpoint("after_failed")
        ]
    );
    assert_eq!(t.next, Next::Call(Request::CleanOrders(vec![OrderId(8)])));
    // Once deleted, the step waits out the retry time.
    let t = machine::observe(
        t.rec,
        &cx(&c),
        Observation::Cleaned {
            gone: vec![OrderId(8)],
        },
    );
    assert_eq!(t.effects, [Effect::Persist]);
    assert_eq!(t.next, Next::Done(StepOutcome::Waiting(t0() + secs(60))));
}

#[test]
fn a_refused_certificate_is_an_error_level_failure() {
    let c = cert("www", &["a.test"]);
    let mut rec = CertRecord::new("www", c.domains.clone());
    rec.phase = Phase::Polling {
        pending: Default::default(),
        order_id: OrderId(8),
        presented: None,
        presented_at: t0(),
        next_poll: t0(),
        attempt: 1,
    };
    let t = machine::observe(
        rec.clone(),
        &cx(&c),
        Observation::Checked(Err(CheckError::Refused(DeployError::KeyMismatch))),
    );
    let ev = events(&t.effects);
    assert!(
        matches!(&ev[0], Event::RenewFailed { severe: true, error, .. } if error.contains("refused")),
        "{ev:?}"
    );
    assert!(t.rec.orders_to_clean.contains(&OrderId(8)));
    let t = machine::observe(
        rec,
        &cx(&c),
        Observation::Checked(Err(CheckError::Unusable(DeployError::KeyMismatch))),
    );
    assert!(matches!(
        &events(&t.effects)[0],
        Event::RenewFailed { severe: false, .. }
    ));
}

#[test]
fn a_deploy_failure_is_its_own_event_and_keeps_the_order() {
    let c = cert("www", &["a.test"]);
    let mut rec = CertRecord::new("www", c.domains.clone());
    rec.phase = Phase::Presented {
        pending: Default::default(),
        order_id: OrderId(8),
        presented: Presented::File { path: "/p".into() },
        presented_at: t0() - secs(100),
        ordered_at: None,
        attempt: 0,
    };
    let err = DeployError::Io {
        op: "write",
        path: "/out".into(),
        source: std::io::Error::other("full"),
    };
    let t = machine::observe(
        rec,
        &cx(&c),
        Observation::Installed {
            set: set(),
            info: info(&c),
            result: Err(err),
        },
    );
    assert_eq!(
        events(&t.effects),
        [Event::DeployFailed {
            order_id: OrderId(8),
            error: "write /out: full".into(),
            retry_at: t0() + secs(10)
        }]
    );
    assert!(t.rec.orders_to_clean.is_empty());
    assert_eq!(t.next, Next::Done(StepOutcome::Waiting(t0() + secs(10))));
    assert!(matches!(
        t.rec.phase,
        Phase::Polling {
            order_id: OrderId(8),
            presented: None,
            ..
        }
    ));
    assert!(!failpoints(&t.effects).contains(&"after_failed"));
}

#[test]
fn a_renewal_logs_the_old_domains_and_orders_the_new_ones() {
    let c = cert("www", &["a.test", "b.test"]);
    let mut rec = deployed_record("www", &["a.test"], 7);
    rec.force_renew = true;
    rec.phase = Phase::Idle;
    let (t, all) = drive(rec, &cx(&c), vec![Observation::DeployPreflight(Ok(()))]);
    assert_eq!(
        events(&all),
        [Event::RenewDue {
            domains: vec!["a.test".into()],
            forced: true
        }]
    );
    assert_eq!(t.rec.domains, c.domains);
    assert_eq!(t.next, Next::Call(Request::MakeKey(c.key)));
}

#[test]
fn a_manual_proof_tells_the_operator_what_to_publish() {
    let c = cert("www", &["a.test"]);
    let mut rec = CertRecord::new("www", c.domains.clone());
    rec.phase = Phase::Ordered {
        pending: Default::default(),
        order_id: OrderId(3),
        created_at: t0(),
    };
    let presented = Presented::Manual {
        instructions: "Create a TXT record".into(),
    };
    let t = machine::observe(
        rec,
        &cx(&c),
        Observation::Published {
            result: Ok(presented),
            issue_ewma: None,
            challenge: file_ch(),
        },
    );
    assert_eq!(
        events(&t.effects),
        [
            Event::ManualInstructions {
                order_id: OrderId(3),
                instructions: "Create a TXT record".into()
            },
            Event::ChallengePresented {
                order_id: OrderId(3)
            }
        ]
    );
}

#[test]
fn an_intent_without_domains_fails_permanently_without_a_call() {
    let c = cert("www", &[]);
    let mut rec = CertRecord::new("www", vec![]);
    rec.phase = Phase::Intent {
        pending: Default::default(),
        created_at: t0(),
        csr_fingerprint: String::new(),
        product: None,
    };
    let t = machine::start(rec, &cx(&c));
    assert!(matches!(
        &events(&t.effects)[0],
        Event::RenewFailed {
            permanent: true,
            ..
        }
    ));
    assert_eq!(t.next, Next::Done(StepOutcome::Waiting(t0() + secs(60))));
}

#[test]
fn api_failures_say_whether_they_are_permanent() {
    let c = cert("www", &["a.test"]);
    let mut rec = CertRecord::new("www", c.domains.clone());
    rec.phase = Phase::Intent {
        pending: Default::default(),
        created_at: t0(),
        csr_fingerprint: String::new(),
        product: None,
    };
    let t = machine::observe(rec, &cx(&c), Observation::Created(Err(permanent())));
    assert!(matches!(t.rec.phase, Phase::KeyReady { .. }));
    assert!(matches!(
        &events(&t.effects)[0],
        Event::RenewFailed {
            permanent: true,
            api: true,
            ..
        }
    ));
}

#[test]
fn removal_covers_the_open_order_the_queued_ones_and_the_proof() {
    let mut rec = CertRecord::new("www", vec![]);
    rec.orders_to_clean = vec![OrderId(1)];
    rec.phase = Phase::Polling {
        pending: Default::default(),
        order_id: OrderId(2),
        presented: Some(Presented::File { path: "/p".into() }),
        presented_at: t0(),
        next_poll: t0(),
        attempt: 0,
    };
    let plan = machine::removal(&rec);
    assert_eq!(plan.orders, [OrderId(1), OrderId(2)]);
    assert_eq!(plan.cleanup, Some(Presented::File { path: "/p".into() }));
    let plan = machine::removal(&deployed_record("www", &["a.test"], 7));
    assert!(
        plan.orders.is_empty() && plan.cleanup.is_none(),
        "the deployed order stays"
    );
}

/// The DNS API throttled the publish (after the client's retries): the order stays open and
/// the publish is tried again after the retry backoff. (It was failed as an attempt: the
/// order cancelled and deleted, and a new one paid 60 s later.) A plain refusal still fails
/// the attempt.
#[test]
fn a_throttled_dns_publish_keeps_the_order_and_tries_again() {
    let c = cert("www", &["a.test"]);
    let mut rec = CertRecord::new("www", c.domains.clone());
    rec.phase = Phase::Ordered {
        pending: Default::default(),
        order_id: OrderId(3),
        created_at: t0(),
    };
    let refusal = |code: &str| {
        crate::validation::ValidationError::Dns(cas_api::ApiError::Service {
            action: "DescribeDomainRecords".into(),
            status: 400,
            code: code.into(),
            message: String::new(),
            request_id: String::new(),
        })
    };
    let publish = |rec: CertRecord, e| {
        machine::observe(
            rec,
            &cx(&c),
            Observation::Published {
                result: Err(e),
                issue_ewma: None,
                challenge: file_ch(),
            },
        )
    };
    let t = publish(rec.clone(), refusal("Throttling.User"));
    assert_eq!(t.rec.phase.open_order(), Some(OrderId(3)));
    assert!(t.rec.orders_to_clean.is_empty());
    assert!(matches!(t.next, Next::Done(StepOutcome::Waiting(at)) if at > t0()));
    let t = publish(rec, refusal("InvalidDomainName.NoExist"));
    assert_eq!(t.rec.phase.open_order(), None);
    assert_eq!(t.rec.orders_to_clean, [OrderId(3)]);
}
