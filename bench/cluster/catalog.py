"""Catalog benchmarks (see bench/catalog.sh, docs/benchmarks.md).

1. Reads: GET /v1/health/service/web?passing with 100 instances on one -dev
   agent vs a 1-member etcd 3.4's serializable /v3/kv/range of 100 keys of
   the same size, wrk -c64 -t2 -d10s each, same run: req/s, p99 and ratio.
2. Watch fan-out: 1,000 blocking queries on one service, one change: time
   until all 1,000 have their answer (p50, p99, max).
3. 10,000 services x 3 instances: RSS per instance and the p99 of a
   registration write (16 concurrent writers).
4. ACL cost (BENCH_ONLY=acl): the reads of (1) and /v1/catalog/services
   (100 names, a list the ACL layer filters) on an agent with ACLs off and
   on one with ACLs on (default deny, a token with service/node read),
   interleaved in one run, with the etcd range read of (1) as the peer.
"""

import base64
import json
import os
import re
import subprocess
import threading

from benchlib import Mesh, log, median, now, request, spawn, free_port, wait_until, WORK, rss_kb
from etcd import Etcd

HERE = os.path.dirname(os.path.abspath(__file__))
DURATION = int(os.environ.get("BENCH_DURATION", "10"))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def wrk(url, script=None, token=None):
    cmd = ["wrk", "-t2", "-c64", f"-d{DURATION}s", "--latency", "--timeout", "5s"]
    if token:
        cmd += ["-H", f"X-Consul-Token: {token}"]
    if script:
        cmd += ["-s", os.path.join(HERE, script)]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=DURATION + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert errors is None, out
    return rps, float(p99.group(1)) * scale


def register(addr, node, svc, sid, port, token=None):
    body = json.dumps({
        "Node": node, "Address": "10.0.0.1",
        "Service": {"ID": sid, "Service": svc, "Port": port, "Tags": ["v1"], "Meta": {"team": "bench"}},
        "Check": {"CheckID": f"{sid}-ok", "Name": "ok", "Status": "passing", "ServiceID": sid},
    }).encode()
    t0 = now()
    headers = {"X-Consul-Token": token} if token else None
    st, out = request("PUT", addr, "/v1/catalog/register", body, timeout=10, headers=headers)
    assert st == 200, out
    return (now() - t0) * 1000


def reads(agent):
    for i in range(100):
        register(agent.http, f"node{i % 10}", "web", f"web-{i}", 8000 + i)
    st, body = request("GET", agent.http, "/v1/health/service/web?passing", timeout=5)
    entries = json.loads(body)
    assert len(entries) == 100
    per_entry = len(body) // 100
    e = Etcd("r1", free_port(), free_port())
    e.start(f"r1=http://{e.peer}")
    wait_until("etcd up", e.status, 30, 0.1)
    value = base64.b64encode(b"x" * per_entry).decode()
    for i in range(100):
        key = base64.b64encode(f"/web/{i:03}".encode()).decode()
        st, _ = request("POST", e.client, "/v3/kv/put", json.dumps({"key": key, "value": value}).encode())
        assert st == 200
    m_rps, m_p99 = wrk(f"http://{agent.http}/v1/health/service/web?passing")
    e_rps, e_p99 = wrk(f"http://{e.client}/v3/kv/range", "etcd_range.lua")
    log(f"reads: mesh health/service (100 instances, {len(body)} B) {m_rps:.0f} req/s p99 {m_p99:.2f} ms; "
        f"etcd range (100 keys) {e_rps:.0f} req/s p99 {e_p99:.2f} ms; ratio {m_rps / e_rps:.2f}x")
    e.proc.kill()
    return {"mesh_rps": round(m_rps), "mesh_p99_ms": m_p99, "etcd_rps": round(e_rps), "etcd_p99_ms": e_p99,
            "ratio": round(m_rps / e_rps, 2)}


def fan_out(agent, n=1000, runs=int(os.environ.get("BENCH_RUNS", "5"))):
    """1,000 blocking queries parked on one service, one registration: time
    until each has its answer's headers. The load generator is Rust on one
    thread (daemon/client/examples/fan_out.rs), so its own cost per answer
    is microseconds; each run uses a fresh service. Reports every run and
    the median run (by p99)."""
    results = []
    for r in range(runs):
        out = subprocess.run([os.environ["FAN_OUT_BIN"], agent.http, str(n), f"fan{r}"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        results.append(json.loads(out.stdout))
        log(f"watch fan-out run {r + 1}: {results[-1]}")
    mid = sorted(results, key=lambda x: x["p99_ms"])[len(results) // 2]
    log(f"watch fan-out: {n} blocking queries, one change, median of {runs} runs: "
        f"p50 {mid['p50_ms']} ms p99 {mid['p99_ms']} ms max {mid['max_ms']} ms")
    return {"median_run": mid, "runs": results}


def scale(agent, services=10000, per=3, writers=16):
    rss0 = rss_kb(agent.pid)
    lat = []
    lock = threading.Lock()
    jobs = [(s, i) for s in range(services) for i in range(per)]

    def work(k):
        mine = []
        for s, i in jobs[k::writers]:
            mine.append(register(agent.http, f"scale-node-{i}-{s % 100}", f"svc{s}", f"svc{s}-{i}", 10000 + i))
        with lock:
            lat.extend(mine)

    t0 = now()
    ts = [threading.Thread(target=work, args=(k,)) for k in range(writers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    secs = now() - t0
    rss1 = rss_kb(agent.pid)
    per_instance = (rss1 - rss0) * 1024 / len(jobs)
    log(f"scale: {len(jobs)} instances in {secs:.1f} s ({len(jobs) / secs:.0f}/s); registration p50 "
        f"{median(lat):.1f} ms p99 {pct(lat, 99):.1f} ms; RSS {rss0 // 1024} -> {rss1 // 1024} MiB, "
        f"{per_instance:.0f} B per instance")
    return {"instances": len(jobs), "write_p50_ms": round(median(lat), 1), "write_p99_ms": round(pct(lat, 99), 1),
            "rss_mib": rss1 // 1024, "bytes_per_instance": round(per_instance)}


MANAGEMENT = "6d3f6a39-2b1e-4c61-9a51-0e3cbb0f1c11"


def acl_cost():
    conf = os.path.join(WORK, "acl.hcl")
    with open(conf, "w") as f:
        f.write('acl {\n  enabled = true\n  default_policy = "deny"\n'
                f'  tokens {{\n    initial_management = "{MANAGEMENT}"\n  }}\n}}\n')
    plain = Mesh("plain", expect=1, extra=["-dev"]).start()
    guarded = Mesh("guarded", expect=1, extra=["-dev", f"-config-file={conf}"]).start()
    mgmt = {"X-Consul-Token": MANAGEMENT}
    for agent, token in ((plain, None), (guarded, MANAGEMENT)):
        for i in range(100):
            register(agent.http, f"node{i % 10}", "web", f"web-{i}", 8000 + i, token)
            register(agent.http, f"node{i % 10}", f"svc{i:03}", f"svc-{i}", 9000 + i, token)
    rules = 'service_prefix "" {\n  policy = "read"\n}\nnode_prefix "" {\n  policy = "read"\n}\n'
    st, _ = request("PUT", guarded.http, "/v1/acl/policy", json.dumps({"Name": "read", "Rules": rules}).encode(),
                    headers=mgmt)
    assert st == 200
    st, body = request("PUT", guarded.http, "/v1/acl/token",
                       json.dumps({"Policies": [{"Name": "read"}]}).encode(), headers=mgmt)
    assert st == 200, body
    token = json.loads(body)["SecretID"]
    st, body = request("GET", guarded.http, "/v1/catalog/services", headers={"X-Consul-Token": token})
    assert st == 200 and len(json.loads(body)) == 101, body
    e = Etcd("a1", free_port(), free_port())
    e.start(f"a1=http://{e.peer}")
    wait_until("etcd up", e.status, 30, 0.1)
    st, body = request("GET", plain.http, "/v1/health/service/web?passing", timeout=5)
    value = base64.b64encode(b"x" * (len(body) // 100)).decode()
    for i in range(100):
        key = base64.b64encode(f"/web/{i:03}".encode()).decode()
        st, _ = request("POST", e.client, "/v3/kv/put", json.dumps({"key": key, "value": value}).encode())
        assert st == 200
    out = {}
    for path in ("/v1/health/service/web?passing", "/v1/catalog/services"):
        off, on = [], []
        for _ in range(3):  # interleaved rounds
            off.append(wrk(f"http://{plain.http}{path}"))
            on.append(wrk(f"http://{guarded.http}{path}", token=token))
        off_rps, on_rps = median([r for r, _ in off]), median([r for r, _ in on])
        out[path] = {"acl_off_rps": round(off_rps), "acl_on_rps": round(on_rps),
                     "acl_off_p99_ms": median([p for _, p in off]), "acl_on_p99_ms": median([p for _, p in on]),
                     "on_over_off": round(on_rps / off_rps, 3)}
        log(f"acl {path}: off {off_rps:.0f} req/s, on {on_rps:.0f} req/s ({on_rps / off_rps:.3f}x)")
    e_rps, e_p99 = wrk(f"http://{e.client}/v3/kv/range", "etcd_range.lua")
    out["etcd_range_rps"] = round(e_rps)
    out["health_acl_on_vs_etcd"] = round(out["/v1/health/service/web?passing"]["acl_on_rps"] / e_rps, 2)
    log(f"etcd range {e_rps:.0f} req/s; health with ACLs on / etcd {out['health_acl_on_vs_etcd']}x")
    e.proc.kill()
    plain.kill()
    guarded.kill()
    return out


def main():
    if os.environ.get("BENCH_ONLY") == "acl":
        print(json.dumps({"acl": acl_cost()}, indent=2))
        return
    agent = Mesh("dev", expect=1, extra=["-dev"]).start()
    if os.environ.get("BENCH_ONLY") == "fan_out":
        print(json.dumps({"fan_out": fan_out(agent)}, indent=2))
        return
    out = {"reads": reads(agent)}
    if os.environ.get("BENCH_ONLY") == "reads":
        agent.kill()
        print(json.dumps(out, indent=2))
        return
    out["fan_out"] = fan_out(agent)
    agent.kill()
    server = Mesh("scale", expect=1, extra=[]).start()
    wait_until("leader", server.leader, 30, 0.05)
    out["scale"] = scale(server)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
