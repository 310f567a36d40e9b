//! The operator verbs' contracts, with the real binary, simulator and daemon: `renew` says what
//! it costs and spends nothing unconfirmed; a control request whose client has gone is dropped;
//! one failure gives one exit code and one wording whichever command meets it; `check` says OK
//! only when everything passed and proves the daemon can give files to the configured group;
//! `status` writes nothing.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::bin;
use crate::support::world::{keep_output, wait_for, World, KEY_ID, KEY_SECRET};

const PRODUCT: &str = "symantec-free-1-free";

/// Runs `cas-certd --config cfg ARGS` with the test world's AccessKey.
fn cli(cfg: &Path, args: &[&str]) -> Output {
    cli_with_secret(cfg, args, KEY_SECRET)
}

fn cli_with_secret(cfg: &Path, args: &[&str], secret: &str) -> Output {
    let out = Command::new(bin())
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret)
        .output()
        .unwrap();
    keep_output(&args.join("_"), &out);
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Certificates left of `product`, as `package --json` reports them.
fn left(cfg: &Path, product: &str) -> i64 {
    let out = cli(cfg, &["package", "--json", "--product", product]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &v[0];
    p["total_count"].as_i64().unwrap() - p["used_count"].as_i64().unwrap()
}

fn deployed_cert(w: &World, name: &str) -> String {
    std::fs::read_to_string(w.live(name, "cert.pem")).unwrap()
}

/// Issue 16 item 3: `renew` of a certificate that is not due spends a unit only with `--yes`;
/// without it the command says what it would cost and orders nothing.
#[test]
fn renew_of_a_certificate_not_due_says_what_it_costs_and_needs_yes() {
    let w = World::new(&[]);
    let cfg = w.config(&w.file_cert("r", "\"r.example.test\""));
    let _d = w.daemon(&cfg, "daemon.log");
    wait_for("deployment", Duration::from_secs(40), || {
        w.live("r", "cert.pem").exists()
    });
    let first = deployed_cert(&w, "r");
    let n = left(&cfg, PRODUCT);

    // 90 days left: not due. Refused, with the price.
    let out = cli(&cfg, &["renew", "r"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("this will use one unit of {PRODUCT} ({n} left)")),
        "{err}"
    );
    assert!(err.contains("--yes"), "{err}");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        w.orders_for("r.example.test"),
        1,
        "an unconfirmed renew ordered"
    );
    assert_eq!(deployed_cert(&w, "r"), first);

    // Confirmed: one more order, a new certificate.
    let out = cli(&cfg, &["renew", "r", "--yes"]);
    assert!(out.status.success(), "{out:?}");
    wait_for(
        "confirmed renewal deployed",
        Duration::from_secs(40),
        || std::fs::read_to_string(w.live("r", "cert.pem")).is_ok_and(|c| c != first),
    );
    assert_eq!(w.orders_for("r.example.test"), 2);

    // The help says what each flag does and what it costs.
    let help = stdout(&cli(&cfg, &["renew", "--help"]));
    assert!(
        help.contains("--yes") && help.contains("one unit") && help.contains("--force"),
        "{help}"
    );
}

/// Issue 16 item 3, without a daemon: a certificate never issued, or inside its renewal window,
/// is marked for renewal without `--yes`; one that is not due is refused with its price (the
/// remaining count asked of CAS by the command itself).
#[test]
fn renew_without_a_daemon_needs_yes_only_when_not_due() {
    // First certificate: 90 s (plus the CA's minute of backdating), so renew_before = 1/3 puts
    // the window 50 s before the end, 40 s after issue.
    let w = World::new(&["--first-cert-lifetime", "90s"]);
    let cfg = w.config(&w.file_cert("d", "\"d.example.test\""));
    let d = w.daemon(&cfg, "daemon.log");
    wait_for("deployment", Duration::from_secs(40), || {
        w.live("d", "cert.pem").exists()
    });
    drop(d);
    // A second certificate that never ran.
    let cfg = w.config(&format!(
        "{}{}",
        w.file_cert("d", "\"d.example.test\""),
        w.file_cert("n", "\"n.example.test\"")
    ));
    let n = left(&cfg, PRODUCT);

    let out = cli(&cfg, &["renew", "d"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr(&out).contains(&format!("this will use one unit of {PRODUCT} ({n} left)")),
        "{out:?}"
    );

    let out = cli(&cfg, &["renew", "n"]);
    assert!(out.status.success(), "never issued, so due: {out:?}");

    // Wait for the renewal window (openssl: expires within 50 s).
    let cert = w.live("d", "cert.pem");
    wait_for("the renewal window", Duration::from_secs(90), || {
        !Command::new("openssl")
            .args(["x509", "-noout", "-checkend", "49", "-in"])
            .arg(&cert)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    });
    let out = cli(&cfg, &["renew", "d"]);
    assert!(out.status.success(), "inside the window, so due: {out:?}");
    assert_eq!(w.orders_for("d.example.test"), 1, "the command ordered");
    assert_eq!(w.orders_for("n.example.test"), 0, "the command ordered");
}

/// Issue 18 item 4: a `renew` whose client has gone before the daemon acted on it must not
/// run later (and pay). The daemon is stopped (SIGSTOP) so the request waits unread; the client
/// is killed; the daemon resumes and must drop the request.
#[test]
fn a_control_request_whose_client_has_gone_is_dropped() {
    let w = World::new(&[]);
    let cfg = w.config(&w.file_cert("g", "\"g.example.test\""));
    let d = w.daemon(&cfg, "daemon.log");
    wait_for("deployment", Duration::from_secs(40), || {
        w.live("g", "cert.pem").exists()
    });
    let first = deployed_cert(&w, "g");
    let pid = d.0.id().to_string();
    let signal = |sig: &str| {
        let s = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(s.success(), "kill {sig}");
    };
    signal("-STOP");
    let mut client = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .args(["renew", "g", "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = client.kill();
    let _ = client.wait();
    signal("-CONT");
    wait_for("the request dropped", Duration::from_secs(15), || {
        std::fs::read_to_string(w.p("daemon.log")).is_ok_and(|l| l.contains("control.dropped"))
    });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(w.orders_for("g.example.test"), 1, "the abandoned renew ran");
    assert_eq!(deployed_cert(&w, "g"), first);
}

/// Issue 16 item 6: a wrong secret gives the same exit code (4) and the same line from
/// `check` as from `package`, and `check` does not say OK.
#[test]
fn check_and_package_give_one_answer_for_a_wrong_secret() {
    let w = World::new(&[]);
    let cfg = w.config(&w.file_cert("s", "\"s.example.test\""));
    let wrong = "not-the-secret-9QxV";
    let without_rid = |s: &str| -> String {
        let s = s.trim();
        match s.find(" (RequestId") {
            Some(i) => s[..i].to_string(),
            None => s.to_string(),
        }
    };
    let pkg = cli_with_secret(&cfg, &["package"], wrong);
    assert_eq!(pkg.status.code(), Some(4), "{pkg:?}");
    let chk = cli_with_secret(&cfg, &["check"], wrong);
    assert_eq!(chk.status.code(), Some(4), "{chk:?}");
    let (p, c) = (stderr(&pkg), stderr(&chk));
    assert!(p.contains("signature rejected by CAS"), "{p}");
    assert!(
        c.lines().any(|l| without_rid(l) == without_rid(&p)),
        "check said {c:?}, package said {p:?}"
    );
    assert!(!stdout(&chk).contains("OK"), "check said OK: {chk:?}");
    for o in [&pkg, &chk] {
        assert!(!stdout(o).contains(wrong) && !stderr(o).contains(wrong));
    }

    // With the right secret everything passes, and only then does check say OK.
    let ok = cli(&cfg, &["check"]);
    assert!(ok.status.success(), "{ok:?}");
    assert!(
        stdout(&ok).lines().last().unwrap_or("").starts_with("OK"),
        "{ok:?}"
    );
}

/// Issue 16 item 7: with no daemon and no store, `status` creates nothing (not even the state
/// directory) and lists a configured certificate that never ran as `new`.
#[test]
fn status_without_a_daemon_writes_nothing_and_shows_new_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("absent/state");
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"state_dir = "{state}"
output_dir = "{live}"
[defaults]
contact = {{ name = "Ops", phone = "13900000000", email = "ops@example.test" }}
[[certificate]]
name = "www"
domains = ["www.example.test"]
validation = {{ method = "file", webroot = "{web}" }}
"#,
            state = state.display(),
            live = dir.path().join("live").display(),
            web = dir.path().display(),
        ),
    )
    .unwrap();
    for args in [&["status"][..], &["status", "--json"][..]] {
        let out = Command::new(bin())
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(
            !dir.path().join("absent").exists(),
            "{args:?} created {}",
            state.display()
        );
        let text = stdout(&out);
        let row = text
            .lines()
            .find(|l| l.contains("www"))
            .unwrap_or_else(|| panic!("{args:?}: www not listed: {text}"));
        if args.len() == 1 {
            assert!(row.split_whitespace().nth(1) == Some("new"), "{row}");
        } else {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v[0]["name"], "www", "{text}");
            assert_eq!(v[0]["state"], "new", "{text}");
        }
    }
}

/// Running as root (the owner of `/proc/self` is the effective uid).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Issue 18 item 5: `check` proves the daemon can give deployed files to the configured group
/// (member of it, or CAP_CHOWN) and says how to fix it. Run as uid 65534, not in group `root`.
#[test]
fn check_refuses_a_group_the_process_cannot_give_files_to() {
    if !running_as_root() {
        eprintln!("check_refuses_a_group...: needs root to run the binary as another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // `check` also proves the proof can be published: the webroot is root's (as the config
    // requires), its challenge directory uid 65534's.
    let web = dir.path().join("web");
    let challenges = web.join(".well-known/pki-validation");
    std::fs::create_dir_all(&challenges).unwrap();
    std::os::unix::fs::chown(&challenges, Some(65534), Some(65534)).unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"state_dir = "{state}"
output_dir = "{live}"
[defaults]
group = "root"
contact = {{ name = "Ops", phone = "13900000000", email = "ops@example.test" }}
[[certificate]]
name = "www"
domains = ["www.example.test"]
validation = {{ method = "file", webroot = "{web}" }}
"#,
            state = dir.path().join("state").display(),
            live = dir.path().join("live").display(),
            web = web.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let check_as = |uid: Option<u32>, gid: u32| {
        let mut c = Command::new(bin());
        c.arg("--config").arg(&cfg).args(["check", "--offline"]);
        if let Some(uid) = uid {
            // std drops the supplementary groups when root changes the uid.
            c.uid(uid).gid(gid);
        }
        let out = c.output().unwrap();
        keep_output("check_group", &out);
        out
    };

    // nobody, primary group nogroup: cannot give files to group root.
    let out = check_as(Some(65534), 65534);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = stderr(&out);
    for want in [
        "group \"root\"",
        "CAP_CHOWN",
        "SupplementaryGroups=root",
        "usermod -aG root",
    ] {
        assert!(err.contains(want), "missing {want:?} in: {err}");
    }
    assert!(!stdout(&out).contains("OK"), "{out:?}");

    // nobody with group root as its group: it can.
    let out = check_as(Some(65534), 0);
    assert!(out.status.success(), "{out:?}");
    // root: CAP_CHOWN.
    let out = check_as(None, 0);
    assert!(out.status.success(), "{out:?}");
}
