//! Client-side rate limiting: one token bucket per action, shared by every clone of the
//! client, so a busy daemon stays under each action's QPS instead of earning Throttling.
//! Callers wait for their turn; they never fail here.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Per-action token buckets of capacity one: calls are evenly spaced at the action's rate, so
/// no one-second window (which is how Alibaba counts) ever sees more than the rate.
#[derive(Debug)]
pub struct RateLimiter {
    default_qps: f64,
    overrides: HashMap<String, f64>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    /// May go negative: a negative balance is the queue of callers already waiting.
    tokens: f64,
    last: Instant,
    /// When the last calls (at most ⌊rate⌋) were actually sent, for the window check.
    sent: VecDeque<Instant>,
}

/// How Alibaba counts: calls per one-second window.
const WINDOW: Duration = Duration::from_secs(1);

impl RateLimiter {
    /// `default_qps` applies to every action not named in `overrides`. A rate ≤ 0 or not
    /// finite means "no limit".
    pub fn new(default_qps: f64, overrides: &[(String, f64)]) -> Self {
        RateLimiter {
            default_qps,
            overrides: overrides.iter().cloned().collect(),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The rate for `action`, calls per second.
    pub fn rate(&self, action: &str) -> f64 {
        self.overrides
            .get(action)
            .copied()
            .unwrap_or(self.default_qps)
    }

    /// Reserves one call of `action` and says how long the caller must wait before making it.
    pub fn reserve(&self, action: &str, now: Instant) -> Duration {
        let rate = self.rate(action);
        if !(rate.is_finite() && rate > 0.0) {
            return Duration::ZERO;
        }
        let capacity = 1.0;
        // A poisoned lock only means another caller panicked mid-update; the counts are
        // still usable, so carry on with them.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let b = buckets.entry(action.to_string()).or_insert(Bucket {
            tokens: capacity,
            last: now,
            sent: VecDeque::new(),
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(capacity);
        b.last = now.max(b.last);
        b.tokens -= 1.0;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / rate)
        }
    }

    /// The second guard, at send time: how long until a call of `action` sent at `now` keeps
    /// every trailing one-second window at ⌊rate⌋ calls or fewer; a zero answer records the
    /// send. The bucket spaces reservations evenly, but tasks that wake late (a busy runtime,
    /// a loaded machine) then send in a bunch, and a bunch is what earns Throttling.
    pub fn window_wait(&self, action: &str, now: Instant) -> Duration {
        let rate = self.rate(action);
        if !(rate.is_finite() && rate > 0.0) {
            return Duration::ZERO;
        }
        let cap = (rate.floor() as usize).max(1);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let b = buckets.entry(action.to_string()).or_insert(Bucket {
            tokens: 1.0,
            last: now,
            sent: VecDeque::new(),
        });
        while b
            .sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            b.sent.pop_front();
        }
        match b.sent.front() {
            Some(oldest) if b.sent.len() >= cap => {
                (*oldest + WINDOW).saturating_duration_since(now)
            }
            _ => {
                b.sent.push_back(now);
                Duration::ZERO
            }
        }
    }

    /// Waits until a call of `action` may be made.
    pub async fn acquire(&self, action: &str) {
        let wait = self.reserve(action, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        loop {
            let wait = self.window_wait(action, Instant::now());
            if wait.is_zero() {
                break;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_paced_per_action() {
        let l = RateLimiter::new(2.0, &[("Fast".to_string(), 100.0)]);
        let t0 = Instant::now();
        // One immediate call, then 0.5 s apart.
        assert_eq!(l.reserve("A", t0), Duration::ZERO);
        let w2 = l.reserve("A", t0);
        let w3 = l.reserve("A", t0);
        assert!((w2.as_secs_f64() - 0.5).abs() < 1e-6, "{w2:?}");
        assert!((w3.as_secs_f64() - 1.0).abs() < 1e-6, "{w3:?}");
        // Another action has its own bucket; overrides apply.
        assert_eq!(l.reserve("B", t0), Duration::ZERO);
        assert_eq!(l.reserve("Fast", t0), Duration::ZERO);
        let w = l.reserve("Fast", t0);
        assert!((w.as_secs_f64() - 0.01).abs() < 1e-6, "{w:?}");
        // Tokens come back with time.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(l.reserve("A", later), Duration::ZERO);
    }

    #[test]
    fn window_holds_late_bunched_sends_to_the_rate() {
        let l = RateLimiter::new(3.0, &[]);
        let t0 = Instant::now();
        // Three tasks woke late and send together: allowed (3 per second)...
        for _ in 0..3 {
            assert_eq!(l.window_wait("A", t0), Duration::ZERO);
        }
        // ...a fourth in the same second waits until the oldest leaves the window.
        let t1 = t0 + Duration::from_millis(300);
        assert_eq!(l.window_wait("A", t1), Duration::from_millis(700));
        assert_eq!(l.window_wait("A", t0 + WINDOW), Duration::ZERO);
        assert_eq!(l.window_wait("B", t1), Duration::ZERO, "per action");
    }

    #[test]
    fn zero_rate_means_unlimited() {
        let l = RateLimiter::new(0.0, &[]);
        for _ in 0..1000 {
            assert_eq!(l.reserve("A", Instant::now()), Duration::ZERO);
        }
    }

    #[tokio::test]
    async fn shared_limiter_paces_concurrent_callers() {
        let l = std::sync::Arc::new(RateLimiter::new(20.0, &[]));
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..30 {
            let l = l.clone();
            tasks.push(tokio::spawn(async move { l.acquire("X").await }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        // One immediately, 29 more at 20/s: about 1.45 s.
        let e = t0.elapsed();
        assert!(e >= Duration::from_millis(1400), "{e:?}");
        assert!(e < Duration::from_secs(3), "{e:?}");
    }
}
