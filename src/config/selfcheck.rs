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
                .map_err(|e| errs.push(k.span(), &key, e))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    const HEAD: &str = "[defaults]\ncontact = { name = \"a\", phone = \"1\", email = \"a@b.c\" }\n";

    fn cert(extra: &str) -> String {
        format!("[[certificate]]\nname = \"w\"\ndomains = [\"a.example.com\"]\nvalidation = {{ method = \"manual\" }}\n{extra}")
    }

    #[test]
    fn defaults_apply_and_a_certificate_overrides_them() {
        let text = format!(
            "{HEAD}self_check = false\nself_check_nameservers = [\"127.0.0.1:5353\"]\n{}{}",
            cert(""),
            cert("self_check = true\nself_check_resolve = { \"*.example.com\" = \"127.0.0.1:8080\" }\n")
                .replace("\"w\"", "\"x\"")
                .replace("a.example.com", "b.example.com")
        );
        let c = crate::config::parse(&text, None).unwrap();
        let (w, x) = (&c.certificates[0].self_check, &c.certificates[1].self_check);
        assert!(!w.enabled && w.resolve.is_empty());
        assert_eq!(w.nameservers, ["127.0.0.1:5353".parse().unwrap()]);
        assert!(x.enabled);
        assert_eq!(
            x.resolve,
            [(
                "*.example.com".to_string(),
                "127.0.0.1:8080".parse().unwrap()
            )]
        );
        assert_eq!(
            x.nameservers, w.nameservers,
            "unset keys come from [defaults]"
        );
        let plain = crate::config::parse(&format!("{HEAD}{}", cert("")), None).unwrap();
        assert!(plain.certificates[0].self_check.enabled, "on by default");
    }

    #[test]
    fn bad_values_are_errors_that_name_the_key_and_line() {
        let text = format!(
            "{HEAD}{}",
            cert("self_check = \"yes\"\nself_check_resolve = { \"a b\" = \"127.0.0.1:8080\", \"ok.example.com\" = \"nowhere\" }\nself_check_nameservers = [\"10.0.0.1\"]\n")
        );
        let e = crate::config::parse(&text, None).unwrap_err().to_string();
        assert!(
            e.contains(":7:") && e.contains("certificate[0].self_check: expected true or false"),
            "{e}"
        );
        assert!(e.contains("self_check_resolve.\"a b\""), "{e}");
        assert!(
            e.contains("\"nowhere\" is not an address with a port"),
            "{e}"
        );
        assert!(e.contains("self_check_nameservers[0]"), "{e}");
    }
}
