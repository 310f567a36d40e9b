//! How a [`Client`](crate::Client) talks to the APIs: endpoints, signature, timeouts, retry
//! budget and client-side rate limits. [`ClientOptions::default`] is the one home of these
//! defaults; the daemon's config and its operator commands start from it.

use std::time::Duration;

/// The public CAS endpoint.
pub const CAS_ENDPOINT: &str = "https://cas.aliyuncs.com";
/// The public Alidns endpoint.
pub const ALIDNS_ENDPOINT: &str = "https://alidns.aliyuncs.com";

/// Which RPC signature the client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum SignatureVersion {
    /// HMAC-SHA1 over the canonical query (the RPC style every SDK supports).
    #[default]
    V1,
    /// ACS3-HMAC-SHA256 over the canonical request and signed headers.
    V3,
}

/// Everything a [`Client`](crate::Client) is built from, besides the credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientOptions {
    /// CAS endpoint, checked by [`check_endpoint`].
    pub cas_endpoint: url::Url,
    /// Alidns endpoint, checked by [`check_endpoint`].
    pub alidns_endpoint: url::Url,
    pub signature: SignatureVersion,
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of an answer.
    pub read_timeout: Duration,
    /// Client-side limit per action, calls per second, unless overridden in `qps_overrides`.
    pub qps: f64,
    /// `(action, calls per second)`.
    pub qps_overrides: Vec<(String, f64)>,
    /// Failed attempts per call, at least 1 (Throttling answers have their own budget).
    pub max_attempts: u32,
    /// Time one call may spend retrying.
    pub max_retry_time: Duration,
}

impl Default for ClientOptions {
    /// The public endpoints, signature v1, 10 s to connect, 30 s per read, 10 calls per
    /// second per action, 4 attempts within 60 s per call.
    fn default() -> Self {
        ClientOptions {
            cas_endpoint: fixed_url(CAS_ENDPOINT),
            alidns_endpoint: fixed_url(ALIDNS_ENDPOINT),
            signature: SignatureVersion::V1,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            qps: 10.0,
            qps_overrides: Vec::new(),
            max_attempts: 4,
            max_retry_time: Duration::from_secs(60),
        }
    }
}

#[allow(clippy::unwrap_used)] // only called with the literals above, which parse
fn fixed_url(s: &str) -> url::Url {
    url::Url::parse(s).unwrap()
}

/// The endpoint rule: `https://` to any host, `http://` only to a loopback host (tests, the
/// simulator), no credentials and no query string in the URL (the client builds the query and
/// signs it; anything else there would be sent unsigned or leak a secret into logs).
/// The error says what is wrong and how to fix it.
pub fn check_endpoint(url: &url::Url) -> Result<(), String> {
    check_transport(url)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials do not belong in the endpoint URL".into());
    }
    if url.query().is_some() {
        return Err("the endpoint may not have a query string".into());
    }
    Ok(())
}

/// The scheme half of the endpoint rule, for any URL the daemon sends to (webhooks too):
/// `https://` to any host, `http://` only to a loopback host.
pub fn check_transport(url: &url::Url) -> Result<(), String> {
    let loopback = match url.host() {
        Some(url::Host::Domain("")) | None => return Err(format!("{url} has no host")),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => {
            Err("plain http:// is only allowed for loopback addresses; use https://".to_string())
        }
        other => Err(format!("unsupported scheme {other:?}; use https://")),
    }
}

/// Parses and checks an endpoint (`check_endpoint`), for config files and command lines.
pub fn parse_endpoint(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    check_endpoint(&u)?;
    Ok(u)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_rule() {
        let ok = |s: &str| parse_endpoint(s).is_ok();
        assert!(ok("https://cas.aliyuncs.com"));
        assert!(ok("http://127.0.0.1:8080"));
        assert!(ok("http://[::1]:8080"));
        assert!(ok("http://localhost:1"));
        assert!(ok("http://LOCALHOST:1"));
        assert!(ok("http://[::1]:8080/"));
        assert!(!ok("http://10.0.0.1"));
        assert!(!ok("ftp://127.0.0.1"));
        assert!(!ok("http://cas.aliyuncs.com"));
        assert!(!ok("ftp://x.example"));
        assert!(!ok("https://u:p@x.example"));
        assert!(!ok("https://x.example/?a=b"));
        assert!(!ok("cas"));
        assert!(parse_endpoint("http://cas.aliyuncs.com")
            .unwrap_err()
            .contains("only allowed for loopback"));
    }

    #[test]
    fn defaults_parse_and_pass_the_rule() {
        let o = ClientOptions::default();
        assert!(check_endpoint(&o.cas_endpoint).is_ok());
        assert!(check_endpoint(&o.alidns_endpoint).is_ok());
        assert!(o.max_attempts >= 1 && o.qps > 0.0);
    }
}
