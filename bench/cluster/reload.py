"""mesh.d reload latency and cost (see bench/reload.sh, docs/benchmarks.md).

1. Edit-to-visible: a file with one intention is replaced by atomic rename
   100 times (allow <-> deny); each time we measure until every node's own
   state (?stale) shows the new action. 3 servers (files on s1), then one
   -dev agent.
2. No-op reload cost: 1,000 services and 1,000 intentions in 100 files on a
   -dev agent; PUT /v1/agent/reload 20 times with nothing changed: wall
   time and the agent's CPU time per reload.
"""

import json
import os

from benchlib import (Mesh, echo_server, free_port, log, median, mesh_cluster, now, request,  # noqa: E402
                      roundtrip, wait_until, WORK)

EDITS = int(os.environ.get("BENCH_EDITS", "100"))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def write_atomic(path, text):
    tmp = path + ".tmp~"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def action_on(addr):
    st, body = request("GET", addr, "/v1/connect/intentions/exact?source=web&destination=api&stale",
                       timeout=2)
    return json.loads(body).get("Action") if st == 200 else None


def edits(conf_dir, nodes):
    path = os.path.join(conf_dir, "web.hcl")
    lat = []
    for i in range(EDITS + 1):
        want = "deny" if i % 2 else "allow"
        t0 = now()
        write_atomic(path, f'intention "web" "api" {{\n  action = "{want}"\n}}\n')
        wait_until("edit visible on every node",
                   lambda: all(action_on(n.http) == want for n in nodes), 10, 0.001)
        if i:  # the first write only creates the object
            lat.append((now() - t0) * 1000)
    return lat


def report(name, lat):
    log(f"{name}: edits={len(lat)} p50={median(lat):.1f} ms p99={pct(lat, 99):.1f} ms "
        f"max={max(lat):.1f} ms")
    return {"p50_ms": round(median(lat), 1), "p99_ms": round(pct(lat, 99), 1)}


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def file_to_cut(runs=30):
    """Rename an intention file from allow to deny; time until a live
    connection through the managed sidecars is closed."""
    import socket
    conf = os.path.join(WORK, "cut.d")
    os.makedirs(conf)
    db = echo_server()
    ports = [free_port() for _ in range(3)]
    with open(os.path.join(conf, "agent.hcl"), "w") as f:
        f.write('acl {\n  default_policy = "deny"\n}\nconnect {\n  managed_sidecars = true\n}\n')
    with open(os.path.join(conf, "services.hcl"), "w") as f:
        f.write(f"""
service {{
  name = "db"
  id = "db"
  address = "127.0.0.1"
  port = {db}
  connect {{
    sidecar_service {{
      address = "127.0.0.1"
      port = {ports[0]}
    }}
  }}
}}
service {{
  name = "web"
  id = "web"
  port = 1
  connect {{
    sidecar_service {{
      address = "127.0.0.1"
      port = {ports[1]}
      proxy {{
        upstreams = [{{ destination_name = "db", local_bind_port = {ports[2]} }}]
      }}
    }}
  }}
}}
""")
    path = os.path.join(conf, "intentions.hcl")
    agent = Mesh("cut", expect=1, extra=["-dev", f"-config-dir={conf}"]).start()
    lat = []
    for _ in range(runs):
        write_atomic(path, 'intention "web" "db" {\n  action = "allow"\n}\n')
        wait_until("allowed", lambda: roundtrip(ports[2]), 20, 0.01)
        live = socket.create_connection(("127.0.0.1", ports[2]), timeout=5)
        live.sendall(b"ping")
        assert live.recv(4) == b"ping"
        t0 = now()
        write_atomic(path, 'intention "web" "db" {\n  action = "deny"\n}\n')
        try:
            data = live.recv(4)
        except OSError:
            data = b""
        assert data == b"", data
        lat.append((now() - t0) * 1000)
        live.close()
    agent.kill()
    return report("file rename -> live connection closed (1 node)", lat)


def main():
    out = {}
    # 3 servers; the watched dir is on s1.
    conf = os.path.join(WORK, "conf3")
    os.makedirs(conf)
    servers = mesh_cluster(3, extra=[])
    # Files on a server: restart s1 (same ports and data) with the config dir.
    servers[0].kill()
    servers[0].extra = [f"-config-dir={conf}"]
    servers[0].start()
    out["3 nodes"] = report("3 nodes", edits(conf, servers))
    for s in servers:
        s.kill()

    conf1 = os.path.join(WORK, "conf1")
    os.makedirs(conf1)
    dev = Mesh("dev", expect=1, extra=["-dev", f"-config-dir={conf1}"]).start()
    out["1 node"] = report("1 node", edits(conf1, [dev]))
    dev.kill()

    # No-op reload with 1,000 services + 1,000 intentions in 100 files.
    big = os.path.join(WORK, "big.d")
    os.makedirs(big)
    for f in range(100):
        parts = []
        for j in range(10):
            n = f * 10 + j
            parts.append(f'service {{\n  name = "svc{n}"\n  id = "svc{n}"\n  port = {20000 + n}\n}}\n')
            parts.append(f'intention "src{n}" "svc{n}" {{\n  action = "allow"\n}}\n')
        with open(os.path.join(big, f"f{f:03}.hcl"), "w") as fh:
            fh.write("".join(parts))
    agent = Mesh("big", expect=1, extra=["-dev", f"-config-dir={big}"]).start()

    def applied():
        st, body = request("GET", agent.http, "/v1/agent/self", timeout=5)
        s = json.loads(body).get("ConfigStatus") or {}
        return s.get("Ok") and len(s.get("Changes", [])) == 2000 and s

    first = wait_until("first apply of 2,000 objects", applied, 120, 0.1)
    log(f"initial apply of 2,000 objects: {first['DurationMs']:.1f} ms")
    walls, cpus, inner = [], [], []
    for _ in range(20):
        c0, t0 = cpu_secs(agent.pid), now()
        st, body = request("PUT", agent.http, "/v1/agent/reload", timeout=30)
        assert st == 200, body
        walls.append((now() - t0) * 1000)
        cpus.append((cpu_secs(agent.pid) - c0) * 1000)
        status = json.loads(body)
        assert status["Changes"] == [], status["Changes"][:3]
        inner.append(status["DurationMs"])
    log(f"no-op reload, 1,000 services + 1,000 intentions in 100 files: wall p50={median(walls):.1f} ms "
        f"max={max(walls):.1f} ms, reload itself p50={median(inner):.1f} ms, agent CPU p50={median(cpus):.1f} ms")
    out["noop_reload"] = {"wall_p50_ms": round(median(walls), 1), "inner_p50_ms": round(median(inner), 1),
                          "cpu_p50_ms": round(median(cpus), 1), "initial_apply_ms": round(first["DurationMs"], 1)}
    agent.kill()
    out["file_to_cut"] = file_to_cut()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
