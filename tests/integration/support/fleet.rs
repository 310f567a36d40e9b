//! Fleet hosts on a test etcd cluster (`support::etcd`): a host's settings and connection, its
//! lease, and a claim the test needs to win. Each test file names its own key prefix (its
//! assertions read etcd under it) and lease TTL (how fast a lost lease must be seen).
#![allow(clippy::unwrap_used)]
use std::sync::Arc;
use std::time::Duration;

use cas_certd::config::{FleetKeySource, FleetSettings};
use cas_certd::fleet::{claim, Claim, Fleet, Lease, Ownership};

use super::etcd::Etcd;

/// Where a test file's hosts keep their keys, and how long their leases last.
pub struct TestFleet {
    pub prefix: &'static str,
    pub ttl: Duration,
}

impl TestFleet {
    /// Host `node`'s settings: every member of `etcd`, no TLS, the credential-derived key.
    pub fn settings(&self, etcd: &Etcd, node: &str) -> FleetSettings {
        FleetSettings {
            etcd: etcd.endpoints(),
            prefix: self.prefix.into(),
            node: node.into(),
            key: FleetKeySource::Credential,
            tls: None,
            auth: None,
            lease_ttl: self.ttl,
        }
    }

    /// Host `node`, connected.
    pub async fn connect(&self, etcd: &Etcd, node: &str) -> Fleet {
        Fleet::connect(&self.settings(etcd, node)).await.unwrap()
    }

    /// Host `node`, connected, with a lease granted.
    pub async fn host(&self, etcd: &Etcd, node: &str) -> (Fleet, Arc<Lease>) {
        let f = self.connect(etcd, node).await;
        let lease = Lease::grant(&f, self.ttl).await.unwrap();
        (f, lease)
    }

    /// A new lease on `fleet`, and `cert` claimed with it (the claim must be won).
    pub async fn owner(&self, fleet: &Fleet, cert: &str) -> (Arc<Lease>, Ownership) {
        let lease = Lease::grant(fleet, self.ttl).await.unwrap();
        let o = claim_won(fleet, &lease, cert).await;
        (lease, o)
    }
}

/// `cert` claimed by `fleet` under `lease`; panics, naming the owner, when another host has it.
pub async fn claim_won(fleet: &Fleet, lease: &Arc<Lease>, cert: &str) -> Ownership {
    match claim(fleet, lease, cert).await.unwrap() {
        Claim::Owned(o) => o,
        Claim::Taken { node, token } => panic!("{cert} taken by {node} (token {token})"),
    }
}
