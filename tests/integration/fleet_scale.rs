//! Fleet mode's etcd load against the number of certificates: a real `cas-certd run` in fleet
//! mode, real etcd, its request counters from `/metrics`. Another node ("ghost", this test)
//! holds every certificate, so the daemon claims and orders nothing: what it sends is its
//! claims rounds alone. And a certificate this host holds but may not step yet is not claimed
//! again every round. Needs the `fleet` feature.
#![cfg(feature = "fleet")]
#![allow(clippy::unwrap_used)]
use std::time::{Duration, Instant};

use crate::fleet_daemon::{alidns_certs, count, log_of, node_config};
use crate::support::etcd::Etcd;
use crate::support::fleet::{claim_won, TestFleet};
use crate::support::world::{http_get, wait_for, World};

/// The daemons' prefix (`fleet_daemon::node_config`); the ghost's lease outlives the test.
const FLEET: TestFleet = TestFleet {
    prefix: "/test/daemon",
    ttl: Duration::from_secs(10),
};
/// How long each daemon's requests are counted: several claims rounds (lease TTL 2 s: a
/// round every 0.67 s) after the first TTL.
const WINDOW: Duration = Duration::from_secs(8);

/// etcd's Range and Txn calls served so far (`grpc_server_handled_total`, every code) and the
/// bytes it sent to clients (`etcd_network_client_grpc_sent_bytes_total`).
fn range_and_txn_calls(etcd: &Etcd) -> (f64, f64) {
    let addr = etcd.endpoints()[0]
        .trim_start_matches("http://")
        .to_string();
    let text = http_get(&addr, "/metrics");
    let sum = |keep: &dyn Fn(&str) -> bool| -> f64 {
        text.lines()
            .filter(|l| keep(l))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    (
        sum(&|l| {
            l.starts_with("grpc_server_handled_total{")
                && (l.contains("grpc_method=\"Range\"") || l.contains("grpc_method=\"Txn\""))
        }),
        sum(&|l| l.starts_with("etcd_network_client_grpc_sent_bytes_total")),
    )
}

/// The etcd requests of a host's claims rounds do not grow with the number of certificates:
/// one daemon with 6, then one with 60, every certificate held by another live node. Before,
/// each round read `owner/<cert>` for every certificate not preferred here and tried to
/// claim every one preferred here (about 60 requests a round at 60 certificates); now a
/// round reads the live nodes, the summaries and `owner/` once each.
#[test]
fn claims_rounds_cost_the_same_etcd_requests_for_6_and_60_certificates() {
    let etcd = Etcd::single();
    let w = World::new(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The ghost: a live node (its key bound to its lease) holding c0..c59.
    let _ghost = rt.block_on(async {
        let (fleet, lease) = FLEET.host(&etcd, "ghost").await;
        let mut c = etcd_client::Client::connect(etcd.endpoints(), None)
            .await
            .unwrap();
        c.put(
            format!("{}/nodes/ghost", FLEET.prefix),
            "ghost",
            Some(etcd_client::PutOptions::new().with_lease(lease.id())),
        )
        .await
        .unwrap();
        let mut held = Vec::new();
        for i in 0..60 {
            held.push(claim_won(&fleet, &lease, &format!("c{i}")).await);
        }
        (fleet, lease, held)
    });
    let mut rates = Vec::new();
    for (node, n) in [("web-1", 6), ("web-2", 60)] {
        let d = w.daemon(
            &node_config(&w, &etcd, node, &alidns_certs(n)),
            &format!("{node}.log"),
        );
        let key = format!("{}/config/{node}", FLEET.prefix);
        wait_for(
            &format!("{node} publishes its list"),
            Duration::from_secs(60),
            || etcd.etcdctl(&["get", "--keys-only", &key]).contains(&key),
        );
        let (c0, t0) = (range_and_txn_calls(&etcd), Instant::now());
        std::thread::sleep(WINDOW);
        let c1 = range_and_txn_calls(&etcd);
        let (calls, bytes) = (c1.0 - c0.0, c1.1 - c0.1);
        let per_s = calls / t0.elapsed().as_secs_f64();
        eprintln!(
            "{node}, {n} certificates: {calls} Range+Txn calls in {WINDOW:?} ({per_s:.1}/s), \
            {bytes} B sent by etcd"
        );
        let log = std::fs::read_to_string(w.p(&format!("{node}.log"))).unwrap();
        assert!(
            !log.contains("\"event\":\"fleet.claimed\""),
            "{node} claimed: {log}"
        );
        assert!(!log.contains("\"event\":\"fleet.unavailable\""), "{log}");
        rates.push(per_s);
        drop(d);
    }
    assert!(
        rates[1] <= rates[0] * 1.5 + 1.0,
        "requests a second grow with the certificates: {rates:?}"
    );
}

/// A certificate claimed with no record anywhere waits for the CAS pass (`fleet::store`'s
/// `awaiting_pass`); with CAS unreachable the pass keeps failing. The claims rounds leave the
/// certificate with this host meanwhile: claimed once, not claimed and taken again (a claim
/// transaction, record and set reads, `fleet.claimed`) every round.
#[test]
fn a_certificate_waiting_for_the_cas_pass_is_claimed_once() {
    let etcd = Etcd::single();
    let w = World::new(&[]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    let cfg = node_config(&w, &etcd, "web-1", &alidns_certs(1));
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("endpoint = \"http://{}\"", w.sim_addr),
        &format!("endpoint = \"http://{dead}\""),
    );
    std::fs::write(&cfg, text).unwrap();
    let _d = w.daemon(&cfg, "web-1.log");
    wait_for(
        "claimed, and the CAS pass failed",
        Duration::from_secs(60),
        || {
            count(&w, "web-1", "fleet.claimed") >= 1
                && count(&w, "web-1", "store.cas_pass_failed") >= 1
        },
    );
    // Six claims rounds or so (one every 0.67 s): none may claim it again.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        count(&w, "web-1", "fleet.claimed"),
        1,
        "{}",
        log_of(&w, "web-1")
    );
}
