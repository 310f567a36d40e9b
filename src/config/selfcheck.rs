//! `self_check`, `self_check_resolve` and `self_check_nameservers`: how the published proof is
//! checked from outside (`validation::selfcheck`). Settable in `[defaults]` and per certificate;
//! a certificate's value replaces the default's as a whole (tables are not merged).
use std::net::SocketAddr;

use toml::de::DeValue;

use super::domain::normalize_domain;
use super::model::SelfCheck;
use super::walk::{Errors, Tbl};

/// What one table says; unset keys fall back to `[defaults]`, then to [`SelfCheck::default`].
#[derive(Default, Clone)]
pub(super) struct Settings {
    enabled: Option<bool>,
    resolve: Option<Vec<(String, SocketAddr)>>,
    nameservers: Option<Vec<SocketAddr>>,
}

impl Settings {
    pub(super) fn or(self, d: &Settings) -> Settings {
        Settings {
            enabled: self.enabled.or(d.enabled),
            resolve: self.resolve.or_else(|| d.resolve.clone()),
            nameservers: self.nameservers.or_else(|| d.nameservers.clone()),
        }
    }

    pub(super) fn build(self) -> SelfCheck {
        let d = SelfCheck::default();
        SelfCheck {
            enabled: self.enabled.unwrap_or(d.enabled),
            resolve: self.resolve.unwrap_or(d.resolve),
            nameservers: self.nameservers.unwrap_or(d.nameservers),
        }
    }
}

fn addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("{s:?} is not an address with a port like \"127.0.0.1:8080\" or \"[::1]:53\"")
    })
}

pub(super) fn settings(t: &Tbl, errs: &mut Errors) -> Settings {
    let mut s = Settings::default();
    if let Some(v) = t.get("self_check") {
        match v.get_ref() {
            DeValue::Boolean(b) => s.enabled = Some(*b),
            other => errs.wrong_type(v.span(), &t.key("self_check"), "true or false", other),
        }
    }
    if let Some(r) = t.table("self_check_resolve", errs) {
        let mut out = Vec::new();
        for (k, v) in r.table.iter() {
            let name: &str = k.get_ref().as_ref();
            let key = r.key(name);
            // `a.example.com` or `*.example.com`, normalised like a certificate's domains.
            let p = normalize_domain(name)
                .map_err(|e| errs.push(k.span(), &key, format!("{name:?}: {e}")))
                .ok();
            let a = match v.get_ref() {
                DeValue::String(a) => addr(a).map_err(|e| errs.push(v.span(), &key, e)).ok(),
                other => {
                    errs.wrong_type(v.span(), &key, "a string like \"127.0.0.1:8080\"", other);
                    None
                }
            };
            if let (Some(p), Some(a)) = (p, a) {
                out.push((p, a));
            }
        }
        s.resolve = Some(out);
    }
    if let Some((list, _)) = t.str_list("self_check_nameservers", errs) {
        let key = t.key("self_check_nameservers");
        let mut out = Vec::new();
        for (i, (a, span)) in list.into_iter().enumerate() {
            match addr(&a) {
                Ok(a) => out.push(a),
                Err(e) => errs.push(span, &format!("{key}[{i}]"), e),
            }
        }
        s.nameservers = Some(out);
    }
    s
}
