//! `completions` and `man`, generated from the clap definition so they never drift from it.
use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {}

/// Prints the completion script, e.g. `cas-certd completions bash > /etc/bash_completion.d/cas-certd`.
pub fn completions(a: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = super::Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(a.shell, &mut cmd, "cas-certd", &mut out);
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Prints cas-certd(1) in roff, e.g. `cas-certd man > /usr/local/share/man/man1/cas-certd.1`.
pub fn man(_a: &ManArgs) -> anyhow::Result<ExitCode> {
    let cmd = super::Cli::command();
    let mut out = std::io::stdout().lock();
    match clap_mangen::Man::new(cmd)
        .render(&mut out)
        .and_then(|()| out.flush())
    {
        // `cas-certd man | head` closing the pipe early is not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
