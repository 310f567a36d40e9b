//! The lifecycle of one certificate as a pure transition: given the record, the certificate's
//! configuration and the time, [`start`] says which call to make next ([`Request`]); given what
//! that call returned ([`Observation`]), [`observe`] returns the new record and the [`Effect`]s
//! to carry out (persist durably, crash points, log events, metrics, clean up a proof) — a
//! [`Transition`]. No I/O, no async, no logging here: the executor (`exec.rs`) does what the
//! machine asks, so every rule is unit-tested with fixed times and in-memory fakes.
//!
//! The transitions live by stage: `order` (key, intent, create, adoption), `poll` (proof and
//! polling), `proof` (the proof self-check's reports), `issue` (check, install, renewal plan),
//! `failure` (the one failure tail).
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{Certificate, KeyKind};
use crate::deploy::{CertInfo, DeployError, PemSet};
pub use crate::lifecycle::quota::QuotaLook;
use crate::store::{CertRecord, PendingKey, Phase};
use crate::validation::selfcheck::{FailureKind, ProofCheck};
use crate::validation::{Presented, ValidationError};
use cas_api::model::{CertificateState, Challenge, CreateOrder, ListOrders, OrderId, OrderSummary};
use cas_api::secret::Secret;
use cas_api::{ApiError, ErrorClass};

mod failure;
mod issue;
mod order;
mod poll;
mod proof;

use failure::{abandon, failed, Failure};
use issue::{checked, installed};
use order::{adopt, created, key_ready, quota_known};
use poll::{described, published, unverified};
use proof::{self_checked, then_check};

/// What a transition depends on besides the record.
#[derive(Debug, Clone, Copy)]
pub struct Cx<'a> {
    pub cert: &'a Certificate,
    pub poll_min: Duration,
    pub poll_max: Duration,
    pub now: DateTime<Utc>,
    /// Random in [0, 1) for renewal jitter.
    pub jitter01: f64,
}

/// A call the executor makes for the machine; its result comes back as the [`Observation`]
/// of the same name.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Cancel and delete orders given up on (quota back).
    CleanOrders(Vec<OrderId>),
    /// Could the deployed set be written at all (before anything is spent)?
    PreflightDeploy,
    MakeKey(KeyKind),
    /// Could the proof be published (before the order is paid)?
    PreflightProof,
    /// How many units of the product are left (before the order is paid; see `quota`).
    Quota(String),
    Create(CreateOrder),
    /// RenewCertificateOrderForPackageRequest for a deployed paid order.
    Renew {
        from: OrderId,
        csr: Option<String>,
    },
    /// Look for the order an interrupted create may have made.
    ListOrders(ListOrders),
    Describe(OrderId),
    Publish(Challenge),
    /// Publish a FILE proof again (it may have vanished since).
    Republish(Challenge),
    /// Look at the published proof from outside, as the CA would.
    SelfCheck(Challenge),
    /// Split and check what CAS issued against our key and the configured names.
    Check {
        chain_pem: String,
        key_pem: Secret,
    },
    Install {
        set: PemSet,
        info: CertInfo,
    },
}

/// Why the issued certificate could not be used.
#[derive(Debug)]
pub enum CheckError {
    /// The answer holds no usable PEM chain.
    Unusable(DeployError),
    /// It parses, but is not the certificate we asked for (key, names, dates).
    Refused(DeployError),
}

/// The result of a [`Request`].
#[derive(Debug)]
pub enum Observation {
    /// Which of the orders asked about are gone now (or can never be deleted).
    Cleaned {
        gone: Vec<OrderId>,
    },
    DeployPreflight(Result<(), DeployError>),
    /// A key and CSR (`None` when CAS makes the key).
    KeyMade(Result<Option<(Secret, String)>, String>),
    /// What stands in the way of publishing the proof (empty: nothing).
    ProofPreflight(Vec<String>),
    /// What the quota allows; `error`: DescribePackageState failed just now.
    Quota {
        look: QuotaLook,
        error: Option<ApiError>,
    },
    /// The answer to Create or Renew.
    Created(Result<OrderId, ApiError>),
    Listed(Result<Vec<OrderSummary>, ApiError>),
    Described(Result<CertificateState, ApiError>),
    /// The proof is published; `issue_ewma` is the learned time-to-issue (seconds).
    Published {
        result: Result<Presented, ValidationError>,
        issue_ewma: Option<f64>,
        /// The challenge published (for the self-check that follows).
        challenge: Challenge,
    },
    Republished {
        result: Result<(), ValidationError>,
        challenge: Challenge,
    },
    SelfChecked(ProofCheck),
    Checked(Result<(PemSet, CertInfo), CheckError>),
    /// `set` and `info` are the ones of the [`Request::Install`]; `Ok` holds the new directory.
    Installed {
        set: PemSet,
        info: CertInfo,
        result: Result<PathBuf, DeployError>,
    },
}

/// What the machine reports; the executor logs each with the record's name and domains.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new attempt starts for a deployed certificate (`domains` are the old ones).
    RenewDue {
        domains: Vec<String>,
        forced: bool,
    },
    Ordered {
        order_id: OrderId,
        renewal: bool,
    },
    /// A create whose answer was lost: the next step looks for the order first.
    CreateOutcomeUnknown {
        error: String,
    },
    OrderAdopted {
        order_id: OrderId,
    },
    /// Manual validation: what the operator must publish.
    ManualInstructions {
        order_id: OrderId,
        instructions: String,
    },
    ChallengePresented {
        order_id: OrderId,
    },
    /// The product's quota is under `quota_warn` (said once a day per product).
    QuotaLow {
        product: String,
        total: i64,
        used: i64,
    },
    /// DescribePackageState failed; the create goes on.
    QuotaUnknown {
        product: String,
        error: String,
    },
    /// Another certificate's FILE proof holds the same path: not a failure.
    PublishBusy {
        order_id: OrderId,
        why: String,
    },
    RepublishFailed {
        order_id: OrderId,
        error: String,
    },
    VerifyFailed {
        order_id: OrderId,
    },
    /// The order was still in domain_verify `timeout` after `since` (its creation): it is
    /// given up (cancelled and deleted) and the attempt fails.
    ValidationTimeout {
        order_id: OrderId,
        since: DateTime<Utc>,
        timeout: Duration,
        /// The record's last error when it gave up.
        last_error: Option<String>,
        /// The last proof self-check result (`ok` or the reason), once the record keeps one.
        proof: Option<String>,
    },
    /// The self-check cannot see the proof; once per order and reason.
    ProofUnreachable {
        order_id: OrderId,
        reason: String,
    },
    /// The self-check sees the proof again after a failure.
    ProofReachable {
        order_id: OrderId,
    },
    Issued {
        order_id: OrderId,
        not_after: DateTime<Utc>,
    },
    /// renew_before is longer than most of the lifetime; a third of it is used instead.
    RenewBeforeClamped,
    Deployed {
        order_id: OrderId,
        dir: PathBuf,
        renew_at: DateTime<Utc>,
    },
    DeployFailed {
        order_id: OrderId,
        error: String,
        retry_at: DateTime<Utc>,
    },
    /// `severe`: at error level (a refused certificate), else warning.
    RenewFailed {
        error: String,
        permanent: bool,
        severe: bool,
        retry_at: DateTime<Utc>,
        /// Which kind of step failed, for the message.
        api: bool,
    },
}

/// Something the executor does after a transition, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Write the record and flush it to disk before going on.
    Persist,
    /// A crash point of the reliability suite (`crate::failpoint`).
    Failpoint(&'static str),
    Log(Event),
    /// Remove a published proof (a failure is logged, never fatal).
    CleanupProof(Presented),
    /// Feed the learned time-to-issue (seconds from publish to issue).
    ObserveIssueTime(f64),
    MetricOrderCreated,
    MetricRenewalFailed,
    MetricProofCheckFailed(FailureKind),
    /// The certificate gauges after a deployment.
    MetricDeployed,
}

/// How the step ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Nothing to do before this time.
    Waiting(DateTime<Utc>),
    /// A step was taken; call again at once.
    Progressed,
    /// A new certificate was deployed (the reload hook is due).
    Deployed,
    /// The step was dropped, nothing recorded as failed: the store said the record is not
    /// this host's to write, or cannot be reached, or the spending call must wait (fleet
    /// mode). Only the executor says this; the record stays as last written.
    Dropped(Dropped),
}

/// Why a step was dropped ([`StepOutcome::Dropped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Another host owns the certificate now: this host leaves it alone.
    NotOurs,
    /// The store cannot be reached, or may not be spent through now: try later.
    Unavailable,
}

/// After the effects: another call within the same step, or the end of the step.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Call(Request),
    Done(StepOutcome),
}

/// One transition.
#[derive(Debug)]
pub struct Transition {
    pub rec: CertRecord,
    pub effects: Vec<Effect>,
    pub next: Next,
}

impl Transition {
    fn new(rec: CertRecord) -> Transition {
        Transition {
            rec,
            effects: Vec::new(),
            next: Next::Done(StepOutcome::Progressed),
        }
    }

    fn effect(mut self, e: Effect) -> Transition {
        self.effects.push(e);
        self
    }

    fn log(self, e: Event) -> Transition {
        self.effect(Effect::Log(e))
    }

    /// Persist, then the crash point that follows it.
    fn persist(self, failpoint: &'static str) -> Transition {
        self.effect(Effect::Persist)
            .effect(Effect::Failpoint(failpoint))
    }

    fn call(mut self, r: Request) -> Transition {
        self.next = Next::Call(r);
        self
    }

    fn done(mut self, d: StepOutcome) -> Transition {
        self.next = Next::Done(d);
        self
    }

    fn prepend(mut self, mut effects: Vec<Effect>) -> Transition {
        effects.append(&mut self.effects);
        self.effects = effects;
        self
    }
}

/// The key of the attempt in flight, carried from phase to phase.
fn pending(rec: &CertRecord) -> PendingKey {
    rec.phase.pending().cloned().unwrap_or_default()
}

/// The start of a step: orders given up on are cleaned first, then [`decide`].
pub fn start(rec: CertRecord, cx: &Cx<'_>) -> Transition {
    if rec.orders_to_clean.is_empty() {
        decide(rec, cx)
    } else {
        let ids = rec.orders_to_clean.clone();
        Transition::new(rec).call(Request::CleanOrders(ids))
    }
}

/// What the record calls for now.
fn decide(rec: CertRecord, cx: &Cx<'_>) -> Transition {
    // A forced renewal (domains changed) skips the wait only while nothing is in flight, never
    // the poll backoff; a failure clears it, so a failed forced attempt waits its retry time.
    if rec.next_due > cx.now && !(rec.phase.is_resting() && rec.force_renew) {
        let at = rec.next_due;
        return Transition::new(rec).done(StepOutcome::Waiting(at));
    }
    let call = match &rec.phase {
        // At rest: a new attempt starts.
        Phase::Idle | Phase::Deployed { .. } | Phase::Failed { .. } => Request::PreflightDeploy,
        Phase::KeyReady { .. } => Request::PreflightProof,
        Phase::Intent { .. } => match cx.cert.domains.first() {
            Some(first) => Request::ListOrders(ListOrders {
                keyword: Some(first.clone()),
                current_page: 1,
                show_size: 50,
                ..Default::default()
            }),
            None => return failed(rec, cx, Failure::attempt("no domains".into(), true)),
        },
        Phase::Ordered { order_id, .. }
        | Phase::Presented { order_id, .. }
        | Phase::Polling { order_id, .. } => Request::Describe(*order_id),
    };
    Transition::new(rec).call(call)
}

/// The transition for what the last [`Request`] returned.
pub fn observe(mut rec: CertRecord, cx: &Cx<'_>, obs: Observation) -> Transition {
    match obs {
        Observation::Cleaned { gone } => {
            let before = rec.orders_to_clean.len();
            rec.orders_to_clean.retain(|id| !gone.contains(id));
            let changed = rec.orders_to_clean.len() != before;
            let t = decide(rec, cx);
            if changed {
                t.prepend(vec![Effect::Persist])
            } else {
                t
            }
        }
        Observation::DeployPreflight(result) => {
            let mut effects = Vec::new();
            if rec.deployed.is_some() {
                effects.push(Effect::Log(Event::RenewDue {
                    domains: rec.domains.clone(),
                    forced: rec.force_renew,
                }));
            }
            rec.domains = cx.cert.domains.clone();
            let t = match result {
                // A directory the install would refuse is refused before any quota is spent.
                Err(e) => failed(rec, cx, Failure::severe(format!("deploy: {e}"), true)),
                Ok(()) if cx.cert.key == KeyKind::Cas => key_ready(rec, cx, None),
                Ok(()) => Transition::new(rec).call(Request::MakeKey(cx.cert.key)),
            };
            t.prepend(effects)
        }
        Observation::KeyMade(Ok(key)) => key_ready(rec, cx, key),
        Observation::KeyMade(Err(e)) => {
            failed(rec, cx, Failure::attempt(format!("key: {e}"), true))
        }
        Observation::ProofPreflight(problems) if !problems.is_empty() => {
            // Nothing is paid for while the proof could not be published (a missing webroot,
            // no Alidns zone, a validator that cannot run): the order would only hold quota.
            let reason = format!(
                "cannot publish the proof, nothing ordered: {}",
                problems.join("; ")
            );
            failed(rec, cx, Failure::attempt(reason, false))
        }
        Observation::ProofPreflight(_) => {
            let product = cx.cert.product_code.clone();
            Transition::new(rec).call(Request::Quota(product))
        }
        Observation::Quota { look, error } => quota_known(rec, cx, look, error),
        Observation::Created(result) => created(rec, cx, result),
        Observation::Listed(Err(e)) => failed(rec, cx, Failure::api(&e)),
        Observation::Listed(Ok(orders)) => adopt(rec, cx, &orders),
        Observation::Described(Err(e)) => {
            if e.class() == ErrorClass::Permanent {
                // The order is gone or unusable: start over later (never a panic, never a loop).
                let (rec, cleanup) = abandon(rec);
                failed(rec, cx, Failure::api(&e)).prepend(cleanup)
            } else {
                failed(rec, cx, Failure::api(&e))
            }
        }
        Observation::Described(Ok(state)) => described(rec, cx, state),
        Observation::Published {
            result,
            issue_ewma,
            challenge,
        } => {
            let ok = result.is_ok();
            let t = published(rec, cx, result, issue_ewma);
            if ok {
                then_check(t, cx, challenge)
            } else {
                t
            }
        }
        Observation::Republished { result, challenge } => {
            let failed_again = result.err().zip(rec.phase.open_order());
            let t = then_check(unverified(rec, cx), cx, challenge);
            match failed_again {
                Some((e, order_id)) => t.prepend(vec![Effect::Log(Event::RepublishFailed {
                    order_id,
                    error: e.to_string(),
                })]),
                None => t,
            }
        }
        Observation::SelfChecked(result) => self_checked(rec, cx, result),
        Observation::Checked(result) => checked(rec, cx, result),
        Observation::Installed { set, info, result } => installed(rec, cx, set, info, result),
    }
}

/// What removing a certificate from the configuration does: its proof is cleaned up and its
/// unfinished orders are cancelled and deleted (quota back); its files stay.
#[derive(Debug, Clone, PartialEq)]
pub struct Removal {
    pub cleanup: Option<Presented>,
    pub orders: Vec<OrderId>,
}

pub fn removal(rec: &CertRecord) -> Removal {
    let mut orders = rec.orders_to_clean.clone();
    orders.extend(rec.phase.open_order());
    Removal {
        cleanup: rec.phase.presented().cloned(),
        orders,
    }
}
