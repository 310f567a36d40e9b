//! `[notify]`: which log events are sent where (an argv command, webhooks), and how often.
//! What is sent and how is `crate::alert`; this file only reads and checks the table.

use std::path::PathBuf;
use std::time::Duration;

use toml::de::DeValue;
use toml::Spanned;

use super::build::abs_path;
use super::hook::hook;
use super::model::Hook;
use super::walk::{Errors, Tbl};
use crate::alert;
use cas_api::secret::Secret;

/// The validated `[notify]` table. Without one: no notifier, nothing sent.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifySettings {
    /// Event names sent; `None`: every event ([`alert::ALL_EVENTS`] was given as `"*"`).
    pub events: Option<Vec<String>>,
    /// At most this many notifications of one event in any window of this length.
    pub rate: RateLimit,
    /// Run with the event as JSON on stdin and as `CAS_CERTD_EVENT*` variables.
    pub command: Option<Hook>,
    pub webhooks: Vec<WebhookSettings>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            events: Some(
                alert::DEFAULT_EVENTS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
            rate: RateLimit::default(),
            command: None,
            webhooks: Vec::new(),
        }
    }
}

impl NotifySettings {
    /// Whether anything would be sent.
    pub fn has_targets(&self) -> bool {
        self.command.is_some() || !self.webhooks.is_empty()
    }
}

/// `rate_limit = "N/DURATION"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: Duration,
}

impl Default for RateLimit {
    /// Six an hour: a failure retried with backoff is heard about, not every retry.
    fn default() -> Self {
        RateLimit {
            count: 6,
            per: Duration::from_secs(3600),
        }
    }
}

/// The message shapes of the chat services, and plain JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    DingTalk,
    WeCom,
    Feishu,
    Slack,
    Generic,
}

impl WebhookFormat {
    pub const ALL: [(&'static str, WebhookFormat); 5] = [
        ("dingtalk", WebhookFormat::DingTalk),
        ("wecom", WebhookFormat::WeCom),
        ("feishu", WebhookFormat::Feishu),
        ("slack", WebhookFormat::Slack),
        ("generic", WebhookFormat::Generic),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("generic", |(n, _)| n)
    }

    /// Whether a `secret` means anything to this service (WeCom and Slack robots are not
    /// signed: their URL is the secret).
    pub fn signed(self) -> bool {
        matches!(
            self,
            WebhookFormat::DingTalk | WebhookFormat::Feishu | WebhookFormat::Generic
        )
    }
}

/// Where a webhook's URL and signing secret come from.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookSource {
    /// Written in the config.
    Inline { url: Secret, secret: Option<Secret> },
    /// A private file (mode 0600, like a credentials file) with `url = …` and `secret = …`
    /// lines, read when the daemon starts or reloads.
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    pub format: WebhookFormat,
    pub source: WebhookSource,
}

const KEYS: &[&str] = &["events", "rate_limit", "command", "webhook"];
const WEBHOOK_KEYS: &[&str] = &["url", "format", "secret", "credentials"];

/// `[notify]`, when the file has one.
pub(super) fn settings(root: &Tbl, errs: &mut Errors) -> Option<NotifySettings> {
    let t = root.table("notify", errs)?;
    t.unknown_keys(KEYS, errs);
    let mut s = NotifySettings::default();
    if let Some((names, span)) = t.str_list("events", errs) {
        if names.iter().any(|(n, _)| n == "*") {
            s.events = None;
        } else {
            for (n, span) in &names {
                if let Err(e) = alert::check_event_name(n) {
                    errs.push(span.clone(), &t.key("events"), e);
                }
            }
            if names.is_empty() {
                errs.push(
                    span,
                    &t.key("events"),
                    "empty: name at least one event, or leave `events` out for the default",
                );
            }
            s.events = Some(names.into_iter().map(|(n, _)| n).collect());
        }
    }
    if let Some((r, span)) = t.str("rate_limit", errs) {
        match parse_rate(&r) {
            Ok(rate) => s.rate = rate,
            Err(e) => errs.push(span, &t.key("rate_limit"), e),
        }
    }
    if let Some(v) = t.get("command") {
        s.command = hook(v, &t.key("command"), errs);
    }
    if let Some(v) = t.get("webhook") {
        let key = t.key("webhook");
        match v.get_ref() {
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(w) = webhook(item, &format!("{key}[{i}]"), errs) {
                        s.webhooks.push(w);
                    }
                }
            }
            _ => s.webhooks.extend(webhook(v, &key, errs)),
        }
    }
    if !s.has_targets() {
        errs.push(
            t.span.clone(),
            "notify",
            "nothing to send to: give `command` or `webhook`",
        );
    }
    Some(s)
}

/// `N/DURATION`, e.g. `6/1h`: N at least 1.
fn parse_rate(s: &str) -> Result<RateLimit, String> {
    let bad = || format!("{s:?} is not a rate like \"6/1h\" (at most 6 of one event an hour)");
    let (n, per) = s.split_once('/').ok_or_else(bad)?;
    let count: u32 = n.trim().parse().map_err(|_| bad())?;
    let per = humantime::parse_duration(per.trim()).map_err(|_| bad())?;
    if count == 0 || per.is_zero() {
        return Err(bad());
    }
    Ok(RateLimit { count, per })
}

fn webhook(v: &Spanned<DeValue<'_>>, key: &str, errs: &mut Errors) -> Option<WebhookSettings> {
    let DeValue::Table(t) = v.get_ref() else {
        errs.wrong_type(
            v.span(),
            key,
            "a table { url = \"https://…\", format = \"dingtalk\" } or a list of them",
            v.get_ref(),
        );
        return None;
    };
    let t = Tbl::new(t, key, v.span());
    t.unknown_keys(WEBHOOK_KEYS, errs);
    let format = match t.str("format", errs) {
        Some((f, span)) => match WebhookFormat::ALL.iter().find(|(n, _)| *n == f) {
            Some((_, f)) => *f,
            None => {
                let names: Vec<&str> = WebhookFormat::ALL.iter().map(|(n, _)| *n).collect();
                errs.push(
                    span,
                    &t.key("format"),
                    format!("must be one of: {}", names.join(", ")),
                );
                return None;
            }
        },
        None => {
            errs.push(
                t.span.clone(),
                &t.key("format"),
                "missing: dingtalk, wecom, feishu, slack or generic",
            );
            return None;
        }
    };
    let url = t.str("url", errs);
    let secret = t.str("secret", errs);
    let file = t.str("credentials", errs);
    if let (false, Some((_, span))) = (format.signed(), &secret) {
        errs.push(
            span.clone(),
            &t.key("secret"),
            format!(
                "{} webhooks are not signed (the URL is their secret): remove `secret`",
                format.name()
            ),
        );
    }
    let source = match (url, file) {
        (Some(_), Some((_, span))) => {
            errs.push(
                span,
                &t.key("credentials"),
                "give `url` (and `secret`) or `credentials`, not both",
            );
            return None;
        }
        (Some((u, span)), None) => {
            if let Err(e) = alert::check_webhook_url(&u) {
                errs.push(span, &t.key("url"), e);
            }
            WebhookSource::Inline {
                url: Secret::new(u),
                secret: secret.map(|(s, _)| Secret::new(s)),
            }
        }
        (None, Some((f, span))) => {
            if let Some((_, span)) = secret {
                errs.push(
                    span,
                    &t.key("secret"),
                    "with `credentials`, the secret goes in that file",
                );
            }
            WebhookSource::File(abs_path(&f, span, &t.key("credentials"), errs))
        }
        (None, None) => {
            errs.push(
                t.span.clone(),
                &t.key("url"),
                "missing: the webhook's https:// URL, or `credentials` naming a file with it",
            );
            return None;
        }
    };
    Some(WebhookSettings { format, source })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<crate::config::Config, Vec<String>> {
        crate::config::parse(text, None).map_err(|e| e.errors)
    }

    #[test]
    fn without_notify_nothing_is_sent_and_the_defaults_are_failures_and_warnings() {
        let c = parse("").unwrap();
        assert!(c.notify.is_none());
        let c = parse("[notify]\ncommand = [\"/bin/true\"]\n").unwrap();
        let n = c.notify.unwrap();
        let events = n.events.unwrap();
        assert!(events.contains(&"cert.renew_failed".to_string()));
        assert!(events.contains(&"hook.failed".to_string()));
        assert!(!events.contains(&"cert.deployed".to_string()));
        assert_eq!(n.rate, RateLimit::default());
        assert_eq!(n.command.unwrap().argv, ["/bin/true"]);
    }

    #[test]
    fn webhooks_inline_in_a_list_or_from_a_file() {
        let c = parse(
            r#"[notify]
events = ["cert.deployed", "hook.failed"]
rate_limit = "3/10m"
webhook = [
  { url = "https://oapi.dingtalk.com/robot/send?access_token=abc", format = "dingtalk", secret = "SECx" },
  { credentials = "/etc/cas-certd/feishu", format = "feishu" },
]
"#,
        )
        .unwrap();
        let n = c.notify.unwrap();
        assert_eq!(
            n.rate,
            RateLimit {
                count: 3,
                per: Duration::from_secs(600)
            }
        );
        assert_eq!(n.webhooks.len(), 2);
        assert_eq!(n.webhooks[0].format, WebhookFormat::DingTalk);
        assert!(
            matches!(&n.webhooks[0].source, WebhookSource::Inline { url, secret: Some(s) }
            if url.expose().contains("access_token=abc") && s.expose() == "SECx")
        );
        assert_eq!(
            n.webhooks[1].source,
            WebhookSource::File("/etc/cas-certd/feishu".into())
        );
        // The table form of one webhook, and `*`.
        let c = parse(
            "[notify]\nevents = [\"*\"]\n[notify.webhook]\nurl = \"http://127.0.0.1:9/x\"\nformat = \"generic\"\n",
        )
        .unwrap();
        assert_eq!(c.notify.unwrap().events, None);
    }

    #[test]
    fn bad_notify_tables_name_the_line_and_the_key() {
        let errs = parse(
            r#"[notify]
events = ["cert.renew_faild"]
rate_limit = "0/1h"
webhook = [
  { url = "http://hooks.example.com/x", format = "slack" },
  { url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k", format = "wecom", secret = "s" },
  { url = "https://x.example", format = "teams" },
  { url = "https://x.example", credentials = "/etc/x", format = "generic" },
  { format = "feishu" },
]
"#,
        )
        .unwrap_err();
        let all = errs.join("\n");
        for want in [
            "<config>:2:11: notify.events: unknown event \"cert.renew_faild\"",
            "<config>:3:14: notify.rate_limit: \"0/1h\" is not a rate",
            "<config>:5:11: notify.webhook[0].url: plain http:// is only allowed for loopback",
            "<config>:6:96: notify.webhook[1].secret: wecom webhooks are not signed",
            "<config>:7:41: notify.webhook[2].format: must be one of: dingtalk, wecom, feishu, slack, generic",
            "<config>:8:46: notify.webhook[3].credentials: give `url` (and `secret`) or `credentials`, not both",
            "<config>:9:3: notify.webhook[4].url: missing",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
        let errs = parse("[notify]\nevents = [\"hook.failed\"]\n").unwrap_err();
        assert!(errs[0].contains("nothing to send to"), "{errs:?}");
    }
}
