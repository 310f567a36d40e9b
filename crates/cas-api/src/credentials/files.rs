//! Reading credentials files: the trust checks every one of them passes, and the formats (the
//! aliyun CLI's `config.json`, the SDKs' INI file, bare `key = value` lines).

use std::collections::HashMap;
use std::path::Path;

use super::{AccessKey, CredentialsError};
use crate::fs_trust;
use crate::secret::Secret;

/// Reads a credentials file, refusing one that group or others can read, one owned by anyone
/// but root or the daemon's user, one on a path someone else controls (`fs_trust`), and
/// anything but a regular file (opened non-blocking, so a FIFO is refused, not waited on).
/// `Ok(None)` when it does not exist and was not explicitly asked for.
pub(super) fn read_private(
    path: &Path,
    explicit: bool,
) -> Result<Option<String>, CredentialsError> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    let err = |reason: String| CredentialsError::File {
        path: path.to_path_buf(),
        reason,
    };
    let uids = fs_trust::daemon_uids();
    let (mut file, meta) = match fs_trust::open_trusted_file(path, &uids) {
        Ok(f) => f,
        Err(e) if e.is_not_found() && !explicit => return Ok(None),
        Err(fs_trust::FsTrustError::Io { source, .. }) => {
            return Err(err(format!("cannot read: {source}")))
        }
        Err(e) => return Err(err(format!("refused: {e}"))),
    };
    let abs = std::path::absolute(path).map_err(|e| err(format!("cannot read: {e}")))?;
    fs_trust::check_trusted_path(&abs, &uids)
        .map_err(|e| err(format!("not a safe place for a secret: {e}")))?;
    let mode = meta.mode();
    if mode & 0o077 != 0 {
        return Err(err(format!(
            "readable by group or others (mode {:04o}); it holds a secret: run `chmod 600 {}`",
            mode & 0o7777,
            path.display()
        )));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| err(format!("cannot read: {e}")))?;
    Ok(Some(text))
}

/// The aliyun CLI `config.json`: the named profile (or `current`), modes AK and StsToken.
pub(super) fn cli_profile(
    path: &Path,
    text: &str,
    wanted: Option<&str>,
) -> Result<Option<AccessKey>, CredentialsError> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        current: Option<String>,
        #[serde(default)]
        profiles: Vec<Profile>,
    }
    #[derive(serde::Deserialize)]
    struct Profile {
        #[serde(default)]
        name: String,
        #[serde(default)]
        mode: String,
        #[serde(default)]
        access_key_id: String,
        #[serde(default)]
        access_key_secret: Secret,
        #[serde(default)]
        sts_token: Secret,
    }
    let f: File = serde_json::from_str(text).map_err(|e| CredentialsError::File {
        path: path.to_path_buf(),
        reason: format!("not a CLI profile file: {e}"),
    })?;
    let name = wanted
        .map(str::to_string)
        .or(f.current)
        .unwrap_or_else(|| "default".into());
    let Some(p) = f.profiles.into_iter().find(|p| p.name == name) else {
        return Ok(None);
    };
    let token = match p.mode.as_str() {
        "AK" => None,
        "StsToken" => Some(p.sts_token).filter(|t| !t.is_empty()),
        other => {
            return Err(CredentialsError::File {
                path: path.to_path_buf(),
                reason: format!(
                    "profile {name}: mode {other:?} is not supported (use AK or StsToken)"
                ),
            })
        }
    };
    if p.access_key_id.is_empty() || p.access_key_secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(AccessKey {
        id: p.access_key_id,
        secret: p.access_key_secret,
        security_token: token,
        expires: None,
    }))
}

pub(super) enum IniKey {
    Key(AccessKey),
    EcsRole(String),
    None,
}

/// Parses INI text; lines before any section header belong to the section "".
fn parse_ini(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().trim_matches('"').to_string();
            out.entry(section.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v);
        }
    }
    out
}

/// The key in `section` of an INI file (or in bare `key = value` lines).
pub(super) fn ini_key(path: &Path, text: &str, section: &str) -> Result<IniKey, CredentialsError> {
    let ini = parse_ini(text);
    let Some(s) = ini.get(section).or_else(|| ini.get("")) else {
        return Ok(IniKey::None);
    };
    let kind = s.get("type").map(String::as_str).unwrap_or("access_key");
    match kind {
        "access_key" | "sts" => {
            let (Some(id), Some(secret)) = (s.get("access_key_id"), s.get("access_key_secret"))
            else {
                return Ok(IniKey::None);
            };
            if id.is_empty() || secret.is_empty() {
                return Ok(IniKey::None);
            }
            Ok(IniKey::Key(AccessKey {
                id: id.clone(),
                secret: Secret::new(secret.as_str()),
                security_token: s
                    .get("security_token")
                    .or_else(|| s.get("sts_token"))
                    .filter(|t| !t.is_empty())
                    .map(|t| Secret::new(t.as_str())),
                expires: None,
            }))
        }
        "ecs_ram_role" => match s.get("role_name").filter(|r| !r.is_empty()) {
            Some(r) => Ok(IniKey::EcsRole(r.clone())),
            None => Ok(IniKey::None),
        },
        other => Err(CredentialsError::File {
            path: path.to_path_buf(),
            reason: format!("[{section}] type = {other} is not supported (use access_key)"),
        }),
    }
}
