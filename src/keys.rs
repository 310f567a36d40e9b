//! Private keys and CSRs made locally (the key never leaves the host).
//!
//! rcgen with the aws-lc-rs backend makes ECDSA P-256/P-384 and RSA 2048/3072/4096 keys; the
//! key is returned as PKCS#8 PEM inside a [`Secret`] so it cannot end up in a log.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, RsaKeySize};

use crate::config::KeyKind;
use cas_api::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("CSR generation failed: {0}")]
    Csr(String),
    #[error("CAS makes this key: there is nothing to generate")]
    CasManaged,
}

fn new_key(kind: KeyKind) -> Result<KeyPair, KeyError> {
    let rsa = |size| KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size);
    let r = match kind {
        KeyKind::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyKind::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyKind::Rsa2048 => rsa(RsaKeySize::_2048),
        KeyKind::Rsa3072 => rsa(RsaKeySize::_3072),
        KeyKind::Rsa4096 => rsa(RsaKeySize::_4096),
        KeyKind::Cas => return Err(KeyError::CasManaged),
    };
    // rcgen's error carries no key material, only a description.
    r.map_err(|e| KeyError::Generate(e.to_string()))
}

/// Reads a private key in PKCS#8, or (as CAS may return it) PKCS#1 RSA or SEC1 EC PEM.
/// Errors carry no detail on purpose: a parser message could quote the key.
/// Public only for the fuzz tests.
#[doc(hidden)]
#[allow(clippy::result_unit_err)]
pub fn load_key(pem: &str) -> Result<KeyPair, ()> {
    if let Ok(k) = KeyPair::from_pem(pem) {
        return Ok(k);
    }
    let algs: &[&'static rcgen::SignatureAlgorithm] = if pem.contains("BEGIN RSA PRIVATE KEY") {
        &[&rcgen::PKCS_RSA_SHA256]
    } else if pem.contains("BEGIN EC PRIVATE KEY") {
        &[
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
        ]
    } else {
        &[]
    };
    algs.iter()
        .find_map(|alg| KeyPair::from_pem_and_sign_algo(pem, alg).ok())
        .ok_or(())
}

fn csr(key: &KeyPair, domains: &[String]) -> Result<String, KeyError> {
    let first = domains
        .first()
        .ok_or_else(|| KeyError::Csr("no domain names".into()))?;
    let mut params =
        CertificateParams::new(domains.to_vec()).map_err(|e| KeyError::Csr(e.to_string()))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, first.as_str());
    params.distinguished_name = dn;
    params
        .serialize_request(key)
        .and_then(|r| r.pem())
        .map_err(|e| KeyError::Csr(e.to_string()))
}

/// A new key (PKCS#8 PEM) and a CSR for `domains` (CN = first domain, SANs = all).
pub fn generate(kind: KeyKind, domains: &[String]) -> Result<(Secret, String), KeyError> {
    let key = new_key(kind)?;
    let csr = csr(&key, domains)?;
    Ok((Secret::new(key.serialize_pem()), csr))
}

/// A CSR for an existing key (renewal with the same key is not our default, but a CSR may
/// need re-making after a crash).
pub fn csr_for_key(key_pem: &Secret, domains: &[String]) -> Result<String, KeyError> {
    // Do not echo the parser's message: it could quote parts of the key.
    let key = load_key(key_pem.expose())
        .map_err(|_| KeyError::Csr("the private key does not parse".into()))?;
    csr(&key, domains)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn names(csr_pem: &str) -> (String, Vec<String>, Vec<u8>) {
        let (_, pem) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes()).unwrap();
        let (_, req) = X509CertificationRequest::from_der(&pem.contents).unwrap();
        req.verify_signature().unwrap();
        let info = &req.certification_request_info;
        let cn = info
            .subject
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        let mut sans = Vec::new();
        for ext in req.requested_extensions().unwrap() {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for n in &san.general_names {
                    if let GeneralName::DNSName(d) = n {
                        sans.push(d.to_string());
                    }
                }
            }
        }
        (cn, sans, info.subject_pki.subject_public_key.data.to_vec())
    }

    #[test]
    fn every_kind_makes_a_matching_key_and_csr() {
        let domains = vec!["example.com".to_string(), "www.example.com".to_string()];
        for kind in [KeyKind::EcdsaP256, KeyKind::EcdsaP384, KeyKind::Rsa2048] {
            let (key, csr_pem) = generate(kind, &domains).unwrap();
            assert!(key.expose().starts_with("-----BEGIN PRIVATE KEY-----"));
            let (cn, sans, spk) = names(&csr_pem);
            assert_eq!(cn, "example.com");
            assert_eq!(sans, domains);
            let kp = KeyPair::from_pem(key.expose()).unwrap();
            use rcgen::PublicKeyData;
            assert_eq!(kp.der_bytes(), &spk[..], "{kind:?}");
            // A CSR re-made from the stored key carries the same public key.
            let (_, _, spk2) = names(&csr_for_key(&key, &domains).unwrap());
            assert_eq!(spk, spk2);
        }
        assert!(matches!(
            generate(KeyKind::Cas, &domains),
            Err(KeyError::CasManaged)
        ));
    }

    #[test]
    fn pkcs1_rsa_keys_load() {
        use base64::Engine;
        use x509_parser::der_parser::{der::parse_der, oid};
        // Unwrap our PKCS#8 RSA key to the inner PKCS#1 RSAPrivateKey, as CAS may return it.
        let (key, _) = generate(KeyKind::Rsa2048, &["a.example.com".into()]).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(key.expose().as_bytes()).unwrap();
        let (_, info) = parse_der(&pem.contents).unwrap();
        let items = info.as_sequence().unwrap();
        let alg = items[1].as_sequence().unwrap()[0].as_oid().unwrap();
        assert_eq!(alg, &oid!(1.2.840 .113549 .1 .1 .1));
        let pkcs1 = items[2].as_slice().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs1);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let pem1 = format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
            lines.join("\n")
        );
        use rcgen::PublicKeyData;
        let a = load_key(&pem1).unwrap();
        let b = load_key(key.expose()).unwrap();
        assert_eq!(a.der_bytes(), b.der_bytes());
        assert!(
            load_key("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")
                .is_err()
        );
    }

    #[test]
    fn rsa_sizes() {
        let (key, _) = generate(KeyKind::Rsa3072, &["a.example.com".into()]).unwrap();
        let kp = KeyPair::from_pem(key.expose()).unwrap();
        use rcgen::PublicKeyData;
        // RSAPublicKey DER for 3072 bits is a little over 384 bytes.
        assert!(kp.der_bytes().len() > 384 && kp.der_bytes().len() < 420);
    }

    #[test]
    fn bad_key_error_does_not_echo_the_key() {
        let e = csr_for_key(
            &Secret::new("-----BEGIN PRIVATE KEY-----\nAAAA\n"),
            &["a.b".into()],
        )
        .unwrap_err();
        assert!(!e.to_string().contains("AAAA"));
    }
}
