//! The on-disk form of a [`CertRecord`]: JSON with a version field `v`. Each version's types
//! live in their own module (`v1`) and convert from and to the domain types, so the format
//! changes only when a version module does. Writing always uses [`RECORD_VERSION`]; reading
//! accepts every version up to it and upgrades older ones (a `v2` adds its step in [`decode`]).
mod v1;

use serde::Deserialize;

use super::{CertRecord, StoreError};

/// The newest record format this build writes.
pub const RECORD_VERSION: u32 = 1;

/// The record as [`RECORD_VERSION`] writes it.
pub fn encode(r: &CertRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&v1::Record::from_domain(r, RECORD_VERSION)).map_err(|e| {
        StoreError::Decode {
            name: r.name.clone(),
            reason: e.to_string(),
        }
    })
}

/// Reads a record of any version up to [`RECORD_VERSION`]; a newer one is refused rather than
/// guessed at.
pub fn decode(name: &str, bytes: &[u8]) -> Result<CertRecord, StoreError> {
    #[derive(Deserialize)]
    struct Head {
        v: u32,
    }
    let err = |e: serde_json::Error| StoreError::Decode {
        name: name.to_string(),
        reason: e.to_string(),
    };
    let head: Head = serde_json::from_slice(bytes).map_err(err)?;
    if head.v > RECORD_VERSION {
        return Err(StoreError::TooNew {
            name: name.to_string(),
            v: head.v,
            max: RECORD_VERSION,
        });
    }
    // Every version up to here is v1 (no build wrote a 0).
    let record: v1::Record = serde_json::from_slice(bytes).map_err(err)?;
    Ok(record.into_domain(RECORD_VERSION))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod v1_fixtures;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::store::Phase;
    use cas_api::model::OrderId;
    use cas_api::secret::Secret;

    /// A record exactly as version 1 wrote it must keep decoding in later versions.
    #[test]
    fn decodes_a_v1_record() {
        let v1 = r#"{"v":1,"name":"www","domains":["example.com","www.example.com"],
            "phase":{"phase":"polling","order_id":"18446744073709551000","presented":
              {"File":{"path":"/var/www/.well-known/pki-validation/fileauth.txt"}},
              "presented_at":"2026-01-01T00:00:00Z","next_poll":"2026-01-01T00:01:00Z","attempt":2},
            "pending_key":"-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----\n",
            "pending_csr":null,"deployed":null,"next_due":"2026-01-01T00:01:00Z",
            "last_error":null,"last_success":null,"force_renew":false,"hook_pending":false,
            "hook_attempt":0,"orders_to_clean":[123],"failures":0}"#;
        let r = decode("www", v1.as_bytes()).unwrap();
        assert_eq!(r.phase.open_order(), Some(OrderId(18446744073709551000)));
        assert_eq!(r.orders_to_clean, vec![OrderId(123)]);
        assert!(r.pending_key().unwrap().expose().contains("PRIVATE KEY"));
    }

    /// v1 keeps the attempt's key beside the phase; the domain keeps it in the in-flight phase.
    /// One beside a phase at rest (an attempt abandoned by an older build) is dropped.
    #[test]
    fn a_key_lives_in_the_in_flight_phase_and_one_at_rest_is_dropped() {
        let at_rest = r#"{"v":1,"name":"www","domains":["example.com"],"phase":{"phase":"idle"},
            "pending_key":"KEY","pending_csr":"CSR","next_due":"2026-01-01T00:01:00Z"}"#;
        let r = decode("www", at_rest.as_bytes()).unwrap();
        assert_eq!(r.phase, Phase::Idle);
        assert!(r.pending_key().is_none());
        let v: serde_json::Value = serde_json::from_slice(&encode(&r).unwrap()).unwrap();
        assert_eq!(
            (&v["pending_key"], &v["pending_csr"]),
            (&serde_json::Value::Null, &serde_json::Value::Null)
        );
        let in_flight = at_rest.replace(r#"{"phase":"idle"}"#, r#"{"phase":"key_ready"}"#);
        let r = decode("www", in_flight.as_bytes()).unwrap();
        let p = r.phase.pending().unwrap();
        assert_eq!(
            (p.key.as_ref().unwrap().expose(), p.csr.as_deref()),
            ("KEY", Some("CSR"))
        );
        let v: serde_json::Value = serde_json::from_slice(&encode(&r).unwrap()).unwrap();
        assert_eq!(
            (v["pending_key"].as_str(), v["pending_csr"].as_str()),
            (Some("KEY"), Some("CSR"))
        );
    }

    #[test]
    fn refuses_a_newer_version_instead_of_guessing() {
        let e = decode("x", br#"{"v":99}"#).unwrap_err();
        assert!(matches!(e, StoreError::TooNew { v: 99, .. }), "{e}");
    }

    #[test]
    fn round_trips_with_key_and_deployed_cert() {
        let mut r = CertRecord::new("a", vec!["a.test".into()]);
        r.phase = Phase::Intent {
            pending: crate::store::PendingKey {
                key: Some(Secret::new("SUPERSECRETKEYMATERIAL")),
                csr: None,
            },
            created_at: Utc::now(),
            csr_fingerprint: "ab".into(),
            product: Some("digicert-free-1-free".into()),
        };
        let b = encode(&r).unwrap();
        let back = decode("a", &b).unwrap();
        assert_eq!(back, r);
        // The Debug form used in logs never shows the key.
        assert!(!format!("{back:?}").contains("SUPERSECRETKEYMATERIAL"));
    }

    /// `ordered_at` (the start of the validation deadline) survives a restart, and a record
    /// written without it reads as `None` and is written back without it.
    #[test]
    fn a_presented_order_keeps_when_it_was_ordered() {
        let mut r = CertRecord::new("a", vec!["a.test".into()]);
        let at = Utc::now();
        r.phase = Phase::Presented {
            pending: Default::default(),
            order_id: OrderId(5),
            presented: crate::validation::Presented::File { path: "/p".into() },
            presented_at: at,
            ordered_at: Some(at - chrono::TimeDelta::minutes(3)),
            attempt: 0,
        };
        assert_eq!(decode("a", &encode(&r).unwrap()).unwrap(), r);
        let mut v: serde_json::Value = serde_json::from_slice(&encode(&r).unwrap()).unwrap();
        assert!(v["phase"]
            .as_object_mut()
            .unwrap()
            .remove("ordered_at")
            .is_some());
        let old = decode("a", &serde_json::to_vec(&v).unwrap()).unwrap();
        assert!(matches!(
            old.phase,
            Phase::Presented {
                ordered_at: None,
                ..
            }
        ));
        let again: serde_json::Value = serde_json::from_slice(&encode(&old).unwrap()).unwrap();
        assert_eq!(again["phase"].get("ordered_at"), None);
    }

    /// An old record without `retired_orders` still decodes.
    #[test]
    fn a_record_without_retired_orders_decodes() {
        let mut r = CertRecord::new("a", vec!["a.test".into()]);
        r.retire(OrderId(7));
        let mut v: serde_json::Value = serde_json::from_slice(&encode(&r).unwrap()).unwrap();
        assert!(v
            .as_object_mut()
            .unwrap()
            .remove("retired_orders")
            .is_some());
        let back = decode("a", &serde_json::to_vec(&v).unwrap()).unwrap();
        assert!(back.retired_orders.is_empty());
    }
}
