//! A certificate's `validation` table: how control of its names is proven (file, alidns,
//! command or manual), checked against the names (a wildcard cannot be proven by file).

use std::ops::Range;

use super::super::build::{abs_path, duration};
use super::super::domain::normalize_domain;
use super::super::hook::{argv_of, DEFAULT_HOOK_TIMEOUT};
use super::super::model::Validation;
use super::super::walk::{Errors, Tbl};
use cas_api::model::ValidateType;

/// The validation and, for FILE, the webroot value's place.
pub(super) fn validation(
    t: &Tbl,
    wildcard: bool,
    errs: &mut Errors,
) -> Option<(Validation, Option<Range<usize>>)> {
    let Some(v) = t.table("validation", errs) else {
        if t.get("validation").is_none() {
            errs.push(
                t.span.clone(),
                &t.key("validation"),
                "missing: say how to prove control, e.g. { method = \"file\", webroot = \"/var/www/html\" }",
            );
        }
        return None;
    };
    let Some((method, mspan)) = v.str("method", errs) else {
        if v.get("method").is_none() {
            errs.push(
                v.span.clone(),
                &v.key("method"),
                "missing: one of file, alidns, command, manual",
            );
        }
        return None;
    };
    let mut webroot_span = None;
    let out = match method.as_str() {
        "file" => {
            v.unknown_keys(&["method", "webroot"], errs);
            if wildcard {
                errs.push(
                    mspan.clone(),
                    &v.key("method"),
                    "wildcard certificates cannot be validated by file; use alidns, command or manual with type = \"dns\"",
                );
            }
            match v.str("webroot", errs) {
                Some((w, span)) => {
                    webroot_span = Some(span.clone());
                    Validation::File {
                        webroot: abs_path(&w, span, &v.key("webroot"), errs),
                    }
                }
                None => {
                    if v.get("webroot").is_none() {
                        errs.push(
                            v.span.clone(),
                            &v.key("webroot"),
                            "missing: the directory your web server serves",
                        );
                    }
                    return None;
                }
            }
        }
        "alidns" => {
            v.unknown_keys(&["method", "zone"], errs);
            let zone = match v.str("zone", errs) {
                Some((z, span)) => match normalize_domain(&z) {
                    Ok(z) if !z.starts_with('*') => Some(z),
                    Ok(_) => {
                        errs.push(span, &v.key("zone"), "a zone cannot be a wildcard");
                        None
                    }
                    Err(e) => {
                        errs.push(span, &v.key("zone"), e);
                        None
                    }
                },
                None => None,
            };
            Validation::Alidns { zone }
        }
        "command" => {
            v.unknown_keys(&["method", "command", "timeout"], errs);
            let timeout = duration(&v, "timeout", errs).unwrap_or(DEFAULT_HOOK_TIMEOUT);
            let Some(c) = v.get("command") else {
                errs.push(
                    v.span.clone(),
                    &v.key("command"),
                    "missing: the program to call, as an argv list",
                );
                return None;
            };
            let argv = argv_of(c, &v.key("command"), errs)?;
            Validation::Command {
                argv,
                timeout,
                pass_env: Vec::new(),
            }
        }
        "manual" => {
            v.unknown_keys(&["method", "type"], errs);
            let validate_type = match v.str("type", errs) {
                Some((s, span)) => match s.to_ascii_lowercase().as_str() {
                    "dns" => ValidateType::Dns,
                    "file" => {
                        if wildcard {
                            errs.push(
                                span,
                                &v.key("type"),
                                "wildcard certificates cannot be validated by file",
                            );
                        }
                        ValidateType::File
                    }
                    _ => {
                        errs.push(span, &v.key("type"), "must be \"dns\" or \"file\"");
                        return None;
                    }
                },
                None => ValidateType::Dns,
            };
            Validation::Manual { validate_type }
        }
        _ => {
            errs.push(
                mspan,
                &v.key("method"),
                format!("unknown method {method:?}; use file, alidns, command or manual"),
            );
            return None;
        }
    };
    Some((out, webroot_span))
}
