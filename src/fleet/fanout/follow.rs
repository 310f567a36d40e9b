//! The loop every fan-out watcher runs: read everything under a directory at one revision,
//! in pages (`fanout::read_dir`: a directory of any size), so a host that joins late, or was
//! re-imaged, or lost its watch, catches up without any order; hand it over as a whole, then
//! watch from the next revision. Any watch error (a
//! member gone, a compacted revision) starts over with a fresh read: the handler brings the
//! host to what etcd holds, so a missed event cannot leave it behind. Every
//! [`RESYNC_EVERY`] the watch is renewed the same way, so what failed on this host (a write
//! into a full disk, an acknowledgement etcd did not take) is tried again without a new event.
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};

use super::read_dir;
use crate::fleet::{Fleet, FleetError};

/// How often a watcher reads everything again: one paged read per directory and host.
const RESYNC_EVERY: Duration = Duration::from_secs(300);

/// What a watcher does with what it reads. Names are keys with the directory stripped.
pub(crate) trait Follower {
    /// Everything under the directory now (name, value, etcd version): bring this host to it
    /// (drop what is no longer there).
    async fn resync(&mut self, all: Vec<(String, Vec<u8>, i64)>);
    async fn put(&mut self, name: String, value: Vec<u8>, version: i64);
    async fn delete(&mut self, name: String);
}

/// Follows `dir` for ever (the caller aborts the task to stop it).
pub(crate) async fn follow(fleet: &Fleet, dir: &str, f: &mut impl Follower) {
    let mut pause = Duration::from_millis(200);
    loop {
        match once(fleet, dir, f).await {
            // The watch ended without an error (a member closed it): read again, unhurried.
            Ok(()) => {
                pause = Duration::from_millis(200);
                tokio::time::sleep(pause).await;
            }
            Err(e) => {
                tracing::warn!(event = "fleet.watch_failed", dir = %dir, error = %e,
                    retry_in_ms = pause.as_millis() as u64,
                    "lost the watch on etcd; reading everything again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One read and the watch after it, until the watch ends. The watch starts at the revision
/// after the read's, so nothing between the two is missed nor seen twice.
async fn once(fleet: &Fleet, dir: &str, f: &mut impl Follower) -> Result<(), FleetError> {
    let (rev, all) = read_dir(fleet, dir).await?;
    f.resync(all).await;
    let mut stream = fleet
        .call(|mut c| {
            let dir = dir.to_string();
            async move {
                c.watch(
                    dir,
                    Some(
                        WatchOptions::new()
                            .with_prefix()
                            .with_start_revision(rev + 1),
                    ),
                )
                .await
            }
        })
        .await?;
    let renew = tokio::time::sleep(RESYNC_EVERY);
    tokio::pin!(renew);
    loop {
        let resp = tokio::select! {
            m = stream.message() => match m? {
                Some(resp) => resp,
                None => return Ok(()),
            },
            () = &mut renew => return Ok(()),
        };
        if resp.canceled() {
            return Err(FleetError::Unexpected {
                cert: dir.to_string(),
                what: format!("watch cancelled: {}", resp.cancel_reason()),
            });
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let Some(name) = std::str::from_utf8(kv.key())
                .ok()
                .and_then(|k| k.strip_prefix(dir))
            else {
                continue;
            };
            match ev.event_type() {
                EventType::Put => {
                    f.put(name.to_string(), kv.value().to_vec(), kv.version())
                        .await
                }
                EventType::Delete => f.delete(name.to_string()).await,
            }
        }
    }
}
