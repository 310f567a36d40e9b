//! `cas-sim`: the simulator on its own (the same flags as `cas-certd simulate`).
use std::process::ExitCode;

use clap::Parser;

// `about` is the package description.
#[derive(Debug, Parser)]
#[command(name = "cas-sim", version, about)]
struct Cli {
    #[command(flatten)]
    args: cas_sim::cli::SimulateArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cas-sim: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(cas_sim::cli::run("cas-sim", &cli.args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cas-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
