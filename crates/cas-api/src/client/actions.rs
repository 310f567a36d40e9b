//! The typed actions: one method per CAS or Alidns action, each saying whether it may be
//! repeated after an ambiguous failure ([`Repeat`]).

use super::{p, Api, Client, Repeat};
use crate::error::ApiError;
use crate::model::*;
use crate::responses::*;

impl Client {
    pub async fn describe_package_state(
        &self,
        product_code: &str,
    ) -> Result<PackageState, ApiError> {
        let raw: PackageStateRaw = self
            .call_as(
                Api::Cas,
                "DescribePackageState",
                vec![p("ProductCode", product_code)],
                Repeat::Safe,
            )
            .await?;
        Ok(raw.into_model(product_code))
    }

    /// Never retried on an ambiguous failure: returns `ErrorClass::OutcomeUnknown` instead.
    pub async fn create_certificate_for_package(
        &self,
        req: &CreateOrder,
    ) -> Result<OrderId, ApiError> {
        let mut params = vec![
            p("ProductCode", req.product_code.as_str()),
            p("ValidateType", req.validate_type.as_str()),
            p("Username", req.contact.name.as_str()),
            p("Phone", req.contact.phone.as_str()),
            p("Email", req.contact.email.as_str()),
        ];
        if !req.domains.is_empty() {
            params.push(p("Domain", req.domains.join(",")));
        }
        if let Some(csr) = &req.csr {
            params.push(p("Csr", csr.as_str()));
        }
        if let Some(c) = &req.company_name {
            params.push(p("CompanyName", c.as_str()));
        }
        for (i, (k, v)) in req.tags.iter().enumerate() {
            params.push(p(&format!("Tags.{}.Key", i + 1), k.as_str()));
            params.push(p(&format!("Tags.{}.Value", i + 1), v.as_str()));
        }
        params.retain(|(_, v)| !v.is_empty());
        let raw: OrderIdRaw = self
            .call_as(
                Api::Cas,
                "CreateCertificateForPackageRequest",
                params,
                Repeat::NotBlindly,
            )
            .await?;
        Ok(raw.order_id)
    }

    /// CreateCertificateRequest (DV only; CAS makes the key). Never retried blindly.
    pub async fn create_certificate_request(
        &self,
        product_code: &str,
        domain: &str,
        contact: &Contact,
        validate_type: ValidateType,
    ) -> Result<OrderId, ApiError> {
        let params = dv_params(product_code, contact, validate_type, ("Domain", domain));
        let raw: OrderIdRaw = self
            .call_as(
                Api::Cas,
                "CreateCertificateRequest",
                params,
                Repeat::NotBlindly,
            )
            .await?;
        Ok(raw.order_id)
    }

    /// CreateCertificateWithCsrRequest (DV only). Never retried blindly.
    pub async fn create_certificate_with_csr_request(
        &self,
        product_code: &str,
        csr: &str,
        contact: &Contact,
        validate_type: ValidateType,
    ) -> Result<OrderId, ApiError> {
        let params = dv_params(product_code, contact, validate_type, ("Csr", csr));
        let raw: OrderIdRaw = self
            .call_as(
                Api::Cas,
                "CreateCertificateWithCsrRequest",
                params,
                Repeat::NotBlindly,
            )
            .await?;
        Ok(raw.order_id)
    }

    pub async fn describe_certificate_state(
        &self,
        order_id: OrderId,
    ) -> Result<CertificateState, ApiError> {
        let raw: CertificateStateRaw = self
            .call_as(
                Api::Cas,
                "DescribeCertificateState",
                vec![p("OrderId", order_id.to_string())],
                Repeat::Safe,
            )
            .await?;
        Ok(raw.into_model())
    }

    pub async fn cancel_order(&self, order_id: OrderId) -> Result<(), ApiError> {
        self.unit("CancelOrderRequest", order_id).await
    }

    pub async fn delete_certificate(&self, order_id: OrderId) -> Result<(), ApiError> {
        self.unit("DeleteCertificateRequest", order_id).await
    }

    /// Revoke (CancelCertificateForPackageRequest).
    pub async fn revoke_certificate(&self, order_id: OrderId) -> Result<(), ApiError> {
        self.unit("CancelCertificateForPackageRequest", order_id)
            .await
    }

    async fn unit(&self, action: &str, order_id: OrderId) -> Result<(), ApiError> {
        self.call(
            Api::Cas,
            action,
            vec![p("OrderId", order_id.to_string())],
            Repeat::Safe,
        )
        .await
        .map(|_| ())
    }

    /// RenewCertificateOrderForPackageRequest: a new order. Never retried blindly, like a create.
    pub async fn renew_certificate_order(
        &self,
        order_id: OrderId,
        csr: Option<&str>,
    ) -> Result<OrderId, ApiError> {
        let mut params = vec![p("OrderId", order_id.to_string())];
        if let Some(c) = csr.filter(|c| !c.is_empty()) {
            params.push(p("Csr", c));
        }
        let raw: OrderIdRaw = self
            .call_as(
                Api::Cas,
                "RenewCertificateOrderForPackageRequest",
                params,
                Repeat::NotBlindly,
            )
            .await?;
        Ok(raw.order_id)
    }

    pub async fn list_user_certificate_order(&self, q: &ListOrders) -> Result<OrderPage, ApiError> {
        let mut params = Vec::new();
        if let Some(k) = q.keyword.as_deref().filter(|k| !k.is_empty()) {
            params.push(p("Keyword", k));
        }
        if let Some(s) = q.status.as_deref().filter(|s| !s.is_empty()) {
            params.push(p("Status", s));
        }
        if let Some(t) = q.order_type.as_deref().filter(|t| !t.is_empty()) {
            params.push(p("OrderType", t));
        }
        let page = q.current_page.max(1);
        let size = if q.show_size == 0 { 50 } else { q.show_size };
        params.push(p("CurrentPage", page.to_string()));
        params.push(p("ShowSize", size.to_string()));
        let raw: OrderPageRaw = self
            .call_as(Api::Cas, "ListUserCertificateOrder", params, Repeat::Safe)
            .await?;
        let q = ListOrders {
            current_page: page,
            show_size: size,
            ..q.clone()
        };
        Ok(raw.into_model(&q))
    }

    pub async fn add_domain_record(&self, r: &AddRecord) -> Result<String, ApiError> {
        let mut params = vec![
            p("DomainName", r.domain_name.as_str()),
            p("RR", r.rr.as_str()),
            p("Type", r.record_type.as_str()),
            p("Value", r.value.as_str()),
        ];
        if let Some(ttl) = r.ttl {
            params.push(p("TTL", ttl.to_string()));
        }
        // A repeated add of the same record fails with DomainRecordDuplicate, which the
        // caller treats as present, so repeating is harmless.
        let raw: RecordIdRaw = self
            .call_as(Api::Alidns, "AddDomainRecord", params, Repeat::Safe)
            .await?;
        raw.record_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ApiError::Decode {
                action: "AddDomainRecord".into(),
                detail: "no RecordId in the answer".into(),
            })
    }

    pub async fn delete_domain_record(&self, record_id: &str) -> Result<(), ApiError> {
        self.call(
            Api::Alidns,
            "DeleteDomainRecord",
            vec![p("RecordId", record_id)],
            Repeat::Safe,
        )
        .await
        .map(|_| ())
    }

    pub async fn describe_domain_records(
        &self,
        domain_name: &str,
        rr_keyword: Option<&str>,
        page: u32,
        page_size: u32,
    ) -> Result<DnsRecordPage, ApiError> {
        let mut params = vec![
            p("DomainName", domain_name),
            p("PageNumber", page.max(1).to_string()),
            p("PageSize", page_size.clamp(1, 500).to_string()),
        ];
        if let Some(k) = rr_keyword.filter(|k| !k.is_empty()) {
            params.push(p("RRKeyWord", k));
        }
        let raw: DnsRecordPageRaw = self
            .call_as(Api::Alidns, "DescribeDomainRecords", params, Repeat::Safe)
            .await?;
        Ok(raw.into_model())
    }

    pub async fn describe_sub_domain_records(
        &self,
        sub_domain: &str,
    ) -> Result<DnsRecordPage, ApiError> {
        let raw: DnsRecordPageRaw = self
            .call_as(
                Api::Alidns,
                "DescribeSubDomainRecords",
                vec![p("SubDomain", sub_domain)],
                Repeat::Safe,
            )
            .await?;
        Ok(raw.into_model())
    }
}

/// Parameters of the two DV-only creates.
fn dv_params(
    product_code: &str,
    contact: &Contact,
    validate_type: ValidateType,
    subject: (&str, &str),
) -> Vec<(String, String)> {
    let mut v = vec![
        p(subject.0, subject.1),
        p("Username", contact.name.as_str()),
        p("Phone", contact.phone.as_str()),
        p("Email", contact.email.as_str()),
        p("ValidateType", validate_type.as_str()),
    ];
    if !product_code.is_empty() {
        v.push(p("ProductCode", product_code));
    }
    v
}
