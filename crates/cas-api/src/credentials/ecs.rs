//! The ECS RAM role: temporary credentials from the instance metadata service.
//!
//! An instance in hardened mode answers only requests that carry a session token: PUT
//! `/latest/api/token` with the token's lifetime in a header, then the token in a header on each
//! GET. We always ask for one. As Alibaba's credentials SDKs do (the Python one is in the test
//! venv, `scripts/setup-python.sh`), a refused or failed token call means plain mode (GETs
//! without a token), and a GET that fails with a token is tried once without it, unless
//! `ALIBABA_CLOUD_IMDSV1_DISABLED=true` forbids plain mode: then either failure is the error.

use super::{AccessKey, CredentialsError};
use crate::secret::Secret;

/// The default ECS metadata service.
pub const ECS_METADATA_ENDPOINT: &str = "http://100.100.100.200";
/// Where a session token is asked for (PUT).
const TOKEN_PATH: &str = "/latest/api/token";
/// The header of the PUT that asks for a token, with its lifetime in seconds.
const TOKEN_TTL_HEADER: &str = "X-aliyun-ecs-metadata-token-ttl-seconds";
/// The header every GET carries the token in.
const TOKEN_HEADER: &str = "X-aliyun-ecs-metadata-token";
/// The lifetime asked for: 6 hours, as the SDKs ask. A token is used for one refresh only.
const TOKEN_TTL_SECS: u32 = 21_600;
/// Set to `true`, plain mode is never used (the SDKs' variable).
const V1_DISABLED_ENV: &str = "ALIBABA_CLOUD_IMDSV1_DISABLED";
/// The metadata service's answers are a role name or a small JSON document.
const ANSWER_CAP: usize = 64 * 1024;

#[derive(Debug)]
pub(super) struct EcsRole {
    /// None: ask the metadata service which role is attached.
    pub(super) role: Option<String>,
    endpoint: String,
    /// Plain mode (no session token) is forbidden.
    v1_disabled: bool,
    pub(super) cache: tokio::sync::Mutex<Option<AccessKey>>,
}

impl EcsRole {
    /// The role (`None`: the attached one) on the metadata service that `env` names
    /// (`ALIBABA_CLOUD_ECS_METADATA_ENDPOINT`, default [`ECS_METADATA_ENDPOINT`]).
    pub(super) fn new(role: Option<String>, env: &dyn Fn(&str) -> Option<String>) -> EcsRole {
        let endpoint = env("ALIBABA_CLOUD_ECS_METADATA_ENDPOINT")
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| ECS_METADATA_ENDPOINT.to_string());
        EcsRole {
            role,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            v1_disabled: env(V1_DISABLED_ENV).is_some_and(|v| v.eq_ignore_ascii_case("true")),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    pub(super) async fn fetch(&self) -> Result<AccessKey, CredentialsError> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(1))
            .timeout(std::time::Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| CredentialsError::Ecs(e.to_string()))?;
        let token = self.session_token(&http).await?;
        let base = format!(
            "{}/latest/meta-data/ram/security-credentials/",
            self.endpoint
        );
        let role = match &self.role {
            Some(r) => r.clone(),
            None => {
                let text = self.get(&http, &base, token.as_ref()).await?;
                let r = text.lines().next().unwrap_or("").trim().to_string();
                if r.is_empty() {
                    return Err(CredentialsError::Ecs(
                        "no RAM role attached to this instance".into(),
                    ));
                }
                r
            }
        };
        if !role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(CredentialsError::Ecs(format!("invalid role name {role:?}")));
        }
        let text = self
            .get(&http, &format!("{base}{role}"), token.as_ref())
            .await?;
        parse_ecs_answer(&text)
    }

    /// A session token, or `None` for plain mode when the service refuses one (and plain mode
    /// is allowed).
    async fn session_token(
        &self,
        http: &reqwest::Client,
    ) -> Result<Option<Secret>, CredentialsError> {
        let url = format!("{}{TOKEN_PATH}", self.endpoint);
        let answer = async {
            let r = http
                .put(&url)
                .header(TOKEN_TTL_HEADER, TOKEN_TTL_SECS.to_string())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = r.status();
            if !status.is_success() {
                return Err(format!("HTTP {status}"));
            }
            let text = read_capped(r).await?;
            match text.trim() {
                "" => Err("an empty token".to_string()),
                t => Ok(Secret::new(t)),
            }
        };
        match answer.await {
            Ok(token) => {
                crate::secret::remember(&token);
                Ok(Some(token))
            }
            Err(reason) if self.v1_disabled => Err(CredentialsError::Ecs(format!(
                "{url}: no session token ({reason}), and {V1_DISABLED_ENV}=true forbids plain mode"
            ))),
            Err(reason) => {
                tracing::debug!(%reason, "ECS metadata: no session token; plain mode");
                Ok(None)
            }
        }
    }

    /// GET `url` with the token; when that fails, once more without it (unless forbidden).
    async fn get(
        &self,
        http: &reqwest::Client,
        url: &str,
        token: Option<&Secret>,
    ) -> Result<String, CredentialsError> {
        match get_text(http, url, token).await {
            Err(e) if token.is_some() && !self.v1_disabled => {
                tracing::debug!(error = %e, "ECS metadata: refused with the session token; plain mode");
                get_text(http, url, None).await
            }
            r => r,
        }
    }
}

async fn get_text(
    http: &reqwest::Client,
    url: &str,
    token: Option<&Secret>,
) -> Result<String, CredentialsError> {
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.header(TOKEN_HEADER, t.expose());
    }
    let r = req
        .send()
        .await
        .map_err(|e| CredentialsError::Ecs(format!("{url}: {e}")))?;
    let status = r.status();
    let text = read_capped(r)
        .await
        .map_err(|e| CredentialsError::Ecs(format!("{url}: {e}")))?;
    if !status.is_success() {
        return Err(CredentialsError::Ecs(format!("{url}: HTTP {status}")));
    }
    Ok(text)
}

/// The body as text, refused past [`ANSWER_CAP`].
async fn read_capped(mut r: reqwest::Response) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > ANSWER_CAP {
            return Err(format!("answer larger than {ANSWER_CAP} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "answer is not UTF-8".to_string())
}

fn parse_ecs_answer(text: &str) -> Result<AccessKey, CredentialsError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        code: Option<String>,
        access_key_id: Option<String>,
        access_key_secret: Option<Secret>,
        security_token: Option<Secret>,
        expiration: Option<String>,
    }
    let a: Answer = serde_json::from_str(text)
        .map_err(|e| CredentialsError::Ecs(format!("unreadable metadata answer: {e}")))?;
    if a.code.as_deref() != Some("Success") {
        return Err(CredentialsError::Ecs(format!(
            "metadata service answered Code {:?}",
            a.code.unwrap_or_default()
        )));
    }
    let expires = match a.expiration {
        Some(e) => Some(
            chrono::DateTime::parse_from_rfc3339(&e)
                .map_err(|err| CredentialsError::Ecs(format!("bad Expiration {e:?}: {err}")))?
                .with_timezone(&chrono::Utc),
        ),
        None => None,
    };
    match (a.access_key_id, a.access_key_secret) {
        (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Ok(AccessKey {
            id,
            secret,
            security_token: a.security_token.filter(|t| !t.is_empty()),
            expires,
        }),
        _ => Err(CredentialsError::Ecs(
            "metadata answer without a key".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Credentials, CredentialsSettings};
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// How the stand-in treats session tokens.
    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        /// Hands out tokens and answers GETs only with a valid one.
        Hardened,
        /// Answers the token PUT with 403 (an older service, or tokens switched off) and every
        /// GET without one.
        TokenRefused,
        /// Closes the connection on the token PUT; GETs without a token.
        TokenDropped,
    }

    const TOKEN: &str = "imds-session-token-7f3a9c";

    /// One request the stand-in saw: method, path, the token header, the TTL header.
    type Seen = (String, String, Option<String>, Option<String>);

    /// A metadata service on loopback: records each request and hands out keys expiring
    /// `expire_in` from now.
    struct Stand {
        url: String,
        hits: Arc<AtomicUsize>,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    fn header(req: &str, name: &str) -> Option<String> {
        req.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    }

    async fn stand_in(mode: Mode, expire_in: chrono::TimeDelta) -> Stand {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (h, sn) = (hits.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let mut words = req.split_whitespace();
                let method = words.next().unwrap_or("").to_string();
                let path = words.next().unwrap_or("").to_string();
                let token = header(&req, TOKEN_HEADER);
                let ttl = header(&req, TOKEN_TTL_HEADER);
                sn.lock().expect("lock").push((
                    method.clone(),
                    path.clone(),
                    token.clone(),
                    ttl.clone(),
                ));
                let (status, body) = if path == TOKEN_PATH {
                    match (mode, method.as_str(), ttl) {
                        (Mode::TokenDropped, _, _) => continue,
                        (Mode::TokenRefused, _, _) => ("403 Forbidden", String::new()),
                        (Mode::Hardened, "PUT", Some(_)) => ("200 OK", TOKEN.to_string()),
                        (Mode::Hardened, _, _) => ("400 Bad Request", String::new()),
                    }
                } else if mode == Mode::Hardened && token.as_deref() != Some(TOKEN) {
                    ("401 Unauthorized", String::new())
                } else if path.ends_with("/security-credentials/") {
                    ("200 OK", "myrole".to_string())
                } else if path.ends_with("/security-credentials/myrole") {
                    let i = h.fetch_add(1, Ordering::SeqCst);
                    let exp = (chrono::Utc::now() + expire_in).format("%Y-%m-%dT%H:%M:%SZ");
                    let body = format!(
                        r#"{{"Code":"Success","AccessKeyId":"STS.id{i}","AccessKeySecret":"sec{i}","SecurityToken":"tok{i}","Expiration":"{exp}","LastUpdated":"x"}}"#
                    );
                    ("200 OK", body)
                } else {
                    ("404 Not Found", String::new())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        Stand {
            url: format!("http://{addr}"),
            hits,
            seen,
        }
    }

    fn env_of(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    }

    fn role(name: Option<&str>) -> CredentialsSettings {
        CredentialsSettings {
            file: None,
            ecs_ram_role: Some(name.unwrap_or("").to_string()),
        }
    }

    #[tokio::test]
    async fn ecs_role_refreshes_before_expiry() {
        // Expiring in 3 minutes: inside the 5-minute refresh window, so every get() refreshes.
        let st = stand_in(Mode::TokenRefused, chrono::TimeDelta::minutes(3)).await;
        let env = env_of(vec![(
            "ALIBABA_CLOUD_ECS_METADATA_ENDPOINT",
            st.url.clone(),
        )]);
        let c = Credentials::resolve_with(&role(Some("myrole")), &env).expect("resolve");
        let k1 = c.get().await.expect("key");
        let k2 = c.get().await.expect("key");
        assert_eq!(k1.id, "STS.id0");
        assert_eq!(k2.id, "STS.id1");
        assert_eq!(k2.security_token.as_ref().map(Secret::expose), Some("tok1"));
        assert_eq!(st.hits.load(Ordering::SeqCst), 2);

        // Expiring in an hour: cached.
        let st = stand_in(Mode::TokenRefused, chrono::TimeDelta::hours(1)).await;
        let env = env_of(vec![
            ("ALIBABA_CLOUD_ECS_METADATA_ENDPOINT", st.url.clone()),
            ("ALIBABA_CLOUD_ECS_METADATA", String::new()),
        ]);
        let none = CredentialsSettings {
            file: None,
            ecs_ram_role: None,
        };
        assert!(
            Credentials::resolve_with(&none, &env).is_err(),
            "an empty ALIBABA_CLOUD_ECS_METADATA is not a role"
        );
        // Empty role name: discovered from the metadata service.
        let c = Credentials::resolve_with(&role(None), &env).expect("resolve");
        assert_eq!(c.get().await.expect("key").id, "STS.id0");
        assert_eq!(c.get().await.expect("key").id, "STS.id0");
        assert_eq!(st.hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn hardened_mode_puts_for_a_token_and_sends_it_on_every_get() {
        let st = stand_in(Mode::Hardened, chrono::TimeDelta::hours(1)).await;
        let env = env_of(vec![(
            "ALIBABA_CLOUD_ECS_METADATA_ENDPOINT",
            st.url.clone(),
        )]);
        // The role discovered too: both GETs need the token.
        let c = Credentials::resolve_with(&role(None), &env).expect("resolve");
        let k = c.get().await.expect("key");
        assert_eq!(k.id, "STS.id0");
        let seen = st.seen.lock().expect("lock").clone();
        let token = Some(TOKEN.to_string());
        let ttl = Some("21600".to_string());
        let base = "/latest/meta-data/ram/security-credentials/";
        assert_eq!(
            seen,
            vec![
                ("PUT".into(), TOKEN_PATH.into(), None, ttl),
                ("GET".into(), base.into(), token.clone(), None),
                ("GET".into(), format!("{base}myrole"), token, None),
            ]
        );
        // The token is a secret the daemon holds: redacted from what hooks print.
        assert_eq!(crate::secret::redact(&format!("t={TOKEN}")), "t=[redacted]");
    }

    #[tokio::test]
    async fn a_refused_or_dropped_token_call_falls_back_to_plain_mode() {
        for mode in [Mode::TokenRefused, Mode::TokenDropped] {
            let st = stand_in(mode, chrono::TimeDelta::hours(1)).await;
            let env = env_of(vec![(
                "ALIBABA_CLOUD_ECS_METADATA_ENDPOINT",
                st.url.clone(),
            )]);
            let c = Credentials::resolve_with(&role(Some("myrole")), &env).expect("resolve");
            assert_eq!(c.get().await.expect("key").id, "STS.id0");
            let seen = st.seen.lock().expect("lock").clone();
            assert_eq!(seen.len(), 2, "{seen:?}");
            assert_eq!(
                (seen[0].0.as_str(), seen[0].1.as_str()),
                ("PUT", TOKEN_PATH)
            );
            assert_eq!(seen[1].0, "GET");
            assert_eq!(seen[1].2, None, "plain mode sends no token");
        }
    }

    #[tokio::test]
    async fn with_imds_v1_disabled_a_refused_token_is_the_error() {
        let st = stand_in(Mode::TokenRefused, chrono::TimeDelta::hours(1)).await;
        let env = env_of(vec![
            ("ALIBABA_CLOUD_ECS_METADATA_ENDPOINT", st.url.clone()),
            ("ALIBABA_CLOUD_IMDSV1_DISABLED", "true".into()),
        ]);
        let c = Credentials::resolve_with(&role(Some("myrole")), &env).expect("resolve");
        let m = c
            .get()
            .await
            .expect_err("plain mode is forbidden")
            .to_string();
        assert!(
            m.contains("HTTP 403") && m.contains("ALIBABA_CLOUD_IMDSV1_DISABLED"),
            "{m}"
        );
        assert_eq!(st.seen.lock().expect("lock").len(), 1, "no GET after");
        // The hardened service still works with it set.
        let st = stand_in(Mode::Hardened, chrono::TimeDelta::hours(1)).await;
        let env = env_of(vec![
            ("ALIBABA_CLOUD_ECS_METADATA_ENDPOINT", st.url.clone()),
            ("ALIBABA_CLOUD_IMDSV1_DISABLED", "TRUE".into()),
        ]);
        let c = Credentials::resolve_with(&role(Some("myrole")), &env).expect("resolve");
        assert_eq!(c.get().await.expect("key").id, "STS.id0");
    }

    #[tokio::test]
    async fn an_oversized_metadata_answer_is_refused() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let body = "x".repeat(ANSWER_CAP + 1);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        let env = env_of(vec![(
            "ALIBABA_CLOUD_ECS_METADATA_ENDPOINT",
            format!("http://{addr}"),
        )]);
        let c = Credentials::resolve_with(&role(Some("myrole")), &env).expect("resolve");
        let m = c.get().await.expect_err("too large").to_string();
        assert!(m.contains("larger than"), "{m}");
    }
}
