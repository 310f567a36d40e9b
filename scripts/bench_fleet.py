#!/usr/bin/env python3
"""The fleet benchmark and kill soak (issue 12): 3 real `cas-certd run` daemons (fleet mode),
a real 3-member etcd cluster on loopback, the simulator in load-balancer mode over three
webroot HTTP servers (one per host, so a FILE proof must be on every host). Prints a table on
stdout; progress on stderr. Exits non-zero when a correctness check fails (never on timing).

usage: bench_fleet.py --bin <target-dir>/debug/cas-certd [--n 20] [--kills N] [--smoke]
                      [--lease-ttl 10] [--soak-lease-ttl 2] [--lifetime 120]
                      [--soak-lifetime 90] [--keep] [--seed S] [--no-bench | --no-soak]

The binary must be built with the `fleet` feature (`cargo build --features fleet`).
Renewals come from short-lived certificates (the simulator's --cert-lifetime; the daemon
renews with a third of the validity left), so every certificate is renewed again and again
on its owner's own schedule, with no driver talking to whichever host owns it now.

1. The benchmark (fresh fleet, N certificates, half FILE, half Alidns, lease TTL --lease-ttl):
   - orders per certificate (the simulator's ledger: CreateCertificateForPackageRequest / N);
   - issue -> all hosts: per certificate, from the owner's `cert.issued` (and `cert.deployed`)
     log timestamp to the last host's deploy of that order (`fleet.set_deployed`, or the
     owner's own `cert.deployed`): median, p90, max; for the issuance and the first renewal;
   - every host serves byte-identical sets whose key matches the certificate;
   - etcd requests per certificate, issuance and first renewal (etcd's /metrics summed over
     the members, before/after), raw and less the idle rate measured in between;
   - failover: the owner of a FILE certificate is SIGKILLed while CAS validates its second
     renewal; time from the kill to the successor's `fleet.claimed` and to the order deployed
     on both survivors; still one order; the killed host, restarted, catches up;
   - peak RSS (VmHWM) of each daemon; every paid order deployed (the audit below).
2. The kill soak (a fresh fleet, lease TTL --soak-lease-ttl, certificates renewed again and
   again): at random instants (0.2-3 s apart) the owner of a certificate whose latest order
   is not yet live on every host (issuance or renewal in flight) is SIGKILLed and started again
   at once (one kill per certificate and order, before its order and after: otherwise the
   same few certificates are killed over and over and the kills pile up on one host), until --kills kills (default $CAS_CERTD_FLEET_KILLS or 5). A reader thread per host
   reads cert.pem + privkey.pem of every certificate through its `live` link (one directory
   fd, so one resolution of the link per pair) in a loop and checks that the key is the
   certificate's. Checked once every certificate's latest order is live on every host: 0
   duplicate orders (every paid order was deployed somewhere, two orders of a certificate at
   least half a renewal interval apart, the quota spent = the paid orders), every host
   serves the same set, 0 mismatched pairs, no private key and no fleet key in any log.

--smoke (CI, scripts/test.sh's fleet step): N=6, 3 kills, lease TTL 2 s everywhere, lifetime
75 s (renewals 30 s after each issue); about 2 minutes.
"""
import argparse
import base64
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the single-host benchmark's simulator, daemon and webroot pieces)
from bench import CREATE, ZONE, log  # noqa: E402
from fleet_parts import (  # noqa: E402  (etcd, the hosts, the reader)
    DEADLINE, PREFIX, Etcd, Host, Reader, cert_names, key_matches, quantile,
    requests_between, wait_until)

NODES = ["web-1", "web-2", "web-3"]
# The simulated CA: the proof seen -> review after VALIDATION s -> issued REVIEW s later. Long
# enough a validation for the failover kill to land inside it.
VALIDATION = 3.0
REVIEW = 1.0
UNTHROTTLED = ["DescribeDomainRecords", "AddDomainRecord", "DeleteDomainRecord",
               "DescribePackageState", "ListUserCertificateOrder", "CancelOrderRequest",
               "DeleteCertificateRequest"]
# Orders that spent nothing: cancelled back to the package, or deleted (refunded).
UNPAID = ("payed", "deleted")
# The simulator's not_before is this far before the issue (a clock-skew margin).
BACKDATE = 60


# --- a fleet ----------------------------------------------------------------------------------


class Fleet:
    def __init__(self, tag, n, ttl, lifetime, validation=VALIDATION):
        self.work = tempfile.mkdtemp(prefix=f"cas-certd-fleet-{tag}-")
        self.n, self.ttl = n, ttl
        self.binary = ARGS.bin
        self.certs = cert_names(n)
        log(f"== {tag}: {n} certificates, lease TTL {ttl}s, in {self.work}")
        self.key_file = os.path.join(self.work, "fleet.key")
        self.fleet_key = base64.b64encode(os.urandom(32)).decode()
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.fleet_key + "\n")
        self.etcd = Etcd(self.work)
        self.hosts = [Host(self, node) for node in NODES]
        # Short-lived certificates: each is renewed 2/3 into its life, again and again. Books
        # written after every change (the default): the benchmark reads them for the quota
        # spent.
        extra = ["--zone", ZONE, "--validation-delay", f"{validation}s",
                 "--review-delay", f"{REVIEW}s", "--seed", str(ARGS.seed),
                 "--cert-lifetime", f"{lifetime}s"]
        # Alidns actions unthrottled: bench.Sim's default of 10/s for them is not what this
        # measures (and a throttled zone lookup is taken for a missing zone: docs/BENCHMARKS.md).
        for a in UNTHROTTLED:
            extra += ["--qps", f"{a}=1000"]
        self.sim = bench.Sim(ARGS.bin, self.work, [h.web.server_address[1] for h in self.hosts],
                             extra)
        self.lifetime = lifetime
        for h in self.hosts:
            h.write_config(self.sim.addr, self.etcd, n, ttl)

    def start(self):
        for h in self.hosts:
            h.start()
        for h in self.hosts:
            h.d.wait_ready()

    def host(self, node):
        return next(h for h in self.hosts if h.node == node)

    def orders(self):
        """cert -> sorted ids of its paid orders (the ledger; one domain per certificate)."""
        out = {c: [] for c in self.certs}
        for o in self.sim.ledger()["orders"]:
            if o["state"] in UNPAID:
                continue
            for d in o["domains"]:
                c = d.split(".", 1)[0]
                if c in out and d == f"{c}.{ZONE}":
                    out[c].append(o["order_id"])
        return {c: sorted(v) for c, v in out.items()}

    def owner(self, cert):
        return self.etcd.get(f"{PREFIX}/owner/{cert}")

    def live_at_least(self, cert, order, hosts=None):
        """Whether every host (of `hosts`) has `order` or a later one live for `cert`."""
        return all((h.live_order(cert) or 0) >= order for h in (hosts or self.hosts))

    def wait_wave(self, k, what, timeout=DEADLINE):
        """Waits until each certificate has k paid orders and its k-th is live on every host
        (or a later one); returns {cert: k-th order}."""
        def done():
            now = self.orders()
            if any(len(now[c]) < k for c in self.certs):
                return None
            want = {c: now[c][k - 1] for c in self.certs}
            return want if all(self.live_at_least(c, o) for c, o in want.items()) else None
        return wait_until(what, done, timeout, 0.2)

    def books(self):
        """The simulator's books (state.json, rewritten after every change)."""
        for _ in range(50):
            try:
                with open(os.path.join(self.work, "sim", "state.json")) as f:
                    return json.load(f)
            except (OSError, ValueError):
                time.sleep(0.1)
        raise SystemExit("cannot read the simulator's books")

    def spent(self):
        return sum(u["used"] for u in self.books()["usage"].values())

    def deployed_orders(self):
        """cert -> every order id some host deployed (its logs, its live manifest)."""
        out = {c: set() for c in self.certs}
        for h in self.hosts:
            for _, e, f in h.events():
                if e in ("cert.deployed", "fleet.set_deployed") and f.get("cert") in out:
                    out[f["cert"]].add(int(f["order_id"]))
            for c in self.certs:
                o = h.live_order(c)
                if o:
                    out[c].add(o)
        return out

    def renew_every(self):
        """Seconds from an issue to the renewal: the simulator backdates not_before by
        BACKDATE, and the daemon renews with a third of the validity left."""
        return (2 * self.lifetime - BACKDATE) / 3

    def audit_orders(self, upto=None):
        """0 duplicate orders: every paid order (up to `upto[cert]`, the last one seen live
        everywhere; later ones may be in flight) was deployed somewhere, two paid orders of
        one certificate were created at least half a renewal interval apart, and the quota
        spent is the number of paid orders. Returns (failures, paid orders)."""
        bad = []
        paid = self.orders()
        if upto:
            paid = {c: [o for o in v if o <= upto[c]] for c, v in paid.items()}
        want = {o for v in paid.values() for o in v}
        for _ in range(50):  # the books may trail the ledger by a write
            books = self.books()
            created = {o["id"]: o["created_ms"] for o in books["orders"]}
            if want <= set(created):
                break
            time.sleep(0.1)
        deployed = self.deployed_orders()
        for c in self.certs:
            never = [o for o in paid[c] if o not in deployed[c]]
            if never:
                bad.append(f"{c}: paid orders never deployed: {never} (paid {paid[c]})")
            gaps = [(created[b] - created[a]) / 1000 for a, b in zip(paid[c], paid[c][1:])]
            if any(g < self.renew_every() / 2 for g in gaps):
                bad.append(f"{c}: orders {paid[c]} created {gaps} s apart "
                           f"(renewal due every {self.renew_every():g} s)")
        total = sum(len(v) for v in paid.values())
        spent = sum(u["used"] for u in books["usage"].values())
        in_flight = sum(1 for o in books["orders"] if o["state"] not in UNPAID) - total
        if spent != total + in_flight:
            bad.append(f"quota spent {spent} for {total} paid orders (+ {in_flight} in flight)")
        return bad, total

    def events(self):
        """node -> [(time, event, fields)]."""
        return {h.node: h.events() for h in self.hosts}

    def check_identical(self):
        """Every host serves the same four files per certificate, with the key that matches
        the certificate. Returns the failures."""
        bad = []
        files = ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem")
        for c in self.certs:
            sets = []
            for h in self.hosts:
                try:
                    sets.append(h.read_pair(c, files))
                except OSError as e:
                    bad.append(f"{h.node}/{c}: {e}")
            if len(sets) != len(self.hosts):
                continue
            if any(s != sets[0] for s in sets[1:]):
                bad.append(f"{c}: the hosts' sets differ")
            if not key_matches(sets[0][0], sets[0][3]):
                bad.append(f"{c}: the key is not the certificate's")
        return bad

    def scan_logs(self):
        """No private key and no fleet key in any daemon log."""
        bad = []
        for h in self.hosts:
            for path in h.logs:
                with open(path, "rb") as f:
                    data = f.read()
                if b"PRIVATE KEY" in data or self.fleet_key.encode() in data:
                    bad.append(f"{path}: holds a private key or the fleet key")
        return bad

    def close(self):
        for h in self.hosts:
            try:
                h.stop()
            except Exception:  # noqa: BLE001 (already dead: nothing to stop)
                pass
            h.web.shutdown()
        self.sim.stop()
        self.etcd.stop()
        if not ARGS.keep:
            shutil.rmtree(self.work, ignore_errors=True)


def latencies(fleet, want, events):
    """Per certificate (order `want[cert]`): (from cert.issued, from the owner's cert.deployed)
    to the last host's deploy of that order."""
    out_issued, out_deployed = [], []
    for c, order in want.items():
        o = str(order)
        issued = deployed_owner = None
        last = {}
        for node, evs in events.items():
            for t, e, f in evs:
                if f.get("cert") != c or str(f.get("order_id")) != o:
                    continue
                if e == "cert.issued":
                    issued = t
                elif e == "cert.deployed":
                    deployed_owner = t if deployed_owner is None else deployed_owner
                if e in ("cert.deployed", "fleet.set_deployed"):
                    last[node] = min(last.get(node, t), t)
        if issued is None or len(last) != len(events):
            log(f"    {c}: order {o}: issued {issued}, deployed on {sorted(last)}: not counted")
            continue
        t_last = max(last.values())
        out_issued.append(t_last - issued)
        out_deployed.append(t_last - (deployed_owner or issued))
    return out_issued, out_deployed


# --- 1. the benchmark ---------------------------------------------------------------------------


def run_bench(n, ttl, lifetime):
    f = Fleet("bench", n, ttl, lifetime)
    r = {"n": n, "ttl": ttl, "lifetime": lifetime, "bad": []}
    readers = []
    try:
        time.sleep(2)
        c0 = f.etcd.counters()
        t0 = time.time()
        f.start()
        readers = [Reader(h, f.certs) for h in f.hosts]
        for rd in readers:
            rd.start()
        # 1. Issuance from empty stores.
        want = f.wait_wave(1, f"all {n} issued and live on every host")
        r["issue_time"] = time.time() - t0
        time.sleep(1)
        r["issue_etcd"] = requests_between(c0, f.etcd.counters())
        r["issue_window"] = time.time() - t0
        creates = sum(1 for x in f.sim.calls() if x["action"] == CREATE)
        r["orders_per_cert"] = creates / n
        orders = f.orders()
        if any(len(v) != 1 for v in orders.values()) or creates != n:
            r["bad"].append(f"issuance: {creates} creates for {n} certificates: {orders}")
        ev = f.events()
        r["lat_issued"], r["lat_deployed"] = latencies(f, want, ev)
        r["owners"] = {node: sum(1 for _, e, _ in evs if e == "fleet.claimed")
                       for node, evs in ev.items()}
        r["bad"] += f.check_identical()
        log(f"    issued: {r['issue_time']:.1f}s, claims by node {r['owners']}, "
            f"median issue->all {statistics.median(r['lat_issued']):.3f}s")

        # 2. Idle: all live, nothing due: the claims rounds and keep-alives alone.
        c2 = f.etcd.counters()
        t2 = time.time()
        time.sleep(ARGS.idle)
        r["idle_etcd"] = requests_between(c2, f.etcd.counters())
        r["idle_window"] = time.time() - t2
        if any(len(v) != 1 for v in f.orders().values()):
            log("    warning: a renewal started inside the idle window (shorten --idle)")

        # 3. The first renewal of every certificate (2/3 into its life).
        c3 = f.etcd.counters()
        t3 = time.time()
        want = f.wait_wave(2, f"all {n} renewed once and live on every host")
        r["renew_time"] = time.time() - t3
        time.sleep(1)
        r["renew_etcd"] = requests_between(c3, f.etcd.counters())
        r["renew_window"] = time.time() - t3
        r["renew_lat_issued"], r["renew_lat_deployed"] = latencies(f, want, f.events())
        r["bad"] += f.check_identical()

        # 4. Failover: the owner of a FILE certificate killed while CAS validates its second
        # renewal.
        r.update(failover(f, want))
        r["rss"] = {h.node: h.hwm() for h in f.hosts}
        for rd in readers:
            rd.stopped.set()
        r["pairs"] = sum(rd.pairs for rd in readers)
        r["mismatches"] = sum(rd.mismatches for rd in readers)
        if r["mismatches"]:
            r["bad"].append(f"{r['mismatches']} mismatched pairs read")
        # Every certificate's second renewal live everywhere, then no order wasted up to it.
        upto = f.wait_wave(3, f"all {n} renewed twice and live on every host")
        bad, r["paid"] = f.audit_orders(upto)
        r["bad"] += bad + f.check_identical() + f.scan_logs()
    finally:
        for rd in readers:
            rd.stopped.set()
        f.close()
    return r


def failover(f, previous):
    cert = f.certs[0]  # FILE
    node = f.owner(cert)
    victim = f.host(node)

    def presented():
        for _, e, fl in victim.events():
            if (e == "cert.challenge_presented" and fl.get("cert") == cert
                    and int(fl.get("order_id", 0)) > previous[cert]):
                return int(fl["order_id"])
        return None
    order = wait_until(f"{cert}'s next renewal presented on {node}", presented,
                       f.lifetime + 120, 0.02)
    victim.kill()
    t_kill = time.time()
    log(f"    failover: killed {node}, the owner of {cert} (order {order}, in validation)")
    survivors = [h for h in f.hosts if h is not victim]
    wait_until(f"{cert} deployed on the survivors",
               lambda: f.live_at_least(cert, order, survivors), DEADLINE, 0.05)
    claimed = deployed = None
    for h in survivors:
        for t, e, fl in h.events():
            if e == "fleet.claimed" and fl.get("cert") == cert and t > t_kill:
                claimed = t if claimed is None else min(claimed, t)
            if (e in ("cert.deployed", "fleet.set_deployed") and fl.get("cert") == cert
                    and str(fl.get("order_id")) == str(order)):
                deployed = t if deployed is None else max(deployed, t)
    out = {"fo_claimed": (claimed - t_kill) if claimed else float("nan"),
           "fo_deployed": (deployed - t_kill) if deployed else float("nan"), "fo_bad": []}
    paid = f.orders()[cert]
    out["fo_orders"] = sum(1 for o in paid if o > previous[cert])
    if out["fo_orders"] != 1 or order not in paid:
        out["fo_bad"].append(f"failover: {cert}'s orders after the kill: {paid}")
    # The killed host comes back and catches up with no order.
    victim.start()
    victim.d.wait_ready()
    wait_until(f"{node} back with {cert}'s order live",
               lambda: f.live_at_least(cert, order, [victim]), DEADLINE, 0.1)
    log(f"    failover: claimed {out['fo_claimed']:.2f}s, deployed on the survivors "
        f"{out['fo_deployed']:.2f}s after the kill; {out['fo_orders']} order")
    return out


# --- 2. the kill soak ----------------------------------------------------------------------------


def in_flight(f):
    """Certificates whose latest paid order is not live on every host yet."""
    now = f.orders()
    return [c for c in f.certs if not now[c] or not f.live_at_least(c, now[c][-1])]


def run_soak(n, kills, ttl, lifetime):
    f = Fleet("soak", n, ttl, lifetime)
    rng = random.Random(ARGS.seed)
    s = {"n": n, "kills": 0, "bad": [], "ttl": ttl, "lifetime": lifetime, "kill_log": []}
    readers = []
    t_start = time.time()
    try:
        f.start()
        readers = [Reader(h, f.certs) for h in f.hosts]
        for rd in readers:
            rd.start()
        hit = set()  # (certificate, paid orders): each order (or its absence) killed once
        while s["kills"] < kills:
            time.sleep(rng.uniform(0.2, 3.0))
            paid = f.orders()
            pending = [c for c in in_flight(f) if (c, len(paid[c])) not in hit]
            if not pending:
                continue
            c = rng.choice(pending)
            hit.add((c, len(paid[c])))
            node = f.owner(c)
            if node is None:
                continue
            h = f.host(node)
            issuing = len(f.orders()[c]) <= 1
            h.kill()
            s["kills"] += 1
            what = "issuance" if issuing else "renewal"
            s["kill_log"].append((round(time.time() - t_start, 1), node, c, what))
            log(f"    kill {s['kills']}/{kills}: {node}, owner of {c} ({what}), "
                f"{time.time() - t_start:.0f}s in")
            h.start()
            h.d.wait_ready()
        t_last = time.time()
        # Settle: each certificate's latest paid order live on every host (renewals go on:
        # each certificate is checked at some instant of its own).
        settled = {}

        def all_settled():
            now = f.orders()
            for c in f.certs:
                if c not in settled and now[c] and f.live_at_least(c, now[c][-1]):
                    settled[c] = now[c][-1]
            return len(settled) == len(f.certs)
        try:
            wait_until("every certificate's latest order live on every host", all_settled)
        except SystemExit as e:
            s["bad"].append(f"{e}: missing {sorted(set(f.certs) - settled)}")
        s["settle"] = time.time() - t_last
        for rd in readers:
            rd.stopped.set()
        for rd in readers:
            rd.join()
        s["pairs"] = sum(rd.pairs for rd in readers)
        s["mismatches"] = sum(rd.mismatches for rd in readers)
        if s["mismatches"]:
            s["bad"].append(f"{s['mismatches']} mismatched pairs read "
                            f"(first: {[rd.first_mismatch for rd in readers]})")
        bad, s["paid"] = f.audit_orders(settled)
        s["bad"] += bad + f.scan_logs()
        s["issuance_kills"] = sum(1 for k in s["kill_log"] if k[3] == "issuance")
        s["rss"] = {h.node: h.hwm() for h in f.hosts}
        s["fenced"] = sum(1 for h in f.hosts for _, e, _ in h.events() if e == "fleet.fenced")
        s["time"] = time.time() - t_start
    finally:
        for rd in readers:
            rd.stopped.set()
        f.close()
    return s


# --- output -------------------------------------------------------------------------------------


def per(d, n):
    return ", ".join(f"{k} {v / n:.1f}" for k, v in sorted(d.items()))


def report(b, s):
    rows = []
    if b:
        n = b["n"]
        li, ld = b["lat_issued"], b["lat_deployed"]
        rli, rld = b["renew_lat_issued"], b["renew_lat_deployed"]
        idle_rate = {k: v / b["idle_window"] for k, v in b["idle_etcd"].items()}

        def net(d, window):
            return {k: v - idle_rate.get(k, 0) * window for k, v in d.items()}
        rows += [
            ("certificates (half FILE, half Alidns); lease TTL; lifetime",
             f"{n}; {b['ttl']:g} s; {b['lifetime']:g} s"),
            ("orders per certificate, issuance (target 1.00)", f"{b['orders_per_cert']:.2f}"),
            ("paid orders in all (issuance, renewal, failover)", str(b["paid"])),
            ("claims per node", ", ".join(f"{k} {v}" for k, v in sorted(b["owners"].items()))),
            ("issuance: spawn -> all live on 3 hosts (s)", f"{b['issue_time']:.1f}"),
            ("first renewal: all live on 3 hosts (s after the idle window)",
             f"{b['renew_time']:.1f}"),
            ("issue -> all hosts, from cert.issued: median / p90 / max (s; target median <= 2)",
             f"{statistics.median(li):.3f} / {quantile(li, 0.9):.3f} / {max(li):.3f}"),
            ("  from the owner's cert.deployed: median / p90 / max (s)",
             f"{statistics.median(ld):.3f} / {quantile(ld, 0.9):.3f} / {max(ld):.3f}"),
            ("  renewal, from cert.issued: median / p90 / max (s)",
             f"{statistics.median(rli):.3f} / {quantile(rli, 0.9):.3f} / {max(rli):.3f}"),
            ("  renewal, from the owner's cert.deployed: median / p90 / max (s)",
             f"{statistics.median(rld):.3f} / {quantile(rld, 0.9):.3f} / {max(rld):.3f}"),
            ("byte-identical sets with matching keys on 3 hosts", "yes" if not b["bad"] else "NO"),
            ("etcd requests per cert, issuance (raw, window)",
             f"{per(b['issue_etcd'], n)} ({b['issue_window']:.0f} s)"),
            ("  less the idle rate", per(net(b["issue_etcd"], b["issue_window"]), n)),
            ("etcd requests per cert, renewal (raw, window)",
             f"{per(b['renew_etcd'], n)} ({b['renew_window']:.0f} s)"),
            ("  less the idle rate", per(net(b["renew_etcd"], b["renew_window"]), n)),
            ("etcd requests per second, idle (3 hosts)",
             ", ".join(f"{k} {v:.1f}" for k, v in sorted(idle_rate.items()))),
            ("failover: kill -> successor's fleet.claimed (s)", f"{b['fo_claimed']:.2f}"),
            ("failover: kill -> deployed on both survivors (s)", f"{b['fo_deployed']:.2f}"),
            ("failover: orders for the killed owner's renewal (target 1)", str(b["fo_orders"])),
            ("peak RSS per daemon (MB)",
             ", ".join(f"{k} {v:.1f}" for k, v in sorted(b["rss"].items()))),
            ("reader: pairs read / mismatched", f"{b['pairs']} / {b['mismatches']}"),
        ]
    if s:
        rows += [
            ("soak: certificates; lease TTL", f"{s['n']}; {s['ttl']:g} s"),
            ("soak: certificate lifetime (renewed every 2/3 of it)", f"{s['lifetime']:g} s"),
            ("soak: SIGKILLs of an owner with an order in flight (in issuance)",
             f"{s['kills']} ({s['issuance_kills']}) in {s['time']:.0f} s"),
            ("soak: paid orders (quota spent); per certificate", f"{s.get('paid')}; "
             f"{s.get('paid', 0) / s['n']:.1f}"),
            ("soak: duplicate orders, hosts missing a set, log leaks",
             "0, 0, 0" if not s["bad"] else "SEE FLEET FAIL BELOW"),
            ("soak: settled after the last kill (s)", f"{s.get('settle', float('nan')):.1f}"),
            ("soak: reader pairs read / mismatched", f"{s.get('pairs')} / {s.get('mismatches')}"),
            ("soak: fleet.fenced events", str(s.get("fenced"))),
            ("soak: peak RSS per daemon, all runs (MB)",
             ", ".join(f"{k} {v:.1f}" for k, v in sorted(s.get("rss", {}).items()))),
        ]
    w = max(len(a) for a, _ in rows)
    out = ["| " + "what".ljust(w) + " | figure |", "|" + "-" * (w + 2) + "|--------|"]
    out += [f"| {a.ljust(w)} | {v} |" for a, v in rows]
    return "\n".join(out)


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="cas-certd built with --features fleet")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--soak-n", type=int, default=0, help="certificates in the soak (default --n)")
    ap.add_argument("--kills", type=int,
                    default=int(os.environ.get("CAS_CERTD_FLEET_KILLS", "5")))
    ap.add_argument("--lease-ttl", type=float, default=10, help="the benchmark's (daemon default)")
    ap.add_argument("--soak-lease-ttl", type=float, default=2)
    ap.add_argument("--idle", type=float, default=10, help="idle window for etcd's rate, s")
    ap.add_argument("--lifetime", type=float, default=120,
                    help="the benchmark's certificate lifetime, s (renewed 2/3 into it)")
    ap.add_argument("--soak-lifetime", type=float, default=90)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--smoke", action="store_true", help="CI: N=6, 3 kills, TTL 2 s")
    ap.add_argument("--no-bench", action="store_true", help="only the soak")
    ap.add_argument("--no-soak", action="store_true", help="only the benchmark")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    ARGS = ap.parse_args()
    bench.ARGS = argparse.Namespace(wrap="", concurrency=0)  # what bench.Daemon reads
    if ARGS.smoke:
        ARGS.n, ARGS.kills, ARGS.lease_ttl, ARGS.soak_lease_ttl, ARGS.idle = 6, 3, 2, 2, 4
        ARGS.lifetime, ARGS.soak_lifetime = 75, 75
    t0 = time.time()
    log(f"seed {ARGS.seed}")
    b = None if ARGS.no_bench else run_bench(ARGS.n, ARGS.lease_ttl, ARGS.lifetime)
    s = None if ARGS.no_soak else run_soak(ARGS.soak_n or ARGS.n, ARGS.kills,
                                           ARGS.soak_lease_ttl, ARGS.soak_lifetime)
    print(f"3 daemons (fleet), etcd 3 members, simulator load-balancing FILE fetches over 3 "
          f"webroots; CA: validation {VALIDATION:g}s + review {REVIEW:g}s; seed {ARGS.seed}")
    print(report(b, s))
    bad = (b["bad"] + b["fo_bad"] if b else []) + (s["bad"] if s else [])
    if s:
        log("soak kills (s in, node, certificate, phase): "
            + "; ".join(str(k) for k in s["kill_log"]))
    for x in bad:
        print(f"FLEET FAIL: {x}", file=sys.stderr)
    log(f"bench_fleet took {time.time() - t0:.0f}s")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
