#!/usr/bin/env python3
"""Benchmark of mesh's web UI with a large catalog, in headless Chromium.

    MESH_BIN=/var/tmp/mesh-target/debug/mesh python3 bench/ui/ui_bench.py

Starts a dev agent with -ui (reading the assets from daemon/ui/assets with
-ui-dir, so the files measured are the ones in the tree), registers 1,000
services with 3,000 instances on 100 nodes (one check each), then measures:

  (a) navigation -> services view rendered (all 1,000 rows), target <= 1 s;
  (b) the three UI files gzip-compressed (level 6), target <= 200 KB;
  (c) catalog write -> the new service's row on screen, median of 5,
      target <= 500 ms.

Stdlib only; the WebDriver client is tests/ui/webdriver.py.
"""

import argparse
import concurrent.futures
import gzip
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(ROOT, "tests", "ui"))
from webdriver import Browser, die_with_parent, http_json, wait_until  # noqa: E402

ASSETS = os.path.join(ROOT, "daemon", "ui", "assets")
FILES = ["index.html", "app.js", "style.css"]


def start_agent(binary, workdir, ui_dir):
    """A dev agent on free ports; returns (process, http address)."""
    log_path = os.path.join(workdir, "agent.log")
    log = open(log_path, "wb")
    cmd = [binary, "agent", "-dev", "-ui", "-http-port", "0", "-dns-port=-1", "-grpc-port=-1",
           "-server-port", "0", "-serf-lan-port", "0", "-data-dir", os.path.join(workdir, "data"), "-log-level", "warn"]
    if ui_dir:
        cmd += ["-ui-dir", ui_dir]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)

    def ready():
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited with {proc.returncode}; see {log_path}")
        with open(log_path, "rb") as f:
            m = re.search(rb"mesh agent ready: .*?http=([0-9.]+:[0-9]+)", f.read())
        return m and m.group(1).decode()

    addr = wait_until("the agent's ready line", ready, timeout=60, interval=0.1)
    wait_until("a leader", lambda: http_json("GET", f"http://{addr}/v1/status/leader")[1] not in ("", None), timeout=30, interval=0.1)
    return proc, addr


def stop(proc):
    if proc and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def register_catalog(addr, services, per_service, nodes):
    """services x per_service instances spread over `nodes` nodes, each with one check."""
    states = ["passing"] * 90 + ["warning"] * 7 + ["critical"] * 3

    def one(i):
        svc, inst = divmod(i, per_service)
        node = f"bench-node-{i % nodes:03d}"
        name = f"svc-{svc:04d}"
        sid = f"{name}-{inst}"
        body = {
            "Node": node, "Address": f"10.1.{(i % nodes) // 250}.{(i % nodes) % 250 + 1}",
            "Service": {"Service": name, "ID": sid, "Port": 8000 + inst, "Tags": ["bench", f"v{inst}"]},
            "Checks": [{"CheckID": f"{sid}-check", "Name": "bench check", "ServiceID": sid, "Status": states[i % len(states)]}],
        }
        status, text = http_json("PUT", f"http://{addr}/v1/catalog/register", body)
        if status != 200:
            raise RuntimeError(f"register {sid}: HTTP {status}: {text}")

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        list(ex.map(one, range(services * per_service)))


# In-page: write through the API, then resolve with the ms until the row is in the DOM.
CHANGE_JS = """
const [name, body, done] = arguments;
const sel = `[data-test="service-row"][data-service="${name}"]`;
const t0 = performance.now();
const seen = () => {
  if (document.querySelector(sel)) { obs.disconnect(); done(performance.now() - t0); return true; }
  return false;
};
const obs = new MutationObserver(seen);
obs.observe(document.getElementById('main'), {childList: true, subtree: true});
fetch('/v1/catalog/register', {method: 'PUT', body: JSON.stringify(body)})
  .then((r) => { if (!r.ok) { obs.disconnect(); done(-1); } });
setTimeout(() => { obs.disconnect(); done(-2); }, 10000);
"""


def measure(args, addr, browser):
    ui = f"http://{addr}/ui/#/services"
    total = args.services
    rows = '[data-test="service-row"]'

    # (a) navigation -> rows, five fresh page loads.
    first_rows, with_health, wall = [], [], []
    count_js = f"return document.querySelectorAll('{rows}').length;"
    for it in range(5):
        browser.get("about:blank")
        t0 = time.monotonic()
        browser.get(ui)
        try:
            wait_until(f"{total} service rows", lambda: browser.run(count_js) >= total, timeout=30, interval=0.05)
        except Exception:
            print(f"load {it}: {browser.run(count_js)} rows; page says: {browser.run('return document.body.innerText.slice(0, 300);')!r}")
            raise
        wall.append((time.monotonic() - t0) * 1000)
        wait_until("health on every row", lambda: browser.run(
            f"return document.querySelectorAll('{rows}[data-status=\"none\"]').length === 0;"), timeout=30, interval=0.01)
        marks = browser.run("""
          const m = (n) => (performance.getEntriesByName(n)[0] || {}).startTime ?? null;
          return [m('mesh:services-rendered'), m('mesh:services-health')];""")
        first_rows.append(marks[0])
        with_health.append(marks[1])
    # Every row's instance count, as the catalog has it (no node-by-node reads, so no cut-off).
    counts = browser.run(f"return [...document.querySelectorAll('{rows} td.num')].map((td) => td.textContent);")
    wrong = [c for c in counts if c != str(args.per_service)]
    if wrong:
        raise RuntimeError(f"{len(wrong)} of {len(counts)} rows show an instance count other than {args.per_service}, e.g. {wrong[0]!r}")

    # (b) gzip size of the assets.
    raw = sum(os.path.getsize(os.path.join(ASSETS, f)) for f in FILES)
    gz = sum(len(gzip.compress(open(os.path.join(ASSETS, f), "rb").read(), compresslevel=6)) for f in FILES)

    # (c) catalog write -> row on screen.
    browser.get("about:blank")
    browser.get(ui)
    wait_until("rows", lambda: browser.run(f"return document.querySelectorAll('{rows}').length;") >= total, timeout=30)
    changes = []
    for i in range(5):
        name = f"bench-new-{i}-{int(time.time() * 1000) % 100000}"
        body = {"Node": "bench-node-000", "Address": "10.1.0.1", "Service": {"Service": name, "ID": name, "Port": 9000}}
        ms = browser.run_async(CHANGE_JS, name, body)
        if ms < 0:
            raise RuntimeError(f"change {i}: {'registration failed' if ms == -1 else 'row never appeared'}")
        changes.append(ms)
        # The row comes with its instance count (one summary per service); check it before the next change.
        count = f'[data-test="service-row"][data-service="{name}"] td.num'
        wait_until("the new row's instance count", lambda: browser.run(f"return (document.querySelector('{count}') || {{}}).textContent;") == "1", timeout=30)

    med = statistics.median
    print(f"catalog: {total} services, {total * args.per_service} instances on {args.nodes} nodes")
    print(f"(a) navigation -> {total} rows: median {med(first_rows):.0f} ms (with health colours {med(with_health):.0f} ms; "
          f"WebDriver wall clock {med(wall):.0f} ms) [target <= 1000 ms]; runs: {', '.join(f'{x:.0f}' for x in first_rows)}")
    print(f"(b) assets: {raw / 1024:.1f} KB raw, {gz / 1024:.1f} KB gzip -6 [target <= 200 KB]")
    print(f"(c) catalog change -> row on screen: median {med(changes):.0f} ms [target <= 500 ms]; runs: {', '.join(f'{x:.0f}' for x in changes)}")
    ok = med(with_health) <= 1000 and gz <= 200 * 1024 and med(changes) <= 500
    print("all targets met" if ok else "TARGET MISSED")
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--per-service", type=int, default=3)
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--embedded", action="store_true", help="serve the assets built into the binary, not daemon/ui/assets")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = p.parse_args()
    binary = os.environ.get("MESH_BIN", "/var/tmp/mesh-target/debug/mesh")
    # SIGTERM still stops the agent and the browser (the finally below).
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(f"stopped by signal {signum}"))
    work = tempfile.mkdtemp(prefix="mesh-ui-bench-")
    agent = browser = None
    try:
        agent, addr = start_agent(binary, work, None if args.embedded else ASSETS)
        t0 = time.monotonic()
        register_catalog(addr, args.services, args.per_service, args.nodes)
        print(f"registered {args.services * args.per_service} instances in {time.monotonic() - t0:.1f}s")
        browser = Browser(args.chromium, args.chromedriver)
        return 0 if measure(args, addr, browser) else 1
    finally:
        if browser:
            browser.close()
        stop(agent)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
