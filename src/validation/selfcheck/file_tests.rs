//! The FILE checker against a loopback HTTP server whose answers the test chooses.
#![allow(clippy::unwrap_used)]
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{check, resolve_override, BODY_CAP};
use crate::validation::selfcheck::FailureKind;

const URI: &str = "/.well-known/pki-validation/fileauth.txt";
const DOMAIN: &str = "a.example.com";

type Answer = Arc<dyn Fn(&str, &str) -> String + Send + Sync>;

fn response(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Serves `answer(path, host)` to every request on a loopback port.
async fn serve(answer: Answer) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&buf).to_string();
                let path = req.split(' ').nth(1).unwrap_or("").to_string();
                let host = req
                    .lines()
                    .find_map(|l| l.strip_prefix("host: ").or(l.strip_prefix("Host: ")))
                    .unwrap_or("")
                    .to_string();
                let _ = s.write_all(answer(&path, &host).as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

async fn run(addr: SocketAddr, expected: &str) -> Result<(), super::ProofFailure> {
    check(&[(DOMAIN.into(), addr)], DOMAIN, URI, expected).await
}

#[tokio::test]
async fn the_proof_served_with_a_trailing_newline_to_the_right_host_is_ok() {
    let addr = serve(Arc::new(|path, host| {
        if host != DOMAIN {
            return response("421 Misdirected Request", "", "");
        }
        match path {
            URI => response("200 OK", "", "tok-123\n"),
            _ => response("404 Not Found", "", ""),
        }
    }))
    .await;
    run(addr, "tok-123").await.unwrap();
}

#[tokio::test]
async fn an_http_error_names_the_status_and_the_address() {
    for (status, code) in [
        ("403 Forbidden", 403),
        ("404 Not Found", 404),
        ("500 Oops", 500),
    ] {
        let addr = serve(Arc::new(move |_, _| {
            response(status, "", "<html>denied</html>")
        }))
        .await;
        let e = run(addr, "tok").await.unwrap_err();
        assert_eq!(e.kind, FailureKind::Http);
        assert_eq!(e.reason, format!("HTTP {code} from {addr}"));
    }
}

#[tokio::test]
async fn a_refused_connection_names_the_address() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let e = run(addr, "tok").await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Network);
    assert_eq!(e.reason, format!("connection refused to {addr}"));
}

#[tokio::test]
async fn other_content_is_reported_without_the_body() {
    let addr = serve(Arc::new(|_, _| response("200 OK", "", "SECRET-PAGE-TEXT"))).await;
    let e = run(addr, "tok").await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Content);
    assert_eq!(e.reason, format!("content differs at {addr}"));
    assert!(!e.reason.contains("SECRET"));
}

#[tokio::test]
async fn a_body_over_the_cap_is_not_read_to_the_end() {
    let big = "x".repeat(BODY_CAP * 16);
    let addr = serve(Arc::new(move |_, _| response("200 OK", "", &big))).await;
    let e = run(addr, "tok").await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Content);
    assert!(e.reason.contains("longer than 4096 bytes"), "{}", e.reason);
}

#[tokio::test]
async fn a_redirect_on_the_same_host_over_http_is_followed() {
    let addr = serve(Arc::new(|path, _| match path {
        URI => response("301 Moved", "Location: /proof/fileauth.txt\r\n", ""),
        "/proof/fileauth.txt" => response(
            "302 Found",
            &format!("Location: http://{DOMAIN}/final.txt?x=1\r\n"),
            "",
        ),
        "/final.txt?x=1" => response("200 OK", "", "tok"),
        _ => response("404 Not Found", "", ""),
    }))
    .await;
    run(addr, "tok").await.unwrap();
}

#[tokio::test]
async fn redirects_elsewhere_are_not_followed() {
    for location in [
        format!("https://{DOMAIN}{URI}"),
        format!("http://evil.example.net{URI}"),
        format!("http://{DOMAIN}:8080{URI}"),
        "file:///etc/passwd".to_string(),
    ] {
        let header = format!("Location: {location}\r\n");
        let addr = serve(Arc::new(move |_, _| response("301 Moved", &header, ""))).await;
        let e = run(addr, "tok").await.unwrap_err();
        assert_eq!(e.kind, FailureKind::Redirect, "{location}");
        assert!(
            e.reason
                .starts_with(&format!("HTTP 301 from {addr} redirects")),
            "{}",
            e.reason
        );
        assert!(
            !e.reason.contains("evil") && !e.reason.contains("passwd"),
            "{}",
            e.reason
        );
    }
}

#[tokio::test]
async fn a_redirect_loop_stops_after_three() {
    let addr = serve(Arc::new(|_, _| {
        response("302 Found", &format!("Location: {URI}\r\n"), "")
    }))
    .await;
    let e = run(addr, "tok").await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Redirect);
    assert_eq!(e.reason, format!("more than 3 redirects from {addr}"));
}

#[test]
fn overrides_match_exact_names_first_then_one_label_patterns() {
    let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
    let map = vec![
        ("*.example.com".to_string(), a),
        ("www.example.com".to_string(), b),
    ];
    assert_eq!(resolve_override(&map, "www.example.com"), Some(b));
    assert_eq!(resolve_override(&map, "api.example.com"), Some(a));
    assert_eq!(resolve_override(&map, "a.b.example.com"), None);
    assert_eq!(resolve_override(&map, "example.com"), None);
    assert_eq!(resolve_override(&map, "xexample.com"), None);
}
