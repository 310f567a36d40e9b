//! Configuration: raw TOML → validated [`model::Config`] (all errors at once, with line:col).
pub mod model;
pub use model::*;
