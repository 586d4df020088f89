"""Gossip convergence: 32 mesh client agents vs 32 Serf agents on loopback.

For each system, one group at a time (so they never share the CPU):
  1. start 32 agents joined through the first, wait until all see 32 alive;
  2. each round: kill -9 one member, time until every other member reports
     it failed; then start a new member, time (from exec) until every other
     live member reports it alive.
Every live member is polled in turn every ~50 ms over one kept-alive
connection (mesh: GET /v1/agent/members; Serf: its RPC `members`).
"""

import json
import os
import time

from benchlib import (WORK, KeepAlive, Mesh, free_port, kill9, kill_all, log, median, now,
                      spawn, wait_until)
from serfrpc import SerfRPC

N = int(os.environ.get("BENCH_MEMBERS", "32"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
SERF = os.environ["SERF_BIN"]
LIMIT = 120.0
TICK = 0.05


# === mesh ===


class MeshMember:
    def __init__(self, name, seed=None):
        self.name = name
        self.agent = Mesh(name, server=False, join=seed.agent.serf if seed else None)
        self.conn = None

    def start(self, wait_ready=True):
        self.agent.start(wait_ready=wait_ready)

    def kill(self):
        self.agent.kill()

    def view(self):
        """{member name: alive|suspect|failed|left} as this agent sees it."""
        if self.conn is None:
            if self.agent.http is None:
                self.agent.wait_ready()
            self.conn = KeepAlive(self.agent.http)
        st, body = self.conn.get("/v1/agent/members")
        if st != 200:
            raise RuntimeError(f"members: {st}")
        out = {}
        for m in json.loads(body):
            out[m["Name"]] = "failed" if m.get("Status") == 4 else m.get("State", "")
        return out


# === Serf ===


class SerfMember:
    def __init__(self, name, seed=None):
        self.name = name
        self.bind = f"127.0.0.1:{free_port(udp_too=True)}"
        self.rpc_addr = f"127.0.0.1:{free_port()}"
        self.seed = seed
        self.proc = None
        self.conn = None

    def start(self, wait_ready=True):
        argv = [SERF, "agent", f"-node={self.name}", f"-bind={self.bind}",
                f"-rpc-addr={self.rpc_addr}", "-log-level=warn"]
        if self.seed:
            argv.append(f"-join={self.seed.bind}")
        self.proc = spawn(f"serf-{self.name}", argv)
        if wait_ready:
            wait_until(f"serf {self.name} RPC", self._connect, 30, 0.02)

    def _connect(self):
        self.conn = SerfRPC(self.rpc_addr)
        return True

    def kill(self):
        kill9(self.proc)

    def view(self):
        if self.conn is None:
            self._connect()
        try:
            members = self.conn.members()
        except Exception:
            self.conn.close()
            self.conn = None
            raise
        return {m["Name"]: m["Status"] for m in members}


# === measuring ===


def poll_until(members, pred, t0, what):
    """Poll `members` every TICK until pred(view) holds for each; returns
    {name: seconds since t0 when first seen}."""
    seen = {}
    while len(seen) < len(members):
        if now() - t0 > LIMIT:
            missing = [m.name for m in members if m.name not in seen]
            raise TimeoutError(f"{what}: {missing} still not there after {LIMIT}s")
        tick = now()
        for m in members:
            if m.name in seen:
                continue
            try:
                if pred(m.view()):
                    seen[m.name] = now() - t0
            except (OSError, RuntimeError, ValueError):
                pass
        rest = TICK - (now() - tick)
        if rest > 0:
            time.sleep(rest)
    return seen


def run_group(system, prefix, make):
    seed = make(f"{prefix}1")
    seed.start()
    members = [seed]
    for i in range(2, N + 1):
        m = make(f"{prefix}{i}", seed)
        m.start()
        members.append(m)
    names = {m.name for m in members}
    t0 = now()
    poll_until(members, lambda v: all(v.get(n) == "alive" for n in names), t0,
               f"{system}: {N} members alive everywhere")
    converged = now() - t0
    log(f"{system}: {N} members converged in {converged:.2f} s after the last one started")

    rounds = []
    for r in range(1, ROUNDS + 1):
        victim = members[N // 2 + r]
        others = [m for m in members if m is not victim]
        t0 = now()
        victim.kill()
        failed = poll_until(others, lambda v, n=victim.name: v.get(n) == "failed", t0,
                            f"{system}: {victim.name} failed everywhere")
        members = others

        new = make(f"{prefix}new{r}", seed)
        t0 = now()
        new.start(wait_ready=False)
        joined = poll_until(members, lambda v, n=new.name: v.get(n) == "alive", t0,
                            f"{system}: {new.name} alive everywhere")
        members.append(new)
        rounds.append({
            "fail_all_s": max(failed.values()), "fail_first_s": min(failed.values()),
            "join_all_s": max(joined.values()), "join_first_s": min(joined.values()),
        })
        log(f"{system} round {r}: {victim.name} failed everywhere after {rounds[-1]['fail_all_s']:.2f} s "
            f"(first {rounds[-1]['fail_first_s']:.2f}); {new.name} alive everywhere after "
            f"{rounds[-1]['join_all_s']:.2f} s (first {rounds[-1]['join_first_s']:.2f})")
    for m in members:
        m.kill()
    return {"converged_s": converged, "rounds": rounds}


def main():
    results = {
        "serf": run_group("serf", "s", lambda name, seed=None: SerfMember(name, seed)),
        "mesh": run_group("mesh", "c", lambda name, seed=None: MeshMember(name, seed)),
    }
    print(f"| {N} members, {ROUNDS} rounds | mesh median (s) | Serf median (s) | mesh/Serf | "
          "mesh each (s) | Serf each (s) |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    conv = {k: v["converged_s"] for k, v in results.items()}
    print(f"| start: all {N} know all {N} alive, from the last start | {conv['mesh']:.2f} | "
          f"{conv['serf']:.2f} | {conv['mesh'] / conv['serf']:.2f}× | | |")
    results = {k: v["rounds"] for k, v in results.items()}
    for key, label in (("fail_all_s", "killed member known failed by all"),
                       ("fail_first_s", "… by the first"),
                       ("join_all_s", "new member known alive by all (from exec)"),
                       ("join_first_s", "… by the first")):
        m = median([r[key] for r in results["mesh"]])
        s = median([r[key] for r in results["serf"]])
        each = lambda sys: ", ".join(f"{r[key]:.2f}" for r in results[sys])  # noqa: E731
        print(f"| {label} | {m:.2f} | {s:.2f} | {m / s:.2f}× | {each('mesh')} | {each('serf')} |")
    with open(os.path.join(os.environ.get("BENCH_RESULTS", WORK), "gossip.json"), "w") as f:
        json.dump({"converged_s": conv, "rounds": results}, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    finally:
        kill_all()
