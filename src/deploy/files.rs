//! The on-disk layout and the atomic swap:
//!
//! ```text
//! <output_dir>/<name>/versions/<version>/{cert,chain,fullchain,privkey}.pem, manifest.json
//! <output_dir>/<name>/live -> versions/<version>        (swapped by one rename)
//! <output_dir>/<name>/{cert,chain,fullchain,privkey}.pem -> live/<file>   (stable paths)
//! ```
//! A version is written under a temporary name, fsynced and renamed into place before `live`
//! is switched, so readers see either the old set or the new one, never a mix. Below
//! `output_dir` everything goes through directory fds ([`super::dirfd`]); `<name>` and
//! `versions` must be writable by the daemon's user and root only, and `<name>` must be ours
//! ([`super::manifest`]).

use std::fs;
use std::io::ErrorKind;
use std::path::{Component, Path};

use super::dirfd::{io, Dir};
use super::manifest::{self, Manifest, Origin, MANIFEST};
use super::pem::{inspect, key_sha256};
use super::{CertInfo, DeployError, Deployed, PemSet};
use crate::config::FileOwnership;
use cas_api::secret::Secret;

pub(crate) const FILES: [&str; 4] = ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"];
pub(crate) const TMP_PREFIX: &str = ".tmp-";

fn invalid(op: &'static str, path: &Path, msg: String) -> DeployError {
    DeployError::Io {
        op,
        path: path.to_path_buf(),
        source: std::io::Error::new(ErrorKind::InvalidInput, msg),
    }
}

fn lookup(e: cas_api::fs_trust::accounts::AccountError) -> DeployError {
    invalid("look up", Path::new("owner/group"), e.to_string())
}

/// The uid and gid deployed files are given (`None`: left as created). Public for `check`.
pub fn ids(files: &FileOwnership) -> Result<(Option<u32>, Option<u32>), DeployError> {
    let uid = match &files.owner {
        Some(o) => Some(cas_api::fs_trust::accounts::uid(o).map_err(lookup)?),
        None => None,
    };
    let gid = match &files.group {
        Some(g) => Some(cas_api::fs_trust::accounts::gid(g).map_err(lookup)?),
        None => None,
    };
    Ok((uid, gid))
}

/// The version a `live` target names, when it is `versions/<one plain name>`.
pub(crate) fn version_of(target: &Path) -> Option<&str> {
    let mut comps = target.components();
    if comps.next() != Some(Component::Normal("versions".as_ref())) {
        return None;
    }
    let Some(Component::Normal(v)) = comps.next() else {
        return None;
    };
    if comps.next().is_some() {
        return None;
    }
    v.to_str()
}

/// Points `link` at `target` atomically: a temporary symlink renamed over it.
fn swap_symlink(dir: &Dir, link: &str, target: &Path) -> Result<(), DeployError> {
    let tmp = format!("{TMP_PREFIX}{link}-{}", uuid::Uuid::new_v4().simple());
    dir.symlink(target, &tmp)?;
    crate::failpoint::hit("mid_swap");
    dir.rename(&tmp, dir, link).inspect_err(|_| {
        let _ = dir.unlink(&tmp);
    })
}

fn version_name(info: &CertInfo, versions: &Dir) -> Result<String, DeployError> {
    let serial: String = info.serial_hex.chars().take(16).collect();
    let base = format!("{}-{serial}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"));
    let mut name = base.clone();
    let mut n = 1;
    while versions.exists(&name)? {
        n += 1;
        name = format!("{base}-{n}");
    }
    Ok(name)
}

/// Opens `<output_dir>/<name>` for a change: creates what is missing, refuses a directory
/// that others can write in or that is not ours. Returns it and its `versions` directory.
fn open_for_install(output_dir: &Path, name: &str) -> Result<(Dir, Dir), DeployError> {
    // Made here only if missing; 0755 whatever the umask, so the web server can traverse it
    // (the keys are protected by their own mode). At and above output_dir, paths are fine:
    // the operator chose them (their ownership is checked with the config).
    let root = match Dir::open_root(output_dir)? {
        Some(r) => r,
        None => {
            if let Some(parent) = output_dir.parent() {
                fs::create_dir_all(parent).map_err(io("mkdir", parent))?;
            }
            match fs::create_dir(output_dir) {
                Ok(()) => {
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(output_dir, fs::Permissions::from_mode(0o755))
                        .map_err(io("chmod", output_dir))?;
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io("mkdir", output_dir)(e)),
            }
            Dir::open_root(output_dir)?
                .ok_or_else(|| io("open", output_dir)(std::io::Error::from(ErrorKind::NotFound)))?
        }
    };
    let (dir, created) = root.open_or_create(name, 0o755)?;
    dir.check_trusted()?;
    if !created {
        manifest::claim(&dir)?;
    }
    let (versions, _) = dir.open_or_create("versions", 0o755)?;
    versions.check_trusted()?;
    Ok((dir, versions))
}

/// Whether [`install`] may use `<output_dir>/<name>`, changing nothing: an existing directory
/// must be ours (it has our manifest, or the layout an earlier version made) and, like its
/// `versions`, writable by the daemon's user and root only. Call it before ordering, so a
/// directory we may not use costs no quota.
pub fn preflight(output_dir: &Path, name: &str) -> Result<(), DeployError> {
    if let Err(e) = crate::config::domain::safe_name(name) {
        return Err(invalid("deploy", output_dir, format!("name {name:?}: {e}")));
    }
    let Some(root) = Dir::open_root(output_dir)? else {
        return Ok(());
    };
    let Some(dir) = root.open(name)? else {
        return Ok(());
    };
    dir.check_trusted()?;
    manifest::claim(&dir)?;
    if let Some(versions) = dir.open("versions")? {
        versions.check_trusted()?;
    }
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// For tests: the file whose write fails, to prove an error leaves the old set alone.
    static FAIL_WRITE: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

#[cfg(test)]
fn write_fails(file: &str) -> bool {
    FAIL_WRITE.with(|f| f.get() == Some(file))
}

#[cfg(not(test))]
fn write_fails(_: &str) -> bool {
    false
}

/// Installs `set` as `<output_dir>/<name>/` atomically (versioned directory with a manifest
/// of `origin`, fsynced, one symlink renamed into place, directory fsynced); keeps
/// `keep_versions` old versions. Makes the [`preflight`] checks first.
pub fn install(
    output_dir: &Path,
    name: &str,
    set: &PemSet,
    files: &FileOwnership,
    keep_versions: usize,
    origin: &Origin,
) -> Result<Deployed, DeployError> {
    if let Err(e) = crate::config::domain::safe_name(name) {
        return Err(invalid("deploy", output_dir, format!("name {name:?}: {e}")));
    }
    let (info, ours) = inspect(set)?;
    if !ours {
        return Err(DeployError::KeyMismatch);
    }
    let (uid, gid) = ids(files)?;
    let manifest = Manifest::new(origin, &info, key_sha256(&set.cert_pem)?);
    let manifest = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| invalid("encode", Path::new(MANIFEST), e.to_string()))?;

    let (dir, versions) = open_for_install(output_dir, name)?;
    remove_stale_links(&dir)?;

    let version = version_name(&info, &versions)?;
    let tmp_name = format!("{TMP_PREFIX}{version}");
    let written = (|| {
        let (tmp, _) = versions.open_or_create(&tmp_name, 0o755)?;
        let fullchain = format!("{}{}", set.cert_pem, set.chain_pem);
        let contents: [(&str, &[u8], u32); 5] = [
            ("cert.pem", set.cert_pem.as_bytes(), files.cert_mode),
            ("chain.pem", set.chain_pem.as_bytes(), files.cert_mode),
            ("fullchain.pem", fullchain.as_bytes(), files.cert_mode),
            (
                "privkey.pem",
                set.key_pem.expose().as_bytes(),
                files.key_mode,
            ),
            // As readable as the certificate, whose facts it repeats.
            (MANIFEST, &manifest, files.cert_mode),
        ];
        for (file, data, mode) in contents {
            if write_fails(file) {
                return Err(invalid("write", &tmp.join(file), "injected failure".into()));
            }
            tmp.create_file(file, data, mode, uid, gid)?;
        }
        tmp.fsync()?;
        versions.rename(&tmp_name, &versions, &version)?;
        versions.fsync()
    })();
    if let Err(e) = written {
        let _ = versions.remove_tree(&tmp_name);
        return Err(e);
    }

    if let Err(e) = swap_symlink(&dir, "live", &Path::new("versions").join(&version)) {
        let _ = versions.remove_tree(&version);
        return Err(e);
    }
    for f in FILES {
        let want = Path::new("live").join(f);
        if dir.read_link(f).as_deref() != Some(want.as_path()) {
            swap_symlink(&dir, f, &want)?;
        }
    }
    dir.fsync()?;
    prune(&versions, &version, keep_versions)?;

    let path = dir.path();
    Ok(Deployed {
        cert: path.join("cert.pem"),
        chain: path.join("chain.pem"),
        fullchain: path.join("fullchain.pem"),
        key: path.join("privkey.pem"),
        dir: path.to_path_buf(),
        info,
    })
}

/// Removes temporary links a crash left between their creation and their rename (one daemon
/// per state dir installs one set at a time, so none of them is in use).
fn remove_stale_links(dir: &Dir) -> Result<(), DeployError> {
    for n in dir.names()? {
        if n.as_encoded_bytes().starts_with(TMP_PREFIX.as_bytes())
            && dir.kind(&n)? == Some(rustix::fs::FileType::Symlink)
        {
            dir.unlink(&n)?;
        }
    }
    Ok(())
}

/// Removes all but the newest `keep` old versions (never `live`) and leftover temporaries.
fn prune(versions: &Dir, live: &str, keep: usize) -> Result<(), DeployError> {
    let mut old = Vec::new();
    for n in versions.names()? {
        if n == live {
            continue;
        }
        if n.as_encoded_bytes().starts_with(TMP_PREFIX.as_bytes()) {
            let _ = versions.remove_tree(&n);
            continue;
        }
        old.push(n);
    }
    // Names start with a UTC timestamp, so the lexical order is the age order.
    old.sort_unstable_by(|a, b| b.cmp(a));
    for n in old.iter().skip(keep) {
        versions.remove_tree(n)?;
    }
    Ok(())
}

/// `<output_dir>/<name>` opened without following links, and the version its `live` link
/// names; `None` when `name` is not a plain name or there is no such directory or link.
pub(crate) fn open_live(
    output_dir: &Path,
    name: &str,
) -> Result<Option<(Dir, String)>, DeployError> {
    if crate::config::domain::safe_name(name).is_err() {
        return Ok(None);
    }
    let Some(root) = Dir::open_root(output_dir)? else {
        return Ok(None);
    };
    let Some(dir) = root.open_quiet(name)? else {
        return Ok(None);
    };
    let version = dir
        .read_link("live")
        .and_then(|t| version_of(&t).map(str::to_string));
    Ok(version.map(|v| (dir, v)))
}

/// The four live files, when `<output_dir>/<name>` has the layout [`install`] makes (the
/// `live` link to one version, each file a link through it); `None` otherwise. Read through
/// `O_NOFOLLOW` fds along the path the links name, so a link swapped elsewhere reads as absent.
fn read_live(output_dir: &Path, name: &str) -> Result<Option<[String; 4]>, DeployError> {
    let Some((dir, version)) = open_live(output_dir, name)? else {
        return Ok(None);
    };
    let version = version.as_str();
    for f in FILES {
        if dir.read_link(f) != Some(Path::new("live").join(f)) {
            return Ok(None);
        }
    }
    let Some(vdir) = dir
        .open_quiet("versions")?
        .map(|v| v.open_quiet(version))
        .transpose()?
        .flatten()
    else {
        return Ok(None);
    };
    read_version(&vdir)
}

/// The four files of the version directory `vdir`, when each is a regular file and the
/// full chain is the certificate and chain as [`install`] writes it; `None` otherwise.
pub(crate) fn read_version(vdir: &Dir) -> Result<Option<[String; 4]>, DeployError> {
    let (Some(cert), Some(chain), Some(full), Some(key)) = (
        vdir.read_text("cert.pem")?,
        vdir.read_text("chain.pem")?,
        vdir.read_text("fullchain.pem")?,
        vdir.read_text("privkey.pem")?,
    ) else {
        return Ok(None);
    };
    if full != format!("{cert}{chain}") {
        return Ok(None);
    }
    Ok(Some([cert, chain, full, key]))
}

/// The live set of `name` as it is on disk, unchecked, when `<output_dir>/<name>` has the
/// layout [`install`] makes; `None` otherwise (for rebuilding a lost record).
pub fn read_live_set(output_dir: &Path, name: &str) -> Result<Option<PemSet>, DeployError> {
    Ok(
        read_live(output_dir, name)?.map(|[cert, chain, _, key]| PemSet {
            cert_pem: cert,
            chain_pem: chain,
            key_pem: Secret::new(key),
        }),
    )
}

/// Reads the live set of `name`, if any, and returns its info when the pair is intact and
/// matches `expected_fingerprint`; `Ok(None)` when missing, altered or mismatched (restore it).
pub fn inspect_live(
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

/// Whether `<output_dir>/<name>` holds exactly `set`, byte for byte, in the layout [`install`]
/// makes. No parsing and no key arithmetic, so the daemon can check thousands of sets at start
/// in well under a second.
pub fn live_is(output_dir: &Path, name: &str, set: &PemSet) -> Result<bool, DeployError> {
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

    fn origin() -> Origin {
        Origin {
            order_id: 1,
            product: "test".into(),
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
        let d = install(tmp.path(), "www", &old, &own(), 3, &origin()).unwrap();
        let live_before = fs::read_link(d.dir.join("live")).unwrap();
        let k2 = crate::keys::generate(KeyKind::EcdsaP256, &["a.example.com".into()])
            .unwrap()
            .0;
        let new = self_signed(&k2);
        for file in FILES {
            FAIL_WRITE.with(|f| f.set(Some(file)));
            let e = install(tmp.path(), "www", &new, &own(), 3, &origin()).unwrap_err();
            FAIL_WRITE.with(|f| f.set(None));
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
}
