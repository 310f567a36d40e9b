//! The CAS + Alidns HTTP client: signing, transport, retries, rate limiting.
//!
//! INTERFACE PINNED FOR PARALLEL WORK — bodies are filled in by the client work (issue 2).
#![allow(unused_variables)]

use super::error::ApiError;
use super::model::*;

/// A configured API client, cheap to clone (shares its rate limiter and HTTP pool).
#[derive(Clone, Debug)]
pub struct Client {}

impl Client {
    pub async fn describe_package_state(
        &self,
        product_code: &str,
    ) -> Result<PackageState, ApiError> {
        todo!("issue 2")
    }
    /// Never retried on an ambiguous failure: returns `ErrorClass::OutcomeUnknown` instead.
    pub async fn create_certificate_for_package(
        &self,
        req: &CreateOrder,
    ) -> Result<OrderId, ApiError> {
        todo!("issue 2")
    }
    pub async fn describe_certificate_state(
        &self,
        order_id: OrderId,
    ) -> Result<CertificateState, ApiError> {
        todo!("issue 2")
    }
    pub async fn cancel_order(&self, order_id: OrderId) -> Result<(), ApiError> {
        todo!("issue 2")
    }
    pub async fn delete_certificate(&self, order_id: OrderId) -> Result<(), ApiError> {
        todo!("issue 2")
    }
    /// Revoke (CancelCertificateForPackageRequest).
    pub async fn revoke_certificate(&self, order_id: OrderId) -> Result<(), ApiError> {
        todo!("issue 2")
    }
    /// RenewCertificateOrderForPackageRequest: a new order. Never retried blindly, like a create.
    pub async fn renew_certificate_order(
        &self,
        order_id: OrderId,
        csr: Option<&str>,
    ) -> Result<OrderId, ApiError> {
        todo!("issue 2")
    }
    pub async fn list_user_certificate_order(&self, q: &ListOrders) -> Result<OrderPage, ApiError> {
        todo!("issue 2")
    }
    pub async fn add_domain_record(&self, r: &AddRecord) -> Result<String, ApiError> {
        todo!("issue 2")
    }
    pub async fn delete_domain_record(&self, record_id: &str) -> Result<(), ApiError> {
        todo!("issue 2")
    }
    pub async fn describe_domain_records(
        &self,
        domain_name: &str,
        rr_keyword: Option<&str>,
        page: u32,
        page_size: u32,
    ) -> Result<DnsRecordPage, ApiError> {
        todo!("issue 2")
    }
    pub async fn describe_sub_domain_records(
        &self,
        sub_domain: &str,
    ) -> Result<DnsRecordPage, ApiError> {
        todo!("issue 2")
    }
}
