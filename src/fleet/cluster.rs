//! The connection to the fleet's etcd cluster (one client per member, TLS), where each key
//! lives under the prefix, and the fleet's error type.
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{FleetSettings, FleetTls};
use crate::store::StoreError;

use super::seal::SealError;

/// How long a connection attempt and each request may take before it is an error. A request
/// forwarded to a leader that just died is never answered: this bounds the wait.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a request that is safe to repeat is retried through an election or a member
/// restarting (etcd elects within a few seconds; its own proposal timeout is about 7 s).
const RETRY_BUDGET: Duration = Duration::from_secs(10);
/// gRPC status codes (the wire protocol's numbers) that say "not now" rather than "no".
const GRPC_CANCELLED: i32 = 1;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_UNAVAILABLE: i32 = 14;

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("[fleet] tls: {path}: {reason}")]
    Tls { path: PathBuf, reason: String },
    /// The write's fence failed: the owner key is gone or belongs to a successor. Nothing
    /// was written.
    #[error(
        "{cert}: write refused by the fence: this host's ownership (token {token}) is over ({now})"
    )]
    Fenced {
        cert: String,
        token: i64,
        /// Who holds the certificate now, as far as etcd says.
        now: String,
    },
    /// The fence held but the record is not at the version this host last saw: something
    /// wrote it that should not have. Nothing was written.
    #[error("{cert}: the record is at version {found} in etcd, not {expected} as this host last read it; nothing written")]
    Conflict {
        cert: String,
        expected: i64,
        found: i64,
    },
    /// A caller's mistake: a record written with another certificate's ownership.
    #[error("record {record:?} written with the ownership of {owned:?}; nothing written")]
    WrongOwnership { record: String, owned: String },
    /// etcd holds or answered what this fleet never writes; nothing is taken from it.
    #[error("{cert}: unexpected in etcd: {what}")]
    Unexpected { cert: String, what: String },
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The fleet's etcd cluster, one client per member, with the key layout under the prefix.
/// A request goes to the member that answered last; one that cannot even be connected to
/// (the request never left this host) is passed to the next member.
#[derive(Clone)]
pub struct Fleet {
    clients: Arc<Vec<etcd_client::Client>>,
    preferred: Arc<AtomicUsize>,
    prefix: String,
    node: String,
}

impl Fleet {
    /// Sets up a client for every member of `s` (connections are made at the first request).
    pub async fn connect(s: &FleetSettings) -> Result<Fleet, FleetError> {
        let mut opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            // A member cut off from the others answers nothing rather than stale data.
            .with_require_leader(true);
        if let Some(t) = &s.tls {
            opts = opts.with_tls(tls_options(t)?);
        }
        let mut clients = Vec::with_capacity(s.etcd.len());
        for e in &s.etcd {
            clients.push(etcd_client::Client::connect([e], Some(opts.clone())).await?);
        }
        Ok(Fleet {
            clients: Arc::new(clients),
            preferred: Arc::new(AtomicUsize::new(0)),
            prefix: s.prefix.clone(),
            node: s.node.clone(),
        })
    }

    /// Runs `op` on the preferred member's client; on an error that shows the request
    /// never reached etcd (see [`never_sent`]), on the next member's, each at most once.
    pub(crate) async fn call<T, F, Fut>(&self, op: F) -> Result<T, etcd_client::Error>
    where
        F: Fn(etcd_client::Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.clients.len();
        let first = self.preferred.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..n {
            let at = (first + i) % n;
            let Some(c) = self.clients.get(at) else {
                continue;
            };
            match op(c.clone()).await {
                Ok(v) => {
                    self.preferred.store(at, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) if never_sent(&e) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            etcd_client::Error::InvalidArgs("no etcd endpoint configured".into())
        }))
    }

    /// [`Self::call`] for a request that may be repeated without harm (a read, a claim, a
    /// lease grant): one that failed for want of a leader or an answer is retried, with a
    /// growing pause, until [`RETRY_BUDGET`] is spent. Never for a record write: its repeat
    /// after an unanswered first try is left to the caller (it would fail its version
    /// compare anyway).
    pub(crate) async fn call_idempotent<T, F, Fut>(&self, op: F) -> Result<T, etcd_client::Error>
    where
        F: Fn(etcd_client::Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + RETRY_BUDGET;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.call(&op).await {
                Err(e) if transient(&e) && tokio::time::Instant::now() + pause < deadline => {
                    tracing::debug!(error = %e, "etcd not answering now; asking again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                r => return r,
            }
        }
    }

    /// This host's node name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The key whose holder owns `cert`.
    pub fn owner_key(&self, cert: &str) -> String {
        format!("{}/owner/{cert}", self.prefix)
    }

    /// The key that says `node` is live (bound to its lease).
    pub fn node_key(&self, node: &str) -> String {
        format!("{}/nodes/{node}", self.prefix)
    }

    /// The key holding what `node` orders (`confighash`), bound to its lease.
    pub fn config_key(&self, node: &str) -> String {
        format!("{}/config/{node}", self.prefix)
    }

    /// The prefix of every live node's key.
    pub fn nodes_prefix(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }

    /// The key of `cert`'s record.
    pub fn record_key(&self, cert: &str) -> String {
        format!("{}/records/{cert}", self.prefix)
    }

    /// The directory `<prefix>/<kind>/` (with its trailing slash: a prefix read of it holds
    /// nothing of a sibling named `<kind>x`).
    pub fn dir(&self, kind: &str) -> String {
        format!("{}/{kind}/", self.prefix)
    }
}

/// The live nodes' names, sorted: those whose `<prefix>/nodes/<node>` key exists (each is
/// bound to its node's lease, so a node that died or left drops out when its lease ends).
pub async fn live_nodes(fleet: &Fleet) -> Result<Vec<String>, FleetError> {
    let prefix = fleet.nodes_prefix();
    let r = fleet
        .call_idempotent(|mut c| {
            let prefix = prefix.clone();
            async move {
                c.get(
                    prefix,
                    Some(
                        etcd_client::GetOptions::new()
                            .with_prefix()
                            .with_keys_only(),
                    ),
                )
                .await
            }
        })
        .await?;
    let mut nodes: Vec<String> = r
        .kvs()
        .iter()
        .filter_map(|kv| {
            let k = String::from_utf8_lossy(kv.key()).into_owned();
            k.strip_prefix(&prefix).map(str::to_string)
        })
        .collect();
    nodes.sort();
    Ok(nodes)
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("prefix", &self.prefix)
            .field("node", &self.node)
            .finish()
    }
}

/// The CA that signs etcd's certificates and this host's client certificate, from `t`'s
/// files. The client key is a secret: it is read under the rule for one (regular file of
/// a trusted owner, mode 0600, trusted path).
fn tls_options(t: &FleetTls) -> Result<etcd_client::TlsOptions, FleetError> {
    let err = |path: &Path, reason: String| FleetError::Tls {
        path: path.to_path_buf(),
        reason,
    };
    let ca = std::fs::read(&t.ca).map_err(|e| err(&t.ca, format!("cannot read: {e}")))?;
    let mut o =
        etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(ca));
    if let Some((cert, key)) = &t.client {
        let c = std::fs::read(cert).map_err(|e| err(cert, format!("cannot read: {e}")))?;
        let k =
            cas_api::credentials::read_private_file(key).map_err(|e| err(key, e.to_string()))?;
        o = o.identity(etcd_client::Identity::from_pem(c, k));
    }
    Ok(o)
}

/// Whether `e` says "not now" (no leader, no answer in time, unreachable, the connection
/// broke under the request because the member died) rather than "no".
fn transient(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            matches!(
                s.code() as i32,
                GRPC_CANCELLED | GRPC_DEADLINE_EXCEEDED | GRPC_UNAVAILABLE
            ) || io_kind(s).is_some_and(|k| {
                matches!(
                    k,
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                )
            })
        }
        e => never_sent(e),
    }
}

/// The kind of the I/O error under a gRPC status, if one caused it.
fn io_kind(status: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut src = status.source();
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        src = s.source();
    }
    None
}

/// Whether `e` shows that the request never reached etcd, so that another member may be
/// asked without risk of doing it twice: the connection was refused, or the member has no
/// leader (etcd refuses such a request before proposing it; `with_require_leader`).
fn never_sent(e: &etcd_client::Error) -> bool {
    let etcd_client::Error::GRpcStatus(status) = e else {
        return matches!(e, etcd_client::Error::TransportError(_));
    };
    if status.message().contains("no leader") {
        return true;
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
                    | std::io::ErrorKind::AddrNotAvailable
            );
        }
        src = s.source();
    }
    false
}
