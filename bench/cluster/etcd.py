"""A 3-member etcd 3.4 cluster on loopback, fsyncing as it does by default."""

import base64
import json
import os

from benchlib import WORK, request, spawn, free_port, wait_until


class Etcd:
    def __init__(self, name, client_port, peer_port):
        self.name = name
        self.client = f"127.0.0.1:{client_port}"
        self.peer = f"127.0.0.1:{peer_port}"
        self.proc = None

    def start(self, initial_cluster):
        self.proc = spawn(f"etcd-{self.name}", [
            "etcd", f"--name={self.name}",
            f"--data-dir={os.path.join(WORK, 'etcd-' + self.name)}",
            f"--listen-client-urls=http://{self.client}",
            f"--advertise-client-urls=http://{self.client}",
            f"--listen-peer-urls=http://{self.peer}",
            f"--initial-advertise-peer-urls=http://{self.peer}",
            f"--initial-cluster={initial_cluster}",
            "--initial-cluster-token=mesh-bench",
            "--initial-cluster-state=new",
            "--logger=zap", "--log-level=warn",
        ])

    def status(self):
        st, body = request("POST", self.client, "/v3/maintenance/status", b"{}", timeout=1)
        if st != 200:
            return None
        return json.loads(body)


def etcd_cluster(n=3, timeout=60):
    members = [Etcd(f"e{i}", free_port(), free_port()) for i in range(1, n + 1)]
    initial = ",".join(f"{m.name}=http://{m.peer}" for m in members)
    for m in members:
        m.start(initial)
    etcd_leader(members, timeout)
    return members


def etcd_leader(members, timeout=60):
    """The member every member names as leader."""

    def agreed():
        ids = {}
        for m in members:
            s = m.status()
            if not s or not s.get("leader"):
                return None
            ids[m] = (s["header"]["member_id"], s["leader"])
        leaders = {lead for _, lead in ids.values()}
        if len(leaders) != 1:
            return None
        lead = leaders.pop()
        return next((m for m, (mid, _) in ids.items() if mid == lead), None)

    return wait_until("an etcd leader all members agree on", agreed, timeout)


def _range(member, prefix, **extra):
    body = dict(key=base64.b64encode((prefix + "/").encode()).decode(),
                # range_end "<prefix>0": every key starting "<prefix>/" ('0' follows '/').
                range_end=base64.b64encode((prefix + "0").encode()).decode(),
                serializable=True, **extra)
    st, out = request("POST", member.client, "/v3/kv/range", json.dumps(body).encode(), timeout=30)
    if st != 200:
        raise RuntimeError(f"etcd range on {member.name}: {st} {out[:200]!r}")
    return json.loads(out)


def etcd_count(member, prefix):
    """Keys under `prefix/` read from `member` alone (serializable, i.e. stale)."""
    return int(_range(member, prefix, count_only=True).get("count", 0))


def etcd_sample(member, prefix, limit=20):
    """(key, value) pairs under `prefix/` read from `member` alone."""
    return [(base64.b64decode(kv["key"]).decode(), base64.b64decode(kv.get("value", "")))
            for kv in _range(member, prefix, limit=limit).get("kvs", [])]
