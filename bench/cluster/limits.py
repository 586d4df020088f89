"""Hostile-input limits, measured (see bench/limits.sh, docs/benchmarks.md).

1. Before/after: replicated writes (3 servers, wrk -c16 PUTs to the leader)
   and the health read (GET /v1/health/service/web?passing, 100 instances,
   wrk -c64) on the build before the limits ($MESH_BASE_BIN) and the
   current one ($MESH_BIN), interleaved round by round, with etcd 3.4 in the
   same run as the peer (3-member put, 1-member serializable range).
2. Under attack: the health read on the current build, alone and while
   2,000 connections from ten other loopback addresses (200 each, the
   per-client limit) hold the HTTP port open, half idle and half trickling
   a request line a byte at a time; interleaved rounds, ratio attacked/calm.

Every wrk run must answer 2xx only, or the run fails.
"""

import base64
import json
import os
import re
import socket
import subprocess
import threading
import time

import benchlib
from benchlib import (Mesh, free_port, kill_all, log, median, mesh_leader, request, wait_agreed_leader,
                      wait_until)
from etcd import Etcd, etcd_cluster, etcd_leader

HERE = os.path.dirname(os.path.abspath(__file__))
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BUILDS = {"before": os.environ["MESH_BASE_BIN"], "after": os.environ["MESH_BIN"]}


def cpu_s(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url, conns, script=None, args=(), pid=None):
    """req/s of one wrk run (and, given the server's pid, its CPU µs per
    request); a non-2xx answer or a socket error fails it."""
    cmd = ["wrk", f"-t{min(conns, 2)}", f"-c{conns}", f"-d{DURATION}s", "--timeout", "5s"]
    if script:
        cmd += ["-s", os.path.join(HERE, script)]
    cmd.append(url)
    if args:
        cmd += ["--", *args]
    cpu0 = cpu_s(pid) if pid else 0
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=DURATION + 60).stdout
    cpu = cpu_s(pid) - cpu0 if pid else 0
    if script and "BENCH " in out:
        r = json.loads(next(l for l in out.splitlines() if l.startswith("BENCH "))[6:])
        assert r["bad"] == 0 and not any(r["errors"].values()), out
        return r["ok"] / (r["duration_us"] / 1e6)
    assert "Non-2xx" not in out and "Socket errors" not in out, out
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    if pid:
        n = int(re.search(r"(\d+) requests in", out).group(1))
        return rps, cpu * 1e6 / n
    return rps


def register_web(addr):
    for i in range(100):
        body = json.dumps({
            "Node": f"node{i % 10}", "Address": "10.0.0.1",
            "Service": {"ID": f"web-{i}", "Service": "web", "Port": 8000 + i},
            "Check": {"CheckID": f"web-{i}-ok", "Name": "ok", "Status": "passing", "ServiceID": f"web-{i}"},
        }).encode()
        st, out = request("PUT", addr, "/v1/catalog/register", body, timeout=10)
        assert st == 200, out


def cluster(tag):
    """3 servers with fresh data dirs named after `tag`."""
    first = Mesh(f"{tag}-s1", expect=3).start()
    servers = [first] + [Mesh(f"{tag}-s{i}", expect=3, join=first.serf).start() for i in (2, 3)]
    wait_agreed_leader(servers, 60)
    return servers


def before_after():
    results = {b: {"writes": [], "reads": [], "cpu_us": []} for b in BUILDS}
    peer = {"writes": [], "reads": []}
    etcds = etcd_cluster(3)
    e_leader = etcd_leader(etcds)
    single = Etcd("r1", free_port(), free_port())
    single.start(f"r1=http://{single.peer}")
    wait_until("etcd up", single.status, 30, 0.1)
    value = base64.b64encode(b"x" * 200).decode()
    for i in range(100):
        key = base64.b64encode(f"/web/{i:03}".encode()).decode()
        st, _ = request("POST", single.client, "/v3/kv/put", json.dumps({"key": key, "value": value}).encode())
        assert st == 200
    for r in range(ROUNDS):
        for build, binary in BUILDS.items():
            benchlib.MESH = binary
            servers = cluster(f"{build}{r}")
            leader = mesh_leader(servers)
            w = wrk(f"http://{leader.http}", 16, "mesh_put.lua", [f"r{r}{build}"])
            for s in servers:
                s.kill()
            dev = Mesh(f"dev-{build}-{r}", expect=1, extra=["-dev"]).start()
            register_web(dev.http)
            rd, cpu = wrk(f"http://{dev.http}/v1/health/service/web?passing", 64, pid=dev.pid)
            dev.kill()
            results[build]["writes"].append(w)
            results[build]["reads"].append(rd)
            results[build]["cpu_us"].append(cpu)
            log(f"round {r + 1} {build}: {w:,.0f} writes/s, {rd:,.0f} health reads/s ({cpu:.1f} µs CPU each)")
        ew = wrk(f"http://{e_leader.client}", 16, "etcd_put.lua", [f"e{r}"])
        er = wrk(f"http://{single.client}/v3/kv/range", 64, "etcd_range.lua")
        peer["writes"].append(ew)
        peer["reads"].append(er)
        log(f"round {r + 1} etcd: {ew:,.0f} writes/s, {er:,.0f} range reads/s")
    for e in etcds + [single]:
        e.proc.kill()
    return results, peer


def attacker(port, stop, opened):
    """2,000 connections from 127.0.0.2-11: half idle, half trickling."""
    socks = []
    for a in range(10):
        for i in range(200):
            s = socket.socket()
            s.bind((f"127.0.0.{2 + a}", 0))
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            s.setblocking(False)
            socks.append((s, i % 2 == 0))
    opened.set()
    line = b"GET /v1/health/service/web HTTP/1.1\r\nX-Slow: "
    n = 0
    while not stop.is_set():
        for s, trickle in socks:
            if trickle:
                try:
                    s.send(line[n % len(line):n % len(line) + 1])
                except OSError:
                    pass
        n += 1
        # Re-open what the server closed, so the pressure holds all along.
        for k, (s, trickle) in enumerate(socks):
            try:
                if s.recv(1, socket.MSG_PEEK) == b"":
                    raise OSError
            except BlockingIOError:
                continue
            except OSError:
                pass
            s.close()
            fresh = socket.socket()
            fresh.bind((f"127.0.0.{2 + k // 200}", 0))
            try:
                fresh.connect(("127.0.0.1", port))
                fresh.setblocking(False)
                socks[k] = (fresh, trickle)
            except OSError:
                fresh.close()
        time.sleep(0.2)
    for s, _ in socks:
        s.close()


def under_attack():
    benchlib.MESH = BUILDS["after"]
    dev = Mesh("attacked", expect=1, extra=["-dev"]).start()
    register_web(dev.http)
    port = int(dev.http.rsplit(":", 1)[1])
    url = f"http://{dev.http}/v1/health/service/web?passing"
    calm, attacked = [], []
    for r in range(ROUNDS):
        calm.append(wrk(url, 64, pid=dev.pid)[0])
        stop, opened = threading.Event(), threading.Event()
        t = threading.Thread(target=attacker, args=(port, stop, opened), daemon=True)
        t.start()
        opened.wait(60)
        rss = benchlib.rss_kb(dev.pid)
        attacked.append(wrk(url, 64, pid=dev.pid)[0])
        stop.set()
        t.join(30)
        log(f"round {r + 1}: calm {calm[-1]:,.0f} req/s, under 2,000 slow connections "
            f"{attacked[-1]:,.0f} req/s, agent RSS {rss / 1024:.0f} MiB")
    dev.kill()
    return calm, attacked


def main():
    results, peer = before_after()
    calm, attacked = under_attack()
    print("| figure | before | after | after/before (median of rounds' ratios) | etcd (same run) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for kind, label in (("writes", "replicated writes/s (c16)"), ("reads", "health reads/s (c64)"),
                        ("cpu_us", "agent CPU µs per health read")):
        b, a = median(results["before"][kind]), median(results["after"][kind])
        ratio = median([x / y for x, y in zip(results["after"][kind], results["before"][kind])])
        p = f"{median(peer[kind]):,.0f}" if kind in peer else "—"
        print(f"| {label} | {b:,.1f} | {a:,.1f} | {ratio:.2f}× | {p} |")
    print()
    print(f"- per round before: {results['before']}")
    print(f"- per round after: {results['after']}")
    print(f"- per round etcd: {peer}")
    print()
    c, a = median(calm), median(attacked)
    print(f"| health reads/s (c64) | calm | under 2,000 slow connections | attacked/calm |")
    print("| --- | ---: | ---: | ---: |")
    paired = median([x / y for x, y in zip(attacked, calm)])
    print(f"| mesh (after) | {c:,.0f} | {a:,.0f} | {paired:.2f}× |")
    print(f"- per round calm {[round(x) for x in calm]}, attacked {[round(x) for x in attacked]}")


if __name__ == "__main__":
    try:
        main()
    finally:
        kill_all()
