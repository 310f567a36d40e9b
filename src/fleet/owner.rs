//! Per-certificate ownership. The owner of a certificate holds `<prefix>/owner/<cert>`, bound
//! to its lease and created in a transaction only if absent; the key's create revision is the
//! fencing token. etcd's revisions only grow, so a successor's token is always larger, and a
//! write fenced on the old token (see `records`) fails once the old key is gone. Ownership
//! ends when the lease does: it is observed through [`Ownership::lost`].
use std::sync::Arc;

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};

use super::{Fleet, FleetError, Lease};

/// This host owns a certificate, as long as its lease lives.
#[derive(Debug, Clone)]
pub struct Ownership {
    cert: String,
    token: i64,
    lease: Arc<Lease>,
}

impl Ownership {
    pub fn cert(&self) -> &str {
        &self.cert
    }

    /// The fencing token: the owner key's create revision.
    pub fn token(&self) -> i64 {
        self.token
    }

    pub fn lease(&self) -> &Arc<Lease> {
        &self.lease
    }

    /// Returns once the ownership is over (the lease is lost).
    pub async fn lost(&self) {
        self.lease.lost().await
    }
}

/// The outcome of a claim.
#[derive(Debug)]
pub enum Claim {
    Owned(Ownership),
    /// Another holder has it: its node name and token.
    Taken {
        node: String,
        token: i64,
    },
}

/// Claims `cert` for this host through `lease`: creates the owner key if nobody holds it. A
/// key this lease already holds is this host's (a repeated claim is not an error).
pub async fn claim(fleet: &Fleet, lease: &Arc<Lease>, cert: &str) -> Result<Claim, FleetError> {
    let key = fleet.owner_key(cert);
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.clone(),
            fleet.node(),
            Some(etcd_client::PutOptions::new().with_lease(lease.id())),
        )])
        .or_else([TxnOp::get(key.clone(), None)]);
    // Safe to repeat: a repeat after an unanswered success finds the key bound to this lease.
    let resp = fleet
        .call_idempotent(|mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await?;
    let owned = |token| {
        Claim::Owned(Ownership {
            cert: cert.to_string(),
            token,
            lease: Arc::clone(lease),
        })
    };
    if resp.succeeded() {
        // The put is the transaction's only write: its revision is the key's create revision.
        // Never a token of 0: a fence on 0 would pass wherever nobody owns the certificate.
        return match resp.header().map(|h| h.revision()) {
            Some(token) if token > 0 => Ok(owned(token)),
            _ => Err(FleetError::Unexpected {
                cert: cert.to_string(),
                what: "a claim answered without a revision".into(),
            }),
        };
    }
    let holder = resp.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => g.kvs().first().cloned(),
        _ => None,
    });
    match holder {
        Some(kv) if kv.lease() == lease.id() => Ok(owned(kv.create_revision())),
        Some(kv) => Ok(Claim::Taken {
            node: String::from_utf8_lossy(kv.value()).into_owned(),
            token: kv.create_revision(),
        }),
        // Cannot happen inside one transaction (the compare saw the key); say so rather
        // than claim anything.
        None => Err(FleetError::Unexpected {
            cert: cert.to_string(),
            what: "an owner key that vanished inside a transaction".into(),
        }),
    }
}

/// Who owns `cert` now (node name and token), if anyone.
pub async fn owner_of(fleet: &Fleet, cert: &str) -> Result<Option<(String, i64)>, FleetError> {
    let key = fleet.owner_key(cert);
    let r = fleet
        .call_idempotent(|mut c| {
            let key = key.clone();
            async move { c.get(key, None).await }
        })
        .await?;
    Ok(r.kvs().first().map(|kv| {
        (
            String::from_utf8_lossy(kv.value()).into_owned(),
            kv.create_revision(),
        )
    }))
}

/// Gives `owner`'s certificate up: deletes the owner key if it is still this ownership's (a
/// transaction on the token; a key another host holds now is left alone). Another host may
/// claim the certificate at its next round.
pub async fn release(fleet: &Fleet, owner: &Ownership) -> Result<(), FleetError> {
    let key = fleet.owner_key(owner.cert());
    let txn = Txn::new()
        .when([Compare::create_revision(
            key.clone(),
            CompareOp::Equal,
            owner.token(),
        )])
        .and_then([TxnOp::delete(key, None)]);
    fleet
        .call_idempotent(|mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await?;
    Ok(())
}
