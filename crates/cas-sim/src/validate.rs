//! Domain validation as the CA does it: FILE fetches `http://<domain><uri>` (through the
//! `--resolve` map when a pattern matches) and compares the body; DNS looks for the TXT
//! record among the simulator's own Alidns records. A name mapped to several addresses is a
//! load balancer: each fetch goes to one of them, drawn by [`Balancer`] (seeded), so a proof
//! missing on any one host fails validation some of the time, as behind an SLB.
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

/// Every address for `domain`: those of the first exact --resolve entry's name, else those of
/// the first matching pattern (entries of one name form its pool, in order).
pub(crate) fn resolve_all(map: &[(String, SocketAddr)], domain: &str) -> Vec<SocketAddr> {
    let name = map
        .iter()
        .find(|(p, _)| p.eq_ignore_ascii_case(domain))
        .or_else(|| map.iter().find(|(p, _)| pattern_matches(p, domain)))
        .map(|(p, _)| p.clone());
    match name {
        Some(n) => map
            .iter()
            .filter(|(p, _)| p.eq_ignore_ascii_case(&n))
            .map(|(_, a)| *a)
            .collect(),
        None => Vec::new(),
    }
}

/// Draws the address of each FILE fetch among a name's pool, from a generator seeded by
/// `--seed` (the same seed, the same hosts in the same order).
#[derive(Debug)]
pub(crate) struct Balancer {
    rng: std::sync::Mutex<rand::rngs::StdRng>,
}

impl Balancer {
    pub(crate) fn new(seed: u64) -> Balancer {
        use rand::SeedableRng;
        // Its own stream: fault draws for a seed stay what they were without a balancer.
        Balancer {
            rng: std::sync::Mutex::new(rand::rngs::StdRng::seed_from_u64(
                seed ^ 0x5eed_ba1a_2ce0_0001,
            )),
        }
    }

    /// The address this fetch for `domain` goes to; `None`: not mapped (real DNS).
    pub(crate) fn pick(&self, map: &[(String, SocketAddr)], domain: &str) -> Option<SocketAddr> {
        use rand::Rng;
        let pool = resolve_all(map, domain);
        match pool.len() {
            0 => None,
            1 => Some(pool[0]),
            n => {
                let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
                Some(pool[rng.random_range(0..n)])
            }
        }
    }
}

/// FILE check: GET the proof from `target` (`None`: `domain` itself) and compare the trimmed
/// body with `content`.
pub(crate) async fn check_file(target: Option<SocketAddr>, domain: &str, content: &str) -> bool {
    let url = match target {
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

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Entries of one name are its pool; the single-address form and patterns still resolve
    /// to their one address, and the same seed draws the same hosts.
    #[test]
    fn a_name_with_several_addresses_spreads_fetches_over_all_of_them() {
        let map = vec![
            ("a.example.com".to_string(), addr(8081)),
            ("*.example.com".to_string(), addr(9000)),
            ("a.example.com".to_string(), addr(8082)),
            ("a.example.com".to_string(), addr(8083)),
        ];
        assert_eq!(
            resolve_all(&map, "A.example.com"),
            vec![addr(8081), addr(8082), addr(8083)]
        );
        let b = Balancer::new(7);
        assert_eq!(b.pick(&map, "b.example.com"), Some(addr(9000)));
        assert_eq!(b.pick(&map, "other.org"), None);
        let draws: Vec<_> = (0..60).map(|_| b.pick(&map, "a.example.com")).collect();
        for port in [8081, 8082, 8083] {
            assert!(draws.contains(&Some(addr(port))), "{port} never drawn");
        }
        let again = Balancer::new(7);
        let replay: Vec<_> = (0..60).map(|_| again.pick(&map, "a.example.com")).collect();
        assert_eq!(draws, replay);
    }

    /// Two real HTTP hosts behind one name, the proof on only one: validation through the
    /// balancer fails some of the time and succeeds some of the time; on both, always.
    #[tokio::test]
    async fn a_proof_missing_on_one_balanced_host_fails_validation_sometimes() {
        async fn host(has_proof: bool) -> SocketAddr {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let a = l.local_addr().unwrap();
            tokio::spawn(async move {
                while let Ok((mut s, _)) = l.accept().await {
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf).await;
                    let resp: &[u8] = if has_proof {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\ntok"
                    } else {
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    };
                    let _ = s.write_all(resp).await;
                }
            });
            a
        }
        let (with, without) = (host(true).await, host(false).await);
        let b = Balancer::new(1);
        let half = vec![
            ("a.example.com".to_string(), with),
            ("a.example.com".to_string(), without),
        ];
        let mut outcomes = Vec::new();
        for _ in 0..24 {
            let t = b.pick(&half, "a.example.com");
            outcomes.push(check_file(t, "a.example.com", "tok").await);
        }
        assert!(
            outcomes.contains(&true) && outcomes.contains(&false),
            "{outcomes:?}"
        );
        let other = host(true).await;
        let both = vec![
            ("a.example.com".to_string(), with),
            ("a.example.com".to_string(), other),
        ];
        for _ in 0..8 {
            let t = b.pick(&both, "a.example.com");
            assert!(check_file(t, "a.example.com", "tok").await);
        }
    }
}
