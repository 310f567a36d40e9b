//! Quota awareness end to end: the real daemon against the simulator holding two units of the
//! product for three certificates.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::Value;

use crate::support::world::{status_json, wait_for, World};

/// The simulator's ledger entries of `action`.
fn calls(w: &World, action: &str) -> Vec<Value> {
    w.ledger()["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == action)
        .cloned()
        .collect()
}

fn events(w: &World, event: &str) -> Vec<Value> {
    std::fs::read_to_string(w.p("daemon.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == event)
        .collect()
}

fn failed_row(cfg: &std::path::Path) -> Option<Value> {
    status_json(cfg)
        .as_array()?
        .iter()
        .find(|r| r["state"] == "failed")
        .cloned()
}

#[test]
fn with_two_units_for_three_certificates_two_issue_and_the_third_orders_nothing() {
    let w = World::new(&["--quota", "symantec-free-1-free=2"]);
    let certs: String = ["q1", "q2", "q3"]
        .iter()
        .map(|n| w.file_cert(n, &format!("\"{n}.example.test\"")))
        .collect();
    let cfg = w.config(&certs);
    let _d = w.daemon(&cfg, "daemon.log");

    wait_for(
        "two deployed and one failed",
        Duration::from_secs(60),
        || {
            let deployed = ["q1", "q2", "q3"]
                .iter()
                .filter(|n| w.live(n, "cert.pem").exists())
                .count();
            deployed == 2 && failed_row(&cfg).is_some()
        },
    );
    let row = failed_row(&cfg).unwrap();
    assert_eq!(
        row["last_error"], "quota exhausted for symantec-free-1-free (2 of 2 used)",
        "{row}"
    );
    // The ledger holds two creates, both accepted: none was tried past zero (the third's retry
    // waits a minute, and would also find nothing left).
    let creates = calls(&w, "CreateCertificateForPackageRequest");
    assert_eq!(creates.len(), 2, "{creates:?}");
    assert!(creates.iter().all(|c| c["code"] == "OK"), "{creates:?}");
    // One look served all three (the count was low, so it is not asked again within minutes).
    let looks = calls(&w, "DescribePackageState");
    assert_eq!(looks.len(), 1, "{looks:?}");
    let low = events(&w, "quota.low");
    assert_eq!(low.len(), 1, "{low:?}");
    assert_eq!(low[0]["product"], "symantec-free-1-free");
    assert_eq!(low[0]["level"], "WARN");
    let failed: Vec<Value> = events(&w, "cert.renew_failed")
        .into_iter()
        .filter(|e| {
            e["error"]
                .as_str()
                .is_some_and(|s| s.starts_with("quota exhausted"))
        })
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["permanent"], true);
}
