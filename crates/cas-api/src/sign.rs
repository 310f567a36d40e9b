//! Request signing for Alibaba Cloud RPC APIs: signature v1 (HMAC-SHA1) and V3 (ACS3-HMAC-SHA256).
//!
//! This module is the single source of canonicalisation rules: the client signs with it and the
//! simulator verifies with it, and both are checked against Alibaba's official SDK signers in
//! `tests/interop_signature.rs` so that we agree with Alibaba, not only with ourselves.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The V3 algorithm name as it appears in the `Authorization` header.
pub const V3_ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// SHA-256 of the empty body, hex: what `x-acs-content-sha256` carries for a body-less request.
pub const EMPTY_SHA256_HEX: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Percent-encodes as Alibaba's RPC signers do: RFC 3986 unreserved characters
/// (`A-Z a-z 0-9 - _ . ~`) stay, every other UTF-8 byte becomes `%XY` in upper-case hex.
/// So a space is `%20` (never `+`), `*` is `%2A` and `~` stays `~`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 2);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Sorts parameters by name in byte order. The sort is stable, so repeated names keep their order.
fn sorted(params: &[(String, String)]) -> Vec<&(String, String)> {
    let mut v: Vec<&(String, String)> = params.iter().collect();
    v.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    v
}

/// The v1 canonicalised query string: every parameter except `Signature`, sorted by name,
/// names and values percent-encoded, joined with `&`. This exact string is also what the
/// client puts on the wire (query or form body), so what is sent is what was signed.
pub fn v1_canonical_query(params: &[(String, String)]) -> String {
    sorted(params)
        .into_iter()
        .filter(|(k, _)| k != "Signature")
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// v1 `StringToSign = METHOD & %2F & percentEncode(canonical query)`.
pub fn v1_string_to_sign(method: &str, params: &[(String, String)]) -> String {
    format!(
        "{}&%2F&{}",
        method.to_ascii_uppercase(),
        percent_encode(&v1_canonical_query(params))
    )
}

/// v1 signature: `base64(HMAC-SHA1(secret + "&", StringToSign))`.
pub fn v1_signature(secret: &str, method: &str, params: &[(String, String)]) -> String {
    let sts = v1_string_to_sign(method, params);
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(format!("{secret}&").as_bytes())
        .expect("HMAC takes any key length");
    mac.update(sts.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// V3 canonical query: sorted by name; values percent-encoded (names are sent as they are,
/// exactly as `alibabacloud_tea_openapi.utils.get_canonical_query_string` does).
pub fn v3_canonical_query(query: &[(String, String)]) -> String {
    sorted(query)
        .into_iter()
        .map(|(k, v)| format!("{}={}", k, percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// V3 canonical headers and the `SignedHeaders` list: names lower-cased and sorted, values
/// trimmed; a header given twice joins its sorted values with `,`.
pub fn v3_canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut map: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (k, v) in headers {
        map.entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.trim().to_string());
    }
    let mut canonical = String::new();
    for (k, vals) in map.iter_mut() {
        vals.sort();
        canonical.push_str(k);
        canonical.push(':');
        canonical.push_str(&vals.join(","));
        canonical.push('\n');
    }
    let signed = map.keys().cloned().collect::<Vec<_>>().join(";");
    (canonical, signed)
}

/// The parts of a V3 request that are signed. `headers` are exactly the headers to sign.
#[derive(Debug, Clone, Copy)]
pub struct V3Parts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub headers: &'a [(String, String)],
    /// Hex SHA-256 of the body (also sent as `x-acs-content-sha256`).
    pub payload_sha256_hex: &'a str,
}

/// V3 canonical request: `METHOD\nURI\nQuery\nHeaders\nSignedHeaders\nPayloadHash`.
pub fn v3_canonical_request(p: &V3Parts<'_>) -> (String, String) {
    let (canon_headers, signed) = v3_canonical_headers(p.headers);
    let path = if p.path.is_empty() { "/" } else { p.path };
    let req = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        p.method.to_ascii_uppercase(),
        path,
        v3_canonical_query(p.query),
        canon_headers,
        signed,
        p.payload_sha256_hex
    );
    (req, signed)
}

/// V3 signature, hex: `HMAC-SHA256(secret, "ACS3-HMAC-SHA256\n" + hex(SHA-256(CanonicalRequest)))`.
/// Returns `(signature, signed_headers)`.
pub fn v3_signature(secret: &str, p: &V3Parts<'_>) -> (String, String) {
    let (canonical, signed) = v3_canonical_request(p);
    let sts = format!("{V3_ALGORITHM}\n{}", sha256_hex(canonical.as_bytes()));
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    #[allow(clippy::expect_used)]
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(sts.as_bytes());
    (hex::encode(mac.finalize().into_bytes()), signed)
}

/// The whole `Authorization` header value for V3.
pub fn v3_authorization(access_key_id: &str, secret: &str, p: &V3Parts<'_>) -> String {
    let (sig, signed) = v3_signature(secret, p);
    format!("{V3_ALGORITHM} Credential={access_key_id},SignedHeaders={signed},Signature={sig}")
}

/// Hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A parsed V3 `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3Authorization {
    pub access_key_id: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parses `ACS3-HMAC-SHA256 Credential=..,SignedHeaders=a;b,Signature=..`; `None` if malformed.
pub fn parse_v3_authorization(value: &str) -> Option<V3Authorization> {
    let rest = value.strip_prefix(V3_ALGORITHM)?.trim_start();
    let (mut cred, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => cred = Some(v.to_string()),
            "SignedHeaders" => signed = Some(v.split(';').map(str::to_string).collect()),
            "Signature" => sig = Some(v.to_string()),
            _ => {}
        }
    }
    Some(V3Authorization {
        access_key_id: cred?,
        signed_headers: signed?,
        signature: sig?,
    })
}

/// Constant-time comparison of two signatures, so a verifier leaks no timing.
pub fn signatures_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn vector_a() -> Vec<(String, String)> {
        p(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ])
    }

    #[test]
    fn vector_a_string_to_sign_and_signature() {
        let params = vector_a();
        assert_eq!(
            v1_string_to_sign("GET", &params),
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(
            v1_signature("testsecret", "GET", &params),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    #[test]
    fn vector_b() {
        let params = p(&[("query", "test"), ("body", "test")]);
        assert_eq!(
            v1_signature("secret", "GET", &params),
            "XlUyV4sXjOuX5FnjUz9IF9tm5rU="
        );
    }

    fn vector_d() -> Vec<(String, String)> {
        p(&[
            ("AccessKeyId", "accessKeyId"),
            ("Action", ""),
            ("Format", "JSON"),
            ("RegionId", "regionId"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "MOCK_UUID"),
            ("SignatureType", ""),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "mock date"),
            ("Version", ""),
        ])
    }

    #[test]
    fn vector_d_empty_values_and_space() {
        assert_eq!(
            v1_signature("accessKeySecret", "GET", &vector_d()),
            "7loPmFjvDnzOVnQeQNj85S6nFGY="
        );
    }

    #[test]
    fn vector_d2_security_token() {
        let mut params = vector_d();
        params.push(("SecurityToken".into(), "accessKeyStsToken".into()));
        assert_eq!(
            v1_signature("accessKeySecret", "GET", &params),
            "5Nxdcler+ihqWqv0Hr2On4PsBf4="
        );
    }

    #[test]
    fn vector_e_post_csr_unicode() {
        let params = p(&[
            ("AccessKeyId", "testid"),
            ("Action", "CreateCertificateForPackageRequest"),
            ("Format", "JSON"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2020-04-07"),
            (
                "Csr",
                "-----BEGIN CERTIFICATE REQUEST-----\nMIIB+zCCAWQCAQAw/abc=\n-----END CERTIFICATE REQUEST-----\n",
            ),
            ("ProductCode", "digicert-free-1-free"),
            ("Username", "Tom Zhang"),
            ("ValidateType", "DNS"),
            ("Email", "a+b@example.com"),
            ("Tags.1.Key", "k*~"),
            ("Tags.1.Value", "值 v"),
            ("SecurityToken", "STS.token/with+slash="),
        ]);
        assert_eq!(
            v1_canonical_query(&params),
            "AccessKeyId=testid&Action=CreateCertificateForPackageRequest&Csr=-----BEGIN%20CERTIFICATE%20REQUEST-----%0AMIIB%2BzCCAWQCAQAw%2Fabc%3D%0A-----END%20CERTIFICATE%20REQUEST-----%0A&Email=a%2Bb%40example.com&Format=JSON&ProductCode=digicert-free-1-free&SecurityToken=STS.token%2Fwith%2Bslash%3D&SignatureMethod=HMAC-SHA1&SignatureNonce=3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf&SignatureVersion=1.0&Tags.1.Key=k%2A~&Tags.1.Value=%E5%80%BC%20v&Timestamp=2016-02-23T12%3A46%3A24Z&Username=Tom%20Zhang&ValidateType=DNS&Version=2020-04-07"
        );
        assert_eq!(
            v1_signature("testsecret", "POST", &params),
            "2q8IhvJ+BenBsNyei6oXYDAKVxo="
        );
    }

    #[test]
    fn signature_param_is_excluded_from_v1() {
        let mut params = vector_a();
        params.push(("Signature".into(), "whatever".into()));
        assert_eq!(
            v1_signature("testsecret", "GET", &params),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    #[test]
    fn v3_vector() {
        let query = p(&[
            ("Domain", "www.example.com,api.example.com"),
            ("ValidateType", "DNS"),
            ("Username", "Tom Zhang"),
        ]);
        let headers = p(&[
            ("host", "cas.aliyuncs.com"),
            ("x-acs-action", "CreateCertificateForPackageRequest"),
            ("x-acs-version", "2020-04-07"),
            ("x-acs-date", "2026-11-23T08:00:00Z"),
            (
                "x-acs-signature-nonce",
                "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
            ),
            ("x-acs-content-sha256", EMPTY_SHA256_HEX),
        ]);
        let parts = V3Parts {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            payload_sha256_hex: EMPTY_SHA256_HEX,
        };
        let (sig, signed) = v3_signature("testsecret", &parts);
        assert_eq!(
            sig,
            "2c0b7ee6583038b605a0e60ef0ef0a4c48d220153d0ca6798711012c445fe1c3"
        );
        assert_eq!(
            signed,
            "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
        );
        let auth = v3_authorization("testid", "testsecret", &parts);
        let parsed = parse_v3_authorization(&auth).expect("parses");
        assert_eq!(parsed.access_key_id, "testid");
        assert_eq!(parsed.signature, sig);
        assert_eq!(parsed.signed_headers.len(), 6);
    }

    #[test]
    fn percent_encoding_rules() {
        assert_eq!(percent_encode("a b*~+/"), "a%20b%2A~%2B%2F");
        assert_eq!(percent_encode("值"), "%E5%80%BC");
        assert_eq!(percent_encode(""), "");
    }

    #[test]
    fn malformed_authorization_is_none() {
        assert!(parse_v3_authorization("Bearer x").is_none());
        assert!(parse_v3_authorization("ACS3-HMAC-SHA256 Credential=a").is_none());
    }

    #[test]
    fn constant_time_compare() {
        assert!(signatures_equal("abc", "abc"));
        assert!(!signatures_equal("abc", "abd"));
        assert!(!signatures_equal("abc", "ab"));
    }
}
