//! The reload hook's environment as the daemon really builds it: a hook dumps `env` after a
//! real deploy, and the CERT_* variables must be what docs/configuration.md ("Hook
//! environment") documents. Two builders once disagreed on CERT_DOMAINS (comma vs space).
#![allow(clippy::unwrap_used)]
use std::time::Duration;

use crate::support::world::*;

#[test]
fn the_reload_hook_gets_the_documented_cert_variables() {
    let w = World::new(&[]);
    let dump = w.p("hook-env.txt");
    let cfg = w.config(&format!(
        "{}reload = [\"sh\", \"-c\", \"env | sort > {}\"]\n",
        w.file_cert("two", "\"a.example.test\", \"b.example.test\""),
        dump.display()
    ));
    let _d = w.daemon(&cfg, "daemon.log");
    wait_for("the reload hook ran", Duration::from_secs(30), || {
        std::fs::read_to_string(&dump).is_ok_and(|t| t.contains("CERT_NAME="))
    });
    let env = std::fs::read_to_string(&dump).unwrap();
    let live = |f: &str| w.live("two", f).display().to_string();
    for want in [
        "CERT_NAME=two".to_string(),
        // Space separated, as documented: `for d in $CERT_DOMAINS` splits it.
        "CERT_DOMAINS=a.example.test b.example.test".to_string(),
        format!("CERT_PATH={}", live("cert.pem")),
        format!("CHAIN_PATH={}", live("chain.pem")),
        format!("FULLCHAIN_PATH={}", live("fullchain.pem")),
        format!("KEY_PATH={}", live("privkey.pem")),
    ] {
        assert!(env.lines().any(|l| l == want), "no {want:?} in:\n{env}");
    }
}

/// A reload hook that finishes while the daemon drains on SIGTERM has run: its success is
/// recorded, so the next start does not run it again. (The drain once dropped hook results:
/// every stop during a hook meant a second reload at the next start.)
#[test]
fn a_hook_that_finishes_during_the_drain_is_not_run_again_at_the_next_start() {
    let w = World::new(&[]);
    let started = w.p("hook-started");
    let runs = w.p("hook-runs.log");
    let cfg = w.config(&format!(
        "{}reload = [\"sh\", \"-c\", \"touch {}; sleep 2; echo done >> {}\"]\n",
        w.file_cert("www", "\"drain.example.test\""),
        started.display(),
        runs.display()
    ));
    let mut d = w.daemon(&cfg, "first.log");
    wait_for("the reload hook started", Duration::from_secs(60), || {
        started.exists()
    });
    assert!(sigterm_and_wait(&mut d).success());
    let count = || {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(count(), 1, "the drain waits for the hook to finish");
    let mut d = w.daemon(&cfg, "second.log");
    // Pending hooks run at once after a start; give it several of the 2 s checks.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(count(), 1, "the hook ran again after the restart");
    assert!(sigterm_and_wait(&mut d).success());
}

/// Two certificates with different reload hooks pending together (a daemon killed before
/// either ran, then started again): each hook runs once. (The daemon once marked "no hook
/// running" when the first of the batch's hooks finished, and ran the slower one again while
/// it was still running.)
#[test]
fn each_of_a_batchs_distinct_hooks_runs_once() {
    let w = World::new(&[]);
    let runs = w.p("runs.log");
    let cert = |name: &str, script: &str| {
        format!(
            "[[certificate]]\nname = \"{name}\"\ndomains = [\"{name}.batch.example.test\"]\n\
             validation = {{ method = \"alidns\" }}\n\
             reload = [\"sh\", \"-c\", \"{script}; echo {name} >> {}\"]\n",
            runs.display()
        )
    };
    // First run: the hooks hang, so both stay pending when the daemon is killed.
    let cfg = w.config(&(cert("slow", "sleep 600") + &cert("fast", "sleep 600")));
    let mut d = w.daemon(&cfg, "first.log");
    wait_for("both deployed", Duration::from_secs(60), || {
        w.live("slow", "cert.pem").exists() && w.live("fast", "cert.pem").exists()
    });
    d.0.kill().unwrap();
    d.0.wait().unwrap();
    // The killed daemon's hooks (their shells name this test's log) must not write later.
    let _ = std::process::Command::new("pkill")
        .arg("-f")
        .arg(runs.display().to_string())
        .status();
    let cfg = w.config(&(cert("slow", "sleep 2") + &cert("fast", "true")));
    let _d = w.daemon(&cfg, "daemon.log");
    let lines = || {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    wait_for("both hooks ran", Duration::from_secs(60), || {
        let l = lines();
        l.contains(&"slow".to_string()) && l.contains(&"fast".to_string())
    });
    // Long enough for a second run of the slow hook to finish.
    std::thread::sleep(Duration::from_secs(4));
    let l = lines();
    for name in ["slow", "fast"] {
        let n = l.iter().filter(|x| *x == name).count();
        assert_eq!(n, 1, "{name} ran {n} times: {l:?}");
    }
}
