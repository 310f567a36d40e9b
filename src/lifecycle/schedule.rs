//! Pure timing decisions: when a certificate is due for renewal, backoff between polls and
//! retries, and which listed order is the one our interrupted create made. No I/O here, so
//! every rule is tested with fixed times.
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::RenewBefore;
use cas_api::model::{OrderId, OrderSummary};

/// A renew_before above this fraction of the lifetime would renew a fresh certificate almost
/// at once (a renewal loop): it is clamped to [`CLAMPED_FRACTION`].
pub const MAX_RENEW_FRACTION: f64 = 0.75;
pub const CLAMPED_FRACTION: f64 = 1.0 / 3.0;
/// Jitter is up to this fraction of the lifetime...
pub const JITTER_FRACTION: f64 = 0.05;
/// ...and never more than this.
pub const JITTER_MAX: Duration = Duration::from_secs(12 * 3600);
/// How far before the recorded intent an adopted order may have been created (clock skew).
pub const ADOPT_SLACK: Duration = Duration::from_secs(10 * 60);

/// When to renew a certificate valid from `not_before` to `not_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewPlan {
    pub at: DateTime<Utc>,
    /// True when the configured renew_before was clamped (the caller warns).
    pub clamped: bool,
}

/// `jitter01` is a random number in [0, 1): the renewal moves earlier by up to 5 % of the
/// lifetime (at most 12 h) so a fleet does not renew at once.
pub fn renew_at(
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    renew_before: RenewBefore,
    jitter01: f64,
) -> RenewPlan {
    let lifetime = (not_after - not_before).max(TimeDelta::zero());
    let life_secs = lifetime.num_milliseconds() as f64 / 1000.0;
    let wanted = match renew_before {
        RenewBefore::Fraction(f) => life_secs * f,
        RenewBefore::Duration(d) => d.as_secs_f64(),
    };
    let (before, clamped) = if wanted > life_secs * MAX_RENEW_FRACTION {
        (life_secs * CLAMPED_FRACTION, true)
    } else {
        (wanted.max(0.0), false)
    };
    let jitter_cap = (life_secs * JITTER_FRACTION).min(JITTER_MAX.as_secs_f64());
    let jitter = jitter_cap * jitter01.clamp(0.0, 1.0);
    let at = not_after - secs(before + jitter);
    RenewPlan { at, clamped }
}

/// `min * 2^attempt`, capped at `max`.
pub fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.min(20));
    min.saturating_mul(factor).min(max).max(min.min(max))
}

/// Backoff for failures: from one minute, up to six hours for permanent errors.
pub fn retry_backoff(attempt: u32, permanent: bool) -> Duration {
    let max = if permanent {
        Duration::from_secs(6 * 3600)
    } else {
        Duration::from_secs(3600)
    };
    backoff(Duration::from_secs(60), max, attempt)
}

/// When to describe an order for the first time after its challenge was published: the
/// learned time-to-issue if we have one, within [poll_min, poll_max].
pub fn first_poll_delay(
    ewma_secs: Option<f64>,
    poll_min: Duration,
    poll_max: Duration,
) -> Duration {
    match ewma_secs {
        Some(s) if s.is_finite() && s > 0.0 => {
            Duration::from_secs_f64(s).clamp(poll_min, poll_max.max(poll_min))
        }
        _ => poll_min,
    }
}

/// What we know about the create that may have happened.
#[derive(Debug, Clone)]
pub struct AdoptQuery<'a> {
    pub domains: &'a [String],
    /// The product the intent ordered; `None` (an intent recorded before the product was)
    /// accepts any.
    pub product_code: Option<&'a str>,
    pub intent_at: DateTime<Utc>,
    /// Orders that are certainly not the one (deployed, abandoned).
    pub known: &'a [OrderId],
}

/// Picks the order an interrupted create made: same first domain, same product when the list
/// says, not failed/revoked/expired, bought no earlier than the intent minus slack, not one we
/// already know. The newest wins.
pub fn pick_adoptable(q: &AdoptQuery<'_>, orders: &[OrderSummary]) -> Option<OrderId> {
    let first = q.domains.first()?;
    let since_ms = (q.intent_at - secs(ADOPT_SLACK.as_secs_f64())).timestamp_millis();
    orders
        .iter()
        .filter(|o| !q.known.contains(&o.order_id))
        .filter(|o| {
            o.domain
                .as_deref()
                .map(|d| d.split(',').any(|d| d.trim().eq_ignore_ascii_case(first)))
                .unwrap_or(false)
        })
        .filter(|o| match (o.product_code.as_deref(), q.product_code) {
            (Some(listed), Some(ordered)) => listed.eq_ignore_ascii_case(ordered),
            _ => true,
        })
        .filter(|o| {
            !matches!(
                o.status
                    .as_deref()
                    .map(|s| s.to_ascii_uppercase())
                    .as_deref(),
                Some("CHECKED_FAIL" | "REVOKED" | "EXPIRED")
            )
        })
        // Without a buy date we cannot tell it is recent: do not adopt (creating again is
        // the safer mistake than adopting someone else's order).
        .filter(|o| o.buy_date.is_some_and(|b| b >= since_ms))
        .max_by_key(|o| (o.buy_date, o.order_id))
        .map(|o| o.order_id)
}

pub(crate) fn secs(s: f64) -> TimeDelta {
    TimeDelta::milliseconds((s * 1000.0).round() as i64)
}

pub(crate) fn dur(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap() + TimeDelta::hours(h)
    }

    #[test]
    fn renew_fraction_without_jitter() {
        // 90 days, renew with a third left → at day 60.
        let p = renew_at(t(0), t(90 * 24), RenewBefore::Fraction(1.0 / 3.0), 0.0);
        assert_eq!(p.at, t(60 * 24));
        assert!(!p.clamped);
    }

    #[test]
    fn renew_duration_with_full_jitter_is_bounded_by_12h() {
        // 365 days, 30 d before; 5 % of a year is > 12 h, so jitter is 12 h.
        let p = renew_at(
            t(0),
            t(365 * 24),
            RenewBefore::Duration(Duration::from_secs(30 * 86400)),
            0.999_999_9,
        );
        let expect = t(365 * 24 - 30 * 24 - 12);
        assert!((p.at - expect).num_seconds().abs() <= 1, "{}", p.at);
    }

    #[test]
    fn jitter_is_5_percent_of_a_short_lifetime() {
        let p = renew_at(t(0), t(100), RenewBefore::Fraction(0.5), 1.0);
        assert_eq!(p.at, t(45));
    }

    #[test]
    fn renew_before_longer_than_lifetime_is_clamped_not_a_loop() {
        // A 2-minute certificate with renew_before = 30 days.
        let nb = t(0);
        let na = nb + TimeDelta::seconds(120);
        let p = renew_at(
            nb,
            na,
            RenewBefore::Duration(Duration::from_secs(30 * 86400)),
            0.0,
        );
        assert!(p.clamped);
        assert_eq!(p.at, nb + TimeDelta::seconds(80));
        assert!(p.at > nb, "a fresh certificate must not be due at once");
        // Just above three quarters of the lifetime is clamped too.
        let p = renew_at(t(0), t(100), RenewBefore::Fraction(0.8), 0.0);
        assert!(p.clamped);
        assert_eq!(p.at, t(0) + secs(100.0 * 3600.0 * (1.0 - CLAMPED_FRACTION)));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let min = Duration::from_secs(10);
        let max = Duration::from_secs(600);
        assert_eq!(backoff(min, max, 0), Duration::from_secs(10));
        assert_eq!(backoff(min, max, 1), Duration::from_secs(20));
        assert_eq!(backoff(min, max, 5), Duration::from_secs(320));
        assert_eq!(backoff(min, max, 6), Duration::from_secs(600));
        assert_eq!(backoff(min, max, 1000), Duration::from_secs(600));
        assert!(retry_backoff(50, true) <= Duration::from_secs(6 * 3600));
        assert!(retry_backoff(50, false) <= Duration::from_secs(3600));
    }

    #[test]
    fn retry_backoff_starts_at_a_minute_and_caps_by_class() {
        // A zero backoff would retry a failing create in a tight loop: the first wait is a minute.
        assert_eq!(retry_backoff(0, false), Duration::from_secs(60));
        assert_eq!(retry_backoff(0, true), Duration::from_secs(60));
        assert_eq!(retry_backoff(1, false), Duration::from_secs(120));
        assert_eq!(retry_backoff(50, false), Duration::from_secs(3600));
        assert_eq!(retry_backoff(50, true), Duration::from_secs(6 * 3600));
    }

    #[test]
    fn first_poll_uses_learned_time_within_bounds() {
        let min = Duration::from_secs(10);
        let max = Duration::from_secs(600);
        assert_eq!(first_poll_delay(None, min, max), min);
        assert_eq!(
            first_poll_delay(Some(120.0), min, max),
            Duration::from_secs(120)
        );
        assert_eq!(first_poll_delay(Some(1.0), min, max), min);
        assert_eq!(first_poll_delay(Some(1e6), min, max), max);
        assert_eq!(first_poll_delay(Some(f64::NAN), min, max), min);
    }

    #[test]
    fn a_learned_time_that_is_not_a_positive_finite_number_is_ignored() {
        let min = Duration::from_secs(10);
        let max = Duration::from_secs(600);
        for bad in [f64::INFINITY, f64::NEG_INFINITY, -5.0, 0.0] {
            assert_eq!(first_poll_delay(Some(bad), min, max), min, "{bad}");
        }
        // A poll_max below poll_min: poll_min wins, never a panic.
        let low = Duration::from_secs(5);
        assert_eq!(first_poll_delay(Some(120.0), min, low), min);
        assert_eq!(backoff(min, low, 3), low);
        assert_eq!(backoff(Duration::ZERO, max, 3), Duration::ZERO);
    }

    #[test]
    fn renew_before_of_exactly_three_quarters_is_kept_and_jitter_is_clamped() {
        let p = renew_at(t(0), t(100), RenewBefore::Fraction(MAX_RENEW_FRACTION), 0.0);
        assert_eq!(
            p,
            RenewPlan {
                at: t(25),
                clamped: false
            }
        );
        let base = RenewBefore::Fraction(0.5);
        assert_eq!(
            renew_at(t(0), t(100), base, 7.0),
            renew_at(t(0), t(100), base, 1.0)
        );
        assert_eq!(
            renew_at(t(0), t(100), base, -3.0),
            renew_at(t(0), t(100), base, 0.0)
        );
        // A certificate that ends before it starts is due at its end, not later.
        assert_eq!(renew_at(t(100), t(0), base, 0.5).at, t(0));
    }

    fn order(id: u64, domain: &str, status: &str, buy: Option<DateTime<Utc>>) -> OrderSummary {
        OrderSummary {
            order_id: OrderId(id),
            instance_id: None,
            domain: Some(domain.into()),
            domain_count: None,
            status: Some(status.into()),
            product_code: Some("symantec-free-1-free".into()),
            cert_type: None,
            domain_type: None,
            cert_start_time: None,
            cert_end_time: None,
            buy_date: buy.map(|b| b.timestamp_millis()),
            algorithm: None,
        }
    }

    #[test]
    fn adoption_picks_the_recent_matching_order_only() {
        let domains = vec!["www.example.com".to_string(), "example.com".to_string()];
        let intent = t(10);
        let known = [OrderId(1)];
        let q = AdoptQuery {
            domains: &domains,
            product_code: Some("symantec-free-1-free"),
            intent_at: intent,
            known: &known,
        };
        let orders = vec![
            order(1, "www.example.com", "PAYED", Some(intent)), // known (deployed)
            order(2, "www.example.com", "PAYED", Some(t(5))),   // too old
            order(3, "www.example.com", "CHECKED_FAIL", Some(intent)), // failed
            order(4, "api.example.com", "PAYED", Some(intent)), // other domain
            order(5, "www.example.com", "PAYED", None),         // no date
            order(6, "www.example.com,example.com", "CHECKING", Some(intent)), // ✓
        ];
        assert_eq!(pick_adoptable(&q, &orders), Some(OrderId(6)));
        // Within the slack before the intent still counts (clock skew).
        let slightly_before = intent - TimeDelta::minutes(5);
        let orders = vec![order(7, "www.example.com", "PAYED", Some(slightly_before))];
        assert_eq!(pick_adoptable(&q, &orders), Some(OrderId(7)));
        assert_eq!(pick_adoptable(&q, &[]), None);
        // The slack's edge is inside, a millisecond more is not.
        let edge = intent - TimeDelta::from_std(ADOPT_SLACK).unwrap();
        let orders = vec![order(8, "www.example.com", "PAYED", Some(edge))];
        assert_eq!(pick_adoptable(&q, &orders), Some(OrderId(8)));
        let orders = vec![order(
            8,
            "www.example.com",
            "PAYED",
            Some(edge - TimeDelta::milliseconds(1)),
        )];
        assert_eq!(pick_adoptable(&q, &orders), None);
        // The newest of several candidates wins.
        let orders = vec![
            order(9, "www.example.com", "PAYED", Some(intent)),
            order(
                10,
                "www.example.com",
                "PAYED",
                Some(intent + TimeDelta::seconds(1)),
            ),
        ];
        assert_eq!(pick_adoptable(&q, &orders), Some(OrderId(10)));
    }

    #[test]
    fn adoption_checks_product_code() {
        let domains = vec!["a.test".to_string()];
        let q = AdoptQuery {
            domains: &domains,
            product_code: Some("geotrust-dv-1-starter"),
            intent_at: t(0),
            known: &[],
        };
        let orders = vec![order(9, "a.test", "PAYED", Some(t(0)))];
        assert_eq!(pick_adoptable(&q, &orders), None);
        // An intent written before the product was recorded adopts whatever product it finds:
        // the default product changed between releases.
        let q = AdoptQuery {
            product_code: None,
            ..q
        };
        assert_eq!(pick_adoptable(&q, &orders), Some(OrderId(9)));
    }
}
