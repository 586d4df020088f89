"""Replicated writes: a 3-server mesh cluster vs a 3-member etcd 3.4 cluster.

Both clusters run at once on loopback and are measured alternately at each
connection count (mesh, then etcd), so load from other work on the machine
hits both alike. Writes go to each cluster's leader. Afterwards a follower
must hold (stale read) at least as many keys as were acknowledged, with the
right value, and strace counts the fsyncs each leader makes per write.
"""

import json
import os
import subprocess
import sys
import time

from benchlib import (WORK, kill_all, log, mesh_cluster, mesh_leader, request,
                      wait_until)
from etcd import etcd_cluster, etcd_count, etcd_leader, etcd_sample

HERE = os.path.dirname(os.path.abspath(__file__))
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
CONNS = [int(c) for c in os.environ.get("BENCH_CONNS", "1 16 64").split()]
VALUE = b"v" * 64


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_seconds():
    """CPU time the whole machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wrk(url, script, conns, prefix, duration, pids, all_pids=()):
    """One wrk run; server CPU is summed over `pids`; `foreign_cpu_s` is what
    the rest of the machine (not wrk, not any of `all_pids`) used meanwhile."""
    threads = min(conns, 2)
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", "5s",
           "-s", os.path.join(HERE, script), url, "--", prefix]
    ours = sorted(set(pids) | set(all_pids))
    cpu0 = {p: cpu_seconds(p) for p in ours}
    busy0, kids0 = busy_seconds(), os.times()
    load = open("/proc/loadavg").read().split()[0]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    busy, kids = busy_seconds() - busy0, os.times()
    delta = {p: cpu_seconds(p) - cpu0[p] for p in ours}
    cpu = sum(delta[p] for p in pids)
    wrk_cpu = (kids.children_user - kids0.children_user) + (kids.children_system - kids0.children_system)
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    r = json.loads(line[6:])
    r["cmd"] = " ".join(cmd)
    r["writes_per_s"] = r["ok"] / (r["duration_us"] / 1e6)
    r["server_cpu_s"] = cpu
    r["wrk_cpu_s"] = wrk_cpu
    r["foreign_cpu_s"] = max(0.0, busy - sum(delta.values()) - wrk_cpu)
    r["load_before"] = float(load)
    return r


def mesh_keys(server, prefix):
    st, body = request("GET", server.http, f"/v1/kv/{prefix}/?keys&stale", timeout=30)
    return json.loads(body) if st == 200 else []


def verify_mesh(follower, prefix, acked):
    keys = wait_until(f"{acked} keys under {prefix}/ on follower {follower.name}",
                      lambda: (lambda k: k if len(k) >= acked else None)(mesh_keys(follower, prefix)),
                      30, 0.5)
    step = max(1, len(keys) // 20)
    for key in keys[::step][:20]:
        st, body = request("GET", follower.http, f"/v1/kv/{key}?raw&stale", timeout=5)
        assert st == 200 and body == VALUE, f"{key} on {follower.name}: {st} {body[:80]!r}"
    return len(keys)


def verify_etcd(follower, prefix, acked):
    count = wait_until(f"{acked} keys under {prefix}/ on etcd follower {follower.name}",
                       lambda: (lambda c: c if c >= acked else None)(etcd_count(follower, prefix)),
                       30, 0.5)
    for key, value in etcd_sample(follower, prefix):
        assert value == VALUE, f"{key} on {follower.name}: {value[:80]!r}"
    return count


def fsyncs_per_write(url, script, pid, prefix):
    """Sync calls made by `pid` (all threads) per acknowledged write, 3 s at 16 conns."""
    trace = os.path.join(WORK, f"strace-{prefix}.txt")
    st = subprocess.Popen(["strace", "-f", "-c", "-o", trace, "-e",
                           "trace=fsync,fdatasync,sync_file_range,sync", "-p", str(pid)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    r = wrk(url, script, 16, prefix, 3, [])
    st.terminate()
    st.wait(timeout=30)
    calls = 0
    for line in open(trace):
        parts = line.split()
        if parts and parts[-1] in ("fsync", "fdatasync", "sync_file_range", "sync"):
            calls += int(parts[3])
    return calls, r["ok"]


def main():
    results = {"mesh": {}, "etcd": {}}
    log("starting 3 mesh servers and 3 etcd members")
    servers = mesh_cluster(3)
    leader = mesh_leader(servers)
    members = etcd_cluster(3)
    eleader = etcd_leader(members)
    mesh_url = f"http://{leader.http}"
    etcd_url = f"http://{eleader.client}"
    mesh_pids = [s.pid for s in servers]
    etcd_pids = [m.proc.pid for m in members]
    log(f"mesh leader {leader.name} {leader.http}; etcd leader {eleader.name} {eleader.client}")

    # Warm both up (connections, memtables, page cache) outside the figures.
    wrk(mesh_url, "mesh_put.lua", 16, "warm", 3, [])
    wrk(etcd_url, "etcd_put.lua", 16, "warm", 3, [])

    for conns in CONNS:
        for system, url, script, pids in (("mesh", mesh_url, "mesh_put.lua", mesh_pids),
                                          ("etcd", etcd_url, "etcd_put.lua", etcd_pids)):
            prefix = f"bench-c{conns}"
            r = wrk(url, script, conns, prefix, DURATION, pids, mesh_pids + etcd_pids)
            results[system][conns] = r
            log(f"{system:4} c={conns:<3} {r['writes_per_s']:8.0f} writes/s  p50 {r['p50_us'] / 1000:7.2f} ms"
                f"  p99 {r['p99_us'] / 1000:7.2f} ms  not-acked {r['bad']}  errors {r['errors']}"
                f"  server CPU {r['server_cpu_s']:.1f} s  wrk CPU {r['wrk_cpu_s']:.1f} s"
                f"  other processes' CPU {r['foreign_cpu_s']:.1f} s")

    # The leaders must not have moved, or the figures mix in forwarding.
    assert mesh_leader(servers) is leader, "mesh leader changed during the run"
    assert etcd_leader(members) is eleader, "etcd leader changed during the run"

    follower = next(s for s in servers if s is not leader)
    efollower = next(m for m in members if m is not eleader)
    for conns in CONNS:
        prefix = f"bench-c{conns}"
        for system, verify, node in (("mesh", verify_mesh, follower),
                                     ("etcd", verify_etcd, efollower)):
            r = results[system][conns]
            r["follower_keys"] = verify(node, prefix, r["ok"])
            log(f"{system} c={conns}: {r['ok']} acknowledged, {r['follower_keys']} keys on follower {node.name}")

    sync = {}
    for system, url, script, pid in (("mesh", mesh_url, "mesh_put.lua", leader.pid),
                                     ("etcd", etcd_url, "etcd_put.lua", eleader.proc.pid)):
        calls, writes = fsyncs_per_write(url, script, pid, f"sync-{system}")
        sync[system] = {"sync_calls": calls, "writes": writes}
        log(f"{system}: leader made {calls} sync calls for {writes} writes (under strace, 16 conns, 3 s)")

    report(results, sync)


def report(results, sync):
    print("| connections | mesh writes/s | etcd writes/s | mesh/etcd | mesh p50 ms | etcd p50 ms "
          "| mesh p99 ms | etcd p99 ms | p99 mesh/etcd | server CPU ms per 1k writes mesh / etcd |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for conns in CONNS:
        m, e = results["mesh"][conns], results["etcd"][conns]
        cpu = lambda r: 1e6 * r["server_cpu_s"] / max(r["ok"], 1)  # noqa: E731
        print(f"| {conns} | {m['writes_per_s']:,.0f} | {e['writes_per_s']:,.0f} "
              f"| {m['writes_per_s'] / e['writes_per_s']:.2f}× "
              f"| {m['p50_us'] / 1000:.2f} | {e['p50_us'] / 1000:.2f} "
              f"| {m['p99_us'] / 1000:.2f} | {e['p99_us'] / 1000:.2f} "
              f"| {m['p99_us'] / max(e['p99_us'], 1):.2f}× | {cpu(m):.0f} / {cpu(e):.0f} |")
    print()
    for system in ("mesh", "etcd"):
        for conns in CONNS:
            r = results[system][conns]
            print(f"- {system} c={conns}: {r['ok']} acknowledged, {r['bad']} not, wrk errors {r['errors']}, "
                  f"{r['follower_keys']} keys on a follower (stale read); CPU used by other processes on the "
                  f"machine meanwhile {r['foreign_cpu_s']:.1f} s of {os.cpu_count() * r['duration_us'] / 1e6:.0f} CPU-s")
    for system, s in sync.items():
        print(f"- {system} leader: {s['sync_calls']} fsync/fdatasync calls for {s['writes']} writes "
              f"({s['writes'] / max(s['sync_calls'], 1):.1f} writes per sync, under strace)")
    with open(os.path.join(os.environ.get("BENCH_RESULTS", WORK), "kv_write.json"), "w") as f:
        json.dump({"results": results, "sync": sync}, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    finally:
        kill_all()
