//! `completions` and `man`, generated from the clap definition.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {}
#[derive(Debug, clap::Args)]
pub struct ManArgs {}

pub fn completions(_a: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
pub fn man(_a: &ManArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
