//! Deploying real certificates (made with rcgen) into a real directory: layout, modes, the key
//! matching its certificate, the refusals, pruning, and the live set after a restart.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cas_certd::config::{FileOwnership, KeyKind};
use cas_certd::deploy::{self, DeployError, PemSet};
use cas_certd::secret::Secret;
use chrono::{Duration, Utc};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A leaf for `domains` signed by a fresh test CA, valid until `days` from now, with our key.
fn make_set(domains: &[&str], key_pem: &Secret, days: i64) -> (String, PemSet) {
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
    let r = deploy::install(&out, "www", &set, &own(None), 3);
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
    let d = deploy::install(tmp.path(), "g", &set, &own(Some(&gid.to_string())), 3).unwrap();
    assert_eq!(mode(&d.key), 0o640);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&d.key).unwrap().gid(), gid);
    // An unknown group name is refused before anything is written.
    let e = deploy::install(tmp.path(), "h", &set, &own(Some("no-such-group-xyz")), 3).unwrap_err();
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
        let d = deploy::install(tmp.path(), "www", &set, &own(None), 2).unwrap();
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
    let d = deploy::install(tmp.path(), "www", &set, &own(None), 3).unwrap();
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
    deploy::install(tmp.path(), "www", &set, &own(None), 3).unwrap();
    assert!(deploy::inspect_live(tmp.path(), "www", &fp)
        .unwrap()
        .is_some());
    // A stable path replaced by a plain file is noticed too, and repaired by install.
    std::fs::remove_file(&d.cert).unwrap();
    std::fs::write(&d.cert, &set.cert_pem).unwrap();
    assert_eq!(deploy::inspect_live(tmp.path(), "www", &fp).unwrap(), None);
    deploy::install(tmp.path(), "www", &set, &own(None), 3).unwrap();
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
        deploy::install(tmp.path(), "www", &wrong, &own(None), 3),
        Err(DeployError::KeyMismatch)
    ));
    assert!(!tmp.path().join("www").exists());
    for bad in ["..", "../x", ".hidden", "a/b", ""] {
        assert!(
            deploy::install(tmp.path(), bad, &set, &own(None), 3).is_err(),
            "{bad}"
        );
    }
    assert!(std::fs::read_dir(tmp.path()).unwrap().next().is_none());
}

#[tokio::test]
async fn reload_hook_sees_the_deployed_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, set) = make_set(&["a.example.com", "b.example.com"], &key(), 30);
    let d = deploy::install(tmp.path(), "www", &set, &own(None), 3).unwrap();
    let env = cas_certd::hook::reload_env("www", &domains(&["a.example.com", "b.example.com"]), &d);
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
}
