//! The `file` provider: the challenge file under the webroot, with every path part checked.
//! The webroot is opened one component at a time from `/` without following symbolic links,
//! and everything below it through those directory descriptors, so nobody who can change a
//! link or a directory on the way can redirect the write. Only the name CAS asks for
//! (`fileauth.txt`) with one line of printable ASCII is ever written.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::ValidationError;

/// The only directory CAS may ask for.
pub const PREFIX: &str = "/.well-known/pki-validation/";
/// The only file CAS asks for (`/.well-known/pki-validation/fileauth.txt`). Anything else
/// (`.htaccess`, `index.php`) could change how the web server treats the directory.
pub const FILE_NAME: &str = "fileauth.txt";
/// The longest challenge content accepted (CAS's tokens are far shorter).
pub const MAX_CONTENT: usize = 1024;

/// FILE challenge paths this process has published, and for which certificate. CAS asks every
/// FILE order for the same Uri (`fileauth.txt`), so two certificates sharing a webroot would
/// overwrite each other's proof, and one's cleanup would delete the other's: the second waits.
static CLAIMS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<PathBuf, String>>> =
    std::sync::LazyLock::new(Default::default);

fn claims() -> std::sync::MutexGuard<'static, std::collections::HashMap<PathBuf, String>> {
    // A panic while holding this lock cannot leave the map inconsistent (single insert/remove).
    CLAIMS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where the challenge for `uri` goes under `webroot` (after `check_uri`).
pub fn target(webroot: &Path, uri: &str) -> Result<PathBuf, ValidationError> {
    let name = check_uri(uri)?;
    Ok(webroot.join(".well-known/pki-validation").join(name))
}

/// Reserves `path` for `cert`; `Busy` while another certificate's challenge is there. `true`
/// when the claim is new (`cert` did not hold it already).
pub fn claim(path: &Path, cert: &str) -> Result<bool, ValidationError> {
    let mut c = claims();
    match c.get(path) {
        Some(owner) if owner != cert => Err(ValidationError::Busy(format!(
            "{} is in use by the challenge of certificate {owner:?}",
            path.display()
        ))),
        Some(_) => Ok(false),
        None => {
            c.insert(path.to_path_buf(), cert.to_string());
            Ok(true)
        }
    }
}

/// Releases `path` if `cert` holds it; `false` when another certificate holds it (leave the file).
pub fn release(path: &Path, cert: &str) -> bool {
    let mut c = claims();
    match c.get(path) {
        Some(owner) if owner != cert => false,
        _ => {
            c.remove(path);
            true
        }
    }
}

/// The file name in `uri`, when `uri` is exactly `/.well-known/pki-validation/fileauth.txt`.
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
    if name != FILE_NAME {
        return Err(unsafe_uri(&format!(
            "not {FILE_NAME}, the only file CAS asks for; refusing to write it"
        )));
    }
    Ok(name)
}

/// Challenge content: one line of printable ASCII (spaces allowed), 1 to [`MAX_CONTENT`] bytes.
/// A newline would let a CA answer smuggle a second line (a web server directive) into a file.
pub fn check_content(content: &str) -> Result<(), ValidationError> {
    if content.is_empty()
        || content.len() > MAX_CONTENT
        || !content.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        return Err(ValidationError::Unsafe(format!(
            "challenge content must be a single line of printable ASCII, 1 to {MAX_CONTENT} bytes; refusing to write it"
        )));
    }
    Ok(())
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ValidationError {
    let path = path.to_path_buf();
    move |source| ValidationError::Io { op, path, source }
}

/// A path that resolves `name` inside the already-open directory `dir` (like `openat`):
/// Linux's `/proc/self/fd/N` names the directory itself, so nothing above it is looked up again
/// and a component swapped for a symlink after our check cannot redirect us.
fn at(dir: &File, name: impl AsRef<std::ffi::OsStr>) -> PathBuf {
    // `name` is one plain component (checked by the callers), so `push` appends it.
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(name.as_ref());
    p
}

fn unsafe_component(path: &Path) -> ValidationError {
    ValidationError::Unsafe(format!(
        "{} is a symbolic link or not a directory; refusing to write through it",
        path.display()
    ))
}

/// Opens `name` in `dir` as a directory, never following a symlink; creates it (0755) if missing.
fn open_subdir(
    dir: &File,
    name: &str,
    shown: &Path,
    create: bool,
) -> Result<File, ValidationError> {
    let mut created = false;
    if create {
        match fs::DirBuilder::new().mode(0o755).create(at(dir, name)) {
            Ok(()) => created = true,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("mkdir", shown)(e)),
        }
    }
    let d = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(at(dir, name))
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => unsafe_component(shown),
            _ => io("open", shown)(e),
        })?;
    // The web server must traverse what we made, whatever the daemon's umask (0077 under
    // systemd would leave it 0700). Set through the opened descriptor: no symlink race.
    if created {
        d.set_permissions(fs::Permissions::from_mode(0o755))
            .map_err(io("chmod", shown))?;
    }
    Ok(d)
}

/// Opens a directory only to look things up in it (`O_PATH`: search permission is enough, as
/// for an ordinary path walk), never following a symlink.
fn open_path_dir(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// The webroot, opened component by component from `/` (or the working directory for a
/// relative path) with `O_NOFOLLOW`: a symlink anywhere on the way is refused, so whoever owns
/// a link or a directory above the webroot cannot point the proof somewhere else.
pub fn open_webroot(webroot: &Path) -> Result<File, ValidationError> {
    use std::path::Component;
    let start = if webroot.is_absolute() { "/" } else { "." };
    let mut dir = open_path_dir(Path::new(start)).map_err(io("open webroot", webroot))?;
    let mut shown = PathBuf::from(start);
    for c in webroot.components() {
        let name = match c {
            Component::Normal(n) => n,
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
            Component::ParentDir => {
                return Err(ValidationError::Unsafe(format!(
                    "webroot {}: \"..\" is not allowed; give the real path",
                    webroot.display()
                )))
            }
        };
        shown.push(name);
        let next = at(&dir, name);
        dir = open_path_dir(&next).map_err(|e| match e.raw_os_error() {
            // O_PATH|O_NOFOLLOW|O_DIRECTORY on a symlink answers ENOTDIR (ELOOP elsewhere).
            Some(libc::ELOOP) | Some(libc::ENOTDIR)
                if fs::symlink_metadata(&next).is_ok_and(|m| m.file_type().is_symlink()) =>
            {
                symlinked_webroot(webroot, &shown)
            }
            Some(libc::ENOTDIR) => ValidationError::Unsafe(format!(
                "webroot {}: {} is not a directory",
                webroot.display(),
                shown.display()
            )),
            _ => io("open webroot", &shown)(e),
        })?;
    }
    Ok(dir)
}

fn symlinked_webroot(webroot: &Path, link: &Path) -> ValidationError {
    ValidationError::SymlinkedWebroot {
        webroot: webroot.to_path_buf(),
        link: link.to_path_buf(),
        real: fs::canonicalize(webroot).ok(),
    }
}

/// The challenge directory under `webroot`, opened without following symlinks on the way.
fn challenge_dir(webroot: &Path, create: bool) -> Result<File, ValidationError> {
    let mut dir = open_webroot(webroot)?;
    let mut shown = webroot.to_path_buf();
    for part in [".well-known", "pki-validation"] {
        shown.push(part);
        dir = open_subdir(&dir, part, &shown, create)?;
    }
    Ok(dir)
}

/// Probe files get a fresh name each, so two certificates sharing a webroot never collide.
static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether a proof could be published under `webroot` now: the webroot opens (no symlink on the
/// way), the challenge directories that exist are real directories, and the deepest of them
/// accepts a new file. Creating (and at once removing) a probe file is the only exact answer:
/// modes, ACLs, read-only mounts and security modules all have their say. Nothing else changes.
/// Returns the directory that was probed.
pub fn preflight(webroot: &Path) -> Result<PathBuf, ValidationError> {
    let mut dir = open_webroot(webroot)?;
    let mut shown = webroot.to_path_buf();
    for part in [".well-known", "pki-validation"] {
        let next = shown.join(part);
        match open_subdir(&dir, part, &next, false) {
            Ok(d) => {
                dir = d;
                shown = next;
            }
            // Made at the first publish (which needs what the probe below proves).
            Err(ValidationError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                break
            }
            Err(e) => return Err(e),
        }
    }
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = format!(".cas-certd-probe-{}-{n}", std::process::id());
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(at(&dir, &probe))
        .map_err(io("create a file in", &shown))?;
    fs::remove_file(at(&dir, &probe)).map_err(io("remove", &shown.join(&probe)))?;
    Ok(shown)
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
    check_content(content)?;
    let dir = challenge_dir(webroot, true)?;
    let path = webroot.join(".well-known/pki-validation").join(name);
    // A leftover (or a planted symlink) is unlinked, never followed; then the file is made new.
    match fs::remove_file(at(&dir, name)) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io("remove", &path)(e)),
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(at(&dir, name))
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
    let not_ours =
        || ValidationError::Unsafe(format!("{} is not a challenge file", path.display()));
    let parent = path.parent().ok_or_else(not_ours)?;
    if !parent.ends_with(".well-known/pki-validation") {
        return Err(not_ours());
    }
    let webroot = parent
        .parent()
        .and_then(Path::parent)
        .ok_or_else(not_ours)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(not_ours)?;
    check_uri(&format!("{PREFIX}{name}"))?;
    let dir = match challenge_dir(
        if webroot.as_os_str().is_empty() {
            Path::new(".")
        } else {
            webroot
        },
        false,
    ) {
        Ok(d) => d,
        // Already gone with its directory.
        Err(ValidationError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
            return Ok(())
        }
        Err(e) => return Err(e),
    };
    match fs::remove_file(at(&dir, name)) {
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
            "/.well-known/pki-validation/fileauth.txt",
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
        let uri = "/.well-known/pki-validation/fileauth.txt";
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
        let planted = root.path().join(".well-known/pki-validation/fileauth.txt");
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        present(root.path(), "example.com", uri, "x", &doms()).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
        assert!(!fs::symlink_metadata(&planted)
            .unwrap()
            .file_type()
            .is_symlink());
        let names: Vec<_> = fs::read_dir(outside.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // The last directory swapped for a symlink: present refuses, cleanup deletes nothing
        // outside.
        fs::remove_dir_all(root.path().join(".well-known/pki-validation")).unwrap();
        std::os::unix::fs::symlink(
            outside.path(),
            root.path().join(".well-known/pki-validation"),
        )
        .unwrap();
        fs::write(outside.path().join("fileauth.txt"), "outside").unwrap();
        let e = present(root.path(), "example.com", uri, "x", &doms()).unwrap_err();
        assert!(matches!(e, ValidationError::Unsafe(_)), "{e:?}");
        assert!(cleanup(&planted).is_err());
        assert_eq!(
            fs::read_to_string(outside.path().join("fileauth.txt")).unwrap(),
            "outside"
        );
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod pinned_tests {
    use super::*;

    const URI: &str = "/.well-known/pki-validation/fileauth.txt";

    fn doms() -> Vec<String> {
        vec!["example.com".into()]
    }

    #[test]
    fn only_fileauth_txt_with_one_line_of_printable_ascii() {
        let root = tempfile::tempdir().unwrap();
        for uri in [
            "/.well-known/pki-validation/.htaccess",
            "/.well-known/pki-validation/index.php",
            "/.well-known/pki-validation/other.txt",
        ] {
            let e = present(root.path(), "example.com", uri, "x", &doms()).unwrap_err();
            assert!(e.to_string().contains("fileauth.txt"), "{uri}: {e}");
        }
        for content in [
            "tok\nAddHandler cgi-script .txt",
            "tok\r",
            "tok\u{7f}",
            "tök",
            &"a".repeat(1025),
        ] {
            let e = present(root.path(), "example.com", URI, content, &doms()).unwrap_err();
            assert!(matches!(e, ValidationError::Unsafe(_)), "{content:?}: {e}");
        }
        assert!(
            !root.path().join(".well-known").exists(),
            "something was written"
        );
        present(
            root.path(),
            "example.com",
            URI,
            "2024 abc-DEF_123=",
            &doms(),
        )
        .unwrap();
    }

    #[test]
    fn a_symlink_above_the_webroot_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("real/site")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("real"), tmp.path().join("link")).unwrap();
        let webroot = tmp.path().join("link/site");
        let e = present(&webroot, "example.com", URI, "tok", &doms()).unwrap_err();
        assert!(
            matches!(&e, ValidationError::SymlinkedWebroot { real: Some(r), .. }
                if *r == tmp.path().join("real/site")),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains(&tmp.path().join("link").display().to_string()),
            "{e}"
        );
        assert!(!tmp.path().join("real/site/.well-known").exists());
        // The webroot itself a symlink: refused too.
        let e = present(&tmp.path().join("link"), "example.com", URI, "tok", &doms()).unwrap_err();
        assert!(
            matches!(e, ValidationError::SymlinkedWebroot { .. }),
            "{e:?}"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod claim_tests {
    use super::*;

    #[test]
    fn a_second_certificate_waits_and_cannot_remove_the_first_ones_file() {
        let p = Path::new("/nonexistent/claim-test/.well-known/pki-validation/fileauth.txt");
        assert!(claim(p, "api").unwrap());
        // Same certificate again (a re-publish) is fine; another one is told to wait.
        assert!(!claim(p, "api").unwrap());
        assert!(matches!(claim(p, "www"), Err(ValidationError::Busy(_))));
        // www's cleanup must not delete api's proof.
        assert!(!release(p, "www"));
        assert!(release(p, "api"));
        claim(p, "www").unwrap();
        assert!(release(p, "www"));
    }
}
