//! Hostile answers (`--hostile MODE[=DOMAIN_PATTERN]`): the simulator plays a compromised or
//! broken CA so the daemon's refusals can be proven end to end. Each mode corrupts one thing
//! (the FILE challenge's Uri or content, the issued certificate, or the size of an answer) for the orders
//! whose first domain matches the pattern (every order when no pattern is given).
use std::path::Path;

use axum::body::{Body, Bytes};
use axum::response::Response;

/// What the simulator does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// FILE Uri climbing out of the webroot with `..`.
    UriDotdot,
    /// FILE Uri that is an absolute path outside any webroot (into the simulator's data dir).
    UriAbsolute,
    /// FILE Uri hiding `../` as `%2e%2e%2f`.
    UriPercent,
    /// FILE Uri with a NUL byte, which would truncate the path in C.
    UriNul,
    /// FILE Uri naming the web server's `.htaccess`, with multi-line content that would make
    /// it run `.txt` files as CGI scripts (a name CAS never asks for).
    UriHtaccess,
    /// FILE Uri as CAS asks (`fileauth.txt`) but with multi-line content.
    ContentMultiline,
    /// The certificate is issued for another domain than the order's.
    WrongDomain,
    /// The certificate certifies another key than ours (the CSR's, or the one returned).
    WrongKey,
    /// The certificate's notAfter is in the past.
    Expired,
    /// DescribeCertificateState answers with a 100 MB body.
    HugeBody,
}

impl Mode {
    /// Every mode with its name on the command line.
    pub const ALL: [(&'static str, Mode); 10] = [
        ("uri-dotdot", Mode::UriDotdot),
        ("uri-absolute", Mode::UriAbsolute),
        ("uri-percent", Mode::UriPercent),
        ("uri-nul", Mode::UriNul),
        ("uri-htaccess", Mode::UriHtaccess),
        ("content-multiline", Mode::ContentMultiline),
        ("wrong-domain", Mode::WrongDomain),
        ("wrong-key", Mode::WrongKey),
        ("expired", Mode::Expired),
        ("huge-body", Mode::HugeBody),
    ];
}

/// One `--hostile` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// What goes wrong.
    pub mode: Mode,
    /// A domain or `*.pattern`; `None` matches every order.
    pub pattern: Option<String>,
}

/// Parses `MODE[=DOMAIN_PATTERN]`.
pub fn parse(s: &str) -> Result<Rule, String> {
    let (m, pattern) = match s.split_once('=') {
        Some((m, p)) if !p.is_empty() => (m, Some(p.to_ascii_lowercase())),
        Some(_) => return Err("empty DOMAIN_PATTERN after '='".into()),
        None => (s, None),
    };
    let mode = Mode::ALL
        .iter()
        .find(|(n, _)| *n == m)
        .map(|(_, mode)| *mode)
        .ok_or_else(|| {
            let names: Vec<&str> = Mode::ALL.iter().map(|(n, _)| *n).collect();
            format!("unknown mode {m:?}; one of {}", names.join(", "))
        })?;
    Ok(Rule { mode, pattern })
}

/// The first rule's mode that applies to an order whose first domain is `domain`.
pub(crate) fn mode_for(rules: &[Rule], domain: &str) -> Option<Mode> {
    rules
        .iter()
        .find(|r| {
            r.pattern.as_deref().is_none_or(|p| {
                super::validate::pattern_matches(p, domain) || p.eq_ignore_ascii_case(domain)
            })
        })
        .map(|r| r.mode)
}

/// The Uri a hostile FILE challenge carries, or `None` for modes that leave it alone.
/// The absolute one points into `data_dir`, a place the test can check stays clean.
pub fn file_uri(mode: Mode, data_dir: &Path) -> Option<String> {
    const P: &str = "/.well-known/pki-validation/";
    match mode {
        Mode::UriDotdot => Some(format!("{P}../../../canary/pwned-dotdot.txt")),
        Mode::UriAbsolute => {
            let abs = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
            Some(abs.join("pwned-absolute.txt").display().to_string())
        }
        Mode::UriPercent => Some(format!(
            "{P}%2e%2e%2f%2e%2e%2f%2e%2e%2fcanary%2fpwned-percent.txt"
        )),
        Mode::UriNul => Some(format!(
            "{P}fileauth.txt\u{0}/../../../canary/pwned-nul.txt"
        )),
        Mode::UriHtaccess => Some(format!("{P}.htaccess")),
        _ => None,
    }
}

/// The Content a hostile FILE challenge carries instead of the token, or `None` to keep it.
pub fn file_content(mode: Mode, token: &str) -> Option<String> {
    match mode {
        Mode::UriHtaccess => Some(format!(
            "AddHandler cgi-script .txt\nOptions +ExecCGI\n# {token}"
        )),
        Mode::ContentMultiline => Some(format!("{token}\n<script>alert(1)</script>")),
        _ => None,
    }
}

/// Size of the [`Mode::HugeBody`] answer.
pub(crate) const HUGE_BODY_BYTES: usize = 100 << 20;

/// A 200 answer that starts like a certificate and goes on for 100 MB, streamed in 64 KiB
/// chunks without a Content-Length, so only a reader that caps what it buffers survives it.
/// Streaming keeps the simulator itself small; a client that hangs up stops the stream.
pub(crate) fn huge_body() -> Response {
    const CHUNK: usize = 64 << 10;
    let head = Bytes::from_static(b"{\"Type\":\"certificate\",\"Certificate\":\"");
    let fill = Bytes::from(vec![b'A'; CHUNK]);
    let n = HUGE_BODY_BYTES / CHUNK;
    let chunks = std::iter::once(head)
        .chain(std::iter::repeat_n(fill, n))
        .chain(std::iter::once(Bytes::from_static(b"\"}")))
        .map(Ok::<Bytes, std::io::Error>);
    let mut r = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json;charset=utf-8"),
    );
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_modes_and_patterns() {
        assert_eq!(
            parse("expired=*.bad.example.com").unwrap(),
            Rule {
                mode: Mode::Expired,
                pattern: Some("*.bad.example.com".into())
            }
        );
        assert_eq!(parse("huge-body").unwrap().pattern, None);
        assert!(parse("nonsense").unwrap_err().contains("uri-dotdot"));
        assert!(parse("expired=").is_err());
        let rules = [
            parse("wrong-key=a.example.com").unwrap(),
            parse("expired=*.example.com").unwrap(),
        ];
        assert_eq!(mode_for(&rules, "a.example.com"), Some(Mode::WrongKey));
        assert_eq!(mode_for(&rules, "b.example.com"), Some(Mode::Expired));
        assert_eq!(mode_for(&rules, "example.org"), None);
    }
}
