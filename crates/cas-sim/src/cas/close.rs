//! Ending an order: cancel (under review → `payed`), delete (refunds a cancelled or failed
//! order) and revoke (`CancelCertificateForPackageRequest`, refunds within 30 days).
use serde_json::json;

use super::{now_ms, order_id, save, Answer, REFUND_WINDOW_MS};
use crate::reject::Reject;
use crate::server::Params;
use crate::state::OrderState;
use crate::Sim;

pub(super) async fn cancel(sim: &Sim, p: &Params) -> Answer {
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

pub(super) async fn delete(sim: &Sim, p: &Params) -> Answer {
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

pub(super) async fn revoke(sim: &Sim, p: &Params) -> Answer {
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
