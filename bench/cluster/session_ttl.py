"""Session TTL renewals: one mesh server (fsynced Raft log) vs one etcd 3.4
member, in one run (see bench/session_ttl.sh).

mesh: N sessions `{"TTL": "10s", "Behavior": "release"}`, each renewed
(`PUT /v1/session/renew/<id>`) once every 10 s for a window of W seconds.
etcd: N leases, each kept alive (`POST /v3/lease/keepalive`, one message
per request through the JSON gateway) once every 10 s for the same window.

Renewals are spread evenly over the 10 s period (N/10 a second), sent by a
few threads on keep-alive connections, in the order the sessions/leases
were created, so none waits much longer than a period for its first one.
The server's CPU (utime+stime from /proc/<pid>/stat) over the window, less
what it burns idle over a window as long (measured for both at once, after
start and before any session exists: a 10 s TTL cannot sit unrenewed for a
30 s idle window), is charged to the renewals. The Raft index is read before
and after the window and its growth reported as measured. At the end every
session must still exist, and every lease (listed, and a sample of 100 with
a TTL left).

etcd's lease TTL is 20 s by default (BENCH_ETCD_TTL), not 10: a Consul (and
mesh) session with TTL 10s is destroyed only after 2 x TTL without renewal,
while an etcd lease is revoked the moment its TTL runs out, and a keepalive
that reaches an expired lease fails; renewed every 10 s, a 10 s lease dies
whenever one renewal lands a little later than the previous one did. 20 s
gives both systems the same 20 s lifetime without renewal; the renewal rate
(what is measured) is the same either way.

Each system is measured alone: mesh is killed before etcd's leases exist.
"""

import http.client
import json
import os
import random
import threading
import time

from benchlib import KeepAlive, Mesh, kill9, kill_all, log, now, request, wait_until
from etcd import etcd_cluster

N = int(os.environ.get("BENCH_SESSIONS", "10000"))
WINDOW = float(os.environ.get("BENCH_WINDOW", "30"))
PERIOD = 10.0  # every session/lease renewed once per PERIOD seconds
RENEW_THREADS = int(os.environ.get("BENCH_RENEW_THREADS", "4"))
CREATE_THREADS = int(os.environ.get("BENCH_CREATE_THREADS", "32"))
ETCD_TTL = int(os.environ.get("BENCH_ETCD_TTL", "20"))
SAMPLE = 100
# Bounds on the waits: creating N sessions (fsynced writes), and the window.
CREATE_TIMEOUT = max(120.0, N * 0.05)
REQ_TIMEOUT = 5.0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


class Conn(KeepAlive):
    """benchlib.KeepAlive with a method and a body. A request is sent again
    only when it failed on a reused connection (one the server may have
    closed meanwhile), never after a failure on a fresh one."""

    def call(self, method, path, body=None):
        for _ in range(2):
            fresh = self.conn is None
            if fresh:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body)
                r = self.conn.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if fresh:
                    raise
        raise RuntimeError("unreachable")


def run_threads(n, target, timeout, what):
    """target(i) on n daemon threads; re-raises the first error; bounded."""
    errors = []

    def wrap(i):
        try:
            target(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = now() + timeout
    for t in threads:
        t.join(max(0.0, deadline - now()))
    if any(t.is_alive() for t in threads):
        raise TimeoutError(f"{what}: not done after {timeout:.0f}s")
    if errors:
        raise errors[0]


def create_all(addr, create_one):
    """N objects made by CREATE_THREADS threads; their ids in the order
    their creation completed."""
    done = []  # (completion time, id)
    lock = threading.Lock()
    nxt = [0]
    deadline = now() + CREATE_TIMEOUT

    def worker(_):
        conn = Conn(addr, timeout=REQ_TIMEOUT)
        try:
            while now() < deadline:
                with lock:
                    if nxt[0] >= N:
                        return
                    nxt[0] += 1
                oid = create_one(conn)
                done.append((now(), oid))
        finally:
            conn.close()

    t0 = now()
    run_threads(CREATE_THREADS, worker, CREATE_TIMEOUT + REQ_TIMEOUT * 2, f"creating {N}")
    if len(done) != N:
        raise RuntimeError(f"created {len(done)} of {N} in {CREATE_TIMEOUT:.0f}s")
    done.sort()
    return [oid for _, oid in done], now() - t0


def renew_window(addr, pid, ids, renew_one):
    """Renews ids[i] at t0 + i*PERIOD/N + k*PERIOD for every k with the time
    inside the window. Returns the figures of the window."""
    n = len(ids)
    per_thread = [[] for _ in range(RENEW_THREADS)]
    for k in range(int(WINDOW // PERIOD) + 1):
        for i in range(n):
            due = k * PERIOD + i * PERIOD / n
            if due < WINDOW:
                per_thread[i % RENEW_THREADS].append((due, ids[i]))
    lat = [[] for _ in range(RENEW_THREADS)]
    failed = [0] * RENEW_THREADS
    behind = [0.0] * RENEW_THREADS
    first_error = []
    t0 = now() + 0.2

    def worker(j):
        conn = Conn(addr, timeout=REQ_TIMEOUT)
        try:
            for due, oid in per_thread[j]:
                wait = t0 + due - now()
                if wait > 0:
                    time.sleep(wait)  # pacing: the renewal schedule
                else:
                    behind[j] = max(behind[j], -wait)
                s = now()
                try:
                    ok, why = renew_one(conn, oid)
                except (OSError, http.client.HTTPException) as e:
                    ok, why = False, repr(e)
                lat[j].append(now() - s)
                if not ok:
                    failed[j] += 1
                    if not first_error:
                        first_error.append(why)
        finally:
            conn.close()

    sleep_for = t0 - now()
    if sleep_for > 0:
        time.sleep(sleep_for)  # pacing: the window starts at t0
    cpu0 = cpu_seconds(pid)
    w0 = now()
    run_threads(RENEW_THREADS, worker, WINDOW + 120, "the renewal window")
    cpu = cpu_seconds(pid) - cpu0
    elapsed = now() - w0
    all_lat = [x for xs in lat for x in xs]
    if first_error:
        log(f"first failed renewal: {first_error[0][:300]}")
    return {
        "renewals": len(all_lat),
        "failed": sum(failed),
        "p50_ms": percentile(all_lat, 50) * 1000,
        "p99_ms": percentile(all_lat, 99) * 1000,
        "max_ms": max(all_lat) * 1000 if all_lat else float("nan"),
        "max_behind_schedule_ms": max(behind) * 1000,
        "window_s": elapsed,
        "window_cpu_ms": cpu * 1000,
    }


def finish(r, idle_cpu_s, idle_s, created_s, index0, index1, alive):
    """Adds the idle-corrected CPU, the index delta and the end checks."""
    idle_ms = idle_cpu_s / idle_s * r["window_s"] * 1000
    r["idle_cpu_ms_same_length"] = idle_ms
    r["cpu_ms_per_1000_renewals"] = ((r["window_cpu_ms"] - idle_ms) / r["renewals"] * 1000
                                     if r["renewals"] else float("nan"))
    r["raft_index_before"] = index0
    r["raft_index_delta"] = index1 - index0
    r["create_s"] = created_s
    r.update(alive)
    return r


# === mesh ===


def mesh_index(m):
    st, body = request("GET", m.http, "/v1/agent/self", timeout=REQ_TIMEOUT)
    if st != 200:
        raise RuntimeError(f"/v1/agent/self: {st} {body[:200]!r}")
    return int(json.loads(body)["Stats"]["raft"]["last_log_index"])


def mesh_create(conn):
    st, body = conn.call("PUT", "/v1/session/create", b'{"TTL": "10s", "Behavior": "release"}')
    if st != 200:
        raise RuntimeError(f"session create: {st} {body[:200]!r}")
    return json.loads(body)["ID"]


def mesh_renew(conn, sid):
    st, body = conn.call("PUT", f"/v1/session/renew/{sid}")
    return st == 200, f"{st} {body[:200]!r}"


def mesh_serf_healthy(m):
    st, body = request("GET", m.http, f"/v1/health/node/{m.name}", timeout=1)
    return st == 200 and any(c.get("CheckID") == "serfHealth" and c.get("Status") == "passing"
                             for c in json.loads(body))


def run_mesh(m, idle_cpu_s, idle_s):
    ids, created_s = create_all(m.http, mesh_create)
    log(f"mesh: {N} sessions created in {created_s:.1f}s")
    index0 = mesh_index(m)
    r = renew_window(m.http, m.pid, ids, mesh_renew)
    index1 = mesh_index(m)
    st, body = request("GET", m.http, "/v1/session/list", timeout=60)
    if st != 200:
        raise RuntimeError(f"/v1/session/list: {st} {body[:200]!r}")
    listed = {s["ID"] for s in json.loads(body)}
    alive = {"alive_at_end": len(listed & set(ids)), "listed_at_end": len(listed)}
    return finish(r, idle_cpu_s, idle_s, created_s, index0, index1, alive)


# === etcd ===


def etcd_post(conn, path, body):
    st, out = conn.call("POST", path, json.dumps(body).encode())
    if st != 200:
        raise RuntimeError(f"etcd {path}: {st} {out[:200]!r}")
    return json.loads(out)


def etcd_index(member):
    return int(member.status()["raftIndex"])


def etcd_grant(conn):
    return etcd_post(conn, "/v3/lease/grant", {"TTL": ETCD_TTL})["ID"]


def etcd_keepalive(conn, lid):
    # The gateway streams the reply: one {"result": {...}} line per message
    # sent, here one. A lease it does not know comes back without a TTL.
    st, out = conn.call("POST", "/v3/lease/keepalive", json.dumps({"ID": lid}).encode())
    if st != 200:
        return False, f"{st} {out[:200]!r}"
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    ok = len(lines) == 1 and int(lines[0].get("result", {}).get("TTL", 0)) > 0
    return ok, out[:200].decode(errors="replace")


def run_etcd(e, idle_cpu_s, idle_s):
    ids, created_s = create_all(e.client, etcd_grant)
    log(f"etcd: {N} leases granted in {created_s:.1f}s")
    index0 = etcd_index(e)
    r = renew_window(e.client, e.proc.pid, ids, etcd_keepalive)
    index1 = etcd_index(e)
    conn = Conn(e.client, timeout=60)
    listed = {lease["ID"] for lease in etcd_post(conn, "/v3/lease/leases", {}).get("leases", [])}
    sample = random.Random(1).sample(ids, min(SAMPLE, len(ids)))
    ttls = [int(etcd_post(conn, "/v3/lease/timetolive", {"ID": lid}).get("TTL", -1)) for lid in sample]
    conn.close()
    alive = {"alive_at_end": len(listed & set(ids)), "listed_at_end": len(listed),
             "sample_ttl_positive": f"{sum(t > 0 for t in ttls)}/{len(ttls)}"}
    return finish(r, idle_cpu_s, idle_s, created_s, index0, index1, alive)


# === main ===


def line(name, r):
    return (f"{name}: {r['renewals']} renewals, {r['failed']} failed, p50 {r['p50_ms']:.2f} ms, "
            f"p99 {r['p99_ms']:.2f} ms, CPU {r['cpu_ms_per_1000_renewals']:.1f} ms per 1000 "
            f"(window {r['window_cpu_ms']:.0f} ms, idle {r['idle_cpu_ms_same_length']:.0f} ms), "
            f"raft index +{r['raft_index_delta']}, alive {r['alive_at_end']}/{N}, "
            f"max {r['max_behind_schedule_ms']:.0f} ms behind schedule")


def main():
    log(f"{N} sessions/leases, window {WINDOW:.0f}s, renewed every {PERIOD:.0f}s "
        f"({N / PERIOD:.0f}/s) from {RENEW_THREADS} threads")
    m = Mesh("mesh", server=True, expect=1).start()
    members = etcd_cluster(1)
    e = members[0]
    wait_until("a mesh leader", lambda: m.leader(), 30)
    wait_until("the mesh node's serfHealth passing", lambda: mesh_serf_healthy(m), 30, 0.1)

    # Both idle at once, before any session or lease exists.
    pids = {"mesh": m.pid, "etcd": e.proc.pid}
    c0 = {k: cpu_seconds(p) for k, p in pids.items()}
    t = now()
    time.sleep(WINDOW)  # the idle measurement window
    idle_s = now() - t
    idle = {k: cpu_seconds(p) - c0[k] for k, p in pids.items()}
    log(f"idle {idle_s:.1f}s: mesh {idle['mesh'] * 1000:.0f} ms CPU, etcd {idle['etcd'] * 1000:.0f} ms CPU")

    results = {}
    results["mesh"] = run_mesh(m, idle["mesh"], idle_s)
    log(line("mesh", results["mesh"]))
    kill9(m.proc)  # its sessions would expire (Raft writes) during etcd's turn
    results["etcd"] = run_etcd(e, idle["etcd"], idle_s)
    log(line("etcd", results["etcd"]))
    kill_all()

    me, et = results["mesh"]["cpu_ms_per_1000_renewals"], results["etcd"]["cpu_ms_per_1000_renewals"]
    summary = {
        "sessions": N, "window_s": WINDOW, "period_s": PERIOD, "renew_threads": RENEW_THREADS,
        "mesh_session_ttl": "10s", "etcd_lease_ttl_s": ETCD_TTL,
        "mesh": results["mesh"], "etcd": results["etcd"],
        "cpu_ratio_mesh_over_etcd": me / et if et > 0 else None,
    }
    print(json.dumps(summary, indent=1))
    bad = [f"{k}: {r['alive_at_end']}/{N} alive" for k, r in results.items() if r["alive_at_end"] != N]
    if results["etcd"]["sample_ttl_positive"] != f"{min(SAMPLE, N)}/{min(SAMPLE, N)}":
        bad.append(f"etcd sample with TTL left: {results['etcd']['sample_ttl_positive']}")
    if bad:
        raise SystemExit("FAIL: " + "; ".join(bad))


if __name__ == "__main__":
    try:
        main()
    finally:
        kill_all()
