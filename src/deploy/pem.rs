//! PEM handling and the checks before deploying: key match, names, chain, validity.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

use super::{CertInfo, DeployError, PemSet};

/// DER blocks of every CERTIFICATE in `pem` (other block types are refused).
pub(crate) fn cert_ders(pem: &str) -> Result<Vec<Vec<u8>>, DeployError> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| DeployError::BadCertificate(format!("PEM: {e}")))?;
        if block.label != "CERTIFICATE" {
            return Err(DeployError::BadCertificate(format!(
                "unexpected PEM block {:?}",
                block.label
            )));
        }
        parse(&block.contents)?;
        out.push(block.contents);
    }
    Ok(out)
}

/// Canonical PEM of one DER certificate (64-column base64).
pub(crate) fn encode(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

pub(crate) fn split(pem_chain: &str) -> Result<(String, String), DeployError> {
    let ders = cert_ders(pem_chain)?;
    let (leaf, rest) = ders
        .split_first()
        .ok_or_else(|| DeployError::BadCertificate("no certificate in the answer".into()))?;
    Ok((encode(leaf), rest.iter().map(|d| encode(d)).collect()))
}

fn time(t: ASN1Time) -> Result<DateTime<Utc>, DeployError> {
    DateTime::from_timestamp(t.timestamp(), 0)
        .ok_or_else(|| DeployError::BadCertificate("validity date out of range".into()))
}

/// Facts about the leaf, and whether `key_pem` is the key it certifies.
pub(crate) fn inspect(set: &PemSet) -> Result<(CertInfo, bool), DeployError> {
    let ders = cert_ders(&set.cert_pem)?;
    let [leaf_der] = ders.as_slice() else {
        return Err(DeployError::BadCertificate(format!(
            "expected exactly one leaf certificate, found {}",
            ders.len()
        )));
    };
    cert_ders(&set.chain_pem)?;
    let leaf = parse(leaf_der)?;
    // Never echo the parser's message: it could quote the key.
    let key = crate::keys::load_key(set.key_pem.expose())
        .map_err(|_| DeployError::BadKey("not a PKCS#8 or SEC1/PKCS#1 private key".into()))?;
    let ours = {
        use rcgen::PublicKeyData;
        key.der_bytes() == &*leaf.public_key().subject_public_key.data
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    let info = CertInfo {
        not_before: time(leaf.validity().not_before)?,
        not_after: time(leaf.validity().not_after)?,
        serial_hex: hex::encode(leaf.raw_serial()),
        names,
        fingerprint_sha256: hex::encode(Sha256::digest(leaf_der)),
    };
    Ok((info, ours))
}

pub(crate) fn check(
    set: &PemSet,
    domains: &[String],
    now: DateTime<Utc>,
) -> Result<CertInfo, DeployError> {
    let (info, ours) = inspect(set)?;
    if !ours {
        return Err(DeployError::KeyMismatch);
    }
    let norm = |v: &[String]| {
        let mut v: Vec<String> = v.iter().map(|s| s.to_ascii_lowercase()).collect();
        v.sort();
        v.dedup();
        v
    };
    let (got, want) = (norm(&info.names), norm(domains));
    if got != want {
        return Err(DeployError::WrongNames { got, want });
    }
    if info.not_after <= now {
        return Err(DeployError::Expired(info.not_after));
    }
    Ok(info)
}

/// The key type of the leaf's public key: `("ec", bits)` or `("rsa", bits)`; `None` for others.
pub(crate) fn key_type(cert_pem: &str) -> Result<Option<(&'static str, usize)>, DeployError> {
    with_leaf(cert_pem, |leaf| match leaf.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::EC(ec)) => Some(("ec", ec.key_size())),
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => Some(("rsa", rsa.key_size())),
        _ => None,
    })
}

/// Hex SHA-256 of the leaf's SubjectPublicKeyInfo DER: names the key without revealing it.
pub(crate) fn key_sha256(cert_pem: &str) -> Result<String, DeployError> {
    with_leaf(cert_pem, |leaf| {
        hex::encode(Sha256::digest(leaf.public_key().raw))
    })
}

/// `f` of the leaf: the first certificate in `cert_pem`.
fn with_leaf<T>(
    cert_pem: &str,
    f: impl FnOnce(&X509Certificate<'_>) -> T,
) -> Result<T, DeployError> {
    let ders = cert_ders(cert_pem)?;
    let leaf = ders
        .first()
        .ok_or_else(|| DeployError::BadCertificate("no certificate".into()))?;
    Ok(f(&parse(leaf)?))
}

/// One DER certificate, parsed.
fn parse(der: &[u8]) -> Result<X509Certificate<'_>, DeployError> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| DeployError::BadCertificate(e.to_string()))
}
