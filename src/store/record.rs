//! The persisted record types. Every record carries `v`; decoding accepts every version up to
//! [`RECORD_VERSION`] and upgrades older ones in [`CertRecord::decode`].
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, Serializer};

use crate::cas::model::OrderId;
use crate::deploy::CertInfo;
use crate::secret::Secret;
use crate::validation::Presented;

use super::StoreError;

/// The newest record format this build writes.
pub const RECORD_VERSION: u32 = 1;

/// Where a certificate is in its lifecycle. Each variant is one persisted step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Nothing in flight (fresh, or waiting until renewal is due).
    Idle,
    /// A new key (and CSR unless CAS makes the key) is stored in `pending_key`/`pending_csr`.
    KeyReady,
    /// About to call create (flushed first). If we find this after a crash, the create may
    /// have happened: look for the order before creating again.
    Intent {
        created_at: DateTime<Utc>,
        /// Hex SHA-256 of the CSR sent (empty without a CSR), to tell our order apart.
        csr_fingerprint: String,
        /// The product ordered. Adoption looks for an order of this product, not of the one
        /// configured now (the default product changed between releases). `None` in intents
        /// written before it was recorded: adoption then accepts any product.
        #[serde(default)]
        product: Option<String>,
    },
    /// CAS gave us an order; its challenge is not yet published.
    Ordered {
        order_id: OrderId,
        created_at: DateTime<Utc>,
    },
    /// The challenge is published; waiting for CAS to see it.
    Presented {
        order_id: OrderId,
        presented: Presented,
        presented_at: DateTime<Utc>,
        attempt: u32,
    },
    /// CA review in progress (`process`).
    Polling {
        order_id: OrderId,
        presented: Option<Presented>,
        presented_at: DateTime<Utc>,
        next_poll: DateTime<Utc>,
        attempt: u32,
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
            Phase::KeyReady => "key_ready",
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

    /// What was published for validation and must be cleaned up.
    pub fn presented(&self) -> Option<&Presented> {
        match self {
            Phase::Presented { presented, .. } => Some(presented),
            Phase::Polling { presented, .. } => presented.as_ref(),
            _ => None,
        }
    }
}

/// The certificate currently deployed, with what is needed to restore its files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployedCert {
    pub order_id: OrderId,
    pub info: CertInfo,
    pub cert_pem: String,
    pub chain_pem: String,
    /// Private key (the state directory is 0700 and the database files are ours only).
    #[serde(serialize_with = "ser_secret")]
    pub key_pem: Secret,
}

/// Everything the daemon remembers about one configured certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertRecord {
    /// Record format version.
    pub v: u32,
    pub name: String,
    /// The domains the current/pending order is for.
    pub domains: Vec<String>,
    pub phase: Phase,
    /// The key for the order in flight (our own key; `None` when CAS makes it).
    #[serde(default, serialize_with = "ser_opt_secret")]
    pub pending_key: Option<Secret>,
    #[serde(default)]
    pub pending_csr: Option<String>,
    #[serde(default)]
    pub deployed: Option<DeployedCert>,
    /// When the next step is due (poll, retry, or renewal).
    pub next_due: DateTime<Utc>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_success: Option<DateTime<Utc>>,
    /// Set by `renew --force` or a domain change: order a new certificate now.
    #[serde(default)]
    pub force_renew: bool,
    /// A deployment happened and its reload hook has not yet succeeded.
    #[serde(default)]
    pub hook_pending: bool,
    #[serde(default)]
    pub hook_attempt: u32,
    /// Orders we gave up on that still need cancel/delete (quota back).
    #[serde(default)]
    pub orders_to_clean: Vec<OrderId>,
    /// Consecutive failures, for backoff.
    #[serde(default)]
    pub failures: u32,
    /// Orders this certificate is done with (abandoned, deleted, undeletable, or replaced by a
    /// renewal), newest last, at most [`RETIRED_KEEP`]. Adoption after a crash must never pick
    /// one of them: its certificate is not for our current key.
    #[serde(default)]
    pub retired_orders: Vec<OrderId>,
}

/// How many retired orders a record remembers: adoption only looks at orders bought within
/// minutes of the intent, so a few are plenty.
pub const RETIRED_KEEP: usize = 16;

impl CertRecord {
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
            pending_key: None,
            pending_csr: None,
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
        }
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

    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let mut r = self.clone();
        r.v = RECORD_VERSION;
        serde_json::to_vec(&r).map_err(|e| StoreError::Decode {
            name: self.name.clone(),
            reason: e.to_string(),
        })
    }

    pub fn decode(name: &str, bytes: &[u8]) -> Result<CertRecord, StoreError> {
        #[derive(Deserialize)]
        struct Head {
            v: u32,
        }
        let err = |e: serde_json::Error| StoreError::Decode {
            name: name.to_string(),
            reason: e.to_string(),
        };
        let head: Head = serde_json::from_slice(bytes).map_err(err)?;
        if head.v > RECORD_VERSION {
            return Err(StoreError::TooNew {
                name: name.to_string(),
                v: head.v,
                max: RECORD_VERSION,
            });
        }
        // v1 is the current format; later versions add an upgrade step here.
        serde_json::from_slice(bytes).map_err(err)
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
}

impl StatusRow {
    pub fn from_record(r: &CertRecord) -> StatusRow {
        let next_action = match &r.phase {
            Phase::KeyReady => "create order",
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
        }
    }
}

/// `<state_dir>/status.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub written_at: DateTime<Utc>,
    pub daemon_pid: Option<u32>,
    pub certificates: Vec<StatusRow>,
}

fn ser_secret<S: Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

fn ser_opt_secret<S: Serializer>(s: &Option<Secret>, ser: S) -> Result<S::Ok, S::Error> {
    match s {
        Some(s) => ser.serialize_some(s.expose()),
        None => ser.serialize_none(),
    }
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
        // An old record without the field still decodes.
        let mut v: serde_json::Value = serde_json::from_slice(&r.encode().unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("retired_orders");
        let back = CertRecord::decode("a", &serde_json::to_vec(&v).unwrap()).unwrap();
        assert!(back.retired_orders.is_empty());
    }

    /// A record exactly as version 1 wrote it must keep decoding in later versions.
    #[test]
    fn decodes_a_v1_record() {
        let v1 = r#"{"v":1,"name":"www","domains":["example.com","www.example.com"],
            "phase":{"phase":"polling","order_id":"18446744073709551000","presented":
              {"File":{"path":"/var/www/.well-known/pki-validation/fileauth.txt"}},
              "presented_at":"2026-01-01T00:00:00Z","next_poll":"2026-01-01T00:01:00Z","attempt":2},
            "pending_key":"-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----\n",
            "pending_csr":null,"deployed":null,"next_due":"2026-01-01T00:01:00Z",
            "last_error":null,"last_success":null,"force_renew":false,"hook_pending":false,
            "hook_attempt":0,"orders_to_clean":[123],"failures":0}"#;
        let r = CertRecord::decode("www", v1.as_bytes()).unwrap();
        assert_eq!(r.phase.open_order(), Some(OrderId(18446744073709551000)));
        assert_eq!(r.orders_to_clean, vec![OrderId(123)]);
        assert!(r.pending_key.unwrap().expose().contains("PRIVATE KEY"));
    }

    #[test]
    fn refuses_a_newer_version_instead_of_guessing() {
        let e = CertRecord::decode("x", br#"{"v":99}"#).unwrap_err();
        assert!(matches!(e, StoreError::TooNew { v: 99, .. }), "{e}");
    }

    #[test]
    fn round_trips_with_key_and_deployed_cert() {
        let mut r = CertRecord::new("a", vec!["a.test".into()]);
        r.pending_key = Some(Secret::new("SUPERSECRETKEYMATERIAL"));
        r.phase = Phase::Intent {
            created_at: Utc::now(),
            csr_fingerprint: "ab".into(),
            product: Some("digicert-free-1-free".into()),
        };
        let b = r.encode().unwrap();
        let back = CertRecord::decode("a", &b).unwrap();
        assert_eq!(back, r);
        // The Debug form used in logs never shows the key.
        assert!(!format!("{back:?}").contains("SUPERSECRETKEYMATERIAL"));
    }
}
