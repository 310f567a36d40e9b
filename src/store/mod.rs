//! The persistent state: one sled database under `state_dir`. This is the only module that
//! knows sled trees and keys. Records are stored in the versioned format of `persisted`, so a
//! newer daemon reads what an older one wrote. Also writes `status.json`, a snapshot that
//! `status` reads while the daemon holds sled's lock.
mod persisted;
mod record;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

pub use persisted::RECORD_VERSION;
pub(crate) use persisted::{decode, encode};
pub use record::*;

/// Tree of per-certificate records, keyed by certificate name.
const TREE_CERTS: &str = "certs/v1";
/// Small daemon-wide values (learned timings).
const TREE_META: &str = "meta/v1";
const KEY_ISSUE_EWMA: &str = "issue_ewma_secs";

/// Weight of a new observation in the time-to-issue average.
const EWMA_ALPHA: f64 = 0.3;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("another cas-certd is running with state_dir {0} (the database is locked)")]
    Locked(PathBuf),
    #[error("cannot open the state database in {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("state database: {0}")]
    Db(String),
    #[error("record {name:?} cannot be decoded: {reason}")]
    Decode { name: String, reason: String },
    #[error("record {name:?} has version {v}, newer than this cas-certd understands ({max})")]
    TooNew { name: String, v: u32, max: u32 },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// Fleet mode: the record is not this host's to write any more (the fence refused the
    /// write, or the ownership is gone). Nothing was written. Not a broken store.
    #[error("{name}: not this host's any more: {why}")]
    NotOurs { name: String, why: String },
    /// Fleet mode: the shared store cannot be reached now, or this host may not spend
    /// quota now (its lease is too short). Nothing is known to be written. Not a broken store.
    #[error("record store unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether a step that met this error is dropped (nothing recorded as failed) rather
    /// than failed: what the fleet store says when the record is not, or not now, ours.
    pub fn dropped(&self) -> Option<crate::lifecycle::machine::Dropped> {
        use crate::lifecycle::machine::Dropped;
        match self {
            StoreError::NotOurs { .. } => Some(Dropped::NotOurs),
            StoreError::Unavailable(_) => Some(Dropped::Unavailable),
            _ => None,
        }
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

/// The opened store. Cheap to clone (sled handles are shared).
#[derive(Clone, Debug)]
pub struct Store {
    db: sled::Db,
    certs: sled::Tree,
    meta: sled::Tree,
    dir: PathBuf,
    /// One flush at a time. sled runs each `flush_async` on its small IO thread pool, where
    /// it waits for other IO threads to write the buffers; with more concurrent flushes than
    /// threads every thread waits and nothing writes (the daemon hung for good in a
    /// 10 000-certificate renewal storm). One flush makes everything before it durable, so
    /// waiting for the one in progress and then flushing again loses nothing.
    flush_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// (tickets handed out, highest ticket a finished flush covers), for group commit.
    flush_tickets: std::sync::Arc<(AtomicU64, AtomicU64)>,
}

/// Whether `state_dir` holds a database, without creating or opening anything (read-only
/// commands ask this first: [`Store::open`] creates what is missing).
pub fn exists(state_dir: &Path) -> bool {
    state_dir.join(DB_DIR).exists()
}

/// The sled database's directory under `state_dir`.
const DB_DIR: &str = "db";

impl Store {
    /// Opens (creating 0700) `state_dir/db`. A lock held by another process is reported as such.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        create_private_dir(state_dir)?;
        let db_path = state_dir.join(DB_DIR);
        let db = sled::Config::new()
            .path(&db_path)
            // The records are tiny; keep the resident cache small.
            .cache_capacity(8 * 1024 * 1024)
            .open()
            .map_err(|e| {
                let s = e.to_string();
                if s.contains("could not acquire lock") {
                    StoreError::Locked(state_dir.to_path_buf())
                } else {
                    StoreError::Open {
                        path: db_path.clone(),
                        reason: s,
                    }
                }
            })?;
        let certs = db.open_tree(TREE_CERTS)?;
        let meta = db.open_tree(TREE_META)?;
        Ok(Store {
            db,
            certs,
            meta,
            dir: state_dir.to_path_buf(),
            flush_lock: std::sync::Arc::new(tokio::sync::Mutex::new(())),
            flush_tickets: std::sync::Arc::new((AtomicU64::new(0), AtomicU64::new(0))),
        })
    }

    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    pub fn get(&self, name: &str) -> Result<Option<CertRecord>, StoreError> {
        match self.certs.get(name.as_bytes())? {
            None => Ok(None),
            Some(b) => decode(name, &b).map(Some),
        }
    }

    /// Writes a record (not yet durable: see [`Store::put_durable`]).
    pub fn put(&self, rec: &CertRecord) -> Result<(), StoreError> {
        let bytes = encode(rec)?;
        self.certs.insert(rec.name.as_bytes(), bytes)?;
        Ok(())
    }

    /// Writes a record and flushes: use before any external side effect that depends on it.
    pub async fn put_durable(&self, rec: &CertRecord) -> Result<(), StoreError> {
        self.put(rec)?;
        self.flush().await
    }

    pub async fn flush(&self) -> Result<(), StoreError> {
        // Not `flush_async`: in sled 0.34 concurrent `flush_async` calls deadlock (sled
        // #1241/#1308, fixed only on its unreleased main), which froze the daemon for good when
        // several certificates stepped at once. A blocking flush on the blocking pool, one at a
        // time, is safe. Group commit: a flush that started after our ticket covers our writes,
        // so waiters it covered return without flushing again (a storm costs few fsyncs).
        use std::sync::atomic::Ordering::SeqCst;
        let ticket = self.flush_tickets.0.fetch_add(1, SeqCst) + 1;
        let _one_at_a_time = self.flush_lock.lock().await;
        if self.flush_tickets.1.load(SeqCst) >= ticket {
            return Ok(());
        }
        let covers = self.flush_tickets.0.load(SeqCst);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| StoreError::Db(format!("flush task: {e}")))??;
        self.flush_tickets.1.store(covers, SeqCst);
        Ok(())
    }

    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.certs.remove(name.as_bytes())?;
        Ok(())
    }

    /// The names of every record, without decoding them (cheap at thousands of records).
    pub fn names(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for k in self.certs.iter().keys() {
            out.push(String::from_utf8_lossy(&k?).into_owned());
        }
        Ok(out)
    }

    /// Every record; undecodable ones are returned as errors next to the good ones.
    pub fn list(&self) -> Result<Vec<Result<CertRecord, StoreError>>, StoreError> {
        let mut out = Vec::new();
        for item in self.certs.iter() {
            let (k, v) = item?;
            let name = String::from_utf8_lossy(&k).into_owned();
            out.push(decode(&name, &v));
        }
        Ok(out)
    }

    /// The learned average time from challenge presented to certificate issued, if any.
    pub fn issue_ewma(&self) -> Result<Option<f64>, StoreError> {
        Ok(self
            .meta
            .get(KEY_ISSUE_EWMA)?
            .and_then(|b| std::str::from_utf8(&b).ok()?.parse::<f64>().ok()))
    }

    /// Folds one observed time-to-issue (seconds) into the average.
    pub fn observe_issue_time(&self, secs: f64) -> Result<f64, StoreError> {
        let next = ewma(self.issue_ewma()?, secs);
        self.meta
            .insert(KEY_ISSUE_EWMA, next.to_string().as_bytes())?;
        Ok(next)
    }

    /// Writes `<state_dir>/status.json` atomically (temp file, fsync, rename).
    pub fn write_snapshot<R: serde::Serialize>(
        &self,
        snap: &Snapshot<R>,
    ) -> Result<(), StoreError> {
        let path = self.dir.join("status.json");
        let tmp = self.dir.join(".status.json.tmp");
        // Written as it is serialized: the text of 10 000 rows is never in memory at once.
        write_file_sync(&tmp, |w| {
            serde_json::to_writer_pretty(w, snap).map_err(std::io::Error::other)
        })?;
        std::fs::rename(&tmp, &path).map_err(|source| StoreError::Io {
            op: "rename",
            path: path.clone(),
            source,
        })
    }
}

/// Reads `<state_dir>/status.json` (for `status` when no daemon answers).
pub fn read_snapshot(state_dir: &Path) -> Result<Snapshot, StoreError> {
    let path = state_dir.join("status.json");
    let b = std::fs::read(&path).map_err(|source| StoreError::Io {
        op: "read",
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&b).map_err(|e| StoreError::Decode {
        name: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Exponentially weighted moving average; the first observation is taken as is.
pub fn ewma(prev: Option<f64>, obs: f64) -> f64 {
    match prev {
        None => obs,
        Some(p) => p + EWMA_ALPHA * (obs - p),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true).mode(0o700);
    b.create(dir).map_err(|source| StoreError::Io {
        op: "create directory",
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes `path` (0600) through a buffer with `body`, then fsyncs it.
fn write_file_sync(
    path: &Path,
    body: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> std::io::Result<()>,
) -> Result<(), StoreError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |op, source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io("create", e))?;
    let mut w = std::io::BufWriter::new(&f);
    body(&mut w).map_err(|e| io("write", e))?;
    w.flush().map_err(|e| io("write", e))?;
    drop(w);
    f.sync_all().map_err(|e| io("fsync", e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ewma_starts_with_first_observation_then_moves_toward_new_ones() {
        assert_eq!(ewma(None, 100.0), 100.0);
        let v = ewma(Some(100.0), 200.0);
        assert!((v - 130.0).abs() < 1e-9, "{v}");
    }

    /// More concurrent durable writes than sled has IO threads (the daemon's steps plus a
    /// burst of control requests in a renewal storm) must all finish, not hang (sled
    /// #1241/#1308: concurrent `flush_async` calls deadlock). The writes run
    /// on their own thread and runtime: a hang blocks that runtime's threads inside sled, so
    /// only a timeout outside it can report the failure.
    #[test]
    fn many_concurrent_durable_writes_finish() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = s.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for i in 0..64 {
                    let s = writer.clone();
                    tasks.push(tokio::spawn(async move {
                        for j in 0..20 {
                            let name = format!("c{i}-{j}");
                            let r = CertRecord::new(&name, vec!["example.com".into()]);
                            s.put_durable(&r).await.unwrap();
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            });
            let _ = tx.send(());
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("concurrent durable writes hung (sled flush deadlock)");
        assert_eq!(s.list().unwrap().len(), 64 * 20);
    }

    /// Opens a store this process has just dropped. sled's background IO threads may hold the
    /// database (and its lock) a moment after the last handle is dropped; CI once saw
    /// `Locked` here. Only a process that reopens its own store meets this (tests do).
    fn reopen(dir: &Path) -> Store {
        let t0 = std::time::Instant::now();
        loop {
            match Store::open(dir) {
                Err(StoreError::Locked(_)) if t0.elapsed() < std::time::Duration::from_secs(5) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                r => return r.unwrap(),
            }
        }
    }

    #[tokio::test]
    async fn put_get_list_remove_and_ewma_persist_across_reopen() {
        let d = tempfile::tempdir().unwrap();
        {
            let s = Store::open(d.path()).unwrap();
            let r = CertRecord::new("www", vec!["example.com".into()]);
            s.put_durable(&r).await.unwrap();
            s.observe_issue_time(60.0).unwrap();
            s.flush().await.unwrap();
        }
        let s = reopen(d.path());
        let r = s.get("www").unwrap().unwrap();
        assert_eq!(r.domains, vec!["example.com".to_string()]);
        assert_eq!(s.issue_ewma().unwrap(), Some(60.0));
        assert_eq!(s.list().unwrap().len(), 1);
        s.remove("www").unwrap();
        assert!(s.get("www").unwrap().is_none());
    }

    #[test]
    fn a_second_opener_is_told_another_daemon_runs() {
        let d = tempfile::tempdir().unwrap();
        let _first = Store::open(d.path()).unwrap();
        let e = Store::open(d.path()).unwrap_err();
        assert!(matches!(e, StoreError::Locked(_)), "{e}");
        assert!(
            e.to_string().contains("another cas-certd is running"),
            "{e}"
        );
    }

    #[test]
    fn state_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let sd = d.path().join("state");
        let _s = Store::open(&sd).unwrap();
        let mode = std::fs::metadata(&sd).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn snapshot_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let snap: Snapshot = Snapshot {
            written_at: chrono::Utc::now(),
            daemon_pid: Some(42),
            certificates: vec![],
        };
        s.write_snapshot(&snap).unwrap();
        let back = read_snapshot(d.path()).unwrap();
        assert_eq!(back.daemon_pid, Some(42));
    }

    #[test]
    fn status_json_written_from_any_row_sequence_is_the_vec_form_byte_for_byte() {
        // The daemon streams its rows (no Vec); status.json must read as before.
        struct Rows<'a>(&'a [StatusRow]);
        impl serde::Serialize for Rows<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter())
            }
        }
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let mut r = CertRecord::new("www", vec!["www.example.com".into()]);
        let rows = vec![StatusRow::from_record(&r), {
            r.last_error = Some("boom \"quoted\"".into());
            StatusRow::from_record(&r)
        }];
        let at = chrono::Utc::now();
        let vec_form: Snapshot = Snapshot {
            written_at: at,
            daemon_pid: Some(7),
            certificates: rows.clone(),
        };
        s.write_snapshot(&Snapshot {
            written_at: at,
            daemon_pid: Some(7),
            certificates: Rows(&rows),
        })
        .unwrap();
        let written = std::fs::read(d.path().join("status.json")).unwrap();
        assert_eq!(written, serde_json::to_vec_pretty(&vec_form).unwrap());
        assert_eq!(read_snapshot(d.path()).unwrap(), vec_form);
    }
}
