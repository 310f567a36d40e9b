//! The CA's side of an order: the proof is looked for, the order dwells (validation, then
//! review) and is issued or fails (`domain_verify` → `process` → `certificate`, or
//! `verify_fail`), and DescribeCertificateState shows where it stands.
use serde_json::json;

use super::{now_ms, order_id, save, Answer};
use crate::hostile;
use crate::reject::Reject;
use crate::server::Params;
use crate::state::{Order, OrderState, State};
use crate::validate;
use crate::Sim;

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
        let target = sim.balancer.pick(&sim.opts.resolve, &domain);
        validate::check_file(target, &domain, &token).await
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
            .unwrap_or(crate::DEFAULT_CERT_LIFETIME),
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

pub(super) async fn describe(sim: &Sim, p: &Params) -> Answer {
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
