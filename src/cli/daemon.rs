//! `run` and `demo`, and what every command that reads the configuration shares: loading it
//! and building the API client.
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use cas_api::credentials::Credentials;
use cas_api::Client;
use cas_certd::config::{self, Config};
use cas_certd::daemon::{self, Services};
use cas_certd::metrics::Metrics;
use cas_certd::notify::Notifier;

use super::report::{self, Failure};

#[cfg(feature = "sim")]
mod demo;
// The demo exits with the shared codes.
#[cfg(feature = "sim")]
use super::exit;

#[derive(Debug, clap::Args)]
pub struct RunArgs {}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the demo writes everything. What an earlier demo run made there (config.toml,
    /// live, sim, state, webroot) is removed first; a directory holding those without the
    /// demo's config.toml is refused.
    #[arg(long, default_value = "demo")]
    pub dir: std::path::PathBuf,
}

/// Loads the config or prints every error and returns the CONFIG exit code.
pub(super) fn load_config(cli: &super::Cli) -> Result<Config, ExitCode> {
    config::load(&cli.config).map_err(|errs| report::config(&errs))
}

/// The API client for the configured credentials and endpoints, counting calls in `metrics`.
pub(super) fn make_client(cfg: &Config, metrics: &Metrics) -> Result<Client, Failure> {
    let creds = Credentials::resolve(&cfg.credentials).map_err(|e| report::credentials(&e))?;
    let mut client = Client::new(&cfg.api, creds).map_err(|e| report::api(&e, None))?;
    let m = metrics.clone();
    client.set_observer(Arc::new(move |action: &str, code: &str| {
        m.api_call(action, code)
    }));
    Ok(client)
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
    let client = match make_client(&cfg, &metrics) {
        Ok(c) => c,
        Err(f) => return Ok(f.exit()),
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

#[cfg(feature = "sim")]
pub async fn demo(_cli: &super::Cli, a: &DemoArgs) -> anyhow::Result<ExitCode> {
    demo::demo(&a.dir).await
}
