//! The `cas-sim` program: the shared flags, the ready file, signed calls from the real client,
//! and a clean stop on SIGTERM that leaves the books on disk.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cas_api::credentials::{AccessKey, Credentials};
use cas_api::model::DEFAULT_PRODUCT;
use cas_api::{Client, ClientOptions, Secret};

const BIN: &str = env!("CARGO_BIN_EXE_cas-sim");

/// Kills the simulator if the test fails before stopping it.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test]
async fn serves_signed_calls_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--ready-file")
        .arg(&ready)
        .args(["--quota", "geotrust-dv-1-starter=3"])
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tBinary")
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "binary-secret")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = Running(Some(child));
    let pid = running.0.as_ref().unwrap().id();
    let start = Instant::now();
    let addr = loop {
        if let Ok(s) = std::fs::read_to_string(&ready) {
            break s.trim().to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no ready file");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let url = url::Url::parse(&format!("http://{addr}")).unwrap();
    let opts = ClientOptions {
        cas_endpoint: url.clone(),
        alidns_endpoint: url,
        ..ClientOptions::default()
    };
    let c = Client::new(
        &opts,
        Credentials::fixed(AccessKey {
            id: "LTAI5tBinary".into(),
            secret: Secret::new("binary-secret"),
            security_token: None,
            expires: None,
        }),
    )
    .unwrap();
    let st = c
        .describe_package_state("geotrust-dv-1-starter")
        .await
        .unwrap();
    assert_eq!(st.total_count, 3, "--quota reached the simulator");
    c.describe_package_state(DEFAULT_PRODUCT).await.unwrap();

    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = running.0.take().unwrap().wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?} {stderr}", out.status);
    assert!(
        stderr.contains(&format!("cas-sim: listening on http://{addr}")),
        "{stderr}"
    );
    assert!(dir.path().join("data/state.json").is_file());
    assert!(dir.path().join("data/ca/root.pem").is_file());
}

#[test]
fn a_rate_out_of_range_or_missing_credentials_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--fail-rate", "1.5"])
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "ak")
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "sk")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--fail-rate must be between 0 and 1"),
        "{stderr}"
    );
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no credentials"));
}
