"""Drives `cas-certd simulate` through a whole certificate lifecycle with Alibaba's official
SDKs: aliyun-python-sdk-core (CommonRequest, signature v1) and alibabacloud-cas20200407 +
alibabacloud-alidns20150109 (V3). Exits non-zero on the first answer the SDKs or we reject.

usage: sim_lifecycle.py PORT ROOT_PEM WEBROOT ZONE
AccessKey from ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET.
"""
import json
import os
import subprocess
import sys
import tempfile

from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest
from alibabacloud_alidns20150109 import models as dns_models
from alibabacloud_alidns20150109.client import Client as DnsClient
from alibabacloud_cas20200407 import models as cas_models
from alibabacloud_cas20200407.client import Client as CasClient
from alibabacloud_tea_openapi import utils_models as open_api_models
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PORT, ROOT_PEM, WEBROOT, ZONE = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
AK = os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"]
SK = os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"]
ENDPOINT = f"127.0.0.1:{PORT}"
CAS_V, DNS_V = "2020-04-07", "2015-01-09"
FREE, PAID = "symantec-free-1-free", "geotrust-dv-1-starter"


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def v1(action, version=CAS_V, method="GET", query=None, body=None, secret=SK):
    client = AcsClient(AK, secret, "cn-hangzhou")
    r = CommonRequest()
    r.set_domain(ENDPOINT)
    r.set_protocol_type("http")
    r.set_version(version)
    r.set_action_name(action)
    r.set_method(method)
    r.set_accept_format("json")
    for k, v in (query or {}).items():
        r.add_query_param(k, v)
    for k, v in (body or {}).items():
        r.add_body_params(k, v)
    return json.loads(client.do_action_with_exception(r))


def v1_error(action, **kw):
    try:
        v1(action, **kw)
    except ServerException as e:
        return e.get_error_code()
    return None


def v3_config(secret=SK):
    return open_api_models.Config(
        access_key_id=AK, access_key_secret=secret, endpoint=ENDPOINT, protocol="http"
    )


CAS = CasClient(v3_config())
DNS = DnsClient(v3_config())


LAST_V3_MESSAGE = [""]


def v3_error(fn):
    try:
        fn()
    except Exception as e:  # Tea raises its own exception types carrying .code
        LAST_V3_MESSAGE[0] = str(getattr(e, "message", e))
        return getattr(e, "code", repr(e))
    return None


def pkg(product):
    b = CAS.describe_package_state(cas_models.DescribePackageStateRequest(product_code=product)).body
    return b.total_count, b.used_count, b.issued_count


def describe(order_id):
    return CAS.describe_certificate_state(
        cas_models.DescribeCertificateStateRequest(order_id=order_id)
    ).body


def leaf_of(chain):
    return x509.load_pem_x509_certificate(chain.encode())


def openssl_verify(chain):
    leaf = chain[: chain.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")] + "\n"
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as f:
        f.write(leaf)
    out = subprocess.run(["openssl", "verify", "-CAfile", ROOT_PEM, f.name], capture_output=True, text=True)
    os.unlink(f.name)
    return out.returncode == 0 and out.stdout.strip().endswith("OK")


def sans(cert):
    return sorted(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))


# 1. Package state, both signatures.
total, used0, issued0 = pkg(FREE)
check(total == 1000 and used0 == 0 and issued0 == 0, f"V3 DescribePackageState free: {total}/{used0}/{issued0}")
r = v1("DescribePackageState", query={"ProductCode": PAID})
check(r["TotalCount"] == 10 and r["UsedCount"] == 0, f"v1 GET DescribePackageState paid, --quota honoured: {r}")

# 2. Wrong secret: SignatureDoesNotMatch for v1 and V3.
check(v1_error("DescribePackageState", query={"ProductCode": FREE}, secret="wrong") == "SignatureDoesNotMatch", "v1 wrong secret rejected")
bad = CasClient(v3_config("wrong"))
code = v3_error(lambda: bad.describe_package_state(cas_models.DescribePackageStateRequest(product_code=FREE)))
check(code == "SignatureDoesNotMatch", f"V3 wrong secret rejected ({code})")
check("ACS3-HMAC-SHA256" in LAST_V3_MESSAGE[0], "the V3 SDK really signed with ACS3-HMAC-SHA256 (server string to sign echoed)")

# 3. Create without CSR (V3), DNS proof through Alidns AddDomainRecord, issuance with PrivateKey.
www = f"www.{ZONE}"
oid_a = CAS.create_certificate_for_package_request(
    cas_models.CreateCertificateForPackageRequestRequest(product_code=FREE, domain=www, validate_type="DNS", username="Tom", phone="1", email="a@b.c")
).body.order_id
check(int(oid_a) > 2**53, f"OrderId above 2^53 survives the SDK: {oid_a}")
s = describe(oid_a)
check(s.type == "domain_verify" and s.record_type == "TXT" and s.record_domain == "_dnsauth.www", f"DNS challenge {s.record_domain} {s.record_type}")
check(describe(oid_a).type == "domain_verify", "no proof, still domain_verify")
rec = DNS.add_domain_record(dns_models.AddDomainRecordRequest(domain_name=ZONE, rr=s.record_domain, type="TXT", value=s.record_value)).body.record_id
subs = DNS.describe_sub_domain_records(dns_models.DescribeSubDomainRecordsRequest(sub_domain=f"_dnsauth.www.{ZONE}")).body
check(subs.total_count == 1 and subs.domain_records.record[0].value == s.record_value, "DescribeSubDomainRecords sees the TXT")
recs = DNS.describe_domain_records(dns_models.DescribeDomainRecordsRequest(domain_name=ZONE, type_key_word="TXT")).body
check(recs.total_count == 1, "DescribeDomainRecords lists it")
code = v3_error(lambda: DNS.add_domain_record(dns_models.AddDomainRecordRequest(domain_name="not-mine.test", rr="x", type="TXT", value="v")))
check(code == "InvalidDomainName.NoExist", f"unknown zone refused ({code})")
s = describe(oid_a)
check(s.type == "certificate", f"DNS-validated order issued ({s.type})")
check("BEGIN" in (s.private_key or ""), "PrivateKey returned when CAS made the key")
leaf = leaf_of(s.certificate)
key = serialization.load_pem_private_key(s.private_key.encode(), None)
check(leaf.public_key().public_numbers() == key.public_key().public_numbers(), "certificate carries CAS's key")
check(sans(leaf) == [www], f"SANs = order domains {sans(leaf)}")
check(s.certificate.count("BEGIN CERTIFICATE") == 2, "chain: leaf + root")
check(openssl_verify(s.certificate), "openssl verify -CAfile root.pem (DNS order)")
DNS.delete_domain_record(dns_models.DeleteDomainRecordRequest(record_id=rec))
check(DNS.describe_domain_records(dns_models.DescribeDomainRecordsRequest(domain_name=ZONE)).body.total_count == 0, "DeleteDomainRecord")

# 4. Create with a CSR (v1 POST, CSR in the form body), FILE proof through the served webroot.
api = f"api.{ZONE}"
csr_key = ec.generate_private_key(ec.SECP256R1())
csr = (
    x509.CertificateSigningRequestBuilder()
    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, api)]))
    .add_extension(x509.SubjectAlternativeName([x509.DNSName(api)]), critical=False)
    .sign(csr_key, hashes.SHA256())
    .public_bytes(serialization.Encoding.PEM)
    .decode()
)
r = v1("CreateCertificateForPackageRequest", method="POST", query={"ProductCode": PAID, "ValidateType": "FILE"}, body={"Csr": csr})
oid_b = r["OrderId"]
check(isinstance(oid_b, int) and oid_b > 2**53, f"v1 create with CSR: OrderId {oid_b} (JSON number)")
s = v1("DescribeCertificateState", query={"OrderId": str(oid_b)})
check(s["Type"] == "domain_verify" and s["Domain"] == api and s["Uri"] == "/.well-known/pki-validation/fileauth.txt", f"FILE challenge {s.get('Uri')}")
os.makedirs(os.path.join(WEBROOT, ".well-known/pki-validation"), exist_ok=True)
with open(os.path.join(WEBROOT, ".well-known/pki-validation/fileauth.txt"), "w") as f:
    f.write(s["Content"] + "\n")
s = v1("DescribeCertificateState", method="POST", body={"OrderId": str(oid_b)})
check(s["Type"] == "certificate", f"FILE-validated order issued ({s['Type']})")
check(s["PrivateKey"] == "", "no PrivateKey when a CSR was sent")
leaf = leaf_of(s["Certificate"])
check(leaf.public_key().public_numbers() == csr_key.public_key().public_numbers(), "certificate carries the CSR's key")
check(openssl_verify(s["Certificate"]), "openssl verify -CAfile root.pem (CSR order)")
check(v1_error("CreateCertificateForPackageRequest", query={"ProductCode": FREE, "ValidateType": "FILE", "Domain": f"*.{ZONE}"}) == "InvalidParameter", "FILE refused for wildcards")
check(v1_error("CreateCertificateForPackageRequest", query={"ProductCode": FREE, "Domain": f"{api},*.{ZONE}"}) == "InvalidParameter", "mixed wildcard/plain refused")

# 5. CreateCertificateWithCsrRequest answers OrderId as a string (as the seed shows).
r = v1("CreateCertificateWithCsrRequest", method="POST", query={"Username": "Tom", "Phone": "1", "Email": "a@b.c", "ValidateType": "DNS", "ProductCode": FREE}, body={"Csr": csr})
check(isinstance(r["OrderId"], str) and int(r["OrderId"]) > 2**53, f"CreateCertificateWithCsrRequest OrderId string {r['OrderId']!r}")
oid_c = int(r["OrderId"])

# 6. Renew: the paid order yields a new order; the free one is refused.
new = CAS.renew_certificate_order_for_package_request(cas_models.RenewCertificateOrderForPackageRequestRequest(order_id=oid_b)).body.order_id
check(int(new) != oid_b and describe(int(new)).type in ("domain_verify", "certificate"), f"renew paid order -> {new}")
code = v3_error(lambda: CAS.renew_certificate_order_for_package_request(cas_models.RenewCertificateOrderForPackageRequestRequest(order_id=oid_a)))
check(code == "OrderStateError", f"renew free order refused ({code})")

# 7. Cancel + delete refunds quota.
_, used_before, _ = pkg(FREE)
check(used_before == 2, f"free quota used by 2 creates ({used_before})")
r = v1("CreateCertificateRequest", query={"Domain": f"old.{ZONE}", "Username": "Tom", "Phone": "1", "Email": "a@b.c", "ValidateType": "DNS", "ProductCode": FREE})
oid_d = r["OrderId"]
check(pkg(FREE)[1] == 3, "create consumed quota")
check(v1_error("DeleteCertificateRequest", query={"OrderId": str(oid_d)}) == "DeleteFail", "delete before cancel refused")
CAS.cancel_order_request(cas_models.CancelOrderRequestRequest(order_id=oid_d))
check(describe(oid_d).type == "payed", "cancelled order is payed")
CAS.delete_certificate_request(cas_models.DeleteCertificateRequestRequest(order_id=oid_d))
check(pkg(FREE)[1] == 2, "delete refunded quota")
check(v3_error(lambda: describe(oid_d)) == "NotFoundOrder", "deleted order is gone")

# 8. Revoke within 30 days refunds.
_, used, issued = pkg(FREE)
CAS.cancel_certificate_for_package_request(cas_models.CancelCertificateForPackageRequestRequest(order_id=oid_a))
_, used2, issued2 = pkg(FREE)
check((used2, issued2) == (used - 1, issued - 1), f"revoke refunded ({used},{issued}) -> ({used2},{issued2})")
check(v3_error(lambda: CAS.cancel_certificate_for_package_request(cas_models.CancelCertificateForPackageRequestRequest(order_id=oid_a))) == "OrderStateError", "revoking twice refused")

# 9. List: keyword, status, paging.
lst = CAS.list_user_certificate_order(cas_models.ListUserCertificateOrderRequest(keyword=api)).body
check(lst.total_count == 3 and all(o.domain == api for o in lst.certificate_order_list), f"keyword {api}: {lst.total_count}")
issued_list = CAS.list_user_certificate_order(cas_models.ListUserCertificateOrderRequest(status="ISSUED")).body
check([int(o.order_id) for o in issued_list.certificate_order_list] == [oid_b], "status ISSUED lists the CSR order")
o = issued_list.certificate_order_list[0]
check(o.cert_end_time > o.cert_start_time > 0 and o.product_code == PAID and o.instance_id, "list fields")
check(CAS.list_user_certificate_order(cas_models.ListUserCertificateOrderRequest(status="REVOKED")).body.certificate_order_list[0].order_id == oid_a, "status REVOKED")
p1 = CAS.list_user_certificate_order(cas_models.ListUserCertificateOrderRequest(show_size=1, current_page=2)).body
check(len(p1.certificate_order_list) == 1 and p1.total_count == 4 and p1.current_page == 2, f"paging {p1.total_count}")

# 10. Exhausted quota (--quota geotrust-ov-1-personal=1), unknown order.
OV = "geotrust-ov-1-personal"
v1("CreateCertificateForPackageRequest", query={"ProductCode": OV, "Domain": f"ov.{ZONE}"})
check(v1_error("CreateCertificateForPackageRequest", query={"ProductCode": OV, "Domain": f"ov2.{ZONE}"}) == "NotRemainCount", "quota exhausted: NotRemainCount")
check(v1_error("DescribeCertificateState", query={"OrderId": "1"}) == "NotFoundOrder", "unknown order")
print(json.dumps({"a": oid_a, "b": oid_b, "c": oid_c, "d": oid_d}))
print("lifecycle OK")
