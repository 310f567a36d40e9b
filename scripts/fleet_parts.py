"""The pieces of scripts/bench_fleet.py that are not the benchmark itself: a 3-member etcd
cluster on loopback and its request counters, one web host (webroot server, configuration,
daemon runs, the set `live` names), the key-match check and the reader thread that uses it."""
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from datetime import datetime, timezone

import bench  # the single-host benchmark's simulator, daemon and webroot pieces
from bench import PRODUCT, ZONE

PREFIX = "/bench"
DEADLINE = 300


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, body=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(url, data=data, timeout=timeout) as r:
        return r.read()


def wait_until(what, cond, timeout=DEADLINE, step=0.1):
    end = time.time() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.time() > end:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def quantile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# --- etcd: a 3-member cluster on loopback ------------------------------------------------------


class Etcd:
    def __init__(self, work, n=3):
        binary = os.environ.get("CAS_CERTD_ETCD") or shutil.which("etcd")
        if not binary:
            raise SystemExit("etcd not found on PATH (Debian: etcd-server), or set CAS_CERTD_ETCD")
        peers = [(f"m{i}", free_port(), free_port()) for i in range(n)]
        initial = ",".join(f"{m}=http://127.0.0.1:{pp}" for m, _, pp in peers)
        self.ports = [cp for _, cp, _ in peers]
        self.procs = []
        for m, cp, pp in peers:
            out = open(os.path.join(work, f"etcd-{m}.log"), "wb")
            self.procs.append(subprocess.Popen(
                [binary, "--name", m, "--data-dir", os.path.join(work, f"etcd-{m}"),
                 "--listen-client-urls", f"http://127.0.0.1:{cp}",
                 "--advertise-client-urls", f"http://127.0.0.1:{cp}",
                 "--listen-peer-urls", f"http://127.0.0.1:{pp}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{pp}",
                 "--initial-cluster", initial, "--initial-cluster-state", "new",
                 "--initial-cluster-token", f"bench-{work}",
                 "--logger", "zap", "--log-outputs", "stderr"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out))
        for p in self.ports:
            wait_until(f"etcd member on port {p} healthy", lambda p=p: self._healthy(p), 60)

    def _healthy(self, port):
        try:
            return b'"health":"true"' in http(f"http://127.0.0.1:{port}/health", timeout=2)
        except OSError:
            return False

    def endpoints(self):
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def get(self, key):
        """One key's value through etcd's JSON gateway (a Range: not inside a measured window)."""
        for p in self.ports:
            try:
                r = json.loads(http(f"http://127.0.0.1:{p}/v3/kv/range",
                                    {"key": base64.b64encode(key.encode()).decode()}))
            except OSError:
                continue
            kvs = r.get("kvs") or []
            return base64.b64decode(kvs[0]["value"]).decode() if kvs else None
        return None

    def counters(self):
        """gRPC calls handled by method (unary) and messages received by method (streams:
        Watch, LeaseKeepAlive), summed over the members: each request reaches one member."""
        out = {}
        for p in self.ports:
            text = http(f"http://127.0.0.1:{p}/metrics").decode()
            for line in text.splitlines():
                if line.startswith("grpc_server_handled_total{"):
                    kind = "calls"
                elif line.startswith("grpc_server_msg_received_total{"):
                    kind = "msgs"
                else:
                    continue
                name, value = line.rsplit(" ", 1)
                method = name.split('grpc_method="', 1)[1].split('"', 1)[0]
                out[(kind, method)] = out.get((kind, method), 0.0) + float(value)
        return out

    def stop(self):
        for p in self.procs:
            bench.stop_process(p)


def requests_between(a, b):
    """etcd requests between two `counters()`: unary calls by method, plus the messages
    clients sent on the streams (a keep-alive or a watch request is one message)."""
    out = {}
    for (kind, method), v in b.items():
        d = v - a.get((kind, method), 0.0)
        if d <= 0:
            continue
        if kind == "calls" and method not in ("Watch", "LeaseKeepAlive"):
            out[method] = out.get(method, 0) + d
        elif kind == "msgs" and method in ("Watch", "LeaseKeepAlive"):
            out[method + " msgs"] = out.get(method + " msgs", 0) + d
    return out


# --- the hosts ------------------------------------------------------------------------------


def cert_names(n):
    return [f"c{i}" for i in range(n)]


def is_file(i):
    return i % 2 == 0  # half FILE (c0, c2, ...), half Alidns


class Host:
    """One web host: its webroot server (behind the simulator's load balancer), its state and
    output directories, its daemon (restarted after each kill, one log per run)."""

    def __init__(self, fleet, node):
        self.fleet, self.node = fleet, node
        self.dir = os.path.join(fleet.work, node)
        self.webroot = os.path.join(self.dir, "webroot")
        self.out = os.path.join(self.dir, "live")
        self.state = os.path.join(self.dir, "state")
        os.makedirs(self.webroot, exist_ok=True)
        self.web = bench.serve_webroot(self.webroot)
        self.runs = 0
        self.d = None
        self.peak = 0.0
        self.logs = []

    def write_config(self, sim_addr, etcd, n, ttl):
        lines = [
            f'state_dir = "{self.state}"',
            f'output_dir = "{self.out}"',
            'log_format = "json"',
            'poll_min = "1s"',
            'poll_max = "2s"',
            "[cas]",
            f'endpoint = "http://{sim_addr}"',
            # How long a successor waits out an interrupted create: this budget (5 s) rather
            # than the default 100 s, as in tests/integration/fleet_daemon.rs.
            'connect_timeout = "1s"',
            'read_timeout = "2s"',
            'max_retry_time = "2s"',
            "[alidns]",
            f'endpoint = "http://{sim_addr}"',
            "[defaults]",
            f'product_code = "{PRODUCT}"',
            'key = "ecdsa-p256"',
            'contact = { name = "Ops", phone = "13900000000", email = "ops@example.test" }',
            'reload = ["true"]',
            'renew_before = "1/3"',
        ]
        for i, c in enumerate(cert_names(n)):
            host = f"{c}.{ZONE}"
            if is_file(i):
                os.makedirs(os.path.join(self.webroot, host), exist_ok=True)
                v = f'{{ method = "file", webroot = "{self.webroot}/{host}" }}'
            else:
                v = '{ method = "alidns" }'
            lines.append(f'[[certificate]]\nname = "{c}"\ndomains = ["{host}"]\nvalidation = {v}')
        eps = ", ".join(f'"{e}"' for e in etcd.endpoints())
        lines.append(f'[fleet]\netcd = [{eps}]\nprefix = "{PREFIX}"\nnode = "{self.node}"\n'
                     f'key_file = "{self.fleet.key_file}"\nlease_ttl = "{ttl}s"')
        self.config = os.path.join(self.dir, "config.toml")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        self.runs += 1
        self.d = bench.Daemon(self.fleet.binary, self.config, self.fleet.work, f"{self.node}-{self.runs}")
        self.logs.append(self.d.log_path)
        return self.d

    def hwm(self):
        try:
            self.peak = max(self.peak, self.d.hwm())
        except OSError:
            pass
        return self.peak

    def kill(self):
        """SIGKILL, as a host dying would."""
        self.hwm()
        self.d.proc.send_signal(signal.SIGKILL)
        self.d.proc.wait()
        self.d.notify.close()
        self.d.reader.close()
        self.d.log.close()

    def stop(self):
        self.hwm()
        self.d.stop()

    def sock(self):
        return os.path.join(self.state, "control.sock")

    def live_order(self, cert):
        """The order id of the set `live` names here (its manifest), or None."""
        try:
            with open(os.path.join(self.out, cert, "live", "manifest.json")) as f:
                return json.load(f)["order_id"]
        except (OSError, ValueError, KeyError):
            return None

    def read_pair(self, cert, files=("cert.pem", "privkey.pem")):
        """The files of the set `live` names, read through one fd of that directory (the
        link resolved once: a reader that opened `live/cert.pem` and then `live/privkey.pem`
        by path could straddle a swap)."""
        fd = os.open(os.path.join(self.out, cert, "live"), os.O_RDONLY | os.O_DIRECTORY)
        try:
            out = []
            for name in files:
                f = os.open(name, os.O_RDONLY, dir_fd=fd)
                with os.fdopen(f, "rb") as fh:
                    out.append(fh.read())
            return out
        finally:
            os.close(fd)

    def events(self):
        """Every JSON log event of every run: (unix time, event, fields)."""
        out = []
        for path in self.logs:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            for line in data.split(b"\n"):
                if b'"event"' not in line:
                    continue
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                out.append((parse_ts(ev.get("timestamp", "")), ev.get("event"), ev))
        return out


def parse_ts(s):
    """tracing's RFC 3339 timestamp (UTC, up to 9 fraction digits) as unix seconds."""
    if not s:
        return float("nan")
    s = s.rstrip("Z")
    base, _, frac = s.partition(".")
    t = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return t + (float("0." + frac) if frac else 0.0)


# --- key match ---------------------------------------------------------------------------------


def _spki_python(pem_cert, pem_key):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization as ser
    fmt = (ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)
    a = x509.load_pem_x509_certificate(pem_cert).public_key().public_bytes(*fmt)
    b = ser.load_pem_private_key(pem_key, None).public_key().public_bytes(*fmt)
    return a == b


def _spki_openssl(pem_cert, pem_key):
    a = subprocess.run(["openssl", "x509", "-noout", "-pubkey"], input=pem_cert,
                       capture_output=True).stdout
    b = subprocess.run(["openssl", "pkey", "-pubout"], input=pem_key, capture_output=True).stdout
    return bool(a) and a == b


try:
    import cryptography  # noqa: F401
    key_matches_uncached = _spki_python
except ImportError:
    key_matches_uncached = _spki_openssl

_MATCH = {}
_MATCH_LOCK = threading.Lock()


def key_matches(pem_cert, pem_key):
    k = hashlib.sha256(pem_cert + b"\0" + pem_key).digest()
    with _MATCH_LOCK:
        if k in _MATCH:
            return _MATCH[k]
    ok = key_matches_uncached(pem_cert, pem_key)
    with _MATCH_LOCK:
        _MATCH[k] = ok
    return ok


class Reader(threading.Thread):
    """Reads every certificate's cert.pem + privkey.pem through `live` on one host, again and
    again, and counts pairs whose key is not the certificate's."""

    def __init__(self, host, certs):
        super().__init__(daemon=True)
        self.host, self.certs = host, certs
        self.pairs = self.mismatches = self.absent = 0
        self.stopped = threading.Event()
        self.first_mismatch = None

    def run(self):
        while not self.stopped.is_set():
            for c in self.certs:
                try:
                    cert, key = self.host.read_pair(c)
                except OSError:
                    self.absent += 1  # not deployed yet (or an old version pruned under us)
                    continue
                self.pairs += 1
                if not key_matches(cert, key):
                    self.mismatches += 1
                    self.first_mismatch = self.first_mismatch or (c, time.time())
            self.stopped.wait(0.02)
