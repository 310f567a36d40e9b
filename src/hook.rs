//! Running hooks: argv without a shell, env vars, a timeout that kills the whole process group,
//! captured output capped in size.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::config::Hook;

/// Output kept per run (the last bytes); the rest is read and dropped so the child never
/// blocks on a full pipe.
pub const OUTPUT_CAP: usize = 64 * 1024;
/// How much of the output a failure message carries.
const TAIL: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("hook {argv0:?} could not start: {source}")]
    Spawn {
        argv0: String,
        source: std::io::Error,
    },
    #[error("hook {argv0:?} timed out after {secs}s and was killed")]
    Timeout { argv0: String, secs: u64 },
    #[error("hook {argv0:?} exited with {status}: {output_tail}")]
    Failed {
        argv0: String,
        status: String,
        output_tail: String,
    },
}

/// What a successful hook printed (stdout and stderr interleaved, capped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookOutput {
    pub output: String,
    pub truncated: bool,
}

#[derive(Default)]
struct Captured {
    buf: Vec<u8>,
    truncated: bool,
}

async fn drain(mut r: impl AsyncRead + Unpin, into: Arc<Mutex<Captured>>) {
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let Ok(mut c) = into.lock() else { return };
                // Keep the last OUTPUT_CAP bytes: the end is where programs say what went wrong.
                c.buf.extend_from_slice(&chunk[..n]);
                if c.buf.len() > OUTPUT_CAP {
                    let excess = c.buf.len() - OUTPUT_CAP;
                    c.buf.drain(..excess);
                    c.truncated = true;
                }
            }
        }
    }
}

/// SIGKILL to every process in the group led by `pgid` (the hook and anything it started).
#[allow(unsafe_code)]
fn kill_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return; // never signal "all processes" or init by accident
    }
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid addresses the process
    // group we created with process_group(0), so only the hook and its descendants are hit.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// The reload hook's environment for one deployed certificate: `CERT_NAME`, `CERT_DOMAINS`
/// (space separated), `CERT_PATH`, `CHAIN_PATH`, `FULLCHAIN_PATH`, `KEY_PATH` (stable paths).
pub fn reload_env(
    name: &str,
    domains: &[String],
    deployed: &crate::deploy::Deployed,
) -> Vec<(String, String)> {
    let p = |p: &std::path::Path| p.display().to_string();
    vec![
        ("CERT_NAME".into(), name.to_string()),
        ("CERT_DOMAINS".into(), domains.join(" ")),
        ("CERT_PATH".into(), p(&deployed.cert)),
        ("CHAIN_PATH".into(), p(&deployed.chain)),
        ("FULLCHAIN_PATH".into(), p(&deployed.fullchain)),
        ("KEY_PATH".into(), p(&deployed.key)),
    ]
}

/// Runs `hook` with `env` added to the daemon's environment.
pub async fn run(hook: &Hook, env: &[(String, String)]) -> Result<HookOutput, HookError> {
    let argv0 = hook.argv.first().cloned().unwrap_or_default();
    let mut cmd = Command::new(&argv0);
    cmd.args(hook.argv.iter().skip(1))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        argv0: argv0.clone(),
        source,
    })?;
    let pid = child.id();
    let captured = Arc::new(Mutex::new(Captured::default()));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(drain(out, captured.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(drain(err, captured.clone())));
    }
    let started = Instant::now();
    let status = match tokio::time::timeout(hook.timeout, child.wait()).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => {
            if let Some(p) = pid {
                kill_group(p);
            }
            return Err(HookError::Spawn { argv0, source });
        }
        Err(_) => {
            if let Some(p) = pid {
                kill_group(p);
            }
            let _ = child.wait().await;
            for r in readers {
                r.abort();
            }
            return Err(HookError::Timeout {
                argv0,
                secs: hook.timeout.as_secs(),
            });
        }
    };
    // Descendants left running may hold the pipes open: wait for them only within the budget.
    let left = hook.timeout.saturating_sub(started.elapsed());
    for r in readers {
        let abort = r.abort_handle();
        if tokio::time::timeout(left, r).await.is_err() {
            abort.abort();
        }
    }
    let (text, truncated) = match captured.lock() {
        Ok(c) => (String::from_utf8_lossy(&c.buf).into_owned(), c.truncated),
        Err(_) => (String::new(), false),
    };
    if status.success() {
        Ok(HookOutput {
            output: text,
            truncated,
        })
    } else {
        let start = text.len().saturating_sub(TAIL);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        Err(HookError::Failed {
            argv0,
            status: status.to_string(),
            output_tail: text[start..].trim_end().to_string(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hook(argv: &[&str], secs: u64) -> Hook {
        Hook {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_secs(secs),
        }
    }

    #[tokio::test]
    async fn output_and_env() {
        let out = run(
            &hook(&["sh", "-c", "echo out $CERT_NAME; echo err >&2"], 10),
            &[("CERT_NAME".into(), "www".into())],
        )
        .await
        .unwrap();
        assert!(out.output.contains("out www"), "{out:?}");
        assert!(out.output.contains("err"), "{out:?}");
        assert!(!out.truncated);
    }

    #[tokio::test]
    async fn children_start_from_an_empty_environment() {
        // The test process has cargo's variables (and whatever the shell had): none may pass.
        let out = run(
            &hook(&["sh", "-c", "env"], 10),
            &[("CERT_NAME".into(), "www".into())],
        )
        .await
        .unwrap();
        let lines: Vec<&str> = out.output.lines().collect();
        assert!(
            lines.contains(&"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            "{lines:?}"
        );
        assert!(lines.contains(&"CERT_NAME=www"), "{lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("LANG=")), "{lines:?}");
        assert!(
            !lines.iter().any(|l| l.starts_with("CARGO") || l.starts_with("HOME=")),
            "inherited: {lines:?}"
        );
    }

    #[tokio::test]
    async fn failure_carries_status_and_tail() {
        let e = run(&hook(&["sh", "-c", "echo bad thing; exit 3"], 10), &[])
            .await
            .unwrap_err();
        match e {
            HookError::Failed {
                status,
                output_tail,
                ..
            } => {
                assert!(status.contains('3'), "{status}");
                assert_eq!(output_tail, "bad thing");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn missing_program_is_spawn_error() {
        let e = run(&hook(&["/nonexistent/hook"], 10), &[])
            .await
            .unwrap_err();
        assert!(matches!(e, HookError::Spawn { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn megabytes_of_output_are_truncated() {
        let out = run(
            &hook(
                &[
                    "sh",
                    "-c",
                    "head -c 5000000 /dev/zero | tr '\\0' x; echo; echo the end",
                ],
                30,
            ),
            &[],
        )
        .await
        .unwrap();
        assert!(out.truncated);
        assert_eq!(out.output.len(), OUTPUT_CAP);
        assert!(out.output.ends_with("x\nthe end\n"));
    }

    fn alive(pid: &str) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group_including_grandchildren() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 100 & echo $! > {}; sleep 100", pidfile.display());
        let t0 = Instant::now();
        let e = run(&hook(&["sh", "-c", &script], 1), &[])
            .await
            .unwrap_err();
        assert!(matches!(e, HookError::Timeout { secs: 1, .. }), "{e:?}");
        assert!(t0.elapsed() < Duration::from_secs(5));
        let grandchild = std::fs::read_to_string(&pidfile).unwrap();
        let grandchild = grandchild.trim();
        // Give the kernel a moment to reap.
        for _ in 0..50 {
            if !alive(grandchild) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(grandchild), "grandchild {grandchild} survived");
    }
}
