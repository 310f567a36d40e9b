//! `cas-certd simulate`.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {}

pub async fn simulate(_cli: &super::Cli, _a: &SimulateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
