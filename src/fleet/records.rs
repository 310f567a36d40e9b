//! The certificate records of a fleet, in etcd under `<prefix>/records/<cert>`, in the same
//! versioned format as the single-host store (`store::encode`/`decode`), with every private
//! key sealed (`seal`) before it leaves the host. Any host reads; only the owner writes, and
//! every write is one transaction that compares the owner key's create revision with the
//! writer's token (the fence) and the record's version with the one this host last saw.
//!
//! The API follows the lifecycle's `Records` port, made async (etcd is a network call) and
//! with the writer's [`Ownership`] on every write.
use std::collections::HashMap;
use std::sync::Mutex;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};

use super::keyfile::FleetKey;
use super::seal::{Binding, SealError, Sealer};
use super::{Fleet, FleetError, Ownership};
use crate::store::{self, CertRecord, StatusRow};
use cas_api::secret::Secret;

/// The slots of a record that hold a private key.
const PENDING_KEY: &str = "pending_key";
const DEPLOYED_KEY: &str = "key_pem";

/// The fleet's records.
#[derive(Debug)]
pub struct EtcdRecords {
    fleet: Fleet,
    sealer: Sealer,
    /// etcd's version of each record as this host last read or wrote it (0: absent).
    versions: Mutex<HashMap<String, i64>>,
}

impl EtcdRecords {
    pub fn new(fleet: Fleet, key: &FleetKey) -> EtcdRecords {
        EtcdRecords {
            fleet,
            sealer: Sealer::new(key),
            versions: Mutex::new(HashMap::new()),
        }
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// `name`'s record, its keys opened; `None` when there is none.
    pub async fn get(&self, name: &str) -> Result<Option<CertRecord>, FleetError> {
        let r = self.get_key(self.fleet.record_key(name), None).await?;
        let Some(kv) = r.kvs().first() else {
            self.remember(name, 0);
            return Ok(None);
        };
        let sealed = decode_named(name, kv.value())?;
        let rec = open_keys(&self.sealer, sealed, kv.version())?;
        self.remember(name, kv.version());
        Ok(Some(rec))
    }

    /// Writes `rec` as its owner; durable when it returns (etcd commits before answering).
    /// Refused, with nothing written, when `owner`'s token no longer holds the owner key
    /// ([`FleetError::Fenced`]) or the record moved on since this host saw it.
    pub async fn put_durable(&self, owner: &Ownership, rec: &CertRecord) -> Result<(), FleetError> {
        let name = owner.cert();
        if rec.name != name {
            return Err(FleetError::WrongOwnership {
                record: rec.name.clone(),
                owned: name.to_string(),
            });
        }
        let expected = match self.known(name) {
            Some(v) => v,
            None => self.version_now(name).await?,
        };
        // etcd counts a key's versions from 1 at its creation; the put makes the next one.
        let version = expected + 1;
        let bytes = store::encode(&seal_keys(&self.sealer, rec, version)?)?;
        let key = self.fleet.record_key(name);
        let txn = Txn::new()
            .when([
                fence(&self.fleet, owner),
                Compare::version(key.clone(), CompareOp::Equal, expected),
            ])
            .and_then([TxnOp::put(key, bytes, None)])
            .or_else(self.why_not(name));
        let resp = self.txn(txn).await?;
        if resp.succeeded() {
            self.remember(name, version);
            return Ok(());
        }
        Err(self.refusal(owner, expected, &resp))
    }

    /// Forgets `name`'s record as its owner (fenced like a write).
    pub async fn remove_durable(&self, owner: &Ownership) -> Result<(), FleetError> {
        let name = owner.cert();
        let txn = Txn::new()
            .when([fence(&self.fleet, owner)])
            .and_then([TxnOp::delete(self.fleet.record_key(name), None)])
            .or_else(self.why_not(name));
        let resp = self.txn(txn).await?;
        if resp.succeeded() {
            self.remember(name, 0);
            return Ok(());
        }
        Err(self.refusal(owner, -1, &resp))
    }

    /// What a refused write reads to say why: the owner key, then the record's version.
    fn why_not(&self, name: &str) -> [TxnOp; 2] {
        [
            TxnOp::get(self.fleet.owner_key(name), None),
            TxnOp::get(
                self.fleet.record_key(name),
                Some(GetOptions::new().with_keys_only()),
            ),
        ]
    }

    /// The error for a refused write (whose else branch was [`Self::why_not`]), logged as
    /// `fleet.fenced` when the fence refused it.
    fn refusal(
        &self,
        owner: &Ownership,
        expected: i64,
        resp: &etcd_client::TxnResponse,
    ) -> FleetError {
        let name = owner.cert();
        let mut gets = resp.op_responses().into_iter().filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g.kvs().first().cloned()),
            _ => None,
        });
        let holder = gets.next().flatten();
        let record = gets.next().flatten();
        let now = match &holder {
            Some(kv) if kv.create_revision() == owner.token() => None,
            Some(kv) => Some(format!(
                "{} holds it with token {}",
                String::from_utf8_lossy(kv.value()),
                kv.create_revision()
            )),
            None => Some("nobody holds it".to_string()),
        };
        match now {
            Some(now) => {
                tracing::error!(
                    event = "fleet.fenced",
                    cert = %name,
                    token = owner.token(),
                    now = %now,
                    "a write by this host was refused: it no longer owns the certificate"
                );
                FleetError::Fenced {
                    cert: name.to_string(),
                    token: owner.token(),
                    now,
                }
            }
            None => {
                let found = record.map_or(0, |kv| kv.version());
                // Read again before the next write.
                self.forget(name);
                FleetError::Conflict {
                    cert: name.to_string(),
                    expected,
                    found,
                }
            }
        }
    }

    async fn version_now(&self, name: &str) -> Result<i64, FleetError> {
        let r = self
            .get_key(
                self.fleet.record_key(name),
                Some(GetOptions::new().with_keys_only()),
            )
            .await?;
        Ok(r.kvs().first().map_or(0, |kv| kv.version()))
    }

    async fn get_key(
        &self,
        key: String,
        opts: Option<GetOptions>,
    ) -> Result<etcd_client::GetResponse, FleetError> {
        Ok(self
            .fleet
            .call_idempotent(|mut c| {
                let (key, opts) = (key.clone(), opts.clone());
                async move { c.get(key, opts).await }
            })
            .await?)
    }

    /// Runs `txn`. Passed to another member only when it never reached etcd, so a write is
    /// never applied twice (and a repeat would fail its version compare anyway).
    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse, FleetError> {
        Ok(self
            .fleet
            .call(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?)
    }

    fn known(&self, name: &str) -> Option<i64> {
        self.versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()
    }

    fn remember(&self, name: &str, version: i64) {
        self.versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), version);
    }

    fn forget(&self, name: &str) {
        self.versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}

/// `name`'s record in etcd as a status row (phase, order, expiry, last error), for any host's
/// `status`; `None` when there is none. The keys stay sealed: a status row holds none, so
/// reading it needs no fleet key.
pub async fn record_status(fleet: &Fleet, name: &str) -> Result<Option<StatusRow>, FleetError> {
    let key = fleet.record_key(name);
    let r = fleet
        .call_idempotent(|mut c| {
            let key = key.clone();
            async move { c.get(key, None).await }
        })
        .await?;
    let Some(kv) = r.kvs().first() else {
        return Ok(None);
    };
    let sealed = decode_named(name, kv.value())?;
    Ok(Some(StatusRow::from_record(&sealed)))
}

/// The fence: the owner key still exists with the writer's token as its create revision.
/// The record stored under `name`'s key, keys still sealed; one that names another
/// certificate is refused.
fn decode_named(name: &str, bytes: &[u8]) -> Result<CertRecord, FleetError> {
    let sealed = store::decode(name, bytes)?;
    if sealed.name != name {
        return Err(FleetError::Unexpected {
            cert: name.to_string(),
            what: format!("a record named {:?}", sealed.name),
        });
    }
    Ok(sealed)
}

fn fence(fleet: &Fleet, owner: &Ownership) -> Compare {
    Compare::create_revision(
        fleet.owner_key(owner.cert()),
        CompareOp::Equal,
        owner.token(),
    )
}

/// A copy of `rec` with every private key sealed, bound to the name and `version`.
fn seal_keys(s: &Sealer, rec: &CertRecord, version: i64) -> Result<CertRecord, SealError> {
    let mut r = rec.clone();
    let bind = |slot| Binding {
        name: &rec.name,
        version,
        slot,
    };
    if let Some(p) = r.phase.pending_mut() {
        if let Some(k) = &p.key {
            p.key = Some(Secret::new(s.seal(bind(PENDING_KEY), k)?));
        }
    }
    if let Some(d) = &mut r.deployed {
        d.key_pem = Secret::new(s.seal(bind(DEPLOYED_KEY), &d.key_pem)?);
    }
    Ok(r)
}

/// `rec` read at `version` with its keys opened; a key in clear is refused.
fn open_keys(s: &Sealer, mut rec: CertRecord, version: i64) -> Result<CertRecord, SealError> {
    let name = rec.name.clone();
    let bind = |slot| Binding {
        name: &name,
        version,
        slot,
    };
    if let Some(p) = rec.phase.pending_mut() {
        if let Some(k) = &p.key {
            p.key = Some(s.open(bind(PENDING_KEY), k.expose())?);
        }
    }
    if let Some(d) = &mut rec.deployed {
        d.key_pem = s.open(bind(DEPLOYED_KEY), d.key_pem.expose())?;
    }
    Ok(rec)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::store::{PendingKey, Phase};

    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nSECRETSECRET\n-----END PRIVATE KEY-----\n";

    fn record() -> CertRecord {
        let mut r = CertRecord::new("www", vec!["www.example.com".into()]);
        r.phase = Phase::Intent {
            created_at: Utc::now(),
            csr_fingerprint: "ab".into(),
            product: None,
            pending: PendingKey {
                key: Some(Secret::new(PEM)),
                csr: Some("CSR".into()),
            },
        };
        r
    }

    /// The encoded record holds no key in clear, opens back whole at its version and at no
    /// other.
    #[test]
    fn a_sealed_record_encodes_without_the_key_and_opens_at_its_version_only() {
        let s = Sealer::new(&FleetKey::from_bytes([3; 32]));
        let r = record();
        let bytes = store::encode(&seal_keys(&s, &r, 5).unwrap()).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(!text.contains("PRIVATE KEY") && !text.contains("SECRETSECRET"));
        let back = store::decode("www", &bytes).unwrap();
        assert_eq!(open_keys(&s, back.clone(), 5).unwrap(), r);
        assert!(matches!(
            open_keys(&s, back, 6),
            Err(SealError::Open { .. })
        ));
        // A record whose key is in clear is refused, not taken.
        assert!(matches!(
            open_keys(&s, r, 5),
            Err(SealError::NotSealed { .. })
        ));
    }

    /// Every phase that holds a key, with a deployed set beside it: the encoded record holds
    /// neither key in clear, and opens back whole. (A phase or field added with a key that
    /// `seal_keys` misses fails here.)
    #[test]
    fn every_phase_with_a_key_is_sealed_with_the_deployed_key() {
        use cas_api::model::OrderId;
        let s = Sealer::new(&FleetKey::from_bytes([4; 32]));
        let now = Utc::now();
        let pending = PendingKey {
            key: Some(Secret::new("PENDINGSECRET")),
            csr: None,
        };
        let phases = [
            Phase::KeyReady {
                pending: pending.clone(),
            },
            record().phase,
            Phase::Ordered {
                order_id: OrderId(1),
                created_at: now,
                pending: pending.clone(),
            },
            Phase::Presented {
                order_id: OrderId(1),
                presented: crate::validation::Presented::File {
                    path: "/w/x".into(),
                },
                presented_at: now,
                ordered_at: Some(now),
                attempt: 0,
                pending: pending.clone(),
            },
            Phase::Polling {
                order_id: OrderId(1),
                presented: None,
                presented_at: now,
                next_poll: now,
                attempt: 0,
                pending,
            },
        ];
        for phase in phases {
            let mut r = record();
            r.phase = phase;
            r.deployed = Some(crate::store::DeployedCert {
                order_id: OrderId(1),
                info: crate::deploy::CertInfo {
                    not_before: now,
                    not_after: now,
                    serial_hex: "01".into(),
                    names: vec!["www.example.com".into()],
                    fingerprint_sha256: "00".into(),
                },
                cert_pem: "CERT".into(),
                chain_pem: "CHAIN".into(),
                key_pem: Secret::new("DEPLOYEDSECRET"),
            });
            let text =
                String::from_utf8(store::encode(&seal_keys(&s, &r, 2).unwrap()).unwrap()).unwrap();
            assert!(
                !text.contains("SECRET") && !text.contains("PRIVATE KEY"),
                "{}: a key in clear (the text is not printed: it holds it)",
                r.phase.name()
            );
            let back = open_keys(&s, store::decode("www", text.as_bytes()).unwrap(), 2).unwrap();
            assert_eq!(back, r, "{}", r.phase.name());
        }
    }
}
