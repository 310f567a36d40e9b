//! Logs (issue 16 item 5, issue 18 item 2): what the real daemon writes where. No colour in a
//! file; journald fields when systemd's `JOURNAL_STREAM` names its stderr (a private mount
//! namespace puts a test socket at journald's path), stderr when the journal is unreachable;
//! and a whole lifecycle at `RUST_LOG=trace` leaves no key material and no secret in the log,
//! decoded or not (`scripts/scan-logs.sh`).
#![allow(clippy::unwrap_used)]
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::world::{wait_for, Proc, World, KEY_ID, KEY_SECRET};
use crate::support::{bin, repo_root};

/// A wrong secret: the simulator rejects every signature, so the first call fails quickly (the
/// start-up CAS pass of a fresh store: `store.cas_pass_failed`, a warning with an error field).
const WRONG_SECRET: &str = "logs-wrong-secret-Hq3vN8";

/// `cas-certd --config <config> run` with stderr appended to `<world>/<log>`, the test's
/// credentials and `env`, and nothing inherited that changes how logs look (`NO_COLOR`,
/// `JOURNAL_STREAM`, `RUST_LOG`) unless `env` sets it. `wrap` is put in front (e.g. `unshare`).
fn run_daemon(w: &World, config: &Path, log: &str, env: &[(&str, &str)], wrap: &[&str]) -> Proc {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(w.p(log))
        .unwrap();
    let mut cmd = match wrap.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin());
            c
        }
        None => Command::new(bin()),
    };
    cmd.arg("--config")
        .arg(config)
        .arg("run")
        .env_remove("NO_COLOR")
        .env_remove("JOURNAL_STREAM")
        .env_remove("RUST_LOG")
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(stderr);
    Proc(cmd.spawn().unwrap())
}

/// The world's config with text logs (the default format, the one that was coloured).
fn text_config(w: &World) -> std::path::PathBuf {
    let cfg = w.config(&w.file_cert("www", "\"www.example.test\""));
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("log_format = \"json\""));
    std::fs::write(
        &cfg,
        text.replace("log_format = \"json\"", "log_format = \"text\""),
    )
    .unwrap();
    cfg
}

fn read(p: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

/// `JOURNAL_STREAM` naming the file the child's stderr goes to, as systemd sets it for a unit
/// whose stderr is the journal.
fn journal_stream_for(p: &Path) -> String {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .unwrap();
    let m = std::fs::metadata(p).unwrap();
    format!("{}:{}", m.dev(), m.ino())
}

/// Runs the rest of the command line in a private mount namespace whose
/// `/run/systemd/journal` is `dir` (so journald's socket path reaches a test socket, or
/// nothing). Needs root, as CI has.
fn with_journal_dir(dir: &Path) -> Vec<String> {
    let script = format!(
        "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && mount --bind '{}' /run/systemd/journal && exec \"$@\"",
        dir.display()
    );
    let probe = Command::new("unshare").args(["--mount", "true"]).status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "`unshare --mount` failed: these tests need root (CAP_SYS_ADMIN) and util-linux's unshare"
    );
    ["unshare", "--mount", "sh", "-c", &script, "sh"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// The fields of one journald native-protocol datagram: `KEY=value` lines, or `KEY`, a
/// little-endian u64 length and the value for values with newlines.
fn journal_fields(mut d: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while !d.is_empty() {
        let nl = d.iter().position(|&b| b == b'\n').unwrap_or(d.len());
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.push((
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            ));
            d = &d[(nl + 1).min(d.len())..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let rest = &d[nl + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            out.push((key, String::from_utf8_lossy(&rest[8..8 + len]).into_owned()));
            d = &rest[(8 + len + 1).min(rest.len())..];
        }
    }
    out
}

#[test]
fn text_logs_in_a_file_carry_no_colour() {
    let w = World::new(&[]);
    let cfg = text_config(&w);
    let log = w.p("daemon.log");
    let _d = run_daemon(&w, &cfg, "daemon.log", &[("RUST_LOG", "info")], &[]);
    wait_for("cert.ordered in the log", Duration::from_secs(60), || {
        read(&log).contains("cert.ordered")
    });
    let text = read(&log);
    assert!(
        !text.contains("\x1b["),
        "ANSI escapes in a log written to a file:\n{}",
        text.lines().take(3).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn under_systemd_events_are_journal_fields() {
    let w = World::new(&[]);
    let cfg = text_config(&w);
    let journal = w.p("journal");
    std::fs::create_dir_all(&journal).unwrap();
    let sock = UnixDatagram::bind(journal.join("socket")).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let stream = journal_stream_for(&w.p("daemon.log"));
    let wrap = with_journal_dir(&journal);
    let wrap: Vec<&str> = wrap.iter().map(String::as_str).collect();
    let _d = run_daemon(
        &w,
        &cfg,
        "daemon.log",
        &[
            ("JOURNAL_STREAM", &stream),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", WRONG_SECRET),
            ("RUST_LOG", "info"),
        ],
        &wrap,
    );

    let t0 = Instant::now();
    let mut entries = Vec::new();
    let failed = loop {
        let mut buf = vec![0u8; 1 << 16];
        if let Ok(n) = sock.recv(&mut buf) {
            let fields = journal_fields(&buf[..n]);
            let is_failed = fields
                .iter()
                .any(|(k, v)| k == "EVENT" && v == "store.cas_pass_failed");
            entries.push(fields.clone());
            if is_failed {
                break fields;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no journal entry with EVENT=store.cas_pass_failed in 60 s; got {} entries: {entries:?}\nstderr:\n{}",
            entries.len(),
            read(&w.p("daemon.log"))
        );
    };
    let get = |k: &str| failed.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
    assert_eq!(get("WAITING"), Some("1"), "{failed:?}");
    assert_eq!(get("SYSLOG_IDENTIFIER"), Some("cas-certd"), "{failed:?}");
    assert!(matches!(get("PRIORITY"), Some("3" | "4")), "{failed:?}");
    assert!(get("MESSAGE").is_some_and(|m| !m.is_empty()), "{failed:?}");
    assert!(get("ERROR").is_some(), "{failed:?}");
    // The start-up line came through the journal too, and nothing went to stderr as text.
    assert!(
        entries
            .iter()
            .flatten()
            .any(|(k, v)| k == "MESSAGE" && v == "cas-certd running"),
        "{entries:?}"
    );
    let stderr = read(&w.p("daemon.log"));
    assert!(
        !stderr.contains("store.cas_pass_failed"),
        "also logged to stderr:\n{stderr}"
    );
}

#[test]
fn journal_stream_without_a_journal_socket_falls_back_to_plain_stderr() {
    let w = World::new(&[]);
    let cfg = text_config(&w);
    let empty = w.p("no-journal");
    std::fs::create_dir_all(&empty).unwrap();
    let log = w.p("daemon.log");
    let stream = journal_stream_for(&log);
    let wrap = with_journal_dir(&empty);
    let wrap: Vec<&str> = wrap.iter().map(String::as_str).collect();
    let _d = run_daemon(
        &w,
        &cfg,
        "daemon.log",
        &[("JOURNAL_STREAM", &stream), ("RUST_LOG", "info")],
        &wrap,
    );
    wait_for("cert.ordered on stderr", Duration::from_secs(60), || {
        read(&log).contains("cert.ordered")
    });
    let text = read(&log);
    assert!(text.contains("journald's socket cannot be used"), "{text}");
    assert!(
        !text.contains("\x1b["),
        "ANSI escapes in the journal's stream:\n{text}"
    );
}

#[test]
fn trace_lifecycle_leaves_no_key_material_in_the_log() {
    let w = World::new(&[]);
    let cfg = w.config(&w.file_cert("www", "\"www.example.test\""));
    let logs = w.p("scan");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("daemon-trace.log");
    {
        let _d = run_daemon(
            &w,
            &cfg,
            "scan/daemon-trace.log",
            &[("RUST_LOG", "trace")],
            &[],
        );
        wait_for("www deployed and reloaded", Duration::from_secs(90), || {
            read(&w.p("hook.log")).contains("reload www")
        });
    }
    // Kept for the suite-wide scan as well (World keeps only the files directly in its dir).
    std::fs::copy(&log, w.p("daemon-trace.log")).unwrap();
    let text = read(&log);
    assert!(
        text.contains("\"event\":\"cert.deployed\""),
        "no cert.deployed in the trace log"
    );

    // What only this run knows: each line of the deployed key's base64 body and the secret.
    let key = read(&w.live("www", "privkey.pem"));
    let mut needles: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!needles.is_empty(), "no key deployed");
    needles.push(KEY_SECRET);
    let needles_file = w.p("needles.txt");
    std::fs::write(&needles_file, needles.join("\n")).unwrap();
    let out = Command::new(repo_root().join("scripts/scan-logs.sh"))
        .arg(&logs)
        .arg("--needles")
        .arg(&needles_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "key material or a secret in the RUST_LOG=trace log ({} bytes):\n{}{}",
        text.len(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
