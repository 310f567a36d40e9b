//! What the daemon's listeners (the metrics endpoint, the control socket) share so that no
//! client can starve the rest of the daemon of file descriptors: the descriptor limit raised at
//! start, the reserve it leaves, and accept loops that back off on errors instead of spinning.
//!
//! Every connection a listener accepts costs a descriptor, and so does each file a deploy
//! writes, each hook's pipes and each API connection. Each listener holds at most its cap of
//! connections ([`crate::metrics::MAX_CONNECTIONS`], [`crate::control::MAX_CONNECTIONS`]); beyond
//! it, new connections wait in the kernel's accept queue, which costs the daemon nothing. What
//! the caps leave of the limit is the reserve for everything else.
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// Descriptors the listeners can hold at most: each one's connection cap plus the listener.
pub const LISTENER_FDS: u64 =
    (crate::metrics::MAX_CONNECTIONS + 1 + crate::control::MAX_CONNECTIONS + 1) as u64;

// The caps are the reserve: they must stay well below systemd's default soft limit of 1 024.
const _: () = assert!(LISTENER_FDS < 128);

/// Below this many descriptors left for deploys, hooks and API calls, start warns.
const LOW_RESERVE: u64 = 256;

/// The soft `RLIMIT_NOFILE` before and after [`raise_fd_limit`], and the hard one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    pub was: Option<u64>,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

impl FdLimit {
    /// What the listeners' caps leave of the soft limit (`None`: unlimited).
    pub fn reserve(&self) -> Option<u64> {
        self.soft.map(|s| s.saturating_sub(LISTENER_FDS))
    }
}

/// Raises the soft descriptor limit to the hard one (systemd's default soft limit is 1 024 for
/// the sake of `select(2)`, which this program does not use) and logs the budget.
pub fn raise_fd_limit() -> FdLimit {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let before = getrlimit(Resource::Nofile);
    let mut limit = FdLimit {
        was: before.current,
        soft: before.current,
        hard: before.maximum,
    };
    // An unlimited hard limit is refused for NOFILE by Linux (it must stay under
    // fs.nr_open), so the soft one is raised only to a finite hard limit.
    if let Some(hard) = before.maximum {
        if before.current.is_some_and(|s| s < hard) {
            let want = Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            match setrlimit(Resource::Nofile, want) {
                Ok(()) => limit.soft = Some(hard),
                Err(e) => warn!(event = "fd.limit_unchanged", error = %e, soft = ?before.current,
                    hard, "cannot raise the descriptor limit; keeping the soft one"),
            }
        }
    }
    let (was, soft, hard) = (shown(limit.was), shown(limit.soft), shown(limit.hard));
    match limit.reserve() {
        Some(r) if r < LOW_RESERVE => warn!(event = "fd.limit_low", soft, hard,
            listeners = LISTENER_FDS, reserve = r,
            "the descriptor limit is low: raise LimitNOFILE= (the listeners may hold {LISTENER_FDS} descriptors)"),
        r => info!(event = "fd.limit", was, soft, hard, listeners = LISTENER_FDS,
            reserve = %shown(r), "descriptor limit"),
    }
    limit
}

fn shown(v: Option<u64>) -> String {
    v.map_or_else(|| "unlimited".to_string(), |n| n.to_string())
}

/// How long an accept loop waits after an error. Accept fails with EMFILE/ENFILE while the
/// connection stays queued, so retrying at once spins (issue 18 measured 120 % CPU).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// An accept loop's errors: logged once per burst (the first error, then a summary when an
/// accept succeeds again), with [`ACCEPT_BACKOFF`] between attempts.
#[derive(Debug)]
pub struct AcceptErrors {
    listener: &'static str,
    burst: u64,
    since: Option<Instant>,
}

impl AcceptErrors {
    pub fn new(listener: &'static str) -> AcceptErrors {
        AcceptErrors {
            listener,
            burst: 0,
            since: None,
        }
    }

    /// After a failed accept: log if it starts a burst, then wait.
    pub async fn failed(&mut self, e: &std::io::Error) {
        if self.burst == 0 {
            self.since = Some(Instant::now());
            warn!(event = "listener.accept_failed", listener = self.listener, error = %e,
                "cannot accept connections; retrying every {} ms", ACCEPT_BACKOFF.as_millis());
        }
        self.burst += 1;
        tokio::time::sleep(ACCEPT_BACKOFF).await;
    }

    /// After a successful accept: closes a burst.
    pub fn ok(&mut self) {
        if self.burst > 0 {
            let secs = self.since.map(|t| t.elapsed().as_secs()).unwrap_or(0);
            info!(
                event = "listener.accept_recovered",
                listener = self.listener,
                failures = self.burst,
                secs,
                "accepting connections again"
            );
            self.burst = 0;
            self.since = None;
        }
    }

    /// Errors in the current burst.
    pub fn burst(&self) -> u64 {
        self.burst
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_reaches_the_hard_one_and_the_reserve_is_what_the_caps_leave() {
        let l = raise_fd_limit();
        assert!(l.soft.is_some_and(|s| s >= l.was.unwrap_or(0)), "{l:?}");
        if let Some(h) = l.hard {
            assert_eq!(l.soft, Some(h), "{l:?}");
        }
        let x = FdLimit {
            was: Some(1024),
            soft: Some(1024),
            hard: Some(1024),
        };
        assert_eq!(x.reserve(), Some(1024 - LISTENER_FDS));
    }

    #[tokio::test]
    async fn accept_errors_back_off_and_count_a_burst() {
        let mut e = AcceptErrors::new("test");
        let err = std::io::Error::from_raw_os_error(24);
        let t0 = std::time::Instant::now();
        for _ in 0..5 {
            e.failed(&err).await;
        }
        assert_eq!(e.burst(), 5);
        assert!(t0.elapsed() >= ACCEPT_BACKOFF * 5);
        e.ok();
        assert_eq!(e.burst(), 0);
    }
}
