//! The connection to the fleet's etcd cluster (one client per member, TLS, etcd's user and
//! password), where each key lives under the prefix, the fleet's error type, and reads of a
//! whole directory in pages.
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cas_api::secret::Secret;

use crate::config::{FleetSettings, FleetTls};
use crate::store::StoreError;

use super::password::PasswordError;
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
    #[error("[fleet] {0}")]
    Password(#[from] PasswordError),
    /// etcd refused to log this user in (wrong password, no such user, authentication not
    /// enabled in etcd). `reason` is etcd's; the password is never in it.
    #[error("etcd refused to log in user {user:?}: {reason}")]
    Login { user: String, reason: String },
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
    login: Option<Arc<Login>>,
}

/// etcd's user and password (`[fleet] user`). Each member's client logs in before its first
/// request rather than when it is set up, as etcd-client's `with_user` would: etcd may be away
/// at start. etcd forgets its tokens when it restarts or after `--auth-token-ttl` unused; the
/// client then logs in again by itself (`with_auto_token_refresh`).
struct Login {
    user: String,
    password: Secret,
    /// Per member: logged in.
    done: Vec<tokio::sync::OnceCell<()>>,
}

impl Fleet {
    /// Sets up a client for every member of `s` (connections are made at the first request).
    /// With `[fleet] user`, the password is read now and each member that answers is asked
    /// to log the user in: a refusal is an error now; members away are logged in later.
    pub async fn connect(s: &FleetSettings) -> Result<Fleet, FleetError> {
        let mut opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            // A member cut off from the others answers nothing rather than stale data.
            .with_require_leader(true);
        if let Some(t) = &s.tls {
            opts = opts.with_tls(tls_options(t)?);
        }
        let login = match &s.auth {
            Some(a) => {
                opts = opts.with_auto_token_refresh(true);
                Some(Arc::new(Login {
                    user: a.user.clone(),
                    password: super::password::load(&a.password, |v| std::env::var(v).ok())?,
                    done: s
                        .etcd
                        .iter()
                        .map(|_| tokio::sync::OnceCell::new())
                        .collect(),
                }))
            }
            None => None,
        };
        let mut clients = Vec::with_capacity(s.etcd.len());
        for e in &s.etcd {
            clients.push(etcd_client::Client::connect([e], Some(opts.clone())).await?);
        }
        let fleet = Fleet {
            clients: Arc::new(clients),
            preferred: Arc::new(AtomicUsize::new(0)),
            prefix: s.prefix.clone(),
            node: s.node.clone(),
            login,
        };
        fleet.first_login().await?;
        Ok(fleet)
    }

    /// Logs in at every member at once, for [`CONNECT_TIMEOUT`] at most: a wrong password is
    /// said when the daemon starts, not at its first claim. A member that does not answer
    /// (or has no leader) is left for [`Self::log_in`] at its first request.
    async fn first_login(&self) -> Result<(), FleetError> {
        let Some(l) = &self.login else {
            return Ok(());
        };
        let mut all = tokio::task::JoinSet::new();
        for at in 0..self.clients.len() {
            let f = self.clone();
            all.spawn(async move { f.log_in(at).await });
        }
        let refused = tokio::time::timeout(CONNECT_TIMEOUT, async {
            while let Some(r) = all.join_next().await {
                if let Ok(Err(e)) = r {
                    if !transient(&e) {
                        return Some(e);
                    }
                }
            }
            None
        })
        .await;
        match refused {
            Ok(Some(e)) => Err(FleetError::Login {
                user: l.user.clone(),
                reason: etcd_reason(&e),
            }),
            _ => Ok(()),
        }
    }

    /// Logs member `at`'s client in, once (a no-op without `[fleet] user`); etcd's error
    /// as it came (see [`Self::call`]).
    async fn log_in(&self, at: usize) -> Result<(), etcd_client::Error> {
        let (Some(l), Some(c)) = (&self.login, self.clients.get(at)) else {
            return Ok(());
        };
        let Some(done) = l.done.get(at) else {
            return Ok(());
        };
        done.get_or_try_init(|| async {
            // The client's sub-clients share its credentials and token: setting them on a
            // clone sets them for every later request.
            let mut c = c.clone();
            c.update_user(Some((l.user.clone(), l.password.expose().to_string())))
                .await
        })
        .await
        .map(|_| ())
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
            match self.log_in(at).await {
                Err(e) if never_sent(&e) => {
                    last = Some(e);
                    continue;
                }
                Err(e) if transient(&e) => return Err(e),
                // A refusal is final: nothing retries it, and it names the user.
                Err(e) => {
                    let user = self.login.as_ref().map(|l| l.user.as_str());
                    return Err(etcd_client::Error::InvalidArgs(format!(
                        "etcd refused to log in user {:?}: {}",
                        user.unwrap_or_default(),
                        etcd_reason(&e)
                    )));
                }
                Ok(()) => {}
            }
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

    /// The key holding the summary of what `node` orders (`confighash::Summary`), bound to
    /// its lease.
    pub fn config_key(&self, node: &str) -> String {
        format!("{}/config/{node}", self.prefix)
    }

    /// The directory of the per-certificate digests `node` published for the list whose
    /// hash is `hash` (`confighash::chunks`, one key per chunk, bound to its lease).
    pub fn config_digests_dir(&self, node: &str, hash: &str) -> String {
        format!("{}/config_digests/{node}/{hash}/", self.prefix)
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

/// Everything under `dir` (keys and values, in key order) at one revision, read in pages
/// of at most `page` keys: one range may not exceed etcd-client's 4 MiB decode limit, nor
/// hold a whole directory in one message. The first page fixes the revision (or `at`, when
/// given); later pages start after the last key read (`last + "\0"`) at that revision, so
/// the pages are one consistent snapshot. A revision compacted between pages is an error
/// (the caller reads again). Returns the revision and the key-values.
pub(crate) async fn read_range(
    fleet: &Fleet,
    dir: &str,
    page: i64,
    at: Option<i64>,
) -> Result<(i64, Vec<etcd_client::KeyValue>), FleetError> {
    let end = prefix_end(dir.as_bytes());
    let mut from = dir.as_bytes().to_vec();
    let mut rev = at.unwrap_or(0);
    let mut all = Vec::new();
    loop {
        let r = fleet
            .call_idempotent(|mut c| {
                let (from, end) = (from.clone(), end.clone());
                async move {
                    c.get(
                        from,
                        Some(
                            etcd_client::GetOptions::new()
                                .with_range(end)
                                .with_limit(page)
                                .with_revision(rev),
                        ),
                    )
                    .await
                }
            })
            .await?;
        if rev == 0 {
            rev = r.header().map_or(0, |h| h.revision());
        }
        let more = r.more();
        let Some(last) = r.kvs().last().map(|kv| kv.key().to_vec()) else {
            return Ok((rev, all));
        };
        all.extend(r.kvs().iter().cloned());
        if !more {
            return Ok((rev, all));
        }
        from = last;
        from.push(0);
    }
}

/// The end of the range of keys starting with `prefix` (etcd's rule: the prefix with its
/// last byte below 0xff incremented, trailing 0xff bytes dropped; `\0` for "to the end").
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(b) = end.pop() {
        if b < 0xff {
            end.push(b + 1);
            return end;
        }
    }
    vec![0]
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
        // Never the password.
        f.debug_struct("Fleet")
            .field("prefix", &self.prefix)
            .field("node", &self.node)
            .field("user", &self.login.as_ref().map(|l| &l.user))
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

/// etcd's own words for an error (a gRPC status's message), else the error as displayed.
fn etcd_reason(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.message().to_string(),
        e => e.to_string(),
    }
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

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn a_prefix_range_ends_after_its_last_key() {
        assert_eq!(prefix_end(b"/p/sets/"), b"/p/sets0");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
        // A page continues after the last key read ("key\0" is the next possible key), and
        // stays inside the directory.
        assert!(b"/p/sets/www\0".as_slice() < prefix_end(b"/p/sets/").as_slice());
    }
}
