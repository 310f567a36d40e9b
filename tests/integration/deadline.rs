//! The validation deadline end to end: the real daemon against the simulator, with a FILE proof
//! the simulator cannot reach, so its order stays in domain_verify.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::world::{status_json, wait_for, World, KEY_ID, KEY_SECRET};
use crate::support::{bin, free_port};

/// The JSON log lines of `event`.
fn events(log: &Path, event: &str) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == event)
        .collect()
}

/// How many units of the product CAS counts as used (`cas-certd package`).
fn used(cfg: &Path, product: &str) -> i64 {
    let out = Command::new(bin())
        .arg("--config")
        .arg(cfg)
        .args(["package", "--product", product, "--json"])
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = v.as_array().and_then(|a| a.first()).unwrap_or(&v).clone();
    v["used_count"].as_i64().unwrap_or_else(|| panic!("{v}"))
}

#[test]
fn an_order_not_validated_in_time_is_cancelled_deleted_and_retried_after_backoff() {
    // The simulator fetches dead.example.test's proof from a port nobody listens on.
    let dead = format!("dead.example.test=127.0.0.1:{}", free_port());
    let w = World::new(&["--resolve", &dead]);
    let cert = format!(
        "{}validation_timeout = \"5s\"\n",
        w.file_cert("dead", "\"dead.example.test\"")
    );
    let cfg = w.config(&cert);
    let log = w.p("daemon.log");
    let _d = w.daemon(&cfg, "daemon.log");

    wait_for("the order", Duration::from_secs(40), || {
        w.orders_for("dead.example.test") == 1
    });
    assert_eq!(used(&cfg, "symantec-free-1-free"), 1);
    wait_for(
        "the order cancelled and deleted",
        Duration::from_secs(40),
        || w.has_deleted_order("dead.example.test"),
    );
    let deleted_at = Instant::now();
    // The refund: CAS counts the unit as unused again, and the ledger shows the cancel and the
    // delete of that order.
    assert_eq!(used(&cfg, "symantec-free-1-free"), 0);
    let calls = w.ledger()["calls"].to_string();
    assert!(
        calls.contains("CancelOrderRequest") && calls.contains("DeleteCertificateRequest"),
        "{calls}"
    );

    let timeouts = events(&log, "cert.validation_timeout");
    assert_eq!(timeouts.len(), 1, "{timeouts:?}");
    let e = &timeouts[0];
    assert_eq!(e["level"], "WARN");
    assert_eq!(e["cert"], "dead");
    assert_eq!(e["validation_timeout"], "5s");
    assert!(
        e["order_id"].is_string() || e["order_id"].is_number(),
        "{e}"
    );
    // The attempt failed with the reason, and the retry waits the failure backoff (a minute).
    let failed = events(&log, "cert.renew_failed");
    let f = failed
        .iter()
        .find(|f| {
            f["error"]
                .as_str()
                .is_some_and(|s| s.contains("validation_timeout (5s)"))
        })
        .unwrap_or_else(|| panic!("{failed:?}"));
    // Logged as chrono displays it: "2026-12-02 10:13:28.982833038 UTC".
    let retry_at = f["retry_at"].as_str().unwrap().trim_end_matches(" UTC");
    let retry_at = chrono::NaiveDateTime::parse_from_str(retry_at, "%Y-%m-%d %H:%M:%S%.f")
        .unwrap()
        .and_utc();
    let wait = retry_at - chrono::Utc::now();
    assert!(
        wait > chrono::TimeDelta::seconds(45),
        "retry in {wait}, not after the backoff"
    );
    let st = status_json(&cfg);
    assert_eq!(st[0]["state"], "failed", "{st}");
    assert!(
        st[0]["last_error"]
            .as_str()
            .is_some_and(|s| s.contains("not validated within validation_timeout")),
        "{st}"
    );
    // The proof is gone from the webroot.
    assert!(!w
        .p("webroot/.well-known/pki-validation/fileauth.txt")
        .exists());

    // Then a retry, on its own: a second order, no sooner than the backoff.
    wait_for("the retry's order", Duration::from_secs(120), || {
        w.orders_for("dead.example.test") == 2
    });
    assert!(
        deleted_at.elapsed() > Duration::from_secs(40),
        "retried after {:?}",
        deleted_at.elapsed()
    );
}
