//! The event loop: wakes certificates when due (cron ticks from `check_schedule`, a timer for
//! the earliest `next_due`, start, reload, `renew`), runs their steps with bounded concurrency,
//! runs reload hooks once per batch of deployments, reloads the config on SIGHUP, answers the
//! control socket, and drains on shutdown. [`run`] takes the shutdown signal as a future so
//! tests drive it without signals (the mini-redis shape).
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::config::{Certificate, Config};
use crate::control::{self, Incoming};
use crate::lifecycle::real::Validators;
use crate::lifecycle::{self, quota::QuotaCache, Dropped};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::{CertRecord, Store, StoreError};
use cas_api::Client;

mod cas_pass;
mod expiry;
#[cfg(feature = "fleet")]
mod fleet;
mod hooks;
mod index;
mod reload;
mod requests;
mod status;
mod work;

use hooks::hook_backoff;
use index::{Entry, Index};
use status::SNAPSHOT_EVERY;
use work::Job;

/// How long shutdown waits for steps in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(8);
/// Upper bound on steps one certificate takes in one wake-up (a guard against loops).
const MAX_STEPS_PER_WAKE: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error("scheduler: {0}")]
    Scheduler(String),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error(transparent)]
    Notify(#[from] crate::alert::AlertError),
    #[error("fleet: {0}")]
    Fleet(String),
}

/// What the daemon reports to an embedding program (the demo, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonEvent {
    /// A certificate was deployed; `renewal` when it replaced an earlier one.
    Deployed { name: String, renewal: bool },
    /// A reload hook ran successfully.
    HookOk { names: Vec<String> },
}

/// Shared services handed to [`run`].
pub struct Services {
    pub client: Client,
    pub metrics: Metrics,
    pub notifier: Notifier,
    /// Deployments and hook runs are reported here when set.
    pub events: Option<mpsc::UnboundedSender<DaemonEvent>>,
    /// Reload the config on SIGHUP (off in tests that run several daemons in one process).
    pub handle_sighup: bool,
}

enum TaskResult {
    Step {
        name: String,
        deployed: Vec<bool>,
        error: Option<StoreError>,
        /// The step was dropped by the fleet store (not ours, or not now).
        dropped: Option<Dropped>,
    },
    Hook {
        names: Vec<String>,
        ok: bool,
    },
    CasPass(Result<cas_pass::Report, String>),
}

struct State {
    config: Arc<Config>,
    store: Store,
    /// One entry per configured certificate (see [`Entry`]).
    index: Index,
    /// Position of each certificate in `config.certificates` (a linear search per step was
    /// O(N) per step at thousands of certificates).
    cert_pos: HashMap<String, usize>,
    last_snapshot: Option<std::time::Instant>,
    /// Something changed since status.json was last written.
    snapshot_dirty: bool,
    services: Services,
    running: HashSet<String>,
    /// Reload hooks running (one per distinct hook of a batch); no new batch until all ended.
    hooks_running: usize,
    /// In memory on purpose: after a restart, pending hooks run at once.
    hook_retry: HashMap<String, (u32, DateTime<Utc>)>,
    sem: Arc<Semaphore>,
    stopping: Arc<AtomicBool>,
    tasks: JoinSet<TaskResult>,
    /// Sends the `[notify]` events; reconfigured on reload.
    alerts: crate::alert::Alerts,
    /// The rebuild's CAS pass: who waits for it.
    cas: cas_pass::Pass,
    /// What is known of each product's quota, shared by every certificate's steps.
    quota: Arc<QuotaCache>,
    /// Fleet mode: steps run only for owned certificates, over the fleet's records.
    #[cfg(feature = "fleet")]
    fleet: Option<Arc<fleet::FleetMode>>,
    /// The last `cert.expiring` of each certificate. In memory: after a restart a certificate
    /// still expiring is announced again at once.
    warned: HashMap<String, lifecycle::expiry::Warned>,
}

/// Runs the daemon until `shutdown` resolves, then drains (steps in flight finish, at most
/// [`DRAIN_TIMEOUT`]) and flushes.
pub async fn run(
    config: Config,
    services: Services,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    crate::listen::raise_fd_limit();
    let alerts = crate::alert::Alerts::start(
        config.notify.as_ref(),
        crate::alert::global(),
        services.metrics.clone(),
    )?;
    // Before anything is ordered: the store checked against what is deployed, rebuilt.
    let (store, recovery) = crate::rebuild::open(&config)?;
    let (listener, socket_file) = control::bind(&config.control_socket)?;
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Incoming>(16);
    let ctl_task = tokio::spawn(control::serve(listener, ctl_tx));

    let (tick_tx, mut tick_rx) = mpsc::channel::<()>(1);
    #[cfg(feature = "fleet")]
    let fleet_mode = match &config.fleet {
        Some(s) => Some(fleet::start(s, &config, store.clone(), tick_tx.clone()).await?),
        None => None,
    };
    #[cfg(feature = "fleet")]
    let fleet_mode_on = fleet_mode.is_some();
    #[cfg(not(feature = "fleet"))]
    let fleet_mode_on = false;
    let mut sched = start_cron(&config.check_schedule, tick_tx).await?;

    let (metrics_stop_tx, metrics_stop_rx) = tokio::sync::oneshot::channel::<()>();
    if let Some(m) = &config.metrics {
        let metrics = services.metrics.clone();
        let listen = m.listen;
        tokio::spawn(async move {
            let stop = async {
                let _ = metrics_stop_rx.await;
            };
            if let Err(e) = crate::metrics::serve(listen, metrics, stop).await {
                error!(error = %e, "metrics endpoint failed");
            }
        });
    }

    let mut sighup = if services.handle_sighup {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
    } else {
        None
    };
    let watchdog = services.notifier.watchdog_interval();

    let mut st = State {
        sem: Arc::new(Semaphore::new(config.concurrency.max(1))),
        config: Arc::new(config),
        store,
        index: Index::default(),
        cert_pos: HashMap::new(),
        last_snapshot: None,
        snapshot_dirty: true,
        services,
        running: HashSet::new(),
        hooks_running: 0,
        hook_retry: HashMap::new(),
        stopping: Arc::new(AtomicBool::new(false)),
        tasks: JoinSet::new(),
        alerts,
        cas: cas_pass::Pass::at_start(recovery.cas_pass, fleet_mode_on),
        quota: Arc::new(QuotaCache::new()),
        #[cfg(feature = "fleet")]
        fleet: fleet_mode,
        warned: HashMap::new(),
    };
    st.cert_pos = positions(&st.config);
    st.forget_unconfigured().await;
    // One read of each record at start: the index, and the live files checked (restored).
    st.refresh_all_and(true);
    st.expiry_sweep();
    st.services.notifier.ready();
    info!(
        certificates = st.config.certificates.len(),
        "cas-certd running"
    );

    tokio::pin!(shutdown);
    // An interval, not a per-iteration sleep: a busy loop must not starve the watchdog.
    let mut wd_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let mut expiry_tick = tokio::time::interval(expiry::SWEEP_EVERY);
    // The first tick is now: the sweep at start is done.
    expiry_tick.tick().await;
    let mut need_check = true;
    loop {
        if need_check {
            st.maybe_cas_pass();
            st.start_due();
            st.maybe_run_hooks();
            st.maybe_snapshot();
            need_check = false;
        }
        let wake = st.next_wake();
        let sleep = tokio::time::sleep(wake);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick_rx.recv() => need_check = true,
            Some(()) = async { match sighup.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                st.reload().await;
                need_check = true;
            }
            Some(inc) = ctl_rx.recv() => {
                if inc.client_gone() {
                    info!(event = "control.dropped", request = ?inc.request,
                        "control request dropped: its client went away before it was acted on");
                } else {
                    let resp = st.control(inc.request).await;
                    st.answer(resp, inc.reply);
                }
                need_check = true;
            }
            Some(res) = st.tasks.join_next(), if !st.tasks.is_empty() => {
                if let Ok(r) = res { st.finished(r).await; }
                need_check = true;
            }
            _ = sleep => need_check = true,
            _ = expiry_tick.tick() => st.expiry_sweep(),
            _ = wd_tick.tick(), if watchdog.is_some() => st.services.notifier.watchdog(),
        }
    }

    info!("stopping: finishing steps in flight");
    st.services.notifier.stopping();
    st.stopping.store(true, Ordering::SeqCst);
    // Every result is recorded as in the loop: a reload hook that finishes while we drain has
    // run, and must not run again at the next start.
    let drain = async {
        while let Some(r) = st.tasks.join_next().await {
            if let Ok(r) = r {
                st.finished(r).await;
            }
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        warn!("steps still running after the drain timeout; abandoning them (state is persisted)");
        st.tasks.abort_all();
    }
    st.refresh_all();
    st.snapshot();
    st.store.flush().await?;
    ctl_task.abort();
    socket_file.remove();
    let _ = sched.shutdown().await;
    let _ = metrics_stop_tx.send(());
    info!("stopped");
    st.alerts.shutdown(crate::alert::SHUTDOWN_WAIT).await;
    Ok(())
}

async fn start_cron(
    expr: &str,
    tx: mpsc::Sender<()>,
) -> Result<tokio_cron_scheduler::JobScheduler, DaemonError> {
    use tokio_cron_scheduler::{Job, JobScheduler};
    let err = |e: tokio_cron_scheduler::JobSchedulerError| DaemonError::Scheduler(e.to_string());
    let sched = JobScheduler::new().await.map_err(err)?;
    // The job only pokes the loop; next-due times live in the store, so a missed tick only
    // delays work (tokio-cron-scheduler issue #113).
    let job = Job::new_async(expr, move |_id, _lock| {
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.try_send(());
        })
    })
    .map_err(err)?;
    sched.add(job).await.map_err(err)?;
    sched.start().await.map_err(err)?;
    Ok(sched)
}

impl State {
    fn cert(&self, name: &str) -> Option<&Certificate> {
        let quick = self
            .cert_pos
            .get(name)
            .and_then(|&i| self.config.certificates.get(i))
            .filter(|c| c.name == name);
        quick.or_else(|| self.config.certificates.iter().find(|c| c.name == name))
    }

    fn record(&self, cert: &Certificate) -> CertRecord {
        match self.store.get(&cert.name) {
            Ok(Some(r)) => r,
            Ok(None) => CertRecord::new(&cert.name, cert.domains.clone()),
            Err(e) => {
                error!(cert = %cert.name, error = %e, "cannot read the record; starting it afresh");
                CertRecord::new(&cert.name, cert.domains.clone())
            }
        }
    }

    /// Re-reads one record into the index (after the loop learns it changed).
    fn refresh(&mut self, name: &str) {
        let Some(c) = self.cert(name) else {
            self.index.remove(name);
            return;
        };
        let e = self.entry(&self.record(c));
        self.index.insert(name, e);
    }

    /// Rebuilds the index from the store (start, reload).
    fn refresh_all(&mut self) {
        self.refresh_all_and(false);
    }

    /// Rebuilds the index; with `restore`, also puts back deployed files missing on disk.
    fn refresh_all_and(&mut self, restore: bool) {
        let mut index = Index::with_capacity(self.config.certificates.len());
        for c in &self.config.certificates {
            let r = self.record(c);
            if restore {
                lifecycle::restore_live(c, &self.config.output_dir, &r);
            }
            index.insert(&c.name, self.entry(&r));
        }
        self.index = index;
        self.cert_pos = positions(&self.config);
    }

    /// Spawns a task for due certificates not already running, at most `concurrency` at once:
    /// a task per due certificate up front (10 000 in a renewal storm) would hold every task's
    /// memory while it waits for its turn.
    fn start_due(&mut self) {
        let now = Utc::now();
        let limit = self.config.concurrency.max(1);
        let mut due = Vec::new();
        for rest in [false, true] {
            for (_, name) in self.index.class(rest, now) {
                if self.running.len() + due.len() >= limit {
                    break;
                }
                if !self.running.contains(name)
                    && !self.cas.waiting.contains(name)
                    && self.may_step(name)
                {
                    due.push(name.clone());
                }
            }
        }
        for name in due {
            let Some(cert) = self.cert(&name).cloned() else {
                continue;
            };
            self.running.insert(cert.name.clone());
            let client = self.services.client.clone();
            let store = self.store.clone();
            let metrics = self.services.metrics.clone();
            let cfg = self.config.clone();
            let sem = self.sem.clone();
            let stopping = self.stopping.clone();
            let quota = self.quota.clone();
            #[cfg(feature = "fleet")]
            let fleet = self.fleet.as_ref().map(|f| f.records.clone());
            self.tasks.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let job = Job {
                    cert,
                    cfg,
                    client: client.clone(),
                    metrics,
                    quota,
                    stopping,
                };
                let local = Validators { client: &client };
                #[cfg(feature = "fleet")]
                if let Some(f) = fleet {
                    let proofs = crate::fleet::proofs_port::FleetProofs { local, records: &f };
                    return job.work(&*f, &proofs).await;
                }
                job.work(&store, &local).await
            });
        }
    }

    fn next_wake(&self) -> Duration {
        let now = Utc::now();
        let mut earliest: Option<DateTime<Utc>> = None;
        // Running certificates stay in the queue (at most `concurrency` of them): skip them.
        // With every slot busy, the next finished step wakes the loop anyway.
        if self.running.len() < self.config.concurrency.max(1) {
            for rest in [false, true] {
                let first = self
                    .index
                    .class(rest, DateTime::<Utc>::MAX_UTC)
                    .find(|(_, n)| !self.running.contains(*n) && self.may_step(n));
                if let Some((at, _)) = first {
                    let t = at.max(now);
                    earliest = Some(earliest.map_or(t, |e| e.min(t)));
                }
            }
        }
        if self.snapshot_pending() {
            if let Some(t) = self.last_snapshot.and_then(|l| {
                chrono::TimeDelta::from_std(SNAPSHOT_EVERY.saturating_sub(l.elapsed())).ok()
            }) {
                let t = now + t;
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
        }
        if let Some(at) = self.cas.wake_at() {
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
        if self.hooks_running == 0 {
            for (_, at) in self.hook_retry.values() {
                earliest = Some(earliest.map_or(*at, |e| e.min(*at)));
            }
        }
        let d = earliest
            .map(|t| (t - now).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(3600));
        // Never spin: at least 200 ms; never sleep past an hour without a look.
        d.clamp(Duration::from_millis(200), Duration::from_secs(3600))
    }

    /// Whether `name`'s steps may run on this host now (fleet mode: owned, not waiting).
    fn may_step(&self, _name: &str) -> bool {
        #[cfg(feature = "fleet")]
        if let Some(f) = &self.fleet {
            return f.may_step(_name);
        }
        true
    }

    /// The index entry of `r`; a certificate waiting for the CAS pass is never due.
    fn entry(&self, r: &CertRecord) -> Entry {
        let mut e = Entry::of(r);
        // Fleet mode: the owner's next step orders the new names (`work.rs`); due now.
        #[cfg(feature = "fleet")]
        if self.fleet.is_some() && self.cert(&r.name).is_some_and(|c| c.domains != r.domains) {
            e.next_due = Utc::now();
        }
        if self.cas.waiting.contains(&r.name) {
            e.next_due = DateTime::<Utc>::MAX_UTC;
            e.force_renew = false;
            self.cas.row(&mut e.row);
        }
        self.fleet_row(&mut e.row);
        e
    }

    async fn finished(&mut self, r: TaskResult) {
        match r {
            TaskResult::CasPass(Ok(report)) => {
                self.cas.done(&report.names, &self.config.state_dir);
                #[cfg(feature = "fleet")]
                if let Some(f) = &self.fleet {
                    f.records.pass_done(&report.names);
                }
                for n in &report.names {
                    self.refresh(n);
                }
                self.snapshot_dirty = true;
            }
            TaskResult::CasPass(Err(e)) => {
                self.cas.failed(e, Utc::now());
                let names: Vec<String> = self.cas.waiting.iter().cloned().collect();
                for n in &names {
                    self.refresh(n);
                }
                self.snapshot_dirty = true;
            }
            TaskResult::Step {
                name,
                deployed,
                error,
                dropped,
            } => {
                self.running.remove(&name);
                #[cfg(feature = "fleet")]
                if let (Some(f), Some(why)) = (&self.fleet, dropped) {
                    f.dropped(&name, why);
                }
                #[cfg(not(feature = "fleet"))]
                let _ = dropped;
                self.snapshot_dirty = true;
                if let Ok(Some(r)) = self.store.get(&name) {
                    self.services.metrics.set_certificate(
                        &name,
                        r.deployed.as_ref().map(|d| d.info.not_after.timestamp()),
                        r.phase.name(),
                        r.last_success.map(|t| t.timestamp()),
                    );
                    if self.cert(&name).is_some() {
                        let e = self.entry(&r);
                        self.index.insert(&name, e);
                        self.expiry_check(&name, Utc::now());
                    }
                }
                if let Some(e) = error {
                    error!(cert = %name, error = %e, "state store failure");
                }
                if !deployed.is_empty() {
                    crate::rebuild::clear_note(&self.config.state_dir);
                }
                for renewal in deployed {
                    if let Some(tx) = &self.services.events {
                        let _ = tx.send(DaemonEvent::Deployed {
                            name: name.clone(),
                            renewal,
                        });
                    }
                }
            }
            TaskResult::Hook { names, ok } => {
                self.hooks_running = self.hooks_running.saturating_sub(1);
                let now = Utc::now();
                for n in &names {
                    if let Some(c) = self.cert(n).cloned() {
                        let mut rec = self.record(&c);
                        if ok {
                            rec.hook_pending = false;
                            rec.hook_attempt = 0;
                            self.hook_retry.remove(n);
                        } else {
                            rec.hook_attempt += 1;
                            let d = hook_backoff(rec.hook_attempt);
                            self.hook_retry
                                .insert(n.clone(), (rec.hook_attempt, now + schedule_dur(d)));
                        }
                        if let Err(e) = self.store.put_durable(&rec).await {
                            error!(cert = %n, error = %e, "state store failure");
                        }
                        if ok {
                            crate::failpoint::hit("after_hook");
                        }
                        self.refresh(n);
                    }
                }
                if ok {
                    if let Some(tx) = &self.services.events {
                        let _ = tx.send(DaemonEvent::HookOk { names });
                    }
                }
            }
        }
    }
}

fn positions(config: &Config) -> HashMap<String, usize> {
    config
        .certificates
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), i))
        .collect()
}

fn schedule_dur(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX)
}
