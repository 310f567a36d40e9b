//! The CAS + Alidns HTTP client: signing, transport, retries, rate limiting.
//!
//! Every attempt is signed afresh (new nonce and timestamp). What goes on the wire is exactly
//! what was signed: for v1 the form body is the canonical query string plus the signature;
//! for V3 the query string is the canonical query and the signed headers are sent as signed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::credentials::Credentials;
use crate::error::{redact_message, ApiError, ErrorClass, RESIGN_ONCE_CODES};
use crate::options::{check_endpoint, ClientOptions, SignatureVersion};
use crate::ratelimit::RateLimiter;
use crate::responses::*;
use crate::{backoff, sign};

mod actions;

/// CAS API version.
pub const CAS_VERSION: &str = "2020-04-07";
/// Alidns API version.
pub const ALIDNS_VERSION: &str = "2015-01-09";

/// Retries after Throttling answers, at most (all within `max_retry_time`).
const MAX_THROTTLE_RETRIES: u32 = 10;

/// Called once per attempt with the action and `"OK"`, the error Code, or `"Transport"`.
pub type Observer = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// A configured API client, cheap to clone (shares its rate limiter and HTTP pool).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    observer: Option<Observer>,
}

struct Inner {
    http: reqwest::Client,
    cas: url::Url,
    alidns: url::Url,
    signature: SignatureVersion,
    creds: Credentials,
    limiter: RateLimiter,
    max_attempts: u32,
    max_retry_time: Duration,
    /// When `api.clock_skew` was last reported; cleared by a call that gets through, so one
    /// skew incident is one event, however many calls and certificates meet it.
    skew_reported: std::sync::Mutex<Option<Instant>>,
}

/// A skew still present this long after it was reported is reported again.
const SKEW_REPORT_EVERY: Duration = Duration::from_secs(3600);

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("cas", &self.inner.cas.as_str())
            .field("alidns", &self.inner.alidns.as_str())
            .field("signature", &self.inner.signature)
            .field("credentials", &self.inner.creds.describe())
            .finish_non_exhaustive()
    }
}

/// Which API a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Cas,
    Alidns,
}

/// Whether a call may be repeated after an ambiguous failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Reads and state changes that are harmless to repeat.
    Safe,
    /// Creates a paid order: only repeated when the failure proves nothing happened.
    NotBlindly,
}

/// The `host` header value for a URL: host, plus the port when it is not the default.
fn host_header(url: &url::Url) -> String {
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
        Some(h) => h.to_string(),
        None => String::new(),
    };
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

fn p(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

impl Client {
    /// Builds a client. Fails on an endpoint that breaks [`check_endpoint`].
    pub fn new(opts: &ClientOptions, creds: Credentials) -> Result<Client, ApiError> {
        for url in [&opts.cas_endpoint, &opts.alidns_endpoint] {
            check_endpoint(url).map_err(|e| {
                // A password in a refused URL is not repeated into the message (or a log).
                let mut shown = url.clone();
                let _ = shown.set_password(None);
                ApiError::Config(format!("endpoint {shown}: {e}"))
            })?;
        }
        let http = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .read_timeout(opts.read_timeout)
            // A whole call may not outlast connect + a few reads; bounds slow-drip answers.
            .timeout(opts.connect_timeout + opts.read_timeout * 3)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cas-certd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Config(format!("HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                cas: opts.cas_endpoint.clone(),
                alidns: opts.alidns_endpoint.clone(),
                signature: opts.signature,
                creds,
                limiter: RateLimiter::new(opts.qps, &opts.qps_overrides),
                max_attempts: opts.max_attempts.max(1),
                max_retry_time: opts.max_retry_time,
                skew_reported: std::sync::Mutex::new(None),
            }),
            observer: None,
        })
    }

    /// Installs a callback told about every attempt (metrics, tests).
    pub fn set_observer(&mut self, f: Observer) {
        self.observer = Some(f);
    }

    /// Where the credentials came from (never the secret).
    pub fn credentials_source(&self) -> String {
        self.inner.creds.describe()
    }

    fn observe(&self, action: &str, outcome: &str) {
        if let Some(o) = &self.observer {
            o(action, outcome);
        }
    }

    /// One call with the retry policy; returns the JSON body of the successful answer.
    async fn call(
        &self,
        api: Api,
        action: &str,
        params: Vec<(String, String)>,
        repeat: Repeat,
    ) -> Result<serde_json::Value, ApiError> {
        let started = Instant::now();
        // Failures count against `max_attempts`; Throttling answers have their own, larger
        // budget (the service is fine, only busy: callers should wait, not fail), and both are
        // bounded by `max_retry_time`.
        let mut failures: u32 = 0;
        let mut throttles: u32 = 0;
        let mut resigned_for: Option<String> = None;
        loop {
            self.inner.limiter.acquire(action).await;
            let mut server_date = None;
            let result = self.attempt(api, action, &params, &mut server_date).await;
            let err = match result {
                Ok(v) => {
                    self.observe(action, "OK");
                    if let Ok(mut r) = self.inner.skew_reported.lock() {
                        *r = None;
                    }
                    return Ok(v);
                }
                Err(e) => e,
            };
            self.observe(
                action,
                err.code().unwrap_or(match &err {
                    ApiError::Transport { .. } => "Transport",
                    ApiError::Decode { .. } => "Decode",
                    _ => "Error",
                }),
            );
            let code = err.code().map(str::to_string);
            // SignatureNonceUsed / InvalidTimeStamp.Expired: once more, re-signed, no wait.
            if let Some(c) = code.as_deref().filter(|c| RESIGN_ONCE_CODES.contains(c)) {
                if resigned_for.as_deref() != Some(c) {
                    resigned_for = Some(c.to_string());
                    continue;
                }
                if c == "InvalidTimeStamp.Expired" {
                    self.report_clock_skew(action, &err, server_date);
                }
                return Err(persistent_resign_error(err));
            }
            let retryable = match repeat {
                Repeat::Safe => matches!(
                    err.class(),
                    ErrorClass::Retryable | ErrorClass::OutcomeUnknown
                ),
                Repeat::NotBlindly => err.safe_to_repeat_create(),
            };
            if !retryable {
                return Err(match repeat {
                    Repeat::NotBlindly => as_outcome_unknown(err),
                    Repeat::Safe => err,
                });
            }
            let delay = if code.as_deref().is_some_and(|c| c.starts_with("Throttling")) {
                throttles += 1;
                if throttles > MAX_THROTTLE_RETRIES.max(self.inner.max_attempts) {
                    return Err(err);
                }
                backoff::throttled_delay(throttles - 1)
            } else {
                failures += 1;
                if failures >= self.inner.max_attempts {
                    return Err(err);
                }
                backoff::delay(failures - 1)
            };
            if started.elapsed() + delay > self.inner.max_retry_time {
                return Err(err);
            }
            tracing::debug!(action, failures, throttles, ?delay, error = %err, "retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Logs `api.clock_skew` once per incident: the server's time (from its message, else its
    /// Date header) against ours. The caller's step backs off as for any failed call.
    fn report_clock_skew(
        &self,
        action: &str,
        err: &ApiError,
        server_date: Option<chrono::DateTime<chrono::Utc>>,
    ) {
        let local = chrono::Utc::now();
        let server = match err {
            ApiError::Service { message, .. } => server_time_in_message(message),
            _ => None,
        }
        .or(server_date);
        let fresh = match self.inner.skew_reported.lock() {
            Ok(mut r) => {
                let fresh = r.is_none_or(|t| t.elapsed() >= SKEW_REPORT_EVERY);
                if fresh {
                    *r = Some(Instant::now());
                }
                fresh
            }
            Err(_) => true,
        };
        let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let server_time = server.map(fmt).unwrap_or_else(|| "unknown".into());
        let skew_secs = server.map(|t| (t - local).num_seconds());
        if fresh {
            tracing::error!(event = "api.clock_skew", action, server_time = %server_time,
                local_time = %fmt(local), skew_secs, error = %err,
                "the server rejected our timestamp twice: the local clock is probably skewed (check NTP); backing off");
        } else {
            tracing::debug!(event = "api.clock_skew", action, server_time = %server_time,
                local_time = %fmt(local), skew_secs, "clock skew persists");
        }
    }

    /// One signed request and its decoded answer; `server_date` gets the answer's Date header.
    async fn attempt(
        &self,
        api: Api,
        action: &str,
        business: &[(String, String)],
        server_date: &mut Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<serde_json::Value, ApiError> {
        let key = self
            .inner
            .creds
            .get()
            .await
            .map_err(|e| ApiError::Credentials(e.to_string()))?;
        let (endpoint, version) = match api {
            Api::Cas => (&self.inner.cas, CAS_VERSION),
            Api::Alidns => (&self.inner.alidns, ALIDNS_VERSION),
        };
        let nonce = uuid::Uuid::new_v4().to_string();
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let request = match self.inner.signature {
            SignatureVersion::V1 => {
                let mut params: Vec<(String, String)> = business.to_vec();
                params.push(p("Action", action));
                params.push(p("Format", "JSON"));
                params.push(p("Version", version));
                params.push(p("AccessKeyId", key.id.clone()));
                params.push(p("SignatureMethod", "HMAC-SHA1"));
                params.push(p("SignatureVersion", "1.0"));
                params.push(p("SignatureNonce", nonce));
                params.push(p("Timestamp", now));
                if let Some(t) = &key.security_token {
                    params.push(p("SecurityToken", t.expose()));
                }
                let sig = sign::v1_signature(key.secret.expose(), "POST", &params);
                let body = format!(
                    "{}&Signature={}",
                    sign::v1_canonical_query(&params),
                    sign::percent_encode(&sig)
                );
                self.inner
                    .http
                    .post(endpoint.clone())
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .header(reqwest::header::ACCEPT, "application/json")
                    .body(body)
            }
            SignatureVersion::V3 => {
                let path = if endpoint.path().is_empty() {
                    "/"
                } else {
                    endpoint.path()
                };
                let mut headers = vec![
                    p("host", host_header(endpoint)),
                    p("x-acs-action", action),
                    p("x-acs-version", version),
                    p("x-acs-date", now),
                    p("x-acs-signature-nonce", nonce),
                    p("x-acs-content-sha256", sign::EMPTY_SHA256_HEX),
                ];
                if let Some(t) = &key.security_token {
                    headers.push(p("x-acs-security-token", t.expose()));
                }
                let parts = sign::V3Parts {
                    method: "POST",
                    path,
                    query: business,
                    headers: &headers,
                    payload_sha256_hex: sign::EMPTY_SHA256_HEX,
                };
                let auth = sign::v3_authorization(&key.id, key.secret.expose(), &parts);
                let mut url = endpoint.clone();
                let q = sign::v3_canonical_query(business);
                url.set_query(if q.is_empty() { None } else { Some(&q) });
                let mut rb = self.inner.http.post(url);
                for (k, v) in &headers {
                    rb = rb.header(k.as_str(), v.as_str());
                }
                rb.header(reqwest::header::AUTHORIZATION, auth)
                    .header(reqwest::header::ACCEPT, "application/json")
            }
        };
        let mut resp = request.send().await.map_err(|e| transport(action, &e))?;
        let status = resp.status().as_u16();
        *server_date = resp
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        let bytes = read_capped(action, &mut resp).await?;
        decode_answer(action, status, &bytes)
    }

    async fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        api: Api,
        action: &str,
        params: Vec<(String, String)>,
        repeat: Repeat,
    ) -> Result<T, ApiError> {
        let v = self.call(api, action, params, repeat).await?;
        serde_json::from_value(v).map_err(|e| match repeat {
            // The create succeeded but its answer is unreadable: the order exists, id unknown.
            Repeat::NotBlindly => ApiError::Transport {
                action: action.to_string(),
                detail: format!(
                    "unreadable success answer ({e}); the order may have been created: look for it with ListUserCertificateOrder before creating again"
                ),
                maybe_sent: true,
            },
            Repeat::Safe => ApiError::Decode {
                action: action.to_string(),
                detail: e.to_string(),
            },
        })
    }
}

/// A reqwest failure as a transport error; only a connect failure proves nothing was sent.
fn transport(action: &str, e: &reqwest::Error) -> ApiError {
    let maybe_sent = !e.is_connect();
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "connection failed"
    };
    // The innermost cause says what went wrong (refused, reset, timed out); the URL says
    // where. Neither carries the request body.
    let mut cause = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    let detail = match e.url() {
        Some(u) => format!("{what} ({}): {cause}", u.as_str()),
        None => format!("{what}: {cause}"),
    };
    ApiError::Transport {
        action: action.to_string(),
        detail,
        maybe_sent,
    }
}

/// The largest answer read. Real answers are a few KB (a PEM chain, a page of orders); a
/// broken or hostile endpoint must not make the daemon buffer an unbounded body.
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

/// The body, refused as soon as it is known to exceed [`MAX_ANSWER_BYTES`]. The request was
/// sent, so for a create this is "outcome unknown", never a reason to create again.
async fn read_capped(action: &str, resp: &mut reqwest::Response) -> Result<Vec<u8>, ApiError> {
    let too_big = || ApiError::Transport {
        action: action.to_string(),
        detail: format!(
            "answer larger than {} MiB; refused without reading it",
            MAX_ANSWER_BYTES >> 20
        ),
        maybe_sent: true,
    };
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport(action, &e))? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Turns an HTTP answer into the JSON of a success or an [`ApiError`].
/// Public only for the fuzz tests.
#[doc(hidden)]
pub fn decode_answer(
    action: &str,
    status: u16,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if (200..300).contains(&status) {
        return match json {
            Some(v @ serde_json::Value::Object(_)) => Ok(v),
            _ => Err(ApiError::Transport {
                action: action.to_string(),
                detail: format!("HTTP {status} with a body that is not a JSON object"),
                maybe_sent: true,
            }),
        };
    }
    let eb: ErrorBody = json
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let code = eb
        .code
        .filter(|c| !c.is_empty())
        .map(|c| one_line(&c))
        .unwrap_or_else(|| format!("HTTP.{status}"));
    let message = eb.message.unwrap_or_default();
    let mut message = one_line(&redact_message(&code, &message));
    if let Some(r) = eb.recommend.filter(|r| !r.is_empty()) {
        if code != "SignatureDoesNotMatch" {
            message.push_str(&format!(" (see {})", one_line(&r)));
        }
    }
    let _ = eb.host_id;
    Err(ApiError::Service {
        action: action.to_string(),
        status,
        code,
        message,
        request_id: one_line(&eb.request_id.unwrap_or_default()),
    })
}

/// Control characters of a field from the answer, escaped: an error is one log line and
/// carries no terminal escapes (found by the fuzz tests).
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The time in an `InvalidTimeStamp.Expired` message ("... Server time is 2026-11-23T10:00:00Z.").
fn server_time_in_message(message: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let i = message.find("Server time is ")? + "Server time is ".len();
    let rest = &message[i..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '+' | '.')))
        .unwrap_or(rest.len());
    let t = rest[..end].trim_end_matches('.');
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// The error returned when a re-signed retry met the same code again.
fn persistent_resign_error(mut err: ApiError) -> ApiError {
    if let ApiError::Service { code, message, .. } = &mut err {
        if code == "InvalidTimeStamp.Expired" {
            message.push_str(
                "; the request timestamp was rejected twice: the local clock is probably skewed (check NTP)",
            );
        }
    }
    err
}

/// For a create: any failure that does not prove nothing happened becomes "outcome unknown".
fn as_outcome_unknown(err: ApiError) -> ApiError {
    let ambiguous = match &err {
        ApiError::Transport { maybe_sent, .. } => *maybe_sent,
        ApiError::Service { status, code, .. } => {
            (*status >= 500 && code != "Error") || err.class() == ErrorClass::Retryable
        }
        _ => false,
    };
    if !ambiguous {
        return err;
    }
    match err {
        ApiError::Service {
            action,
            status,
            code,
            message,
            request_id,
        } => ApiError::Transport {
            action,
            detail: format!(
                "{code}: {message} (HTTP {status}, RequestId {request_id}); the order may have been created: look for it with ListUserCertificateOrder before creating again"
            ),
            maybe_sent: true,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests;
