//! Wire shapes of the answers (PascalCase JSON) and their conversion into the model types.
//! Tolerant: unknown fields are ignored, optional ones may be absent, numbers may be strings.

use serde::{Deserialize, Deserializer};

use crate::model::*;
use crate::secret::Secret;

/// An i64 sent as a number or a string (Alibaba is not consistent).
fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        I(i64),
        F(f64),
        S(String),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        None => None,
        Some(Raw::I(n)) => Some(n),
        Some(Raw::F(f)) => Some(f as i64),
        Some(Raw::S(s)) => s.trim().parse().ok(),
    })
}

/// A string sent as a string or a number (RecordId, CertId).
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        S(String),
        U(u64),
        I(i64),
        F(f64),
        B(bool),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        None => None,
        Some(Raw::S(s)) => Some(s),
        Some(Raw::U(n)) => Some(n.to_string()),
        Some(Raw::I(n)) => Some(n.to_string()),
        Some(Raw::F(f)) => Some(f.to_string()),
        Some(Raw::B(b)) => Some(b.to_string()),
    })
}

/// The error body of every Alibaba Cloud RPC API.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ErrorBody {
    pub request_id: Option<String>,
    pub host_id: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub recommend: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PackageStateRaw {
    #[serde(default)]
    pub product_code: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub total_count: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub used_count: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub issued_count: Option<i64>,
}

impl PackageStateRaw {
    pub fn into_model(self, asked: &str) -> PackageState {
        PackageState {
            product_code: self.product_code.unwrap_or_else(|| asked.to_string()),
            total_count: self.total_count.unwrap_or(0),
            used_count: self.used_count.unwrap_or(0),
            issued_count: self.issued_count.unwrap_or(0),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OrderIdRaw {
    pub order_id: OrderId,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CertificateStateRaw {
    #[serde(rename = "Type")]
    pub kind: Option<String>,
    pub validate_type: Option<String>,
    pub record_domain: Option<String>,
    pub record_type: Option<String>,
    pub record_value: Option<String>,
    pub domain: Option<String>,
    pub uri: Option<String>,
    pub content: Option<String>,
    pub certificate: Option<String>,
    pub private_key: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub cert_id: Option<String>,
}

impl CertificateStateRaw {
    pub fn into_model(self) -> CertificateState {
        let kind = self.kind.clone().unwrap_or_default();
        match kind.as_str() {
            "domain_verify" => CertificateState::DomainVerify(self.challenge()),
            "process" => CertificateState::Process,
            "verify_fail" => CertificateState::VerifyFail,
            "certificate" => CertificateState::Issued(IssuedCertificate {
                certificate: self.certificate.unwrap_or_default(),
                private_key: self
                    .private_key
                    .filter(|k| !k.trim().is_empty())
                    .map(Secret::new),
                cert_id: self.cert_id.filter(|c| !c.is_empty()),
            }),
            "payed" => CertificateState::Payed,
            "unknow" => CertificateState::Unknow,
            other => CertificateState::Other(other.to_string()),
        }
    }

    fn challenge(&self) -> Challenge {
        let vt = self.validate_type.clone().unwrap_or_default();
        match vt.to_ascii_uppercase().as_str() {
            "DNS" => match (&self.record_domain, &self.record_type, &self.record_value) {
                (Some(d), Some(t), Some(v)) => Challenge::Dns {
                    record_domain: d.clone(),
                    record_type: t.clone(),
                    record_value: v.clone(),
                },
                _ => Challenge::Unknown { validate_type: vt },
            },
            "FILE" => match (&self.domain, &self.uri, &self.content) {
                (Some(d), Some(u), Some(c)) => Challenge::File {
                    domain: d.clone(),
                    uri: u.clone(),
                    content: c.clone(),
                },
                _ => Challenge::Unknown { validate_type: vt },
            },
            _ => Challenge::Unknown { validate_type: vt },
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct OrderPageRaw {
    #[serde(deserialize_with = "lenient_i64")]
    pub total_count: Option<i64>,
    #[serde(deserialize_with = "lenient_i64")]
    pub current_page: Option<i64>,
    #[serde(deserialize_with = "lenient_i64")]
    pub show_size: Option<i64>,
    pub certificate_order_list: Option<Vec<OrderSummaryRaw>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OrderSummaryRaw {
    pub order_id: OrderId,
    #[serde(default, deserialize_with = "lenient_string")]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub domain_count: Option<i64>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub product_code: Option<String>,
    #[serde(default)]
    pub cert_type: Option<String>,
    #[serde(default)]
    pub domain_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub cert_start_time: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub cert_end_time: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub buy_date: Option<i64>,
    #[serde(default)]
    pub algorithm: Option<String>,
}

impl OrderPageRaw {
    pub fn into_model(self, q: &ListOrders) -> OrderPage {
        let orders = self
            .certificate_order_list
            .unwrap_or_default()
            .into_iter()
            .map(|o| OrderSummary {
                order_id: o.order_id,
                instance_id: o.instance_id,
                domain: o.domain,
                domain_count: o.domain_count,
                status: o.status,
                product_code: o.product_code,
                cert_type: o.cert_type,
                domain_type: o.domain_type,
                cert_start_time: o.cert_start_time,
                cert_end_time: o.cert_end_time,
                buy_date: o.buy_date,
                algorithm: o.algorithm,
            })
            .collect::<Vec<_>>();
        OrderPage {
            total_count: self
                .total_count
                .map(|n| n.max(0) as u64)
                .unwrap_or(orders.len() as u64),
            current_page: self
                .current_page
                .map(|n| n.clamp(0, i64::from(u32::MAX)) as u32)
                .unwrap_or(q.current_page),
            show_size: self
                .show_size
                .map(|n| n.clamp(0, i64::from(u32::MAX)) as u32)
                .unwrap_or(q.show_size),
            orders,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecordIdRaw {
    #[serde(deserialize_with = "lenient_string")]
    pub record_id: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DnsRecordPageRaw {
    #[serde(deserialize_with = "lenient_i64")]
    pub total_count: Option<i64>,
    pub domain_records: Option<DomainRecordsRaw>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DomainRecordsRaw {
    pub record: Vec<DnsRecordRaw>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DnsRecordRaw {
    #[serde(deserialize_with = "lenient_string")]
    pub record_id: Option<String>,
    #[serde(rename = "RR")]
    pub rr: Option<String>,
    #[serde(rename = "Type")]
    pub kind: Option<String>,
    pub value: Option<String>,
    #[serde(rename = "TTL", deserialize_with = "lenient_i64")]
    pub ttl: Option<i64>,
    pub domain_name: Option<String>,
}

impl DnsRecordPageRaw {
    pub fn into_model(self) -> DnsRecordPage {
        let records: Vec<DnsRecord> = self
            .domain_records
            .unwrap_or_default()
            .record
            .into_iter()
            .map(|r| DnsRecord {
                record_id: r.record_id.unwrap_or_default(),
                rr: r.rr.unwrap_or_default(),
                record_type: r.kind.unwrap_or_default(),
                value: r.value.unwrap_or_default(),
                ttl: r.ttl.and_then(|t| u64::try_from(t).ok()),
                domain_name: r.domain_name,
            })
            .collect();
        DnsRecordPage {
            total_count: self
                .total_count
                .map(|n| n.max(0) as u64)
                .unwrap_or(records.len() as u64),
            records,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: serde::de::DeserializeOwned>(s: &str) -> T {
        serde_json::from_str(s).expect("parse")
    }

    #[test]
    fn order_id_as_string_or_number_above_2_pow_53() {
        let a: OrderIdRaw = parse(r#"{"RequestId":"x","OrderId":"9007199254740993"}"#);
        assert_eq!(a.order_id, OrderId(9_007_199_254_740_993));
        let b: OrderIdRaw = parse(r#"{"OrderId":18446744073709551615,"Extra":{"a":1}}"#);
        assert_eq!(b.order_id, OrderId(u64::MAX));
        assert!(serde_json::from_str::<OrderIdRaw>(r#"{"OrderId":"abc"}"#).is_err());
    }

    #[test]
    fn certificate_state_variants() {
        let s: CertificateStateRaw = parse(
            r#"{"Type":"domain_verify","ValidateType":"DNS","RecordDomain":"_dnsauth","RecordType":"TXT","RecordValue":"v","New":true}"#,
        );
        assert_eq!(
            s.into_model(),
            CertificateState::DomainVerify(Challenge::Dns {
                record_domain: "_dnsauth".into(),
                record_type: "TXT".into(),
                record_value: "v".into()
            })
        );
        let f: CertificateStateRaw = parse(
            r#"{"Type":"domain_verify","ValidateType":"FILE","Domain":"a.com","Uri":"/.well-known/pki-validation/fileauth.txt","Content":"c"}"#,
        );
        assert!(matches!(
            f.into_model(),
            CertificateState::DomainVerify(Challenge::File { .. })
        ));
        let i: CertificateStateRaw =
            parse(r#"{"Type":"certificate","Certificate":"PEM","PrivateKey":"","CertId":123}"#);
        match i.into_model() {
            CertificateState::Issued(c) => {
                assert_eq!(c.certificate, "PEM");
                assert!(c.private_key.is_none());
                assert_eq!(c.cert_id.as_deref(), Some("123"));
            }
            other => panic!("{other:?}"),
        }
        let o: CertificateStateRaw = parse(r#"{"Type":"brand_new_state"}"#);
        assert_eq!(
            o.into_model(),
            CertificateState::Other("brand_new_state".into())
        );
        let u: CertificateStateRaw = parse(r#"{"Type":"unknow"}"#);
        assert_eq!(u.into_model(), CertificateState::Unknow);
        let m: CertificateStateRaw = parse(r#"{"Type":"domain_verify"}"#);
        assert!(matches!(
            m.into_model(),
            CertificateState::DomainVerify(Challenge::Unknown { .. })
        ));
    }

    #[test]
    fn order_list_with_mixed_id_types_and_unknown_fields() {
        let p: OrderPageRaw = parse(
            r#"{"RequestId":"r","TotalCount":2,"CurrentPage":1,"ShowSize":50,
            "CertificateOrderList":[
              {"OrderId":123456789012345678,"InstanceId":"cas-xyz","Domain":"a.com","Status":"ISSUED",
               "CertEndTime":1700000000000,"Unknown":"x","Algorithm":"RSA"},
              {"OrderId":"9007199254740993"}]}"#,
        );
        let m = p.into_model(&ListOrders::default());
        assert_eq!(m.total_count, 2);
        assert_eq!(m.orders.len(), 2);
        assert_eq!(m.orders[0].order_id, OrderId(123_456_789_012_345_678));
        assert_eq!(m.orders[0].cert_end_time, Some(1_700_000_000_000));
        assert_eq!(m.orders[1].order_id, OrderId(9_007_199_254_740_993));
        assert_eq!(m.orders[1].domain, None);
        let empty: OrderPageRaw = parse(r#"{"RequestId":"r"}"#);
        assert!(empty.into_model(&ListOrders::default()).orders.is_empty());
    }

    #[test]
    fn dns_records_and_package() {
        let p: DnsRecordPageRaw = parse(
            r#"{"TotalCount":1,"PageNumber":1,"DomainRecords":{"Record":[{"RecordId":"9999985","RR":"_dnsauth","Type":"TXT","Value":"v","TTL":600,"DomainName":"example.com","Locked":false}]}}"#,
        );
        let m = p.into_model();
        assert_eq!(m.records[0].record_id, "9999985");
        assert_eq!(m.records[0].ttl, Some(600));
        let r: RecordIdRaw = parse(r#"{"RecordId":12345}"#);
        assert_eq!(r.record_id.as_deref(), Some("12345"));
        let k: PackageStateRaw =
            parse(r#"{"ProductCode":"p","TotalCount":"20","UsedCount":20,"IssuedCount":3}"#);
        let k = k.into_model("p");
        assert_eq!((k.total_count, k.used_count, k.issued_count), (20, 20, 3));
    }
}
