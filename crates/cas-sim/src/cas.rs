//! CAS 2020-04-07 actions and the order state machine: domain_verify → process →
//! certificate (or verify_fail); cancel → payed; delete refunds; revoke within 30 days refunds;
//! renew makes a new order (not for free products).
use serde_json::{json, Value};

use super::hostile;
use super::reject::Reject;
use super::server::Params;
use super::state::{Order, OrderState, State};
use super::validate;
use super::Sim;
use cas_api::model::DEFAULT_PRODUCT;

pub(super) const REFUND_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;

pub(super) type Answer = Result<(Value, Option<u64>), Reject>;

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(super) fn get<'a>(p: &'a Params, name: &str) -> Option<&'a str> {
    p.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

fn req<'a>(p: &'a Params, name: &str) -> Result<&'a str, Reject> {
    get(p, name).ok_or_else(|| Reject::missing(name))
}

fn order_id(p: &Params) -> Result<u64, Reject> {
    req(p, "OrderId")?
        .trim()
        .parse()
        .map_err(|_| Reject::invalid("OrderId", "not an integer"))
}

/// OrderId as JSON: a number, or a string where the seed shows one (or with --string-order-ids).
pub(super) fn oid(sim: &Sim, id: u64, string: bool) -> Value {
    if string || sim.opts.string_order_ids {
        Value::String(id.to_string())
    } else {
        json!(id)
    }
}

pub(crate) async fn dispatch(sim: &Sim, action: &str, p: &Params) -> Answer {
    match action {
        "DescribePackageState" => package_state(sim, p).await,
        "CreateCertificateForPackageRequest" => create_for_package(sim, p).await,
        "CreateCertificateRequest" => create_dv(sim, p).await,
        "CreateCertificateWithCsrRequest" => create_with_csr(sim, p).await,
        "DescribeCertificateState" => describe(sim, p).await,
        "CancelOrderRequest" => cancel(sim, p).await,
        "DeleteCertificateRequest" => delete(sim, p).await,
        "CancelCertificateForPackageRequest" => revoke(sim, p).await,
        "RenewCertificateOrderForPackageRequest" => renew(sim, p).await,
        "ListUserCertificateOrder" => super::list::list(sim, p).await,
        "" => Err(Reject::missing("Action")),
        _ => Err(Reject::new(
            404,
            "InvalidAction.NotFound",
            format!("Specified api is not found, please check your url and method: {action}"),
        )),
    }
}

/// The quota of a product the account holds, or the seed's 404 `NotFoundPackage`.
fn package(sim: &Sim, product: &str) -> Result<i64, Reject> {
    sim.opts
        .total_quota(product)
        .ok_or_else(|| Reject::new(404, "NotFoundPackage", "No package was purchased."))
}

async fn package_state(sim: &Sim, p: &Params) -> Answer {
    let product = get(p, "ProductCode").unwrap_or(DEFAULT_PRODUCT);
    let total = package(sim, product)?;
    let st = sim.state.lock().await;
    let u = st.usage.get(product).cloned().unwrap_or_default();
    Ok((
        json!({"ProductCode": product, "TotalCount": total,
               "UsedCount": u.used, "IssuedCount": u.issued}),
        None,
    ))
}

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
pub(crate) fn check_domains(list: &[String]) -> Result<(), Reject> {
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
            let info = super::ca::parse_csr(c).map_err(|e| match e {
                // The seed's 403 for a create CAS will not carry out.
                super::ca::CaError::UnusableKey(_) => {
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
        created_ms: now_ms(),
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

async fn save(sim: &Sim, st: &State) -> Result<(), Reject> {
    sim.persist(st)
        .map_err(|e| Reject::cas_error(format_args!("simulator state: {e}")))
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

async fn create_for_package(sim: &Sim, p: &Params) -> Answer {
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

async fn create_dv(sim: &Sim, p: &Params) -> Answer {
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

async fn create_with_csr(sim: &Sim, p: &Params) -> Answer {
    let csr = req(p, "Csr")?;
    contact(p)?;
    let domains = order_domains(None, Some(csr))?;
    let vt = validate_type(p, &domains, None)?;
    create_common(sim, p, domains, vt, "CreateCertificateWithCsrRequest", true).await
}

fn rejected(sim: &Sim, domains: &[String]) -> bool {
    domains.iter().any(|d| {
        sim.opts
            .reject
            .iter()
            .any(|r| validate::pattern_matches(r, d) || r.eq_ignore_ascii_case(d))
    })
}

/// Moves an order along as far as time and proofs allow.
pub(crate) async fn advance(sim: &Sim, id: u64) -> Result<(), Reject> {
    // The FILE fetch happens without holding the lock.
    let (check, domain, vt, token) = {
        let st = sim.state.lock().await;
        let o = st.order(id).ok_or_else(Reject::no_order)?;
        let first = o.domains.first().cloned().unwrap_or_default();
        (
            o.state == OrderState::DomainVerify && o.verified_ms.is_none(),
            first,
            o.validate_type.clone(),
            o.challenge.clone(),
        )
    };
    let file_ok = if check && vt == "FILE" {
        validate::check_file(&sim.opts.resolve, &domain, &token).await
    } else {
        false
    };
    let mut st = sim.state.lock().await;
    let now = now_ms();
    let dns_ok = check && vt == "DNS" && validate::check_dns(&st.records, &domain, &token);
    let Some(o) = st.order(id).cloned() else {
        return Err(Reject::no_order());
    };
    let mut o = o;
    let before = (o.state, o.verified_ms);
    if o.state == OrderState::DomainVerify {
        if rejected(sim, &o.domains) {
            o.state = OrderState::VerifyFail;
        } else {
            if o.verified_ms.is_none() && (file_ok || dns_ok) {
                o.verified_ms = Some(now);
            }
            if let Some(v) = o.verified_ms {
                if now - v >= sim.opts.validation_delay.as_millis() as i64 {
                    o.state = OrderState::Process;
                    o.process_ms = Some(now);
                }
            }
        }
    }
    if o.state == OrderState::Process {
        let since = o.process_ms.unwrap_or(now);
        if now - since >= sim.opts.review_delay.as_millis() as i64 {
            issue(sim, &mut st, &mut o)?;
        }
    }
    if (o.state, o.verified_ms) != before {
        if let Some(slot) = st.order_mut(id) {
            *slot = o;
        }
        save(sim, &st).await?;
    }
    Ok(())
}

fn issue(sim: &Sim, st: &mut State, o: &mut Order) -> Result<(), Reject> {
    let mut set = o.domains.clone();
    set.sort();
    let key = set.join(",");
    let lifetime = match sim.opts.first_cert_lifetime {
        Some(first) if !st.issued_sets.contains(&key) => first,
        _ => sim
            .opts
            .cert_lifetime
            .unwrap_or(super::DEFAULT_CERT_LIFETIME),
    };
    st.next_cert += 1;
    let cert_id = 20_000_000 + st.next_cert;
    let ca_err = |e| Reject::cas_error(format_args!("test CA: {e}"));
    let first = o.domains.first().map(String::as_str).unwrap_or_default();
    let issued = match hostile::mode_for(&sim.opts.hostile, first) {
        Some(hostile::Mode::WrongDomain) => {
            let other = vec!["hostile-other.example.net".to_string()];
            sim.ca.issue(&other, o.csr.as_deref(), lifetime, cert_id)
        }
        Some(hostile::Mode::WrongKey) => {
            // A key of the CA's choosing. With a CSR the answer also carries that key, as if
            // inviting the client to use it instead of its own; without one, it carries a key
            // that is not the certificate's.
            sim.ca
                .issue(&o.domains, None, lifetime, cert_id)
                .and_then(|mut i| {
                    if o.csr.is_none() {
                        i.key_pem = Some(rcgen::KeyPair::generate()?.serialize_pem());
                    }
                    Ok(i)
                })
        }
        Some(hostile::Mode::Expired) => {
            let now = time::OffsetDateTime::now_utc();
            sim.ca.issue_window(
                &o.domains,
                o.csr.as_deref(),
                now - time::Duration::days(91),
                now - time::Duration::days(1),
                cert_id,
            )
        }
        _ => sim
            .ca
            .issue(&o.domains, o.csr.as_deref(), lifetime, cert_id),
    }
    .map_err(ca_err)?;
    o.state = OrderState::Certificate;
    o.issued_ms = Some(now_ms());
    o.cert_start_ms = Some(issued.not_before_ms);
    o.cert_end_ms = Some(issued.not_after_ms);
    o.cert_pem = Some(issued.chain_pem);
    o.key_pem = issued.key_pem;
    o.cert_id = Some(cert_id);
    if !st.issued_sets.contains(&key) {
        st.issued_sets.push(key);
    }
    st.usage_mut(&o.product_code).issued += 1;
    Ok(())
}

async fn describe(sim: &Sim, p: &Params) -> Answer {
    let id = order_id(p)?;
    advance(sim, id).await?;
    let st = sim.state.lock().await;
    let o = st.order(id).ok_or_else(Reject::no_order)?;
    let domain = o.domains.first().cloned().unwrap_or_default();
    let v = match o.state {
        OrderState::DomainVerify if o.validate_type == "FILE" => {
            let mode = hostile::mode_for(&sim.opts.hostile, &domain);
            let uri = mode
                .and_then(|m| hostile::file_uri(m, &sim.opts.data_dir))
                .unwrap_or_else(|| validate::FILE_URI.to_string());
            let content = mode
                .and_then(|m| hostile::file_content(m, &o.challenge))
                .unwrap_or_else(|| o.challenge.clone());
            json!({
            "Type": "domain_verify", "ValidateType": "FILE", "Domain": domain,
            "Uri": uri, "Content": content})
        }
        OrderState::DomainVerify => json!({
            "Type": "domain_verify", "ValidateType": "DNS", "Domain": domain,
            "RecordDomain": validate::record_domain(&sim.opts.zones, &domain),
            "RecordType": "TXT", "RecordValue": o.challenge}),
        OrderState::Certificate => json!({
            "Type": "certificate", "Domain": domain,
            "Certificate": o.cert_pem.clone().unwrap_or_default(),
            "PrivateKey": o.key_pem.clone().unwrap_or_default(),
            // A string in the SDK model (DescribeCertificateStateResponseBody.cert_id).
            "CertId": o.cert_id.map(|c| c.to_string())}),
        OrderState::Revoked | OrderState::Deleted => json!({"Type": "unknow", "Domain": domain}),
        s => json!({"Type": s.type_str(), "Domain": domain}),
    };
    Ok((v, Some(id)))
}

async fn cancel(sim: &Sim, p: &Params) -> Answer {
    let id = order_id(p)?;
    let mut st = sim.state.lock().await;
    let o = st.order_mut(id).ok_or_else(Reject::no_order)?;
    match o.state {
        OrderState::DomainVerify | OrderState::Process => o.state = OrderState::Payed,
        _ => {
            return Err(Reject::order_state(
                "Only orders under review can be cancelled.",
            ))
        }
    }
    save(sim, &st).await?;
    Ok((json!({}), Some(id)))
}

async fn delete(sim: &Sim, p: &Params) -> Answer {
    let id = order_id(p)?;
    let mut st = sim.state.lock().await;
    let o = st.order_mut(id).ok_or_else(Reject::no_order)?;
    let refund = match o.state {
        OrderState::Payed | OrderState::VerifyFail => true,
        OrderState::Revoked => false,
        _ => {
            return Err(Reject::new(
                403,
                "DeleteFail",
                "Only cancelled, failed or revoked orders can be deleted.",
            ))
        }
    };
    o.state = OrderState::Deleted;
    let product = o.product_code.clone();
    if refund {
        st.refund(&product, false);
    }
    save(sim, &st).await?;
    Ok((json!({}), Some(id)))
}

async fn revoke(sim: &Sim, p: &Params) -> Answer {
    let id = order_id(p)?;
    let mut st = sim.state.lock().await;
    let o = st.order_mut(id).ok_or_else(Reject::no_order)?;
    if o.state != OrderState::Certificate {
        return Err(Reject::order_state(
            "Only issued certificates can be revoked.",
        ));
    }
    o.state = OrderState::Revoked;
    let recent = now_ms() - o.issued_ms.unwrap_or(0) < REFUND_WINDOW_MS;
    let product = o.product_code.clone();
    if recent {
        st.refund(&product, true);
    }
    save(sim, &st).await?;
    Ok((json!({}), Some(id)))
}

async fn renew(sim: &Sim, p: &Params) -> Answer {
    let id = order_id(p)?;
    let csr = get(p, "Csr").map(str::to_string);
    let mut st = sim.state.lock().await;
    let o = st.order(id).ok_or_else(Reject::no_order)?.clone();
    if o.product_code.contains("-free-") {
        return Err(Reject::order_state(
            "Free certificates cannot be renewed; apply for a new certificate instead.",
        ));
    }
    if o.state != OrderState::Certificate || o.cert_end_ms.unwrap_or(0) <= now_ms() {
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{auth, ca, faults, state, SimOptions};

    fn sim(dir: &std::path::Path, opts: SimOptions) -> Sim {
        Sim {
            verifier: std::sync::Mutex::new(auth::Verifier::new(&[])),
            faults: std::sync::Mutex::new(faults::Faults::new(Default::default())),
            state: tokio::sync::Mutex::new(state::State::default()),
            state_path: dir.join("state.json"),
            ca: ca::Ca::open(&dir.join("ca")).unwrap(),
            opts: SimOptions {
                zones: vec!["example.com".into()],
                ..opts
            },
        }
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    async fn create(s: &Sim, domain: &str, product: &str) -> Result<u64, Reject> {
        let (_, id) = dispatch(
            s,
            "CreateCertificateForPackageRequest",
            &params(&[("Domain", domain), ("ProductCode", product)]),
        )
        .await?;
        Ok(id.unwrap())
    }

    async fn state_of(s: &Sim, id: u64) -> String {
        let (v, _) = dispatch(
            s,
            "DescribeCertificateState",
            &params(&[("OrderId", &id.to_string())]),
        )
        .await
        .unwrap();
        v["Type"].as_str().unwrap().to_string()
    }

    async fn add_proof(s: &Sim, id: u64) {
        let mut st = s.state.lock().await;
        let token = st.order(id).unwrap().challenge.clone();
        st.records.push(state::Record {
            id: "1".into(),
            zone: "example.com".into(),
            rr: "_dnsauth.www".into(),
            rtype: "TXT".into(),
            value: token,
            ttl: 600,
        });
    }

    #[tokio::test]
    async fn delays_then_issue_with_short_first_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let s = sim(
            dir.path(),
            SimOptions {
                validation_delay: std::time::Duration::from_millis(200),
                review_delay: std::time::Duration::from_millis(200),
                first_cert_lifetime: Some(std::time::Duration::from_secs(3600)),
                quota: vec![("p".into(), 10)],
                ..Default::default()
            },
        );
        let id = create(&s, "www.example.com", "p").await.unwrap();
        assert_eq!(state_of(&s, id).await, "domain_verify");
        add_proof(&s, id).await;
        assert_eq!(
            state_of(&s, id).await,
            "domain_verify",
            "proof seen, dwelling"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        assert_eq!(state_of(&s, id).await, "process");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        assert_eq!(state_of(&s, id).await, "certificate");
        let o = s.state.lock().await.order(id).unwrap().clone();
        let life = o.cert_end_ms.unwrap() - o.cert_start_ms.unwrap();
        assert!(
            life <= 3_600_000 + 60_000,
            "first certificate is short-lived: {life}"
        );
        // The second certificate for the same names gets the normal lifetime.
        let id2 = create(&s, "www.example.com", "p").await.unwrap();
        assert_eq!(
            state_of(&s, id2).await,
            "domain_verify",
            "the old TXT value proves nothing"
        );
        add_proof(&s, id2).await;
        state_of(&s, id2).await;
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        state_of(&s, id2).await;
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        assert_eq!(state_of(&s, id2).await, "certificate");
        let o2 = s.state.lock().await.order(id2).unwrap().clone();
        assert!(o2.cert_end_ms.unwrap() - o2.cert_start_ms.unwrap() > 80 * 24 * 3_600_000);
        // Persisted after each step.
        let disk = state::State::load(&dir.path().join("state.json")).unwrap();
        assert_eq!(disk.order(id2).unwrap().state, OrderState::Certificate);
    }

    #[tokio::test]
    async fn reject_quota_and_refunds() {
        let dir = tempfile::tempdir().unwrap();
        let s = sim(
            dir.path(),
            SimOptions {
                reject: vec!["*.bad.example.com".into()],
                quota: vec![("p".into(), 2)],
                ..Default::default()
            },
        );
        let a = create(&s, "x.bad.example.com", "p").await.unwrap();
        assert_eq!(state_of(&s, a).await, "verify_fail");
        let _b = create(&s, "www.example.com", "p").await.unwrap();
        let e = create(&s, "api.example.com", "p").await.unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (404, "NotRemainCount"));
        // Deleting the failed order gives its unit back.
        dispatch(
            &s,
            "DeleteCertificateRequest",
            &params(&[("OrderId", &a.to_string())]),
        )
        .await
        .unwrap();
        assert_eq!(s.state.lock().await.usage["p"].used, 1);
        create(&s, "api.example.com", "p").await.unwrap();
        // Cancel is only for orders under review.
        let e = dispatch(
            &s,
            "CancelOrderRequest",
            &params(&[("OrderId", &a.to_string())]),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, "NotFoundOrder");
    }

    #[tokio::test]
    async fn a_product_never_bought_is_not_found_and_costs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = sim(dir.path(), SimOptions::default());
        for product in ["geotrust-ov-w-personal", "no-such-product"] {
            let e = create(&s, "www.example.com", product).await.unwrap_err();
            assert_eq!((e.status, e.code.as_str()), (404, "NotFoundPackage"));
            let e = dispatch(
                &s,
                "DescribePackageState",
                &params(&[("ProductCode", product)]),
            )
            .await
            .unwrap_err();
            assert_eq!(e.code, "NotFoundPackage");
        }
        assert!(s.state.lock().await.orders.is_empty());
        // The free products are held without --quota; no ProductCode means the 2024 default.
        let (v, _) = dispatch(&s, "DescribePackageState", &params(&[]))
            .await
            .unwrap();
        assert_eq!(v["ProductCode"], "digicert-free-1-free");
        assert_eq!(v["TotalCount"], crate::DEFAULT_QUOTA);
    }

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
