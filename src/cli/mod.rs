//! The command line: one module per group of subcommands. This is binary code, so `anyhow`
//! is allowed here; the library below uses `thiserror` enums.
pub mod check;
pub mod daemon;
#[cfg(feature = "fleet")]
pub mod fleet_status;
pub mod ops;
pub mod renew;
pub mod report;
pub mod service;
pub mod status;
pub mod store;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Exit codes, distinct so scripts can tell failures apart. Which failure gives which code,
/// and its wording, is decided in one place: [`report`].
pub mod exit {
    pub const OK: u8 = 0;
    /// Anything not classified below.
    pub const FAILURE: u8 = 1;
    /// Bad command line (clap uses 2 as well), or a costly action not confirmed (`--yes`).
    pub const USAGE: u8 = 2;
    /// Bad configuration file.
    pub const CONFIG: u8 = 3;
    /// Credentials missing or rejected (signature, unknown key).
    pub const AUTH: u8 = 4;
    /// Quota exhausted or product not bought.
    pub const QUOTA: u8 = 5;
    /// Network, throttling, 5xx after retries: try again later.
    pub const TRANSIENT: u8 = 6;
    /// The request was refused as invalid (parameters, order state, not found).
    pub const REFUSED: u8 = 7;
}

/// How long a command waits for the daemon's answer on the control socket. A request still
/// unanswered when the command gives up is dropped by the daemon (it checks that its client is
/// still there before acting), so a `renew` given up on never turns into a late order.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// cas-certd: keeps Alibaba Cloud CAS certificates issued, deployed and renewed.
#[derive(Debug, Parser)]
#[command(name = "cas-certd", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "CAS_CERTD_CONFIG",
        default_value = "/etc/cas-certd/config.toml"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (what the systemd unit starts).
    Run(daemon::RunArgs),
    /// Validate the configuration, file ownership, the credentials and the remaining quota;
    /// prints OK only when all passed.
    Check(check::CheckArgs),
    /// Show every certificate's state (asks the running daemon, or reads the store); writes
    /// nothing.
    Status(status::StatusArgs),
    /// Renew a certificate now. A due one (never issued, or inside its renewal window) renews
    /// at once; one that is not due needs --yes, since it uses a unit of quota early.
    Renew(renew::RenewArgs),
    /// Show the quota of a product (DescribePackageState).
    Package(ops::PackageArgs),
    /// List orders (ListUserCertificateOrder).
    Orders(ops::OrdersArgs),
    /// Inspect or act on one order.
    #[command(subcommand)]
    Order(ops::OrderCommand),
    /// Run the CAS + Alidns simulator with a local test CA.
    #[cfg(feature = "sim")]
    Simulate(Box<cas_sim::cli::SimulateArgs>),
    /// Zero-setup demo: simulator + daemon in one process, certificates into ./demo.
    #[cfg(feature = "sim")]
    Demo(daemon::DemoArgs),
    /// Check or rebuild the state database (records are a cache of what is deployed).
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Print shell completions.
    Completions(service::CompletionsArgs),
    /// Print the man page (roff).
    Man(service::ManArgs),
}
