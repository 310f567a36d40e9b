//! Records exactly as the version 1 format wrote them (`fixtures/v1/`), decoded into the
//! domain types and encoded back. `demo_renewed.json` is a real record from `cas-certd demo`
//! (the simulator's throwaway key and certificate); the others were written by the v1 encoder
//! for every `Phase` variant and every `Presented` kind. A change to the persisted types that
//! alters a field name, tag or default breaks one of these.
use chrono::{DateTime, TimeZone, Utc};

use crate::deploy::CertInfo;
use crate::store::{CertRecord, DeployedCert, Phase, ProofStatus};
use crate::validation::Presented;
use cas_api::model::OrderId;
use cas_api::secret::Secret;

const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";
const CSR: &str =
    "-----BEGIN CERTIFICATE REQUEST-----\nMIIBDTCBtAIBADA\n-----END CERTIFICATE REQUEST-----\n";

fn decode(name: &str, bytes: &[u8]) -> CertRecord {
    super::decode(name, bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn encode(r: &CertRecord) -> Vec<u8> {
    super::encode(r).unwrap_or_else(|e| panic!("{}: {e}", r.name))
}

/// `bytes` decodes to `want` and encodes back to the very same bytes.
fn check(bytes: &[u8], want: CertRecord) {
    let got = decode(&want.name, bytes);
    assert_eq!(got, want, "{} decoded to another value", want.name);
    assert_eq!(
        String::from_utf8_lossy(&encode(&got)),
        String::from_utf8_lossy(bytes),
        "{} re-encoded differently",
        want.name
    );
    // Secrets are compared by value above (`Secret`'s Debug hides them); say so explicitly.
    assert_eq!(
        got.pending_key().map(|k| k.expose().to_string()),
        want.pending_key().map(|k| k.expose().to_string())
    );
}

fn t(s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, s).unwrap()
}

/// What every fixture shares: two domains, due at 12:00:30.
fn base(name: &str) -> CertRecord {
    let mut r = CertRecord::new(name, vec!["example.com".into(), "www.example.com".into()]);
    r.next_due = t(30);
    r
}

fn in_flight(name: &str, phase: Phase) -> CertRecord {
    let mut r = base(name);
    r.phase = phase;
    r.phase.pending_mut().unwrap().key = Some(Secret::new(KEY));
    r
}

fn presented(name: &str, p: Presented) -> CertRecord {
    in_flight(
        name,
        Phase::Presented {
            pending: Default::default(),
            order_id: OrderId(9001),
            presented: p,
            presented_at: t(2),
            ordered_at: None,
            attempt: 1,
        },
    )
}

fn deployed_cert() -> DeployedCert {
    DeployedCert {
        order_id: OrderId(8001),
        info: CertInfo {
            not_before: t(0),
            not_after: Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(),
            serial_hex: "0a1b2c".into(),
            names: vec!["example.com".into(), "www.example.com".into()],
            fingerprint_sha256: "ab".repeat(32),
        },
        cert_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        chain_pem: "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n".into(),
        key_pem: Secret::new(KEY),
    }
}

#[test]
fn idle() {
    check(include_bytes!("fixtures/v1/idle.json"), base("idle"));
}

#[test]
fn key_ready() {
    let mut r = in_flight(
        "key_ready",
        Phase::KeyReady {
            pending: Default::default(),
        },
    );
    r.phase.pending_mut().unwrap().csr = Some(CSR.into());
    check(include_bytes!("fixtures/v1/key_ready.json"), r);
}

#[test]
fn intent_with_nanoseconds_and_forced_renewal() {
    let created_at = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 7).unwrap()
        + chrono::Duration::nanoseconds(123_456_789);
    let mut r = in_flight(
        "intent",
        Phase::Intent {
            pending: Default::default(),
            created_at,
            csr_fingerprint: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                .into(),
            // Written before intents recorded their product.
            product: None,
        },
    );
    r.phase.pending_mut().unwrap().csr = Some(CSR.into());
    r.force_renew = true;
    check(include_bytes!("fixtures/v1/intent.json"), r);
}

#[test]
fn ordered_with_an_id_above_2_pow_53() {
    let mut r = in_flight(
        "ordered",
        Phase::Ordered {
            pending: Default::default(),
            order_id: OrderId(18446744073709551000),
            created_at: t(1),
        },
    );
    r.phase.pending_mut().unwrap().csr = Some(CSR.into());
    check(include_bytes!("fixtures/v1/ordered.json"), r);
}

#[test]
fn presented_file() {
    let p = Presented::File {
        path: "/var/www/html/.well-known/pki-validation/fileauth.txt".into(),
    };
    check(
        include_bytes!("fixtures/v1/presented_file.json"),
        presented("presented_file", p),
    );
}

#[test]
fn presented_file_with_a_proof_self_check() {
    let p = Presented::File {
        path: "/var/www/html/.well-known/pki-validation/fileauth.txt".into(),
    };
    let mut r = presented("presented_file_proof", p);
    r.proof = Some(ProofStatus {
        order_id: OrderId(9001),
        at: t(3),
        failure: Some("HTTP 404 from 127.0.0.1:8080".into()),
        reported: vec![
            "HTTP 403 from 127.0.0.1:8080".into(),
            "HTTP 404 from 127.0.0.1:8080".into(),
        ],
    });
    check(include_bytes!("fixtures/v1/presented_file_proof.json"), r);
}

#[test]
fn presented_alidns() {
    let p = Presented::Alidns {
        zone: "example.com".into(),
        rr: "_dnsauth".into(),
        record_id: "844021234567890".into(),
    };
    check(
        include_bytes!("fixtures/v1/presented_alidns.json"),
        presented("presented_alidns", p),
    );
}

#[test]
fn presented_command() {
    let p = Presented::Command {
        argv: vec![
            "/usr/local/bin/dns-hook".into(),
            "--zone".into(),
            "example.com".into(),
        ],
        domain: "example.com".into(),
        record: "_dnsauth.example.com".into(),
        value: "20260301000000abc".into(),
        timeout_secs: 60,
        challenge_type: "DNS".into(),
        cert_name: "cmd".into(),
        pass_env: vec!["DNS_TOKEN".into()],
    };
    check(
        include_bytes!("fixtures/v1/presented_command.json"),
        presented("presented_command", p),
    );
}

#[test]
fn polling_manual() {
    let mut r = base("polling_manual");
    r.phase = Phase::Polling {
        pending: Default::default(),
        order_id: OrderId(9002),
        presented: Some(Presented::Manual {
            instructions: "Publish TXT _dnsauth.example.com = 2026abc".into(),
        }),
        presented_at: t(3),
        next_poll: t(4),
        attempt: 3,
    };
    r.last_error = Some("CA review pending".into());
    check(include_bytes!("fixtures/v1/polling_manual.json"), r);
}

#[test]
fn polling_without_anything_presented() {
    let mut r = base("polling_none");
    r.phase = Phase::Polling {
        pending: Default::default(),
        order_id: OrderId(9003),
        presented: None,
        presented_at: t(3),
        next_poll: t(4),
        attempt: 0,
    };
    check(include_bytes!("fixtures/v1/polling_none.json"), r);
}

#[test]
fn deployed_with_hook_pending_and_orders_to_clean() {
    let mut r = base("deployed");
    r.phase = Phase::Deployed {
        order_id: OrderId(8001),
        at: t(5),
    };
    r.deployed = Some(deployed_cert());
    r.last_success = Some(t(5));
    r.hook_pending = true;
    r.hook_attempt = 2;
    r.orders_to_clean = vec![OrderId(7001), OrderId(7002)];
    r.retired_orders = vec![OrderId(6001), OrderId(6002)];
    check(include_bytes!("fixtures/v1/deployed.json"), r);
}

#[test]
fn failed_keeps_the_deployed_cert() {
    let mut r = base("failed");
    r.phase = Phase::Failed {
        reason: "verify_fail: file not reachable".into(),
        at: t(6),
        attempt: 4,
    };
    r.deployed = Some(deployed_cert());
    r.last_error = Some("verify_fail: file not reachable".into());
    r.failures = 4;
    r.orders_to_clean = vec![OrderId(7003)];
    check(include_bytes!("fixtures/v1/failed.json"), r);
}

/// A record the daemon wrote in `cas-certd demo` after renewing `www` once.
#[test]
fn a_real_record_from_the_demo() {
    let bytes = include_bytes!("fixtures/v1/demo_renewed.json");
    let r = decode("www", bytes);
    let at = DateTime::parse_from_rfc3339("2026-12-02T06:25:10.031440096Z")
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(
        r.phase,
        Phase::Deployed {
            order_id: OrderId(9007199254740997),
            at
        }
    );
    assert_eq!(r.domains, ["www.example.test", "example.test"]);
    assert_eq!(r.retired_orders, [OrderId(9007199254740993)]);
    assert_eq!(r.last_success, Some(at));
    assert!(r.phase.pending().is_none());
    let d = r.deployed.as_ref().unwrap();
    assert_eq!(d.order_id, OrderId(9007199254740997));
    assert_eq!(d.info.serial_hex, "01312d05");
    assert_eq!(d.info.names, r.domains);
    assert!(d
        .cert_pem
        .starts_with("-----BEGIN CERTIFICATE-----\nMIIB0jCC"));
    assert!(d
        .chain_pem
        .starts_with("-----BEGIN CERTIFICATE-----\nMIIB0DCC"));
    assert!(d
        .key_pem
        .expose()
        .starts_with("-----BEGIN PRIVATE KEY-----\nMIGHAgEA"));
    assert_eq!(
        r.next_due,
        DateTime::parse_from_rfc3339("2027-01-31T02:52:39.805Z").unwrap()
    );
    assert_eq!(encode(&r), bytes, "re-encoded differently");
}

/// Early v1 records: the order id as a string, a command proof without `challenge_type`,
/// `cert_name` and `pass_env`, no `retired_orders`. They decode with those defaulted.
#[test]
fn an_early_v1_record_gets_the_defaults() {
    let r = decode("older", include_bytes!("fixtures/v1/older_command.json"));
    let mut want = CertRecord::new("older", vec!["example.com".into()]);
    want.phase = Phase::Presented {
        pending: Default::default(),
        order_id: OrderId(18446744073709551000),
        presented: Presented::Command {
            argv: vec!["/usr/local/bin/dns-hook".into()],
            domain: "example.com".into(),
            record: "_dnsauth.example.com".into(),
            value: "2024abc".into(),
            timeout_secs: 30,
            challenge_type: String::new(),
            cert_name: String::new(),
            pass_env: Vec::new(),
        },
        presented_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        ordered_at: None,
        attempt: 2,
    };
    want.phase.pending_mut().unwrap().key = Some(Secret::new(
        "-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----\n",
    ));
    want.next_due = Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).unwrap();
    want.orders_to_clean = vec![OrderId(123)];
    assert_eq!(r, want);
    assert_eq!(
        r.pending_key().unwrap().expose(),
        "-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----\n"
    );
}
