//! Proving control safely (issues 16 and 18): nothing is paid before the proof can be published
//! (preflight, also in `check`), `cert.ordered` tells a renewal from a first issue, hooks and
//! command validators start from an empty environment and their output is redacted, and a
//! hostile FILE challenge or a symlinked webroot parent writes nothing. Real processes: the
//! `cas-certd` binary against `cas-certd simulate`; the simulator's ledger is the witness that
//! nothing was spent.
//!
//! `cargo test --test integration validation_safety::` takes about 40 s.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::bin;
use crate::support::world::*;

/// The fixed PATH hooks and validators get.
const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Every JSON event named `name` in a daemon log, with its fields flattened to the top.
fn events(log: &Path, name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|mut v| {
            if let Some(Value::Object(f)) = v.get("fields").cloned() {
                for (k, x) in f {
                    v[k] = x;
                }
            }
            v
        })
        .filter(|v| v["event"] == name)
        .collect()
}

/// The `cert.renew_failed` errors logged for `cert`.
fn errors_for(log: &Path, cert: &str) -> Vec<String> {
    events(log, "cert.renew_failed")
        .into_iter()
        .filter(|v| v["cert"] == cert)
        .filter_map(|v| v["error"].as_str().map(str::to_string))
        .collect()
}

/// Calls that spend quota, as the simulator recorded them.
fn spending_calls(w: &World) -> Vec<String> {
    w.ledger()["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["action"].as_str())
        .filter(|a| a.starts_with("CreateCertificate") || a.starts_with("RenewCertificate"))
        .map(str::to_string)
        .collect()
}

fn check(cfg: &Path, offline: bool) -> (bool, String) {
    let mut c = Command::new(bin());
    c.arg("--config").arg(cfg).arg("check");
    if offline {
        c.arg("--offline");
    }
    let out = c
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET)
        .output()
        .unwrap();
    keep_output(if offline { "check-offline" } else { "check" }, &out);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Issue 16 item 2 and issue 18 item 6 (symlinked parent): a webroot that does not exist, one
/// reached through a symlink, an Alidns zone the account does not have and a validator that
/// cannot run are reported by `check` (and `check --offline` for the local ones) and by the
/// daemon as certificate errors naming the path — and not one order is created.
#[test]
fn what_cannot_publish_a_proof_is_reported_before_anything_is_paid() {
    let w = World::new(&[]);
    let missing = w.p("no-such-webroot");
    // A webroot whose parent is a symlink (someone else could repoint it).
    std::fs::create_dir_all(w.p("real/site")).unwrap();
    std::os::unix::fs::symlink(w.p("real"), w.p("link")).unwrap();
    let via_link = w.p("link/site");
    // A validator that is not executable.
    let noexec = w.p("dns-hook.sh");
    std::fs::write(&noexec, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&noexec, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file_at = |name: &str, root: &Path| {
        format!(
            "[[certificate]]\nname = \"{name}\"\ndomains = [\"{name}.example.test\"]\nvalidation = {{ method = \"file\", webroot = \"{}\" }}\n",
            root.display()
        )
    };
    let certs = format!(
        "{}{}[[certificate]]\nname = \"nozone\"\ndomains = [\"www.nozone.test\"]\nvalidation = {{ method = \"alidns\" }}\n\
         [[certificate]]\nname = \"noexec\"\ndomains = [\"noexec.example.test\"]\nvalidation = {{ method = \"command\", command = [\"{}\"] }}\n",
        file_at("missing", &missing),
        file_at("linked", &via_link),
        noexec.display(),
    );
    let cfg = w.config(&certs);

    // check --offline: the local problems, each with its path.
    let (ok, text) = check(&cfg, true);
    assert!(!ok, "check --offline passed:\n{text}");
    for want in [
        missing.display().to_string(),
        w.p("link").display().to_string(),
        noexec.display().to_string(),
    ] {
        assert!(
            text.contains(&want),
            "check --offline does not name {want}:\n{text}"
        );
    }
    // check: the same, and the zone Alidns does not have.
    let (ok, text) = check(&cfg, false);
    assert!(!ok, "check passed:\n{text}");
    for want in [
        missing.display().to_string(),
        w.p("link").display().to_string(),
        noexec.display().to_string(),
        "www.nozone.test".to_string(),
    ] {
        assert!(text.contains(&want), "check does not name {want}:\n{text}");
    }

    let _d = w.daemon(&cfg, "daemon.log");
    let log = w.p("daemon.log");
    let expect = [
        ("missing", missing.display().to_string()),
        ("linked", w.p("link").display().to_string()),
        ("nozone", "www.nozone.test".to_string()),
        ("noexec", noexec.display().to_string()),
    ];
    wait_for(
        "an error for every certificate",
        Duration::from_secs(30),
        || {
            expect.iter().all(|(c, what)| {
                errors_for(&log, c)
                    .iter()
                    .any(|e| e.contains(what.as_str()))
            })
        },
    );
    // Let it run on: it retries later, but never pays.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(spending_calls(&w), Vec::<String>::new(), "quota spent");
    assert!(w.ledger()["orders"].as_array().unwrap().is_empty());
    let status = status_json(&cfg);
    for (c, what) in &expect {
        let row = status
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == *c)
            .unwrap();
        let err = row["last_error"].as_str().unwrap_or_default();
        assert!(err.contains(what.as_str()), "{c}: status says {err:?}");
    }
    // Nothing was made through the symlink.
    assert!(!w.p("real/site/.well-known").exists());
}

/// Issue 18 item 6: CAS only ever asks for `fileauth.txt` with a one-line token. A CA that asks
/// for `.htaccess`, or for multi-line content, is refused and nothing is written.
#[test]
fn a_hostile_file_challenge_writes_nothing() {
    let w = World::new(&[
        "--hostile",
        "uri-htaccess=hta.example.test",
        "--hostile",
        "content-multiline=ml.example.test",
    ]);
    let certs = format!(
        "{}{}{}",
        w.file_cert("hta", "\"hta.example.test\""),
        w.file_cert("ml", "\"ml.example.test\""),
        w.file_cert("good", "\"good.example.test\""),
    );
    let cfg = w.config(&certs);
    let _d = w.daemon(&cfg, "daemon.log");
    let log = w.p("daemon.log");
    // Each hostile challenge answered one way or the other: refused, or published.
    let answered = |c: &str| {
        !errors_for(&log, c).is_empty()
            || events(&log, "cert.challenge_presented")
                .iter()
                .any(|v| v["cert"] == c)
    };
    wait_for("hta and ml answered", Duration::from_secs(60), || {
        answered("hta") && answered("ml")
    });
    let pki = w.p("webroot/.well-known/pki-validation");
    assert!(!pki.join(".htaccess").exists(), ".htaccess written");
    // (The directory itself may not exist yet: then nothing was written at all.)
    for e in std::fs::read_dir(&pki).into_iter().flatten().flatten() {
        let body = std::fs::read_to_string(e.path()).unwrap_or_default();
        assert!(
            !body.contains("AddHandler") && !body.contains("<script>"),
            "{:?} holds hostile content: {body:?}",
            e.path()
        );
    }
    for (c, words) in [("hta", ".htaccess"), ("ml", "single line")] {
        let errs = errors_for(&log, c);
        assert!(
            errs.iter()
                .any(|e| e.contains("unsafe challenge from CAS") && e.contains(words)),
            "{c}: {errs:?}"
        );
    }
    // The shared webroot stays usable: the good certificate deploys.
    wait_for("good deployed", Duration::from_secs(60), || {
        w.live("good", "cert.pem").exists()
    });
    assert!(!w.p("live/hta").exists() && !w.p("live/ml").exists());
}

/// Issue 16 item 4 and issue 18 item 1: on a real renewal `cert.ordered` says `renewal=true`;
/// the reload hook and a command validator see a fixed PATH, the CERT_* / CHALLENGE_* variables
/// and nothing else of the daemon's environment (no AccessKey secret); what they print is
/// logged without the secret and without the private key.
#[test]
fn renewal_is_flagged_and_hooks_start_from_an_empty_environment() {
    let w = World::new(&["--first-cert-lifetime", "20s"]);
    let hook_env = w.p("hook-env.txt");
    let cmd_env = w.p("cmd-env.txt");
    let certs = format!(
        "{}reload = [\"sh\", \"-c\", \"env | sort > {he}; echo ENV-DUMPED; cat \\\"$KEY_PATH\\\"\"]\n\
         [[certificate]]\nname = \"cmd\"\ndomains = [\"cmd.example.test\"]\nvalidation = {{ method = \"command\", command = [\"sh\", \"-c\", \"env | sort > {ce}\"] }}\n",
        w.file_cert("short", "\"short.example.test\""),
        he = hook_env.display(),
        ce = cmd_env.display(),
    );
    let cfg = w.config(&certs);
    let _d = w.daemon_env(
        &cfg,
        "daemon.log",
        &[("CAS_TEST_NOT_PASSED", "should-not-reach-hooks")],
    );
    let log = w.p("daemon.log");
    wait_for(
        "the hook and the validator ran",
        Duration::from_secs(30),
        || hook_env.exists() && cmd_env.exists() && !events(&log, "hook.ok").is_empty(),
    );
    for (who, file, must) in [
        (
            "reload hook",
            &hook_env,
            &["CERT_NAME=short", "KEY_PATH="][..],
        ),
        (
            "command validator",
            &cmd_env,
            &["CERT_NAME=cmd", "CHALLENGE_TYPE=DNS"][..],
        ),
    ] {
        let env = std::fs::read_to_string(file).unwrap();
        assert!(!env.contains(KEY_SECRET), "{who} saw the secret:\n{env}");
        assert!(
            !env.contains("ALIBABA_CLOUD") && !env.contains("CAS_TEST_NOT_PASSED"),
            "{who} inherited the daemon's environment:\n{env}"
        );
        assert!(
            env.lines().any(|l| l == format!("PATH={SAFE_PATH}")),
            "{who}: PATH:\n{env}"
        );
        assert!(
            env.lines().any(|l| l.starts_with("LANG=")),
            "{who}: LANG:\n{env}"
        );
        for m in must {
            assert!(env.contains(m), "{who}: no {m}:\n{env}");
        }
    }
    let ok = events(&log, "hook.ok");
    let out = ok[0]["output"].as_str().unwrap();
    assert!(out.contains("ENV-DUMPED"), "{out}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(KEY_SECRET), "secret in the log");
    assert!(!text.contains("PRIVATE KEY"), "private key in the log");
    let key = std::fs::read_to_string(w.live("short", "privkey.pem")).unwrap();
    let body_line = key.lines().nth(1).unwrap();
    assert!(!text.contains(body_line), "key material in the log");

    wait_for("a renewal order", Duration::from_secs(60), || {
        events(&log, "cert.ordered")
            .iter()
            .filter(|v| v["cert"] == "short")
            .count()
            >= 2
    });
    let ordered: Vec<Value> = events(&log, "cert.ordered")
        .into_iter()
        .filter(|v| v["cert"] == "short")
        .collect();
    assert_eq!(ordered[0]["renewal"], false, "{:?}", ordered[0]);
    assert_eq!(ordered[1]["renewal"], true, "the renewal: {:?}", ordered[1]);
}

/// Issue 18 item 1: `hook_env` passes exactly the named variables through; whatever a hook
/// prints of a secret the daemon holds is redacted before it is logged.
#[test]
fn hook_env_passes_named_variables_and_output_is_redacted() {
    let w = World::new(&[]);
    let certs = format!(
        "{}hook_env = [\"CAS_TEST_PASSED\", \"ALIBABA_CLOUD_ACCESS_KEY_SECRET\"]\n\
         reload = [\"sh\", \"-c\", \"echo passed=$CAS_TEST_PASSED; echo other=$CAS_TEST_NOT_PASSED; echo secret=$ALIBABA_CLOUD_ACCESS_KEY_SECRET\"]\n",
        w.file_cert("pass", "\"pass.example.test\""),
    );
    let cfg = w.config(&certs);
    let mut d = w.daemon_env(
        &cfg,
        "daemon.log",
        &[
            ("CAS_TEST_PASSED", "passed-value-42"),
            ("CAS_TEST_NOT_PASSED", "should-not-reach-hooks"),
        ],
    );
    let log = w.p("daemon.log");
    wait_for("the reload hook", Duration::from_secs(60), || {
        if let Some(st) = d.0.try_wait().unwrap() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("the daemon exited ({st}):\n{text}");
        }
        !events(&log, "hook.ok").is_empty()
    });
    let out = events(&log, "hook.ok")[0]["output"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(out.contains("passed=passed-value-42"), "{out}");
    assert!(out.contains("other=\n") || out.ends_with("other="), "{out}");
    assert!(out.contains("secret="), "{out}");
    assert!(!out.contains(KEY_SECRET), "secret in hook output: {out}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(KEY_SECRET), "secret in the log");
}
