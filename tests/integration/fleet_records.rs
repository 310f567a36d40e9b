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
