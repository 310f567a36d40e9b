//! Fleet mode's foundation against real etcd (single-node and 3-node clusters started by the
//! test): exactly one owner per certificate, fencing of a paused owner's writes, private
//! keys that reach etcd sealed only, and each host's list of what it orders compared by hash. Needs the `fleet` feature and the `etcd` binary.
#![cfg(feature = "fleet")]
#![allow(clippy::unwrap_used)]
use std::time::{Duration, Instant};

use cas_api::model::OrderId;
use cas_api::secret::Secret;
use cas_certd::config::{FleetAuth, FleetSettings, FleetTls, PasswordSource};
use cas_certd::deploy::CertInfo;
use cas_certd::fleet::keyfile::FleetKey;
use cas_certd::fleet::{claim, owner_of, Claim, EtcdRecords, Fleet, FleetError, Lease};
use cas_certd::store::{CertRecord, DeployedCert, PendingKey, Phase};

use crate::support::etcd::{Etcd, ETCD_SECRET, ROOT, WRONG_ETCD_SECRET};
use crate::support::fleet::{claim_won, TestFleet};

/// Short, so that a lost lease is seen in seconds (etcd may raise it to its minimum), yet
/// long enough that a keep-alive every third of it never misses on a loaded machine.
const TTL: Duration = Duration::from_secs(3);
const DEADLINE: Duration = Duration::from_secs(30);

const FLEET: TestFleet = TestFleet {
    prefix: "/test/fleet",
    ttl: TTL,
};

fn key_pem() -> String {
    rcgen::KeyPair::generate().unwrap().serialize_pem()
}

fn record(name: &str, pending: &str) -> CertRecord {
    let mut r = CertRecord::new(name, vec![format!("{name}.example.com")]);
    r.phase = Phase::Intent {
        created_at: chrono::Utc::now(),
        csr_fingerprint: "ab".into(),
        product: None,
        pending: PendingKey {
            key: Some(Secret::new(pending)),
            csr: Some("CSR".into()),
        },
    };
    r
}

/// Two hosts claim the same certificates at the same moment: each has exactly one owner,
/// and the loser is told who.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_race_and_each_certificate_has_exactly_one_owner() {
    let etcd = Etcd::single();
    let (a, la) = FLEET.host(&etcd, "web-1").await;
    let (b, lb) = FLEET.host(&etcd, "web-2").await;
    let names: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
    let mut tasks = Vec::new();
    for n in &names {
        for (f, l) in [(a.clone(), la.clone()), (b.clone(), lb.clone())] {
            let n = n.clone();
            tasks.push(tokio::spawn(async move {
                let node = f.node().to_string();
                (n.clone(), node, claim(&f, &l, &n).await.unwrap())
            }));
        }
    }
    let mut winners = std::collections::HashMap::new();
    let mut losers = Vec::new();
    for t in tasks {
        let (n, node, c) = t.await.unwrap();
        match c {
            Claim::Owned(o) => {
                assert!(o.token() > 0);
                let prev = winners.insert(n.clone(), (node, o.token()));
                assert!(prev.is_none(), "{n} owned twice: {prev:?}");
            }
            Claim::Taken { node: by, token } => losers.push((n, node, by, token)),
        }
    }
    assert_eq!(winners.len(), names.len(), "{winners:?}");
    assert_eq!(losers.len(), names.len());
    for (n, loser, by, token) in losers {
        let (winner, t) = &winners[&n];
        assert_ne!(&loser, winner);
        assert_eq!((&by, token), (winner, *t), "{n}");
        assert_eq!(owner_of(&a, &n).await.unwrap(), Some((winner.clone(), *t)));
    }
    // A repeated claim by the owner is the same ownership, not a new token.
    let (w, t) = &winners["c0"];
    let (f, l) = if w == "web-1" { (&a, &la) } else { (&b, &lb) };
    assert_eq!(claim_won(f, l, "c0").await.token(), *t);
}

/// The owner stops keeping its lease alive (a paused host), on a 3-node cluster with one
/// member killed: its lease expires, a successor takes the certificate over with a larger
/// token, and the old owner's write is refused by etcd, leaving the successor's record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_is_fenced_once_a_successor_took_over_with_a_member_down() {
    let mut etcd = Etcd::cluster(3);
    let key = FleetKey::from_bytes([9; 32]);
    let (a, la) = FLEET.host(&etcd, "web-1").await;
    let ra = EtcdRecords::new(a.clone(), &key);
    let oa = claim_won(&a, &la, "www").await;
    ra.put_durable(&oa, &record("www", &key_pem()))
        .await
        .unwrap();

    etcd.kill(0);
    // If the killed member led, requests wait for the next election (seconds on a loaded
    // machine): this test is about the fence, so it waits for the new leader first.
    etcd.wait_healthy();
    let (b, lb) = FLEET.host(&etcd, "web-2").await;
    let rb = EtcdRecords::new(b.clone(), &key);
    // Still owned: B is refused while A's lease lives.
    assert!(
        matches!(claim(&b, &lb, "www").await.unwrap(), Claim::Taken { node, .. } if node == "web-1")
    );

    la.stop_keep_alive();
    let paused_at = Instant::now();
    let ob = loop {
        match claim(&b, &lb, "www").await.unwrap() {
            Claim::Owned(o) => break o,
            Claim::Taken { .. } => {
                assert!(paused_at.elapsed() < DEADLINE, "A's lease never expired");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let took_over = paused_at.elapsed();
    assert!(ob.token() > oa.token());
    // The successor reads A's record (keys open) and writes its own.
    let mut r = rb.get("www").await.unwrap().unwrap();
    r.last_error = Some("successor".into());
    rb.put_durable(&ob, &r).await.unwrap();

    // A, paused past its lease, comes back and writes: refused, nothing changed.
    tokio::time::timeout(DEADLINE, oa.lost()).await.unwrap();
    assert!(!la.is_live());
    let e = ra
        .put_durable(&oa, &record("www", &key_pem()))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, FleetError::Fenced { token, now, .. } if *token == oa.token() && now.contains("web-2")),
        "{e}"
    );
    let e = ra.remove_durable(&oa).await.unwrap_err();
    assert!(matches!(e, FleetError::Fenced { .. }), "{e}");
    let now = rb.get("www").await.unwrap().unwrap();
    assert_eq!(now.last_error.as_deref(), Some("successor"));
    eprintln!(
        "takeover after the owner paused: {took_over:?} (TTL {:?})",
        la.ttl()
    );
}

/// A lease revoked behind the owner's back (as etcd does when it expires during a pause the
/// owner has not noticed yet): the successor takes over at once and the owner's very next
/// write is refused by etcd, whatever the owner believes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_after_the_lease_was_revoked_is_refused_even_before_the_owner_notices() {
    let etcd = Etcd::single();
    let key = FleetKey::from_bytes([9; 32]);
    let (a, la) = FLEET.host(&etcd, "web-1").await;
    let ra = EtcdRecords::new(a.clone(), &key);
    let oa = claim_won(&a, &la, "www").await;
    ra.put_durable(&oa, &record("www", &key_pem()))
        .await
        .unwrap();

    etcd.etcdctl(&["lease", "revoke", &format!("{:x}", la.id())]);
    let (b, lb) = FLEET.host(&etcd, "web-2").await;
    let ob = claim_won(&b, &lb, "www").await;
    let e = ra
        .put_durable(&oa, &record("www", &key_pem()))
        .await
        .unwrap_err();
    assert!(matches!(e, FleetError::Fenced { .. }), "{e}");
    // The owner sees the loss too, at its next keep-alive.
    tokio::time::timeout(DEADLINE, oa.lost()).await.unwrap();
    // The successor's writes go through.
    let rb = EtcdRecords::new(b, &key);
    let r = rb.get("www").await.unwrap().unwrap();
    rb.put_durable(&ob, &r).await.unwrap();
}

/// What etcd holds has no private key in clear (etcdctl shows every value under the prefix);
/// another host with the fleet key opens it, one with another key cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_in_etcd_are_sealed_and_open_only_with_the_fleet_key() {
    let etcd = Etcd::single();
    let key = FleetKey::from_bytes([7; 32]);
    let (a, la) = FLEET.host(&etcd, "web-1").await;
    let ra = EtcdRecords::new(a.clone(), &key);
    let o = claim_won(&a, &la, "www").await;
    let (pending, live) = (key_pem(), key_pem());
    let mut r = record("www", &pending);
    let now = chrono::Utc::now();
    r.deployed = Some(DeployedCert {
        order_id: OrderId(42),
        info: CertInfo {
            not_before: now,
            not_after: now + chrono::Duration::days(90),
            serial_hex: "01".into(),
            names: vec!["www.example.com".into()],
            fingerprint_sha256: "00".into(),
        },
        cert_pem: "CERT".into(),
        chain_pem: "CHAIN".into(),
        key_pem: Secret::new(live.clone()),
    });
    ra.put_durable(&o, &r).await.unwrap();
    // A second write re-seals at the next version.
    ra.put_durable(&o, &r).await.unwrap();
    // The ownership of one certificate writes no other's record.
    let e = ra
        .put_durable(&o, &record("api", &pending))
        .await
        .unwrap_err();
    assert!(matches!(e, FleetError::WrongOwnership { .. }), "{e}");

    let dump = etcd.etcdctl(&["get", "--prefix", "/test/fleet"]);
    for pem in [&pending, &live] {
        let body = pem.lines().nth(1).unwrap();
        // Not printed: it would put the key in the test log.
        assert!(!dump.contains(body), "a key in clear in etcd");
    }
    assert!(!dump.contains("PRIVATE KEY"), "a PEM key in clear in etcd");
    // Printed only once no key in clear can be in it.
    assert!(dump.contains("/test/fleet/records/www"), "{dump}");
    assert_eq!(dump.matches("cas-certd-sealed:v1:").count(), 2, "{dump}");

    let (b, _) = FLEET.host(&etcd, "web-2").await;
    let back = EtcdRecords::new(b.clone(), &key)
        .get("www")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, r);
    let e = EtcdRecords::new(b, &FleetKey::from_bytes([8; 32]))
        .get("www")
        .await
        .unwrap_err();
    assert!(matches!(e, FleetError::Seal(_)), "{e}");
    assert!(!e.to_string().contains("PRIVATE"), "{e}");
}

/// etcd that speaks only TLS and asks every client for a certificate of its CA: the fleet
/// connects with `tls`' files and works; without the client certificate etcd refuses it; a
/// client key others can read is refused before any connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_over_tls_with_a_client_certificate_and_not_without() {
    use std::os::unix::fs::PermissionsExt as _;
    let etcd = Etcd::single_tls();
    let t = etcd.tls.as_ref().unwrap();
    let mut s = FLEET.settings(&etcd, "web-1");
    assert!(s.etcd[0].starts_with("https://"));
    s.tls = Some(FleetTls {
        ca: t.ca.clone(),
        client: Some((t.client_cert.clone(), t.client_key.clone())),
    });
    let f = Fleet::connect(&s).await.unwrap();
    let lease = Lease::grant(&f, TTL).await.unwrap();
    let o = claim_won(&f, &lease, "www").await;
    let key = FleetKey::from_bytes([1; 32]);
    EtcdRecords::new(f.clone(), &key)
        .put_durable(&o, &record("www", &key_pem()))
        .await
        .unwrap();
    assert!(etcd
        .etcdctl(&["get", "--keys-only", "--prefix", "/test/fleet"])
        .contains("/test/fleet/records/www"));

    let anonymous = FleetSettings {
        tls: Some(FleetTls {
            ca: t.ca.clone(),
            client: None,
        }),
        ..s.clone()
    };
    let f2 = Fleet::connect(&anonymous).await.unwrap();
    let e = Lease::grant(&f2, TTL).await.unwrap_err();
    assert!(matches!(e, FleetError::Etcd(_)), "{e}");

    std::fs::set_permissions(&t.client_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = Fleet::connect(&s).await.unwrap_err();
    assert!(
        matches!(&e, FleetError::Tls { path, .. } if path == &t.client_key)
            && e.to_string().contains("chmod 600"),
        "{e}"
    );
}

/// etcd with authentication on: a root user, and a user `cas` whose role may read and write
/// the fleet's prefix only. With `cas`'s password (from a 0600 file) the fleet grants, claims
/// and writes; etcd restarted (its tokens forgotten) is logged in again by itself. A wrong
/// password is refused at connect, with an error naming the user and not the password; and,
/// when etcd was away at connect, at the first request, at once (not retried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_auth_the_right_password_works_and_a_wrong_one_is_named_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut etcd = Etcd::single();
    etcd.enable_auth("cas", ETCD_SECRET, "/test/fleet/");
    let file = |name: &str, text: &str| {
        let p = etcd.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    };
    let as_user = |pw: std::path::PathBuf| FleetSettings {
        auth: Some(FleetAuth {
            user: "cas".into(),
            password: PasswordSource::File(pw),
        }),
        ..FLEET.settings(&etcd, "web-1")
    };
    let right = as_user(file("right", &format!("{ETCD_SECRET}\n")));
    let wrong = as_user(file("wrong", &format!("{WRONG_ETCD_SECRET}\n")));

    // Without a user, etcd refuses the fleet's keys (a lease needs no permission).
    let anonymous = Fleet::connect(&FLEET.settings(&etcd, "web-0"))
        .await
        .unwrap();
    let l0 = Lease::grant(&anonymous, TTL).await.unwrap();
    let e = claim(&anonymous, &l0, "www").await.unwrap_err().to_string();
    assert!(e.contains("user name is empty"), "{e}");

    let f = Fleet::connect(&right).await.unwrap();
    assert!(!format!("{f:?}").contains(ETCD_SECRET));
    let lease = Lease::grant(&f, TTL).await.unwrap();
    let o = claim_won(&f, &lease, "www").await;
    let key = FleetKey::from_bytes([3; 32]);
    let records = EtcdRecords::new(f.clone(), &key);
    records
        .put_durable(&o, &record("www", &key_pem()))
        .await
        .unwrap();
    assert!(etcd
        .etcdctl(&[ROOT, "get", "--keys-only", "--prefix", "/test/fleet/"])
        .contains("/test/fleet/records/www"));

    let e = Fleet::connect(&wrong).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, FleetError::Login { user, .. } if user == "cas")
            && msg.contains("authentication failed")
            && !msg.contains(WRONG_ETCD_SECRET),
        "{msg}"
    );

    // etcd restarted forgets every token: the next requests log in again, unasked.
    etcd.stop_all();
    let late_wrong = Fleet::connect(&wrong).await.unwrap();
    etcd.start_all();
    let r = tokio::time::timeout(DEADLINE, records.get("www"))
        .await
        .unwrap();
    assert!(r.unwrap().is_some());
    Lease::grant(&f, TTL).await.unwrap();

    // The wrong password, found out at the first request: refused at once, not retried
    // through the 10 s budget of a request that is safe to repeat.
    let t0 = Instant::now();
    let e = Lease::grant(&late_wrong, TTL)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("etcd refused to log in user \"cas\"") && !e.contains(WRONG_ETCD_SECRET),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

/// Two members of three stopped: no keep-alive can be answered, so the owner sees its lease
/// (and its ownership) lost by the lease's deadline, without any answer from etcd, and a write
/// fails rather than going anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_is_seen_lost_when_etcd_loses_its_quorum() {
    let mut etcd = Etcd::cluster(3);
    let (a, la) = FLEET.host(&etcd, "web-1").await;
    let oa = claim_won(&a, &la, "www").await;
    assert!(la.remaining() > la.ttl() / 2, "{:?}", la.remaining());
    let key = FleetKey::from_bytes([2; 32]);
    let ra = EtcdRecords::new(a, &key);
    ra.put_durable(&oa, &record("www", &key_pem()))
        .await
        .unwrap();
    etcd.kill(0);
    etcd.kill(1);
    let t0 = Instant::now();
    tokio::time::timeout(DEADLINE, oa.lost()).await.unwrap();
    let seen = t0.elapsed();
    assert!(!la.is_live());
    assert!(
        seen <= la.ttl() + Duration::from_secs(1),
        "lost seen after {seen:?}"
    );
    // A write is not retried (only the caller may decide to repeat it): it fails at once.
    let t1 = Instant::now();
    let e = ra
        .put_durable(&oa, &record("www", &key_pem()))
        .await
        .unwrap_err();
    assert!(t1.elapsed() < Duration::from_secs(5), "{:?}", t1.elapsed());
    assert!(matches!(e, FleetError::Etcd(_)), "{e}");
    eprintln!(
        "lease seen lost {seen:?} after quorum loss (TTL {:?})",
        la.ttl()
    );
}

/// The leader dies: hosts that claim, read and grant right then ride through the election (the
/// requests are safe to repeat and are retried within a budget) instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_reads_ride_through_the_leaders_death() {
    let mut etcd = Etcd::cluster(3);
    let key = FleetKey::from_bytes([5; 32]);
    let (a, la) = FLEET.host(&etcd, "web-1").await;
    let oa = claim_won(&a, &la, "www").await;
    EtcdRecords::new(a.clone(), &key)
        .put_durable(&oa, &record("www", &key_pem()))
        .await
        .unwrap();
    let leader = etcd.leader();
    // The host asks the dying leader first.
    let mut s = FLEET.settings(&etcd, "web-2");
    s.etcd.rotate_left(leader);
    let b = Fleet::connect(&s).await.unwrap();
    etcd.kill(leader);
    let t0 = Instant::now();
    let lb = Lease::grant(&b, TTL).await.unwrap();
    let ob = claim_won(&b, &lb, "api").await;
    assert!(
        matches!(claim(&b, &lb, "www").await.unwrap(), Claim::Taken { node, .. } if node == "web-1")
    );
    let r = EtcdRecords::new(b, &key).get("www").await.unwrap();
    assert!(r.is_some());
    assert!(ob.token() > oa.token());
    eprintln!(
        "requests through the leader's death answered after {:?}",
        t0.elapsed()
    );
}

/// The lifecycle's store port over etcd (`FleetRecords`): a successor that takes over a
/// record in Intent reads nothing of it until the old owner's create can no longer be in
/// flight, and a lease that has lost a third of its TTL refuses the spending call (the step
/// waits) before the lease is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_waits_out_an_intent_and_a_short_lease_may_not_spend() {
    use cas_certd::fleet::store::FleetRecords;
    use cas_certd::lifecycle::ports::Records;
    use cas_certd::store::{Store, StoreError};

    let etcd = Etcd::single();
    let key = FleetKey::from_bytes([9; 32]);
    let (old, old_lease) = FLEET.host(&etcd, "web-1").await;
    let o1 = claim_won(&old, &old_lease, "www").await;
    EtcdRecords::new(old.clone(), &key)
        .put_durable(&o1, &record("www", &key_pem()))
        .await
        .unwrap();
    old_lease.revoke().await.unwrap();

    let (new, new_lease) = FLEET.host(&etcd, "web-2").await;
    let o2 = claim_won(&new, &new_lease, "www").await;
    let state = tempfile::tempdir().unwrap();
    let in_flight = Duration::from_secs(3);
    let recs = FleetRecords::new(
        EtcdRecords::new(new.clone(), &key),
        Store::open(state.path()).unwrap(),
        in_flight,
    );
    let took = Instant::now();
    recs.take(o2).await.unwrap();
    let first = recs.get("www").await;
    assert!(
        matches!(first, Err(StoreError::Unavailable(_))),
        "an intent read at once: {first:?}"
    );
    let rec = loop {
        match recs.get("www").await {
            Ok(r) => break r.unwrap(),
            Err(StoreError::Unavailable(_)) if took.elapsed() < DEADLINE => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        took.elapsed() >= in_flight,
        "read after {:?}",
        took.elapsed()
    );
    assert_eq!(rec.phase.name(), "intent");

    assert!(recs.may_spend("www").is_ok(), "a fresh lease may spend");
    // No more keep-alives: a third of the TTL later the spending call waits, while the
    // lease (and so the ownership) still lives.
    new_lease.stop_keep_alive();
    let t0 = Instant::now();
    while recs.may_spend("www").is_ok() {
        assert!(t0.elapsed() < DEADLINE, "may_spend never refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(new_lease.is_live(), "refused only once the lease was lost");
    assert!(matches!(
        recs.may_spend("www"),
        Err(StoreError::Unavailable(_))
    ));
    // Not another host's certificate.
    assert!(matches!(
        recs.get("other").await,
        Err(StoreError::NotOurs { .. })
    ));
}

/// A list of 30 000 certificates (20-character names): as one value (what `config/<node>`
/// held before) etcd refuses it (over its 1.5 MiB request limit); published as a summary
/// and chunks it goes through. Three nodes publish it, one with a digest changed and a
/// certificate more: the two that agree read no digests at all; the odd one reads the
/// majority's list once and names exactly the two certificates. Republished right, its old
/// chunks are gone and it agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_30_000_certificates_is_published_and_compared_by_its_hash() {
    use cas_certd::fleet::confighash::{compare, publish, Digests};
    use std::collections::{BTreeMap, BTreeSet};
    let etcd = Etcd::single();
    let big: Digests = (0..30_000)
        .map(|i| (format!("certificate-{i:08}"), format!("{:032x}", i * 7)))
        .collect();
    let whole = serde_json::to_string(&big).unwrap();
    assert!(whole.len() > 1_572_864, "{} B", whole.len());
    let mut c = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .unwrap();
    let refused = c.put("/test/fleet/config/whole", whole, None).await;
    let err = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("too large"), "not refused: {err:?}");

    let mut odd = big.clone();
    odd.insert("certificate-00000007".into(), "changed".into());
    odd.insert("certificate-extra".into(), "1".into());
    let nodes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let mut hosts = Vec::new();
    for (node, list) in [("a", &big), ("b", &big), ("c", &odd)] {
        let (fleet, lease) = FLEET.host(&etcd, node).await;
        publish(&fleet, &lease, list, None).await.unwrap();
        hosts.push((fleet, lease));
    }
    for (fleet, _) in &hosts[..2] {
        let mut read = BTreeMap::new();
        assert_eq!(
            compare(fleet, &nodes, &big, &mut read).await.unwrap(),
            BTreeSet::new()
        );
        assert!(read.is_empty(), "an agreeing host read digests");
    }
    let (fleet, lease) = &hosts[2];
    let mut read = BTreeMap::new();
    let differ = compare(fleet, &nodes, &odd, &mut read).await.unwrap();
    assert_eq!(
        differ.into_iter().collect::<Vec<_>>(),
        ["certificate-00000007", "certificate-extra"]
    );
    assert_eq!(read.len(), 1, "one list read, not one per node");

    publish(fleet, lease, &big, Some(&odd)).await.unwrap();
    let keys = etcd.etcdctl(&[
        "get",
        "--prefix",
        "--keys-only",
        "/test/fleet/config_digests/c/",
    ]);
    let chunks: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(chunks.len(), 30, "{chunks:?}");
    let mut read = BTreeMap::new();
    assert!(compare(fleet, &nodes, &big, &mut read)
        .await
        .unwrap()
        .is_empty());
}
