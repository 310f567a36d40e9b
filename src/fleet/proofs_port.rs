//! The lifecycle's `Proofs` port on a fleet host. A FILE proof is not written by the owner's
//! lifecycle: it is published in etcd (`fanout::publish_proof`, fenced) and every host's
//! proof watcher writes it into its own webroot, this host's included, so each webroot has
//! one writer. Publishing waits (at most [`ACK_WAIT`]) until the live nodes acknowledged the
//! order, so CAS's fetch through a load balancer finds the file on every host; who has not
//! is logged and shown by `status`. Clean-up withdraws it everywhere. DNS, command and manual
//! proofs are published as on one host.
use std::time::Duration;

use tokio::time::Instant;

use super::fanout::{self, Proof};
use super::store::FleetRecords;
use crate::config::{Certificate, Validation};
use crate::lifecycle::ports::Proofs;
use crate::lifecycle::real::Validators;
use crate::validation::selfcheck::ProofCheck;
use crate::validation::{file, Presented, ValidationError};
use cas_api::model::{Challenge, OrderId};

/// How long publishing a FILE proof waits for every live node's acknowledgement.
pub const ACK_WAIT: Duration = Duration::from_secs(10);
/// How often the acknowledgements are read meanwhile.
const ACK_POLL: Duration = Duration::from_millis(100);

/// Proofs through the fleet (see the module doc).
pub struct FleetProofs<'a> {
    pub local: Validators<'a>,
    pub records: &'a FleetRecords,
}

impl FleetProofs<'_> {
    /// Waits until every live node acknowledged `order`'s proof of `cert`, or [`ACK_WAIT`].
    async fn await_acks(&self, cert: &str, order: OrderId) {
        let fleet = self.records.fleet();
        let until = Instant::now() + ACK_WAIT;
        let mut missing = Vec::new();
        loop {
            let nodes = self.records.nodes();
            match fanout::proof_status(fleet, cert, &nodes).await {
                Ok(Some(s)) if s.order_id == order.0 && s.missing.is_empty() => return,
                Ok(Some(s)) => missing = s.missing,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(cert = %cert, error = %e,
                        "cannot read the proof's acknowledgements; not waiting for them");
                    return;
                }
            }
            if Instant::now() >= until {
                tracing::warn!(cert = %cert, order_id = order.0, missing = ?missing,
                    wait_secs = ACK_WAIT.as_secs(),
                    "not every host wrote the proof yet; CAS may fetch it from one that has not");
                return;
            }
            tokio::time::sleep(ACK_POLL).await;
        }
    }
}

impl Proofs for FleetProofs<'_> {
    async fn preflight(&self, cert: &Certificate) -> Vec<String> {
        self.local.preflight(cert).await
    }

    async fn present(
        &self,
        cert: &Certificate,
        order: OrderId,
        challenge: &Challenge,
    ) -> Result<Presented, ValidationError> {
        let (
            Validation::File { webroot },
            Challenge::File {
                domain,
                uri,
                content,
            },
        ) = (&cert.validation, challenge)
        else {
            return self.local.present(cert, order, challenge).await;
        };
        // The same checks as on one host before anything is published: every watcher checks
        // again against its own configuration.
        let path = file::target(webroot, uri)?;
        if !cert.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
            return Err(ValidationError::Unsafe(format!(
                "a proof for {domain:?}, which certificate {:?} does not name",
                cert.name
            )));
        }
        let Some(owner) = self.records.owned(&cert.name) else {
            return Err(ValidationError::Fleet(format!(
                "{}: this host no longer owns it",
                cert.name
            )));
        };
        let proof = Proof {
            order_id: order.0,
            domains: cert.domains.clone(),
            domain: domain.clone(),
            uri: uri.clone(),
            content: content.clone(),
        };
        fanout::publish_proof(self.records.fleet(), &owner, &proof)
            .await
            .map_err(|e| ValidationError::Fleet(e.to_string()))?;
        self.await_acks(&cert.name, order).await;
        Ok(Presented::File { path })
    }

    async fn self_check(
        &self,
        cert: &Certificate,
        challenge: &Challenge,
        presented: Option<&Presented>,
    ) -> ProofCheck {
        self.local.self_check(cert, challenge, presented).await
    }

    async fn cleanup(
        &self,
        name: &str,
        domains: &[String],
        presented: &Presented,
    ) -> Result<(), ValidationError> {
        let Presented::File { .. } = presented else {
            return self.local.cleanup(name, domains, presented).await;
        };
        // Not ours any more: the new owner withdraws it when its order is done with it.
        let Some(owner) = self.records.owned(name) else {
            return Ok(());
        };
        fanout::withdraw_proof(self.records.fleet(), &owner)
            .await
            .map_err(|e| ValidationError::Fleet(e.to_string()))
    }
}
