//! One certificate's step task: the executor over the real ports and the given records (the
//! local store, or the fleet's for an owned certificate), stepped until it waits.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{TaskResult, MAX_STEPS_PER_WAKE};
use crate::config::{Certificate, Config};
use crate::lifecycle::exec::Exec;
use crate::lifecycle::ports::{Proofs, Records};
use crate::lifecycle::quota::QuotaCache;
use crate::lifecycle::real::{LocalKeys, OutputDir, SystemClock};
use crate::lifecycle::StepOutcome;
use crate::metrics::Metrics;
use crate::store::CertRecord;
use cas_api::Client;

/// What a step task needs besides the records.
pub(super) struct Job {
    pub(super) cert: Certificate,
    pub(super) cfg: Arc<Config>,
    pub(super) client: Client,
    pub(super) metrics: Metrics,
    pub(super) quota: Arc<QuotaCache>,
    pub(super) stopping: Arc<AtomicBool>,
}

impl Job {
    /// Steps one certificate until it waits, is dropped, or the daemon stops between steps.
    pub(super) async fn work<R: Records, P: Proofs>(self, records: &R, proofs: &P) -> TaskResult {
        let Job {
            cert,
            cfg,
            client,
            metrics,
            quota,
            stopping,
        } = self;
        let mut deployed = Vec::new();
        let mut error = None;
        let mut dropped = None;
        for _ in 0..MAX_STEPS_PER_WAKE {
            if stopping.load(Ordering::SeqCst) {
                break;
            }
            let rec = match records.get(&cert.name).await {
                Ok(Some(r)) => r,
                Ok(None) => CertRecord::new(&cert.name, cert.domains.clone()),
                Err(e) => {
                    match e.dropped() {
                        Some(why) => dropped = Some(why),
                        None => error = Some(e),
                    }
                    break;
                }
            };
            // Fleet mode: the owner orders the new names of a certificate whose domains
            // changed at its next step (a reload acts on nothing: the host that owns it may
            // not be the one that reloaded first). Only the record's target names are compared:
            // a deployed set keeps the old ones until the new order is deployed.
            // Never while this host's list differs from the fleet's (or was not compared
            // yet since a reload): a typo on one host must not cancel the fleet's order. The
            // step waits (dropped as "not now") and is tried again.
            if cfg.fleet.is_some() && rec.domains != cert.domains {
                let renamed = match records.may_spend(&cert.name) {
                    Ok(()) => super::reload::new_names(&client, records, &cert).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = renamed {
                    match e.dropped() {
                        Some(why) => dropped = Some(why),
                        None => error = Some(e),
                    }
                    break;
                }
                continue;
            }
            let had_cert = rec.deployed.is_some();
            let exec = Exec {
                ca: &client,
                records,
                proofs,
                deployer: &OutputDir {
                    path: &cfg.output_dir,
                },
                keys: &LocalKeys,
                clock: &SystemClock,
                metrics: &metrics,
                quota: &quota,
                quota_warn: cfg.quota_warn,
                poll_min: cfg.poll_min,
                poll_max: cfg.poll_max,
            };
            match exec.step(&cert, rec).await {
                Ok(StepOutcome::Waiting(_)) => break,
                Ok(StepOutcome::Dropped(why)) => {
                    dropped = Some(why);
                    break;
                }
                Ok(StepOutcome::Progressed) => continue,
                Ok(StepOutcome::Deployed) => {
                    deployed.push(had_cert);
                    continue;
                }
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        TaskResult::Step {
            name: cert.name,
            deployed,
            error,
            dropped,
        }
    }
}
