//! Property-based fuzz targets (proptest) for everything that takes input from outside: the
//! config parser, API answer decoding, PEM intake, domain names and the challenge Uri → path
//! check. Each target runs a fixed number of cases so CI stays bounded (the whole set runs in
//! seconds in a debug build); set `CAS_CERTD_FUZZ_CASES=N` to run N cases per target instead
//! (e.g. `CAS_CERTD_FUZZ_CASES=100000 cargo test --test integration fuzz`).
//!
//! Failing inputs are not written to `proptest-regressions/`: every bug found is kept as an
//! ordinary regression test at the end of this file instead.
#![allow(clippy::unwrap_used)]

use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::test_runner::Config as PtConfig;
use serde_json::Value;

use cas_api::client::decode_answer;
use cas_api::model::{Challenge, ListOrders, OrderId};
use cas_api::responses::*;
use cas_api::secret::Secret;
use cas_certd::config::domain::normalize_domain;
use cas_certd::config::Validation;
use cas_certd::deploy::{self, PemSet};
use cas_certd::validation::{self, file::check_uri, Presented};

/// `cases` per target, or `CAS_CERTD_FUZZ_CASES` when set.
fn cfg(cases: u32) -> PtConfig {
    let cases = std::env::var("CAS_CERTD_FUZZ_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(cases);
    PtConfig {
        cases,
        failure_persistence: None,
        ..PtConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations shared by the config, answer and PEM targets.

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the byte at (index mod len).
    Set(usize, u8),
    /// Keep only the first (index mod len+1) bytes.
    Truncate(usize),
    DeleteLine(usize),
    DupLine(usize),
    /// Insert text at a byte offset (may split a UTF-8 sequence on purpose).
    Insert(usize, String),
    /// Replace the text after the first `=` or `:` on a line.
    ReplaceValue(usize, String),
}

fn line_bounds(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in b.iter().enumerate() {
        if *c == b'\n' {
            out.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < b.len() {
        out.push((start, b.len()));
    }
    out
}

fn apply(src: &[u8], ms: &[Mutation]) -> Vec<u8> {
    let mut b = src.to_vec();
    for m in ms {
        let lines = line_bounds(&b);
        match m {
            Mutation::Set(i, v) if !b.is_empty() => {
                let n = b.len();
                b[i % n] = *v;
            }
            Mutation::Truncate(i) => b.truncate(i % (b.len() + 1)),
            Mutation::DeleteLine(i) if !lines.is_empty() => {
                let (s, e) = lines[i % lines.len()];
                b.drain(s..e);
            }
            Mutation::DupLine(i) if !lines.is_empty() => {
                let (s, e) = lines[i % lines.len()];
                let line = b[s..e].to_vec();
                b.splice(e..e, line);
            }
            Mutation::Insert(i, t) => {
                let at = i % (b.len() + 1);
                b.splice(at..at, t.bytes());
            }
            Mutation::ReplaceValue(i, v) if !lines.is_empty() => {
                let (s, e) = lines[i % lines.len()];
                if let Some(p) = b[s..e].iter().position(|c| *c == b'=' || *c == b':') {
                    let end = if b[e - 1] == b'\n' { e - 1 } else { e };
                    b.splice(s + p + 1..end, v.bytes());
                }
            }
            _ => {}
        }
    }
    b
}

/// Values that tend to upset parsers, used by `ReplaceValue` and `Insert`.
const HOSTILE: &[&str] = &[
    " \"\"",
    " -1",
    " 0",
    " 1e999",
    " 18446744073709551616",
    " -9223372036854775809",
    " nan",
    " inf",
    " [1, \"a\"]",
    " {}",
    " []",
    " \"../../etc\"",
    " \"a\\u0000b\"",
    " \"a\\nb\"",
    " \"\\u00e9\"",
    " true",
    " 1979-05-27T07:32:00Z",
    " \"0 0 0 31 2 * *\"",
    " \"9999999999999999999d\"",
    " \"0 0 0 * * *\\u001b[31m\"",
    " \"\\t\"",
    " \"a\\u001bb\"",
    " \"1/0\"",
    " { method = \"file\", webroot = \"relative\" }",
    " ",
    "\n\"a\\nb\" = 1\n",
    "\n[[certificate]]\n",
    "\n[cas]\n",
    "\"",
    "'''",
    "\\",
    "\u{0}",
    "\r",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    let text = prop_oneof![
        3 => prop::sample::select(HOSTILE).prop_map(str::to_string),
        1 => any::<String>(),
    ];
    prop_oneof![
        3 => (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        2 => any::<usize>().prop_map(Mutation::DeleteLine),
        1 => any::<usize>().prop_map(Mutation::DupLine),
        2 => (any::<usize>(), text.clone()).prop_map(|(i, t)| Mutation::Insert(i, t)),
        3 => (any::<usize>(), text).prop_map(|(i, t)| Mutation::ReplaceValue(i, t)),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..6)
}

// ---------------------------------------------------------------------------------------------
// 1. Config.

const EXAMPLE: &str = include_str!("../../config/example.toml");
const SOURCE: &str = "/etc/cas-certd/config.toml";

/// One error line: `path:line:col: key: reason`, one physical line, position inside `text`.
fn check_error_line(text: &str, err: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        !err.chars().any(char::is_control),
        "error spans lines or carries control characters: {err:?}"
    );
    let rest = err.strip_prefix(&format!("{SOURCE}:"));
    prop_assert!(rest.is_some(), "no path prefix: {err:?}");
    let mut it = rest.unwrap_or_default().splitn(3, ':');
    let line: Option<usize> = it.next().and_then(|s| s.parse().ok());
    let col: Option<usize> = it.next().and_then(|s| s.parse().ok());
    let tail = it.next().unwrap_or_default();
    prop_assert!(line.is_some() && col.is_some(), "no line:col: {err:?}");
    let (line, col) = (line.unwrap_or(0), col.unwrap_or(0));
    let kr = tail.strip_prefix(' ').and_then(|t| t.split_once(": "));
    prop_assert!(kr.is_some(), "no ' key: reason': {err:?}");
    let (key, reason) = kr.unwrap_or_default();
    prop_assert!(!key.trim().is_empty(), "empty key: {err:?}");
    prop_assert!(!reason.trim().is_empty(), "empty reason: {err:?}");
    let lines: Vec<&str> = text.split('\n').collect();
    prop_assert!(
        line >= 1 && line <= lines.len(),
        "line {line} outside 1..={}: {err:?}",
        lines.len()
    );
    let width = lines[line - 1].chars().count();
    prop_assert!(
        col >= 1 && col <= width + 1,
        "col {col} outside 1..={}: {err:?}",
        width + 1
    );
    Ok(())
}

fn check_config(text: &str) -> Result<(), TestCaseError> {
    if let Err(e) = cas_certd::config::parse(text, Some(Path::new(SOURCE))) {
        prop_assert!(!e.errors.is_empty(), "an error without any line");
        for err in &e.errors {
            check_error_line(text, err)?;
        }
        prop_assert_eq!(e.to_string().split('\n').count(), e.errors.len());
    }
    Ok(())
}

#[test]
fn example_config_is_valid() {
    cas_certd::config::parse(EXAMPLE, Some(Path::new(SOURCE))).unwrap();
}

proptest! {
    #![proptest_config(cfg(256))]

    #[test]
    fn fuzz_config_arbitrary_text(text in any::<String>()) {
        check_config(&text)?;
    }

    #[test]
    fn fuzz_config_tomlish_text(
        text in "([a-z_]{1,12}|[\\[\\]{}=\",.'#\n ]|[0-9]{1,3}|\"[^\"\n]{0,8}\"|\u{e9}|\\\\){0,80}"
    ) {
        check_config(&text)?;
    }

    #[test]
    fn fuzz_config_mutated_example(ms in mutations()) {
        let bytes = apply(EXAMPLE.as_bytes(), &ms);
        check_config(&String::from_utf8_lossy(&bytes))?;
    }
}

// ---------------------------------------------------------------------------------------------
// 2. API answer decoding.

const KEYS: &[&str] = &[
    "RequestId",
    "OrderId",
    "Type",
    "ValidateType",
    "RecordDomain",
    "RecordType",
    "RecordValue",
    "Domain",
    "Uri",
    "Content",
    "Certificate",
    "PrivateKey",
    "CertId",
    "TotalCount",
    "UsedCount",
    "IssuedCount",
    "ProductCode",
    "CurrentPage",
    "ShowSize",
    "CertificateOrderList",
    "InstanceId",
    "Status",
    "CertEndTime",
    "CertStartTime",
    "BuyDate",
    "DomainRecords",
    "Record",
    "RecordId",
    "RR",
    "TTL",
    "Value",
    "DomainName",
    "Code",
    "Message",
    "Recommend",
    "HostId",
];

const WORDS: &[&str] = &[
    "domain_verify",
    "process",
    "verify_fail",
    "certificate",
    "payed",
    "unknow",
    "DNS",
    "FILE",
    "dns",
    "TXT",
    "Throttling",
    "InvalidTimeStamp.Expired",
    "SignatureDoesNotMatch",
    "the string to sign was X",
    "9007199254740993",
    "18446744073709551616",
    "-1",
    " 12 ",
    "1e30",
    "",
    "line one\nforged line",
    "\u{1b}[31mred",
];

fn json_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        any::<String>().prop_map(Value::String),
        prop::sample::select(WORDS).prop_map(|s| Value::String(s.to_string())),
    ]
    .boxed()
}

fn json_key() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => any::<String>(),
    ]
    .boxed()
}

fn json_value() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((json_key(), inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

/// A top-level object, as every answer is.
fn json_answer() -> BoxedStrategy<Value> {
    prop::collection::vec((json_key(), json_value()), 0..10)
        .prop_map(|kv| Value::Object(kv.into_iter().collect()))
        .boxed()
}

/// Realistic answers (from Alibaba's documented examples and the simulator), mutated by the
/// byte-level target.
const ANSWERS: &[&str] = &[
    r#"{"RequestId":"r","OrderId":123456789012345678}"#,
    r#"{"RequestId":"r","OrderId":"9007199254740993"}"#,
    r#"{"RequestId":"r","Type":"domain_verify","ValidateType":"DNS","RecordDomain":"_dnsauth","RecordType":"TXT","RecordValue":"20240101abcdef"}"#,
    r#"{"RequestId":"r","Type":"domain_verify","ValidateType":"FILE","Domain":"example.com","Uri":"/.well-known/pki-validation/fileauth.txt","Content":"abc"}"#,
    r#"{"RequestId":"r","Type":"certificate","Certificate":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n","PrivateKey":"","CertId":123}"#,
    r#"{"RequestId":"r","ProductCode":"symantec-free-1-free","TotalCount":"20","UsedCount":20,"IssuedCount":3}"#,
    r#"{"RequestId":"r","TotalCount":2,"CurrentPage":1,"ShowSize":50,"CertificateOrderList":[{"OrderId":123456789012345678,"InstanceId":"cas-x","Domain":"a.com","Status":"ISSUED","CertEndTime":1700000000000},{"OrderId":"9007199254740993"}]}"#,
    r#"{"TotalCount":1,"PageNumber":1,"DomainRecords":{"Record":[{"RecordId":"9999985","RR":"_dnsauth","Type":"TXT","Value":"v","TTL":600,"DomainName":"example.com"}]}}"#,
    r#"{"RequestId":"r","RecordId":"12345"}"#,
    r#"{"RequestId":"r","HostId":"cas.aliyuncs.com","Code":"Throttling","Message":"Request was denied due to request throttling.","Recommend":"https://api.aliyun.com/troubleshoot?q=Throttling"}"#,
    r#"{"RequestId":"r","Code":"SignatureDoesNotMatch","Message":"Specified signature is not matched with our calculation. server string to sign is:POST&%2F&AccessKeyId%3Dx"}"#,
];

/// Feeds a success object to every typed decoder the client uses.
fn decode_typed(v: &Value) {
    let q = ListOrders::default();
    let _ = serde_json::from_value::<PackageStateRaw>(v.clone()).map(|r| r.into_model("p"));
    let _ = serde_json::from_value::<OrderIdRaw>(v.clone()).map(|r| r.order_id);
    if let Ok(r) = serde_json::from_value::<CertificateStateRaw>(v.clone()) {
        // Display/Debug of the model must not panic either (it is logged).
        let _ = format!("{:?}", r.into_model());
    }
    if let Ok(r) = serde_json::from_value::<OrderPageRaw>(v.clone()) {
        let _ = r.into_model(&q);
    }
    let _ = serde_json::from_value::<RecordIdRaw>(v.clone());
    if let Ok(r) = serde_json::from_value::<DnsRecordPageRaw>(v.clone()) {
        let _ = r.into_model();
    }
}

/// The client's path: status + body → JSON or ApiError → typed model.
fn decode_body(status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    match decode_answer("DescribeCertificateState", status, body) {
        Ok(v) => {
            prop_assert!((200..300).contains(&status), "HTTP {status} accepted");
            prop_assert!(v.is_object());
            decode_typed(&v);
        }
        Err(e) => {
            let shown = e.to_string();
            let _ = e.class();
            prop_assert!(!shown.is_empty());
            // One log line per incident: nothing from the body adds lines or escapes.
            prop_assert!(
                !shown.chars().any(char::is_control),
                "control characters from the answer in the error: {shown:?}"
            );
            // What the server quoted from the string to sign is never repeated.
            prop_assert!(
                !shown.contains("AccessKeyId%3D"),
                "string to sign echoed: {shown}"
            );
        }
    }
    Ok(())
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => Just(200u16),
        1 => prop::sample::select(&[204u16, 400, 403, 404, 429, 500, 502, 503][..]),
        1 => any::<u16>(),
    ]
}

proptest! {
    #![proptest_config(cfg(256))]

    #[test]
    fn fuzz_answer_arbitrary_bytes(
        status in status(),
        body in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        decode_body(status, &body)?;
    }

    #[test]
    fn fuzz_answer_arbitrary_json(status in status(), v in json_answer()) {
        decode_body(status, &serde_json::to_vec(&v).unwrap())?;
        decode_typed(&v);
    }

    /// Error answers: the fields that end up in the error (and the log).
    #[test]
    fn fuzz_answer_error_body(
        status in 300u16..600,
        fields in prop::collection::vec(
            (
                prop::sample::select(&["Code", "Message", "RequestId", "Recommend", "HostId"][..]),
                prop_oneof![
                    2 => prop::sample::select(WORDS).prop_map(str::to_string),
                    1 => any::<String>(),
                ],
            ),
            0..5,
        ),
    ) {
        let v: serde_json::Map<String, Value> = fields
            .into_iter()
            .map(|(k, s)| (k.to_string(), Value::String(s)))
            .collect();
        decode_body(status, &serde_json::to_vec(&v).unwrap())?;
    }

    #[test]
    fn fuzz_answer_mutated_real(
        status in status(),
        which in 0..ANSWERS.len(),
        ms in mutations(),
    ) {
        decode_body(status, &apply(ANSWERS[which].as_bytes(), &ms))?;
    }

    #[test]
    fn fuzz_order_id_round_trips(n in any::<u64>(), pad in "[ ]{0,2}") {
        let num: OrderIdRaw = serde_json::from_str(&format!(r#"{{"OrderId":{n}}}"#)).unwrap();
        prop_assert_eq!(num.order_id, OrderId(n));
        let s: OrderIdRaw =
            serde_json::from_str(&format!(r#"{{"OrderId":"{pad}{n}{pad}"}}"#)).unwrap();
        prop_assert_eq!(s.order_id, OrderId(n));
        let back: OrderId = serde_json::from_str(&serde_json::to_string(&OrderId(n)).unwrap())
            .unwrap();
        prop_assert_eq!(back, OrderId(n));
        prop_assert_eq!(OrderId(n).to_string().parse::<OrderId>().unwrap(), OrderId(n));
        // One past u64::MAX, negatives and fractions are refused, not wrapped.
        let over = u128::from(n) + u128::from(u64::MAX) + 1;
        for bad in [format!("{over}"), format!("\"{over}\""), format!("-{}", n.max(1)), format!("{n}.5")] {
            let r = serde_json::from_str::<OrderIdRaw>(&format!(r#"{{"OrderId":{bad}}}"#));
            prop_assert!(r.is_err(), "OrderId {bad} accepted as {:?}", r.map(|r| r.order_id));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. PEM intake.

struct Pems {
    /// PKCS#8 key of the leaf.
    key: String,
    leaf: String,
    ca: String,
    domains: Vec<String>,
}

fn pems() -> &'static Pems {
    static P: OnceLock<Pems> = OnceLock::new();
    P.get_or_init(|| {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let domains = vec!["example.com".to_string(), "www.example.com".to_string()];
        let leaf = CertificateParams::new(domains.clone())
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        Pems {
            key: key.serialize_pem(),
            leaf: leaf.pem(),
            ca: ca.pem(),
            domains,
        }
    })
}

/// Base64 runs of the key body long enough to be key material if they appear in a message.
fn key_fragments(key_pem: &str) -> Vec<String> {
    let body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    body.as_bytes()
        .chunks(12)
        .filter(|c| c.len() == 12)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

fn no_key_material(msg: &str) -> Result<(), TestCaseError> {
    for frag in key_fragments(&pems().key) {
        prop_assert!(!msg.contains(&frag), "key material in an error: {msg}");
    }
    Ok(())
}

fn check_set(set: &PemSet) -> Result<(), TestCaseError> {
    let now = chrono::Utc::now();
    match deploy::check(set, &pems().domains, now) {
        Ok(info) => {
            let mut names = info.names.clone();
            names.sort();
            prop_assert_eq!(names, pems().domains.clone());
            prop_assert!(info.not_after > now);
        }
        Err(e) => {
            no_key_material(&e.to_string())?;
            no_key_material(&format!("{e:?}"))?;
        }
    }
    Ok(())
}

#[test]
fn the_real_pem_set_passes() {
    let p = pems();
    let set = PemSet {
        cert_pem: p.leaf.clone(),
        chain_pem: p.ca.clone(),
        key_pem: Secret::new(p.key.clone()),
    };
    deploy::check(&set, &p.domains, chrono::Utc::now()).unwrap();
    let (leaf, chain) = deploy::split_chain(&format!("{}{}", p.leaf, p.ca)).unwrap();
    assert_eq!(leaf.trim(), p.leaf.trim());
    assert_eq!(chain.trim(), p.ca.trim());
    assert!(cas_certd::keys::load_key(&p.key).is_ok());
}

proptest! {
    #![proptest_config(cfg(128))]

    #[test]
    fn fuzz_pem_arbitrary_text(text in any::<String>(), wrap in any::<bool>()) {
        let text = if wrap {
            format!("-----BEGIN CERTIFICATE-----\n{text}\n-----END CERTIFICATE-----\n")
        } else {
            text
        };
        if let Ok((leaf, chain)) = deploy::split_chain(&text) {
            // Whatever is accepted is re-encoded canonically and splits the same way again.
            let again = deploy::split_chain(&format!("{leaf}{chain}")).unwrap();
            prop_assert_eq!(again, (leaf, chain));
        }
        let _ = cas_certd::keys::load_key(&text);
        check_set(&PemSet {
            cert_pem: text.clone(),
            chain_pem: String::new(),
            key_pem: Secret::new(pems().key.clone()),
        })?;
    }

    #[test]
    fn fuzz_pem_mutated_chain(ms in mutations()) {
        let p = pems();
        let chain = String::from_utf8_lossy(&apply(format!("{}{}", p.leaf, p.ca).as_bytes(), &ms))
            .into_owned();
        if let Ok((leaf, rest)) = deploy::split_chain(&chain) {
            check_set(&PemSet {
                cert_pem: leaf,
                chain_pem: rest,
                key_pem: Secret::new(p.key.clone()),
            })?;
        }
        check_set(&PemSet {
            cert_pem: chain,
            chain_pem: p.ca.clone(),
            key_pem: Secret::new(p.key.clone()),
        })?;
    }

    #[test]
    fn fuzz_pem_mutated_key(ms in mutations()) {
        let p = pems();
        let key = String::from_utf8_lossy(&apply(p.key.as_bytes(), &ms)).into_owned();
        let _ = cas_certd::keys::load_key(&key);
        check_set(&PemSet {
            cert_pem: p.leaf.clone(),
            chain_pem: p.ca.clone(),
            key_pem: Secret::new(key),
        })?;
    }

    /// A broken answer may put the key where the certificate belongs: never echoed.
    #[test]
    fn fuzz_pem_key_in_certificate_field(ms in mutations()) {
        let p = pems();
        let mixed = String::from_utf8_lossy(&apply(format!("{}{}", p.key, p.leaf).as_bytes(), &ms))
            .into_owned();
        if let Err(e) = deploy::split_chain(&mixed) {
            no_key_material(&e.to_string())?;
        }
        check_set(&PemSet {
            cert_pem: mixed,
            chain_pem: String::new(),
            key_pem: Secret::new(p.key.clone()),
        })?;
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Domain names.

/// What every accepted name must look like.
fn check_accepted_domain(input: &str, name: &str) -> Result<(), TestCaseError> {
    prop_assert!(name.len() <= 253, "{input:?} → {name:?} too long");
    let (wild, rest) = match name.strip_prefix("*.") {
        Some(r) => (true, r),
        None => (false, name),
    };
    let _ = wild;
    prop_assert!(
        !rest.contains('*'),
        "{input:?} → {name:?}: misplaced wildcard"
    );
    let labels: Vec<&str> = rest.split('.').collect();
    prop_assert!(labels.len() >= 2, "{input:?} → {name:?}: single label");
    for l in labels {
        prop_assert!(
            (1..=63).contains(&l.len()),
            "{input:?} → {name:?}: label {l:?} length"
        );
        prop_assert!(
            l.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'),
            "{input:?} → {name:?}: label {l:?} not lower-case LDH"
        );
        prop_assert!(
            !l.starts_with('-') && !l.ends_with('-'),
            "{input:?} → {name:?}: label {l:?} hyphen at an end"
        );
        if l.starts_with("xn--") {
            // A real A-label: it decodes and re-encodes to itself.
            let (u, r) = idna::domain_to_unicode(l);
            prop_assert!(r.is_ok(), "{input:?} → {name:?}: bad A-label {l:?}");
            let back = idna::domain_to_ascii(&u).ok();
            prop_assert_eq!(back.as_deref(), Some(l));
        }
    }
    // Normalising is idempotent.
    let again = normalize_domain(name).ok();
    prop_assert_eq!(again.as_deref(), Some(name));
    Ok(())
}

fn check_domain(input: &str) -> Result<(), TestCaseError> {
    match normalize_domain(input) {
        Ok(name) => check_accepted_domain(input, &name)?,
        Err(e) => prop_assert!(!e.is_empty()),
    }
    Ok(())
}

proptest! {
    #![proptest_config(cfg(512))]

    #[test]
    fn fuzz_domain_arbitrary_unicode(s in any::<String>()) {
        check_domain(&s)?;
    }

    #[test]
    fn fuzz_domain_like(
        s in "(\\*\\.)?([a-zA-Z0-9\\-_*\u{e9}\u{fc}\u{3002}\u{ff0e}\u{ff0a}\u{200d}\u{df}]{0,70}\\.){0,5}[a-zA-Z0-9\\-\u{e9}]{0,70}\\.?"
    ) {
        check_domain(&s)?;
    }

    #[test]
    fn fuzz_domain_idn_labels(
        wild in any::<bool>(),
        labels in prop::collection::vec("[a-z0-9\u{e0}-\u{ff}\u{4e00}-\u{4e20}\\-]{1,30}", 1..6),
    ) {
        let s = format!("{}{}", if wild { "*." } else { "" }, labels.join("."));
        check_domain(&s)?;
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Challenge Uri → path.

const PREFIX: &str = cas_certd::validation::file::PREFIX;

fn uri() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => any::<String>(),
        2 => any::<String>().prop_map(|s| format!("{PREFIX}{s}")),
        4 => "[a-zA-Z0-9._\\-/%\\\\\0 ?#~:]{0,16}".prop_map(|s| format!("{PREFIX}{s}")),
        1 => "(/|\\.|\\.\\.|%2e|%2f|\\\\|//|[a-z]{1,4}){0,8}".prop_map(|s| format!("{PREFIX}{s}")),
        1 => "(/|\\.well-known|pki-validation|\\.\\.|%2e|[a-z]{1,3}){0,8}",
    ]
}

/// Lexical property of an accepted Uri: exactly one plain file name inside the challenge dir.
fn check_accepted_uri(uri: &str) -> Result<(), TestCaseError> {
    let Ok(name) = check_uri(uri) else {
        return Ok(());
    };
    prop_assert_eq!(format!("{PREFIX}{name}"), uri);
    prop_assert!(
        !name.contains(['/', '\\', '\0', '%']),
        "{uri:?} accepted with name {name:?}"
    );
    let webroot = Path::new("/srv/www");
    let path = webroot.join(".well-known/pki-validation").join(name);
    let rel = path.strip_prefix(webroot).unwrap();
    let parts: Vec<Component<'_>> = rel.components().collect();
    prop_assert_eq!(parts.len(), 3, "{:?} → {:?}", uri, path);
    prop_assert!(
        parts.iter().all(|c| matches!(c, Component::Normal(_))),
        "{uri:?} → {path:?} has a non-plain component"
    );
    prop_assert_eq!(
        path.parent(),
        Some(&*webroot.join(".well-known/pki-validation"))
    );
    Ok(())
}

/// Every non-directory entry under `dir`, symlinks not followed.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

/// `present_local` with a hostile Uri writes at most the one challenge file, inside the webroot.
fn present_on_disk(uri: &str, content: &str, plant_symlink: bool) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let webroot = tmp.path().join("webroot");
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&webroot).unwrap();
    std::fs::create_dir(&outside).unwrap();
    let planted = webroot.join(".well-known");
    if plant_symlink {
        std::os::unix::fs::symlink(&outside, &planted).unwrap();
    }
    let domains = vec!["example.com".to_string()];
    let r = runtime().block_on(validation::present_local(
        &Validation::File {
            webroot: webroot.clone(),
        },
        &Challenge::File {
            domain: "example.com".into(),
            uri: uri.to_string(),
            content: content.to_string(),
        },
        "fuzz",
        &domains,
    ));
    prop_assert!(
        files_under(&outside).is_empty(),
        "{uri:?} wrote outside the webroot"
    );
    let mut written = files_under(&webroot);
    if plant_symlink {
        written.retain(|p| p != &planted);
    }
    match r {
        Ok(Some(Presented::File { path })) => {
            prop_assert!(!plant_symlink, "wrote through a symlink: {path:?}");
            let name = check_uri(uri);
            prop_assert!(name.is_ok(), "{uri:?} written though check_uri refuses it");
            let want = webroot
                .join(".well-known/pki-validation")
                .join(name.unwrap_or_default());
            prop_assert_eq!(&path, &want);
            prop_assert_eq!(&written, &vec![want.clone()]);
            prop_assert_eq!(std::fs::read_to_string(&want).unwrap(), content);
            let cleaned = runtime()
                .block_on(validation::cleanup_local(&Presented::File { path }))
                .unwrap();
            prop_assert!(cleaned);
            prop_assert!(files_under(&webroot).is_empty());
        }
        Ok(other) => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
        Err(e) => {
            prop_assert!(
                written.is_empty(),
                "{uri:?} refused ({e}) but wrote {written:?}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cfg(512))]

    #[test]
    fn fuzz_uri_lexical(uri in uri()) {
        check_accepted_uri(&uri)?;
    }
}

proptest! {
    #![proptest_config(cfg(64))]

    #[test]
    fn fuzz_uri_present_on_disk(
        uri in uri(),
        content in "[a-zA-Z0-9._\\-]{0,40}",
        plant in proptest::bool::weighted(0.2),
    ) {
        present_on_disk(&uri, &content, plant)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions: bugs the targets above found, kept as plain tests.

/// Found by `fuzz_config_mutated_example` and `fuzz_config_tomlish_text`: a quoted key holding
/// a newline was echoed raw (one error became two lines, and a config could forge log lines),
/// and an empty key `""` gave `: : unknown key`. Keys that are not bare are now quoted.
#[test]
fn regression_config_keys_are_quoted_in_errors() {
    let text = "[cas]\n\"a\\nb\" = 1\n";
    let e = cas_certd::config::parse(text, Some(Path::new(SOURCE))).unwrap_err();
    assert_eq!(e.errors.len(), 1, "{:?}", e.errors);
    assert!(
        e.errors[0].starts_with(&format!("{SOURCE}:2:1: cas.\"a\\nb\": unknown key")),
        "{:?}",
        e.errors
    );
    check_config(text).unwrap();
    let e = cas_certd::config::parse("\"\"=0", Some(Path::new(SOURCE))).unwrap_err();
    assert!(
        e.errors[0].starts_with(&format!("{SOURCE}:1:1: \"\": unknown key")),
        "{:?}",
        e.errors
    );
    check_config("\"\"=0").unwrap();
}

// ---------------------------------------------------------------------------------------------
// Hostile answers at the HTTP level: a 100 MB body.

/// A loopback server answering every request with a 100 MB body, announced by Content-Length
/// (`chunked == false`) or streamed chunked without a length; returns its address and the bytes
/// it managed to send in total.
async fn huge_answer_server(
    chunked: bool,
) -> (url::Url, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const TOTAL: usize = 100 << 20;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                // The request head and its Content-Length body.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let want = loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..pos]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break pos + 4 + len;
                    }
                };
                while buf.len() < want {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = if chunked {
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
                } else {
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {TOTAL}\r\n\r\n")
                };
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let block = vec![b' '; 64 << 10];
                let mut done = 0;
                while done < TOTAL {
                    let r = if chunked {
                        let mut framed = format!("{:x}\r\n", block.len()).into_bytes();
                        framed.extend_from_slice(&block);
                        framed.extend_from_slice(b"\r\n");
                        s.write_all(&framed).await
                    } else {
                        s.write_all(&block).await
                    };
                    if r.is_err() {
                        return;
                    }
                    done += block.len();
                    counter.fetch_add(block.len(), Ordering::Relaxed);
                }
                if chunked {
                    let _ = s.write_all(b"0\r\n\r\n").await;
                }
            });
        }
    });
    (url::Url::parse(&format!("http://{addr}")).unwrap(), sent)
}

fn client_for(endpoint: url::Url) -> cas_api::Client {
    use cas_api::credentials::{AccessKey, Credentials};
    use cas_api::{ClientOptions, SignatureVersion};
    let opts = ClientOptions {
        cas_endpoint: endpoint.clone(),
        alidns_endpoint: endpoint,
        signature: SignatureVersion::V1,
        connect_timeout: std::time::Duration::from_secs(5),
        read_timeout: std::time::Duration::from_secs(20),
        qps: 100.0,
        qps_overrides: Vec::new(),
        max_attempts: 1,
        max_retry_time: std::time::Duration::from_secs(5),
    };
    let creds = Credentials::fixed(AccessKey {
        id: "fuzzid".into(),
        secret: Secret::new("fuzzsecret"),
        security_token: None,
        expires: None,
    });
    cas_api::Client::new(&opts, creds).unwrap()
}

/// Without a cap the client buffered the whole 100 MB (and an endless chunked body until the
/// read timeout); now it stops at `MAX_ANSWER_BYTES` with a clear error, and a create that met
/// such an answer is "outcome unknown" (the order may exist), never repeated blindly.
#[tokio::test]
async fn hostile_100_mb_answer_is_refused() {
    use cas_api::model::{Contact, ValidateType};
    use cas_api::ErrorClass;
    const CAP: usize = cas_api::client::MAX_ANSWER_BYTES;
    for chunked in [false, true] {
        let (url, sent) = huge_answer_server(chunked).await;
        let client = client_for(url);
        let started = std::time::Instant::now();
        let e = client
            .describe_certificate_state(OrderId(1))
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("answer larger than 4 MiB"),
            "chunked={chunked}: {e}"
        );
        let e = client
            .create_certificate_request(
                "symantec-free-1-free",
                "example.com",
                &Contact {
                    name: "n".into(),
                    phone: "1".into(),
                    email: "e@example.com".into(),
                },
                ValidateType::Dns,
            )
            .await
            .unwrap_err();
        assert_eq!(e.class(), ErrorClass::OutcomeUnknown, "{e}");
        assert!(e.to_string().contains("larger than"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(15));
        // Give the server a moment to notice the hang-up, then check how much it pushed.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let pushed = sent.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            pushed < 2 * (CAP + (16 << 20)),
            "chunked={chunked}: the server pushed {pushed} bytes, the client kept reading"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Challenges from the network → what the operator is told (manual) or a command gets.

fn field(common: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(common).prop_map(str::to_string),
        1 => any::<String>(),
        1 => "[ -~\n\r\t\u{1b}\u{202e}]{0,20}",
    ]
    .boxed()
}

fn challenge() -> impl Strategy<Value = Challenge> {
    prop_oneof![
        (
            field(&[
                "_dnsauth",
                "_dnsauth.example.com",
                "_dnsauth.example.com.",
                "example.com",
                "a..b",
                "../x"
            ]),
            field(&["TXT", "txt", "CNAME", "A", ""]),
            field(&["20240101abcdef", "v=1", "a b"]),
        )
            .prop_map(
                |(record_domain, record_type, record_value)| Challenge::Dns {
                    record_domain,
                    record_type,
                    record_value,
                }
            ),
        (
            field(&["example.com", "EXAMPLE.com", "evil.example.net"]),
            field(&[
                "/.well-known/pki-validation/fileauth.txt",
                "/.well-known/pki-validation/../x"
            ]),
            field(&["token", "a b", ""]),
        )
            .prop_map(|(domain, uri, content)| Challenge::File {
                domain,
                uri,
                content,
            }),
    ]
}

/// The text shown to the operator (and logged) is one clean line: nothing from the answer can
/// add lines or terminal escapes to the daemon's output.
fn check_instructions(c: &Challenge) -> Result<(), TestCaseError> {
    let domains = vec!["example.com".to_string()];
    if let Ok(text) = validation::manual_instructions(c, &domains) {
        prop_assert!(
            !text.chars().any(|ch| ch.is_control() || ch == '\u{202e}'),
            "{c:?} → {text:?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(cfg(512))]

    #[test]
    fn fuzz_challenge_instructions(c in challenge()) {
        check_instructions(&c)?;
    }
}

/// Found by `fuzz_challenge_instructions`: the DNS RecordType was not checked, so an answer's
/// `"RecordType":"TXT\nFAKE LOG LINE"` reached the operator's instructions verbatim.
#[test]
fn regression_record_type_is_checked() {
    let c = Challenge::Dns {
        record_domain: "_dnsauth".into(),
        record_type: "TXT\nfake log line".into(),
        record_value: "v".into(),
    };
    check_instructions(&c).unwrap();
    assert!(validation::manual_instructions(&c, &["example.com".to_string()]).is_err());
    let ok = Challenge::Dns {
        record_domain: "_dnsauth".into(),
        record_type: "txt".into(),
        record_value: "v".into(),
    };
    let text = validation::manual_instructions(&ok, &["example.com".to_string()]).unwrap();
    assert!(
        text.starts_with("Create a DNS TXT record for example.com"),
        "{text}"
    );
}

/// The hostile Uris the issue names, end to end through `present_local`: each is refused as
/// unsafe, naming the Uri, and nothing is written anywhere.
#[test]
fn hostile_uris_are_refused_and_write_nothing() {
    for uri in [
        "/.well-known/pki-validation/../../../etc/cron.d/x",
        "/.well-known/pki-validation/..",
        "/etc/passwd",
        "/.well-known/pki-validation//etc/passwd",
        "/.well-known/pki-validation/%2e%2e%2fx",
        "/.well-known/pki-validation/a%00.txt",
        "/.well-known/pki-validation/a\0.txt",
        "/.well-known/pki-validation/a\\..\\..\\x",
        "/.well-known/pki-validation/sub/x.txt",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let webroot = tmp.path().join("webroot");
        std::fs::create_dir(&webroot).unwrap();
        let e = runtime()
            .block_on(validation::present_local(
                &Validation::File {
                    webroot: webroot.clone(),
                },
                &Challenge::File {
                    domain: "example.com".into(),
                    uri: uri.into(),
                    content: "token".into(),
                },
                "fuzz",
                &["example.com".to_string()],
            ))
            .unwrap_err();
        assert!(
            matches!(e, validation::ValidationError::Unsafe(_)),
            "{uri:?}: {e:?}"
        );
        assert!(e.to_string().contains("Uri"), "{uri:?}: {e}");
        assert!(
            files_under(tmp.path()).is_empty(),
            "{uri:?} wrote something"
        );
        assert!(!webroot.join(".well-known").exists(), "{uri:?} made dirs");
    }
}

/// Found by `fuzz_answer_arbitrary_json` once it checked for control characters: an error
/// answer's `Code`/`Message`/`RequestId` went into the error (and so the log) verbatim, so a
/// broken or hostile endpoint could split one incident into many log lines or send terminal
/// escapes.
#[test]
fn regression_error_answer_fields_are_one_line() {
    let body = br#"{"RequestId":"r\n2","Code":"Bad\u001b[31m","Message":"line one\nERROR forged line","Recommend":"x\r"}"#;
    let e = decode_answer("DescribeCertificateState", 400, body).unwrap_err();
    let shown = e.to_string();
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    assert!(shown.contains("line one"), "{shown}");
    decode_body(400, body).unwrap();
}

/// Found with a hostile value added to the config target's list: croner's message echoed a
/// `check_schedule` holding ESC verbatim into the error line. Reasons are escaped now.
#[test]
fn config_errors_escape_hostile_values() {
    for text in [
        "check_schedule = \"0 0 0 * * *\\u001b[31m\"\n",
        "log_format = \"text\\nERROR forged\"\n",
        "[[certificate]]\nname = \"a\\tb\"\ndomains = [\"ex\\u001bample.com\"]\n",
    ] {
        let e = cas_certd::config::parse(text, Some(Path::new(SOURCE))).unwrap_err();
        check_config(text).unwrap();
        assert!(!e.errors.is_empty());
    }
}
