use super::*;
use crate::model::*;

#[test]
fn host_header_has_port_when_not_default() {
    let u = |s: &str| url::Url::parse(s).expect("url");
    assert_eq!(
        host_header(&u("https://cas.aliyuncs.com/")),
        "cas.aliyuncs.com"
    );
    assert_eq!(host_header(&u("http://127.0.0.1:9000")), "127.0.0.1:9000");
}

#[test]
fn error_bodies_decode_and_redact() {
    let e = decode_answer(
        "A",
        400,
        br#"{"RequestId":"R1","HostId":"h","Code":"SignatureDoesNotMatch","Message":"Specified signature is not matched with our calculation. server string to sign is:POST&%2F&AccessKeyId","Recommend":"https://x"}"#,
    )
    .expect_err("error");
    let shown = e.to_string();
    assert!(!shown.contains("string to sign"), "{shown}");
    assert!(!shown.contains("AccessKeyId"), "{shown}");
    assert_eq!(e.code(), Some("SignatureDoesNotMatch"));
    assert_eq!(e.request_id(), Some("R1"));
    let e = decode_answer("A", 503, b"<html>busy</html>").expect_err("error");
    assert_eq!(e.class(), ErrorClass::Retryable);
    let e = decode_answer("A", 200, b"{trunc").expect_err("error");
    assert_eq!(e.class(), ErrorClass::OutcomeUnknown);
    assert!(decode_answer("A", 200, br#"{"RequestId":"x"}"#).is_ok());
}

#[test]
fn creates_become_outcome_unknown_on_5xx() {
    let e = ApiError::Service {
        action: "C".into(),
        status: 503,
        code: "ServiceUnavailable".into(),
        message: "m".into(),
        request_id: "r".into(),
    };
    assert_eq!(as_outcome_unknown(e).class(), ErrorClass::OutcomeUnknown);
    let e = ApiError::Service {
        action: "C".into(),
        status: 404,
        code: "NotRemainCount".into(),
        message: "m".into(),
        request_id: "r".into(),
    };
    assert_eq!(as_outcome_unknown(e).class(), ErrorClass::Permanent);
    let e = ApiError::Service {
        action: "C".into(),
        status: 400,
        code: "InvalidTimeStamp.Expired".into(),
        message: "m".into(),
        request_id: "r".into(),
    };
    assert!(persistent_resign_error(e)
        .to_string()
        .contains("clock is probably skewed"));
}

/// A loopback HTTP server answering scripted (status, body) pairs in order, the last one
/// repeated; it records the SignatureNonce / x-acs-signature-nonce of each request.
async fn scripted(
    answers: Vec<(u16, &'static str)>,
) -> (url::Url, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let nonces = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = nonces.clone();
    tokio::spawn(async move {
        let mut i = 0usize;
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then Content-Length bytes of body.
            let (head_end, len) = loop {
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break (buf.len(), 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..pos]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break (pos + 4, len);
                }
            };
            while buf.len() < head_end + len {
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let text = String::from_utf8_lossy(&buf).to_string();
            let nonce = text
                .split(['&', '\n'])
                .find_map(|kv| {
                    kv.strip_prefix("SignatureNonce=")
                        .or_else(|| kv.strip_prefix("x-acs-signature-nonce: "))
                })
                .unwrap_or("")
                .trim()
                .to_string();
            seen.lock().expect("lock").push(nonce);
            let (status, body) = answers[i.min(answers.len() - 1)];
            i += 1;
            let resp = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
    (
        url::Url::parse(&format!("http://{addr}")).expect("url"),
        nonces,
    )
}

fn test_client(
    endpoint: url::Url,
    sig: SignatureVersion,
) -> (Client, Arc<std::sync::Mutex<Vec<String>>>) {
    let opts = ClientOptions {
        cas_endpoint: endpoint.clone(),
        alidns_endpoint: endpoint,
        signature: sig,
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        qps: 100.0,
        qps_overrides: Vec::new(),
        max_attempts: 4,
        max_retry_time: Duration::from_secs(20),
    };
    let creds = Credentials::fixed(crate::credentials::AccessKey {
        id: "testid".into(),
        secret: crate::secret::Secret::new("testsecret"),
        security_token: None,
        expires: None,
    });
    let mut c = Client::new(&opts, creds).expect("client");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    c.set_observer(Arc::new(move |action: &str, code: &str| {
        s.lock().expect("lock").push(format!("{action}:{code}"));
    }));
    (c, seen)
}

const THROTTLED: &str = r#"{"RequestId":"t","Code":"Throttling.User","Message":"Request was denied due to user flow control."}"#;
const UNAVAILABLE: &str = r#"{"RequestId":"u","Code":"ServiceUnavailable","Message":"busy"}"#;

#[tokio::test]
async fn throttling_is_retried_with_fresh_nonces() {
    for sig in [SignatureVersion::V1, SignatureVersion::V3] {
        let (url, nonces) = scripted(vec![
            (400, THROTTLED),
            (400, THROTTLED),
            (200, r#"{"RequestId":"ok","ProductCode":"p","TotalCount":5,"UsedCount":1,"IssuedCount":1}"#),
        ])
        .await;
        let (c, seen) = test_client(url, sig);
        assert!(!format!("{c:?}").contains("testsecret"));
        let st = c.describe_package_state("p").await.expect("eventually ok");
        assert_eq!(st.total_count, 5);
        assert_eq!(
            *seen.lock().expect("lock"),
            vec![
                "DescribePackageState:Throttling.User",
                "DescribePackageState:Throttling.User",
                "DescribePackageState:OK"
            ]
        );
        let n = nonces.lock().expect("lock").clone();
        assert_eq!(n.len(), 3);
        assert!(n.iter().all(|x| x.len() == 36), "{n:?}");
        assert!(n[0] != n[1] && n[1] != n[2], "nonces reused: {n:?}");
    }
}

#[tokio::test]
async fn a_create_is_not_retried_on_5xx_and_is_outcome_unknown() {
    let (url, nonces) = scripted(vec![(503, UNAVAILABLE)]).await;
    let (c, seen) = test_client(url, SignatureVersion::V1);
    let req = CreateOrder {
        product_code: "p".into(),
        domains: vec!["a.example.com".into()],
        csr: Some(
            "-----BEGIN CERTIFICATE REQUEST-----\nMIIB+/=\n-----END CERTIFICATE REQUEST-----\n"
                .into(),
        ),
        validate_type: ValidateType::Dns,
        contact: Contact {
            name: "n".into(),
            phone: "1".into(),
            email: "e@x".into(),
        },
        company_name: None,
        tags: vec![],
    };
    let e = c
        .create_certificate_for_package(&req)
        .await
        .expect_err("fails");
    assert_eq!(e.class(), ErrorClass::OutcomeUnknown, "{e}");
    assert!(e.to_string().contains("ListUserCertificateOrder"), "{e}");
    assert_eq!(
        nonces.lock().expect("lock").len(),
        1,
        "a create was repeated"
    );
    assert_eq!(seen.lock().expect("lock").len(), 1);
    // Renew likewise.
    let e = c
        .renew_certificate_order(OrderId(1), None)
        .await
        .expect_err("fails");
    assert_eq!(e.class(), ErrorClass::OutcomeUnknown);
    assert_eq!(nonces.lock().expect("lock").len(), 2);
    // A read is retried up to max_attempts.
    let e = c
        .describe_certificate_state(OrderId(1))
        .await
        .expect_err("fails");
    assert_eq!(e.class(), ErrorClass::Retryable);
    assert_eq!(nonces.lock().expect("lock").len(), 6);
}

#[tokio::test]
async fn an_unreadable_create_answer_is_outcome_unknown() {
    let (url, nonces) =
        scripted(vec![(200, r#"{"RequestId":"x","OrderId":"not-a-number"}"#)]).await;
    let (c, _) = test_client(url, SignatureVersion::V1);
    let e = c
        .renew_certificate_order(OrderId(7), None)
        .await
        .expect_err("fails");
    assert_eq!(e.class(), ErrorClass::OutcomeUnknown, "{e}");
    assert_eq!(nonces.lock().expect("lock").len(), 1);
    let e = c.describe_package_state("p").await;
    assert!(e.is_ok(), "absent optional fields are fine: {e:?}");
}

#[tokio::test]
async fn a_throttled_create_is_retried_because_nothing_happened() {
    let (url, nonces) = scripted(vec![
        (400, THROTTLED),
        (200, r#"{"OrderId":"9007199254740993"}"#),
    ])
    .await;
    let (c, _) = test_client(url, SignatureVersion::V3);
    let id = c
        .renew_certificate_order(OrderId(7), Some("CSR"))
        .await
        .expect("ok");
    assert_eq!(id, OrderId(9_007_199_254_740_993));
    assert_eq!(nonces.lock().expect("lock").len(), 2);
}

#[test]
fn server_time_is_read_from_the_expired_message() {
    let t = server_time_in_message(
        "Specified time stamp or date value is expired. Server time is 2026-11-23T20:03:37Z. (see https://x)",
    );
    assert_eq!(
        t.map(|t| t.to_rfc3339()).as_deref(),
        Some("2026-11-23T20:03:37+00:00")
    );
    assert_eq!(
        server_time_in_message("Specified time stamp or date value is expired."),
        None
    );
}

#[tokio::test]
async fn timestamp_rejection_is_retried_once_then_blames_the_clock() {
    let (url, nonces) = scripted(vec![(
        400,
        r#"{"RequestId":"c","Code":"InvalidTimeStamp.Expired","Message":"Specified time stamp or date value is expired."}"#,
    )])
    .await;
    let (c, _) = test_client(url, SignatureVersion::V1);
    let e = c.cancel_order(OrderId(1)).await.expect_err("fails");
    assert_eq!(nonces.lock().expect("lock").len(), 2);
    assert!(e.to_string().contains("clock is probably skewed"), "{e}");

    let (url, nonces) = scripted(vec![
        (400, r#"{"Code":"SignatureNonceUsed","Message":"used"}"#),
        (200, r#"{"RequestId":"ok"}"#),
    ])
    .await;
    let (c, _) = test_client(url, SignatureVersion::V1);
    c.delete_certificate(OrderId(1))
        .await
        .expect("second try ok");
    assert_eq!(nonces.lock().expect("lock").len(), 2);
}

#[tokio::test]
async fn alidns_records_round_trip_shapes() {
    let (url, _) = scripted(vec![(200, r#"{"RequestId":"r","RecordId":"123456789"}"#)]).await;
    let (c, _) = test_client(url, SignatureVersion::V3);
    let id = c
        .add_domain_record(&AddRecord {
            domain_name: "example.com".into(),
            rr: "_dnsauth".into(),
            record_type: "TXT".into(),
            value: "v".into(),
            ttl: Some(600),
        })
        .await
        .expect("add");
    assert_eq!(id, "123456789");
}
