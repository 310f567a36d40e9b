//! The daemons on a 3-member etcd. One member stopped (the one the daemons talk to, not the
//! leader): a certificate added by SIGHUP is claimed, ordered and deployed with no
//! `fleet.unavailable`. Two stopped (quorum lost): each daemon says `fleet.unavailable` once,
//! a certificate added meanwhile is not ordered over a window, deployed files keep their
//! bytes. Both started again: `fleet.available` on each, and the pending certificate is
//! ordered once.
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{alidns_certs, count, deployed_somewhere, node_config, start, DEADLINE, NODES};
use crate::support::etcd::Etcd;
use crate::support::world::{signal, wait_for, Proc, World};

/// Every file and link under `dir`: path → bytes (a link: its target).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let key = p.display().to_string();
            if meta.is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.insert(key, target.display().to_string().into_bytes());
            } else if meta.is_dir() {
                stack.push(p);
            } else {
                out.insert(key, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn deployed_files(w: &World) -> BTreeMap<String, Vec<u8>> {
    NODES
        .iter()
        .flat_map(|n| snapshot(&w.p(&format!("live-{n}"))))
        .collect()
}

/// Rewrites every node's configuration with `certs` and reloads it (SIGHUP).
fn reload(w: &World, etcd: &Etcd, daemons: &[Proc], certs: &str) {
    let before: Vec<usize> = NODES
        .iter()
        .map(|n| count(w, n, "config.reloaded"))
        .collect();
    for (n, d) in NODES.iter().zip(daemons) {
        node_config(w, etcd, n, certs);
        signal(d, "HUP");
    }
    for (n, b) in NODES.iter().zip(before) {
        wait_for("the reload", DEADLINE, || {
            count(w, n, "config.reloaded") > b
        });
    }
}

fn unavailable(w: &World) -> Vec<usize> {
    NODES
        .iter()
        .map(|n| count(w, n, "fleet.unavailable"))
        .collect()
}

#[test]
fn one_member_down_changes_nothing_two_down_order_nothing_and_work_resumes() {
    let t0 = Instant::now();
    let mut etcd = Etcd::cluster(3);
    let w = World::new(&[]);
    let daemons = start(&w, &etcd, &NODES, &alidns_certs(1));
    wait_for("c0 deployed", DEADLINE, || deployed_somewhere(&w, "c0"));

    // One member down: the first endpoint, the one every daemon asks first (not the leader:
    // an election with a 2 s lease is another test's matter).
    let first = 0;
    etcd.lead_elsewhere(first);
    etcd.kill(first);
    let one_down = Instant::now();
    reload(&w, &etcd, &daemons, &alidns_certs(2));
    wait_for("c1 deployed with a member down", DEADLINE, || {
        deployed_somewhere(&w, "c1")
    });
    let c1_took = one_down.elapsed();
    assert_eq!(w.orders_for("c1.example.test"), 1);
    assert_eq!(
        unavailable(&w),
        [0, 0, 0],
        "etcd said away with 2 of 3 members up"
    );

    // Two down: quorum lost.
    let files = deployed_files(&w);
    assert!(!files.is_empty());
    let second = (0..3).find(|i| *i != first).unwrap();
    etcd.kill(second);
    let two_down = Instant::now();
    wait_for("fleet.unavailable on every daemon", DEADLINE, || {
        unavailable(&w).iter().all(|n| *n >= 1)
    });
    let said = two_down.elapsed();
    let orders = w.ledger()["orders"].clone();
    reload(&w, &etcd, &daemons, &alidns_certs(3));
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(4) {
        assert_eq!(w.ledger()["orders"], orders, "an order without quorum");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(w.orders_for("c2.example.test"), 0);
    assert_eq!(deployed_files(&w), files, "deployed files changed");
    assert_eq!(unavailable(&w), [1, 1, 1], "once per outage");

    // Both back: work resumes by itself.
    etcd.start_all();
    let back = Instant::now();
    wait_for("fleet.available on every daemon", DEADLINE, || {
        NODES.iter().all(|n| count(&w, n, "fleet.available") >= 1)
    });
    wait_for("c2 deployed", DEADLINE, || deployed_somewhere(&w, "c2"));
    let resumed = back.elapsed();
    for i in 0..3 {
        assert_eq!(w.orders_for(&format!("c{i}.example.test")), 1, "c{i}");
    }
    assert_eq!(unavailable(&w), [1, 1, 1]);
    eprintln!(
        "c1 deployed {:.1} s after a member was stopped; fleet.unavailable on all {:.1} s after \
        the second; c2 deployed {:.1} s after both restarted; whole test {:.1} s",
        c1_took.as_secs_f64(),
        said.as_secs_f64(),
        resumed.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
