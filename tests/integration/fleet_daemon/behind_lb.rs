//! Issue 12's "done when" at daemon level: 20 FILE certificates, 3 daemons on a 3-member etcd,
//! each host with its own webroot per site behind the simulator's load balancer (`--resolve
//! 'cN.lb.test=A,B,C'`: each CAS fetch lands on one host at random, so a proof missing on any
//! host fails). Exactly 20 paid orders; every host serves byte-identical sets whose key
//! matches the certificate; etcd holds no private key in clear; no log holds the fleet key.
use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::{lines_with, live_file, log_of, start_with_webroots, DEADLINE, NODES};
use crate::support::etcd::Etcd;
use crate::support::world::{openssl, serve_webroot, wait_for, World};

const N: usize = 20;
/// The fleet key node_config writes (base64), and its 32 bytes in hex.
const FLEET_KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const FLEET_KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// Per certificate, when `node` logged `event` for it first.
fn times(w: &World, node: &str, event: &str) -> BTreeMap<String, DateTime<Utc>> {
    let mut out = BTreeMap::new();
    for l in lines_with(w, node, event) {
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        let (Some(cert), Some(t)) = (v["cert"].as_str(), v["timestamp"].as_str()) else {
            continue;
        };
        out.entry(cert.to_string()).or_insert(t.parse().unwrap());
    }
    out
}

/// Every value under `prefix`, as etcd holds it.
fn values(etcd: &Etcd, prefix: &str) -> Vec<(String, Vec<u8>)> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let out = etcd.etcdctl(&["get", "--prefix", prefix, "--write-out=json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| {
            let key = b64.decode(kv["key"].as_str().unwrap()).unwrap();
            let value = b64
                .decode(kv["value"].as_str().unwrap_or_default())
                .unwrap();
            (String::from_utf8(key).unwrap(), value)
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn twenty_file_certificates_behind_a_load_balancer_are_paid_once_and_served_alike_everywhere() {
    use base64::Engine as _;
    let t0 = Instant::now();
    let etcd = Etcd::cluster(3);
    // A webroot per site and host (as vhosts have their own document roots): CAS's FILE proof
    // is always `fileauth.txt`, so certificates sharing a webroot take turns.
    let roots = tempfile::tempdir().unwrap();
    let webroot = |n: &str, i: usize| roots.path().join(n).join(format!("c{i}"));
    let mut sim_args = Vec::new();
    for i in 0..N {
        let addrs: Vec<String> = NODES
            .iter()
            .map(|n| {
                std::fs::create_dir_all(webroot(n, i)).unwrap();
                serve_webroot(webroot(n, i)).to_string()
            })
            .collect();
        sim_args.push("--resolve".to_string());
        sim_args.push(format!("c{i}.lb.test={}", addrs.join(",")));
    }
    let sim_args: Vec<&str> = sim_args.iter().map(String::as_str).collect();
    let w = World::new(&sim_args);
    let certs: String = (0..N)
        .map(|i| {
            format!(
                "[[certificate]]\nname = \"c{i}\"\ndomains = [\"c{i}.lb.test\"]\n\
                validation = {{ method = \"file\", webroot = \"WEBROOT/c{i}\" }}\n"
            )
        })
        .collect();
    let _daemons = start_with_webroots(&w, &etcd, &NODES, &certs, |n| roots.path().join(n));
    wait_for("every certificate live on every host", DEADLINE, || {
        (0..N).all(|i| {
            NODES
                .iter()
                .all(|n| live_file(&w, n, &format!("c{i}"), "cert.pem").exists())
        })
    });
    let all_live = t0.elapsed();

    // Paid once each: the simulator's books.
    let orders = w.ledger()["orders"].as_array().unwrap().clone();
    assert_eq!(orders.len(), N, "{orders:?}");
    for i in 0..N {
        assert_eq!(w.orders_for(&format!("c{i}.lb.test")), 1, "c{i}");
    }

    // Every host wrote every proof into its own webroot (the fan-out), and refused none.
    for n in NODES {
        let written = times(&w, n, "fleet.proof_written");
        assert_eq!(
            written.len(),
            N,
            "{n} wrote the proofs of {:?}",
            written.keys()
        );
        for event in ["fleet.proof_refused", "fleet.set_refused"] {
            assert!(lines_with(&w, n, event).is_empty(), "{n}: {event}");
        }
    }

    // The same set on every host, its key the certificate's.
    let mut keys = Vec::new();
    for i in 0..N {
        let c = format!("c{i}");
        for f in ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"] {
            let first = std::fs::read(live_file(&w, NODES[0], &c, f)).unwrap();
            for n in &NODES[1..] {
                let other = std::fs::read(live_file(&w, n, &c, f)).unwrap();
                assert!(
                    first == other,
                    "{c}/{f} differs between {} and {n}",
                    NODES[0]
                );
            }
        }
        let path = |f: &str| live_file(&w, NODES[2], &c, f).display().to_string();
        let key_pub = openssl(&["pkey", "-in", &path("privkey.pem"), "-pubout"]);
        let cert_pub = openssl(&["x509", "-in", &path("cert.pem"), "-noout", "-pubkey"]);
        assert_eq!(key_pub, cert_pub, "{c}: the key is not the certificate's");
        keys.push(std::fs::read_to_string(path("privkey.pem")).unwrap());
    }

    // No private key in clear in etcd: no PEM, no key's base64 body (or a line of it), no DER.
    let stored = values(&etcd, "/test/daemon/");
    assert!(stored.iter().any(|(k, _)| k.contains("/sets/")), "no sets?");
    for (k, v) in &stored {
        assert!(!contains(v, b"PRIVATE KEY"), "{k} holds a PEM key");
        for pem in &keys {
            let lines: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            let body = lines.concat();
            let der = base64::engine::general_purpose::STANDARD
                .decode(&body)
                .unwrap();
            assert!(!contains(v, body.as_bytes()), "{k} holds a key's base64");
            assert!(!contains(v, &der), "{k} holds a key's DER");
            for l in lines.iter().filter(|l| l.len() >= 32) {
                assert!(!contains(v, l.as_bytes()), "{k} holds a line of a key");
            }
        }
    }
    // No log holds the fleet key (nor a private key).
    for n in NODES {
        let log = log_of(&w, n);
        assert!(!log.is_empty());
        assert!(
            !log.contains(FLEET_KEY_B64) && !log.contains(FLEET_KEY_HEX),
            "{n}"
        );
        assert!(!log.contains("PRIVATE KEY"), "{n}");
    }

    // From each certificate's cert.issued (its owner) to its last host's deployment.
    let issued: BTreeMap<String, DateTime<Utc>> = NODES
        .iter()
        .flat_map(|n| times(&w, n, "cert.issued"))
        .collect();
    assert_eq!(issued.len(), N);
    let mut spread: Vec<f64> = issued
        .iter()
        .map(|(c, at)| {
            let last = NODES
                .iter()
                .map(|n| {
                    let own = times(&w, n, "cert.deployed").get(c).copied();
                    let fanned = times(&w, n, "fleet.set_deployed").get(c).copied();
                    own.into_iter().chain(fanned).min().unwrap()
                })
                .max()
                .unwrap();
            (last - *at).num_milliseconds() as f64 / 1000.0
        })
        .collect();
    spread.sort_by(f64::total_cmp);
    let median = spread[N / 2];
    eprintln!(
        "{N} certificates live on 3 hosts {:.1} s after the start; cert.issued -> last host \
        deployed: median {median:.2} s, max {:.2} s; whole test {:.1} s",
        all_live.as_secs_f64(),
        spread[N - 1],
        t0.elapsed().as_secs_f64()
    );
    assert!(median <= 2.0, "issue to every host: median {median} s");
}

/// FILE certificates sharing a webroot take turns (CAS's proof is always `fileauth.txt`).
/// Waiting is routine, as on one host (`Event::PublishBusy` at debug): a host does not log
/// `fleet.proof_refused` (error, notified by default) for it, and writes the waiting proof
/// as soon as the other one is removed. (Each host once logged n(n-1)/2 such errors for n
/// certificates taking turns: 15 for 6.)
#[test]
fn certificates_sharing_a_webroot_wait_their_turn_without_an_error_per_retry() {
    const M: usize = 6;
    let etcd = Etcd::single();
    let roots = tempfile::tempdir().unwrap();
    let nodes = &NODES[..2];
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| {
            std::fs::create_dir_all(roots.path().join(n)).unwrap();
            serve_webroot(roots.path().join(n)).to_string()
        })
        .collect();
    let w = World::new(&["--resolve", &format!("*.share.test={}", addrs.join(","))]);
    let certs: String = (0..M)
        .map(|i| {
            format!(
                "[[certificate]]\nname = \"s{i}\"\ndomains = [\"s{i}.share.test\"]\n\
                validation = {{ method = \"file\", webroot = \"WEBROOT\" }}\n"
            )
        })
        .collect();
    let _daemons = start_with_webroots(&w, &etcd, nodes, &certs, |n| roots.path().join(n));
    wait_for("every certificate live on both hosts", DEADLINE, || {
        (0..M).all(|i| {
            nodes
                .iter()
                .all(|n| live_file(&w, n, &format!("s{i}"), "cert.pem").exists())
        })
    });
    for i in 0..M {
        assert_eq!(w.orders_for(&format!("s{i}.share.test")), 1, "s{i}");
    }
    for n in nodes {
        let refused = lines_with(&w, n, "fleet.proof_refused").len();
        assert!(
            refused <= M,
            "{n} logged fleet.proof_refused {refused} times for {M} certificates taking turns"
        );
    }
}
