//! The adoption rules over real files: sets installed by `deploy::install` in a temp dir,
//! then changed the way a damaged or hostile host would change them.
#![allow(clippy::unwrap_used)]
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use chrono::Utc;

use super::adopt::{judge, Verdict};
use crate::config::{Certificate, FileOwnership, KeyKind, RenewBefore, Validation};
use crate::deploy::{self, Origin, PemSet};
use crate::lifecycle::schedule;
use crate::store::Phase;
use cas_api::model::Contact;

const FREE: &str = "digicert-free-1-free";

fn cert(domains: &[&str], key: KeyKind, product: &str) -> Certificate {
    Certificate {
        name: "www".into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        validation: Validation::File {
            webroot: "/srv/www".into(),
        },
        product_code: product.into(),
        key,
        renew_before: RenewBefore::Fraction(1.0 / 3.0),
        contact: Contact::default(),
        reload: None,
        files: FileOwnership {
            owner: None,
            group: None,
            cert_mode: 0o644,
            key_mode: 0o600,
        },
        keep_versions: 2,
        self_check: Default::default(),
    }
}

/// Installs a self-signed set for `domains`, valid for a year from an hour ago.
fn install(out: &Path, domains: &[&str], product: &str) {
    let names: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
    let key = crate::keys::generate(KeyKind::EcdsaP256, &names).unwrap().0;
    let kp = rcgen::KeyPair::from_pem(key.expose()).unwrap();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365);
    let c = params.self_signed(&kp).unwrap();
    let set = PemSet {
        cert_pem: c.pem(),
        chain_pem: String::new(),
        key_pem: key,
    };
    let origin = Origin {
        order_id: 77,
        product: product.into(),
    };
    let own = cert(domains, KeyKind::EcdsaP256, product).files;
    deploy::install(out, "www", &set, &own, 2, &origin).unwrap();
}

fn manifest_path(out: &Path) -> std::path::PathBuf {
    std::fs::canonicalize(out.join("www/live"))
        .unwrap()
        .join("manifest.json")
}

fn refused(v: Verdict) -> String {
    match v {
        Verdict::Refused(why) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_valid_matching_set_is_adopted_as_deployed_with_the_usual_renewal_time() {
    let d = tempfile::tempdir().unwrap();
    install(d.path(), &["a.example.com"], FREE);
    let c = cert(&["a.example.com"], KeyKind::EcdsaP256, FREE);
    let Verdict::Adopt { record, manifest } = judge(&c, d.path(), Utc::now(), 0.25) else {
        panic!("not adopted");
    };
    assert!(manifest);
    let dep = record.deployed.as_ref().unwrap();
    assert_eq!(dep.order_id.0, 77);
    assert!(matches!(record.phase, Phase::Deployed { order_id, .. } if order_id.0 == 77));
    let want = schedule::renew_at(
        dep.info.not_before,
        dep.info.not_after,
        c.renew_before,
        0.25,
    );
    assert_eq!(record.next_due, want.at);
    assert!(!record.hook_pending, "adoption runs no hook");
    assert!(!record.force_renew);
}

#[test]
fn other_domains_an_expired_set_another_key_type_or_product_are_not_adopted() {
    let d = tempfile::tempdir().unwrap();
    install(d.path(), &["a.example.com"], FREE);
    let other = cert(&["b.example.com"], KeyKind::EcdsaP256, FREE);
    assert!(refused(judge(&other, d.path(), Utc::now(), 0.0)).contains("b.example.com"));
    let c = cert(&["a.example.com"], KeyKind::EcdsaP256, FREE);
    let later = Utc::now() + chrono::TimeDelta::days(400);
    assert!(refused(judge(&c, d.path(), later, 0.0)).contains("expired"));
    let rsa = cert(&["a.example.com"], KeyKind::Rsa2048, FREE);
    assert!(refused(judge(&rsa, d.path(), Utc::now(), 0.0)).contains("rsa"));
    let p384 = cert(&["a.example.com"], KeyKind::EcdsaP384, FREE);
    assert!(refused(judge(&p384, d.path(), Utc::now(), 0.0)).contains("384"));
    let paid = cert(&["a.example.com"], KeyKind::EcdsaP256, "digicert-ov-1-year");
    assert!(refused(judge(&paid, d.path(), Utc::now(), 0.0)).contains("product"));
    // CAS makes the key: any key type it chose is fine.
    let cas = cert(&["a.example.com"], KeyKind::Cas, FREE);
    assert!(matches!(
        judge(&cas, d.path(), Utc::now(), 0.0),
        Verdict::Adopt { .. }
    ));
}

#[test]
fn a_world_writable_or_symlinked_manifest_is_refused() {
    let d = tempfile::tempdir().unwrap();
    install(d.path(), &["a.example.com"], FREE);
    let c = cert(&["a.example.com"], KeyKind::EcdsaP256, FREE);
    let m = manifest_path(d.path());
    std::fs::set_permissions(&m, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert!(refused(judge(&c, d.path(), Utc::now(), 0.0)).contains("manifest"));
    let copy = d.path().join("elsewhere.json");
    std::fs::copy(&m, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::remove_file(&m).unwrap();
    std::os::unix::fs::symlink(&copy, &m).unwrap();
    assert!(refused(judge(&c, d.path(), Utc::now(), 0.0)).contains("manifest"));
}

#[test]
fn without_a_manifest_a_free_set_is_adopted_and_a_paid_one_is_not() {
    let d = tempfile::tempdir().unwrap();
    install(d.path(), &["a.example.com"], FREE);
    std::fs::remove_file(manifest_path(d.path())).unwrap();
    let c = cert(&["a.example.com"], KeyKind::EcdsaP256, FREE);
    let Verdict::Adopt { manifest, .. } = judge(&c, d.path(), Utc::now(), 0.0) else {
        panic!("not adopted");
    };
    assert!(!manifest);
    let paid = cert(&["a.example.com"], KeyKind::EcdsaP256, "digicert-ov-1-year");
    assert!(refused(judge(&paid, d.path(), Utc::now(), 0.0)).contains("paid order"));
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let d = tempfile::tempdir().unwrap();
    install(d.path(), &["a.example.com"], FREE);
    let key = std::fs::canonicalize(d.path().join("www/privkey.pem")).unwrap();
    let other = crate::keys::generate(KeyKind::EcdsaP256, &["a.example.com".into()])
        .unwrap()
        .0;
    std::fs::write(&key, other.expose()).unwrap();
    let c = cert(&["a.example.com"], KeyKind::EcdsaP256, FREE);
    assert!(refused(judge(&c, d.path(), Utc::now(), 0.0)).contains("key"));
}

#[test]
fn nothing_deployed_is_nothing_to_adopt() {
    let d = tempfile::tempdir().unwrap();
    let c = cert(&["a.example.com"], KeyKind::EcdsaP256, FREE);
    assert!(matches!(
        judge(&c, d.path(), Utc::now(), 0.0),
        Verdict::Nothing
    ));
}

fn config(out: &Path) -> crate::config::Config {
    let text = format!(
        r#"state_dir = "{s}"
output_dir = "{o}"
[defaults]
product_code = "{FREE}"
key = "ecdsa-p256"
contact = {{ name = "Ops", phone = "13900000000", email = "ops@example.test" }}
[[certificate]]
name = "www"
domains = ["a.example.com"]
validation = {{ method = "file", webroot = "{o}" }}
"#,
        s = out.join("state").display(),
        o = out.display(),
    );
    crate::config::parse(&text, None).unwrap()
}

fn action(cfg: &crate::config::Config, rec: Option<crate::store::CertRecord>) -> super::Action {
    let plan = super::plan(cfg, |_| rec.clone(), Utc::now());
    plan.actions.into_iter().next().unwrap().1
}

#[test]
fn the_plan_adopts_missing_or_older_records_at_rest_and_leaves_attempts_in_flight() {
    use super::Action;
    use cas_api::model::OrderId;
    let d = tempfile::tempdir().unwrap();
    install(d.path(), &["a.example.com"], FREE);
    let cfg = config(d.path());
    // Missing: adopted, and a manifest says the store had it.
    let Action::Adopt { record, lost: true } = action(&cfg, None) else {
        panic!("a missing record is not rebuilt");
    };
    // The same record: kept.
    assert!(matches!(
        action(&cfg, Some((*record).clone())),
        Action::Keep
    ));
    // At rest and older (nothing deployed): adopted, and the reload hook runs (whether it
    // ran for this set is unknown).
    let idle = crate::store::CertRecord::new("www", vec!["a.example.com".into()]);
    let mut with_hook = cfg.clone();
    with_hook.certificates[0].reload = Some(crate::config::Hook {
        argv: vec!["true".into()],
        timeout: std::time::Duration::from_secs(1),
        pass_env: Vec::new(),
    });
    let Action::Adopt { record, lost: true } = action(&with_hook, Some(idle.clone())) else {
        panic!("an older record at rest is not rebuilt");
    };
    assert!(record.hook_pending);
    // Waiting for the very order the live set came from: the lifecycle finishes it.
    let mut polling = idle.clone();
    polling.phase = Phase::Ordered {
        order_id: OrderId(77),
        created_at: Utc::now(),
        pending: Default::default(),
    };
    assert!(matches!(action(&cfg, Some(polling.clone())), Action::Stale));
    // An attempt for another order: left alone too.
    polling.phase = Phase::Ordered {
        order_id: OrderId(78),
        created_at: Utc::now(),
        pending: Default::default(),
    };
    assert!(matches!(action(&cfg, Some(polling)), Action::Stale));
}
