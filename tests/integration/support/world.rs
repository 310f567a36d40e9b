//! A test world for daemon-level tests: `cas-certd simulate` with its books in a temp dir, a
//! webroot HTTP server for FILE proofs, and helpers to write a config, start `cas-certd run`,
//! read the simulator's ledger and check what was deployed.
#![allow(clippy::unwrap_used)]
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::bin;

pub const KEY_ID: &str = "e2e-key-id";
pub const KEY_SECRET: &str = "e2e-secret-Zq8xW2vY7kPm";

pub struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A minimal static server for `<webroot>/.well-known/pki-validation/*` (what nginx would do).
pub fn serve_webroot(webroot: PathBuf) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let webroot = webroot.clone();
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                let ok = path.starts_with("/.well-known/pki-validation/") && !path.contains("..");
                let body = if ok {
                    std::fs::read(webroot.join(path.trim_start_matches('/'))).ok()
                } else {
                    None
                };
                let _ = match body {
                    Some(b) => s
                        .write_all(
                            format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", b.len())
                                .as_bytes(),
                        )
                        .and_then(|_| s.write_all(&b)),
                    None => s.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
                };
            });
        }
    });
    addr
}

pub fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default()
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub sim_addr: String,
    pub _sim: Proc,
    pub web: SocketAddr,
}

/// Keeps every log for the suite-wide secret scan (`scripts/scan-logs.sh`), pass or fail; on a
/// failing test, also shows what the daemons logged: the temp dir is gone afterwards.
impl Drop for World {
    fn drop(&mut self) {
        keep_logs(self.dir.path());
        if !std::thread::panicking() {
            return;
        }
        eprintln!(
            "--- files: {:?}",
            std::fs::read_dir(self.dir.path())
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cd {} && cat config.toml && ls -lR live state && wc -c *.log",
                self.dir.path().display()
            ))
            .status();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "log") {
                    let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default())
                        .into_owned();
                    let tail: Vec<&str> = text
                        .lines()
                        .filter(|l| !l.contains("\"DEBUG\""))
                        .rev()
                        .take(60)
                        .collect();
                    eprintln!("--- {} (last 60 lines above DEBUG)", p.display());
                    for l in tail.into_iter().rev() {
                        eprintln!("{l}");
                    }
                }
            }
        }
    }
}

impl World {
    pub fn new(extra_sim_args: &[&str]) -> World {
        let dir = tempfile::tempdir().unwrap();
        let webroot = dir.path().join("webroot");
        std::fs::create_dir_all(&webroot).unwrap();
        let web = serve_webroot(webroot);
        let (sim, sim_addr) = spawn_sim(dir.path(), web, "127.0.0.1:0", extra_sim_args);
        World {
            dir,
            sim_addr,
            _sim: sim,
            web,
        }
    }

    pub fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }

    /// Writes the config with the given `[[certificate]]` blocks.
    pub fn config(&self, certs: &str) -> PathBuf {
        let text = format!(
            r#"state_dir = "{state}"
output_dir = "{live}"
check_schedule = "*/2 * * * * *"
poll_min = "1s"
poll_max = "2s"
log_format = "json"
[cas]
endpoint = "http://{sim}"
[alidns]
endpoint = "http://{sim}"
[defaults]
product_code = "symantec-free-1-free"
key = "ecdsa-p256"
renew_before = "1/3"
contact = {{ name = "Ops", phone = "13900000000", email = "ops@example.test" }}
reload = ["sh", "-c", "echo reload $CERT_NAME >> {hooklog}"]
{certs}
"#,
            state = self.p("state").display(),
            live = self.p("live").display(),
            sim = self.sim_addr,
            hooklog = self.p("hook.log").display(),
        );
        let path = self.p("config.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn file_cert(&self, name: &str, domains: &str) -> String {
        format!(
            "[[certificate]]\nname = \"{name}\"\ndomains = [{domains}]\nvalidation = {{ method = \"file\", webroot = \"{}\" }}\n",
            self.p("webroot").display()
        )
    }

    pub fn daemon(&self, config: &Path, log: &str) -> Proc {
        self.daemon_env(config, log, &[])
    }

    pub fn daemon_env(&self, config: &Path, log: &str, env: &[(&str, &str)]) -> Proc {
        self.daemon_via(&[], config, log, env)
    }

    /// `cas-certd run` started through `launcher` (argv that execs the binary given after it,
    /// e.g. `prlimit --nofile=N:N --`), so the child's pid is still the daemon's. Empty: directly.
    pub fn daemon_via(
        &self,
        launcher: &[&str],
        config: &Path,
        log: &str,
        env: &[(&str, &str)],
    ) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.p(log))
            .unwrap();
        let mut cmd = match launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        Proc(
            cmd.arg("--config")
                .arg(config)
                .arg("run")
                .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
                .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET)
                .env("RUST_LOG", "debug")
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    pub fn ledger(&self) -> serde_json::Value {
        serde_json::from_str(&http_get(&self.sim_addr, "/_sim/ledger")).unwrap()
    }

    /// Orders the simulator has for a domain (every create, whatever became of it).
    pub fn orders_for(&self, domain: &str) -> usize {
        self.ledger()["orders"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| {
                o["domains"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x.as_str() == Some(domain)))
            })
            .count()
    }

    /// Stops the simulator and starts it again on the same address with the same books.
    pub fn restart_sim(&mut self, extra_sim_args: &[&str]) {
        let _ = self._sim.0.kill();
        let _ = self._sim.0.wait();
        let (sim, addr) = spawn_sim(self.dir.path(), self.web, &self.sim_addr, extra_sim_args);
        assert_eq!(addr, self.sim_addr);
        self._sim = sim;
    }

    /// The simulator's orders whose first domain is `domain`, as (order id, state).
    pub fn orders(&self, domain: &str) -> Vec<(u64, String)> {
        self.ledger()["orders"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["domains"][0] == domain)
            .map(|o| {
                (
                    o["order_id"].as_u64().unwrap(),
                    o["state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Whether the simulator has a deleted order (quota given back) for `domain`.
    pub fn has_deleted_order(&self, domain: &str) -> bool {
        self.orders(domain).iter().any(|(_, s)| s == "deleted")
    }

    pub fn live(&self, name: &str, f: &str) -> PathBuf {
        self.p("live").join(name).join(f)
    }
}

/// Starts the simulator on `listen` with its books in `<dir>/sim`; returns it and its address.
pub fn spawn_sim(
    dir: &Path,
    web: SocketAddr,
    listen: &str,
    extra_sim_args: &[&str],
) -> (Proc, String) {
    let ready = dir.join("sim.ready");
    let _ = std::fs::remove_file(&ready);
    // Default delays unless the test sets its own (clap refuses a flag given twice).
    let mut delays = Vec::new();
    for flag in ["--validation-delay", "--review-delay"] {
        if !extra_sim_args.contains(&flag) {
            delays.extend([flag, "1s"]);
        }
    }
    let sim = Command::new(bin())
        .args(["simulate", "--listen", listen, "--admin"])
        .arg("--data-dir")
        .arg(dir.join("sim"))
        .arg("--ready-file")
        .arg(&ready)
        .args(["--zone", "example.test"])
        .args(["--resolve", &format!("example.test={web}")])
        .args(["--resolve", &format!("*.example.test={web}")])
        .args(&delays)
        .args(extra_sim_args)
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let sim = Proc(sim);
    let t0 = Instant::now();
    let sim_addr = loop {
        if let Ok(s) = std::fs::read_to_string(&ready) {
            if s.ends_with('\n') {
                break s.trim().to_string();
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "simulator not ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    (sim, sim_addr)
}

/// Sends `signal` (a name `kill` knows: STOP, CONT, KILL...) to the process.
pub fn signal(p: &Proc, signal: &str) {
    assert!(Command::new("kill")
        .args([&format!("-{signal}"), &p.0.id().to_string()])
        .status()
        .unwrap()
        .success());
}

/// Sends SIGTERM and waits (at most 15 s) for the process to exit.
pub fn sigterm_and_wait(p: &mut Proc) -> std::process::ExitStatus {
    assert!(Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    let t0 = Instant::now();
    loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            return s;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "no stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

pub fn assert_key_matches_and_private(w: &World, name: &str) {
    use std::os::unix::fs::PermissionsExt;
    let key = w.live(name, "privkey.pem");
    let cert = w.live(name, "cert.pem");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{name}: key mode {mode:o}");
    let a = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]);
    let b = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-pubkey"]);
    assert_eq!(a, b, "{name}: key does not match certificate");
    let fc = std::fs::read_to_string(w.live(name, "fullchain.pem")).unwrap();
    assert!(fc.starts_with(&std::fs::read_to_string(&cert).unwrap()));
}

pub fn status_json(config: &Path) -> serde_json::Value {
    let out = status_output(config);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `status --json`, or `None` while the daemon has not written its first status yet.
pub fn try_status_json(config: &Path) -> Option<serde_json::Value> {
    let out = status_output(config);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn status_output(config: &Path) -> std::process::Output {
    Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(["status", "--json"])
        .output()
        .unwrap()
}

// ---- Logs kept for the secret scan (issue 6 part 7) -------------------------------------------

/// Where test logs are kept: `<target>/test-logs/` (next to `CARGO_TARGET_TMPDIR`, so it follows
/// `CARGO_TARGET_DIR`). `scripts/test.sh` wipes it first and `scripts/scan-logs.sh` reads it.
pub fn test_logs_root() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("test-logs")
}

/// A fresh directory under [`test_logs_root`] named after the running test.
fn test_logs_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let test: String = std::thread::current()
        .name()
        .unwrap_or("test")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = test_logs_root().join(format!("{test}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies every `*.log` and `*.out` file directly in `dir` to a fresh test-logs directory.
pub fn keep_logs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let logs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "log" || x == "out"))
        .collect();
    if logs.is_empty() {
        return;
    }
    let dest = test_logs_dir();
    for p in logs {
        let _ = std::fs::copy(&p, dest.join(p.file_name().unwrap()));
    }
}

/// Keeps what a command printed (stdout and stderr) for the secret scan.
pub fn keep_output(label: &str, out: &std::process::Output) {
    let dest = test_logs_dir();
    let _ = std::fs::write(dest.join(format!("{label}.stdout.log")), &out.stdout);
    let _ = std::fs::write(dest.join(format!("{label}.stderr.log")), &out.stderr);
}

/// Calls [`keep_logs`] on drop: declare it after the temp dir it watches (drops run in reverse).
pub struct KeepLogs(pub PathBuf);
impl Drop for KeepLogs {
    fn drop(&mut self) {
        keep_logs(&self.0);
    }
}
