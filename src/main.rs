//! Thin entry point: parse the command line, dispatch, map errors to exit codes.
mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cas-certd: cannot start the async runtime: {e}");
            return ExitCode::from(cli::exit::FAILURE);
        }
    };
    let result = rt.block_on(async {
        match &cli.command {
            Command::Run(a) => cli::daemon::run(&cli, a).await,
            Command::Check(a) => cli::check::check(&cli, a).await,
            Command::Status(a) => cli::status::status(&cli, a).await,
            Command::Store(c) => cli::store::store(&cli, c).await,
            Command::Renew(a) => cli::renew::renew(&cli, a).await,
            Command::Package(a) => cli::ops::package(&cli, a).await,
            Command::Orders(a) => cli::ops::orders(&cli, a).await,
            Command::Order(a) => cli::ops::order(&cli, a).await,
            #[cfg(feature = "sim")]
            Command::Simulate(a) => cas_sim::cli::run("cas-certd simulate", a)
                .await
                .map(|()| ExitCode::SUCCESS)
                .map_err(anyhow::Error::from),
            #[cfg(feature = "sim")]
            Command::Demo(a) => cli::daemon::demo(&cli, a).await,
            Command::Completions(a) => cli::service::completions(a),
            Command::Man(a) => cli::service::man(a),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cas-certd: {e:#}");
            ExitCode::from(cli::exit::FAILURE)
        }
    }
}
