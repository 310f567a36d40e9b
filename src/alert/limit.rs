//! The per-event rate limit: at most `count` notifications of one event in any window of
//! `per` (a sliding window, so a flood of any length and start sends at most that many per
//! window). Time is passed in, so a ten-minute flood is tested in microseconds.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crate::config::RateLimit;

#[derive(Debug)]
pub struct Limiter {
    rate: RateLimit,
    /// Per event: when the notifications in the current window were let through, and how many
    /// were held back since the last one.
    seen: HashMap<String, (VecDeque<Instant>, u64)>,
}

impl Limiter {
    pub fn new(rate: RateLimit) -> Limiter {
        Limiter {
            rate,
            seen: HashMap::new(),
        }
    }

    /// The limit changed (a reload): the history stays, so a reload does not reopen the gate.
    pub fn set_rate(&mut self, rate: RateLimit) {
        self.rate = rate;
    }

    /// `Some(held back since the last one)` when a notification of `event` may go at `now`;
    /// `None` when it is held back (and counted).
    pub fn admit(&mut self, event: &str, now: Instant) -> Option<u64> {
        let (times, held) = self.seen.entry(event.to_string()).or_default();
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.rate.per)
        {
            times.pop_front();
        }
        if times.len() < self.rate.count as usize {
            times.push_back(now);
            Some(std::mem::take(held))
        } else {
            *held += 1;
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn flood(rate: RateLimit, every: Duration, length: Duration) -> (usize, u64) {
        let mut l = Limiter::new(rate);
        let t0 = Instant::now();
        let (mut sent, mut held_reported) = (0, 0);
        let mut t = Duration::ZERO;
        while t < length {
            if let Some(h) = l.admit("cert.renew_failed", t0 + t) {
                sent += 1;
                held_reported += h;
            }
            // Another event is limited on its own.
            assert!(t > Duration::ZERO || l.admit("hook.failed", t0 + t).is_some());
            t += every;
        }
        (sent, held_reported)
    }

    #[test]
    fn a_ten_minute_flood_sends_at_most_the_configured_rate() {
        let rate = RateLimit {
            count: 6,
            per: Duration::from_secs(3600),
        };
        // One event a second for ten minutes: 600 events, 6 sent.
        let (sent, _) = flood(rate, Duration::from_secs(1), Duration::from_secs(600));
        assert_eq!(sent, 6);
        // Ten a second for ten minutes, with "3 per 10 minutes": 3.
        let rate = RateLimit {
            count: 3,
            per: Duration::from_secs(600),
        };
        let (sent, _) = flood(rate, Duration::from_millis(100), Duration::from_secs(600));
        assert_eq!(sent, 3);
        // Three hours of it at 6/h: 18, and what was held back is reported with the next one.
        let rate = RateLimit {
            count: 6,
            per: Duration::from_secs(3600),
        };
        let (sent, held) = flood(rate, Duration::from_secs(1), Duration::from_secs(3 * 3600));
        assert_eq!(sent, 18);
        assert_eq!(held, 2 * (3600 - 6));
    }

    #[test]
    fn the_window_slides() {
        let mut l = Limiter::new(RateLimit {
            count: 2,
            per: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(l.admit("e", at(0)), Some(0));
        assert_eq!(l.admit("e", at(30)), Some(0));
        assert_eq!(l.admit("e", at(59)), None);
        assert_eq!(l.admit("e", at(60)), Some(1)); // the first left the window
        assert_eq!(l.admit("e", at(61)), None);
        assert_eq!(l.admit("e", at(90)), Some(1));
    }
}
