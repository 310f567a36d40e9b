//! `status`: every configured certificate's state, read-only.
//!
//! The running daemon answers over the control socket. Without one, the store is read only
//! when it exists: sled 0.34 has no read-only open, and opening creates the state directory
//! and database, so a store that is not there is not created — every configured certificate is
//! then `new`. An existing store is opened (sled takes its lock and may tidy its own files; it
//! creates none of ours); while a daemon starting or stopping holds the lock, its `status.json`
//! snapshot is read instead.
//!
//! With `[fleet]` (feature `fleet`) the command also reads etcd itself and shows the fleet
//! under this host's rows (`fleet_status`); `--json` is then an object holding both.
use std::process::ExitCode;

use cas_certd::config::Config;
use cas_certd::control::{self, Request, Response};
use cas_certd::store::{self, CertRecord, StatusRow, Store};

use super::daemon::load_config;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// The state shown for a configured certificate the daemon has no record of yet.
pub const NEW: &str = "new";

/// One row per configured certificate, in configuration order: the record's when there is
/// one, else a `new` row (nothing ordered yet; the daemon orders it when it runs).
fn configured_rows(cfg: &Config, mut rows: Vec<StatusRow>) -> Vec<StatusRow> {
    cfg.certificates
        .iter()
        .map(|c| match rows.iter().position(|r| r.name == c.name) {
            Some(i) => rows.swap_remove(i),
            None => {
                let mut r = StatusRow::from_record(&CertRecord::new(&c.name, c.domains.clone()));
                r.state = NEW.into();
                r.next_due = chrono::Utc::now();
                r
            }
        })
        .collect()
}

/// The rows from the running daemon, else from the store (if it exists), else from
/// `status.json` (store locked), and where they came from.
async fn rows(cfg: &Config) -> anyhow::Result<(Vec<StatusRow>, &'static str)> {
    let asked = tokio::time::timeout(
        super::ANSWER_TIMEOUT,
        control::request(cfg, &Request::Status),
    );
    match asked.await {
        // The daemon's own configuration decides what it lists.
        Ok(Ok(Response::Status { certificates })) => return Ok((certificates, "daemon")),
        Ok(Err(e @ control::ControlError::Untrusted { .. })) => eprintln!("cas-certd: {e}"),
        Err(_) => {
            let snap = store::read_snapshot(&cfg.state_dir)?;
            return Ok((snap.certificates, "snapshot (the daemon did not answer)"));
        }
        Ok(_) => {}
    }
    if !store::exists(&cfg.state_dir) {
        return Ok((
            configured_rows(cfg, Vec::new()),
            "configuration: no store yet",
        ));
    }
    match Store::open(&cfg.state_dir) {
        Ok(s) => {
            let rows = s
                .list()?
                .into_iter()
                .flatten()
                .map(|r| StatusRow::from_record(&r))
                .collect();
            Ok((configured_rows(cfg, rows), "store (daemon not running)"))
        }
        Err(store::StoreError::Locked(_)) => {
            let snap = store::read_snapshot(&cfg.state_dir)?;
            Ok((configured_rows(cfg, snap.certificates), "snapshot"))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn status(cli: &super::Cli, a: &StatusArgs) -> anyhow::Result<ExitCode> {
    let cfg = match load_config(cli) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let (rows, from) = rows(&cfg).await?;
    if let Some(note) = cas_certd::rebuild::note(&cfg.state_dir) {
        eprintln!("store recovered {}", note.trim_end());
    }
    // With `[fleet]`, etcd's view too; etcd away is shown, and changes no exit code.
    #[cfg(feature = "fleet")]
    let fleet = match &cfg.fleet {
        Some(s) => Some(super::fleet_status::gather(&cfg, s).await),
        None => None,
    };
    if a.json {
        #[cfg(feature = "fleet")]
        if let Some(f) = &fleet {
            let both = serde_json::json!({ "certificates": rows, "fleet": f });
            println!("{}", serde_json::to_string_pretty(&both)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table(&rows));
        #[cfg(feature = "fleet")]
        if let Some(f) = &fleet {
            print!("\n{}", super::fleet_status::table(f));
        }
        eprintln!("(from the {from})");
    }
    Ok(ExitCode::SUCCESS)
}

/// The status table: name, state, domains, order, expiry, next action, proof self-check, last
/// error.
pub fn table(rows: &[StatusRow]) -> String {
    let mut lines = vec![[
        "NAME".to_string(),
        "STATE".into(),
        "DOMAINS".into(),
        "ORDER".into(),
        "EXPIRES".into(),
        "NEXT".into(),
        "PROOF".into(),
        "LAST ERROR".into(),
    ]];
    for r in rows {
        lines.push([
            r.name.clone(),
            r.state.clone(),
            r.domains.join(","),
            r.order_id.map(|o| o.to_string()).unwrap_or("-".into()),
            r.not_after
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or("-".into()),
            // No date for what waits on something else (the CAS pass, another fleet host).
            if r.next_due == chrono::DateTime::<chrono::Utc>::MAX_UTC {
                r.next_action.clone()
            } else {
                format!(
                    "{} at {}",
                    r.next_action,
                    r.next_due.format("%Y-%m-%d %H:%M:%S")
                )
            },
            r.proof.clone().unwrap_or("-".into()),
            r.last_error.clone().unwrap_or("-".into()),
        ]);
    }
    columns(&lines)
}

/// `lines` laid out in left-aligned columns two spaces apart, one line each.
pub fn columns<const N: usize>(lines: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for l in lines {
        for (w, c) in widths.iter_mut().zip(l) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for l in lines {
        let cells: Vec<String> = l
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_header_and_one_line_per_certificate() {
        let row = StatusRow {
            name: "www".into(),
            state: "deployed".into(),
            domains: vec!["a.test".into(), "b.test".into()],
            order_id: Some(cas_api::model::OrderId(42)),
            not_after: None,
            next_due: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            next_action: "renew".into(),
            last_error: None,
            last_success: None,
            instructions: None,
            proof: Some("HTTP 403 from 127.0.0.1:8080".into()),
        };
        let t = table(&[row]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("NAME"));
        assert!(lines[1].contains("a.test,b.test") && lines[1].contains("42"));
        assert!(lines[0].contains("PROOF") && lines[1].contains("HTTP 403 from 127.0.0.1:8080"));
    }
}
