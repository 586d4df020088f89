"""Lock handoff: 16 contenders for one lock, on a 3-server mesh cluster
(`mesh lock`) and a 3-member etcd 3.4 cluster (`etcdctl lock`), in one run.

Every contender is a process that waits for the lock, runs a command that
stamps its start and end times (holding the lock 20 ms), and releases it.
The handoff is the time from one holder's end stamp to the next holder's
start stamp: release, the waiters' wake-up, the next acquire and the
command's start, the same steps on both. Rounds alternate mesh, etcd.
"""

import os
import subprocess
import time

from benchlib import WORK, log, mesh_cluster, mesh_leader
from etcd import etcd_cluster, etcd_leader

CONTENDERS = int(os.environ.get("BENCH_CONTENDERS", "16"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
MESH = os.environ["MESH_BIN"]
STAMP = "date +%s.%N >> {f}; sleep 0.02; date +%s.%N >> {f}"


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def run_round(argv_for, stamps):
    """Starts every contender at once; returns the handoff gaps in ms."""
    if os.path.exists(stamps):
        os.remove(stamps)
    procs = [subprocess.Popen(argv_for(STAMP.format(f=stamps)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(CONTENDERS)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"a contender failed ({p.returncode}): {err.decode()[-400:]}")
    times = [float(line) for line in open(stamps)]
    if len(times) != 2 * CONTENDERS:
        raise RuntimeError(f"{len(times)} stamps, not {2 * CONTENDERS}")
    pairs = [(times[i], times[i + 1]) for i in range(0, len(times), 2)]
    for (s1, e1), (s2, _) in zip(pairs, pairs[1:]):
        if s2 < e1:
            raise RuntimeError("two holders at once")
    return [(s2 - e1) * 1000 for (_, e1), (s2, _) in zip(pairs, pairs[1:])]


def main():
    servers = mesh_cluster(3)
    leader = mesh_leader(servers)
    members = etcd_cluster(3)
    etcd_lead = etcd_leader(members)

    def mesh_argv(cmd):
        return [MESH, "lock", "bench/lock", cmd]

    def etcd_argv(cmd):
        return ["etcdctl", f"--endpoints={etcd_lead.client}", "lock", "bench-lock",
                "--", "sh", "-c", cmd]

    os.environ["MESH_HTTP_ADDR"] = leader.http
    os.environ["ETCDCTL_API"] = "3"
    gaps = {"mesh": [], "etcd": []}
    for r in range(ROUNDS):
        for name, argv in (("mesh", mesh_argv), ("etcd", etcd_argv)):
            t0 = time.time()
            gaps[name] += run_round(argv, os.path.join(WORK, f"{name}.stamps"))
            log(f"round {r + 1} {name}: {time.time() - t0:.1f}s")
    print(f"lock handoff, {CONTENDERS} contenders, {ROUNDS} rounds "
          f"({len(gaps['mesh'])} handoffs each), ms:")
    print(f"{'':6} {'p50':>8} {'p99':>8} {'max':>8}")
    for name in ("mesh", "etcd"):
        g = gaps[name]
        print(f"{name:6} {percentile(g, 50):8.1f} {percentile(g, 99):8.1f} {max(g):8.1f}")
    ratio = percentile(gaps["etcd"], 50) / percentile(gaps["mesh"], 50)
    print(f"p50 etcd/mesh: {ratio:.2f}x (above 1: mesh hands off faster)")


if __name__ == "__main__":
    main()
