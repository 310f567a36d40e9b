//! The per-certificate state machine: [`step`] reads the persisted record, does ONE step
//! (generate a key, create or adopt an order, publish a challenge, poll, deploy) and writes the
//! record back, flushing before every call that has an effect outside this host.
pub mod manual;
pub mod schedule;
mod step;

pub use step::*;
