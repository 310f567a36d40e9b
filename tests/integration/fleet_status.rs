//! `cas-certd status` in fleet mode (issue 12 items 4 and 5): the command, a real process,
//! reads etcd itself and shows per certificate its owner, the phase of its record, the
//! published set's version and each host's live version, and the live hosts that have not
//! acknowledged a published FILE proof; with etcd away it says so in one line and shows this
//! host's rows with the usual exit code. Real etcd; real daemons where ownership and records
//! matter, and in-process watchers (as in `fleet_fanout`) where the daemon does not publish
//! yet. Needs the `fleet` feature.
#![cfg(feature = "fleet")]
#![allow(clippy::unwrap_used)]
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cas_api::secret::Secret;
use cas_certd::config::{FileOwnership, FleetKeySource, FleetSettings, KeyKind};
use cas_certd::fleet::fanout::{
    fleet_view, publish_proof, publish_set, IssuedSet, Proof, ProofHost, ProofTarget, SetHost,
    SetTarget,
};
use cas_certd::fleet::keyfile::FleetKey;
use cas_certd::fleet::{claim, Claim, Fleet, Lease};
use serde_json::Value;

use crate::deploy_files::make_set;
use crate::fleet_daemon::{alidns_certs, deployed_somewhere, node_config, start};
use crate::support::bin;
use crate::support::etcd::Etcd;
use crate::support::world::{keep_output, wait_for, World};

const DEADLINE: Duration = Duration::from_secs(90);

fn status(config: &Path, json: bool) -> Output {
    let mut c = Command::new(bin());
    c.arg("--config").arg(config).arg("status");
    if json {
        c.arg("--json");
    }
    let out = c.output().unwrap();
    keep_output("status", &out);
    out
}

fn status_json(config: &Path) -> Value {
    let out = status(config, true);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `fleet.certificates[name]`.
fn cert<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["fleet"]["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {v:#}"))
}

/// Two daemons, three certificates: `status --json` on each host names the same owner per
/// certificate, a live node, and the phase of the record in etcd; every live node is listed
/// per certificate with the version it has live (none before the fan-out is wired: then none
/// is published either). Then etcd stops: the command still shows the local rows, says why
/// in one line, and exits 0.
#[test]
fn every_host_shows_the_same_owner_and_phase_and_etcd_away_is_one_line() {
    let mut etcd = Etcd::single();
    let w = World::new(&[]);
    let nodes = ["web-1", "web-2"];
    let certs = alidns_certs(3);
    let _daemons = start(&w, &etcd, &nodes, &certs);
    let configs: Vec<_> = nodes
        .iter()
        .map(|n| w.p(&format!("config-{n}.toml")))
        .collect();
    wait_for("all three deployed", DEADLINE, || {
        (0..3).all(|i| deployed_somewhere(&w, &format!("c{i}")))
    });
    // Until every record in etcd says deployed, each host agrees, and every live version
    // is the published one (the fan-out, once wired, reports after the deployment).
    let mut views = Vec::new();
    wait_for("the fleet view settled on both hosts", DEADLINE, || {
        views = configs.iter().map(|c| status_json(c)).collect();
        views.iter().all(|v| {
            (0..3).all(|i| {
                let c = cert(v, &format!("c{i}"));
                c["state"] == "deployed"
                    && c["hosts"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|h| h["version"] == c["published"])
            })
        }) && views[0]["fleet"]["certificates"] == views[1]["fleet"]["certificates"]
    });
    for (v, node) in views.iter().zip(nodes) {
        let f = &v["fleet"];
        assert_eq!(f["node"], node);
        assert_eq!(f["available"], true);
        assert_eq!(f["error"], Value::Null);
        assert_eq!(f["nodes"], serde_json::json!(nodes));
        // This host's own rows are there too, as without a fleet.
        assert_eq!(v["certificates"].as_array().unwrap().len(), 3, "{v:#}");
        for i in 0..3 {
            let c = cert(v, &format!("c{i}"));
            assert!(
                nodes.iter().any(|n| c["owner"] == *n),
                "c{i}: owner {}",
                c["owner"]
            );
            assert!(c["order_id"].is_u64(), "c{i}: {c:#}");
            let hosts: Vec<&Value> = c["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| &h["node"])
                .collect();
            assert_eq!(hosts, nodes, "c{i}: every live node listed");
            assert!(c["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .all(|h| h["left"] == false));
            assert_eq!(c["proof"], Value::Null, "DNS validation publishes no proof");
        }
    }
    let t0 = Instant::now();
    let text = status(&configs[0], false);
    eprintln!(
        "status with etcd up (3 certificates) answered in {:?}",
        t0.elapsed()
    );
    assert!(text.status.success(), "{text:?}");
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("FLEET (node web-1; live nodes: web-1, web-2)"),
        "{text}"
    );
    for i in 0..3 {
        let owner = cert(&views[0], &format!("c{i}"))["owner"]
            .as_str()
            .unwrap()
            .to_string();
        let line = text
            .lines()
            .skip_while(|l| !l.starts_with("FLEET"))
            .find(|l| l.starts_with(&format!("c{i} ")))
            .unwrap();
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[1..3], [owner.as_str(), "deployed"], "{text}");
    }

    etcd.stop_all();
    let t0 = Instant::now();
    let out = status(&configs[0], true);
    let took = t0.elapsed();
    eprintln!("status with etcd stopped answered in {took:?}");
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["fleet"]["available"], false, "{v:#}");
    assert!(!v["fleet"]["error"].as_str().unwrap().is_empty());
    assert_eq!(v["fleet"]["certificates"], serde_json::json!([]));
    assert_eq!(v["certificates"].as_array().unwrap().len(), 3, "{v:#}");
    let text = status(&configs[0], false);
    assert!(text.status.success(), "{text:?}");
    let text = String::from_utf8(text.stdout).unwrap();
    let fleet_lines: Vec<&str> = text.lines().filter(|l| l.contains("FLEET")).collect();
    assert_eq!(fleet_lines.len(), 1, "{text}");
    assert!(fleet_lines[0].contains("etcd not answering"), "{text}");
    // The endpoint and the cause, not the client's debug dump.
    let at = format!("etcd at {}: ", etcd.endpoints().join(", "));
    assert!(fleet_lines[0].contains(&at), "{text}");
    assert!(fleet_lines[0].contains("Connection refused"), "{text}");
    assert!(!fleet_lines[0].contains("tonic::"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("c2 ")), "{text}");
}

/// The `[fleet]` prefix `fleet_daemon::node_config` wrote into `config`.
fn prefix_of(config: &Path) -> String {
    std::fs::read_to_string(config)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("prefix = "))
        .unwrap()
        .trim_matches('"')
        .to_string()
}

async fn connect(etcd: &Etcd, prefix: &str, node: &str) -> Fleet {
    Fleet::connect(&FleetSettings {
        etcd: etcd.endpoints(),
        prefix: prefix.into(),
        node: node.into(),
        key: FleetKeySource::Credential,
        tls: None,
        auth: None,
        lease_ttl: Duration::from_secs(10),
    })
    .await
    .unwrap()
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

/// Three hosts follow the published sets (web-3 then leaves the fleet) and one follows the
/// proofs: `status` shows the published version, each live host's live version, web-3's as a
/// host that left, and the live host that has not acknowledged the proof.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_versions_per_host_a_host_that_left_and_unacknowledged_proofs() {
    let etcd = Etcd::single();
    let w = World::new(&[]);
    let config = node_config(&w, &etcd, "web-2", &alidns_certs(2));
    let prefix = prefix_of(&config);
    for n in ["web-1", "web-2", "web-3"] {
        // What a daemon registers (bound to its lease there; here deleted by hand to leave).
        etcd.etcdctl(&["put", &format!("{prefix}/nodes/{n}"), n]);
    }
    // The watchers' and the publisher's; `status` never opens a key.
    let key = FleetKey::from_bytes([7; 32]);
    let domains = ["c0.example.test"];
    let mut tasks = Vec::new();
    for n in ["web-1", "web-2", "web-3"] {
        let out = w.p(&format!("out-{n}"));
        std::fs::create_dir_all(&out).unwrap();
        let target = SetTarget {
            cert: "c0".into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            output_dir: out,
            files: FileOwnership {
                owner: None,
                group: None,
                cert_mode: 0o644,
                key_mode: 0o600,
            },
            keep_versions: 2,
            reload: None,
        };
        tasks.push(tokio::spawn(
            SetHost::new(connect(&etcd, &prefix, n).await, &key, vec![target]).run(),
        ));
    }
    let webroot = w.p("webroot-web-1");
    std::fs::create_dir_all(&webroot).unwrap();
    tasks.push(tokio::spawn(
        ProofHost::new(
            connect(&etcd, &prefix, "web-1").await,
            vec![ProofTarget {
                cert: "c1".into(),
                domains: vec!["c1.example.test".into()],
                webroots: vec![webroot],
            }],
        )
        .run(),
    ));
    let mut hosts = Hosts(tasks);

    let owner = connect(&etcd, &prefix, "web-1").await;
    let lease = Lease::grant(&owner, Duration::from_secs(10)).await.unwrap();
    let owned = |c: Claim| match c {
        Claim::Owned(o) => o,
        Claim::Taken { node, .. } => panic!("taken by {node}"),
    };
    let c0 = owned(claim(&owner, &lease, "c0").await.unwrap());
    let c1 = owned(claim(&owner, &lease, "c1").await.unwrap());
    let k: Secret = cas_certd::keys::generate(KeyKind::EcdsaP256, &["c0.example.test".into()])
        .unwrap()
        .0;
    let (_, set) = make_set(&domains, &k, 90);
    let issued = IssuedSet {
        order_id: 101,
        product: "symantec-free-1-free".into(),
        cert_pem: set.cert_pem,
        chain_pem: set.chain_pem,
        key_pem: set.key_pem,
    };
    assert_eq!(publish_set(&owner, &key, &c0, &issued).await.unwrap(), 1);
    publish_proof(
        &owner,
        &c1,
        &Proof {
            order_id: 7,
            domains: vec!["c1.example.test".into()],
            domain: "c1.example.test".into(),
            uri: "/.well-known/pki-validation/fileauth.txt".into(),
            content: "token-7".into(),
        },
    )
    .await
    .unwrap();
    let t0 = Instant::now();
    while fleet_view(&owner, "c0").await.unwrap().live.len() < 3 {
        assert!(t0.elapsed() < DEADLINE, "the set not live on 3 hosts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // web-3 leaves: its watcher stops and its node key goes (its lease would end); the
    // version it reported stays in etcd.
    hosts.0.remove(2).abort();
    etcd.etcdctl(&["del", &format!("{prefix}/nodes/web-3")]);

    // The proof is acknowledged by web-1 (its watcher), never by web-2 (none runs there).
    let (config2, v) = tokio::task::spawn_blocking(move || {
        let mut v = Value::Null;
        wait_for("web-1's acknowledgement", DEADLINE, || {
            v = status_json(&config);
            v["fleet"]["certificates"][1]["proof"]["acked"] == serde_json::json!(["web-1"])
        });
        (config, v)
    })
    .await
    .unwrap();
    let f = &v["fleet"];
    assert_eq!(f["node"], "web-2");
    assert_eq!(f["nodes"], serde_json::json!(["web-1", "web-2"]));
    let c = cert(&v, "c0");
    assert_eq!(c["owner"], "web-1");
    assert_eq!(c["state"], Value::Null, "nothing wrote a record");
    assert_eq!(c["published"], 1);
    assert_eq!(
        c["hosts"],
        serde_json::json!([
            { "node": "web-1", "version": 1, "left": false },
            { "node": "web-2", "version": 1, "left": false },
            { "node": "web-3", "version": 1, "left": true },
        ])
    );
    assert_eq!(c["proof"], Value::Null);
    let c = cert(&v, "c1");
    assert_eq!(
        c["proof"],
        serde_json::json!({ "order_id": 7, "acked": ["web-1"], "missing": ["web-2"] })
    );
    assert_eq!(c["published"], Value::Null);
    assert_eq!(
        c["hosts"],
        serde_json::json!([
            { "node": "web-1", "version": null, "left": false },
            { "node": "web-2", "version": null, "left": false },
        ])
    );

    let out = tokio::task::spawn_blocking(move || status(&config2, false))
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |name: &str| {
        text.lines()
            .skip_while(|l| !l.starts_with("FLEET"))
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no fleet line for {name}: {text}"))
            .to_string()
    };
    assert!(
        line("c0").contains("web-1=1 web-2=1 web-3=1 (left)"),
        "{text}"
    );
    assert!(
        line("c1").ends_with("order 7: not acked by web-2"),
        "{text}"
    );
    drop(lease);
}
