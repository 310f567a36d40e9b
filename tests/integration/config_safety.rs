//! Configurations that point the daemon at unsafe places (issue 18 item 6), each refused by the
//! real `cas-certd check --offline` with the path, the reason and the fix, all errors at once:
//! a system directory as the output directory, modes that give others write, a FIFO or a
//! world-writable file as the config, files and directories owned by another user.
//!
//! The tests run as root here; "owned by another user" is made with `chown 65534` (nobody).
//! Run as another user they print why and skip those cases (only root can give files away).
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::bin;

/// Not root or the test's user: the uid of `nobody`.
const OTHER_UID: u32 = 65534;

const CONTACT: &str =
    "[defaults]\ncontact = { name = \"Ops\", phone = \"1\", email = \"o@x.com\" }\n";

/// `cas-certd check --offline -c CONFIG`; a run longer than 20 s is a hang and fails the test.
pub(crate) fn check_offline(config: &Path) -> Output {
    check_offline_as(config, None)
}

/// [`check_offline`] with `CAS_CERTD_USER` naming the service account (`None`: unset).
fn check_offline_as(config: &Path, service_user: Option<&str>) -> Output {
    let mut cmd = Command::new(bin());
    cmd.env_remove("CAS_CERTD_USER");
    if let Some(u) = service_user {
        cmd.env("CAS_CERTD_USER", u);
    }
    let mut child = cmd
        .args(["check", "--offline", "-c"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "check --offline {} hung for 20 s: {out:?}",
                config.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn is_root() -> bool {
    // The owner of a file we just made is our effective uid.
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(dir.path()).unwrap().uid() == 0
}

/// A temp dir with `out/` and `www/`, and a config writer whose paths default into it.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        for d in ["out", "www", "state"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        Site { dir }
    }

    fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }

    /// One FILE certificate named `name` with `extra` lines; `root` lines go before it.
    fn config(&self, root: &str, name: &str, extra: &str) -> PathBuf {
        let root = if root.contains("output_dir") {
            root.to_string()
        } else {
            format!("output_dir = \"{}\"\n{root}", self.p("out").display())
        };
        let text = format!(
            "state_dir = \"{}\"\n{root}{CONTACT}[[certificate]]\nname = \"{name}\"\ndomains = [\"www.example.com\"]\nvalidation = {{ method = \"file\", webroot = \"{}\" }}\n{extra}",
            self.p("state").display(),
            self.p("www").display()
        );
        let path = self.p("config.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path
    }
}

/// Exit 3 and a line `CONFIG:LINE:COL: KEY: ...` whose text holds every fragment.
fn assert_refused(out: &Output, config: &Path, key: &str, fragments: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(3), "not refused: {out:?}");
    let prefix = format!("{}:", config.display());
    let hit = err
        .lines()
        .find(|l| l.starts_with(&prefix) && l.contains(&format!(": {key}: ")))
        .unwrap_or_else(|| panic!("no error for {key} in:\n{err}"));
    for f in fragments {
        assert!(hit.contains(f), "{hit:?} lacks {f:?}");
    }
}

#[test]
fn a_plain_config_in_a_private_temp_dir_passes() {
    // The baseline for every refusal below: the same config, unchanged, is fine.
    let s = Site::new();
    let cfg = s.config("", "www", "");
    let out = check_offline(&cfg);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn output_dir_root_with_name_etc_is_refused() {
    let s = Site::new();
    let cfg = s.config("output_dir = \"/\"\n", "etc", "");
    let out = check_offline(&cfg);
    assert_refused(&out, &cfg, "output_dir", &["\"/\"", "system directory"]);
    assert_refused(
        &out,
        &cfg,
        "certificate[0].name",
        &["/etc", "system directory"],
    );
}

#[test]
fn output_dir_etc_with_name_ssh_is_refused() {
    let s = Site::new();
    let cfg = s.config("output_dir = \"/etc\"\n", "ssh", "");
    let out = check_offline(&cfg);
    assert_refused(&out, &cfg, "output_dir", &["\"/etc\"", "system directory"]);
    // A dedicated directory below /etc is the intended use.
    let cfg = s.config("output_dir = \"/etc/cas-certd/live\"\n", "ssh", "");
    let out = check_offline(&cfg);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn output_dir_inside_proc_or_with_dot_dot_is_refused() {
    let s = Site::new();
    let cfg = s.config("output_dir = \"/proc/self/cwd\"\n", "www", "");
    assert_refused(&check_offline(&cfg), &cfg, "output_dir", &["/proc"]);
    let cfg = s.config("output_dir = \"/etc/cas-certd/../ssh\"\n", "www", "");
    assert_refused(&check_offline(&cfg), &cfg, "output_dir", &["'..'"]);
}

#[test]
fn modes_giving_others_write_are_refused() {
    let s = Site::new();
    let cfg = s.config("", "www", "cert_mode = \"0666\"\n");
    assert_refused(
        &check_offline(&cfg),
        &cfg,
        "certificate[0].cert_mode",
        &["writable by others", "0644"],
    );
    let cfg = s.config("", "www", "key_mode = \"0604\"\n");
    assert_refused(
        &check_offline(&cfg),
        &cfg,
        "certificate[0].key_mode",
        &["readable or writable by others"],
    );
}

#[test]
fn a_fifo_as_config_is_refused_at_once() {
    let s = Site::new();
    let fifo = s.p("fifo.toml");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    let start = Instant::now();
    let out = check_offline(&fifo);
    let took = start.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        err.contains(&fifo.display().to_string()) && err.contains("not a regular file"),
        "{err}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn a_world_writable_config_is_refused() {
    let s = Site::new();
    let cfg = s.config("", "www", "");
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = check_offline(&cfg);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        err.contains(&cfg.display().to_string())
            && err.contains("writable by group and others")
            && err.contains("chmod go-w"),
        "{err}"
    );
}

#[test]
fn files_and_directories_owned_by_another_user_are_refused() {
    if !is_root() {
        eprintln!("skipped: only root can chown a file to uid {OTHER_UID}");
        return;
    }
    let s = Site::new();
    // The config itself, world-writable and owned by nobody (it controls the hooks).
    let cfg = s.config("", "www", "");
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::os::unix::fs::chown(&cfg, Some(OTHER_UID), None).unwrap();
    let err = stderr(&check_offline(&cfg));
    assert!(err.contains(&format!("owned by uid {OTHER_UID}")), "{err}");
    // Only owned by nobody, mode 0644: still refused.
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check_offline(&cfg);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(stderr(&out).contains(&format!("owned by uid {OTHER_UID}")));

    // A credentials file 0600 owned by nobody, and a webroot behind nobody's symlink: both
    // reported in one run, each at its key.
    let s = Site::new();
    let creds = s.p("creds");
    std::fs::write(
        &creds,
        "[default]\naccess_key_id = x\naccess_key_secret = y\n",
    )
    .unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&creds, Some(OTHER_UID), None).unwrap();
    std::fs::create_dir_all(s.p("real/www")).unwrap();
    std::os::unix::fs::symlink(s.p("real"), s.p("link")).unwrap();
    std::os::unix::fs::lchown(s.p("link"), Some(OTHER_UID), None).unwrap();
    let cfg = s.config(
        &format!("[credentials]\nfile = \"{}\"\n", creds.display()),
        "www",
        "",
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &s.p("www").display().to_string(),
        &s.p("link/www").display().to_string(),
    );
    std::fs::write(&cfg, text).unwrap();
    let out = check_offline(&cfg);
    assert_refused(
        &out,
        &cfg,
        "credentials.file",
        &[&creds.display().to_string(), "owned by uid 65534", "chown"],
    );
    assert_refused(
        &out,
        &cfg,
        "certificate[0].validation.webroot",
        &[&s.p("link").display().to_string(), "owned by uid 65534"],
    );

    // Owned by root, the link passes the ownership rule (the preflight of FILE validation still
    // refuses any link above a webroot: it names the real path as the fix).
    std::os::unix::fs::lchown(s.p("link"), Some(0), None).unwrap();
    std::os::unix::fs::chown(&creds, Some(0), None).unwrap();
    let err = stderr(&check_offline(&cfg));
    assert!(!err.contains("owned by uid"), "{err}");
    // With the real path and the file back to root, the same config passes.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &s.p("link/www").display().to_string(),
        &s.p("real/www").display().to_string(),
    );
    std::fs::write(&cfg, text).unwrap();
    let out = check_offline(&cfg);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_group_writable_output_dir_is_refused_and_all_errors_come_at_once() {
    let s = Site::new();
    std::fs::set_permissions(s.p("out"), std::fs::Permissions::from_mode(0o775)).unwrap();
    let cfg = s.config("", "www", "cert_mode = \"0646\"\n");
    let out = check_offline(&cfg);
    assert_refused(
        &out,
        &cfg,
        "output_dir",
        &[
            &s.p("out").display().to_string(),
            "writable by group",
            "chmod g-w",
        ],
    );
    assert_refused(
        &out,
        &cfg,
        "certificate[0].cert_mode",
        &["writable by others"],
    );
}

#[test]
fn check_as_root_trusts_what_the_service_account_owns() {
    // README gives output_dir and the challenge directory to the service account, then has
    // root run `check`: root must judge them as the daemon (running as that account) will.
    if !is_root() {
        eprintln!("skipped: only root can give directories to another user");
        return;
    }
    let s = Site::new();
    for d in ["out", "www"] {
        std::os::unix::fs::chown(s.p(d), Some(OTHER_UID), None).unwrap();
    }
    let cfg = s.config("", "www", "");
    let out = check_offline_as(&cfg, Some("nobody"));
    assert!(out.status.success(), "{out:?}");
    // Another account's directories are still refused.
    let out = check_offline_as(&cfg, Some("root"));
    assert_refused(&out, &cfg, "output_dir", &["owned by uid 65534"]);
}
