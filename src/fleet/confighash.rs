//! What this host orders, as a digest per certificate (names, domains, product, key type,
//! validation method: not the host-local settings such as webroots), published by every node
//! and compared: a node whose list differs from the fleet's majority refuses to order.
//!
//! What is compared every round is each node's [`Summary`] (a hash of its whole list and its
//! length: a few dozen bytes whatever the number of certificates). The per-certificate
//! digests are published beside it in [`chunks`] and read only when the hashes say this
//! host is not the majority's, to name the certificates that differ.
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Certificate, Validation};

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
