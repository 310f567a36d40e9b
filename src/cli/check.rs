//! `check`: everything the daemon needs, tested before it is needed — the file, ownership of
//! the deployed files, what publishing each proof needs, the credentials, the quota. Each
//! check prints one line; a failing one prints its failure the way every command does
//! ([`super::report`]), and the command exits with the first failure's code. `OK` is printed
//! only when all passed.
use std::collections::BTreeMap;
use std::process::ExitCode;

use cas_api::Client;
use cas_certd::config::{Config, FileOwnership};
use cas_certd::metrics::Metrics;

use super::daemon::{load_config, make_client};
use super::exit;
use super::report::{self, Failure};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Only the local checks (file, ownership, webroots and commands): no credentials, no
    /// network.
    #[arg(long)]
    pub offline: bool,
}

pub async fn check(cli: &super::Cli, a: &CheckArgs) -> anyhow::Result<ExitCode> {
    let cfg = match load_config(cli) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    println!(
        "{}: valid, {} certificate(s)",
        cli.config.display(),
        cfg.certificates.len()
    );
    // What the configuration tidied or allows but worth knowing (lowered names, ECDSA + RSA).
    for note in &cfg.notes {
        println!("{note}");
    }
    let mut failures = ownership(&cfg);
    let client = match a.offline {
        true => None,
        false => match make_client(&cfg, &Metrics::new()) {
            Ok(c) => Some(c),
            Err(f) => {
                f.print();
                failures.push(f);
                None
            }
        },
    };
    failures.extend(publishing(cli, &cfg, client.as_ref()).await);
    failures.extend(notifications(cli, &cfg));
    // Which certificates the daemon would adopt from their deployed sets, which it would order.
    match super::store::plan_lines(&cfg) {
        Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
        Err(cas_certd::store::StoreError::Locked(_)) => {
            println!("records: the daemon is running; its records stand")
        }
        Err(e) => println!(
            "records: cannot read the state database ({e}); the daemon would move it aside"
        ),
    }
    // What the start-up's look at CAS would find for the certificates without a record.
    let asked = match (&client, a.offline) {
        (Some(c), _) => Ok(c),
        (None, true) => Err("offline".to_string()),
        (None, false) => Err("no usable credentials".to_string()),
    };
    match super::store::cas_lines(&cfg, asked).await {
        Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
        Err(e) => println!("CAS: cannot read the state database ({e})"),
    }
    if let Some(client) = &client {
        failures.extend(quota(&cfg, client).await);
    }
    match failures.first() {
        Some(f) => Ok(ExitCode::from(f.code)),
        None if a.offline => {
            println!("OK (offline: credentials and quota not checked)");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            println!("OK");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `[notify]`: the command can run, each webhook credentials file can be used.
fn notifications(cli: &super::Cli, cfg: &Config) -> Vec<Failure> {
    let Some(n) = &cfg.notify else {
        return Vec::new();
    };
    cas_certd::alert::problems(n)
        .into_iter()
        .map(|p| {
            let f = Failure::new(exit::CONFIG, format!("{}: {p}", cli.config.display()));
            f.print();
            f
        })
        .collect()
}

/// What the daemon checks before paying for an order: everything needed to publish each
/// certificate's proof (the Alidns zones only with a client, i.e. not `--offline`).
async fn publishing(cli: &super::Cli, cfg: &Config, client: Option<&Client>) -> Vec<Failure> {
    let mut failures = Vec::new();
    for c in &cfg.certificates {
        for p in cas_certd::validation::preflight(&c.validation, &c.domains, client).await {
            let f = Failure::new(
                exit::CONFIG,
                format!("{}: certificate {}: {p}", cli.config.display(), c.name),
            );
            f.print();
            failures.push(f);
        }
    }
    failures
}

/// The credentials work and every product has certificates left. Stops at the first
/// credentials failure: every product would give the same answer.
async fn quota(cfg: &Config, client: &Client) -> Vec<Failure> {
    let mut products: Vec<&str> = cfg
        .certificates
        .iter()
        .map(|c| c.product_code.as_str())
        .collect();
    products.sort();
    products.dedup();
    let mut failures = Vec::new();
    for p in products {
        match client.describe_package_state(p).await {
            Ok(s) => {
                println!(
                    "{p}: {} of {} left ({} issued)",
                    s.left(),
                    s.total_count,
                    s.issued_count
                );
                failures.extend(report::exhausted(&s));
            }
            Err(e) => {
                let f = report::api(&e, Some(p));
                let stop = matches!(f.code, exit::AUTH | exit::CONFIG);
                failures.push(f);
                if stop {
                    break;
                }
            }
        }
    }
    for f in &failures {
        f.print();
    }
    failures
}

/// What this process may do with the ownership of the files it creates.
struct Powers {
    euid: u32,
    egid: u32,
    groups: Vec<u32>,
    /// CAP_CHOWN in the effective set (root has it unless a unit took it away).
    cap_chown: bool,
}

impl Powers {
    fn of_this_process() -> Powers {
        use rustix::process::{getegid, geteuid, getgroups};
        use rustix::thread::{capabilities, CapabilitySet};
        Powers {
            euid: geteuid().as_raw(),
            egid: getegid().as_raw(),
            groups: getgroups()
                .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
                .unwrap_or_default(),
            cap_chown: capabilities(None).is_ok_and(|c| c.effective.contains(CapabilitySet::CHOWN)),
        }
    }

    /// Why files can be given to `gid`, or `None` when they cannot.
    fn group_reason(&self, gid: u32) -> Option<&'static str> {
        if self.egid == gid || self.groups.contains(&gid) {
            Some("a member")
        } else if self.cap_chown {
            Some("CAP_CHOWN")
        } else {
            None
        }
    }
}

/// The deployed files can be given to the configured owner and group: deploys `chown` every
/// file, which needs membership of the group (or CAP_CHOWN), and CAP_CHOWN for another owner.
/// This checks the process running `check`: run it as the daemon's user to check the daemon.
fn ownership(cfg: &Config) -> Vec<Failure> {
    // Certificates by (owner, group), so each distinct setting is checked once.
    let mut settings: BTreeMap<(Option<String>, Option<String>), Vec<&str>> = BTreeMap::new();
    for c in &cfg.certificates {
        let FileOwnership { owner, group, .. } = &c.files;
        if owner.is_some() || group.is_some() {
            settings
                .entry((owner.clone(), group.clone()))
                .or_default()
                .push(&c.name);
        }
    }
    if settings.is_empty() {
        return Vec::new();
    }
    let me = Powers::of_this_process();
    let mut failures = Vec::new();
    for ((owner, group), names) in &settings {
        let files = FileOwnership {
            owner: owner.clone(),
            group: group.clone(),
            cert_mode: 0,
            key_mode: 0,
        };
        let of = format!("the files of {}", names.join(", "));
        let (uid, gid) = match cas_certd::deploy::ownership_ids(&files) {
            Ok(ids) => ids,
            Err(e) => {
                failures.push(Failure::new(
                    exit::CONFIG,
                    format!("owner/group of {of}: {e}"),
                ));
                continue;
            }
        };
        if let (Some(spec), Some(uid)) = (owner, uid) {
            if uid != me.euid && !me.cap_chown {
                failures.push(Failure::new(
                    exit::CONFIG,
                    format!(
                        "owner {spec:?} (uid {uid}) for {of}: this process (uid {}) cannot give \
                         files to another user without CAP_CHOWN; leave `owner` unset (the \
                         files then belong to the daemon's user)",
                        me.euid
                    ),
                ));
            }
        }
        if let (Some(spec), Some(gid)) = (group, gid) {
            match me.group_reason(gid) {
                Some(why) => println!(
                    "group {spec:?} (gid {gid}) for {of}: can be given ({why}, uid {})",
                    me.euid
                ),
                None => failures.push(Failure::new(
                    exit::CONFIG,
                    format!(
                        "group {spec:?} (gid {gid}) for {of}: this process (uid {}) is not in \
                         that group and has no CAP_CHOWN, so every deploy would fail at chown; \
                         add the daemon's user to the group (`usermod -aG {spec} cas-certd`, \
                         then restart it) or give the unit `SupplementaryGroups={spec}`",
                        me.euid
                    ),
                )),
            }
        }
    }
    if me.cap_chown && me.euid == 0 {
        println!(
            "note: checked as root, which may change any ownership; to check as the daemon's \
             user: runuser -u cas-certd -- cas-certd check --offline"
        );
    }
    for f in &failures {
        f.print();
    }
    failures
}
