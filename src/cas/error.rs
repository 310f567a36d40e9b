//! The API error type and its classification (spec §5) — the one place that decides whether a
//! failure is retried, final, or of unknown outcome.

/// What the caller may do after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ErrorClass {
    /// Try again later with backoff (throttling, 5xx, network before the request was sent).
    Retryable,
    /// Retrying will not help (bad parameters, auth, quota, not found, wrong state).
    Permanent,
    /// The request may have taken effect (timeout or reset after sending, 5xx on a create):
    /// a create must be looked for with ListUserCertificateOrder before it is repeated.
    OutcomeUnknown,
}

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The service answered with an error body.
    #[error("{action}: {code}: {message} (HTTP {status}, RequestId {request_id})")]
    Service {
        action: String,
        status: u16,
        code: String,
        /// Already redacted where the service echoes signing material.
        message: String,
        request_id: String,
    },
    /// No usable answer: connect failure, timeout, reset, truncated or non-JSON body.
    #[error("{action}: {detail}")]
    Transport {
        action: String,
        detail: String,
        /// True when the request may have reached the server (so a create may have happened).
        maybe_sent: bool,
    },
    /// A 2xx answer we could not make sense of.
    #[error("{action}: unexpected answer: {detail}")]
    Decode { action: String, detail: String },
    /// No credentials, or they could not be read.
    #[error("credentials: {0}")]
    Credentials(String),
    /// Bad client configuration (endpoint, etc.).
    #[error("configuration: {0}")]
    Config(String),
}
