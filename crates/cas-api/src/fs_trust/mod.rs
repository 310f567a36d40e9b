//! Whether a path can be trusted, and how to open a file that must be.
//!
//! The rule (sshd's StrictModes, applied to every ancestor): walking from `/` down, every
//! component must be owned by root or the daemon's effective user and be writable by nobody
//! else. Why: whoever can write a directory on the way can rename or replace what is below it,
//! and so point the daemon's reads (the config, which names the hooks; the AccessKey) or its
//! writes (webroot, output directory) somewhere else. Two exceptions, both safe:
//! - a directory writable by others *with the sticky bit* (`/tmp`) may be passed through,
//!   because there only an entry's owner can rename or remove it, and the entry below is checked
//!   in turn. It may not be the last component (anyone could add entries there), and a
//!   component missing right below it is refused (anyone could create it first);
//! - a symbolic link is followed only when the link itself is owned by a trusted user (its
//!   own mode means nothing); its target is then walked by the same rule.
//!
//! Components that do not exist yet are fine otherwise: the daemon creates them later as its
//! own. These are checks at a moment; code that writes under a path still opens it with
//! `O_NOFOLLOW` directory fds, because a trusted user can change things afterwards.
//!
//! Used by `credentials` (the credentials file) and by cas-certd's config loading (the config
//! file, `output_dir`, webroots). It lives in this crate because it is how a credentials file
//! is trusted; [`accounts`] is here because the trusted owners include the service account.

pub mod accounts;

use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Component, Path, PathBuf};

/// Symbolic links followed in one walk before giving up (Linux's own limit, `ELOOP`).
const MAX_LINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum FsTrustError {
    #[error("{path}: not an absolute path")]
    NotAbsolute { path: PathBuf },
    #[error("{path}: cannot inspect: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is owned by uid {uid}, not by {trusted}; that user could redirect or replace what the daemon reads or writes here: `chown root {path}` or move it")]
    Owner {
        path: PathBuf,
        uid: u32,
        trusted: String,
    },
    #[error("{path} is writable by {who} (mode {mode:04o}), who could redirect or replace what the daemon reads or writes here: `chmod {fix} {path}`")]
    Writable {
        path: PathBuf,
        who: &'static str,
        mode: u32,
        fix: &'static str,
    },
    #[error("{path} is not a directory")]
    NotDirectory { path: PathBuf },
    #[error("{path}: more than {MAX_LINKS} symbolic links on the way")]
    TooManyLinks { path: PathBuf },
    #[error("{path} does not exist, and {parent} is writable by others, who could create it first: create it yourself, owned by root or the daemon's user")]
    Squattable { path: PathBuf, parent: PathBuf },
    #[error("{path} is {kind}, not a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
}

impl FsTrustError {
    /// The file does not exist (`open_trusted_file` on a missing path).
    pub fn is_not_found(&self) -> bool {
        matches!(self, FsTrustError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// The owners the daemon trusts: root, its effective uid and, for a root process, the service
/// account (`accounts`). That last one is why `cas-certd check`, run by root, accepts the
/// `output_dir` and webroot directories README gives to `cas-certd`, as the daemon will.
pub fn daemon_uids() -> Vec<u32> {
    let euid = rustix::process::geteuid().as_raw();
    let mut uids = vec![0, euid];
    if euid == 0 {
        uids.extend(accounts::service_uid());
    }
    uids.sort_unstable();
    uids.dedup();
    uids
}

/// Checks every component of `path` (absolute) by the rule in the module docs.
pub fn check_trusted_path(path: &Path, allowed_uids: &[u32]) -> Result<(), FsTrustError> {
    if !path.is_absolute() {
        return Err(FsTrustError::NotAbsolute {
            path: path.to_path_buf(),
        });
    }
    // Names still to walk, the next one last (so a link's target can be pushed in front).
    let mut todo: Vec<OsString> = Vec::new();
    push_components(&mut todo, path);
    let mut cur = PathBuf::from("/");
    let mut cur_meta = lstat(&cur)?;
    check_one(&cur, &cur_meta, allowed_uids, todo.is_empty())?;
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            // `cur` is a real directory whose ancestors were all checked.
            cur.pop();
            cur_meta = lstat(&cur)?;
            continue;
        }
        let next = cur.join(&name);
        let last = todo.is_empty();
        let meta = match std::fs::symlink_metadata(&next) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return if cur_meta.mode() & 0o002 != 0 {
                    Err(FsTrustError::Squattable {
                        path: next,
                        parent: cur,
                    })
                } else {
                    Ok(())
                };
            }
            Err(source) => return Err(FsTrustError::Io { path: next, source }),
        };
        if meta.file_type().is_symlink() {
            check_owner(&next, &meta, allowed_uids)?;
            links += 1;
            if links > MAX_LINKS {
                return Err(FsTrustError::TooManyLinks { path: next });
            }
            let target = std::fs::read_link(&next).map_err(|source| FsTrustError::Io {
                path: next.clone(),
                source,
            })?;
            if target.is_absolute() {
                cur = PathBuf::from("/");
                cur_meta = lstat(&cur)?;
            }
            push_components(&mut todo, &target);
            continue;
        }
        check_one(&next, &meta, allowed_uids, last)?;
        if !last && !meta.is_dir() {
            return Err(FsTrustError::NotDirectory { path: next });
        }
        cur = next;
        cur_meta = meta;
    }
    Ok(())
}

/// Opens `path` for reading without blocking (a FIFO would hang a plain open or read for ever),
/// then, on the open file, refuses anything but a regular file owned by an allowed user. The
/// caller judges the mode (a config must not be writable by others; a secret not readable).
pub fn open_trusted_file(
    path: &Path,
    allowed_uids: &[u32],
) -> Result<(File, Metadata), FsTrustError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| FsTrustError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let meta = file.metadata().map_err(|source| FsTrustError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_dir() {
            "a directory"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else {
            "not a file"
        };
        return Err(FsTrustError::NotRegular {
            path: path.to_path_buf(),
            kind,
        });
    }
    check_owner(path, &meta, allowed_uids)?;
    Ok((file, meta))
}

/// Refuses group or other write on `path` (`meta` is its stat).
pub fn check_not_writable(path: &Path, meta: &Metadata) -> Result<(), FsTrustError> {
    let mode = meta.mode() & 0o7777;
    let (who, fix) = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (false, false) => return Ok(()),
        (true, false) => ("group", "g-w"),
        (false, true) => ("others", "o-w"),
        (true, true) => ("group and others", "go-w"),
    };
    Err(FsTrustError::Writable {
        path: path.to_path_buf(),
        who,
        mode,
        fix,
    })
}

fn push_components(todo: &mut Vec<OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::Normal(n) => todo.push(n.to_os_string()),
            Component::ParentDir => todo.push("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

fn lstat(path: &Path) -> Result<Metadata, FsTrustError> {
    std::fs::symlink_metadata(path).map_err(|source| FsTrustError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn check_owner(path: &Path, meta: &Metadata, allowed_uids: &[u32]) -> Result<(), FsTrustError> {
    if allowed_uids.contains(&meta.uid()) {
        return Ok(());
    }
    let trusted = allowed_uids
        .iter()
        .map(|u| {
            if *u == 0 {
                "root".to_string()
            } else {
                format!("uid {u} (the daemon's user)")
            }
        })
        .collect::<Vec<_>>()
        .join(" or ");
    Err(FsTrustError::Owner {
        path: path.to_path_buf(),
        uid: meta.uid(),
        trusted,
    })
}

fn check_one(
    path: &Path,
    meta: &Metadata,
    allowed_uids: &[u32],
    last: bool,
) -> Result<(), FsTrustError> {
    check_owner(path, meta, allowed_uids)?;
    let sticky_dir = meta.is_dir() && meta.mode() & 0o1000 != 0;
    if sticky_dir && !last {
        return Ok(());
    }
    check_not_writable(path, meta)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_private_temp_dir_below_sticky_tmp_is_trusted() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "x").unwrap();
        chmod(&f, 0o644);
        let uids = daemon_uids();
        check_trusted_path(&f, &uids).unwrap();
        // Missing components below a private directory: the daemon will make them.
        check_trusted_path(&d.path().join("a/b/c"), &uids).unwrap();
    }

    #[test]
    fn writable_components_are_refused_with_the_fix() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let uids = daemon_uids();
        chmod(&sub, 0o775);
        let e = check_trusted_path(&sub.join("x"), &uids).unwrap_err();
        assert!(e.to_string().contains("chmod g-w"), "{e}");
        // Sticky does not help for the last component: anyone may add entries to it.
        chmod(&sub, 0o1777);
        let e = check_trusted_path(&sub, &uids).unwrap_err();
        assert!(e.to_string().contains("chmod go-w"), "{e}");
        // Nor for a missing entry right below it: anyone may create it first.
        let e = check_trusted_path(&sub.join("x"), &uids).unwrap_err();
        assert!(matches!(e, FsTrustError::Squattable { .. }), "{e}");
        // An existing private directory below a sticky one is fine.
        std::fs::create_dir(sub.join("x")).unwrap();
        chmod(&sub.join("x"), 0o755);
        check_trusted_path(&sub.join("x/y"), &uids).unwrap();
    }

    #[test]
    fn owner_not_trusted() {
        let d = tempfile::tempdir().unwrap();
        // Trusting nobody but uid 4242 makes our own temp dir untrusted.
        let e = check_trusted_path(d.path(), &[4242]).unwrap_err();
        assert!(matches!(e, FsTrustError::Owner { .. }), "{e}");
    }

    #[test]
    fn symlinks_are_walked_to_their_target() {
        let d = tempfile::tempdir().unwrap();
        let uids = daemon_uids();
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink("real", d.path().join("rel")).unwrap();
        check_trusted_path(&d.path().join("rel/x"), &uids).unwrap();
        // The target is checked too.
        chmod(&real, 0o777);
        let e = check_trusted_path(&d.path().join("rel/x"), &uids).unwrap_err();
        assert!(e.to_string().contains(&real.display().to_string()), "{e}");
        // A loop ends.
        std::os::unix::fs::symlink("loop", d.path().join("loop")).unwrap();
        let e = check_trusted_path(&d.path().join("loop"), &uids).unwrap_err();
        assert!(matches!(e, FsTrustError::TooManyLinks { .. }), "{e}");
        // A file on the way.
        std::fs::write(d.path().join("f"), "").unwrap();
        let e = check_trusted_path(&d.path().join("f/x"), &uids).unwrap_err();
        assert!(matches!(e, FsTrustError::NotDirectory { .. }), "{e}");
    }

    #[test]
    fn fifo_and_directory_are_not_regular_files() {
        let d = tempfile::tempdir().unwrap();
        let e = open_trusted_file(d.path(), &daemon_uids()).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        let e = open_trusted_file(Path::new("/dev/null"), &daemon_uids()).unwrap_err();
        assert!(e.to_string().contains("a device"), "{e}");
        let e = open_trusted_file(&d.path().join("none"), &daemon_uids()).unwrap_err();
        assert!(e.is_not_found());
    }
}
