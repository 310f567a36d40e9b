//! Proving control of a domain: `file` (webroot), `alidns` (TXT), `command`, `manual`; and
//! `selfcheck`, looking at a published proof from outside as the CA would.
//! Each provider has two steps, present and cleanup; what was presented ([`Presented`]) is kept
//! in the store so a restarted daemon can still clean up. Everything in a [`Challenge`] comes
//! from the network and is checked before it becomes a path, a DNS name or an argument.

pub mod alidns;
pub mod file;
pub mod preflight;
pub mod selfcheck;

pub use preflight::{preflight, Problem};

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Hook, Validation};
use cas_api::model::{Challenge, ValidateType};

#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    #[error("unsafe challenge from CAS: {0}")]
    Unsafe(String),
    /// A symbolic link on the way to the webroot; `real` is where it leads (for the fix).
    #[error("webroot {}: {} is a symbolic link; links on the way to the webroot are not followed (whoever can change one could redirect the proof){}", webroot.display(), link.display(), real.as_ref().map(|r| format!(": set webroot to the real path {}", r.display())).unwrap_or_default())]
    SymlinkedWebroot {
        webroot: PathBuf,
        link: PathBuf,
        real: Option<PathBuf>,
    },
    /// Another certificate's challenge occupies the same place: try again later.
    #[error("waiting: {0}")]
    Busy(String),
    #[error("challenge type does not fit the configured method: {0}")]
    Mismatch(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("alidns: {0}")]
    Dns(#[from] cas_api::ApiError),
    #[error("no Alidns zone found for {0}")]
    NoZone(String),
    #[error("command: {0}")]
    Command(#[from] crate::hook::HookError),
    /// Fleet mode: the proof could not be published for the fleet's hosts.
    #[error("fleet: {0}")]
    Fleet(String),
}

/// What was put in place, so it can be removed later (also after a restart: the store persists
/// it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    File {
        path: PathBuf,
    },
    Alidns {
        zone: String,
        rr: String,
        record_id: String,
    },
    Command {
        argv: Vec<String>,
        domain: String,
        record: String,
        value: String,
        timeout_secs: u64,
        /// `DNS` or `FILE` (empty in records older than this field).
        challenge_type: String,
        /// The certificate, for CERT_NAME at cleanup.
        cert_name: String,
        /// `hook_env` at present, so cleanup runs with the same environment.
        pass_env: Vec<String>,
    },
    /// Nothing to clean: the operator publishes it.
    Manual {
        instructions: String,
    },
}

/// Context a provider may need.
pub struct Ctx<'a> {
    pub cert_name: &'a str,
    pub domains: &'a [String],
    pub client: &'a cas_api::Client,
}

/// The validate type CAS is asked for, given how we prove control.
pub fn validate_type(v: &Validation) -> ValidateType {
    match v {
        Validation::File { .. } => ValidateType::File,
        Validation::Alidns { .. } | Validation::Command { .. } => ValidateType::Dns,
        Validation::Manual { validate_type } => *validate_type,
    }
}

fn kind(c: &Challenge) -> Result<ValidateType, ValidationError> {
    match c {
        Challenge::Dns { .. } => Ok(ValidateType::Dns),
        Challenge::File { .. } => Ok(ValidateType::File),
        Challenge::Unknown { validate_type } => Err(ValidationError::Mismatch(format!(
            "CAS asks for validation type {validate_type:?}, which cas-certd does not know"
        ))),
    }
}

fn mismatch(method: &str, c: &Challenge) -> ValidationError {
    let t = kind(c).map(|k| k.as_str()).unwrap_or("unknown");
    ValidationError::Mismatch(format!(
        "method {method} cannot answer a {t} challenge (the order was made with another validation type)"
    ))
}

/// The checked (type, domain, record, value) of a challenge, as given to commands and people.
/// For DNS the domain is the certificate's base name; for FILE the record is the Uri.
fn checked_fields(
    c: &Challenge,
    domains: &[String],
) -> Result<(ValidateType, String, String, String), ValidationError> {
    match c {
        Challenge::Dns {
            record_domain,
            record_type,
            record_value,
        } => {
            // Shown to people and logged: only the types Alidns would accept (found by fuzzing).
            if !["TXT", "CNAME"].contains(&record_type.to_ascii_uppercase().as_str()) {
                return Err(ValidationError::Unsafe(format!(
                    "RecordType {record_type:?} is not TXT or CNAME"
                )));
            }
            let base = alidns::base_domain(domains).unwrap_or_default();
            // Validate as a host record relative to (or inside) the base name.
            let rr = alidns::relative_rr(record_domain, &base)?;
            alidns::check_value(record_value)?;
            let fqdn = if rr == "@" {
                base.clone()
            } else if record_domain
                .trim_end_matches('.')
                .to_ascii_lowercase()
                .ends_with(&base)
            {
                record_domain.trim_end_matches('.').to_ascii_lowercase()
            } else {
                rr.clone()
            };
            Ok((ValidateType::Dns, base, fqdn, record_value.clone()))
        }
        Challenge::File {
            domain,
            uri,
            content,
        } => {
            file::check_uri(uri)?;
            if !domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
                return Err(ValidationError::Unsafe(format!(
                    "challenge for {domain:?}, which this certificate does not cover"
                )));
            }
            file::check_content(content)?;
            Ok((
                ValidateType::File,
                domain.to_ascii_lowercase(),
                uri.clone(),
                content.clone(),
            ))
        }
        Challenge::Unknown { .. } => Err(mismatch("any", c)),
    }
}

/// The exact text shown to the operator for a manual challenge.
pub fn manual_instructions(c: &Challenge, domains: &[String]) -> Result<String, ValidationError> {
    let (t, domain, record, value) = checked_fields(c, domains)?;
    Ok(match (t, c) {
        (ValidateType::Dns, Challenge::Dns { record_type, record_domain, .. }) => format!(
            "Create a DNS {} record for {domain}: host record \"{}\" (relative to the zone that holds {domain}; \"{record}\" if that zone is {domain}) with value \"{value}\". cas-certd waits until CAS sees it.",
            record_type.to_ascii_uppercase(),
            record_domain.trim_end_matches('.'),
        ),
        _ => format!(
            "Serve a file at http://{domain}{record} whose content is exactly \"{value}\" (no trailing newline). cas-certd waits until CAS sees it."
        ),
    })
}

fn command_env(
    cert_name: &str,
    t: &str,
    domain: &str,
    record: &str,
    value: &str,
) -> Vec<(String, String)> {
    [
        ("CERT_NAME", cert_name),
        ("CHALLENGE_TYPE", t),
        ("CHALLENGE_DOMAIN", domain),
        ("CHALLENGE_RECORD", record),
        ("CHALLENGE_VALUE", value),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

async fn run_command(p: &Presented, step: &str) -> Result<(), ValidationError> {
    let Presented::Command {
        argv,
        domain,
        record,
        value,
        timeout_secs,
        challenge_type,
        cert_name,
        pass_env,
    } = p
    else {
        return Ok(());
    };
    let mut argv = argv.clone();
    argv.push(step.to_string());
    let hook = Hook {
        argv,
        timeout: Duration::from_secs(*timeout_secs),
        pass_env: pass_env.clone(),
    };
    let env = command_env(cert_name, challenge_type, domain, record, value);
    crate::hook::run(&hook, &env).await?;
    Ok(())
}

/// `present` for the providers that need no API client (file, command, manual).
pub async fn present_local(
    validation: &Validation,
    challenge: &Challenge,
    cert_name: &str,
    domains: &[String],
) -> Result<Option<Presented>, ValidationError> {
    kind(challenge)?;
    Ok(Some(match validation {
        Validation::File { webroot } => {
            let Challenge::File {
                domain,
                uri,
                content,
            } = challenge
            else {
                return Err(mismatch("file", challenge));
            };
            let target = file::target(webroot, uri)?;
            let fresh = file::claim(&target, cert_name)?;
            match file::present(webroot, domain, uri, content, domains) {
                Ok(path) => Presented::File { path },
                Err(e) => {
                    // A first publish that failed left nothing of ours there: another
                    // certificate sharing the webroot may publish its proof.
                    if fresh {
                        file::release(&target, cert_name);
                    }
                    return Err(e);
                }
            }
        }
        Validation::Command {
            argv,
            timeout,
            pass_env,
        } => {
            let (t, domain, record, value) = checked_fields(challenge, domains)?;
            let p = Presented::Command {
                argv: argv.clone(),
                domain,
                record,
                value,
                timeout_secs: timeout.as_secs().max(1),
                challenge_type: t.as_str().to_string(),
                cert_name: cert_name.to_string(),
                pass_env: pass_env.clone(),
            };
            run_command(&p, "present").await?;
            p
        }
        Validation::Manual { validate_type } => {
            if kind(challenge)? != *validate_type {
                return Err(mismatch("manual", challenge));
            }
            Presented::Manual {
                instructions: manual_instructions(challenge, domains)?,
            }
        }
        Validation::Alidns { .. } => return Ok(None),
    }))
}

/// Publishes `challenge` the way `validation` says.
pub async fn present(
    validation: &Validation,
    challenge: &Challenge,
    ctx: &Ctx<'_>,
) -> Result<Presented, ValidationError> {
    if let Some(p) = present_local(validation, challenge, ctx.cert_name, ctx.domains).await? {
        return Ok(p);
    }
    let Validation::Alidns { zone } = validation else {
        return Err(mismatch("unknown", challenge));
    };
    let Challenge::Dns {
        record_domain,
        record_type,
        record_value,
    } = challenge
    else {
        return Err(mismatch("alidns", challenge));
    };
    let (zone, rr, record_id) = alidns::present(
        ctx.client,
        zone.as_deref(),
        ctx.domains,
        record_domain,
        record_type,
        record_value,
    )
    .await?;
    Ok(Presented::Alidns {
        zone,
        rr,
        record_id,
    })
}

/// `cleanup` for the providers that need no API client; `false` when it needs one (alidns).
pub async fn cleanup_local(presented: &Presented) -> Result<bool, ValidationError> {
    match presented {
        Presented::File { path } => file::cleanup(path)?,
        Presented::Command { .. } => run_command(presented, "cleanup").await?,
        Presented::Manual { .. } => {}
        Presented::Alidns { .. } => return Ok(false),
    }
    Ok(true)
}

/// Removes what `present` published. Idempotent: a missing file or record is not an error.
pub async fn cleanup(presented: &Presented, ctx: &Ctx<'_>) -> Result<(), ValidationError> {
    if let Presented::File { path } = presented {
        if !file::release(path, ctx.cert_name) {
            return Ok(());
        }
    }
    if cleanup_local(presented).await? {
        return Ok(());
    }
    if let Presented::Alidns { record_id, .. } = presented {
        alidns::cleanup(ctx.client, record_id).await?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn doms(d: &[&str]) -> Vec<String> {
        d.iter().map(|s| s.to_string()).collect()
    }

    fn dns() -> Challenge {
        Challenge::Dns {
            record_domain: "_dnsauth".into(),
            record_type: "TXT".into(),
            record_value: "2024abc".into(),
        }
    }

    #[tokio::test]
    async fn manual_dns_instructions_are_exact() {
        let p = present_local(
            &Validation::Manual {
                validate_type: ValidateType::Dns,
            },
            &dns(),
            "wild",
            &doms(&["*.example.com"]),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            p,
            Presented::Manual {
                instructions: "Create a DNS TXT record for example.com: host record \"_dnsauth\" (relative to the zone that holds example.com; \"_dnsauth\" if that zone is example.com) with value \"2024abc\". cas-certd waits until CAS sees it.".into()
            }
        );
        // A FILE challenge for a manual DNS setting is a mismatch.
        let file = Challenge::File {
            domain: "example.com".into(),
            uri: "/.well-known/pki-validation/fileauth.txt".into(),
            content: "x".into(),
        };
        let e = present_local(
            &Validation::Manual {
                validate_type: ValidateType::Dns,
            },
            &file,
            "w",
            &doms(&["example.com"]),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, ValidationError::Mismatch(_)));
    }

    #[tokio::test]
    async fn manual_file_instructions() {
        let file = Challenge::File {
            domain: "example.com".into(),
            uri: "/.well-known/pki-validation/fileauth.txt".into(),
            content: "tok".into(),
        };
        let text = manual_instructions(&file, &doms(&["example.com"])).unwrap();
        assert_eq!(text, "Serve a file at http://example.com/.well-known/pki-validation/fileauth.txt whose content is exactly \"tok\" (no trailing newline). cas-certd waits until CAS sees it.");
    }

    #[tokio::test]
    async fn command_gets_present_and_cleanup_with_env() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let script = format!(
            "echo \"$1 $CERT_NAME $CHALLENGE_TYPE $CHALLENGE_DOMAIN $CHALLENGE_RECORD $CHALLENGE_VALUE\" >> {}",
            log.display()
        );
        let v = Validation::Command {
            argv: doms(&["sh", "-c", &script, "hook"]),
            timeout: Duration::from_secs(10),
            pass_env: vec![],
        };
        let p = present_local(&v, &dns(), "wild", &doms(&["*.example.com"]))
            .await
            .unwrap()
            .unwrap();
        // Survives a restart: written to a record and read back.
        let mut rec = crate::store::CertRecord::new("wild", doms(&["*.example.com"]));
        rec.phase = crate::store::Phase::Presented {
            pending: Default::default(),
            order_id: cas_api::model::OrderId(1),
            presented: p,
            presented_at: chrono::Utc::now(),
            ordered_at: None,
            attempt: 0,
        };
        let bytes = crate::store::encode(&rec).unwrap();
        let rec = crate::store::decode("wild", &bytes).unwrap();
        let p = rec.phase.presented().unwrap().clone();
        assert!(cleanup_local(&p).await.unwrap());
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "present wild DNS example.com _dnsauth 2024abc\ncleanup wild DNS example.com _dnsauth 2024abc\n"
        );
    }

    #[tokio::test]
    async fn hostile_challenges_never_reach_a_command() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let v = Validation::Command {
            argv: doms(&["sh", "-c", &format!("touch {}", marker.display())]),
            timeout: Duration::from_secs(10),
            pass_env: vec![],
        };
        for c in [
            Challenge::Dns {
                record_domain: "_x; rm -rf /".into(),
                record_type: "TXT".into(),
                record_value: "v".into(),
            },
            Challenge::Dns {
                record_domain: "_x".into(),
                record_type: "TXT".into(),
                record_value: "v\nINJECTED=1".into(),
            },
            Challenge::File {
                domain: "example.com".into(),
                uri: "/.well-known/pki-validation/../x".into(),
                content: "v".into(),
            },
            Challenge::Unknown {
                validate_type: "EMAIL".into(),
            },
        ] {
            assert!(present_local(&v, &c, "a", &doms(&["example.com"]))
                .await
                .is_err());
        }
        assert!(!marker.exists());
    }

    #[tokio::test]
    async fn a_refused_challenge_does_not_block_a_shared_webroot() {
        let root = tempfile::tempdir().unwrap();
        let v = Validation::File {
            webroot: root.path().to_path_buf(),
        };
        let c = |content: &str| Challenge::File {
            domain: "example.com".into(),
            uri: "/.well-known/pki-validation/fileauth.txt".into(),
            content: content.into(),
        };
        let e = present_local(&v, &c("tok\nAddHandler x"), "bad", &doms(&["example.com"]))
            .await
            .unwrap_err();
        assert!(matches!(e, ValidationError::Unsafe(_)), "{e:?}");
        // The refused one holds no claim: the other certificate publishes at once.
        let p = present_local(&v, &c("tok"), "good", &doms(&["example.com"]))
            .await
            .unwrap()
            .unwrap();
        assert!(cleanup_local(&p).await.unwrap());
    }

    #[tokio::test]
    async fn file_provider_through_dispatch() {
        let root = tempfile::tempdir().unwrap();
        let v = Validation::File {
            webroot: root.path().to_path_buf(),
        };
        let c = Challenge::File {
            domain: "www.example.com".into(),
            uri: "/.well-known/pki-validation/fileauth.txt".into(),
            content: "abc".into(),
        };
        let p = present_local(&v, &c, "www", &doms(&["example.com", "www.example.com"]))
            .await
            .unwrap()
            .unwrap();
        let Presented::File { path } = &p else {
            panic!("{p:?}")
        };
        assert_eq!(std::fs::read_to_string(path).unwrap(), "abc");
        assert!(cleanup_local(&p).await.unwrap());
        assert!(!path.exists());
        // DNS challenge for a file method is a mismatch.
        assert!(matches!(
            present_local(&v, &dns(), "www", &doms(&["example.com"])).await,
            Err(ValidationError::Mismatch(_))
        ));
    }
}
