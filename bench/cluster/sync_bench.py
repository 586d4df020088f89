"""mesh sync on one -dev agent with a module that needs no provider
(terraform_data), state in the agent's KV through the consul backend:

1. catalog change → `terraform apply` started: a registration's wall time
   against the start_time of the run it caused, buffer off (target ≤ 100 ms)
   and with CTS's default buffer (min 5 s);
2. 1,000 registrations within one second with the default buffer: how
   many runs follow (target: exactly one);
3. BENCH_IDLE_TASKS (100) idle tasks, each on its own service: mesh sync's
   CPU (share of one core) and RSS over 30 s (targets ≤ 1 %, ≤ 50 MB).
"""

import concurrent.futures
import datetime
import json
import os
import time

from benchlib import Mesh, log, request, rss_kb, spawn, wait_until

SAMPLES = int(os.environ.get("BENCH_SAMPLES", "20"))
BUFFERED = int(os.environ.get("BENCH_BUFFERED_SAMPLES", "5"))
IDLE_TASKS = int(os.environ.get("BENCH_IDLE_TASKS", "100"))
IDLE_SECONDS = int(os.environ.get("BENCH_IDLE_SECONDS", "30"))
WORK = os.environ["BENCH_WORK"]
MESH = os.environ["MESH_BIN"]

MODULE = """variable "services" {
  type = any
}

resource "terraform_data" "members" {
  input = sort(keys(var.services))
}
"""


def write_module():
    d = os.path.join(WORK, "module")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "main.tf"), "w") as f:
        f.write(MODULE)
    return d


def config(name, agent, tasks, buffer):
    work = os.path.join(WORK, f"work-{name}")
    buf = 'buffer_period {\n  enabled = false\n}\n' if buffer is None else \
        f'buffer_period {{\n  min = "{buffer[0]}"\n  max = "{buffer[1]}"\n}}\n'
    text = f'port = 0\nworking_dir = "{work}"\nconsul {{\n  address = "{agent.http}"\n}}\n{buf}'
    for t in tasks:
        text += t
    path = os.path.join(WORK, f"{name}.hcl")
    with open(path, "w") as f:
        f.write(text)
    return path


def task(name, service, module):
    return (f'task {{\n  name = "{name}"\n  module = "{module}"\n'
            f'  condition "services" {{\n    names = ["{service}"]\n  }}\n}}\n')


def start_sync(name, cfg):
    out = os.path.join(WORK, f"sync-{name}.out")
    p = spawn(f"sync-{name}", [MESH, "sync", "-config-file", cfg], stdout=out)

    def api():
        with open(out) as f:
            for line in f:
                if line.startswith("==> mesh sync API listening on http://"):
                    return line.split("http://", 1)[1].strip()
        return None

    return p, wait_until("mesh sync API", api, 30)


def status(api, t):
    st, body = request("GET", api, f"/v1/status/tasks/{t}?include=events", timeout=5)
    assert st == 200, body
    return json.loads(body)[t]


def applies(api, t):
    return [e for e in status(api, t).get("events", []) if e["kind"] == "apply"]


def register(agent, sid, service, i):
    body = json.dumps({"Node": f"n{i % 20}", "Address": "127.0.0.1",
                       "Service": {"ID": sid, "Service": service, "Port": 1000 + i % 50000}}).encode()
    st, out = request("PUT", agent.http, "/v1/catalog/register", body, timeout=10)
    assert st == 200, out


def ts(text):
    """RFC 3339 with up to nanoseconds → epoch seconds (Python takes 6 digits)."""
    head, _, frac = text.rstrip("Z").partition(".")
    stamp = datetime.datetime.fromisoformat(head + "+00:00").timestamp()
    return stamp + (float("0." + frac) if frac else 0.0)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def latency(agent, module, name, buffer, samples):
    cfg = config(name, agent, [task("lat", f"lat-{name}", module)], buffer)
    proc, api = start_sync(name, cfg)
    wait_until("start run", lambda: any(e["end_time"] for e in applies(api, "lat")), 120)
    out = []
    for i in range(samples):
        # Only the newest 20 runs are kept: compare ids, not counts.
        last = applies(api, "lat")[0]["id"]
        t0 = time.time()
        register(agent, f"lat-{name}-{i}", f"lat-{name}", i)
        ev = wait_until("the run", lambda: (e := applies(api, "lat")[0])["id"] != last and e,
                        120, 0.01)
        out.append((ts(ev["start_time"]) - t0) * 1000)
        wait_until("run done", lambda: applies(api, "lat")[0]["end_time"], 120)
    proc.kill()
    proc.wait()
    return out


def burst(agent, module):
    cfg = config("burst", agent, [task("burst", "burst", module)], ("5s", "20s"))
    proc, api = start_sync("burst", cfg)
    wait_until("start run", lambda: any(e["end_time"] for e in applies(api, "burst")), 120)
    before = len(applies(api, "burst"))
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: register(agent, f"burst-{i}", "burst", i), range(1000)))
    took = time.time() - t0
    wait_until("the burst's run", lambda: len(applies(api, "burst")) > before
               and applies(api, "burst")[0]["end_time"], 120)
    # Longer than the buffer's min after the run: a second run would show.
    time.sleep(8)
    runs = len(applies(api, "burst")) - before
    proc.kill()
    proc.wait()
    return took, runs


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def idle(agent, module):
    tasks = [task(f"idle-{i}", f"idle-svc-{i}", module) for i in range(IDLE_TASKS)]
    cfg = config("idle", agent, tasks, ("5s", "20s"))
    proc, api = start_sync("idle", cfg)

    def settled():
        st, body = request("GET", api, "/v1/status", timeout=5)
        s = json.loads(body)["task_summary"]["status"]
        return s["successful"] == IDLE_TASKS

    wait_until(f"{IDLE_TASKS} start runs", settled, 900, 1)
    time.sleep(3)
    hz = os.sysconf("SC_CLK_TCK")
    t0, c0 = time.time(), cpu_ticks(proc.pid)
    time.sleep(IDLE_SECONDS)
    t1, c1 = time.time(), cpu_ticks(proc.pid)
    rss = rss_kb(proc.pid) / 1024
    proc.kill()
    proc.wait()
    return (c1 - c0) / hz / (t1 - t0) * 100, rss


def main():
    module = write_module()
    agent = Mesh("sync-agent", extra=["-dev"], expect=1).start()
    off = latency(agent, module, "nobuffer", None, SAMPLES)
    log(f"buffer off: {[round(x, 1) for x in off]}")
    on = latency(agent, module, "buffer", ("5s", "20s"), BUFFERED)
    log(f"buffer 5s: {[round(x, 1) for x in on]}")
    took, runs = burst(agent, module)
    cpu, rss = idle(agent, module)
    print("mesh sync, one -dev agent, terraform_data module, state in the agent's KV:")
    print(f"  change → apply started, buffer off ({len(off)} samples): "
          f"p50 {pct(off, 50):.0f} ms, p99 {pct(off, 99):.0f} ms")
    print(f"  change → apply started, buffer min 5s ({len(on)} samples): "
          f"p50 {pct(on, 50):.0f} ms, p99 {pct(on, 99):.0f} ms")
    print(f"  1,000 registrations in {took:.2f} s → {runs} run(s)")
    print(f"  {IDLE_TASKS} idle tasks over {IDLE_SECONDS} s: CPU {cpu:.2f} % of a core, RSS {rss:.1f} MB")


if __name__ == "__main__":
    main()
