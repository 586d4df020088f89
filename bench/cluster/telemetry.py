"""Telemetry cost, one run, two -dev agents from the same binary:

1. scrape time: GET /v1/agent/metrics?format=prometheus and the JSON form
   on an agent holding BENCH_SERVICES (10,000) services, p50/p99 over 50
   scrapes each (target ≤ 50 ms);
2. write throughput: wrk PUTs (16 connections) against the agent with
   telemetry on and against one started with MESH_TELEMETRY=off,
   alternating, best of BENCH_ROUNDS (target: no measurable change).
"""

import concurrent.futures
import json
import os
import subprocess
import time

from benchlib import Mesh, log, request

HERE = os.path.dirname(os.path.abspath(__file__))
SERVICES = int(os.environ.get("BENCH_SERVICES", "10000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
DURATION = int(os.environ.get("BENCH_DURATION", "10"))


def register(agent, i):
    body = json.dumps({"Node": f"n{i % 100}", "Address": "10.0.0.1",
                       "Service": {"ID": f"svc-{i}", "Service": f"svc-{i}", "Port": 1000 + i % 50000}}).encode()
    st, out = request("PUT", agent.http, "/v1/catalog/register", body, timeout=30)
    assert st == 200, out


def scrape(agent, path, n=50):
    times = []
    size = 0
    for _ in range(n):
        t0 = time.perf_counter()
        st, body = request("GET", agent.http, path, timeout=10)
        times.append((time.perf_counter() - t0) * 1000)
        assert st == 200, body[:200]
        size = len(body)
    times.sort()
    return times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))], size


def wrk(agent, prefix):
    cmd = ["wrk", "-t2", "-c16", f"-d{DURATION}s", "--timeout", "5s",
           "-s", os.path.join(HERE, "mesh_put.lua"), f"http://{agent.http}", "--", prefix]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=DURATION + 60)
    line = next(l for l in out.stdout.splitlines() if l.startswith("BENCH "))
    r = json.loads(line[6:])
    return r["ok"] / (r["duration_us"] / 1e6)


def main():
    on = Mesh("telemetry-on", extra=["-dev"], expect=1).start()
    os.environ["MESH_TELEMETRY"] = "off"
    off = Mesh("telemetry-off", extra=["-dev"], expect=1).start()
    del os.environ["MESH_TELEMETRY"]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: register(on, i), range(SERVICES)))
    prom = scrape(on, "/v1/agent/metrics?format=prometheus")
    js = scrape(on, "/v1/agent/metrics")
    rates = {"on": [], "off": []}
    for r in range(ROUNDS):
        for name, agent in (("on", on), ("off", off)):
            rates[name].append(wrk(agent, f"{name}{r}"))
            log(f"round {r} telemetry {name}: {rates[name][-1]:.0f} writes/s")
    best = {k: max(v) for k, v in rates.items()}
    print(f"telemetry, one -dev agent with {SERVICES} services:")
    print(f"  scrape, Prometheus text ({prom[2]} bytes): p50 {prom[0]:.1f} ms, p99 {prom[1]:.1f} ms")
    print(f"  scrape, JSON ({js[2]} bytes): p50 {js[0]:.1f} ms, p99 {js[1]:.1f} ms")
    print(f"  KV writes, 16 conns, best of {ROUNDS}: telemetry on {best['on']:.0f}/s, "
          f"off {best['off']:.0f}/s, on/off {best['on'] / best['off']:.2f}x")
    print(f"  all rounds: on {[round(x) for x in rates['on']]}, off {[round(x) for x in rates['off']]}")


if __name__ == "__main__":
    main()
