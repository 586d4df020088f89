"""ADS push fan-out (see bench/xds_fan_out.sh, docs/benchmarks.md).

Each run starts one real server (fsynced Raft log) serving xDS, lets
`ads_fan_out` register the proxies, open one ADS stream per proxy (delta,
then in a second run state of the world) and add endpoints, then stops
the server.
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
FAN_OUT = os.environ["ADS_FAN_OUT_BIN"]


def one(mode, run):
    # Every stream comes from 127.0.0.1 on its own connection, as Envoys
    # on one host do: lift the per-client connection cap above their number.
    limits = os.path.join(benchlib.WORK, "limits.hcl")
    with open(limits, "w") as f:
        f.write("limits {\n  http_max_conns_per_client = 10000\n}\n")
    m = Mesh(f"{mode}-{run}", server=True, expect=1, grpc=True,
             extra=[f"-config-file={limits}"]).start()
    wait_until("a leader", lambda: m.leader(), 30)
    out = subprocess.run([FAN_OUT, m.http, m.grpc_addr, str(m.pid), PROXIES, SERVICES, ROUNDS, mode],
                         capture_output=True, text=True, timeout=900,
                         env=dict(os.environ, RUST_BACKTRACE="0"))
    m.kill()
    if out.returncode != 0:
        raise RuntimeError(f"ads_fan_out failed: {out.stderr[-2000:]}")
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    for line in lines[:-1]:
        log(mode, json.dumps(line))
    return lines[-1]


def main():
    results = {"delta": [], "sotw": []}
    for run in range(RUNS):
        for mode in results:
            s = one(mode, run)
            results[mode].append(s)
            log(f"{mode} run {run}: p50 {s['p50_ms']:.1f} ms p99 {s['p99_ms']:.1f} ms, "
                f"CPU {s['median_event_cpu_ms']:.1f} ms, responses {s['responses_per_change']:.0f}, "
                f"RSS {s['rss_per_stream_kb']:.1f} KB/stream")
    # The floor: as many idle HTTP/2 connections with no stream.
    floor = one("connections", 0)
    log(f"connections: RSS {floor['rss_per_connection_kb']:.1f} KB per idle connection")
    # The transport's floor per stream: one ADS stream per connection that
    # has sent nothing, so mesh holds no state for it.
    bare = one("bare-streams", 0)
    log(f"bare streams: RSS {bare['rss_per_stream_kb']:.1f} KB per idle stream")
    summary = {mode: {
        "p50_ms": median([r["p50_ms"] for r in rs]),
        "p99_ms": median([r["p99_ms"] for r in rs]),
        "event_cpu_ms": median([r["median_event_cpu_ms"] for r in rs]),
        "responses_per_change": median([r["responses_per_change"] for r in rs]),
        "rss_per_stream_kb": median([r["rss_per_stream_kb"] for r in rs]),
    } for mode, rs in results.items()}
    summary["floor_rss_per_connection_kb"] = floor["rss_per_connection_kb"]
    summary["floor_rss_per_bare_stream_kb"] = bare["rss_per_stream_kb"]
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
