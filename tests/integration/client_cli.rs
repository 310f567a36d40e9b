//! The operator CLI's failure modes against a loopback server: each gives one clear line on
//! stderr, the documented exit code, and never the secret.

use std::time::{Duration, Instant};

use crate::client_interop::{run, SignServer};

const SECRET: &str = "S3cr3t-do-not-print";

fn stderr_line(o: &std::process::Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        !out.contains(SECRET) && !err.contains(SECRET),
        "secret printed"
    );
    assert_eq!(err.lines().count(), 1, "expected one line, got: {err}");
    assert!(out.is_empty(), "stdout on failure: {out}");
    err
}

#[test]
fn client_cli_wrong_secret_is_one_redacted_line_exit_4() {
    let srv = SignServer::start(&["--client-secret-differs"]);
    let home = tempfile::tempdir().expect("home");
    for sig in ["v1", "v3"] {
        let o = run(
            home.path(),
            &[
                ("ALIBABA_CLOUD_ACCESS_KEY_ID", "testid"),
                ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET),
            ],
            &["orders", "--endpoint", &srv.endpoint(), "--signature", sig],
        );
        assert_eq!(o.status.code(), Some(4), "{o:?}");
        let e = stderr_line(&o);
        assert!(
            e.contains("signature rejected by CAS: check the AccessKey secret"),
            "{e}"
        );
        assert!(!e.contains("string to sign") && !e.contains("POST&"), "{e}");
    }
    // Not retried: one request per run.
    assert_eq!(srv.log()["requests"].as_array().expect("r").len(), 2);
}

#[test]
fn client_cli_unknown_key_exit_4() {
    let srv = SignServer::start(&[]);
    let home = tempfile::tempdir().expect("home");
    let o = run(
        home.path(),
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIunknown"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET),
        ],
        &["package", "--endpoint", &srv.endpoint()],
    );
    assert_eq!(o.status.code(), Some(4));
    let e = stderr_line(&o);
    assert!(e.contains("InvalidAccessKeyId.NotFound"), "{e}");
}

#[test]
fn client_cli_closed_port_exit_6() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let home = tempfile::tempdir().expect("home");
    let t0 = Instant::now();
    let o = run(
        home.path(),
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "testid"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET),
        ],
        &["package", "--endpoint", &format!("http://127.0.0.1:{port}")],
    );
    assert_eq!(o.status.code(), Some(6), "{o:?}");
    let e = stderr_line(&o);
    assert!(
        e.contains("cannot connect") && e.contains("try again later"),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(30));
}

#[test]
fn client_cli_503_storm_exit_6_after_bounded_retries() {
    let srv = SignServer::start(&["--mode", "503", "--secret", SECRET]);
    let home = tempfile::tempdir().expect("home");
    let t0 = Instant::now();
    let o = run(
        home.path(),
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "testid"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET),
        ],
        &[
            "orders",
            "--all",
            "--endpoint",
            &srv.endpoint(),
            "--signature",
            "v3",
        ],
    );
    assert_eq!(o.status.code(), Some(6), "{o:?}");
    let e = stderr_line(&o);
    assert!(e.contains("ServiceUnavailable"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(30));
    let log = srv.log();
    // The default budget is 4 attempts, each re-signed (the server rejects reused nonces).
    assert_eq!(log["requests"].as_array().expect("r").len(), 4);
    assert!(log["mismatches"].as_array().expect("m").is_empty(), "{log}");
}

#[test]
fn client_cli_config_and_credential_errors_exit_3() {
    let home = tempfile::tempdir().expect("home");
    // No credentials anywhere.
    let o = run(
        home.path(),
        &[],
        &["package", "--endpoint", "http://127.0.0.1:9"],
    );
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr_line(&o).contains("no credentials found"));
    // Plain http to a non-loopback host.
    let key = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "testid"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET),
    ];
    let o = run(
        home.path(),
        &key,
        &["package", "--endpoint", "http://cas.aliyuncs.com"],
    );
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr_line(&o).contains("only allowed for loopback"));
    // A group-readable credentials file.
    let f = home.path().join("creds");
    std::fs::write(
        &f,
        format!("[default]\naccess_key_id = x\naccess_key_secret = {SECRET}\n"),
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let o = run(
        home.path(),
        &[("ALIBABA_CLOUD_CREDENTIALS_FILE", f.to_str().expect("utf-8"))],
        &["package", "--endpoint", "http://127.0.0.1:9"],
    );
    assert_eq!(o.status.code(), Some(3));
    let e = stderr_line(&o);
    assert!(e.contains("chmod 600") && e.contains("creds"), "{e}");
    // Revoke needs confirmation.
    let o = run(
        home.path(),
        &key,
        &["order", "revoke", "1", "--endpoint", "http://127.0.0.1:9"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr_line(&o).contains("--yes"));
}

#[test]
fn client_cli_quota_exit_5() {
    let srv = SignServer::start(&["--secret", SECRET]);
    let home = tempfile::tempdir().expect("home");
    let key = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "testid"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET),
    ];
    let ep = srv.endpoint();
    let o = run(
        home.path(),
        &key,
        &["package", "--product", "not-bought", "--endpoint", &ep],
    );
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    let e = stderr_line(&o);
    assert!(e.contains("no package of not-bought bought"), "{e}");

    // Exhausted: the table still prints, plus one line and exit 5.
    let o = run(
        home.path(),
        &key,
        &[
            "package",
            "--product",
            "exhausted-product",
            "--endpoint",
            &ep,
        ],
    );
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("exhausted-product"), "{out}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.trim(),
        "cas-certd: quota exhausted for exhausted-product (20 of 20 used)"
    );
    assert!(srv.log()["mismatches"].as_array().expect("m").is_empty());
}
