//! `cas_api::ClientOptions` is the one home of the client's defaults and endpoint rule: the
//! operator commands without a config file get the same timeouts as the daemon, and an
//! endpoint given on the command line meets the same rule as one in the config.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::client_interop::run;

const KEY: [(&str, &str); 2] = [
    ("ALIBABA_CLOUD_ACCESS_KEY_ID", "testid"),
    ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "testsecret"),
];

#[test]
fn api_options_cli_endpoint_meets_the_config_rule() {
    let home = tempfile::tempdir().expect("home");
    for (endpoint, why) in [
        (
            "https://user:pw@127.0.0.1:1/",
            "credentials do not belong in the endpoint URL",
        ),
        (
            "http://127.0.0.1:1/?Action=x",
            "the endpoint may not have a query string",
        ),
    ] {
        let o = run(home.path(), &KEY, &["package", "--endpoint", endpoint]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{endpoint}: {o:?}");
        assert!(err.contains(why), "{endpoint}: {err}");
        // The same text a config file gets for the same URL (config_errors:: checks the form).
        assert!(!err.contains("pw"), "password echoed: {err}");
    }
}

/// An answer 12 s late: longer than the 10 s the operator commands used to wait, within the
/// 30 s read timeout of `ClientOptions::default()` that the daemon has always used.
#[test]
fn api_options_cli_without_config_waits_the_default_read_timeout() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let mut buf = [0u8; 16384];
        let _ = s.read(&mut buf);
        std::thread::sleep(Duration::from_secs(12));
        let body = r#"{"RequestId":"R1","ProductCode":"digicert-free-1-free","TotalCount":20,"UsedCount":3,"IssuedCount":2}"#;
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    });
    let home = tempfile::tempdir().expect("home");
    let started = Instant::now();
    let o = run(
        home.path(),
        &KEY,
        &[
            "package",
            "--product",
            "digicert-free-1-free",
            "--json",
            "--endpoint",
            &format!("http://{addr}"),
        ],
    );
    let took = started.elapsed();
    assert!(
        o.status.success(),
        "after {took:?}: exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(took >= Duration::from_secs(12), "{took:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("20") && out.contains("digicert-free-1-free"),
        "{out}"
    );
    server.join().expect("server");
}
