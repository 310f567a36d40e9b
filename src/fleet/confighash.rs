//! What this host orders, as a digest per certificate (names, domains, product, key type,
//! validation method: not the host-local settings such as webroots), published by every node
//! and compared: a node whose list differs from the fleet's majority refuses to order.
//!
//! What is compared every round is each node's [`Summary`] (a hash of its whole list and its
//! length: a few dozen bytes whatever the number of certificates). The per-certificate
//! digests are published beside it in [`chunks`] and read only when the hashes say this
//! host is not the majority's, to name the certificates that differ ([`publish`], [`compare`];
//! the keys: `Fleet::config_key`, `Fleet::config_digests_dir`).
use std::collections::{BTreeMap, BTreeSet};

use etcd_client::{DeleteOptions, PutOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{read_range, Fleet, FleetError, Lease};
use crate::config::{Certificate, Validation};

/// Keys per page of the summaries (`config/`, about 100 B each) and of a list's digest
/// chunks (about 60 KB each).
const CONFIG_PAGE: i64 = 1000;
const CHUNK_PAGE: i64 = 16;

/// Certificate name → digest of what is ordered for it.
pub type Digests = BTreeMap<String, String>;

pub fn digests<'a>(certs: impl IntoIterator<Item = &'a Certificate>) -> Digests {
    certs
        .into_iter()
        .map(|c| {
            let method = match &c.validation {
                Validation::File { .. } => "file",
                Validation::Alidns { .. } => "alidns",
                Validation::Command { .. } => "command",
                Validation::Manual { .. } => "manual",
            };
            let mut h = Sha256::new();
            for part in [
                c.name.as_str(),
                &c.domains.join(","),
                &c.product_code,
                &format!("{:?}", c.key),
                method,
            ] {
                h.update(part.as_bytes());
                h.update([0]);
            }
            (c.name.clone(), hex::encode(&h.finalize()[..16]))
        })
        .collect()
}

/// The certificates on which `mine` differs from `theirs` (missing on one side or ordered
/// differently).
pub fn differing(mine: &Digests, theirs: &Digests) -> BTreeSet<String> {
    let names: BTreeSet<&String> = mine.keys().chain(theirs.keys()).collect();
    names
        .into_iter()
        .filter(|n| mine.get(*n) != theirs.get(*n))
        .cloned()
        .collect()
}

/// Whether `mine` is the fleet's list: held by strictly more nodes (this one included) than
/// any other list. `others`: every other live node's list (or its hash). With no clear
/// majority every node refuses (two halves cannot tell which one is right).
pub fn agrees<T: PartialEq>(mine: &T, others: &[T]) -> bool {
    let same = 1 + others.iter().filter(|o| *o == mine).count();
    let mut counts: Vec<usize> = Vec::new();
    let mut seen: Vec<&T> = Vec::new();
    for o in others.iter().filter(|o| *o != mine) {
        match seen.iter().position(|s| *s == o) {
            Some(i) => counts[i] += 1,
            None => {
                seen.push(o);
                counts.push(1);
            }
        }
    }
    counts.iter().all(|&c| c < same)
}

/// Certificates per chunk of published digests: about 60 KB with 20-character names, far
/// under etcd's 1.5 MiB request limit.
pub const CHUNK: usize = 1000;

/// What a node publishes under `config/<node>` and what is compared every round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The hash of the whole list (names and digests, in name order).
    pub hash: String,
    /// How many certificates it has.
    pub count: usize,
}

impl Summary {
    pub fn of(d: &Digests) -> Summary {
        let mut h = Sha256::new();
        for (name, digest) in d {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(digest.as_bytes());
            h.update([0]);
        }
        Summary {
            hash: hex::encode(&h.finalize()[..16]),
            count: d.len(),
        }
    }
}

/// `d` in chunks of at most [`CHUNK`] certificates (one chunk for an empty list), to be
/// published as separate keys; joined again, they are `d`.
pub fn chunks(d: &Digests) -> Vec<Digests> {
    let mut out = vec![Digests::new()];
    for (n, v) in d {
        if out.last().is_some_and(|c| c.len() >= CHUNK) {
            out.push(Digests::new());
        }
        if let Some(c) = out.last_mut() {
            c.insert(n.clone(), v.clone());
        }
    }
    out
}

/// The list hashes whose digests must be read to name what differs: none when this host's
/// list is the majority's (the usual round reads no digests at all).
pub fn to_read(mine: &Summary, others: &[Summary]) -> BTreeSet<String> {
    if agrees(mine, others) {
        return BTreeSet::new();
    }
    others
        .iter()
        .filter(|o| *o != mine)
        .map(|o| o.hash.clone())
        .collect()
}

/// The certificates on which `mine` differs from the fleet's majority list (empty: it
/// agrees). `others`: every other live node's summary; `read`: the lists read for
/// [`to_read`]'s hashes. A node whose list could not be read, or does not match its
/// summary, is not counted.
pub fn differing_from_fleet(
    mine: &Digests,
    others: &[Summary],
    read: &BTreeMap<String, Digests>,
) -> BTreeSet<String> {
    let my = Summary::of(mine);
    let counted: Vec<(&Summary, Option<&Digests>)> = others
        .iter()
        .filter_map(|o| {
            if *o == my {
                return Some((o, None));
            }
            let d = read.get(&o.hash).filter(|d| Summary::of(d) == *o)?;
            Some((o, Some(d)))
        })
        .collect();
    let summaries: Vec<Summary> = counted.iter().map(|(o, _)| (*o).clone()).collect();
    if agrees(&my, &summaries) {
        return BTreeSet::new();
    }
    counted
        .iter()
        .filter_map(|(_, d)| *d)
        .flat_map(|d| differing(mine, d))
        .collect()
}

/// Publishes what this host orders, bound to its lease: the digests in chunks under the
/// list's hash first, then the summary that names them (a reader who sees the summary finds
/// them), then the chunks of the list it replaces go. Each value stays small whatever the
/// number of certificates (etcd refuses a request over 1.5 MiB).
pub async fn publish(
    fleet: &Fleet,
    lease: &Lease,
    mine: &Digests,
    before: Option<&Digests>,
) -> Result<(), FleetError> {
    let encode = |what: &str, r: serde_json::Result<String>| {
        r.map_err(|e| FleetError::Unexpected {
            cert: String::new(),
            what: format!("cannot encode the configuration {what}: {e}"),
        })
    };
    let summary = Summary::of(mine);
    let dir = fleet.config_digests_dir(fleet.node(), &summary.hash);
    let mut puts = Vec::new();
    for (i, chunk) in chunks(mine).iter().enumerate() {
        puts.push((
            format!("{dir}{i:06}"),
            encode("digests", serde_json::to_string(chunk))?,
        ));
    }
    puts.push((
        fleet.config_key(fleet.node()),
        encode("summary", serde_json::to_string(&summary))?,
    ));
    let id = lease.id();
    for (key, text) in puts {
        fleet
            .call_idempotent(|mut c| {
                let (key, text) = (key.clone(), text.clone());
                async move {
                    c.put(key, text, Some(PutOptions::new().with_lease(id)))
                        .await
                }
            })
            .await?;
    }
    if let Some(old) = before.map(Summary::of).filter(|o| o.hash != summary.hash) {
        let dir = fleet.config_digests_dir(fleet.node(), &old.hash);
        fleet
            .call_idempotent(|mut c| {
                let dir = dir.clone();
                async move {
                    c.delete(dir, Some(DeleteOptions::new().with_prefix()))
                        .await
                }
            })
            .await?;
    }
    Ok(())
}

/// The certificates on which this host differs from the fleet's majority list (empty: it
/// agrees). Reads every node's summary; digests only of the lists whose hash differs from
/// the majority's and not in `lists` yet (read at the summaries' revision, so a node
/// republishing meanwhile cannot mix two lists). Nodes that published nothing yet, or
/// something unreadable, are not counted.
pub async fn compare(
    fleet: &Fleet,
    nodes: &[String],
    mine: &Digests,
    lists: &mut BTreeMap<String, Digests>,
) -> Result<BTreeSet<String>, FleetError> {
    let prefix = fleet.config_key("");
    let (rev, kvs) = read_range(fleet, &prefix, CONFIG_PAGE, None).await?;
    let others: Vec<(String, Summary)> = kvs
        .iter()
        .filter_map(|kv| {
            let node = std::str::from_utf8(kv.key()).ok()?.strip_prefix(&prefix)?;
            if node == fleet.node() || !nodes.iter().any(|x| x == node) {
                return None;
            }
            Some((node.to_string(), serde_json::from_slice(kv.value()).ok()?))
        })
        .collect();
    let summaries: Vec<Summary> = others.iter().map(|(_, s)| s.clone()).collect();
    let wanted = to_read(&Summary::of(mine), &summaries);
    lists.retain(|h, _| summaries.iter().any(|s| s.hash == *h));
    for hash in wanted {
        if lists.contains_key(&hash) {
            continue;
        }
        let Some((node, _)) = others.iter().find(|(_, s)| s.hash == hash) else {
            continue;
        };
        let dir = fleet.config_digests_dir(node, &hash);
        let (_, chunks) = read_range(fleet, &dir, CHUNK_PAGE, Some(rev)).await?;
        let mut list = Digests::new();
        for kv in &chunks {
            // Unreadable chunks leave the list short: it then fails its summary's hash and
            // the node is not counted.
            if let Ok(part) = serde_json::from_slice::<Digests>(kv.value()) {
                list.extend(part);
            }
        }
        lists.insert(hash, list);
    }
    Ok(differing_from_fleet(mine, &summaries, lists))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn d(pairs: &[(&str, &str)]) -> Digests {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn the_majority_list_orders_and_the_odd_one_out_is_told_what_differs() {
        let good = d(&[("a", "1"), ("b", "2")]);
        let odd = d(&[("a", "1"), ("b", "3"), ("c", "4")]);
        assert!(agrees(&good, &[good.clone(), odd.clone()]));
        assert!(!agrees(&odd, &[good.clone(), good.clone()]));
        // Two nodes that differ: neither can tell, both refuse.
        assert!(!agrees(&good, std::slice::from_ref(&odd)));
        assert!(agrees(&good, &[]));
        assert_eq!(
            differing(&odd, &good).into_iter().collect::<Vec<_>>(),
            ["b", "c"]
        );
    }

    #[test]
    fn host_local_settings_do_not_count_but_the_method_does() {
        let text = "state_dir = \"/tmp/s\"\noutput_dir = \"/tmp/o\"\n[[certificate]]\nname = \"www\"\ndomains = [\"a.test\"]\nproduct_code = \"p\"\ncontact = { name = \"O\", phone = \"13900000000\", email = \"o@a.test\" }\nvalidation = { method = \"file\", webroot = \"/srv/www\" }\n";
        let mut c = crate::config::parse(text, None)
            .unwrap()
            .certificates
            .remove(0);
        let a = digests([&c]);
        c.validation = Validation::File {
            webroot: "/elsewhere".into(),
        };
        assert_eq!(digests([&c]), a, "only the method counts, not the webroot");
        c.validation = Validation::Alidns { zone: None };
        assert_ne!(digests([&c]), a);
    }

    fn summaries(lists: &[&Digests]) -> Vec<Summary> {
        lists.iter().map(|d| Summary::of(d)).collect()
    }

    #[test]
    fn hashes_decide_and_digests_are_read_only_to_name_what_differs() {
        let good = d(&[("a", "1"), ("b", "2")]);
        let odd = d(&[("a", "1"), ("b", "3"), ("c", "4")]);
        let (g, o) = (Summary::of(&good), Summary::of(&odd));
        assert_ne!(g.hash, o.hash);
        assert_eq!((g.count, o.count), (2, 3));
        // The majority's host needs nobody's digests and finds nothing differing.
        let others = summaries(&[&good, &odd]);
        assert!(to_read(&g, &others).is_empty());
        assert!(differing_from_fleet(&good, &others, &BTreeMap::new()).is_empty());
        // The odd one reads the majority's list once and names what differs.
        let others = summaries(&[&good, &good]);
        assert_eq!(to_read(&o, &others), BTreeSet::from([g.hash.clone()]));
        let read = BTreeMap::from([(g.hash.clone(), good.clone())]);
        assert_eq!(
            differing_from_fleet(&odd, &others, &read)
                .into_iter()
                .collect::<Vec<_>>(),
            ["b", "c"]
        );
        // Two nodes that differ: both refuse, each naming the other's differences.
        let read = BTreeMap::from([(o.hash.clone(), odd.clone())]);
        assert_eq!(
            differing_from_fleet(&good, &summaries(&[&odd]), &read).len(),
            2
        );
        // A list that could not be read, or does not hash to its summary, is not counted:
        // with the two odd nodes left out, this host is the majority.
        let third = d(&[("z", "9")]);
        let forged = BTreeMap::from([(o.hash.clone(), third)]);
        let others = summaries(&[&odd, &odd]);
        assert!(differing_from_fleet(&good, &others, &forged).is_empty());
        assert!(differing_from_fleet(&good, &others, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn chunks_join_to_the_list_and_stay_small() {
        let big: Digests = (0..2 * CHUNK + 1)
            .map(|i| (format!("certificate-{i:08}"), format!("{i:032x}")))
            .collect();
        let parts = chunks(&big);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|c| c.len() <= CHUNK));
        let joined: Digests = parts.into_iter().flatten().collect();
        assert_eq!(joined, big);
        assert_eq!(chunks(&Digests::new()), vec![Digests::new()]);
        // A summary stays the same size whatever the list's length.
        let s = serde_json::to_string(&Summary::of(&big)).unwrap();
        assert!(s.len() < 64, "{s}");
    }
}
