//! Interop: every request our client sends is re-signed by Alibaba's official SDK code
//! (aliyun-python-sdk-core for v1, alibabacloud-tea-openapi for V3) in `tests/py/sign_server.py`,
//! which records any disagreement. We drive the real binary against it with both signatures.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support;

/// The Python signature-checking server, killed on drop.
pub struct SignServer {
    child: Child,
    pub addr: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl SignServer {
    /// Starts the server; `args` are extra flags (`--mode 503`, `--client-secret-differs`).
    pub fn start(args: &[&str]) -> SignServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let ready = dir.path().join("ready");
        let log = dir.path().join("log.json");
        let child = Command::new(support::python())
            .arg(support::repo_root().join("tests/py/sign_server.py"))
            .arg("--ready-file")
            .arg(&ready)
            .arg("--log")
            .arg(&log)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .expect("start sign_server.py");
        let mut s = SignServer {
            child,
            addr: String::new(),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(a) = std::fs::read_to_string(&ready) {
                if a.ends_with('\n') {
                    s.addr = a.trim().to_string();
                    break;
                }
            }
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("sign_server.py exited early: {st}");
            }
            assert!(
                Instant::now() < deadline,
                "sign_server.py not ready in 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's record: `{"requests": [...], "mismatches": [...]}`.
    pub fn log(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.log).expect("read log");
        serde_json::from_str(&text).expect("log is JSON")
    }
}

impl Drop for SignServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cas-certd` with a clean environment: only the given credentials, a HOME without
/// credential files, and no config file.
pub fn run(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(support::bin());
    c.env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CAS_CERTD_CONFIG", home.join("no-such-config.toml"))
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run cas-certd");
    crate::support::world::keep_output("cas-certd", &out);
    out
}

const KEY: [(&str, &str); 2] = [
    ("ALIBABA_CLOUD_ACCESS_KEY_ID", "testid"),
    ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "testsecret"),
];

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).expect("utf-8")
}

#[test]
fn client_interop_both_signatures_agree_with_official_sdks() {
    let srv = SignServer::start(&[]);
    let home = tempfile::tempdir().expect("home");
    let ep = srv.endpoint();
    let sts = [
        KEY[0],
        KEY[1],
        ("ALIBABA_CLOUD_SECURITY_TOKEN", "STS.tok/with+slash="),
    ];
    for sig in ["v1", "v3"] {
        let base = ["--endpoint", ep.as_str(), "--signature", sig];
        let out = ok(&run(
            home.path(),
            &KEY,
            &[&["package", "--product", "digicert-free-1-free"][..], &base].concat(),
        ));
        assert!(
            out.contains("digicert-free-1-free") && out.contains("20"),
            "{out}"
        );

        // Unicode, space and `*~` in a value; STS token signed like any parameter; paging.
        let out = ok(&run(
            home.path(),
            &sts,
            &[
                &[
                    "orders",
                    "--all",
                    "--json",
                    "--page-size",
                    "3",
                    "--keyword",
                    "值 v*~",
                ][..],
                &base,
            ]
            .concat(),
        ));
        let v: serde_json::Value = serde_json::from_str(&out).expect("orders --json");
        let orders = v["orders"].as_array().expect("orders");
        assert_eq!(orders.len(), 7, "{out}");
        // Ids above 2^53 keep every digit, whether the server sent a number or a string.
        assert_eq!(orders[0]["order_id"].to_string(), "9007199254740993");
        assert_eq!(orders[6]["order_id"].to_string(), "9007199254740999");

        let out = ok(&run(
            home.path(),
            &KEY,
            &[&["order", "show", "9007199254740993"][..], &base].concat(),
        ));
        assert!(
            out.contains("domain_verify") && out.contains("_dnsauth"),
            "{out}"
        );
        let out = ok(&run(
            home.path(),
            &KEY,
            &[&["order", "cancel", "9007199254740993"][..], &base].concat(),
        ));
        assert!(out.contains("cancelled"), "{out}");
        let out = ok(&run(
            home.path(),
            &KEY,
            &[
                &["order", "revoke", "--yes", "18446744073709551615"][..],
                &base,
            ]
            .concat(),
        ));
        assert!(out.contains("revoked"), "{out}");
    }

    let log = srv.log();
    let reqs = log["requests"].as_array().expect("requests");
    let mismatches = log["mismatches"].as_array().expect("mismatches");
    assert!(
        mismatches.is_empty(),
        "signature mismatches: {mismatches:#?}"
    );
    // package + 3 pages of orders + show + cancel + revoke, per signature.
    for sig in ["v1", "v3"] {
        let n = reqs.iter().filter(|r| r["sig"] == sig).count();
        assert_eq!(n, 7, "{sig} requests seen: {reqs:#?}");
    }
    assert!(reqs.iter().all(|r| r["signature_ok"] == true));
    let kw: Vec<&serde_json::Value> = reqs
        .iter()
        .filter(|r| r["action"] == "ListUserCertificateOrder")
        .map(|r| &r["params"]["Keyword"])
        .collect();
    assert_eq!(kw.len(), 6);
    assert!(kw.iter().all(|k| *k == "值 v*~"), "{kw:?}");
    let revoke = reqs
        .iter()
        .find(|r| r["action"] == "CancelCertificateForPackageRequest")
        .expect("revoke seen");
    assert_eq!(revoke["params"]["OrderId"], "18446744073709551615");
}

/// The checker itself must be able to fail: a client signing with another secret is caught.
#[test]
fn client_interop_checker_catches_a_bad_signature() {
    let srv = SignServer::start(&[]);
    let home = tempfile::tempdir().expect("home");
    let ep = srv.endpoint();
    for sig in ["v1", "v3"] {
        let o = run(
            home.path(),
            &[
                ("ALIBABA_CLOUD_ACCESS_KEY_ID", "testid"),
                ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "not-the-secret"),
            ],
            &["package", "--endpoint", &ep, "--signature", sig],
        );
        assert_eq!(o.status.code(), Some(4));
    }
    let log = srv.log();
    assert_eq!(log["mismatches"].as_array().expect("mismatches").len(), 2);
}

/// One client shared by eight concurrent callers keeps under the server's per-second limit on
/// its own: no Throttling answer at all.
#[test]
fn client_interop_shared_limiter_avoids_throttling() {
    use cas_api::model::ListOrders;
    use std::sync::{Arc, Mutex};
    let srv = SignServer::start(&["--max-qps", "3"]);
    let endpoint = url::Url::parse(&srv.endpoint()).expect("url");
    let cas = cas_api::ClientOptions {
        cas_endpoint: endpoint.clone(),
        alidns_endpoint: endpoint,
        signature: cas_api::SignatureVersion::V3,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        qps: 100.0,
        // A little under the server's 3/s: arrival times jitter on the server's side too.
        qps_overrides: vec![("ListUserCertificateOrder".into(), 2.5)],
        max_attempts: 1,
        max_retry_time: Duration::from_secs(30),
    };
    let creds = cas_api::credentials::Credentials::fixed(cas_api::credentials::AccessKey {
        id: "testid".into(),
        secret: cas_api::secret::Secret::new("testsecret"),
        security_token: None,
        expires: None,
    });
    let mut client = cas_api::Client::new(&cas, creds).expect("client");
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    client.set_observer(Arc::new(move |_a: &str, code: &str| {
        s.lock().expect("lock").push(code.to_string())
    }));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let t0 = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let c = client.clone();
            tasks.push(tokio::spawn(async move {
                c.list_user_certificate_order(&ListOrders {
                    current_page: 1,
                    show_size: 50,
                    ..Default::default()
                })
                .await
            }));
        }
        for t in tasks {
            let page = t.await.expect("join").expect("call succeeds");
            assert_eq!(page.orders.len(), 7);
        }
    });
    // Eight calls at 2.5/s: paced over about 2.8 s.
    assert!(t0.elapsed() >= Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(*seen.lock().expect("lock"), vec!["OK"; 8]);
    assert_eq!(srv.log()["throttled"], 0);
}

/// Eight separate processes (no shared limiter) against a low server limit: Throttling is
/// answered, retried with backoff, and every call succeeds.
#[test]
fn client_interop_eight_concurrent_orders_survive_throttling() {
    let srv = SignServer::start(&["--max-qps", "3"]);
    let home = tempfile::tempdir().expect("home");
    let ep = srv.endpoint();
    let children: Vec<_> = (0..8)
        .map(|_| {
            let mut c = Command::new(support::bin());
            c.env_clear()
                .env("HOME", home.path())
                .env("CAS_CERTD_CONFIG", home.path().join("none.toml"))
                .envs(KEY)
                .args(["orders", "--endpoint", &ep])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c.spawn().expect("spawn")
        })
        .collect();
    for ch in children {
        let o = ch.wait_with_output().expect("wait");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let log = srv.log();
    assert!(
        log["throttled"].as_u64().expect("n") > 0,
        "the limit never bit: {log}"
    );
    assert!(log["mismatches"].as_array().expect("m").is_empty());
}

/// Every client action, through the library, with both signatures and an STS token: a create
/// whose CSR has `+/=` and newlines and whose tags have `*~`, unicode and a space.
#[test]
fn client_interop_every_action_both_signatures() {
    use cas_api::model::*;
    let srv = SignServer::start(&[]);
    let endpoint = url::Url::parse(&srv.endpoint()).expect("url");
    let csr = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB+zCCAWQCAQAw/abc=\n-----END CERTIFICATE REQUEST-----\n";
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for sig in [cas_api::SignatureVersion::V1, cas_api::SignatureVersion::V3] {
        let cas = cas_api::ClientOptions {
            cas_endpoint: endpoint.clone(),
            alidns_endpoint: endpoint.clone(),
            signature: sig,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            qps: 50.0,
            qps_overrides: vec![],
            max_attempts: 1,
            max_retry_time: Duration::from_secs(10),
        };
        let creds = cas_api::credentials::Credentials::fixed(cas_api::credentials::AccessKey {
            id: "testid".into(),
            secret: cas_api::secret::Secret::new("testsecret"),
            security_token: Some(cas_api::secret::Secret::new("STS.token/with+slash=")),
            expires: None,
        });
        let c = cas_api::Client::new(&cas, creds).expect("client");
        rt.block_on(async {
            let id = c
                .create_certificate_for_package(&CreateOrder {
                    product_code: "digicert-free-1-free".into(),
                    domains: vec!["www.example.com".into()],
                    csr: Some(csr.into()),
                    validate_type: ValidateType::Dns,
                    contact: Contact {
                        name: "Tom Zhang".into(),
                        phone: "+86 138".into(),
                        email: "a+b@example.com".into(),
                    },
                    company_name: None,
                    tags: vec![("k*~".into(), "值 v".into())],
                })
                .await
                .expect("create");
            assert_eq!(id, OrderId(9_007_199_254_740_995));
            let contact = Contact {
                name: "Tom Zhang".into(),
                phone: "+86 138".into(),
                email: "a+b@example.com".into(),
            };
            let dv = c
                .create_certificate_request(
                    "symantec-free-1-free",
                    "a.example.com",
                    &contact,
                    ValidateType::File,
                )
                .await
                .expect("create dv");
            assert_eq!(dv, OrderId(9_007_199_254_740_995));
            c.create_certificate_with_csr_request(
                "symantec-free-1-free",
                csr,
                &contact,
                ValidateType::Dns,
            )
            .await
            .expect("create with csr");
            let st = c.describe_certificate_state(id).await.expect("state");
            assert!(matches!(
                st,
                CertificateState::DomainVerify(Challenge::Dns { .. })
            ));
            let new = c
                .renew_certificate_order(id, Some(csr))
                .await
                .expect("renew");
            assert_eq!(new, OrderId(9_007_199_254_740_997));
            c.cancel_order(id).await.expect("cancel");
            c.delete_certificate(id).await.expect("delete");
            c.revoke_certificate(id).await.expect("revoke");
            let p = c
                .describe_package_state("digicert-free-1-free")
                .await
                .expect("pkg");
            assert_eq!((p.total_count, p.used_count), (20, 3));
            let rid = c
                .add_domain_record(&AddRecord {
                    domain_name: "example.com".into(),
                    rr: "_dnsauth.www".into(),
                    record_type: "TXT".into(),
                    value: "2026 value+/=".into(),
                    ttl: Some(600),
                })
                .await
                .expect("add record");
            assert_eq!(rid, "98765432101234567");
            let page = c
                .describe_domain_records("example.com", Some("_dnsauth"), 1, 20)
                .await
                .expect("records");
            assert_eq!(page.records[0].rr, "_dnsauth");
            let page = c
                .describe_sub_domain_records("_dnsauth.www.example.com")
                .await
                .expect("sub");
            assert_eq!(page.total_count, 1);
            c.delete_domain_record(&rid).await.expect("delete record");
        });
    }
    let log = srv.log();
    let mismatches = log["mismatches"].as_array().expect("m");
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    let reqs = log["requests"].as_array().expect("r");
    assert_eq!(reqs.len(), 2 * 13, "{reqs:#?}");
    let creates: Vec<_> = reqs
        .iter()
        .filter(|r| r["action"] == "CreateCertificateForPackageRequest")
        .collect();
    assert_eq!(creates.len(), 2);
    for r in creates {
        // The server decoded exactly what we meant to send.
        assert_eq!(r["params"]["Csr"], csr);
        assert_eq!(r["params"]["Tags.1.Key"], "k*~");
        assert_eq!(r["params"]["Tags.1.Value"], "值 v");
        assert_eq!(r["params"]["Email"], "a+b@example.com");
    }
    let with_csr: Vec<_> = reqs
        .iter()
        .filter(|r| r["action"] == "CreateCertificateWithCsrRequest")
        .collect();
    assert_eq!(with_csr.len(), 2);
    assert!(with_csr.iter().all(|r| r["params"]["Csr"] == csr));
    let alidns = reqs.iter().filter(|r| r["version"] == "2015-01-09").count();
    assert_eq!(alidns, 2 * 4);
}
