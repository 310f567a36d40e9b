//! The order database is a cache (issue 13): with the state directory lost or its database
//! damaged, the daemon rebuilds its records from the deployed sets and pays for nothing. The
//! simulator's ledger is the witness; the deployed files and the hook log say nothing was
//! re-deployed.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::support::world::*;

const NAMES: [(&str, &str); 3] = [
    ("www", "www.cache.example.test"),
    ("dns", "dns.cache.example.test"),
    ("cas", "cas.cache.example.test"),
];

/// File validation with an ECDSA key, alidns, and a key CAS makes.
fn certs(w: &World) -> String {
    format!(
        "{}[[certificate]]\nname = \"dns\"\ndomains = [\"dns.cache.example.test\"]\nvalidation = {{ method = \"alidns\" }}\n\
         [[certificate]]\nname = \"cas\"\ndomains = [\"cas.cache.example.test\"]\nkey = \"cas\"\nvalidation = {{ method = \"file\", webroot = \"{}\" }}\n",
        w.file_cert("www", "\"www.cache.example.test\""),
        w.p("webroot").display()
    )
}

/// notBefore of a PEM certificate file, through openssl.
fn not_before(cert: &Path) -> DateTime<Utc> {
    let out = openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-startdate",
    ]);
    let s = out.trim().trim_start_matches("notBefore=");
    chrono::NaiveDateTime::parse_from_str(s, "%b %e %H:%M:%S %Y GMT")
        .unwrap()
        .and_utc()
}

/// Issues and deploys the three certificates, stops the daemon, forgets the hook's log.
fn deployed_world() -> (World, std::path::PathBuf, Vec<String>) {
    let w = World::new(&[]);
    let cfg = w.config(&certs(&w));
    let mut d = w.daemon(&cfg, "first.log");
    wait_for("three deployments", Duration::from_secs(90), || {
        NAMES.iter().all(|(n, _)| w.live(n, "cert.pem").exists())
    });
    // The hook runs once per batch: wait until every certificate's reload has run.
    wait_for("the hooks recorded", Duration::from_secs(30), || {
        let log = std::fs::read_to_string(w.p("first.log")).unwrap_or_default();
        NAMES.iter().all(|(n, _)| {
            log.lines()
                .any(|l| l.contains("\"hook.ok\"") && l.contains(&format!("\\\"{n}\\\"")))
        })
    });
    assert!(sigterm_and_wait(&mut d).success());
    std::fs::remove_file(w.p("hook.log")).unwrap();
    let before: Vec<String> = NAMES
        .iter()
        .map(|(n, _)| std::fs::read_to_string(w.live(n, "cert.pem")).unwrap())
        .collect();
    for (_, domain) in NAMES {
        assert_eq!(w.orders_for(domain), 1);
    }
    (w, cfg, before)
}

/// After a restart on lost state: no order, the same live sets, and `status` shows each
/// deployed with its renewal in the window `renew_before = "1/3"` and jitter allow. With
/// `no_hook`, no reload hook ran either (records that sled rolled back to an attempt in flight
/// are finished by the lifecycle, which deploys the same certificate again and reloads).
fn assert_rebuilt_without_paying(
    w: &World,
    cfg: &Path,
    before: &[String],
    log: &str,
    no_hook: bool,
) {
    let mut d = w.daemon(cfg, log);
    wait_settled(w, &d);
    for (_, domain) in NAMES {
        assert_eq!(
            w.orders_for(domain),
            1,
            "{domain}: a new order was paid for"
        );
    }
    for (i, (n, _)) in NAMES.iter().enumerate() {
        let now = std::fs::read_to_string(w.live(n, "cert.pem")).unwrap();
        assert_eq!(now, before[i], "{n}: the live set changed");
        assert_key_matches_and_private(w, n);
    }
    if no_hook {
        assert!(!w.p("hook.log").exists(), "a reload hook ran");
    }
    let rows = status_json(cfg);
    for (n, _) in NAMES {
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .unwrap();
        assert_eq!(row["state"], "deployed", "{n}: {row}");
        let nb = not_before(&w.live(n, "cert.pem"));
        let na: DateTime<Utc> = row["not_after"].as_str().unwrap().parse().unwrap();
        let due: DateTime<Utc> = row["next_due"].as_str().unwrap().parse().unwrap();
        let life = na - nb;
        let latest = na - life / 3;
        let jitter = (life / 20).min(chrono::TimeDelta::hours(12));
        assert!(
            due <= latest + chrono::TimeDelta::seconds(2)
                && due >= latest - jitter - chrono::TimeDelta::seconds(2),
            "{n}: renewal at {due}, expected in [{} .. {latest}]",
            latest - jitter
        );
    }
    assert!(sigterm_and_wait(&mut d).success());
}

/// Waits until the running daemon `d` wrote a status snapshot in which every certificate is
/// deployed, none waits for the CAS pass, and none is due for a day: from then on it orders
/// nothing, so what it paid for (or did not) can be counted. A rebuild that lost a record
/// never gets there (the record is ordered for, or waits), and the wait fails.
fn wait_settled(w: &World, d: &Proc) {
    let pid = serde_json::json!(d.0.id());
    wait_for(
        "a snapshot with every certificate deployed and not due",
        Duration::from_secs(60),
        || {
            let Ok(text) = std::fs::read_to_string(w.p("state/status.json")) else {
                return false;
            };
            let Ok(snap) = serde_json::from_str::<serde_json::Value>(&text) else {
                return false;
            };
            let day = Utc::now() + chrono::TimeDelta::days(1);
            snap["daemon_pid"] == pid
                && snap["certificates"].as_array().is_some_and(|rows| {
                    rows.len() == NAMES.len()
                        && rows.iter().all(|r| {
                            r["state"] == "deployed"
                                && !r["next_action"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .contains("wait for the rebuild")
                                && r["next_due"]
                                    .as_str()
                                    .and_then(|t| t.parse::<DateTime<Utc>>().ok())
                                    .is_some_and(|t| t > day)
                        })
                })
        },
    );
}

fn events(w: &World, log: &str, event: &str) -> usize {
    std::fs::read_to_string(w.p(log))
        .unwrap()
        .lines()
        .filter(|l| l.contains(&format!("\"event\":\"{event}\"")))
        .count()
}

#[test]
fn a_deleted_state_dir_is_rebuilt_from_the_deployed_sets_without_an_order() {
    let (w, cfg, before) = deployed_world();
    std::fs::remove_dir_all(w.p("state")).unwrap();
    // Before the start, `check` and `store rebuild --dry-run` tell what the start will do.
    for args in [
        &["check", "--offline"][..],
        &["store", "rebuild", "--dry-run"],
    ] {
        let out = Command::new(crate::support::bin())
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        for (n, _) in NAMES {
            assert!(
                text.contains(&format!("{n}: would be adopted as deployed")),
                "{args:?}: {text}"
            );
        }
    }
    assert!(!w.p("state").exists(), "a dry run wrote the state dir");
    assert_rebuilt_without_paying(&w, &cfg, &before, "second.log", true);
    assert_eq!(events(&w, "second.log", "store.recovered"), 1);
    assert_eq!(events(&w, "second.log", "cert.adopted"), 3);
    // `status` still says so: nothing was deployed since.
    let out = Command::new(crate::support::bin())
        .arg("--config")
        .arg(&cfg)
        .arg("status")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("store recovered") && err.contains("rebuilt from the deployed files"),
        "{err}"
    );
}

#[test]
fn a_damaged_database_is_kept_aside_and_rebuilt_without_an_order() {
    let (w, cfg, before) = deployed_world();
    // Garbage in the middle of sled's data file.
    let db = w.p("state/db/db");
    let len = std::fs::metadata(&db).unwrap().len();
    assert!(len > 8192, "sled's file is {len} bytes");
    let mut bytes = std::fs::read(&db).unwrap();
    let mid = (len / 2) as usize;
    for (i, b) in bytes[mid - 2048..mid + 2048].iter_mut().enumerate() {
        *b = (i * 131 % 251) as u8;
    }
    std::fs::write(&db, &bytes).unwrap();
    assert_rebuilt_without_paying(&w, &cfg, &before, "second.log", false);
    assert_eq!(events(&w, "second.log", "store.recovered"), 1);
    // The damaged files are kept beside the fresh database, as sled's open left them (it
    // zeroes what fails its checksum, so the garbage itself is not kept).
    let aside: Vec<_> = std::fs::read_dir(w.p("state"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("db.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let kept = std::fs::read(aside[0].path().join("db")).unwrap();
    assert!(
        kept.len() >= len as usize,
        "kept {} bytes of {len}",
        kept.len()
    );
    assert!(w.p("state/db/db").exists(), "no fresh database");
    // A third start finds nothing lost.
    let mut d = w.daemon(&cfg, "third.log");
    // The rebuild runs before the first snapshot: by then it said whether it lost anything.
    wait_settled(&w, &d);
    assert!(sigterm_and_wait(&mut d).success());
    assert_eq!(events(&w, "third.log", "store.recovered"), 0);
    // The rebuilt database decodes whole.
    let out = Command::new(crate::support::bin())
        .arg("--config")
        .arg(&cfg)
        .args(["store", "verify"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("3 record(s) decode, 0 do not"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// The CAS pass: orders CAS holds for a certificate that lost its record (or never had one).

/// Successful calls of `action` in the simulator's ledger, in order, as (position, order id).
fn calls(w: &World, action: &str) -> Vec<(usize, Option<u64>)> {
    w.ledger()["calls"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c["code"] == "OK" && c["action"].as_str().is_some_and(|a| a.starts_with(action))
        })
        .map(|(i, c)| (i, c["order_id"].as_u64()))
        .collect()
}

/// Starts a daemon for one certificate (`key` as given), kills it (SIGKILL) as soon as CAS
/// holds its order (the validation takes 8 s, so the order is still under review), and
/// deletes the state directory.
fn lose_the_store_with_an_order_in_flight(key: &str) -> (World, std::path::PathBuf) {
    let w = World::new(&["--validation-delay", "8s"]);
    let block = w.file_cert("fl", "\"fl.cache.example.test\"") + &format!("key = \"{key}\"\n");
    let cfg = w.config(&block);
    let mut d = w.daemon(&cfg, "first.log");
    wait_for("the order", Duration::from_secs(30), || {
        w.orders_for("fl.cache.example.test") == 1
    });
    d.0.kill().unwrap();
    d.0.wait().unwrap();
    assert_eq!(w.orders("fl.cache.example.test")[0].1, "domain_verify");
    std::fs::remove_dir_all(w.p("state")).unwrap();
    (w, cfg)
}

fn log_has(w: &World, log: &str, needles: &[&str]) -> bool {
    std::fs::read_to_string(w.p(log))
        .unwrap_or_default()
        .lines()
        .any(|l| needles.iter().all(|n| l.contains(n)))
}

#[test]
fn state_lost_with_a_cas_key_order_in_flight_adopts_it_and_it_finishes_one_paid_order() {
    let (w, cfg) = lose_the_store_with_an_order_in_flight("cas");
    let mut d = w.daemon(&cfg, "second.log");
    wait_for("the deployment", Duration::from_secs(90), || {
        w.live("fl", "cert.pem").exists()
    });
    assert!(sigterm_and_wait(&mut d).success());
    let got = w.orders("fl.cache.example.test");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1, "certificate");
    assert_eq!(calls(&w, "CreateCertificate").len(), 1, "a second create");
    assert!(log_has(
        &w,
        "second.log",
        &["\"event\":\"cert.adopted\"", "\"source\":\"cas\""]
    ));
    assert!(log_has(
        &w,
        "second.log",
        &["\"event\":\"store.cas_pass\"", "\"adopted\":1"]
    ));
    assert_key_matches_and_private(&w, "fl");
}

#[test]
fn state_lost_with_a_local_key_order_in_flight_deletes_it_before_exactly_one_new_order() {
    let (w, cfg) = lose_the_store_with_an_order_in_flight("ecdsa-p256");
    let mut d = w.daemon(&cfg, "second.log");
    wait_for("the deployment", Duration::from_secs(90), || {
        w.live("fl", "cert.pem").exists()
    });
    assert!(sigterm_and_wait(&mut d).success());
    let got = w.orders("fl.cache.example.test");
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].1, "deleted", "the lost key's order: quota back");
    assert_eq!(got[1].1, "certificate");
    // Deleted before the one new order was made.
    let deletes = calls(&w, "DeleteCertificateRequest");
    let creates = calls(&w, "CreateCertificate");
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(creates.len(), 2, "{creates:?}");
    assert_eq!(deletes[0].1, Some(got[0].0));
    assert!(deletes[0].0 < creates[1].0, "ordered before the delete");
    // (The simulator gives the unit back when it deletes an order under review.)
    assert!(log_has(
        &w,
        "second.log",
        &[
            "\"event\":\"cert.not_adopted\"",
            "\"source\":\"cas\"",
            "cancelled and deleted"
        ]
    ));
    assert_key_matches_and_private(&w, "fl");
}

#[test]
fn first_start_with_an_issued_cas_key_order_adopts_it_without_a_new_order() {
    let w = World::new(&[]);
    let block = w.file_cert("fs", "\"fs.cache.example.test\"") + "key = \"cas\"\n";
    let cfg = w.config(&block);
    let mut d = w.daemon(&cfg, "first.log");
    wait_for("the deployment", Duration::from_secs(90), || {
        w.live("fs", "cert.pem").exists()
    });
    assert!(sigterm_and_wait(&mut d).success());
    let first = std::fs::read_to_string(w.live("fs", "cert.pem")).unwrap();
    // A new host: no state, no deployed files; only CAS remembers.
    std::fs::remove_dir_all(w.p("state")).unwrap();
    std::fs::remove_dir_all(w.p("live")).unwrap();
    let out = Command::new(crate::support::bin())
        .arg("--config")
        .arg(&cfg)
        .args(["store", "rebuild", "--dry-run"])
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("fs: CAS: would adopt order"), "{text}");
    let mut d = w.daemon(&cfg, "second.log");
    wait_for("the deployment", Duration::from_secs(60), || {
        w.live("fs", "cert.pem").exists()
    });
    assert!(sigterm_and_wait(&mut d).success());
    assert_eq!(w.orders_for("fs.cache.example.test"), 1, "a new order");
    assert_eq!(
        std::fs::read_to_string(w.live("fs", "cert.pem")).unwrap(),
        first,
        "not the certificate CAS holds"
    );
    assert!(log_has(
        &w,
        "second.log",
        &[
            "\"event\":\"cert.adopted\"",
            "\"source\":\"cas\"",
            "\"issued\":true"
        ]
    ));
    assert_key_matches_and_private(&w, "fs");
}

/// A certificate added by a SIGHUP reload, with no record, goes through the rebuild as at
/// start: CAS holds an issued order for its names with a key CAS made, so it is adopted, not
/// bought again.
#[test]
fn a_certificate_added_by_a_reload_adopts_the_order_cas_holds_instead_of_a_new_one() {
    let w = World::new(&[]);
    let fs = w.file_cert("fs", "\"fs.cache.example.test\"") + "key = \"cas\"\n";
    let cfg = w.config(&fs);
    let mut d = w.daemon(&cfg, "first.log");
    wait_for("the deployment", Duration::from_secs(90), || {
        w.live("fs", "cert.pem").exists()
    });
    assert!(sigterm_and_wait(&mut d).success());
    let first = std::fs::read_to_string(w.live("fs", "cert.pem")).unwrap();
    // A new host running another certificate; only CAS remembers fs.
    std::fs::remove_dir_all(w.p("state")).unwrap();
    std::fs::remove_dir_all(w.p("live")).unwrap();
    let other = w.file_cert("other", "\"other.cache.example.test\"");
    w.config(&other);
    let mut d = w.daemon(&cfg, "second.log");
    wait_for("the other deployment", Duration::from_secs(90), || {
        w.live("other", "cert.pem").exists()
    });
    // fs joins by a reload.
    w.config(&(other + &fs));
    assert!(Command::new("kill")
        .args(["-HUP", &d.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    wait_for("fs deployed again", Duration::from_secs(60), || {
        w.live("fs", "cert.pem").exists()
    });
    assert!(sigterm_and_wait(&mut d).success());
    assert_eq!(w.orders_for("fs.cache.example.test"), 1, "a new order");
    assert_eq!(
        std::fs::read_to_string(w.live("fs", "cert.pem")).unwrap(),
        first,
        "not the certificate CAS holds"
    );
    assert!(log_has(
        &w,
        "second.log",
        &[
            "\"event\":\"cert.adopted\"",
            "\"source\":\"cas\"",
            "\"cert\":\"fs\""
        ]
    ));
    assert_key_matches_and_private(&w, "fs");
}
