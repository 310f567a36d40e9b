//! `cas-sim`: the simulator on its own (the same flags as `cas-certd simulate`).
use std::process::ExitCode;

use clap::Parser;

// `about` is the doc of the flags' struct, shared with `cas-certd simulate`.
#[derive(Debug, Parser)]
#[command(name = "cas-sim", version, about)]
struct Cli {
    #[command(flatten)]
    args: cas_sim::cli::SimulateArgs,
}

// A runtime that cannot start panics with tokio's message, which is all there is to say.
#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cas_sim::cli::run("cas-sim", &cli.args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cas-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
