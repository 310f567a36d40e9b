//! Issue 17: the simulator answers as Alibaba does. tests/py/sim_fidelity.py calls every seed
//! action in every order state through Alibaba's official SDKs and compares each raw answer with
//! the SDK's response model; the deliberate differences are listed in tests/py/sim_deliberate.json.
#![allow(clippy::unwrap_used)]
use std::process::Command;

use crate::sim_sdk::{start_sim, AK, SK};
use crate::support;

#[test]
fn simulator_answers_match_the_official_sdk_models() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, addr) = start_sim(
        &dir.path().join("sim"),
        &[
            "--reject".into(),
            "bad.example.test".into(),
            "--review-delay".into(),
            "2s".into(),
            "--quota".into(),
            "geotrust-dv-1-starter=10".into(),
        ],
    );
    let port = addr.rsplit(':').next().unwrap().to_string();
    let root = support::repo_root();
    let out = Command::new(support::python())
        .arg(root.join("tests/py/sim_fidelity.py"))
        .arg(&port)
        .arg("example.test")
        .arg(root.join("tests/py/sim_deliberate.json"))
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK)
        .output()
        .unwrap();
    crate::support::world::keep_output("sim_fidelity_py", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("fidelity OK"),
        "the simulator differs from Alibaba:\n{stdout}\n{stderr}"
    );
    // Every case ran (a case list that silently shrank would pass too easily).
    assert!(stdout.contains("31 cases, 0 failed"), "{stdout}");
}

/// The client's side of `NotFoundPackage`, against the simulator: `package` for a product the
/// account never bought says so and exits 5 (quota/package), not 7 (refused) or 0.
#[test]
fn package_for_a_product_never_bought_exits_5_against_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, addr) = start_sim(&dir.path().join("sim"), &[]);
    let out = Command::new(support::bin())
        .args(["package", "--product", "geotrust-ov-w-personal"])
        .args(["--endpoint", &format!("http://{addr}")])
        .arg("--config")
        .arg(dir.path().join("none.toml"))
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK)
        .output()
        .unwrap();
    crate::support::world::keep_output("sim_not_bought", &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains(
            "no package of geotrust-ov-w-personal bought on this account (NotFoundPackage)"
        ),
        "{stderr}"
    );
}

/// Issue 17 item 2, the daemon's side: CAS makes RSA 2048 keys in PKCS#1 PEM (`BEGIN RSA
/// PRIVATE KEY`); a certificate with `key = "cas"` is deployed with that key, which matches.
#[test]
fn a_cas_made_pkcs1_rsa_key_is_deployed_and_matches() {
    use crate::support::world::{assert_key_matches_and_private, openssl, wait_for, World};
    let w = World::new(&[]);
    let cfg = w.config(
        "[[certificate]]\nname = \"casrsa\"\ndomains = [\"casrsa.example.test\"]\nvalidation = { method = \"alidns\" }\nkey = \"cas\"\n",
    );
    let _d = w.daemon(&cfg, "daemon.log");
    wait_for(
        "casrsa deployed",
        std::time::Duration::from_secs(60),
        // Both files: a check between two of the set's files must not race the install.
        || w.live("casrsa", "cert.pem").exists() && w.live("casrsa", "privkey.pem").exists(),
    );
    let key = std::fs::read_to_string(w.live("casrsa", "privkey.pem")).unwrap();
    assert!(
        key.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "deployed as CAS made it: {}",
        &key[..40.min(key.len())]
    );
    let text = openssl(&[
        "pkey",
        "-in",
        w.live("casrsa", "privkey.pem").to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(
        text.contains("2048 bit"),
        "{}",
        text.lines().next().unwrap_or("")
    );
    assert_key_matches_and_private(&w, "casrsa");
}

/// `check` against the corrected simulator: a configured product the account never bought is a
/// quota/package problem (exit 5, said in words), not a refused request (exit 7).
#[test]
fn check_says_a_configured_product_was_never_bought_and_exits_5() {
    use crate::support::world::World;
    let w = World::new(&[]);
    let cfg = w.config(
        "[[certificate]]\nname = \"nb\"\ndomains = [\"nb.example.test\"]\nvalidation = { method = \"alidns\" }\nproduct_code = \"geotrust-ov-w-personal\"\n",
    );
    let out = Command::new(support::bin())
        .arg("--config")
        .arg(&cfg)
        .arg("check")
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", crate::support::world::KEY_ID)
        .env(
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            crate::support::world::KEY_SECRET,
        )
        .output()
        .unwrap();
    crate::support::world::keep_output("sim_check_not_bought", &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        // The wording every command shares (src/cli/report.rs, from ApiError::quota_message).
        stderr.contains(
            "no package of geotrust-ov-w-personal bought on this account (NotFoundPackage)"
        ),
        "{stderr}"
    );
}
