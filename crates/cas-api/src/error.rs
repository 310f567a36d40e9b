//! The API error type and its classification — the one place that decides whether a
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

/// Codes that are retried with backoff.
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "Throttling.User",
    "Throttling.Api",
    "ServiceUnavailable",
    "InternalError",
    "UnknownError",
];

/// Codes retried exactly once, re-signed (a fresh nonce and timestamp fix them unless the
/// clock is really off).
pub const RESIGN_ONCE_CODES: &[&str] = &["SignatureNonceUsed", "InvalidTimeStamp.Expired"];

/// Codes that mean the credentials are wrong.
pub const AUTH_CODES: &[&str] = &[
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId.NotFound",
    "InvalidAccessKeyId.Inactive",
    "InvalidAccessKeyId",
    "IncompleteSignature",
    "InvalidSecurityToken.Expired",
    "InvalidSecurityToken.MismatchWithAccessKey",
];

/// Codes that mean the quota is exhausted or the product not bought.
pub const QUOTA_CODES: &[&str] = &["NotRemainCount", "NotFoundPackage"];

/// The message shown instead of the server's, which echoes its string to sign.
pub const SIGNATURE_REJECTED: &str =
    "signature rejected by the server (check the AccessKey secret)";

impl ApiError {
    /// The classification. The only place that decides.
    pub fn class(&self) -> ErrorClass {
        match self {
            ApiError::Service { status, code, .. } => {
                if RETRYABLE_CODES.contains(&code.as_str())
                    || code.starts_with("Throttling")
                    || RESIGN_ONCE_CODES.contains(&code.as_str())
                {
                    ErrorClass::Retryable
                } else if AUTH_CODES.contains(&code.as_str())
                    || QUOTA_CODES.contains(&code.as_str())
                    || (400..500).contains(status)
                {
                    ErrorClass::Permanent
                } else if *status >= 500 && code != "Error" {
                    ErrorClass::Retryable
                } else {
                    // CAS answers `Error` with HTTP 500 for requests it refuses; other
                    // unknown codes on a non-error status are not worth retrying either.
                    ErrorClass::Permanent
                }
            }
            ApiError::Transport { maybe_sent, .. } => {
                if *maybe_sent {
                    ErrorClass::OutcomeUnknown
                } else {
                    ErrorClass::Retryable
                }
            }
            // A 2xx we could not decode: the call did happen; repeating it yields the same.
            ApiError::Decode { .. } => ErrorClass::Permanent,
            ApiError::Credentials(_) | ApiError::Config(_) => ErrorClass::Permanent,
        }
    }

    /// Whether a non-idempotent call (create, renew) may be repeated after this error. Only
    /// errors proving the request had no effect qualify: throttling and re-sign codes are
    /// answered before the action runs; a 5xx or a transport failure after sending is not.
    pub fn safe_to_repeat_create(&self) -> bool {
        match self {
            ApiError::Service { code, .. } => {
                code.starts_with("Throttling") || RESIGN_ONCE_CODES.contains(&code.as_str())
            }
            ApiError::Transport { maybe_sent, .. } => !maybe_sent,
            _ => false,
        }
    }

    /// The service's error code, if the service answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The service's RequestId, if the service answered.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ApiError::Service { request_id, .. } if !request_id.is_empty() => Some(request_id),
            _ => None,
        }
    }

    /// The HTTP status, if the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Service { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when the credentials were rejected.
    pub fn is_auth(&self) -> bool {
        self.code().is_some_and(|c| AUTH_CODES.contains(&c))
    }

    /// True when the quota is exhausted or the product not bought.
    pub fn is_quota(&self) -> bool {
        self.code().is_some_and(|c| QUOTA_CODES.contains(&c))
    }

    /// The operator's words for a quota or package error on `product`; `None` for any other.
    pub fn quota_message(&self, product: &str) -> Option<String> {
        match self.code()? {
            "NotFoundPackage" => Some(format!(
                "no package of {product} bought on this account (NotFoundPackage)"
            )),
            "NotRemainCount" => Some(format!("quota exhausted for {product} (NotRemainCount)")),
            _ => None,
        }
    }
}

/// Makes a server message safe to show: SignatureDoesNotMatch echoes the server's string to
/// sign (and some services add more signing material), so it is replaced wholesale; any other
/// message is cut at a "string to sign" echo should one appear.
pub fn redact_message(code: &str, message: &str) -> String {
    if code == "SignatureDoesNotMatch" || code == "IncompleteSignature" {
        return SIGNATURE_REJECTED.to_string();
    }
    let lower = message.to_ascii_lowercase();
    match lower.find("string to sign") {
        Some(i) => {
            let cut = message[..i].trim_end();
            format!("{cut} [redacted]")
        }
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(status: u16, code: &str) -> ApiError {
        ApiError::Service {
            action: "A".into(),
            status,
            code: code.into(),
            message: "m".into(),
            request_id: "r".into(),
        }
    }

    #[test]
    fn classification_follows_spec_section_5() {
        for (s, c) in [
            (400, "Throttling"),
            (400, "Throttling.User"),
            (400, "Throttling.Api"),
            (503, "ServiceUnavailable"),
            (500, "InternalError"),
            (500, "UnknownError"),
            (502, "WhateverGateway"),
            (400, "SignatureNonceUsed"),
            (400, "InvalidTimeStamp.Expired"),
        ] {
            assert_eq!(svc(s, c).class(), ErrorClass::Retryable, "{c}");
        }
        for (s, c) in [
            (400, "SignatureDoesNotMatch"),
            (404, "InvalidAccessKeyId.NotFound"),
            (400, "InvalidAccessKeyId.Inactive"),
            (400, "MissingParameter"),
            (400, "InvalidParameter"),
            (404, "NotFoundPackage"),
            (404, "NotRemainCount"),
            (403, "CreateCertificateRequestFailed"),
            (404, "NotFoundOrder"),
            (403, "OrderStateError"),
            (403, "DeleteFail"),
            (500, "Error"),
            (418, "Teapot"),
        ] {
            assert_eq!(svc(s, c).class(), ErrorClass::Permanent, "{c}");
        }
        let t = |maybe_sent| ApiError::Transport {
            action: "A".into(),
            detail: "d".into(),
            maybe_sent,
        };
        assert_eq!(t(false).class(), ErrorClass::Retryable);
        assert_eq!(t(true).class(), ErrorClass::OutcomeUnknown);
        assert!(t(false).safe_to_repeat_create());
        assert!(!t(true).safe_to_repeat_create());
        assert!(!svc(503, "ServiceUnavailable").safe_to_repeat_create());
        assert!(svc(400, "Throttling.User").safe_to_repeat_create());
    }

    #[test]
    fn accessors_and_kinds() {
        let e = svc(404, "NotRemainCount");
        assert_eq!(e.code(), Some("NotRemainCount"));
        assert_eq!(e.request_id(), Some("r"));
        assert!(e.is_quota() && !e.is_auth());
        assert_eq!(
            svc(404, "NotFoundPackage").quota_message("p").as_deref(),
            Some("no package of p bought on this account (NotFoundPackage)")
        );
        assert!(svc(403, "OrderStateError").quota_message("p").is_none());
        assert!(svc(400, "SignatureDoesNotMatch").is_auth());
        assert_eq!(ApiError::Config("x".into()).code(), None);
    }

    #[test]
    fn signature_messages_are_redacted() {
        let m = "Specified signature is not matched with our calculation. server string to sign is:POST&%2F&AccessKeyId%3Dk";
        assert_eq!(
            redact_message("SignatureDoesNotMatch", m),
            SIGNATURE_REJECTED
        );
        let r = redact_message("Other", m);
        assert!(!r.contains("AccessKeyId"), "{r}");
        assert_eq!(redact_message("NotFoundOrder", "no order"), "no order");
    }
}
