//! Throwaway etcd clusters for the fleet tests: one or three real `etcd` processes on free
//! loopback ports, data in a temp dir, healthy before use (polled with a deadline), killed on
//! drop. The binary is `$CAS_CERTD_ETCD` or `etcd` on PATH (Debian's `etcd-server`, which
//! .ci/run installs); missing is a failure that says so, never a skip.
#![allow(clippy::unwrap_used)]
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;
use super::world::Proc;

/// The fleet's etcd password in the tests with authentication on, and a wrong one (named so
/// that scripts/scan-logs.py looks for both in every kept log).
pub const ETCD_SECRET: &str = "right-pw-0815";
pub const WRONG_ETCD_SECRET: &str = "wrong-pw-1234";

/// etcdctl's flag for the root user once [`Etcd::enable_auth`] ran.
pub const ROOT: &str = "--user=root:root-pw-4711";

/// How long a fresh cluster may take to elect a leader on a loaded machine.
const START_DEADLINE: Duration = Duration::from_secs(30);

pub struct Member {
    pub name: String,
    pub client_url: String,
    client_port: u16,
    proc: Option<Proc>,
    /// How it was started, to start it again on the same data (`stop_all`, `start_all`).
    cmd: Vec<std::ffi::OsString>,
}

/// One key as etcd holds it (see [`Etcd::kv`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: String,
}

pub struct Etcd {
    pub members: Vec<Member>,
    pub dir: tempfile::TempDir,
    /// With TLS: the files a client needs (clients must show a certificate of the test CA).
    pub tls: Option<TlsFiles>,
}

/// A test CA, the members' server certificate (127.0.0.1, localhost) and a client
/// certificate, as PEM files in the cluster's temp dir (keys mode 0600).
pub struct TlsFiles {
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl TlsFiles {
    fn make(dir: &Path) -> TlsFiles {
        use rcgen::{
            BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            SanType,
        };
        use std::os::unix::fs::PermissionsExt as _;
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(names).unwrap();
            p.subject_alt_names
                .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
            p.extended_key_usages = vec![usage];
            (
                p.signed_by(&key, &issuer).unwrap().pem(),
                key.serialize_pem(),
            )
        };
        let (server_pem, server_key_pem) = leaf(
            vec!["localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_pem, client_key_pem) =
            leaf(vec!["web-1".into()], ExtendedKeyUsagePurpose::ClientAuth);
        let write = |name: &str, text: &str, mode: u32| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        TlsFiles {
            ca: write("ca.pem", &ca.pem(), 0o644),
            client_cert: write("client.pem", &client_pem, 0o644),
            client_key: write("client.key", &client_key_pem, 0o600),
            server_cert: write("server.pem", &server_pem, 0o644),
            server_key: write("server.key", &server_key_pem, 0o600),
        }
    }
}

fn binary(env: &str, name: &str, package: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{name} not found on PATH: install Debian's {package} (.ci/run does, as root), or set {env}")
    })
}

pub fn etcd_bin() -> PathBuf {
    binary("CAS_CERTD_ETCD", "etcd", "etcd-server")
}

pub fn etcdctl_bin() -> PathBuf {
    binary("CAS_CERTD_ETCDCTL", "etcdctl", "etcd-client")
}

impl Etcd {
    /// A single-node cluster.
    pub fn single() -> Etcd {
        Etcd::cluster(1)
    }

    /// An `n`-member cluster, every member healthy (a leader elected) when it returns.
    pub fn cluster(n: usize) -> Etcd {
        Etcd::start(n, false)
    }

    /// A single node that speaks only TLS to clients and asks each for a certificate of the
    /// test CA.
    pub fn single_tls() -> Etcd {
        Etcd::start(1, true)
    }

    fn start(n: usize, tls: bool) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let tls = tls.then(|| TlsFiles::make(dir.path()));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let peers: Vec<(String, u16, u16)> = (0..n)
            .map(|i| (format!("m{i}"), free_port(), free_port()))
            .collect();
        let initial = peers
            .iter()
            .map(|(name, _, peer)| format!("{name}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        // Unique per cluster: members of two tests' clusters never join each other.
        let token = format!("t-{}", dir.path().display());
        let members = peers
            .iter()
            .map(|(name, client, peer)| {
                let data = dir.path().join(name);
                let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
                let client_url = format!("{scheme}://127.0.0.1:{client}");
                let peer_url = format!("http://127.0.0.1:{peer}");
                let mut cmd = Command::new(etcd_bin());
                cmd.stdin(Stdio::null());
                if let Some(t) = &tls {
                    cmd.arg("--cert-file")
                        .arg(&t.server_cert)
                        .arg("--key-file")
                        .arg(&t.server_key)
                        .arg("--trusted-ca-file")
                        .arg(&t.ca)
                        .arg("--client-cert-auth");
                }
                cmd.args(["--name", name])
                    .arg("--data-dir")
                    .arg(&data)
                    .args(["--listen-client-urls", &client_url])
                    .args(["--advertise-client-urls", &client_url])
                    .args(["--listen-peer-urls", &peer_url])
                    .args(["--initial-advertise-peer-urls", &peer_url])
                    .args(["--initial-cluster", &initial])
                    .args(["--initial-cluster-state", "new"])
                    .args(["--initial-cluster-token", &token])
                    .args(["--logger", "zap", "--log-outputs", "stderr"]);
                let args: Vec<std::ffi::OsString> = cmd.get_args().map(Into::into).collect();
                let child = spawn_logged(&mut cmd, log);
                Member {
                    name: name.clone(),
                    client_url,
                    client_port: *client,
                    proc: Some(Proc(child)),
                    cmd: args,
                }
            })
            .collect();
        let e = Etcd { members, dir, tls };
        e.wait_healthy();
        e
    }

    /// Waits until every running member reports itself healthy (it has a leader).
    pub fn wait_healthy(&self) {
        let t0 = Instant::now();
        for m in self.members.iter().filter(|m| m.proc.is_some()) {
            while !self.healthy(m) {
                assert!(
                    t0.elapsed() < START_DEADLINE,
                    "etcd member {} not healthy within {START_DEADLINE:?}; its log:\n{}",
                    m.name,
                    self.log(&m.name)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Every member's client URL (killed ones too: a client is given the whole list).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Kills member `i` (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].proc.take() {
            let _ = p.0.kill();
            let _ = p.0.wait();
        }
    }

    /// Kills every member (an outage of the whole cluster); their data stays.
    pub fn stop_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Starts every stopped member again on its data, and waits until all are healthy.
    pub fn start_all(&mut self) {
        for m in self.members.iter_mut().filter(|m| m.proc.is_none()) {
            let log = std::fs::OpenOptions::new()
                .append(true)
                .open(self.dir.path().join(format!("{}.log", m.name)))
                .unwrap();
            let mut cmd = Command::new(etcd_bin());
            cmd.args(&m.cmd).stdin(Stdio::null());
            m.proc = Some(Proc(spawn_logged(&mut cmd, log)));
        }
        self.wait_healthy();
    }

    /// Turns etcd's authentication on: a `root` user (give [`ROOT`] to etcdctl afterwards),
    /// and `user` with `password`, whose role may read and write under `prefix` only.
    pub fn enable_auth(&self, user: &str, password: &str, prefix: &str) {
        let root_pw = ROOT.trim_start_matches("--user=root:");
        let user_pw = format!("--new-user-password={password}");
        let root_new = format!("--new-user-password={root_pw}");
        let role = format!("{user}-role");
        for args in [
            &["user", "add", "root", &root_new][..],
            &["user", "grant-role", "root", "root"],
            &["role", "add", &role],
            &[
                "role",
                "grant-permission",
                &role,
                "--prefix=true",
                "readwrite",
                prefix,
            ],
            &["user", "add", user, &user_pw],
            &["user", "grant-role", user, &role],
            &["auth", "enable"],
        ] {
            self.etcdctl(args);
        }
    }

    /// Runs etcdctl (v3 API) against the running members; its stdout.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let live: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.proc.is_some())
            .map(|m| m.client_url.clone())
            .collect();
        let out = self.etcdctl_at(&live, args).output().unwrap();
        assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// The key-value `key` holds now, as etcd gives it (revisions, version, value), or `None`.
    pub fn kv(&self, key: &str) -> Option<Kv> {
        use base64::Engine as _;
        let out = self.etcdctl(&["get", key, "--write-out=json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let kv = v["kvs"].as_array()?.first()?;
        let b64 = |f: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(kv[f].as_str().unwrap_or_default())
                .unwrap()
        };
        Some(Kv {
            create_revision: kv["create_revision"].as_i64().unwrap(),
            mod_revision: kv["mod_revision"].as_i64().unwrap(),
            version: kv["version"].as_i64().unwrap(),
            value: String::from_utf8(b64("value")).unwrap(),
        })
    }

    fn etcdctl_at(&self, endpoints: &[String], args: &[&str]) -> Command {
        let mut c = Command::new(etcdctl_bin());
        c.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")));
        if let Some(t) = &self.tls {
            c.arg("--cacert")
                .arg(&t.ca)
                .arg("--cert")
                .arg(&t.client_cert)
                .arg("--key")
                .arg(&t.client_key);
        }
        c.args(args);
        c
    }

    /// Whether member `m` answers healthy: `GET /health` over plain HTTP, `etcdctl endpoint
    /// health` over TLS.
    fn healthy(&self, m: &Member) -> bool {
        if self.tls.is_none() {
            return healthy(m.client_port);
        }
        self.etcdctl_at(
            std::slice::from_ref(&m.client_url),
            &["endpoint", "health", "--command-timeout=2s"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    }

    /// The index of the member that leads now (asked of every running member).
    pub fn leader(&self) -> usize {
        let out = self.etcdctl(&["endpoint", "status", "--write-out=json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let rows = v.as_array().unwrap();
        let leader = rows[0]["Status"]["leader"].as_u64().unwrap();
        let row = rows
            .iter()
            .find(|r| r["Status"]["header"]["member_id"].as_u64() == Some(leader))
            .unwrap_or_else(|| panic!("no running member leads: {out}"));
        let url = row["Endpoint"].as_str().unwrap();
        self.members
            .iter()
            .position(|m| m.client_url == url)
            .unwrap()
    }

    /// Makes sure member `i` does not lead: if it does, its leadership is handed to another
    /// running member (`etcdctl move-leader`), and this waits until that one leads.
    pub fn lead_elsewhere(&self, i: usize) {
        if self.leader() != i {
            return;
        }
        let out = self.etcdctl(&["endpoint", "status", "--write-out=json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let to = v
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["Endpoint"].as_str() != Some(self.members[i].client_url.as_str()))
            .unwrap_or_else(|| panic!("no other running member: {out}"));
        let id = to["Status"]["header"]["member_id"].as_u64().unwrap();
        let moved = self
            .etcdctl_at(
                std::slice::from_ref(&self.members[i].client_url),
                &["move-leader", &format!("{id:x}")],
            )
            .output()
            .unwrap();
        assert!(moved.status.success(), "move-leader: {moved:?}");
        let t0 = Instant::now();
        while self.leader() == i {
            assert!(t0.elapsed() < START_DEADLINE, "member {i} still leads");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self, member: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{member}.log"))).unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Starts `cmd` with stdout and stderr into `log`.
fn spawn_logged(cmd: &mut Command, log: std::fs::File) -> std::process::Child {
    cmd.stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", etcd_bin().display()))
}

/// `GET /health` answers `"health":"true"`.
fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}
