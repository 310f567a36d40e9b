//! Daemon subcommands: `run`, `check`, `status`, `renew`, `demo`.
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cas_certd::cas::{Client, ErrorClass};
use cas_certd::config::{self, Config};
use cas_certd::control::{self, Request, Response};
use cas_certd::credentials::Credentials;
use cas_certd::daemon::{self, Services};
use cas_certd::metrics::Metrics;
use cas_certd::notify::Notifier;
use cas_certd::store::{self, StatusRow, Store};

use super::exit;

#[cfg(feature = "sim")]
mod demo;

#[derive(Debug, clap::Args)]
pub struct RunArgs {}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Only validate the file: no credentials, no network.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RenewArgs {
    /// The certificate's name in the configuration.
    pub name: String,
    /// Order a new certificate now, even for paid products (no RenewCertificateOrder).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the demo writes everything. What an earlier demo run made there (config.toml,
    /// live, sim, state, webroot) is removed first; a directory holding those without the
    /// demo's config.toml is refused.
    #[arg(long, default_value = "demo")]
    pub dir: std::path::PathBuf,
}

/// Loads the config or prints every error and returns the CONFIG exit code.
fn load_config(cli: &super::Cli) -> Result<Config, ExitCode> {
    config::load(&cli.config).map_err(|errs| {
        for e in &errs.errors {
            eprintln!("{e}");
        }
        ExitCode::from(exit::CONFIG)
    })
}

fn make_client(cfg: &Config, metrics: &Metrics) -> anyhow::Result<Result<Client, ExitCode>> {
    let creds = match Credentials::resolve(&cfg.credentials) {
        Ok(c) => c,
        Err(e) => {
            // Exit 3 like the operator commands (README: "configuration or credentials file
            // invalid"); 4 is for keys CAS rejects.
            eprintln!("cas-certd: {e}");
            return Ok(Err(ExitCode::from(exit::CONFIG)));
        }
    };
    let mut client = Client::new(&cfg.cas, &cfg.alidns, creds).context("API client")?;
    let m = metrics.clone();
    client.set_observer(Arc::new(move |action: &str, code: &str| {
        m.api_call(action, code)
    }));
    Ok(Ok(client))
}

/// Resolves on the first SIGTERM/SIGINT. A second one exits at once (signal-hook), and a
/// watchdog thread ends the process if the drain overruns 10 s.
async fn shutdown_signal() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        // Order matters: the conditional exit is registered first so it sees the flag set by
        // the previous delivery of the signal.
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&flag));
        let _ = signal_hook::flag::register(sig, Arc::clone(&flag));
    }
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(10));
        eprintln!("cas-certd: shutdown took longer than 10 s; exiting");
        std::process::exit(1);
    });
}

/// The daemon never relies on the umask it was started with (`umask 000` would make the store
/// and the output directory world-writable): everything is private unless given a mode
/// explicitly (deployed certificates, directories the web server must traverse, the challenge).
/// The same value as the unit's `UMask=0077`; hooks inherit it there too.
#[allow(unsafe_code)]
fn private_umask() {
    // SAFETY: umask(2) only swaps the process's file-mode mask; it has no memory-safety
    // preconditions and cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

pub async fn run(cli: &super::Cli, _a: &RunArgs) -> anyhow::Result<ExitCode> {
    private_umask();
    let cfg = match load_config(cli) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    cas_certd::logging::init(cfg.log_format);
    let metrics = Metrics::new();
    let client = match make_client(&cfg, &metrics)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let services = Services {
        client,
        metrics,
        notifier: Notifier::from_env(),
        events: None,
        handle_sighup: true,
    };
    daemon::run(cfg, services, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn check(cli: &super::Cli, a: &CheckArgs) -> anyhow::Result<ExitCode> {
    let cfg = match load_config(cli) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let client = match a.offline {
        true => None,
        false => match make_client(&cfg, &Metrics::new())? {
            Ok(c) => Some(c),
            Err(code) => return Ok(code),
        },
    };
    // What the daemon checks before paying for an order (without the API when offline).
    let mut unpublishable = false;
    for c in &cfg.certificates {
        let v = &c.validation;
        for p in cas_certd::validation::preflight(v, &c.domains, client.as_ref()).await {
            eprintln!("{}: certificate {}: {p}", cli.config.display(), c.name);
            unpublishable = true;
        }
    }
    if unpublishable {
        return Ok(ExitCode::from(exit::CONFIG));
    }
    for note in &cfg.notes {
        println!("{note}");
    }
    println!(
        "{}: OK, {} certificate(s)",
        cli.config.display(),
        cfg.certificates.len()
    );
    let Some(client) = client else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut products: Vec<&str> = cfg
        .certificates
        .iter()
        .map(|c| c.product_code.as_str())
        .collect();
    products.sort();
    products.dedup();
    let mut code = exit::OK;
    for p in products {
        match client.describe_package_state(p).await {
            Ok(s) => {
                let left = s.total_count - s.used_count;
                println!(
                    "{p}: {left} of {} left ({} issued)",
                    s.total_count, s.issued_count
                );
                if left <= 0 {
                    code = exit::QUOTA;
                }
            }
            // Not bought (or none left) is a quota problem, not a refused request.
            Err(e) if e.is_quota() => {
                eprintln!(
                    "{p}: {}",
                    e.quota_message(p).unwrap_or_else(|| e.to_string())
                );
                code = exit::QUOTA;
            }
            Err(e) => {
                eprintln!("{p}: {e}");
                code = match e.class() {
                    ErrorClass::Permanent => exit::REFUSED,
                    _ => exit::TRANSIENT,
                };
            }
        }
    }
    Ok(ExitCode::from(code))
}

/// The rows from the running daemon, else from `status.json`, else from the store itself.
async fn status_rows(cfg: &Config) -> anyhow::Result<(Vec<StatusRow>, &'static str)> {
    match control::request(cfg, &Request::Status).await {
        Ok(Response::Status { certificates }) => return Ok((certificates, "daemon")),
        Err(e @ control::ControlError::Untrusted { .. }) => eprintln!("cas-certd: {e}"),
        _ => {}
    }
    match Store::open(&cfg.state_dir) {
        Ok(s) => {
            let rows = s
                .list()?
                .into_iter()
                .flatten()
                .map(|r| StatusRow::from_record(&r))
                .collect();
            Ok((rows, "store (daemon not running)"))
        }
        Err(store::StoreError::Locked(_)) => {
            let snap = store::read_snapshot(&cfg.state_dir)?;
            Ok((snap.certificates, "snapshot"))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn status(cli: &super::Cli, a: &StatusArgs) -> anyhow::Result<ExitCode> {
    let cfg = match load_config(cli) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let (rows, from) = status_rows(&cfg).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table(&rows));
        eprintln!("(from the {from})");
    }
    Ok(ExitCode::SUCCESS)
}

/// The status table: name, state, domains, order, expiry, next action, last error.
pub fn table(rows: &[StatusRow]) -> String {
    let mut lines = vec![[
        "NAME".to_string(),
        "STATE".into(),
        "DOMAINS".into(),
        "ORDER".into(),
        "EXPIRES".into(),
        "NEXT".into(),
        "LAST ERROR".into(),
    ]];
    for r in rows {
        lines.push([
            r.name.clone(),
            r.state.clone(),
            r.domains.join(","),
            r.order_id.map(|o| o.to_string()).unwrap_or("-".into()),
            r.not_after
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or("-".into()),
            format!(
                "{} at {}",
                r.next_action,
                r.next_due.format("%Y-%m-%d %H:%M:%S")
            ),
            r.last_error.clone().unwrap_or("-".into()),
        ]);
    }
    let mut widths = [0usize; 7];
    for l in &lines {
        for (i, c) in l.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub async fn renew(cli: &super::Cli, a: &RenewArgs) -> anyhow::Result<ExitCode> {
    let cfg = match load_config(cli) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let req = Request::Renew {
        name: a.name.clone(),
        force: a.force,
    };
    match control::request(&cfg, &req).await {
        Ok(Response::Ok { message }) => {
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Response::Error { message }) => {
            eprintln!("cas-certd: {message}");
            Ok(ExitCode::from(exit::REFUSED))
        }
        Ok(other) => anyhow::bail!("unexpected answer: {other:?}"),
        Err(_) => {
            // No daemon: mark it in the store; the next start renews it.
            if !cfg.certificates.iter().any(|c| c.name == a.name) {
                eprintln!("cas-certd: no certificate named {:?}", a.name);
                return Ok(ExitCode::from(exit::REFUSED));
            }
            let s = Store::open(&cfg.state_dir)?;
            let mut r = s
                .get(&a.name)?
                .unwrap_or_else(|| store::CertRecord::new(&a.name, vec![]));
            r.next_due = chrono::Utc::now();
            r.force_renew = a.force;
            s.put_durable(&r).await?;
            println!(
                "no daemon running: {} will be renewed when it starts",
                a.name
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(feature = "sim")]
pub async fn demo(_cli: &super::Cli, a: &DemoArgs) -> anyhow::Result<ExitCode> {
    demo::demo(&a.dir).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_header_and_one_line_per_certificate() {
        let row = StatusRow {
            name: "www".into(),
            state: "deployed".into(),
            domains: vec!["a.test".into(), "b.test".into()],
            order_id: Some(cas_certd::cas::model::OrderId(42)),
            not_after: None,
            next_due: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            next_action: "renew".into(),
            last_error: None,
            last_success: None,
            instructions: None,
        };
        let t = table(&[row]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("NAME"));
        assert!(lines[1].contains("a.test,b.test") && lines[1].contains("42"));
    }
}
