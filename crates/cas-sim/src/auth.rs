//! Request authentication as Alibaba does it: signature v1 (parameters) or V3 (Authorization
//! header), the 15-minute clock window and nonce reuse. Canonicalisation is the shared
//! `cas_api::sign` code, the same the client signs with. The server clock may be shifted
//! (`--clock-offset`) so a client sees a real `InvalidTimeStamp.Expired`, as on a skewed host.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

use super::reject::Reject;
use cas_api::sign;
use cas_api::Secret;

/// How far a request's timestamp may be from the server clock.
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// One request as the verifier sees it.
#[derive(Debug)]
pub(crate) struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    /// Form-body parameters (signed together with the query under v1).
    pub form: &'a [(String, String)],
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Known keys and seen nonces.
#[derive(Debug, Default)]
pub(crate) struct Verifier {
    keys: HashMap<String, Secret>,
    nonces: HashMap<String, Instant>,
    /// Added to the host clock to get the server's clock.
    clock_offset: chrono::TimeDelta,
}

fn param<'a>(ps: &'a [(String, String)], name: &str) -> Option<&'a str> {
    ps.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

impl Verifier {
    pub(crate) fn new(creds: &[(String, Secret)]) -> Verifier {
        Verifier {
            keys: creds.iter().cloned().collect(),
            nonces: HashMap::new(),
            clock_offset: chrono::TimeDelta::zero(),
        }
    }

    /// The server's clock runs `offset` ahead of the host's (behind when negative).
    pub(crate) fn with_clock_offset(mut self, offset: chrono::TimeDelta) -> Verifier {
        self.clock_offset = offset;
        self
    }

    /// The server's idea of now: what timestamps are judged against.
    pub(crate) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + self.clock_offset
    }

    pub(crate) fn clock_offset(&self) -> chrono::TimeDelta {
        self.clock_offset
    }

    /// Checks the request; returns the AccessKeyId it was signed with.
    pub(crate) fn verify(
        &mut self,
        r: &SignedRequest<'_>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<String, Reject> {
        if let Some(auth) = header(r.headers, "authorization") {
            if auth.starts_with(sign::V3_ALGORITHM) {
                return self.verify_v3(r, auth, now);
            }
        }
        self.verify_v1(r, now)
    }

    fn secret(&self, ak: &str) -> Result<&Secret, Reject> {
        self.keys.get(ak).ok_or_else(|| {
            Reject::new(
                404,
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            )
        })
    }

    fn check_time(ts: &str, now: chrono::DateTime<chrono::Utc>, name: &str) -> Result<(), Reject> {
        let t = chrono::DateTime::parse_from_rfc3339(ts)
            .map_err(|_| Reject::invalid(name, "not an ISO 8601 UTC time"))?;
        let skew = (now - t.with_timezone(&chrono::Utc))
            .num_seconds()
            .unsigned_abs();
        if skew > MAX_SKEW.as_secs() {
            return Err(Reject::new(
                400,
                "InvalidTimeStamp.Expired",
                format!(
                    "Specified time stamp or date value is expired. Server time is {}.",
                    now.format("%Y-%m-%dT%H:%M:%SZ")
                ),
            ));
        }
        Ok(())
    }

    fn check_nonce(&mut self, nonce: &str) -> Result<(), Reject> {
        let now = Instant::now();
        // Nonces only matter inside the timestamp window; forget older ones.
        self.nonces
            .retain(|_, t| now.duration_since(*t) < MAX_SKEW * 2);
        if self.nonces.insert(nonce.to_string(), now).is_some() {
            return Err(Reject::new(
                400,
                "SignatureNonceUsed",
                "Specified signature nonce was used already.",
            ));
        }
        Ok(())
    }

    fn verify_v1(
        &mut self,
        r: &SignedRequest<'_>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<String, Reject> {
        let mut all: Vec<(String, String)> = r.query.to_vec();
        all.extend(r.form.iter().cloned());
        let ak = param(&all, "AccessKeyId")
            .ok_or_else(|| Reject::missing("AccessKeyId"))?
            .to_string();
        let given = param(&all, "Signature")
            .ok_or_else(|| Reject::missing("Signature"))?
            .to_string();
        let secret = self.secret(&ak)?.clone();
        let ts = param(&all, "Timestamp").ok_or_else(|| Reject::missing("Timestamp"))?;
        Self::check_time(ts, now, "Timestamp")?;
        let expected = sign::v1_signature(secret.expose(), r.method, &all);
        if !sign::signatures_equal(&expected, &given) {
            let sts = sign::v1_string_to_sign(r.method, &all);
            return Err(Reject::new(
                400,
                "SignatureDoesNotMatch",
                format!("Specified signature is not matched with our calculation. server string to sign is:{sts}"),
            ));
        }
        let nonce =
            param(&all, "SignatureNonce").ok_or_else(|| Reject::missing("SignatureNonce"))?;
        self.check_nonce(nonce)?;
        Ok(ak)
    }

    fn verify_v3(
        &mut self,
        r: &SignedRequest<'_>,
        auth: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<String, Reject> {
        let parsed = sign::parse_v3_authorization(auth)
            .ok_or_else(|| Reject::invalid("Authorization", "malformed ACS3-HMAC-SHA256 header"))?;
        let secret = self.secret(&parsed.access_key_id)?.clone();
        let date = header(r.headers, "x-acs-date").ok_or_else(|| Reject::missing("x-acs-date"))?;
        Self::check_time(date, now, "x-acs-date")?;
        let body_hash = sign::sha256_hex(r.body);
        let claimed = header(r.headers, "x-acs-content-sha256").unwrap_or("");
        if claimed != body_hash {
            return Err(Reject::new(
                400,
                "SignatureDoesNotMatch",
                "The x-acs-content-sha256 header does not match the SHA-256 of the request body.",
            ));
        }
        let mut headers = Vec::new();
        for name in &parsed.signed_headers {
            let name = name.to_ascii_lowercase();
            let mut found = false;
            for v in r.headers.get_all(name.as_str()) {
                found = true;
                headers.push((
                    name.clone(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                ));
            }
            if !found {
                return Err(Reject::new(
                    400,
                    "SignatureDoesNotMatch",
                    format!("Signed header {name} is not in the request."),
                ));
            }
        }
        let parts = sign::V3Parts {
            method: r.method,
            path: r.path,
            query: r.query,
            headers: &headers,
            payload_sha256_hex: claimed,
        };
        let (expected, _) = sign::v3_signature(secret.expose(), &parts);
        if !sign::signatures_equal(&expected, &parsed.signature) {
            let (canonical, _) = sign::v3_canonical_request(&parts);
            let sts = format!(
                "{}\n{}",
                sign::V3_ALGORITHM,
                sign::sha256_hex(canonical.as_bytes())
            );
            return Err(Reject::new(
                400,
                "SignatureDoesNotMatch",
                format!("The request signature does not conform to Aliyun standards. server string to sign is:{sts}"),
            ));
        }
        let nonce = header(r.headers, "x-acs-signature-nonce")
            .ok_or_else(|| Reject::missing("x-acs-signature-nonce"))?;
        self.check_nonce(nonce)?;
        Ok(parsed.access_key_id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::server::parse_pairs;
    use axum::http::HeaderValue;

    fn verifier() -> Verifier {
        Verifier::new(&[("ak".to_string(), Secret::new("sk"))])
    }

    /// The parameters of a v1 GET as the server parses them from its query string.
    fn v1_params(ts: &str, nonce: &str, secret: &str) -> Vec<(String, String)> {
        let mut ps = parse_pairs(&format!(
            "AccessKeyId=ak&Action=DescribePackageState&Format=JSON&SignatureMethod=HMAC-SHA1\
             &SignatureNonce={nonce}&SignatureVersion=1.0&Timestamp={}&Version=2020-04-07",
            sign::percent_encode(ts)
        ));
        let sig = sign::v1_signature(secret, "GET", &ps);
        ps.push(("Signature".into(), sig));
        ps
    }

    fn run_v1(v: &mut Verifier, ps: &[(String, String)]) -> Result<String, Reject> {
        run_v1_at(v, ps, chrono::Utc::now())
    }

    /// A v1 GET judged as if the server's clock read `now`.
    fn run_v1_at(
        v: &mut Verifier,
        ps: &[(String, String)],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<String, Reject> {
        let h = HeaderMap::new();
        v.verify(
            &SignedRequest {
                method: "GET",
                path: "/",
                query: ps,
                form: &[],
                headers: &h,
                body: b"",
            },
            now,
        )
    }

    fn now_ts() -> String {
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    #[test]
    fn v1_accepts_then_rejects_reused_nonce() {
        let mut v = verifier();
        let ps = v1_params(&now_ts(), "n1", "sk");
        assert_eq!(run_v1(&mut v, &ps).unwrap(), "ak");
        assert_eq!(run_v1(&mut v, &ps).unwrap_err().code, "SignatureNonceUsed");
    }

    #[test]
    fn v1_rejects_wrong_secret_unknown_key_and_old_timestamp() {
        let mut v = verifier();
        let e = run_v1(&mut v, &v1_params(&now_ts(), "n2", "wrong")).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "SignatureDoesNotMatch"));
        assert!(e
            .message
            .contains("server string to sign is:GET&%2F&AccessKeyId%3Dak"));
        let old = (chrono::Utc::now() - chrono::Duration::minutes(16))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        assert_eq!(
            run_v1(&mut v, &v1_params(&old, "n3", "sk"))
                .unwrap_err()
                .code,
            "InvalidTimeStamp.Expired"
        );
        let mut ps = v1_params(&now_ts(), "n4", "sk");
        ps[0].1 = "other".into();
        assert_eq!(
            run_v1(&mut v, &ps).unwrap_err().code,
            "InvalidAccessKeyId.NotFound"
        );
    }

    /// A V3 POST as an SDK sends it: its headers (every one signed) and its query.
    fn v3_request(secret: &str, nonce: &str, body: &[u8]) -> (HeaderMap, Vec<(String, String)>) {
        let query = parse_pairs("ProductCode=digicert-free-1-free");
        let hash = sign::sha256_hex(body);
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", "127.0.0.1:1"),
            ("x-acs-action", "DescribePackageState"),
            ("x-acs-version", "2020-04-07"),
            ("x-acs-date", &now_ts()),
            ("x-acs-signature-nonce", nonce),
            ("x-acs-content-sha256", &hash),
            ("user-agent", "AlibabaCloud (Linux) Python/3.11"),
        ] {
            h.insert(k, HeaderValue::from_str(v).unwrap());
        }
        let signed: Vec<(String, String)> = h
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let auth = sign::v3_authorization(
            "ak",
            secret,
            &sign::V3Parts {
                method: "POST",
                path: "/",
                query: &query,
                headers: &signed,
                payload_sha256_hex: &hash,
            },
        );
        h.insert("authorization", HeaderValue::from_str(&auth).unwrap());
        (h, query)
    }

    fn run_v3(
        v: &mut Verifier,
        h: &HeaderMap,
        q: &[(String, String)],
        body: &[u8],
    ) -> Result<String, Reject> {
        v.verify(
            &SignedRequest {
                method: "POST",
                path: "/",
                query: q,
                form: &[],
                headers: h,
                body,
            },
            chrono::Utc::now(),
        )
    }

    #[test]
    fn v3_accepts_and_rejects() {
        let mut v = verifier();
        let (h, q) = v3_request("sk", "m1", b"");
        assert_eq!(run_v3(&mut v, &h, &q, b"").unwrap(), "ak");
        assert_eq!(
            run_v3(&mut v, &h, &q, b"").unwrap_err().code,
            "SignatureNonceUsed"
        );
        let (h, q) = v3_request("bad", "m2", b"");
        let e = run_v3(&mut v, &h, &q, b"").unwrap_err();
        assert_eq!(e.code, "SignatureDoesNotMatch");
        assert!(e.message.contains("ACS3-HMAC-SHA256\n"));
        // A body that does not match x-acs-content-sha256 is refused.
        let (h, q) = v3_request("sk", "m3", b"a=1");
        assert_eq!(
            run_v3(&mut v, &h, &q, b"a=2").unwrap_err().code,
            "SignatureDoesNotMatch"
        );
        // A tampered query is refused.
        let (h, mut q) = v3_request("sk", "m4", b"");
        q[0].1 = "other".into();
        assert_eq!(
            run_v3(&mut v, &h, &q, b"").unwrap_err().code,
            "SignatureDoesNotMatch"
        );
    }

    #[test]
    fn a_shifted_server_clock_rejects_a_current_timestamp_and_says_its_time() {
        let mut v = verifier().with_clock_offset(chrono::TimeDelta::hours(2));
        let ps = v1_params(&now_ts(), "s1", "sk");
        let server_now = v.now();
        let e = run_v1_at(&mut v, &ps, server_now).unwrap_err();
        assert_eq!(e.code, "InvalidTimeStamp.Expired");
        let told = server_now.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        assert!(e.message.contains(&told), "{}", e.message);
        // 14 minutes off is inside the window.
        let mut v = verifier().with_clock_offset(chrono::TimeDelta::minutes(-14));
        let now = v.now();
        let ps = v1_params(&now_ts(), "s2", "sk");
        assert!(run_v1_at(&mut v, &ps, now).is_ok());
    }
}
