//! What this host orders, as a digest per certificate (names, domains, product, key type,
//! validation method: not the host-local settings such as webroots), published by every node
//! and compared: a node whose list differs from the fleet's majority refuses to order.
use std::collections::{BTreeMap, BTreeSet};

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
/// any other list. `others`: every other live node's list. With no clear majority every node
/// refuses (two halves cannot tell which one is right).
pub fn agrees(mine: &Digests, others: &[Digests]) -> bool {
    let same = 1 + others.iter().filter(|o| *o == mine).count();
    let mut counts: Vec<usize> = Vec::new();
    let mut seen: Vec<&Digests> = Vec::new();
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
}
