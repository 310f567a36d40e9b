//! etcd's password for `[fleet] user`. This module owns the rule for the file that holds it
//! (the rule for any secret file: regular, trusted owner and path, mode 0600) and where it is
//! looked for (`password_file`, else systemd's `$CREDENTIALS_DIRECTORY/etcd_password`), as
//! `keyfile` does for the fleet key. Config checking and the connection read it through here.
use std::path::{Path, PathBuf};

use cas_api::secret::Secret;

use crate::config::PasswordSource;

/// The name of the systemd credential (`LoadCredentialEncrypted=etcd_password:...`).
pub const CREDENTIAL_NAME: &str = "etcd_password";

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The reason never quotes the file's text.
    #[error("etcd password {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("[fleet] user is set but there is no password_file and no $CREDENTIALS_DIRECTORY (systemd's LoadCredentialEncrypted={CREDENTIAL_NAME}:...): etcd's password is nowhere")]
    Nowhere,
}

/// The password from where `src` says; `env` reads the environment (for
/// `$CREDENTIALS_DIRECTORY`). Remembered as a secret, so a hook's output is redacted of it.
pub fn load(
    src: &PasswordSource,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Secret, PasswordError> {
    let p = match src {
        PasswordSource::File(p) => load_file(p)?,
        PasswordSource::Credential => match env("CREDENTIALS_DIRECTORY") {
            Some(dir) if !dir.is_empty() => load_file(&Path::new(&dir).join(CREDENTIAL_NAME))?,
            _ => return Err(PasswordError::Nowhere),
        },
    };
    cas_api::secret::remember(&p);
    Ok(p)
}

/// Reads and checks one password file. Surrounding white space is not part of the password
/// (as for the AccessKey's systemd credentials): `echo pw > file` works.
pub fn load_file(path: &Path) -> Result<Secret, PasswordError> {
    let err = |reason: String| PasswordError::File {
        path: path.to_path_buf(),
        reason,
    };
    let text = cas_api::credentials::read_private_file(path).map_err(|e| err(e.to_string()))?;
    let pw = text.trim();
    if pw.is_empty() {
        return Err(err("empty".into()));
    }
    Ok(Secret::new(pw))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn reads_a_private_file_without_its_newline_and_refuses_an_open_or_empty_one() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "pw", "s3cret pass\n", 0o600);
        let pw = load_file(&p).unwrap();
        assert_eq!(pw.expose(), "s3cret pass");
        assert!(!format!("{pw:?}").contains("s3cret"));
        let open = write(d.path(), "open", "s3cret", 0o644);
        let e = load_file(&open).unwrap_err().to_string();
        assert!(e.contains("chmod 600") && !e.contains("s3cret"), "{e}");
        let empty = write(d.path(), "empty", " \n", 0o600);
        let e = load_file(&empty).unwrap_err().to_string();
        assert!(e.ends_with(": empty"), "{e}");
    }

    #[test]
    fn the_credential_is_read_from_credentials_directory() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), CREDENTIAL_NAME, "from-systemd", 0o600);
        let dir = d.path().display().to_string();
        let pw = load(&PasswordSource::Credential, |v| {
            (v == "CREDENTIALS_DIRECTORY").then(|| dir.clone())
        })
        .unwrap();
        assert_eq!(pw.expose(), "from-systemd");
        let e = load(&PasswordSource::Credential, |_| None).unwrap_err();
        assert!(matches!(e, PasswordError::Nowhere), "{e}");
    }
}
