//! Domain validation as the CA does it: FILE fetches `http://<domain><uri>` (through the
//! `--resolve` map when a pattern matches) and compares the body; DNS looks for the TXT
//! record among the simulator's own Alidns records.
use std::net::SocketAddr;
use std::time::Duration;

use super::state::Record;

/// The fixed FILE path.
pub(crate) const FILE_URI: &str = "/.well-known/pki-validation/fileauth.txt";

/// Does `pattern` (`*.example.com` or a plain name) cover `domain`?
pub(crate) fn pattern_matches(pattern: &str, domain: &str) -> bool {
    let (p, d) = (pattern.to_ascii_lowercase(), domain.to_ascii_lowercase());
    match p.strip_prefix("*.") {
        Some(base) => d.ends_with(&format!(".{base}")) && d.len() > base.len() + 1,
        None => p == d,
    }
}

/// Where to connect for `domain`: the first exact --resolve entry, else the first pattern.
pub(crate) fn resolve(map: &[(String, SocketAddr)], domain: &str) -> Option<SocketAddr> {
    map.iter()
        .find(|(p, _)| p.eq_ignore_ascii_case(domain))
        .or_else(|| map.iter().find(|(p, _)| pattern_matches(p, domain)))
        .map(|(_, a)| *a)
}

/// FILE check: GET the proof and compare the trimmed body with `content`.
pub(crate) async fn check_file(map: &[(String, SocketAddr)], domain: &str, content: &str) -> bool {
    let url = match resolve(map, domain) {
        Some(addr) => format!("http://{addr}{FILE_URI}"),
        None => format!("http://{domain}{FILE_URI}"),
    };
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(_) => return false,
    };
    let resp = match client.get(&url).header("host", domain).send().await {
        Ok(r) if r.status().is_success() => r,
        _ => return false,
    };
    match resp.text().await {
        Ok(body) => body.trim() == content.trim(),
        Err(_) => false,
    }
}

/// The name the DNS proof lives at: `_dnsauth.<domain without *.>`.
pub(crate) fn dns_name(domain: &str) -> String {
    let base = domain.strip_prefix("*.").unwrap_or(domain);
    format!("_dnsauth.{}", base.to_ascii_lowercase())
}

/// DNS check: a TXT record with `value` at `_dnsauth.<base>`.
pub(crate) fn check_dns(records: &[Record], domain: &str, value: &str) -> bool {
    let want = dns_name(domain);
    records.iter().any(|r| {
        r.rtype.eq_ignore_ascii_case("TXT")
            && r.fqdn().eq_ignore_ascii_case(&want)
            && r.value.trim_matches('"') == value
    })
}

/// RecordDomain as CAS reports it: relative to the longest configured zone containing the
/// name (`_dnsauth.www` for www.example.com in example.com); fully qualified if none does.
pub(crate) fn record_domain(zones: &[String], domain: &str) -> String {
    let full = dns_name(domain);
    let zone = zones
        .iter()
        .filter(|z| full.ends_with(&format!(".{}", z.to_ascii_lowercase())))
        .max_by_key(|z| z.len());
    match zone {
        Some(z) => full[..full.len() - z.len() - 1].to_string(),
        None => full,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_record_domains() {
        assert!(pattern_matches("*.example.com", "www.example.com"));
        assert!(!pattern_matches("*.example.com", "example.com"));
        assert!(pattern_matches("WWW.example.com", "www.example.com"));
        let zones = vec!["example.com".to_string()];
        assert_eq!(record_domain(&zones, "www.example.com"), "_dnsauth.www");
        assert_eq!(record_domain(&zones, "example.com"), "_dnsauth");
        assert_eq!(record_domain(&zones, "*.example.com"), "_dnsauth");
        assert_eq!(record_domain(&zones, "a.other.org"), "_dnsauth.a.other.org");
    }

    #[test]
    fn dns_check_needs_value_and_name() {
        let r = Record {
            id: "1".into(),
            zone: "example.com".into(),
            rr: "_dnsauth.www".into(),
            rtype: "TXT".into(),
            value: "tok".into(),
            ttl: 600,
        };
        assert!(check_dns(
            std::slice::from_ref(&r),
            "www.example.com",
            "tok"
        ));
        assert!(!check_dns(
            std::slice::from_ref(&r),
            "www.example.com",
            "other"
        ));
        assert!(!check_dns(&[r], "api.example.com", "tok"));
    }
}
