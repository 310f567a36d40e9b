//! Fleet mode (issue 12; experimental; the daemon's side is `daemon::fleet`). Many
//! hosts share one etcd v3 cluster; each certificate has exactly one owner, and only the owner
//! writes its record:
//! - [`keyfile`]: the fleet key's file and where it is looked for (always built: `check` uses it);
//! - [`password`]: etcd's password for `[fleet] user`, likewise;
//! - `seal`: envelope encryption of private keys before they reach etcd;
//! - `lease`: this host's etcd lease, kept alive, and when it is lost;
//! - `owner`: per-certificate ownership: a lease-bound key whose create revision is the fencing
//!   token;
//! - `records`: the versioned record in etcd, every write fenced by the owner's token;
//! - `cluster`: the connection to etcd (`Fleet`), the error type, the live nodes, and paged
//!   reads of a directory at one revision (`read_range`);
//! - [`fanout`]: proofs and issued sets published by the owner and followed by every host;
//! - `confighash`: what each host orders, as a hash compared across the fleet (per-certificate
//!   digests to name what differs);
//! - `store`: the lifecycle's `Records` port over `records`, for the certificates this host
//!   owns (it also publishes their deployed sets), and the rendezvous hashing that spreads
//!   ownership;
//! - `proofs_port`: the lifecycle's `Proofs` port, FILE proofs published for every host.
//!
//! All but `keyfile` and `password` need the `fleet` feature (the etcd client needs `protoc` to build).
//! The design, the keys in etcd and what is left to wire: docs/FLEET.md.
pub mod keyfile;
pub mod password;

#[cfg(feature = "fleet")]
mod cluster;
#[cfg(feature = "fleet")]
pub mod confighash;
#[cfg(feature = "fleet")]
pub mod fanout;
#[cfg(feature = "fleet")]
mod lease;
#[cfg(feature = "fleet")]
mod owner;
#[cfg(feature = "fleet")]
pub mod proofs_port;
#[cfg(feature = "fleet")]
mod records;
#[cfg(feature = "fleet")]
pub mod seal;
#[cfg(feature = "fleet")]
pub mod store;

#[cfg(feature = "fleet")]
pub(crate) use cluster::read_range;
#[cfg(feature = "fleet")]
pub use cluster::{live_nodes, Fleet, FleetError};
#[cfg(feature = "fleet")]
pub use lease::Lease;
#[cfg(feature = "fleet")]
pub use owner::{claim, owner_of, release, Claim, Ownership};
#[cfg(feature = "fleet")]
pub use records::{record_status, EtcdRecords};
