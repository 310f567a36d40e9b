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
            let client = super::daemon::make_client(&cfg, &cas_certd::metrics::Metrics::new());
            for line in cas_lines(&cfg, client.as_ref().map_err(|f| f.line.clone())).await? {
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
    Ok(plan_of(cfg)?
        .actions
        .iter()
        .map(|(name, a)| line(name, a))
        .collect())
}

/// What the rebuild at start would do (changes nothing).
fn plan_of(cfg: &Config) -> Result<rebuild::Plan, StoreError> {
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
    Ok(rebuild::plan(
        cfg,
        |n| by_name.get(n).map(|r| (*r).clone()),
        chrono::Utc::now(),
    ))
}

fn line(name: &str, a: &Action) -> String {
    match a {
        Action::Keep => format!("{name}: its record is kept"),
        Action::Adopt {
            record, version, ..
        } => format!(
            "{name}: would be adopted as deployed{} (expires {}, renewal at {}): no order",
            version.as_ref().map_or(String::new(), |v| format!(
                " from versions/{v}, which was never made live (a swap cut short; the daemon \
                 makes it live and runs the reload hook)"
            )),
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
    }
}

/// The order and notAfter of a set adopted from the files.
type Deployed = (cas_api::model::OrderId, chrono::DateTime<chrono::Utc>);

/// One line per order the start-up's CAS pass would adopt, clean or refuse, for the
/// certificates without a usable record; or why CAS could not be asked.
pub async fn cas_lines(
    cfg: &Config,
    client: Result<&cas_api::Client, String>,
) -> Result<Vec<String>, StoreError> {
    let plan = match plan_of(cfg) {
        Ok(p) => p,
        Err(StoreError::Locked(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let waiting: Vec<(&str, Option<Deployed>)> = plan
        .actions
        .iter()
        .filter_map(|(n, a)| match a {
            Action::Adopt { record, .. } => Some((
                n.as_str(),
                record
                    .deployed
                    .as_ref()
                    .map(|d| (d.order_id, d.info.not_after)),
            )),
            Action::Order { .. } => Some((n.as_str(), None)),
            _ => None,
        })
        .collect();
    if waiting.is_empty() {
        return Ok(Vec::new());
    }
    let listed = match client {
        Err(e) => Err(e),
        Ok(c) => rebuild::cas::list_all(c, &mut 0)
            .await
            .map_err(|e| e.to_string()),
    };
    let listed = match listed {
        Ok(l) => rebuild::cas::Listed::new(l),
        Err(e) => {
            return Ok(vec![format!(
                "CAS: could not ask CAS for the account's orders ({e}); the daemon asks before \
                 ordering for the {} certificate(s) without a record, and they wait until it can",
                waiting.len()
            )])
        }
    };
    let now = chrono::Utc::now();
    let mut out = Vec::new();
    for (name, deployed) in waiting {
        let Some(cert) = cfg.certificates.iter().find(|c| c.name == name) else {
            continue;
        };
        let f = rebuild::cas::judge(cert, deployed, &listed.for_cert(cert), now);
        if let Some(a) = f.adopt {
            out.push(format!(
                "{name}: CAS: would adopt order {} ({}; CAS made its key): no new order",
                a.order_id,
                if a.issued { "issued" } else { "under review" }
            ));
        }
        for (id, why) in &f.clean {
            out.push(format!("{name}: CAS: order {id} would be {why}"));
        }
        for (id, why) in &f.refused {
            out.push(format!("{name}: CAS: order {id} is not adopted: {why}"));
        }
        if f.adopt.is_none() && f.clean.is_empty() && f.refused.is_empty() && deployed.is_none() {
            out.push(format!(
                "{name}: CAS: no order for these names; it would be ordered"
            ));
        }
    }
    Ok(out)
}
