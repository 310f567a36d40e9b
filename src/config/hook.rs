//! Commands the config names, as argv lists run without a shell: the `reload` hook (per
//! certificate, and `[notify]`'s `command`), a `command` validator's argv, and `hook_env`, the
//! daemon's environment variables they are given.

use std::time::Duration;

use toml::de::DeValue;
use toml::Spanned;

use super::build::duration;
use super::model::Hook;
use super::walk::{str_list_of, Errors, Tbl};

/// How long a hook or a validator command may run when its table gives no `timeout`.
pub(super) const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);

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
pub(super) fn hook_env(
    v: &Spanned<DeValue<'_>>,
    key: &str,
    errs: &mut Errors,
) -> Option<Vec<String>> {
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

/// A non-empty argv list, its program named, no NUL anywhere.
pub(super) fn argv_of(
    v: &Spanned<DeValue<'_>>,
    key: &str,
    errs: &mut Errors,
) -> Option<Vec<String>> {
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
