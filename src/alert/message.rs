//! One notification: a log event's name, level, time, message and fields, and the three ways it
//! is written out: JSON (the generic webhook, a command's stdin), environment variables (a
//! command) and text (the chat services).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// A field's value is cut to this many characters (a hook's output tail is 2 KiB, its log
/// field 4 KiB: enough to say what went wrong in a chat message).
pub const VALUE_CAP: usize = 1000;
/// The prefix of every variable a command gets.
pub const ENV_PREFIX: &str = "CAS_CERTD_EVENT";

#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub event: String,
    /// `ERROR`, `WARN`, `INFO`, …
    pub level: String,
    pub time: DateTime<Utc>,
    pub message: String,
    /// The event's other fields, in the order it gives them.
    pub fields: Vec<(String, Value)>,
    /// Notifications of this event held back by the rate limit since the last one sent.
    pub suppressed: u64,
}

/// The names every notification has; a field of the same name is left out.
const TOP: [&str; 6] = ["event", "level", "time", "host", "message", "suppressed"];

impl Alert {
    /// `{"event", "level", "time", "host", "message", "suppressed", <fields>…}`, flat like a
    /// JSON log line.
    pub fn json(&self, host: &str) -> Value {
        let mut m = Map::new();
        m.insert("event".into(), self.event.clone().into());
        m.insert("level".into(), self.level.clone().into());
        m.insert("time".into(), self.time_text().into());
        m.insert("host".into(), host.into());
        m.insert("message".into(), self.message.clone().into());
        m.insert("suppressed".into(), self.suppressed.into());
        for (k, v) in &self.fields {
            if !TOP.contains(&k.as_str()) {
                m.insert(k.clone(), v.clone());
            }
        }
        Value::Object(m)
    }

    /// The same as [`Alert::json`], as `CAS_CERTD_EVENT` (the name) and `CAS_CERTD_EVENT_<KEY>`
    /// (upper case) for the rest; lists and objects as JSON text.
    pub fn env(&self, host: &str) -> Vec<(String, String)> {
        let Value::Object(m) = self.json(host) else {
            return Vec::new();
        };
        m.into_iter()
            .map(|(k, v)| {
                let name = if k == "event" {
                    ENV_PREFIX.to_string()
                } else {
                    format!("{ENV_PREFIX}_{}", k.to_ascii_uppercase())
                };
                // A NUL cannot be passed in the environment.
                (name, plain(&v).replace('\0', ""))
            })
            .collect()
    }

    /// For people: a title line, the message, then `key: value` lines.
    pub fn text(&self, host: &str) -> String {
        let mut out = format!(
            "cas-certd on {host}: {} ({})\n{}",
            self.event,
            self.level.to_ascii_lowercase(),
            self.message
        );
        for (k, v) in &self.fields {
            if !TOP.contains(&k.as_str()) {
                out.push_str(&format!("\n{k}: {}", plain(v)));
            }
        }
        if self.suppressed > 0 {
            out.push_str(&format!(
                "\n({} more of this event held back by the rate limit)",
                self.suppressed
            ));
        }
        out.push_str(&format!("\ntime: {}", self.time_text()));
        out
    }

    fn time_text(&self) -> String {
        self.time.to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

/// A value as text: strings without quotes, the rest as JSON.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `s` cut to [`VALUE_CAP`] characters, marked when cut.
pub fn capped(s: &str) -> String {
    match s.char_indices().nth(VALUE_CAP) {
        None => s.to_string(),
        Some((i, _)) => format!("{} […]", &s[..i]),
    }
}

/// This machine's name, for the title of a notification.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown host".to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Alert {
        Alert {
            event: "hook.failed".into(),
            level: "ERROR".into(),
            time: DateTime::parse_from_rfc3339("2026-12-02T07:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            message: "reload hook failed; will retry".into(),
            fields: vec![
                ("cert".into(), "www".into()),
                ("attempt".into(), 2.into()),
                ("level".into(), "shadowed".into()),
            ],
            suppressed: 3,
        }
    }

    #[test]
    fn json_env_and_text_carry_the_same_fields() {
        let a = sample();
        let j = a.json("h1");
        assert_eq!(j["event"], "hook.failed");
        assert_eq!(j["level"], "ERROR");
        assert_eq!(j["time"], "2026-12-02T07:00:00Z");
        assert_eq!(j["host"], "h1");
        assert_eq!(j["cert"], "www");
        assert_eq!(j["attempt"], 2);
        assert_eq!(j["suppressed"], 3);
        let env: std::collections::HashMap<_, _> = a.env("h1").into_iter().collect();
        assert_eq!(env["CAS_CERTD_EVENT"], "hook.failed");
        assert_eq!(env["CAS_CERTD_EVENT_LEVEL"], "ERROR");
        assert_eq!(env["CAS_CERTD_EVENT_CERT"], "www");
        assert_eq!(env["CAS_CERTD_EVENT_ATTEMPT"], "2");
        assert_eq!(
            env["CAS_CERTD_EVENT_MESSAGE"],
            "reload hook failed; will retry"
        );
        assert_eq!(env.len(), j.as_object().unwrap().len());
        let t = a.text("h1");
        assert!(
            t.starts_with("cas-certd on h1: hook.failed (error)\nreload hook failed"),
            "{t}"
        );
        assert!(t.contains("\ncert: www\nattempt: 2\n"), "{t}");
        assert!(!t.contains("shadowed"), "{t}");
        assert!(t.contains("3 more of this event"), "{t}");
    }

    #[test]
    fn long_values_are_capped_at_a_character_boundary() {
        let s = "é".repeat(VALUE_CAP + 5);
        let c = capped(&s);
        assert!(
            c.ends_with(" […]") && c.chars().count() == VALUE_CAP + 4,
            "{}",
            c.len()
        );
        assert_eq!(capped("short"), "short");
    }
}
