//! A hostile or foreign `<output_dir>/<name>` against the real daemon (issue 18, items 3 and 6):
//! a racer swapping `versions` for a symlink while the daemon deploys again and again, and
//! directories the daemon must refuse before it orders anything.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::fs::{renameat_with, RenameFlags, CWD};

use crate::support::bin;
use crate::support::world::{assert_key_matches_and_private, wait_for, World};

/// Every path under `root` with its kind, mode and contents (or link target).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let mode = md.permissions().mode();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if md.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("link -> {:?}", std::fs::read_link(&p).unwrap()),
                );
            } else if md.is_dir() {
                out.insert(rel, format!("dir {mode:o}"));
                walk(root, &p, out);
            } else {
                let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
                out.insert(rel, format!("file {mode:o} {text}"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn count(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

fn force_renew(cfg: &Path, name: &str) {
    let _ = Command::new(bin())
        .arg("--config")
        .arg(cfg)
        .args(["renew", name, "--force"])
        .output();
}

/// The probe's attack: whoever can write in `<output_dir>/<name>` keeps exchanging `versions`
/// with a symlink to a directory elsewhere (`renameat2(RENAME_EXCHANGE)`) while the daemon
/// deploys; the daemon must never create, change or delete anything outside `<name>`.
#[test]
fn swapping_versions_for_a_symlink_never_reaches_outside() {
    let w = World::new(&[]);
    let cert = format!(
        "{}keep_versions = 1\n",
        w.file_cert("race", "\"race.example.test\"")
    );
    let cfg = w.config(&cert);
    // A directory elsewhere whose entries look like old versions to a prune run through a link.
    let outside = w.p("outside");
    for v in [
        "20200101T000000Z-aa",
        "20200102T000000Z-bb",
        "20200103T000000Z-cc",
    ] {
        std::fs::create_dir_all(outside.join(v)).unwrap();
        std::fs::write(outside.join(v).join("keep.txt"), v).unwrap();
    }
    let before = snapshot(&outside);
    let log = w.p("daemon.log");
    let _d = w.daemon(&cfg, "daemon.log");
    wait_for("first deployment", Duration::from_secs(40), || {
        w.live("race", "cert.pem").exists()
    });
    let name_dir = w.p("live").join("race");
    let versions = name_dir.join("versions");
    let decoy = name_dir.join("decoy");
    std::os::unix::fs::symlink(&outside, &decoy).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let racer = {
        let (stop, swaps, versions, decoy) =
            (stop.clone(), swaps.clone(), versions.clone(), decoy.clone());
        std::thread::spawn(move || {
            // Bounded: the test stops it, and it never makes more than this many swaps.
            while !stop.load(Ordering::Relaxed) && swaps.load(Ordering::Relaxed) < 50_000_000 {
                if renameat_with(CWD, &versions, CWD, &decoy, RenameFlags::EXCHANGE).is_ok() {
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::yield_now();
            }
        })
    };

    // Keep the daemon deploying (a forced renewal also skips a refusal's backoff) until three
    // sets were deployed under the race, or 60 s.
    let deployed0 = count(&log, "\"cert.deployed\"");
    let t0 = Instant::now();
    let mut last_force = Instant::now() - Duration::from_secs(10);
    while count(&log, "\"cert.deployed\"") < deployed0 + 3 && t0.elapsed() < Duration::from_secs(60)
    {
        if last_force.elapsed() > Duration::from_secs(2) {
            force_renew(&cfg, "race");
            last_force = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    racer.join().unwrap();
    let raced = t0.elapsed();
    if std::fs::symlink_metadata(&versions)
        .unwrap()
        .file_type()
        .is_symlink()
    {
        renameat_with(CWD, &versions, CWD, &decoy, RenameFlags::EXCHANGE).unwrap();
    }
    let deployed = count(&log, "\"cert.deployed\"") - deployed0;
    let refused = count(&log, "cert.renew_failed") + count(&log, "cert.deploy_failed");
    eprintln!(
        "race: {} swaps in {raced:?}; {deployed} sets deployed, {refused} attempts refused",
        swaps.load(Ordering::Relaxed)
    );

    // Nothing outside <output_dir>/<name> was created, changed or deleted.
    assert_eq!(
        snapshot(&outside),
        before,
        "the directory outside was changed"
    );
    let top: Vec<_> = std::fs::read_dir(w.p("live"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(top, ["race"], "only <name> in output_dir");
    assert!(swaps.load(Ordering::Relaxed) > 1000, "the racer ran");
    assert!(deployed >= 1, "no set was deployed under the race");

    // Once the race is over the daemon deploys a whole matching set again.
    let deployed_after = count(&log, "\"cert.deployed\"");
    let t1 = Instant::now();
    while count(&log, "\"cert.deployed\"") == deployed_after {
        assert!(
            t1.elapsed() < Duration::from_secs(60),
            "no deployment after the race"
        );
        force_renew(&cfg, "race");
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_key_matches_and_private(&w, "race");
    assert_eq!(snapshot(&outside), before);
}

/// An existing `<name>` directory the daemon did not make, or one others can write in, is
/// refused with a clear error before any order, and nothing in it changes; a fresh name in
/// the same daemon deploys as usual.
#[test]
fn foreign_and_writable_directories_are_refused_before_ordering() {
    let w = World::new(&[]);
    let live = w.p("live");
    // An operator's own directory: a key of theirs and an unrelated version.
    let op = live.join("op");
    std::fs::create_dir_all(op.join("versions/foo")).unwrap();
    std::fs::write(op.join("privkey.pem"), "operator's key\n").unwrap();
    std::fs::write(op.join("versions/foo/cert.pem"), "operator's cert\n").unwrap();
    // An empty directory its group may write in (README's old nginx advice).
    let gw = live.join("gw");
    std::fs::create_dir_all(&gw).unwrap();
    std::fs::set_permissions(&gw, std::fs::Permissions::from_mode(0o775)).unwrap();
    let before = snapshot(&live);

    let certs = [
        w.file_cert("op", "\"op.example.test\""),
        w.file_cert("gw", "\"gw.example.test\""),
        w.file_cert("ok", "\"ok.example.test\""),
    ]
    .concat();
    let cfg = w.config(&certs);
    let log = w.p("daemon.log");
    let _d = w.daemon(&cfg, "daemon.log");
    wait_for("the fresh name deployed", Duration::from_secs(40), || {
        w.live("ok", "cert.pem").exists()
    });
    wait_for("both refusals logged", Duration::from_secs(20), || {
        count(&log, "was not made by cas-certd") >= 1
            && count(&log, "is writable by its group or others") >= 1
    });
    let text = std::fs::read_to_string(&log).unwrap();
    // The start-up rebuild reports it too (cert.not_adopted); the refusal to deploy is the
    // failed attempt.
    let refusal = text
        .lines()
        .find(|l| l.contains("was not made by cas-certd") && l.contains("cert.renew_failed"))
        .unwrap_or_else(|| panic!("no cert.renew_failed for the foreign directory:\n{text}"));
    assert!(refusal.contains(&op.display().to_string()), "{refusal}");
    assert_eq!(
        w.orders_for("op.example.test"),
        0,
        "an order for a refused dir"
    );
    assert_eq!(
        w.orders_for("gw.example.test"),
        0,
        "an order for a refused dir"
    );
    assert_eq!(w.orders_for("ok.example.test"), 1);
    assert_key_matches_and_private(&w, "ok");
    let after: BTreeMap<_, _> = snapshot(&live)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("ok"))
        .collect();
    assert_eq!(after, before, "a refused directory was changed");
}
