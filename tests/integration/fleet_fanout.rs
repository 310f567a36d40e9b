//! Fleet fan-out against real etcd: FILE proofs written into every host's webroot and
//! acknowledged, withdrawn everywhere; issued sets deployed in every host's output directory
//! with their key, reported live, refused everywhere when tampered with, and picked up by a
//! host that joins later; writes by a host whose ownership ended are refused. "Hosts" are
//! watchers in this process, each with its own webroot and output directory, each with its
//! own etcd connection. Needs the `fleet` feature and the `etcd` binary.
#![cfg(feature = "fleet")]
#![allow(clippy::unwrap_used)]
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cas_api::secret::Secret;
use cas_certd::config::{FileOwnership, Hook, KeyKind};
use cas_certd::fleet::fanout::{
    fleet_view, proof_status, publish_proof, publish_set, withdraw_proof, IssuedSet, Proof,
    ProofHost, ProofTarget, SetHost, SetTarget,
};
use cas_certd::fleet::keyfile::FleetKey;
use cas_certd::fleet::{Fleet, FleetError, Lease};

use crate::deploy_files::make_set;
use crate::support::etcd::Etcd;
use crate::support::fleet::{claim_won, TestFleet};
use crate::support::world::wait_for;

const TTL: Duration = Duration::from_secs(5);
const DEADLINE: Duration = Duration::from_secs(30);
const URI: &str = "/.well-known/pki-validation/fileauth.txt";

const FLEET: TestFleet = TestFleet {
    prefix: "/test/fanout",
    ttl: TTL,
};

fn fleet_key() -> FleetKey {
    FleetKey::from_bytes([7; 32])
}

/// What the watchers log, for a test's own subscriber.
#[derive(Clone, Default)]
struct Log(Arc<std::sync::Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Log {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;
    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

/// Aborts the watcher tasks when the test ends, passed or not.
struct Hosts(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Hosts {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

fn proof_file(webroot: &Path) -> PathBuf {
    webroot.join(".well-known/pki-validation/fileauth.txt")
}

/// Waits, off the runtime's threads, until `f` holds.
async fn wait(what: &str, f: impl FnMut() -> bool + Send + 'static) {
    let what = what.to_string();
    tokio::task::spawn_blocking(move || wait_for(&what, DEADLINE, f))
        .await
        .unwrap();
}

/// Three hosts with their own webroots: a published proof lands in each and each
/// acknowledges; a host configured with other names writes nothing and stays "missing";
/// withdrawing removes the file everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_proof_reaches_every_webroot_and_is_removed_everywhere_on_withdraw() {
    let etcd = Etcd::single();
    let dir = tempfile::tempdir().unwrap();
    let domains = vec!["www.example.test".to_string()];
    let mut tasks = Vec::new();
    let mut webroots = Vec::new();
    for (node, names) in [
        ("web-1", domains.clone()),
        ("web-2", domains.clone()),
        ("web-3", vec!["other.example.test".to_string()]),
    ] {
        let webroot = dir.path().join(node);
        std::fs::create_dir_all(&webroot).unwrap();
        webroots.push(webroot.clone());
        let host = ProofHost::new(
            FLEET.connect(&etcd, node).await,
            vec![ProofTarget {
                cert: "www".into(),
                domains: names,
                webroots: vec![webroot],
            }],
        );
        tasks.push(tokio::spawn(host.run()));
    }
    let _hosts = Hosts(tasks);
    let owner_fleet = FLEET.connect(&etcd, "web-1").await;
    let (_lease, owner) = FLEET.owner(&owner_fleet, "www").await;
    let proof = Proof {
        order_id: 77,
        domains: domains.clone(),
        domain: "www.example.test".into(),
        uri: URI.into(),
        content: "token-abc".into(),
    };
    publish_proof(&owner_fleet, &owner, &proof).await.unwrap();
    for w in &webroots[..2] {
        let f = proof_file(w);
        wait("the proof in every webroot", move || {
            std::fs::read_to_string(&f).is_ok_and(|s| s == "token-abc")
        })
        .await;
    }
    let nodes: Vec<String> = ["web-1", "web-2", "web-3"].map(String::from).to_vec();
    let t0 = tokio::time::Instant::now();
    let status = loop {
        let s = proof_status(&owner_fleet, "www", &nodes)
            .await
            .unwrap()
            .unwrap();
        if s.acked.len() == 2 || t0.elapsed() > DEADLINE {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.order_id, 77);
    assert_eq!(status.acked, ["web-1", "web-2"]);
    // The host whose configuration names other domains wrote nothing and never acknowledged.
    assert_eq!(status.missing, ["web-3"]);
    assert!(!proof_file(&webroots[2]).exists());

    withdraw_proof(&owner_fleet, &owner).await.unwrap();
    for w in &webroots[..2] {
        let f = proof_file(w);
        wait("the proof gone from every webroot", move || !f.exists()).await;
    }
    assert_eq!(
        proof_status(&owner_fleet, "www", &nodes).await.unwrap(),
        None
    );
}

struct SetHostDirs {
    out: PathBuf,
    hook_marker: PathBuf,
}

fn set_target(cert: &str, domains: &[&str], d: &SetHostDirs) -> SetTarget {
    SetTarget {
        cert: cert.into(),
        domains: domains.iter().map(|s| s.to_string()).collect(),
        output_dir: d.out.clone(),
        files: FileOwnership {
            owner: None,
            group: None,
            cert_mode: 0o644,
            key_mode: 0o600,
        },
        keep_versions: 2,
        reload: Some(Hook {
            argv: vec!["/usr/bin/touch".into(), d.hook_marker.display().to_string()],
            timeout: Duration::from_secs(10),
            pass_env: vec![],
        }),
    }
}

fn host_dirs(root: &Path, node: &str) -> SetHostDirs {
    let out = root.join(node).join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    SetHostDirs {
        out,
        hook_marker: root.join(node).join("reloaded"),
    }
}

fn new_key() -> Secret {
    cas_certd::keys::generate(KeyKind::EcdsaP256, &["www.example.test".into()])
        .unwrap()
        .0
}

fn issued(domains: &[&str], key: &Secret, order_id: u64) -> IssuedSet {
    let (_, set) = make_set(domains, key, 90);
    IssuedSet {
        order_id,
        product: "digicert-free-1-free".into(),
        cert_pem: set.cert_pem,
        chain_pem: set.chain_pem,
        key_pem: set.key_pem,
    }
}

/// The live key and certificate of `cert` on a host, when both are there.
fn live_pair(out: &Path, cert: &str) -> Option<(String, String)> {
    let d = out.join(cert);
    Some((
        std::fs::read_to_string(d.join("cert.pem")).ok()?,
        std::fs::read_to_string(d.join("privkey.pem")).ok()?,
    ))
}

async fn wait_live(fleet: &Fleet, cert: &str, want: &[(&str, i64)]) {
    let want: Vec<(String, i64)> = want.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    let t0 = tokio::time::Instant::now();
    loop {
        let v = fleet_view(fleet, cert).await.unwrap();
        if v.live == want {
            return;
        }
        assert!(
            t0.elapsed() < DEADLINE,
            "{cert}: live {:?}, want {want:?}",
            v.live
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A 3-member cluster, two hosts: an issued set lands in both output directories with its
/// key, each runs its reload hook and reports version 1; a third host started afterwards gets
/// it with no order; with the member every host talks to killed, the next set moves every
/// host to version 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issued_set_is_deployed_on_every_host_and_a_late_host_gets_it_too() {
    let etcd = Etcd::cluster(3);
    let root = tempfile::tempdir().unwrap();
    let key = fleet_key();
    let names = ["www.example.test"];
    let mut tasks = Vec::new();
    let mut dirs = Vec::new();
    for node in ["web-1", "web-2"] {
        let d = host_dirs(root.path(), node);
        let host = SetHost::new(
            FLEET.connect(&etcd, node).await,
            &key,
            vec![set_target("www", &names, &d)],
        );
        tasks.push(tokio::spawn(host.run()));
        dirs.push(d);
    }
    let mut hosts = Hosts(tasks);
    let owner_fleet = FLEET.connect(&etcd, "web-1").await;
    let (_lease, owner) = FLEET.owner(&owner_fleet, "www").await;
    let k1 = new_key();
    let set1 = issued(&names, &k1, 101);
    let t0 = std::time::Instant::now();
    assert_eq!(
        publish_set(&owner_fleet, &key, &owner, &set1)
            .await
            .unwrap(),
        1
    );
    wait_live(&owner_fleet, "www", &[("web-1", 1), ("web-2", 1)]).await;
    // Publish to the last host's live report, hooks included (docs/FLEET.md quotes it).
    eprintln!("set published -> live on 2 hosts: {:?}", t0.elapsed());
    for d in &dirs {
        assert_eq!(
            live_pair(&d.out, "www"),
            Some((set1.cert_pem.clone(), k1.expose().to_string()))
        );
        assert!(d.hook_marker.exists(), "the reload hook did not run");
    }
    // etcd holds no key in clear.
    let dump = etcd.etcdctl(&["get", "--prefix", "/test/fanout"]);
    assert!(
        !dump.contains("PRIVATE KEY"),
        "a private key in clear in etcd (not printed)"
    );

    // A host joining later (empty output directory) deploys the live set with no order.
    let late = host_dirs(root.path(), "web-3");
    let host = SetHost::new(
        FLEET.connect(&etcd, "web-3").await,
        &key,
        vec![set_target("www", &names, &late)],
    );
    hosts.0.push(tokio::spawn(host.run()));
    wait_live(
        &owner_fleet,
        "www",
        &[("web-1", 1), ("web-2", 1), ("web-3", 1)],
    )
    .await;
    assert_eq!(
        live_pair(&late.out, "www"),
        Some((set1.cert_pem.clone(), k1.expose().to_string()))
    );

    // The member every host talks to first dies; the next issued set still replaces the
    // live one everywhere (each watch fails over: a fresh read from another member).
    let mut etcd = etcd;
    etcd.kill(0);
    let k2 = new_key();
    let set2 = issued(&names, &k2, 102);
    let t1 = std::time::Instant::now();
    assert_eq!(
        publish_set(&owner_fleet, &key, &owner, &set2)
            .await
            .unwrap(),
        2
    );
    wait_live(
        &owner_fleet,
        "www",
        &[("web-1", 2), ("web-2", 2), ("web-3", 2)],
    )
    .await;
    eprintln!(
        "member killed, set 2 published -> live on 3 hosts: {:?}",
        t1.elapsed()
    );
    for out in dirs.iter().map(|d| &d.out).chain([&late.out]) {
        assert_eq!(
            live_pair(out, "www"),
            Some((set2.cert_pem.clone(), k2.expose().to_string()))
        );
    }
}

/// Sets that fail a host's checks are refused on every host and never deployed: another
/// certificate's names, a key that is not the certificate's, a value sealed for another
/// certificate (copied in etcd). A good set published after them is deployed, so the hosts
/// had read the bad ones by then.
// One thread: the watchers' tasks log into this test's subscriber (`set_default` is per thread).
#[tokio::test(flavor = "current_thread")]
async fn tampered_sets_are_refused_everywhere_and_never_deployed() {
    let log = Log::default();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .json()
            .with_writer(log.clone())
            .finish(),
    );
    let etcd = Etcd::single();
    let root = tempfile::tempdir().unwrap();
    let key = fleet_key();
    let names = ["www.example.test"];
    let mut tasks = Vec::new();
    let mut dirs = Vec::new();
    for node in ["web-1", "web-2"] {
        let d = host_dirs(root.path(), node);
        // Five certificates with the same names: only what is wrong with each set differs.
        let targets = ["names", "key", "moved", "good", "source"]
            .iter()
            .map(|c| set_target(c, &names, &d))
            .collect();
        let host = SetHost::new(FLEET.connect(&etcd, node).await, &key, targets);
        tasks.push(tokio::spawn(host.run()));
        dirs.push(d);
    }
    let _hosts = Hosts(tasks);
    let fleet = FLEET.connect(&etcd, "web-1").await;
    let lease = Lease::grant(&fleet, TTL).await.unwrap();
    let own = |c: &'static str| {
        let (fleet, lease) = (fleet.clone(), lease.clone());
        async move { claim_won(&fleet, &lease, c).await }
    };
    // Other names.
    let k = new_key();
    let other = issued(&["other.example.test"], &k, 1);
    publish_set(&fleet, &key, &own("names").await, &other)
        .await
        .unwrap();
    // A key that is not the certificate's.
    let mut wrong = issued(&names, &k, 2);
    wrong.key_pem = new_key();
    publish_set(&fleet, &key, &own("key").await, &wrong)
        .await
        .unwrap();
    // A set sealed for "source", copied to "moved" at the same version.
    publish_set(&fleet, &key, &own("source").await, &issued(&names, &k, 3))
        .await
        .unwrap();
    let value = etcd.etcdctl(&["get", "--print-value-only", "/test/fanout/sets/source"]);
    etcd.etcdctl(&[
        "put",
        "/test/fanout/sets/moved",
        value.trim_end_matches('\n'),
    ]);
    // Then a good one.
    publish_set(&fleet, &key, &own("good").await, &issued(&names, &k, 4))
        .await
        .unwrap();
    wait_live(&fleet, "good", &[("web-1", 1), ("web-2", 1)]).await;
    wait_live(&fleet, "source", &[("web-1", 1), ("web-2", 1)]).await;
    let text = log.text();
    // Checked before anything that prints the log: it must not hold a key.
    assert!(
        !text.contains("PRIVATE KEY"),
        "a key in the log (not printed)"
    );
    for cert in ["names", "key", "moved"] {
        for node in ["web-1", "web-2"] {
            let refused = text.lines().any(|l| {
                l.contains("\"fleet.set_refused\"")
                    && l.contains(&format!("\"cert\":\"{cert}\""))
                    && l.contains(&format!("\"node\":\"{node}\""))
            });
            assert!(
                refused,
                "{cert}: no fleet.set_refused from {node} in\n{text}"
            );
        }
        assert_eq!(fleet_view(&fleet, cert).await.unwrap().live, []);
        for d in &dirs {
            assert!(
                !d.out.join(cert).exists(),
                "{cert} deployed on {}",
                d.out.display()
            );
        }
    }
}

/// Once another host owns the certificate, the old owner can publish neither a proof nor a
/// set, nor withdraw the successor's proof: etcd refuses the fenced transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_former_owner_can_publish_nothing() {
    let etcd = Etcd::single();
    let key = fleet_key();
    let a = FLEET.connect(&etcd, "web-1").await;
    let b = FLEET.connect(&etcd, "web-2").await;
    let (lease_a, old) = FLEET.owner(&a, "www").await;
    lease_a.revoke().await.unwrap();
    let (_lease_b, new) = FLEET.owner(&b, "www").await;
    let proof = Proof {
        order_id: 1,
        domains: vec!["www.example.test".into()],
        domain: "www.example.test".into(),
        uri: URI.into(),
        content: "new".into(),
    };
    publish_proof(&b, &new, &proof).await.unwrap();
    let stale = Proof {
        content: "stale".into(),
        ..proof.clone()
    };
    assert!(matches!(
        publish_proof(&a, &old, &stale).await,
        Err(FleetError::Fenced { .. })
    ));
    assert!(matches!(
        withdraw_proof(&a, &old).await,
        Err(FleetError::Fenced { .. })
    ));
    let set = issued(&["www.example.test"], &new_key(), 5);
    assert!(matches!(
        publish_set(&a, &key, &old, &set).await,
        Err(FleetError::Fenced { .. })
    ));
    let got = etcd.etcdctl(&["get", "--print-value-only", "/test/fanout/proofs/www"]);
    assert!(got.contains("\"new\""), "{got}");
    assert_eq!(fleet_view(&b, "www").await.unwrap().published, None);
}

/// A proof watcher for certificate "lb" on `domain`, writing into `webroot`.
async fn proof_host(
    etcd: &Etcd,
    node: &str,
    domain: &str,
    webroot: PathBuf,
) -> tokio::task::JoinHandle<()> {
    let host = ProofHost::new(
        FLEET.connect(etcd, node).await,
        vec![ProofTarget {
            cert: "lb".into(),
            domains: vec![domain.to_string()],
            webroots: vec![webroot],
        }],
    );
    tokio::spawn(host.run())
}

/// The simulator behind its load-balancer mode over two real webroot servers: with the proof
/// fanned out to only one host, some validations fail (the fetch lands on the other host) and
/// some pass; once both hosts follow the proofs, every validation passes at its first fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_load_balancer_a_proof_on_one_host_fails_sometimes_and_on_both_never() {
    use crate::support::world::{serve_webroot, spawn_sim, KEY_ID, KEY_SECRET};
    use cas_api::model::{CertificateState, Challenge, Contact, ValidateType};

    let etcd = Etcd::single();
    let dir = tempfile::tempdir().unwrap();
    let domain = "lb.example.test";
    let webroots: Vec<PathBuf> = ["web-1", "web-2"]
        .iter()
        .map(|n| {
            let w = dir.path().join(n);
            std::fs::create_dir_all(&w).unwrap();
            w
        })
        .collect();
    let addrs: Vec<String> = webroots
        .iter()
        .map(|w| serve_webroot(w.clone()).to_string())
        .collect();
    let resolve = format!("{domain}={}", addrs.join(","));
    let (_sim, sim_addr) = spawn_sim(
        dir.path(),
        serve_webroot(dir.path().join("unused")),
        "127.0.0.1:0",
        &[
            "--resolve",
            &resolve,
            "--validation-delay",
            "0s",
            "--review-delay",
            "1h",
            "--seed",
            "12",
        ],
    );
    let endpoint = url::Url::parse(&format!("http://{sim_addr}")).unwrap();
    let cas = cas_api::Client::new(
        &cas_api::ClientOptions {
            cas_endpoint: endpoint.clone(),
            alidns_endpoint: endpoint,
            signature: cas_api::SignatureVersion::V3,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            qps: 100.0,
            qps_overrides: vec![],
            max_attempts: 1,
            max_retry_time: Duration::from_secs(10),
        },
        cas_api::credentials::Credentials::fixed(cas_api::credentials::AccessKey {
            id: KEY_ID.into(),
            secret: Secret::new(KEY_SECRET),
            security_token: None,
            expires: None,
        }),
    )
    .unwrap();
    let contact = Contact {
        name: "Ops".into(),
        phone: "13900000000".into(),
        email: "ops@example.test".into(),
    };
    let mut hosts = Hosts(vec![
        proof_host(&etcd, "web-1", domain, webroots[0].clone()).await,
    ]);
    let owner_fleet = FLEET.connect(&etcd, "web-1").await;
    let (_lease, owner) = FLEET.owner(&owner_fleet, "lb").await;

    // One order: its challenge, the proof fanned out and acknowledged by `nodes`, then the
    // state after the next check.
    let order_once = |nodes: Vec<String>| {
        let (cas, contact, owner_fleet, owner) = (&cas, &contact, &owner_fleet, &owner);
        async move {
            let id = cas
                .create_certificate_request(
                    "symantec-free-1-free",
                    domain,
                    contact,
                    ValidateType::File,
                )
                .await
                .unwrap();
            let CertificateState::DomainVerify(Challenge::File { uri, content, .. }) =
                cas.describe_certificate_state(id).await.unwrap()
            else {
                panic!("not a FILE challenge")
            };
            let proof = Proof {
                order_id: id.0,
                domains: vec![domain.to_string()],
                domain: domain.to_string(),
                uri,
                content,
            };
            publish_proof(owner_fleet, owner, &proof).await.unwrap();
            let t0 = tokio::time::Instant::now();
            loop {
                let s = proof_status(owner_fleet, "lb", &nodes).await.unwrap();
                if s.is_some_and(|s| s.order_id == id.0 && s.missing.is_empty()) {
                    break;
                }
                assert!(
                    t0.elapsed() < DEADLINE,
                    "proof not acknowledged by {nodes:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            cas.describe_certificate_state(id).await.unwrap()
        }
    };

    // The proof on web-1 only: the balancer sends some checks to web-2, which has none.
    let mut failed = 0;
    let mut passed = 0;
    for _ in 0..12 {
        match order_once(vec!["web-1".into()]).await {
            CertificateState::DomainVerify(_) => failed += 1,
            CertificateState::Process => passed += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(failed > 0 && passed > 0, "failed {failed}, passed {passed}");

    // web-2 follows the proofs too: every check passes.
    hosts
        .0
        .push(proof_host(&etcd, "web-2", domain, webroots[1].clone()).await);
    for _ in 0..6 {
        let s = order_once(vec!["web-1".into(), "web-2".into()]).await;
        assert_eq!(s, CertificateState::Process);
    }
}

/// More than 4 MiB of sets under `sets/` (1 200 values of 4 KB for certificates this host
/// does not deploy, then the one it does, last in key order): one unpaged range of them is
/// refused by the client (its 4 MiB decode limit), yet a host joining now reads them all in
/// pages at one revision, deploys its certificate, and still follows the watch from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_host_reads_over_4_mib_of_sets_in_pages_and_deploys() {
    let etcd = Etcd::single();
    let root = tempfile::tempdir().unwrap();
    let key = fleet_key();
    let names = ["www.example.test"];
    let dir = format!("{}/sets/", FLEET.prefix);
    let mut c = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .unwrap();
    let filler = "x".repeat(4096);
    for batch in 0..12 {
        let ops: Vec<etcd_client::TxnOp> = (0..100)
            .map(|i| {
                etcd_client::TxnOp::put(
                    format!("{dir}other-{:04}", batch * 100 + i),
                    filler.clone(),
                    None,
                )
            })
            .collect();
        c.txn(etcd_client::Txn::new().and_then(ops)).await.unwrap();
    }
    let whole = c
        .get(
            dir.clone(),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await;
    let err = whole.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("message length too large"),
        "one range of the sets was not refused: {err:?}"
    );

    let owner_fleet = FLEET.connect(&etcd, "web-1").await;
    let (_lease, owner) = FLEET.owner(&owner_fleet, "www").await;
    let k1 = new_key();
    let set1 = issued(&names, &k1, 201);
    assert_eq!(
        publish_set(&owner_fleet, &key, &owner, &set1)
            .await
            .unwrap(),
        1
    );
    let d = host_dirs(root.path(), "web-2");
    let host = SetHost::new(
        FLEET.connect(&etcd, "web-2").await,
        &key,
        vec![set_target("www", &names, &d)],
    );
    let _hosts = Hosts(vec![tokio::spawn(host.run())]);
    wait_live(&owner_fleet, "www", &[("web-2", 1)]).await;
    assert_eq!(
        live_pair(&d.out, "www"),
        Some((set1.cert_pem.clone(), k1.expose().to_string()))
    );
    // The watch starts right after the paged read's revision: the next set arrives.
    let k2 = new_key();
    let set2 = issued(&names, &k2, 202);
    assert_eq!(
        publish_set(&owner_fleet, &key, &owner, &set2)
            .await
            .unwrap(),
        2
    );
    wait_live(&owner_fleet, "www", &[("web-2", 2)]).await;
    assert_eq!(
        live_pair(&d.out, "www"),
        Some((set2.cert_pem.clone(), k2.expose().to_string()))
    );
}
