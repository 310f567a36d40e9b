//! Deploying real certificates (made with rcgen) into a real directory: layout, modes, the key
//! matching its certificate, the refusals, pruning, and the live set after a restart.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cas_api::secret::Secret;
use cas_certd::config::{FileOwnership, KeyKind};
use cas_certd::deploy::{self, DeployError, PemSet};
use chrono::{Duration, Utc};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A leaf for `domains` signed by a fresh test CA, valid until `days` from now, with our key.
pub(crate) fn make_set(domains: &[&str], key_pem: &Secret, days: i64) -> (String, PemSet) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::from_pem(key_pem.expose()).unwrap();
    let mut p =
        CertificateParams::new(domains.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(days);
    let leaf = p.signed_by(&leaf_key, &issuer).unwrap();
    let chain_text = format!("{}{}", leaf.pem(), ca_cert.pem());
    let (cert_pem, chain_pem) = deploy::split_chain(&chain_text).unwrap();
    (
        chain_text,
        PemSet {
            cert_pem,
            chain_pem,
            key_pem: key_pem.clone(),
        },
    )
}

fn key() -> Secret {
    cas_certd::keys::generate(KeyKind::EcdsaP256, &["a.example.com".into()])
        .unwrap()
        .0
}

fn own(group: Option<&str>) -> FileOwnership {
    FileOwnership {
        owner: None,
        group: group.map(str::to_string),
        cert_mode: 0o644,
        key_mode: if group.is_some() { 0o640 } else { 0o600 },
    }
}

/// Where a test set came from (the manifest records it).
fn origin() -> deploy::Origin {
    deploy::Origin {
        order_id: 42,
        product: "test-product".into(),
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn domains(d: &[&str]) -> Vec<String> {
    d.iter().map(|s| s.to_string()).collect()
}

#[test]
fn split_chain_separates_leaf_and_intermediates() {
    let (text, set) = make_set(&["a.example.com"], &key(), 30);
    assert_eq!(set.cert_pem.matches("BEGIN CERTIFICATE").count(), 1);
    assert_eq!(set.chain_pem.matches("BEGIN CERTIFICATE").count(), 1);
    assert!(text.starts_with(&set.cert_pem[..40]));
    assert!(deploy::split_chain("").is_err());
    assert!(
        deploy::split_chain("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .is_err()
    );
}

#[test]
fn check_refuses_wrong_names_wrong_key_and_expired() {
    let k = key();
    let (_, set) = make_set(&["a.example.com", "www.example.com"], &k, 30);
    let now = Utc::now();
    // Order and case do not matter.
    let info = deploy::check(&set, &domains(&["WWW.example.com", "a.example.com"]), now).unwrap();
    assert_eq!(info.names, ["a.example.com", "www.example.com"]);
    assert_eq!(info.fingerprint_sha256.len(), 64);
    assert!(matches!(
        deploy::check(&set, &domains(&["a.example.com"]), now),
        Err(DeployError::WrongNames { .. })
    ));
    let other = PemSet {
        key_pem: key(),
        ..set.clone()
    };
    assert!(matches!(
        deploy::check(&other, &domains(&["a.example.com", "www.example.com"]), now),
        Err(DeployError::KeyMismatch)
    ));
    assert!(matches!(
        deploy::check(
            &set,
            &domains(&["a.example.com", "www.example.com"]),
            now + Duration::days(31)
        ),
        Err(DeployError::Expired(_))
    ));
    let broken = PemSet {
        chain_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
        ..set.clone()
    };
    assert!(deploy::check(
        &broken,
        &domains(&["a.example.com", "www.example.com"]),
        now
    )
    .is_err());
    // A bad key is refused without echoing it.
    let bad = PemSet {
        key_pem: Secret::new(
            "-----BEGIN PRIVATE KEY-----\nSECRETSTUFF\n-----END PRIVATE KEY-----\n",
        ),
        ..set
    };
    let e = deploy::check(&bad, &domains(&["a.example.com", "www.example.com"]), now).unwrap_err();
    assert!(!e.to_string().contains("SECRETSTUFF"));
}

#[test]
#[allow(unsafe_code)]
fn install_layout_modes_and_key_matches_under_umask_000() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("live");
    let k = key();
    let (_, set) = make_set(&["a.example.com"], &k, 30);
    // SAFETY: umask only changes this process's default file mode; restored right after.
    let old = unsafe { libc::umask(0) };
    let r = deploy::install(&out, "www", &set, &own(None), 3, &origin());
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let d = r.unwrap();
    assert_eq!(d.dir, out.join("www"));
    assert_eq!(d.key, out.join("www/privkey.pem"));
    assert_eq!(mode(&d.key), 0o600);
    assert_eq!(mode(&d.cert), 0o644);
    assert_eq!(mode(&d.fullchain), 0o644);
    assert_eq!(mode(&d.chain), 0o644);
    assert_eq!(mode(&out.join("www")), 0o755);
    let live = std::fs::read_link(out.join("www/live")).unwrap();
    assert!(live.starts_with("versions"), "{live:?}");
    assert_eq!(
        std::fs::read_link(&d.key).unwrap(),
        Path::new("live/privkey.pem")
    );
    // Reading through the stable paths gives a matching pair.
    let read = PemSet {
        cert_pem: std::fs::read_to_string(&d.cert).unwrap(),
        chain_pem: std::fs::read_to_string(&d.chain).unwrap(),
        key_pem: Secret::new(std::fs::read_to_string(&d.key).unwrap()),
    };
    assert_eq!(read, set);
    assert_eq!(
        std::fs::read_to_string(&d.fullchain).unwrap(),
        format!("{}{}", set.cert_pem, set.chain_pem)
    );
    deploy::check(&read, &domains(&["a.example.com"]), Utc::now()).unwrap();
    // No temporary left behind.
    for e in walk(&out) {
        assert!(!e.contains(".tmp-"), "{e}");
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        out.push(e.path().display().to_string());
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

#[test]
fn group_makes_key_0640_with_that_group() {
    let tmp = tempfile::tempdir().unwrap();
    let k = key();
    let (_, set) = make_set(&["a.example.com"], &k, 30);
    let gid = own_gid();
    let d = deploy::install(
        tmp.path(),
        "g",
        &set,
        &own(Some(&gid.to_string())),
        3,
        &origin(),
    )
    .unwrap();
    assert_eq!(mode(&d.key), 0o640);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&d.key).unwrap().gid(), gid);
    // An unknown group name is refused before anything is written.
    let e = deploy::install(
        tmp.path(),
        "h",
        &set,
        &own(Some("no-such-group-xyz")),
        3,
        &origin(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("no-such-group-xyz"), "{e}");
    assert!(!tmp.path().join("h").exists());
}

/// The gid of this process (a group we may certainly chown to).
fn own_gid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().metadata().unwrap().gid()
}

#[test]
fn redeploy_swaps_the_set_and_prunes_old_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fps = Vec::new();
    for _ in 0..6 {
        let k = key();
        let (_, set) = make_set(&["a.example.com"], &k, 30);
        let d = deploy::install(tmp.path(), "www", &set, &own(None), 2, &origin()).unwrap();
        assert_eq!(std::fs::read_to_string(&d.cert).unwrap(), set.cert_pem);
        fps.push(d.info.fingerprint_sha256);
    }
    let versions: Vec<_> = std::fs::read_dir(tmp.path().join("www/versions"))
        .unwrap()
        .collect();
    assert_eq!(versions.len(), 3, "live + 2 old");
    let last = fps.last().unwrap();
    let info = deploy::inspect_live(tmp.path(), "www", last)
        .unwrap()
        .unwrap();
    assert_eq!(&info.fingerprint_sha256, last);
    // Not the expected certificate → restore needed.
    assert_eq!(
        deploy::inspect_live(tmp.path(), "www", &fps[0]).unwrap(),
        None
    );
}

#[test]
fn inspect_live_detects_missing_and_altered_sets() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(
        deploy::inspect_live(tmp.path(), "none", "00").unwrap(),
        None
    );
    let k = key();
    let (_, set) = make_set(&["a.example.com"], &k, 30);
    let d = deploy::install(tmp.path(), "www", &set, &own(None), 3, &origin()).unwrap();
    let fp = d.info.fingerprint_sha256.clone();
    assert!(deploy::inspect_live(tmp.path(), "www", &fp)
        .unwrap()
        .is_some());
    // Someone replaces the key in the live version.
    let real_key = std::fs::canonicalize(&d.key).unwrap();
    std::fs::remove_file(&real_key).unwrap();
    std::fs::write(&real_key, key().expose()).unwrap();
    assert_eq!(deploy::inspect_live(tmp.path(), "www", &fp).unwrap(), None);
    // Re-install restores it.
    deploy::install(tmp.path(), "www", &set, &own(None), 3, &origin()).unwrap();
    assert!(deploy::inspect_live(tmp.path(), "www", &fp)
        .unwrap()
        .is_some());
    // A stable path replaced by a plain file is noticed too, and repaired by install.
    std::fs::remove_file(&d.cert).unwrap();
    std::fs::write(&d.cert, &set.cert_pem).unwrap();
    assert_eq!(deploy::inspect_live(tmp.path(), "www", &fp).unwrap(), None);
    deploy::install(tmp.path(), "www", &set, &own(None), 3, &origin()).unwrap();
    assert!(deploy::inspect_live(tmp.path(), "www", &fp)
        .unwrap()
        .is_some());
}

#[test]
fn install_refuses_a_mismatching_key_and_unsafe_names() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, set) = make_set(&["a.example.com"], &key(), 30);
    let wrong = PemSet {
        key_pem: key(),
        ..set.clone()
    };
    assert!(matches!(
        deploy::install(tmp.path(), "www", &wrong, &own(None), 3, &origin()),
        Err(DeployError::KeyMismatch)
    ));
    assert!(!tmp.path().join("www").exists());
    for bad in ["..", "../x", ".hidden", "a/b", ""] {
        assert!(
            deploy::install(tmp.path(), bad, &set, &own(None), 3, &origin()).is_err(),
            "{bad}"
        );
    }
    assert!(std::fs::read_dir(tmp.path()).unwrap().next().is_none());
}

#[tokio::test]
async fn reload_hook_sees_the_deployed_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, set) = make_set(&["a.example.com", "b.example.com"], &key(), 30);
    let d = deploy::install(tmp.path(), "www", &set, &own(None), 3, &origin()).unwrap();
    let env = cas_certd::hook::reload_env(
        tmp.path(),
        "www",
        &domains(&["a.example.com", "b.example.com"]),
    );
    let hook = cas_certd::config::Hook {
        argv: vec![
            "sh".into(),
            "-c".into(),
            "cat \"$CERT_PATH\" \"$CHAIN_PATH\" | cmp - \"$FULLCHAIN_PATH\" && grep -q 'PRIVATE KEY' \"$KEY_PATH\" && echo \"$CERT_NAME|$CERT_DOMAINS\"".into(),
        ],
        timeout: std::time::Duration::from_secs(10),
        pass_env: vec![],
    };
    let out = cas_certd::hook::run(&hook, &env).await.unwrap();
    assert_eq!(out.output, "www|a.example.com b.example.com\n");
    assert!(env
        .iter()
        .any(|(k, v)| k == "KEY_PATH" && v.ends_with("www/privkey.pem")));
    // The builder's paths are the ones deploy installed.
    for (name, path) in [
        ("CERT_PATH", &d.cert),
        ("CHAIN_PATH", &d.chain),
        ("FULLCHAIN_PATH", &d.fullchain),
        ("KEY_PATH", &d.key),
    ] {
        assert!(
            env.iter().any(|(k, v)| k == name && Path::new(v) == path),
            "{name}: {env:?}"
        );
    }
}

/// Every path under `root` with its kind, mode and contents (or link target).
fn tree(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in walk(root) {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let what = if md.file_type().is_symlink() {
            format!("link {:?}", std::fs::read_link(&p).unwrap())
        } else if md.is_dir() {
            format!("dir {:o}", md.permissions().mode())
        } else {
            format!(
                "file {:o} {}",
                md.permissions().mode(),
                std::fs::read_to_string(&p).unwrap()
            )
        };
        out.push((p, what));
    }
    out.sort();
    out
}

#[test]
fn install_writes_a_manifest_beside_the_set() {
    let tmp = tempfile::tempdir().unwrap();
    let k = key();
    let (_, set) = make_set(&["a.example.com"], &k, 30);
    let d = deploy::install(tmp.path(), "www", &set, &own(None), 3, &origin()).unwrap();
    let path = d.dir.join("live/manifest.json");
    assert_eq!(mode(&path), 0o644);
    let m: deploy::Manifest =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(m.order_id, 42);
    assert_eq!(m.product, "test-product");
    assert_eq!(m.domains, ["a.example.com"]);
    assert_eq!(m.not_after, d.info.not_after);
    assert_eq!(m.cert_sha256, d.info.fingerprint_sha256);
    // The key's fingerprint is the SHA-256 of its public key (SPKI DER), as openssl prints it.
    let spki = tmp.path().join("spki.der");
    let out = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&d.key)
        .arg("-out")
        .arg(&spki)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    use sha2::Digest;
    let want = hex::encode(sha2::Sha256::digest(std::fs::read(&spki).unwrap()));
    assert_eq!(m.key_sha256, want);
    // Nothing secret in it.
    assert!(!std::fs::read_to_string(&path)
        .unwrap()
        .contains("PRIVATE KEY"));
}

/// An operator's own directory at `<output_dir>/<name>` (issue 18, item 6): refused by the
/// preflight and by install, and nothing in it changes.
#[test]
fn a_directory_we_did_not_make_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("www");
    std::fs::create_dir_all(dir.join("versions/foo")).unwrap();
    std::fs::write(dir.join("privkey.pem"), "operator's key\n").unwrap();
    std::fs::write(dir.join("versions/foo/cert.pem"), "operator's cert\n").unwrap();
    let before = tree(tmp.path());
    let e = deploy::preflight(tmp.path(), "www").unwrap_err();
    assert!(matches!(e, DeployError::NotOurs { .. }), "{e}");
    assert!(e.to_string().contains("not made by cas-certd"), "{e}");
    let (_, set) = make_set(&["a.example.com"], &key(), 30);
    let e = deploy::install(tmp.path(), "www", &set, &own(None), 0, &origin()).unwrap_err();
    assert!(matches!(e, DeployError::NotOurs { .. }), "{e}");
    assert_eq!(tree(tmp.path()), before);
    // A symlink at <name> is refused too, not followed.
    std::os::unix::fs::symlink(&dir, tmp.path().join("link")).unwrap();
    let e = deploy::preflight(tmp.path(), "link").unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert!(deploy::install(tmp.path(), "link", &set, &own(None), 0, &origin()).is_err());
    // An empty directory (made by the operator for us) is fine.
    std::fs::create_dir(tmp.path().join("empty")).unwrap();
    deploy::preflight(tmp.path(), "empty").unwrap();
    deploy::install(tmp.path(), "empty", &set, &own(None), 0, &origin()).unwrap();
    assert!(deploy::live_is(tmp.path(), "empty", &set).unwrap());
}

/// The upgrade path: a directory an earlier cas-certd made (no manifest yet) stays ours.
#[test]
fn a_directory_made_before_manifests_is_still_ours() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("www");
    let old_version = "20250101T000000Z-0123456789abcdef";
    let vdir = dir.join("versions").join(old_version);
    std::fs::create_dir_all(&vdir).unwrap();
    let (_, old) = make_set(&["a.example.com"], &key(), 30);
    let files = [
        ("cert.pem", old.cert_pem.clone()),
        ("chain.pem", old.chain_pem.clone()),
        (
            "fullchain.pem",
            format!("{}{}", old.cert_pem, old.chain_pem),
        ),
        ("privkey.pem", old.key_pem.expose().to_string()),
    ];
    for (f, text) in &files {
        std::fs::write(vdir.join(f), text).unwrap();
        std::os::unix::fs::symlink(Path::new("live").join(f), dir.join(f)).unwrap();
    }
    std::os::unix::fs::symlink(Path::new("versions").join(old_version), dir.join("live")).unwrap();
    deploy::preflight(tmp.path(), "www").unwrap();
    assert!(deploy::live_is(tmp.path(), "www", &old).unwrap());

    let (_, new) = make_set(&["a.example.com"], &key(), 30);
    let d = deploy::install(tmp.path(), "www", &new, &own(None), 3, &origin()).unwrap();
    assert!(deploy::live_is(tmp.path(), "www", &new).unwrap());
    assert!(d.dir.join("live/manifest.json").exists());
    // The old version is kept as one of the `keep_versions`.
    assert_eq!(
        std::fs::read_to_string(vdir.join("privkey.pem")).unwrap(),
        old.key_pem.expose()
    );

    // An earlier first install cut short before `live`: a complete version, nothing else.
    let cut = tmp.path().join("cut/versions").join(old_version);
    std::fs::create_dir_all(&cut).unwrap();
    for (f, text) in &files {
        std::fs::write(cut.join(f), text).unwrap();
    }
    deploy::preflight(tmp.path(), "cut").unwrap();
    // The same shape with a name or files we never make is not ours.
    let odd = tmp.path().join("odd/versions/foo");
    std::fs::create_dir_all(&odd).unwrap();
    for (f, text) in &files {
        std::fs::write(odd.join(f), text).unwrap();
    }
    assert!(deploy::preflight(tmp.path(), "odd").is_err());
    std::fs::write(cut.join("notes.txt"), "mine").unwrap();
    assert!(deploy::preflight(tmp.path(), "cut").is_err());
}

/// sshd's StrictModes rule: `<name>` or `versions` writable by others, or owned by another
/// user, is refused (issue 18, item 3); group read and search is fine.
#[test]
fn directories_others_can_write_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, set) = make_set(&["a.example.com"], &key(), 30);
    let d = deploy::install(tmp.path(), "www", &set, &own(None), 3, &origin()).unwrap();
    let set_mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    let versions = d.dir.join("versions");
    for (path, m) in [(&d.dir, 0o775), (&d.dir, 0o757), (&versions, 0o777)] {
        set_mode(path, m);
        let e = deploy::preflight(tmp.path(), "www").unwrap_err();
        assert!(matches!(e, DeployError::Untrusted { .. }), "{e}");
        assert!(
            e.to_string().contains("writable by its group or others"),
            "{e}"
        );
        let e = deploy::install(tmp.path(), "www", &set, &own(None), 3, &origin()).unwrap_err();
        assert!(matches!(e, DeployError::Untrusted { .. }), "{e}");
        set_mode(path, 0o755);
    }
    // Group read and search (nginx's need) is fine.
    set_mode(&d.dir, 0o750);
    deploy::preflight(tmp.path(), "www").unwrap();
    deploy::install(tmp.path(), "www", &set, &own(None), 3, &origin()).unwrap();
    // Owned by another user: refused, unless we are that user (only root can make the case).
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(&versions, Some(65534), None).unwrap();
        let e = deploy::preflight(tmp.path(), "www").unwrap_err();
        assert!(e.to_string().contains("owned by uid 65534"), "{e}");
    }
}

/// Prune walks with fds and never follows a link: an old "version" that is a symlink, or a
/// link inside an old version, is removed as a link; what it points at survives.
#[test]
fn prune_removes_links_never_their_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    std::fs::write(outside.join("sub/keep.txt"), "keep").unwrap();
    let out = tmp.path().join("out");
    let (_, set) = make_set(&["a.example.com"], &key(), 30);
    let d = deploy::install(&out, "www", &set, &own(None), 0, &origin()).unwrap();
    let versions = d.dir.join("versions");
    std::os::unix::fs::symlink(&outside, versions.join("20000101T000000Z-link")).unwrap();
    std::fs::create_dir(versions.join("20000102T000000Z-dir")).unwrap();
    std::os::unix::fs::symlink(&outside, versions.join("20000102T000000Z-dir/inner")).unwrap();
    let before = tree(&outside);
    let (_, set2) = make_set(&["a.example.com"], &key(), 30);
    deploy::install(&out, "www", &set2, &own(None), 0, &origin()).unwrap();
    assert_eq!(tree(&outside), before);
    assert_eq!(
        std::fs::read_dir(&versions).unwrap().count(),
        1,
        "only live"
    );
}

/// The live set's manifest is readable for a rebuild of a lost store (issue 13), and only when
/// it can be trusted: a symlinked or group-writable manifest reads as none.
#[test]
fn live_manifest_is_read_only_when_trustworthy() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(deploy::live_manifest(tmp.path(), "www").unwrap(), None);
    let (_, set) = make_set(&["a.example.com"], &key(), 30);
    let d = deploy::install(tmp.path(), "www", &set, &own(None), 3, &origin()).unwrap();
    let m = deploy::live_manifest(tmp.path(), "www").unwrap().unwrap();
    assert_eq!(m.order_id, 42);
    assert_eq!(m.cert_sha256, d.info.fingerprint_sha256);
    let path = std::fs::canonicalize(d.dir.join("live/manifest.json")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(deploy::live_manifest(tmp.path(), "www").unwrap(), None);
    std::fs::remove_file(&path).unwrap();
    let elsewhere = tmp.path().join("elsewhere.json");
    std::fs::write(&elsewhere, serde_json::to_string(&m).unwrap()).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    assert_eq!(deploy::live_manifest(tmp.path(), "www").unwrap(), None);
}
