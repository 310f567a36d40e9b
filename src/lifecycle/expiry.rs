//! Expiry warnings (`cert.expiring`): whether a deployed certificate close to expiry, whose
//! renewal has not succeeded, is to be announced now, and at which level. Pure: the daemon
//! gives the facts and keeps the memory of the last warning (in process, see
//! docs/configuration.md `expiry_warn`).
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// Under this much time left (or expired) the warning is an error.
pub const ERROR_UNDER: TimeDelta = TimeDelta::days(3);
/// A certificate is announced at most once in this long, unless its level rises.
pub const REPEAT_AFTER: TimeDelta = TimeDelta::days(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Warn,
    Error,
}

/// What the certificate's record says now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The deployed certificate's end; `None` when nothing is deployed.
    pub not_after: Option<DateTime<Utc>>,
    /// True while the certificate only waits for its scheduled renewal time (deployed, nothing
    /// in flight, no failure): not warned, since nothing has failed yet.
    pub waiting_for_renewal_time: bool,
}

/// The last warning given for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warned {
    pub at: DateTime<Utc>,
    pub level: Level,
    /// Of the certificate warned about: a newly deployed one starts afresh.
    pub not_after: DateTime<Utc>,
}

/// A warning to give now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warning {
    pub level: Level,
    /// Whole days left, negative once expired.
    pub days_left: i64,
    pub not_after: DateTime<Utc>,
}

impl Warning {
    /// What to remember of it.
    pub fn warned(&self, at: DateTime<Utc>) -> Warned {
        Warned {
            at,
            level: self.level,
            not_after: self.not_after,
        }
    }
}

/// The warning due at `now`, if any: less than `warn_before` left (zero: never) on a deployed
/// certificate whose renewal is due, failing or in flight; at most once per [`REPEAT_AFTER`]
/// per deployed certificate, unless the level rose to error since.
pub fn due(
    now: DateTime<Utc>,
    facts: Facts,
    warn_before: Duration,
    last: Option<Warned>,
) -> Option<Warning> {
    let not_after = facts.not_after?;
    if warn_before.is_zero() || facts.waiting_for_renewal_time {
        return None;
    }
    let left = not_after - now;
    let warn_before = TimeDelta::from_std(warn_before).unwrap_or(TimeDelta::MAX);
    if left >= warn_before {
        return None;
    }
    let level = if left < ERROR_UNDER {
        Level::Error
    } else {
        Level::Warn
    };
    if let Some(l) = last {
        let same_cert = l.not_after == not_after;
        if same_cert && now - l.at < REPEAT_AFTER && level <= l.level {
            return None;
        }
    }
    Some(Warning {
        level,
        days_left: left.num_days(),
        not_after,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);
    const WARN: Duration = Duration::from_secs(14 * 86_400);

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn failing(left: TimeDelta) -> Facts {
        Facts {
            not_after: Some(t0() + left),
            waiting_for_renewal_time: false,
        }
    }

    #[test]
    fn warns_only_inside_the_window() {
        assert_eq!(due(t0(), failing(TimeDelta::days(15)), WARN, None), None);
        assert_eq!(due(t0(), failing(TimeDelta::days(14)), WARN, None), None);
        let w = due(
            t0(),
            failing(TimeDelta::days(14) - TimeDelta::seconds(1)),
            WARN,
            None,
        );
        assert_eq!(
            w,
            Some(Warning {
                level: Level::Warn,
                days_left: 13,
                not_after: t0() + TimeDelta::days(14) - TimeDelta::seconds(1),
            })
        );
    }

    #[test]
    fn the_level_is_error_under_three_days_and_once_expired() {
        let lvl = |left| due(t0(), failing(left), WARN, None).unwrap().level;
        assert_eq!(lvl(TimeDelta::days(3)), Level::Warn);
        assert_eq!(
            lvl(TimeDelta::days(3) - TimeDelta::seconds(1)),
            Level::Error
        );
        assert_eq!(lvl(TimeDelta::zero()), Level::Error);
        let expired = due(t0(), failing(-TimeDelta::hours(25)), WARN, None).unwrap();
        assert_eq!((expired.level, expired.days_left), (Level::Error, -1));
    }

    #[test]
    fn nothing_deployed_off_or_waiting_for_the_renewal_time_is_never_warned() {
        let left = TimeDelta::days(1);
        assert_eq!(due(t0(), failing(left), Duration::ZERO, None), None);
        let none = Facts {
            not_after: None,
            waiting_for_renewal_time: false,
        };
        assert_eq!(due(t0(), none, WARN, None), None);
        let waiting = Facts {
            waiting_for_renewal_time: true,
            ..failing(left)
        };
        assert_eq!(due(t0(), waiting, WARN, None), None);
    }

    #[test]
    fn once_a_day_unless_the_level_rises_or_another_certificate_is_deployed() {
        let f = failing(TimeDelta::days(10));
        let first = due(t0(), f, WARN, None).unwrap();
        let last = Some(first.warned(t0()));
        let later = |d: TimeDelta| due(t0() + d, f, WARN, last);
        assert_eq!(later(TimeDelta::zero()), None);
        assert_eq!(later(TimeDelta::hours(23)), None);
        assert_eq!(
            later(TimeDelta::days(1) - TimeDelta::seconds(1)),
            None,
            "within the day"
        );
        assert_eq!(later(TimeDelta::days(1)).unwrap().level, Level::Warn);
        // Under three days since the warning: an error at once.
        let worse = failing(TimeDelta::days(2));
        let w = Warned {
            not_after: worse.not_after.unwrap(),
            ..first.warned(t0())
        };
        assert_eq!(
            due(t0() + TimeDelta::hours(1), worse, WARN, Some(w))
                .unwrap()
                .level,
            Level::Error
        );
        // An error is not repeated within the day, nor lowered to a warning.
        let e = Warned {
            level: Level::Error,
            ..first.warned(t0())
        };
        assert_eq!(due(t0() + TimeDelta::hours(1), f, WARN, Some(e)), None);
        // A newly deployed certificate, also failing to renew: its own warning at once.
        let other = Warned {
            not_after: t0() + TimeDelta::days(11),
            ..first.warned(t0())
        };
        assert!(due(t0(), f, WARN, Some(other)).is_some());
    }

    #[test]
    fn a_huge_window_is_not_an_overflow() {
        let w = due(t0(), failing(TimeDelta::days(400)), DAY * 100_000_000, None);
        assert_eq!(w.unwrap().level, Level::Warn);
    }
}
