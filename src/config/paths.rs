//! Where the config lets the daemon write and read. Pure checks on the paths themselves (no
//! system directory as the output directory), and, when the config is loaded on the machine
//! that will use it, the ownership and modes of every component (`cas_api::fs_trust`).

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::cert::Places;
use super::model::{Certificate, Validation};
use super::walk::Errors;
use cas_api::fs_trust::check_trusted_path;

/// Directories the system or other software owns. The daemon creates, replaces and prunes
/// entries in `<output_dir>/<name>`, so `output_dir` may not be one of these (the name `ssh`
/// would land on `/etc/ssh`), nor may any `<output_dir>/<name>` be one. Listed: the FHS top
/// level, the standard directories of `/usr` and `/var`, and the system TLS stores of Debian
/// (`/etc/ssl`) and RHEL (`/etc/pki`), where a name like `private` or `certs` would replace the
/// system's own. A dedicated directory (the default `/etc/cas-certd/live`) is the intended
/// place; an existing `<name>` directory the daemon did not make is the deploy code's to refuse.
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/usr/bin",
    "/usr/include",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/local",
    "/usr/local/bin",
    "/usr/local/etc",
    "/usr/local/lib",
    "/usr/local/sbin",
    "/usr/local/share",
    "/usr/sbin",
    "/usr/share",
    "/usr/src",
    "/var/backups",
    "/var/cache",
    "/var/lib",
    "/var/local",
    "/var/lock",
    "/var/log",
    "/var/mail",
    "/var/opt",
    "/var/run",
    "/var/spool",
    "/var/tmp",
    "/var/www",
    "/etc/pki",
    "/etc/pki/tls",
    "/etc/ssl",
    "/etc/ssl/certs",
    "/etc/ssl/private",
];

/// Kernel file systems: nothing the daemon writes belongs anywhere inside them.
const KERNEL_FS: &[&str] = &["/proc", "/sys", "/dev"];

const USE_INSTEAD: &str = "use a directory of its own, such as \"/etc/cas-certd/live\"";

fn is_system_dir(p: &Path) -> bool {
    // `Path` equality compares components: "/etc/" and "//etc" are "/etc".
    SYSTEM_DIRS.iter().any(|s| p == Path::new(s))
}

/// `output_dir` is not a system directory nor inside a kernel file system.
pub(super) fn check_output_dir(dir: &Path, span: Range<usize>, errs: &mut Errors) {
    if is_system_dir(dir) {
        errs.push(
            span,
            "output_dir",
            format!(
                "{:?} is a system directory, and the daemon creates, replaces and removes entries in it: {USE_INSTEAD}",
                dir.display().to_string()
            ),
        );
    } else if let Some(k) = KERNEL_FS.iter().find(|k| dir.starts_with(k)) {
        errs.push(
            span,
            "output_dir",
            format!(
                "{:?} is inside {k}, a kernel file system: {USE_INSTEAD}",
                dir.display().to_string()
            ),
        );
    }
}

/// No `<output_dir>/<name>` is a system directory.
pub(super) fn check_cert_dirs(
    output_dir: &Path,
    certs: &[(Certificate, Places)],
    errs: &mut Errors,
) {
    // A name is one path component, so only the system directories right below `output_dir`
    // can be hit: find those once instead of comparing every certificate with the whole list.
    let below: Vec<&str> = SYSTEM_DIRS
        .iter()
        .map(Path::new)
        .filter(|s| s.parent() == Some(output_dir))
        .filter_map(|s| s.file_name()?.to_str())
        .collect();
    if below.is_empty() {
        return;
    }
    for (c, places) in certs {
        if below.contains(&c.name.as_str()) {
            errs.push(
                places.name.clone(),
                &format!("{}.name", places.key),
                format!(
                    "the certificate's directory would be {:?}, a system directory: {USE_INSTEAD} as output_dir",
                    output_dir.join(&c.name).display().to_string()
                ),
            );
        }
    }
}

/// Every component of the output directory, the credentials file and each webroot is owned by
/// one of `uids` and writable by no one else (`fs_trust`). Each distinct path is walked once.
pub(super) fn check_trust(
    output_dir: (&Path, Range<usize>),
    credentials_file: Option<(&Path, Range<usize>)>,
    certs: &[(Certificate, Places)],
    uids: &[u32],
    errs: &mut Errors,
) {
    let mut cache: HashMap<PathBuf, Result<(), String>> = HashMap::new();
    let mut check = |path: &Path, span: Range<usize>, key: &str, errs: &mut Errors| {
        let verdict = cache
            .entry(path.to_path_buf())
            .or_insert_with(|| check_trusted_path(path, uids).map_err(|e| e.to_string()));
        if let Err(e) = verdict {
            errs.push(span, key, e.clone());
        }
    };
    let (dir, span) = output_dir;
    check(dir, span.clone(), "output_dir", errs);
    // A symlink may lead to a system directory that the name alone does not show.
    if let Ok(real) = std::fs::canonicalize(dir) {
        if real != dir {
            check_output_dir(&real, span, errs);
        }
    }
    if let Some((file, span)) = credentials_file {
        check(file, span, "credentials.file", errs);
    }
    for (c, places) in certs {
        if let (Validation::File { webroot }, Some(span)) = (&c.validation, &places.webroot) {
            let key = format!("{}.validation.webroot", places.key);
            check(webroot, span.clone(), &key, errs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_dirs_compare_by_components() {
        for p in [
            "/",
            "/etc",
            "/etc/",
            "//etc",
            "/usr/local/bin",
            "/etc/ssl/private",
        ] {
            assert!(is_system_dir(Path::new(p)), "{p}");
        }
        for p in ["/etc/cas-certd/live", "/srv/certs", "/etc/nginx/certs"] {
            assert!(!is_system_dir(Path::new(p)), "{p}");
        }
    }
}
