//! CAS 2020-04-07 actions and the order state machine: domain_verify → process →
//! certificate (or verify_fail); cancel → payed; delete refunds; revoke within 30 days refunds;
//! renew makes a new order (not for free products).
//!
//! This module routes the actions and holds what they share (parameters, quota, saving);
//! [`create`] makes orders, [`advance`] moves and describes them, [`close`] ends them.
mod advance;
mod close;
mod create;

use serde_json::{json, Value};

use crate::reject::Reject;
use crate::server::Params;
use crate::state::State;
use crate::Sim;
use cas_api::model::DEFAULT_PRODUCT;

pub(crate) use advance::advance;

pub(super) const REFUND_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;

pub(super) type Answer = Result<(Value, Option<u64>), Reject>;

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(super) fn get<'a>(p: &'a Params, name: &str) -> Option<&'a str> {
    p.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

pub(super) fn req<'a>(p: &'a Params, name: &str) -> Result<&'a str, Reject> {
    get(p, name).ok_or_else(|| Reject::missing(name))
}

pub(super) fn order_id(p: &Params) -> Result<u64, Reject> {
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
        "CreateCertificateForPackageRequest" => create::for_package(sim, p).await,
        "CreateCertificateRequest" => create::dv(sim, p).await,
        "CreateCertificateWithCsrRequest" => create::with_csr(sim, p).await,
        "DescribeCertificateState" => advance::describe(sim, p).await,
        "CancelOrderRequest" => close::cancel(sim, p).await,
        "DeleteCertificateRequest" => close::delete(sim, p).await,
        "CancelCertificateForPackageRequest" => close::revoke(sim, p).await,
        "RenewCertificateOrderForPackageRequest" => create::renew(sim, p).await,
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
pub(super) fn package(sim: &Sim, product: &str) -> Result<i64, Reject> {
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

pub(super) async fn save(sim: &Sim, st: &State) -> Result<(), Reject> {
    sim.persist(st)
        .map_err(|e| Reject::cas_error(format_args!("simulator state: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::state::OrderState;
    use crate::{auth, ca, faults, state, SimOptions};

    fn sim(dir: &std::path::Path, opts: SimOptions) -> Sim {
        Sim {
            verifier: std::sync::Mutex::new(auth::Verifier::new(&[])),
            faults: std::sync::Mutex::new(faults::Faults::new(Default::default())),
            balancer: crate::validate::Balancer::new(0),
            held: std::sync::Mutex::default(),
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
}
