//! Proving control of a domain: `file` (webroot), `alidns` (TXT), `command`, `manual`.
//! Each provider has two steps, present and cleanup; what was presented is serialisable so a
//! restarted daemon can still clean up.
//!
//! INTERFACE PINNED FOR PARALLEL WORK — bodies filled by issue 4 (config/deploy work).
#![allow(unused_variables)]

use std::path::PathBuf;

use crate::cas::model::Challenge;
use crate::config::Validation;

#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    #[error("unsafe challenge from CAS: {0}")]
    Unsafe(String),
    #[error("challenge type does not fit the configured method: {0}")]
    Mismatch(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("alidns: {0}")]
    Dns(#[from] crate::cas::ApiError),
    #[error("no Alidns zone found for {0}")]
    NoZone(String),
    #[error("command: {0}")]
    Command(#[from] crate::hook::HookError),
}

/// What was put in place, so it can be removed later (also after a restart).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Presented {
    File {
        path: PathBuf,
    },
    Alidns {
        zone: String,
        rr: String,
        record_id: String,
    },
    Command {
        argv: Vec<String>,
        domain: String,
        record: String,
        value: String,
        timeout_secs: u64,
    },
    /// Nothing to clean: the operator publishes it.
    Manual {
        instructions: String,
    },
}

/// Context a provider may need.
pub struct Ctx<'a> {
    pub cert_name: &'a str,
    pub domains: &'a [String],
    pub client: &'a crate::cas::Client,
}

/// Publishes `challenge` the way `validation` says.
pub async fn present(
    validation: &Validation,
    challenge: &Challenge,
    ctx: &Ctx<'_>,
) -> Result<Presented, ValidationError> {
    todo!("issue 4")
}

/// Removes what `present` published. Idempotent: a missing file or record is not an error.
pub async fn cleanup(presented: &Presented, ctx: &Ctx<'_>) -> Result<(), ValidationError> {
    todo!("issue 4")
}
