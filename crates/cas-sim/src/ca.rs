//! The simulator's test CA: a root key and certificate made once and kept in `<data-dir>/ca/`,
//! and leaf certificates issued from an order's CSR or from a key the CA makes itself.
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, RsaKeySize,
    SerialNumber,
};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509CertificationRequest};
use x509_parser::public_key::PublicKey;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("CA file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("invalid CSR: {0}")]
    Csr(String),
    /// A well-formed CSR whose key CAS does not sign (it signs RSA of 2048 bits or more, and EC).
    #[error("the CSR's key cannot be used: {0}")]
    UnusableKey(String),
}

/// What a CSR asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CsrInfo {
    pub common_name: Option<String>,
    pub sans: Vec<String>,
    /// The key algorithm as ListUserCertificateOrder's `Algorithm` names it: RSA or ECC.
    pub algorithm: &'static str,
}

/// Reads CN and DNS SANs from a PEM CSR and checks its self-signature.
pub(crate) fn parse_csr(pem: &str) -> Result<CsrInfo, CaError> {
    let block = pem_block(pem).ok_or_else(|| CaError::Csr("not a PEM CSR".into()))?;
    let (_, csr) =
        X509CertificationRequest::from_der(&block).map_err(|e| CaError::Csr(e.to_string()))?;
    // Before the signature: a weak RSA key's signature is refused by the verifier too, and the
    // key is what CAS reports.
    let algorithm = match csr.certification_request_info.subject_pki.parsed() {
        Ok(PublicKey::RSA(k)) if k.key_size() >= 2048 => "RSA",
        Ok(PublicKey::RSA(k)) => {
            return Err(CaError::UnusableKey(format!(
                "RSA {} bits; at least 2048 are needed",
                k.key_size()
            )))
        }
        Ok(PublicKey::EC(_)) => "ECC",
        _ => {
            return Err(CaError::UnusableKey(
                "only RSA (2048 bits or more) and ECC keys are signed".into(),
            ))
        }
    };
    csr.verify_signature()
        .map_err(|e| CaError::Csr(format!("signature: {e}")))?;
    let common_name = csr
        .certification_request_info
        .subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(|s| s.to_ascii_lowercase());
    let mut sans = Vec::new();
    if let Some(exts) = csr.requested_extensions() {
        for e in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = e {
                for n in &san.general_names {
                    if let GeneralName::DNSName(d) = n {
                        sans.push(d.to_ascii_lowercase());
                    }
                }
            }
        }
    }
    Ok(CsrInfo {
        common_name,
        sans,
        algorithm,
    })
}

/// An RSA key as PKCS#1 PEM: rcgen writes PKCS#8, whose `privateKey` OCTET STRING is the
/// PKCS#1 `RSAPrivateKey` (RFC 5208 §5).
fn pkcs1_pem(key: &KeyPair) -> Result<String, CaError> {
    use base64::Engine as _;
    use x509_parser::der_parser::der::parse_der;
    let der = key.serialize_der();
    let bad = || CaError::Csr("rcgen wrote an RSA key that is not PKCS#8".into());
    let (_, info) = parse_der(&der).map_err(|_| bad())?;
    let pkcs1 = info
        .as_sequence()
        .ok()
        .and_then(|items| items.get(2))
        .and_then(|o| o.as_slice().ok())
        .ok_or_else(bad)?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs1);
    let mut pem = String::from("-----BEGIN RSA PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII.
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END RSA PRIVATE KEY-----\n");
    Ok(pem)
}

/// Decodes the first PEM block's base64 body.
pub(super) fn pem_block(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// A leaf as issued: chain PEM (leaf first, then root) and the key when the CA made it.
#[derive(Debug)]
pub(crate) struct Issued {
    pub chain_pem: String,
    pub key_pem: Option<String>,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
}

pub(crate) struct Ca {
    root_pem: String,
    key: KeyPair,
    pub root_path: PathBuf,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("root_path", &self.root_path)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads the CA from `<dir>`, or creates it (key 0600, created with its mode).
    pub(crate) fn open(dir: &Path) -> Result<Ca, CaError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CaError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let key_path = dir.join("root.key");
        let root_path = dir.join("root.pem");
        if key_path.exists() && root_path.exists() {
            let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            let root_pem = std::fs::read_to_string(&root_path).map_err(io(&root_path))?;
            let key = KeyPair::from_pem(&key_pem)?;
            return Ok(Ca {
                root_pem,
                key,
                root_path,
            });
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "cas-certd simulator test root");
        dn.push(DnType::OrganizationName, "cas-certd simulator");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3650);
        let cert = params.self_signed(&key)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(io(&key_path))?;
        f.write_all(key.serialize_pem().as_bytes())
            .map_err(io(&key_path))?;
        f.sync_all().map_err(io(&key_path))?;
        let root_pem = cert.pem();
        let tmp = dir.join("root.pem.tmp");
        std::fs::write(&tmp, &root_pem).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &root_path).map_err(io(&root_path))?;
        Ok(Ca {
            root_pem,
            key,
            root_path,
        })
    }

    /// Issues a leaf for `domains` (CN = first) valid for `lifetime` from now; the public key
    /// comes from `csr`, or from a new key returned in `key_pem` as CAS makes them: RSA 2048,
    /// PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`, the seed's DescribeCertificateState example).
    pub(crate) fn issue(
        &self,
        domains: &[String],
        csr: Option<&str>,
        lifetime: std::time::Duration,
        serial: u64,
    ) -> Result<Issued, CaError> {
        let now = time::OffsetDateTime::now_utc();
        // Backdate a minute so a just-issued certificate is valid on a slightly slow clock.
        let not_before = now - time::Duration::minutes(1);
        let life = time::Duration::try_from(lifetime).unwrap_or(time::Duration::days(90));
        self.issue_window(domains, csr, not_before, now + life, serial)
    }

    /// As [`Ca::issue`] with an explicit validity window (the hostile `expired` mode issues
    /// one that already ended).
    pub(crate) fn issue_window(
        &self,
        domains: &[String],
        csr: Option<&str>,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
        serial: u64,
    ) -> Result<Issued, CaError> {
        let issuer = Issuer::from_ca_cert_pem(&self.root_pem, &self.key)?;
        let mut params = CertificateParams::new(domains.to_vec())?;
        let mut dn = DistinguishedName::new();
        if let Some(first) = domains.first() {
            dn.push(DnType::CommonName, first.as_str());
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
        params.not_before = not_before;
        params.not_after = not_after;
        let (cert, key_pem) = match csr {
            Some(csr) => {
                let req = CertificateSigningRequestParams::from_pem(csr)?;
                (params.signed_by(&req.public_key, &issuer)?, None)
            }
            None => {
                let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)?;
                (params.signed_by(&key, &issuer)?, Some(pkcs1_pem(&key)?))
            }
        };
        let ms = |t: time::OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
        Ok(Issued {
            chain_pem: format!("{}{}", cert.pem(), self.root_pem),
            key_pem,
            not_before_ms: ms(not_before),
            not_after_ms: ms(not_after),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn root_persists_and_issues_from_csr() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::open(dir.path()).unwrap();
        let again = Ca::open(dir.path()).unwrap();
        assert_eq!(ca.root_pem, again.root_pem, "root made once, then reloaded");
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["www.example.com".to_string()]).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "www.example.com");
        let csr = p.serialize_request(&key).unwrap().pem().unwrap();
        let info = parse_csr(&csr).unwrap();
        assert_eq!(info.common_name.as_deref(), Some("www.example.com"));
        assert_eq!(info.sans, vec!["www.example.com".to_string()]);
        assert_eq!(info.algorithm, "ECC");
        let d = vec!["www.example.com".to_string()];
        let issued = again
            .issue(&d, Some(&csr), std::time::Duration::from_secs(3600), 7)
            .unwrap();
        assert!(issued.key_pem.is_none());
        assert!(issued.chain_pem.matches("BEGIN CERTIFICATE").count() == 2);
        let leaf = pem_block(&issued.chain_pem).unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(&leaf).unwrap();
        assert_eq!(
            x.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
        let mode = std::fs::metadata(dir.path().join("root.key"))
            .unwrap()
            .permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
    }
}
