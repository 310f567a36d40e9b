//! `[fleet]`: the etcd cluster a fleet of hosts shares, the key prefix, this host's node name,
//! where the fleet key is, etcd's user and where its password is, and the lease TTL. Without the `fleet` feature the table is an error.
//! This file only reads and checks the table (`crate::fleet` uses it).
use std::path::PathBuf;

use super::build::abs_path;
use super::walk::{Errors, Tbl};

/// The validated `[fleet]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSettings {
    /// etcd client URLs (`http://host:port`, or `https://` with `tls`), in the given order.
    pub etcd: Vec<String>,
    /// Every key the fleet writes lives under it: `/a/b`, no trailing slash.
    pub prefix: String,
    /// This host's name in the fleet (default: the host name); unique in the fleet.
    pub node: String,
    pub key: FleetKeySource,
    pub tls: Option<FleetTls>,
    /// `user`: etcd's user (with etcd's authentication enabled), and where its password is.
    pub auth: Option<FleetAuth>,
    /// `lease_ttl`: how long this host's etcd lease lasts without a keep-alive, so how long
    /// its certificates stay unowned after it dies (default 10 s, 2 s to 5 min).
    pub lease_ttl: std::time::Duration,
}

/// Where the fleet key is read from (`crate::fleet::keyfile`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetKeySource {
    /// `key_file`.
    File(PathBuf),
    /// `$CREDENTIALS_DIRECTORY/fleet_key` (systemd's `LoadCredentialEncrypted=`), when no
    /// `key_file` is given.
    Credential,
}

/// etcd's user name and where its password is (`crate::fleet::password`): never in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetAuth {
    pub user: String,
    pub password: PasswordSource,
}

/// Where etcd's password is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// `password_file`.
    File(PathBuf),
    /// `$CREDENTIALS_DIRECTORY/etcd_password` (systemd's `LoadCredentialEncrypted=`), when no
    /// `password_file` is given.
    Credential,
}

/// `tls = { ca = ..., cert = ..., key = ... }`: the CA that signs etcd's certificates, and an
/// optional client certificate and key (both or neither). Read when the fleet connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetTls {
    pub ca: PathBuf,
    pub client: Option<(PathBuf, PathBuf)>,
}

const KEYS: &[&str] = &[
    "etcd",
    "prefix",
    "node",
    "key_file",
    "tls",
    "user",
    "password_file",
    "lease_ttl",
];
pub(crate) const DEFAULT_PREFIX: &str = "/cas-certd";
pub(crate) const DEFAULT_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// etcd grants whole seconds (and raises a TTL below its minimum); five minutes would leave
/// certificates unowned far too long after a host dies.
const LEASE_TTL_RANGE: std::ops::RangeInclusive<std::time::Duration> =
    std::time::Duration::from_secs(2)..=std::time::Duration::from_secs(300);

/// The `[fleet]` table, `None` without one (or when it is too broken to use; errors pushed).
/// With `trust`, the key file is read and checked now, so `check` reports a bad one.
pub(super) fn settings(root: &Tbl, trust: bool, errs: &mut Errors) -> Option<FleetSettings> {
    let t = root.table("fleet", errs)?;
    // A password in clear is refused with the way to give it (not as an unknown key).
    if let Some(v) = t.get("password") {
        errs.push(
            v.span(),
            &t.key("password"),
            "etcd's password never goes in the configuration: give password_file (mode 0600) \
            or the systemd credential etcd_password",
        );
    }
    t.unknown_keys_but(KEYS, &["password"], errs);
    let before = errs.list.len();
    // Never a silent single-host daemon where a fleet was asked for.
    #[cfg(not(feature = "fleet"))]
    errs.push(
        t.span.clone(),
        "fleet",
        "this cas-certd was built without fleet mode (cargo feature `fleet`); build it with \
        `--features fleet`, or remove [fleet] to run this host on its own",
    );
    let lease_ttl = match super::build::duration(&t, "lease_ttl", errs) {
        Some(d) if !LEASE_TTL_RANGE.contains(&d) || d.subsec_nanos() != 0 => {
            if let Some(v) = t.get("lease_ttl") {
                errs.push(
                    v.span(),
                    &t.key("lease_ttl"),
                    "give whole seconds from 2s to 5m",
                );
            }
            DEFAULT_LEASE_TTL
        }
        Some(d) => d,
        None => DEFAULT_LEASE_TTL,
    };
    let tls = t.table("tls", errs).and_then(|tt| tls(&tt, errs));
    // A broken `tls` is still meant: the endpoints are judged as https.
    let etcd = endpoints(&t, t.get("tls").is_some(), errs);
    let prefix = match t.str("prefix", errs) {
        Some((p, span)) => {
            if let Err(e) = check_prefix(&p) {
                errs.push(span, &t.key("prefix"), e);
            }
            p
        }
        None => DEFAULT_PREFIX.to_string(),
    };
    let node = match t.str("node", errs) {
        Some((n, span)) => {
            if let Err(e) = check_node(&n) {
                errs.push(span, &t.key("node"), e);
            }
            n
        }
        None => match host_name() {
            Some(n) if check_node(&n).is_ok() => n,
            other => {
                let why = match other {
                    Some(n) => format!("the host name {n:?} cannot be the node name"),
                    None => "the host name cannot be read".to_string(),
                };
                errs.push(
                    t.span.clone(),
                    &t.key("node"),
                    format!("{why}: set node = \"...\" (unique in the fleet)"),
                );
                String::new()
            }
        },
    };
    let key = match t.str("key_file", errs) {
        Some((s, span)) => {
            let p = abs_path(&s, span.clone(), &t.key("key_file"), errs);
            if trust && p.is_absolute() {
                if let Err(e) = crate::fleet::keyfile::load_file(&p) {
                    errs.push(span, &t.key("key_file"), e.to_string());
                }
            }
            FleetKeySource::File(p)
        }
        None => FleetKeySource::Credential,
    };
    let auth = auth(&t, trust, errs);
    (errs.list.len() == before).then_some(FleetSettings {
        etcd,
        prefix,
        node,
        key,
        tls,
        auth,
        lease_ttl,
    })
}

/// `user` and `password_file` (with trust, the file is read and checked now).
fn auth(t: &Tbl, trust: bool, errs: &mut Errors) -> Option<FleetAuth> {
    let user = t.str("user", errs);
    let file = t.str("password_file", errs);
    let password = match file {
        Some((s, span)) => {
            let p = abs_path(&s, span.clone(), &t.key("password_file"), errs);
            if user.is_none() {
                errs.push(
                    span.clone(),
                    &t.key("password_file"),
                    "a password without a user: give user = \"...\" too",
                );
            }
            if trust && p.is_absolute() {
                if let Err(e) = crate::fleet::password::load_file(&p) {
                    errs.push(span, &t.key("password_file"), e.to_string());
                }
            }
            PasswordSource::File(p)
        }
        None => PasswordSource::Credential,
    };
    let (user, span) = user?;
    if let Err(e) = check_user(&user) {
        errs.push(span, &t.key("user"), e);
    }
    Some(FleetAuth { user, password })
}

/// etcd takes any name; this one goes into error messages and logs, so: 1 to 128 printable
/// characters, no white space.
fn check_user(u: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&u.chars().count())
        && u.chars().all(|c| !c.is_whitespace() && !c.is_control());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{u:?} is not an etcd user name (1 to 128 characters, no spaces)"
        ))
    }
}

fn endpoints(t: &Tbl, tls: bool, errs: &mut Errors) -> Vec<String> {
    let key = t.key("etcd");
    let Some((list, span)) = t.str_list("etcd", errs) else {
        if t.get("etcd").is_none() {
            errs.push(
                t.span.clone(),
                &key,
                "missing; give the etcd client URLs, like [\"http://10.0.0.1:2379\"]",
            );
        }
        return Vec::new();
    };
    if list.is_empty() {
        errs.push(span, &key, "empty; give at least one etcd client URL");
    }
    let mut out: Vec<String> = Vec::new();
    for (s, span) in list {
        match check_endpoint(&s, tls) {
            Ok(u) if out.contains(&u) => errs.push(span, &key, format!("{s:?} is given twice")),
            Ok(u) => out.push(u),
            Err(e) => errs.push(span, &key, e),
        }
    }
    out
}

/// `http://host:port` (`https://` with `tls`), nothing else: no path, user or query (etcd's
/// user and password come from the credentials chain, never the config).
fn check_endpoint(s: &str, tls: bool) -> Result<String, String> {
    let u = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    let want = if tls { "https" } else { "http" };
    if u.scheme() != want {
        let why = if tls {
            "with tls set, every endpoint is https://"
        } else {
            "https:// needs tls = { ca = ... }"
        };
        return Err(format!("{s:?}: {why}"));
    }
    let Some(host) = u.host_str() else {
        return Err(format!("{s:?} has no host"));
    };
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!(
            "{s:?} holds a user name or password; etcd credentials never go in the config"
        ));
    }
    if u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
        return Err(format!("{s:?}: give scheme, host and port only"));
    }
    let port = u.port().unwrap_or(2379);
    Ok(format!("{want}://{host}:{port}"))
}

/// A prefix is `/` and segments of `[A-Za-z0-9._-]`, without `.`/`..` segments or a trailing
/// `/`: it is joined with fixed names and certificate names into keys.
pub(crate) fn check_prefix(p: &str) -> Result<(), String> {
    let Some(rest) = p.strip_prefix('/') else {
        return Err(format!("{p:?} must start with '/'"));
    };
    let ok = !rest.is_empty()
        && p.len() <= 128
        && rest.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{p:?} is not a prefix like \"/cas-certd/prod\" (segments of letters, digits, '.', '_', '-'; no trailing '/')"
        ))
    }
}

/// A node name: 1 to 253 of `[A-Za-z0-9._-]`, not starting with `.` (a host name fits).
pub(crate) fn check_node(n: &str) -> Result<(), String> {
    let ok = (1..=253).contains(&n.len())
        && !n.starts_with('.')
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{n:?} is not a node name (1 to 253 letters, digits, '.', '_', '-')"
        ))
    }
}

fn tls(t: &Tbl, errs: &mut Errors) -> Option<FleetTls> {
    t.unknown_keys(&["ca", "cert", "key"], errs);
    let path = |k: &str, errs: &mut Errors| {
        t.str(k, errs)
            .map(|(s, span)| abs_path(&s, span, &t.key(k), errs))
    };
    let ca = path("ca", errs);
    let cert = path("cert", errs);
    let key = path("key", errs);
    let client = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            errs.push(
                t.span.clone(),
                &t.key("cert"),
                "give both cert and key (a client certificate), or neither",
            );
            None
        }
    };
    let Some(ca) = ca else {
        errs.push(
            t.span.clone(),
            &t.key("ca"),
            "missing; the CA certificate that signs etcd's",
        );
        return None;
    };
    Some(FleetTls { ca, client })
}

/// This machine's host name (the default node name).
fn host_name() -> Option<String> {
    let s = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Without the feature, any `[fleet]` is an error at its line.
#[cfg(all(test, not(feature = "fleet")))]
#[allow(clippy::unwrap_used)]
mod without_the_feature {
    #[test]
    fn a_fleet_table_is_an_error_at_its_line() {
        let text = "state_dir = \"/tmp/s\"\noutput_dir = \"/tmp/o\"\n[fleet]\netcd = [\"http://h:1\"]\nnode = \"a\"\nkey_file = \"/k\"\n";
        let e = crate::config::parse(text, None).unwrap_err().to_string();
        assert!(
            e.contains(":3:") && e.contains("built without fleet mode"),
            "{e}"
        );
    }
}

/// The table's rules, in the build that has fleet mode (scripts/test.sh's fleet step).
#[cfg(all(test, feature = "fleet"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(fleet: &str) -> Result<FleetSettings, String> {
        let text = format!("state_dir = \"/tmp/s\"\noutput_dir = \"/tmp/o\"\n{fleet}");
        match crate::config::parse(&text, None) {
            Ok(c) => Ok(c.fleet.unwrap()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn a_full_table_and_the_defaults() {
        let f = parse(
            r#"[fleet]
etcd = ["http://10.0.0.1:2379", "http://etcd-2"]
prefix = "/cas-certd/prod"
node = "web-1"
key_file = "/etc/cas-certd/fleet.key"
"#,
        )
        .unwrap();
        assert_eq!(f.etcd, ["http://10.0.0.1:2379", "http://etcd-2:2379"]);
        assert_eq!(
            (f.prefix.as_str(), f.node.as_str()),
            ("/cas-certd/prod", "web-1")
        );
        assert_eq!(
            f.key,
            FleetKeySource::File("/etc/cas-certd/fleet.key".into())
        );
        let f = parse("[fleet]\netcd = [\"http://127.0.0.1:2379\"]\n").unwrap();
        assert_eq!(f.prefix, DEFAULT_PREFIX);
        assert_eq!(f.key, FleetKeySource::Credential);
        assert_eq!(f.lease_ttl, DEFAULT_LEASE_TTL);
        let f = parse("[fleet]\netcd = [\"http://e:1\"]\nlease_ttl = \"3s\"\n").unwrap();
        assert_eq!(f.lease_ttl, std::time::Duration::from_secs(3));
        assert!(!f.node.is_empty());
        assert!(crate::config::parse("state_dir = \"/tmp/s\"\n", None)
            .unwrap()
            .fleet
            .is_none());
    }

    /// Every mistake is reported with its line, in one go.
    #[test]
    fn bad_values_are_errors_with_their_line() {
        let e = parse(
            r#"[fleet]
etcd = ["ftp://x:1", "http://u:p@h:1", "http://h:1/v3", "http://h:1", "http://h:1"]
prefix = "/a//b/"
node = "web 1"
key_file = "fleet.key"
color = "blue"
lease_ttl = "1500ms"
"#,
        )
        .unwrap_err();
        for want in [
            ":4:9: fleet.etcd: \"ftp://x:1\": https:// needs tls",
            ":4:22: fleet.etcd: \"http://u:p@h:1\" holds a user name or password",
            ":4:40: fleet.etcd: \"http://h:1/v3\": give scheme, host and port only",
            ":4:71: fleet.etcd: \"http://h:1\" is given twice",
            ":5:10: fleet.prefix: \"/a//b/\" is not a prefix",
            ":6:8: fleet.node: \"web 1\" is not a node name",
            ":7:12: fleet.key_file: must be an absolute path",
            ":8:1: fleet.color: unknown key",
            ":9:13: fleet.lease_ttl: give whole seconds from 2s to 5m",
        ] {
            assert!(e.contains(want), "{want:?} not in:\n{e}");
        }
        let e = parse("[fleet]\nprefix = \"/x\"\n").unwrap_err();
        assert!(e.contains("fleet.etcd: missing"), "{e}");
    }

    #[test]
    fn tls_needs_https_and_a_ca_and_both_halves_of_a_client_certificate() {
        let f = parse(
            "[fleet]\netcd = [\"https://e:2379\"]\ntls = { ca = \"/etc/e/ca.pem\", cert = \"/etc/e/c.pem\", key = \"/etc/e/k.pem\" }\n",
        )
        .unwrap();
        let t = f.tls.unwrap();
        assert_eq!(t.ca, PathBuf::from("/etc/e/ca.pem"));
        assert!(t.client.is_some());
        let e =
            parse("[fleet]\netcd = [\"http://e:2379\"]\ntls = { cert = \"/c\" }\n").unwrap_err();
        for want in [
            "every endpoint is https://",
            "fleet.tls.cert: give both",
            "fleet.tls.ca: missing",
        ] {
            assert!(e.contains(want), "{want:?} not in:\n{e}");
        }
    }

    /// `user` with `password_file`, or with the systemd credential; a password in clear, a
    /// password without a user and a bad user name are errors at their lines (the password's
    /// value is never quoted).
    #[test]
    fn user_and_password_file_and_never_a_password_in_clear() {
        let f = parse(
            "[fleet]\netcd = [\"http://e:2379\"]\nuser = \"cas-certd\"\npassword_file = \"/etc/cas-certd/etcd.password\"\n",
        )
        .unwrap();
        assert_eq!(
            f.auth,
            Some(FleetAuth {
                user: "cas-certd".into(),
                password: PasswordSource::File("/etc/cas-certd/etcd.password".into()),
            })
        );
        let f = parse("[fleet]\netcd = [\"http://e:2379\"]\nuser = \"cas-certd\"\n").unwrap();
        assert_eq!(f.auth.unwrap().password, PasswordSource::Credential);
        assert_eq!(
            parse("[fleet]\netcd = [\"http://e:2379\"]\n").unwrap().auth,
            None
        );
        let e = parse(
            r#"[fleet]
etcd = ["http://e:2379"]
password = "hunter2-secret"
password_file = "etcd.password"
"#,
        )
        .unwrap_err();
        for want in [
            ":5:12: fleet.password: etcd's password never goes in the configuration",
            ":6:17: fleet.password_file: must be an absolute path",
            ":6:17: fleet.password_file: a password without a user",
        ] {
            assert!(e.contains(want), "{want:?} not in:\n{e}");
        }
        assert!(!e.contains("hunter2") && !e.contains("unknown key"), "{e}");
        let e = parse("[fleet]\netcd = [\"http://e:2379\"]\nuser = \"ops team\"\n").unwrap_err();
        assert!(
            e.contains(":5:8: fleet.user: \"ops team\" is not an etcd user name"),
            "{e}"
        );
    }

    /// With trust, the password file is read: one others can read is an error at its line.
    #[test]
    fn with_trust_the_password_file_is_read_and_checked() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = tempfile::tempdir().unwrap();
        let pw = d.path().join("etcd.password");
        std::fs::write(&pw, "s3cret-pw\n").unwrap();
        let text = format!(
            "state_dir = \"/tmp/s\"\noutput_dir = \"/tmp/o\"\n[fleet]\netcd = [\"http://e:2379\"]\nuser = \"u\"\npassword_file = \"{}\"\n",
            pw.display()
        );
        let uids = cas_api::fs_trust::daemon_uids();
        let errors = |mode: u32| {
            std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(mode)).unwrap();
            match crate::config::parse_with(&text, None, Some(&uids)) {
                Ok(_) => String::new(),
                Err(e) => e
                    .errors
                    .into_iter()
                    .filter(|l| l.contains("password"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            }
        };
        assert_eq!(errors(0o600), "");
        let e = errors(0o604);
        assert!(
            e.contains(":6:17: fleet.password_file: etcd password") && e.contains("chmod 600"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
    }

    /// With trust (`load`, `check`), the key file is read: a bad one is an error at its line,
    /// a good one is none.
    #[test]
    fn with_trust_the_key_file_is_read_and_checked() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("fleet.key");
        std::fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
        let text = format!(
            "state_dir = \"/tmp/s\"\noutput_dir = \"/tmp/o\"\n[fleet]\netcd = [\"http://e:2379\"]\nkey_file = \"{}\"\n",
            key.display()
        );
        let uids = cas_api::fs_trust::daemon_uids();
        let key_errors = |mode: u32| {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            match crate::config::parse_with(&text, None, Some(&uids)) {
                Ok(_) => Vec::new(),
                Err(e) => e
                    .errors
                    .into_iter()
                    .filter(|l| l.contains("key_file"))
                    .collect(),
            }
        };
        assert_eq!(key_errors(0o600), Vec::<String>::new());
        let e = key_errors(0o640).join("\n");
        assert!(
            e.contains(":5:12: fleet.key_file: fleet key") && e.contains("chmod 600"),
            "{e}"
        );
    }
}
