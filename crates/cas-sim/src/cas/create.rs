//! Creating orders: CreateCertificateForPackageRequest, CreateCertificateRequest,
//! CreateCertificateWithCsrRequest and RenewCertificateOrderForPackageRequest, with CAS's rules
//! for the domain list, the validation type and quota.
use serde_json::json;

use super::{get, oid, order_id, package, req, save, Answer};
use crate::reject::Reject;
use crate::server::Params;
use crate::state::{Order, OrderState, State};
use crate::Sim;
use cas_api::model::{is_free_product, DEFAULT_PRODUCT};

fn valid_name(d: &str) -> bool {
    let base = d.strip_prefix("*.").unwrap_or(d);
    !base.is_empty()
        && base.len() <= 253
        && base.contains('.')
        && base.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Checks a domain list: 1..=5 names, all wildcard or all plain.
pub(super) fn check_domains(list: &[String]) -> Result<(), Reject> {
    if list.is_empty() || list.len() > 5 {
        return Err(Reject::invalid(
            "Domain",
            "give 1 to 5 comma-separated domains",
        ));
    }
    if let Some(bad) = list.iter().find(|d| !valid_name(d)) {
        return Err(Reject::invalid(
            "Domain",
            &format!("{bad} is not a domain name"),
        ));
    }
    let wild = list.iter().filter(|d| d.starts_with("*.")).count();
    if wild != 0 && wild != list.len() {
        return Err(Reject::invalid(
            "Domain",
            "mix of wildcard and single domains",
        ));
    }
    Ok(())
}

fn split_domains(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in s
        .split(',')
        .map(|d| d.trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty())
    {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// The domains an order is for, from `Domain` and/or the CSR (CN first, then SANs).
fn order_domains(domain: Option<&str>, csr: Option<&str>) -> Result<Vec<String>, Reject> {
    let from_csr = match csr {
        Some(c) => {
            let info = crate::ca::parse_csr(c).map_err(|e| match e {
                // The seed's 403 for a create CAS will not carry out.
                crate::ca::CaError::UnusableKey(_) => {
                    Reject::new(403, "CreateCertificateRequestFailed", e.to_string())
                }
                _ => Reject::invalid("Csr", &e.to_string()),
            })?;
            let mut names: Vec<String> = info.common_name.into_iter().collect();
            for s in info.sans {
                if !names.contains(&s) {
                    names.push(s);
                }
            }
            if names.is_empty() {
                return Err(Reject::invalid("Csr", "the CSR names no domain"));
            }
            Some(names)
        }
        None => None,
    };
    let list = match (domain, from_csr) {
        (Some(d), Some(names)) => {
            let list = split_domains(d);
            if let Some(bad) = list.iter().find(|d| !names.contains(d)) {
                return Err(Reject::invalid(
                    "Domain",
                    &format!("{bad} is not in the CSR"),
                ));
            }
            list
        }
        (Some(d), None) => split_domains(d),
        (None, Some(names)) => names,
        (None, None) => return Err(Reject::missing("Domain")),
    };
    check_domains(&list)?;
    Ok(list)
}

fn validate_type(p: &Params, domains: &[String], default: Option<&str>) -> Result<String, Reject> {
    let vt = match get(p, "ValidateType").or(default) {
        Some(v) => v.to_ascii_uppercase(),
        None => return Err(Reject::missing("ValidateType")),
    };
    if vt != "DNS" && vt != "FILE" {
        return Err(Reject::invalid("ValidateType", "DNS or FILE"));
    }
    if vt == "FILE" && domains.iter().any(|d| d.starts_with("*.")) {
        return Err(Reject::invalid(
            "ValidateType",
            "wildcard domains cannot be validated with FILE",
        ));
    }
    Ok(vt)
}

fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Creates an order, consuming one unit of quota.
pub(crate) fn new_order(
    sim: &Sim,
    st: &mut State,
    product: &str,
    domains: Vec<String>,
    csr: Option<String>,
    vt: String,
    created_by: &str,
) -> Result<u64, Reject> {
    let total = package(sim, product)?;
    if !st.consume(product, total) {
        return Err(Reject::new(
            404,
            "NotRemainCount",
            "The remaining quota of the package is not enough.",
        ));
    }
    let id = st.new_order_id();
    st.orders.push(Order {
        id,
        instance_id: format!("cas-ivauto-{}", &random_token()[..8]),
        product_code: product.to_string(),
        domains,
        validate_type: vt,
        csr,
        state: OrderState::DomainVerify,
        created_by: created_by.to_string(),
        created_ms: super::now_ms(),
        challenge: random_token(),
        verified_ms: None,
        process_ms: None,
        issued_ms: None,
        cert_start_ms: None,
        cert_end_ms: None,
        cert_pem: None,
        key_pem: None,
        cert_id: None,
        renewed_from: None,
    });
    Ok(id)
}

async fn create_common(
    sim: &Sim,
    p: &Params,
    domains: Vec<String>,
    vt: String,
    action: &str,
    string_id: bool,
) -> Answer {
    let product = get(p, "ProductCode").unwrap_or(DEFAULT_PRODUCT).to_string();
    let csr = get(p, "Csr").map(str::to_string);
    let mut st = sim.state.lock().await;
    let id = new_order(sim, &mut st, &product, domains, csr, vt, action)?;
    save(sim, &st).await?;
    Ok((json!({"OrderId": oid(sim, id, string_id)}), Some(id)))
}

pub(super) async fn for_package(sim: &Sim, p: &Params) -> Answer {
    let domains = order_domains(get(p, "Domain"), get(p, "Csr"))?;
    let vt = validate_type(p, &domains, Some("DNS"))?;
    create_common(
        sim,
        p,
        domains,
        vt,
        "CreateCertificateForPackageRequest",
        false,
    )
    .await
}

fn contact(p: &Params) -> Result<(), Reject> {
    for n in ["Username", "Phone", "Email"] {
        req(p, n)?;
    }
    Ok(())
}

pub(super) async fn dv(sim: &Sim, p: &Params) -> Answer {
    let domain = req(p, "Domain")?;
    contact(p)?;
    let domains = split_domains(domain);
    if domains.len() != 1 {
        return Err(Reject::invalid("Domain", "exactly one domain"));
    }
    check_domains(&domains)?;
    let vt = validate_type(p, &domains, None)?;
    let mut p = p.clone();
    p.remove("Csr");
    create_common(sim, &p, domains, vt, "CreateCertificateRequest", false).await
}

pub(super) async fn with_csr(sim: &Sim, p: &Params) -> Answer {
    let csr = req(p, "Csr")?;
    contact(p)?;
    let domains = order_domains(None, Some(csr))?;
    let vt = validate_type(p, &domains, None)?;
    create_common(sim, p, domains, vt, "CreateCertificateWithCsrRequest", true).await
}

pub(super) async fn renew(sim: &Sim, p: &Params) -> Answer {
    let id = order_id(p)?;
    let csr = get(p, "Csr").map(str::to_string);
    let mut st = sim.state.lock().await;
    let o = st.order(id).ok_or_else(Reject::no_order)?.clone();
    if is_free_product(&o.product_code) {
        return Err(Reject::order_state(
            "Free certificates cannot be renewed; apply for a new certificate instead.",
        ));
    }
    if o.state != OrderState::Certificate || o.cert_end_ms.unwrap_or(0) <= super::now_ms() {
        return Err(Reject::order_state(
            "Only issued, unexpired certificates can be renewed.",
        ));
    }
    let domains = match &csr {
        Some(c) => order_domains(None, Some(c))?,
        None => o.domains.clone(),
    };
    let new = new_order(
        sim,
        &mut st,
        &o.product_code,
        domains,
        csr,
        o.validate_type.clone(),
        "RenewCertificateOrderForPackageRequest",
    )?;
    if let Some(n) = st.order_mut(new) {
        n.renewed_from = Some(id);
    }
    save(sim, &st).await?;
    Ok((json!({"OrderId": oid(sim, new, true)}), Some(new)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_rules() {
        assert!(check_domains(&["a.example.com".into(), "b.example.com".into()]).is_ok());
        assert!(check_domains(&["*.example.com".into(), "b.example.com".into()]).is_err());
        assert!(check_domains(
            &(0..6)
                .map(|i| format!("a{i}.example.com"))
                .collect::<Vec<_>>()
        )
        .is_err());
        assert!(check_domains(&["bad_name.example.com".into()]).is_err());
    }
}
