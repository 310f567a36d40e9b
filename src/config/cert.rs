//! The per-certificate part of the config: `[defaults]` and each `[[certificate]]`, with the
//! places (byte spans) of the values that later checks point at (`paths`, `overlap`).

use std::collections::HashSet;
use std::ops::Range;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::build::{abs_path, duration};
use super::domain::{normalize_domain, safe_name};
use super::model::*;
use super::walk::{str_list_of, Errors, Tbl};
use cas_api::model::{Contact, ValidateType, DEFAULT_PRODUCT};

pub(super) const PER_CERT_KEYS: &[&str] = &[
    "product_code",
    "key",
    "renew_before",
    "contact",
    "reload",
    "owner",
    "group",
    "keep_versions",
    "key_mode",
    "cert_mode",
    "hook_env",
    "validation_timeout",
    "expiry_warn",
    "self_check",
    "self_check_resolve",
    "self_check_nameservers",
];
const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an order may wait in domain_verify: a day covers a DV proof fixed by hand; OV/EV
/// products, validated by people, need longer (see docs/configuration.md).
pub(crate) const DEFAULT_VALIDATION_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Two weeks: time for a person to fix what keeps the renewal from succeeding.
pub(crate) const DEFAULT_EXPIRY_WARN: Duration = Duration::from_secs(14 * 24 * 3600);

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

/// Settings that may be given in `[defaults]` and overridden per certificate.
#[derive(Default, Clone)]
pub(super) struct Overridable {
    product_code: Option<String>,
    key: Option<KeyKind>,
    renew_before: Option<RenewBefore>,
    contact: Option<Contact>,
    reload: Option<Hook>,
    owner: Option<String>,
    group: Option<String>,
    keep_versions: Option<usize>,
    key_mode: Option<u32>,
    cert_mode: Option<u32>,
    hook_env: Option<Vec<String>>,
    validation_timeout: Option<Duration>,
    expiry_warn: Option<Duration>,
    self_check: super::selfcheck::Settings,
}

impl Overridable {
    fn or(self, d: &Overridable) -> Overridable {
        Overridable {
            product_code: self.product_code.or_else(|| d.product_code.clone()),
            key: self.key.or(d.key),
            renew_before: self.renew_before.or(d.renew_before),
            contact: self.contact.or_else(|| d.contact.clone()),
            reload: self.reload.or_else(|| d.reload.clone()),
            owner: self.owner.or_else(|| d.owner.clone()),
            group: self.group.or_else(|| d.group.clone()),
            keep_versions: self.keep_versions.or(d.keep_versions),
            key_mode: self.key_mode.or(d.key_mode),
            cert_mode: self.cert_mode.or(d.cert_mode),
            hook_env: self.hook_env.or_else(|| d.hook_env.clone()),
            validation_timeout: self.validation_timeout.or(d.validation_timeout),
            expiry_warn: self.expiry_warn.or(d.expiry_warn),
            self_check: self.self_check.or(&d.self_check),
        }
    }
}

fn key_kind(s: &str) -> Option<KeyKind> {
    Some(match s {
        "ecdsa-p256" => KeyKind::EcdsaP256,
        "ecdsa-p384" => KeyKind::EcdsaP384,
        "rsa-2048" => KeyKind::Rsa2048,
        "rsa-3072" => KeyKind::Rsa3072,
        "rsa-4096" => KeyKind::Rsa4096,
        "cas" => KeyKind::Cas,
        _ => return None,
    })
}

/// `"a/b"` with 0 < a/b < 1, or a duration.
pub(crate) fn parse_renew_before(s: &str) -> Result<RenewBefore, String> {
    if let Some((a, b)) = s.split_once('/') {
        let (a, b) = match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Err(format!("{s:?} is not a fraction like \"1/3\"")),
        };
        let f = a / b;
        if !(f > 0.0 && f < 1.0) {
            return Err(format!("{s:?} must be a fraction between 0 and 1"));
        }
        return Ok(RenewBefore::Fraction(f));
    }
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(RenewBefore::Duration(d)),
        _ => Err(format!(
            "{s:?} is neither a fraction of the lifetime like \"1/3\" nor a duration like \"30d\""
        )),
    }
}

fn mode(t: &Tbl, k: &str, errs: &mut Errors) -> Option<u32> {
    let v = t.get(k)?;
    let (m, span) = match v.get_ref() {
        DeValue::String(s) => (u32::from_str_radix(s, 8).ok(), v.span()),
        DeValue::Integer(_) => (
            t.int(k, errs).and_then(|(n, _)| u32::try_from(n).ok()),
            v.span(),
        ),
        other => {
            errs.push(
                v.span(),
                &t.key(k),
                format!(
                    "expected an octal mode like \"0600\", found {}",
                    other.type_str()
                ),
            );
            return None;
        }
    };
    match m {
        Some(m) if m <= 0o777 => Some(m),
        _ => {
            errs.push(span, &t.key(k), "not a file mode like \"0600\" or 0o600");
            None
        }
    }
}

pub(super) fn overridable(t: &Tbl, errs: &mut Errors) -> Overridable {
    let mut o = Overridable {
        self_check: super::selfcheck::settings(t, errs),
        ..Overridable::default()
    };
    if let Some((s, span)) = t.str("product_code", errs) {
        if s.is_empty() {
            errs.push(span, &t.key("product_code"), "empty product code");
        } else {
            o.product_code = Some(s);
        }
    }
    if let Some((s, span)) = t.str("key", errs) {
        match key_kind(&s) {
            Some(k) => o.key = Some(k),
            None => errs.push(
                span,
                &t.key("key"),
                format!(
                    "unknown key kind {s:?}; use ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096 or cas"
                ),
            ),
        }
    }
    if let Some((s, span)) = t.str("renew_before", errs) {
        match parse_renew_before(&s) {
            Ok(r) => o.renew_before = Some(r),
            Err(e) => errs.push(span, &t.key("renew_before"), e),
        }
    }
    if let Some(c) = t.table("contact", errs) {
        c.unknown_keys(&["name", "phone", "email"], errs);
        let mut get = |k: &str| match c.str(k, errs) {
            Some((s, span)) if s.trim().is_empty() => {
                errs.push(span, &c.key(k), "may not be empty");
                None
            }
            Some((s, _)) => Some(s),
            None => {
                if c.get(k).is_none() {
                    errs.push(c.span.clone(), &c.key(k), "missing");
                }
                None
            }
        };
        let (name, phone, email) = (get("name"), get("phone"), get("email"));
        if let Some(e) = &email {
            if !e.contains('@') {
                if let Some((_, span)) = c.str("email", errs) {
                    errs.push(span, &c.key("email"), "not an e-mail address");
                }
            }
        }
        if let (Some(name), Some(phone), Some(email)) = (name, phone, email) {
            o.contact = Some(Contact { name, phone, email });
        }
    }
    if let Some(v) = t.get("reload") {
        o.reload = hook(v, &t.key("reload"), errs);
    }
    if let Some(v) = t.get("hook_env") {
        o.hook_env = hook_env(v, &t.key("hook_env"), errs);
    }
    for (k, slot) in [("owner", &mut o.owner), ("group", &mut o.group)] {
        if let Some((s, span)) = t.str(k, errs) {
            if s.is_empty()
                || s.len() > 32
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                errs.push(span, &t.key(k), "not a user/group name or numeric id");
            } else {
                *slot = Some(s);
            }
        }
    }
    if let Some((n, span)) = t.int("keep_versions", errs) {
        if (0..=100).contains(&n) {
            o.keep_versions = Some(n as usize);
        } else {
            errs.push(span, &t.key("keep_versions"), "must be between 0 and 100");
        }
    }
    if let Some(d) = duration(t, "validation_timeout", errs) {
        if d.is_zero() {
            if let Some(v) = t.get("validation_timeout") {
                errs.push(
                    v.span(),
                    &t.key("validation_timeout"),
                    "must be longer than zero (an order needs time to be validated; the default is \"24h\")",
                );
            }
        } else {
            o.validation_timeout = Some(d);
        }
    }
    // Zero is allowed: it turns the warning off.
    o.expiry_warn = duration(t, "expiry_warn", errs);
    o.key_mode = mode(t, "key_mode", errs);
    if let (Some(m), Some(v)) = (o.key_mode, t.get("key_mode")) {
        if m & 0o007 != 0 {
            errs.push(
                v.span(),
                &t.key("key_mode"),
                "the private key may not be readable or writable by others",
            );
        }
    }
    o.cert_mode = mode(t, "cert_mode", errs);
    if let (Some(m), Some(v)) = (o.cert_mode, t.get("cert_mode")) {
        if m & 0o002 != 0 {
            errs.push(
                v.span(),
                &t.key("cert_mode"),
                "writable by others: anyone could replace the certificate; use \"0644\"",
            );
        }
    }
    o
}

/// `reload = ["argv", ...]` or `reload = { argv = [...], timeout = "60s" }`.
pub(super) fn hook(v: &Spanned<DeValue<'_>>, key: &str, errs: &mut Errors) -> Option<Hook> {
    let (argv, timeout) = match v.get_ref() {
        DeValue::Array(_) => (argv_of(v, key, errs)?, DEFAULT_HOOK_TIMEOUT),
        DeValue::Table(t) => {
            let t = Tbl::new(t, key, v.span());
            t.unknown_keys(&["argv", "timeout"], errs);
            let timeout = duration(&t, "timeout", errs).unwrap_or(DEFAULT_HOOK_TIMEOUT);
            let Some(a) = t.get("argv") else {
                errs.push(v.span(), &t.key("argv"), "missing: the program to run");
                return None;
            };
            (argv_of(a, &t.key("argv"), errs)?, timeout)
        }
        other => {
            errs.push(
                v.span(),
                key,
                format!(
                    "expected an argv list like [\"systemctl\", \"reload\", \"nginx\"] or a table {{ argv = [...], timeout = \"60s\" }}, found {}",
                    other.type_str()
                ),
            );
            return None;
        }
    };
    Some(Hook {
        argv,
        timeout,
        pass_env: Vec::new(),
    })
}

/// `hook_env = ["NAME", ...]`: variables of the daemon's environment hooks and validators get.
fn hook_env(v: &Spanned<DeValue<'_>>, key: &str, errs: &mut Errors) -> Option<Vec<String>> {
    let (items, _) = str_list_of(v, key, errs)?;
    let mut ok = true;
    for (name, span) in &items {
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            ok = false;
            errs.push(
                span.clone(),
                key,
                format!("{name:?} is not an environment variable name (letters, digits, '_')"),
            );
        }
    }
    ok.then(|| items.into_iter().map(|(s, _)| s).collect())
}

fn argv_of(v: &Spanned<DeValue<'_>>, key: &str, errs: &mut Errors) -> Option<Vec<String>> {
    let (items, span) = str_list_of(v, key, errs)?;
    if items.is_empty() || items[0].0.is_empty() {
        errs.push(
            span,
            key,
            "empty command: give the program and its arguments, e.g. [\"systemctl\", \"reload\", \"nginx\"]",
        );
        return None;
    }
    if items.iter().any(|(s, _)| s.contains('\0')) {
        errs.push(span, key, "arguments may not contain NUL");
        return None;
    }
    Some(items.into_iter().map(|(s, _)| s).collect())
}

/// The validation and, for FILE, the webroot value's place.
fn validation(
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
    if o.contact.is_none() && t.get("contact").is_none() {
        errs.push(
            item.span(),
            &t.key("contact"),
            "missing: CAS needs a contact (name, phone, email) in [defaults] or here",
        );
    }
    let (Some(name), Some((validation, webroot)), Some(contact)) = (name, validation, o.contact)
    else {
        return None;
    };
    let group = o.group.clone();
    let pass_env = o.hook_env.unwrap_or_default();
    let validation = match validation {
        Validation::Command { argv, timeout, .. } => Validation::Command {
            argv,
            timeout,
            pass_env: pass_env.clone(),
        },
        v => v,
    };
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
    let cert = Certificate {
        name,
        domains,
        validation,
        product_code: o
            .product_code
            .unwrap_or_else(|| DEFAULT_PRODUCT.to_string()),
        key: o.key.unwrap_or(KeyKind::EcdsaP256),
        renew_before: o.renew_before.unwrap_or(RenewBefore::Fraction(1.0 / 3.0)),
        contact,
        reload: o.reload.map(|h| Hook { pass_env, ..h }),
        files: FileOwnership {
            owner: o.owner,
            key_mode: o
                .key_mode
                .unwrap_or(if group.is_some() { 0o640 } else { 0o600 }),
            group,
            cert_mode: o.cert_mode.unwrap_or(0o644),
        },
        keep_versions: o.keep_versions.unwrap_or(3),
        validation_timeout: o.validation_timeout.unwrap_or(DEFAULT_VALIDATION_TIMEOUT),
        expiry_warn: o.expiry_warn.unwrap_or(DEFAULT_EXPIRY_WARN),
        self_check: o.self_check.build(),
    };
    Some((cert, places))
}

/// The normalised names and their places; a name written otherwise than it is used (upper
/// case, Unicode) gets a note, so the operator sees what will be ordered.
fn cert_domains(t: &Tbl, errs: &mut Errors) -> (Vec<String>, Vec<(String, Range<usize>)>) {
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
