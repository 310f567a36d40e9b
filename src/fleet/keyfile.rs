//! The fleet key: 32 random bytes, base64, the same on every host. This module owns the rule
//! for the file that holds it (a regular file of a trusted owner, mode 0600, on a trusted path)
//! and where it is looked for (`key_file`, else systemd's `$CREDENTIALS_DIRECTORY/fleet_key`).
//! Config checking (`check`) and the fleet store read it through here, so the rule is one.
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::config::FleetKeySource;

/// The name of the systemd credential (`LoadCredentialEncrypted=fleet_key:...`).
pub const CREDENTIAL_NAME: &str = "fleet_key";

/// Key bytes. Never printed: `Debug` shows nothing of them.
#[derive(Clone, PartialEq, Eq)]
pub struct FleetKey(pub(crate) [u8; 32]);

impl std::fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FleetKey(..)")
    }
}

impl FleetKey {
    /// A key from its 32 bytes (tests, and tools that make one).
    pub fn from_bytes(b: [u8; 32]) -> FleetKey {
        FleetKey(b)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("fleet key {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("no key_file in [fleet] and no $CREDENTIALS_DIRECTORY (systemd's LoadCredentialEncrypted={CREDENTIAL_NAME}:...): the fleet key is nowhere")]
    Nowhere,
}

/// The fleet key from where `src` says; `env` reads the environment (for
/// `$CREDENTIALS_DIRECTORY`).
pub fn load(
    src: &FleetKeySource,
    env: impl Fn(&str) -> Option<String>,
) -> Result<FleetKey, KeyFileError> {
    match src {
        FleetKeySource::File(p) => load_file(p),
        FleetKeySource::Credential => match env("CREDENTIALS_DIRECTORY") {
            Some(dir) if !dir.is_empty() => load_file(&Path::new(&dir).join(CREDENTIAL_NAME)),
            _ => Err(KeyFileError::Nowhere),
        },
    }
}

/// Reads and checks one key file: trusted owner and path, no access for group or others,
/// 32 bytes in base64.
pub fn load_file(path: &Path) -> Result<FleetKey, KeyFileError> {
    let err = |reason: String| KeyFileError::File {
        path: path.to_path_buf(),
        reason,
    };
    // The credentials' rule for a secret file (regular, trusted owner and path, mode 0600).
    let text = cas_api::credentials::read_private_file(path).map_err(|e| err(e.to_string()))?;
    parse_key(&text).map(FleetKey).map_err(err)
}

/// 32 bytes from their base64 (standard alphabet, surrounding white space ignored). The
/// reason never quotes the text: it may be a key with one byte too many.
pub fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| {
            "not base64; make one with `head -c 32 /dev/urandom | base64 > FILE`".to_string()
        })?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "holds {} bytes, not 32; make one with `head -c 32 /dev/urandom | base64 > FILE`",
            bytes.len()
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn reads_32_bytes_of_base64_from_a_private_file() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "k", &format!("{KEY}\n"), 0o600);
        let k = load_file(&p).unwrap();
        assert_eq!(k.0[31], 31);
        assert_eq!(format!("{k:?}"), "FleetKey(..)");
    }

    #[test]
    fn refuses_a_key_others_can_read_a_short_key_and_not_base64() {
        let d = tempfile::tempdir().unwrap();
        let open = write(d.path(), "open", KEY, 0o644);
        let e = load_file(&open).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        let short = write(d.path(), "short", "AAEC", 0o600);
        let e = load_file(&short).unwrap_err().to_string();
        assert!(e.contains("holds 3 bytes, not 32"), "{e}");
        let junk = write(d.path(), "junk", "not a key!", 0o600);
        let e = load_file(&junk).unwrap_err().to_string();
        assert!(e.contains("not base64") && !e.contains("not a key!"), "{e}");
    }

    #[test]
    fn the_credential_is_read_from_credentials_directory() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), CREDENTIAL_NAME, KEY, 0o600);
        let dir = d.path().display().to_string();
        let k = load(&FleetKeySource::Credential, |v| {
            (v == "CREDENTIALS_DIRECTORY").then(|| dir.clone())
        })
        .unwrap();
        assert_eq!(k.0[1], 1);
        let e = load(&FleetKeySource::Credential, |_| None).unwrap_err();
        assert!(matches!(e, KeyFileError::Nowhere), "{e}");
    }
}
