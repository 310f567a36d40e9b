//! A certificate's `domains`: each name normalised (lower case, A-labels), at most five, none
//! twice, and not wildcard and plain names mixed.

use std::ops::Range;

use super::super::domain::normalize_domain;
use super::super::walk::{Errors, Tbl};

/// The normalised names and their places; a name written otherwise than it is used (upper
/// case, Unicode) gets a note, so the operator sees what will be ordered.
pub(super) fn cert_domains(
    t: &Tbl,
    errs: &mut Errors,
) -> (Vec<String>, Vec<(String, Range<usize>)>) {
    let key = t.key("domains");
    let Some((items, span)) = t.str_list("domains", errs) else {
        if t.get("domains").is_none() {
            errs.push(
                t.span.clone(),
                &key,
                "missing: the names the certificate covers",
            );
        }
        return (Vec::new(), Vec::new());
    };
    if items.is_empty() {
        errs.push(span.clone(), &key, "give at least one domain name");
    }
    if items.len() > 5 {
        errs.push(
            span.clone(),
            &key,
            format!(
                "{} names given; CAS allows at most 5 per certificate",
                items.len()
            ),
        );
    }
    let mut out: Vec<String> = Vec::new();
    let mut places = Vec::new();
    for (i, (d, dspan)) in items.iter().enumerate() {
        let dkey = format!("{key}[{i}]");
        match normalize_domain(d) {
            Ok(n) if out.contains(&n) => {
                errs.push(dspan.clone(), &dkey, format!("{n:?} is listed twice"))
            }
            Ok(n) => {
                if &n != d {
                    let how = if d.to_lowercase() == n {
                        "names are lower-cased"
                    } else {
                        "names are used as lower-case A-labels (IDNA)"
                    };
                    errs.note(
                        dspan.clone(),
                        &dkey,
                        format!("{d:?} is ordered as {n:?} ({how})"),
                    );
                }
                out.push(n);
                places.push((dkey, dspan.clone()));
            }
            Err(e) => errs.push(dspan.clone(), &dkey, e),
        }
    }
    let wild = out.iter().filter(|d| d.starts_with("*.")).count();
    if wild > 0 && wild < out.len() {
        errs.push(
            span,
            &key,
            "do not mix wildcard and plain names in one certificate; make two certificates",
        );
    }
    (out, places)
}
