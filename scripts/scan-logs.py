#!/usr/bin/env python3
"""Scans the logs the test suite kept for key material and test secrets; any hit fails, with
the hits listed (file:line and what was found, never the decoded bytes).

A key does not have to be printed as text to leak: sled's trace lines print records as lists of
decimal bytes, other code prints hex or base64. So each line is searched as it is and after
decoding every byte list (`[45, 45, 66, ...]`, `[0x2d, 0x2d, ...]`), hex run and base64 run in
it (and what those decode to, once more). What counts as a hit:
  - the text `PRIVATE KEY` (a PEM header);
  - the start of a DER private key: PKCS#8 (EC, RSA, Ed25519), SEC1 EC and PKCS#1 RSA;
  - a test secret: every test constant named like one (KEY_SECRET, SECRET, SK, ...) and every
    literal handed to a child as ALIBABA_CLOUD_ACCESS_KEY_SECRET in tests/;
  - each line of --needles FILE (a test adds what only it knows, e.g. the key it deployed).

Before scanning, it checks itself on planted hits (plain, decimal, hex, base64, DER) and on
planted look-alikes that must not hit (a certificate, a CSR, a public key).

usage: scan-logs.py DIR [--needles FILE]
The integration tests copy each daemon/simulator log and each captured CLI output into
<target>/test-logs/<test>-<pid>-<n>/ (tests/integration/support/world.rs: keep_logs,
keep_output); scripts/scan-logs.sh calls this on that directory.
"""
import argparse
import base64
import binascii
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Where a DER private key starts. PKCS#8: SEQUENCE, version INTEGER 0, then the algorithm's
# SEQUENCE opening directly with its OID (a CSR's `02 01 00 30` opens a Name instead).
DER_KEY = re.compile(
    rb"\x02\x01\x00\x30[\x00-\x7f]\x06(?:\x07\x2a\x86\x48\xce\x3d\x02\x01"  # PKCS#8 EC
    rb"|\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"  # PKCS#8 RSA
    rb"|\x03\x2b\x65\x70)"  # PKCS#8 Ed25519
    rb"|\x30(?:[\x00-\x7f]|\x81.)\x02\x01\x01\x04[\x20\x30\x42]"  # SEC1 EC (P-256/384/521)
    rb"|\x30\x82..\x02\x01\x00\x02\x82",  # PKCS#1 RSA: version 0, then the modulus
    re.DOTALL,
)
DEC_LIST = re.compile(rb"\d{1,3}(?:\s*,\s*\d{1,3}){7,}")
HEX_LIST = re.compile(rb"0x[0-9a-fA-F]{1,2}(?:\s*,\s*0x[0-9a-fA-F]{1,2}){7,}")
HEX_RUN = re.compile(rb"(?<![0-9a-fA-F])(?:[0-9a-fA-F]{2}){8,}(?![0-9a-fA-F])")
B64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{16,}={0,2}")


def test_secrets():
    """The test secrets, read from tests/ as scan-logs.sh always did."""
    const = re.compile(r'const [A-Z0-9_]*(?:SECRET|SK)[A-Z0-9_]*: &str = "([^"]+)"')
    env = re.compile(r'"ALIBABA_CLOUD_ACCESS_KEY_SECRET", "([^"]+)"')
    found = set()
    for root, _, files in os.walk(os.path.join(REPO, "tests")):
        for f in files:
            if not f.endswith((".rs", ".py")):
                continue
            with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
                text = fh.read()
            found.update(const.findall(text))
            found.update(env.findall(text))
    return sorted(found)


def decodings(data):
    """(how, bytes) for every byte list, hex run and base64 run in `data`."""
    for m in DEC_LIST.finditer(data):
        nums = [int(x) for x in re.split(rb"\s*,\s*", m.group())]
        if all(n < 256 for n in nums):
            yield "decimal bytes", bytes(nums)
    for m in HEX_LIST.finditer(data):
        yield "hex bytes", bytes(int(x, 16) for x in re.findall(rb"0x([0-9a-fA-F]{1,2})", m.group()))
    for m in HEX_RUN.finditer(data):
        yield "hex", binascii.unhexlify(m.group())
    for m in B64_RUN.finditer(data):
        run = m.group().rstrip(b"=")
        alphabet = b"-_" if (b"-" in run or b"_" in run) else b"+/"
        if alphabet == b"-_" and (b"+" in run or b"/" in run):
            continue
        run = run[: len(run) - len(run) % 4] if len(run) % 4 == 1 else run
        try:
            yield "base64", base64.b64decode(run + b"=" * (-len(run) % 4), altchars=alphabet)
        except (binascii.Error, ValueError):
            continue


class Scanner:
    def __init__(self, needles):
        # Longest first, so a report names the most specific needle.
        self.needles = sorted({n.encode() for n in needles if n}, key=len, reverse=True)

    def hits_in(self, data, how="as written", depth=0):
        """[(how, what)]: what `data` holds (a needle or 'DER private key') and how it was found
        (as written, or the chain of decodings that revealed it)."""
        hits = []
        for n in self.needles:
            if n in data:
                hits.append((how, n.decode(errors="replace")))
                break
        if DER_KEY.search(data):
            hits.append((how, "DER private key"))
        if depth < 2:
            for kind, raw in decodings(data):
                hits += self.hits_in(raw, kind if depth == 0 else f"{how} > {kind}", depth + 1)
        return hits

    def scan_file(self, path):
        out = []
        with open(path, "rb") as fh:
            for n, line in enumerate(fh, 1):
                for how, what in self.hits_in(line):
                    out.append(f"{path}:{n}: {what!r} ({how})")
        return out


def self_test(scanner, secret):
    """Planted hits must be found and planted look-alikes must not, or a silent scan means nothing."""
    # The first bytes of a PKCS#8 P-256 key, and what must stay clean: a certificate's, a CSR's
    # and a public key's first bytes.
    pkcs8 = bytes.fromhex("308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420") + bytes(range(32))
    sec1 = bytes.fromhex("307702010104") + bytes([0x20]) + bytes(range(32))
    pem = b"-----BEGIN PRIVATE KEY-----\n"
    must_hit = {
        "plain PEM header": b"x " + pem,
        "plain secret": b'{"error":"%s"}' % secret.encode(),
        "decimal byte list": b"sled: insert [" + b", ".join(str(b).encode() for b in b'{"pending_key":"' + pem) + b"]",
        "decimal byte list, no spaces": b"[" + b",".join(str(b).encode() for b in secret.encode() + b"........") + b"]",
        "hex byte list": b"[" + b", ".join(b"0x%02x" % b for b in pem) + b"]",
        "hex run": b"value=" + binascii.hexlify(pkcs8),
        "base64 secret": b"auth=" + base64.b64encode(b"user:" + secret.encode()),
        "base64 DER key": b'"key":"' + base64.b64encode(pkcs8) + b'"',
        "urlsafe base64 SEC1 key": base64.urlsafe_b64encode(sec1),
        "byte list of base64 PEM body": b"[" + b", ".join(str(b).encode() for b in base64.b64encode(pkcs8)) + b"]",
    }
    cert = bytes.fromhex("308201f23082019aa003020102021400")
    csr = bytes.fromhex("308201183081c0020100305e310b3009060355040613")
    spki = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d03010703420004") + bytes(range(64))
    must_not_hit = {
        "certificate (base64)": base64.b64encode(cert + bytes(range(40))),
        "CSR (decimal bytes)": b"[" + b", ".join(str(b).encode() for b in csr) + b"]",
        "public key (base64)": base64.b64encode(spki),
        "ordinary log line": b'{"level":"INFO","event":"cert.deployed","cert":"www","serial":"3a5f09d2c1b4e8f7"}',
    }
    failures = [f"missed: {k}" for k, v in must_hit.items() if not scanner.hits_in(v)]
    failures += [f"false hit: {k}" for k, v in must_not_hit.items() if scanner.hits_in(v)]
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--needles", help="a file with one more needle per line")
    a = ap.parse_args()

    secrets = test_secrets()
    if len(secrets) < 3:
        sys.exit(f"scan-logs: found only {len(secrets)} test secrets in tests/; the patterns are stale")
    needles = ["PRIVATE KEY"] + secrets
    if a.needles:
        with open(a.needles, encoding="utf-8") as fh:
            needles += [line.strip() for line in fh if line.strip()]
    scanner = Scanner(needles)

    failures = self_test(scanner, secrets[0])
    if failures:
        sys.exit("scan-logs: self-test failed: " + "; ".join(failures))

    files = sorted(
        os.path.join(root, f) for root, _, fs in os.walk(a.dir) for f in fs
    ) if os.path.isdir(a.dir) else []
    if not files:
        sys.exit(f"scan-logs: no kept logs in {a.dir}: run the tests first")
    size = sum(os.path.getsize(f) for f in files)
    hits = [h for f in files for h in scanner.scan_file(f)]
    what = f"{len(secrets)} secrets + 'PRIVATE KEY' + DER keys, plain and decoded"
    if hits:
        for h in hits[:50]:
            print(h[:300])
        sys.exit(f"scan-logs: FAILED: {len(hits)} hit(s) above in the test logs ({what}, {len(files)} files)")
    print(f"scan-logs: OK: {len(files)} files, {size} bytes, {what}: no hit")


if __name__ == "__main__":
    main()
