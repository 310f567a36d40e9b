//! The per-certificate part of the config: each `[[certificate]]` (read from the whole
//! document or a table at a time, see `split`) built into a [`Certificate`] over the
//! `[defaults]`, with the places (byte spans) of the values that later checks point at
//! (`paths`, `overlap`). Its parts: `settings` (the keys `[defaults]` shares, inheritance and
//! built-in values), `validation` (the `validation` table), `domains` (the `domains` list).

mod domains;
mod settings;
mod validation;

use std::collections::HashSet;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::domain::safe_name;
use super::model::Certificate;
use super::walk::{Errors, Tbl};
use domains::cert_domains;
pub(super) use settings::{overridable, Overridable, PER_CERT_KEYS};
use validation::validation;

/// Where one built certificate's values are in the file, for the checks made after building.
pub(super) struct Places {
    /// `certificate[i]`, the prefix of its keys in messages.
    pub(super) key: String,
    pub(super) name: Range<usize>,
    /// Key (`certificate[i].domains[j]`) and place, one per entry of `Certificate::domains`.
    pub(super) domains: Vec<(String, Range<usize>)>,
    /// The webroot's value, for FILE validation.
    pub(super) webroot: Option<Range<usize>>,
}

/// Every `[[certificate]]` of the document, built over `defaults`; one with errors is left out
/// (its errors are in `errs`).
pub(super) fn certificates(
    root: &Tbl,
    defaults: &Overridable,
    errs: &mut Errors,
) -> Vec<(Certificate, Places)> {
    let Some(v) = root.get("certificate") else {
        return Vec::new();
    };
    let DeValue::Array(items) = v.get_ref() else {
        errs.push(
            v.span(),
            "certificate",
            "expected [[certificate]] tables, one per certificate",
        );
        return Vec::new();
    };
    let mut names = HashSet::new();
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| certificate(i, item, defaults, &mut names, errs))
        .collect()
}

/// [`certificates`] of the `[[certificate]]` tables at `ranges` of `text`, each parsed, built
/// and dropped before the next (see `split`). `None` when one is not a plain TOML table of
/// its own (a syntax error): the whole document is then read as one, and reports it.
pub(super) fn split_certificates(
    text: &str,
    ranges: &[Range<usize>],
    defaults: &Overridable,
    errs: &mut Errors,
) -> Option<Vec<(Certificate, Places)>> {
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(ranges.len());
    for (i, r) in ranges.iter().enumerate() {
        let (doc, syntax) = DeTable::parse_recoverable(text.get(r.clone())?);
        if !syntax.is_empty() || doc.get_ref().len() != 1 {
            return None;
        }
        let root = Tbl::new(doc.get_ref(), "", doc.span());
        let item = match root.get("certificate")?.get_ref() {
            DeValue::Array(items) if items.len() == 1 => items.first()?,
            _ => return None,
        };
        errs.offset = r.start;
        let built = certificate(i, item, defaults, &mut names, errs);
        errs.offset = 0;
        out.extend(built);
    }
    Some(out)
}

/// The `i`-th `[[certificate]]`, with the defaults applied; `None` when it has errors.
fn certificate(
    i: usize,
    item: &Spanned<DeValue<'_>>,
    defaults: &Overridable,
    names: &mut HashSet<String>,
    errs: &mut Errors,
) -> Option<(Certificate, Places)> {
    let path = format!("certificate[{i}]");
    let DeValue::Table(t) = item.get_ref() else {
        errs.push(item.span(), &path, "expected a table");
        return None;
    };
    let t = Tbl::new(t, &path, item.span());
    let mut name_span = item.span();
    let mut allowed = vec!["name", "domains", "validation"];
    allowed.extend_from_slice(PER_CERT_KEYS);
    t.unknown_keys(&allowed, errs);

    let name = match t.str("name", errs) {
        Some((n, span)) => {
            name_span = span.clone();
            if let Err(e) = safe_name(&n) {
                errs.push(span, &t.key("name"), e);
            } else if names.contains(&n) {
                errs.push(
                    span,
                    &t.key("name"),
                    format!("{n:?} is used by an earlier certificate; names must be unique"),
                );
            }
            names.insert(n.clone());
            Some(n)
        }
        None => {
            if t.get("name").is_none() {
                errs.push(
                    item.span(),
                    &t.key("name"),
                    "missing: a short name, used as the directory name",
                );
            }
            None
        }
    };
    let (domains, domain_spans) = cert_domains(&t, errs);
    let wildcard = domains.iter().any(|d| d.starts_with("*."));
    let validation = validation(&t, wildcard, errs);
    let o = overridable(&t, errs).or(defaults);
    if !o.has_contact() && t.get("contact").is_none() {
        errs.push(
            item.span(),
            &t.key("contact"),
            "missing: CAS needs a contact (name, phone, email) in [defaults] or here",
        );
    }
    let (Some(name), Some((validation, webroot))) = (name, validation) else {
        return None;
    };
    let cert = o.build(name, domains, validation)?;
    // Places in the file (the table may have been parsed on its own).
    let places = Places {
        key: path,
        name: errs.place(name_span),
        domains: domain_spans
            .into_iter()
            .map(|(k, s)| (k, errs.place(s)))
            .collect(),
        webroot: webroot.map(|s| errs.place(s)),
    };
    Some((cert, places))
}
