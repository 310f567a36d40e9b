//! # cas-certd
//!
//! A certificate lifecycle daemon for the Alibaba Cloud SSL Certificates Service (CAS).
//!
//! # Layout
//! - [`cas`]: the CAS and Alidns APIs — signer, typed actions, errors, retries, rate limit.
//! - [`credentials`]: where the AccessKey comes from (env, CLI profile, INI, file, systemd, ECS role).
//! - [`secret`]: a string type that never prints itself.
//! - [`accounts`]: users and groups from /etc/passwd and /etc/group; the service account.
//! - [`fs_trust`]: whether a path can be trusted (owners and modes of every component).
//! - [`config`]: TOML desired state → validated config; diffs for reload.
//! - [`store`]: sled records, versioned; the only module that knows keys and trees.
//! - [`lifecycle`]: per-certificate state machine, one persisted step per call; the scheduler.
//! - [`validation`]: proving control of a domain — webroot file, Alidns TXT, command, manual.
//! - [`deploy`]: atomic PEM sets (versioned directory + symlink swap), permissions, key/cert match.
//! - [`failpoint`]: crash points for the reliability suite (feature `failpoints`).
//! - [`keys`]: private keys and CSRs made locally.
//! - [`hook`]: running reload hooks (argv, timeout, process group, capped output).
//! - [`daemon`]: the event loop — schedule, signals, reload, shutdown.
//! - [`control`]: the 0600 unix socket through which `status` and `renew` talk to a running daemon.
//! - [`notify`]: sd_notify (READY, RELOADING, STOPPING, STATUS, WATCHDOG).
//! - [`metrics`]: the optional Prometheus endpoint.
//! - [`listen`]: descriptor budget and accept back-off shared by the metrics and control listeners.
//! - [`logging`]: tracing set-up, text or JSON.
//! - [`sim`]: the CAS + Alidns simulator with a local test CA (feature `sim`).
pub mod accounts;
pub mod cas;
pub mod config;
pub mod control;
pub mod credentials;
pub mod daemon;
pub mod deploy;
pub mod failpoint;
pub mod fs_trust;
pub mod hook;
pub mod keys;
pub mod lifecycle;
pub mod listen;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod secret;
#[cfg(feature = "sim")]
pub mod sim;
pub mod store;
pub mod validation;
