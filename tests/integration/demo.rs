//! `cas-certd demo`, run as a user would: the real binary into a temp dir, twice. The first run
//! must end with every certificate deployed and renewed once, and a final table saying so; the
//! second run must say that it removes the first run's files and start clean, so no version
//! signed by the first run's CA remains. A directory that is not a demo's is never emptied.
#![allow(clippy::unwrap_used)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use x509_parser::prelude::*;

use crate::support::bin;
use crate::support::world::keep_output;

const NAMES: [&str; 3] = ["www", "api", "wild"];
/// A demo run is given this long (it takes about 20 s; the demo itself gives up at 150 s).
const RUN_LIMIT: Duration = Duration::from_secs(170);

/// Runs `cas-certd demo --dir DIR`, killed at [`RUN_LIMIT`].
fn run_demo(dir: &Path, label: &str) -> (Output, Duration) {
    let t0 = Instant::now();
    let out_path = dir.with_extension(format!("{label}.out"));
    let err_path = dir.with_extension(format!("{label}.err"));
    let mut child = Command::new(bin())
        .args(["demo", "--dir"])
        .arg(dir)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = Output {
        status,
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    };
    keep_output(&format!("demo-{label}"), &out);
    (out, t0.elapsed())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn pem_der(pem: &str) -> Vec<u8> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .next()
        .expect("a PEM block")
        .unwrap()
        .contents
}

/// The version directories of one deployed certificate.
fn versions(live: &Path, name: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(live.join(name).join("versions")) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd.map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

/// What is wrong with the directory a finished demo run left, checked on the files themselves.
fn check_files(dir: &Path, run: &str, problems: &mut Vec<String>) {
    let root_pem = std::fs::read_to_string(dir.join("sim/data/ca/root.pem")).unwrap_or_default();
    if root_pem.is_empty() {
        problems.push(format!("{run}: no simulator root at sim/data/ca/root.pem"));
        return;
    }
    let root_der = pem_der(&root_pem);
    let (_, root) = X509Certificate::from_der(&root_der).unwrap();
    let live = dir.join("live");
    let now = chrono::Utc::now().timestamp();
    for name in NAMES {
        let vs = versions(&live, name);
        if vs.len() != 2 {
            problems.push(format!(
                "{run}: {name} has {} version(s) in live/{name}/versions, want 2 (issued, then renewed once)",
                vs.len()
            ));
        }
        for v in &vs {
            let pem = std::fs::read_to_string(v.join("cert.pem")).unwrap_or_default();
            if pem.is_empty() {
                problems.push(format!("{run}: {} has no cert.pem", v.display()));
                continue;
            }
            let der = pem_der(&pem);
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            if cert.verify_signature(Some(root.public_key())).is_err() {
                problems.push(format!(
                    "{run}: {} is not signed by this run's simulator CA",
                    v.join("cert.pem").display()
                ));
            }
        }
        let live_pem =
            std::fs::read_to_string(live.join(name).join("cert.pem")).unwrap_or_default();
        if live_pem.is_empty() {
            problems.push(format!("{run}: {name} has no live cert.pem"));
            continue;
        }
        let der = pem_der(&live_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let left = cert.validity().not_after.timestamp() - now;
        if left < 86_400 {
            problems.push(format!(
                "{run}: {name}'s live certificate expires in {left} s: the renewal is not live"
            ));
        }
    }
}

/// What is wrong with the final table a demo run printed.
fn check_table(stdout: &str, run: &str, problems: &mut Vec<String>) {
    let lines: Vec<&str> = stdout.lines().collect();
    let Some(h) = lines
        .iter()
        .rposition(|l| l.starts_with("NAME") && l.contains("RENEWED"))
    else {
        problems.push(format!(
            "{run}: no final table with a RENEWED column in stdout:\n{stdout}"
        ));
        return;
    };
    let header = lines[h];
    for col in ["ISSUED", "RENEWED", "EXPIRES", "ISSUER"] {
        if !header.contains(col) {
            problems.push(format!("{run}: final table has no {col} column: {header}"));
        }
    }
    let renewed_col = header.find("RENEWED").unwrap();
    for name in NAMES {
        let Some(row) = lines[h + 1..]
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
        else {
            problems.push(format!("{run}: final table has no row for {name}"));
            continue;
        };
        let cells: Vec<&str> = row.split_whitespace().collect();
        if cells.get(1) != Some(&"deployed") {
            problems.push(format!(
                "{run}: {name} is not deployed in the final table: {row}"
            ));
        }
        let renewed = row.get(renewed_col..).unwrap_or("").trim_start();
        if renewed.starts_with('-') || renewed.is_empty() {
            problems.push(format!(
                "{run}: {name} shows no renewal in the final table: {row}"
            ));
        }
        if !row.contains("cas-certd simulator test root") {
            problems.push(format!(
                "{run}: {name}'s row does not name the issuer: {row}"
            ));
        }
    }
}

#[test]
fn demo_renews_every_certificate_and_a_second_run_starts_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let mut problems = Vec::new();

    let (first, took) = run_demo(&dir, "first");
    let out1 = text(&first.stdout);
    eprintln!(
        "first run: {:?} in {:.1}s\n{out1}",
        first.status,
        took.as_secs_f64()
    );
    if !first.status.success() {
        problems.push(format!(
            "first run exited {:?}:\n{}",
            first.status,
            text(&first.stderr)
        ));
    }
    check_table(&out1, "first run", &mut problems);
    check_files(&dir, "first run", &mut problems);
    let first_root = std::fs::read(dir.join("sim/data/ca/root.pem")).unwrap_or_default();

    let (second, took) = run_demo(&dir, "second");
    let out2 = text(&second.stdout);
    eprintln!(
        "second run: {:?} in {:.1}s\n{out2}",
        second.status,
        took.as_secs_f64()
    );
    if !second.status.success() {
        problems.push(format!(
            "second run exited {:?}:\n{}",
            second.status,
            text(&second.stderr)
        ));
    }
    let said = out2
        .lines()
        .take(5)
        .any(|l| l.contains("removing the previous demo run"));
    if !said {
        problems.push(format!(
            "second run did not say it removes the previous run before starting:\n{out2}"
        ));
    }
    let second_root = std::fs::read(dir.join("sim/data/ca/root.pem")).unwrap_or_default();
    if !first_root.is_empty() && first_root == second_root {
        problems.push("second run kept the first run's simulator CA".into());
    }
    check_table(&out2, "second run", &mut problems);
    check_files(&dir, "second run", &mut problems);

    assert!(problems.is_empty(), "demo:\n- {}", problems.join("\n- "));
}

#[test]
fn demo_refuses_a_directory_it_did_not_make() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mine");
    std::fs::create_dir_all(dir.join("live")).unwrap();
    std::fs::write(dir.join("live/keep.txt"), "not the demo's").unwrap();
    let (out, took) = run_demo(&dir, "refused");
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "demo ran in a directory holding someone else's live/ ({took:?}):\n{}",
        text(&out.stdout)
    );
    assert!(
        err.contains(&dir.display().to_string()) && err.contains("--dir"),
        "the refusal names the directory and the way out: {err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("live/keep.txt")).unwrap(),
        "not the demo's"
    );
    assert!(
        took < Duration::from_secs(10),
        "refused only after {took:?}"
    );
}
