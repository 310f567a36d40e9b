//! status.json and the status rows the control socket answers with.
use std::time::Duration;

use chrono::Utc;
use tracing::warn;

use super::State;
use crate::store::{Snapshot, StatusRow};

/// status.json is rewritten at most this often while steps are running (and at once when idle).
pub(super) const SNAPSHOT_EVERY: Duration = Duration::from_secs(2);

impl State {
    /// Status rows read from the store (exact, for the control socket).
    pub(super) fn rows(&self) -> Vec<StatusRow> {
        self.config
            .certificates
            .iter()
            .map(|c| StatusRow::from_record(&self.record(c)))
            .collect()
    }

    /// Status rows from the index (what the loop last saw; for status.json).
    pub(super) fn index_rows(&self) -> Vec<StatusRow> {
        self.config
            .certificates
            .iter()
            .filter_map(|c| self.index.get(&c.name).map(|e| e.row.clone()))
            .collect()
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
        let rows = self.index_rows();
        let now = Utc::now();
        let due = rows.iter().filter(|r| r.next_due <= now).count();
        let next = rows.iter().map(|r| r.next_due).filter(|t| *t > now).min();
        let line = format!(
            "{} certificates, {} due, next check {}",
            rows.len(),
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
