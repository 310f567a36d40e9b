//! Record format version 1, spelled out field by field: these types, not the domain types, say
//! what a record looks like on disk, so renaming a field elsewhere cannot change the format.
//! Fields that older v1 builds did not write carry `#[serde(default)]`. No `Debug`: records hold
//! private keys.
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::deploy::CertInfo;
use crate::store::{CertRecord, DeployedCert, PendingKey, Phase, ProofStatus};
use crate::validation::Presented;
use cas_api::model::OrderId;
use cas_api::secret::Secret;

#[derive(Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) v: u32,
    name: String,
    domains: Vec<String>,
    phase: PhaseV1,
    #[serde(default)]
    pending_key: Option<String>,
    #[serde(default)]
    pending_csr: Option<String>,
    #[serde(default)]
    deployed: Option<Deployed>,
    next_due: DateTime<Utc>,
    #[serde(default)]
    last_error: Option<String>,
    #[serde(default)]
    last_success: Option<DateTime<Utc>>,
    #[serde(default)]
    force_renew: bool,
    #[serde(default)]
    hook_pending: bool,
    #[serde(default)]
    hook_attempt: u32,
    #[serde(default)]
    orders_to_clean: Vec<Id>,
    #[serde(default)]
    failures: u32,
    #[serde(default)]
    retired_orders: Vec<Id>,
    /// Added within v1 (proof self-check): absent before, and not written while `None`, so
    /// older records re-encode unchanged; builds that predate it ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proof: Option<ProofV1>,
}

#[derive(Serialize, Deserialize)]
struct ProofV1 {
    order_id: Id,
    at: DateTime<Utc>,
    #[serde(default)]
    failure: Option<String>,
    #[serde(default)]
    reported: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum PhaseV1 {
    Idle,
    KeyReady,
    Intent {
        created_at: DateTime<Utc>,
        csr_fingerprint: String,
        /// Added within v1: absent in intents written before (and then not written, so such
        /// records re-encode unchanged); builds that predate it ignore it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        product: Option<String>,
    },
    Ordered {
        order_id: Id,
        created_at: DateTime<Utc>,
    },
    Presented {
        order_id: Id,
        presented: PresentedV1,
        presented_at: DateTime<Utc>,
        /// Added within v1, like `Intent::product`: absent in records written before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ordered_at: Option<DateTime<Utc>>,
        attempt: u32,
    },
    Polling {
        order_id: Id,
        presented: Option<PresentedV1>,
        presented_at: DateTime<Utc>,
        next_poll: DateTime<Utc>,
        attempt: u32,
    },
    Deployed {
        order_id: Id,
        at: DateTime<Utc>,
    },
    Failed {
        reason: String,
        at: DateTime<Utc>,
        attempt: u32,
    },
}

/// Externally tagged with the variant's own name (`{"File":{…}}`), as v1 wrote it.
#[derive(Serialize, Deserialize)]
enum PresentedV1 {
    File {
        path: PathBuf,
    },
    Alidns {
        zone: String,
        rr: String,
        record_id: String,
    },
    Command {
        argv: Vec<String>,
        domain: String,
        record: String,
        value: String,
        timeout_secs: u64,
        #[serde(default)]
        challenge_type: String,
        #[serde(default)]
        cert_name: String,
        #[serde(default)]
        pass_env: Vec<String>,
    },
    Manual {
        instructions: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Deployed {
    order_id: Id,
    info: Info,
    cert_pem: String,
    chain_pem: String,
    key_pem: String,
}

#[derive(Serialize, Deserialize)]
struct Info {
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    serial_hex: String,
    names: Vec<String>,
    fingerprint_sha256: String,
}

/// An order id, written as a JSON number. Read as CAS answers one (a number or, in early
/// records, a string): that leniency is `OrderId`'s, and the fixtures hold it to the format.
#[derive(Clone, Copy, Serialize)]
#[serde(transparent)]
struct Id(u64);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        OrderId::deserialize(d).map(Id::from)
    }
}

impl From<Id> for OrderId {
    fn from(id: Id) -> OrderId {
        OrderId(id.0)
    }
}

impl From<OrderId> for Id {
    fn from(id: OrderId) -> Id {
        Id(id.0)
    }
}

fn ids(v: &[OrderId]) -> Vec<Id> {
    v.iter().map(|&id| id.into()).collect()
}

fn order_ids(v: Vec<Id>) -> Vec<OrderId> {
    v.into_iter().map(OrderId::from).collect()
}

impl Record {
    pub(super) fn from_domain(r: &CertRecord, v: u32) -> Record {
        let pending = r.phase.pending();
        Record {
            v,
            name: r.name.clone(),
            domains: r.domains.clone(),
            phase: PhaseV1::from_domain(&r.phase),
            // v1 keeps the attempt's key and CSR beside the phase.
            pending_key: pending
                .and_then(|p| p.key.as_ref())
                .map(|k| k.expose().to_string()),
            pending_csr: pending.and_then(|p| p.csr.clone()),
            deployed: r.deployed.as_ref().map(Deployed::from_domain),
            next_due: r.next_due,
            last_error: r.last_error.clone(),
            last_success: r.last_success,
            force_renew: r.force_renew,
            hook_pending: r.hook_pending,
            hook_attempt: r.hook_attempt,
            orders_to_clean: ids(&r.orders_to_clean),
            failures: r.failures,
            retired_orders: ids(&r.retired_orders),
            proof: r.proof.as_ref().map(|p| ProofV1 {
                order_id: p.order_id.into(),
                at: p.at,
                failure: p.failure.clone(),
                reported: p.reported.clone(),
            }),
        }
    }

    /// The domain record; `v` is the version the caller upgraded it to.
    pub(super) fn into_domain(self, v: u32) -> CertRecord {
        CertRecord {
            v,
            name: self.name,
            domains: self.domains,
            // A key beside a phase at rest belonged to an attempt that is over: dropped.
            phase: self.phase.into_domain(PendingKey {
                key: self.pending_key.map(Secret::new),
                csr: self.pending_csr,
            }),
            deployed: self.deployed.map(Deployed::into_domain),
            next_due: self.next_due,
            last_error: self.last_error,
            last_success: self.last_success,
            force_renew: self.force_renew,
            hook_pending: self.hook_pending,
            hook_attempt: self.hook_attempt,
            orders_to_clean: order_ids(self.orders_to_clean),
            failures: self.failures,
            retired_orders: order_ids(self.retired_orders),
            proof: self.proof.map(|p| ProofStatus {
                order_id: p.order_id.into(),
                at: p.at,
                failure: p.failure,
                reported: p.reported,
            }),
        }
    }
}

impl PhaseV1 {
    fn from_domain(p: &Phase) -> PhaseV1 {
        match p {
            Phase::Idle => PhaseV1::Idle,
            Phase::KeyReady { .. } => PhaseV1::KeyReady,
            Phase::Intent {
                created_at,
                csr_fingerprint,
                product,
                ..
            } => PhaseV1::Intent {
                created_at: *created_at,
                csr_fingerprint: csr_fingerprint.clone(),
                product: product.clone(),
            },
            Phase::Ordered {
                order_id,
                created_at,
                ..
            } => PhaseV1::Ordered {
                order_id: (*order_id).into(),
                created_at: *created_at,
            },
            Phase::Presented {
                order_id,
                presented,
                presented_at,
                ordered_at,
                attempt,
                ..
            } => PhaseV1::Presented {
                order_id: (*order_id).into(),
                presented: presented.clone().into(),
                presented_at: *presented_at,
                ordered_at: *ordered_at,
                attempt: *attempt,
            },
            Phase::Polling {
                order_id,
                presented,
                presented_at,
                next_poll,
                attempt,
                ..
            } => PhaseV1::Polling {
                order_id: (*order_id).into(),
                presented: presented.clone().map(PresentedV1::from),
                presented_at: *presented_at,
                next_poll: *next_poll,
                attempt: *attempt,
            },
            Phase::Deployed { order_id, at } => PhaseV1::Deployed {
                order_id: (*order_id).into(),
                at: *at,
            },
            Phase::Failed {
                reason,
                at,
                attempt,
            } => PhaseV1::Failed {
                reason: reason.clone(),
                at: *at,
                attempt: *attempt,
            },
        }
    }

    fn into_domain(self, pending: PendingKey) -> Phase {
        match self {
            PhaseV1::Idle => Phase::Idle,
            PhaseV1::KeyReady => Phase::KeyReady { pending },
            PhaseV1::Intent {
                created_at,
                csr_fingerprint,
                product,
            } => Phase::Intent {
                created_at,
                csr_fingerprint,
                product,
                pending,
            },
            PhaseV1::Ordered {
                order_id,
                created_at,
            } => Phase::Ordered {
                order_id: order_id.into(),
                created_at,
                pending,
            },
            PhaseV1::Presented {
                order_id,
                presented,
                presented_at,
                ordered_at,
                attempt,
            } => Phase::Presented {
                order_id: order_id.into(),
                presented: presented.into(),
                presented_at,
                ordered_at,
                attempt,
                pending,
            },
            PhaseV1::Polling {
                order_id,
                presented,
                presented_at,
                next_poll,
                attempt,
            } => Phase::Polling {
                order_id: order_id.into(),
                presented: presented.map(Presented::from),
                presented_at,
                next_poll,
                attempt,
                pending,
            },
            PhaseV1::Deployed { order_id, at } => Phase::Deployed {
                order_id: order_id.into(),
                at,
            },
            PhaseV1::Failed {
                reason,
                at,
                attempt,
            } => Phase::Failed {
                reason,
                at,
                attempt,
            },
        }
    }
}

/// `From` both ways between a domain enum and its v1 twin whose variants carry the same fields
/// of the same types. Each field is listed once, and a field added on either side without being
/// listed here fails to compile.
macro_rules! twins {
    ($domain:ident <=> $wire:ident { $($variant:ident { $($field:ident),* }),* $(,)? }) => {
        impl From<$domain> for $wire {
            fn from(v: $domain) -> $wire {
                match v {
                    $($domain::$variant { $($field),* } => $wire::$variant { $($field),* },)*
                }
            }
        }
        impl From<$wire> for $domain {
            fn from(v: $wire) -> $domain {
                match v {
                    $($wire::$variant { $($field),* } => $domain::$variant { $($field),* },)*
                }
            }
        }
    };
}

twins!(Presented <=> PresentedV1 {
    File { path },
    Alidns { zone, rr, record_id },
    Command { argv, domain, record, value, timeout_secs, challenge_type, cert_name, pass_env },
    Manual { instructions },
});

impl Deployed {
    fn from_domain(d: &DeployedCert) -> Deployed {
        let i = &d.info;
        Deployed {
            order_id: d.order_id.into(),
            info: Info {
                not_before: i.not_before,
                not_after: i.not_after,
                serial_hex: i.serial_hex.clone(),
                names: i.names.clone(),
                fingerprint_sha256: i.fingerprint_sha256.clone(),
            },
            cert_pem: d.cert_pem.clone(),
            chain_pem: d.chain_pem.clone(),
            key_pem: d.key_pem.expose().to_string(),
        }
    }

    fn into_domain(self) -> DeployedCert {
        let i = self.info;
        DeployedCert {
            order_id: self.order_id.into(),
            info: CertInfo {
                not_before: i.not_before,
                not_after: i.not_after,
                serial_hex: i.serial_hex,
                names: i.names,
                fingerprint_sha256: i.fingerprint_sha256,
            },
            cert_pem: self.cert_pem,
            chain_pem: self.chain_pem,
            key_pem: Secret::new(self.key_pem),
        }
    }
}
