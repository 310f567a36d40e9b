//! The FILE proof as the CA fetches it: `GET http://<domain>/.well-known/pki-validation/
//! fileauth.txt` on port 80 of the address the system resolver gives (or `self_check_resolve`
//! says), with a short timeout and a body cap, comparing the trimmed body with the content.
//!
//! Redirects: the CA's rules are not published for CAS; what is safe to assume is a plain
//! http fetch of that host. So at most [`MAX_REDIRECTS`] redirects are followed, and only to
//! a path on the same host over http on port 80; anything else (https, another host or port)
//! is reported as a failure and not fetched.
use std::net::SocketAddr;
use std::time::Duration;

use super::{FailureKind, ProofCheck, ProofFailure};

/// Bytes of body read at most: the proof is one short line.
pub const BODY_CAP: usize = 4096;
pub const MAX_REDIRECTS: usize = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(10);

/// Does `pattern` (`*.example.com` or a plain name) cover `domain`? One label for `*.`.
fn pattern_matches(pattern: &str, domain: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(base) => domain
            .strip_suffix(base)
            .and_then(|rest| rest.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        None => pattern.eq_ignore_ascii_case(domain),
    }
}

/// The override for `domain`: an exact entry first, else the first matching pattern.
pub fn resolve_override(map: &[(String, SocketAddr)], domain: &str) -> Option<SocketAddr> {
    map.iter()
        .find(|(p, _)| p.eq_ignore_ascii_case(domain))
        .or_else(|| map.iter().find(|(p, _)| pattern_matches(p, domain)))
        .map(|(_, a)| *a)
}

/// Where the fetch connects: the override, or the system resolver's first address on port 80.
async fn address(map: &[(String, SocketAddr)], domain: &str) -> Result<SocketAddr, ProofFailure> {
    if let Some(a) = resolve_override(map, domain) {
        return Ok(a);
    }
    let mut addrs = tokio::net::lookup_host((domain, 80)).await.map_err(|e| {
        ProofFailure::new(
            FailureKind::Network,
            format!("cannot resolve {domain}: {e}"),
        )
    })?;
    addrs
        .next()
        .ok_or_else(|| ProofFailure::new(FailureKind::Network, format!("{domain} has no address")))
}

/// Checks that `http://domain{uri}` serves `expected`.
pub async fn check(
    map: &[(String, SocketAddr)],
    domain: &str,
    uri: &str,
    expected: &str,
) -> ProofCheck {
    let addr = address(map, domain).await?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| ProofFailure::new(FailureKind::Network, format!("HTTP client: {e}")))?;
    let mut path = uri.to_string();
    for _ in 0..=MAX_REDIRECTS {
        // The address in the URL, the name in Host: no second resolution, and the address is
        // known for the message.
        let resp = client
            .get(format!("http://{addr}{path}"))
            .header(reqwest::header::HOST, domain)
            .send()
            .await
            .map_err(|e| network(&e, addr))?;
        let status = resp.status();
        if status.is_redirection() {
            path = same_host_path(&resp, domain, addr)?;
            continue;
        }
        if status != reqwest::StatusCode::OK {
            return Err(ProofFailure::new(
                FailureKind::Http,
                format!("HTTP {} from {addr}", status.as_u16()),
            ));
        }
        return compare(resp, addr, expected).await;
    }
    Err(ProofFailure::new(
        FailureKind::Redirect,
        format!("more than {MAX_REDIRECTS} redirects from {addr}"),
    ))
}

/// The path of a redirect that stays on `http://domain/`; anything else is a failure.
fn same_host_path(
    resp: &reqwest::Response,
    domain: &str,
    addr: SocketAddr,
) -> Result<String, ProofFailure> {
    let code = resp.status().as_u16();
    let refuse = |why: &str| {
        ProofFailure::new(
            FailureKind::Redirect,
            format!("HTTP {code} from {addr} redirects {why}; the CA fetches the proof over http from {domain} itself"),
        )
    };
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refuse("without a usable Location"))?;
    let base = url::Url::parse(&format!("http://{domain}{}", resp.url().path()))
        .map_err(|_| refuse("from an unusable URL"))?;
    let to = base
        .join(location)
        .map_err(|_| refuse("to an unusable Location"))?;
    if to.scheme() != "http" {
        // The scheme is one of a few words; the rest of the Location is not repeated.
        let scheme: String = to.scheme().chars().take(10).collect();
        return Err(refuse(&format!("to {scheme}://")));
    }
    if !to
        .host_str()
        .is_some_and(|h| h.eq_ignore_ascii_case(domain))
        || to.port_or_known_default() != Some(80)
    {
        return Err(refuse("to another host or port"));
    }
    let mut path = to.path().to_string();
    if let Some(q) = to.query() {
        path.push('?');
        path.push_str(q);
    }
    Ok(path)
}

/// Reads at most [`BODY_CAP`] bytes and compares the trimmed text; the body is never shown.
async fn compare(mut resp: reqwest::Response, addr: SocketAddr, expected: &str) -> ProofCheck {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > BODY_CAP {
                    return Err(ProofFailure::new(
                        FailureKind::Content,
                        format!(
                            "content differs: the answer from {addr} is longer than {BODY_CAP} bytes"
                        ),
                    ));
                }
            }
            Ok(None) => break,
            Err(e) => return Err(network(&e, addr)),
        }
    }
    let same = std::str::from_utf8(&body).is_ok_and(|b| b.trim() == expected.trim());
    if same {
        Ok(())
    } else {
        Err(ProofFailure::new(
            FailureKind::Content,
            format!("content differs at {addr}"),
        ))
    }
}

/// A failure without an HTTP answer, named by its cause (not reqwest's text, which holds the URL).
fn network(e: &reqwest::Error, addr: SocketAddr) -> ProofFailure {
    let mut source = std::error::Error::source(e);
    let mut io_kind = None;
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        source = s.source();
    }
    let reason = match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => format!("connection refused to {addr}"),
        Some(std::io::ErrorKind::ConnectionReset) => format!("connection reset by {addr}"),
        _ if e.is_timeout() => format!(
            "no answer from {addr} within {}s",
            if e.is_connect() {
                CONNECT_TIMEOUT.as_secs()
            } else {
                TIMEOUT.as_secs()
            }
        ),
        _ if e.is_connect() => format!("cannot connect to {addr}"),
        _ => format!("bad HTTP answer from {addr}"),
    };
    ProofFailure::new(FailureKind::Network, reason)
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
