//! The delivery task: takes notifications off the queue, applies the rate limit, and sends each
//! to every target on its own task (a slow webhook does not hold up the others), with a few
//! retries. Reports dropped notifications in one warn event per burst.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::message::Alert;
use super::{limit::Limiter, webhook::Webhook, Hub};
use crate::config::Hook;
use crate::metrics::Metrics;

/// Tries per notification and target, and the wait before each retry (doubling).
pub const ATTEMPTS: u32 = 4;
pub const FIRST_RETRY: Duration = Duration::from_secs(2);
/// Sends in flight at once, over all targets.
const IN_FLIGHT: usize = 8;
/// How often dropped notifications are looked for, and at least how long between two
/// `notification.dropped` events.
const DROP_CHECK: Duration = Duration::from_secs(5);
const DROP_WARN_EVERY: Duration = Duration::from_secs(600);

/// Where notifications go.
#[derive(Debug, Clone)]
pub enum Target {
    Command(Hook),
    Webhook(Webhook),
}

impl Target {
    fn label(&self) -> &str {
        match self {
            Target::Command(_) => "command",
            Target::Webhook(w) => &w.label,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Target::Command(_) => "command",
            Target::Webhook(w) => w.format.name(),
        }
    }
}

pub struct Ctx {
    pub targets: Vec<Target>,
    pub limiter: Arc<Mutex<Limiter>>,
    pub hub: Arc<Hub>,
    pub metrics: Metrics,
    pub host: String,
    pub http: reqwest::Client,
}

/// Runs until the queue's sender is gone and the queue is empty, then waits for the sends in
/// flight.
pub async fn run(mut rx: mpsc::Receiver<Alert>, ctx: Ctx) {
    let ctx = Arc::new(ctx);
    let sem = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut inflight = JoinSet::new();
    let mut check = tokio::time::interval(DROP_CHECK);
    let mut last_warn: Option<Instant> = None;
    let mut unreported = 0u64;
    loop {
        tokio::select! {
            a = rx.recv() => {
                let Some(mut a) = a else { break };
                let admitted = ctx
                    .limiter
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .admit(&a.event, Instant::now());
                let Some(held) = admitted else {
                    ctx.metrics.notifications_skipped("rate_limited", 1);
                    continue;
                };
                a.suppressed = held;
                let a = Arc::new(a);
                for i in 0..ctx.targets.len() {
                    let (ctx, a, sem) = (ctx.clone(), a.clone(), sem.clone());
                    inflight.spawn(async move {
                        send_with_retries(&ctx, &sem, &ctx.targets[i], &a).await;
                    });
                }
            }
            _ = check.tick() => {
                let dropped = ctx.hub.dropped.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    ctx.metrics.notifications_skipped("queue_full", dropped);
                }
                unreported += dropped;
                if unreported > 0 && last_warn.is_none_or(|t| t.elapsed() >= DROP_WARN_EVERY) {
                    warn!(event = "notification.dropped", dropped = unreported,
                        "the notification queue was full; these notifications were dropped");
                    last_warn = Some(Instant::now());
                    unreported = 0;
                }
            }
            Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
        }
    }
    while inflight.join_next().await.is_some() {}
}

/// Sends `a` to `target`, holding one of `sem`'s permits per attempt only (not while waiting
/// to retry, so a target that is down does not hold up the others).
async fn send_with_retries(ctx: &Ctx, sem: &Semaphore, target: &Target, a: &Alert) {
    let mut wait = FIRST_RETRY;
    for attempt in 1..=ATTEMPTS {
        let permit = sem.acquire().await;
        let (result, permanent) = match target {
            Target::Command(h) => match super::command::run(h, a, &ctx.host).await {
                Ok(()) => (Ok(()), false),
                Err(e) => {
                    let permanent = matches!(e, crate::hook::HookError::Spawn { .. });
                    (Err(e.to_string()), permanent)
                }
            },
            Target::Webhook(w) => match w.send(&ctx.http, a, &ctx.host).await {
                Ok(()) => (Ok(()), false),
                Err(e) => (Err(e.reason), e.permanent),
            },
        };
        drop(permit);
        match result {
            Ok(()) => {
                ctx.metrics.notification(target.kind(), "sent");
                return;
            }
            Err(e) if permanent || attempt == ATTEMPTS => {
                ctx.metrics.notification(target.kind(), "failed");
                warn!(event = "notification.failed", notifier = %target.label(),
                    notified = %a.event, attempt, error = %e,
                    "a notification could not be delivered; giving up on it");
                return;
            }
            Err(e) => {
                debug!(notifier = %target.label(), notified = %a.event, attempt, error = %e,
                    retry_in_secs = wait.as_secs(), "notification failed; will retry");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
}
