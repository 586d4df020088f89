"""mTLS on the server RPC port against plaintext, and etcd with peer TLS.

Three clusters run at once on loopback: mesh with a plaintext RPC port, mesh
with `tls { internal_rpc }` mTLS (verify_incoming, verify_outgoing,
verify_server_hostname; certificates from `mesh tls`), and etcd 3.4 whose
peers talk TLS with client certificates (the same CA). At each connection
count wrk writes to each leader in turn. Then the mTLS cluster's leader is
killed with -9, BENCH_RUNS times, and the first acknowledged write timed as
in failover.py.
"""

import os
import subprocess
import threading

from benchlib import (MESH, WORK, Mesh, kill_all, log, median, mesh_leader, now,
                      wait_agreed_leader)
from etcd import Etcd, etcd_leader
from failover import first_write
from kv_write import CONNS, DURATION, verify_etcd, verify_mesh, wrk

RUNS = int(os.environ.get("BENCH_RUNS", "3"))


def make_certs(dir):
    os.makedirs(dir, exist_ok=True)
    run = lambda *a: subprocess.run([MESH, "tls", *a], cwd=dir, check=True,  # noqa: E731
                                    capture_output=True)
    run("ca", "create")
    certs = []
    for i in range(1, 4):
        run("cert", "create", "-server", "-dc", "dc1", "-node", f"t{i}")
        certs.append((os.path.join(dir, f"dc1-server-consul-{i - 1}.pem"),
                      os.path.join(dir, f"dc1-server-consul-{i - 1}-key.pem")))
    return os.path.join(dir, "consul-agent-ca.pem"), certs


def tls_config(path, ca, cert, key):
    with open(path, "w") as f:
        f.write(f"""tls {{
  defaults {{
    ca_file = "{ca}"
    cert_file = "{cert}"
    key_file = "{key}"
    verify_incoming = true
    verify_outgoing = true
  }}
  internal_rpc {{
    verify_server_hostname = true
  }}
}}
""")
    return path


def cluster(prefix, extras):
    first = Mesh(f"{prefix}1", expect=3, extra=extras[0]).start()
    servers = [first]
    for i in (2, 3):
        servers.append(Mesh(f"{prefix}{i}", expect=3, join=first.serf, extra=extras[i - 1]).start())
    wait_agreed_leader(servers, 60)
    return servers


class TlsEtcd(Etcd):
    """An etcd member whose peer URLs are https with client certificates."""

    def __init__(self, name, client_port, peer_port, ca, cert, key):
        super().__init__(name, client_port, peer_port)
        self.tls = (ca, cert, key)

    def start(self, initial_cluster):
        from benchlib import spawn
        ca, cert, key = self.tls
        self.proc = spawn(f"etcd-{self.name}", [
            "etcd", f"--name={self.name}",
            f"--data-dir={os.path.join(WORK, 'etcd-' + self.name)}",
            f"--listen-client-urls=http://{self.client}",
            f"--advertise-client-urls=http://{self.client}",
            f"--listen-peer-urls=https://{self.peer}",
            f"--initial-advertise-peer-urls=https://{self.peer}",
            f"--initial-cluster={initial_cluster}",
            "--initial-cluster-token=mesh-bench-tls",
            "--initial-cluster-state=new",
            f"--peer-trusted-ca-file={ca}", f"--peer-cert-file={cert}",
            f"--peer-key-file={key}", "--peer-client-cert-auth",
            "--logger=zap", "--log-level=warn",
        ])


def etcd_tls_cluster(ca, certs):
    from benchlib import free_port
    members = [TlsEtcd(f"e{i}", free_port(), free_port(), ca, *certs[i - 1]) for i in range(1, 4)]
    initial = ",".join(f"{m.name}=https://{m.peer}" for m in members)
    for m in members:
        m.start(initial)
    etcd_leader(members, 60)
    return members


def failover_runs(servers, label, runs):
    times = []
    for run in range(1, runs + 1):
        leader = mesh_leader(servers)
        survivors = [s for s in servers if s is not leader]
        t0 = now()
        leader.kill()
        t, via = first_write(survivors, t0, f"{label}-{len(times)}-{now():.0f}")
        times.append(t)
        log(f"{label} failover run {run}: killed {leader.name}, first acknowledged write after {t:.3f} s via {via}")
        leader.start()
        wait_agreed_leader(servers, 60)
    return times


def main():
    ca, certs = make_certs(os.path.join(WORK, "pki"))
    log("starting mesh (plaintext RPC), mesh (mTLS RPC) and etcd (peer TLS)")
    plain = cluster("p", [[], [], []])
    tls = cluster("t", [[f"-config-file={tls_config(os.path.join(WORK, f't{i}.hcl'), ca, *certs[i - 1])}"]
                        for i in range(1, 4)])
    etcd = etcd_tls_cluster(ca, certs)
    targets = {
        "mesh": (mesh_leader(plain), plain, "mesh_put.lua"),
        "mesh-mtls": (mesh_leader(tls), tls, "mesh_put.lua"),
        "etcd-tls": (etcd_leader(etcd), etcd, "etcd_put.lua"),
    }
    urls = {
        "mesh": f"http://{targets['mesh'][0].http}",
        "mesh-mtls": f"http://{targets['mesh-mtls'][0].http}",
        "etcd-tls": f"http://{targets['etcd-tls'][0].client}",
    }
    pids = {
        "mesh": [s.pid for s in plain],
        "mesh-mtls": [s.pid for s in tls],
        "etcd-tls": [m.proc.pid for m in etcd],
    }
    everyone = sum(pids.values(), [])
    for name, (_, _, script) in targets.items():
        wrk(urls[name], script, 16, "warm", 3, [])
    results = {name: {} for name in targets}
    for conns in CONNS:
        for name, (_, _, script) in targets.items():
            r = wrk(urls[name], script, conns, f"bench-c{conns}", DURATION, pids[name], everyone)
            results[name][conns] = r
            log(f"{name:9} c={conns:<3} {r['writes_per_s']:8.0f} writes/s  p50 {r['p50_us'] / 1000:6.2f} ms"
                f"  p99 {r['p99_us'] / 1000:6.2f} ms  not-acked {r['bad']}  other CPU {r['foreign_cpu_s']:.1f} s")
    # Every acknowledged write is on a follower.
    for name, (leader, members, _) in targets.items():
        follower = next(m for m in members if m is not leader)
        verify = verify_etcd if name == "etcd-tls" else verify_mesh
        for conns in CONNS:
            verify(follower, f"bench-c{conns}", results[name][conns]["ok"])
    log("every acknowledged write is on a follower")
    # Failover of both mesh clusters, alternating, so each run of one has
    # a run of the other beside it.
    times = {"plain": [], "mtls": []}
    for _ in range(RUNS):
        for label, servers in (("plain", plain), ("mtls", tls)):
            times[label] += failover_runs(servers, label, 1)

    print("| connections | mesh writes/s | mesh mTLS writes/s | mTLS/plain | etcd peer-TLS writes/s "
          "| mesh mTLS/etcd TLS | p99 ms mesh / mTLS / etcd |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for conns in CONNS:
        p, t, e = (results[n][conns] for n in ("mesh", "mesh-mtls", "etcd-tls"))
        print(f"| {conns} | {p['writes_per_s']:,.0f} | {t['writes_per_s']:,.0f} "
              f"| {t['writes_per_s'] / p['writes_per_s']:.2f}× | {e['writes_per_s']:,.0f} "
              f"| {t['writes_per_s'] / e['writes_per_s']:.2f}× "
              f"| {p['p99_us'] / 1000:.1f} / {t['p99_us'] / 1000:.1f} / {e['p99_us'] / 1000:.1f} |")
    print()
    for label, ts in times.items():
        print(f"{label} failover, {len(ts)} runs: " + ", ".join(f"{t:.3f} s" for t in ts)
              + f"; median {median(ts):.3f} s")


if __name__ == "__main__":
    try:
        main()
    finally:
        kill_all()
