//! The DNS proof as the CA looks it up: the TXT record at the record name, asked of the zone's
//! authoritative name servers (found by an NS lookup walking up from the record name through
//! the system resolver), or of `self_check_nameservers` when set (split horizon, tests).
//! hickory-resolver does the DNS; nothing here parses a packet.
use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, Resolver, TokioResolver};

use super::{FailureKind, ProofCheck, ProofFailure};
use crate::validation::alidns::zone_candidates;

const TIMEOUT: Duration = Duration::from_secs(3);
/// Name servers asked at most (a zone may list many).
const MAX_SERVERS: usize = 4;

fn fail(reason: String) -> ProofFailure {
    ProofFailure::new(FailureKind::Dns, reason)
}

/// The fully qualified name of the proof for a RecordDomain and the certificate's base name.
/// RecordDomain is relative to the zone (`_dnsauth.www` for www.example.com in example.com),
/// and the zone is not known here: the zone is taken as the shortest suffix of `base` (at
/// least two labels) whose remaining labels end RecordDomain; a fully qualified value is
/// used as it is. Without a match, the record is taken relative to `base` itself.
pub fn record_name(record_domain: &str, base: &str) -> String {
    let rd = record_domain.trim_end_matches('.').to_ascii_lowercase();
    if rd == base || rd.ends_with(&format!(".{base}")) {
        return rd;
    }
    let labels: Vec<&str> = base.split('.').collect();
    for i in (1..labels.len().saturating_sub(1)).rev() {
        let (prefix, zone) = (labels[..i].join("."), labels[i..].join("."));
        if rd.ends_with(&format!(".{prefix}")) {
            return format!("{rd}.{zone}");
        }
    }
    if rd.is_empty() || rd == "@" {
        base.to_string()
    } else {
        format!("{rd}.{base}")
    }
}

fn opts() -> ResolverOpts {
    let mut o = ResolverOpts::default();
    o.timeout = TIMEOUT;
    o.attempts = 1;
    // Each check asks afresh: a cached "no record" would hide the fix.
    o.cache_size = 0;
    o
}

/// A resolver that asks exactly `servers` (UDP, then TCP for truncated answers).
fn direct(servers: &[SocketAddr]) -> TokioResolver {
    let mut cfg = ResolverConfig::new();
    for s in servers {
        cfg.add_name_server(NameServerConfig::new(*s, Protocol::Udp));
        cfg.add_name_server(NameServerConfig::new(*s, Protocol::Tcp));
    }
    Resolver::builder_with_config(cfg, TokioConnectionProvider::default())
        .with_options(opts())
        .build()
}

/// The authoritative servers of the zone holding `name`: the first suffix with NS records.
async fn authoritative(name: &str) -> Result<Vec<SocketAddr>, ProofFailure> {
    let system = Resolver::builder_tokio()
        .map_err(|e| fail(format!("no system resolver: {e}")))?
        .with_options(opts())
        .build();
    for zone in zone_candidates(name) {
        let ns = match system.ns_lookup(format!("{zone}.")).await {
            Ok(ns) => ns,
            Err(e) if e.is_no_records_found() => continue,
            Err(e) => return Err(fail(format!("NS lookup of {zone}: {}", short(&e)))),
        };
        let mut servers = Vec::new();
        for host in ns.iter().take(MAX_SERVERS) {
            if let Ok(ips) = system.lookup_ip(host.0.clone()).await {
                servers.extend(ips.iter().map(|ip| SocketAddr::new(ip, 53)));
            }
        }
        if servers.is_empty() {
            return Err(fail(format!("the name servers of {zone} have no address")));
        }
        servers.truncate(MAX_SERVERS);
        return Ok(servers);
    }
    Err(fail(format!("no zone with name servers holds {name}")))
}

fn list(servers: &[SocketAddr]) -> String {
    servers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// hickory's message without the query it repeats.
fn short(e: &ResolveError) -> String {
    let s = e.to_string();
    s.chars().take(120).collect()
}

/// Checks that the TXT at `name` holds `expected`, at `nameservers` or the zone's own.
pub async fn check(nameservers: &[SocketAddr], name: &str, expected: &str) -> ProofCheck {
    let servers = if nameservers.is_empty() {
        authoritative(name).await?
    } else {
        nameservers.to_vec()
    };
    let asked = list(&servers);
    let txt = match direct(&servers).txt_lookup(format!("{name}.")).await {
        Ok(txt) => txt,
        Err(e) if e.is_no_records_found() => {
            return Err(fail(format!("no TXT record at {name} (asked {asked})")))
        }
        Err(e) => {
            return Err(fail(format!(
                "TXT lookup of {name} at {asked}: {}",
                short(&e)
            )))
        }
    };
    let found = txt.iter().any(|t| {
        let joined: Vec<u8> = t.iter().flat_map(|p| p.iter().copied()).collect();
        joined == expected.as_bytes()
    });
    if found {
        Ok(())
    } else {
        Err(fail(format!(
            "the TXT record at {name} holds other values (asked {asked})"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::record_name;

    #[test]
    fn record_names_relative_to_the_zone_or_fully_qualified() {
        assert_eq!(
            record_name("_dnsauth.www", "www.example.com"),
            "_dnsauth.www.example.com"
        );
        assert_eq!(
            record_name("_dnsauth", "example.com"),
            "_dnsauth.example.com"
        );
        assert_eq!(
            record_name("_dnsauth.a.b", "a.b.example.com"),
            "_dnsauth.a.b.example.com"
        );
        assert_eq!(
            record_name("_dnsauth.a.example.com.", "a.example.com"),
            "_dnsauth.a.example.com"
        );
        // Relative to the base when no zone fits.
        assert_eq!(
            record_name("_dnsauth", "a.example.com"),
            "_dnsauth.a.example.com"
        );
    }
}
