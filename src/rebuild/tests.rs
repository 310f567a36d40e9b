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
        validation_timeout: std::time::Duration::from_secs(24 * 3600),
        expiry_warn: std::time::Duration::from_secs(14 * 24 * 3600),
        self_check: Default::default(),
    }
}

/// Installs a self-signed set for `domains`, valid for a year from an hour ago.
fn install(out: &Path, domains: &[&str], product: &str) {
    install_as(out, domains, product, 77, 365);
}

/// Installs a self-signed set for `domains` from order `order`, valid for `days` from an hour
/// ago; returns its version's name.
fn install_as(out: &Path, domains: &[&str], product: &str, order: u64, days: i64) -> String {
    let names: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
    let key = crate::keys::generate(KeyKind::EcdsaP256, &names).unwrap().0;
    let kp = rcgen::KeyPair::from_pem(key.expose()).unwrap();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
    let c = params.self_signed(&kp).unwrap();
    let set = PemSet {
        cert_pem: c.pem(),
        chain_pem: String::new(),
        key_pem: key,
    };
    let origin = Origin {
        order_id: order,
        product: product.into(),
    };
    let own = cert(domains, KeyKind::EcdsaP256, product).files;
    let d = deploy::install(out, "www", &set, &own, 2, &origin).unwrap();
    let live = std::fs::read_link(d.dir.join("live")).unwrap();
    live.file_name().unwrap().to_string_lossy().into_owned()
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
    let Action::Adopt {
        record, lost: true, ..
    } = action(&cfg, None)
    else {
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
    let Action::Adopt {
        record, lost: true, ..
    } = action(&with_hook, Some(idle.clone()))
    else {
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

/// A crash inside the install, between writing version `new` and pointing `live` at it:
/// `live` names `old` again (a renewal), or is missing (the first issuance: no stable links
/// either), and the temporary link is left.
fn cut_swap_short(out: &Path, old: Option<&str>, new: &str) {
    let dir = out.join("www");
    std::os::unix::fs::symlink(format!("versions/{new}"), dir.join(".tmp-live-x")).unwrap();
    std::fs::remove_file(dir.join("live")).unwrap();
    match old {
        Some(v) => std::os::unix::fs::symlink(format!("versions/{v}"), dir.join("live")).unwrap(),
        None => {
            for f in deploy_files() {
                std::fs::remove_file(dir.join(f)).unwrap();
            }
        }
    }
}

fn deploy_files() -> [&'static str; 4] {
    ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"]
}

fn adopted_version(a: super::Action) -> (Box<crate::store::CertRecord>, Option<String>) {
    match a {
        super::Action::Adopt {
            record,
            lost: true,
            version,
        } => (record, version),
        other => panic!("expected an adoption of a lost record, got {other:?}"),
    }
}

#[test]
fn a_renewal_cut_short_mid_swap_is_adopted_from_its_version_not_bought_again() {
    let d = tempfile::tempdir().unwrap();
    let old = install_as(d.path(), &["a.example.com"], FREE, 77, 30);
    let new = install_as(d.path(), &["a.example.com"], FREE, 78, 365);
    cut_swap_short(d.path(), Some(&old), &new);
    let mut cfg = config(d.path());
    cfg.certificates[0].reload = Some(crate::config::Hook {
        argv: vec!["true".into()],
        timeout: std::time::Duration::from_secs(1),
        pass_env: Vec::new(),
    });
    let (record, version) = adopted_version(action(&cfg, None));
    assert_eq!(version.as_deref(), Some(new.as_str()));
    let dep = record.deployed.as_ref().unwrap();
    assert_eq!(dep.order_id.0, 78);
    assert!(record.retired_orders.contains(&cas_api::model::OrderId(77)));
    assert!(
        record.hook_pending,
        "the set was never live: the server must reload"
    );
    // A record at rest older than the live set: the newer version still wins.
    let idle = crate::store::CertRecord::new("www", vec!["a.example.com".into()]);
    let (record, version) = adopted_version(action(&cfg, Some(idle)));
    assert_eq!(version.as_deref(), Some(new.as_str()));
    assert_eq!(record.deployed.as_ref().unwrap().order_id.0, 78);
    // Made live the way the daemon does at start: the record's set is restored.
    assert!(crate::lifecycle::restore_live(
        &cfg.certificates[0],
        d.path(),
        &record
    ));
    let m = deploy::live_manifest(d.path(), "www").unwrap().unwrap();
    assert_eq!(m.order_id, 78);
    assert!(!d.path().join("www/.tmp-live-x").exists());
}

#[test]
fn an_issuance_cut_short_mid_swap_is_adopted_from_its_version() {
    let d = tempfile::tempdir().unwrap();
    let new = install_as(d.path(), &["a.example.com"], FREE, 78, 365);
    cut_swap_short(d.path(), None, &new);
    let cfg = config(d.path());
    let (record, version) = adopted_version(action(&cfg, None));
    assert_eq!(version.as_deref(), Some(new.as_str()));
    assert_eq!(record.deployed.as_ref().unwrap().order_id.0, 78);
    assert!(!record.hook_pending, "no reload hook configured");
}

#[test]
fn an_older_version_is_not_adopted_over_a_valid_live_set() {
    let d = tempfile::tempdir().unwrap();
    install_as(d.path(), &["a.example.com"], FREE, 77, 30);
    install_as(d.path(), &["a.example.com"], FREE, 78, 365);
    let cfg = config(d.path());
    let (record, version) = adopted_version(action(&cfg, None));
    assert_eq!(version, None);
    assert_eq!(record.deployed.as_ref().unwrap().order_id.0, 78);
}

#[test]
fn a_version_with_an_untrusted_manifest_other_names_or_no_manifest_is_not_adopted() {
    let new_version = |d: &Path, domains: &[&str]| {
        let old = install_as(d, &["a.example.com"], FREE, 77, 30);
        let new = install_as(d, domains, FREE, 78, 365);
        cut_swap_short(d, Some(&old), &new);
        d.join("www/versions").join(new)
    };
    let cfg = |d: &Path| config(d);
    let live_order = |a: super::Action| match a {
        super::Action::Adopt {
            record,
            version: None,
            ..
        } => record.deployed.unwrap().order_id.0,
        other => panic!("expected the live set adopted, got {other:?}"),
    };
    // World-writable manifest.
    let d = tempfile::tempdir().unwrap();
    let v = new_version(d.path(), &["a.example.com"]);
    std::fs::set_permissions(
        v.join("manifest.json"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    assert_eq!(live_order(action(&cfg(d.path()), None)), 77);
    // Symlinked manifest.
    let d = tempfile::tempdir().unwrap();
    let v = new_version(d.path(), &["a.example.com"]);
    let copy = d.path().join("elsewhere.json");
    std::fs::rename(v.join("manifest.json"), &copy).unwrap();
    std::os::unix::fs::symlink(&copy, v.join("manifest.json")).unwrap();
    assert_eq!(live_order(action(&cfg(d.path()), None)), 77);
    // A world-writable version directory.
    let d = tempfile::tempdir().unwrap();
    let v = new_version(d.path(), &["a.example.com"]);
    std::fs::set_permissions(&v, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(live_order(action(&cfg(d.path()), None)), 77);
    // No manifest: it names no order.
    let d = tempfile::tempdir().unwrap();
    let v = new_version(d.path(), &["a.example.com"]);
    std::fs::remove_file(v.join("manifest.json")).unwrap();
    assert_eq!(live_order(action(&cfg(d.path()), None)), 77);
    // A key that does not match its certificate.
    let d = tempfile::tempdir().unwrap();
    let v = new_version(d.path(), &["a.example.com"]);
    let other = crate::keys::generate(KeyKind::EcdsaP256, &["a.example.com".into()])
        .unwrap()
        .0;
    std::fs::write(v.join("privkey.pem"), other.expose()).unwrap();
    assert_eq!(live_order(action(&cfg(d.path()), None)), 77);
    // Other names (and the live set missing): ordered, and the refusal says why.
    let d = tempfile::tempdir().unwrap();
    let new = install_as(d.path(), &["b.example.com"], FREE, 78, 365);
    cut_swap_short(d.path(), None, &new);
    match action(&cfg(d.path()), None) {
        super::Action::Order { refused: Some(why) } => {
            assert!(why.contains(&new) && why.contains("b.example.com"), "{why}")
        }
        other => panic!("expected an order, got {other:?}"),
    }
}

#[test]
fn certificates_added_by_a_reload_are_adopted_from_their_files_and_wait_for_the_cas_pass() {
    let d = tempfile::tempdir().unwrap();
    install(d.path(), &["a.example.com"], FREE);
    let cfg = config(d.path());
    std::fs::create_dir_all(&cfg.state_dir).unwrap();
    let store = crate::store::Store::open(&cfg.state_dir).unwrap();
    let pending = cfg.state_dir.join("cas-pass.pending");
    // Waiting since the start: kept in the list with the newcomer.
    std::fs::write(&pending, "earlier\n").unwrap();
    let waiting = super::newcomers(&cfg, &store, &["www".into()]).unwrap();
    assert_eq!(waiting, ["www"]);
    let rec = store
        .get("www")
        .unwrap()
        .expect("adopted from its live set");
    assert_eq!(rec.deployed.unwrap().order_id.0, 77);
    assert_eq!(std::fs::read_to_string(&pending).unwrap(), "earlier\nwww\n");
    // With a record now, a second reload naming it changes nothing.
    assert!(super::newcomers(&cfg, &store, &["www".into()])
        .unwrap()
        .is_empty());
    // The pass ran for www only: earlier still waits; then for earlier: the list is gone.
    super::pass_done(&cfg.state_dir, &["www".into()]);
    assert_eq!(std::fs::read_to_string(&pending).unwrap(), "earlier\n");
    super::pass_done(&cfg.state_dir, &["earlier".into()]);
    assert!(!pending.exists());
}

/// The CAS pass's matching rules over listed orders (no files, no network).
mod cas_pass {
    use chrono::{DateTime, TimeDelta, Utc};

    use super::{cert, FREE};
    use crate::config::KeyKind;
    use crate::rebuild::cas::{apply, judge, Adopted};
    use crate::store::Phase;
    use cas_api::model::{OrderId, OrderSummary};

    fn row(id: u64, domain: &str, count: i64, status: &str, product: &str) -> OrderSummary {
        OrderSummary {
            order_id: OrderId(id),
            instance_id: None,
            domain: Some(domain.into()),
            domain_count: Some(count),
            status: Some(status.into()),
            product_code: Some(product.into()),
            cert_type: None,
            domain_type: None,
            cert_start_time: None,
            cert_end_time: None,
            buy_date: Some(id as i64),
            algorithm: None,
        }
    }

    /// An issued row valid from `start` to `end` (days from now).
    fn issued(id: u64, domain: &str, start: i64, end: i64) -> OrderSummary {
        let now = Utc::now();
        OrderSummary {
            cert_start_time: Some((now + TimeDelta::days(start)).timestamp_millis()),
            cert_end_time: Some((now + TimeDelta::days(end)).timestamp_millis()),
            ..row(id, domain, 1, "ISSUED", FREE)
        }
    }

    fn ids(v: &[(OrderId, String)]) -> Vec<u64> {
        v.iter().map(|(id, _)| id.0).collect()
    }

    #[test]
    fn a_cas_key_order_under_review_or_issued_is_adopted_other_names_and_products_are_not() {
        let c = cert(&["a.test", "b.test"], KeyKind::Cas, FREE);
        let now = Utc::now();
        let orders = vec![
            row(1, "a.test", 1, "CHECKING", FREE), // one name only
            row(2, "c.test", 2, "CHECKING", FREE), // other names
            row(3, "b.test", 2, "CHECKING", "other-product"), // other product
            row(4, "b.test,a.test", 2, "CHECKING", FREE), // ✓ (names in another order)
            row(5, "a.test,b.test,c.test", 3, "CHECKING", FREE), // more names
            row(6, "a.test", 2, "CHECKED_FAIL", FREE), // failed: left alone
        ];
        let f = judge(&c, None, &orders, now);
        assert_eq!(
            f.adopt,
            Some(Adopted {
                order_id: OrderId(4),
                issued: false
            })
        );
        assert_eq!(ids(&f.clean), vec![6], "a failed order holds quota");
        assert!(f.refused.is_empty(), "{f:?}");
        // The newest under review is adopted; an older one only holds quota.
        let orders = vec![
            row(7, "a.test", 2, "CHECKING", FREE),
            row(8, "a.test", 2, "CHECKING", FREE),
        ];
        let f = judge(&c, None, &orders, now);
        assert_eq!(f.adopt.map(|a| a.order_id), Some(OrderId(8)));
        assert_eq!(ids(&f.clean), vec![7]);
        // An issued order wins over one under review (usable at once), which is cleaned.
        let one = cert(&["a.test"], KeyKind::Cas, FREE);
        let orders = vec![
            row(9, "a.test", 1, "CHECKING", FREE),
            issued(10, "a.test", -1, 364),
        ];
        let f = judge(&one, None, &orders, now);
        assert_eq!(
            f.adopt,
            Some(Adopted {
                order_id: OrderId(10),
                issued: true
            })
        );
        assert_eq!(ids(&f.clean), vec![9]);
        // The record goes on from the adopted order with no key of ours.
        let r = apply(None, &one, &f, now).unwrap();
        assert!(
            matches!(&r.phase, Phase::Ordered { order_id, pending, .. }
                if *order_id == OrderId(10) && pending.key.is_none() && pending.csr.is_none()),
            "{:?}",
            r.phase
        );
        assert_eq!(r.orders_to_clean, vec![OrderId(9)]);
        assert!(r.next_due <= now);
    }

    #[test]
    fn expired_or_due_issued_orders_are_refused() {
        let c = cert(&["a.test"], KeyKind::Cas, FREE);
        let now = Utc::now();
        // Expired; inside the renewal window (a third of the lifetime left at most).
        let orders = vec![
            issued(1, "a.test", -400, -35),
            issued(2, "a.test", -300, 60),
        ];
        let f = judge(&c, None, &orders, now);
        assert_eq!(f.adopt, None);
        assert_eq!(ids(&f.refused), vec![1, 2]);
        assert!(f.refused[0].1.contains("expired"), "{:?}", f.refused);
        assert!(f.refused[1].1.contains("renewal window"), "{:?}", f.refused);
        // Nothing to record: the normal path orders.
        assert_eq!(apply(None, &c, &f, now), None);
        // EXPIRED rows are over: not even reported.
        let f = judge(&c, None, &[row(3, "a.test", 1, "EXPIRED", FREE)], now);
        assert_eq!(f, Default::default());
    }

    #[test]
    fn orders_for_a_lost_local_key_are_cleaned_in_review_and_reported_when_issued() {
        let c = cert(&["a.test"], KeyKind::EcdsaP256, FREE);
        let now = Utc::now();
        let orders = vec![
            row(1, "a.test", 1, "CHECKING", FREE),
            row(2, "a.test", 1, "PAYED", FREE),
            issued(3, "a.test", -1, 364),
        ];
        let f = judge(&c, None, &orders, now);
        assert_eq!(f.adopt, None, "our key is gone: nothing to adopt");
        assert_eq!(ids(&f.clean), vec![1, 2]);
        assert_eq!(ids(&f.refused), vec![3]);
        assert!(f.refused[0].1.contains("lost"), "{:?}", f.refused);
        let r = apply(None, &c, &f, now).unwrap();
        assert_eq!(r.orders_to_clean, vec![OrderId(1), OrderId(2)]);
        assert_eq!(r.phase, Phase::Idle, "the machine cleans, then orders");
        assert!(r.known_orders().contains(&OrderId(1)));
    }

    #[test]
    fn a_set_adopted_from_the_files_keeps_its_order_and_ignores_older_ones() {
        let c = cert(&["a.test"], KeyKind::Cas, FREE);
        let now = Utc::now();
        let deployed_end = now + TimeDelta::days(300);
        let orders = vec![
            issued(1, "a.test", -65, 300),  // the deployed one
            issued(2, "a.test", -200, 100), // an older one
        ];
        let f = judge(&c, Some((OrderId(1), deployed_end)), &orders, now);
        assert_eq!(f, Default::default());
        // A newer issued one (CAS key) replaces what is deployed.
        let newer: DateTime<Utc> = now + TimeDelta::days(364);
        let orders = vec![issued(3, "a.test", -1, 364)];
        let f = judge(&c, Some((OrderId(1), deployed_end)), &orders, now);
        assert_eq!(f.adopt.map(|a| a.order_id), Some(OrderId(3)));
        assert!(newer > deployed_end);
    }

    #[test]
    fn rows_without_a_product_or_names_are_never_touched() {
        let c = cert(&["a.test"], KeyKind::EcdsaP256, FREE);
        let mut no_product = row(1, "a.test", 1, "CHECKING", FREE);
        no_product.product_code = None;
        let mut no_domain = row(2, "a.test", 1, "CHECKING", FREE);
        no_domain.domain = None;
        let f = judge(&c, None, &[no_product, no_domain], Utc::now());
        assert_eq!(f, Default::default());
    }
}

/// The CAS pass's paging ([`super::cas::list_all`]) over a lister that honours
/// `current_page`/`show_size` like ListUserCertificateOrder.
mod paging {
    use std::sync::Mutex;

    use crate::lifecycle::ports::Ca;
    use crate::rebuild::cas::{list_all, PAGE_SIZE};
    use cas_api::model::{
        CertificateState, CreateOrder, ListOrders, OrderId, OrderSummary, PackageState,
    };
    use cas_api::ApiError;

    /// An account with `total` orders; `ignores_paging` answers the first page every time.
    struct Lister {
        total: u64,
        ignores_paging: bool,
        asked: Mutex<Vec<(u32, u32)>>,
    }

    impl Ca for Lister {
        async fn create(&self, _: &CreateOrder) -> Result<OrderId, ApiError> {
            unreachable!("the pass only lists")
        }
        async fn renew(&self, _: OrderId, _: Option<&str>) -> Result<OrderId, ApiError> {
            unreachable!("the pass only lists")
        }
        async fn list(&self, q: &ListOrders) -> Result<Vec<OrderSummary>, ApiError> {
            self.asked
                .lock()
                .unwrap()
                .push((q.current_page, q.show_size));
            let page = if self.ignores_paging {
                1
            } else {
                q.current_page
            };
            let from = u64::from(page - 1) * u64::from(q.show_size);
            let to = (from + u64::from(q.show_size)).min(self.total);
            Ok((from..to)
                .map(|i| OrderSummary {
                    order_id: OrderId(1000 + i),
                    instance_id: None,
                    domain: Some(format!("d{i}.example.test")),
                    domain_count: Some(1),
                    status: Some("ISSUED".into()),
                    product_code: Some(super::FREE.into()),
                    cert_type: None,
                    domain_type: None,
                    cert_start_time: None,
                    cert_end_time: None,
                    algorithm: None,
                    buy_date: None,
                })
                .collect())
        }
        async fn describe(&self, _: OrderId) -> Result<CertificateState, ApiError> {
            unreachable!("the pass only lists")
        }
        async fn cancel(&self, _: OrderId) -> Result<(), ApiError> {
            unreachable!("the pass only lists")
        }
        async fn delete(&self, _: OrderId) -> Result<(), ApiError> {
            unreachable!("the pass only lists")
        }
        async fn package_state(&self, _: &str) -> Result<PackageState, ApiError> {
            unreachable!("the pass only lists")
        }
    }

    async fn run(total: u64, ignores_paging: bool) -> (Vec<OrderSummary>, u32, Vec<(u32, u32)>) {
        let l = Lister {
            total,
            ignores_paging,
            asked: Mutex::new(Vec::new()),
        };
        let mut calls = 0;
        let got = list_all(&l, &mut calls).await.unwrap();
        (got, calls, l.asked.into_inner().unwrap())
    }

    #[tokio::test]
    async fn every_page_is_listed_once_at_0_100_101_and_250_orders() {
        assert_eq!(PAGE_SIZE, 100);
        for (total, pages) in [(0u64, 1u32), (100, 2), (101, 2), (250, 3)] {
            let (got, calls, asked) = run(total, false).await;
            assert_eq!(got.len() as u64, total, "{total} orders");
            let mut ids: Vec<u64> = got.iter().map(|o| o.order_id.0).collect();
            ids.dedup();
            assert_eq!(ids, (1000..1000 + total).collect::<Vec<_>>(), "{total}");
            assert_eq!(calls, pages, "{total} orders: calls");
            let want: Vec<(u32, u32)> = (1..=pages).map(|p| (p, PAGE_SIZE)).collect();
            assert_eq!(asked, want, "{total} orders: pages asked");
        }
    }

    #[tokio::test]
    async fn a_server_that_ignores_paging_is_asked_twice_not_forever() {
        let (got, calls, _) = run(250, true).await;
        assert_eq!(got.len(), 100);
        assert_eq!(calls, 2);
    }
}
