//! The owner killed (SIGKILL) while its create is in flight: the simulator holds
//! `CreateCertificateForPackageRequest` for 5 s and carries it out although the caller died.
//! The successor finds the intent, waits out the in-flight bound (`max_retry_time` +
//! `connect_timeout` + `read_timeout`, 9 s here) from its claim, then finds the order with
//! `ListUserCertificateOrder` and adopts it: one paid order, deployed.
use std::time::{Duration, Instant};

use super::{alidns_certs, claimed, count, first_at, live_file, node_config_with, DEADLINE, NODES};
use crate::support::etcd::Etcd;
use crate::support::world::{wait_for, World};

const CREATE: &str = "CreateCertificateForPackageRequest";
const LIST: &str = "ListUserCertificateOrder";

#[test]
fn an_owner_killed_with_its_create_in_flight_is_adopted_after_the_bound_with_one_order() {
    let t0 = Instant::now();
    let etcd = Etcd::single();
    let w = World::new(&["--action-delay", &format!("{CREATE}=5s")]);
    // read_timeout 6 s: the owner would wait for the held create's answer. Bound: 2 + 1 + 6.
    let bound = Duration::from_secs(9);
    let certs = alidns_certs(1);
    let mut daemons: Vec<_> = NODES[..2]
        .iter()
        .map(|n| {
            let config = node_config_with(&w, &etcd, n, &certs, "6s");
            w.daemon(&config, &format!("{n}.log"))
        })
        .collect();
    wait_for("the owner's create in flight", DEADLINE, || {
        w.ledger()["held"][CREATE] == 1
    });
    let owner = NODES[..2]
        .iter()
        .position(|n| claimed(&w, n, "c0"))
        .unwrap();
    let successor = NODES[1 - owner];
    daemons[owner].0.kill().unwrap();
    daemons[owner].0.wait().unwrap();
    // The held create is recorded in the ledger's calls only once carried out.
    let calls_at_kill = w.ledger()["calls"].as_array().unwrap().len();
    assert_eq!(
        w.orders_for("c0.example.test"),
        0,
        "the create ran before the kill: nothing was in flight"
    );
    wait_for("the held create carried out", DEADLINE, || {
        w.orders_for("c0.example.test") == 1
    });
    wait_for("deployed by the successor", DEADLINE, || {
        live_file(&w, successor, "c0", "cert.pem").exists()
    });
    assert_eq!(w.orders_for("c0.example.test"), 1, "a second paid order");
    assert_eq!(count(&w, successor, "cert.ordered"), 0);
    assert_eq!(count(&w, successor, "cert.order_adopted"), 1);
    // The successor looked for the order only once the bound had passed since its claim...
    let claimed_at = first_at(&w, successor, "fleet.claimed").unwrap();
    let adopted_at = first_at(&w, successor, "cert.order_adopted").unwrap();
    let waited = (adopted_at - claimed_at).to_std().unwrap();
    assert!(waited >= bound, "adopted {waited:?} after the claim");
    // ...and so after the create was carried out: no List between the kill and the create,
    // the adopting List after it.
    let calls = w.ledger()["calls"].as_array().unwrap().clone();
    let create = calls.iter().position(|c| c["action"] == CREATE).unwrap();
    assert!(create >= calls_at_kill, "{calls:?}");
    let lists = |r: &[serde_json::Value]| r.iter().filter(|c| c["action"] == LIST).count();
    assert_eq!(lists(&calls[calls_at_kill..create]), 0, "{calls:?}");
    assert!(lists(&calls[create..]) >= 1, "{calls:?}");
    eprintln!(
        "adopted {:.1} s after the claim (bound {bound:?}); whole test {:.1} s",
        waited.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
