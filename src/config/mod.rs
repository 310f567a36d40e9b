//! Configuration: raw TOML → validated [`model::Config`] (all errors at once, with line:col).
//!
//! The text is parsed into toml's spanned document tree and walked by hand (see `walk`), so
//! that unknown keys, wrong types and bad values are all reported in one go, each with its
//! line and column, instead of serde's first-error-only. A TOML syntax error is the exception:
//! after one, the rest of the file cannot be read as meant, so only that one is reported.
//! Each `[[certificate]]` is parsed on its own where the file's layout allows (`split`), so a
//! file of 10 000 certificates never exists as one document tree.
//!
//! [`load`] also checks the machine: the file is read only if it is a regular file that root
//! or the daemon's user owns and no one else can write (it names the hooks the daemon runs),
//! and the paths it names must be safe to use (`paths`, `cas_api::fs_trust`). [`parse`] checks
//! the text alone.
mod build;
mod cert;
pub mod domain;
mod fleet;
mod hook;
pub mod model;
mod notify;
mod overlap;
mod paths;
mod selfcheck;
mod split;
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

/// Reads and validates a config file, and checks the file and the paths it names on this
/// machine, trusting root and the daemon's effective user.
pub fn load(path: &std::path::Path) -> Result<Config, ConfigErrors> {
    let uids = cas_api::fs_trust::daemon_uids();
    let text = read_trusted(path, &uids).map_err(|e| ConfigErrors {
        errors: vec![format!("{}: {e}", path.display())],
    })?;
    parse_with(&text, Some(path), Some(&uids))
}

/// The file's text, if it is a regular file that only `uids` own and can write, on a path only
/// they control. Opened non-blocking: a FIFO is refused at once instead of hanging.
fn read_trusted(path: &std::path::Path, uids: &[u32]) -> Result<String, String> {
    use std::io::Read as _;
    let abs = std::path::absolute(path).map_err(|e| format!("cannot read: {e}"))?;
    // Open first, so that a missing file is reported as such; then judge the path it was
    // opened by, then the open file itself.
    let (mut file, meta) =
        cas_api::fs_trust::open_trusted_file(&abs, uids).map_err(|e| match e {
            cas_api::fs_trust::FsTrustError::Io { source, .. } => format!("cannot read: {source}"),
            e => format!("refused: {e}"),
        })?;
    cas_api::fs_trust::check_trusted_path(&abs, uids)
        .map_err(|e| format!("not a safe place for the configuration: {e}"))?;
    cas_api::fs_trust::check_not_writable(&abs, &meta)
        .map_err(|e| format!("refused (it names the commands the daemon runs): {e}"))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(text)
}

/// Validates config text; `source` is only used in messages. Nothing on disk is looked at.
pub fn parse(text: &str, source: Option<&std::path::Path>) -> Result<Config, ConfigErrors> {
    parse_with(text, source, None)
}

/// [`parse`], and with `trust` also the paths' ownership and modes (`paths::check_trust`).
fn parse_with(
    text: &str,
    source: Option<&std::path::Path>,
    trust: Option<&[u32]>,
) -> Result<Config, ConfigErrors> {
    let name = source
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<config>".to_string());
    match parse_split(text, &name, source, trust) {
        Some(r) => r,
        None => parse_whole(text, &name, source, trust),
    }
}

/// [`parse_with`] a `[[certificate]]` at a time, when the layout allows (see `split`) and
/// every part parses on its own; `None` otherwise.
fn parse_split(
    text: &str,
    name: &str,
    source: Option<&std::path::Path>,
    trust: Option<&[u32]>,
) -> Option<Result<Config, ConfigErrors>> {
    let layout = split::layout(text)?;
    let head = text.get(layout.head.clone())?;
    let (doc, syntax) = toml::de::DeTable::parse_recoverable(head);
    // `certificate` set in the head as well would clash with the tables: the whole document
    // says how.
    if !syntax.is_empty() || walk::span_at(doc.get_ref(), &["certificate"]).is_some() {
        return None;
    }
    let mut errs = walk::Errors::default();
    let split = Some((text, layout.certificates.as_slice()));
    let c = build::build(&doc, split, source, trust, &mut errs)?;
    Some(finish(c, errs, text, name))
}

/// [`parse_with`] of the whole document at once.
fn parse_whole(
    text: &str,
    name: &str,
    source: Option<&std::path::Path>,
    trust: Option<&[u32]>,
) -> Result<Config, ConfigErrors> {
    let (doc, syntax) = toml::de::DeTable::parse_recoverable(text);
    let mut errs = walk::Errors::default();
    // The parser recovers and goes on, but what follows its first error is read wrongly (an
    // unclosed `[` swallows the next lines): the first is the one to fix, the rest are echoes.
    if let Some(e) = syntax
        .iter()
        .min_by_key(|e| e.span().map_or(0, |s| s.start))
    {
        let span = e.span().unwrap_or(0..0);
        let msg = e.message().trim().replace('\n', " ");
        errs.push(span, "syntax", format!("invalid TOML: {msg}"));
        return Err(ConfigErrors {
            errors: errs.render(text, name),
        });
    }
    match build::build(&doc, None, source, trust, &mut errs) {
        Some(c) => finish(c, errs, text, name),
        None => Err(ConfigErrors {
            errors: errs.render(text, name),
        }),
    }
}

/// The config when no error was found, with its notes; every error otherwise.
fn finish(
    mut c: Config,
    mut errs: walk::Errors,
    text: &str,
    name: &str,
) -> Result<Config, ConfigErrors> {
    if errs.list.is_empty() {
        c.notes = errs.render_notes(text, name);
        Ok(c)
    } else {
        Err(ConfigErrors {
            errors: errs.render(text, name),
        })
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
