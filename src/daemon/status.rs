//! status.json and the status rows the control socket answers with.
use std::time::Duration;

use chrono::Utc;
use tracing::warn;

use super::index::Index;
use super::State;
use crate::config::Config;
use crate::store::{Snapshot, StatusRow};

/// The index's status rows in the config's order (what the loop last saw; for status.json),
/// serialized as they are read rather than copied first.
struct IndexRows<'a> {
    config: &'a Config,
    index: &'a Index,
}

impl IndexRows<'_> {
    fn iter(&self) -> impl Iterator<Item = &StatusRow> {
        self.config
            .certificates
            .iter()
            .filter_map(|c| self.index.get(&c.name).map(|e| &e.row))
    }
}

impl serde::Serialize for IndexRows<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// status.json is rewritten at most this often while steps are running (and at once when idle).
pub(super) const SNAPSHOT_EVERY: Duration = Duration::from_secs(2);

impl State {
    /// Status rows read from the store (exact, for the control socket).
    pub(super) fn rows(&self) -> Vec<StatusRow> {
        self.config
            .certificates
            .iter()
            .map(|c| {
                let mut row = super::cas_pass::row_of(&self.cas, &self.record(c));
                self.fleet_row(&mut row);
                row
            })
            .collect()
    }

    /// Fleet mode: a certificate this host does not own says so (its local mirror is stale or
    /// empty; the owner's view is in the FLEET table).
    pub(super) fn fleet_row(&self, _row: &mut StatusRow) {
        #[cfg(feature = "fleet")]
        if let Some(f) = &self.fleet {
            if !f.records.owns(&_row.name) && !f.records.is_awaiting_pass(&_row.name) {
                _row.next_action =
                    "another host orders it; this host deploys what it publishes".into();
                _row.next_due = chrono::DateTime::<Utc>::MAX_UTC;
            }
        }
    }

    pub(super) fn snapshot_pending(&self) -> bool {
        self.snapshot_dirty
    }

    /// Writes status.json when something changed: at once when no step runs, otherwise at most
    /// every [`SNAPSHOT_EVERY`] (each write is O(N)).
    pub(super) fn maybe_snapshot(&mut self) {
        if !self.snapshot_dirty {
            return;
        }
        let recent = self
            .last_snapshot
            .is_some_and(|l| l.elapsed() < SNAPSHOT_EVERY);
        if recent && !self.running.is_empty() {
            return;
        }
        self.snapshot();
    }

    pub(super) fn snapshot(&mut self) {
        self.snapshot_dirty = false;
        self.last_snapshot = Some(std::time::Instant::now());
        let rows = IndexRows {
            config: &self.config,
            index: &self.index,
        };
        let now = Utc::now();
        let (mut count, mut due) = (0, 0);
        let mut next = None::<chrono::DateTime<Utc>>;
        for r in rows.iter() {
            count += 1;
            if r.next_due <= now {
                due += 1;
            } else if next.is_none_or(|t| r.next_due < t) {
                next = Some(r.next_due);
            }
        }
        let line = format!(
            "{} certificates, {} due, next check {}",
            count,
            due,
            next.map(|t| t.format("%H:%M").to_string())
                .unwrap_or_else(|| "-".into())
        );
        self.services.notifier.status(&line);
        let snap = Snapshot {
            written_at: now,
            daemon_pid: Some(std::process::id()),
            certificates: rows,
        };
        if let Err(e) = self.store.write_snapshot(&snap) {
            warn!(error = %e, "cannot write status.json");
        }
    }
}
