//! The simulator driven by Alibaba's official Python SDKs through a whole lifecycle
//! (tests/py/sim_lifecycle.py), then its ledger checked; plus restart persistence.
#![allow(clippy::unwrap_used)]
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support;
use crate::support::free_port;
use crate::support::world::Proc;

pub(crate) const AK: &str = "LTAI-sim-test";
pub(crate) const SK: &str = "sim-test-secret";

fn wait_for(path: &Path) -> String {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if s.ends_with('\n') {
                return s.trim().to_string();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn start_sim(data: &Path, extra: &[String]) -> (Proc, String) {
    let ready = data.with_extension("ready");
    let _ = std::fs::remove_file(&ready);
    let child = Command::new(support::bin())
        .arg("simulate")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "--zone",
            "example.test",
        ])
        .arg("--data-dir")
        .arg(data)
        .arg("--ready-file")
        .arg(&ready)
        .args(extra)
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK)
        .spawn()
        .unwrap();
    let child = Proc(child);
    let addr = wait_for(&ready);
    (child, addr)
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn ledger(addr: &str) -> serde_json::Value {
    let (status, body) = http_get(addr, "/_sim/ledger");
    assert_eq!(status, 200);
    serde_json::from_str(&body).unwrap()
}

#[test]
fn official_sdks_drive_a_whole_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let webroot = dir.path().join("webroot");
    std::fs::create_dir(&webroot).unwrap();
    let web_port = free_port();
    let py = support::python();
    let web = Proc(
        Command::new(&py)
            .args([
                "-m",
                "http.server",
                &web_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(&webroot)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let data = dir.path().join("sim");
    let (sim, addr) = start_sim(
        &data,
        &[
            "--resolve".into(),
            format!("*.example.test=127.0.0.1:{web_port}"),
            "--quota".into(),
            "geotrust-dv-1-starter=10".into(),
            "--quota".into(),
            "geotrust-ov-1-personal=1".into(),
        ],
    );
    let root = data.join("ca/root.pem");
    assert!(root.exists());
    // Wait for the web server too.
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", web_port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "http.server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let port = addr.rsplit(':').next().unwrap().to_string();
    let script: PathBuf = support::repo_root().join("tests/py/sim_lifecycle.py");
    let out = Command::new(&py)
        .arg(&script)
        .args([
            port.as_str(),
            root.to_str().unwrap(),
            webroot.to_str().unwrap(),
            "example.test",
        ])
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK)
        .output()
        .unwrap();
    crate::support::world::keep_output("sim_lifecycle_py", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "lifecycle failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("lifecycle OK"));

    let l = ledger(&addr);
    let calls = l["calls"].as_array().unwrap();
    let has = |action: &str, code: &str| {
        calls
            .iter()
            .any(|c| c["action"] == action && c["code"] == code)
    };
    assert!(has("DescribePackageState", "SignatureDoesNotMatch"));
    assert!(has("AddDomainRecord", "OK"));
    assert!(has(
        "RenewCertificateOrderForPackageRequest",
        "OrderStateError"
    ));
    assert!(has("DeleteCertificateRequest", "OK"));
    assert!(has("CreateCertificateForPackageRequest", "NotRemainCount"));
    let orders = l["orders"].as_array().unwrap();
    let states: Vec<&str> = orders
        .iter()
        .map(|o| o["state"].as_str().unwrap())
        .collect();
    assert!(
        states.contains(&"certificate")
            && states.contains(&"revoked")
            && states.contains(&"deleted"),
        "{states:?}"
    );
    assert!(orders
        .iter()
        .any(|o| o["created_by"] == "RenewCertificateOrderForPackageRequest"));

    // The books survive a restart: same orders, same CA root.
    let root_before = std::fs::read_to_string(&root).unwrap();
    drop(sim);
    let (_sim2, addr2) = start_sim(&data, &[]);
    let l2 = ledger(&addr2);
    assert_eq!(l2["orders"], l["orders"]);
    assert_eq!(std::fs::read_to_string(&root).unwrap(), root_before);
    drop(web);
}

#[test]
fn ledger_is_404_without_admin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sim");
    let ready = dir.path().join("ready");
    // Credentials from a file this time (no environment).
    let creds = dir.path().join("creds.ini");
    std::fs::write(
        &creds,
        format!("[default]\naccess_key_id = {AK}\naccess_key_secret = {SK}\n"),
    )
    .unwrap();
    let _child = Proc(
        Command::new(support::bin())
            .args(["simulate", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data)
            .arg("--ready-file")
            .arg(&ready)
            .arg("--credentials-file")
            .arg(&creds)
            .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
            .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
            .spawn()
            .unwrap(),
    );
    let addr = wait_for(&ready);
    assert_eq!(http_get(&addr, "/_sim/ledger").0, 404);
    let (status, body) = signed_get(&addr, "DescribePackageState").unwrap();
    assert_eq!(status, 200, "key from --credentials-file accepted: {body}");
    // Unsigned requests are refused with Alibaba's error body.
    let (status, body) = http_get(&addr, "/?Action=DescribePackageState&Version=2020-04-07");
    assert_eq!(status, 400);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Code"], "MissingParameter");
    assert!(v["RequestId"].is_string() && v["HostId"].is_string() && v["Recommend"].is_string());
}

/// A v1-signed GET, built with the shared signer; returns (status, body) or None when the
/// connection broke before a complete answer.
fn signed_get(addr: &str, action: &str) -> Option<(u16, String)> {
    use cas_api::sign;
    let mut ps: Vec<(String, String)> = [
        ("AccessKeyId", AK),
        ("Action", action),
        ("Format", "JSON"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("Version", "2020-04-07"),
        ("ProductCode", "digicert-free-1-free"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    ps.push(("SignatureNonce".into(), rand_nonce()));
    ps.push((
        "Timestamp".into(),
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    ));
    let sig = sign::v1_signature(SK, "GET", &ps);
    let q = format!(
        "{}&Signature={}",
        sign::v1_canonical_query(&ps),
        sign::percent_encode(&sig)
    );
    let mut s = TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET /?{q} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let out = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status: u16 = head.get(9..12)?.parse().ok()?;
    // A complete answer has Content-Length bytes, or a terminated chunked body.
    let complete = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().ok())
        })
        .flatten()
        .map(|n| body.len() == n)
        .unwrap_or_else(|| body.ends_with("0\r\n\r\n"));
    complete.then_some((status, body.to_string()))
}

fn rand_nonce() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[test]
fn faults_are_injected_before_actions_run() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, addr) = start_sim(&dir.path().join("a"), &["--fail-rate".into(), "1".into()]);
    let (status, body) = signed_get(&addr, "DescribePackageState").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"ServiceUnavailable\""));

    let (_s, addr) = start_sim(
        &dir.path().join("b"),
        &["--qps".into(), "DescribePackageState=1".into()],
    );
    let first = signed_get(&addr, "DescribePackageState").unwrap();
    assert_eq!(first.0, 200, "{}", first.1);
    assert!(first.1.contains("\"TotalCount\":1000"));
    let second = signed_get(&addr, "DescribePackageState").unwrap();
    assert_eq!(second.0, 400);
    assert!(second.1.contains("Throttling.User"));

    let (_s, addr) = start_sim(
        &dir.path().join("c"),
        &["--garbage-rate".into(), "1".into()],
    );
    let (status, body) = signed_get(&addr, "DescribePackageState").unwrap();
    assert_eq!(status, 200);
    assert!(
        serde_json::from_str::<serde_json::Value>(&body).is_err(),
        "garbage must not parse: {body}"
    );

    let (_s, addr) = start_sim(&dir.path().join("d"), &["--reset-rate".into(), "1".into()]);
    assert!(
        signed_get(&addr, "DescribePackageState").is_none(),
        "reset must not give a complete answer"
    );
    let l = ledger(&addr);
    assert_eq!(l["calls"][0]["code"], "fault:reset");
}

/// Issue 2's acceptance against the simulator (not only the signing server): `package` and
/// `orders --all` with both signatures, and eight concurrent `orders` processes that all succeed
/// although the server throttles ListUserCertificateOrder at 3 calls per second.
#[test]
fn operator_cli_against_the_simulator_with_both_signatures_and_a_low_qps() {
    use cas_api::credentials::{AccessKey, Credentials};
    use cas_api::model::{Contact, CreateOrder, ValidateType};
    use cas_api::{ClientOptions, SignatureVersion};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sim");
    let (sim, addr) = start_sim(&data, &[]);
    let endpoint: url::Url = format!("http://{addr}").parse().unwrap();
    let settings = ClientOptions {
        cas_endpoint: endpoint.clone(),
        alidns_endpoint: endpoint,
        signature: SignatureVersion::V3,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(10),
        qps: 50.0,
        qps_overrides: vec![],
        max_attempts: 4,
        max_retry_time: Duration::from_secs(30),
    };
    let creds = Credentials::fixed(AccessKey {
        id: AK.into(),
        secret: cas_api::secret::Secret::new(SK),
        security_token: None,
        expires: None,
    });
    let client = cas_api::Client::new(&settings, creds).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for i in 0..7 {
        rt.block_on(client.create_certificate_for_package(&CreateOrder {
            product_code: "digicert-free-1-free".into(),
            domains: vec![format!("o{i}.example.test")],
            csr: None,
            validate_type: ValidateType::Dns,
            contact: Contact {
                name: "Ops".into(),
                phone: "13900000000".into(),
                email: "ops@example.test".into(),
            },
            company_name: None,
            tags: vec![],
        }))
        .unwrap();
    }
    drop(sim);
    // Same books, now with a tight server-side limit on the list action.
    let (_sim, addr) = start_sim(
        &data,
        &["--qps".into(), "ListUserCertificateOrder=3".into()],
    );
    let cli = |args: &[&str], sig: &str| {
        Command::new(support::bin())
            .args(args)
            .args([
                "--endpoint",
                &format!("http://{addr}"),
                "--signature",
                sig,
                "--json",
            ])
            .arg("--config")
            .arg(dir.path().join("none.toml"))
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    for sig in ["v1", "v3"] {
        let out = cli(&["package", "--product", "digicert-free-1-free"], sig)
            .wait_with_output()
            .unwrap();
        crate::support::world::keep_output("package", &out);
        assert!(out.status.success(), "package {sig}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("digicert-free-1-free"), "{text}");
        assert!(text.contains('7'), "used count 7 expected: {text}");
    }
    // Eight at once, alternating signatures, three orders per page (so three pages each).
    let kids: Vec<_> = (0..8)
        .map(|i| {
            cli(
                &["orders", "--all", "--page-size", "3"],
                if i % 2 == 0 { "v1" } else { "v3" },
            )
        })
        .collect();
    for (i, k) in kids.into_iter().enumerate() {
        let out = k.wait_with_output().unwrap();
        crate::support::world::keep_output("orders", &out);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "orders #{i}: {out:?}");
        for n in 0..7 {
            assert!(
                text.contains(&format!("o{n}.example.test")),
                "orders #{i}: {text}"
            );
        }
        assert!(!String::from_utf8_lossy(&out.stderr).contains(SK));
    }
    // The server really throttled: the limit was exercised, and every call still ended OK.
    let calls = ledger(&addr)["calls"].as_array().unwrap().clone();
    let list_ok = calls
        .iter()
        .filter(|c| c["action"] == "ListUserCertificateOrder" && c["code"] == "OK")
        .count();
    assert_eq!(list_ok, 8 * 3, "8 processes × 3 pages");
    let throttled = calls
        .iter()
        .filter(|c| {
            c["code"]
                .as_str()
                .is_some_and(|c| c.starts_with("Throttling"))
        })
        .count();
    assert!(
        throttled > 0,
        "the server limit was never reached: {calls:?}"
    );
}
