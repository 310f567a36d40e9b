//! Directory file descriptors for the deploy tree. Below `output_dir` every create, rename,
//! unlink and read is relative to a directory fd opened with `O_NOFOLLOW | O_DIRECTORY`, so a
//! directory swapped for a symlink after it was opened cannot redirect the daemon elsewhere
//! (issue 18, item 3). Paths are kept beside the fds for messages only.

use std::ffi::{OsStr, OsString};
use std::io::{ErrorKind, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::DeployError;

/// How deep [`Dir::remove_tree`] descends: our versions are one level deep, so anything much
/// deeper is not ours and is left for a human rather than recursed into without bound.
const MAX_DEPTH: usize = 8;

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

pub(super) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DeployError {
    let path = path.to_path_buf();
    move |source| DeployError::Io { op, path, source }
}

fn errno(op: &'static str, path: &Path) -> impl FnOnce(Errno) -> DeployError {
    let f = io(op, path);
    move |e| f(e.into())
}

/// Whether `e` says "this name is not a directory we may enter": a symlink (`ELOOP` under
/// `O_NOFOLLOW`) or another kind of file.
fn not_a_dir(e: Errno) -> bool {
    e == Errno::LOOP || e == Errno::NOTDIR
}

/// An open directory and the path it was reached by (for messages only).
pub(super) struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens the configured `output_dir` itself (it may be a symlink the operator made); `None`
    /// when it does not exist.
    pub fn open_root(path: &Path) -> Result<Option<Dir>, DeployError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        match rfs::open(path, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(Dir {
                fd,
                path: path.to_path_buf(),
            })),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(errno("open", path)(e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// The directory `name` in this one; `Ok(None)` when missing; an error when it is a
    /// symlink or not a directory.
    pub fn open(&self, name: impl AsRef<OsStr>) -> Result<Option<Dir>, DeployError> {
        let name = name.as_ref();
        let path = self.join(name);
        match rfs::openat(&self.fd, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(Some(Dir { fd, path })),
            Err(Errno::NOENT) => Ok(None),
            Err(e) if not_a_dir(e) => Err(DeployError::Untrusted {
                path,
                reason: "is a symbolic link or not a directory".into(),
            }),
            Err(e) => Err(errno("open", &path)(e)),
        }
    }

    /// As [`Dir::open`], `Ok(None)` also for a symlink or non-directory (read-only callers:
    /// such a layout is simply not ours).
    pub fn open_quiet(&self, name: impl AsRef<OsStr>) -> Result<Option<Dir>, DeployError> {
        match self.open(name) {
            Err(DeployError::Untrusted { .. }) => Ok(None),
            r => r,
        }
    }

    /// Opens the directory `name`, creating it with exactly `mode` (whatever the umask) when
    /// missing. Returns the directory and whether it was created.
    pub fn open_or_create(&self, name: &str, mode: u32) -> Result<(Dir, bool), DeployError> {
        let path = self.join(name);
        let created = match rfs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode)) {
            Ok(()) => true,
            Err(Errno::EXIST) => false,
            Err(e) => return Err(errno("mkdir", &path)(e)),
        };
        let dir = self.open(name)?.ok_or_else(|| {
            io("open", &path)(std::io::Error::new(
                ErrorKind::NotFound,
                "removed while being created",
            ))
        })?;
        if created {
            rfs::fchmod(&dir.fd, Mode::from_raw_mode(mode)).map_err(errno("chmod", &path))?;
        }
        Ok((dir, created))
    }

    /// Refuses a directory that anyone but this process's user and root could write in, as
    /// sshd's StrictModes does: such a user could swap its entries under the daemon.
    pub fn check_trusted(&self) -> Result<(), DeployError> {
        let st = rfs::fstat(&self.fd).map_err(errno("stat", &self.path))?;
        let me = rustix::process::geteuid().as_raw();
        if st.st_uid != me && st.st_uid != 0 {
            return Err(DeployError::Untrusted {
                path: self.path.clone(),
                reason: format!(
                    "is owned by uid {}, not by the daemon's user (uid {me}) or root; \
                     chown it to the daemon's user",
                    st.st_uid
                ),
            });
        }
        let mode = st.st_mode & 0o7777;
        if mode & 0o022 != 0 {
            return Err(DeployError::Untrusted {
                path: self.path.clone(),
                reason: format!(
                    "is writable by its group or others (mode {mode:04o}); run `chmod go-w` on \
                     it (a web server needs only read and search: 0755, or 0750 with its group)"
                ),
            });
        }
        Ok(())
    }

    /// Whether an entry `name` exists (of any type; a symlink is not followed).
    pub fn exists(&self, name: impl AsRef<OsStr>) -> Result<bool, DeployError> {
        let name = name.as_ref();
        match rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(errno("stat", &self.join(name))(e)),
        }
    }

    /// The type of entry `name` (a symlink is not followed); `None` when missing.
    pub fn kind(&self, name: impl AsRef<OsStr>) -> Result<Option<FileType>, DeployError> {
        let name = name.as_ref();
        match rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(errno("stat", &self.join(name))(e)),
        }
    }

    /// Every entry's name but `.` and `..`.
    pub fn names(&self) -> Result<Vec<OsString>, DeployError> {
        let mut d = rfs::Dir::read_from(&self.fd).map_err(errno("list", &self.path))?;
        let mut out = Vec::new();
        while let Some(entry) = d.read() {
            let entry = entry.map_err(errno("list", &self.path))?;
            let n = entry.file_name().to_bytes();
            if n != b"." && n != b".." {
                out.push(OsStr::from_bytes(n).to_os_string());
            }
        }
        Ok(out)
    }

    /// Creates the file `name` (never an existing one, never through a symlink) readable by
    /// its owner only, gives it its owner and then its exact `mode` while still empty, writes
    /// and fsyncs. Nobody else can open it before it has its final owner: an fd opened under a
    /// wider interim mode would read the key once it is written.
    pub fn create_file(
        &self,
        name: &str,
        data: &[u8],
        mode: u32,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<(), DeployError> {
        let path = self.join(name);
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(&self.fd, name, flags, Mode::from_raw_mode(mode & 0o600))
            .map_err(errno("create", &path))?;
        if uid.is_some() || gid.is_some() {
            let owner = uid.map(rustix::fs::Uid::from_raw);
            let group = gid.map(rustix::fs::Gid::from_raw);
            rfs::fchown(&fd, owner, group).map_err(errno("chown", &path))?;
        }
        // The umask may have narrowed the mode; set the configured one while still empty.
        rfs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(errno("chmod", &path))?;
        let mut f = std::fs::File::from(fd);
        f.write_all(data).map_err(io("write", &path))?;
        f.sync_all().map_err(io("fsync", &path))
    }

    /// The text of the regular file `name`; `Ok(None)` when missing, a symlink, not a regular
    /// file, or not UTF-8 (all mean "not the set we wrote").
    pub fn read_text(&self, name: &str) -> Result<Option<String>, DeployError> {
        self.read_text_if(name, |_| true)
    }

    /// As [`Dir::read_text`], and `Ok(None)` also when the file is writable by group or others
    /// or owned by anyone but this process's user and root (what it says cannot be trusted).
    pub fn read_trusted_text(&self, name: &str) -> Result<Option<String>, DeployError> {
        let me = rustix::process::geteuid().as_raw();
        self.read_text_if(name, |st| {
            (st.st_uid == me || st.st_uid == 0) && st.st_mode & 0o022 == 0
        })
    }

    fn read_text_if(
        &self,
        name: &str,
        ok: impl FnOnce(&rfs::Stat) -> bool,
    ) -> Result<Option<String>, DeployError> {
        let path = self.join(name);
        // Non-blocking: a FIFO put in place of a file must not hang the daemon.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rfs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) if e == Errno::NOENT || e == Errno::LOOP => return Ok(None),
            Err(e) => return Err(errno("open", &path)(e)),
        };
        let st = rfs::fstat(&fd).map_err(errno("stat", &path))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || !ok(&st) {
            return Ok(None);
        }
        match std::io::read_to_string(std::fs::File::from(fd)) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == ErrorKind::InvalidData => Ok(None),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    /// The target of the symlink `name`; `None` when missing or not a symlink.
    pub fn read_link(&self, name: &str) -> Option<PathBuf> {
        let t = rfs::readlinkat(&self.fd, name, Vec::new()).ok()?;
        Some(PathBuf::from(OsStr::from_bytes(t.as_bytes())))
    }

    pub fn symlink(&self, target: &Path, name: &str) -> Result<(), DeployError> {
        rfs::symlinkat(target, &self.fd, name).map_err(errno("symlink", &self.join(name)))
    }

    /// Renames `from` in this directory to `to` in `dest` (replacing it).
    pub fn rename(&self, from: &str, dest: &Dir, to: &str) -> Result<(), DeployError> {
        rfs::renameat(&self.fd, from, &dest.fd, to).map_err(errno("rename", &dest.join(to)))
    }

    /// Removes the non-directory entry `name` (a symlink itself, never its target).
    pub fn unlink(&self, name: impl AsRef<OsStr>) -> Result<(), DeployError> {
        let name = name.as_ref();
        rfs::unlinkat(&self.fd, name, AtFlags::empty()).map_err(errno("remove", &self.join(name)))
    }

    /// Removes the entry `name` and, when it is a directory, everything in it: walked with
    /// `O_NOFOLLOW` fds and `unlinkat`, so a symlink met anywhere is removed, never followed.
    pub fn remove_tree(&self, name: impl AsRef<OsStr>) -> Result<(), DeployError> {
        self.remove_tree_at(name.as_ref(), 0)
    }

    fn remove_tree_at(&self, name: &OsStr, depth: usize) -> Result<(), DeployError> {
        let path = self.join(name);
        match rfs::openat(&self.fd, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => {
                if depth >= MAX_DEPTH {
                    return Err(io("remove", &path)(std::io::Error::other(
                        "nested too deep to be a version we made",
                    )));
                }
                let sub = Dir {
                    fd,
                    path: path.clone(),
                };
                for n in sub.names()? {
                    sub.remove_tree_at(&n, depth + 1)?;
                }
                match rfs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR) {
                    Ok(()) | Err(Errno::NOENT) => Ok(()),
                    Err(e) => Err(errno("remove", &path)(e)),
                }
            }
            Err(e) if not_a_dir(e) => match rfs::unlinkat(&self.fd, name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(errno("remove", &path)(e)),
            },
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(errno("open", &path)(e)),
        }
    }

    pub fn fsync(&self) -> Result<(), DeployError> {
        rfs::fsync(&self.fd).map_err(errno("fsync", &self.path))
    }
}
