//! # cas-api
//!
//! A client for the Alibaba Cloud SSL Certificates Service (CAS, API version 2020-04-07) and
//! Alidns (2015-01-09): request signing (v1 HMAC-SHA1 and V3 ACS3-HMAC-SHA256, checked against
//! the official SDKs), typed actions, errors classified once ([`ErrorClass`]: retry, re-sign,
//! fail, and "never blindly repeat a create"), retries within a budget, a client-side rate
//! limit, and the credentials provider chain of the official SDKs.
//!
//! ```no_run
//! use cas_api::credentials::{AccessKey, Credentials, CredentialsSettings};
//! use cas_api::{Client, ClientOptions, Secret, SignatureVersion};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // The SDKs' chain: ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET, the CLI profile, ~/.alibabacloud…
//! let creds = Credentials::resolve(&CredentialsSettings::default())
//!     // …or a key you hold yourself.
//!     .or_else(|_| -> Result<_, Box<dyn std::error::Error>> {
//!         Ok(Credentials::fixed(AccessKey {
//!             id: "LTAI...".into(),
//!             secret: Secret::new("..."),
//!             security_token: None,
//!             expires: None,
//!         }))
//!     })?;
//! let opts = ClientOptions {
//!     signature: SignatureVersion::V3,
//!     ..ClientOptions::default()
//! };
//! let client = Client::new(&opts, creds)?;
//! let state = client.describe_package_state("digicert-free-1-free").await?;
//! println!("{} of {} certificates left", state.left(), state.total_count);
//! # Ok(())
//! # }
//! ```
//!
//! # Modules
//! - [`options`]: [`ClientOptions`], the one home of endpoints and client defaults.
//! - [`client`]: the typed actions, transport, retries.
//! - [`sign`]: the v1 and V3 signers.
//! - [`error`]: [`ApiError`] and its [`ErrorClass`].
//! - [`model`]: the request and answer types.
//! - [`ratelimit`], [`backoff`]: pacing of calls and retries.
//! - [`credentials`]: where the AccessKey comes from.
//! - [`secret`]: a string type that never prints itself.
//! - [`fs_trust`]: whether a file (the credentials file) can be trusted: owners and modes.
#![warn(unreachable_pub)]

pub mod backoff;
pub mod client;
pub mod credentials;
pub mod error;
pub mod fs_trust;
pub mod model;
pub mod options;
pub mod ratelimit;
/// Wire shapes; public only so the fuzz tests can drive the decoders.
#[doc(hidden)]
pub mod responses;
pub mod secret;
pub mod sign;

pub use client::{Client, Observer};
pub use error::{ApiError, ErrorClass};
pub use options::{check_endpoint, ClientOptions, SignatureVersion};
pub use secret::Secret;
