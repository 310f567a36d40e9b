//! `cas-certd demo`: the simulator (a child `cas-certd simulate`, so it is exactly what the
//! tests run), a loopback web server for FILE proofs, and the daemon in this process. Three
//! certificates are issued and deployed into `<dir>/live`; the first ones are short-lived, so a
//! renewal follows within a minute; then a status table is printed.
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use cas_certd::credentials::{AccessKey, Credentials};
use cas_certd::daemon::{self, DaemonEvent, Services};
use cas_certd::metrics::Metrics;
use cas_certd::notify::Notifier;
use cas_certd::secret::Secret;
use tokio::sync::mpsc;

const DEMO_KEY_ID: &str = "demo-key-id";
const DEMO_KEY_SECRET: &str = "demo-key-secret-not-a-real-one";
/// The whole demo is given this long before it gives up.
const DEMO_TIMEOUT: Duration = Duration::from_secs(150);

pub async fn demo(dir: &Path) -> anyhow::Result<ExitCode> {
    cas_certd::logging::init(cas_certd::config::LogFormat::Text);
    let dir = std::path::absolute(dir).context("demo directory")?;
    // A fresh run each time: the simulator's orders and our store belong together.
    for sub in ["sim", "state", "webroot"] {
        let _ = std::fs::remove_dir_all(dir.join(sub));
    }
    let webroot = dir.join("webroot");
    std::fs::create_dir_all(&webroot).context("webroot")?;
    std::fs::create_dir_all(dir.join("sim")).context("sim dir")?;

    let web = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("demo web server")?;
    let web_addr = web.local_addr()?;
    tokio::spawn(serve_webroot(web, webroot.clone()));

    let ready = dir.join("sim/ready");
    let exe = std::env::current_exe().context("own executable")?;
    let mut sim = tokio::process::Command::new(exe)
        .args(["simulate", "--listen", "127.0.0.1:0", "--admin"])
        .arg("--data-dir")
        .arg(dir.join("sim/data"))
        .arg("--ready-file")
        .arg(&ready)
        .args(["--zone", "example.test"])
        .args(["--resolve", &format!("example.test={web_addr}")])
        .args(["--resolve", &format!("*.example.test={web_addr}")])
        .args(["--validation-delay", "1s", "--review-delay", "1s"])
        .args(["--first-cert-lifetime", "45s"])
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", DEMO_KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", DEMO_KEY_SECRET)
        .kill_on_drop(true)
        .spawn()
        .context("starting the simulator")?;
    let sim_addr = wait_ready(&ready).await?;
    println!("simulator on {sim_addr}, web server on {web_addr}");

    let cfg_path = dir.join("config.toml");
    std::fs::write(&cfg_path, demo_config(&dir, &webroot, &sim_addr)).context("demo config")?;
    let cfg = cas_certd::config::load(&cfg_path)
        .map_err(|e| anyhow::anyhow!("demo config is invalid:\n{e}"))?;

    let creds = Credentials::fixed(AccessKey {
        id: DEMO_KEY_ID.into(),
        secret: Secret::new(DEMO_KEY_SECRET),
        security_token: None,
        expires: None,
    });
    let client = cas_certd::cas::Client::new(&cfg.cas, &cfg.alidns, creds)?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let services = Services {
        client,
        metrics: Metrics::new(),
        notifier: Notifier::default(),
        events: Some(tx),
        handle_sighup: false,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let state_dir = cfg.state_dir.clone();
    let runner = tokio::spawn(daemon::run(cfg, services, async {
        let _ = stop_rx.await;
    }));

    let names = 3usize;
    let mut deployed = std::collections::HashSet::new();
    let outcome = tokio::time::timeout(DEMO_TIMEOUT, async {
        let mut renewed = false;
        while let Some(ev) = rx.recv().await {
            match ev {
                DaemonEvent::Deployed { name, renewal } => {
                    println!("{} {name}", if renewal { "renewed" } else { "deployed" });
                    deployed.insert(name);
                    renewed |= renewal;
                }
                DaemonEvent::HookOk { .. } if renewed && deployed.len() == names => return true,
                DaemonEvent::HookOk { .. } => {}
            }
        }
        false
    })
    .await;
    let _ = stop_tx.send(());
    runner.await.context("daemon task")??;
    let _ = sim.kill().await;

    let snap = cas_certd::store::read_snapshot(&state_dir)?;
    print!("{}", super::table(&snap.certificates));
    match outcome {
        Ok(true) => {
            println!(
                "demo done: certificates are in {}",
                dir.join("live").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprintln!("demo: no renewal within {}s", DEMO_TIMEOUT.as_secs());
            Ok(ExitCode::from(super::exit::FAILURE))
        }
    }
}

async fn wait_ready(ready: &Path) -> anyhow::Result<String> {
    for _ in 0..300 {
        if let Ok(s) = std::fs::read_to_string(ready) {
            if s.ends_with('\n') {
                return Ok(s.trim().to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the simulator did not become ready in 30 s")
}

fn demo_config(dir: &Path, webroot: &Path, sim: &str) -> String {
    format!(
        r#"# Written by `cas-certd demo`.
state_dir = "{state}"
output_dir = "{live}"
check_schedule = "*/5 * * * * *"
poll_min = "1s"
poll_max = "3s"

[cas]
endpoint = "http://{sim}"

[alidns]
endpoint = "http://{sim}"

[defaults]
product_code = "symantec-free-1-free"
key = "ecdsa-p256"
renew_before = "1/3"
contact = {{ name = "Demo", phone = "13900000000", email = "demo@example.test" }}
reload = ["sh", "-c", "echo reload hook: $CERT_NAME"]

[[certificate]]
name = "www"
domains = ["www.example.test", "example.test"]
validation = {{ method = "file", webroot = "{webroot}" }}

[[certificate]]
name = "api"
domains = ["api.example.test"]
validation = {{ method = "file", webroot = "{webroot}" }}

[[certificate]]
name = "wild"
domains = ["*.example.test"]
validation = {{ method = "alidns" }}
"#,
        state = dir.join("state").display(),
        live = dir.join("live").display(),
        webroot = webroot.display(),
    )
}

/// Serves `/.well-known/pki-validation/<name>` from the webroot; nothing else.
async fn serve_webroot(listener: tokio::net::TcpListener, webroot: PathBuf) {
    use axum::extract::Path as UrlPath;
    use axum::http::StatusCode;
    let app = axum::Router::new().route(
        "/.well-known/pki-validation/{file}",
        axum::routing::get(move |UrlPath(file): UrlPath<String>| {
            let webroot = webroot.clone();
            async move {
                let safe = !file.is_empty()
                    && file
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                    && !file.starts_with('.');
                if !safe {
                    return Err(StatusCode::NOT_FOUND);
                }
                tokio::fs::read(webroot.join(".well-known/pki-validation").join(file))
                    .await
                    .map_err(|_| StatusCode::NOT_FOUND)
            }
        }),
    );
    let _ = axum::serve(listener, app).await;
}
