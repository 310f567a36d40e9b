//! The `alidns` provider: the TXT (or CNAME) record CAS asks for, added and removed through
//! Alidns. RecordDomain is relative to the zone (`_dnsauth`, `_dnsauth.www`); a fully qualified
//! value is accepted when it lies inside the zone.

use cas_api::model::AddRecord;
use cas_api::{ApiError, Client};

use super::ValidationError;

/// The name the certificate is about, for finding the zone: the first domain without `*.`.
pub fn base_domain(domains: &[String]) -> Option<String> {
    let d = domains.first()?;
    Some(d.strip_prefix("*.").unwrap_or(d).to_ascii_lowercase())
}

/// Suffixes of `name` with at least two labels, longest first.
pub fn zone_candidates(name: &str) -> Vec<String> {
    let labels: Vec<&str> = name.split('.').collect();
    (0..labels.len().saturating_sub(1))
        .map(|i| labels[i..].join("."))
        .collect()
}

/// The host record (Alidns `RR`) for `record_domain` in `zone`, checked to be a plain DNS name.
pub fn relative_rr(record_domain: &str, zone: &str) -> Result<String, ValidationError> {
    let rd = record_domain.trim_end_matches('.').to_ascii_lowercase();
    let zone = zone.to_ascii_lowercase();
    let rr = if rd == zone {
        "@".to_string()
    } else if let Some(rel) = rd.strip_suffix(&format!(".{zone}")) {
        rel.to_string()
    } else {
        rd
    };
    let ok = rr == "@"
        || (!rr.is_empty()
            && rr.len() <= 253
            && rr.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            }));
    if ok {
        Ok(rr)
    } else {
        Err(ValidationError::Unsafe(format!(
            "RecordDomain {record_domain:?} is not a DNS host record"
        )))
    }
}

/// A record value CAS may ask for: printable ASCII, not too long.
pub fn check_value(value: &str) -> Result<(), ValidationError> {
    if value.is_empty() || value.len() > 1024 || !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ValidationError::Unsafe(
            "record value is empty, too long or not printable ASCII".into(),
        ));
    }
    Ok(())
}

/// Whether the account has the Alidns zone `zone`.
pub async fn zone_exists(client: &Client, zone: &str) -> Result<bool, ApiError> {
    match client.describe_domain_records(zone, None, 1, 1).await {
        Ok(_) => Ok(true),
        Err(e) if not_a_zone(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether DescribeDomainRecords' refusal says "not a zone of this account": a 4xx that is
/// neither an authentication error nor one to retry (throttling: the zone may well be ours).
fn not_a_zone(e: &ApiError) -> bool {
    matches!(e, ApiError::Service { status, .. } if *status < 500)
        && !is_auth(e)
        && e.class() != cas_api::ErrorClass::Retryable
}

/// The account's zone holding `name` (the longest suffix that is a zone), if any.
pub async fn find_zone_of(client: &Client, name: &str) -> Result<Option<String>, ApiError> {
    for zone in zone_candidates(name) {
        if zone_exists(client, &zone).await? {
            return Ok(Some(zone));
        }
    }
    Ok(None)
}

async fn find_zone(client: &Client, name: &str) -> Result<String, ValidationError> {
    find_zone_of(client, name)
        .await?
        .ok_or_else(|| ValidationError::NoZone(name.to_string()))
}

fn code(e: &ApiError) -> &str {
    match e {
        ApiError::Service { code, .. } => code,
        _ => "",
    }
}

fn is_auth(e: &ApiError) -> bool {
    let c = code(e);
    c.starts_with("InvalidAccessKeyId")
        || c.starts_with("SignatureDoesNotMatch")
        || c == "Forbidden.RAM"
}

pub async fn present(
    client: &Client,
    zone: Option<&str>,
    domains: &[String],
    record_domain: &str,
    record_type: &str,
    value: &str,
) -> Result<(String, String, String), ValidationError> {
    let record_type = record_type.to_ascii_uppercase();
    if record_type != "TXT" && record_type != "CNAME" {
        return Err(ValidationError::Mismatch(format!(
            "record type {record_type:?}"
        )));
    }
    check_value(value)?;
    let base = base_domain(domains).ok_or_else(|| ValidationError::NoZone(String::new()))?;
    let zone = match zone {
        Some(z) => z.to_string(),
        None => find_zone(client, &base).await?,
    };
    let rr = relative_rr(record_domain, &zone)?;
    let added = client
        .add_domain_record(&AddRecord {
            domain_name: zone.clone(),
            rr: rr.clone(),
            record_type: record_type.clone(),
            value: value.to_string(),
            ttl: Some(600),
        })
        .await;
    let id = match added {
        Ok(id) => id,
        // The same record is there already: an earlier run added it and crashed (or lost the
        // answer) before recording it. It is ours (the value is this order's token): use it,
        // rather than failing the attempt and paying for a new order.
        Err(e) if code(&e) == "DomainRecordDuplicate" => {
            existing_record(client, &zone, &rr, &record_type, value)
                .await?
                .ok_or_else(|| ValidationError::from(e))?
        }
        Err(e) => return Err(e.into()),
    };
    Ok((zone, rr, id))
}

/// The id of the record `rr` `record_type` `value` in `zone`, if it exists.
async fn existing_record(
    client: &Client,
    zone: &str,
    rr: &str,
    record_type: &str,
    value: &str,
) -> Result<Option<String>, ValidationError> {
    let page = client
        .describe_domain_records(zone, Some(rr), 1, 500)
        .await?;
    Ok(page
        .records
        .into_iter()
        .find(|r| {
            r.rr.eq_ignore_ascii_case(rr)
                && r.record_type.eq_ignore_ascii_case(record_type)
                && r.value.trim_matches('"') == value
        })
        .map(|r| r.record_id))
}

pub async fn cleanup(client: &Client, record_id: &str) -> Result<(), ValidationError> {
    match client.delete_domain_record(record_id).await {
        Ok(()) => Ok(()),
        Err(e) if gone(code(&e)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Codes meaning the record is already gone.
fn gone(code: &str) -> bool {
    code.contains("NotExist")
        || code.contains("NoExist")
        || code.contains("NotFound")
        || code == "DomainRecordNotBelongToUser"
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn refusal(status: u16, code: &str) -> ApiError {
        ApiError::Service {
            action: "DescribeDomainRecords".into(),
            status,
            code: code.into(),
            message: String::new(),
            request_id: String::new(),
        }
    }

    /// Throttling after the retry budget is not "not our zone" (that cancelled the order).
    #[test]
    fn only_a_plain_refusal_says_not_a_zone() {
        assert!(not_a_zone(&refusal(400, "InvalidDomainName.NoExist")));
        assert!(!not_a_zone(&refusal(400, "Throttling.User")));
        assert!(!not_a_zone(&refusal(403, "InvalidAccessKeyId.NotFound")));
        assert!(!not_a_zone(&refusal(503, "ServiceUnavailable")));
    }

    #[test]
    fn candidates_longest_first() {
        assert_eq!(
            zone_candidates("a.b.example.com"),
            ["a.b.example.com", "b.example.com", "example.com"]
        );
        assert_eq!(zone_candidates("example.com"), ["example.com"]);
        assert_eq!(
            base_domain(&["*.Example.com".to_string()]).unwrap(),
            "example.com"
        );
    }

    #[test]
    fn record_names() {
        assert_eq!(relative_rr("_dnsauth", "example.com").unwrap(), "_dnsauth");
        assert_eq!(
            relative_rr("_dnsauth.www", "example.com").unwrap(),
            "_dnsauth.www"
        );
        assert_eq!(
            relative_rr("_dnsauth.www.example.com.", "example.com").unwrap(),
            "_dnsauth.www"
        );
        assert_eq!(relative_rr("example.com", "example.com").unwrap(), "@");
        for bad in ["", "a..b", "a b", "a/b", "a;rm", "*", "a\nb"] {
            assert!(relative_rr(bad, "example.com").is_err(), "{bad:?}");
        }
        assert!(check_value("abc-123_xyz=").is_ok());
        assert!(check_value("a b").is_err());
        assert!(check_value("").is_err());
        assert!(gone("InvalidRR.NoExist") && !gone("Throttling"));
    }
}
