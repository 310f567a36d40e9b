//! Where the AccessKey comes from, in the official SDKs' order: env vars, the CLI
//! profile file, the INI credentials file, a file named in the config, systemd credentials,
//! the ECS RAM role (refreshed before expiry).
//!
//! A credentials file that group or others can read, that another user owns, or that is not a
//! regular file is refused (`files`): a leaked or planted AccessKey spends the account's quota.
//! Secrets are held in [`Secret`] so no `Debug` shows them.

use std::path::PathBuf;
use std::sync::Arc;

use crate::secret::Secret;

mod ecs;
mod files;
use ecs::EcsRole;
use files::{cli_profile, ini_key, read_private, IniKey};

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("no credentials found (tried: {tried})")]
    NotFound { tried: String },
    #[error("{path}: {reason}")]
    File {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("ECS RAM role: {0}")]
    Ecs(String),
}

/// One AccessKey, possibly temporary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub secret: Secret,
    pub security_token: Option<Secret>,
    /// For temporary credentials.
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
}

/// Registers the key's secret and token so hook output is redacted of them.
fn remember(key: &AccessKey) {
    crate::secret::remember(&key.secret);
    if let Some(t) = &key.security_token {
        crate::secret::remember(t);
    }
}

/// The text of a file holding some other secret (a webhook's URL and key), refused unless it
/// passes the checks every credentials file passes: a regular file of mode 0600 or stricter,
/// owned by root or the daemon's user, on a path no one else controls.
pub fn read_private_file(path: &std::path::Path) -> Result<String, CredentialsError> {
    Ok(read_private(path, true)?.unwrap_or_default())
}

/// Where [`Credentials::resolve`] looks besides the SDKs' usual places (a daemon fills it
/// from its config; the default looks only there).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CredentialsSettings {
    /// A credentials file (INI or `key = value`), mode 0600 or stricter.
    pub file: Option<PathBuf>,
    /// ECS RAM role name for the metadata service.
    pub ecs_ram_role: Option<String>,
}

pub use ecs::ECS_METADATA_ENDPOINT;
/// Temporary credentials are refreshed this long before they expire.
const REFRESH_BEFORE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// A source of credentials; refreshes temporary ones before they expire. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Credentials {
    inner: Arc<Source>,
}

#[derive(Debug)]
enum Source {
    Fixed { key: AccessKey, from: String },
    Ecs(EcsRole),
}

impl Credentials {
    /// Finds credentials in the SDKs' order; `describe()` says where they came from.
    pub fn resolve(settings: &CredentialsSettings) -> Result<Credentials, CredentialsError> {
        Self::resolve_with(settings, &|k| std::env::var(k).ok())
    }

    /// [`Credentials::resolve`] with an explicit environment (tests).
    pub fn resolve_with(
        settings: &CredentialsSettings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Credentials, CredentialsError> {
        let mut tried = Vec::new();
        let get = |k: &str| env(k).filter(|v| !v.is_empty());
        let fixed = |key: AccessKey, from: String| {
            remember(&key);
            Credentials {
                inner: Arc::new(Source::Fixed { key, from }),
            }
        };

        // 1. Environment.
        match (
            get("ALIBABA_CLOUD_ACCESS_KEY_ID"),
            get("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        ) {
            (Some(id), Some(secret)) => {
                let key = AccessKey {
                    id,
                    secret: Secret::new(secret),
                    security_token: get("ALIBABA_CLOUD_SECURITY_TOKEN").map(Secret::new),
                    expires: None,
                };
                return Ok(fixed(key, "environment".into()));
            }
            (Some(_), None) => {
                tried.push("environment (ALIBABA_CLOUD_ACCESS_KEY_SECRET unset)".into())
            }
            _ => tried.push("environment".to_string()),
        }
        let home = get("HOME").map(PathBuf::from);
        let profile = get("ALIBABA_CLOUD_PROFILE");

        // 2. The aliyun CLI profile file.
        let (cli_path, explicit) = match get("ALIBABA_CLOUD_CONFIG_FILE") {
            Some(p) => (Some(PathBuf::from(p)), true),
            None => (home.as_ref().map(|h| h.join(".aliyun/config.json")), false),
        };
        if let Some(path) = cli_path {
            if let Some(text) = read_private(&path, explicit)? {
                if let Some(key) = cli_profile(&path, &text, profile.as_deref())? {
                    return Ok(fixed(key, path.display().to_string()));
                }
            }
            tried.push(path.display().to_string());
        }

        // 3. The SDKs' INI credentials file.
        let (ini_path, explicit) = match get("ALIBABA_CLOUD_CREDENTIALS_FILE") {
            Some(p) => (Some(PathBuf::from(p)), true),
            None => (
                home.as_ref().map(|h| h.join(".alibabacloud/credentials")),
                false,
            ),
        };
        if let Some(path) = ini_path {
            if let Some(text) = read_private(&path, explicit)? {
                let section = profile.as_deref().unwrap_or("default");
                match ini_key(&path, &text, section)? {
                    IniKey::Key(key) => return Ok(fixed(key, path.display().to_string())),
                    IniKey::EcsRole(role) => {
                        return Ok(Self::ecs(Some(role), env));
                    }
                    IniKey::None => {}
                }
            }
            tried.push(path.display().to_string());
        }

        // 4. A file named in the config: it was asked for, so it must exist.
        if let Some(path) = &settings.file {
            let text = read_private(path, true)?.unwrap_or_default();
            let section = profile.as_deref().unwrap_or("default");
            match ini_key(path, &text, section)? {
                IniKey::Key(key) => return Ok(fixed(key, path.display().to_string())),
                IniKey::EcsRole(role) => return Ok(Self::ecs(Some(role), env)),
                IniKey::None => {
                    return Err(CredentialsError::File {
                        path: path.clone(),
                        reason: "no access_key_id and access_key_secret in it".into(),
                    })
                }
            }
        }

        // 5. systemd credentials (LoadCredential=access_key_id:..., access_key_secret:...).
        if let Some(dir) = get("CREDENTIALS_DIRECTORY").map(PathBuf::from) {
            let id_path = dir.join("access_key_id");
            let secret_path = dir.join("access_key_secret");
            if let (Some(id), Some(secret)) = (
                read_private(&id_path, false)?,
                read_private(&secret_path, false)?,
            ) {
                let token = read_private(&dir.join("security_token"), false)?;
                let key = AccessKey {
                    id: id.trim().to_string(),
                    secret: Secret::new(secret.trim()),
                    security_token: token
                        .map(|t| t.trim().to_string())
                        .filter(|t| !t.is_empty())
                        .map(Secret::new),
                    expires: None,
                };
                if !key.id.is_empty() && !key.secret.is_empty() {
                    return Ok(fixed(
                        key,
                        format!("systemd credentials in {}", dir.display()),
                    ));
                }
            }
            tried.push(format!("systemd credentials in {}", dir.display()));
        }

        // 6. ECS RAM role, only when asked for (the metadata address is not ours to probe).
        if let Some(role) = settings
            .ecs_ram_role
            .clone()
            .or_else(|| get("ALIBABA_CLOUD_ECS_METADATA"))
        {
            return Ok(Self::ecs(Some(role).filter(|r| !r.is_empty()), env));
        }
        tried.push("ECS RAM role (not configured)".into());
        Err(CredentialsError::NotFound {
            tried: tried.join(", "),
        })
    }

    fn ecs(role: Option<String>, env: &dyn Fn(&str) -> Option<String>) -> Credentials {
        Credentials {
            inner: Arc::new(Source::Ecs(EcsRole::new(role, env))),
        }
    }

    /// Fixed credentials (tests, the demo).
    pub fn fixed(key: AccessKey) -> Credentials {
        remember(&key);
        Credentials {
            inner: Arc::new(Source::Fixed {
                key,
                from: "fixed".into(),
            }),
        }
    }

    /// The current key, refreshed if it is about to expire.
    pub async fn get(&self) -> Result<AccessKey, CredentialsError> {
        match &*self.inner {
            Source::Fixed { key, .. } => Ok(key.clone()),
            Source::Ecs(e) => {
                let mut cache = e.cache.lock().await;
                if let Some(k) = cache.as_ref() {
                    let fresh = k
                        .expires
                        .is_none_or(|t| t - REFRESH_BEFORE > chrono::Utc::now());
                    if fresh {
                        return Ok(k.clone());
                    }
                }
                let k = e.fetch().await?;
                remember(&k);
                *cache = Some(k.clone());
                Ok(k)
            }
        }
    }

    /// Where they came from, e.g. "environment" or "/etc/cas-certd/credentials" — never the secret.
    pub fn describe(&self) -> String {
        match &*self.inner {
            Source::Fixed { from, .. } => from.clone(),
            Source::Ecs(e) => match &e.role {
                Some(r) => format!("ECS RAM role {r}"),
                None => "ECS RAM role".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::path::Path;

    fn write(dir: &Path, name: &str, mode: u32, text: &str) -> PathBuf {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&p)
            .expect("create");
        f.write_all(text.as_bytes()).expect("write");
        p
    }

    fn env_of(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        move |k| m.get(k).cloned()
    }

    async fn key_of(c: &Credentials) -> AccessKey {
        c.get().await.expect("key")
    }

    #[tokio::test]
    async fn environment_comes_first() {
        let d = tempfile::tempdir().expect("tmp");
        write(
            d.path(),
            ".alibabacloud/credentials",
            0o600,
            "[default]\naccess_key_id = ini\naccess_key_secret = s\n",
        );
        let env = env_of(&[
            ("HOME", d.path().display().to_string()),
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "envid".into()),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "envsecret".into()),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", "tok".into()),
        ]);
        let c = Credentials::resolve_with(&Default::default(), &env).expect("resolve");
        assert_eq!(c.describe(), "environment");
        let k = key_of(&c).await;
        assert_eq!(k.id, "envid");
        assert_eq!(k.secret.expose(), "envsecret");
        assert_eq!(k.security_token.as_ref().map(Secret::expose), Some("tok"));
        assert!(!format!("{c:?}{k:?}").contains("envsecret"));
    }

    #[tokio::test]
    async fn cli_profile_file_modes() {
        let d = tempfile::tempdir().expect("tmp");
        write(
            d.path(),
            ".aliyun/config.json",
            0o600,
            r#"{"current":"work","profiles":[
              {"name":"default","mode":"AK","access_key_id":"a","access_key_secret":"b"},
              {"name":"work","mode":"StsToken","access_key_id":"w","access_key_secret":"ws","sts_token":"t","region_id":"cn-hangzhou"}]}"#,
        );
        let env = env_of(&[("HOME", d.path().display().to_string())]);
        let c = Credentials::resolve_with(&Default::default(), &env).expect("resolve");
        let k = key_of(&c).await;
        assert_eq!((k.id.as_str(), k.secret.expose()), ("w", "ws"));
        assert_eq!(k.security_token.as_ref().map(Secret::expose), Some("t"));
        let env = env_of(&[
            ("HOME", d.path().display().to_string()),
            ("ALIBABA_CLOUD_PROFILE", "default".into()),
        ]);
        let k = key_of(&Credentials::resolve_with(&Default::default(), &env).expect("r")).await;
        assert_eq!(k.id, "a");
        assert!(k.security_token.is_none());
    }

    #[tokio::test]
    async fn ini_file_profile_and_type() {
        let d = tempfile::tempdir().expect("tmp");
        let p = write(
            d.path(),
            "creds.ini",
            0o600,
            "[default]\ntype = access_key\naccess_key_id = d\naccess_key_secret = ds\n\n[prod]\ntype = access_key\naccess_key_id = p\naccess_key_secret = ps\n",
        );
        let env = env_of(&[
            ("ALIBABA_CLOUD_CREDENTIALS_FILE", p.display().to_string()),
            ("ALIBABA_CLOUD_PROFILE", "prod".into()),
        ]);
        let c = Credentials::resolve_with(&Default::default(), &env).expect("resolve");
        assert_eq!(c.describe(), p.display().to_string());
        assert_eq!(key_of(&c).await.id, "p");
    }

    #[tokio::test]
    async fn config_named_file_with_bare_lines() {
        let d = tempfile::tempdir().expect("tmp");
        let p = write(
            d.path(),
            "c",
            0o400,
            "# cas-certd\naccess_key_id = bare\naccess_key_secret = bs\n",
        );
        let s = CredentialsSettings {
            file: Some(p.clone()),
            ecs_ram_role: None,
        };
        let c = Credentials::resolve_with(&s, &env_of(&[])).expect("resolve");
        assert_eq!(key_of(&c).await.id, "bare");
        // A named file that is missing is an error, not a fall-through.
        let s = CredentialsSettings {
            file: Some(d.path().join("missing")),
            ecs_ram_role: None,
        };
        assert!(matches!(
            Credentials::resolve_with(&s, &env_of(&[])),
            Err(CredentialsError::File { .. })
        ));
    }

    #[test]
    fn group_readable_file_is_refused() {
        let d = tempfile::tempdir().expect("tmp");
        let p = write(
            d.path(),
            "c",
            0o640,
            "access_key_id = x\naccess_key_secret = topsecret\n",
        );
        let s = CredentialsSettings {
            file: Some(p.clone()),
            ecs_ram_role: None,
        };
        let e = Credentials::resolve_with(&s, &env_of(&[])).expect_err("refused");
        let m = e.to_string();
        assert!(m.contains(&p.display().to_string()), "{m}");
        assert!(m.contains("chmod 600"), "{m}");
        assert!(!m.contains("topsecret"), "{m}");
    }

    #[tokio::test]
    async fn systemd_credentials_directory() {
        let d = tempfile::tempdir().expect("tmp");
        write(d.path(), "access_key_id", 0o400, "sysid\n");
        write(d.path(), "access_key_secret", 0o400, "syssecret\n");
        let env = env_of(&[("CREDENTIALS_DIRECTORY", d.path().display().to_string())]);
        let c = Credentials::resolve_with(&Default::default(), &env).expect("resolve");
        let k = key_of(&c).await;
        assert_eq!((k.id.as_str(), k.secret.expose()), ("sysid", "syssecret"));
        assert!(c.describe().starts_with("systemd credentials"));
    }

    #[test]
    fn nothing_found_lists_what_was_tried() {
        let d = tempfile::tempdir().expect("tmp");
        let env = env_of(&[("HOME", d.path().display().to_string())]);
        let e = Credentials::resolve_with(&Default::default(), &env).expect_err("none");
        let m = e.to_string();
        assert!(
            m.contains("environment") && m.contains("config.json"),
            "{m}"
        );
    }

    #[test]
    fn a_fifo_is_refused_at_once_not_waited_on() {
        let d = tempfile::tempdir().expect("tmp");
        // A FIFO named as the credentials file: refused at once, not waited on for ever.
        let fifo = d.path().join("fifo");
        let st = std::process::Command::new("mkfifo")
            .args(["-m", "600"])
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(st.success());
        let s = CredentialsSettings {
            file: Some(fifo.clone()),
            ecs_ram_role: None,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(Credentials::resolve_with(&s, &env_of(&[])).map(|_| ()));
        });
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("reading a FIFO hung");
        let m = r.expect_err("a FIFO was read").to_string();
        assert!(m.contains("a FIFO, not a regular file"), "{m}");
    }

    #[test]
    fn a_file_owned_by_another_user_is_refused() {
        // Mode 0600, owned by nobody: another user's file is not our secret.
        let d = tempfile::tempdir().expect("tmp");
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped the owner case: only root can chown a file to nobody");
            return;
        }
        let p = write(
            d.path(),
            "c",
            0o600,
            "access_key_id = x\naccess_key_secret = topsecret\n",
        );
        std::os::unix::fs::chown(&p, Some(65534), None).expect("chown");
        let env = env_of(&[("ALIBABA_CLOUD_CREDENTIALS_FILE", p.display().to_string())]);
        let e = Credentials::resolve_with(&Default::default(), &env).expect_err("refused");
        let m = e.to_string();
        assert!(m.contains("owned by uid 65534"), "{m}");
        assert!(!m.contains("topsecret"), "{m}");
    }
}
