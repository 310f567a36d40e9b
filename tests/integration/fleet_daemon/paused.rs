//! An owner paused (SIGSTOP) past its lease in the middle of a step (its order made, the DNS
//! proof being added: the simulator holds `AddDomainRecord`): a successor claims, finishes
//! the same order and deploys; the old owner, continued, gets its call's outcome and tries to
//! go on, but orders nothing and writes nothing to etcd, and its log says the step was dropped;
//! it then serves the successor's set (the fan-out).
use std::time::{Duration, Instant};

use super::{alidns_certs, claimed, count, live_file, log_of, start, DEADLINE, NODES};
use crate::support::etcd::Etcd;
use crate::support::world::{signal, wait_for, Proc, World};

const RECORD: &str = "/test/daemon/records/c0";
const OWNER: &str = "/test/daemon/owner/c0";

/// Two daemons, one certificate; the owner is stopped while its proof is being added, and
/// continued once the successor deployed. What the old owner logged after SIGCONT is `after`
/// (read once its step was dropped or fenced).
struct Paused {
    w: World,
    etcd: Etcd,
    _daemons: Vec<Proc>,
    old: &'static str,
    new: &'static str,
    /// The successor's last write of the record, before SIGCONT.
    record: crate::support::etcd::Kv,
    log_before: usize,
    takeover: Duration,
}

impl Paused {
    fn run() -> Paused {
        let etcd = Etcd::single();
        // Held for less than the daemons' read_timeout (2 s): the successor's own add is
        // answered in time.
        let w = World::new(&["--action-delay", "AddDomainRecord=1s"]);
        let daemons = start(&w, &etcd, &NODES[..2], &alidns_certs(1));
        wait_for("the owner's proof in flight", DEADLINE, || {
            w.ledger()["held"]["AddDomainRecord"] == 1
        });
        assert_eq!(w.orders_for("c0.example.test"), 1);
        let owner = NODES[..2]
            .iter()
            .position(|n| claimed(&w, n, "c0"))
            .unwrap();
        let (old, new) = (NODES[owner], NODES[1 - owner]);
        signal(&daemons[owner], "STOP");
        let paused = Instant::now();
        wait_for("the successor's claim", DEADLINE, || claimed(&w, new, "c0"));
        let takeover = paused.elapsed();
        wait_for("deployed by the successor", DEADLINE, || {
            live_file(&w, new, "c0", "cert.pem").exists()
        });
        // What the successor wrote last: the deployed record, after its claim (its token).
        let owner_kv = etcd.kv(OWNER).unwrap();
        assert_eq!(owner_kv.value, new);
        let record = etcd.kv(RECORD).unwrap();
        assert!(record.mod_revision > owner_kv.create_revision, "{record:?}");
        let order_id = w.ledger()["orders"][0]["order_id"].as_u64().unwrap();
        assert!(
            record.value.contains(&order_id.to_string()),
            "the record is not the order's: {}",
            record.value
        );
        let log_before = log_of(&w, old).len();
        signal(&daemons[owner], "CONT");
        let p = Paused {
            w,
            etcd,
            _daemons: daemons,
            old,
            new,
            record,
            log_before,
            takeover,
        };
        wait_for("the old owner's step refused", DEADLINE, || {
            let after = p.after();
            after.contains("\"event\":\"fleet.fenced\"")
                || after
                    .lines()
                    .any(|l| l.contains("step dropped") && l.contains("not this host's"))
        });
        p
    }

    /// What the old owner logged after SIGCONT.
    fn after(&self) -> String {
        log_of(&self.w, self.old)[self.log_before..].to_string()
    }
}

#[test]
fn a_paused_owner_past_its_lease_orders_and_writes_nothing_once_continued() {
    let t0 = Instant::now();
    let p = Paused::run();
    // A window of several claim rounds and poll periods in which a write or an order would show.
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(4) {
        assert_eq!(p.w.orders_for("c0.example.test"), 1, "a second order");
        assert_eq!(
            p.etcd.kv(RECORD).as_ref(),
            Some(&p.record),
            "the record moved"
        );
        assert_eq!(p.etcd.kv(OWNER).unwrap().value, p.new, "the owner changed");
        std::thread::sleep(Duration::from_millis(250));
    }
    let after = p.after();
    eprintln!("--- {} after SIGCONT:\n{after}", p.old);
    for event in ["cert.ordered", "fleet.claimed", "cert.deployed"] {
        assert!(
            !after.contains(&format!("\"event\":\"{event}\"")),
            "{after}"
        );
    }
    // The old owner serves what the successor issued (the fan-out), byte for byte.
    wait_for("the successor's set on the old owner", DEADLINE, || {
        live_file(&p.w, p.old, "c0", "cert.pem").exists()
    });
    for f in ["cert.pem", "fullchain.pem", "privkey.pem"] {
        let a = std::fs::read(live_file(&p.w, p.old, "c0", f)).unwrap();
        let b = std::fs::read(live_file(&p.w, p.new, "c0", f)).unwrap();
        assert!(
            a == b,
            "{f} differs between the old owner and the successor"
        );
    }
    assert_eq!(count(&p.w, p.new, "fleet.claimed"), 1);
    eprintln!(
        "takeover {:.1} s after SIGSTOP; whole test {:.1} s",
        p.takeover.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

/// The old owner's resumed step finds its call timed out (the pause outlasted read_timeout)
/// and fails the attempt: the failure is not written (the step is dropped), and it is not
/// said either (`cert.renew_failed` is notified by default): the failure tail persists before
/// it logs (`machine/failure.rs`), so a host that no longer owns the certificate tells nobody
/// it failed.
#[test]
fn a_paused_owner_says_no_failure_for_a_step_it_may_not_write() {
    let p = Paused::run();
    let after = p.after();
    assert!(
        !after.contains("\"event\":\"cert.renew_failed\""),
        "a failure logged by a host that no longer owns the certificate:\n{after}"
    );
}

/// Each time the lease is lost, `fleet.lease_lost` is logged (FLEET.md: "A lost lease ends
/// every ownership (`fleet.lease_lost`)"). After a pause past the lease both the keep-alive
/// task and the claims loop wake late; the claims loop, when it runs first, says the loss
/// before it drops the lease (and the keep-alive task with it). (It once dropped it silently:
/// the loss showed only as an info line, in about one pause of three.) Five pauses here.
#[test]
fn every_lost_lease_is_said_with_fleet_lease_lost() {
    const LOST: &str = "the fleet lease was lost: these certificates";
    let etcd = Etcd::single();
    let w = World::new(&[]);
    let daemons = start(&w, &etcd, &NODES[..1], &alidns_certs(1));
    let node = NODES[0];
    wait_for("c0 deployed", DEADLINE, || {
        live_file(&w, node, "c0", "cert.pem").exists()
    });
    for round in 1..=5 {
        signal(&daemons[0], "STOP");
        // Past the 2 s lease: a pause's length, not a wait for something.
        std::thread::sleep(Duration::from_secs(3));
        signal(&daemons[0], "CONT");
        wait_for("the loss seen by the claims loop", DEADLINE, || {
            log_of(&w, node).matches(LOST).count() == round
        });
        let said = Instant::now();
        while count(&w, node, "fleet.lease_lost") < round {
            assert!(
                said.elapsed() < Duration::from_secs(5),
                "pause {round}: the lease was lost and fleet.lease_lost not logged"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        wait_for("c0 claimed again", DEADLINE, || {
            count(&w, node, "fleet.claimed") == round + 1
        });
    }
}
