//! The optional Prometheus endpoint (`[metrics] listen`): per-certificate expiry, state and last
//! successful check; orders created; API calls by action and code; renewal failures; failed
//! proof self-checks by kind.
//!
//! The numbers live in one mutex-guarded struct of ordered maps, so the exposition is
//! deterministic and a scrape sees one consistent snapshot. No metrics crate: the text format
//! is small, and owning it keeps label escaping in one visible place. The HTTP side, with its
//! limits on connections, time and size, is [`http`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};

mod http;
pub use http::{serve, serve_listener, Limits, HEADER_TIMEOUT, MAX_CONNECTIONS, MAX_REQUEST_BYTES};

/// Shared, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    certs: BTreeMap<String, CertGauges>,
    orders_created: BTreeMap<String, u64>,
    renewal_failures: BTreeMap<String, u64>,
    api_calls: BTreeMap<(String, String), u64>,
    /// By target kind (`dingtalk`, `command`, …) and outcome (`sent`, `failed`).
    notifications: BTreeMap<(String, String), u64>,
    /// By reason (`rate_limited`, `queue_full`).
    notifications_skipped: BTreeMap<String, u64>,
    /// Units left per product, as the quota cache counts them.
    quota_remaining: BTreeMap<String, i64>,
    /// Failed proof self-checks by kind (`http`, `network`, `redirect`, `content`, `dns`, …).
    proof_check_failures: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct CertGauges {
    not_after: Option<i64>,
    state: String,
    last_success: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics: cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

impl Metrics {
    pub fn new() -> Self {
        Metrics::default()
    }

    /// A poisoned lock only means another thread panicked mid-update of plain counters; the
    /// data is still usable, so we keep serving rather than propagate the panic.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `state` is the lifecycle state name; times are Unix seconds.
    pub fn set_certificate(
        &self,
        name: &str,
        not_after: Option<i64>,
        state: &str,
        last_success: Option<i64>,
    ) {
        let mut g = self.lock();
        let c = g.certs.entry(name.to_string()).or_default();
        c.not_after = not_after;
        c.state = state.to_string();
        // A failed check reports None: keep the last success we knew of.
        if last_success.is_some() {
            c.last_success = last_success;
        }
    }

    pub fn remove_certificate(&self, name: &str) {
        let mut g = self.lock();
        g.certs.remove(name);
        g.orders_created.remove(name);
        g.renewal_failures.remove(name);
    }

    pub fn order_created(&self, name: &str) {
        *self
            .lock()
            .orders_created
            .entry(name.to_string())
            .or_default() += 1;
    }

    pub fn renewal_failed(&self, name: &str) {
        *self
            .lock()
            .renewal_failures
            .entry(name.to_string())
            .or_default() += 1;
    }

    /// The units of `product` left as the daemon counts them (`lifecycle::quota`).
    pub fn quota_remaining(&self, product: &str, left: i64) {
        self.lock()
            .quota_remaining
            .insert(product.to_string(), left);
    }

    /// One API attempt; `code` is `OK`, the service's error Code, or `Transport`.
    pub fn api_call(&self, action: &str, code: &str) {
        *self
            .lock()
            .api_calls
            .entry((action.to_string(), code.to_string()))
            .or_default() += 1;
    }

    /// A notification to a target of kind `target` ended with `outcome` (`sent`, `failed`).
    pub fn notification(&self, target: &str, outcome: &str) {
        *self
            .lock()
            .notifications
            .entry((target.to_string(), outcome.to_string()))
            .or_default() += 1;
    }

    /// `n` notifications not sent, for `reason` (`rate_limited`, `queue_full`).
    pub fn notifications_skipped(&self, reason: &str, n: u64) {
        *self
            .lock()
            .notifications_skipped
            .entry(reason.to_string())
            .or_default() += n;
    }

    /// A proof self-check failed, of `kind` (`validation::selfcheck::FailureKind`).
    pub fn proof_check_failed(&self, kind: &str) {
        *self
            .lock()
            .proof_check_failures
            .entry(kind.to_string())
            .or_default() += 1;
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let g = self.lock();
        let mut out = String::new();
        header(
            &mut out,
            "cas_certd_certificate_not_after_seconds",
            "gauge",
            "notAfter of the deployed certificate, Unix seconds.",
        );
        for (name, c) in &g.certs {
            if let Some(t) = c.not_after {
                sample(
                    &mut out,
                    "cas_certd_certificate_not_after_seconds",
                    &[("cert", name)],
                    t,
                );
            }
        }
        header(
            &mut out,
            "cas_certd_certificate_state",
            "gauge",
            "Lifecycle state of each certificate (1 for the current state).",
        );
        for (name, c) in &g.certs {
            sample(
                &mut out,
                "cas_certd_certificate_state",
                &[("cert", name), ("state", &c.state)],
                1,
            );
        }
        header(
            &mut out,
            "cas_certd_certificate_last_success_seconds",
            "gauge",
            "Last successful check of each certificate, Unix seconds.",
        );
        for (name, c) in &g.certs {
            if let Some(t) = c.last_success {
                sample(
                    &mut out,
                    "cas_certd_certificate_last_success_seconds",
                    &[("cert", name)],
                    t,
                );
            }
        }
        header(
            &mut out,
            "cas_certd_orders_created_total",
            "counter",
            "Certificate orders created.",
        );
        for (name, n) in &g.orders_created {
            sample(
                &mut out,
                "cas_certd_orders_created_total",
                &[("cert", name)],
                *n,
            );
        }
        header(
            &mut out,
            "cas_certd_renewal_failures_total",
            "counter",
            "Failed issuance or renewal attempts.",
        );
        for (name, n) in &g.renewal_failures {
            sample(
                &mut out,
                "cas_certd_renewal_failures_total",
                &[("cert", name)],
                *n,
            );
        }
        header(
            &mut out,
            "cas_certd_quota_remaining",
            "gauge",
            "Units of each product's quota left, as of the last DescribePackageState less the orders made since.",
        );
        for (product, n) in &g.quota_remaining {
            sample(
                &mut out,
                "cas_certd_quota_remaining",
                &[("product", product)],
                *n,
            );
        }
        header(
            &mut out,
            "cas_certd_api_calls_total",
            "counter",
            "CAS and Alidns API attempts by action and result code (OK, an error Code, or Transport).",
        );
        for ((action, code), n) in &g.api_calls {
            sample(
                &mut out,
                "cas_certd_api_calls_total",
                &[("action", action), ("code", code)],
                *n,
            );
        }
        header(
            &mut out,
            "cas_certd_notifications_total",
            "counter",
            "Notifications ([notify]) by target kind and outcome (sent, or failed after the retries).",
        );
        for ((target, outcome), n) in &g.notifications {
            sample(
                &mut out,
                "cas_certd_notifications_total",
                &[("target", target), ("outcome", outcome)],
                *n,
            );
        }
        header(
            &mut out,
            "cas_certd_notifications_skipped_total",
            "counter",
            "Notifications not sent: rate_limited (the per-event limit) or queue_full (dropped).",
        );
        for (reason, n) in &g.notifications_skipped {
            sample(
                &mut out,
                "cas_certd_notifications_skipped_total",
                &[("reason", reason)],
                *n,
            );
        }
        header(
            &mut out,
            "cas_certd_proof_check_failures_total",
            "counter",
            "Proof self-checks that could not see the published proof, by kind (http, network, redirect, content, dns, challenge).",
        );
        for (kind, n) in &g.proof_check_failures {
            sample(
                &mut out,
                "cas_certd_proof_check_failures_total",
                &[("kind", kind)],
                *n,
            );
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_label(out, v);
        out.push('"');
    }
    let _ = writeln!(out, "}} {value}");
}

/// Label values escape backslash, double quote and newline (the text format's only rules).
fn escape_label(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn render_has_help_type_and_samples() {
        let m = Metrics::new();
        m.set_certificate("www", Some(1_800_000_000), "deployed", Some(1_700_000_000));
        m.set_certificate("wild", None, "polling", None);
        m.order_created("www");
        m.order_created("www");
        m.renewal_failed("wild");
        m.proof_check_failed("http");
        m.proof_check_failed("http");
        m.api_call("CreateCertificateRequest", "OK");
        m.api_call("DescribeCertificateState", "Throttling.User");
        m.api_call("DescribeCertificateState", "Throttling.User");
        let out = m.render();
        for line in [
            "# TYPE cas_certd_certificate_not_after_seconds gauge",
            "cas_certd_certificate_not_after_seconds{cert=\"www\"} 1800000000",
            "cas_certd_certificate_state{cert=\"www\",state=\"deployed\"} 1",
            "cas_certd_certificate_state{cert=\"wild\",state=\"polling\"} 1",
            "cas_certd_certificate_last_success_seconds{cert=\"www\"} 1700000000",
            "# TYPE cas_certd_orders_created_total counter",
            "cas_certd_orders_created_total{cert=\"www\"} 2",
            "cas_certd_renewal_failures_total{cert=\"wild\"} 1",
            "cas_certd_proof_check_failures_total{kind=\"http\"} 2",
            "cas_certd_api_calls_total{action=\"CreateCertificateRequest\",code=\"OK\"} 1",
            "cas_certd_api_calls_total{action=\"DescribeCertificateState\",code=\"Throttling.User\"} 2",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
        // A certificate without a notAfter has no expiry sample at all (not a fake 0).
        assert!(!out.contains("not_after_seconds{cert=\"wild\"}"));
        for name in [
            "certificate_not_after_seconds",
            "certificate_state",
            "certificate_last_success_seconds",
            "orders_created_total",
            "renewal_failures_total",
            "api_calls_total",
            "proof_check_failures_total",
        ] {
            assert!(out.contains(&format!("# HELP cas_certd_{name} ")), "{name}");
        }
    }

    #[test]
    fn state_changes_replace_and_failures_keep_last_success() {
        let m = Metrics::new();
        m.set_certificate("a", Some(10), "polling", Some(5));
        m.set_certificate("a", Some(20), "deployed", None);
        let out = m.render();
        assert!(out.contains("cas_certd_certificate_state{cert=\"a\",state=\"deployed\"} 1"));
        assert!(!out.contains("state=\"polling\""));
        assert!(out.contains("cas_certd_certificate_not_after_seconds{cert=\"a\"} 20"));
        assert!(out.contains("cas_certd_certificate_last_success_seconds{cert=\"a\"} 5"));
        m.order_created("a");
        m.remove_certificate("a");
        let out = m.render();
        assert!(!out.contains("cert=\"a\""), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.api_call("Act\"ion", "a\\b\nc");
        let out = m.render();
        assert!(
            out.contains(r#"cas_certd_api_calls_total{action="Act\"ion",code="a\\b\nc"} 1"#),
            "{out}"
        );
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        let m = Metrics::new();
        m.set_certificate("www", Some(1_900_000_000), "deployed", Some(1));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_listener(
            listener,
            m.clone(),
            Limits::default(),
            async {
                let _ = rx.await;
            },
        ));
        let client = reqwest::Client::new();
        let resp = client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        let body = resp.text().await.unwrap();
        assert!(body.contains("cas_certd_certificate_not_after_seconds{cert=\"www\"} 1900000000"));
        // Updates after start are visible: the handler renders per scrape.
        m.order_created("www");
        let body = client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.contains("cas_certd_orders_created_total{cert=\"www\"} 1"));
        let missing = client
            .get(format!("http://{addr}/other"))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        tx.send(()).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn bind_failure_names_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = serve(addr, Metrics::new(), async {}).await.unwrap_err();
        assert!(matches!(err, MetricsError::Bind { .. }));
        assert!(err.to_string().contains(&addr.to_string()));
    }
}
