//! One name in two certificates. With the same key type it is an error: both would be ordered,
//! renewed and paid for, and a web server serves only one of them. With an ECDSA and an RSA key
//! it is the usual way to serve both kinds of client, and gets one note per pair.
//!
//! "The same name" means equal after normalisation (lower-case A-labels, see `domain`): a
//! wildcard `*.example.com` is its own name, not the names it matches, because CAS orders and
//! charges it as one; so `*.example.com` beside `www.example.com` is not a duplicate.

use super::cert::Places;
use super::model::{Certificate, KeyKind};
use super::walk::Errors;

/// What a TLS server chooses between: one certificate per family.
fn family(k: KeyKind) -> &'static str {
    match k {
        KeyKind::EcdsaP256 | KeyKind::EcdsaP384 => "ECDSA",
        // CAS makes RSA keys (Alibaba's API docs: `PrivateKey` is PKCS#1 RSA).
        KeyKind::Rsa2048 | KeyKind::Rsa3072 | KeyKind::Rsa4096 | KeyKind::Cas => "RSA",
    }
}

/// Reports each name that a later certificate repeats with the same key family (at the later
/// one), and notes each pair of certificates that share names across families.
pub(super) fn check(certs: &[(Certificate, Places)], errs: &mut Errors) {
    // Names are looked up in maps, so 10 000 certificates cost one pass.
    let mut seen: std::collections::HashMap<(&str, &str), usize> = Default::default();
    let mut by_name: std::collections::HashMap<&str, Vec<usize>> = Default::default();
    for (j, (c, places)) in certs.iter().enumerate() {
        let fam = family(c.key);
        let mut shared_with: Vec<(usize, Vec<&str>)> = Vec::new();
        for (d, (dkey, dspan)) in c.domains.iter().zip(&places.domains) {
            if let Some(&i) = seen.get(&(d.as_str(), fam)) {
                errs.push(
                    dspan.clone(),
                    dkey,
                    format!(
                        "{d:?} is also in certificate {:?} with an {fam} key: it would be ordered and paid for twice; remove it from one of them (an ECDSA and an RSA certificate for one name may be served side by side)",
                        certs[i].0.name
                    ),
                );
                continue;
            }
            for &i in by_name.get(d.as_str()).into_iter().flatten() {
                match shared_with.iter_mut().find(|(k, _)| *k == i) {
                    Some((_, names)) => names.push(d),
                    None => shared_with.push((i, vec![d])),
                }
            }
        }
        for (i, names) in shared_with {
            let other = &certs[i].0;
            errs.note(
                places.name.clone(),
                &format!("{}.name", places.key),
                format!(
                    "{:?} ({}) and {:?} ({}) both cover {}: served side by side, one of each key type",
                    other.name,
                    family(other.key),
                    c.name,
                    fam,
                    names.join(", ")
                ),
            );
        }
        for d in &c.domains {
            seen.entry((d.as_str(), fam)).or_insert(j);
            let list = by_name.entry(d.as_str()).or_default();
            if !list.contains(&j) {
                list.push(j);
            }
        }
    }
}
