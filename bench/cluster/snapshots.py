"""Proxy-snapshot fan-out, before and after the snapshot hub (see
bench/snapshots.sh, docs/benchmarks.md).

Each run starts one real server (fsynced Raft log) per build, lets
`snapshot_fan_out` register the proxies, park one blocking snapshot query
per proxy and make the intention changes, then stops the server. Builds
alternate run by run so both see the same machine.
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
BUILDS = [("before", os.environ["MESH_BEFORE_BIN"]), ("after", os.environ["MESH_BIN"])]
FAN_OUT = os.environ["SNAPSHOT_FAN_OUT_BIN"]


def one(label, binary, run):
    benchlib.MESH = binary
    # All watchers come from 127.0.0.1: lift the per-client caps (200
    # connections and 1,024 blocking queries by default) above their number.
    limits = os.path.join(benchlib.WORK, "limits.hcl")
    with open(limits, "w") as f:
        f.write("limits {\n  http_max_conns_per_client = 10000\n"
                "  http_max_blocking_queries_per_client = 10000\n}\n")
    m = Mesh(f"{label}-{run}", server=True, expect=1, extra=[f"-config-file={limits}"]).start()
    wait_until("a leader", lambda: m.leader(), 30)
    out = subprocess.run([FAN_OUT, m.http, str(m.pid), PROXIES, SERVICES, ROUNDS],
                         capture_output=True, text=True, timeout=900,
                         env=dict(os.environ, RUST_BACKTRACE="0"))
    m.kill()
    if out.returncode != 0:
        raise RuntimeError(f"snapshot_fan_out failed: {out.stderr[-2000:]}")
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    for line in lines[:-1]:
        log(label, json.dumps(line))
    return lines[-1]


def main():
    results = {label: [] for label, _ in BUILDS}
    for run in range(RUNS):
        for label, binary in BUILDS:
            s = one(label, binary, run)
            results[label].append(s)
            w = s["wildcard"]
            log(f"{label} run {run}: single change p50 {s['single_p50_ms']:.1f} ms "
                f"p99 {s['single_p99_ms']:.1f} ms, median CPU {s['single_median_cpu_ms']:.1f} ms, "
                f"answers {s['single_answers']}; wildcard: {w['changed']}/{w['expected']} changed, "
                f"p99 {w['p99_ms']:.1f} ms, CPU {w['cpu_ms']:.1f} ms, answers {w['answers']}")
    summary = {}
    # CPU for the event: the window's CPU less the same window's idle CPU.
    event = lambda line: max(line["cpu_ms"] - line["idle_cpu_ms"], 0.0)  # noqa: E731
    for label, rs in results.items():
        summary[label] = {
            "single_p50_ms": median([r["single_p50_ms"] for r in rs]),
            "single_p99_ms": median([r["single_p99_ms"] for r in rs]),
            "single_cpu_ms": median([r["single_median_cpu_ms"] - r["wildcard"]["idle_cpu_ms"]
                                     for r in rs]),
            "wildcard_p99_ms": median([r["wildcard"]["p99_ms"] for r in rs]),
            "wildcard_cpu_ms": median([event(r["wildcard"]) for r in rs]),
            "idle_cpu_ms": median([r["wildcard"]["idle_cpu_ms"] for r in rs]),
        }
    b, a = summary["before"], summary["after"]
    summary["single_cpu_ratio"] = b["single_cpu_ms"] / max(a["single_cpu_ms"], 1e-9)
    summary["wildcard_cpu_ratio"] = b["wildcard_cpu_ms"] / max(a["wildcard_cpu_ms"], 1e-9)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
