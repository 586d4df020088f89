"""Discovery-chain recompile and push (see bench/chain_push.sh).

Each run starts one real server (fsynced Raft log), lets
`snapshot_fan_out` make every service http, register the proxies, park one
blocking snapshot query per proxy and write one service-router per round,
then stops the server.
"""

import json
import os
import subprocess

import benchlib
from benchlib import Mesh, log, median, wait_until

RUNS = int(os.environ.get("BENCH_RUNS", "2"))
PROXIES = os.environ.get("BENCH_PROXIES", "1000")
SERVICES = os.environ.get("BENCH_SERVICES", "100")
ROUNDS = os.environ.get("BENCH_ROUNDS", "5")
FAN_OUT = os.environ["SNAPSHOT_FAN_OUT_BIN"]


def one(run):
    limits = os.path.join(benchlib.WORK, "limits.hcl")
    with open(limits, "w") as f:
        f.write("limits {\n  http_max_conns_per_client = 10000\n"
                "  http_max_blocking_queries_per_client = 10000\n}\n")
    m = Mesh(f"chain-{run}", server=True, expect=1, extra=[f"-config-file={limits}"]).start()
    wait_until("a leader", lambda: m.leader(), 30)
    out = subprocess.run([FAN_OUT, m.http, str(m.pid), PROXIES, SERVICES, ROUNDS, "router"],
                         capture_output=True, text=True, timeout=900,
                         env=dict(os.environ, RUST_BACKTRACE="0"))
    m.kill()
    if out.returncode != 0:
        raise RuntimeError(f"snapshot_fan_out failed: {out.stderr[-2000:]}")
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    for line in lines[:-1]:
        log("router", json.dumps(line))
    return lines[-1]


def main():
    rs = []
    for run in range(RUNS):
        s = one(run)
        rs.append(s)
        log(f"run {run}: one router change reaches its {int(PROXIES) // int(SERVICES)} callers at "
            f"p50 {s['single_p50_ms']:.1f} ms, p99 {s['single_p99_ms']:.1f} ms; "
            f"median server CPU {s['single_median_cpu_ms']:.1f} ms per 2 s window")
    idle = median([r["wildcard"]["idle_cpu_ms"] for r in rs])
    summary = {
        "proxies": int(PROXIES),
        "single_p50_ms": median([r["single_p50_ms"] for r in rs]),
        "single_p99_ms": median([r["single_p99_ms"] for r in rs]),
        "cpu_per_change_ms": median([r["single_median_cpu_ms"] for r in rs]) - idle,
        "idle_cpu_ms": idle,
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
