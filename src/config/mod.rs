//! Configuration: raw TOML → validated [`model::Config`] (all errors at once, with line:col).
pub mod model;
pub use model::*;

/// Every problem found in a config file, each with its place and reason.
#[derive(Debug, thiserror::Error)]
#[error("{}", .errors.join("\n"))]
pub struct ConfigErrors {
    /// One line each: `path:line:col: key: reason`.
    pub errors: Vec<String>,
}

/// Certificates added, changed and removed between two configs (by name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

/// Reads and validates a config file.
pub fn load(path: &std::path::Path) -> Result<Config, ConfigErrors> {
    let _ = path;
    todo!("issue 4")
}

/// Validates config text; `source` is only used in messages.
pub fn parse(text: &str, source: Option<&std::path::Path>) -> Result<Config, ConfigErrors> {
    let _ = (text, source);
    todo!("issue 4")
}

/// What changed between `old` and `new`.
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let _ = (old, new);
    todo!("issue 4")
}
