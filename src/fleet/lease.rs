//! This host's etcd lease: granted once, kept alive in the background, and observed lost. A
//! lost lease is lost for good (etcd deleted every key bound to it, so every ownership held
//! through it is over); the holder needs a new one.
//!
//! How long the lease surely lasts is counted from when each keep-alive was *sent* (not
//! answered), so this host's idea of the deadline is never later than etcd's.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{Fleet, FleetError};

/// Where the lease stands, as this host knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Live at least until then (etcd may keep it longer).
    Until(Instant),
    /// etcd said it is gone, or the deadline passed without a keep-alive answered.
    Lost,
}

/// A granted lease and its keep-alive task (stopped when the `Lease` is dropped).
#[derive(Debug)]
pub struct Lease {
    id: i64,
    ttl: Duration,
    state: watch::Receiver<State>,
    task: tokio::task::JoinHandle<()>,
    fleet: Fleet,
    /// `fleet.lease_lost` was said (once per lease, by whoever sees the loss first).
    said: Arc<AtomicBool>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Lease {
    /// Grants a lease of `ttl` (etcd may raise it to its minimum) and starts keeping it alive.
    pub async fn grant(fleet: &Fleet, ttl: Duration) -> Result<Arc<Lease>, FleetError> {
        let sent = Instant::now();
        let ttl_secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        // Safe to repeat: a grant whose answer was lost leaves a lease that expires unused.
        let g = fleet
            .call_idempotent(|mut c| async move { c.lease_grant(ttl_secs, None).await })
            .await?;
        let ttl = Duration::from_secs(u64::try_from(g.ttl()).unwrap_or(1));
        let (tx, rx) = watch::channel(State::Until(sent + ttl));
        let said = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(keep_alive(fleet.clone(), g.id(), ttl, tx, said.clone()));
        Ok(Arc::new(Lease {
            id: g.id(),
            ttl,
            state: rx,
            task,
            fleet: fleet.clone(),
            said,
        }))
    }

    pub fn id(&self) -> i64 {
        self.id
    }

    /// The TTL etcd granted.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How long the lease surely lasts from now (zero once lost). An order is placed only
    /// while most of the TTL is left (issue 12), so that a pause cannot outlast the lease
    /// between the check and the call.
    pub fn remaining(&self) -> Duration {
        match *self.state.borrow() {
            State::Until(t) => t.saturating_duration_since(Instant::now()),
            State::Lost => Duration::ZERO,
        }
    }

    pub fn is_live(&self) -> bool {
        !self.remaining().is_zero()
    }

    /// Says `fleet.lease_lost` if the lease is lost and nobody said it yet: the holder that
    /// finds its deadline passed (a paused host) may drop the lease before its keep-alive task
    /// noticed.
    pub fn say_if_lost(&self) {
        if !self.is_live() {
            say_lost(
                &self.said,
                &self.fleet,
                self.id,
                "the lease's deadline passed (this host may have been paused)",
            );
        }
    }

    /// Returns once the lease is lost (at once if it is).
    pub async fn lost(&self) {
        let mut rx = self.state.clone();
        loop {
            let until = match *rx.borrow_and_update() {
                State::Lost => return,
                State::Until(t) => t,
            };
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {
                    // Past the deadline: lost, unless a keep-alive moved it meanwhile.
                    if *rx.borrow() == State::Until(until) {
                        return;
                    }
                }
                r = rx.changed() => {
                    if r.is_err() {
                        // Keep-alives stopped: the deadline decides.
                        tokio::time::sleep_until(until).await;
                        return;
                    }
                }
            }
        }
    }

    /// Stops keeping the lease alive; etcd lets it expire after its TTL (a host shutting
    /// down without revoking, or a test standing in for a paused host).
    pub fn stop_keep_alive(&self) {
        self.task.abort();
    }

    /// Gives the lease up now: every key bound to it is deleted at once.
    pub async fn revoke(&self) -> Result<(), FleetError> {
        self.task.abort();
        let id = self.id;
        self.fleet
            .call(|mut c| async move { c.lease_revoke(id).await })
            .await?;
        Ok(())
    }
}

/// Sends a keep-alive every third of the TTL; a stream that breaks is reopened until the
/// deadline passes. Says Lost (once, with `fleet.lease_lost`) when etcd answers TTL 0 or the
/// deadline passes unanswered.
async fn keep_alive(
    fleet: Fleet,
    id: i64,
    ttl: Duration,
    tx: watch::Sender<State>,
    said: Arc<AtomicBool>,
) {
    let period = (ttl / 3).max(Duration::from_millis(200));
    let mut until = match *tx.borrow() {
        State::Until(t) => t,
        State::Lost => return,
    };
    let mut stream = None;
    let reason = loop {
        tokio::time::sleep(period.min(until.saturating_duration_since(Instant::now()))).await;
        if Instant::now() >= until {
            break "no keep-alive answered before the lease's deadline".to_string();
        }
        if stream.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            let open = fleet.call(|mut c| async move { c.lease_keep_alive(id).await });
            match tokio::time::timeout(left, open).await {
                Ok(Ok(s)) => stream = Some(s),
                Ok(Err(e)) => {
                    tracing::debug!(lease = id, error = %e, "keep-alive stream failed to open");
                    continue;
                }
                Err(_) => continue,
            }
        }
        let Some((keeper, answers)) = stream.as_mut() else {
            continue;
        };
        let sent = Instant::now();
        let left = until.saturating_duration_since(sent);
        let answer = tokio::time::timeout(left, async {
            keeper.keep_alive().await?;
            answers.message().await
        })
        .await;
        match answer {
            Ok(Ok(Some(a))) if a.ttl() > 0 => {
                until = sent + Duration::from_secs(u64::try_from(a.ttl()).unwrap_or(0));
                if tx.send(State::Until(until)).is_err() {
                    return; // nobody holds the lease any more
                }
            }
            Ok(Ok(Some(_))) => break "etcd says the lease has expired".to_string(),
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => stream = None,
        }
    };
    let _ = tx.send(State::Lost);
    say_lost(&said, &fleet, id, &reason);
}

/// `fleet.lease_lost`, once per lease.
fn say_lost(said: &AtomicBool, fleet: &Fleet, id: i64, reason: &str) {
    if said.swap(true, Ordering::SeqCst) {
        return;
    }
    tracing::warn!(
        event = "fleet.lease_lost",
        lease = id,
        node = %fleet.node(),
        reason = %reason,
        "the fleet lease is lost: every certificate this host owned through it is no longer its own"
    );
}
