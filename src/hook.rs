//! Running hooks (reload hooks and command validators): argv without a shell, a timeout that
//! kills the whole process group, captured output capped in size and redacted.
//!
//! A hook starts from an empty environment ([`child_env`]): the daemon's holds the AccessKey
//! (`ALIBABA_CLOUD_ACCESS_KEY_SECRET`, `ALIBABA_CLOUD_SECURITY_TOKEN`), and a hook that prints
//! its environment would put it in the log. It gets a fixed PATH, LANG, the documented
//! variables of its kind and only what `hook_env` names.

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
/// The PATH every hook and validator gets, whatever the daemon's is.
pub const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// LANG when the daemon has none.
const DEFAULT_LANG: &str = "C.UTF-8";

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

/// The reload hook's environment for certificate `name` deployed under `output_dir`: `CERT_NAME`,
/// `CERT_DOMAINS` (space separated, so `for d in $CERT_DOMAINS` splits it), `CERT_PATH`,
/// `CHAIN_PATH`, `FULLCHAIN_PATH`, `KEY_PATH` (the stable paths, which follow each deploy).
pub fn reload_env(
    output_dir: &std::path::Path,
    name: &str,
    domains: &[String],
) -> Vec<(String, String)> {
    let dir = output_dir.join(name);
    let p = |f: &str| dir.join(f).display().to_string();
    vec![
        ("CERT_NAME".into(), name.to_string()),
        ("CERT_DOMAINS".into(), domains.join(" ")),
        ("CERT_PATH".into(), p("cert.pem")),
        ("CHAIN_PATH".into(), p("chain.pem")),
        ("FULLCHAIN_PATH".into(), p("fullchain.pem")),
        ("KEY_PATH".into(), p("privkey.pem")),
    ]
}

/// The whole environment of a hook or validator: PATH ([`SAFE_PATH`]), LANG (the daemon's, or
/// C.UTF-8), the variables named in `pass` that the daemon has (`hook_env`), then `vars` (the
/// documented CERT_* / CHALLENGE_* variables, which win over a passed one of the same name).
pub fn child_env(vars: &[(String, String)], pass: &[String]) -> Vec<(String, String)> {
    let mut env = std::collections::BTreeMap::new();
    env.insert("PATH".to_string(), SAFE_PATH.to_string());
    let lang = std::env::var("LANG")
        .ok()
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| DEFAULT_LANG.to_string());
    env.insert("LANG".to_string(), lang);
    for name in pass {
        if let Ok(v) = std::env::var(name) {
            env.insert(name.clone(), v);
        }
    }
    for (k, v) in vars {
        env.insert(k.clone(), v.clone());
    }
    env.into_iter().collect()
}

/// Where `argv0` would be run from, as [`run`] looks it up: a name with a `/` as given, other
/// names in the child's PATH ([`SAFE_PATH`] unless `pass` names PATH). The error says why not.
pub fn find_program(argv0: &str, pass: &[String]) -> Result<std::path::PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &std::path::Path| match std::fs::metadata(p) {
        Ok(m) if !m.is_file() => Err(format!("{} is not a regular file", p.display())),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err(format!(
            "{} is not executable (mode {:04o})",
            p.display(),
            m.permissions().mode() & 0o7777
        )),
        Ok(_) => Ok(p.to_path_buf()),
        Err(e) => Err(format!("{}: {e}", p.display())),
    };
    if argv0.is_empty() {
        return Err("no program given".into());
    }
    if argv0.contains('/') {
        return runnable(std::path::Path::new(argv0));
    }
    let path = child_env(&[], pass)
        .into_iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let mut last = None;
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = std::path::Path::new(dir).join(argv0);
        if candidate.exists() {
            match runnable(&candidate) {
                Ok(p) => return Ok(p),
                Err(e) => last = Some(e),
            }
        }
    }
    Err(last.unwrap_or_else(|| format!("{argv0:?} not found in {path}")))
}

/// Runs `hook` with `env` (see [`child_env`]); what it printed comes back redacted
/// ([`cas_api::secret::redact`]).
pub async fn run(hook: &Hook, env: &[(String, String)]) -> Result<HookOutput, HookError> {
    run_with_input(hook, env, None).await
}

/// [`run`], with `input` on the child's stdin (closed after it; `/dev/null` without).
pub async fn run_with_input(
    hook: &Hook,
    env: &[(String, String)],
    input: Option<Vec<u8>>,
) -> Result<HookOutput, HookError> {
    let argv0 = hook.argv.first().cloned().unwrap_or_default();
    let mut cmd = Command::new(&argv0);
    cmd.args(hook.argv.iter().skip(1))
        .env_clear()
        .envs(child_env(env, &hook.pass_env))
        .stdin(match input {
            Some(_) => std::process::Stdio::piped(),
            None => std::process::Stdio::null(),
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        argv0: argv0.clone(),
        source,
    })?;
    let pid = child.id();
    if let (Some(mut stdin), Some(bytes)) = (child.stdin.take(), input) {
        // Written aside: a child that never reads must not stall us on a full pipe. Dropping
        // the handle closes it, so the child sees the end of its input.
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            let _ = stdin.write_all(&bytes).await;
        });
    }
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
        Ok(c) => (
            cas_api::secret::redact(&String::from_utf8_lossy(&c.buf)),
            c.truncated,
        ),
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
            pass_env: vec![],
        }
    }

    #[test]
    fn reload_env_separates_domains_by_a_space_and_names_the_live_files() {
        let domains = ["example.com".to_string(), "www.example.com".to_string()];
        let env: std::collections::HashMap<_, _> =
            reload_env(std::path::Path::new("/o"), "www", &domains)
                .into_iter()
                .collect();
        assert_eq!(env["CERT_NAME"], "www");
        assert_eq!(env["CERT_DOMAINS"], "example.com www.example.com");
        assert_eq!(env["CERT_PATH"], "/o/www/cert.pem");
        assert_eq!(env["CHAIN_PATH"], "/o/www/chain.pem");
        assert_eq!(env["FULLCHAIN_PATH"], "/o/www/fullchain.pem");
        assert_eq!(env["KEY_PATH"], "/o/www/privkey.pem");
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
            !lines
                .iter()
                .any(|l| l.starts_with("CARGO") || l.starts_with("HOME=")),
            "inherited: {lines:?}"
        );
    }

    #[test]
    fn hook_env_passes_exactly_the_named_variables() {
        let env = child_env(
            &[("CERT_NAME".into(), "www".into())],
            &["PATH".into(), "CAS_CERTD_TEST_SURELY_UNSET".into()],
        );
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["CERT_NAME", "LANG", "PATH"]);
        // PATH named explicitly: the daemon's own replaces the fixed one.
        assert_eq!(env[2].1, std::env::var("PATH").unwrap_or_default());
    }

    #[tokio::test]
    async fn output_is_redacted_on_success_and_failure() {
        cas_api::secret::remember(&cas_api::secret::Secret::new("hook-test-secret-4242"));
        let out = run(
            &hook(&["sh", "-c", "echo s=hook-test-secret-4242"], 10),
            &[],
        )
        .await
        .unwrap();
        assert_eq!(out.output, "s=[redacted]\n");
        let e = run(
            &hook(
                &[
                    "sh",
                    "-c",
                    "printf -- '-----BEGIN PRIVATE KEY-----\\nMIG\\n'; exit 1",
                ],
                10,
            ),
            &[],
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, HookError::Failed { output_tail, .. } if output_tail == "[redacted]"),
            "{e:?}"
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
