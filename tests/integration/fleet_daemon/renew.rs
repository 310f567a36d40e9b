//! `cas-certd renew NAME --yes` in a fleet: the owner schedules the renewal in the fleet's
//! record (etcd), which its steps read, so the certificate is ordered once more and the new
//! set reaches every host; another host refuses (it does not own the certificate) and orders
//! nothing. Before, both answered "renewal scheduled now" into their local mirror only, and
//! nothing was ordered (found by scripts/bench_fleet.py).
use std::process::{Command, Output};
use std::time::Duration;

use super::{alidns_certs, count, live_file, node_config, start, DEADLINE, NODES};
use crate::support::bin;
use crate::support::etcd::Etcd;
use crate::support::world::{wait_for, World};

#[test]
fn renew_on_the_owner_orders_once_more_everywhere_and_elsewhere_is_refused() {
    let etcd = Etcd::single();
    let w = World::new(&[]);
    let certs = alidns_certs(1);
    let nodes = &NODES[..2];
    let _daemons = start(&w, &etcd, nodes, &certs);
    let cert = |n: &str| std::fs::read(live_file(&w, n, "c0", "cert.pem")).unwrap_or_default();
    wait_for("c0 live on both hosts", DEADLINE, || {
        nodes.iter().all(|n| !cert(n).is_empty())
    });
    assert_eq!(w.orders_for("c0.example.test"), 1);
    let first = cert(nodes[0]);
    let owner = nodes
        .iter()
        .position(|n| count(&w, n, "fleet.claimed") == 1)
        .unwrap();
    let renew = |n: &str| -> Output {
        Command::new(bin())
            .arg("--config")
            .arg(node_config(&w, &etcd, n, &certs))
            .args(["renew", "--yes", "c0"])
            .output()
            .unwrap()
    };

    let out = renew(nodes[1 - owner]);
    assert!(!out.status.success(), "not the owner, yet: {out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("run `renew` on its owner"), "{said}");
    let out = renew(nodes[owner]);
    assert!(out.status.success(), "{out:?}");
    wait_for("the renewed set live on both hosts", DEADLINE, || {
        w.orders_for("c0.example.test") == 2
            && nodes
                .iter()
                .all(|n| !cert(n).is_empty() && cert(n) != first)
    });
    assert_eq!(cert(nodes[0]), cert(nodes[1]));
    // Long enough for a second order (the refused request, a repeat) to show.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(w.orders_for("c0.example.test"), 2);
}
