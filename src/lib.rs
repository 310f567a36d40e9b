//! # cas-certd
//!
//! A certificate lifecycle daemon for the Alibaba Cloud SSL Certificates Service (CAS).
//!
//! # Layout
//! The CAS and Alidns client, the credentials chain, `Secret`, trusted paths and the service
//! account are the `cas-api` crate's; the simulator is the `cas-sim` crate's.
//! - [`config`]: TOML desired state → validated config; diffs for reload.
//! - [`store`]: sled records, versioned; the only module that knows keys and trees.
//! - [`rebuild`]: the store is a cache — recovering a damaged one, adopting deployed sets.
//! - [`lifecycle`]: per-certificate state machine, one persisted step per call; the scheduler.
//! - [`validation`]: proving control of a domain — webroot file, Alidns TXT, command, manual.
//! - [`fleet`]: fleet mode (experimental): the etcd record store with ownership and fencing,
//!   the lifecycle's store port over it, envelope encryption of keys (feature `fleet`), the
//!   fleet key; the daemon's side is `daemon::fleet`.
//! - [`deploy`]: atomic PEM sets (versioned directory + symlink swap), permissions, key/cert match.
//! - [`failpoint`]: crash points for the reliability suite (feature `failpoints`).
//! - [`keys`]: private keys and CSRs made locally.
//! - [`hook`]: running reload hooks (argv, timeout, process group, capped output).
//! - [`daemon`]: the event loop — schedule, signals, reload, shutdown.
//! - [`control`]: the 0600 unix socket through which `status` and `renew` talk to a running daemon.
//! - [`alert`]: notifications (`[notify]`): chosen log events to a command and webhooks.
//! - [`notify`]: sd_notify (READY, RELOADING, STOPPING, STATUS, WATCHDOG).
//! - [`metrics`]: the optional Prometheus endpoint.
//! - [`listen`]: descriptor budget and accept back-off shared by the metrics and control listeners.
//! - [`logging`]: tracing set-up, text or JSON.
pub mod alert;
pub mod config;
pub mod control;
pub mod daemon;
pub mod deploy;
pub mod failpoint;
pub mod fleet;
pub mod hook;
pub mod keys;
pub mod lifecycle;
pub mod listen;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod rebuild;
pub mod store;
pub mod validation;
