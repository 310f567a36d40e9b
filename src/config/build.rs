//! Builds the validated [`Config`] from the spanned document, collecting every error.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::domain::{normalize_domain, safe_name};
use super::model::*;
use super::walk::{str_list_of, Errors, Tbl};
use crate::cas::model::{Contact, ValidateType};

const ROOT_KEYS: &[&str] = &[
    "state_dir",
    "output_dir",
    "check_schedule",
    "poll_min",
    "poll_max",
    "log_format",
    "cas",
    "alidns",
    "credentials",
    "metrics",
    "control_socket",
    "concurrency",
    "defaults",
    "certificate",
];
const PER_CERT_KEYS: &[&str] = &[
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
];

pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/cas-certd";
pub(crate) const DEFAULT_OUTPUT_DIR: &str = "/etc/cas-certd/live";
pub(crate) const DEFAULT_SCHEDULE: &str = "0 */10 * * * *";
pub(crate) const DEFAULT_PRODUCT: &str = "symantec-free-1-free";
const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings that may be given in `[defaults]` and overridden per certificate.
#[derive(Default, Clone)]
struct Overridable {
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
        }
    }
}

pub(crate) fn build(
    doc: &Spanned<DeTable<'_>>,
    source: Option<&Path>,
    errs: &mut Errors,
) -> Option<Config> {
    let root = Tbl::new(doc.get_ref(), "", doc.span());
    root.unknown_keys(ROOT_KEYS, errs);

    let state_dir = path_or(&root, "state_dir", DEFAULT_STATE_DIR, errs);
    let output_dir = path_or(&root, "output_dir", DEFAULT_OUTPUT_DIR, errs);
    let check_schedule = match root.str("check_schedule", errs) {
        Some((s, span)) => {
            if let Err(e) = check_cron(&s) {
                errs.push(span, "check_schedule", e);
            }
            s
        }
        None => DEFAULT_SCHEDULE.to_string(),
    };
    let poll_min = duration(&root, "poll_min", errs).unwrap_or(Duration::from_secs(10));
    let poll_max = duration(&root, "poll_max", errs).unwrap_or(Duration::from_secs(600));
    if poll_min > poll_max {
        // Point at whichever of the two the file actually sets.
        let (key, span) = match (root.get("poll_min"), root.get("poll_max")) {
            (Some(v), _) => ("poll_min", v.span()),
            (None, Some(v)) => ("poll_max", v.span()),
            (None, None) => ("poll_min", 0..0),
        };
        errs.push(
            span,
            key,
            format!(
                "poll_min ({}) is longer than poll_max ({})",
                humantime::format_duration(poll_min),
                humantime::format_duration(poll_max)
            ),
        );
    }
    if poll_min.is_zero() {
        if let Some(v) = root.get("poll_min") {
            errs.push(v.span(), "poll_min", "must be longer than zero");
        }
    }
    let log_format = match root.str("log_format", errs) {
        Some((s, span)) => match s.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                errs.push(span, "log_format", "must be \"text\" or \"json\"");
                LogFormat::Text
            }
        },
        None => LogFormat::Text,
    };
    let cas = cas_settings(&root, errs);
    let alidns = alidns_settings(&root, errs);
    let credentials = credentials_settings(&root, errs);
    let metrics = metrics_settings(&root, errs);
    let control_socket = match root.str("control_socket", errs) {
        Some((s, span)) => abs_path(&s, span, "control_socket", errs),
        None => state_dir.join("control.sock"),
    };
    let concurrency = match root.int("concurrency", errs) {
        Some((n, span)) => {
            if !(1..=256).contains(&n) {
                errs.push(span, "concurrency", "must be between 1 and 256");
                8
            } else {
                n as usize
            }
        }
        None => 8,
    };

    let defaults = match root.table("defaults", errs) {
        Some(t) => {
            t.unknown_keys(PER_CERT_KEYS, errs);
            overridable(&t, errs)
        }
        None => Overridable::default(),
    };
    let certificates = certificates(&root, &defaults, errs);

    Some(Config {
        source: source.map(Path::to_path_buf),
        state_dir,
        output_dir,
        check_schedule,
        poll_min,
        poll_max,
        log_format,
        cas,
        alidns,
        credentials,
        metrics,
        control_socket,
        concurrency,
        certificates,
    })
}

/// Validates a cron expression the way tokio-cron-scheduler will parse it (seconds required).
pub(crate) fn check_cron(expr: &str) -> Result<(), String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map(|_| ())
        .map_err(|e| {
            format!("not a valid cron expression with seconds (like \"0 */10 * * * *\"): {e}")
        })
}

fn abs_path(s: &str, span: Range<usize>, key: &str, errs: &mut Errors) -> PathBuf {
    let p = PathBuf::from(s);
    if s.is_empty() {
        errs.push(span, key, "empty path");
    } else if !p.is_absolute() {
        errs.push(span, key, "must be an absolute path");
    }
    p
}

fn path_or(t: &Tbl, k: &str, default: &str, errs: &mut Errors) -> PathBuf {
    match t.str(k, errs) {
        Some((s, span)) => abs_path(&s, span, &t.key(k), errs),
        None => PathBuf::from(default),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like \"30s\", \"10m\" or \"2h\": {e}"))
}

fn duration(t: &Tbl, k: &str, errs: &mut Errors) -> Option<Duration> {
    let (s, span) = t.str(k, errs)?;
    match parse_duration(&s) {
        Ok(d) => Some(d),
        Err(e) => {
            errs.push(span, &t.key(k), e);
            None
        }
    }
}

fn endpoint(t: &Tbl, k: &str, default: &str, errs: &mut Errors) -> url::Url {
    let parsed = match t.str(k, errs) {
        None => None,
        Some((s, span)) => match check_endpoint(&s) {
            Ok(u) => Some(u),
            Err(e) => {
                errs.push(span, &t.key(k), e);
                None
            }
        },
    };
    parsed.unwrap_or_else(|| endpoint_default(default))
}

/// `https://` anywhere, `http://` only to a loopback host.
pub(crate) fn check_endpoint(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => return Err(format!("{s:?} has no host")),
    };
    match u.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(
                "plain http is only allowed to a loopback address; use https://".to_string(),
            )
        }
        other => return Err(format!("scheme {other:?} is not supported; use https://")),
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("credentials do not belong in the endpoint URL".into());
    }
    if u.query().is_some() {
        return Err("the endpoint may not have a query string".into());
    }
    Ok(u)
}

fn cas_settings(root: &Tbl, errs: &mut Errors) -> CasSettings {
    let t = root.table("cas", errs);
    let mut s = CasSettings {
        endpoint: endpoint_default("https://cas.aliyuncs.com"),
        signature: SignatureVersion::V1,
        connect_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(30),
        qps: 10.0,
        qps_overrides: Vec::new(),
        max_attempts: 4,
        max_retry_time: Duration::from_secs(60),
    };
    let Some(t) = t else { return s };
    t.unknown_keys(
        &[
            "endpoint",
            "signature",
            "connect_timeout",
            "read_timeout",
            "qps",
            "qps_per_action",
            "max_attempts",
            "max_retry_time",
        ],
        errs,
    );
    s.endpoint = endpoint(&t, "endpoint", "https://cas.aliyuncs.com", errs);
    if let Some((v, span)) = t.str("signature", errs) {
        match v.to_ascii_lowercase().as_str() {
            "v1" => s.signature = SignatureVersion::V1,
            "v3" => s.signature = SignatureVersion::V3,
            _ => errs.push(span, &t.key("signature"), "must be \"v1\" or \"v3\""),
        }
    }
    for (k, slot) in [
        ("connect_timeout", &mut s.connect_timeout),
        ("read_timeout", &mut s.read_timeout),
        ("max_retry_time", &mut s.max_retry_time),
    ] {
        if let Some(d) = duration(&t, k, errs) {
            if d.is_zero() {
                if let Some(v) = t.get(k) {
                    errs.push(v.span(), &t.key(k), "must be longer than zero");
                }
            }
            *slot = d;
        }
    }
    if let Some((q, span)) = t.float("qps", errs) {
        if q > 0.0 && q.is_finite() {
            s.qps = q;
        } else {
            errs.push(span, &t.key("qps"), "must be a positive number");
        }
    }
    if let Some(per) = t.table("qps_per_action", errs) {
        for (k, v) in per.table.iter() {
            let action: &str = k.get_ref().as_ref();
            let key = per.key(action);
            if action.is_empty() || !action.chars().all(|c| c.is_ascii_alphanumeric()) {
                errs.push(k.span(), &key, "not an API action name");
                continue;
            }
            match per.float(action, errs) {
                Some((q, _)) if q > 0.0 && q.is_finite() => {
                    s.qps_overrides.push((action.to_string(), q))
                }
                Some(_) => errs.push(v.span(), &key, "must be a positive number"),
                None => {}
            }
        }
    }
    if let Some((n, span)) = t.int("max_attempts", errs) {
        if (1..=20).contains(&n) {
            s.max_attempts = n as u32;
        } else {
            errs.push(span, &t.key("max_attempts"), "must be between 1 and 20");
        }
    }
    s
}

#[allow(clippy::unwrap_used)] // only called with literals that parse
fn endpoint_default(s: &str) -> url::Url {
    url::Url::parse(s).unwrap()
}

fn alidns_settings(root: &Tbl, errs: &mut Errors) -> AlidnsSettings {
    let mut s = AlidnsSettings {
        endpoint: endpoint_default("https://alidns.aliyuncs.com"),
    };
    if let Some(t) = root.table("alidns", errs) {
        t.unknown_keys(&["endpoint"], errs);
        s.endpoint = endpoint(&t, "endpoint", "https://alidns.aliyuncs.com", errs);
    }
    s
}

fn credentials_settings(root: &Tbl, errs: &mut Errors) -> CredentialsSettings {
    let mut s = CredentialsSettings::default();
    if let Some(t) = root.table("credentials", errs) {
        t.unknown_keys(&["file", "ecs_ram_role"], errs);
        if let Some((f, span)) = t.str("file", errs) {
            s.file = Some(abs_path(&f, span, &t.key("file"), errs));
        }
        if let Some((r, span)) = t.str("ecs_ram_role", errs) {
            if r.is_empty()
                || !r
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                errs.push(span, &t.key("ecs_ram_role"), "not a RAM role name");
            }
            s.ecs_ram_role = Some(r);
        }
    }
    s
}

fn metrics_settings(root: &Tbl, errs: &mut Errors) -> Option<MetricsSettings> {
    let t = root.table("metrics", errs)?;
    t.unknown_keys(&["listen"], errs);
    let Some((l, span)) = t.str("listen", errs) else {
        errs.push(
            t.span.clone(),
            &t.key("listen"),
            "missing; give an address like \"127.0.0.1:9477\"",
        );
        return None;
    };
    match l.parse() {
        Ok(addr) => Some(MetricsSettings { listen: addr }),
        Err(_) => {
            errs.push(
                span,
                &t.key("listen"),
                format!("{l:?} is not an address like \"127.0.0.1:9477\""),
            );
            None
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

fn overridable(t: &Tbl, errs: &mut Errors) -> Overridable {
    let mut o = Overridable::default();
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
    o
}

/// `reload = ["argv", ...]` or `reload = { argv = [...], timeout = "60s" }`.
fn hook(v: &Spanned<DeValue<'_>>, key: &str, errs: &mut Errors) -> Option<Hook> {
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

fn validation(t: &Tbl, wildcard: bool, errs: &mut Errors) -> Option<(Validation, Range<usize>)> {
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
                Some((w, span)) => Validation::File {
                    webroot: abs_path(&w, span, &v.key("webroot"), errs),
                },
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
    Some((out, v.span.clone()))
}

fn certificates(root: &Tbl, defaults: &Overridable, errs: &mut Errors) -> Vec<Certificate> {
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
    let mut out = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("certificate[{i}]");
        let DeValue::Table(t) = item.get_ref() else {
            errs.push(item.span(), &path, "expected a table");
            continue;
        };
        let t = Tbl::new(t, &path, item.span());
        let mut allowed = vec!["name", "domains", "validation"];
        allowed.extend_from_slice(PER_CERT_KEYS);
        t.unknown_keys(&allowed, errs);

        let name = match t.str("name", errs) {
            Some((n, span)) => {
                if let Err(e) = safe_name(&n) {
                    errs.push(span, &t.key("name"), e);
                } else if names.contains(&n) {
                    errs.push(
                        span,
                        &t.key("name"),
                        format!("{n:?} is used by an earlier certificate; names must be unique"),
                    );
                }
                names.push(n.clone());
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
        let domains = cert_domains(&t, errs);
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
        let (Some(name), Some((validation, _)), Some(contact)) = (name, validation, o.contact)
        else {
            continue;
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
        out.push(Certificate {
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
        });
    }
    out
}

fn cert_domains(t: &Tbl, errs: &mut Errors) -> Vec<String> {
    let key = t.key("domains");
    let Some((items, span)) = t.str_list("domains", errs) else {
        if t.get("domains").is_none() {
            errs.push(
                t.span.clone(),
                &key,
                "missing: the names the certificate covers",
            );
        }
        return Vec::new();
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
    for (i, (d, dspan)) in items.iter().enumerate() {
        let dkey = format!("{key}[{i}]");
        match normalize_domain(d) {
            Ok(n) if out.contains(&n) => {
                errs.push(dspan.clone(), &dkey, format!("{n:?} is listed twice"))
            }
            Ok(n) => out.push(n),
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
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cron_needs_seconds() {
        assert!(check_cron("0 */10 * * * *").is_ok());
        assert!(check_cron("*/10 * * * *").is_err());
        assert!(check_cron("0 61 * * * *").is_err());
    }

    #[test]
    fn endpoints() {
        assert!(check_endpoint("https://cas.aliyuncs.com").is_ok());
        assert!(check_endpoint("http://127.0.0.1:8080").is_ok());
        assert!(check_endpoint("http://[::1]:8080").is_ok());
        assert!(check_endpoint("http://localhost:1").is_ok());
        assert!(check_endpoint("http://cas.aliyuncs.com").is_err());
        assert!(check_endpoint("ftp://x.example").is_err());
        assert!(check_endpoint("https://u:p@x.example").is_err());
    }

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
