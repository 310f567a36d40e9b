//! Where the AccessKey comes from, in the official SDKs' order (spec §7): env vars, the CLI
//! profile file, the INI credentials file, a file named in the config, systemd credentials,
//! the ECS RAM role (refreshed before expiry).
//!
//! INTERFACE PINNED FOR PARALLEL WORK — bodies filled by issue 2.
#![allow(unused_variables)]

use crate::config::CredentialsSettings;
use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("no credentials found (tried: {tried})")]
    NotFound { tried: String },
    #[error("{path}: {reason}")]
    File {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("ECS RAM role: {0}")]
    Ecs(String),
}

/// One AccessKey, possibly temporary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub secret: Secret,
    pub security_token: Option<Secret>,
    /// For temporary credentials.
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
}

/// A source of credentials; refreshes temporary ones before they expire. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Credentials {}

impl Credentials {
    /// Finds credentials in the SDKs' order; `describe()` says where they came from.
    pub fn resolve(settings: &CredentialsSettings) -> Result<Credentials, CredentialsError> {
        todo!("issue 2")
    }
    /// Fixed credentials (tests, the demo).
    pub fn fixed(key: AccessKey) -> Credentials {
        todo!("issue 2")
    }
    /// The current key, refreshed if it is about to expire.
    pub async fn get(&self) -> Result<AccessKey, CredentialsError> {
        todo!("issue 2")
    }
    /// Where they came from, e.g. "environment" or "/etc/cas-certd/credentials" — never the secret.
    pub fn describe(&self) -> String {
        todo!("issue 2")
    }
}
