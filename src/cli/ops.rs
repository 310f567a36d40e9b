//! Operator subcommands over the API: `package`, `orders`, `order show|cancel|delete|revoke`.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct PackageArgs {}
#[derive(Debug, clap::Args)]
pub struct OrdersArgs {}
#[derive(Debug, clap::Subcommand)]
pub enum OrderCommand {
    Show {},
}

pub async fn package(_cli: &super::Cli, _a: &PackageArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
pub async fn orders(_cli: &super::Cli, _a: &OrdersArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
pub async fn order(_cli: &super::Cli, _a: &OrderCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
