//! Configuration: raw TOML → validated [`model::Config`] (all errors at once, with line:col).
//!
//! The text is parsed into toml's spanned document tree and walked by hand (see `walk`), so
//! that unknown keys, wrong types and bad values are all reported in one go, each with its
//! line and column, instead of serde's first-error-only.
mod build;
pub mod domain;
pub mod model;
mod walk;
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
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        errors: vec![format!("{}: cannot read: {e}", path.display())],
    })?;
    parse(&text, Some(path))
}

/// Validates config text; `source` is only used in messages.
pub fn parse(text: &str, source: Option<&std::path::Path>) -> Result<Config, ConfigErrors> {
    let name = source
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<config>".to_string());
    let (doc, syntax) = toml::de::DeTable::parse_recoverable(text);
    let mut errs = walk::Errors::default();
    if !syntax.is_empty() {
        for e in syntax {
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().trim().replace('\n', " ");
            errs.push(span, "syntax", format!("invalid TOML: {msg}"));
        }
        return Err(ConfigErrors {
            errors: errs.render(text, &name),
        });
    }
    let cfg = build::build(&doc, source, &mut errs);
    match cfg {
        Some(c) if errs.list.is_empty() => Ok(c),
        _ => Err(ConfigErrors {
            errors: errs.render(text, &name),
        }),
    }
}

/// What changed between `old` and `new`.
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let mut d = ConfigDiff::default();
    for n in &new.certificates {
        match old.certificates.iter().find(|o| o.name == n.name) {
            None => d.added.push(n.name.clone()),
            Some(o) if o != n => d.changed.push(n.name.clone()),
            Some(_) => {}
        }
    }
    for o in &old.certificates {
        if !new.certificates.iter().any(|n| n.name == o.name) {
            d.removed.push(o.name.clone());
        }
    }
    d
}
