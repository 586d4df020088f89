"""Time for a 3-server cluster with 1,000 services holding leaves to finish a
CA rotation (every leaf re-issued by the new root), with the default pending
period (5 s) and spread window (30 s), and the leader's peak CPU meanwhile.
Each service is a blocking leaf query, as a sidecar holds one: it wakes when
its leaf is re-issued and asks again. See bench/ca_rotation.sh."""

import asyncio
import json
import os

from benchlib import log, mesh_cluster, mesh_leader, now, request, wait_until

N = int(os.environ.get("BENCH_SERVICES", "1000"))


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def watcher(addr, svc, stop):
    host, port = addr.rsplit(":", 1)
    index = 0
    while not stop.is_set():
        reader, writer = await asyncio.open_connection(host, int(port))
        q = f"?index={index}&wait=120s" if index else ""
        writer.write(f"GET /v1/agent/connect/ca/leaf/{svc}{q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read()
        writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            # 429 past CSRMaxPerSecond (or 503 before the CA exists): back
            # off as a sidecar does, instead of spinning.
            await asyncio.sleep(0.2)
            continue
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"x-consul-index:"):
                index = int(line.split(b":")[1])


async def run(servers, leader):
    stop = asyncio.Event()
    # Spread the services over the servers, as sidecars spread over agents.
    tasks = [asyncio.create_task(watcher(servers[i % 3].http, f"svc{i}", stop)) for i in range(N)]

    def recorded():
        st, body = request("GET", leader.http, "/v1/connect/ca/rotation", timeout=5)
        return st == 200 and body

    # Wait until every leaf key is recorded (first issue).
    def all_issued():
        st, body = request("GET", leader.http, "/v1/connect/ca/roots", timeout=5)
        return st == 200
    wait_until("roots", all_issued, 60, 0.2)
    await asyncio.sleep(5)
    t0 = now()
    cpu0, peak, last_t, last_c = cpu_secs(leader.pid), 0.0, now(), cpu_secs(leader.pid)
    body = json.dumps({"Provider": "consul", "Config": {"PrivateKeyType": "ec", "PrivateKeyBits": 384}}).encode()
    st, out = request("PUT", leader.http, "/v1/connect/ca/configuration", body, timeout=30)
    assert st == 200, out
    status = {}
    while True:
        await asyncio.sleep(0.1)
        t, c = now(), cpu_secs(leader.pid)
        if t - last_t >= 1.0:
            peak = max(peak, (c - last_c) / (t - last_t))
            last_t, last_c = t, c
        st, body = request("GET", leader.http, "/v1/connect/ca/rotation", timeout=5)
        status = json.loads(body)
        if status.get("ActivatedAt") and status.get("Total", 0) >= N and status["Reissued"] == status["Total"]:
            break
        if now() - t0 > 300:
            raise RuntimeError(f"rotation did not finish: {status}")
    secs = now() - t0
    cpu = cpu_secs(leader.pid) - cpu0
    stop.set()
    for t in tasks:
        t.cancel()
    log(f"rotation with {status['Total']} leaves: done in {secs:.1f} s (5 s pending + 30 s spread window); "
        f"leader CPU {cpu:.1f} s total, peak {peak * 100:.0f}% of a core (1 s samples)")
    return {"leaves": status["Total"], "seconds": round(secs, 1), "leader_cpu_s": round(cpu, 1),
            "leader_peak_core_pct": round(peak * 100)}


def main():
    servers = mesh_cluster(3)
    leader = mesh_leader(servers)
    wait_until("CA", lambda: request("GET", leader.http, "/v1/connect/ca/roots", timeout=2)[0] == 200, 60, 0.2)
    print(json.dumps(asyncio.run(run(servers, leader)), indent=2))


if __name__ == "__main__":
    main()
