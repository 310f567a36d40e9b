//! `store verify` (decode every record, name the bad ones) and `store rebuild [--dry-run]`
//! (the start-up rebuild on demand, or what it would do). `check` prints the same plan.
use std::process::ExitCode;

use cas_certd::config::Config;
use cas_certd::rebuild::{self, Action};
use cas_certd::store::{self, Store, StoreError};

use super::daemon::load_config;
use super::exit;

#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Decode every record of the state database and say which are bad.
    Verify,
    /// Rebuild lost records from the deployed sets, as the daemon does at start (the daemon
    /// must be stopped); with --dry-run, only print what it would do.
    Rebuild(RebuildArgs),
}

#[derive(Debug, clap::Args)]
pub struct RebuildArgs {
    /// Print what the rebuild would do; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn store(cli: &super::Cli, cmd: &StoreCommand) -> anyhow::Result<ExitCode> {
    let cfg = match load_config(cli) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    match cmd {
        StoreCommand::Verify => verify(&cfg),
        StoreCommand::Rebuild(a) if a.dry_run => {
            for line in plan_lines(&cfg)? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        StoreCommand::Rebuild(_) => {
            let (_store, rec) = rebuild::open(&cfg)?;
            if rec.is_loss() {
                println!("{}", rec.summary());
            }
            println!("adopted: {:?}", rec.adopted);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn verify(cfg: &Config) -> anyhow::Result<ExitCode> {
    if !store::exists(&cfg.state_dir) {
        println!("{}: no state database yet", cfg.state_dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let s = Store::open(&cfg.state_dir)?;
    let (mut good, mut bad) = (0, 0);
    for r in s.list()? {
        match r {
            Ok(_) => good += 1,
            Err(e) => {
                bad += 1;
                println!("bad: {e}");
            }
        }
    }
    println!("{good} record(s) decode, {bad} do not");
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::FAILURE)
    })
}

/// One line per configured certificate: what the rebuild at start would do with it. Changes
/// nothing (the store is only read, and only if it exists).
pub fn plan_lines(cfg: &Config) -> Result<Vec<String>, StoreError> {
    let records = if store::exists(&cfg.state_dir) {
        Store::open(&cfg.state_dir)?
            .list()?
            .into_iter()
            .flatten()
            .collect()
    } else {
        Vec::new()
    };
    let by_name: std::collections::HashMap<&str, &cas_certd::store::CertRecord> =
        records.iter().map(|r| (r.name.as_str(), r)).collect();
    let plan = rebuild::plan(
        cfg,
        |n| by_name.get(n).map(|r| (*r).clone()),
        chrono::Utc::now(),
    );
    Ok(plan
        .actions
        .iter()
        .map(|(name, a)| match a {
            Action::Keep => format!("{name}: its record is kept"),
            Action::Adopt { record, .. } => format!(
                "{name}: would be adopted as deployed (expires {}, renewal at {}): no order",
                record
                    .deployed
                    .as_ref()
                    .map_or("?".into(), |d| d.info.not_after.to_string()),
                record.next_due
            ),
            Action::Order { refused: None } => {
                format!("{name}: would be ordered (nothing deployed)")
            }
            Action::Order { refused: Some(why) } => {
                format!("{name}: would be ordered (the deployed set is not adopted: {why})")
            }
            Action::Stale => format!(
                "{name}: its record is older than the deployed set; its attempt in flight \
                 goes on (no new order), or the set is refused"
            ),
        })
        .collect())
}
