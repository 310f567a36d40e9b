//! The settings `[defaults]` and a `[[certificate]]` share (`PER_CERT_KEYS`): reading them
//! from either table, a certificate's own over the defaults' ([`Overridable::or`]), and the
//! built-in values for what neither gives ([`Overridable::build`]).

use std::time::Duration;

use toml::de::DeValue;

use super::super::build::duration;
use super::super::hook::{hook, hook_env};
use super::super::model::*;
use super::super::walk::{Errors, Tbl};
use cas_api::model::{Contact, DEFAULT_PRODUCT};

/// The keys of `[defaults]`; a `[[certificate]]` may give each of them as well.
pub(in crate::config) const PER_CERT_KEYS: &[&str] = &[
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
/// How long an order may wait in domain_verify: a day covers a DV proof fixed by hand; OV/EV
/// products, validated by people, need longer (see docs/configuration.md).
const DEFAULT_VALIDATION_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Two weeks: time for a person to fix what keeps the renewal from succeeding.
const DEFAULT_EXPIRY_WARN: Duration = Duration::from_secs(14 * 24 * 3600);

/// Settings that may be given in `[defaults]` and overridden per certificate.
#[derive(Default, Clone)]
pub(in crate::config) struct Overridable {
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
    self_check: super::super::selfcheck::Settings,
}

impl Overridable {
    pub(super) fn or(self, d: &Overridable) -> Overridable {
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

    /// Whether a contact is given (there is no built-in one).
    pub(super) fn has_contact(&self) -> bool {
        self.contact.is_some()
    }

    /// The certificate with these settings, where neither it nor `[defaults]` gives one the
    /// built-in value; `None` without a contact, which has none. `hook_env` goes to its
    /// reload hook and its validator command.
    pub(super) fn build(
        self,
        name: String,
        domains: Vec<String>,
        validation: Validation,
    ) -> Option<Certificate> {
        let contact = self.contact?;
        let group = self.group.clone();
        let pass_env = self.hook_env.unwrap_or_default();
        let validation = match validation {
            Validation::Command { argv, timeout, .. } => Validation::Command {
                argv,
                timeout,
                pass_env: pass_env.clone(),
            },
            v => v,
        };
        Some(Certificate {
            name,
            domains,
            validation,
            product_code: self
                .product_code
                .unwrap_or_else(|| DEFAULT_PRODUCT.to_string()),
            key: self.key.unwrap_or(KeyKind::EcdsaP256),
            renew_before: self
                .renew_before
                .unwrap_or(RenewBefore::Fraction(1.0 / 3.0)),
            contact,
            reload: self.reload.map(|h| Hook { pass_env, ..h }),
            files: FileOwnership {
                owner: self.owner,
                key_mode: self
                    .key_mode
                    .unwrap_or(if group.is_some() { 0o640 } else { 0o600 }),
                group,
                cert_mode: self.cert_mode.unwrap_or(0o644),
            },
            keep_versions: self.keep_versions.unwrap_or(3),
            validation_timeout: self
                .validation_timeout
                .unwrap_or(DEFAULT_VALIDATION_TIMEOUT),
            expiry_warn: self.expiry_warn.unwrap_or(DEFAULT_EXPIRY_WARN),
            self_check: self.self_check.build(),
        })
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
fn parse_renew_before(s: &str) -> Result<RenewBefore, String> {
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

pub(in crate::config) fn overridable(t: &Tbl, errs: &mut Errors) -> Overridable {
    let mut o = Overridable {
        self_check: super::super::selfcheck::settings(t, errs),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn renew_before_forms() {
        assert_eq!(
            parse_renew_before("1/3").unwrap(),
            RenewBefore::Fraction(1.0 / 3.0)
        );
        assert_eq!(
            parse_renew_before("30d").unwrap(),
            RenewBefore::Duration(Duration::from_secs(30 * 86400))
        );
        for bad in ["0/3", "3/3", "4/3", "1/0", "x/3", "soon", "0s"] {
            assert!(parse_renew_before(bad).is_err(), "{bad}");
        }
    }
}
