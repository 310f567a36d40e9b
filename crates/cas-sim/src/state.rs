//! The simulator's books: orders, per-product quota, Alidns records and the call ledger,
//! persisted as one JSON file written atomically after every mutation.
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// First OrderId handed out: 2^53 + 1, so a client that parses ids as f64 loses precision.
pub(crate) const FIRST_ORDER_ID: u64 = 9_007_199_254_740_993;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is not valid JSON: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Order states, named like DescribeCertificateState's `Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OrderState {
    DomainVerify,
    Process,
    Certificate,
    VerifyFail,
    /// Cancelled back to pending (CancelOrderRequest).
    Payed,
    Revoked,
    Deleted,
}

impl OrderState {
    /// The DescribeCertificateState `Type`.
    pub(crate) fn type_str(self) -> &'static str {
        match self {
            OrderState::DomainVerify => "domain_verify",
            OrderState::Process => "process",
            OrderState::Certificate => "certificate",
            OrderState::VerifyFail => "verify_fail",
            OrderState::Payed => "payed",
            OrderState::Revoked => "revoked",
            OrderState::Deleted => "deleted",
        }
    }
    /// The ListUserCertificateOrder `Status`.
    pub(crate) fn list_status(self) -> &'static str {
        match self {
            OrderState::DomainVerify | OrderState::Process => "CHECKING",
            OrderState::Certificate => "ISSUED",
            OrderState::VerifyFail => "CHECKED_FAIL",
            OrderState::Payed => "PAYED",
            OrderState::Revoked => "REVOKED",
            OrderState::Deleted => "DELETED",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Order {
    pub id: u64,
    pub instance_id: String,
    pub product_code: String,
    pub domains: Vec<String>,
    pub validate_type: String,
    pub csr: Option<String>,
    pub state: OrderState,
    /// The action that created the order (ledger `created_by`).
    pub created_by: String,
    pub created_ms: i64,
    /// Random token: TXT value (DNS) or file content (FILE).
    pub challenge: String,
    /// When the proof was first seen.
    pub verified_ms: Option<i64>,
    /// When CA review began.
    pub process_ms: Option<i64>,
    pub issued_ms: Option<i64>,
    pub cert_start_ms: Option<i64>,
    pub cert_end_ms: Option<i64>,
    pub cert_pem: Option<String>,
    /// Key CAS made (no CSR). A test CA's key for a simulated order, never a real secret.
    pub key_pem: Option<String>,
    pub cert_id: Option<u64>,
    pub renewed_from: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Usage {
    pub used: i64,
    pub issued: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub id: String,
    pub zone: String,
    pub rr: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub value: String,
    pub ttl: i64,
}

impl Record {
    /// Fully qualified name of the record.
    pub(crate) fn fqdn(&self) -> String {
        if self.rr == "@" || self.rr.is_empty() {
            self.zone.clone()
        } else {
            format!("{}.{}", self.rr, self.zone)
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Call {
    pub action: String,
    pub code: String,
    pub order_id: Option<u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    pub next_seq: u64,
    pub next_record: u64,
    pub next_cert: u64,
    pub orders: Vec<Order>,
    pub usage: BTreeMap<String, Usage>,
    pub records: Vec<Record>,
    pub calls: Vec<Call>,
    /// Domain sets (sorted, joined) that already had a certificate, for --first-cert-lifetime.
    pub issued_sets: Vec<String>,
    /// Changed since the last write (only used with a persist interval).
    #[serde(skip)]
    pub dirty: std::sync::atomic::AtomicBool,
}

impl State {
    pub(crate) fn load(path: &Path) -> Result<State, StateError> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| StateError::Parse {
                path: path.to_path_buf(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(StateError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes tmp + fsync + rename, so a crash leaves the old or the new file, never half.
    pub(crate) fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("json.tmp");
        let data = serde_json::to_vec_pretty(self).map_err(|source| StateError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let _ = std::fs::remove_file(&tmp);
        // 0600 from creation: the books hold private keys the CA made for key-less orders.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(&data).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    pub(crate) fn new_order_id(&mut self) -> u64 {
        let id = FIRST_ORDER_ID + self.next_seq;
        self.next_seq += 1;
        id
    }

    pub(crate) fn order(&self, id: u64) -> Option<&Order> {
        self.orders
            .iter()
            .find(|o| o.id == id && o.state != OrderState::Deleted)
    }

    pub(crate) fn order_mut(&mut self, id: u64) -> Option<&mut Order> {
        self.orders
            .iter_mut()
            .find(|o| o.id == id && o.state != OrderState::Deleted)
    }

    pub(crate) fn usage_mut(&mut self, product: &str) -> &mut Usage {
        self.usage.entry(product.to_string()).or_default()
    }

    /// Takes one unit of quota; false when `total` is used up.
    pub(crate) fn consume(&mut self, product: &str, total: i64) -> bool {
        let u = self.usage_mut(product);
        if u.used >= total {
            return false;
        }
        u.used += 1;
        true
    }

    /// Gives a unit back (delete of an unissued order, revoke within 30 days).
    pub(crate) fn refund(&mut self, product: &str, was_issued: bool) {
        let u = self.usage_mut(product);
        u.used = (u.used - 1).max(0);
        if was_issued {
            u.issued = (u.issued - 1).max(0);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quota_consume_and_refund() {
        let mut s = State::default();
        assert!(s.consume("p", 2));
        assert!(s.consume("p", 2));
        assert!(!s.consume("p", 2), "third unit of a quota of 2");
        s.refund("p", false);
        assert_eq!(s.usage["p"].used, 1);
        assert!(s.consume("p", 2));
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut s = State::default();
        let id = s.new_order_id();
        assert_eq!(id, FIRST_ORDER_ID);
        s.consume("p", 5);
        s.save(&path).unwrap();
        let l = State::load(&path).unwrap();
        assert_eq!(l.next_seq, 1);
        assert_eq!(l.usage["p"].used, 1);
        assert!(!path.with_extension("json.tmp").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        s.save(&path).unwrap();
    }
}
