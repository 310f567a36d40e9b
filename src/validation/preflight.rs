//! Before an order is paid for: can the proof be published at all? A webroot that is missing,
//! unwritable or reached through a symlink, an Alidns zone the account does not have, or a
//! validator that cannot run would otherwise be found only after CreateCertificateRequest has
//! spent a unit of quota. The daemon runs [`preflight`] before every create; `check` runs the
//! same, without the API for `--offline`.

use std::io::ErrorKind;
use std::path::Path;

use super::{alidns, file, ValidationError};
use crate::config::Validation;
use cas_api::{Client, ErrorClass};

/// One reason the proof cannot be published, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong, naming the path, zone or program.
    pub what: String,
    /// How to fix it.
    pub fix: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; fix: {}", self.what, self.fix)
    }
}

fn problem(what: impl Into<String>, fix: impl Into<String>) -> Problem {
    Problem {
        what: what.into(),
        fix: fix.into(),
    }
}

/// Everything that stands between `validation` and a published proof for `domains`. Without a
/// client (`check --offline`) the Alidns zones are not looked up.
pub async fn preflight(
    validation: &Validation,
    domains: &[String],
    client: Option<&Client>,
) -> Vec<Problem> {
    match validation {
        Validation::File { webroot } => webroot_problem(webroot).into_iter().collect(),
        Validation::Command { argv, pass_env, .. } => {
            let argv0 = argv.first().map(String::as_str).unwrap_or_default();
            match crate::hook::find_program(argv0, pass_env) {
                Ok(_) => vec![],
                Err(why) => vec![problem(
                    format!("validation command {argv0:?}: {why}"),
                    "install the program, make it executable (chmod +x), or give its absolute path",
                )],
            }
        }
        Validation::Alidns { zone } => match client {
            Some(c) => zone_problems(c, zone.as_deref(), domains).await,
            None => vec![],
        },
        // The operator publishes it: nothing to check here.
        Validation::Manual { .. } => vec![],
    }
}

fn webroot_problem(webroot: &Path) -> Option<Problem> {
    let e = file::preflight(webroot).err()?;
    let shown = webroot.display();
    Some(match e {
        ValidationError::Io { source, path, .. } if source.kind() == ErrorKind::NotFound => {
            problem(
                format!("webroot {shown}: {} does not exist", path.display()),
                "create it (the directory the web server serves for these domains over HTTP) or correct validation.webroot",
            )
        }
        ValidationError::Io { op, path, source } => problem(
            format!("webroot {shown}: cannot {op} {}: {source}", path.display()),
            "let the daemon's user create files there, e.g. make .well-known/pki-validation under the webroot owned by that user",
        ),
        // The message without its hint: the hint is the fix.
        ValidationError::SymlinkedWebroot { webroot, link, real } => problem(
            ValidationError::SymlinkedWebroot {
                webroot,
                link,
                real: None,
            }
            .to_string(),
            match real {
                Some(r) => format!("set webroot to the real path {}", r.display()),
                None => "set webroot to a path without symbolic links".into(),
            },
        ),
        ValidationError::Unsafe(why) => problem(
            why,
            "use the real path, with no symbolic link on the way and no link for .well-known or pki-validation",
        ),
        other => problem(
            format!("webroot {shown}: {other}"),
            "correct validation.webroot",
        ),
    })
}

/// The names whose zone must be found: each domain without `*.`, once.
fn names(domains: &[String]) -> Vec<String> {
    let mut out: Vec<String> = domains
        .iter()
        .map(|d| d.strip_prefix("*.").unwrap_or(d).to_ascii_lowercase())
        .collect();
    out.dedup();
    out
}

async fn zone_problems(client: &Client, zone: Option<&str>, domains: &[String]) -> Vec<Problem> {
    let mut out = Vec::new();
    for name in names(domains) {
        let found = match zone {
            Some(z) if name != z && !name.ends_with(&format!(".{z}")) => {
                out.push(problem(
                    format!("{name} is not inside the configured Alidns zone {z}"),
                    "correct validation.zone, or leave it out to have the zone found",
                ));
                continue;
            }
            Some(z) => alidns::zone_exists(client, z)
                .await
                .map(|ok| ok.then(|| z.to_string())),
            None => alidns::find_zone_of(client, &name).await,
        };
        match found {
            Ok(Some(_)) => {}
            Ok(None) => out.push(problem(
                format!("no Alidns zone on this account holds {name}"),
                "add the domain to Alidns under this account, set validation.zone, or prove control with another method",
            )),
            // A network or service hiccup says nothing about the zone: present looks again.
            Err(e) if e.class() != ErrorClass::Permanent => {}
            Err(e) => out.push(problem(
                format!("cannot look up the Alidns zone of {name}: {e}"),
                "check that the Alidns endpoint is reachable and that the AccessKey may read DNS records (AliyunDNSReadOnlyAccess or more)",
            )),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn doms() -> Vec<String> {
        vec!["example.com".into()]
    }

    #[tokio::test]
    async fn webroot_problems_name_the_path_and_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let ok = tmp.path().join("site");
        std::fs::create_dir(&ok).unwrap();
        let v = |p: &Path| Validation::File {
            webroot: p.to_path_buf(),
        };
        assert_eq!(preflight(&v(&ok), &doms(), None).await, vec![]);
        // Nothing was left behind by the probe.
        assert_eq!(std::fs::read_dir(&ok).unwrap().count(), 0);

        let missing = tmp.path().join("missing");
        let p = preflight(&v(&missing), &doms(), None).await;
        assert_eq!(p.len(), 1);
        assert!(
            p[0].to_string()
                .contains(&format!("{} does not exist", missing.display())),
            "{}",
            p[0]
        );
        assert!(p[0].fix.contains("create it"), "{}", p[0]);

        std::os::unix::fs::symlink(&ok, tmp.path().join("link")).unwrap();
        let p = preflight(&v(&tmp.path().join("link")), &doms(), None).await;
        assert!(p[0].what.contains("is a symbolic link"), "{}", p[0]);
        assert_eq!(
            p[0].fix,
            format!("set webroot to the real path {}", ok.display()),
            "{}",
            p[0]
        );

        // A .well-known that is a file: refused, not written through.
        std::fs::write(ok.join(".well-known"), "x").unwrap();
        let p = preflight(&v(&ok), &doms(), None).await;
        assert_eq!(p.len(), 1, "{p:?}");
    }

    #[tokio::test]
    async fn a_read_only_challenge_directory_is_a_problem() {
        // Root ignores modes: the check is then about a read-only mount, not tested here.
        if is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let pki = tmp.path().join(".well-known/pki-validation");
        std::fs::create_dir_all(&pki).unwrap();
        std::fs::set_permissions(&pki, std::fs::Permissions::from_mode(0o555)).unwrap();
        let p = preflight(
            &Validation::File {
                webroot: tmp.path().to_path_buf(),
            },
            &doms(),
            None,
        )
        .await;
        std::fs::set_permissions(&pki, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].what.contains(&pki.display().to_string()), "{}", p[0]);
    }

    fn is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
            .unwrap_or(false)
    }

    #[tokio::test]
    async fn a_validator_that_cannot_run_is_a_problem() {
        let tmp = tempfile::tempdir().unwrap();
        let script = tmp.path().join("hook.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        let v = |argv0: &str| Validation::Command {
            argv: vec![argv0.to_string()],
            timeout: Duration::from_secs(1),
            pass_env: vec![],
        };
        let p = preflight(&v(script.to_str().unwrap()), &doms(), None).await;
        assert!(p[0].what.contains("not executable"), "{}", p[0]);
        assert!(p[0].fix.contains("chmod +x"), "{}", p[0]);
        let p = preflight(&v("no-such-program-cas-certd"), &doms(), None).await;
        assert!(p[0].what.contains("not found in"), "{}", p[0]);
        assert_eq!(preflight(&v("sh"), &doms(), None).await, vec![]);
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            preflight(&v(script.to_str().unwrap()), &doms(), None).await,
            vec![]
        );
    }
}
