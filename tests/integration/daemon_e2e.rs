//! End to end: the real `cas-certd run` against `cas-certd simulate`, both as separate
//! processes on loopback, with a real webroot HTTP server for FILE proofs. The simulator's
//! ledger (`/_sim/ledger`) is the witness for "never pays twice".
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::bin;

use crate::support::world::*;

#[test]
fn issues_and_deploys_by_file_alidns_and_wildcard_and_status_works_while_running() {
    let w = World::new(&[]);
    let certs = format!(
        "{}{}[[certificate]]\nname = \"wild\"\ndomains = [\"*.example.test\"]\nvalidation = {{ method = \"alidns\" }}\n",
        w.file_cert("www", "\"www.example.test\", \"example.test\""),
        w.file_cert("api", "\"api.example.test\""),
    );
    let cfg = w.config(&certs);
    let _d = w.daemon(&cfg, "daemon.log");
    wait_for("three deployments", Duration::from_secs(60), || {
        ["www", "api", "wild"]
            .iter()
            .all(|n| w.live(n, "cert.pem").exists())
    });
    for n in ["www", "api", "wild"] {
        assert_key_matches_and_private(&w, n);
    }
    let sans = openssl(&[
        "x509",
        "-in",
        w.live("wild", "cert.pem").to_str().unwrap(),
        "-noout",
        "-ext",
        "subjectAltName",
    ]);
    assert!(sans.contains("*.example.test"), "{sans}");
    // status answers while the daemon holds the store.
    let st = status_json(&cfg);
    let rows = st.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    wait_for("deployed state", Duration::from_secs(10), || {
        status_json(&cfg)
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "deployed")
    });
    // The reload hook ran with the certificate's name.
    wait_for("reload hook", Duration::from_secs(20), || {
        std::fs::read_to_string(w.p("hook.log")).is_ok_and(|s| s.contains("reload "))
    });
    // Exactly one order per certificate.
    assert_eq!(w.orders_for("www.example.test"), 1);
    assert_eq!(w.orders_for("api.example.test"), 1);
    assert_eq!(w.orders_for("*.example.test"), 1);
    // No secret and no private key in the logs.
    let log = std::fs::read_to_string(w.p("daemon.log")).unwrap();
    assert!(log.contains("cert.deployed"), "events are logged");
    assert!(!log.contains(KEY_SECRET), "secret in log");
    assert!(!log.contains("PRIVATE KEY"), "key in log");
}

#[test]
fn renews_a_near_expiry_certificate_exactly_once() {
    let w = World::new(&["--first-cert-lifetime", "20s"]);
    let cfg = w.config(&w.file_cert("short", "\"short.example.test\""));
    let _d = w.daemon(&cfg, "daemon.log");
    wait_for("first deployment", Duration::from_secs(40), || {
        w.live("short", "cert.pem").exists()
    });
    let first = std::fs::read_to_string(w.live("short", "cert.pem")).unwrap();
    wait_for("renewal", Duration::from_secs(60), || {
        std::fs::read_to_string(w.live("short", "cert.pem")).is_ok_and(|c| c != first)
    });
    assert_key_matches_and_private(&w, "short");
    // The renewed certificate is long-lived: no further order follows.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(w.orders_for("short.example.test"), 2);
}

#[test]
fn kill_9_mid_order_and_restart_makes_no_second_order() {
    // A slow CA so the daemon is certainly killed between create and issuance.
    let w = World::new(&["--validation-delay", "6s"]);
    let cfg = w.config(&w.file_cert("crash", "\"crash.example.test\""));
    let mut d = w.daemon(&cfg, "daemon.log");
    wait_for("the order", Duration::from_secs(30), || {
        w.orders_for("crash.example.test") == 1
    });
    // SIGKILL: no chance to flush anything more.
    d.0.kill().unwrap();
    d.0.wait().unwrap();
    assert!(!w.live("crash", "cert.pem").exists());
    let _d2 = w.daemon(&cfg, "daemon2.log");
    wait_for("deployment after restart", Duration::from_secs(60), || {
        w.live("crash", "cert.pem").exists()
    });
    assert_eq!(
        w.orders_for("crash.example.test"),
        1,
        "a second order was created"
    );
    assert_key_matches_and_private(&w, "crash");
    let _ = w.web;
}

#[test]
fn sighup_adds_and_removes_certificates_and_a_bad_file_keeps_the_old_config() {
    // A slow CA: the removed certificate's order is still unfinished when it is removed.
    let w = World::new(&["--validation-delay", "5s"]);
    let cfg = w.config(&w.file_cert("a", "\"a.example.test\""));
    let d = w.daemon(&cfg, "daemon.log");
    let pid = d.0.id().to_string();
    wait_for("order for a", Duration::from_secs(30), || {
        w.orders_for("a.example.test") == 1
    });
    // Replace a by b.
    w.config(&w.file_cert("b", "\"b.example.test\""));
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_for("b deployed", Duration::from_secs(60), || {
        w.live("b", "cert.pem").exists()
    });
    // a's unfinished order was cancelled and deleted (quota back).
    // a's unfinished order was cancelled and deleted (quota back): it is gone from the
    // simulator's books or marked deleted.
    wait_for("a's order deleted", Duration::from_secs(20), || {
        !w.ledger()["orders"].as_array().unwrap().iter().any(|o| {
            o["domains"][0] == "a.example.test"
                && !o["state"]
                    .as_str()
                    .is_some_and(|s| s.to_ascii_lowercase().contains("delet"))
        })
    });
    // An invalid file is refused with a reason; b keeps being managed.
    std::fs::write(&cfg, "state_dir = 42\n").unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_for("reload_failed logged", Duration::from_secs(10), || {
        std::fs::read_to_string(w.p("daemon.log")).is_ok_and(|s| s.contains("config.reload_failed"))
    });
    let st = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(w.p("state/status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(st["certificates"][0]["name"], "b");
    drop(d);
}

#[test]
fn sigterm_exits_promptly_and_status_falls_back_to_the_snapshot() {
    let w = World::new(&[]);
    let cfg = w.config(&w.file_cert("t", "\"t.example.test\""));
    let mut d = w.daemon(&cfg, "daemon.log");
    wait_for("deployment", Duration::from_secs(40), || {
        w.live("t", "cert.pem").exists()
    });
    let t0 = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &d.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = d.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    // No daemon: status reads the store.
    let st = status_json(&cfg);
    assert_eq!(st[0]["name"], "t");
    assert_eq!(st[0]["state"], "deployed");
}

#[test]
fn verify_fail_deletes_the_order_records_why_and_leaves_other_certificates_alone() {
    let w = World::new(&["--reject", "bad.example.test"]);
    let certs = format!(
        "{}{}",
        w.file_cert("bad", "\"bad.example.test\""),
        w.file_cert("good", "\"good.example.test\"")
    );
    let cfg = w.config(&certs);
    let _d = w.daemon(&cfg, "daemon.log");
    wait_for(
        "bad's order deleted (quota back)",
        Duration::from_secs(40),
        || w.has_deleted_order("bad.example.test"),
    );
    wait_for("good deployed", Duration::from_secs(40), || {
        w.live("good", "cert.pem").exists()
    });
    let st = status_json(&cfg);
    let bad = st
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "bad")
        .unwrap()
        .clone();
    assert_eq!(bad["state"], "failed", "{bad}");
    assert!(
        bad["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("verification failed")),
        "{bad}"
    );
    assert!(!w.live("bad", "cert.pem").exists());
    // Retried later with backoff, not in a loop: still one order.
    assert_eq!(w.orders_for("bad.example.test"), 1);
    let log = std::fs::read_to_string(w.p("daemon.log")).unwrap();
    assert!(log.contains("cert.verify_failed"));
}

#[test]
fn check_reports_quota_and_renew_force_reorders_while_running() {
    let w = World::new(&[]);
    let cfg = w.config(&w.file_cert("r", "\"r.example.test\""));
    let out = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .arg("check")
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("symantec-free-1-free:") && stdout.contains("left"),
        "{stdout}"
    );

    let _d = w.daemon(&cfg, "daemon.log");
    wait_for("deployment", Duration::from_secs(40), || {
        w.live("r", "cert.pem").exists()
    });
    let first = std::fs::read_to_string(w.live("r", "cert.pem")).unwrap();
    let out = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .args(["renew", "r", "--force"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_for("forced renewal deployed", Duration::from_secs(40), || {
        std::fs::read_to_string(w.live("r", "cert.pem")).is_ok_and(|c| c != first)
    });
    assert_eq!(w.orders_for("r.example.test"), 2);
    assert_key_matches_and_private(&w, "r");
    // An unknown name is refused.
    let out = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .args(["renew", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// A renewal whose validation fails keeps the deployed certificate, gives the quota back, and
/// is retried later by itself; once validation passes again the new certificate is deployed.
#[test]
fn a_failed_renewal_keeps_the_old_certificate_and_is_retried() {
    let mut w = World::new(&[]);
    let cfg = w.config(&w.file_cert("v", "\"v.example.test\""));
    let _d = w.daemon(&cfg, "daemon.log");
    wait_for("first deployment", Duration::from_secs(40), || {
        w.live("v", "cert.pem").exists()
    });
    let first = std::fs::read_to_string(w.live("v", "cert.pem")).unwrap();
    // The CA now refuses the domain; ask for a renewal.
    w.restart_sim(&["--reject", "v.example.test"]);
    let out = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .args(["renew", "v", "--force"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_for(
        "the failed renewal's order deleted",
        Duration::from_secs(40),
        || w.has_deleted_order("v.example.test"),
    );
    // The old pair is still what readers get, intact.
    assert_eq!(
        std::fs::read_to_string(w.live("v", "cert.pem")).unwrap(),
        first
    );
    assert_key_matches_and_private(&w, "v");
    let log = std::fs::read_to_string(w.p("daemon.log")).unwrap();
    assert!(
        log.contains("cert.verify_failed"),
        "no cert.verify_failed event"
    );
    // Alerts key on how long the live certificate has left (README's events table).
    assert!(
        log.lines()
            .any(|l| l.contains("cert.renew_failed") && l.contains("\"days_left\":")),
        "cert.renew_failed without days_left"
    );
    // The CA accepts the domain again: the daemon retries on its own (backoff), no operator.
    w.restart_sim(&[]);
    wait_for(
        "the retried renewal deployed",
        Duration::from_secs(150),
        || std::fs::read_to_string(w.live("v", "cert.pem")).is_ok_and(|c| c != first),
    );
    assert_key_matches_and_private(&w, "v");
    // First order, the failed one (deleted), the retry: nothing more.
    assert_eq!(w.orders_for("v.example.test"), 3);
}
