//! The `file` provider: the challenge file under the webroot, with every path part checked.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::ValidationError;

/// The only directory CAS may ask for.
pub const PREFIX: &str = "/.well-known/pki-validation/";

/// The file name in `uri`, when `uri` is exactly `/.well-known/pki-validation/<safe name>`.
pub fn check_uri(uri: &str) -> Result<&str, ValidationError> {
    let unsafe_uri = |why: &str| ValidationError::Unsafe(format!("Uri {uri:?}: {why}"));
    let name = uri
        .strip_prefix(PREFIX)
        .ok_or_else(|| unsafe_uri("not under /.well-known/pki-validation/"))?;
    if name.is_empty() || name.len() > 255 {
        return Err(unsafe_uri("no file name, or one that is too long"));
    }
    if name == "." || name == ".." {
        return Err(unsafe_uri("not a file name"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(unsafe_uri(
            "the file name may only contain letters, digits, '.', '_' and '-'",
        ));
    }
    Ok(name)
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ValidationError {
    let path = path.to_path_buf();
    move |source| ValidationError::Io { op, path, source }
}

/// Makes (or checks) a directory that must be a real directory, never a symlink.
fn real_dir(path: &Path) -> Result<(), ValidationError> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_symlink() => Err(ValidationError::Unsafe(format!(
            "{} is a symbolic link; refusing to write through it",
            path.display()
        ))),
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => Err(ValidationError::Unsafe(format!(
            "{} exists and is not a directory",
            path.display()
        ))),
        Err(e) if e.kind() == ErrorKind::NotFound => fs::DirBuilder::new()
            .mode(0o755)
            .create(path)
            .map_err(io("mkdir", path)),
        Err(e) => Err(io("stat", path)(e)),
    }
}

/// Writes `content` at `webroot` + `uri` after checking the Uri, the domain and every path part.
pub fn present(
    webroot: &Path,
    domain: &str,
    uri: &str,
    content: &str,
    domains: &[String],
) -> Result<PathBuf, ValidationError> {
    let name = check_uri(uri)?;
    if !domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
        return Err(ValidationError::Unsafe(format!(
            "challenge for {domain:?}, which this certificate does not cover"
        )));
    }
    if content.is_empty() || content.len() > 4096 {
        return Err(ValidationError::Unsafe(
            "challenge content is empty or too long".into(),
        ));
    }
    let md = fs::metadata(webroot).map_err(io("stat", webroot))?;
    if !md.is_dir() {
        return Err(ValidationError::Io {
            op: "use webroot",
            path: webroot.to_path_buf(),
            source: std::io::Error::new(ErrorKind::InvalidInput, "not a directory"),
        });
    }
    let mut dir = webroot.to_path_buf();
    for part in [".well-known", "pki-validation"] {
        dir.push(part);
        real_dir(&dir)?;
    }
    let path = dir.join(name);
    // A leftover (or planted symlink) is removed, never followed; then the file is created new.
    match fs::symlink_metadata(&path) {
        Ok(md) if md.is_dir() => {
            return Err(ValidationError::Unsafe(format!(
                "{} is a directory",
                path.display()
            )))
        }
        Ok(_) => fs::remove_file(&path).map_err(io("remove", &path))?,
        Err(_) => {}
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(io("create", &path))?;
    // The web server must read it whatever the daemon's umask.
    f.set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(io("chmod", &path))?;
    f.write_all(content.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(io("write", &path))?;
    Ok(path)
}

/// Removes the file; a missing one is fine.
pub fn cleanup(path: &Path) -> Result<(), ValidationError> {
    if !path
        .parent()
        .is_some_and(|p| p.ends_with(".well-known/pki-validation"))
    {
        return Err(ValidationError::Unsafe(format!(
            "{} is not a challenge file",
            path.display()
        )));
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io("remove", path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_safe_uris_pass() {
        assert_eq!(
            check_uri("/.well-known/pki-validation/fileauth.txt").unwrap(),
            "fileauth.txt"
        );
        for bad in [
            "/.well-known/pki-validation/",
            "/.well-known/pki-validation/..",
            "/.well-known/pki-validation/.",
            "/.well-known/pki-validation/../../etc/passwd",
            "/.well-known/pki-validation/a/b.txt",
            "/.well-known/pki-validation//a.txt",
            "/.well-known/pki-validation/%2e%2e",
            "/.well-known/pki-validation/a%2Fb",
            "/.well-known/pki-validation/a\0b",
            "/.well-known/pki-validation/a b",
            "/.well-known/pki-validation/a.txt?x=1",
            "/.well-known/pki-validation/a.txt#x",
            "/.well-known/pki-validation/a\\b",
            "/etc/passwd",
            "/.well-known/acme-challenge/a",
            "//.well-known/pki-validation/a",
            ".well-known/pki-validation/a",
            "http://x/.well-known/pki-validation/a",
            "/.well-known/pki-validation/ü",
        ] {
            assert!(check_uri(bad).is_err(), "{bad:?} accepted");
        }
    }

    fn doms() -> Vec<String> {
        vec!["example.com".into()]
    }

    #[test]
    fn writes_and_cleans_up() {
        let root = tempfile::tempdir().unwrap();
        let uri = "/.well-known/pki-validation/fileauth.txt";
        let p = present(root.path(), "Example.com", uri, "token-123", &doms()).unwrap();
        assert_eq!(
            p,
            root.path().join(".well-known/pki-validation/fileauth.txt")
        );
        assert_eq!(fs::read_to_string(&p).unwrap(), "token-123");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // Presenting again replaces the content.
        present(root.path(), "example.com", uri, "token-456", &doms()).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "token-456");
        cleanup(&p).unwrap();
        assert!(!p.exists());
        cleanup(&p).unwrap();
        assert!(cleanup(Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn foreign_domain_refused() {
        let root = tempfile::tempdir().unwrap();
        let e = present(
            root.path(),
            "evil.example.net",
            "/.well-known/pki-validation/f.txt",
            "x",
            &doms(),
        )
        .unwrap_err();
        assert!(matches!(e, ValidationError::Unsafe(_)));
        assert!(!root.path().join(".well-known").exists());
    }

    #[test]
    fn symlinks_inside_the_webroot_are_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let uri = "/.well-known/pki-validation/f.txt";
        // A symlinked directory on the way.
        std::os::unix::fs::symlink(outside.path(), root.path().join(".well-known")).unwrap();
        let e = present(root.path(), "example.com", uri, "x", &doms()).unwrap_err();
        assert!(matches!(e, ValidationError::Unsafe(_)), "{e:?}");
        assert!(fs::read_dir(outside.path()).unwrap().next().is_none());
        // A symlink planted as the file itself is replaced, and its target untouched.
        fs::remove_file(root.path().join(".well-known")).unwrap();
        fs::create_dir_all(root.path().join(".well-known/pki-validation")).unwrap();
        let target = outside.path().join("victim");
        fs::write(&target, "keep").unwrap();
        let planted = root.path().join(".well-known/pki-validation/f.txt");
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        present(root.path(), "example.com", uri, "x", &doms()).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
        assert!(!fs::symlink_metadata(&planted)
            .unwrap()
            .file_type()
            .is_symlink());
        let names: Vec<_> = fs::read_dir(outside.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
