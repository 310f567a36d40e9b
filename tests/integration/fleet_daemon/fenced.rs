//! etcd's fence through a running daemon. A paused owner never gets that far (its own lease
//! deadline refuses its writes first: `paused`), so here the owner key is taken from under a
//! live owner instead: deleted in etcd while the owner's step is in flight (its
//! `AddDomainRecord` held by the simulator). The owner's lease stays alive, so it still
//! believes it owns the certificate; its write reaches etcd, whose fence refuses it
//! (`fleet.fenced`, the step dropped). Nothing is written, and the certificate is still
//! ordered once and deployed (claimed again by the same host, under a new token). One daemon,
//! so that no other writer moves the record's version: only the fence can refuse the write.
use std::time::Instant;

use super::{claimed, count, deployed_somewhere, log_of, node_config_with, DEADLINE, NODES};
use crate::support::etcd::Etcd;
use crate::support::world::{wait_for, Proc, World};

#[test]
fn a_write_under_a_token_etcd_no_longer_holds_is_refused_by_the_fence_and_logged() {
    let t0 = Instant::now();
    let etcd = Etcd::single();
    let w = World::new(&["--action-delay", "AddDomainRecord=3s"]);
    let certs = super::alidns_certs(1);
    // read_timeout 6 s: the held add is answered in time.
    // One daemon: nobody else writes the record, so only the fence can refuse its write.
    let _daemons: Vec<Proc> = NODES[..1]
        .iter()
        .map(|n| {
            let config = node_config_with(&w, &etcd, n, &certs, "6s");
            w.daemon(&config, &format!("{n}.log"))
        })
        .collect();
    wait_for("the owner's proof in flight", DEADLINE, || {
        w.ledger()["held"]["AddDomainRecord"] == 1
    });
    let owner = NODES[0];
    assert!(claimed(&w, owner, "c0"));
    let (owner_key, record_key) = ("/test/daemon/owner/c0", "/test/daemon/records/c0");
    let token = etcd.kv(owner_key).unwrap().create_revision;
    let record = etcd.kv(record_key).unwrap();
    etcd.etcdctl(&["del", owner_key]);
    wait_for("fleet.fenced", DEADLINE, || {
        count(&w, owner, "fleet.fenced") >= 1
    });
    let log = log_of(&w, owner);
    let fenced = log
        .lines()
        .find(|l| l.contains("\"event\":\"fleet.fenced\""))
        .unwrap();
    assert!(
        fenced.contains("\"cert\":\"c0\"")
            && fenced.contains(&format!("\"token\":{token}"))
            && fenced.contains("nobody holds it"),
        "{fenced}"
    );
    assert!(
        log.lines().any(
            |l| l.contains("step dropped") && l.contains("no longer owns")
                || l.contains("step dropped") && l.contains("nobody holds it")
        ),
        "the refused step is not said dropped:\n{log}"
    );
    // The refused write wrote nothing: the record is as it was until a new claim.
    let now = etcd.kv(record_key).unwrap();
    let holder = etcd.kv(owner_key);
    assert!(
        now == record || holder.is_some_and(|h| now.mod_revision > h.create_revision),
        "the record moved under no owner: {now:?}"
    );
    wait_for("c0 deployed", DEADLINE, || deployed_somewhere(&w, "c0"));
    assert_eq!(w.orders_for("c0.example.test"), 1);
    let new_token = etcd.kv(owner_key).unwrap().create_revision;
    assert!(new_token > token, "claimed again under a new token");
    eprintln!("whole test {:.1} s", t0.elapsed().as_secs_f64());
}
