//! Notifications (`[notify]`): chosen log events sent to an argv command and to webhooks
//! (DingTalk, WeCom, Feishu, Slack, or plain JSON).
//!
//! The daemon's structured log events (`event = "…"`) are the source: [`layer`] is installed
//! with the logging and copies those in the configured set into a bounded queue, without ever
//! waiting; [`deliver`] takes them off it, applies the per-event rate limit ([`limit`]) and sends
//! each to every target with a few retries. Nothing the lifecycle does waits for a
//! notification: a full queue drops it, counted in a metric and said in one warn event.
//!
//! The queue is reached through a [`Hub`]; the daemon's is [`global`] (the tracing subscriber is
//! process-wide too), and [`Alerts`] points it at the configured targets, again on reload.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{NotifySettings, WebhookSettings, WebhookSource};
use crate::metrics::Metrics;
use cas_api::secret::Secret;

mod command;
mod deliver;
mod events;
pub mod layer;
mod limit;
mod message;
mod webhook;

pub use deliver::{ATTEMPTS, FIRST_RETRY};
pub use events::{check_event_name, ALL_EVENTS, DEFAULT_EVENTS};
pub use limit::Limiter;
pub use message::Alert;
pub use webhook::{check_webhook_url, dingtalk_sign, feishu_sign, generic_sign, SIGNATURE_HEADER};

/// Notifications waiting to be sent, at most. Past it new ones are dropped.
pub const QUEUE: usize = 256;
/// How long shutdown waits for notifications still queued or in flight.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("[notify] webhook {index} ({format}): {path}: {reason}")]
    WebhookFile {
        index: usize,
        format: &'static str,
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("[notify]: cannot make the HTTP client: {0}")]
    Http(String),
}

/// Where the logging layer puts notifications.
#[derive(Default)]
pub struct Hub {
    active: AtomicBool,
    route: RwLock<Option<Route>>,
    /// Notifications dropped because the queue was full, not yet reported.
    dropped: AtomicU64,
    /// Every drop, for the metric.
    dropped_total: AtomicU64,
}

struct Route {
    /// `None`: every event.
    events: Option<HashSet<String>>,
    tx: mpsc::Sender<Alert>,
}

impl Hub {
    fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    fn wants(&self, event: &str) -> bool {
        if event.starts_with(events::OWN_PREFIX) {
            return false;
        }
        let route = self.route.read().unwrap_or_else(|p| p.into_inner());
        route
            .as_ref()
            .is_some_and(|r| r.events.as_ref().is_none_or(|e| e.contains(event)))
    }

    fn offer(&self, alert: Alert) {
        let route = self.route.read().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = route.as_ref() {
            if r.tx.try_send(alert).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.dropped_total.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Points the hub at a new queue (or at none); the old queue's sender goes with it, so its
    /// task ends once it has sent what it holds.
    fn set(&self, route: Option<Route>) {
        let mut g = self.route.write().unwrap_or_else(|p| p.into_inner());
        self.active.store(route.is_some(), Ordering::Relaxed);
        *g = route;
    }

    /// Notifications dropped so far because the queue was full.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }
}

/// The process's hub, which [`layer()`] feeds.
pub fn global() -> Arc<Hub> {
    static GLOBAL: LazyLock<Arc<Hub>> = LazyLock::new(|| Arc::new(Hub::default()));
    GLOBAL.clone()
}

/// The logging layer feeding [`global`].
pub fn layer() -> layer::AlertLayer {
    layer::AlertLayer { hub: global() }
}

/// The layer feeding `hub` (tests with a hub of their own).
pub fn layer_for(hub: Arc<Hub>) -> layer::AlertLayer {
    layer::AlertLayer { hub }
}

/// The running notifier: the delivery task of the current `[notify]` settings.
pub struct Alerts {
    hub: Arc<Hub>,
    metrics: Metrics,
    limiter: Arc<Mutex<Limiter>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Alerts {
    /// Starts sending as `settings` say (nothing without them). Webhook credentials files are
    /// read now: an unreadable one is an error, and nothing is started.
    pub fn start(
        settings: Option<&NotifySettings>,
        hub: Arc<Hub>,
        metrics: Metrics,
    ) -> Result<Alerts, AlertError> {
        let rate = settings.map(|s| s.rate).unwrap_or_default();
        let mut a = Alerts {
            hub,
            metrics,
            limiter: Arc::new(Mutex::new(Limiter::new(rate))),
            task: None,
        };
        a.reconfigure(settings)?;
        Ok(a)
    }

    /// Applies new settings (a reload). On an error the running ones stay.
    pub fn reconfigure(&mut self, settings: Option<&NotifySettings>) -> Result<(), AlertError> {
        let Some(s) = settings.filter(|s| s.has_targets()) else {
            self.hub.set(None);
            self.task = None;
            return Ok(());
        };
        let targets = targets(s)?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("cas-certd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AlertError::Http(e.to_string()))?;
        self.limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_rate(s.rate);
        let (tx, rx) = mpsc::channel(QUEUE);
        let ctx = deliver::Ctx {
            targets,
            limiter: self.limiter.clone(),
            hub: self.hub.clone(),
            metrics: self.metrics.clone(),
            host: message::host_name(),
            http,
        };
        // The previous task (if any) ends by itself once its queue is empty.
        self.task = Some(tokio::spawn(deliver::run(rx, ctx)));
        self.hub.set(Some(Route {
            events: s.events.as_ref().map(|e| e.iter().cloned().collect()),
            tx,
        }));
        Ok(())
    }

    /// Stops taking notifications and sends what is queued, for at most `within`.
    pub async fn shutdown(mut self, within: Duration) {
        self.hub.set(None);
        if let Some(t) = self.task.take() {
            let abort = t.abort_handle();
            if tokio::time::timeout(within, t).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// What would keep `[notify]` from working, one line each: a command that cannot run, a
/// webhook credentials file that cannot be used (`check` prints them).
pub fn problems(s: &NotifySettings) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(h) = &s.command {
        let argv0 = h.argv.first().map_or("", String::as_str);
        if let Err(e) = crate::hook::find_program(argv0, &h.pass_env) {
            out.push(format!("[notify] command: {e}"));
        }
    }
    for (i, w) in s.webhooks.iter().enumerate() {
        if let Err(e) = webhook_secrets(i + 1, w) {
            out.push(e.to_string());
        }
    }
    out
}

/// The targets of `s`, webhook credentials files read. Every URL and secret is remembered for
/// redaction.
fn targets(s: &NotifySettings) -> Result<Vec<deliver::Target>, AlertError> {
    let mut out = Vec::new();
    if let Some(h) = &s.command {
        out.push(deliver::Target::Command(h.clone()));
    }
    for (i, w) in s.webhooks.iter().enumerate() {
        let (url, secret) = webhook_secrets(i + 1, w)?;
        cas_api::secret::remember(&url);
        if let Some(s) = &secret {
            cas_api::secret::remember(s);
        }
        out.push(deliver::Target::Webhook(webhook::Webhook {
            format: w.format,
            url,
            secret,
            label: format!("{} webhook {}", w.format.name(), i + 1),
        }));
    }
    Ok(out)
}

/// The URL and secret of webhook `index` (1-based), from the config or its file: `url = …` and
/// `secret = …` lines (`#` comments, blank lines).
fn webhook_secrets(
    index: usize,
    w: &WebhookSettings,
) -> Result<(Secret, Option<Secret>), AlertError> {
    let path = match &w.source {
        WebhookSource::Inline { url, secret } => return Ok((url.clone(), secret.clone())),
        WebhookSource::File(p) => p,
    };
    let err = |reason: String| AlertError::WebhookFile {
        index,
        format: w.format.name(),
        path: path.clone(),
        reason,
    };
    let text = cas_api::credentials::read_private_file(path).map_err(|e| match e {
        cas_api::credentials::CredentialsError::File { reason, .. } => err(reason),
        other => err(other.to_string()),
    })?;
    let (mut url, mut secret) = (None, None);
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Never echo the line: it holds the secret.
        let Some((k, v)) = line.split_once('=') else {
            return Err(err(format!(
                "line {}: expected `url = …` or `secret = …`",
                n + 1
            )));
        };
        let v = v.trim().trim_matches('"').to_string();
        match k.trim() {
            "url" => url = Some(v),
            "secret" => secret = Some(v).filter(|s| !s.is_empty()),
            other => {
                return Err(err(format!(
                    "line {}: unknown key {other:?} (expected url or secret)",
                    n + 1
                )))
            }
        }
    }
    let url = url.ok_or_else(|| err("no `url = …` line".into()))?;
    check_webhook_url(&url).map_err(|e| err(format!("url: {e}")))?;
    if secret.is_some() && !w.format.signed() {
        return Err(err(format!(
            "{} webhooks are not signed: remove the secret line",
            w.format.name()
        )));
    }
    Ok((Secret::new(url), secret.map(Secret::new)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt as _;

    #[test]
    fn the_layer_queues_only_chosen_events_and_never_waits_on_a_full_queue() {
        let hub = Arc::new(Hub::default());
        let (tx, mut rx) = mpsc::channel(2);
        hub.set(Some(Route {
            events: Some(["hook.failed".to_string()].into_iter().collect()),
            tx,
        }));
        let sub = tracing_subscriber::registry().with(layer_for(hub.clone()));
        let t0 = std::time::Instant::now();
        tracing::subscriber::with_default(sub, || {
            tracing::info!(event = "cert.deployed", cert = "a", "deployed");
            tracing::warn!(event = "notification.failed", "its own: never sent");
            tracing::info!("no event field");
            for i in 0..1000 {
                tracing::error!(event = "hook.failed", cert = "www", attempt = i,
                    error = %"exit 1", "reload hook failed");
            }
        });
        // Nobody reads the queue: 2 were queued, the rest dropped, and no call waited.
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        assert_eq!(hub.dropped_total(), 998);
        let a = rx.try_recv().unwrap();
        assert_eq!(a.event, "hook.failed");
        assert_eq!(a.level, "ERROR");
        assert_eq!(a.message, "reload hook failed");
        assert_eq!(
            a.fields,
            vec![
                ("cert".to_string(), "www".into()),
                ("attempt".to_string(), 0.into()),
                ("error".to_string(), "exit 1".into()),
            ]
        );
        assert_eq!(rx.try_recv().unwrap().fields[1].1, 1);
        assert!(rx.try_recv().is_err());
        // Switched off: nothing is looked at.
        hub.set(None);
        assert!(!hub.active());
    }
}
