//! Builds the validated [`Config`] from the spanned document, collecting every error.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::DeTable;
use toml::Spanned;

use super::cert::{certificates, overridable, split_certificates, Overridable, PER_CERT_KEYS};
use super::model::*;
use super::walk::{span_at, Errors, Tbl};
use super::{overlap, paths};

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
    "quota_warn",
    "defaults",
    "certificate",
    "notify",
    "fleet",
];
pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/cas-certd";
pub(crate) const DEFAULT_OUTPUT_DIR: &str = "/etc/cas-certd/live";
pub(crate) const DEFAULT_SCHEDULE: &str = "0 */10 * * * *";
/// `quota.low` under this many units left: a few renewals' warning before orders stop.
pub(crate) const DEFAULT_QUOTA_WARN: u32 = 3;

/// Builds the config; with `trust` (the uids the daemon trusts), also checks that the paths it
/// names are safe on this machine (`paths::check_trust`). The certificates are `doc`'s, or
/// with `split` the tables at those ranges of the text (see `split`; then `None` when one of
/// them does not parse on its own).
pub(crate) fn build(
    doc: &Spanned<DeTable<'_>>,
    split: Option<(&str, &[Range<usize>])>,
    source: Option<&Path>,
    trust: Option<&[u32]>,
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
    let api = client_options(&root, errs);
    let credentials = credentials_settings(&root, errs);
    let metrics = metrics_settings(&root, errs);
    let notify = super::notify::settings(&root, errs);
    let fleet = super::fleet::settings(&root, trust.is_some(), errs);
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
    let quota_warn = match root.int("quota_warn", errs) {
        Some((n, span)) => u32::try_from(n).unwrap_or_else(|_| {
            errs.push(
                span,
                "quota_warn",
                "must be a count of certificates, 0 or more (0: never warn)",
            );
            DEFAULT_QUOTA_WARN
        }),
        None => DEFAULT_QUOTA_WARN,
    };

    let defaults = match root.table("defaults", errs) {
        Some(t) => {
            t.unknown_keys(PER_CERT_KEYS, errs);
            overridable(&t, errs)
        }
        None => Overridable::default(),
    };
    let certificates = match split {
        None => certificates(&root, &defaults, errs),
        Some((text, ranges)) => split_certificates(text, ranges, &defaults, errs)?,
    };

    let output_span = span_at(doc.get_ref(), &["output_dir"]).unwrap_or(0..0);
    paths::check_output_dir(&output_dir, output_span.clone(), errs);
    paths::check_cert_dirs(&output_dir, &certificates, errs);
    overlap::check(&certificates, errs);
    if let Some(uids) = trust {
        let creds = credentials.file.as_deref().map(|f| {
            let span = span_at(doc.get_ref(), &["credentials", "file"]).unwrap_or(0..0);
            (f, span)
        });
        paths::check_trust((&output_dir, output_span), creds, &certificates, uids, errs);
    }
    let certificates = certificates.into_iter().map(|(c, _)| c).collect();

    Some(Config {
        source: source.map(Path::to_path_buf),
        state_dir,
        output_dir,
        check_schedule,
        poll_min,
        poll_max,
        log_format,
        api,
        credentials,
        metrics,
        notify,
        fleet,
        control_socket,
        concurrency,
        quota_warn,
        certificates,
        notes: Vec::new(),
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

pub(super) fn abs_path(s: &str, span: Range<usize>, key: &str, errs: &mut Errors) -> PathBuf {
    let p = PathBuf::from(s);
    if s.is_empty() {
        errs.push(span, key, "empty path");
    } else if !p.is_absolute() {
        errs.push(span, key, "must be an absolute path");
    } else if p.components().any(|c| c == std::path::Component::ParentDir) {
        // `..` defeats every check on where a path leads (system directories, trust).
        errs.push(span, key, "write the path without '..'");
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

pub(super) fn duration(t: &Tbl, k: &str, errs: &mut Errors) -> Option<Duration> {
    let (s, span) = t.str(k, errs)?;
    match parse_duration(&s) {
        Ok(d) => Some(d),
        Err(e) => {
            errs.push(span, &t.key(k), e);
            None
        }
    }
}

/// The endpoint at `k` when set and valid (`cas_api::parse_endpoint`: one rule for config
/// files, command lines and the client).
fn endpoint(t: &Tbl, k: &str, errs: &mut Errors) -> Option<url::Url> {
    let (s, span) = t.str(k, errs)?;
    match cas_api::options::parse_endpoint(&s) {
        Ok(u) => Some(u),
        Err(e) => {
            errs.push(span, &t.key(k), e);
            None
        }
    }
}

/// `[cas]` and `[alidns]` over [`ClientOptions::default`], the one home of the defaults.
fn client_options(root: &Tbl, errs: &mut Errors) -> ClientOptions {
    let mut s = ClientOptions::default();
    cas_settings(root, &mut s, errs);
    if let Some(t) = root.table("alidns", errs) {
        t.unknown_keys(&["endpoint"], errs);
        if let Some(u) = endpoint(&t, "endpoint", errs) {
            s.alidns_endpoint = u;
        }
    }
    s
}

fn cas_settings(root: &Tbl, s: &mut ClientOptions, errs: &mut Errors) {
    let Some(t) = root.table("cas", errs) else {
        return;
    };
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
    if let Some(u) = endpoint(&t, "endpoint", errs) {
        s.cas_endpoint = u;
    }
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
    fn client_defaults_are_cas_api_defaults() {
        // One home: a config without [cas]/[alidns] gets exactly `ClientOptions::default()`.
        let c = super::super::parse("", None).unwrap();
        assert_eq!(c.api, ClientOptions::default());
        let c = super::super::parse(
            "[cas]\nread_timeout = \"5s\"\n[alidns]\nendpoint = \"http://127.0.0.1:9\"\n",
            None,
        )
        .unwrap();
        assert_eq!(c.api.read_timeout, Duration::from_secs(5));
        assert_eq!(c.api.alidns_endpoint.as_str(), "http://127.0.0.1:9/");
        assert_eq!(
            c.api.connect_timeout,
            ClientOptions::default().connect_timeout
        );
    }
}
