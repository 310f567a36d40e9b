//! Typed requests and responses of the CAS and Alidns actions.
//!
//! Decoding is tolerant where Alibaba is inconsistent: `OrderId` arrives as a JSON
//! number or string and exceeds 2^53; unknown fields are ignored; optional fields may be absent;
//! an unknown `Type` becomes [`CertificateState::Other`], never a panic.

use serde::{Deserialize, Deserializer, Serialize};

use crate::secret::Secret;

/// The product CAS orders from when a call names none. Alibaba's 2024 API page for
/// `CreateCertificateForPackageRequest` names `digicert-free-1-free` (3-month free DV); the 2022
/// reference named `symantec-free-1-free`, which accounts still hold.
pub const DEFAULT_PRODUCT: &str = "digicert-free-1-free";

/// The free DV products every account is granted quota of.
pub const FREE_PRODUCTS: &[&str] = &["digicert-free-1-free", "symantec-free-1-free"];

/// Whether `code` is a free product: paid products renew through
/// `RenewCertificateOrderForPackageRequest`, free ones are ordered anew.
pub fn is_free_product(code: &str) -> bool {
    code.to_ascii_lowercase().contains("free")
}

/// A CAS order id. Values exceed 2^53, so it is a `u64`, parsed from a number or a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct OrderId(pub u64);

impl std::fmt::Display for OrderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for OrderId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(OrderId)
    }
}

impl<'de> Deserialize<'de> for OrderId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(OrderId(n)),
            Raw::S(s) => s
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("OrderId {s:?} is not a number"))),
        }
    }
}

/// How control of a domain is proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValidateType {
    #[serde(rename = "DNS")]
    Dns,
    #[serde(rename = "FILE")]
    File,
}

impl ValidateType {
    pub fn as_str(self) -> &'static str {
        match self {
            ValidateType::Dns => "DNS",
            ValidateType::File => "FILE",
        }
    }
}

/// Contact details CAS requires on every create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub name: String,
    pub phone: String,
    pub email: String,
}

/// DescribePackageState answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageState {
    pub product_code: String,
    pub total_count: i64,
    pub used_count: i64,
    pub issued_count: i64,
}

impl PackageState {
    /// Certificates that can still be ordered (never negative).
    pub fn left(&self) -> i64 {
        (self.total_count - self.used_count).max(0)
    }
}

/// CreateCertificateForPackageRequest. `domains` ≤ 5; with a CSR its CN is the bound domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOrder {
    pub product_code: String,
    pub domains: Vec<String>,
    /// PEM CSR; `None` lets CAS make the key (returned as PrivateKey at issuance).
    pub csr: Option<String>,
    pub validate_type: ValidateType,
    pub contact: Contact,
    pub company_name: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// The proof CAS asks for while an order is `domain_verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Challenge {
    /// A `record_type` record named `record_domain` (relative host record such as `_dnsauth`,
    /// occasionally fully qualified) with `record_value`.
    Dns {
        record_domain: String,
        record_type: String,
        record_value: String,
    },
    /// Serve `content` at `http://<domain><uri>`. `uri` comes from the network: check it.
    File {
        domain: String,
        uri: String,
        content: String,
    },
    /// ValidateType we do not know, or the details were missing.
    Unknown { validate_type: String },
}

/// DescribeCertificateState answer, by `Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateState {
    DomainVerify(Challenge),
    /// CA review in progress.
    Process,
    VerifyFail,
    Issued(IssuedCertificate),
    /// Cancelled back to pending (`payed`).
    Payed,
    /// `unknow` (sic).
    Unknow,
    /// A Type this client does not know; carried, never a panic.
    Other(String),
}

/// The certificate of an issued order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// PEM chain, leaf first.
    pub certificate: String,
    /// Present (non-empty) only when CAS made the key.
    pub private_key: Option<Secret>,
    pub cert_id: Option<String>,
}

/// ListUserCertificateOrder query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListOrders {
    pub keyword: Option<String>,
    pub status: Option<String>,
    /// CPACK (default), BUY, UPLOAD, CERT.
    pub order_type: Option<String>,
    /// From 1.
    pub current_page: u32,
    /// Default 50.
    pub show_size: u32,
}

/// One page of ListUserCertificateOrder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderPage {
    pub total_count: u64,
    pub current_page: u32,
    pub show_size: u32,
    pub orders: Vec<OrderSummary>,
}

/// One order in a list. Every field but the id may be absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderSummary {
    pub order_id: OrderId,
    pub instance_id: Option<String>,
    /// The first domain (a CPACK row), or every domain comma-separated.
    pub domain: Option<String>,
    /// How many domains the order is for (CPACK rows).
    pub domain_count: Option<i64>,
    /// PAYED, CHECKING, CHECKED_FAIL, ISSUED, WILLEXPIRED, EXPIRED, NOTACTIVATED, REVOKED.
    pub status: Option<String>,
    pub product_code: Option<String>,
    pub cert_type: Option<String>,
    pub domain_type: Option<String>,
    /// Milliseconds since the epoch.
    pub cert_start_time: Option<i64>,
    /// Milliseconds since the epoch.
    pub cert_end_time: Option<i64>,
    pub buy_date: Option<i64>,
    pub algorithm: Option<String>,
}

/// An Alidns record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsRecord {
    pub record_id: String,
    pub rr: String,
    pub record_type: String,
    pub value: String,
    pub ttl: Option<u64>,
    pub domain_name: Option<String>,
}

/// AddDomainRecord.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddRecord {
    /// The zone, e.g. `example.com`.
    pub domain_name: String,
    /// Host record relative to the zone; `@` for the apex.
    pub rr: String,
    pub record_type: String,
    pub value: String,
    pub ttl: Option<u64>,
}

/// A page of DescribeDomainRecords / DescribeSubDomainRecords.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsRecordPage {
    pub total_count: u64,
    pub records: Vec<DnsRecord>,
}
