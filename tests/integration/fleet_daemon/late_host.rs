//! A fourth host joining a fleet whose certificates are all issued, with an empty state_dir
//! (a new or re-imaged host): it deploys every set from etcd and orders nothing; its start's
//! CAS pass adopts or cleans nothing either.
use std::time::Instant;

use super::{alidns_certs, count, live_file, node_config, start, DEADLINE, NODES};
use crate::support::etcd::Etcd;
use crate::support::world::{wait_for, World};

const N: usize = 6;

#[test]
fn a_fourth_host_with_an_empty_state_deploys_every_set_with_no_order() {
    let t0 = Instant::now();
    let etcd = Etcd::single();
    let w = World::new(&[]);
    let certs = alidns_certs(N);
    let _daemons = start(&w, &etcd, &NODES, &certs);
    let everywhere = |nodes: &[&str]| {
        (0..N).all(|i| {
            nodes
                .iter()
                .all(|n| live_file(&w, n, &format!("c{i}"), "cert.pem").exists())
        })
    };
    wait_for("every set on the three hosts", DEADLINE, || {
        everywhere(&NODES)
    });
    let orders = w.ledger()["orders"].clone();
    assert_eq!(orders.as_array().unwrap().len(), N);

    let late = "web-4";
    assert!(!w.p(&format!("state-{late}")).exists());
    let joined = Instant::now();
    let _d4 = w.daemon(
        &node_config(&w, &etcd, late, &certs),
        &format!("{late}.log"),
    );
    wait_for("every set on the fourth host", DEADLINE, || {
        everywhere(&[late])
    });
    let took = joined.elapsed();
    assert_eq!(w.ledger()["orders"], orders, "orders made or changed");
    for i in 0..N {
        let c = format!("c{i}");
        for f in ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"] {
            let a = std::fs::read(live_file(&w, late, &c, f)).unwrap();
            let b = std::fs::read(live_file(&w, NODES[0], &c, f)).unwrap();
            assert!(a == b, "{c}/{f} differs on the fourth host");
        }
    }
    for event in ["cert.ordered", "cert.order_adopted", "cert.adopted"] {
        assert_eq!(count(&w, late, event), 0, "{event}");
    }
    assert_eq!(count(&w, late, "fleet.set_deployed"), N);
    eprintln!(
        "{N} sets deployed on the fourth host {:.1} s after its start; whole test {:.1} s",
        took.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
