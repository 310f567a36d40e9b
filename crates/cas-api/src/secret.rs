//! `Secret`: a string that never shows itself in `Debug`, `Display` or logs.
//!
//! AccessKey secrets, security tokens and private keys are held in this type so that a stray
//! `{:?}` in a log line or an error cannot leak them.

/// A secret string. `Debug` and `Display` print `***`; use [`Secret::expose`] where the
/// value is really needed (signing, writing a key file).
#[derive(Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself. Call sites are few and greppable on purpose.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Secrets the daemon holds (AccessKey secrets, security tokens), remembered so that what a hook
/// or validator prints can be redacted before it is logged. Bounded: temporary credentials are
/// refreshed for as long as the daemon runs, and only the recent ones can still be in use.
static HELD: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
const HELD_MAX: usize = 32;
/// Shorter values are not remembered: redacting them would mangle ordinary text, and no real
/// AccessKey secret or token is this short.
const HELD_MIN_LEN: usize = 8;
/// What a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

fn held() -> std::sync::MutexGuard<'static, Vec<String>> {
    // The list is only pushed to and read: a panic elsewhere cannot leave it inconsistent.
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Remembers `s` as a secret the daemon holds, for [`redact`].
pub fn remember(s: &Secret) {
    let v = s.expose();
    if v.len() < HELD_MIN_LEN {
        return;
    }
    let mut h = held();
    if h.iter().any(|x| x == v) {
        return;
    }
    if h.len() >= HELD_MAX {
        h.remove(0);
    }
    h.push(v.to_string());
}

/// `text` without any remembered secret and without any PEM private key (from its BEGIN line
/// to its END line, or to the end of the text when cut off), each replaced by [`REDACTED`].
pub fn redact(text: &str) -> String {
    let mut out = redact_pem_keys(text);
    for v in held().iter() {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), REDACTED);
        }
    }
    out
}

fn redact_pem_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let Some(label_end) = rest[begin + 11..].find("-----") else {
            break;
        };
        let label = &rest[begin + 11..begin + 11 + label_end];
        if !label.ends_with("PRIVATE KEY") {
            out.push_str(&rest[..begin + 11]);
            rest = &rest[begin + 11..];
            continue;
        }
        out.push_str(&rest[..begin]);
        out.push_str(REDACTED);
        let end_marker = format!("-----END {label}-----");
        rest = match rest[begin..].find(&end_marker) {
            Some(e) => &rest[begin + e + end_marker.len()..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_removes_held_secrets_and_private_keys() {
        remember(&Secret::new("held-secret-Zx81"));
        remember(&Secret::new("short"));
        let text =
            "a held-secret-Zx81 b\n-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n\
            -----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\nafter short\n\
            -----BEGIN PRIVATE KEY-----\nMIGHAgEA cut off";
        assert_eq!(
            redact(text),
            "a [redacted] b\n-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n\
            [redacted]\nafter short\n[redacted]"
        );
        assert_eq!(redact("nothing here"), "nothing here");
    }
    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(s.expose(), "hunter2");
    }
}
