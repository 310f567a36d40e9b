#!/usr/bin/env python3
"""A loopback CAS/Alidns stand-in that checks every request's signature with Alibaba's own code.

v1 (HMAC-SHA1) is recomputed with aliyun-python-sdk-core's RPC composer, V3 (ACS3-HMAC-SHA256)
with alibabacloud-tea-openapi's Utils.get_authorization. Any disagreement is recorded in the
log file (and answered with SignatureDoesNotMatch, as Alibaba would). The log is rewritten after
every request: {"requests": [...], "mismatches": [...]}.

Usage: sign_server.py --ready-file F --log F [--key-id ID] [--secret S] [--mode ok|503]
"""
import argparse
import hashlib
import json
import os
import re
import threading
import time
import types
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aliyunsdkcore.auth.composer import rpc_signature_composer as rpc
from aliyunsdkcore.auth.algorithm import sha_hmac1
from alibabacloud_tea_openapi.utils import Utils

COMPOSE_V1 = getattr(rpc, "__compose_string_to_sign")
POP_ENCODE = getattr(rpc, "__pop_standard_urlencode")
V3_REQUIRED = ["host", "x-acs-action", "x-acs-version", "x-acs-date",
               "x-acs-signature-nonce", "x-acs-content-sha256"]
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

# Orders with ids above 2^53, some answered as strings as the seed does.
ORDERS = [
    {"OrderId": 9007199254740993 + i if i % 2 else str(9007199254740993 + i),
     "InstanceId": f"cas-{i}", "Domain": f"d{i}.example.com", "Status": "ISSUED",
     "ProductCode": "symantec-free-1-free", "CertEndTime": 1800000000000 + i,
     "SomethingNew": {"x": i}}
    for i in range(7)
]

lock = threading.Lock()
state = {"requests": [], "mismatches": [], "throttled": 0}
seen_nonces = set()


def save(path):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, ensure_ascii=False, indent=1)
    os.replace(tmp, path)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.answer(405, {"Code": "MethodNotAllowed", "Message": "POST only here"})

    def do_POST(self):
        cfg = self.server.cfg
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8") if n else ""
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        problems = []
        auth = self.headers.get("Authorization")
        if auth and auth.startswith("ACS3-HMAC-SHA256 "):
            sig_kind = "v3"
            params = dict(query)
            action = self.headers.get("x-acs-action", "")
            version = self.headers.get("x-acs-version", "")
            key_id, ok_sig, echo = self.check_v3(cfg, auth, url, params, body, problems)
            nonce = self.headers.get("x-acs-signature-nonce", "")
            ts = self.headers.get("x-acs-date", "")
        else:
            sig_kind = "v1"
            if self.headers.get("Content-Type", "").split(";")[0] != "application/x-www-form-urlencoded":
                problems.append("v1 body is not application/x-www-form-urlencoded")
            form = urllib.parse.parse_qsl(body, keep_blank_values=True)
            params = dict(query)
            params.update(form)
            action = params.get("Action", "")
            version = params.get("Version", "")
            key_id, ok_sig, echo = self.check_v1(cfg, params, body, problems)
            nonce = params.get("SignatureNonce", "")
            ts = params.get("Timestamp", "")
        with lock:
            if not nonce or nonce in seen_nonces:
                problems.append(f"nonce missing or reused: {nonce!r}")
            seen_nonces.add(nonce)
        if not TS_RE.match(ts):
            problems.append(f"timestamp format: {ts!r}")
        business = {k: v for k, v in params.items() if k not in (
            "Signature", "SignatureNonce", "Timestamp", "AccessKeyId", "SignatureMethod",
            "SignatureVersion", "Format", "Version", "Action", "SecurityToken")}
        rec = {"sig": sig_kind, "action": action, "version": version, "params": business,
               "key_id": key_id, "signature_ok": ok_sig}
        with lock:
            state["requests"].append(rec)
            # A wrong secret is expected in the wrong-secret test; only our own bugs count.
            if key_id == cfg.key_id and (problems or not ok_sig) and cfg.secret_matches_client:
                state["mismatches"].append({"action": action, "sig": sig_kind,
                                            "problems": problems, "signature_ok": ok_sig})
            save(cfg.log)
        if key_id != cfg.key_id:
            return self.answer(404, {"RequestId": "R-key", "HostId": "cas.aliyuncs.com",
                                     "Code": "InvalidAccessKeyId.NotFound",
                                     "Message": "Specified access key is not found."})
        if not ok_sig:
            return self.answer(400, {
                "RequestId": "R-sig", "HostId": "cas.aliyuncs.com",
                "Code": "SignatureDoesNotMatch",
                "Message": "Specified signature is not matched with our calculation. server string to sign is:" + echo,
                "Recommend": "https://api.aliyun.com/troubleshoot?q=SignatureDoesNotMatch"})
        if cfg.max_qps and throttled(action, cfg.max_qps):
            return self.answer(400, {"RequestId": "R-thr", "Code": "Throttling.User",
                                     "Message": "Request was denied due to user flow control."})
        if cfg.mode == "503":
            return self.answer(503, {"RequestId": "R-503", "Code": "ServiceUnavailable",
                                     "Message": "The request has failed due to a temporary failure of the server."})
        if business.get("ProductCode") == "not-bought":
            return self.answer(404, {"RequestId": "R-pkg", "Code": "NotFoundPackage",
                                     "Message": "The package is not found."})
        return self.answer(200, respond(action, business))

    def check_v1(self, cfg, params, body, problems):
        key_id = params.get("AccessKeyId", "")
        given = params.get("Signature", "")
        sign_params = {k: v for k, v in params.items() if k != "Signature"}
        sts = COMPOSE_V1("POST", sign_params)
        want = sha_hmac1.get_sign_string(sts, cfg.secret + "&")
        ok = given == want
        # What was sent must be exactly the canonical string that was signed.
        canonical = POP_ENCODE(urllib.parse.urlencode(sorted(sign_params.items())))
        expected_body = canonical + "&Signature=" + urllib.parse.quote(given, safe="~")
        if ok and body != expected_body:
            problems.append("v1 body is not the canonical query + Signature")
        for k, v in [("Format", "JSON"), ("SignatureMethod", "HMAC-SHA1"), ("SignatureVersion", "1.0")]:
            if params.get(k) != v:
                problems.append(f"{k}={params.get(k)!r}")
        return key_id, ok, sts

    def check_v3(self, cfg, auth, url, params, body, problems):
        m = re.match(r"^ACS3-HMAC-SHA256 Credential=([^,]*),SignedHeaders=([^,]*),Signature=([0-9a-f]*)$", auth)
        if not m:
            problems.append(f"bad Authorization {auth!r}")
            return "", False, ""
        key_id, signed, given = m.groups()
        names = signed.split(";")
        for h in V3_REQUIRED:
            if h not in names:
                problems.append(f"{h} not signed")
        if self.headers.get("x-acs-security-token") and "x-acs-security-token" not in names:
            problems.append("x-acs-security-token not signed")
        headers = {}
        for h in names:
            v = self.headers.get(h)
            if v is None:
                problems.append(f"signed header {h} not sent")
                v = ""
            headers[h] = v
        payload = hashlib.sha256(body.encode()).hexdigest()
        if headers.get("x-acs-content-sha256") != payload:
            problems.append("x-acs-content-sha256 is not the body's hash")
        req = types.SimpleNamespace(method=self.command, pathname=url.path or "/",
                                    query=params, headers=headers)
        want_auth = Utils.get_authorization(req, "ACS3-HMAC-SHA256", payload, key_id, cfg.secret)
        ok = want_auth == auth
        # The query on the wire must be the canonical query that was signed.
        canon = "&".join(f"{k}={urllib.parse.quote(params[k], safe='~')}" for k in sorted(params))
        if ok and url.query != canon:
            problems.append(f"V3 query {url.query!r} is not canonical {canon!r}")
        return key_id, ok, "ACS3-HMAC-SHA256\n<canonical request hash>"


calls = {}
LOG_PATH = [""]


def throttled(action, limit):
    """A sliding one-second window per action, as Alibaba's flow control behaves."""
    now = time.monotonic()
    with lock:
        recent = [t for t in calls.get(action, []) if now - t < 1.0]
        if len(recent) >= limit:
            calls[action] = recent
            with_throttle = True
        else:
            recent.append(now)
            calls[action] = recent
            with_throttle = False
        state.setdefault("throttled", 0)
        if with_throttle:
            state["throttled"] += 1
            save(LOG_PATH[0])
    return with_throttle


def respond(action, p):
    rid = {"RequestId": "R-ok"}
    if action == "DescribePackageState":
        used = 20 if p.get("ProductCode") == "exhausted-product" else 3
        return {**rid, "ProductCode": p.get("ProductCode", ""), "TotalCount": 20,
                "UsedCount": used, "IssuedCount": 2, "Unexpected": True}
    if action == "ListUserCertificateOrder":
        page = int(p.get("CurrentPage", "1"))
        size = int(p.get("ShowSize", "50"))
        rows = ORDERS[(page - 1) * size: page * size]
        return {**rid, "TotalCount": len(ORDERS), "CurrentPage": page, "ShowSize": size,
                "CertificateOrderList": rows}
    if action == "DescribeCertificateState":
        return {**rid, "Type": "domain_verify", "ValidateType": "DNS",
                "RecordDomain": "_dnsauth", "RecordType": "TXT", "RecordValue": "20261123abc"}
    if action in ("CreateCertificateForPackageRequest", "CreateCertificateRequest",
                  "CreateCertificateWithCsrRequest"):
        return {**rid, "OrderId": "9007199254740995"}
    if action == "RenewCertificateOrderForPackageRequest":
        return {**rid, "OrderId": 9007199254740997}
    if action == "AddDomainRecord":
        return {**rid, "RecordId": "98765432101234567"}
    if action in ("DescribeDomainRecords", "DescribeSubDomainRecords"):
        return {**rid, "TotalCount": 1, "PageNumber": 1, "PageSize": 20,
                "DomainRecords": {"Record": [{"RecordId": "98765432101234567", "RR": "_dnsauth",
                                              "Type": "TXT", "Value": "v", "TTL": 600,
                                              "DomainName": "example.com", "Status": "ENABLE"}]}}
    return rid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--key-id", default="testid")
    ap.add_argument("--secret", default="testsecret")
    ap.add_argument("--mode", choices=["ok", "503"], default="ok")
    ap.add_argument("--max-qps", type=int, default=0,
                    help="answer Throttling.User above this many calls per second per action")
    ap.add_argument("--client-secret-differs", action="store_true",
                    help="a wrong-secret test: signature failures are expected, not mismatches")
    cfg = ap.parse_args()
    cfg.secret_matches_client = not cfg.client_secret_differs
    LOG_PATH[0] = cfg.log
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.cfg = cfg
    save(cfg.log)
    tmp = cfg.ready_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"127.0.0.1:{srv.server_address[1]}\n")
    os.replace(tmp, cfg.ready_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
