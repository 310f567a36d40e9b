//! The daemon in fleet mode: real `cas-certd run` processes with different node names, state
//! and output directories, one real etcd, one simulator; DNS validation (Alidns against the
//! simulator), so no proof fan-out is needed. Each certificate is ordered once fleet-wide,
//! ownership spreads, a killed owner's order is finished by a successor without a second
//! paid order, and an etcd outage orders nothing and is said once. Needs the `fleet` feature.
#![cfg(feature = "fleet")]
#![allow(clippy::unwrap_used)]
mod in_flight;
mod members;
mod paused;

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::support::etcd::Etcd;
use crate::support::world::{wait_for, Proc, World};

const NODES: [&str; 3] = ["web-1", "web-2", "web-3"];
const DEADLINE: Duration = Duration::from_secs(90);

fn alidns_certs(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[certificate]]\nname = \"c{i}\"\ndomains = [\"c{i}.example.test\"]\nvalidation = {{ method = \"alidns\" }}\n"
            )
        })
        .collect()
}

/// The world's config for `node`: its own state and output directories, short API timeouts
/// (how long a successor waits before adopting an interrupted order) and `[fleet]`.
fn node_config(w: &World, etcd: &Etcd, node: &str, certs: &str) -> PathBuf {
    node_config_with(w, etcd, node, certs, "2s")
}

/// [`node_config`] with the API's `read_timeout` given: the in-flight bound a successor waits
/// out is `max_retry_time` (2 s) + `connect_timeout` (1 s) + `read_timeout`.
fn node_config_with(
    w: &World,
    etcd: &Etcd,
    node: &str,
    certs: &str,
    read_timeout: &str,
) -> PathBuf {
    let base = std::fs::read_to_string(w.config(certs)).unwrap();
    let key = w.p("fleet.key");
    if !key.exists() {
        std::fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let state = w.p("state").display().to_string();
    let live = w.p("live").display().to_string();
    let endpoints: Vec<String> = etcd
        .endpoints()
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect();
    let text = base
        .replace(&format!("\"{state}\""), &format!("\"{state}-{node}\""))
        .replace(&format!("\"{live}\""), &format!("\"{live}-{node}\""))
        .replace(
            "[cas]\n",
            &format!("[cas]\nconnect_timeout = \"1s\"\nread_timeout = \"{read_timeout}\"\nmax_retry_time = \"2s\"\n"),
        )
        + &format!(
            "[fleet]\netcd = [{}]\nprefix = \"/test/daemon\"\nnode = \"{node}\"\nkey_file = \"{}\"\nlease_ttl = \"2s\"\n",
            endpoints.join(", "),
            key.display()
        );
    let path = w.p(&format!("config-{node}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn log_of(w: &World, node: &str) -> String {
    std::fs::read_to_string(w.p(&format!("{node}.log"))).unwrap_or_default()
}

/// The log lines of `node` with `event`.
fn lines_with(w: &World, node: &str, event: &str) -> Vec<String> {
    let tag = format!("\"event\":\"{event}\"");
    log_of(w, node)
        .lines()
        .filter(|l| l.contains(&tag))
        .map(str::to_string)
        .collect()
}

/// When `node` first logged `event` (its JSON line's timestamp).
fn first_at(w: &World, node: &str, event: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let line = lines_with(w, node, event).into_iter().next()?;
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    Some(v["timestamp"].as_str()?.parse().unwrap())
}

fn count(w: &World, node: &str, event: &str) -> usize {
    log_of(w, node)
        .matches(&format!("\"event\":\"{event}\""))
        .count()
}

/// Whether `node` logged a claim of `cert`.
fn claimed(w: &World, node: &str, cert: &str) -> bool {
    let tag = format!("\"cert\":\"{cert}\"");
    lines_with(w, node, "fleet.claimed")
        .iter()
        .any(|l| l.contains(&tag))
}

fn live_file(w: &World, node: &str, cert: &str, file: &str) -> PathBuf {
    w.p(&format!("live-{node}")).join(cert).join(file)
}

/// Whether `cert` is deployed on some node (its owner: sets are not fanned out yet).
fn deployed_somewhere(w: &World, cert: &str) -> bool {
    NODES.iter().any(|n| {
        w.p(&format!("live-{n}"))
            .join(cert)
            .join("cert.pem")
            .exists()
    })
}

fn start(w: &World, etcd: &Etcd, nodes: &[&str], certs: &str) -> Vec<Proc> {
    nodes
        .iter()
        .map(|n| w.daemon(&node_config(w, etcd, n, certs), &format!("{n}.log")))
        .collect()
}

/// 3 daemons × 6 certificates: each ordered exactly once (the simulator's books), each node
/// owns at least one.
#[test]
fn three_daemons_order_each_certificate_once_and_share_the_work() {
    let etcd = Etcd::single();
    let w = World::new(&[]);
    let certs = alidns_certs(6);
    let _daemons = start(&w, &etcd, &NODES, &certs);
    wait_for("all six deployed", DEADLINE, || {
        (0..6).all(|i| deployed_somewhere(&w, &format!("c{i}")))
    });
    for i in 0..6 {
        assert_eq!(w.orders_for(&format!("c{i}.example.test")), 1, "c{i}");
    }
    for n in NODES {
        assert!(count(&w, n, "fleet.claimed") >= 1, "{n} owns nothing");
    }
    let claimed: usize = NODES.iter().map(|n| count(&w, n, "fleet.claimed")).sum();
    assert_eq!(claimed, 6, "each certificate claimed once");
}

/// The owner is killed (SIGKILL) while its order waits for validation: a successor claims
/// the certificate after the lease ran out, finishes the same order, and pays no second one.
#[test]
fn a_killed_owners_order_is_finished_by_a_successor_with_no_second_order() {
    let etcd = Etcd::single();
    let w = World::new(&["--validation-delay", "8s"]);
    let certs = alidns_certs(1);
    let mut daemons = start(&w, &etcd, &NODES[..2], &certs);
    wait_for("an order", DEADLINE, || {
        w.orders_for("c0.example.test") == 1
    });
    let owner = NODES[..2]
        .iter()
        .position(|n| count(&w, n, "fleet.claimed") == 1)
        .unwrap();
    daemons[owner].0.kill().unwrap();
    daemons[owner].0.wait().unwrap();
    let successor = NODES[1 - owner];
    wait_for("deployed by the successor", DEADLINE, || {
        w.p(&format!("live-{successor}"))
            .join("c0")
            .join("cert.pem")
            .exists()
    });
    assert_eq!(w.orders_for("c0.example.test"), 1, "no second paid order");
    assert_eq!(count(&w, successor, "fleet.claimed"), 1);
}

/// etcd stopped: one `fleet.unavailable`, no order while it is down (a new certificate waits),
/// `fleet.available` once it is back, and then the certificate is ordered once.
#[test]
fn an_etcd_outage_orders_nothing_is_said_once_and_work_resumes() {
    let mut etcd = Etcd::single();
    let w = World::new(&[]);
    let mut daemons = start(&w, &etcd, &NODES[..1], &alidns_certs(1));
    wait_for("c0 deployed", DEADLINE, || deployed_somewhere(&w, "c0"));
    // etcd goes away, then a second certificate is configured (a restart with the new list).
    etcd.stop_all();
    wait_for("fleet.unavailable", DEADLINE, || {
        count(&w, NODES[0], "fleet.unavailable") == 1
    });
    daemons[0].0.kill().unwrap();
    daemons[0].0.wait().unwrap();
    let mut d = start(&w, &etcd, &NODES[..1], &alidns_certs(2));
    wait_for("fleet.unavailable after the restart", DEADLINE, || {
        count(&w, NODES[0], "fleet.unavailable") == 2
    });
    std::thread::sleep(Duration::from_secs(4)); // a window in which an order would show
    assert_eq!(
        w.orders_for("c1.example.test"),
        0,
        "ordered while etcd was down"
    );
    assert!(w.live("c0", "cert.pem").exists() || deployed_somewhere(&w, "c0"));
    etcd.start_all();
    wait_for("fleet.available", DEADLINE, || {
        count(&w, NODES[0], "fleet.available") >= 1
    });
    wait_for("c1 deployed", DEADLINE, || deployed_somewhere(&w, "c1"));
    assert_eq!(w.orders_for("c1.example.test"), 1);
    assert_eq!(w.orders_for("c0.example.test"), 1);
    assert_eq!(
        count(&w, NODES[0], "fleet.unavailable"),
        2,
        "once per outage per run"
    );
    drop(d.pop());
}

/// A third host whose list differs (one more domain on c0) says so and orders nothing; the
/// two that agree order c0 once.
#[test]
fn a_host_whose_certificates_differ_refuses_to_order_and_says_which() {
    let etcd = Etcd::single();
    let w = World::new(&[]);
    let mut daemons = start(&w, &etcd, &NODES[..2], &alidns_certs(1));
    let odd = alidns_certs(1).replace(
        "[\"c0.example.test\"]",
        "[\"c0.example.test\", \"www.c0.example.test\"]",
    );
    daemons.extend(start(&w, &etcd, &NODES[2..], &odd));
    wait_for("fleet.config_mismatch", DEADLINE, || {
        count(&w, NODES[2], "fleet.config_mismatch") == 1
    });
    let line = log_of(&w, NODES[2])
        .lines()
        .find(|l| l.contains("fleet.config_mismatch"))
        .unwrap()
        .to_string();
    assert!(line.contains("c0"), "{line}");
    wait_for("c0 deployed", DEADLINE, || deployed_somewhere(&w, "c0"));
    assert_eq!(w.orders_for("c0.example.test"), 1);
    assert_eq!(
        count(&w, NODES[2], "fleet.claimed"),
        0,
        "the odd host claimed"
    );
    assert!(!w.p("live-web-3").join("c0").exists());
    for n in &NODES[..2] {
        assert_eq!(count(&w, n, "fleet.config_mismatch"), 0, "{n}");
    }
}
