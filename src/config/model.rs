//! The validated configuration: what the rest of the daemon consumes. Built from the raw TOML
//! by `config::load`/`config::parse`; every value here has already been checked.

use std::path::PathBuf;
use std::time::Duration;

pub use super::fleet::{FleetAuth, FleetKeySource, FleetSettings, FleetTls, PasswordSource};
pub use super::notify::{NotifySettings, RateLimit, WebhookFormat, WebhookSettings, WebhookSource};
pub use cas_api::credentials::CredentialsSettings;
use cas_api::model::Contact;
pub use cas_api::{ClientOptions, SignatureVersion};

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where this config was read from (for messages and reload).
    pub source: Option<PathBuf>,
    /// sled database directory.
    pub state_dir: PathBuf,
    /// `<output_dir>/<name>/{cert,chain,fullchain,privkey}.pem`.
    pub output_dir: PathBuf,
    /// Cron expression with seconds, checked to parse.
    pub check_schedule: String,
    pub poll_min: Duration,
    pub poll_max: Duration,
    pub log_format: LogFormat,
    /// `[cas]` and `[alidns]`: how the API client connects, retries and paces its calls.
    pub api: ClientOptions,
    pub credentials: CredentialsSettings,
    pub metrics: Option<MetricsSettings>,
    /// `[notify]`: where chosen log events are sent; `None` without the table.
    pub notify: Option<NotifySettings>,
    /// `[fleet]` (experimental; `daemon::fleet`); `None` without the table.
    pub fleet: Option<FleetSettings>,
    /// Control socket for `status`/`renew` while running; default `<state_dir>/control.sock`.
    pub control_socket: PathBuf,
    /// At most this many certificates are worked on at once.
    pub concurrency: usize,
    /// `quota.low` when fewer units of a product than this are left (0: never).
    pub quota_warn: u32,
    pub certificates: Vec<Certificate>,
    /// Not errors, but worth saying (`check` prints them), one line each in the errors'
    /// format with `note:` before the text: a name that is ordered in another spelling, one
    /// name served with an ECDSA and an RSA certificate side by side.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSettings {
    pub listen: std::net::SocketAddr,
}

/// Key algorithm for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    Rsa2048,
    Rsa3072,
    Rsa4096,
    /// CAS makes the key (no CSR sent; PrivateKey returned at issuance).
    Cas,
}

/// When to renew.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RenewBefore {
    /// Renew when less than this fraction of the lifetime is left (0 < f < 1).
    Fraction(f64),
    /// Renew when less than this is left.
    Duration(Duration),
}

/// How control of the domains is proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// FILE: write the challenge under `webroot` (never for wildcards).
    File { webroot: PathBuf },
    /// DNS TXT through Alidns; the zone is found by suffix unless given.
    Alidns { zone: Option<String> },
    /// A user program called as `argv... present|cleanup` with env vars, with a timeout.
    Command {
        argv: Vec<String>,
        timeout: Duration,
        /// Variables of the daemon's environment passed to the program (`hook_env`).
        pass_env: Vec<String>,
    },
    /// Log what to publish and wait; `validate_type` chooses DNS or FILE.
    Manual {
        validate_type: cas_api::model::ValidateType,
    },
}

/// Owner/group/mode of deployed files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOwnership {
    /// User name or numeric uid; `None` keeps the daemon's.
    pub owner: Option<String>,
    /// Group name or numeric gid; when set, the key is 0640 with this group.
    pub group: Option<String>,
    pub cert_mode: u32,
    pub key_mode: u32,
}

/// A reload hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// argv; run without a shell.
    pub argv: Vec<String>,
    pub timeout: Duration,
    /// Variables of the daemon's environment passed through (`hook_env`); the hook gets
    /// nothing else of it (see `hook::child_env`).
    pub pass_env: Vec<String>,
}

/// One certificate the operator wants kept. Per-certificate settings with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Certificate {
    /// Unique, safe as a directory name.
    pub name: String,
    /// A-labels, lower case, validated; ≤ 5; all wildcard or all plain.
    pub domains: Vec<String>,
    pub validation: Validation,
    pub product_code: String,
    pub key: KeyKind,
    pub renew_before: RenewBefore,
    pub contact: Contact,
    pub reload: Option<Hook>,
    pub files: FileOwnership,
    /// Old versioned directories kept after a deploy.
    pub keep_versions: usize,
    /// An order still in domain_verify this long after it was created is cancelled and
    /// deleted, and the certificate retries with backoff. Never zero.
    pub validation_timeout: Duration,
    /// `cert.expiring` is logged while less than this is left on the deployed certificate
    /// and its renewal has not succeeded (`lifecycle::expiry`). Zero: never.
    pub expiry_warn: Duration,
    /// Checking the published proof from outside, the way the CA would.
    pub self_check: SelfCheck,
}

/// `self_check`, `self_check_resolve`, `self_check_nameservers` (in `[defaults]` or per
/// certificate): how `validation::selfcheck` looks at a published proof.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfCheck {
    pub enabled: bool,
    /// Name (lower case) or `*.suffix` pattern → the address the FILE check connects to
    /// instead of what the system resolver says (like curl's `--resolve`).
    pub resolve: Vec<(String, std::net::SocketAddr)>,
    /// Name servers asked for the DNS proof instead of the zone's own (split horizon).
    pub nameservers: Vec<std::net::SocketAddr>,
}

impl Default for SelfCheck {
    fn default() -> SelfCheck {
        SelfCheck {
            enabled: true,
            resolve: Vec::new(),
            nameservers: Vec::new(),
        }
    }
}
