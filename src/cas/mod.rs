//! The Alibaba Cloud CAS (2020-04-07) and Alidns (2015-01-09) APIs.
pub mod backoff;
pub mod client;
pub mod error;
pub mod model;
pub mod ratelimit;
/// Wire shapes; public only so the fuzz tests can drive the decoders.
#[doc(hidden)]
pub mod responses;
pub mod sign;

pub use client::{Client, Observer};
pub use error::{ApiError, ErrorClass};
