//! Fan-out (issue 12 items 4 and 5): what the owner of a certificate publishes in etcd for
//! every host, and the watchers that make each host follow it.
//! - `proofs`: FILE proofs. The owner publishes `<prefix>/proofs/<cert>` (fenced); every host
//!   writes it into its own webroot, acknowledges under `<prefix>/proof_acks/<cert>/<node>`,
//!   and removes the file when the key goes.
//! - `sets`: issued sets. The owner publishes `<prefix>/sets/<cert>` (fenced, key sealed);
//!   every host checks and deploys it in its own `output_dir`, runs its own reload hook and
//!   reports `<prefix>/live/<cert>/<node>`.
//! - `follow`: the read-everything-then-watch loop both watchers run.
//!
mod follow;
mod proofs;
mod sets;

pub use proofs::{
    proof_status, publish_proof, withdraw_proof, Proof, ProofHost, ProofStatus, ProofTarget,
};
pub use sets::{
    fleet_view, publish_set, published_order, FleetView, IssuedSet, SetHost, SetTarget,
};

use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use super::{owner_of, Fleet, FleetError, Ownership};

/// Runs `ops` as `owner` of its certificate: one transaction, applied only while the owner
/// key still has `owner`'s token (the same fence as the records'), and, when `at` names a key
/// and its etcd version, only while that key is still at that version. Refused with
/// [`FleetError::Fenced`] (event `fleet.fenced`) when the fence fails, and with
/// [`FleetError::Conflict`] when only the version moved.
pub(crate) async fn fenced(
    fleet: &Fleet,
    owner: &Ownership,
    at: Option<(&str, i64)>,
    ops: Vec<TxnOp>,
) -> Result<(), FleetError> {
    let mut when = vec![Compare::create_revision(
        fleet.owner_key(owner.cert()),
        CompareOp::Equal,
        owner.token(),
    )];
    if let Some((key, version)) = at {
        when.push(Compare::version(key, CompareOp::Equal, version));
    }
    let txn = Txn::new().when(when).and_then(ops);
    // Never repeated after an unanswered try: the caller reads again and decides.
    let resp = fleet
        .call(|mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await?;
    if resp.succeeded() {
        return Ok(());
    }
    let now = owner_of(fleet, owner.cert()).await?;
    match now {
        Some((_, token)) if token == owner.token() => match at {
            Some((key, expected)) => Err(FleetError::Conflict {
                cert: owner.cert().to_string(),
                expected,
                found: read_one(fleet, key).await?.map_or(0, |(_, v)| v),
            }),
            None => Err(FleetError::Unexpected {
                cert: owner.cert().to_string(),
                what: "a fenced write refused with the fence holding".into(),
            }),
        },
        other => {
            let now = match other {
                Some((node, token)) => format!("{node} holds it with token {token}"),
                None => "nobody holds it".to_string(),
            };
            tracing::error!(
                event = "fleet.fenced",
                cert = %owner.cert(),
                token = owner.token(),
                now = %now,
                "a write by this host was refused: it no longer owns the certificate"
            );
            Err(FleetError::Fenced {
                cert: owner.cert().to_string(),
                token: owner.token(),
                now,
            })
        }
    }
}

/// The value and etcd version of `key`, if it exists.
pub(crate) async fn read_one(
    fleet: &Fleet,
    key: &str,
) -> Result<Option<(Vec<u8>, i64)>, FleetError> {
    let r = fleet
        .call_idempotent(|mut c| {
            let key = key.to_string();
            async move { c.get(key, None).await }
        })
        .await?;
    Ok(r.kvs()
        .first()
        .map(|kv| (kv.value().to_vec(), kv.version())))
}

/// Keys per page of [`read_dir`]: at most about 2 MiB of sets of up to 16 KB each, well
/// under etcd-client's 4 MiB decode limit (a real RSA chain makes a set of about 6 KB).
const PAGE: i64 = 128;

/// The values under `dir` (keys with `dir` stripped) at one revision, read in pages (a
/// directory of any size: `sets/` of 10 000 certificates is about 62 MB).
pub(crate) async fn read_dir(
    fleet: &Fleet,
    dir: &str,
) -> Result<(i64, Vec<(String, Vec<u8>, i64)>), FleetError> {
    let (rev, kvs) = super::cluster::read_range(fleet, dir, PAGE, None).await?;
    let kvs = kvs
        .iter()
        .filter_map(|kv| {
            let key = std::str::from_utf8(kv.key()).ok()?;
            Some((
                key.strip_prefix(dir)?.to_string(),
                kv.value().to_vec(),
                kv.version(),
            ))
        })
        .collect();
    Ok((rev, kvs))
}
