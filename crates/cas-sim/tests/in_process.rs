//! The simulator started in this process ([`cas_sim::start`]) and driven by the real `cas-api`
//! client: signed calls (v1 and V3) over loopback HTTP, as the daemon makes them.
#![allow(clippy::unwrap_used)]

use cas_api::credentials::{AccessKey, Credentials};
use cas_api::model::{
    CertificateState, Challenge, Contact, CreateOrder, ValidateType, DEFAULT_PRODUCT,
};
use cas_api::{ApiError, Client, ClientOptions, Secret, SignatureVersion};
use cas_sim::{SimHandle, SimOptions, DEFAULT_QUOTA};

const AK: &str = "LTAI5tInProcess";
const SK: &str = "in-process-secret";

async fn sim(dir: &std::path::Path) -> SimHandle {
    cas_sim::start(SimOptions {
        data_dir: dir.to_path_buf(),
        credentials: vec![(AK.into(), Secret::new(SK))],
        zones: vec!["example.com".into()],
        ..Default::default()
    })
    .await
    .unwrap()
}

fn client(sim: &SimHandle, signature: SignatureVersion, id: &str, secret: &str) -> Client {
    let url = url::Url::parse(&format!("http://{}", sim.addr)).unwrap();
    let opts = ClientOptions {
        cas_endpoint: url.clone(),
        alidns_endpoint: url,
        signature,
        // Refusals are what these tests look at; one attempt each keeps them quick.
        max_attempts: 1,
        ..ClientOptions::default()
    };
    let creds = Credentials::fixed(AccessKey {
        id: id.into(),
        secret: Secret::new(secret),
        security_token: None,
        expires: None,
    });
    Client::new(&opts, creds).unwrap()
}

fn service_code(e: &ApiError) -> (u16, &str) {
    match e {
        ApiError::Service { status, code, .. } => (*status, code.as_str()),
        other => panic!("expected a service error, got {other}"),
    }
}

#[tokio::test]
async fn describe_package_state_signed_v1_and_v3() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(dir.path()).await;
    for sig in [SignatureVersion::V1, SignatureVersion::V3] {
        let c = client(&sim, sig, AK, SK);
        let st = c.describe_package_state(DEFAULT_PRODUCT).await.unwrap();
        assert_eq!(st.product_code, DEFAULT_PRODUCT, "{sig:?}");
        assert_eq!(
            (st.total_count, st.used_count),
            (DEFAULT_QUOTA, 0),
            "{sig:?}"
        );
        // A product the account never bought.
        let e = c
            .describe_package_state("geotrust-ov-w-personal")
            .await
            .unwrap_err();
        assert_eq!(service_code(&e), (404, "NotFoundPackage"), "{sig:?}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn create_prove_by_dns_and_describe_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(dir.path()).await;
    let c = client(&sim, SignatureVersion::V3, AK, SK);
    let id = c
        .create_certificate_for_package(&CreateOrder {
            product_code: DEFAULT_PRODUCT.into(),
            domains: vec!["www.example.com".into()],
            csr: None,
            validate_type: ValidateType::Dns,
            contact: Contact {
                name: "Ops".into(),
                phone: "13800000000".into(),
                email: "ops@example.com".into(),
            },
            company_name: None,
            tags: Vec::new(),
        })
        .await
        .unwrap();
    let CertificateState::DomainVerify(Challenge::Dns {
        record_domain,
        record_type,
        record_value,
    }) = c.describe_certificate_state(id).await.unwrap()
    else {
        panic!("a new DNS order waits for its proof");
    };
    assert_eq!(record_type, "TXT");
    // The proof, published through the simulated Alidns on the same endpoint.
    let rr = record_domain
        .strip_suffix(".example.com")
        .unwrap_or(&record_domain);
    c.add_domain_record(&cas_api::model::AddRecord {
        domain_name: "example.com".into(),
        rr: rr.into(),
        record_type,
        value: record_value,
        ttl: Some(600),
    })
    .await
    .unwrap();
    let CertificateState::Issued(cert) = c.describe_certificate_state(id).await.unwrap() else {
        panic!("no delays configured: the proof issues at once");
    };
    assert!(
        cert.private_key.is_some(),
        "without a CSR CAS makes the key"
    );
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert.certificate.as_bytes()).unwrap();
    let leaf = pem.parse_x509().unwrap();
    let names: Vec<String> = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(names, ["DNSName(www.example.com)"]);
    let st = c.describe_package_state(DEFAULT_PRODUCT).await.unwrap();
    assert_eq!((st.used_count, st.issued_count), (1, 1));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_bad_signature_or_unknown_key_is_refused_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(dir.path()).await;
    for sig in [SignatureVersion::V1, SignatureVersion::V3] {
        let wrong = client(&sim, sig, AK, "not-the-secret");
        let e = wrong
            .create_certificate_request(
                DEFAULT_PRODUCT,
                "www.example.com",
                &Contact {
                    name: "Ops".into(),
                    phone: "13800000000".into(),
                    email: "ops@example.com".into(),
                },
                ValidateType::Dns,
            )
            .await
            .unwrap_err();
        assert_eq!(service_code(&e), (400, "SignatureDoesNotMatch"), "{sig:?}");
        let stranger = client(&sim, sig, "LTAI5tStranger", SK);
        let e = stranger
            .describe_package_state(DEFAULT_PRODUCT)
            .await
            .unwrap_err();
        assert_eq!(
            service_code(&e),
            (404, "InvalidAccessKeyId.NotFound"),
            "{sig:?}"
        );
    }
    let st = client(&sim, SignatureVersion::V1, AK, SK)
        .describe_package_state(DEFAULT_PRODUCT)
        .await
        .unwrap();
    assert_eq!(st.used_count, 0, "a refused create costs nothing");
    sim.shutdown().await;
}

async fn ledger(sim: &SimHandle) -> serde_json::Value {
    let body = reqwest::get(format!("http://{}/_sim/ledger", sim.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

fn order(domain: &str) -> CreateOrder {
    CreateOrder {
        product_code: DEFAULT_PRODUCT.into(),
        domains: vec![domain.into()],
        csr: None,
        validate_type: ValidateType::Dns,
        contact: Contact {
            name: "Ops".into(),
            phone: "13800000000".into(),
            email: "ops@example.com".into(),
        },
        company_name: None,
        tags: Vec::new(),
    }
}

/// `action_delay`: a create is held before it runs. While held, the ledger counts it and holds
/// no order; a caller that gives up does not undo it (the order is made, and charged, when the
/// delay is over, as a request that reached Alibaba is carried out); a caller that waits gets
/// the usual answer after the delay. Other actions are answered at once.
#[tokio::test]
async fn a_held_create_runs_after_its_delay_even_when_its_caller_gave_up() {
    const CREATE: &str = "CreateCertificateForPackageRequest";
    let delay = std::time::Duration::from_millis(1500);
    let dir = tempfile::tempdir().unwrap();
    let sim = cas_sim::start(SimOptions {
        data_dir: dir.path().to_path_buf(),
        credentials: vec![(AK.into(), Secret::new(SK))],
        zones: vec!["example.com".into()],
        admin: true,
        faults: cas_sim::faults::FaultOptions {
            action_delay: vec![(CREATE.into(), delay)],
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let url = url::Url::parse(&format!("http://{}", sim.addr)).unwrap();
    let impatient = Client::new(
        &ClientOptions {
            cas_endpoint: url.clone(),
            alidns_endpoint: url,
            read_timeout: std::time::Duration::from_millis(300),
            max_attempts: 1,
            ..ClientOptions::default()
        },
        Credentials::fixed(AccessKey {
            id: AK.into(),
            secret: Secret::new(SK),
            security_token: None,
            expires: None,
        }),
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    assert!(impatient
        .create_certificate_for_package(&order("a.example.com"))
        .await
        .is_err());
    let l = ledger(&sim).await;
    assert_eq!(l["held"][CREATE], 1, "{l}");
    assert_eq!(l["orders"].as_array().unwrap().len(), 0, "ran early: {l}");
    // Other actions are not held.
    let c = client(&sim, SignatureVersion::V3, AK, SK);
    c.describe_package_state(DEFAULT_PRODUCT).await.unwrap();
    assert!(
        t0.elapsed() < delay,
        "a describe waited for the held create"
    );
    let l = loop {
        let l = ledger(&sim).await;
        if !l["orders"].as_array().unwrap().is_empty() {
            break l;
        }
        assert!(t0.elapsed() < delay * 10, "the held create never ran: {l}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        t0.elapsed() >= delay,
        "ran {:?} after the call",
        t0.elapsed()
    );
    assert_eq!(l["orders"][0]["domains"][0], "a.example.com");
    let st = c.describe_package_state(DEFAULT_PRODUCT).await.unwrap();
    assert_eq!(st.used_count, 1, "the abandoned create is charged");
    // A caller that waits gets the order, after the delay, answered as usual.
    let t1 = std::time::Instant::now();
    let id = c
        .create_certificate_for_package(&order("b.example.com"))
        .await
        .unwrap();
    assert!(t1.elapsed() >= delay);
    assert!(matches!(
        c.describe_certificate_state(id).await.unwrap(),
        CertificateState::DomainVerify(Challenge::Dns { .. })
    ));
    let l = ledger(&sim).await;
    assert_eq!(l["orders"].as_array().unwrap().len(), 2);
    assert!(l["held"].as_object().unwrap().is_empty(), "{l}");
    sim.shutdown().await;
}
