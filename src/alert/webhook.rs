//! Webhooks: the message shape of each service, DingTalk's and Feishu's signatures (and an
//! HMAC header for the generic format), sending, and how each service says it refused.
//!
//! A webhook's URL is a secret (DingTalk, WeCom and Slack put their token in it): it is held in
//! a [`Secret`], remembered for redaction, and never logged; errors name the webhook by its
//! format and place in the config (`dingtalk webhook 1`), and transport errors lose their URL.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::message::Alert;
use crate::config::WebhookFormat;
use cas_api::secret::Secret;

/// How long one request may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The answer read, at most (the services answer a line of JSON).
const ANSWER_CAP: usize = 64 * 1024;
/// The generic format's signature header: `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Cas-Certd-Signature";

/// The transport rule of every URL the daemon sends to (`cas_api::options::check_transport`:
/// `https://`, `http://` only to loopback), and no user or password in it. Its query may hold
/// a token (DingTalk, WeCom).
pub fn check_webhook_url(s: &str) -> Result<url::Url, String> {
    // Never echo `s`: it holds the robot's token.
    let u = url::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    cas_api::options::check_transport(&u).map_err(|e| e.replace(u.as_str(), "the URL"))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err("no user or password in the URL".into());
    }
    Ok(u)
}

/// One configured webhook, its URL and secret read.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub format: WebhookFormat,
    pub url: Secret,
    pub secret: Option<Secret>,
    /// `dingtalk webhook 1`: how logs and metrics name it.
    pub label: String,
}

/// What one request is: where it goes, its body and extra headers.
#[derive(Debug)]
pub struct Request {
    pub url: url::Url,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// Why a send failed; `permanent` when trying again cannot help (refused, misconfigured).
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct SendError {
    pub reason: String,
    pub permanent: bool,
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: new_from_slice cannot fail for it.
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

/// DingTalk: base64(HMAC-SHA256(key = secret, "timestamp\nsecret")), timestamp in ms.
pub fn dingtalk_sign(secret: &str, ts_ms: i64) -> String {
    let b = hmac_sha256(secret.as_bytes(), format!("{ts_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Feishu: base64(HMAC-SHA256(key = "timestamp\nsecret", empty message)), timestamp in s.
pub fn feishu_sign(secret: &str, ts_s: i64) -> String {
    let b = hmac_sha256(format!("{ts_s}\n{secret}").as_bytes(), b"");
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The generic format: `sha256=` and the hex HMAC-SHA256 of the body keyed with the secret.
pub fn generic_sign(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), body))
    )
}

impl Webhook {
    /// The request for `alert` at `now`.
    pub fn request(
        &self,
        alert: &Alert,
        host: &str,
        now: DateTime<Utc>,
    ) -> Result<Request, SendError> {
        let mut url = url::Url::parse(self.url.expose()).map_err(|_| SendError {
            reason: "the URL does not parse".into(),
            permanent: true,
        })?;
        let text = alert.text(host);
        let secret = self.secret.as_ref().map(Secret::expose);
        let mut headers = Vec::new();
        let body: Value = match self.format {
            WebhookFormat::DingTalk => {
                if let Some(s) = secret {
                    let ts = now.timestamp_millis();
                    url.query_pairs_mut()
                        .append_pair("timestamp", &ts.to_string())
                        .append_pair("sign", &dingtalk_sign(s, ts));
                }
                json!({"msgtype": "text", "text": {"content": text}})
            }
            WebhookFormat::WeCom => json!({"msgtype": "text", "text": {"content": text}}),
            WebhookFormat::Feishu => {
                let mut b = json!({"msg_type": "text", "content": {"text": text}});
                if let Some(s) = secret {
                    let ts = now.timestamp();
                    b["timestamp"] = ts.to_string().into();
                    b["sign"] = feishu_sign(s, ts).into();
                }
                b
            }
            WebhookFormat::Slack => json!({"text": text}),
            WebhookFormat::Generic => alert.json(host),
        };
        let body = serde_json::to_vec(&body).unwrap_or_default();
        if let (WebhookFormat::Generic, Some(s)) = (self.format, secret) {
            headers.push((SIGNATURE_HEADER, generic_sign(s, &body)));
        }
        Ok(Request { url, body, headers })
    }

    /// Sends `alert` once.
    pub async fn send(
        &self,
        http: &reqwest::Client,
        alert: &Alert,
        host: &str,
    ) -> Result<(), SendError> {
        let req = self.request(alert, host, Utc::now())?;
        let mut b = http
            .post(req.url)
            .header("Content-Type", "application/json")
            .body(req.body)
            .timeout(TIMEOUT);
        for (k, v) in req.headers {
            b = b.header(k, v);
        }
        let resp = b.send().await.map_err(|e| SendError {
            // The URL holds the token: never in a message.
            reason: e.without_url().to_string(),
            permanent: false,
        })?;
        let status = resp.status();
        let answer = read_capped(resp).await;
        if !status.is_success() {
            return Err(SendError {
                reason: format!("HTTP {status}"),
                // Throttled, timed out or a server error: later may work. Other answers (a
                // refusal, a redirect, which is not followed) will not.
                permanent: !(status.is_server_error() || matches!(status.as_u16(), 408 | 429)),
            });
        }
        refused(self.format, &answer).map_or(Ok(()), |reason| {
            Err(SendError {
                reason,
                permanent: true,
            })
        })
    }
}

async fn read_capped(mut r: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = r.chunk().await {
        if body.len() + chunk.len() > ANSWER_CAP {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    body
}

/// The refusal in a 200 answer: DingTalk and WeCom say `errcode` ≠ 0, Feishu `code` ≠ 0 (a bad
/// signature, a missing keyword, a throttled robot).
fn refused(format: WebhookFormat, answer: &[u8]) -> Option<String> {
    let key = match format {
        WebhookFormat::DingTalk | WebhookFormat::WeCom => "errcode",
        WebhookFormat::Feishu => "code",
        WebhookFormat::Slack | WebhookFormat::Generic => return None,
    };
    let v: Value = serde_json::from_slice(answer).ok()?;
    let code = v.get(key)?.as_i64()?;
    if code == 0 {
        return None;
    }
    let msg = v
        .get("errmsg")
        .or_else(|| v.get("msg"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let msg: String = msg.chars().take(200).collect();
    Some(format!("refused: {key} {code} {msg:?}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SK: &str = "SECtest-signing-key";

    /// Vectors from the services' published Python samples (hmac, hashlib, base64 of the
    /// standard library), computed outside this code.
    #[test]
    fn signatures_match_the_services_samples() {
        assert_eq!(
            dingtalk_sign(SK, 1_700_000_000_000),
            "38YHo4MYez1Ia+7GnNTGeO6a7jgFwpo5YrdXIFR4KY8="
        );
        assert_eq!(
            feishu_sign(SK, 1_700_000_000),
            "I0EbLVT5X8QbAd++iJZFV/3hMqovM43A2E7YHzGlB5c="
        );
        assert_eq!(
            generic_sign(SK, br#"{"a":1}"#),
            "sha256=9a0e722f8b8cd845c1f454c49b8be81475fa87a456f876e42bc69130e486c8cc"
        );
    }

    fn test_alert() -> super::super::message::Alert {
        super::super::message::Alert {
            event: "hook.failed".into(),
            level: "ERROR".into(),
            time: Utc::now(),
            message: "m".into(),
            fields: vec![],
            suppressed: 0,
        }
    }

    #[test]
    fn dingtalk_signs_in_the_query_feishu_in_the_body() {
        let alert = test_alert();
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let hook = |format, url: &str| Webhook {
            format,
            url: Secret::new(url),
            secret: Some(Secret::new(SK)),
            label: "x".into(),
        };
        let r = hook(
            WebhookFormat::DingTalk,
            "https://oapi.dingtalk.com/robot/send?access_token=t",
        )
        .request(&alert, "h", now)
        .unwrap();
        assert_eq!(
            r.url.as_str(),
            "https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1700000000000&sign=38YHo4MYez1Ia%2B7GnNTGeO6a7jgFwpo5YrdXIFR4KY8%3D"
        );
        let b: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(b["msgtype"], "text");
        assert!(b["text"]["content"]
            .as_str()
            .unwrap()
            .contains("hook.failed"));
        let r = hook(
            WebhookFormat::Feishu,
            "https://open.feishu.cn/open-apis/bot/v2/hook/x",
        )
        .request(&alert, "h", now)
        .unwrap();
        let b: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(b["timestamp"], "1700000000");
        assert_eq!(b["sign"], "I0EbLVT5X8QbAd++iJZFV/3hMqovM43A2E7YHzGlB5c=");
        assert_eq!(b["msg_type"], "text");
        assert_eq!(r.url.query(), None);
    }

    #[test]
    fn the_url_rule() {
        assert!(check_webhook_url("https://oapi.dingtalk.com/robot/send?access_token=x").is_ok());
        assert!(check_webhook_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(check_webhook_url("http://[::1]:8080/hook").is_ok());
        assert!(check_webhook_url("http://localhost/hook").is_ok());
        assert!(check_webhook_url("http://hooks.example.com/")
            .unwrap_err()
            .contains("loopback"));
        assert!(check_webhook_url("file:///etc/passwd").is_err());
        assert!(check_webhook_url("https://u:p@x.example/").is_err());
        assert!(check_webhook_url("x").is_err());
    }

    /// A server on loopback that answers every request with `answer` (HTTP 200).
    async fn answering(answer: &'static str) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = vec![0u8; 65536];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn failures_never_carry_the_url_and_refusals_are_final() {
        let alert = test_alert();
        let http = reqwest::Client::new();
        let token = "url-token-in-query-91x";
        let addr = answering(r#"{"errcode":310000,"errmsg":"sign not match"}"#).await;
        let w = Webhook {
            format: WebhookFormat::DingTalk,
            url: Secret::new(format!("http://{addr}/robot/send?access_token={token}")),
            secret: Some(Secret::new(SK)),
            label: "dingtalk webhook 1".into(),
        };
        let e = w.send(&http, &alert, "h").await.unwrap_err();
        assert!(e.permanent && e.reason.contains("310000"), "{e:?}");
        assert!(!e.reason.contains(token), "{e:?}");
        // Nothing listens: a transport error, retried, without the URL.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let w = Webhook {
            url: Secret::new(format!("http://{closed}/robot/send?access_token={token}")),
            ..w
        };
        let e = w.send(&http, &alert, "h").await.unwrap_err();
        assert!(!e.permanent, "{e:?}");
        assert!(
            !e.reason.contains(token) && !e.reason.contains("robot"),
            "{e:?}"
        );
    }

    #[test]
    fn refusals_in_a_200_answer() {
        assert_eq!(
            refused(WebhookFormat::DingTalk, br#"{"errcode":0,"errmsg":"ok"}"#),
            None
        );
        assert!(refused(
            WebhookFormat::DingTalk,
            br#"{"errcode":310000,"errmsg":"sign not match"}"#
        )
        .unwrap()
        .contains("310000"));
        assert!(refused(
            WebhookFormat::Feishu,
            br#"{"code":19021,"msg":"sign match fail"}"#
        )
        .is_some());
        assert_eq!(refused(WebhookFormat::Slack, b"ok"), None);
    }
}
