//! `renew NAME`: renew one certificate now, saying what it costs.
//!
//! A due certificate (never issued, inside its renewal window, or a failed renewal the daemon
//! retries anyway) renews without asking: the unit it spends would be spent anyway. One that is not due needs `--yes`; without it the
//! command prints what it would cost — "this will use one unit of PRODUCT (N left)" — and
//! orders nothing (exit 2, like `order revoke` without `--yes`). The running daemon decides
//! (and asks CAS for N); without one, the command decides the same way from the store
//! ([`cas_certd::lifecycle::manual`]), asks CAS itself, and marks the record for the next start.
use std::process::ExitCode;

use cas_certd::config::Config;
use cas_certd::control::{self, Request, Response};
use cas_certd::lifecycle::manual::{self, Decision};
use cas_certd::metrics::Metrics;
use cas_certd::store::{self, CertRecord, Store};

use super::daemon::{load_config, make_client};
use super::report::Failure;
use super::{exit, ANSWER_TIMEOUT};

#[derive(Debug, clap::Args)]
pub struct RenewArgs {
    /// The certificate's name in the configuration.
    pub name: String,
    /// Renew even though the certificate is not due yet: this orders a new certificate now
    /// and uses one unit of its product (quota). Without it, a certificate that is not due is
    /// left alone and the command says what renewing would cost. A due certificate (never
    /// issued, inside its renewal window, or a failed renewal being retried) renews without it.
    #[arg(long, short = 'y', visible_alias = "force")]
    pub yes: bool,
}

pub async fn renew(cli: &super::Cli, a: &RenewArgs) -> anyhow::Result<ExitCode> {
    let cfg = match load_config(cli) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if !cfg.certificates.iter().any(|c| c.name == a.name) {
        return Ok(Failure::new(
            exit::REFUSED,
            format!(
                "no certificate named {:?} in {}",
                a.name,
                cli.config.display()
            ),
        )
        .exit());
    }
    let req = Request::Renew {
        name: a.name.clone(),
        force: a.yes,
    };
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, control::request(&cfg, &req));
    match answer.await {
        Err(_) => Ok(Failure::new(
            exit::TRANSIENT,
            format!(
                "the daemon did not answer on {} within {} s; gave up (a request it had not \
                 acted on yet is dropped, not run later)",
                cfg.control_socket.display(),
                ANSWER_TIMEOUT.as_secs()
            ),
        )
        .exit()),
        Ok(Ok(Response::Ok { message })) => {
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Ok(Response::Confirm { message })) => Ok(Failure::new(exit::USAGE, message).exit()),
        Ok(Ok(Response::Error { message })) => Ok(Failure::new(exit::REFUSED, message).exit()),
        Ok(Ok(other)) => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
        Ok(Err(_)) => without_daemon(&cfg, a).await,
    }
}

/// No daemon answers: decide from the store and mark the record; the next start renews it.
async fn without_daemon(cfg: &Config, a: &RenewArgs) -> anyhow::Result<ExitCode> {
    let Some(cert) = cfg.certificates.iter().find(|c| c.name == a.name) else {
        anyhow::bail!("no certificate named {:?}", a.name);
    };
    let s = match Store::open(&cfg.state_dir) {
        Ok(s) => s,
        Err(e @ store::StoreError::Locked(_)) => {
            return Ok(Failure::new(
                exit::FAILURE,
                format!(
                    "no daemon answers on {}, yet {e}",
                    cfg.control_socket.display()
                ),
            )
            .exit())
        }
        Err(e) => return Err(e.into()),
    };
    let mut r = s
        .get(&a.name)?
        .unwrap_or_else(|| CertRecord::new(&a.name, cert.domains.clone()));
    let why = match manual::decide(&r, cert.renew_before, chrono::Utc::now()) {
        Decision::InFlight(phase) => {
            println!(
                "{} already has an order in flight ({phase}): no daemon running; it carries on \
                 when the daemon starts, nothing more ordered",
                a.name
            );
            return Ok(ExitCode::SUCCESS);
        }
        Decision::NotDue { due_at } if !a.yes => {
            let left = match make_client(cfg, &Metrics::new()) {
                Err(f) => Err(f.line),
                Ok(client) => client
                    .describe_package_state(&cert.product_code)
                    .await
                    .map(|p| p.left())
                    .map_err(|e| super::report::api(&e, Some(&cert.product_code)).line),
            };
            let message = manual::cost_message(&a.name, &cert.product_code, due_at, left);
            return Ok(Failure::new(exit::USAGE, message).exit());
        }
        Decision::NotDue { .. } => "confirmed with --yes".to_string(),
        Decision::Due(because) => because.to_string(),
    };
    r.next_due = chrono::Utc::now();
    s.put_durable(&r).await?;
    println!(
        "no daemon running: {} will be renewed when it starts ({why}); it uses one unit of {}",
        a.name, cert.product_code
    );
    Ok(ExitCode::SUCCESS)
}
