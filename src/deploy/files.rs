//! The on-disk layout and the atomic swap:
//!
//! ```text
//! <output_dir>/<name>/versions/<version>/{cert,chain,fullchain,privkey}.pem
//! <output_dir>/<name>/live -> versions/<version>        (swapped by one rename)
//! <output_dir>/<name>/{cert,chain,fullchain,privkey}.pem -> live/<file>   (stable paths)
//! ```
//! A version is written under a temporary name, fsynced and renamed into place before `live`
//! is switched, so readers see either the old set or the new one, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::pem::inspect;
use super::{CertInfo, DeployError, Deployed, PemSet};
use crate::config::FileOwnership;
use crate::secret::Secret;

const FILES: [&str; 4] = ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"];
const TMP_PREFIX: &str = ".tmp-";

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DeployError {
    let path = path.to_path_buf();
    move |source| DeployError::Io { op, path, source }
}

fn invalid(op: &'static str, path: &Path, msg: String) -> DeployError {
    DeployError::Io {
        op,
        path: path.to_path_buf(),
        source: std::io::Error::new(ErrorKind::InvalidInput, msg),
    }
}

/// A user or group given by name or number; names are looked up in /etc/passwd or /etc/group
/// (no NSS: the daemon should not depend on libc's lookup machinery).
fn resolve_id(spec: &str, db: &str, field: usize) -> Result<u32, DeployError> {
    if let Ok(n) = spec.parse::<u32>() {
        return Ok(n);
    }
    let path = Path::new(db);
    let text = fs::read_to_string(path).map_err(io("read", path))?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&spec))
        .and_then(|f| f.get(field).and_then(|v| v.parse().ok()))
        .ok_or_else(|| invalid("look up", path, format!("no entry named {spec:?}")))
}

/// The uid and gid deployed files are given (`None`: left as created). Public for `check`.
pub fn ids(files: &FileOwnership) -> Result<(Option<u32>, Option<u32>), DeployError> {
    let uid = match &files.owner {
        Some(o) => Some(resolve_id(o, "/etc/passwd", 2)?),
        None => None,
    };
    let gid = match &files.group {
        Some(g) => Some(resolve_id(g, "/etc/group", 2)?),
        None => None,
    };
    Ok((uid, gid))
}

fn fsync_dir(dir: &Path) -> Result<(), DeployError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))
}

fn mkdir(dir: &Path, mode: u32) -> Result<(), DeployError> {
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io("chmod", dir))
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let md = fs::symlink_metadata(dir).map_err(io("stat", dir))?;
            if md.is_dir() {
                Ok(())
            } else {
                Err(invalid(
                    "mkdir",
                    dir,
                    "exists and is not a directory".into(),
                ))
            }
        }
        Err(e) => Err(io("mkdir", dir)(e)),
    }
}

/// Creates `path` (never an existing file, never through a symlink) with `mode` from the start,
/// sets ownership and the exact mode before any content is written, writes and fsyncs.
fn write_new(
    path: &Path,
    data: &[u8],
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<(), DeployError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io("create", path))?;
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::fchown(&f, uid, gid).map_err(io("chown", path))?;
    }
    // The umask may have narrowed the mode; restore the configured one while still empty.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io("chmod", path))?;
    f.write_all(data).map_err(io("write", path))?;
    f.sync_all().map_err(io("fsync", path))
}

/// Points `link` at `target` atomically: a temporary symlink renamed over it.
fn swap_symlink(dir: &Path, link: &str, target: &Path) -> Result<(), DeployError> {
    let tmp = dir.join(format!(
        "{TMP_PREFIX}{link}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::os::unix::fs::symlink(target, &tmp).map_err(io("symlink", &tmp))?;
    crate::failpoint::hit("mid_swap");
    let dst = dir.join(link);
    fs::rename(&tmp, &dst).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io("rename", &dst)(e)
    })
}

fn version_name(info: &CertInfo, versions: &Path) -> String {
    let serial: String = info.serial_hex.chars().take(16).collect();
    let base = format!("{}-{serial}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"));
    let mut name = base.clone();
    let mut n = 1;
    while fs::symlink_metadata(versions.join(&name)).is_ok() {
        n += 1;
        name = format!("{base}-{n}");
    }
    name
}

/// For tests: make the write of this file fail, to prove an error leaves the old set alone.
pub(crate) type Inject = Option<&'static str>;

pub(crate) fn install(
    output_dir: &Path,
    name: &str,
    set: &PemSet,
    files: &FileOwnership,
    keep_versions: usize,
    inject: Inject,
) -> Result<Deployed, DeployError> {
    if let Err(e) = crate::config::domain::safe_name(name) {
        return Err(invalid("deploy", output_dir, format!("name {name:?}: {e}")));
    }
    let (info, ours) = inspect(set)?;
    if !ours {
        return Err(DeployError::KeyMismatch);
    }
    let (uid, gid) = ids(files)?;

    // Made here only if missing; 0755 whatever the umask, so the web server can traverse it
    // (the keys are protected by their own mode).
    if fs::symlink_metadata(output_dir).is_err() {
        if let Some(parent) = output_dir.parent() {
            fs::create_dir_all(parent).map_err(io("mkdir", parent))?;
        }
        mkdir(output_dir, 0o755)?;
    }
    let dir = output_dir.join(name);
    mkdir(&dir, 0o755)?;
    remove_stale_links(&dir)?;
    let versions = dir.join("versions");
    mkdir(&versions, 0o755)?;

    let version = version_name(&info, &versions);
    let tmp = versions.join(format!("{TMP_PREFIX}{version}"));
    let final_dir = versions.join(&version);
    let written = (|| {
        mkdir(&tmp, 0o755)?;
        let fullchain = format!("{}{}", set.cert_pem, set.chain_pem);
        let contents: [(&str, &[u8], u32); 4] = [
            ("cert.pem", set.cert_pem.as_bytes(), files.cert_mode),
            ("chain.pem", set.chain_pem.as_bytes(), files.cert_mode),
            ("fullchain.pem", fullchain.as_bytes(), files.cert_mode),
            (
                "privkey.pem",
                set.key_pem.expose().as_bytes(),
                files.key_mode,
            ),
        ];
        for (file, data, mode) in contents {
            let path = tmp.join(file);
            if inject == Some(file) {
                return Err(invalid("write", &path, "injected failure".into()));
            }
            write_new(&path, data, mode, uid, gid)?;
        }
        fsync_dir(&tmp)?;
        fs::rename(&tmp, &final_dir).map_err(io("rename", &final_dir))?;
        fsync_dir(&versions)
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }

    if let Err(e) = swap_symlink(&dir, "live", &Path::new("versions").join(&version)) {
        let _ = fs::remove_dir_all(&final_dir);
        return Err(e);
    }
    for f in FILES {
        let want = Path::new("live").join(f);
        if fs::read_link(dir.join(f)).ok().as_deref() != Some(want.as_path()) {
            swap_symlink(&dir, f, &want)?;
        }
    }
    fsync_dir(&dir)?;
    prune(&versions, &version, keep_versions)?;

    Ok(Deployed {
        cert: dir.join("cert.pem"),
        chain: dir.join("chain.pem"),
        fullchain: dir.join("fullchain.pem"),
        key: dir.join("privkey.pem"),
        dir,
        info,
    })
}

/// Removes temporary links a crash left between their creation and their rename (one daemon
/// per state dir installs one set at a time, so none of them is in use).
fn remove_stale_links(dir: &Path) -> Result<(), DeployError> {
    for entry in fs::read_dir(dir).map_err(io("list", dir))? {
        let entry = entry.map_err(io("list", dir))?;
        if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX)
            && entry.file_type().is_ok_and(|t| t.is_symlink())
        {
            let p = entry.path();
            fs::remove_file(&p).map_err(io("remove", &p))?;
        }
    }
    Ok(())
}

/// Removes all but the newest `keep` old versions (never `live`) and leftover temporaries.
fn prune(versions: &Path, live: &str, keep: usize) -> Result<(), DeployError> {
    let mut old: Vec<String> = Vec::new();
    for entry in fs::read_dir(versions).map_err(io("list", versions))? {
        let entry = entry.map_err(io("list", versions))?;
        let n = entry.file_name().to_string_lossy().into_owned();
        if n == live {
            continue;
        }
        if n.starts_with(TMP_PREFIX) {
            let _ = fs::remove_dir_all(entry.path());
            continue;
        }
        old.push(n);
    }
    // Names start with a UTC timestamp, so the lexical order is the age order.
    old.sort_unstable_by(|a, b| b.cmp(a));
    for n in old.iter().skip(keep) {
        let p = versions.join(n);
        fs::remove_dir_all(&p).map_err(io("remove", &p))?;
    }
    Ok(())
}

fn read_opt(path: &Path) -> Result<Option<String>, DeployError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidData) => Ok(None),
        Err(e) => Err(io("read", path)(e)),
    }
}

/// The four live files, when `<output_dir>/<name>` has the layout [`install`] makes (the
/// `live` link to one version, each file a link through it); `None` otherwise.
fn read_live(output_dir: &Path, name: &str) -> Result<Option<[String; 4]>, DeployError> {
    let dir = output_dir.join(name);
    let Ok(target) = fs::read_link(dir.join("live")) else {
        return Ok(None);
    };
    let mut comps = target.components();
    let is_version = comps.next().map(|c| c.as_os_str() == "versions") == Some(true)
        && matches!(comps.next(), Some(std::path::Component::Normal(_)))
        && comps.next().is_none();
    if !is_version {
        return Ok(None);
    }
    for f in FILES {
        let want: PathBuf = Path::new("live").join(f);
        if fs::read_link(dir.join(f)).ok() != Some(want) {
            return Ok(None);
        }
    }
    let (Some(cert), Some(chain), Some(full), Some(key)) = (
        read_opt(&dir.join("cert.pem"))?,
        read_opt(&dir.join("chain.pem"))?,
        read_opt(&dir.join("fullchain.pem"))?,
        read_opt(&dir.join("privkey.pem"))?,
    ) else {
        return Ok(None);
    };
    if full != format!("{cert}{chain}") {
        return Ok(None);
    }
    Ok(Some([cert, chain, full, key]))
}

pub(crate) fn inspect_live(
    output_dir: &Path,
    name: &str,
    expected_fingerprint: &str,
) -> Result<Option<CertInfo>, DeployError> {
    let Some([cert, chain, _, key]) = read_live(output_dir, name)? else {
        return Ok(None);
    };
    let set = PemSet {
        cert_pem: cert,
        chain_pem: chain,
        key_pem: Secret::new(key),
    };
    match inspect(&set) {
        Ok((info, true))
            if info
                .fingerprint_sha256
                .eq_ignore_ascii_case(expected_fingerprint) =>
        {
            Ok(Some(info))
        }
        Ok(_) | Err(DeployError::BadCertificate(_)) | Err(DeployError::BadKey(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the live files are byte for byte `set`. No parsing and no key arithmetic, so the
/// daemon can check thousands of sets at start in well under a second.
pub(crate) fn live_is(output_dir: &Path, name: &str, set: &PemSet) -> Result<bool, DeployError> {
    Ok(match read_live(output_dir, name)? {
        Some([cert, chain, _, key]) => {
            cert == set.cert_pem && chain == set.chain_pem && key == set.key_pem.expose()
        }
        None => false,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::KeyKind;

    fn self_signed(key: &Secret) -> PemSet {
        let kp = rcgen::KeyPair::from_pem(key.expose()).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example.com".to_string()])
            .unwrap()
            .self_signed(&kp)
            .unwrap();
        PemSet {
            cert_pem: cert.pem(),
            chain_pem: String::new(),
            key_pem: key.clone(),
        }
    }

    fn own() -> FileOwnership {
        FileOwnership {
            owner: None,
            group: None,
            cert_mode: 0o644,
            key_mode: 0o600,
        }
    }

    #[test]
    fn a_failed_write_leaves_the_old_set_and_no_temporaries() {
        let tmp = tempfile::tempdir().unwrap();
        let k1 = crate::keys::generate(KeyKind::EcdsaP256, &["a.example.com".into()])
            .unwrap()
            .0;
        let old = self_signed(&k1);
        let d = install(tmp.path(), "www", &old, &own(), 3, None).unwrap();
        let live_before = fs::read_link(d.dir.join("live")).unwrap();
        let k2 = crate::keys::generate(KeyKind::EcdsaP256, &["a.example.com".into()])
            .unwrap()
            .0;
        let new = self_signed(&k2);
        for file in FILES {
            let e = install(tmp.path(), "www", &new, &own(), 3, Some(file)).unwrap_err();
            assert!(e.to_string().contains("injected"), "{e}");
            assert_eq!(fs::read_link(d.dir.join("live")).unwrap(), live_before);
            assert_eq!(fs::read_to_string(&d.cert).unwrap(), old.cert_pem);
            assert_eq!(fs::read_to_string(&d.key).unwrap(), k1.expose());
            let names: Vec<String> = fs::read_dir(d.dir.join("versions"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names.len(), 1, "{names:?}");
            let top: Vec<String> = fs::read_dir(&d.dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(top.iter().all(|n| !n.starts_with(TMP_PREFIX)), "{top:?}");
        }
        let info = inspect_live(tmp.path(), "www", &d.info.fingerprint_sha256).unwrap();
        assert!(info.is_some());
    }

    #[test]
    fn ids_by_number_and_name() {
        assert_eq!(resolve_id("0", "/etc/passwd", 2).unwrap(), 0);
        assert_eq!(resolve_id("root", "/etc/passwd", 2).unwrap(), 0);
        assert_eq!(resolve_id("root", "/etc/group", 2).unwrap(), 0);
        assert!(resolve_id("nobody-such-user", "/etc/passwd", 2).is_err());
    }
}
