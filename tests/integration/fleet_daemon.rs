//! The daemon in fleet mode: real `cas-certd run` processes with different node names, state
//! and output directories, one real etcd, one simulator; DNS validation (Alidns against the
//! simulator), so no proof fan-out is needed. Each certificate is ordered once fleet-wide,
//! ownership spreads, a killed owner's order is finished by a successor without a second
//! paid order, and an etcd outage orders nothing and is said once. Needs the `fleet` feature.
#![cfg(feature = "fleet")]
#![allow(clippy::unwrap_used)]
mod behind_lb;
mod fenced;
mod in_flight;
mod late_host;
mod members;
mod paused;
mod renew;

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::support::etcd::{Etcd, ETCD_SECRET, ROOT, WRONG_ETCD_SECRET};
use crate::support::world::{wait_for, Proc, World};

const NODES: [&str; 3] = ["web-1", "web-2", "web-3"];
const DEADLINE: Duration = Duration::from_secs(90);

pub(crate) fn alidns_certs(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[certificate]]\nname = \"c{i}\"\ndomains = [\"c{i}.example.test\"]\nvalidation = {{ method = \"alidns\" }}\n"
            )
        })
        .collect()
}

/// The world's config for `node`: its own state and output directories, short API timeouts
/// (how long a successor waits before adopting an interrupted order) and `[fleet]`.
pub(crate) fn node_config(w: &World, etcd: &Etcd, node: &str, certs: &str) -> PathBuf {
    node_config_with(w, etcd, node, certs, "2s")
}

/// [`node_config`] with the API's `read_timeout` given: the in-flight bound a successor waits
/// out is `max_retry_time` (2 s) + `connect_timeout` (1 s) + `read_timeout`.
fn node_config_with(
    w: &World,
    etcd: &Etcd,
    node: &str,
    certs: &str,
    read_timeout: &str,
) -> PathBuf {
    let base = std::fs::read_to_string(w.config(certs)).unwrap();
    let key = w.p("fleet.key");
    if !key.exists() {
        std::fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let state = w.p("state").display().to_string();
    let live = w.p("live").display().to_string();
    let endpoints: Vec<String> = etcd
        .endpoints()
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect();
    let text = base
        .replace(&format!("\"{state}\""), &format!("\"{state}-{node}\""))
        .replace(&format!("\"{live}\""), &format!("\"{live}-{node}\""))
        .replace(
            "[cas]\n",
            &format!("[cas]\nconnect_timeout = \"1s\"\nread_timeout = \"{read_timeout}\"\nmax_retry_time = \"2s\"\n"),
        )
        + &format!(
            "[fleet]\netcd = [{}]\nprefix = \"/test/daemon\"\nnode = \"{node}\"\nkey_file = \"{}\"\nlease_ttl = \"2s\"\n",
            endpoints.join(", "),
            key.display()
        );
    let path = w.p(&format!("config-{node}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) fn log_of(w: &World, node: &str) -> String {
    std::fs::read_to_string(w.p(&format!("{node}.log"))).unwrap_or_default()
}

/// The log lines of `node` with `event`.
fn lines_with(w: &World, node: &str, event: &str) -> Vec<String> {
    let tag = format!("\"event\":\"{event}\"");
    log_of(w, node)
        .lines()
        .filter(|l| l.contains(&tag))
        .map(str::to_string)
        .collect()
}

/// When `node` first logged `event` (its JSON line's timestamp).
fn first_at(w: &World, node: &str, event: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let line = lines_with(w, node, event).into_iter().next()?;
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    Some(v["timestamp"].as_str()?.parse().unwrap())
}

pub(crate) fn count(w: &World, node: &str, event: &str) -> usize {
    log_of(w, node)
        .matches(&format!("\"event\":\"{event}\""))
        .count()
}

/// Whether `node` logged a claim of `cert`.
fn claimed(w: &World, node: &str, cert: &str) -> bool {
    let tag = format!("\"cert\":\"{cert}\"");
    lines_with(w, node, "fleet.claimed")
        .iter()
        .any(|l| l.contains(&tag))
}

fn live_file(w: &World, node: &str, cert: &str, file: &str) -> PathBuf {
    w.p(&format!("live-{node}")).join(cert).join(file)
}

/// Whether `cert` is deployed on some node (its owner: sets are not fanned out yet).
pub(crate) fn deployed_somewhere(w: &World, cert: &str) -> bool {
    NODES.iter().any(|n| {
        w.p(&format!("live-{n}"))
            .join(cert)
            .join("cert.pem")
            .exists()
    })
}

pub(crate) fn start(w: &World, etcd: &Etcd, nodes: &[&str], certs: &str) -> Vec<Proc> {
    nodes
        .iter()
        .map(|n| w.daemon(&node_config(w, etcd, n, certs), &format!("{n}.log")))
        .collect()
}

/// Starts `nodes` on `certs`, where `WEBROOT` stands for each node's own webroot
/// (`webroot(node)`) and `HOOKLOG` for its own hook log (`hook-<node>.log` in the world).
pub(crate) fn start_with_webroots(
    w: &World,
    etcd: &Etcd,
    nodes: &[&str],
    certs: &str,
    webroot: impl Fn(&str) -> PathBuf,
) -> Vec<Proc> {
    nodes
        .iter()
        .map(|n| {
            let path = node_config(w, etcd, n, certs);
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("WEBROOT", &webroot(n).display().to_string())
                .replace(
                    "HOOKLOG",
                    &w.p(&format!("hook-{n}.log")).display().to_string(),
                );
            std::fs::write(&path, text).unwrap();
            w.daemon(&path, &format!("{n}.log"))
        })
        .collect()
}

/// 3 daemons × 6 certificates: each ordered exactly once (the simulator's books), each node
/// owns at least one.
#[test]
fn three_daemons_order_each_certificate_once_and_share_the_work() {
    let etcd = Etcd::single();
    let w = World::new(&[]);
    let certs = alidns_certs(6);
    let _daemons = start(&w, &etcd, &NODES, &certs);
    wait_for("all six deployed", DEADLINE, || {
        (0..6).all(|i| deployed_somewhere(&w, &format!("c{i}")))
    });
    for i in 0..6 {
        assert_eq!(w.orders_for(&format!("c{i}.example.test")), 1, "c{i}");
    }
    for n in NODES {
        assert!(count(&w, n, "fleet.claimed") >= 1, "{n} owns nothing");
    }
    let claimed: usize = NODES.iter().map(|n| count(&w, n, "fleet.claimed")).sum();
    assert_eq!(claimed, 6, "each certificate claimed once");
}

/// The owner is killed (SIGKILL) while its order waits for validation: a successor claims
/// the certificate after the lease ran out, finishes the same order, and pays no second one.
#[test]
fn a_killed_owners_order_is_finished_by_a_successor_with_no_second_order() {
    let etcd = Etcd::single();
    let w = World::new(&["--validation-delay", "8s"]);
    let certs = alidns_certs(1);
    let mut daemons = start(&w, &etcd, &NODES[..2], &certs);
    wait_for("an order", DEADLINE, || {
        w.orders_for("c0.example.test") == 1
    });
    let owner = NODES[..2]
        .iter()
        .position(|n| count(&w, n, "fleet.claimed") == 1)
        .unwrap();
    daemons[owner].0.kill().unwrap();
    daemons[owner].0.wait().unwrap();
    let successor = NODES[1 - owner];
    wait_for("deployed by the successor", DEADLINE, || {
        w.p(&format!("live-{successor}"))
            .join("c0")
            .join("cert.pem")
            .exists()
    });
    assert_eq!(w.orders_for("c0.example.test"), 1, "no second paid order");
    assert_eq!(count(&w, successor, "fleet.claimed"), 1);
}

/// etcd stopped: one `fleet.unavailable`, no order while it is down (a new certificate waits),
/// `fleet.available` once it is back, and then the certificate is ordered once.
#[test]
fn an_etcd_outage_orders_nothing_is_said_once_and_work_resumes() {
    let mut etcd = Etcd::single();
    let w = World::new(&[]);
    let mut daemons = start(&w, &etcd, &NODES[..1], &alidns_certs(1));
    wait_for("c0 deployed", DEADLINE, || deployed_somewhere(&w, "c0"));
    // etcd goes away, then a second certificate is configured (a restart with the new list).
    etcd.stop_all();
    wait_for("fleet.unavailable", DEADLINE, || {
        count(&w, NODES[0], "fleet.unavailable") == 1
    });
    daemons[0].0.kill().unwrap();
    daemons[0].0.wait().unwrap();
    let mut d = start(&w, &etcd, &NODES[..1], &alidns_certs(2));
    wait_for("fleet.unavailable after the restart", DEADLINE, || {
        count(&w, NODES[0], "fleet.unavailable") == 2
    });
    std::thread::sleep(Duration::from_secs(4)); // a window in which an order would show
    assert_eq!(
        w.orders_for("c1.example.test"),
        0,
        "ordered while etcd was down"
    );
    assert!(w.live("c0", "cert.pem").exists() || deployed_somewhere(&w, "c0"));
    etcd.start_all();
    wait_for("fleet.available", DEADLINE, || {
        count(&w, NODES[0], "fleet.available") >= 1
    });
    wait_for("c1 deployed", DEADLINE, || deployed_somewhere(&w, "c1"));
    assert_eq!(w.orders_for("c1.example.test"), 1);
    assert_eq!(w.orders_for("c0.example.test"), 1);
    assert_eq!(
        count(&w, NODES[0], "fleet.unavailable"),
        2,
        "once per outage per run"
    );
    drop(d.pop());
}

/// A third host whose list differs (one more domain on c0) says so and orders nothing; the
/// two that agree order c0 once.
#[test]
fn a_host_whose_certificates_differ_refuses_to_order_and_says_which() {
    let etcd = Etcd::single();
    let w = World::new(&[]);
    let mut daemons = start(&w, &etcd, &NODES[..2], &alidns_certs(1));
    let odd = alidns_certs(1).replace(
        "[\"c0.example.test\"]",
        "[\"c0.example.test\", \"www.c0.example.test\"]",
    );
    daemons.extend(start(&w, &etcd, &NODES[2..], &odd));
    wait_for("fleet.config_mismatch", DEADLINE, || {
        count(&w, NODES[2], "fleet.config_mismatch") == 1
    });
    let line = log_of(&w, NODES[2])
        .lines()
        .find(|l| l.contains("fleet.config_mismatch"))
        .unwrap()
        .to_string();
    assert!(line.contains("c0"), "{line}");
    wait_for("c0 deployed", DEADLINE, || deployed_somewhere(&w, "c0"));
    assert_eq!(w.orders_for("c0.example.test"), 1);
    assert_eq!(
        count(&w, NODES[2], "fleet.claimed"),
        0,
        "the odd host claimed"
    );
    assert!(!w.p("live-web-3").join("c0").exists());
    for n in &NODES[..2] {
        assert_eq!(count(&w, n, "fleet.config_mismatch"), 0, "{n}");
    }
}

/// The fan-out wired into the daemons: two hosts, each with its own webroot behind the
/// simulator's load balancer (a FILE proof must be on both for every fetch to pass), one FILE
/// and one Alidns certificate. Each is ordered once; both hosts serve byte-identical sets with
/// the key that matches, each host runs its reload hook once per certificate, and the proof
/// files are gone from both webroots afterwards.
#[test]
fn sets_and_file_proofs_reach_every_host_and_each_host_reloads_once() {
    use crate::support::world::{openssl, serve_webroot};
    let etcd = Etcd::single();
    let roots = tempfile::tempdir().unwrap();
    let webroot = |n: &str| roots.path().join(n);
    let nodes = &NODES[..2];
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| {
            std::fs::create_dir_all(webroot(n)).unwrap();
            serve_webroot(webroot(n)).to_string()
        })
        .collect();
    let resolve = format!("f0.example.test={}", addrs.join(","));
    let w = World::new(&["--resolve", &resolve]);
    // A hook of its own per certificate: the daemon runs certificates sharing one hook once
    // for all of them, and this test counts runs per certificate.
    let hook = |c: &str| format!("reload = [\"sh\", \"-c\", \"echo reload {c} >> HOOKLOG\"]\n");
    let certs = "[[certificate]]\nname = \"f0\"\ndomains = [\"f0.example.test\"]\n\
        validation = { method = \"file\", webroot = \"WEBROOT\" }\n"
        .to_string()
        + &hook("f0")
        + &alidns_certs(1)
        + &hook("c0");
    let _daemons = start_with_webroots(&w, &etcd, nodes, &certs, webroot);
    let live = |n: &str, cert: &str, f: &str| w.p(&format!("live-{n}")).join(cert).join(f);
    let hooks =
        |n: &str| std::fs::read_to_string(w.p(&format!("hook-{n}.log"))).unwrap_or_default();
    wait_for(
        "both certificates live and reloaded on both hosts",
        DEADLINE,
        || {
            nodes.iter().all(|n| {
                ["f0", "c0"].iter().all(|c| {
                    live(n, c, "cert.pem").exists() && hooks(n).contains(&format!("reload {c}"))
                })
            })
        },
    );
    assert_eq!(w.orders_for("f0.example.test"), 1);
    assert_eq!(w.orders_for("c0.example.test"), 1);
    for c in ["f0", "c0"] {
        for f in ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"] {
            let a = std::fs::read(live(nodes[0], c, f)).unwrap();
            let b = std::fs::read(live(nodes[1], c, f)).unwrap();
            assert!(a == b, "{c}/{f} differs between the hosts");
        }
        let path = |f: &str| live(nodes[1], c, f).display().to_string();
        let key_pub = openssl(&["pkey", "-in", &path("privkey.pem"), "-pubout"]);
        let cert_pub = openssl(&["x509", "-in", &path("cert.pem"), "-noout", "-pubkey"]);
        assert_eq!(key_pub, cert_pub, "{c}: the key is not the certificate's");
    }
    // Long enough for a second reload or a late proof removal to show.
    std::thread::sleep(Duration::from_secs(3));
    for n in nodes {
        for c in ["f0", "c0"] {
            let runs = hooks(n)
                .lines()
                .filter(|l| *l == format!("reload {c}"))
                .count();
            assert_eq!(runs, 1, "{n} reloaded {c} {runs} times");
        }
        let proof = webroot(n).join(".well-known/pki-validation/fileauth.txt");
        assert!(!proof.exists(), "{n}: the proof stayed");
        assert!(
            count(&w, n, "fleet.set_refused") == 0 && count(&w, n, "fleet.proof_refused") == 0,
            "{n}"
        );
    }
    let published: usize = nodes
        .iter()
        .map(|n| count(&w, n, "fleet.set_published"))
        .sum();
    assert_eq!(published, 2, "each set published once");
    // Each host's own status rows say which certificates another host orders.
    for (i, n) in nodes.iter().enumerate() {
        let rows = crate::support::world::status_json(&w.p(&format!("config-{n}.toml")));
        for c in ["f0", "c0"] {
            let row = rows
                .as_array()
                .and_then(|a| a.iter().find(|r| r["name"] == c))
                .or_else(|| {
                    rows["certificates"]
                        .as_array()
                        .and_then(|a| a.iter().find(|r| r["name"] == c))
                })
                .unwrap_or_else(|| panic!("{n}: no row for {c}: {rows}"))
                .clone();
            let elsewhere = row["next_action"]
                .as_str()
                .unwrap_or_default()
                .starts_with("another host orders it");
            let owned_here = log_of(&w, n).lines().any(|l| {
                l.contains("\"event\":\"fleet.claimed\"")
                    && l.contains(&format!("\"cert\":\"{c}\""))
            });
            assert_eq!(elsewhere, !owned_here, "{n} (#{i}) {c}: {row}");
        }
    }
}

/// etcd with authentication on; the daemon logs in as `cas` with the fleet key and etcd's
/// password both from systemd credentials (`$CREDENTIALS_DIRECTORY`, no key_file): it orders
/// and deploys, and its debug log holds neither. A daemon given a wrong password refuses to
/// start, naming the user and not the password.
#[test]
fn a_daemon_logs_in_to_etcd_with_its_password_from_systemd_credentials() {
    let etcd = Etcd::single();
    etcd.enable_auth("cas", ETCD_SECRET, "/test/daemon/");
    let w = World::new(&[]);
    let creds = |dir: &str, pw: &str| {
        let d = w.p(dir);
        std::fs::create_dir_all(&d).unwrap();
        for (name, text) in [
            (
                "fleet_key",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
            ),
            ("etcd_password", pw),
        ] {
            std::fs::write(d.join(name), text).unwrap();
            std::fs::set_permissions(d.join(name), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        d.display().to_string()
    };
    let config = |node: &str| {
        let p = node_config(&w, &etcd, node, &alidns_certs(1));
        let text = std::fs::read_to_string(&p).unwrap();
        let key_line = text.lines().find(|l| l.starts_with("key_file")).unwrap();
        std::fs::write(&p, text.replace(key_line, "user = \"cas\"")).unwrap();
        p
    };
    let right = creds("creds-right", &format!("{ETCD_SECRET}\n"));
    let _d = w.daemon_env(
        &config(NODES[0]),
        &format!("{}.log", NODES[0]),
        &[("CREDENTIALS_DIRECTORY", &right)],
    );
    wait_for("c0 deployed", DEADLINE, || deployed_somewhere(&w, "c0"));
    assert_eq!(w.orders_for("c0.example.test"), 1);
    assert!(etcd
        .etcdctl(&[ROOT, "get", "--keys-only", "--prefix", "/test/daemon/"])
        .contains("/test/daemon/records/c0"));

    let wrong = creds("creds-wrong", &format!("{WRONG_ETCD_SECRET}\n"));
    let mut bad = w.daemon_env(
        &config(NODES[1]),
        &format!("{}.log", NODES[1]),
        &[("CREDENTIALS_DIRECTORY", &wrong)],
    );
    wait_for("the daemon with the wrong password exits", DEADLINE, || {
        bad.0.try_wait().unwrap().is_some()
    });
    assert!(!bad.0.wait().unwrap().success());
    let log = log_of(&w, NODES[1]);
    assert!(
        log.contains("etcd refused to log in user \"cas\": etcdserver: authentication failed"),
        "{log}"
    );
    assert!(!log.contains(WRONG_ETCD_SECRET), "{log}");
    assert!(!log_of(&w, NODES[0]).contains(ETCD_SECRET));
}

/// etcd's request counters from its `/metrics` (gRPC calls by method, stream messages by
/// method, bytes to and from clients), summed over every member running.
fn etcd_counters(etcd: &Etcd) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for url in etcd.endpoints() {
        let addr = url.trim_start_matches("http://");
        let Ok(text) =
            std::panic::catch_unwind(|| crate::support::world::http_get(addr, "/metrics"))
        else {
            continue;
        };
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value: f64 = value.parse().unwrap_or(0.0);
            let method = name
                .split("grpc_method=\"")
                .nth(1)
                .and_then(|m| m.split('"').next());
            let key = if name.starts_with("grpc_server_handled_total{") {
                format!("calls {}", method.unwrap_or("?"))
            } else if name.starts_with("grpc_server_msg_received_total{") {
                format!("msgs in {}", method.unwrap_or("?"))
            } else if name.starts_with("grpc_server_msg_sent_total{") {
                format!("msgs out {}", method.unwrap_or("?"))
            } else if name.starts_with("etcd_network_client_grpc_sent_bytes_total")
                || name.starts_with("etcd_network_client_grpc_received_bytes_total")
                || name.starts_with("etcd_mvcc_db_total_size_in_bytes ")
                || name.starts_with("etcd_mvcc_db_total_size_in_use_in_bytes")
                || name.starts_with("etcd_debugging_mvcc_keys_total")
                || name.starts_with("process_resident_memory_bytes")
            {
                name.to_string()
            } else {
                continue;
            };
            *out.entry(key).or_insert(0.0) += value;
        }
    }
    out
}

fn counters_between(
    a: &std::collections::BTreeMap<String, f64>,
    b: &std::collections::BTreeMap<String, f64>,
) -> String {
    b.iter()
        .filter_map(|(k, v)| {
            let d = v - a.get(k).copied().unwrap_or(0.0);
            (d != 0.0).then(|| format!("  {k}: {d}"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every event under `prefix` since etcd's first revision: (revision, key, value length, put).
async fn etcd_history(endpoint: &str, prefix: &str) -> Vec<(i64, String, usize, bool)> {
    let mut c = etcd_client::Client::connect([endpoint], None)
        .await
        .unwrap();
    let now = c
        .get(
            prefix,
            Some(etcd_client::GetOptions::new().with_count_only()),
        )
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let mut s = c
        .watch(
            prefix,
            Some(
                etcd_client::WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(1),
            ),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    while out
        .last()
        .is_none_or(|e: &(i64, String, usize, bool)| e.0 < now)
    {
        let Ok(Ok(Some(m))) = tokio::time::timeout(Duration::from_secs(2), s.message()).await
        else {
            break;
        };
        for e in m.events() {
            let kv = e.kv().unwrap();
            out.push((
                kv.mod_revision(),
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.value().len(),
                e.event_type() == etcd_client::EventType::Put,
            ));
        }
    }
    out
}

/// The kind of a fleet key (`owner`, `records`, ...) under `/test/daemon/`.
fn kind(key: &str) -> &str {
    key.trim_start_matches("/test/daemon/")
        .split('/')
        .next()
        .unwrap_or("?")
}

/// Figures for docs/FLEET.md's estimate (100 hosts × 10 000 certificates), on the real daemon
/// and a real etcd: 3 daemons (lease TTL 10 s, the default) × 10 certificates (5 ECDSA P-256,
/// 5 RSA-2048, two names each; the first certificate short-lived so that each is renewed
/// once). Prints etcd's request counters for issuance, renewal and an idle window, every
/// write under the prefix by kind, the size of each kind of value, the size of a published
/// set and proof made from the real issued chains and keys with the real encoders, and
/// whether a range read of sets bigger than 4 MiB in all is answered with etcd-client's
/// defaults. Run by hand:
/// `cargo test --features fleet --test integration fleet_daemon::measure -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement for docs/FLEET.md's estimate: prints figures, asserts little"]
fn measure_etcd_load_for_the_fleet_estimate() {
    use cas_api::secret::Secret;
    use cas_certd::fleet::fanout::{publish_proof, publish_set, IssuedSet, Proof};
    use cas_certd::fleet::{claim, Claim, Fleet, Lease};
    const N: usize = 10;
    const TTL: &str = "10s";
    let etcd = Etcd::single();
    let w = World::new(&["--first-cert-lifetime", "45s"]);
    let certs: String = (0..N)
        .map(|i| {
            format!(
                "[[certificate]]\nname = \"c{i}\"\ndomains = [\"c{i}.example.test\", \"www.c{i}.example.test\"]\nvalidation = {{ method = \"alidns\" }}\n{}",
                if i % 2 == 1 { "key = \"rsa-2048\"\n" } else { "" }
            )
        })
        .collect();
    let m0 = etcd_counters(&etcd);
    let t0 = std::time::Instant::now();
    let _daemons: Vec<Proc> = NODES
        .iter()
        .map(|n| {
            let p = node_config(&w, &etcd, n, &certs);
            let text = std::fs::read_to_string(&p)
                .unwrap()
                .replace("lease_ttl = \"2s\"", &format!("lease_ttl = \"{TTL}\""));
            std::fs::write(&p, text).unwrap();
            w.daemon(&p, &format!("{n}.log"))
        })
        .collect();
    let deployed = || -> usize { NODES.iter().map(|n| count(&w, n, "cert.deployed")).sum() };
    wait_for("all issued and deployed", DEADLINE, || deployed() >= N);
    let t1 = t0.elapsed();
    let m1 = etcd_counters(&etcd);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let endpoint = etcd.endpoints()[0].clone();
    let rev1 = rt
        .block_on(etcd_history(&endpoint, "/test/daemon/"))
        .last()
        .map_or(0, |e| e.0);
    wait_for("all renewed and deployed", Duration::from_secs(180), || {
        deployed() >= 2 * N
    });
    let m2 = etcd_counters(&etcd);
    let rev2 = rt
        .block_on(etcd_history(&endpoint, "/test/daemon/"))
        .last()
        .map_or(0, |e| e.0);
    for i in 0..N {
        assert_eq!(w.orders_for(&format!("c{i}.example.test")), 2, "c{i}");
    }
    // A window of steady state, measured (nothing is waited for): what idle hosts ask of etcd.
    let idle = Duration::from_secs(20);
    std::thread::sleep(idle);
    let m3 = etcd_counters(&etcd);

    let history = rt.block_on(etcd_history(&endpoint, "/test/daemon/"));
    let mut report = format!(
        "== {N} certificates, {} daemons, lease TTL {TTL}; all deployed after {t1:?}\n",
        NODES.len()
    );
    for (label, lo, hi) in [("issuance", 0, rev1), ("renewal", rev1, rev2)] {
        let mut by: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
        for (rev, key, _, put) in history.iter().filter(|e| e.0 > lo && e.0 <= hi) {
            let _ = rev;
            let e = by.entry(kind(key).to_string()).or_default();
            if *put {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        report += &format!(
            "-- {label}: etcd revisions {lo}..{hi} ({} writes); puts/deletes by kind: {by:?}\n",
            hi - lo
        );
        let records: Vec<usize> = (0..N)
            .map(|i| {
                let k = format!("/test/daemon/records/c{i}");
                history
                    .iter()
                    .filter(|e| e.0 > lo && e.0 <= hi && e.1 == k)
                    .count()
            })
            .collect();
        report += &format!("   record writes per certificate: {records:?}\n");
    }
    report += &format!(
        "-- etcd counters, issuance:\n{}\n",
        counters_between(&m0, &m1)
    );
    report += &format!(
        "-- etcd counters, renewal:\n{}\n",
        counters_between(&m1, &m2)
    );
    report += &format!(
        "-- etcd counters, {idle:?} idle (3 hosts):\n{}\n",
        counters_between(&m2, &m3)
    );

    // Sizes of what is stored now, by kind (key and value bytes).
    let now: Vec<(String, usize)> = rt.block_on(async {
        let mut c = etcd_client::Client::connect([endpoint.as_str()], None)
            .await
            .unwrap();
        c.get(
            "/test/daemon/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap()
        .kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.value().len(),
            )
        })
        .collect()
    });
    let mut sizes: std::collections::BTreeMap<String, Vec<(usize, usize)>> = Default::default();
    for (k, v) in &now {
        sizes
            .entry(kind(k).to_string())
            .or_default()
            .push((k.len(), *v));
    }
    for (k, list) in &sizes {
        report += &format!(
            "-- stored {k}: {} keys, (key, value) bytes: {list:?}\n",
            list.len()
        );
    }

    // A published set and proof from the real issued chains and keys, with the real encoders.
    let owner_of_cert = |cert: &str| {
        NODES
            .iter()
            .map(|n| w.p(&format!("live-{n}")).join(cert))
            .find(|d| d.join("cert.pem").exists())
            .unwrap()
    };
    let set_sizes: Vec<(String, usize)> = rt.block_on(async {
        let f = Fleet::connect(&cas_certd::config::FleetSettings {
            etcd: etcd.endpoints(),
            prefix: "/test/probe".into(),
            node: "probe".into(),
            key: cas_certd::config::FleetKeySource::Credential,
            tls: None,
            auth: None,
            lease_ttl: Duration::from_secs(10),
        })
        .await
        .unwrap();
        let lease = Lease::grant(&f, Duration::from_secs(10)).await.unwrap();
        let key = cas_certd::fleet::keyfile::FleetKey::from_bytes([5; 32]);
        let mut out = Vec::new();
        for cert in ["c0", "c1"] {
            let d = owner_of_cert(cert);
            let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap();
            let Claim::Owned(o) = claim(&f, &lease, cert).await.unwrap() else {
                panic!("probe claim of {cert}")
            };
            let set = IssuedSet {
                order_id: 1_234_567_890,
                product: "digicert-free-1-free".into(),
                cert_pem: read("cert.pem"),
                chain_pem: read("chain.pem"),
                key_pem: Secret::new(read("privkey.pem")),
            };
            publish_set(&f, &key, &o, &set).await.unwrap();
            let proof = Proof {
                order_id: 1_234_567_890,
                domains: vec![
                    format!("{cert}.example.test"),
                    format!("www.{cert}.example.test"),
                ],
                domain: format!("{cert}.example.test"),
                uri: "/.well-known/pki-validation/fileauth.txt".into(),
                content: "202612020000000ab1cd2ef3ab4cd5ef6ab7cd8ef9ab0cd1ef2ab3cd4ef5ab6c".into(),
            };
            publish_proof(&f, &o, &proof).await.unwrap();
            let mut c = etcd_client::Client::connect([endpoint.as_str()], None)
                .await
                .unwrap();
            for k in ["sets", "proofs"] {
                let key = format!("/test/probe/{k}/{cert}");
                let r = c.get(key.clone(), None).await.unwrap();
                out.push((key, r.kvs()[0].value().len()));
            }
            out.push((
                format!("{cert} pem bytes (cert, chain, key)"),
                read("cert.pem").len() * 1_000_000
                    + read("chain.pem").len() * 1000
                    + read("privkey.pem").len(),
            ));
        }
        out
    });
    report += &format!("-- published set and proof values (bytes): {set_sizes:?}\n");

    // A range read of a directory bigger than 4 MiB in all, with etcd-client's defaults.
    let set_len = set_sizes
        .iter()
        .filter(|(k, _)| k.contains("/sets/"))
        .map(|(_, v)| *v)
        .max()
        .unwrap();
    let set_before = etcd_counters(&etcd);
    let (many, answer) = rt.block_on(async {
        let mut c = etcd_client::Client::connect([endpoint.as_str()], None)
            .await
            .unwrap();
        let value = vec![b'x'; set_len];
        let many = (4 * 1024 * 1024) / set_len + 50;
        for i in 0..many {
            c.put(format!("/test/big/sets/c{i:05}"), value.clone(), None)
                .await
                .unwrap();
        }
        let r = c
            .get(
                "/test/big/sets/",
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await;
        (many, r.map(|r| r.kvs().len()).map_err(|e| e.to_string()))
    });
    let big = etcd_counters(&etcd);
    let db = "etcd_mvcc_db_total_size_in_use_in_bytes";
    report += &format!(
        "-- {many} values of {set_len} bytes: db in use +{} bytes\n",
        big[db] - set_before[db]
    );
    report += &format!(
        "-- range read of {many} values of {set_len} bytes with etcd-client's defaults: {answer:?}\n"
    );
    // What etcd spends per small key (the shape of proof_acks/<cert>/<node> and
    // live/<cert>/<node>: 2 per certificate and host): disk in use and resident memory.
    let before = etcd_counters(&etcd);
    const SMALL: usize = 20_000;
    rt.block_on(async {
        let c = etcd_client::Client::connect([endpoint.as_str()], None)
            .await
            .unwrap();
        let mut all = tokio::task::JoinSet::new();
        for t in 0..8 {
            let mut c = c.clone();
            all.spawn(async move {
                for i in (t..SMALL).step_by(8) {
                    let k = format!(
                        "/cas-certd/prod/live/cert-{:05}/web-{:03}",
                        i / 100,
                        i % 100
                    );
                    c.put(k, "3", None).await.unwrap();
                }
            });
        }
        while all.join_next().await.is_some() {}
    });
    let after = etcd_counters(&etcd);
    let d = |k: &str| after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
    report += &format!(
        "-- {SMALL} small keys (key 41 bytes, value 1): db in use +{} bytes ({:.0}/key), RSS +{} bytes ({:.0}/key), keys +{}\n",
        d("etcd_mvcc_db_total_size_in_use_in_bytes"),
        d("etcd_mvcc_db_total_size_in_use_in_bytes") / SMALL as f64,
        d("process_resident_memory_bytes"),
        d("process_resident_memory_bytes") / SMALL as f64,
        d("etcd_debugging_mvcc_keys_total"),
    );
    report += &format!("-- final counters: {:?}\n", etcd_counters(&etcd));
    eprintln!("{report}");
}
