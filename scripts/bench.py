#!/usr/bin/env python3
"""The cas-certd benchmark (issue 7): the real `cas-certd run` against `cas-certd simulate`,
N certificates from an empty store under a per-account QPS limit, next to a naive client
written with Alibaba's official Python SDK. Prints one table on stdout; progress on stderr.

usage: bench.py --bin <target-dir>/release/cas-certd [--sizes 100,1000,10000] [--naive 10]
                [--steady 60] [--smoke] [--keep] [--wrap 'heaptrack -o FILE']
       bench.py --write-config DIR [--sizes N]   # only the config for N (profiling), then exit

Everything is real: two processes talking HTTP on loopback, a webroot HTTP server (in this
script) that the simulator fetches FILE proofs from, files written to disk. The figures come
from the simulator's admin ledger (every call it answered, with its code), /proc/<pid> of the
daemon (VmHWM, utime+stime), its JSON log (cert.deployed events) and sd_notify (READY=1).

--smoke (CI): only checks gross regressions and exits non-zero on one: not every certificate
deployed, more than 5 calls per certificate, any throttling, peak RSS above 200 MB.
"""
import argparse
import http.server
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

KEY_ID = "bench-key-id"
KEY_SECRET = "bench-secret-Zq8xW2vY7kPm"
PRODUCT = "symantec-free-1-free"
CREATE = "CreateCertificateForPackageRequest"
DESCRIBE = "DescribeCertificateState"
ZONE = "bench.test"

# The account's limits the simulator enforces (the API allows 10-100 calls/s per action; the
# spec lists 100 for CreateCertificateForPackageRequest). 50/s for the two hot actions, 10/s
# for the rest. The daemon is configured 10 % below, as one should configure any client that
# shares nothing with the server's one-second windows.
SIM_QPS = {CREATE: 50, DESCRIBE: 50}
SIM_QPS_DEFAULT = 10
CLIENT_MARGIN = 0.9
# The simulated CA: proof seen -> review after 1 s -> issued 5 s later (plus its 1 s tick).
VALIDATION_DELAY = 1.0
REVIEW_DELAY = 5.0
TICKS = os.sysconf("SC_CLK_TCK")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def stop_process(proc):
    """SIGTERM, then SIGKILL if it has not exited within a minute."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- the webroot: what nginx would serve, one webroot per site (chosen by Host) -------------


class WebrootHandler(http.server.BaseHTTPRequestHandler):
    root = "/nonexistent"

    def do_GET(self):  # noqa: N802 (http.server's naming)
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        ok = (
            self.path.startswith("/.well-known/pki-validation/")
            and ".." not in self.path
            and host
            and "/" not in host
            and ".." not in host
        )
        body = None
        if ok:
            try:
                with open(os.path.join(self.root, host, self.path.lstrip("/")), "rb") as f:
                    body = f.read()
            except OSError:
                body = None
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class Webroot(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 256


def serve_webroot(root):
    handler = type("H", (WebrootHandler,), {"root": root})
    srv = Webroot(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


# --- /proc ----------------------------------------------------------------------------------


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def vm_hwm_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# --- the simulator --------------------------------------------------------------------------


class Sim:
    """`cas-certd simulate`. `web_port` is the webroot server for `*.ZONE`, or a list of them
    (the simulator's load-balancer mode: each FILE fetch goes to one at random); `extra`
    replaces the default CA delays and books' persistence (scripts/bench_fleet.py)."""

    def __init__(self, binary, work, web_port, extra=None):
        self.ready = os.path.join(work, "sim.ready")
        ports = web_port if isinstance(web_port, list) else [web_port]
        pool = ",".join(f"127.0.0.1:{p}" for p in ports)
        if extra is None:
            extra = ["--validation-delay", f"{VALIDATION_DELAY}s",
                     "--review-delay", f"{REVIEW_DELAY}s", "--persist-interval", "5s"]
        args = [binary, "simulate", "--listen", "127.0.0.1:0", "--admin",
                "--data-dir", os.path.join(work, "sim"), "--ready-file", self.ready,
                "--resolve", f"*.{ZONE}={pool}",
                "--quota", f"{PRODUCT}=10000000", "--qps-default", str(SIM_QPS_DEFAULT),
                *extra]
        for a, q in SIM_QPS.items():
            args += ["--qps", f"{a}={q}"]
        env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID,
                   ALIBABA_CLOUD_ACCESS_KEY_SECRET=KEY_SECRET)
        self.log = open(os.path.join(work, "sim.log"), "ab")
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        t0 = time.time()
        while True:
            try:
                with open(self.ready) as f:
                    s = f.read()
                if s.endswith("\n"):
                    self.addr = s.strip()
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() - t0 > 30:
                raise SystemExit(f"simulator did not start (see {work}/sim.log)")
            time.sleep(0.05)
        self.port = int(self.addr.rsplit(":", 1)[1])

    def ledger(self):
        with urllib.request.urlopen(f"http://{self.addr}/_sim/ledger", timeout=120) as r:
            return json.load(r)

    def calls(self):
        return self.ledger()["calls"]

    def stop(self):
        stop_process(self.proc)


def by_action(calls):
    out = {}
    for c in calls:
        out[c["action"]] = out.get(c["action"], 0) + 1
    return out


def throttled(calls):
    return sum(1 for c in calls if c["code"].startswith("Throttling"))


# --- the daemon -----------------------------------------------------------------------------


def write_config(work, sim_addr, n):
    webroots = os.path.join(work, "webroot")
    lines = [
        f'state_dir = "{work}/state"',
        f'output_dir = "{work}/live"',
        'log_format = "json"',
        "[cas]",
        f'endpoint = "http://{sim_addr}"',
        f"qps = {SIM_QPS_DEFAULT * CLIENT_MARGIN}",
        "[cas.qps_per_action]",
    ]
    lines += [f"{a} = {q * CLIENT_MARGIN}" for a, q in SIM_QPS.items()]
    if ARGS.concurrency:
        # Top-level keys must come before the first table.
        lines.insert(3, f"concurrency = {ARGS.concurrency}")
    lines += [
        "[alidns]",
        f'endpoint = "http://{sim_addr}"',
        "[defaults]",
        f'product_code = "{PRODUCT}"',
        'key = "ecdsa-p256"',
        'contact = { name = "Ops", phone = "13900000000", email = "ops@example.test" }',
        'reload = ["true"]',
    ]
    for i in range(n):
        host = f"c{i}.{ZONE}"
        os.makedirs(os.path.join(webroots, host), exist_ok=True)
        lines.append(
            f'[[certificate]]\nname = "c{i}"\ndomains = ["{host}"]\n'
            f'validation = {{ method = "file", webroot = "{webroots}/{host}" }}'
        )
    path = os.path.join(work, "config.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def unit_environment():
    """The `Environment=` settings of the shipped unit (systemd/cas-certd.service): the daemon
    is measured as it runs there."""
    unit = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "systemd",
                        "cas-certd.service")
    env = {}
    with open(unit) as f:
        for line in f:
            if line.startswith("Environment="):
                k, _, v = line.strip()[len("Environment="):].partition("=")
                env[k] = v
    return env


class Daemon:
    """`cas-certd run` with NOTIFY_SOCKET pointing at our datagram socket (READY=1 is the
    signal systemd itself waits for), the shipped unit's environment, and its JSON log in a
    file we follow."""

    def __init__(self, binary, config, work, tag):
        self.notify_path = os.path.join(work, f"notify-{tag}.sock")
        if os.path.exists(self.notify_path):
            os.unlink(self.notify_path)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.log_path = os.path.join(work, f"daemon-{tag}.log")
        self.log = open(self.log_path, "wb")
        env = dict(os.environ, **unit_environment(), ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID,
                   ALIBABA_CLOUD_ACCESS_KEY_SECRET=KEY_SECRET,
                   NOTIFY_SOCKET=self.notify_path, RUST_LOG="info")
        self.t0 = time.time()
        wrap = ARGS.wrap.split() if ARGS.wrap else []
        self.proc = subprocess.Popen(wrap + [binary, "--config", config, "run"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        self.pid = self.proc.pid
        self.ready_at = None
        self.ready = threading.Event()
        threading.Thread(target=self._drain_notify, daemon=True).start()
        self.reader = open(self.log_path, "rb")
        self.buf = b""
        self.deployed = {}  # name -> wall time first seen

    def _drain_notify(self):
        # Like systemd, read every datagram: a full queue would block the daemon's sends.
        while True:
            try:
                msg = self.notify.recv(4096).decode(errors="replace")
            except OSError:
                return
            if not msg:
                return
            if "READY=1" in msg.split("\n") and not self.ready.is_set():
                self.ready_at = time.time()
                self.ready.set()

    def wait_ready(self, timeout=120):
        end = time.time() + timeout
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None:
                raise SystemExit(f"daemon exited early (see {self.log_path})")
            if time.time() > end:
                raise SystemExit(f"daemon not ready after {timeout}s (see {self.log_path})")
        return self.ready_at - self.t0

    def poll_log(self):
        """Reads new log lines; counts cert.deployed events (a name deployed twice counts once
        per phase: the caller resets `deployed`)."""
        chunk = self.reader.read()
        if not chunk:
            return
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        now = time.time()
        for line in lines:
            if b"cert.deployed" not in line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            fields = ev.get("fields", ev)
            if fields.get("event") == "cert.deployed":
                name = fields.get("cert") or ev.get("cert")
                self.deployed.setdefault(name, now)

    def wait_deployed(self, n, timeout):
        end = time.time() + timeout
        last_report = 0
        while time.time() < end:
            self.poll_log()
            if len(self.deployed) >= n:
                return max(self.deployed.values())
            if self.proc.poll() is not None:
                raise SystemExit(f"daemon exited (see {self.log_path})")
            if time.time() - last_report > 15:
                last_report = time.time()
                log(f"    {len(self.deployed)}/{n} deployed")
            time.sleep(0.1)
        raise SystemExit(f"only {len(self.deployed)}/{n} deployed after {timeout}s "
                         f"(see {self.log_path})")

    def cpu(self):
        return cpu_secs(self.pid)

    def hwm(self):
        return vm_hwm_mb(self.pid)

    def stop(self):
        stop_process(self.proc)
        self.notify.close()
        self.reader.close()
        self.log.close()


def control(sock_path, request):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    s.sendall((json.dumps(request) + "\n").encode())
    data = b""
    while not data.endswith(b"\n"):
        part = s.recv(65536)
        if not part:
            break
        data += part
    s.close()
    return json.loads(data)


# --- one size ---------------------------------------------------------------------------------


def floor_secs(n):
    """Minimum calls / the account's QPS for the busiest action, plus the CA's own time."""
    need = {CREATE: n, DESCRIBE: 2 * n}
    return max(c / SIM_QPS.get(a, SIM_QPS_DEFAULT) for a, c in need.items()) + (
        VALIDATION_DELAY + REVIEW_DELAY)


def per_cert(calls, n):
    acts = by_action(calls)
    return {a: c / n for a, c in sorted(acts.items())}, len(calls) / n


def run_size(binary, n, steady_secs, keep):
    work = tempfile.mkdtemp(prefix=f"cas-certd-bench-{n}-")
    log(f"== N={n} in {work}")
    web = serve_webroot(os.path.join(work, "webroot"))
    sim = Sim(binary, work, web.server_address[1])
    r = {"n": n, "floor": floor_secs(n)}
    try:
        config = write_config(work, sim.addr, n)
        mark = len(sim.calls())

        # 1. Issue N from an empty store.
        d = Daemon(binary, config, work, "issue")
        r["ready_empty"] = d.wait_ready()
        done = d.wait_deployed(n, timeout=max(600, 20 * r["floor"]))
        r["time"] = done - d.t0
        calls = sim.calls()
        issue_calls = calls[mark:]
        r["by_action"], r["calls_per_cert"] = per_cert(issue_calls, n)
        r["throttled"] = throttled(issue_calls)
        r["cpu"] = d.cpu()
        log(f"    all {n} deployed in {r['time']:.1f}s (floor {r['floor']:.1f}s), "
            f"{r['calls_per_cert']:.2f} calls/cert")

        # 2. Steady state: all issued, nothing due. The reload hook runs once the batch is
        # over; give it a moment, then count calls and CPU over the window.
        time.sleep(2)
        mark, cpu0, t0 = len(sim.calls()), d.cpu(), time.time()
        time.sleep(steady_secs)
        window = time.time() - t0
        r["steady_calls_h"] = (len(sim.calls()) - mark) * 3600 / window
        r["steady_cpu_h"] = (d.cpu() - cpu0) * 3600 / window
        r["rss"] = d.hwm()
        d.stop()

        # 3. Start-up with N records in the store: spawn -> READY=1.
        d = Daemon(binary, config, work, "restart")
        r["startup"] = d.wait_ready()

        # 4. Renewal storm: every certificate due at once (an operator's `cas-certd renew` of
        # every name through the control socket, which is what `renew NAME` sends).
        sock = os.path.join(work, "state", "control.sock")
        time.sleep(1)
        mark = len(sim.calls())
        d.deployed = {}
        d.poll_log()
        d.deployed = {}
        t_storm = time.time()
        for i in range(n):
            # force = `renew --yes`: the certificates are not due, so it must be confirmed.
            resp = control(sock, {"cmd": "renew", "name": f"c{i}", "force": True})
            if resp.get("result") != "ok":
                raise SystemExit(f"renew c{i}: {resp}")
        r["storm_trigger"] = time.time() - t_storm
        done = d.wait_deployed(n, timeout=max(600, 20 * r["floor"]))
        r["storm_time"] = done - t_storm
        storm_calls = sim.calls()[mark:]
        r["storm_by_action"], r["storm_calls_per_cert"] = per_cert(storm_calls, n)
        r["storm_throttled"] = throttled(storm_calls)
        r["storm_rss"] = d.hwm()
        r["storm_cpu"] = d.cpu()
        d.stop()
        log(f"    storm: {n} renewed in {r['storm_time']:.1f}s, "
            f"{r['storm_calls_per_cert']:.2f} calls/cert, {r['storm_throttled']} throttled")
    finally:
        sim.stop()
        web.shutdown()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return r


# --- the naive client -------------------------------------------------------------------------

NAIVE = r'''
import os, sys, time
from alibabacloud_cas20200407 import models as m
from alibabacloud_cas20200407.client import Client
from alibabacloud_tea_openapi import utils_models as om

addr, out, webroot, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cas = Client(om.Config(access_key_id=os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"],
                       access_key_secret=os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
                       endpoint=addr, protocol="http"))
for i in range(n):
    host = f"naive{i}.bench.test"
    oid = cas.create_certificate_for_package_request(m.CreateCertificateForPackageRequestRequest(
        product_code="symantec-free-1-free", domain=host, validate_type="FILE",
        username="Ops", phone="13900000000", email="ops@example.test")).body.order_id
    while True:
        s = cas.describe_certificate_state(m.DescribeCertificateStateRequest(order_id=oid)).body
        if s.type == "domain_verify":
            d = os.path.join(webroot, host, ".well-known", "pki-validation")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "fileauth.txt"), "w") as f:
                f.write(s.content)
        elif s.type == "certificate":
            d = os.path.join(out, host)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "fullchain.pem"), "w") as f:
                f.write(s.certificate)
            fd = os.open(os.path.join(d, "privkey.pem"), os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(s.private_key)
            break
        elif s.type != "process":
            sys.exit(f"{host}: order {oid} is {s.type}")
        time.sleep(5)
'''


def run_naive(n):
    python = os.environ.get("CAS_CERTD_PYTHON") or sys.executable
    work = tempfile.mkdtemp(prefix="cas-certd-bench-naive-")
    log(f"== naive SDK client, N={n} in {work}")
    web = serve_webroot(os.path.join(work, "webroot"))
    sim = Sim(ARGS.bin, work, web.server_address[1])
    script = os.path.join(work, "naive.py")
    with open(script, "w") as f:
        f.write(NAIVE)
    try:
        mark = len(sim.calls())
        env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID,
                   ALIBABA_CLOUD_ACCESS_KEY_SECRET=KEY_SECRET)
        t0 = time.time()
        p = subprocess.Popen([python, script, sim.addr, os.path.join(work, "live"),
                              os.path.join(work, "webroot"), str(n)], env=env)
        hwm, cpu = 0.0, 0.0
        while p.poll() is None:
            try:
                hwm, cpu = vm_hwm_mb(p.pid), cpu_secs(p.pid)
            except OSError:
                pass
            time.sleep(0.2)
        elapsed = time.time() - t0
        if p.returncode != 0:
            raise SystemExit(f"naive client failed ({p.returncode})")
        calls = sim.calls()[mark:]
        by, cpc = per_cert(calls, n)
        return {"n": n, "time": elapsed, "per_cert_time": elapsed / n, "by_action": by,
                "calls_per_cert": cpc, "throttled": throttled(calls), "rss": hwm, "cpu": cpu}
    finally:
        sim.stop()
        web.shutdown()
        shutil.rmtree(work, ignore_errors=True)


# --- the table ----------------------------------------------------------------------------------


def table(results, naive):
    cols = [f"N={r['n']}" for r in results]
    rows = []

    def row(label, vals, naive_val=""):
        rows.append([label] + vals + ([naive_val] if naive else []))

    row("time to all deployed (s)", [f"{r['time']:.1f}" for r in results],
        f"{naive['per_cert_time']:.1f}/cert" if naive else "")
    row("  floor: calls/QPS + CA delay (s)", [f"{r['floor']:.1f}" for r in results])
    row("  ratio to floor (target <=1.2)", [f"{r['time'] / r['floor']:.2f}" for r in results])
    if naive:
        row("  naive time for N, extrapolated (s)",
            [f"{naive['per_cert_time'] * r['n']:.0f}" for r in results])
        row("  speed-up over naive",
            [f"{naive['per_cert_time'] * r['n'] / r['time']:.0f}x" for r in results])
    row("CAS calls per cert (target <=3.3)", [f"{r['calls_per_cert']:.2f}" for r in results],
        f"{naive['calls_per_cert']:.2f}" if naive else "")
    actions = sorted({a for r in results for a in r["by_action"]}
                     | (set(naive["by_action"]) if naive else set()))
    for a in actions:
        row(f"  {a}", [f"{r['by_action'].get(a, 0):.2f}" for r in results],
            f"{naive['by_action'].get(a, 0):.2f}" if naive else "")
    if naive:
        row("  naive calls / ours", [f"{naive['calls_per_cert'] / r['calls_per_cert']:.2f}x"
                                      for r in results])
    row("throttling errors (target 0)", [str(r["throttled"]) for r in results],
        str(naive["throttled"]) if naive else "")
    row("peak RSS, MB (target <=50 at 10k)", [f"{r['rss']:.1f}" for r in results],
        f"{naive['rss']:.1f}" if naive else "")
    row("CPU seconds (issue phase)", [f"{r['cpu']:.1f}" for r in results],
        f"{naive['cpu']:.2f} ({naive['n']} certs)" if naive else "")
    row("  CPU ms per cert", [f"{1000 * r['cpu'] / r['n']:.1f}" for r in results],
        f"{1000 * naive['cpu'] / naive['n']:.0f}" if naive else "")
    row("start-up, empty store (s)", [f"{r['ready_empty']:.3f}" for r in results])
    row("start-up, N records (s, target <=1)", [f"{r['startup']:.3f}" for r in results])
    row("steady state: calls/hour (target 0)", [f"{r['steady_calls_h']:.0f}" for r in results])
    row("steady state: CPU s/hour", [f"{r['steady_cpu_h']:.2f}" for r in results])
    row("storm: N due at once, all renewed (s)", [f"{r['storm_time']:.1f}" for r in results])
    row("  storm ratio to floor", [f"{r['storm_time'] / r['floor']:.2f}" for r in results])
    row("  storm calls per cert", [f"{r['storm_calls_per_cert']:.2f}" for r in results])
    row("  storm throttling errors", [str(r["storm_throttled"]) for r in results])
    row("  storm peak RSS, MB", [f"{r['storm_rss']:.1f}" for r in results])
    head = ["", *cols] + ([f"naive SDK (N={naive['n']})"] if naive else [])
    widths = [max(len(str(x[i])) for x in [head] + rows) for i in range(len(head))]
    out = []
    fmt = lambda cells: "| " + " | ".join(  # noqa: E731
        (str(c).ljust(w) if i == 0 else str(c).rjust(w)) for i, (c, w) in enumerate(zip(cells, widths))
    ) + " |"
    out.append(fmt(head))
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    out += [fmt(x) for x in rows]
    return "\n".join(out)


def smoke_check(results):
    bad = []
    for r in results:
        n = r["n"]
        if r["calls_per_cert"] > 5:
            bad.append(f"N={n}: {r['calls_per_cert']:.2f} calls per certificate (> 5)")
        if r["storm_calls_per_cert"] > 5:
            bad.append(f"N={n}: storm {r['storm_calls_per_cert']:.2f} calls per certificate (> 5)")
        if r["throttled"] or r["storm_throttled"]:
            bad.append(f"N={n}: throttled {r['throttled']} + {r['storm_throttled']} times")
        if max(r["rss"], r["storm_rss"]) > 200:
            bad.append(f"N={n}: peak RSS {max(r['rss'], r['storm_rss']):.0f} MB (> 200)")
        if r["steady_calls_h"] > 0:
            bad.append(f"N={n}: {r['steady_calls_h']:.0f} API calls/hour with nothing due")
    return bad


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin")
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--naive", type=int, default=10, help="certificates for the naive client (0: skip)")
    ap.add_argument("--steady", type=float, default=60, help="steady-state window, seconds")
    ap.add_argument("--smoke", action="store_true", help="CI: fail only on gross regressions")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    ap.add_argument("--concurrency", type=int, default=0,
                    help="the daemon's `concurrency` (default: the daemon's own default, 8)")
    ap.add_argument("--wrap", default="",
                    help="a command the daemon runs under (a profiler; its RSS is then not "
                         "the daemon's)")
    ap.add_argument("--write-config", metavar="DIR",
                    help="only write DIR/config.toml for the first size (simulator at "
                         "127.0.0.1:9), for profiling `check --offline`, and exit")
    ARGS = ap.parse_args()
    sizes = [int(x) for x in ARGS.sizes.split(",") if x]
    if ARGS.write_config:
        os.makedirs(ARGS.write_config, exist_ok=True)
        print(write_config(os.path.abspath(ARGS.write_config), "127.0.0.1:9", sizes[0]))
        return
    t0 = time.time()
    naive = run_naive(ARGS.naive) if ARGS.naive > 0 else None
    results = []
    for n in sizes:
        results.append(run_size(ARGS.bin, n, ARGS.steady, ARGS.keep))
        # The table so far, in case a later size does not finish.
        log(table(results, naive))
    print(f"sim limits: {', '.join(f'{a} {q}/s' for a, q in SIM_QPS.items())}, others "
          f"{SIM_QPS_DEFAULT}/s; daemon configured at {int(CLIENT_MARGIN * 100)} % of them; "
          f"CA: validation {VALIDATION_DELAY:g}s + review {REVIEW_DELAY:g}s; FILE validation; "
          f"steady state measured over {ARGS.steady:g}s and scaled to an hour")
    print(table(results, naive))
    log(f"bench took {time.time() - t0:.0f}s")
    if ARGS.smoke:
        bad = smoke_check(results)
        for b in bad:
            print(f"SMOKE FAIL: {b}", file=sys.stderr)
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
