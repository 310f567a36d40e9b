//! Retry delays: exponential backoff with full jitter (a uniform delay between zero and the
//! exponential ceiling), so that many clients retrying at once spread out.

use std::time::Duration;

/// First ceiling; doubles per retry up to [`CAP`].
pub const BASE: Duration = Duration::from_millis(200);
/// Largest ceiling.
pub const CAP: Duration = Duration::from_secs(5);

/// The ceiling before retry number `retry` (0 for the first retry).
pub fn ceiling(retry: u32) -> Duration {
    let factor = 2u32.saturating_pow(retry.min(16));
    BASE.saturating_mul(factor).min(CAP)
}

/// First ceiling after a Throttling answer: quotas are counted per second, so retrying
/// sooner mostly earns another Throttling.
pub const THROTTLED_BASE: Duration = Duration::from_secs(1);

/// The ceiling before retry number `retry` after a Throttling answer.
pub fn throttled_ceiling(retry: u32) -> Duration {
    let factor = 2u32.saturating_pow(retry.min(16));
    THROTTLED_BASE.saturating_mul(factor).min(CAP)
}

/// A random delay in `[0, ceiling(retry)]`.
pub fn delay(retry: u32) -> Duration {
    jitter(ceiling(retry))
}

/// A random delay in `[0, throttled_ceiling(retry)]`.
pub fn throttled_delay(retry: u32) -> Duration {
    jitter(throttled_ceiling(retry))
}

fn jitter(ceiling: Duration) -> Duration {
    use rand::Rng as _;
    let max = ceiling.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(0..=max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_grow_and_cap() {
        assert_eq!(ceiling(0), Duration::from_millis(200));
        assert_eq!(ceiling(1), Duration::from_millis(400));
        assert_eq!(ceiling(3), Duration::from_millis(1600));
        assert_eq!(ceiling(10), CAP);
        assert_eq!(ceiling(u32::MAX), CAP);
        assert_eq!(throttled_ceiling(0), Duration::from_secs(1));
        assert_eq!(throttled_ceiling(2), Duration::from_secs(4));
        assert_eq!(throttled_ceiling(5), CAP);
        for _ in 0..100 {
            assert!(throttled_delay(1) <= Duration::from_secs(2));
        }
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        for retry in 0..6 {
            let mut seen = std::collections::HashSet::new();
            for _ in 0..200 {
                let d = delay(retry);
                assert!(d <= ceiling(retry), "{d:?} > {:?}", ceiling(retry));
                seen.insert(d);
            }
            assert!(seen.len() > 10, "delays not jittered: {}", seen.len());
        }
    }
}
