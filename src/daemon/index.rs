//! The in-memory index of the loop: what it needs of each record, ordered by due time.
use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::store::{CertRecord, StatusRow};

/// What the loop needs of one record, kept in memory: reading and decoding every record on
/// every wake-up (each finished step) made the loop O(N²) at thousands of certificates.
/// Refreshed from the store whenever the loop learns that a record changed.
pub(super) struct Entry {
    pub(super) next_due: DateTime<Utc>,
    /// Idle, Deployed or Failed: nothing in flight, so a forced renewal may skip the wait.
    pub(super) resting: bool,
    pub(super) force_renew: bool,
    pub(super) hook_pending: bool,
    pub(super) row: StatusRow,
}

impl Entry {
    pub(super) fn of(r: &CertRecord) -> Entry {
        Entry {
            next_due: r.next_due,
            resting: r.phase.is_resting(),
            force_renew: r.force_renew,
            hook_pending: r.hook_pending,
            row: StatusRow::from_record(r),
        }
    }

    /// Where this certificate sits in the queue: orders in flight first, then those at rest
    /// (new orders, renewals), each by due time (a forced renewal at rest: at once). In-flight
    /// first, because a poll that waits behind thousands of due creates is polled late, and
    /// the time-to-issue the daemon learns would be the queue, not the CA.
    pub(super) fn due_key(&self) -> (bool, DateTime<Utc>) {
        if self.force_renew && self.resting {
            (true, DateTime::<Utc>::MIN_UTC)
        } else {
            (self.resting, self.next_due)
        }
    }
}

/// The entries, and the same certificates ordered by when they are due, so finding the next
/// due ones costs O(log N) rather than a scan of every certificate.
#[derive(Default)]
pub(super) struct Index {
    pub(super) entries: HashMap<String, Entry>,
    pub(super) queue: std::collections::BTreeSet<((bool, DateTime<Utc>), String)>,
}

impl Index {
    pub(super) fn insert(&mut self, name: &str, e: Entry) {
        self.remove(name);
        self.queue.insert((e.due_key(), name.to_string()));
        self.entries.insert(name.to_string(), e);
    }

    pub(super) fn remove(&mut self, name: &str) {
        if let Some(old) = self.entries.remove(name) {
            self.queue.remove(&(old.due_key(), name.to_string()));
        }
    }

    pub(super) fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// One class (in flight, or at rest) by due time, due no later than `until`.
    pub(super) fn class(
        &self,
        rest: bool,
        until: DateTime<Utc>,
    ) -> impl Iterator<Item = (DateTime<Utc>, &String)> {
        use std::ops::Bound::{Excluded, Included};
        let end = until.checked_add_signed(chrono::TimeDelta::nanoseconds(1));
        let end = match end {
            Some(e) => Excluded(((rest, e), String::new())),
            None => Included(((rest, until), String::from(char::MAX))),
        };
        self.queue
            .range((
                Included(((rest, DateTime::<Utc>::MIN_UTC), String::new())),
                end,
            ))
            .map(|((_, at), n)| (*at, n))
    }
}
