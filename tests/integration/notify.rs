//! Notifications (`[notify]`, issue 14 item 4) end to end: the daemon against the simulator,
//! a webhook receiver on loopback that checks each service's body and signature (recomputed in
//! Python from the services' published samples, not by the daemon's code), an argv notifier,
//! the rate limit under a real flood, and a credentials file that is refused.
#![allow(clippy::unwrap_used)]
use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::support::world::*;
use crate::support::{free_port, python, read_request_head};

/// Secrets of the test webhooks (the names make `scripts/scan-logs.sh` look for them too).
const DINGTALK_SECRET: &str = "SECding-Hk39xPq2Lw8v";
const FEISHU_SECRET: &str = "feishu-Tn27Vb0mQz4s";
const GENERIC_SECRET: &str = "generic-Mz81Cv5nRt6y";
/// The tokens in the URLs: a webhook URL is a secret too.
const URL_TOKEN_SECRET: &str = "tok-Jw4Ra9Ls2Ke7";

#[derive(Debug, Clone)]
struct Req {
    /// Path and query.
    target: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Req {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// The message text, wherever this service keeps it (the whole body for generic).
    fn text(&self) -> String {
        let j = self.json();
        let t = match self.kind() {
            "dingtalk" | "wecom" => &j["text"]["content"],
            "feishu" => &j["content"]["text"],
            "slack" => &j["text"],
            _ => return String::from_utf8_lossy(&self.body).into_owned(),
        };
        t.as_str().unwrap_or("").to_string()
    }
    fn kind(&self) -> &str {
        self.target
            .trim_start_matches('/')
            .split(['/', '?'])
            .next()
            .unwrap_or("")
    }
}

/// A webhook receiver: records every POST and answers as the service would; the first
/// `fail_first` requests to `/generic` get 503 (so the retry is exercised).
struct Receiver {
    addr: SocketAddr,
    reqs: Arc<Mutex<Vec<Req>>>,
}

fn receiver(fail_first: usize) -> Receiver {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let reqs = Arc::new(Mutex::new(Vec::new()));
    let (r, failures) = (reqs.clone(), Arc::new(Mutex::new(fail_first)));
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (r, failures) = (r.clone(), failures.clone());
            std::thread::spawn(move || {
                let mut rd = BufReader::new(s.try_clone().unwrap());
                let (_, target, headers) = read_request_head(&mut rd);
                let n: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; n];
                rd.read_exact(&mut body).unwrap();
                let req = Req {
                    target,
                    headers,
                    body,
                };
                let (status, answer) = match req.kind() {
                    "generic" => {
                        let mut f = failures.lock().unwrap();
                        if *f > 0 {
                            *f -= 1;
                            ("503 Service Unavailable", "")
                        } else {
                            ("200 OK", "")
                        }
                    }
                    "dingtalk" | "wecom" => ("200 OK", r#"{"errcode":0,"errmsg":"ok"}"#),
                    "feishu" => ("200 OK", r#"{"code":0,"msg":"success"}"#),
                    _ => ("200 OK", "ok"),
                };
                r.lock().unwrap().push(req);
                let mut s = s;
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            });
        }
    });
    Receiver { addr, reqs }
}

impl Receiver {
    fn all(&self) -> Vec<Req> {
        self.reqs.lock().unwrap().clone()
    }
    /// Requests of this kind whose message names `event` (and `cert`, when given).
    fn got(&self, kind: &str, event: &str, cert: Option<&str>) -> Vec<Req> {
        self.all()
            .into_iter()
            .filter(|r| r.kind() == kind)
            .filter(|r| {
                let t = r.text();
                t.contains(event)
                    && cert.is_none_or(|c| {
                        t.contains(&format!("cert\":\"{c}\""))
                            || t.contains(&format!("\ncert: {c}\n"))
                    })
            })
            .collect()
    }
}

/// What Python's standard library makes of a signature, following the services' samples.
fn py(script: &str, args: &[&str], stdin: &[u8]) -> String {
    let mut c = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

const DINGTALK_PY: &str = "import base64,hashlib,hmac,sys\n\
ts,secret=sys.argv[1],sys.argv[2]\n\
s=hmac.new(secret.encode('utf-8'),f'{ts}\\n{secret}'.encode('utf-8'),digestmod=hashlib.sha256).digest()\n\
print(base64.b64encode(s).decode())";
const FEISHU_PY: &str = "import base64,hashlib,hmac,sys\n\
ts,secret=sys.argv[1],sys.argv[2]\n\
s=hmac.new(f'{ts}\\n{secret}'.encode('utf-8'),b'',digestmod=hashlib.sha256).digest()\n\
print(base64.b64encode(s).decode())";
const GENERIC_PY: &str = "import hashlib,hmac,sys\n\
print('sha256='+hmac.new(sys.argv[1].encode(),sys.stdin.buffer.read(),hashlib.sha256).hexdigest())";

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Checks the request's signature as the service would.
fn assert_signed(r: &Req) {
    match r.kind() {
        "dingtalk" => {
            let u = url::Url::parse(&format!("http://x{}", r.target)).unwrap();
            let q: HashMap<_, _> = u.query_pairs().into_owned().collect();
            assert_eq!(q["access_token"], URL_TOKEN_SECRET);
            let ts = &q["timestamp"];
            let ms: i64 = ts.parse().unwrap();
            assert!((ms / 1000 - now_s()).abs() < 120, "stale timestamp {ts}");
            assert_eq!(q["sign"], py(DINGTALK_PY, &[ts, DINGTALK_SECRET], b""));
        }
        "feishu" => {
            let j = r.json();
            let ts = j["timestamp"].as_str().unwrap();
            assert!((ts.parse::<i64>().unwrap() - now_s()).abs() < 120, "{ts}");
            assert_eq!(j["sign"], py(FEISHU_PY, &[ts, FEISHU_SECRET], b""));
            assert_eq!(j["msg_type"], "text");
        }
        "generic" => {
            assert_eq!(
                r.headers["x-cas-certd-signature"],
                py(GENERIC_PY, &[GENERIC_SECRET], &r.body)
            );
        }
        "wecom" => {
            assert_eq!(r.json()["msgtype"], "text");
            assert!(
                r.target.ends_with(&format!("key={URL_TOKEN_SECRET}")),
                "{}",
                r.target
            );
        }
        "slack" => assert!(r.target.contains(URL_TOKEN_SECRET), "{}", r.target),
        other => panic!("unexpected request to {other}"),
    }
    assert_eq!(r.headers["content-type"], "application/json");
}

/// `[notify]` with every format and the argv notifier, the Feishu webhook's URL and secret in
/// a credentials file.
fn notify_table(w: &World, rx: &Receiver, extra: &str) -> String {
    let cred = w.p("feishu.cred");
    std::fs::write(
        &cred,
        format!(
            "# Feishu robot\nurl = http://{}/feishu/open-apis/bot/v2/hook/{URL_TOKEN_SECRET}\nsecret = {FEISHU_SECRET}\n",
            rx.addr
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o600)).unwrap();
    let a = rx.addr;
    format!(
        r#"
[notify]
{extra}
command = ["sh", "-c", "cat >> {jsonl}; echo \"$CAS_CERTD_EVENT $CAS_CERTD_EVENT_CERT\" >> {envlog}"]
webhook = [
  {{ url = "http://{a}/dingtalk/robot/send?access_token={URL_TOKEN_SECRET}", format = "dingtalk", secret = "{DINGTALK_SECRET}" }},
  {{ url = "http://{a}/wecom/cgi-bin/webhook/send?key={URL_TOKEN_SECRET}", format = "wecom" }},
  {{ credentials = "{cred}", format = "feishu" }},
  {{ url = "http://{a}/slack/services/T0/B0/{URL_TOKEN_SECRET}", format = "slack" }},
  {{ url = "http://{a}/generic/cas-certd", format = "generic", secret = "{GENERIC_SECRET}" }},
]
"#,
        jsonl = w.p("notify.jsonl").display(),
        envlog = w.p("notify-env.txt").display(),
        cred = cred.display(),
    )
}

const KINDS: [&str; 5] = ["dingtalk", "wecom", "feishu", "slack", "generic"];

#[test]
fn a_failing_reload_hook_and_a_refused_certificate_reach_every_webhook_and_the_command() {
    // `bad` is issued for another key than ours: refused (cert.renew_failed, error).
    let w = World::new(&["--hostile", "wrong-key=bad.example.test"]);
    let rx = receiver(1);
    let certs = format!(
        "{}reload = [\"sh\", \"-c\", \"echo nginx: configuration test failed >&2; exit 3\"]\n{}",
        w.file_cert("good", "\"good.example.test\""),
        w.file_cert("bad", "\"bad.example.test\""),
    );
    // The default events: failures and warnings.
    let cfg = w.config(&format!("{certs}{}", notify_table(&w, &rx, "")));
    let _d = w.daemon(&cfg, "daemon.log");
    wait_for(
        "hook.failed and cert.renew_failed in every format",
        Duration::from_secs(90),
        || {
            KINDS.iter().all(|k| {
                !rx.got(k, "hook.failed", Some("good")).is_empty()
                    && !rx.got(k, "cert.renew_failed", Some("bad")).is_empty()
            })
        },
    );
    for k in KINDS {
        for (event, cert) in [("hook.failed", "good"), ("cert.renew_failed", "bad")] {
            let r = &rx.got(k, event, Some(cert))[0];
            assert_signed(r);
            let t = r.text();
            if event == "hook.failed" {
                assert!(t.contains("configuration test failed"), "{k}: {t}");
            } else {
                assert!(t.contains("does not match our private key"), "{k}: {t}");
            }
        }
    }
    // The generic body is the event itself.
    let g = &rx.got("generic", "hook.failed", Some("good"))[0].json();
    assert_eq!(g["event"], "hook.failed");
    assert_eq!(g["level"], "ERROR");
    assert_eq!(g["cert"], "good");
    // Its first request got 503: the same notification came again (retried, not lost).
    let generic: Vec<Req> = rx
        .all()
        .into_iter()
        .filter(|r| r.kind() == "generic")
        .collect();
    assert!(generic.len() >= 3, "{generic:?}");
    assert_eq!(generic[0].body, generic[1].body, "the 503 was not retried");
    // Nothing but the default events (the proof self-check's warnings are among them: the test
    // domains do not resolve), never the routine ones.
    for r in rx.all() {
        let t = r.text();
        assert!(
            cas_certd::alert::DEFAULT_EVENTS
                .iter()
                .any(|e| t.contains(e)),
            "not a default event: {t}"
        );
        for routine in ["cert.deployed", "cert.ordered", "cert.issued", "hook.ok"] {
            assert!(!t.contains(routine), "a routine event was sent: {t}");
        }
    }
    // The argv notifier: JSON on stdin, the same in the environment.
    wait_for("the command ran for both", Duration::from_secs(20), || {
        std::fs::read_to_string(w.p("notify-env.txt")).is_ok_and(|t| {
            t.lines().any(|l| l == "hook.failed good")
                && t.lines().any(|l| l == "cert.renew_failed bad")
        })
    });
    let lines = std::fs::read_to_string(w.p("notify.jsonl")).unwrap();
    let events: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events
        .iter()
        .any(|e| e["event"] == "cert.renew_failed" && e["cert"] == "bad" && e["level"] == "ERROR"));
    // Neither URL tokens nor secrets in the log (scan-logs.sh checks the kept logs too).
    let log = std::fs::read_to_string(w.p("daemon.log")).unwrap();
    for s in [
        DINGTALK_SECRET,
        FEISHU_SECRET,
        GENERIC_SECRET,
        URL_TOKEN_SECRET,
    ] {
        assert!(!log.contains(s), "{s} in the daemon's log");
    }
}

/// Sum of the samples of `metric` with `label` in a Prometheus text exposition.
fn metric(text: &str, metric: &str, label: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(metric) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_flood_of_one_event_is_cut_to_the_rate_limit() {
    // Twenty reloads in a row make twenty config.reloaded events; "3/1h" lets three through,
    // however often the notifier is reconfigured by those very reloads.
    let w = World::new(&[]);
    let rx = receiver(0);
    let port = free_port();
    let table = notify_table(
        &w,
        &rx,
        "events = [\"config.reloaded\"]\nrate_limit = \"3/1h\"",
    );
    let cfg = w.config(&format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n{table}",
        w.file_cert("one", "\"one.example.test\"")
    ));
    let d = w.daemon(&cfg, "daemon.log");
    let metrics = || http_get(&format!("127.0.0.1:{port}"), "/metrics");
    wait_for("the daemon is up", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    for _ in 0..20 {
        Command::new("kill")
            .args(["-HUP", &d.0.id().to_string()])
            .status()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    let reloads = || {
        let log = std::fs::read_to_string(w.p("daemon.log")).unwrap();
        log.matches("\"config.reloaded\"").count()
    };
    wait_for("20 reloads", Duration::from_secs(30), || reloads() == 20);
    // Time for anything queued to be sent.
    std::thread::sleep(Duration::from_secs(3));
    for k in KINDS {
        assert_eq!(rx.got(k, "config.reloaded", None).len(), 3, "{k}");
    }
    let m = metrics();
    assert_eq!(
        metric(&m, "cas_certd_notifications_skipped_total", "rate_limited"),
        17,
        "{m}"
    );
    assert_eq!(
        metric(&m, "cas_certd_notifications_total", "outcome=\"sent\""),
        3 * 6,
        "{m}"
    );
}

#[test]
fn a_webhook_credentials_file_others_can_read_is_refused_at_start() {
    let w = World::new(&[]);
    let rx = receiver(0);
    let cfg = w.config(&format!(
        "{}{}",
        w.file_cert("one", "\"one.example.test\""),
        notify_table(&w, &rx, "")
    ));
    let cred = w.p("feishu.cred");
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o644)).unwrap();
    // `check --offline` says so first.
    let out = Command::new(crate::support::bin())
        .arg("--config")
        .arg(&cfg)
        .args(["check", "--offline"])
        .output()
        .unwrap();
    keep_output("notify-check", &out);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("[notify] webhook 3 (feishu)") && text.contains("chmod 600"),
        "{text}"
    );
    assert!(!text.contains(FEISHU_SECRET), "{text}");
    let mut d = w.daemon(&cfg, "daemon.log");
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = d.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the daemon kept running"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    let log = std::fs::read_to_string(w.p("daemon.log")).unwrap();
    assert!(log.contains(&cred.display().to_string()), "{log}");
    assert!(log.contains("chmod 600"), "{log}");
    assert!(
        !log.contains(FEISHU_SECRET) && !log.contains(URL_TOKEN_SECRET),
        "{log}"
    );
    assert!(rx.all().is_empty());
}

#[test]
fn a_reload_with_an_unusable_webhook_file_keeps_the_running_notifier_which_reports_it() {
    let w = World::new(&[]);
    let rx = receiver(0);
    let table = notify_table(&w, &rx, "events = [\"config.reload_failed\"]");
    let cfg = w.config(&format!(
        "{}{table}",
        w.file_cert("one", "\"one.example.test\"")
    ));
    let d = w.daemon(&cfg, "daemon.log");
    wait_for("the daemon is up", Duration::from_secs(30), || {
        std::fs::read_to_string(w.p("daemon.log")).is_ok_and(|l| l.contains("cas-certd running"))
    });
    let cred = w.p("feishu.cred");
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o644)).unwrap();
    Command::new("kill")
        .args(["-HUP", &d.0.id().to_string()])
        .status()
        .unwrap();
    // The failed reload is itself notified, through the notifier that kept running, to the
    // Feishu webhook too (its file was read when it was still private).
    wait_for(
        "config.reload_failed everywhere",
        Duration::from_secs(30),
        || {
            KINDS
                .iter()
                .all(|k| !rx.got(k, "config.reload_failed", None).is_empty())
        },
    );
    let t = rx.got("slack", "config.reload_failed", None)[0].text();
    assert!(
        t.contains(&cred.display().to_string()) && t.contains("chmod 600"),
        "{t}"
    );
    assert!(!t.contains(FEISHU_SECRET), "{t}");
}

/// A log timestamp as tracing prints a `DateTime<Utc>` (`2026-12-02 11:20:00.123 UTC`).
fn logged_time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    let s = v.as_str().unwrap().trim_end_matches(" UTC");
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .unwrap()
        .and_utc()
}

fn log_events_in(w: &World, log: &str, event: &str) -> Vec<Value> {
    std::fs::read_to_string(w.p(log))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == event)
        .collect()
}

fn log_events(w: &World, event: &str) -> Vec<Value> {
    log_events_in(w, "daemon.log", event)
}

/// Issue 14 item 4's expiry warnings: a short certificate whose renewal is refused (the
/// product's one unit went to the first certificate) is announced once, as an error with why
/// the renewal fails, and the announcement reaches the webhook; a second refused renewal within
/// the day is not announced again. The memory is the process's: after a restart the
/// certificate is announced at once, by the sweep at start (its retry is minutes away).
#[test]
fn a_certificate_expiring_unrenewed_is_announced_once_a_day_and_reaches_the_webhook() {
    let w = World::new(&[
        "--first-cert-lifetime",
        "40s",
        "--quota",
        "symantec-free-1-free=1",
    ]);
    let rx = receiver(0);
    let a = rx.addr;
    let certs = format!(
        "{}expiry_warn = \"1d\"\n[notify]\nwebhook = {{ url = \"http://{a}/generic/x\", format = \"generic\" }}\n",
        w.file_cert("e", "\"e.example.test\"")
    );
    let cfg = w.config(&certs);
    let mut d = w.daemon(&cfg, "daemon.log");
    // Deployed, then (a third of 40 s before the end) its renewal is refused.
    wait_for("cert.expiring logged", Duration::from_secs(90), || {
        !log_events(&w, "cert.expiring").is_empty()
    });
    let e = &log_events(&w, "cert.expiring")[0];
    assert_eq!(e["level"], "ERROR", "{e}");
    assert_eq!(e["cert"], "e", "{e}");
    assert_eq!(e["domains"], "[\"e.example.test\"]", "{e}");
    assert_eq!(e["days_left"], 0, "{e}");
    assert_eq!(
        e["last_error"], "quota exhausted for symantec-free-1-free (1 of 1 used)",
        "{e}"
    );
    assert!(e["not_after"].as_str().is_some() && e["next_attempt"].as_str().is_some());
    wait_for("the webhook got it", Duration::from_secs(20), || {
        !rx.got("generic", "cert.expiring", Some("e")).is_empty()
    });
    let g = rx.got("generic", "cert.expiring", Some("e"))[0].json();
    assert_eq!(g["level"], "ERROR");
    assert_eq!(g["days_left"], 0);

    // A second refused renewal, asked for by hand: no second announcement. The loop looks at
    // the certificate when the step finishes, before status.json shows the step's retry time.
    let out = Command::new(crate::support::bin())
        .arg("--config")
        .arg(&cfg)
        .args(["renew", "e", "--yes"])
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_for(
        "a second refused renewal, its step finished",
        Duration::from_secs(60),
        || {
            let failed = log_events(&w, "cert.renew_failed");
            let Some(second) = failed.get(1) else {
                return false;
            };
            let retry = logged_time(&second["retry_at"]);
            status_json(&cfg).as_array().is_some_and(|rows| {
                rows.iter().any(|r| {
                    r["name"] == "e"
                        && r["next_due"]
                            .as_str()
                            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                            .is_some_and(|t| t == retry)
                })
            })
        },
    );
    let all = log_events(&w, "cert.expiring");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(rx.got("generic", "cert.expiring", None).len(), 1);

    sigterm_and_wait(&mut d);
    let _d = w.daemon(&cfg, "daemon2.log");
    wait_for("cert.expiring at start", Duration::from_secs(30), || {
        !log_events_in(&w, "daemon2.log", "cert.expiring").is_empty()
    });
    let again = &log_events_in(&w, "daemon2.log", "cert.expiring")[0];
    assert_eq!(again["last_error"], e["last_error"], "{again}");
    let failed = log_events_in(&w, "daemon2.log", "cert.renew_failed");
    assert!(
        failed
            .iter()
            .all(|f| f["timestamp"].as_str() > again["timestamp"].as_str()),
        "not the sweep at start: {failed:?}"
    );
}
