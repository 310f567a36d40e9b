//! The optional Prometheus endpoint (`[metrics] listen`): per-certificate expiry, state and last
//! successful check; orders created; API calls by action and code; renewal failures.
//!
//! INTERFACE PINNED FOR PARALLEL WORK — bodies filled by issue 5.
#![allow(unused_variables)]

/// Shared, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {}

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
        Metrics {}
    }
    /// `state` is the lifecycle state name; times are Unix seconds.
    pub fn set_certificate(
        &self,
        name: &str,
        not_after: Option<i64>,
        state: &str,
        last_success: Option<i64>,
    ) {
    }
    pub fn remove_certificate(&self, name: &str) {}
    pub fn order_created(&self, name: &str) {}
    pub fn renewal_failed(&self, name: &str) {}
    /// One API attempt; `code` is `OK`, the service's error Code, or `Transport`.
    pub fn api_call(&self, action: &str, code: &str) {}
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        String::new()
    }
}

/// Serves `/metrics` until `shutdown` resolves.
pub async fn serve(
    listen: std::net::SocketAddr,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), MetricsError> {
    todo!("issue 5")
}
