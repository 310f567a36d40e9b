//! The argv notifier: `[notify] command`, run like a reload hook (no shell, an empty
//! environment plus the event's `CAS_CERTD_EVENT*` variables, a timeout that kills its process
//! group, output capped and redacted), with the event as JSON on stdin.

use super::message::Alert;
use crate::config::Hook;
use crate::hook::{run_with_input, HookError};

/// Runs `hook` once for `alert`.
pub async fn run(hook: &Hook, alert: &Alert, host: &str) -> Result<(), HookError> {
    let mut json = serde_json::to_vec(&alert.json(host)).unwrap_or_default();
    json.push(b'\n');
    run_with_input(hook, &alert.env(host), Some(json))
        .await
        .map(|_| ())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn alert() -> Alert {
        Alert {
            event: "cert.renew_failed".into(),
            level: "WARN".into(),
            time: chrono::Utc::now(),
            message: "attempt failed".into(),
            fields: vec![("cert".into(), "www".into())],
            suppressed: 0,
        }
    }

    #[tokio::test]
    async fn the_event_arrives_on_stdin_and_in_the_environment() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let script = format!("cat > {0}.json; env > {0}.env", out.display());
        let hook = Hook {
            argv: vec!["sh".into(), "-c".into(), script],
            timeout: Duration::from_secs(10),
            pass_env: vec![],
        };
        run(&hook, &alert(), "h1").await.unwrap();
        let j: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join("out.json")).unwrap()).unwrap();
        assert_eq!(j["event"], "cert.renew_failed");
        assert_eq!(j["cert"], "www");
        let env = std::fs::read_to_string(d.path().join("out.env")).unwrap();
        assert!(
            env.lines()
                .any(|l| l == "CAS_CERTD_EVENT=cert.renew_failed"),
            "{env}"
        );
        assert!(
            env.lines().any(|l| l == "CAS_CERTD_EVENT_CERT=www"),
            "{env}"
        );
        assert!(
            !env.contains("CARGO"),
            "the daemon's environment leaked: {env}"
        );
    }

    #[tokio::test]
    async fn a_hanging_command_is_killed_with_its_process_group() {
        let d = tempfile::tempdir().unwrap();
        let pidfile = d.path().join("pid");
        let hook = Hook {
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
            ],
            timeout: Duration::from_millis(500),
            pass_env: vec![],
        };
        let e = run(&hook, &alert(), "h").await.unwrap_err();
        assert!(matches!(e, HookError::Timeout { .. }), "{e:?}");
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        // The grandchild (sleep) went with the group.
        std::thread::sleep(Duration::from_millis(200));
        let alive = std::path::Path::new(&format!("/proc/{}", pid.trim())).exists()
            && !std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
                .unwrap_or_default()
                .contains(") Z ");
        assert!(!alive, "sleep {pid} survived");
    }
}
