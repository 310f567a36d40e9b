//! HTTP: one axum listener, GET (query) and POST (form body and/or query), routed by
//! Version to CAS or Alidns after authentication and fault injection (a held action runs in a
//! task of its own); the admin ledger.
use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::auth::SignedRequest;
use super::faults::Fault;
use super::reject::Reject;
use super::state::Call;
use super::Sim;

pub(crate) const CAS_VERSION: &str = "2020-04-07";
pub(crate) const DNS_VERSION: &str = "2015-01-09";

/// Parameters of one call, query and form merged (the auth parameters included).
pub(crate) type Params = HashMap<String, String>;

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    sim: Arc<Sim>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let app = axum::Router::new()
        .route("/_sim/ledger", axum::routing::get(ledger))
        .fallback(handle)
        .with_state(sim);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = stop.await;
        })
        .await;
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (
        status,
        [("content-type", "application/json;charset=utf-8")],
        body,
    )
        .into_response()
}

/// Alibaba's `HostId`: the host name of the product's endpoint (the simulator stands in for
/// both; an unknown or missing Version is judged by CAS, the simulator's main product).
fn host_id(version: &str) -> &'static str {
    if version == DNS_VERSION {
        "alidns.aliyuncs.com"
    } else {
        "cas.aliyuncs.com"
    }
}

fn xml_response(status: StatusCode, root: &str, v: &Value) -> Response {
    (
        status,
        [("content-type", "application/xml;charset=utf-8")],
        super::xml::document(root, v),
    )
        .into_response()
}

/// How the caller asked to be answered (`Format`, JSON unless XML is asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Xml,
}

fn reject_response(r: &Reject, version: &str, format: Format) -> Response {
    let body = json!({
        "RequestId": request_id(),
        "HostId": host_id(version),
        "Code": r.code,
        "Message": r.message,
        "Recommend": format!("https://api.aliyun.com/troubleshoot?q={}", r.code),
    });
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
    match format {
        Format::Json => json_response(status, &body),
        Format::Xml => xml_response(status, "Error", &body),
    }
}

async fn ledger(AxState(sim): AxState<Arc<Sim>>) -> Response {
    if !sim.opts.admin {
        return StatusCode::NOT_FOUND.into_response();
    }
    let st = sim.state.lock().await;
    let orders: Vec<Value> = st
        .orders
        .iter()
        .map(|o| {
            json!({"order_id": o.id, "state": o.state.type_str(), "domains": o.domains,
                   "product_code": o.product_code, "created_by": o.created_by})
        })
        .collect();
    let held = sim.held.lock().map(|h| h.clone()).unwrap_or_default();
    json_response(
        StatusCode::OK,
        &json!({"calls": st.calls, "orders": orders, "held": held}),
    )
}

/// Name/value pairs of a query string or form body, decoded.
pub(crate) fn parse_pairs(s: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(s.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn handle(
    AxState(sim): AxState<Arc<Sim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut resp = answer(sim.clone(), method, uri, headers, body).await;
    // A shifted server clock shows in the Date header too (hyper would send the host's).
    let offset = sim.verifier.lock().map(|v| v.clock_offset()).ok();
    if let Some(off) = offset.filter(|o| !o.is_zero()) {
        let date = (chrono::Utc::now() + off)
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        if let Ok(v) = axum::http::HeaderValue::from_str(&date) {
            resp.headers_mut().insert(axum::http::header::DATE, v);
        }
    }
    resp
}

async fn answer(
    sim: Arc<Sim>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::GET && method != Method::POST {
        return reject_response(
            &Reject::new(
                405,
                "UnsupportedHTTPMethod",
                "Only GET and POST are supported.",
            ),
            "",
            Format::Json,
        );
    }
    let query = parse_pairs(uri.query().unwrap_or(""));
    let is_form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let form = if is_form {
        parse_pairs(&String::from_utf8_lossy(&body))
    } else {
        Vec::new()
    };
    let mut params: Params = HashMap::new();
    for (k, v) in query.iter().chain(form.iter()) {
        params.insert(k.clone(), v.clone());
    }
    let hdr = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let action = hdr("x-acs-action")
        .or_else(|| params.get("Action").cloned())
        .unwrap_or_default();
    let version = hdr("x-acs-version")
        .or_else(|| params.get("Version").cloned())
        .unwrap_or_default();
    let format = if params
        .get("Format")
        .is_some_and(|f| f.eq_ignore_ascii_case("XML"))
    {
        Format::Xml
    } else {
        Format::Json
    };

    if let Some(l) = sim.faults.lock().map(|mut f| f.latency()).unwrap_or(None) {
        tokio::time::sleep(l).await;
    }
    let verified = {
        let req = SignedRequest {
            method: method.as_str(),
            path: uri.path(),
            query: &query,
            form: &form,
            headers: &headers,
            body: &body,
        };
        match sim.verifier.lock() {
            Ok(mut v) => {
                let now = v.now();
                v.verify(&req, now)
            }
            Err(_) => Err(Reject::new(500, "InternalError", "verifier poisoned")),
        }
    };
    if let Err(r) = verified {
        record(&sim, &action, &r.code, None).await;
        return reject_response(&r, &version, format);
    }
    let fault = sim
        .faults
        .lock()
        .map(|mut f| f.decide(&action))
        .unwrap_or(Fault::None);
    match fault {
        Fault::None => {}
        Fault::Unavailable => {
            let r = Reject::new(
                503,
                "ServiceUnavailable",
                "The request has failed due to a temporary failure of the server.",
            );
            record(&sim, &action, &r.code, None).await;
            return reject_response(&r, &version, format);
        }
        Fault::Throttled => {
            let r = Reject::new(
                400,
                "Throttling.User",
                "Request was denied due to user flow control.",
            );
            record(&sim, &action, &r.code, None).await;
            return reject_response(&r, &version, format);
        }
        Fault::Reset => {
            record(&sim, &action, "fault:reset", None).await;
            return dropped_connection();
        }
        // Decided now, acted on after the action ran (below).
        Fault::Lost => {}
        Fault::Garbage => {
            record(&sim, &action, "fault:garbage", None).await;
            return (
                StatusCode::OK,
                [("content-type", "application/json")],
                "{\"RequestId\":\"trunc",
            )
                .into_response();
        }
    }
    let delay = sim.faults.lock().ok().and_then(|f| f.action_delay(&action));
    let Some(delay) = delay else {
        return perform(&sim, &action, &version, &params, format, fault).await;
    };
    // Held in a task of its own: hyper drops this handler when the caller hangs up, but a call
    // that reached the service is carried out (and charged) all the same.
    let task = tokio::spawn(async move {
        let _held = Held::new(&sim, &action);
        tokio::time::sleep(delay).await;
        perform(&sim, &action, &version, &params, format, fault).await
    });
    match task.await {
        Ok(r) => r,
        Err(e) => reject_response(
            &Reject::new(500, "InternalError", format!("held call failed: {e}")),
            "",
            format,
        ),
    }
}

/// A call held by `action_delay`, counted in [`Sim::held`] until it is answered.
struct Held<'a> {
    sim: &'a Sim,
    action: String,
}

impl<'a> Held<'a> {
    fn new(sim: &'a Sim, action: &str) -> Held<'a> {
        if let Ok(mut h) = sim.held.lock() {
            *h.entry(action.to_string()).or_insert(0) += 1;
        }
        Held {
            sim,
            action: action.to_string(),
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Ok(mut h) = self.sim.held.lock() {
            if let Some(n) = h.get_mut(&self.action) {
                *n -= 1;
                if *n == 0 {
                    h.remove(&self.action);
                }
            }
        }
    }
}

/// Runs an authenticated call's action (the fault decided for it applied) and answers it.
async fn perform(
    sim: &Sim,
    action: &str,
    version: &str,
    params: &Params,
    format: Format,
    fault: Fault,
) -> Response {
    let result = match version {
        CAS_VERSION => super::cas::dispatch(sim, action, params).await,
        DNS_VERSION => super::dns::dispatch(sim, action, params).await,
        "" => Err(Reject::missing("Version")),
        _ => Err(Reject::new(
            400,
            "InvalidVersion",
            format!("Specified parameter Version is not valid: {version}"),
        )),
    };
    if fault == Fault::Lost {
        // The action happened (a create is charged); only the answer never arrives.
        let order = match &result {
            Ok((_, order)) => *order,
            Err(_) => params.get("OrderId").and_then(|s| s.parse().ok()),
        };
        record(sim, action, "fault:lost", order).await;
        return dropped_connection();
    }
    match result {
        Ok((mut v, order)) => {
            record(sim, action, "OK", order).await;
            let domain = v.get("Domain").and_then(Value::as_str).unwrap_or_default();
            if action == "DescribeCertificateState"
                && super::hostile::mode_for(&sim.opts.hostile, domain)
                    == Some(super::hostile::Mode::HugeBody)
            {
                return super::hostile::huge_body();
            }
            if let Value::Object(m) = &mut v {
                m.insert("RequestId".into(), Value::String(request_id()));
            }
            match format {
                Format::Json => json_response(StatusCode::OK, &v),
                Format::Xml => xml_response(StatusCode::OK, &format!("{action}Response"), &v),
            }
        }
        Err(r) => {
            let order = params.get("OrderId").and_then(|s| s.parse().ok());
            record(sim, action, &r.code, order).await;
            reject_response(&r, version, format)
        }
    }
}

/// axum gives a handler no socket to close; a body that fails on its first chunk makes hyper
/// abort the connection without a complete answer.
fn dropped_connection() -> Response {
    let s = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("simulated connection reset"))
    });
    Response::new(Body::from_stream(s))
}

/// Appends to the ledger and persists (see `--persist-interval`).
async fn record(sim: &Sim, action: &str, code: &str, order_id: Option<u64>) {
    let mut st = sim.state.lock().await;
    st.calls.push(Call {
        action: action.to_string(),
        code: code.to_string(),
        order_id,
    });
    if let Err(e) = sim.persist(&st) {
        tracing::error!("simulator: {e}");
    }
}
