//! The lifecycle of one certificate as a pure transition: given the record, the certificate's
//! configuration and the time, [`advance`] says which call to make next ([`Request`]); given
//! what that call returned ([`Observation`]), it returns the new record and the [`Effect`]s to
//! carry out (persist durably, crash points, log events, metrics, clean up a proof). No I/O, no
//! async, no logging here: the executor (`exec.rs`) does what the machine asks, so every rule
//! below is unit-tested with fixed times and in-memory fakes.
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::schedule::{self, dur, AdoptQuery};
use crate::cas::model::{
    is_free_product, CertificateState, Challenge, CreateOrder, IssuedCertificate, ListOrders,
    OrderId, OrderSummary,
};
use crate::cas::{ApiError, ErrorClass};
use crate::config::{Certificate, KeyKind};
use crate::deploy::{CertInfo, DeployError, PemSet};
use crate::secret::Secret;
use crate::store::{CertRecord, DeployedCert, Phase};
use crate::validation::{self, Presented, ValidationError};

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
    /// The answer to Create or Renew.
    Created(Result<OrderId, ApiError>),
    Listed(Result<Vec<OrderSummary>, ApiError>),
    Described(Result<CertificateState, ApiError>),
    /// The proof is published; `issue_ewma` is the learned time-to-issue (seconds).
    Published {
        result: Result<Presented, ValidationError>,
        issue_ewma: Option<f64>,
    },
    Republished(Result<(), ValidationError>),
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
        Phase::KeyReady => Request::PreflightProof,
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
        Observation::ProofPreflight(_) => intent(rec, cx),
        Observation::Created(result) => created(rec, cx, result),
        Observation::Listed(Err(e)) => failed(rec, cx, Failure::api(&e)),
        Observation::Listed(Ok(orders)) => adopt(rec, cx, &orders),
        Observation::Described(Err(e)) => {
            if e.class() == ErrorClass::Permanent {
                // The order is gone or unusable: start over later (never a panic, never a loop).
                let (rec, cleanup) = abandon(rec, cx);
                failed(rec, cx, Failure::api(&e)).prepend(cleanup)
            } else {
                failed(rec, cx, Failure::api(&e))
            }
        }
        Observation::Described(Ok(state)) => described(rec, cx, state),
        Observation::Published { result, issue_ewma } => published(rec, cx, result, issue_ewma),
        Observation::Republished(result) => {
            let Phase::Presented {
                order_id,
                presented,
                presented_at,
                attempt,
            } = rec.phase.clone()
            else {
                return decide(rec, cx);
            };
            let mut effects = Vec::new();
            if let Err(e) = result {
                effects.push(Effect::Log(Event::RepublishFailed {
                    order_id,
                    error: e.to_string(),
                }));
            }
            rec.phase = Phase::Presented {
                order_id,
                presented,
                presented_at,
                attempt: attempt + 1,
            };
            wait_poll(rec, cx, attempt + 1).prepend(effects)
        }
        Observation::Checked(result) => checked(rec, cx, result),
        Observation::Installed { set, info, result } => installed(rec, cx, set, info, result),
    }
}

fn key_ready(mut rec: CertRecord, cx: &Cx<'_>, key: Option<(Secret, String)>) -> Transition {
    let (key, csr) = key.unzip();
    rec.pending_key = key;
    rec.pending_csr = csr;
    rec.phase = Phase::KeyReady;
    // The attempt goes on at once, also when it was forced before its renewal time.
    rec.next_due = rec.next_due.min(cx.now);
    Transition::new(rec).persist("after_key_ready")
}

/// Records the intent durably, then asks for the call that spends quota.
fn intent(mut rec: CertRecord, cx: &Cx<'_>) -> Transition {
    let now = cx.now;
    let csr_fingerprint = rec
        .pending_csr
        .as_deref()
        .map(|c| hex::encode(Sha256::digest(c.as_bytes())))
        .unwrap_or_default();
    rec.phase = Phase::Intent {
        created_at: now,
        csr_fingerprint,
        product: Some(cx.cert.product_code.clone()),
    };
    // Paid products renew the deployed order; free ones, forced renewals and changed names
    // order anew.
    let renew_from = rec
        .deployed
        .as_ref()
        .filter(|d| {
            !is_free_product(&cx.cert.product_code)
                && !rec.force_renew
                && d.info.not_after > now
                && d.info.names == cx.cert.domains
        })
        .map(|d| d.order_id);
    let call = match renew_from {
        Some(from) => Request::Renew {
            from,
            csr: rec.pending_csr.clone(),
        },
        None => Request::Create(CreateOrder {
            product_code: cx.cert.product_code.clone(),
            domains: cx.cert.domains.clone(),
            csr: rec.pending_csr.clone(),
            validate_type: validation::validate_type(&cx.cert.validation),
            contact: cx.cert.contact.clone(),
            company_name: None,
            tags: vec![("managed-by".into(), "cas-certd".into())],
        }),
    };
    Transition::new(rec).persist("after_intent").call(call)
}

fn created(mut rec: CertRecord, cx: &Cx<'_>, result: Result<OrderId, ApiError>) -> Transition {
    let now = cx.now;
    match result {
        Ok(order_id) => {
            rec.phase = Phase::Ordered {
                order_id,
                created_at: now,
            };
            rec.next_due = now;
            rec.last_error = None;
            // A renewal replaces a deployed certificate, whichever call made the order.
            let renewal = rec.deployed.is_some();
            Transition::new(rec)
                .effect(Effect::Failpoint("after_create"))
                .persist("after_ordered")
                .effect(Effect::MetricOrderCreated)
                .log(Event::Ordered { order_id, renewal })
                .done(StepOutcome::Progressed)
        }
        // The order may exist: stay in Intent so the next step looks for it first.
        Err(e) if e.class() == ErrorClass::OutcomeUnknown => {
            rec.last_error = Some(e.to_string());
            rec.next_due = now + dur(cx.poll_min);
            let at = rec.next_due;
            Transition::new(rec)
                .log(Event::CreateOutcomeUnknown {
                    error: e.to_string(),
                })
                .persist("after_create_unknown")
                .done(StepOutcome::Waiting(at))
        }
        Err(e) => {
            // Certainly not created: back to KeyReady, retry later.
            rec.phase = Phase::KeyReady;
            failed(rec, cx, Failure::api(&e))
        }
    }
}

fn adopt(mut rec: CertRecord, cx: &Cx<'_>, orders: &[OrderSummary]) -> Transition {
    let Phase::Intent {
        created_at: intent_at,
        product,
        ..
    } = rec.phase.clone()
    else {
        return decide(rec, cx);
    };
    let known = rec.known_orders();
    let query = AdoptQuery {
        domains: &cx.cert.domains,
        product_code: product.as_deref(),
        intent_at,
        known: &known,
    };
    match schedule::pick_adoptable(&query, orders) {
        Some(order_id) => {
            rec.phase = Phase::Ordered {
                order_id,
                created_at: intent_at,
            };
            rec.next_due = cx.now;
            Transition::new(rec)
                .persist("after_adopted")
                .log(Event::OrderAdopted { order_id })
        }
        None => {
            // No order was made: creating now cannot double-spend.
            rec.phase = Phase::KeyReady;
            Transition::new(rec).persist("after_no_order_found")
        }
    }
}

fn described(mut rec: CertRecord, cx: &Cx<'_>, state: CertificateState) -> Transition {
    let now = cx.now;
    let Some(order_id) = rec.phase.open_order() else {
        return decide(rec, cx);
    };
    match state {
        CertificateState::DomainVerify(ch) => match rec.phase.clone() {
            Phase::Ordered { .. } => Transition::new(rec).call(Request::Publish(ch)),
            // Still unverified: publish a FILE proof again. After a restart, or after someone
            // else's write, the file may be gone or hold other content.
            Phase::Presented {
                presented: Presented::File { .. },
                ..
            } => Transition::new(rec).call(Request::Republish(ch)),
            Phase::Presented {
                presented,
                presented_at,
                attempt,
                ..
            } => {
                rec.phase = Phase::Presented {
                    order_id,
                    presented,
                    presented_at,
                    attempt: attempt + 1,
                };
                wait_poll(rec, cx, attempt + 1)
            }
            _ => wait_poll(rec, cx, 0),
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
                order_id,
                presented,
                presented_at,
                next_poll,
                attempt: attempt + 1,
            };
            wait_poll(rec, cx, attempt + 1)
        }
        CertificateState::VerifyFail => {
            let (rec, cleanup) = abandon(rec, cx);
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

fn published(
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
            rec.phase = Phase::Presented {
                order_id,
                presented,
                presented_at: now,
                attempt: 0,
            };
            let delay = schedule::first_poll_delay(issue_ewma, cx.poll_min, cx.poll_max);
            rec.next_due = now + dur(delay);
            rec.last_error = None;
            Transition::new(rec)
                .persist("after_presented")
                .log(Event::ChallengePresented { order_id })
                .prepend(first)
        }
        Err(ValidationError::Busy(why)) => {
            wait_poll(rec, cx, 0).prepend(vec![Effect::Log(Event::PublishBusy { order_id, why })])
        }
        Err(e) => failed(rec, cx, Failure::attempt(format!("validation: {e}"), false)),
    }
}

fn issued(rec: CertRecord, cx: &Cx<'_>, order_id: OrderId, ic: IssuedCertificate) -> Transition {
    // The proof has done its work: remove it whatever happens next.
    let cleanup: Vec<Effect> = rec
        .phase
        .presented()
        .map(|p| Effect::CleanupProof(p.clone()))
        .into_iter()
        .collect();
    let key = rec
        .pending_key
        .clone()
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

fn checked(
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

fn installed(
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
    if let Some(old) = rec.deployed.as_ref().map(|d| d.order_id) {
        rec.retire(old);
    }
    rec.deployed = Some(DeployedCert {
        order_id,
        info,
        cert_pem: set.cert_pem,
        chain_pem: set.chain_pem,
        key_pem: set.key_pem,
    });
    rec.phase = Phase::Deployed { order_id, at: now };
    rec.pending_key = None;
    rec.pending_csr = None;
    rec.force_renew = false;
    rec.failures = 0;
    rec.last_error = None;
    rec.last_success = Some(now);
    rec.hook_pending = cx.cert.reload.is_some();
    rec.hook_attempt = 0;
    rec.next_due = plan.at;
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

fn wait_poll(mut rec: CertRecord, cx: &Cx<'_>, attempt: u32) -> Transition {
    rec.next_due = cx.now + dur(schedule::backoff(cx.poll_min, cx.poll_max, attempt));
    let at = rec.next_due;
    Transition::new(rec)
        .persist("after_poll")
        .done(StepOutcome::Waiting(at))
}

/// Gives up on the order in flight: its proof is cleaned up (the returned effects), and it is
/// retired and queued for cancel and delete (quota back) by the failure that follows.
fn abandon(mut rec: CertRecord, _cx: &Cx<'_>) -> (CertRecord, Vec<Effect>) {
    let cleanup = rec
        .phase
        .presented()
        .map(|p| Effect::CleanupProof(p.clone()))
        .into_iter()
        .collect();
    if let Some(order_id) = rec.phase.open_order() {
        give_up(&mut rec, order_id);
        rec.phase = Phase::Idle;
    }
    (rec, cleanup)
}

/// `order_id` is finished with: never adopted again, and deleted at the next clean.
fn give_up(rec: &mut CertRecord, order_id: OrderId) {
    rec.retire(order_id);
    if !rec.orders_to_clean.contains(&order_id) {
        rec.orders_to_clean.push(order_id);
    }
}

/// What failed, and what that means for the record.
#[derive(Debug)]
struct Failure {
    reason: String,
    kind: FailKind,
}

#[derive(Debug)]
enum FailKind {
    /// The attempt is over: its order (if any) is given up, its key dropped; the next attempt
    /// starts afresh after the retry backoff.
    Attempt { permanent: bool, severe: bool },
    /// An API call failed: the same step is tried again after the retry backoff (the caller
    /// chose the phase).
    Api { permanent: bool },
    /// The issued certificate could not be written: the order and key stay, and the write is
    /// tried again with the poll backoff, without a new order.
    Deploy {
        order_id: OrderId,
        presented_at: Option<DateTime<Utc>>,
        error: String,
    },
}

impl Failure {
    fn new(reason: String, kind: FailKind) -> Failure {
        Failure { reason, kind }
    }

    fn attempt(reason: String, permanent: bool) -> Failure {
        Failure::new(
            reason,
            FailKind::Attempt {
                permanent,
                severe: false,
            },
        )
    }

    fn severe(reason: String, permanent: bool) -> Failure {
        Failure::new(
            reason,
            FailKind::Attempt {
                permanent,
                severe: true,
            },
        )
    }

    fn api(e: &ApiError) -> Failure {
        let permanent = e.class() == ErrorClass::Permanent;
        Failure::new(e.to_string(), FailKind::Api { permanent })
    }
}

/// The one failure tail: count it, say why, schedule the retry, persist, and clean up what the
/// attempt leaves behind.
fn failed(mut rec: CertRecord, cx: &Cx<'_>, f: Failure) -> Transition {
    let now = cx.now;
    rec.failures += 1;
    rec.last_error = Some(f.reason.clone());
    let (event, failpoint) = match f.kind {
        FailKind::Attempt { permanent, severe } => {
            rec.next_due = now + dur(schedule::retry_backoff(rec.failures - 1, permanent));
            if let Some(order_id) = rec.phase.open_order() {
                give_up(&mut rec, order_id);
            }
            rec.phase = Phase::Failed {
                reason: f.reason.clone(),
                at: now,
                attempt: rec.failures,
            };
            rec.pending_key = None;
            rec.pending_csr = None;
            let event = Event::RenewFailed {
                error: f.reason,
                permanent,
                severe,
                retry_at: rec.next_due,
                api: false,
            };
            (event, Some("after_failed"))
        }
        FailKind::Api { permanent } => {
            rec.next_due = now + dur(schedule::retry_backoff(rec.failures - 1, permanent));
            if rec.phase.is_resting() {
                rec.phase = Phase::Failed {
                    reason: f.reason.clone(),
                    at: now,
                    attempt: rec.failures,
                };
            }
            let event = Event::RenewFailed {
                error: f.reason,
                permanent,
                severe: false,
                retry_at: rec.next_due,
                api: true,
            };
            (event, None)
        }
        FailKind::Deploy {
            order_id,
            presented_at,
            error,
        } => {
            rec.next_due = now + dur(schedule::backoff(cx.poll_min, cx.poll_max, rec.failures));
            // The proof is already cleaned up: nothing left to present or clean.
            rec.phase = Phase::Polling {
                order_id,
                presented: None,
                presented_at: presented_at.unwrap_or(now),
                next_poll: rec.next_due,
                attempt: 0,
            };
            let event = Event::DeployFailed {
                order_id,
                error,
                retry_at: rec.next_due,
            };
            (event, None)
        }
    };
    // A failed attempt waits out its retry time, forced or not (a forced renewal that kept
    // skipping the wait would retry at once, again and again).
    rec.force_renew = false;
    let at = rec.next_due;
    let mut t = Transition::new(rec)
        .log(event)
        .effect(Effect::MetricRenewalFailed)
        .effect(Effect::Persist);
    if let Some(fp) = failpoint {
        t = t.effect(Effect::Failpoint(fp));
    }
    // Given-up orders are deleted at once (quota back); what cannot be deleted now stays
    // queued for the next step.
    if t.rec.orders_to_clean.is_empty() {
        t.done(StepOutcome::Waiting(at))
    } else {
        let ids = t.rec.orders_to_clean.clone();
        t.call(Request::CleanOrders(ids))
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
