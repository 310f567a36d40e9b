//! The CAS + Alidns HTTP client: signing, transport, retries, rate limiting.
//!
//! Every attempt is signed afresh (new nonce and timestamp). What goes on the wire is exactly
//! what was signed: for v1 the form body is the canonical query string plus the signature;
//! for V3 the query string is the canonical query and the signed headers are sent as signed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{redact_message, ApiError, ErrorClass, RESIGN_ONCE_CODES};
use super::model::*;
use super::ratelimit::RateLimiter;
use super::responses::*;
use super::{backoff, sign};
use crate::config::{AlidnsSettings, CasSettings, SignatureVersion};
use crate::credentials::Credentials;

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

/// Accepts `https://` anywhere and `http://` only for loopback hosts.
pub fn check_endpoint(url: &url::Url) -> Result<(), ApiError> {
    match url.scheme() {
        "https" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(ApiError::Config(format!("endpoint {url} has no host")));
            }
            Ok(())
        }
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err(ApiError::Config(format!(
                    "endpoint {url}: plain http:// is only allowed for loopback addresses; use https://"
                )))
            }
        }
        other => Err(ApiError::Config(format!(
            "endpoint {url}: unsupported scheme {other:?} (use https://)"
        ))),
    }
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
    /// Builds a client. Fails on an endpoint that is neither https nor loopback http.
    pub fn new(
        cas: &CasSettings,
        alidns: &AlidnsSettings,
        creds: Credentials,
    ) -> Result<Client, ApiError> {
        check_endpoint(&cas.endpoint)?;
        check_endpoint(&alidns.endpoint)?;
        let http = reqwest::Client::builder()
            .connect_timeout(cas.connect_timeout)
            .read_timeout(cas.read_timeout)
            // A whole call may not outlast connect + a few reads; bounds slow-drip answers.
            .timeout(cas.connect_timeout + cas.read_timeout * 3)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cas-certd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Config(format!("HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                cas: cas.endpoint.clone(),
                alidns: alidns.endpoint.clone(),
                signature: cas.signature,
                creds,
                limiter: RateLimiter::new(cas.qps, &cas.qps_overrides),
                max_attempts: cas.max_attempts.max(1),
                max_retry_time: cas.max_retry_time,
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

    pub async fn describe_package_state(
        &self,
        product_code: &str,
    ) -> Result<PackageState, ApiError> {
        let raw: PackageStateRaw = self
            .call_as(
                Api::Cas,
                "DescribePackageState",
                vec![p("ProductCode", product_code)],
                Repeat::Safe,
            )
            .await?;
        Ok(raw.into_model(product_code))
    }

    /// Never retried on an ambiguous failure: returns `ErrorClass::OutcomeUnknown` instead.
    pub async fn create_certificate_for_package(
        &self,
        req: &CreateOrder,
    ) -> Result<OrderId, ApiError> {
        let mut params = vec![
            p("ProductCode", req.product_code.as_str()),
            p("ValidateType", req.validate_type.as_str()),
            p("Username", req.contact.name.as_str()),
            p("Phone", req.contact.phone.as_str()),
            p("Email", req.contact.email.as_str()),
        ];
        if !req.domains.is_empty() {
            params.push(p("Domain", req.domains.join(",")));
        }
        if let Some(csr) = &req.csr {
            params.push(p("Csr", csr.as_str()));
        }
        if let Some(c) = &req.company_name {
            params.push(p("CompanyName", c.as_str()));
        }
        for (i, (k, v)) in req.tags.iter().enumerate() {
            params.push(p(&format!("Tags.{}.Key", i + 1), k.as_str()));
            params.push(p(&format!("Tags.{}.Value", i + 1), v.as_str()));
        }
        params.retain(|(_, v)| !v.is_empty());
        let raw: OrderIdRaw = self
            .call_as(
                Api::Cas,
                "CreateCertificateForPackageRequest",
                params,
                Repeat::NotBlindly,
            )
            .await?;
        Ok(raw.order_id)
    }

    /// CreateCertificateRequest (DV only; CAS makes the key). Never retried blindly.
    pub async fn create_certificate_request(
        &self,
        product_code: &str,
        domain: &str,
        contact: &Contact,
        validate_type: ValidateType,
    ) -> Result<OrderId, ApiError> {
        let params = dv_params(product_code, contact, validate_type, ("Domain", domain));
        let raw: OrderIdRaw = self
            .call_as(
                Api::Cas,
                "CreateCertificateRequest",
                params,
                Repeat::NotBlindly,
            )
            .await?;
        Ok(raw.order_id)
    }

    /// CreateCertificateWithCsrRequest (DV only). Never retried blindly.
    pub async fn create_certificate_with_csr_request(
        &self,
        product_code: &str,
        csr: &str,
        contact: &Contact,
        validate_type: ValidateType,
    ) -> Result<OrderId, ApiError> {
        let params = dv_params(product_code, contact, validate_type, ("Csr", csr));
        let raw: OrderIdRaw = self
            .call_as(
                Api::Cas,
                "CreateCertificateWithCsrRequest",
                params,
                Repeat::NotBlindly,
            )
            .await?;
        Ok(raw.order_id)
    }

    pub async fn describe_certificate_state(
        &self,
        order_id: OrderId,
    ) -> Result<CertificateState, ApiError> {
        let raw: CertificateStateRaw = self
            .call_as(
                Api::Cas,
                "DescribeCertificateState",
                vec![p("OrderId", order_id.to_string())],
                Repeat::Safe,
            )
            .await?;
        Ok(raw.into_model())
    }

    pub async fn cancel_order(&self, order_id: OrderId) -> Result<(), ApiError> {
        self.unit("CancelOrderRequest", order_id).await
    }

    pub async fn delete_certificate(&self, order_id: OrderId) -> Result<(), ApiError> {
        self.unit("DeleteCertificateRequest", order_id).await
    }

    /// Revoke (CancelCertificateForPackageRequest).
    pub async fn revoke_certificate(&self, order_id: OrderId) -> Result<(), ApiError> {
        self.unit("CancelCertificateForPackageRequest", order_id)
            .await
    }

    async fn unit(&self, action: &str, order_id: OrderId) -> Result<(), ApiError> {
        self.call(
            Api::Cas,
            action,
            vec![p("OrderId", order_id.to_string())],
            Repeat::Safe,
        )
        .await
        .map(|_| ())
    }

    /// RenewCertificateOrderForPackageRequest: a new order. Never retried blindly, like a create.
    pub async fn renew_certificate_order(
        &self,
        order_id: OrderId,
        csr: Option<&str>,
    ) -> Result<OrderId, ApiError> {
        let mut params = vec![p("OrderId", order_id.to_string())];
        if let Some(c) = csr.filter(|c| !c.is_empty()) {
            params.push(p("Csr", c));
        }
        let raw: OrderIdRaw = self
            .call_as(
                Api::Cas,
                "RenewCertificateOrderForPackageRequest",
                params,
                Repeat::NotBlindly,
            )
            .await?;
        Ok(raw.order_id)
    }

    pub async fn list_user_certificate_order(&self, q: &ListOrders) -> Result<OrderPage, ApiError> {
        let mut params = Vec::new();
        if let Some(k) = q.keyword.as_deref().filter(|k| !k.is_empty()) {
            params.push(p("Keyword", k));
        }
        if let Some(s) = q.status.as_deref().filter(|s| !s.is_empty()) {
            params.push(p("Status", s));
        }
        if let Some(t) = q.order_type.as_deref().filter(|t| !t.is_empty()) {
            params.push(p("OrderType", t));
        }
        let page = q.current_page.max(1);
        let size = if q.show_size == 0 { 50 } else { q.show_size };
        params.push(p("CurrentPage", page.to_string()));
        params.push(p("ShowSize", size.to_string()));
        let raw: OrderPageRaw = self
            .call_as(Api::Cas, "ListUserCertificateOrder", params, Repeat::Safe)
            .await?;
        let q = ListOrders {
            current_page: page,
            show_size: size,
            ..q.clone()
        };
        Ok(raw.into_model(&q))
    }

    pub async fn add_domain_record(&self, r: &AddRecord) -> Result<String, ApiError> {
        let mut params = vec![
            p("DomainName", r.domain_name.as_str()),
            p("RR", r.rr.as_str()),
            p("Type", r.record_type.as_str()),
            p("Value", r.value.as_str()),
        ];
        if let Some(ttl) = r.ttl {
            params.push(p("TTL", ttl.to_string()));
        }
        // A repeated add of the same record fails with DomainRecordDuplicate, which the
        // caller treats as present, so repeating is harmless.
        let raw: RecordIdRaw = self
            .call_as(Api::Alidns, "AddDomainRecord", params, Repeat::Safe)
            .await?;
        raw.record_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ApiError::Decode {
                action: "AddDomainRecord".into(),
                detail: "no RecordId in the answer".into(),
            })
    }

    pub async fn delete_domain_record(&self, record_id: &str) -> Result<(), ApiError> {
        self.call(
            Api::Alidns,
            "DeleteDomainRecord",
            vec![p("RecordId", record_id)],
            Repeat::Safe,
        )
        .await
        .map(|_| ())
    }

    pub async fn describe_domain_records(
        &self,
        domain_name: &str,
        rr_keyword: Option<&str>,
        page: u32,
        page_size: u32,
    ) -> Result<DnsRecordPage, ApiError> {
        let mut params = vec![
            p("DomainName", domain_name),
            p("PageNumber", page.max(1).to_string()),
            p("PageSize", page_size.clamp(1, 500).to_string()),
        ];
        if let Some(k) = rr_keyword.filter(|k| !k.is_empty()) {
            params.push(p("RRKeyWord", k));
        }
        let raw: DnsRecordPageRaw = self
            .call_as(Api::Alidns, "DescribeDomainRecords", params, Repeat::Safe)
            .await?;
        Ok(raw.into_model())
    }

    pub async fn describe_sub_domain_records(
        &self,
        sub_domain: &str,
    ) -> Result<DnsRecordPage, ApiError> {
        let raw: DnsRecordPageRaw = self
            .call_as(
                Api::Alidns,
                "DescribeSubDomainRecords",
                vec![p("SubDomain", sub_domain)],
                Repeat::Safe,
            )
            .await?;
        Ok(raw.into_model())
    }
}

/// Parameters of the two DV-only creates.
fn dv_params(
    product_code: &str,
    contact: &Contact,
    validate_type: ValidateType,
    subject: (&str, &str),
) -> Vec<(String, String)> {
    let mut v = vec![
        p(subject.0, subject.1),
        p("Username", contact.name.as_str()),
        p("Phone", contact.phone.as_str()),
        p("Email", contact.email.as_str()),
        p("ValidateType", validate_type.as_str()),
    ];
    if !product_code.is_empty() {
        v.push(p("ProductCode", product_code));
    }
    v
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
fn persistent_resign_error(err: ApiError) -> ApiError {
    match err {
        ApiError::Service {
            action,
            status,
            code,
            message,
            request_id,
        } if code == "InvalidTimeStamp.Expired" => ApiError::Service {
            action,
            status,
            message: format!(
                "{message}; the request timestamp was rejected twice: the local clock is probably skewed (check NTP)"
            ),
            code,
            request_id,
        },
        other => other,
    }
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
mod tests {
    use super::*;

    #[test]
    fn endpoint_rules() {
        let ok = |s: &str| check_endpoint(&url::Url::parse(s).expect("url")).is_ok();
        assert!(ok("https://cas.aliyuncs.com"));
        assert!(ok("http://127.0.0.1:8080"));
        assert!(ok("http://[::1]:8080/"));
        assert!(ok("http://localhost:1"));
        assert!(!ok("http://cas.aliyuncs.com"));
        assert!(!ok("http://10.0.0.1"));
        assert!(!ok("ftp://127.0.0.1"));
    }

    #[test]
    fn host_header_has_port_when_not_default() {
        let u = |s: &str| url::Url::parse(s).expect("url");
        assert_eq!(
            host_header(&u("https://cas.aliyuncs.com/")),
            "cas.aliyuncs.com"
        );
        assert_eq!(host_header(&u("http://127.0.0.1:9000")), "127.0.0.1:9000");
    }

    #[test]
    fn error_bodies_decode_and_redact() {
        let e = decode_answer(
            "A",
            400,
            br#"{"RequestId":"R1","HostId":"h","Code":"SignatureDoesNotMatch","Message":"Specified signature is not matched with our calculation. server string to sign is:POST&%2F&AccessKeyId","Recommend":"https://x"}"#,
        )
        .expect_err("error");
        let shown = e.to_string();
        assert!(!shown.contains("string to sign"), "{shown}");
        assert!(!shown.contains("AccessKeyId"), "{shown}");
        assert_eq!(e.code(), Some("SignatureDoesNotMatch"));
        assert_eq!(e.request_id(), Some("R1"));
        let e = decode_answer("A", 503, b"<html>busy</html>").expect_err("error");
        assert_eq!(e.class(), ErrorClass::Retryable);
        let e = decode_answer("A", 200, b"{trunc").expect_err("error");
        assert_eq!(e.class(), ErrorClass::OutcomeUnknown);
        assert!(decode_answer("A", 200, br#"{"RequestId":"x"}"#).is_ok());
    }

    #[test]
    fn creates_become_outcome_unknown_on_5xx() {
        let e = ApiError::Service {
            action: "C".into(),
            status: 503,
            code: "ServiceUnavailable".into(),
            message: "m".into(),
            request_id: "r".into(),
        };
        assert_eq!(as_outcome_unknown(e).class(), ErrorClass::OutcomeUnknown);
        let e = ApiError::Service {
            action: "C".into(),
            status: 404,
            code: "NotRemainCount".into(),
            message: "m".into(),
            request_id: "r".into(),
        };
        assert_eq!(as_outcome_unknown(e).class(), ErrorClass::Permanent);
        let e = ApiError::Service {
            action: "C".into(),
            status: 400,
            code: "InvalidTimeStamp.Expired".into(),
            message: "m".into(),
            request_id: "r".into(),
        };
        assert!(persistent_resign_error(e)
            .to_string()
            .contains("clock is probably skewed"));
    }

    /// A loopback HTTP server answering scripted (status, body) pairs in order, the last one
    /// repeated; it records the SignatureNonce / x-acs-signature-nonce of each request.
    async fn scripted(
        answers: Vec<(u16, &'static str)>,
    ) -> (url::Url, Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let nonces = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = nonces.clone();
        tokio::spawn(async move {
            let mut i = 0usize;
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then Content-Length bytes of body.
                let (head_end, len) = loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break (buf.len(), 0);
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..pos]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (pos + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let text = String::from_utf8_lossy(&buf).to_string();
                let nonce = text
                    .split(['&', '\n'])
                    .find_map(|kv| {
                        kv.strip_prefix("SignatureNonce=")
                            .or_else(|| kv.strip_prefix("x-acs-signature-nonce: "))
                    })
                    .unwrap_or("")
                    .trim()
                    .to_string();
                seen.lock().expect("lock").push(nonce);
                let (status, body) = answers[i.min(answers.len() - 1)];
                i += 1;
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        (
            url::Url::parse(&format!("http://{addr}")).expect("url"),
            nonces,
        )
    }

    fn test_client(
        endpoint: url::Url,
        sig: SignatureVersion,
    ) -> (Client, Arc<std::sync::Mutex<Vec<String>>>) {
        let cas = CasSettings {
            endpoint: endpoint.clone(),
            signature: sig,
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(2),
            qps: 100.0,
            qps_overrides: Vec::new(),
            max_attempts: 4,
            max_retry_time: Duration::from_secs(20),
        };
        let creds = Credentials::fixed(crate::credentials::AccessKey {
            id: "testid".into(),
            secret: crate::secret::Secret::new("testsecret"),
            security_token: None,
            expires: None,
        });
        let mut c = Client::new(&cas, &AlidnsSettings { endpoint }, creds).expect("client");
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        c.set_observer(Arc::new(move |action: &str, code: &str| {
            s.lock().expect("lock").push(format!("{action}:{code}"));
        }));
        (c, seen)
    }

    const THROTTLED: &str = r#"{"RequestId":"t","Code":"Throttling.User","Message":"Request was denied due to user flow control."}"#;
    const UNAVAILABLE: &str = r#"{"RequestId":"u","Code":"ServiceUnavailable","Message":"busy"}"#;

    #[tokio::test]
    async fn throttling_is_retried_with_fresh_nonces() {
        for sig in [SignatureVersion::V1, SignatureVersion::V3] {
            let (url, nonces) = scripted(vec![
                (400, THROTTLED),
                (400, THROTTLED),
                (200, r#"{"RequestId":"ok","ProductCode":"p","TotalCount":5,"UsedCount":1,"IssuedCount":1}"#),
            ])
            .await;
            let (c, seen) = test_client(url, sig);
            assert!(!format!("{c:?}").contains("testsecret"));
            let st = c.describe_package_state("p").await.expect("eventually ok");
            assert_eq!(st.total_count, 5);
            assert_eq!(
                *seen.lock().expect("lock"),
                vec![
                    "DescribePackageState:Throttling.User",
                    "DescribePackageState:Throttling.User",
                    "DescribePackageState:OK"
                ]
            );
            let n = nonces.lock().expect("lock").clone();
            assert_eq!(n.len(), 3);
            assert!(n.iter().all(|x| x.len() == 36), "{n:?}");
            assert!(n[0] != n[1] && n[1] != n[2], "nonces reused: {n:?}");
        }
    }

    #[tokio::test]
    async fn a_create_is_not_retried_on_5xx_and_is_outcome_unknown() {
        let (url, nonces) = scripted(vec![(503, UNAVAILABLE)]).await;
        let (c, seen) = test_client(url, SignatureVersion::V1);
        let req = CreateOrder {
            product_code: "p".into(),
            domains: vec!["a.example.com".into()],
            csr: Some(
                "-----BEGIN CERTIFICATE REQUEST-----\nMIIB+/=\n-----END CERTIFICATE REQUEST-----\n"
                    .into(),
            ),
            validate_type: ValidateType::Dns,
            contact: Contact {
                name: "n".into(),
                phone: "1".into(),
                email: "e@x".into(),
            },
            company_name: None,
            tags: vec![],
        };
        let e = c
            .create_certificate_for_package(&req)
            .await
            .expect_err("fails");
        assert_eq!(e.class(), ErrorClass::OutcomeUnknown, "{e}");
        assert!(e.to_string().contains("ListUserCertificateOrder"), "{e}");
        assert_eq!(
            nonces.lock().expect("lock").len(),
            1,
            "a create was repeated"
        );
        assert_eq!(seen.lock().expect("lock").len(), 1);
        // Renew likewise.
        let e = c
            .renew_certificate_order(OrderId(1), None)
            .await
            .expect_err("fails");
        assert_eq!(e.class(), ErrorClass::OutcomeUnknown);
        assert_eq!(nonces.lock().expect("lock").len(), 2);
        // A read is retried up to max_attempts.
        let e = c
            .describe_certificate_state(OrderId(1))
            .await
            .expect_err("fails");
        assert_eq!(e.class(), ErrorClass::Retryable);
        assert_eq!(nonces.lock().expect("lock").len(), 6);
    }

    #[tokio::test]
    async fn an_unreadable_create_answer_is_outcome_unknown() {
        let (url, nonces) =
            scripted(vec![(200, r#"{"RequestId":"x","OrderId":"not-a-number"}"#)]).await;
        let (c, _) = test_client(url, SignatureVersion::V1);
        let e = c
            .renew_certificate_order(OrderId(7), None)
            .await
            .expect_err("fails");
        assert_eq!(e.class(), ErrorClass::OutcomeUnknown, "{e}");
        assert_eq!(nonces.lock().expect("lock").len(), 1);
        let e = c.describe_package_state("p").await;
        assert!(e.is_ok(), "absent optional fields are fine: {e:?}");
    }

    #[tokio::test]
    async fn a_throttled_create_is_retried_because_nothing_happened() {
        let (url, nonces) = scripted(vec![
            (400, THROTTLED),
            (200, r#"{"OrderId":"9007199254740993"}"#),
        ])
        .await;
        let (c, _) = test_client(url, SignatureVersion::V3);
        let id = c
            .renew_certificate_order(OrderId(7), Some("CSR"))
            .await
            .expect("ok");
        assert_eq!(id, OrderId(9_007_199_254_740_993));
        assert_eq!(nonces.lock().expect("lock").len(), 2);
    }

    #[test]
    fn server_time_is_read_from_the_expired_message() {
        let t = server_time_in_message(
            "Specified time stamp or date value is expired. Server time is 2026-11-23T20:03:37Z. (see https://x)",
        );
        assert_eq!(
            t.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-11-23T20:03:37+00:00")
        );
        assert_eq!(
            server_time_in_message("Specified time stamp or date value is expired."),
            None
        );
    }

    #[tokio::test]
    async fn timestamp_rejection_is_retried_once_then_blames_the_clock() {
        let (url, nonces) = scripted(vec![(
            400,
            r#"{"RequestId":"c","Code":"InvalidTimeStamp.Expired","Message":"Specified time stamp or date value is expired."}"#,
        )])
        .await;
        let (c, _) = test_client(url, SignatureVersion::V1);
        let e = c.cancel_order(OrderId(1)).await.expect_err("fails");
        assert_eq!(nonces.lock().expect("lock").len(), 2);
        assert!(e.to_string().contains("clock is probably skewed"), "{e}");

        let (url, nonces) = scripted(vec![
            (400, r#"{"Code":"SignatureNonceUsed","Message":"used"}"#),
            (200, r#"{"RequestId":"ok"}"#),
        ])
        .await;
        let (c, _) = test_client(url, SignatureVersion::V1);
        c.delete_certificate(OrderId(1))
            .await
            .expect("second try ok");
        assert_eq!(nonces.lock().expect("lock").len(), 2);
    }

    #[tokio::test]
    async fn alidns_records_round_trip_shapes() {
        let (url, _) = scripted(vec![(200, r#"{"RequestId":"r","RecordId":"123456789"}"#)]).await;
        let (c, _) = test_client(url, SignatureVersion::V3);
        let id = c
            .add_domain_record(&AddRecord {
                domain_name: "example.com".into(),
                rr: "_dnsauth".into(),
                record_type: "TXT".into(),
                value: "v".into(),
                ttl: Some(600),
            })
            .await
            .expect("add");
        assert_eq!(id, "123456789");
    }
}
