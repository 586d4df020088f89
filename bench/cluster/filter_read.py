"""Filtered health reads: GET /v1/health/service/web over 1,000 instances,
with `?filter=Service.Meta.env == prod` (half of them match) and without,
wrk -c64 -t2 each, alternating, on one -dev agent: req/s, p99 and the ratio
filtered/unfiltered (target: at least 0.8)."""

import json
import os
import urllib.parse

from benchlib import Mesh, log, request
from catalog import wrk

INSTANCES = int(os.environ.get("BENCH_INSTANCES", "1000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def main():
    agent = Mesh("filter", extra=["-dev"], expect=1).start()
    for i in range(INSTANCES):
        body = json.dumps({
            "Node": f"node{i % 50}", "Address": "10.0.0.1",
            "Service": {"ID": f"web-{i}", "Service": "web", "Port": 8000 + i % 1000,
                        "Meta": {"env": "prod" if i % 2 else "dev"}},
        }).encode()
        st, out = request("PUT", agent.http, "/v1/catalog/register", body, timeout=10)
        assert st == 200, out
    expression = urllib.parse.quote("Service.Meta.env == prod")
    plain = f"http://{agent.http}/v1/health/service/web"
    filtered = f"{plain}?filter={expression}"
    st, body = request("GET", agent.http, f"/v1/health/service/web?filter={expression}", timeout=10)
    assert st == 200 and len(json.loads(body)) == INSTANCES // 2, body[:200]
    results = {"unfiltered": [], "filtered": []}
    for _ in range(ROUNDS):
        for name, url in (("unfiltered", plain), ("filtered", filtered)):
            results[name].append(wrk(url))
    best = {k: max(v) for k, v in results.items()}
    for name, (rps, p99) in best.items():
        log(f"{name}: {rps:.0f} req/s, p99 {p99:.1f} ms")
    print(f"health/service over {INSTANCES} instances, best of {ROUNDS}:")
    for name, (rps, p99) in best.items():
        print(f"  {name:10} {rps:8.0f} req/s  p99 {p99:6.1f} ms")
    print(f"  filtered/unfiltered: {best['filtered'][0] / best['unfiltered'][0]:.2f}x")


if __name__ == "__main__":
    main()
