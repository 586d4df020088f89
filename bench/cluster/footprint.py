"""Footprint: idle RSS and `mesh agent -dev` time to ready.

1. A 3-server cluster; 10 s after all agree on a leader, VmRSS of each
   server (and, for context, of each member of an idle 3-member etcd).
2. An idle `-dev` agent's VmRSS 10 s after it leads.
3. `-dev` time to ready, 10 runs: from just before exec to the first
   `GET /v1/status/leader` answering a non-empty leader, polled every 2 ms.
   Ports are given explicitly (free ones) so nothing collides with other
   agents on the machine; DNS and gRPC are off as in the other benchmarks.
"""

import json
import os
import time

from benchlib import (MESH, WORK, free_port, kill9, kill_all, log, median, mesh_cluster,
                      mesh_leader, now, request, rss_kb, spawn, wait_until)
from etcd import etcd_cluster

RUNS = int(os.environ.get("BENCH_RUNS", "10"))
IDLE = 10
RSS_TARGET_MB = 30
READY_TARGET_MS = 200


def dev_argv(http_port):
    return [MESH, "agent", "-dev", f"-http-port={http_port}",
            f"-serf-lan-port={free_port(udp_too=True)}", f"-server-port={free_port()}",
            "-dns-port=-1", "-grpc-port=-1"]


def leader_at(addr):
    try:
        st, body = request("GET", addr, "/v1/status/leader", timeout=0.5)
    except OSError:
        return None, False
    return (json.loads(body) if st == 200 else ""), True


def time_to_ready(i):
    port = free_port()
    addr = f"127.0.0.1:{port}"
    argv = dev_argv(port)
    t0 = now()
    p = spawn(f"dev-{i}", argv)
    http_up = None
    try:
        while now() - t0 < 10:
            lead, answered = leader_at(addr)
            if answered and http_up is None:
                http_up = now() - t0
            if lead:
                return now() - t0, http_up
            if p.poll() is not None:
                raise RuntimeError(f"-dev agent exited with {p.returncode}; see {WORK}/dev-{i}.log")
            time.sleep(0.002)
        raise TimeoutError("-dev agent not ready within 10 s")
    finally:
        kill9(p)


def mb(kb):
    return kb / 1024


def main():
    out = {}
    servers = mesh_cluster(3)
    leader = mesh_leader(servers)
    members = etcd_cluster(3)
    time.sleep(IDLE)
    out["servers_kb"] = {("leader " if s is leader else "") + s.name: rss_kb(s.pid) for s in servers}
    out["etcd_kb"] = {m.name: rss_kb(m.proc.pid) for m in members}
    for s in servers:
        s.kill()
    for m in members:
        kill9(m.proc)

    port = free_port()
    dev = spawn("dev-idle", dev_argv(port))
    wait_until("-dev agent leads", lambda: leader_at(f"127.0.0.1:{port}")[0], 30, 0.01)
    time.sleep(IDLE)
    out["dev_kb"] = rss_kb(dev.pid)
    kill9(dev)

    runs = [time_to_ready(i) for i in range(1, RUNS + 1)]
    out["ready_s"] = [r for r, _ in runs]
    out["http_up_s"] = [h for _, h in runs]
    ready_ms = 1000 * median(out["ready_s"])
    http_ms = 1000 * median([h for h in out["http_up_s"] if h is not None])
    worst = mb(max(out["servers_kb"].values()))

    verdict = lambda ok, miss: "meets" if ok else f"misses by {miss}"  # noqa: E731
    print("| measure | mesh | target | context |")
    print("| --- | ---: | ---: | --- |")
    servers_txt = ", ".join(f"{k} {mb(v):.1f}" for k, v in out["servers_kb"].items())
    etcd_txt = ", ".join(f"{k} {mb(v):.1f}" for k, v in out["etcd_kb"].items())
    print(f"| idle server RSS, 3-server cluster, {IDLE} s after forming (max of 3) | {worst:.1f} MB "
          f"| ≤ {RSS_TARGET_MB} MB: {verdict(worst <= RSS_TARGET_MB, f'{worst - RSS_TARGET_MB:.1f} MB')} "
          f"| each: {servers_txt} MB; idle etcd 3.4 members: {etcd_txt} MB |")
    dev_mb = mb(out["dev_kb"])
    print(f"| idle `-dev` agent RSS | {dev_mb:.1f} MB | ≤ {RSS_TARGET_MB} MB: "
          f"{verdict(dev_mb <= RSS_TARGET_MB, f'{dev_mb - RSS_TARGET_MB:.1f} MB')} | |")
    each = ", ".join(f"{1000 * r:.0f}" for r in out["ready_s"])
    print(f"| `-dev` exec → leader answered on HTTP, median of {RUNS} | {ready_ms:.0f} ms "
          f"| ≤ {READY_TARGET_MS} ms: {verdict(ready_ms <= READY_TARGET_MS, f'{ready_ms - READY_TARGET_MS:.0f} ms')} "
          f"| each: {each} ms; HTTP first answered (median): {http_ms:.0f} ms |")
    with open(os.path.join(os.environ.get("BENCH_RESULTS", WORK), "footprint.json"), "w") as f:
        json.dump(out, f, indent=1)
    log("done")


if __name__ == "__main__":
    try:
        main()
    finally:
        kill_all()
