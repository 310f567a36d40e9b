//! ListUserCertificateOrder, row shapes by `OrderType` as the SDK model
//! (ListUserCertificateOrderResponseBodyCertificateOrderList) documents them: CPACK rows are
//! quota orders (order fields only); CERT rows are the issued certificates (certificate fields
//! only); BUY (purchase orders) and UPLOAD (uploaded certificates) exist nowhere in the
//! simulator and list nothing.
use cas_api::model::is_free_product;
use serde_json::{json, Value};
use sha1::Digest as _;

use super::cas::{get, now_ms, oid, Answer, REFUND_WINDOW_MS};
use super::reject::Reject;
use super::server::Params;
use super::state::{Order, OrderState};
use super::Sim;

/// `OrderType` values (SDK model), CPACK the default.
const ORDER_TYPES: &[&str] = &["CPACK", "BUY", "UPLOAD", "CERT"];

/// `Algorithm`: the CSR's key, or RSA for the keys CAS makes.
fn algorithm(o: &Order) -> &'static str {
    o.csr
        .as_deref()
        .and_then(|c| super::ca::parse_csr(c).ok())
        .map_or("RSA", |i| i.algorithm)
}

fn status(o: &Order, now: i64) -> &'static str {
    if o.state == OrderState::Certificate {
        let end = o.cert_end_ms.unwrap_or(0);
        if end <= now {
            return "EXPIRED";
        }
        if end - now < REFUND_WINDOW_MS {
            return "WILLEXPIRED";
        }
    }
    o.state.list_status()
}

/// `CertType`: FREE for the free products (the SDK's "personal test certificate"), else the
/// validation level the product code names.
fn cert_type(product: &str) -> &'static str {
    if is_free_product(product) {
        "FREE"
    } else if product.contains("-ov-") {
        "OV"
    } else if product.contains("-ev-") {
        "EV"
    } else {
        "DV"
    }
}

/// `RootBrand` from the product code's prefix (symantec products are DigiCert's today).
fn root_brand(product: &str) -> &'static str {
    match product.split('-').next().unwrap_or_default() {
        "geotrust" => "GeoTrust",
        "globalsign" => "GlobalSign",
        "cfca" => "CFCA",
        _ => "DigiCert",
    }
}

/// `DomainType`, with the SDK's M_WILDCARD and MIX.
fn domain_type(domains: &[String]) -> &'static str {
    let wild = domains.iter().filter(|d| d.starts_with("*.")).count();
    match (wild, domains.len()) {
        (0, 1) => "ONE",
        (0, _) => "MULTIPLE",
        (1, 1) => "WILDCARD",
        (w, n) if w == n => "M_WILDCARD",
        _ => "MIX",
    }
}

fn order_row(sim: &Sim, o: &Order, now: i64) -> Value {
    let first = o.domains.first().cloned().unwrap_or_default();
    let ct = cert_type(&o.product_code);
    let brand = root_brand(&o.product_code);
    let mut v = json!({
        "OrderId": oid(sim, o.id, false), "InstanceId": o.instance_id, "Domain": first,
        "DomainCount": o.domains.len(),
        "WildDomainCount": o.domains.iter().filter(|d| d.starts_with("*.")).count(),
        "Status": status(o, now), "ProductCode": o.product_code,
        "ProductName": format!("{brand} {ct}"), "CertType": ct,
        "DomainType": domain_type(&o.domains), "BuyDate": o.created_ms,
        "Algorithm": algorithm(o), "SourceType": "cpack", "RootBrand": brand,
        "TrusteeStatus": "unTrustee",
    });
    if let (Some(s), Some(e), Some(m)) = (o.cert_start_ms, o.cert_end_ms, v.as_object_mut()) {
        m.insert("CertStartTime".into(), json!(s));
        m.insert("CertEndTime".into(), json!(e));
    }
    v
}

fn date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// A CERT row: the issued certificate, its digests read from the leaf we issued.
fn cert_row(o: &Order, now: i64) -> Value {
    let leaf = o
        .cert_pem
        .as_deref()
        .and_then(super::ca::pem_block)
        .unwrap_or_default();
    let serial = x509_parser::parse_x509_certificate(&leaf)
        .map(|(_, c)| hex::encode(c.raw_serial()))
        .unwrap_or_default();
    let end = o.cert_end_ms.unwrap_or(0);
    let first = o.domains.first().cloned().unwrap_or_default();
    json!({
        "CertificateId": o.cert_id, "InstanceId": o.instance_id,
        "Name": format!("cert-{}", o.cert_id.unwrap_or_default()),
        "CommonName": first, "Sans": o.domains.join(","),
        "Issuer": "cas-certd simulator", "OrgName": "", "Upload": false,
        "StartDate": date(o.cert_start_ms.unwrap_or(0)), "EndDate": date(end),
        "Expired": end <= now,
        "Fingerprint": hex::encode_upper(sha1::Sha1::digest(&leaf)),
        "Sha2": hex::encode_upper(sha2::Sha256::digest(&leaf)),
        "SerialNo": serial,
    })
}

pub(super) async fn list(sim: &Sim, p: &Params) -> Answer {
    let page = Reject::int_param(get(p, "CurrentPage"), "CurrentPage", 1, 1, usize::MAX)?;
    let size = Reject::int_param(get(p, "ShowSize"), "ShowSize", 50, 1, 1000)?;
    let keyword = get(p, "Keyword").map(str::to_ascii_lowercase);
    let wanted = get(p, "Status").map(str::to_ascii_uppercase);
    let order_type = get(p, "OrderType").unwrap_or("CPACK");
    if !ORDER_TYPES.contains(&order_type) {
        return Err(Reject::invalid(
            "OrderType",
            &format!("{order_type:?}: one of {}", ORDER_TYPES.join(", ")),
        ));
    }
    let certs = order_type == "CERT";
    let now = now_ms();
    let st = sim.state.lock().await;
    let mut hits: Vec<&Order> = st
        .orders
        .iter()
        .filter(|o| match order_type {
            "CPACK" => o.state != OrderState::Deleted,
            // Issued certificates; without Status only the valid ones (the SDK's rule).
            "CERT" => o.state == OrderState::Certificate,
            _ => false,
        })
        .filter(|o| {
            keyword.as_deref().is_none_or(|k| {
                o.instance_id.to_ascii_lowercase().contains(k)
                    || o.domains.iter().any(|d| d.contains(k))
            })
        })
        .filter(|o| match wanted.as_deref() {
            Some(s) => status(o, now) == s,
            None => !certs || status(o, now) != "EXPIRED",
        })
        .collect();
    hits.sort_by_key(|o| std::cmp::Reverse(o.id));
    let total = hits.len();
    let items: Vec<Value> = hits
        .into_iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .map(|o| {
            if certs {
                cert_row(o, now)
            } else {
                order_row(sim, o, now)
            }
        })
        .collect();
    Ok((
        json!({"TotalCount": total, "CurrentPage": page, "ShowSize": size, "CertificateOrderList": items}),
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_follow_the_sdk_model() {
        let d = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(domain_type(&d(&["a.example.com"])), "ONE");
        assert_eq!(
            domain_type(&d(&["a.example.com", "b.example.com"])),
            "MULTIPLE"
        );
        assert_eq!(domain_type(&d(&["*.example.com"])), "WILDCARD");
        assert_eq!(
            domain_type(&d(&["*.a.example", "*.b.example"])),
            "M_WILDCARD"
        );
        assert_eq!(domain_type(&d(&["*.a.example", "b.example"])), "MIX");
        assert_eq!(cert_type("digicert-free-1-free"), "FREE");
        assert_eq!(cert_type("geotrust-ov-1-personal"), "OV");
        assert_eq!(cert_type("cfca-ev-w-advanced"), "EV");
        assert_eq!(cert_type("geotrust-dv-1-starter"), "DV");
        assert_eq!(root_brand("symantec-free-1-free"), "DigiCert");
        assert_eq!(root_brand("globalsign-dv-1-personal"), "GlobalSign");
    }
}
