//! `cas-certd demo`: the simulator (a child `cas-certd simulate`, so it is exactly what the
//! tests run), a loopback web server for FILE proofs, and the daemon in this process. Three
//! certificates are issued and deployed into `<dir>/live`; the first ones are short-lived, so
//! each is renewed once within a minute. The demo ends when every certificate has been renewed
//! and its reload hook has run, and prints what happened to each.
//!
//! A second run starts clean: the simulator's CA and orders, the store and the deployed files
//! belong together, so it says what it removes and removes exactly what a run makes (see
//! [`MADE`]) — and only in a directory whose `config.toml` the demo wrote.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use cas_api::credentials::{AccessKey, Credentials};
use cas_api::secret::Secret;
use cas_certd::daemon::{self, DaemonEvent, Services};
use cas_certd::metrics::Metrics;
use cas_certd::notify::Notifier;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

const DEMO_KEY_ID: &str = "demo-key-id";
const DEMO_KEY_SECRET: &str = "demo-key-secret-not-a-real-one";
/// The whole demo is given this long before it gives up.
const DEMO_TIMEOUT: Duration = Duration::from_secs(150);
/// What a run makes in its directory; the next run removes exactly these.
const MADE: [&str; 5] = ["config.toml", "live", "sim", "state", "webroot"];
/// The first line of the demo's `config.toml`: a directory without it is not the demo's.
const MARKER: &str = "# Written by `cas-certd demo`.";

pub async fn demo(dir: &Path) -> anyhow::Result<ExitCode> {
    cas_certd::logging::init(cas_certd::config::LogFormat::Text);
    let dir = std::path::absolute(dir).context("demo directory")?;
    if let Err(e) = start_clean(&dir) {
        eprintln!("cas-certd demo: {e:#}");
        return Ok(ExitCode::from(super::exit::USAGE));
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
    let client = cas_api::Client::new(&cfg.api, creds)?;
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
    let names: Vec<String> = cfg.certificates.iter().map(|c| c.name.clone()).collect();
    let runner = tokio::spawn(daemon::run(cfg, services, async {
        let _ = stop_rx.await;
    }));

    let mut progress: HashMap<String, Progress> = names
        .iter()
        .map(|n| (n.clone(), Progress::default()))
        .collect();
    let finished = tokio::time::timeout(DEMO_TIMEOUT, async {
        while let Some(ev) = rx.recv().await {
            match ev {
                DaemonEvent::Deployed { name, renewal } => {
                    println!("{} {name}", if renewal { "renewed" } else { "deployed" });
                    if let Some(p) = progress.get_mut(&name) {
                        let slot = if renewal {
                            &mut p.renewed_at
                        } else {
                            &mut p.issued_at
                        };
                        *slot = Some(Utc::now());
                        p.hook_pending = true;
                    }
                }
                DaemonEvent::HookOk { names } => {
                    for n in names {
                        if let Some(p) = progress.get_mut(&n) {
                            p.hook_pending = false;
                        }
                    }
                }
            }
            if progress
                .values()
                .all(|p| p.renewed_at.is_some() && !p.hook_pending)
            {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    let _ = stop_tx.send(());
    runner.await.context("daemon task")??;
    let _ = sim.kill().await;

    let snap = cas_certd::store::read_snapshot(&state_dir)?;
    let live = dir.join("live");
    print!(
        "{}",
        final_table(&names, &snap.certificates, &progress, &live)
    );
    if finished {
        println!(
            "demo done: every certificate was issued, deployed and renewed once; the files are in {}",
            live.display()
        );
        println!("(times in UTC; running the demo again removes this run and starts over)");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "demo: not every certificate was renewed within {}s",
            DEMO_TIMEOUT.as_secs()
        );
        Ok(ExitCode::from(super::exit::FAILURE))
    }
}

/// What the demo saw happen to one certificate.
#[derive(Default)]
struct Progress {
    issued_at: Option<DateTime<Utc>>,
    renewed_at: Option<DateTime<Utc>>,
    /// Deployed, and its reload hook has not run since.
    hook_pending: bool,
}

/// Removes what an earlier run made in `dir`, after saying so; refuses a directory holding
/// any of [`MADE`] without the demo's `config.toml`, since those files are someone else's.
fn start_clean(dir: &Path) -> anyhow::Result<()> {
    let present: Vec<&str> = MADE
        .into_iter()
        .filter(|m| dir.join(m).symlink_metadata().is_ok())
        .collect();
    if present.is_empty() {
        return Ok(());
    }
    let ours =
        std::fs::read_to_string(dir.join("config.toml")).is_ok_and(|s| s.starts_with(MARKER));
    if !ours {
        anyhow::bail!(
            "{} holds {} but no config.toml written by the demo; removing nothing. \
             Choose a new or empty directory with --dir",
            dir.display(),
            present.join(", ")
        );
    }
    println!(
        "removing the previous demo run in {}: {}",
        dir.display(),
        present.join(", ")
    );
    for m in present {
        let p = dir.join(m);
        let is_dir = p.symlink_metadata().is_ok_and(|md| md.is_dir());
        let r = if is_dir {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.with_context(|| format!("removing {}", p.display()))?;
    }
    Ok(())
}

/// One line per certificate: its state, when the demo saw it issued and renewed, and the
/// expiry and issuer of the certificate now live (read back from the deployed file).
fn final_table(
    names: &[String],
    rows: &[cas_certd::store::StatusRow],
    progress: &HashMap<String, Progress>,
    live: &Path,
) -> String {
    let hms = |t: Option<DateTime<Utc>>| t.map_or("-".into(), |t| t.format("%H:%M:%S").to_string());
    let mut lines =
        vec![["NAME", "STATE", "ISSUED", "RENEWED", "EXPIRES", "ISSUER"].map(String::from)];
    for name in names {
        let state = rows
            .iter()
            .find(|r| r.name == *name)
            .map_or("new".into(), |r| r.state.clone());
        let p = progress.get(name);
        let (expires, issuer) = match live_cert(live, name) {
            Some((not_after, issuer)) => (not_after.format("%Y-%m-%d %H:%M").to_string(), issuer),
            None => ("-".into(), "-".into()),
        };
        lines.push([
            name.to_string(),
            state,
            hms(p.and_then(|p| p.issued_at)),
            hms(p.and_then(|p| p.renewed_at)),
            expires,
            issuer,
        ]);
    }
    let mut widths = [0usize; 6];
    for l in &lines {
        for (w, c) in widths.iter_mut().zip(l) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// notAfter and issuer common name of `<live>/<name>/cert.pem`.
fn live_cert(live: &Path, name: &str) -> Option<(DateTime<Utc>, String)> {
    use x509_parser::prelude::*;
    let pem = std::fs::read(live.join(name).join("cert.pem")).ok()?;
    let block = x509_parser::pem::Pem::iter_from_buffer(&pem).next()?.ok()?;
    let (_, cert) = X509Certificate::from_der(&block.contents).ok()?;
    let not_after = DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)?;
    let issuer = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("?")
        .to_string();
    Some((not_after, issuer))
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
        r#"{MARKER}
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
