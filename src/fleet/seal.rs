//! Envelope encryption of private keys before they reach etcd: AES-256-GCM under the fleet key,
//! a random 96-bit nonce per seal, and associated data that binds the sealed text to the
//! certificate's name, the record version it is written at and the slot it fills. A sealed
//! key copied to another certificate, another version or another field does not open; neither
//! does one sealed under another fleet key or changed by one bit.
//!
//! The sealed form is text (it takes the key's place in the record's JSON):
//! `cas-certd-sealed:v1:` + base64(nonce ‖ ciphertext ‖ tag).
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;

use super::keyfile::FleetKey;
use cas_api::secret::Secret;

const TAG: &str = "cas-certd-sealed:v1:";
const NONCE_LEN: usize = 12;

/// What a sealed value is bound to.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// The certificate's name.
    pub name: &'a str,
    /// The version of the record the value is written in (etcd's per-key version).
    pub version: i64,
    /// Which field: `pending_key`, `key_pem`.
    pub slot: &'a str,
}

impl Binding<'_> {
    /// Unambiguous bytes: a name cannot hold NUL (config names are `[A-Za-z0-9._-]`), and the
    /// version is decimal.
    fn aad(&self) -> Vec<u8> {
        format!(
            "cas-certd fleet seal v1\0{}\0{}\0{}",
            self.name, self.version, self.slot
        )
        .into_bytes()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// A clear value where a sealed one belongs: never accepted (nor echoed).
    #[error("{name}: {slot} is stored in clear, not sealed; refused")]
    NotSealed { name: String, slot: String },
    #[error("{name}: {slot} is not a well-formed sealed value")]
    Malformed { name: String, slot: String },
    /// Wrong fleet key, or the value was moved or changed: AES-GCM cannot tell which.
    #[error("{name}: {slot} at version {version} does not open with this fleet key (another key, or moved or altered)")]
    Open {
        name: String,
        slot: String,
        version: i64,
    },
    #[error("sealing failed")]
    Seal,
}

/// Seals and opens values under one fleet key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub fn new(key: &FleetKey) -> Sealer {
        Sealer {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key.0)),
        }
    }

    pub fn seal(&self, b: Binding<'_>, clear: &Secret) -> Result<String, SealError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = b.aad();
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: clear.expose().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Seal)?;
        let mut raw = Vec::with_capacity(NONCE_LEN + ct.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ct);
        Ok(format!(
            "{TAG}{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    }

    pub fn open(&self, b: Binding<'_>, sealed: &str) -> Result<Secret, SealError> {
        let Some(body) = sealed.strip_prefix(TAG) else {
            return Err(SealError::NotSealed {
                name: b.name.to_string(),
                slot: b.slot.to_string(),
            });
        };
        let malformed = || SealError::Malformed {
            name: b.name.to_string(),
            slot: b.slot.to_string(),
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| malformed())?;
        if raw.len() < NONCE_LEN + 16 {
            return Err(malformed());
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let aad = b.aad();
        let clear = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| SealError::Open {
                name: b.name.to_string(),
                slot: b.slot.to_string(),
                version: b.version,
            })?;
        String::from_utf8(clear)
            .map(Secret::new)
            .map_err(|_| malformed())
    }
}

/// Whether `s` is in the sealed form (a scan for keys in clear uses it too).
pub fn is_sealed(s: &str) -> bool {
    s.starts_with(TAG)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PEM: &str =
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";

    fn sealer(b: u8) -> Sealer {
        Sealer::new(&FleetKey::from_bytes([b; 32]))
    }

    fn at(name: &str, version: i64) -> Binding<'_> {
        Binding {
            name,
            version,
            slot: "key_pem",
        }
    }

    #[test]
    fn seals_and_opens_and_the_sealed_text_shows_nothing_of_the_key() {
        let s = sealer(7);
        let sealed = s.seal(at("www", 3), &Secret::new(PEM)).unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("PRIVATE KEY") && !sealed.contains("MC4CAQAw"));
        assert_eq!(s.open(at("www", 3), &sealed).unwrap().expose(), PEM);
        // A fresh nonce each time: the same key sealed twice differs.
        assert_ne!(sealed, s.seal(at("www", 3), &Secret::new(PEM)).unwrap());
    }

    #[test]
    fn another_name_version_slot_or_key_does_not_open() {
        let s = sealer(7);
        let sealed = s.seal(at("www", 3), &Secret::new(PEM)).unwrap();
        let wrong = [
            s.open(at("api", 3), &sealed),
            s.open(at("www", 4), &sealed),
            s.open(
                Binding {
                    slot: "pending_key",
                    ..at("www", 3)
                },
                &sealed,
            ),
            sealer(8).open(at("www", 3), &sealed),
        ];
        for r in wrong {
            assert!(matches!(r, Err(SealError::Open { .. })), "{r:?}");
        }
    }

    #[test]
    fn tampering_is_detected_and_clear_or_malformed_values_are_refused() {
        let s = sealer(7);
        let sealed = s.seal(at("www", 3), &Secret::new(PEM)).unwrap();
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(sealed.strip_prefix(TAG).unwrap())
            .unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 1;
            let t = format!(
                "{TAG}{}",
                base64::engine::general_purpose::STANDARD.encode(&raw)
            );
            assert!(matches!(
                s.open(at("www", 3), &t),
                Err(SealError::Open { .. })
            ));
            raw[i] ^= 1;
        }
        let e = s.open(at("www", 3), PEM).unwrap_err();
        assert!(matches!(e, SealError::NotSealed { .. }));
        assert!(!e.to_string().contains("PRIVATE"), "{e}");
        for bad in [format!("{TAG}!!"), format!("{TAG}AAAA")] {
            assert!(matches!(
                s.open(at("www", 3), &bad),
                Err(SealError::Malformed { .. })
            ));
        }
    }
}
