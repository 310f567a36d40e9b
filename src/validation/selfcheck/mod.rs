//! Checking a published proof from outside, the way the CA would: the FILE proof over plain
//! HTTP (`file`), the DNS proof at the zone's own name servers (`dns`). A failure here is
//! information for the operator (status, one event per reason, a metric), never a reason to
//! cancel anything. Everything the network answers is untrusted: sizes are capped, bodies are
//! never logged or shown, redirects are followed only on the same host over http.
pub mod dns;
pub mod file;

use crate::config::SelfCheck;
use crate::validation::{alidns, file as webroot, Presented};
use cas_api::model::Challenge;

/// What kind of failure, for the metric's `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// An HTTP answer other than 200.
    Http,
    /// No answer: resolution, connection, timeout.
    Network,
    /// A redirect the CA would not follow to the proof.
    Redirect,
    /// An answer whose content is not the proof.
    Content,
    /// The DNS record is missing, different, or the name servers did not answer.
    Dns,
    /// The challenge itself was refused (not a name of this certificate, an unsafe Uri).
    Challenge,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Http => "http",
            FailureKind::Network => "network",
            FailureKind::Redirect => "redirect",
            FailureKind::Content => "content",
            FailureKind::Dns => "dns",
            FailureKind::Challenge => "challenge",
        }
    }
}

/// Why the proof cannot be seen from outside. `reason` is shown in `status` and logged: it is
/// made here from the address reached, a status code or an error kind, never from a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofFailure {
    pub kind: FailureKind,
    pub reason: String,
}

impl ProofFailure {
    pub fn new(kind: FailureKind, reason: impl Into<String>) -> ProofFailure {
        ProofFailure {
            kind,
            reason: reason.into(),
        }
    }
}

/// The result of one self-check.
pub type ProofCheck = Result<(), ProofFailure>;

/// Checks the proof of `challenge` (for a certificate of `domains`; `presented` says where a
/// DNS proof was written, when cas-certd wrote it through Alidns).
pub async fn check(
    cfg: &SelfCheck,
    domains: &[String],
    challenge: &Challenge,
    presented: Option<&Presented>,
) -> ProofCheck {
    let refused = |e: String| ProofFailure::new(FailureKind::Challenge, e);
    match challenge {
        Challenge::File {
            domain,
            uri,
            content,
        } => {
            // The same checks as publishing: a name of ours, the well-known path.
            webroot::check_uri(uri).map_err(|e| refused(e.to_string()))?;
            // The configured (validated) name, not the network's spelling of it.
            let Some(domain) = domains.iter().find(|d| d.eq_ignore_ascii_case(domain)) else {
                return Err(refused(
                    "the challenge is for a name this certificate does not cover".into(),
                ));
            };
            file::check(&cfg.resolve, domain, uri, content).await
        }
        Challenge::Dns {
            record_domain,
            record_value,
            ..
        } => {
            let base = alidns::base_domain(domains).unwrap_or_default();
            let name = match presented {
                Some(Presented::Alidns { zone, rr, .. }) => join(rr, zone),
                _ => dns::record_name(record_domain, &base),
            };
            alidns::check_value(record_value).map_err(|e| refused(e.to_string()))?;
            dns::check(&cfg.nameservers, &name, record_value).await
        }
        Challenge::Unknown { .. } => Err(refused("unknown validation type".into())),
    }
}

fn join(rr: &str, zone: &str) -> String {
    if rr == "@" || rr.is_empty() {
        zone.to_string()
    } else {
        format!("{rr}.{zone}")
    }
}
