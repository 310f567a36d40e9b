//! # cas-sim
//!
//! A local stand-in for Alibaba Cloud's SSL Certificates Service (CAS, API 2020-04-07) and
//! Alidns (2015-01-09) on one loopback HTTP port, for trying a client or a configuration without
//! spending quota. It answers the way Alibaba does (status strings, error codes, JSON and
//! `Format=XML` shapes, checked against the official Python SDK models), and it is real where it
//! matters:
//!
//! - **Signatures:** v1 (HMAC-SHA1) and V3 (ACS3-HMAC-SHA256) are verified with `cas-api`'s
//!   signer, the 15-minute timestamp window and nonce reuse included.
//! - **Orders:** `domain_verify` → `process` → `certificate` (or `verify_fail`), cancel, delete,
//!   revoke and renew, with per-product quota and refunds; the books survive a restart.
//! - **Validation:** FILE challenges are fetched over HTTP (`--resolve` maps names), DNS
//!   challenges need a TXT record added through the simulated Alidns in one of its zones;
//!   `--dns-listen` serves those records over real DNS (`nameserver`) for clients that look
//!   the proof up themselves.
//! - **Certificates:** a local test CA issues real X.509 leaves; its root is
//!   `DATA_DIR/ca/root.pem`.
//! - **Faults:** seeded 5xx answers, throttling, latency, resets, garbage, lost answers, a
//!   shifted clock, slow actions held before they run ([`faults`]), and a CA gone bad
//!   ([`hostile`]).
//!
//! Run it as a program with `cas-sim --data-dir DIR` (the same flags as `cas-certd simulate`,
//! see [`cli`]), or start it in-process:
//!
//! ```no_run
//! use cas_api::Secret;
//!
//! # async fn run() -> Result<(), cas_sim::SimError> {
//! let sim = cas_sim::start(cas_sim::SimOptions {
//!     data_dir: "/tmp/sim".into(),
//!     credentials: vec![("LTAI5tExample".into(), Secret::new("local-secret"))],
//!     zones: vec!["example.com".into()],
//!     ..Default::default()
//! })
//! .await?;
//! // Point a client (cas-api, an official SDK) at http://{sim.addr} for both CAS and Alidns.
//! println!("listening on http://{}, root CA {}", sim.addr, sim.root_pem.display());
//! sim.shutdown().await; // writes the books
//! # Ok(())
//! # }
//! ```
//!
//! # Modules
//! - [`cli`]: the flags and the runner shared by `cas-sim` and `cas-certd simulate`.
//! - [`faults`]: seeded fault injection; [`hostile`]: answers from a CA gone bad.
//! - Inside: `server` (HTTP, routing, the `/_sim/ledger` endpoint), `auth` (signatures),
//!   `cas` and `dns` (the actions), `list` (ListUserCertificateOrder), `state` (the books),
//!   `ca` (the test CA), `validate` (FILE/DNS proofs), `reject` (error answers), `xml`
//!   (`Format=XML`), `nameserver` (the zones over DNS).
#![warn(unreachable_pub)]

mod auth;
mod ca;
mod cas;
pub mod cli;
mod dns;
pub mod faults;
pub mod hostile;
mod list;
mod nameserver;
mod reject;
mod server;
mod state;
mod validate;
mod xml;

pub use ca::CaError;
pub use state::StateError;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cas_api::model::FREE_PRODUCTS;

/// Quota of a bought product whose quota nobody configured.
pub const DEFAULT_QUOTA: i64 = 1000;
/// Certificate lifetime when none is configured.
pub const DEFAULT_CERT_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The data directory or the books in it.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// The test CA's key or root.
    #[error(transparent)]
    Ca(#[from] ca::CaError),
    #[error("simulator: cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Everything the simulator can be told ([`cli::SimulateArgs`] maps the flags onto it).
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    pub listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    /// (AccessKeyId, secret) pairs accepted.
    pub credentials: Vec<(String, cas_api::Secret)>,
    /// (domain pattern, address) — `*.example.com` allowed. Several entries for one pattern
    /// are a load balancer: each FILE fetch goes to one of them at random (seeded).
    pub resolve: Vec<(String, SocketAddr)>,
    pub zones: Vec<String>,
    pub admin: bool,
    /// Domains (or `*.` patterns) whose validation always fails.
    pub reject: Vec<String>,
    /// Dwell between the proof being seen and CA review (`process`).
    pub validation_delay: Duration,
    /// Dwell in `process` before the certificate is issued.
    pub review_delay: Duration,
    /// Leaf lifetime; `None` is [`DEFAULT_CERT_LIFETIME`].
    pub cert_lifetime: Option<Duration>,
    /// Lifetime of the first certificate issued for a given domain set.
    pub first_cert_lifetime: Option<Duration>,
    /// Products bought and their TotalCount. The free products
    /// ([`cas_api::model::FREE_PRODUCTS`], whose quota Alibaba grants every account) are held
    /// with [`DEFAULT_QUOTA`] unless named here; any other product answers `NotFoundPackage`.
    pub quota: Vec<(String, i64)>,
    pub faults: faults::FaultOptions,
    /// The server clock runs this far ahead of the host's (behind when negative): requests
    /// signed with the host's time are then judged by the real timestamp check.
    pub clock_offset: chrono::TimeDelta,
    /// Answer every OrderId as a JSON string.
    pub string_order_ids: bool,
    /// Hostile answers for matching orders (see [`hostile`]).
    pub hostile: Vec<hostile::Rule>,
    /// Zero: the books are written after every change (a SIGKILL loses nothing). Otherwise
    /// at most this often and at shutdown: writing the whole file per call is O(N) per call,
    /// which a benchmark with thousands of orders cannot afford.
    pub persist_interval: Duration,
    /// Serve DNS (UDP and TCP) for the zones' records here ([`nameserver`]).
    pub dns_listen: Option<SocketAddr>,
}

impl SimOptions {
    /// The TotalCount of a product the account holds; `None` when it never bought it (or the
    /// code is unknown), which CAS answers with `NotFoundPackage`.
    pub fn total_quota(&self, product: &str) -> Option<i64> {
        self.quota
            .iter()
            .find(|(p, _)| p == product)
            .map(|(_, n)| *n)
            .or_else(|| FREE_PRODUCTS.contains(&product).then_some(DEFAULT_QUOTA))
    }
}

/// The simulator's shared state.
#[derive(Debug)]
pub(crate) struct Sim {
    pub opts: SimOptions,
    pub state: tokio::sync::Mutex<state::State>,
    pub state_path: PathBuf,
    pub verifier: std::sync::Mutex<auth::Verifier>,
    pub faults: std::sync::Mutex<faults::Faults>,
    pub ca: ca::Ca,
    /// Which host of a load-balanced name each FILE fetch goes to.
    pub balancer: validate::Balancer,
    /// Calls held by `action_delay` right now, per action (received, not yet answered):
    /// shown in the ledger, so a test can act while a call is in flight.
    pub held: std::sync::Mutex<std::collections::BTreeMap<String, u32>>,
}

impl Sim {
    /// Writes the books now, or marks them for the next periodic write (`persist_interval`).
    pub(crate) fn persist(&self, st: &state::State) -> Result<(), state::StateError> {
        if self.opts.persist_interval.is_zero() {
            st.save(&self.state_path)
        } else {
            st.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
    }

    /// Writes the books if a change is pending (periodic writer, shutdown).
    async fn write_if_dirty(&self) {
        let st = self.state.lock().await;
        if st.dirty.swap(false, std::sync::atomic::Ordering::Relaxed) {
            if let Err(e) = st.save(&self.state_path) {
                tracing::error!("simulator: {e}");
            }
        }
    }
}

/// A running simulator.
#[derive(Debug)]
pub struct SimHandle {
    /// Where it listens (with port 0 asked for, the port the system picked): the endpoint for
    /// both CAS and Alidns is `http://{addr}`.
    pub addr: SocketAddr,
    /// The test CA's root certificate, PEM, for `openssl verify` or curl.
    pub root_pem: PathBuf,
    /// Where the DNS server listens (`dns_listen`), if asked for.
    pub dns_addr: Option<SocketAddr>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SimHandle {
    /// Stops the server and waits for it to finish writing its books.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Waits until the server stops (it only stops on shutdown or a fatal accept error).
    pub async fn wait(mut self) {
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// Starts a simulator in this process.
pub async fn start(opts: SimOptions) -> Result<SimHandle, SimError> {
    std::fs::create_dir_all(&opts.data_dir).map_err(|source| {
        SimError::State(state::StateError::Io {
            path: opts.data_dir.clone(),
            source,
        })
    })?;
    let ca = ca::Ca::open(&opts.data_dir.join("ca"))?;
    let state_path = opts.data_dir.join("state.json");
    let st = state::State::load(&state_path)?;
    let addr = opts
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Listen { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| SimError::Listen { addr, source })?;
    let root_pem = ca.root_path.clone();
    let dns = match opts.dns_listen {
        Some(addr) => Some(
            nameserver::bind(addr)
                .await
                .map_err(|source| SimError::Listen { addr, source })?,
        ),
        None => None,
    };
    let dns_addr = dns.as_ref().and_then(|(udp, _)| udp.local_addr().ok());
    let sim = Arc::new(Sim {
        verifier: std::sync::Mutex::new(
            auth::Verifier::new(&opts.credentials).with_clock_offset(opts.clock_offset),
        ),
        faults: std::sync::Mutex::new(faults::Faults::new(opts.faults.clone())),
        balancer: validate::Balancer::new(opts.faults.seed),
        held: std::sync::Mutex::default(),
        opts,
        state: tokio::sync::Mutex::new(st),
        state_path,
        ca,
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    let ticker = tokio::spawn(tick(sim.clone()));
    let writer = (!sim.opts.persist_interval.is_zero()).then(|| {
        let sim = sim.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(sim.opts.persist_interval);
            loop {
                every.tick().await;
                sim.write_if_dirty().await;
            }
        })
    });
    let dns_task = dns.map(|(udp, tcp)| tokio::spawn(nameserver::serve(udp, tcp, sim.clone())));
    let task = tokio::spawn(async move {
        server::serve(listener, sim.clone(), rx).await;
        ticker.abort();
        if let Some(d) = dns_task {
            d.abort();
        }
        if let Some(w) = writer {
            w.abort();
        }
        sim.write_if_dirty().await;
    });
    Ok(SimHandle {
        addr: local,
        root_pem,
        dns_addr,
        shutdown: Some(tx),
        task: Some(task),
    })
}

/// Moves pending orders along once a second, so an order whose proof appeared is validated
/// and issued even when nobody asks (as the real CA does; a forgotten order still issues).
async fn tick(sim: Arc<Sim>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        let pending: Vec<u64> = {
            let st = sim.state.lock().await;
            st.orders
                .iter()
                .filter(|o| {
                    matches!(
                        o.state,
                        state::OrderState::DomainVerify | state::OrderState::Process
                    )
                })
                .map(|o| o.id)
                .collect()
        };
        for id in pending {
            // An order deleted meanwhile is simply skipped.
            let _ = cas::advance(&sim, id).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn start_in_process_and_shut_down() {
        let dir = tempfile::tempdir().unwrap();
        let h = start(SimOptions {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        })
        .await
        .unwrap();
        assert_ne!(h.addr.port(), 0);
        assert!(std::fs::read_to_string(&h.root_pem)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        let addr = h.addr;
        h.shutdown().await;
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "listener closed"
        );
    }
}
