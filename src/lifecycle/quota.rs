//! What the daemon knows of each product's quota, shared by every certificate: the answer of
//! the last DescribePackageState, less the units handed out to creates since.
//!
//! Before a create (or a renewal: both spend a unit) the executor asks [`QuotaCache::before_create`].
//! It calls DescribePackageState only when the product's count is unknown or was low (under
//! `quota_warn`, or none left) at the last look, and then at most once per [`REFRESH`] per
//! product, unless CAS has since refused a create for quota. Otherwise it answers from memory and
//! counts the unit it hands out, so ten thousand certificates cost a handful of calls, and
//! concurrent creates of one product never take more units than were left (one lock per
//! product, held across the look). Units spent elsewhere (another host, the console) are seen at
//! the next look, or when CAS refuses a create: that error path stays the last word.
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use cas_api::model::{OrderId, PackageState};
use cas_api::{ApiError, ErrorClass};

/// The shortest time between two DescribePackageState calls for one product.
pub const REFRESH: Duration = Duration::from_secs(600);

/// `quota.low` is said at most this often per product.
fn warn_every() -> TimeDelta {
    TimeDelta::days(1)
}

/// What the machine learns before a create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaLook {
    /// Units of the product, as CAS said at the last look plus the units handed out since.
    /// `used < total` means one was left and is now held for this create. `warn`: the count is
    /// under `quota_warn` and this is the first time today it is said (`quota.low`).
    Known { total: i64, used: i64, warn: bool },
    /// DescribePackageState failed (now or at the last look): the create goes on, CAS refuses it
    /// if nothing is left.
    Unknown,
}

#[derive(Debug, Default)]
struct Entry {
    /// `(TotalCount, UsedCount)` at the last successful look.
    seen: Option<(i64, i64)>,
    /// Units handed out to creates since that look.
    handed_out: i64,
    asked_at: Option<DateTime<Utc>>,
    /// CAS refused a create for quota: look again at the next create, whatever the time.
    stale: bool,
    warned_at: Option<DateTime<Utc>>,
}

impl Entry {
    fn left(&self) -> Option<i64> {
        self.seen
            .map(|(total, used)| (total - used - self.handed_out).max(0))
    }
}

/// One per daemon (see the module docs).
#[derive(Debug, Default)]
pub struct QuotaCache {
    products: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Entry>>>>,
}

impl QuotaCache {
    pub fn new() -> QuotaCache {
        QuotaCache::default()
    }

    fn entry(&self, product: &str) -> Arc<tokio::sync::Mutex<Entry>> {
        // A poisoned map only means a panic elsewhere mid-insert; the map itself is intact.
        let mut map = self.products.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(product.to_string()).or_default().clone()
    }

    /// Before a create of `product`: looks (with `describe`, DescribePackageState) when the
    /// count is unknown or low and the last look is [`REFRESH`] old or stale, and holds one unit
    /// for the caller when one is left. Returns the look, the units left after it (for the
    /// metric), and the error of a look that failed now (for the log).
    pub async fn before_create<F, Fut>(
        &self,
        product: &str,
        now: DateTime<Utc>,
        warn_below: u32,
        describe: F,
    ) -> (QuotaLook, Option<i64>, Option<ApiError>)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<PackageState, ApiError>>,
    {
        let low_mark = i64::from(warn_below).max(1);
        let entry = self.entry(product);
        let mut e = entry.lock().await;
        let wanted = e.left().is_none_or(|left| left < low_mark);
        let due = e.stale
            || e.asked_at
                .is_none_or(|at| now - at >= TimeDelta::from_std(REFRESH).unwrap_or_default());
        let mut error = None;
        if wanted && due {
            e.asked_at = Some(now);
            e.stale = false;
            match describe().await {
                Ok(s) => {
                    e.seen = Some((s.total_count, s.used_count));
                    e.handed_out = 0;
                }
                Err(err) => error = Some(err),
            }
        }
        let Some((total, seen_used)) = e.seen else {
            return (QuotaLook::Unknown, None, error);
        };
        let used = seen_used + e.handed_out;
        let left = e.left().unwrap_or(0);
        let warn =
            left < i64::from(warn_below) && e.warned_at.is_none_or(|at| now - at >= warn_every());
        if warn {
            e.warned_at = Some(now);
        }
        if left > 0 {
            e.handed_out += 1;
        }
        let look = QuotaLook::Known { total, used, warn };
        (look, e.left(), error)
    }

    /// After the create a [`QuotaCache::before_create`] was for: a create that certainly spent
    /// nothing gives its unit back; one CAS refused for quota makes the count zero and the next
    /// create look again. Returns the units left, for the metric.
    pub async fn after_create(
        &self,
        product: &str,
        result: &Result<OrderId, ApiError>,
    ) -> Option<i64> {
        let entry = self.entry(product);
        let mut e = entry.lock().await;
        match result {
            Ok(_) => {}
            Err(err) if err.is_quota() => {
                e.stale = true;
                if let Some((total, used)) = e.seen {
                    e.handed_out = (total - used).max(0);
                }
            }
            // The order may exist: the unit stays counted until the next look.
            Err(err) if err.class() == ErrorClass::OutcomeUnknown => {}
            Err(_) => e.handed_out = (e.handed_out - 1).max(0),
        }
        e.left()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap() + TimeDelta::seconds(secs)
    }

    fn state(total: i64, used: i64) -> PackageState {
        PackageState {
            product_code: "p".into(),
            total_count: total,
            used_count: used,
            issued_count: 0,
        }
    }

    fn service(code: &str, status: u16) -> ApiError {
        ApiError::Service {
            action: "X".into(),
            status,
            code: code.into(),
            message: "m".into(),
            request_id: "r".into(),
        }
    }

    /// `before_create` at `now` with CAS answering `answer`; counts the calls in `calls`.
    async fn look(
        q: &QuotaCache,
        now: DateTime<Utc>,
        calls: &Cell<u32>,
        answer: Result<PackageState, ApiError>,
    ) -> QuotaLook {
        q.before_create("p", now, 3, || {
            calls.set(calls.get() + 1);
            async { answer }
        })
        .await
        .0
    }

    #[tokio::test]
    async fn an_unknown_count_is_asked_once_and_a_plentiful_one_is_counted_down_in_memory() {
        let q = QuotaCache::new();
        let calls = Cell::new(0);
        let first = look(&q, t(0), &calls, Ok(state(1000, 10))).await;
        assert_eq!(
            first,
            QuotaLook::Known {
                total: 1000,
                used: 10,
                warn: false
            }
        );
        // Ten thousand creates later, hours apart: no further call, each unit counted.
        let mut last = first;
        for i in 1..=500 {
            last = look(&q, t(i * 3600), &calls, Ok(state(0, 0))).await;
        }
        assert_eq!(calls.get(), 1);
        assert!(
            matches!(last, QuotaLook::Known { used: 510, .. }),
            "{last:?}"
        );
    }

    #[tokio::test]
    async fn a_low_count_is_looked_at_again_at_most_every_refresh_and_warns_once_a_day() {
        let q = QuotaCache::new();
        let calls = Cell::new(0);
        let a = look(&q, t(0), &calls, Ok(state(5, 3))).await;
        assert_eq!(
            a,
            QuotaLook::Known {
                total: 5,
                used: 3,
                warn: true
            }
        );
        // Within REFRESH: from memory, one unit handed out; no second warning.
        let b = look(&q, t(60), &calls, Ok(state(5, 0))).await;
        assert_eq!(
            b,
            QuotaLook::Known {
                total: 5,
                used: 4,
                warn: false
            }
        );
        let c = look(&q, t(120), &calls, Ok(state(5, 0))).await;
        assert_eq!(
            c,
            QuotaLook::Known {
                total: 5,
                used: 5,
                warn: false
            }
        );
        // Nothing left: no unit handed out, still no call within REFRESH.
        let d = look(&q, t(180), &calls, Ok(state(5, 0))).await;
        assert_eq!(
            d,
            QuotaLook::Known {
                total: 5,
                used: 5,
                warn: false
            }
        );
        assert_eq!(calls.get(), 1);
        // At REFRESH: asked again (someone bought more), still low, said again only a day on.
        let refresh = REFRESH.as_secs() as i64;
        let e = look(&q, t(refresh), &calls, Ok(state(7, 5))).await;
        assert_eq!(
            e,
            QuotaLook::Known {
                total: 7,
                used: 5,
                warn: false
            }
        );
        assert_eq!(calls.get(), 2);
        let f = look(&q, t(86_400), &calls, Ok(state(7, 6))).await;
        assert!(matches!(f, QuotaLook::Known { warn: true, .. }), "{f:?}");
    }

    /// Exactly `quota_warn` left is not low: counted in memory, not asked again even after
    /// REFRESH (cargo-mutants: `left < low_mark` as `<=` went unnoticed).
    #[tokio::test]
    async fn a_count_at_the_warning_mark_is_not_looked_at_again() {
        let q = QuotaCache::new();
        let calls = Cell::new(0);
        // 4 left; this create holds one: 3 left, the mark.
        let a = look(&q, t(0), &calls, Ok(state(10, 6))).await;
        assert!(matches!(a, QuotaLook::Known { warn: false, .. }), "{a:?}");
        let refresh = REFRESH.as_secs() as i64;
        let b = look(&q, t(refresh), &calls, Ok(state(10, 10))).await;
        assert_eq!(calls.get(), 1, "looked again at the mark");
        assert_eq!(
            b,
            QuotaLook::Known {
                total: 10,
                used: 7,
                warn: false
            }
        );
    }

    #[tokio::test]
    async fn a_failed_look_goes_on_unknown_and_is_not_repeated_within_refresh() {
        let q = QuotaCache::new();
        let calls = Cell::new(0);
        let (l, _, err) = q
            .before_create("p", t(0), 3, || {
                calls.set(calls.get() + 1);
                async { Err(service("Forbidden.RAM", 403)) }
            })
            .await;
        assert_eq!(l, QuotaLook::Unknown);
        assert!(err.is_some());
        let l = look(&q, t(60), &calls, Ok(state(9, 0))).await;
        assert_eq!(l, QuotaLook::Unknown);
        assert_eq!(calls.get(), 1);
        let l = look(&q, t(600), &calls, Ok(state(9, 0))).await;
        assert!(matches!(l, QuotaLook::Known { used: 0, .. }));
    }

    #[tokio::test]
    async fn a_create_refused_for_quota_makes_the_next_create_look_again_at_once() {
        let q = QuotaCache::new();
        let calls = Cell::new(0);
        look(&q, t(0), &calls, Ok(state(100, 0))).await;
        let left = q
            .after_create("p", &Err(service("NotRemainCount", 400)))
            .await;
        assert_eq!(left, Some(0));
        let l = look(&q, t(1), &calls, Ok(state(100, 100))).await;
        assert_eq!(calls.get(), 2, "looked again within REFRESH");
        assert!(matches!(
            l,
            QuotaLook::Known {
                used: 100,
                total: 100,
                ..
            }
        ));
    }

    /// After CAS refused for quota, a look that fails keeps the count at "all used": the
    /// message says `N of N used` (cargo-mutants: `total - used` as `total + used` went
    /// unnoticed; it said 140 of 100).
    #[tokio::test]
    async fn after_a_refusal_a_failed_look_says_every_unit_is_used() {
        let q = QuotaCache::new();
        let calls = Cell::new(0);
        look(&q, t(0), &calls, Ok(state(100, 20))).await;
        q.after_create("p", &Err(service("NotRemainCount", 400)))
            .await;
        let l = look(&q, t(1), &calls, Err(service("ServiceUnavailable", 503))).await;
        assert_eq!(calls.get(), 2);
        assert_eq!(
            l,
            QuotaLook::Known {
                total: 100,
                used: 100,
                warn: true
            }
        );
    }

    #[tokio::test]
    async fn a_create_that_spent_nothing_gives_its_unit_back() {
        let q = QuotaCache::new();
        let calls = Cell::new(0);
        look(&q, t(0), &calls, Ok(state(2, 0))).await;
        look(&q, t(1), &calls, Ok(state(2, 0))).await;
        // A transient failure: certainly not created.
        let left = q
            .after_create("p", &Err(service("ServiceUnavailable", 503)))
            .await;
        assert_eq!(left, Some(1));
        // A lost answer: maybe created, stays counted.
        let lost = ApiError::Transport {
            action: "CreateCertificateForPackageRequest".into(),
            detail: "reset".into(),
            maybe_sent: true,
        };
        assert_eq!(q.after_create("p", &Err(lost)).await, Some(1));
        assert_eq!(q.after_create("p", &Ok(OrderId(1))).await, Some(1));
    }
}
