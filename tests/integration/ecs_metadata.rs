//! The ECS RAM role through the real binary (issue 14 item 5): `cas-certd check` gets its key
//! from a metadata stand-in on loopback, in hardened mode (a session token on every GET) and
//! in plain mode (the token call refused), and reaches the simulator with it.
#![allow(clippy::unwrap_used)]
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::support::world::*;
use crate::support::{bin, read_request_head};

/// One request: method, path, the session token header if any.
type Seen = (String, String, Option<String>);

const SESSION_TOKEN_SECRET: &str = "imds-token-Qe81Zr5Wn0";

/// A metadata service: `hardened` hands out a token and answers GETs only with it; otherwise the
/// token PUT gets 403 and GETs are answered without one. The role's key is the simulator's.
fn metadata(hardened: bool) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut rd = BufReader::new(s.try_clone().unwrap());
            let (method, path, headers) = read_request_head(&mut rd);
            let token = headers.get("x-aliyun-ecs-metadata-token").cloned();
            let ttl = headers.get("x-aliyun-ecs-metadata-token-ttl-seconds");
            s2.lock()
                .unwrap()
                .push((method.clone(), path.clone(), token.clone()));
            let exp =
                (chrono::Utc::now() + chrono::TimeDelta::hours(1)).format("%Y-%m-%dT%H:%M:%SZ");
            let (status, body) = if path == "/latest/api/token" {
                match (hardened, method.as_str(), ttl) {
                    (true, "PUT", Some(_)) => ("200 OK", SESSION_TOKEN_SECRET.to_string()),
                    _ => ("403 Forbidden", String::new()),
                }
            } else if hardened && token.as_deref() != Some(SESSION_TOKEN_SECRET) {
                ("401 Unauthorized", String::new())
            } else if path == "/latest/meta-data/ram/security-credentials/cas-certd" {
                (
                    "200 OK",
                    format!(
                        r#"{{"Code":"Success","AccessKeyId":"{KEY_ID}","AccessKeySecret":"{KEY_SECRET}","SecurityToken":"sts-token-x","Expiration":"{exp}"}}"#
                    ),
                )
            } else {
                ("404 Not Found", String::new())
            };
            let mut s = s;
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (format!("http://{addr}"), seen)
}

fn check_with_role(w: &World, endpoint: &str) -> std::process::Output {
    let cfg = w.config(&format!(
        "{}[credentials]\necs_ram_role = \"cas-certd\"\n",
        w.file_cert("one", "\"one.example.test\"")
    ));
    let out = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .arg("check")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", w.p("home"))
        .env("ALIBABA_CLOUD_ECS_METADATA_ENDPOINT", endpoint)
        .output()
        .unwrap();
    keep_output("ecs-check", &out);
    out
}

#[test]
fn check_reaches_the_api_with_an_ecs_role_in_hardened_and_plain_mode() {
    let w = World::new(&[]);
    for hardened in [true, false] {
        let (endpoint, seen) = metadata(hardened);
        let out = check_with_role(&w, &endpoint);
        assert!(out.status.success(), "hardened={hardened}: {out:?}");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen[0].0, "PUT", "{seen:?}");
        assert_eq!(seen[0].1, "/latest/api/token");
        let gets: Vec<&Seen> = seen.iter().filter(|s| s.0 == "GET").collect();
        assert!(!gets.is_empty(), "{seen:?}");
        for g in gets {
            let want = hardened.then(|| SESSION_TOKEN_SECRET.to_string());
            assert_eq!(g.2, want, "hardened={hardened}: {seen:?}");
        }
        let printed = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!printed.contains(SESSION_TOKEN_SECRET), "{printed}");
    }
}
