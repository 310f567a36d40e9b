//! The domain record of one certificate ([`CertRecord`], [`Phase`]) and the `status` rows made
//! from it. How a record is written to disk is not decided here: see `persisted`.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::deploy::{CertInfo, PemSet};
use crate::validation::Presented;
use cas_api::model::OrderId;
use cas_api::secret::Secret;

use super::RECORD_VERSION;

/// Where a certificate is in its lifecycle. Each variant is one persisted step.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Nothing in flight (fresh, or waiting until renewal is due).
    Idle,
    /// A new key (and CSR) is made, unless CAS makes the key.
    KeyReady { pending: PendingKey },
    /// About to call create (flushed first). If we find this after a crash, the create may
    /// have happened: look for the order before creating again.
    Intent {
        created_at: DateTime<Utc>,
        /// Hex SHA-256 of the CSR sent (empty without a CSR), to tell our order apart.
        csr_fingerprint: String,
        /// The product ordered. Adoption looks for an order of this product, not of the one
        /// configured now (the default product changed between releases). `None` in intents
        /// written before it was recorded: adoption then accepts any product.
        product: Option<String>,
        pending: PendingKey,
    },
    /// CAS gave us an order; its challenge is not yet published.
    Ordered {
        order_id: OrderId,
        created_at: DateTime<Utc>,
        pending: PendingKey,
    },
    /// The challenge is published; waiting for CAS to see it.
    Presented {
        order_id: OrderId,
        presented: Presented,
        presented_at: DateTime<Utc>,
        /// When the order was created: its validation deadline counts from here. `None` in
        /// records written before it was kept (`presented_at` stands in).
        ordered_at: Option<DateTime<Utc>>,
        attempt: u32,
        pending: PendingKey,
    },
    /// CA review in progress (`process`).
    Polling {
        order_id: OrderId,
        presented: Option<Presented>,
        presented_at: DateTime<Utc>,
        next_poll: DateTime<Utc>,
        attempt: u32,
        pending: PendingKey,
    },
    /// Issued and deployed; renewal scheduled at `next_due`.
    Deployed {
        order_id: OrderId,
        at: DateTime<Utc>,
    },
    /// The last attempt failed; retried at `next_due`.
    Failed {
        reason: String,
        at: DateTime<Utc>,
        attempt: u32,
    },
}

impl Phase {
    /// Short name for status and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::KeyReady { .. } => "key_ready",
            Phase::Intent { .. } => "intent",
            Phase::Ordered { .. } => "ordered",
            Phase::Presented { .. } => "presented",
            Phase::Polling { .. } => "polling",
            Phase::Deployed { .. } => "deployed",
            Phase::Failed { .. } => "failed",
        }
    }

    /// Nothing is in flight: a new attempt (first order or renewal) may start here.
    pub fn is_resting(&self) -> bool {
        matches!(
            self,
            Phase::Idle | Phase::Deployed { .. } | Phase::Failed { .. }
        )
    }

    /// The order in flight, if any (not the deployed one).
    pub fn open_order(&self) -> Option<OrderId> {
        match self {
            Phase::Ordered { order_id, .. }
            | Phase::Presented { order_id, .. }
            | Phase::Polling { order_id, .. } => Some(*order_id),
            _ => None,
        }
    }

    /// The key of the attempt in flight (none at rest).
    pub fn pending(&self) -> Option<&PendingKey> {
        match self {
            Phase::KeyReady { pending }
            | Phase::Intent { pending, .. }
            | Phase::Ordered { pending, .. }
            | Phase::Presented { pending, .. }
            | Phase::Polling { pending, .. } => Some(pending),
            Phase::Idle | Phase::Deployed { .. } | Phase::Failed { .. } => None,
        }
    }

    /// [`Phase::pending`], to change.
    pub fn pending_mut(&mut self) -> Option<&mut PendingKey> {
        match self {
            Phase::KeyReady { pending }
            | Phase::Intent { pending, .. }
            | Phase::Ordered { pending, .. }
            | Phase::Presented { pending, .. }
            | Phase::Polling { pending, .. } => Some(pending),
            Phase::Idle | Phase::Deployed { .. } | Phase::Failed { .. } => None,
        }
    }

    /// What was published for validation and must be cleaned up.
    pub fn presented(&self) -> Option<&Presented> {
        match self {
            Phase::Presented { presented, .. } => Some(presented),
            Phase::Polling { presented, .. } => presented.as_ref(),
            _ => None,
        }
    }
}

/// The key an attempt in flight made and the CSR it sends: they live in the in-flight phases
/// only, so a record at rest cannot hold a stale one. Both `None` when CAS makes the key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PendingKey {
    /// Our private key for the order in flight.
    pub key: Option<Secret>,
    pub csr: Option<String>,
}

/// The certificate currently deployed, with what is needed to restore its files.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployedCert {
    pub order_id: OrderId,
    pub info: CertInfo,
    pub cert_pem: String,
    pub chain_pem: String,
    /// Private key (the state directory is 0700 and the database files are ours only).
    pub key_pem: Secret,
}

/// Everything the daemon remembers about one configured certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct CertRecord {
    /// Record format version.
    pub v: u32,
    pub name: String,
    /// The domains the current/pending order is for.
    pub domains: Vec<String>,
    pub phase: Phase,
    pub deployed: Option<DeployedCert>,
    /// When the next step is due (poll, retry, or renewal).
    pub next_due: DateTime<Utc>,
    pub last_error: Option<String>,
    pub last_success: Option<DateTime<Utc>>,
    /// Set by `renew --force` or a domain change: order a new certificate now.
    pub force_renew: bool,
    /// A deployment happened and its reload hook has not yet succeeded.
    pub hook_pending: bool,
    pub hook_attempt: u32,
    /// Orders we gave up on that still need cancel/delete (quota back).
    pub orders_to_clean: Vec<OrderId>,
    /// Consecutive failures, for backoff.
    pub failures: u32,
    /// Orders this certificate is done with (abandoned, deleted, undeletable, or replaced by a
    /// renewal), newest last, at most [`RETIRED_KEEP`]. Adoption after a crash must never pick
    /// one of them: its certificate is not for our current key.
    pub retired_orders: Vec<OrderId>,
    /// The last proof self-check (`validation::selfcheck`); `None` before the first.
    pub proof: Option<ProofStatus>,
}

/// What the last proof self-check of an order saw, and which failures were already logged.
#[derive(Debug, Clone, PartialEq)]
pub struct ProofStatus {
    /// The order checked: a new order starts afresh.
    pub order_id: OrderId,
    pub at: DateTime<Utc>,
    /// `None`: the proof was seen; else why not (made by the checker, never a body).
    pub failure: Option<String>,
    /// Failure reasons already logged for this order (one event per reason), oldest first, at
    /// most [`REPORTED_KEEP`].
    pub reported: Vec<String>,
}

/// How many distinct failure reasons of one order are remembered: enough for every real cause
/// (403, 404, refused, timeout, …); past it the oldest is forgotten (and may be logged again).
pub const REPORTED_KEEP: usize = 16;

/// How many retired orders a record remembers: adoption only looks at orders bought within
/// minutes of the intent, so a few are plenty.
pub const RETIRED_KEEP: usize = 16;

impl CertRecord {
    /// Our key for the order in flight, if any.
    pub fn pending_key(&self) -> Option<&Secret> {
        self.phase.pending().and_then(|p| p.key.as_ref())
    }

    /// Whole days until the deployed certificate expires (negative once expired); `None` when
    /// nothing is deployed. Logged with `cert.renew_failed` so alerts can key on it.
    pub fn days_left(&self, now: DateTime<Utc>) -> Option<i64> {
        self.deployed
            .as_ref()
            .map(|d| (d.info.not_after - now).num_days())
    }

    pub fn new(name: &str, domains: Vec<String>) -> CertRecord {
        CertRecord {
            v: RECORD_VERSION,
            name: name.to_string(),
            domains,
            phase: Phase::Idle,
            deployed: None,
            next_due: DateTime::<Utc>::UNIX_EPOCH,
            last_error: None,
            last_success: None,
            force_renew: false,
            hook_pending: false,
            hook_attempt: 0,
            orders_to_clean: Vec::new(),
            failures: 0,
            retired_orders: Vec::new(),
            proof: None,
        }
    }

    /// Makes `set` (certificate `info` of order `order_id`) the deployed certificate, live since
    /// `at`, renewed at `renew_at`: the one rule for what a deployed record is, whether the
    /// lifecycle installed the set or the rebuild found it installed. The reload hook's state is
    /// the caller's.
    pub fn set_deployed(
        &mut self,
        order_id: OrderId,
        info: CertInfo,
        set: PemSet,
        at: DateTime<Utc>,
        renew_at: DateTime<Utc>,
    ) {
        if let Some(old) = self.deployed.as_ref().map(|d| d.order_id) {
            self.retire(old);
        }
        self.deployed = Some(DeployedCert {
            order_id,
            info,
            cert_pem: set.cert_pem,
            chain_pem: set.chain_pem,
            key_pem: set.key_pem,
        });
        self.phase = Phase::Deployed { order_id, at };
        self.force_renew = false;
        self.failures = 0;
        self.last_error = None;
        self.last_success = Some(at);
        self.next_due = renew_at;
    }

    /// The self-check result of the order in flight, as `status` shows it: `ok` or the reason.
    pub fn proof_now(&self) -> Option<String> {
        let p = self.proof.as_ref()?;
        (self.phase.open_order() == Some(p.order_id))
            .then(|| p.failure.clone().unwrap_or_else(|| "ok".to_string()))
    }

    /// Remembers that `order_id` is finished with, so adoption never picks it again.
    pub fn retire(&mut self, order_id: OrderId) {
        if !self.retired_orders.contains(&order_id) {
            self.retired_orders.push(order_id);
        }
        let excess = self.retired_orders.len().saturating_sub(RETIRED_KEEP);
        self.retired_orders.drain(..excess);
    }

    /// Orders adoption must skip: still to clean, retired, or the one deployed now.
    pub fn known_orders(&self) -> Vec<OrderId> {
        let mut known = self.orders_to_clean.clone();
        known.extend(self.retired_orders.iter().copied());
        known.extend(self.deployed.as_ref().map(|d| d.order_id));
        known
    }
}

/// One line of `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRow {
    pub name: String,
    pub state: String,
    pub domains: Vec<String>,
    pub order_id: Option<OrderId>,
    pub not_after: Option<DateTime<Utc>>,
    pub next_due: DateTime<Utc>,
    pub next_action: String,
    pub last_error: Option<String>,
    pub last_success: Option<DateTime<Utc>>,
    /// Manual validation: what the operator must publish.
    pub instructions: Option<String>,
    /// The proof self-check of the open order: `ok`, or why the proof cannot be seen; `None`
    /// when no order is open or self-checks are off.
    #[serde(default)]
    pub proof: Option<String>,
}

impl StatusRow {
    pub fn from_record(r: &CertRecord) -> StatusRow {
        let next_action = match &r.phase {
            Phase::KeyReady { .. } => "create order",
            Phase::Intent { .. } => "find or create order",
            Phase::Ordered { .. } => "publish challenge",
            Phase::Presented { .. } | Phase::Polling { .. } => "poll",
            // At rest: a forced attempt (domains changed) orders anew.
            Phase::Idle | Phase::Failed { .. } if r.deployed.is_none() || r.force_renew => "order",
            Phase::Idle | Phase::Failed { .. } | Phase::Deployed { .. } => "renew",
        }
        .to_string();
        let instructions = match r.phase.presented() {
            Some(Presented::Manual { instructions }) => Some(instructions.clone()),
            _ => None,
        };
        StatusRow {
            name: r.name.clone(),
            state: r.phase.name().to_string(),
            domains: r.domains.clone(),
            order_id: r
                .phase
                .open_order()
                .or(r.deployed.as_ref().map(|d| d.order_id)),
            not_after: r.deployed.as_ref().map(|d| d.info.not_after),
            next_due: r.next_due,
            next_action,
            last_error: r.last_error.clone(),
            last_success: r.last_success,
            instructions,
            proof: r.proof_now(),
        }
    }
}

/// `<state_dir>/status.json`. The rows are a `Vec` when read; the daemon writes them from
/// its index as they are serialized (any `R` that serializes as a sequence of [`StatusRow`]),
/// so 10 000 rows are never copied at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot<R = Vec<StatusRow>> {
    pub written_at: DateTime<Utc>,
    pub daemon_pid: Option<u32>,
    pub certificates: R,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn retired_orders_are_known_to_adoption_and_bounded() {
        let mut r = CertRecord::new("a", vec!["a.test".into()]);
        r.orders_to_clean.push(OrderId(1));
        for id in 10..10 + RETIRED_KEEP as u64 + 3 {
            r.retire(OrderId(id));
        }
        r.retire(OrderId(20)); // already retired: no duplicate
        assert_eq!(r.retired_orders.len(), RETIRED_KEEP);
        assert_eq!(
            r.retired_orders.first(),
            Some(&OrderId(13)),
            "oldest dropped first"
        );
        let known = r.known_orders();
        assert!(known.contains(&OrderId(1)));
        assert!(known.contains(&OrderId(10 + RETIRED_KEEP as u64 + 2)));
        assert!(!known.contains(&OrderId(10)));
    }
}
