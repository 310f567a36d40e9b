//! Where a fleet's records come from when etcd has none: a certificate claimed with no record
//! in etcd takes the claiming host's own record (a host moving from single-host mode carries
//! what it paid for and deployed), and with no record anywhere it waits for the CAS pass, so
//! an order paid before etcd lost its data is adopted, not paid again. Real daemons, real
//! etcd, the simulator. Needs the `fleet` feature.
#![cfg(feature = "fleet")]
#![allow(clippy::unwrap_used)]
use std::time::Duration;

use crate::fleet_daemon::{count, log_of, node_config};
use crate::support::etcd::Etcd;
use crate::support::world::{sigterm_and_wait, wait_for, World};

const DEADLINE: Duration = Duration::from_secs(90);

fn alidns_cert(name: &str, key: &str) -> String {
    format!(
        "[[certificate]]\nname = \"{name}\"\ndomains = [\"{name}.example.test\"]\n\
         validation = {{ method = \"alidns\" }}\nkey = \"{key}\"\n"
    )
}

/// A host that ran alone (no `[fleet]`) and deployed c0 joins a fleet, first alone: it claims
/// c0, carries its record into etcd (`fleet.carried_over`) and publishes its set; a second
/// host then deploys that set. One order in all.
#[test]
fn a_single_host_joining_a_fleet_carries_its_certificate_over_without_a_new_order() {
    let etcd = Etcd::single();
    let w = World::new(&[]);
    let certs = alidns_cert("c0", "ecdsa-p256");
    // Single-host mode, in web-1's directories (the fleet config without its [fleet] table).
    let fleet_cfg = node_config(&w, &etcd, "web-1", &certs);
    let text = std::fs::read_to_string(&fleet_cfg).unwrap();
    let alone = w.p("alone.toml");
    std::fs::write(&alone, &text[..text.find("[fleet]").unwrap()]).unwrap();
    let mut d = w.daemon(&alone, "alone.log");
    let live = |n: &str| w.p(&format!("live-{n}")).join("c0").join("cert.pem");
    wait_for("c0 deployed by the single host", DEADLINE, || {
        live("web-1").exists()
    });
    assert!(sigterm_and_wait(&mut d).success());
    let before = std::fs::read(live("web-1")).unwrap();

    let _first = w.daemon(&fleet_cfg, "web-1.log");
    wait_for("fleet.carried_over", DEADLINE, || {
        count(&w, "web-1", "fleet.carried_over") == 1
    });
    let _second = w.daemon(&node_config(&w, &etcd, "web-2", &certs), "web-2.log");
    wait_for("c0 on the second host", DEADLINE, || live("web-2").exists());
    assert_eq!(std::fs::read(live("web-2")).unwrap(), before);
    assert_eq!(
        std::fs::read(live("web-1")).unwrap(),
        before,
        "web-1 re-deployed"
    );
    assert_eq!(w.orders_for("c0.example.test"), 1, "ordered again");
    assert_eq!(
        count(&w, "web-1", "store.cas_pass"),
        0,
        "{}",
        log_of(&w, "web-1")
    );
}

/// etcd loses the fleet's data while an order (its key made by CAS) waits for validation, and
/// the owner loses its state: claimed again with no record anywhere, the certificate waits
/// for the CAS pass, which adopts the order: one paid order, deployed.
#[test]
fn etcd_without_the_record_and_no_local_state_adopts_the_order_cas_holds() {
    let etcd = Etcd::single();
    let w = World::new(&["--validation-delay", "8s"]);
    let certs = alidns_cert("c0", "cas");
    let cfg = node_config(&w, &etcd, "web-1", &certs);
    let mut d = w.daemon(&cfg, "web-1.log");
    wait_for("the order", DEADLINE, || {
        w.orders_for("c0.example.test") == 1
    });
    d.0.kill().unwrap();
    d.0.wait().unwrap();
    etcd.etcdctl(&["del", "--prefix", "/test/daemon/"]);
    std::fs::remove_dir_all(w.p("state-web-1")).unwrap();
    let _d = w.daemon(&cfg, "web-1-again.log");
    let again = || std::fs::read_to_string(w.p("web-1-again.log")).unwrap_or_default();
    wait_for("c0 deployed", DEADLINE, || {
        w.p("live-web-1").join("c0").join("cert.pem").exists()
    });
    assert_eq!(w.orders_for("c0.example.test"), 1, "a second order");
    let pass = again()
        .lines()
        .find(|l| l.contains("\"event\":\"store.cas_pass\""))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(pass.contains("\"adopted\":1"), "{pass}");
}

fn sighup(p: &crate::support::world::Proc) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &p.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Which of `nodes` logged `fleet.claimed` for `cert` last (its owner now).
fn owner(w: &World, nodes: &[&str], cert: &str) -> Option<usize> {
    nodes.iter().position(|n| {
        log_of(w, n).lines().any(|l| {
            l.contains("\"event\":\"fleet.claimed\"") && l.contains(&format!("\"cert\":\"{cert}\""))
        })
    })
}

/// Reloads in a fleet act only on what the host owns, and never cancel the fleet's order:
/// a certificate whose domains changed is ordered anew once, by its owner, after its list
/// agrees with the fleet's (an owner that reloads first orders nothing: its list differs);
/// a certificate removed from its owner's configuration is given up (its owner key deleted),
/// not cancelled, and its files stay.
#[test]
fn reloads_act_only_on_what_the_host_owns_and_never_cancel_the_fleets_order() {
    let etcd = Etcd::single();
    // Validation takes 10 s: c0 is renamed while its order is in flight.
    let w = World::new(&["--validation-delay", "10s"]);
    let nodes = ["web-1", "web-2"];
    let certs = alidns_cert("c0", "ecdsa-p256") + &alidns_cert("c1", "ecdsa-p256");
    let cfgs: Vec<_> = nodes
        .iter()
        .map(|n| node_config(&w, &etcd, n, &certs))
        .collect();
    let daemons: Vec<_> = nodes
        .iter()
        .zip(&cfgs)
        .map(|(n, c)| w.daemon(c, &format!("{n}.log")))
        .collect();
    let live = |n: &str, c: &str| w.p(&format!("live-{n}")).join(c).join("cert.pem");
    wait_for("c0 and c1 on both hosts", DEADLINE, || {
        nodes
            .iter()
            .all(|n| live(n, "c0").exists() && live(n, "c1").exists())
    });
    let o = owner(&w, &nodes, "c0").unwrap();
    let (own, other) = (o, 1 - o);

    // c0 gets a second name; its owner reloads first: its list now differs from the
    // other host's, so it orders nothing until the other host reloads too.
    let renamed = certs.replace(
        "domains = [\"c0.example.test\"]",
        "domains = [\"c0.example.test\", \"www.c0.example.test\"]",
    );
    let rewrite = |i: usize, text: &str| {
        let cfg = std::fs::read_to_string(&cfgs[i]).unwrap();
        let head = &cfg[..cfg.find("[[certificate]]").unwrap()];
        let tail = &cfg[cfg.find("[fleet]").unwrap()..];
        std::fs::write(&cfgs[i], format!("{head}{text}{tail}")).unwrap();
    };
    rewrite(own, &renamed);
    sighup(&daemons[own]);
    wait_for("the reload", DEADLINE, || {
        count(&w, nodes[own], "config.reloaded") == 1
    });
    std::thread::sleep(Duration::from_secs(4)); // a window in which an order would show
    assert_eq!(
        w.orders_for("www.c0.example.test"),
        0,
        "ordered on one host's say"
    );
    rewrite(other, &renamed);
    sighup(&daemons[other]);
    wait_for("c0 with its new name on both hosts", DEADLINE, || {
        nodes.iter().all(|n| {
            std::fs::read_to_string(live(n, "c0")).is_ok_and(|pem| {
                crate::support::world::openssl(&[
                    "x509",
                    "-in",
                    &live(n, "c0").display().to_string(),
                    "-noout",
                    "-ext",
                    "subjectAltName",
                ])
                .contains("www.c0.example.test")
                    && !pem.is_empty()
            })
        })
    });
    assert_eq!(w.orders_for("www.c0.example.test"), 1);

    // c1 leaves its owner's configuration: given up, never cancelled.
    wait_for("c1 on both hosts", DEADLINE, || {
        nodes.iter().all(|n| live(n, "c1").exists())
    });
    let o1 = owner(&w, &nodes, "c1").unwrap();
    let without_c1 = renamed[..renamed.find("[[certificate]]\nname = \"c1\"").unwrap()].to_string();
    rewrite(o1, &without_c1);
    sighup(&daemons[o1]);
    wait_for("c1 given up", DEADLINE, || {
        log_of(&w, nodes[o1])
            .lines()
            .any(|l| l.contains("\"event\":\"cert.removed\"") && l.contains("\"cert\":\"c1\""))
    });
    // Its owner key is gone (another host may claim it: here the two lists differ, so neither
    // claims until the other host drops c1 too), its order is not cancelled.
    let key = etcd.etcdctl(&["get", "/test/daemon/owner/c1"]);
    assert!(key.trim().is_empty(), "{key}");
    assert!(
        !w.has_deleted_order("c1.example.test"),
        "c1's order was cancelled"
    );
    assert_eq!(w.orders_for("c1.example.test"), 1);
    assert!(live(nodes[o1], "c1").exists(), "files are kept");
}
