"""The DNS benchmark's catalog, written through a real agent's HTTP API.

  catalog.py populate HTTP_ADDR ZONE_FILE
      registers web (10 instances on nodes web-0..web-9) and svc-0000 ..
      svc-0999 (one instance each), every instance with a passing check,
      through /v1/catalog/register; then reads the passing instances back
      through /v1/health/service/NAME and writes them as NSD's zone file, so
      both servers answer from the same data.
  catalog.py writes HTTP_ADDR PER_SECOND
      updates one check's output per tick through /v1/catalog/register
      (the most common write a catalog takes) until SIGTERM; then prints
      "N catalog writes". A non-200 answer stops it with an error.

Python 3 standard library only.
"""

import http.client
import json
import signal
import sys
import time

WEB_INSTANCES = 10
OTHER_SERVICES = 1000


class Agent:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=10)

    def call(self, method, path, body=None):
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None)
        r = self.conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise SystemExit(f"{method} {path}: HTTP {r.status}: {data[:200]!r}")
        return data


def web_ip(i):
    return f"10.0.0.{i + 1}"


def svc_ip(i):
    return f"10.1.{i // 250}.{i % 250 + 1}"


def registration(node, address, service, output="HTTP 200 OK"):
    return {
        "Node": node,
        "Address": address,
        "Service": {"ID": service, "Service": service, "Port": 8080},
        "Check": {
            "CheckID": f"{service}-alive",
            "Name": "alive",
            "ServiceID": service,
            "Status": "passing",
            "Output": output,
        },
    }


def populate(addr, zone_file):
    agent = Agent(addr)
    for i in range(WEB_INSTANCES):
        agent.call("PUT", "/v1/catalog/register", registration(f"web-{i}", web_ip(i), "web"))
    for i in range(OTHER_SERVICES):
        agent.call("PUT", "/v1/catalog/register", registration(f"node-{i}", svc_ip(i), f"svc-{i:04}"))
    zone = [
        "$ORIGIN consul.",
        "$TTL 0",
        "@ IN SOA ns.consul. hostmaster.consul. 1 3600 600 86400 0",
        "@ IN NS ns.consul.",
        "ns IN A 127.0.0.1",
    ]
    names = ["web"] + [f"svc-{i:04}" for i in range(OTHER_SERVICES)]
    for name in names:
        entries = json.loads(agent.call("GET", f"/v1/health/service/{name}?passing"))
        want = WEB_INSTANCES if name == "web" else 1
        if len(entries) != want:
            raise SystemExit(f"{name}: {len(entries)} passing instances in the catalog, want {want}")
        for e in entries:
            zone.append(f"{name}.service IN A {e['Node']['Address']}")
    with open(zone_file, "w") as f:
        f.write("\n".join(zone) + "\n")
    print(f"{len(names)} services registered through {addr}", file=sys.stderr)


def writes(addr, per_second):
    agent = Agent(addr)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    period = 1.0 / per_second
    n = 0
    next_at = time.monotonic()
    while not stop:
        i = n % OTHER_SERVICES
        agent.call(
            "PUT",
            "/v1/catalog/register",
            registration(f"node-{i}", svc_ip(i), f"svc-{i:04}", f"HTTP 200 OK (probe {n})"),
        )
        n += 1
        next_at += period
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(f"{n} catalog writes", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["populate"] and len(sys.argv) == 4:
        populate(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["writes"] and len(sys.argv) == 4:
        writes(sys.argv[2], float(sys.argv[3]))
    else:
        raise SystemExit(__doc__)
