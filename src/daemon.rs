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

use crate::cas::Client;
use crate::config::{self, Certificate, Config, Hook};
use crate::control::{self, Incoming, Request, Response};
use crate::lifecycle::real::{LocalKeys, OutputDir, SystemClock, Validators};
use crate::lifecycle::{self, exec::Exec, schedule, StepOutcome};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::{CertRecord, Phase, Snapshot, StatusRow, Store, StoreError};

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

/// What the loop answers a control request with.
enum Answer {
    Now(Response),
    /// A renewal that is not due: the answer says what it costs (the remaining count is
    /// fetched first).
    Confirm {
        name: String,
        product: String,
        due_at: DateTime<Utc>,
    },
}

enum TaskResult {
    Step {
        name: String,
        deployed: Vec<bool>,
        error: Option<StoreError>,
    },
    Hook {
        names: Vec<String>,
        ok: bool,
    },
}

/// What the loop needs of one record, kept in memory: reading and decoding every record on
/// every wake-up (each finished step) made the loop O(N²) at thousands of certificates.
/// Refreshed from the store whenever the loop learns that a record changed.
struct Entry {
    next_due: DateTime<Utc>,
    /// Idle, Deployed or Failed: nothing in flight, so a forced renewal may skip the wait.
    resting: bool,
    force_renew: bool,
    hook_pending: bool,
    row: StatusRow,
}

impl Entry {
    fn of(r: &CertRecord) -> Entry {
        Entry {
            next_due: r.next_due,
            resting: r.phase.is_resting(),
            force_renew: r.force_renew,
            hook_pending: r.hook_pending,
            row: StatusRow::from_record(r),
        }
    }

    /// Where this certificate sits in the queue: orders in flight first, then those at rest
    /// (new orders, renewals), each by due time (a forced renewal at rest: at once). In-flight
    /// first, because a poll that waits behind thousands of due creates is polled late, and
    /// the time-to-issue the daemon learns would be the queue, not the CA.
    fn due_key(&self) -> (bool, DateTime<Utc>) {
        if self.force_renew && self.resting {
            (true, DateTime::<Utc>::MIN_UTC)
        } else {
            (self.resting, self.next_due)
        }
    }
}

/// The entries, and the same certificates ordered by when they are due, so finding the next
/// due ones costs O(log N) rather than a scan of every certificate.
#[derive(Default)]
struct Index {
    entries: HashMap<String, Entry>,
    queue: std::collections::BTreeSet<((bool, DateTime<Utc>), String)>,
}

impl Index {
    fn insert(&mut self, name: &str, e: Entry) {
        self.remove(name);
        self.queue.insert((e.due_key(), name.to_string()));
        self.entries.insert(name.to_string(), e);
    }

    fn remove(&mut self, name: &str) {
        if let Some(old) = self.entries.remove(name) {
            self.queue.remove(&(old.due_key(), name.to_string()));
        }
    }

    fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// One class (in flight, or at rest) by due time, due no later than `until`.
    fn class(
        &self,
        rest: bool,
        until: DateTime<Utc>,
    ) -> impl Iterator<Item = (DateTime<Utc>, &String)> {
        use std::ops::Bound::{Excluded, Included};
        let end = until.checked_add_signed(chrono::TimeDelta::nanoseconds(1));
        let end = match end {
            Some(e) => Excluded(((rest, e), String::new())),
            None => Included(((rest, until), String::from(char::MAX))),
        };
        self.queue
            .range((
                Included(((rest, DateTime::<Utc>::MIN_UTC), String::new())),
                end,
            ))
            .map(|((_, at), n)| (*at, n))
    }
}

/// status.json is rewritten at most this often while steps are running (and at once when idle).
const SNAPSHOT_EVERY: Duration = Duration::from_secs(2);

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
    hooks_running: bool,
    /// In memory on purpose: after a restart, pending hooks run at once.
    hook_retry: HashMap<String, (u32, DateTime<Utc>)>,
    sem: Arc<Semaphore>,
    stopping: Arc<AtomicBool>,
    tasks: JoinSet<TaskResult>,
}

/// Runs the daemon until `shutdown` resolves, then drains (steps in flight finish, at most
/// [`DRAIN_TIMEOUT`]) and flushes.
pub async fn run(
    config: Config,
    services: Services,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    crate::listen::raise_fd_limit();
    let store = Store::open(&config.state_dir)?;
    let (listener, socket_file) = control::bind(&config.control_socket)?;
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Incoming>(16);
    let ctl_task = tokio::spawn(control::serve(listener, ctl_tx));

    let (tick_tx, mut tick_rx) = mpsc::channel::<()>(1);
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
        hooks_running: false,
        hook_retry: HashMap::new(),
        stopping: Arc::new(AtomicBool::new(false)),
        tasks: JoinSet::new(),
    };
    st.cert_pos = positions(&st.config);
    st.forget_unconfigured().await;
    // One read of each record at start: the index, and the live files checked (restored).
    st.refresh_all_and(true);
    st.services.notifier.ready();
    info!(
        certificates = st.config.certificates.len(),
        "cas-certd running"
    );

    tokio::pin!(shutdown);
    // An interval, not a per-iteration sleep: a busy loop must not starve the watchdog.
    let mut wd_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let mut need_check = true;
    loop {
        if need_check {
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
            _ = wd_tick.tick(), if watchdog.is_some() => st.services.notifier.watchdog(),
        }
    }

    info!("stopping: finishing steps in flight");
    st.services.notifier.stopping();
    st.stopping.store(true, Ordering::SeqCst);
    let drain = async {
        while let Some(r) = st.tasks.join_next().await {
            if let Ok(TaskResult::Step { name, .. }) = r {
                st.running.remove(&name);
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

    /// Records of certificates no longer configured (config edited while stopped).
    async fn forget_unconfigured(&mut self) {
        let Ok(names) = self.store.names() else {
            return;
        };
        for name in names {
            if self.cert(&name).is_none() {
                if let Err(e) = lifecycle::remove(&self.services.client, &self.store, &name).await {
                    error!(cert = %name, error = %e, "cannot forget the record");
                }
            }
        }
    }

    /// Re-reads one record into the index (after the loop learns it changed).
    fn refresh(&mut self, name: &str) {
        let Some(c) = self.cert(name) else {
            self.index.remove(name);
            return;
        };
        let e = Entry::of(&self.record(c));
        self.index.insert(name, e);
    }

    /// Rebuilds the index from the store (start, reload).
    fn refresh_all(&mut self) {
        self.refresh_all_and(false);
    }

    /// Rebuilds the index; with `restore`, also puts back deployed files missing on disk.
    fn refresh_all_and(&mut self, restore: bool) {
        let mut index = Index::default();
        for c in &self.config.certificates {
            let r = self.record(c);
            if restore {
                lifecycle::restore_live(c, &self.config.output_dir, &r);
            }
            index.insert(&c.name, Entry::of(&r));
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
                if !self.running.contains(name) {
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
            self.tasks.spawn(async move {
                let _permit = sem.acquire_owned().await;
                work(cert, cfg, client, store, metrics, stopping).await
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
                    .find(|(_, n)| !self.running.contains(*n));
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
        if !self.hooks_running {
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

    async fn finished(&mut self, r: TaskResult) {
        match r {
            TaskResult::Step {
                name,
                deployed,
                error,
            } => {
                self.running.remove(&name);
                self.snapshot_dirty = true;
                if let Ok(Some(r)) = self.store.get(&name) {
                    self.services.metrics.set_certificate(
                        &name,
                        r.deployed.as_ref().map(|d| d.info.not_after.timestamp()),
                        r.phase.name(),
                        r.last_success.map(|t| t.timestamp()),
                    );
                    if self.cert(&name).is_some() {
                        self.index.insert(&name, Entry::of(&r));
                    }
                }
                if let Some(e) = error {
                    error!(cert = %name, error = %e, "state store failure");
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
                self.hooks_running = false;
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

    /// Once no step is running (the batch is over), runs each distinct reload hook once, with
    /// the environment of the last certificate deployed for it.
    fn maybe_run_hooks(&mut self) {
        if !self.running.is_empty() || self.hooks_running {
            return;
        }
        let now = Utc::now();
        let mut groups: Vec<(Hook, Vec<(Certificate, CertRecord)>)> = Vec::new();
        for c in &self.config.certificates {
            let Some(h) = &c.reload else { continue };
            if !self.index.get(&c.name).is_some_and(|e| e.hook_pending) {
                continue;
            }
            let r = self.record(c);
            if !r.hook_pending {
                continue;
            }
            if self
                .hook_retry
                .get(&c.name)
                .is_some_and(|(_, at)| *at > now)
            {
                continue;
            }
            match groups.iter_mut().find(|(g, _)| g == h) {
                Some((_, v)) => v.push((c.clone(), r)),
                None => groups.push((h.clone(), vec![(c.clone(), r)])),
            }
        }
        for (hook, members) in groups {
            let names: Vec<String> = members.iter().map(|(c, _)| c.name.clone()).collect();
            let Some((last, _)) = members.iter().max_by_key(|(_, r)| r.last_success).cloned()
            else {
                continue;
            };
            let env = crate::hook::reload_env(&self.config.output_dir, &last.name, &last.domains);
            // The attempt this run is, and the wait before the next should it fail (the same
            // rule `finished` applies), so the failure event says when it is retried.
            let attempt = members
                .iter()
                .map(|(_, r)| r.hook_attempt)
                .max()
                .unwrap_or(0)
                + 1;
            let retry_in = hook_backoff(attempt);
            self.hooks_running = true;
            self.tasks.spawn(async move {
                match crate::hook::run(&hook, &env).await {
                    Ok(out) => {
                        info!(event = "hook.ok", cert = %last.name, certs = ?names,
                            output = %log_tail(out.output.trim_end()),
                            truncated = out.truncated, "reload hook ran");
                        TaskResult::Hook { names, ok: true }
                    }
                    Err(e) => {
                        error!(event = "hook.failed", cert = %last.name, certs = ?names,
                            error = %e, attempt, retry_in_secs = retry_in.as_secs(),
                            "reload hook failed; will retry");
                        TaskResult::Hook { names, ok: false }
                    }
                }
            });
        }
    }

    /// Status rows read from the store (exact, for the control socket).
    fn rows(&self) -> Vec<StatusRow> {
        self.config
            .certificates
            .iter()
            .map(|c| StatusRow::from_record(&self.record(c)))
            .collect()
    }

    /// Status rows from the index (what the loop last saw; for status.json).
    fn index_rows(&self) -> Vec<StatusRow> {
        self.config
            .certificates
            .iter()
            .filter_map(|c| self.index.get(&c.name).map(|e| e.row.clone()))
            .collect()
    }

    fn snapshot_pending(&self) -> bool {
        self.snapshot_dirty
    }

    /// Writes status.json when something changed: at once when no step runs, otherwise at most
    /// every [`SNAPSHOT_EVERY`] (each write is O(N)).
    fn maybe_snapshot(&mut self) {
        if !self.snapshot_dirty {
            return;
        }
        let recent = self
            .last_snapshot
            .is_some_and(|l| l.elapsed() < SNAPSHOT_EVERY);
        if recent && !self.running.is_empty() {
            return;
        }
        self.snapshot();
    }

    fn snapshot(&mut self) {
        self.snapshot_dirty = false;
        self.last_snapshot = Some(std::time::Instant::now());
        let rows = self.index_rows();
        let now = Utc::now();
        let due = rows.iter().filter(|r| r.next_due <= now).count();
        let next = rows.iter().map(|r| r.next_due).filter(|t| *t > now).min();
        let line = format!(
            "{} certificates, {} due, next check {}",
            rows.len(),
            due,
            next.map(|t| t.format("%H:%M").to_string())
                .unwrap_or_else(|| "-".into())
        );
        self.services.notifier.status(&line);
        let snap = Snapshot {
            written_at: now,
            daemon_pid: Some(std::process::id()),
            certificates: rows,
        };
        if let Err(e) = self.store.write_snapshot(&snap) {
            warn!(error = %e, "cannot write status.json");
        }
    }

    async fn control(&mut self, req: Request) -> Answer {
        match req {
            Request::Status => Answer::Now(Response::Status {
                certificates: self.rows(),
            }),
            Request::Renew { name, force } => self.renew(name, force).await,
        }
    }

    /// `renew NAME`: a due certificate (or a confirmed one) is due now; one that is not due
    /// needs confirming, and nothing is spent (see [`lifecycle::manual`]).
    async fn renew(&mut self, name: String, confirmed: bool) -> Answer {
        use lifecycle::manual::{self, Decision};
        let now_msg = |message: String| Answer::Now(Response::Ok { message });
        let Some(c) = self.cert(&name).cloned() else {
            return Answer::Now(Response::Error {
                message: format!("no certificate named {name:?} in the configuration"),
            });
        };
        let mut r = self.record(&c);
        let why = match manual::decide(&r, c.renew_before, Utc::now()) {
            Decision::InFlight(phase) => {
                return now_msg(format!(
                    "{name} already has an order in flight ({phase}): its certificate is on \
                     the way; nothing more ordered"
                ))
            }
            Decision::NotDue { due_at } if !confirmed => {
                return Answer::Confirm {
                    name,
                    product: c.product_code.clone(),
                    due_at,
                }
            }
            Decision::NotDue { .. } => "confirmed with --yes".to_string(),
            Decision::Due(because) => because.to_string(),
        };
        r.next_due = Utc::now();
        if let Err(e) = self.store.put_durable(&r).await {
            return Answer::Now(Response::Error {
                message: e.to_string(),
            });
        }
        info!(event = "cert.renew_requested", cert = %name, reason = %why,
            "renewal requested on the control socket");
        self.refresh(&name);
        self.snapshot_dirty = true;
        now_msg(format!(
            "renewal of {name} scheduled now ({why}); it uses one unit of {}",
            c.product_code
        ))
    }

    /// Sends a control answer. One that needs confirming first learns how many units of the
    /// product are left (DescribePackageState) in a task of its own: the loop does not wait
    /// on the API.
    fn answer(&self, answer: Answer, reply: tokio::sync::oneshot::Sender<Response>) {
        match answer {
            Answer::Now(resp) => {
                let _ = reply.send(resp);
            }
            Answer::Confirm {
                name,
                product,
                due_at,
            } => {
                let client = self.services.client.clone();
                tokio::spawn(async move {
                    let left = client
                        .describe_package_state(&product)
                        .await
                        .map(|s| s.left())
                        .map_err(|e| e.to_string());
                    let message = lifecycle::manual::cost_message(&name, &product, due_at, left);
                    let _ = reply.send(Response::Confirm { message });
                });
            }
        }
    }

    async fn reload(&mut self) {
        self.services.notifier.reloading();
        let Some(path) = self.config.source.clone() else {
            warn!("SIGHUP: the configuration has no file to reload from");
            self.services.notifier.ready();
            return;
        };
        match config::load(&path) {
            Err(errs) => {
                error!(event = "config.reload_failed", errors = %errs,
                    "the new configuration is invalid; keeping the running one");
            }
            Ok(new) => {
                let d = config::diff(&self.config, &new);
                info!(event = "config.reloaded", added = ?d.added, changed = ?d.changed,
                    removed = ?d.removed, "configuration reloaded");
                for name in &d.removed {
                    if let Err(e) =
                        lifecycle::remove(&self.services.client, &self.store, name).await
                    {
                        error!(cert = %name, error = %e, "cannot remove");
                    }
                    self.services.metrics.remove_certificate(name);
                    self.hook_retry.remove(name);
                }
                for name in &d.changed {
                    if let Some(c) = new.certificates.iter().find(|c| &c.name == name) {
                        self.domains_changed(c).await;
                    }
                }
                self.config = Arc::new(new);
                self.refresh_all();
                self.snapshot_dirty = true;
            }
        }
        self.services.notifier.ready();
    }

    /// A certificate whose domains changed is ordered anew; an order in flight for the old
    /// names is abandoned (quota back). Other changes apply at the next step.
    async fn domains_changed(&mut self, c: &Certificate) {
        let Ok(Some(mut r)) = self.store.get(&c.name) else {
            return;
        };
        let names_now = r
            .deployed
            .as_ref()
            .map(|d| d.info.names.clone())
            .unwrap_or_else(|| r.domains.clone());
        if names_now == c.domains && r.domains == c.domains {
            return;
        }
        if let Some(id) = r.phase.open_order() {
            if !lifecycle::cancel_and_delete(&self.services.client, id).await {
                r.orders_to_clean.push(id);
            }
        }
        r.phase = Phase::Idle;
        r.domains = c.domains.clone();
        r.force_renew = true;
        r.next_due = Utc::now();
        if let Err(e) = self.store.put_durable(&r).await {
            error!(cert = %c.name, error = %e, "state store failure");
        }
    }
}

/// Wait after the `attempt`-th failed run of a reload hook: 10 s, doubling, at most 10 min.
fn hook_backoff(attempt: u32) -> Duration {
    schedule::backoff(
        Duration::from_secs(10),
        Duration::from_secs(600),
        attempt.saturating_sub(1),
    )
}

/// How much of a successful hook's output goes into its log line (the run keeps up to
/// [`crate::hook::OUTPUT_CAP`]; a log line need not carry all of it).
const HOOK_LOG_TAIL: usize = 4096;

/// The last [`HOOK_LOG_TAIL`] bytes of `s`, cut at a character boundary, marked when cut.
fn log_tail(s: &str) -> String {
    if s.len() <= HOOK_LOG_TAIL {
        return s.to_string();
    }
    let start = (s.len() - HOOK_LOG_TAIL..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    format!("[…] {}", &s[start..])
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

/// Steps one certificate until it waits (or the daemon stops between steps).
async fn work(
    cert: Certificate,
    cfg: Arc<Config>,
    client: Client,
    store: Store,
    metrics: Metrics,
    stopping: Arc<AtomicBool>,
) -> TaskResult {
    let mut deployed = Vec::new();
    let mut error = None;
    for _ in 0..MAX_STEPS_PER_WAKE {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let rec = match store.get(&cert.name) {
            Ok(Some(r)) => r,
            Ok(None) => CertRecord::new(&cert.name, cert.domains.clone()),
            Err(e) => {
                error = Some(e);
                break;
            }
        };
        let had_cert = rec.deployed.is_some();
        let exec = Exec {
            ca: &client,
            records: &store,
            proofs: &Validators { client: &client },
            deployer: &OutputDir {
                path: &cfg.output_dir,
            },
            keys: &LocalKeys,
            clock: &SystemClock,
            metrics: &metrics,
            poll_min: cfg.poll_min,
            poll_max: cfg.poll_max,
        };
        match exec.step(&cert, rec).await {
            Ok(StepOutcome::Waiting(_)) => break,
            Ok(StepOutcome::Progressed) => continue,
            Ok(StepOutcome::Deployed) => {
                deployed.push(had_cert);
                continue;
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    TaskResult::Step {
        name: cert.name,
        deployed,
        error,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hook_backoff_doubles_from_10s_to_10min_and_log_tail_cuts() {
        assert_eq!(hook_backoff(1), Duration::from_secs(10));
        assert_eq!(hook_backoff(2), Duration::from_secs(20));
        assert_eq!(hook_backoff(3), Duration::from_secs(40));
        assert_eq!(hook_backoff(50), Duration::from_secs(600));
        assert_eq!(log_tail("short"), "short");
        let long = "é".repeat(10_000);
        let t = log_tail(&long);
        assert!(
            t.starts_with("[…] ") && t.len() <= HOOK_LOG_TAIL + 8,
            "{}",
            t.len()
        );
    }
}
