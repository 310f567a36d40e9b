//! Requests on the control socket: status, and `renew NAME` with its confirmation.
use chrono::{DateTime, Utc};
use tracing::info;

use super::State;
use crate::config::Certificate;
use crate::control::{Request, Response};
use crate::lifecycle;
use crate::store::{CertRecord, StoreError};

/// What the loop answers a control request with.
pub(super) enum Answer {
    Now(Response),
    /// A renewal that is not due: the answer says what it costs (the remaining count is
    /// fetched first).
    Confirm {
        name: String,
        product: String,
        due_at: DateTime<Utc>,
    },
}

impl State {
    pub(super) async fn control(&mut self, req: Request) -> Answer {
        match req {
            Request::Status => Answer::Now(Response::Status {
                certificates: self.rows(),
            }),
            Request::Renew { name, force } => self.renew(name, force).await,
        }
    }

    /// `renew NAME`: a due certificate (or a confirmed one) is due now; one that is not due
    /// needs confirming, and nothing is spent (see [`lifecycle::manual`]).
    pub(super) async fn renew(&mut self, name: String, confirmed: bool) -> Answer {
        use lifecycle::manual::{self, Decision};
        let now_msg = |message: String| Answer::Now(Response::Ok { message });
        let Some(c) = self.cert(&name).cloned() else {
            return Answer::Now(Response::Error {
                message: format!("no certificate named {name:?} in the configuration"),
            });
        };
        let mut r = match self.renew_record(&c).await {
            Ok(r) => r,
            Err(message) => return Answer::Now(Response::Error { message }),
        };
        let why = match manual::decide(&r, c.renew_before, Utc::now()) {
            Decision::InFlight(phase) => {
                return now_msg(format!(
                    "{name} already has an order in flight ({phase}): its certificate is on \
                     the way; nothing more ordered"
                ))
            }
            Decision::NotDue { due_at } if !confirmed => {
                return Answer::Confirm {
                    name,
                    product: c.product_code.clone(),
                    due_at,
                }
            }
            Decision::NotDue { .. } => "confirmed with --yes".to_string(),
            Decision::Due(because) => because.to_string(),
        };
        r.next_due = Utc::now();
        if let Err(e) = self.renew_write(&r).await {
            return Answer::Now(Response::Error {
                message: e.to_string(),
            });
        }
        info!(event = "cert.renew_requested", cert = %name, reason = %why,
            "renewal requested on the control socket");
        self.refresh(&name);
        self.snapshot_dirty = true;
        now_msg(format!(
            "renewal of {name} scheduled now ({why}); it uses one unit of {}",
            c.product_code
        ))
    }

    /// The record `renew` decides on. In fleet mode the fleet's, from etcd: the steps read
    /// that one, the local copy is a mirror; only the owner may read and write it.
    async fn renew_record(&self, c: &Certificate) -> Result<CertRecord, String> {
        #[cfg(feature = "fleet")]
        if let Some(f) = &self.fleet {
            use crate::lifecycle::ports::Records as _;
            return match f.records.get(&c.name).await {
                Ok(Some(r)) => Ok(r),
                Ok(None) => Err(format!("{}: the fleet has no record of it yet", c.name)),
                Err(StoreError::NotOurs { name, why }) => Err(format!(
                    "{name} is not this host's to renew ({why}): run `renew` on its owner \
                     (`cas-certd status` names it)"
                )),
                Err(e) => Err(e.to_string()),
            };
        }
        Ok(self.record(c))
    }

    /// Writes the record `renew` scheduled: in fleet mode to etcd, under this host's fence.
    async fn renew_write(&self, r: &CertRecord) -> Result<(), StoreError> {
        #[cfg(feature = "fleet")]
        if let Some(f) = &self.fleet {
            use crate::lifecycle::ports::Records as _;
            return f.records.put_durable(r).await;
        }
        self.store.put_durable(r).await
    }

    /// Sends a control answer. One that needs confirming first learns how many units of the
    /// product are left (DescribePackageState) in a task of its own: the loop does not wait
    /// on the API.
    pub(super) fn answer(&self, answer: Answer, reply: tokio::sync::oneshot::Sender<Response>) {
        match answer {
            Answer::Now(resp) => {
                let _ = reply.send(resp);
            }
            Answer::Confirm {
                name,
                product,
                due_at,
            } => {
                let client = self.services.client.clone();
                tokio::spawn(async move {
                    let left = client
                        .describe_package_state(&product)
                        .await
                        .map(|s| s.left())
                        .map_err(|e| e.to_string());
                    let message = lifecycle::manual::cost_message(&name, &product, due_at, left);
                    let _ = reply.send(Response::Confirm { message });
                });
            }
        }
    }
}
