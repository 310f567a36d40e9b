//! Fault injection, seeded so a run can be replayed: 5xx, throttling per action, latency,
//! dropped connections and garbage bodies, decided before an action runs (so a faulted create
//! never happened); and lost answers, where the action DOES run and only the answer is dropped
//! (a create that happened and was charged, which the client must find, not repeat); and
//! slow actions, held before they run (a create still in flight when its caller dies).
use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Fault knobs (the `--seed`, `--*-rate`, `--qps*`, `--latency` and `--lose-only` flags).
/// Rates are fractions of calls, 0 to 1.
#[derive(Debug, Clone, Default)]
pub struct FaultOptions {
    /// Seed of the random generator: the same seed gives the same faults.
    pub seed: u64,
    /// Fraction of calls answered 503 ServiceUnavailable before the action runs.
    pub fail_rate: f64,
    /// Calls per second allowed per action; more get 400 Throttling.User.
    pub qps: Vec<(String, u32)>,
    /// Calls per second for actions without their own `qps` entry.
    pub qps_default: Option<u32>,
    /// Delay added before an answer.
    pub latency: Option<Duration>,
    /// Fraction of calls delayed by `latency` (1.0, every call, when `latency` is set).
    pub latency_rate: Option<f64>,
    /// Fraction of calls whose connection is dropped without an answer (action not run).
    pub reset_rate: f64,
    /// Fraction of calls answered 200 with a truncated non-JSON body (action not run).
    pub garbage_rate: f64,
    /// Fraction of calls performed whose answer is then dropped (connection closed).
    pub lose_rate: f64,
    /// Actions `lose_rate` applies to; empty: every action.
    pub lose_only: Vec<String>,
    /// Per action: how long a call is held after it arrived, before it runs and is answered
    /// (a slow service). A held call is carried out even if its caller hung up meanwhile, as
    /// a request that reached Alibaba is.
    pub action_delay: Vec<(String, Duration)>,
}

/// What to do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    /// 503 ServiceUnavailable.
    Unavailable,
    /// 400 Throttling.User.
    Throttled,
    /// Close the connection without an answer.
    Reset,
    /// 200 with a truncated, non-JSON body.
    Garbage,
    /// Run the action, then close the connection without the answer.
    Lost,
}

#[derive(Debug)]
pub(crate) struct Faults {
    opts: FaultOptions,
    rng: StdRng,
    /// Per action: start of the current one-second window and calls in it.
    windows: HashMap<String, (Instant, u32)>,
}

impl Faults {
    pub(crate) fn new(opts: FaultOptions) -> Faults {
        Faults {
            rng: StdRng::seed_from_u64(opts.seed),
            opts,
            windows: HashMap::new(),
        }
    }

    /// The delay for the next call, if any (rolled only when `latency_rate` is below 1, so
    /// runs without it draw the same faults as before for a given seed).
    pub(crate) fn latency(&mut self) -> Option<Duration> {
        let l = self.opts.latency?;
        match self.opts.latency_rate {
            Some(r) if r < 1.0 => self.roll(r).then_some(l),
            _ => Some(l),
        }
    }

    /// How long a call of `action` is held before it runs (`action_delay`), if at all.
    pub(crate) fn action_delay(&self, action: &str) -> Option<Duration> {
        self.opts
            .action_delay
            .iter()
            .find(|(a, _)| a == action)
            .map(|(_, d)| *d)
    }

    fn limit(&self, action: &str) -> Option<u32> {
        self.opts
            .qps
            .iter()
            .find(|(a, _)| a == action)
            .map(|(_, n)| *n)
            .or(self.opts.qps_default)
    }

    fn roll(&mut self, rate: f64) -> bool {
        rate > 0.0 && self.rng.random::<f64>() < rate
    }

    /// Picks the fault for a call of `action` now.
    pub(crate) fn decide(&mut self, action: &str) -> Fault {
        if let Some(limit) = self.limit(action) {
            let now = Instant::now();
            let w = self.windows.entry(action.to_string()).or_insert((now, 0));
            if now.duration_since(w.0) >= Duration::from_secs(1) {
                *w = (now, 0);
            }
            w.1 += 1;
            if w.1 > limit {
                return Fault::Throttled;
            }
        }
        if self.roll(self.opts.reset_rate) {
            return Fault::Reset;
        }
        if self.roll(self.opts.fail_rate) {
            return Fault::Unavailable;
        }
        if self.roll(self.opts.garbage_rate) {
            return Fault::Garbage;
        }
        let losable =
            self.opts.lose_only.is_empty() || self.opts.lose_only.iter().any(|a| a == action);
        if losable && self.roll(self.opts.lose_rate) {
            return Fault::Lost;
        }
        Fault::None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn qps_limit_throttles_within_a_second() {
        let mut f = Faults::new(FaultOptions {
            qps: vec![("A".into(), 2)],
            ..Default::default()
        });
        assert_eq!(f.decide("A"), Fault::None);
        assert_eq!(f.decide("A"), Fault::None);
        assert_eq!(f.decide("A"), Fault::Throttled);
        assert_eq!(f.decide("B"), Fault::None, "limits are per action");
    }

    #[test]
    fn same_seed_same_faults() {
        let o = FaultOptions {
            seed: 42,
            fail_rate: 0.5,
            ..Default::default()
        };
        let (mut a, mut b) = (Faults::new(o.clone()), Faults::new(o));
        let xs: Vec<_> = (0..50).map(|_| a.decide("X")).collect();
        let ys: Vec<_> = (0..50).map(|_| b.decide("X")).collect();
        assert_eq!(xs, ys);
        assert!(xs.contains(&Fault::Unavailable) && xs.contains(&Fault::None));
    }

    #[test]
    fn lose_rate_loses_about_that_fraction_and_nothing_else() {
        let mut f = Faults::new(FaultOptions {
            seed: 7,
            lose_rate: 0.3,
            ..Default::default()
        });
        let xs: Vec<_> = (0..1000).map(|_| f.decide("X")).collect();
        let lost = xs.iter().filter(|x| **x == Fault::Lost).count();
        assert!(
            (200..400).contains(&lost),
            "{lost} of 1000 lost at rate 0.3"
        );
        assert!(xs.iter().all(|x| matches!(x, Fault::Lost | Fault::None)));
        let mut only = Faults::new(FaultOptions {
            lose_rate: 1.0,
            lose_only: vec!["Create".into()],
            ..Default::default()
        });
        assert_eq!(only.decide("Create"), Fault::Lost);
        assert_eq!(
            only.decide("List"),
            Fault::None,
            "other actions are answered"
        );
    }

    #[test]
    fn action_delay_holds_only_the_named_action() {
        let f = Faults::new(FaultOptions {
            action_delay: vec![("Create".into(), Duration::from_secs(5))],
            ..Default::default()
        });
        assert_eq!(f.action_delay("Create"), Some(Duration::from_secs(5)));
        assert_eq!(f.action_delay("List"), None);
    }

    #[test]
    fn latency_rate_delays_only_a_fraction() {
        let l = Duration::from_millis(5);
        let mut all = Faults::new(FaultOptions {
            latency: Some(l),
            ..Default::default()
        });
        assert!((0..20).all(|_| all.latency() == Some(l)));
        let mut some = Faults::new(FaultOptions {
            seed: 3,
            latency: Some(l),
            latency_rate: Some(0.25),
            ..Default::default()
        });
        let n = (0..1000).filter(|_| some.latency().is_some()).count();
        assert!((150..350).contains(&n), "{n} of 1000 delayed at rate 0.25");
        assert_eq!(Faults::new(FaultOptions::default()).latency(), None);
    }
}
