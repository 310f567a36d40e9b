//! Reload hooks: one run per distinct hook once a batch of deployments is over, and the
//! wait before a failed one is retried.
use std::time::Duration;

use chrono::Utc;
use tracing::{error, info};

use super::{State, TaskResult};
use crate::config::{Certificate, Hook};
use crate::lifecycle::schedule;
use crate::store::CertRecord;

impl State {
    /// Once no step is running (the batch is over), runs each distinct reload hook once, with
    /// the environment of the last certificate deployed for it.
    pub(super) fn maybe_run_hooks(&mut self) {
        if !self.running.is_empty() || self.hooks_running > 0 {
            return;
        }
        let now = Utc::now();
        let mut groups: Vec<(Hook, Vec<(Certificate, CertRecord)>)> = Vec::new();
        for c in &self.config.certificates {
            let Some(h) = &c.reload else { continue };
            if !self.index.get(&c.name).is_some_and(|e| e.hook_pending) {
                continue;
            }
            let r = self.record(c);
            if !r.hook_pending {
                continue;
            }
            if self
                .hook_retry
                .get(&c.name)
                .is_some_and(|(_, at)| *at > now)
            {
                continue;
            }
            match groups.iter_mut().find(|(g, _)| g == h) {
                Some((_, v)) => v.push((c.clone(), r)),
                None => groups.push((h.clone(), vec![(c.clone(), r)])),
            }
        }
        for (hook, members) in groups {
            let names: Vec<String> = members.iter().map(|(c, _)| c.name.clone()).collect();
            let Some((last, _)) = members.iter().max_by_key(|(_, r)| r.last_success).cloned()
            else {
                continue;
            };
            let env = crate::hook::reload_env(&self.config.output_dir, &last.name, &last.domains);
            // The attempt this run is, and the wait before the next should it fail (the same
            // rule `finished` applies), so the failure event says when it is retried.
            let attempt = members
                .iter()
                .map(|(_, r)| r.hook_attempt)
                .max()
                .unwrap_or(0)
                + 1;
            let retry_in = hook_backoff(attempt);
            self.hooks_running += 1;
            self.tasks.spawn(async move {
                match crate::hook::run(&hook, &env).await {
                    Ok(out) => {
                        info!(event = "hook.ok", cert = %last.name, certs = ?names,
                            output = %log_tail(out.output.trim_end()),
                            truncated = out.truncated, "reload hook ran");
                        TaskResult::Hook { names, ok: true }
                    }
                    Err(e) => {
                        error!(event = "hook.failed", cert = %last.name, certs = ?names,
                            error = %e, attempt, retry_in_secs = retry_in.as_secs(),
                            "reload hook failed; will retry");
                        TaskResult::Hook { names, ok: false }
                    }
                }
            });
        }
    }
}

/// Wait after the `attempt`-th failed run of a reload hook: 10 s, doubling, at most 10 min.
pub(super) fn hook_backoff(attempt: u32) -> Duration {
    schedule::backoff(
        Duration::from_secs(10),
        Duration::from_secs(600),
        attempt.saturating_sub(1),
    )
}

/// How much of a successful hook's output goes into its log line (the run keeps up to
/// [`crate::hook::OUTPUT_CAP`]; a log line need not carry all of it).
const HOOK_LOG_TAIL: usize = 4096;

/// The last [`HOOK_LOG_TAIL`] bytes of `s`, cut at a character boundary, marked when cut.
fn log_tail(s: &str) -> String {
    if s.len() <= HOOK_LOG_TAIL {
        return s.to_string();
    }
    let start = (s.len() - HOOK_LOG_TAIL..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    format!("[…] {}", &s[start..])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hook_backoff_doubles_from_10s_to_10min_and_log_tail_cuts() {
        assert_eq!(hook_backoff(1), Duration::from_secs(10));
        assert_eq!(hook_backoff(2), Duration::from_secs(20));
        assert_eq!(hook_backoff(3), Duration::from_secs(40));
        assert_eq!(hook_backoff(50), Duration::from_secs(600));
        assert_eq!(log_tail("short"), "short");
        let long = "é".repeat(10_000);
        let t = log_tail(&long);
        assert!(
            t.starts_with("[…] ") && t.len() <= HOOK_LOG_TAIL + 8,
            "{}",
            t.len()
        );
    }
}
