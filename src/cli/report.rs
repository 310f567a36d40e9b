//! One mapping from a failure to its exit code and its wording, for every command: a wrong
//! secret, an exhausted quota or an unreachable endpoint reads the same and exits the same
//! whether `check`, `package`, `orders`, `order` or `renew` met it.
use std::process::ExitCode;

use cas_api::credentials::CredentialsError;
use cas_api::model::PackageState;
use cas_api::{ApiError, ErrorClass};
use cas_certd::config::ConfigErrors;

use super::exit;

/// A failure as the operator sees it: one line (without the `cas-certd: ` prefix) and the
/// exit code it gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: u8,
    pub line: String,
}

impl Failure {
    pub fn new(code: u8, line: impl Into<String>) -> Failure {
        Failure {
            code,
            line: line.into(),
        }
    }

    /// Prints the line on stderr.
    pub fn print(&self) {
        eprintln!("cas-certd: {}", self.line);
    }

    /// Prints the line and gives the exit code.
    pub fn exit(&self) -> ExitCode {
        self.print();
        ExitCode::from(self.code)
    }
}

/// The configuration's errors, one `path:line:col: key: reason` line each (no prefix: the
/// path leads), and the CONFIG exit code.
pub fn config(errs: &ConfigErrors) -> ExitCode {
    for e in &errs.errors {
        eprintln!("{e}");
    }
    ExitCode::from(exit::CONFIG)
}

/// Credentials missing or unreadable: a configuration problem (3); keys CAS rejects are 4.
pub fn credentials(e: &CredentialsError) -> Failure {
    Failure::new(exit::CONFIG, format!("credentials: {e}"))
}

/// An API failure. `product` names the product a quota error is about.
pub fn api(e: &ApiError, product: Option<&str>) -> Failure {
    let rid = e
        .request_id()
        .map(|r| format!(" (RequestId {r})"))
        .unwrap_or_default();
    match e {
        ApiError::Credentials(m) => return Failure::new(exit::CONFIG, format!("credentials: {m}")),
        ApiError::Config(m) => return Failure::new(exit::CONFIG, format!("configuration: {m}")),
        _ => {}
    }
    let product = product.unwrap_or("this product");
    // The wording of a missing or exhausted package is the API layer's (one home).
    if let Some(m) = e.quota_message(product) {
        return Failure::new(exit::QUOTA, format!("{m}{rid}"));
    }
    match e.code() {
        Some("SignatureDoesNotMatch") | Some("IncompleteSignature") => Failure::new(
            exit::AUTH,
            format!("signature rejected by CAS: check the AccessKey secret{rid}"),
        ),
        Some(c) if c.starts_with("InvalidAccessKeyId") => Failure::new(
            exit::AUTH,
            format!("AccessKey ID rejected by CAS ({c}): check the AccessKey ID{rid}"),
        ),
        Some(c) if e.is_auth() => Failure::new(
            exit::AUTH,
            format!("credentials rejected by CAS ({c}){rid}"),
        ),
        _ => match e.class() {
            ErrorClass::Retryable | ErrorClass::OutcomeUnknown => {
                Failure::new(exit::TRANSIENT, format!("{e}; try again later"))
            }
            ErrorClass::Permanent => Failure::new(exit::REFUSED, e.to_string()),
        },
    }
}

/// A package with nothing left is a failure: scripts ask `package` or `check` before ordering.
pub fn exhausted(s: &PackageState) -> Option<Failure> {
    (s.used_count >= s.total_count).then(|| {
        Failure::new(
            exit::QUOTA,
            format!(
                "quota exhausted for {} ({} of {} used)",
                s.product_code, s.used_count, s.total_count
            ),
        )
    })
}
