//! Daemon subcommands: `run`, `check`, `status`, `renew`, `demo`.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct RunArgs {}
#[derive(Debug, clap::Args)]
pub struct CheckArgs {}
#[derive(Debug, clap::Args)]
pub struct StatusArgs {}
#[derive(Debug, clap::Args)]
pub struct RenewArgs {}
#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

pub async fn run(_cli: &super::Cli, _a: &RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
pub async fn check(_cli: &super::Cli, _a: &CheckArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
pub async fn status(_cli: &super::Cli, _a: &StatusArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
pub async fn renew(_cli: &super::Cli, _a: &RenewArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
pub async fn demo(_cli: &super::Cli, _a: &DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
