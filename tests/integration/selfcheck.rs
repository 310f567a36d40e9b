//! The proof self-check end to end (issue 14 item 1): a real nginx serving the webroot, the
//! simulator's CA fetching through it, and the simulator's DNS server for the TXT proof. Each
//! failure shows in `status` within a poll and is logged once per reason; the fix makes the
//! next check `ok` and the certificate issues.
#![allow(clippy::unwrap_used)]
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::world::{
    status_json, try_status_json, wait_for, Proc, World, KEY_ID, KEY_SECRET,
};

const WAIT: Duration = Duration::from_secs(90);

/// A free loopback port for TCP (and UDP, for the DNS server).
fn free_port() -> u16 {
    loop {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// nginx (the installed binary, `nginx-light` in .ci/run) as this user, in the foreground,
/// with everything it writes under `prefix`. As root its workers run as nobody, as the
/// daemon's users would be to a web server; otherwise as this user.
struct Nginx {
    prefix: PathBuf,
    port: u16,
    _proc: Proc,
}

impl Nginx {
    fn conf(prefix: &Path, port: u16, root: &Path, deny: bool) {
        let user = if is_root() {
            let group = if Command::new("getent")
                .args(["group", "nogroup"])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                "nogroup"
            } else {
                "nobody"
            };
            format!("user nobody {group};")
        } else {
            String::new()
        };
        let p = prefix.display();
        let deny = if deny {
            "location /.well-known/ { deny all; }"
        } else {
            ""
        };
        let text = format!(
            "{user}
daemon off;
worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  default_type text/plain;
  client_body_temp_path {p}/tmp-body;
  proxy_temp_path {p}/tmp-proxy;
  fastcgi_temp_path {p}/tmp-fastcgi;
  uwsgi_temp_path {p}/tmp-uwsgi;
  scgi_temp_path {p}/tmp-scgi;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    {deny}
  }}
}}
",
            root = root.display()
        );
        std::fs::write(prefix.join("nginx.conf"), text).unwrap();
    }

    fn start(prefix: &Path, root: &Path, deny: bool) -> Nginx {
        let port = free_port();
        Nginx::conf(prefix, port, root, deny);
        let proc = Proc(
            Command::new("nginx")
                .arg("-p")
                .arg(prefix)
                .arg("-c")
                .arg(prefix.join("nginx.conf"))
                .stderr(Stdio::null())
                .spawn()
                .expect("nginx must be installed (nginx-light; .ci/run installs it)"),
        );
        wait_for("nginx to listen", WAIT, || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Nginx {
            prefix: prefix.to_path_buf(),
            port,
            _proc: proc,
        }
    }

    /// Serves `root` from now on (a reload: new workers take it).
    fn serve(&self, root: &Path, deny: bool) {
        Nginx::conf(&self.prefix, self.port, root, deny);
        let ok = Command::new("nginx")
            .arg("-p")
            .arg(&self.prefix)
            .arg("-c")
            .arg(self.prefix.join("nginx.conf"))
            .args(["-s", "reload"])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "nginx -s reload");
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// `nginx -s stop` (the master takes its workers down), then the master is reaped; a SIGKILL
/// to the master alone would leave its workers running.
impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("nginx")
            .arg("-p")
            .arg(&self.prefix)
            .arg("-c")
            .arg(self.prefix.join("nginx.conf"))
            .args(["-s", "stop"])
            .stderr(Stdio::null())
            .status();
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if !matches!(self._proc.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn proof(config: &Path, name: &str) -> Option<String> {
    let s = try_status_json(config)?;
    s.as_array()?
        .iter()
        .find(|r| r["name"] == name)?
        .get("proof")?
        .as_str()
        .map(str::to_string)
}

fn wait_proof(config: &Path, name: &str, want: &str) {
    let mut last = None;
    wait_for(&format!("status proof {want:?}"), WAIT, || {
        last = proof(config, name);
        last.as_deref() == Some(want)
    });
}

/// The daemon's events of `name` (JSON log lines).
fn events(w: &World, log: &str, name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(w.p(log))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == name)
        .collect()
}

fn reasons(w: &World, log: &str) -> Vec<String> {
    events(w, log, "cert.proof_unreachable")
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_webroot_nginx_cannot_serve_is_reported_per_reason_and_the_fix_issues() {
    let domain = "web.example.test";
    let prefix_dir = tempfile::tempdir().unwrap();
    let prefix = prefix_dir.path();
    // nginx's workers (nobody, when root) must reach the webroot: every directory on the way
    // is opened up; the temp dir itself is 0700.
    // The validation dwell lets the daemon's next check see the fix before CAS moves on.
    let mut w = World::new(&["--validation-delay", "6s"]);
    chmod(w.dir.path(), 0o755);
    chmod(prefix, 0o755);
    let webroot = w.p("webroot");
    chmod(&webroot, 0o755);
    let well_known = webroot.join(".well-known");
    std::fs::create_dir_all(well_known.join("pki-validation")).unwrap();
    chmod(&well_known, 0o755);
    chmod(&well_known.join("pki-validation"), 0o755);
    let wrong = w.p("not-the-webroot");
    std::fs::create_dir_all(&wrong).unwrap();
    chmod(&wrong, 0o755);

    // 403: the webroot is not readable by nginx's workers (the issue's case). As root the
    // workers are nobody and the daemon (root) still writes; as another user the workers are
    // that user, so the same 403 comes from a deny rule instead.
    let root = is_root();
    if root {
        chmod(&well_known, 0o000);
    }
    let nginx = Nginx::start(prefix, &webroot, !root);
    let at = nginx.addr();
    w.restart_sim(&[
        "--validation-delay",
        "6s",
        "--resolve",
        &format!("{domain}={at}"),
    ]);
    let cert = format!(
        "{}self_check_resolve = {{ \"{domain}\" = \"{at}\" }}\n",
        w.file_cert("web", &format!("\"{domain}\""))
    );
    let config = w.config(&cert);
    let _d = w.daemon(&config, "daemon.log");

    let r403 = format!("HTTP 403 from {at}");
    wait_proof(&config, "web", &r403);

    // 404: nginx's root points at the wrong directory.
    if root {
        chmod(&well_known, 0o755);
    }
    nginx.serve(&wrong, false);
    let r404 = format!("HTTP 404 from {at}");
    wait_proof(&config, "web", &r404);
    // The fix: nginx serves the webroot again.
    nginx.serve(&webroot, false);
    wait_for("the certificate to be deployed", WAIT, || {
        w.live("web", "cert.pem").exists()
    });
    let reasons = reasons(&w, "daemon.log");
    assert_eq!(
        reasons.iter().filter(|r| **r == r403).count(),
        1,
        "{reasons:?}"
    );
    assert_eq!(
        reasons.iter().filter(|r| **r == r404).count(),
        1,
        "{reasons:?}"
    );
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    let fixed = events(&w, "daemon.log", "cert.proof_reachable");
    assert_eq!(fixed.len(), 1, "the next check saw the fix: {fixed:?}");
    assert_eq!(w.orders_for(domain), 1, "one order, never cancelled");
    // Deployed: no order open, no proof to show.
    assert_eq!(proof(&config, "web"), None);
}

#[test]
fn a_missing_dns_record_is_reported_and_adding_it_issues() {
    let domain = "dns.example.test";
    let dns_port = free_port();
    let dns = format!("127.0.0.1:{dns_port}");
    let w = World::new(&["--dns-listen", &dns, "--validation-delay", "6s"]);
    let cert = format!(
        "[[certificate]]\nname = \"dns\"\ndomains = [\"{domain}\"]\nvalidation = {{ method = \"manual\", type = \"dns\" }}\nself_check_nameservers = [\"{dns}\"]\n"
    );
    let config = w.config(&cert);
    let _d = w.daemon(&config, "daemon.log");

    let missing = format!("no TXT record at _dnsauth.{domain} (asked {dns})");
    wait_proof(&config, "dns", &missing);
    assert_eq!(reasons(&w, "daemon.log"), std::slice::from_ref(&missing));

    // What the operator is told to publish, published through the simulated Alidns.
    let s = status_json(&config);
    let instructions = s[0]["instructions"].as_str().unwrap().to_string();
    let value = instructions
        .split("with value \"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap()
        .to_string();
    let opts = cas_api::ClientOptions {
        cas_endpoint: url::Url::parse(&format!("http://{}", w.sim_addr)).unwrap(),
        alidns_endpoint: url::Url::parse(&format!("http://{}", w.sim_addr)).unwrap(),
        max_attempts: 1,
        ..Default::default()
    };
    let creds = cas_api::credentials::Credentials::fixed(cas_api::credentials::AccessKey {
        id: KEY_ID.into(),
        secret: cas_api::secret::Secret::new(KEY_SECRET),
        security_token: None,
        expires: None,
    });
    let client = cas_api::Client::new(&opts, creds).unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(client.add_domain_record(&cas_api::model::AddRecord {
            domain_name: "example.test".into(),
            rr: "_dnsauth.dns".into(),
            record_type: "TXT".into(),
            value,
            ttl: Some(600),
        }))
        .unwrap();

    wait_for("the certificate to be deployed", WAIT, || {
        w.live("dns", "cert.pem").exists()
    });
    assert_eq!(events(&w, "daemon.log", "cert.proof_reachable").len(), 1);
    assert_eq!(reasons(&w, "daemon.log"), [missing]);
}
