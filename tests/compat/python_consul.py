"""Drive a mesh agent with python-consul (py-consul), a real Consul client
that sends lowercase JSON keys. Usage: python_consul.py HOST:PORT"""
import sys
import threading
import time

import consul

host, port = sys.argv[1].rsplit(":", 1)
c = consul.Consul(host=host, port=int(port))

# Agent service with a TTL check, then pass it.
c.agent.service.register("web", service_id="web1", port=8080, tags=["v1"],
                         check=consul.Check.ttl("30s"))
c.agent.check.ttl_pass("service:web1", notes="ready")
services = c.agent.services()
assert services["web1"]["Service"] == "web", services

# Catalog and health.
_, nodes = c.catalog.service("web")
assert [n["ServiceID"] for n in nodes] == ["web1"], nodes
deadline = time.time() + 10
while True:
    _, healthy = c.health.service("web", passing=True)
    if len(healthy) == 1:
        break
    assert time.time() < deadline, "web1 never became passing"
    time.sleep(0.05)
assert healthy[0]["Service"]["Tags"] == ["v1"], healthy

# KV: put/get/cas/recurse/delete.
assert c.kv.put("foo", "bar")
_, v = c.kv.get("foo")
assert v["Value"] == b"bar", v
assert not c.kv.put("foo", "nope", cas=v["ModifyIndex"] - 1)
assert c.kv.put("foo", "baz", cas=v["ModifyIndex"])
c.kv.put("dir/a", "1")
c.kv.put("dir/b", "2")
_, items = c.kv.get("dir/", recurse=True)
assert sorted(i["Key"] for i in items) == ["dir/a", "dir/b"], items

# A blocking read wakes on a change.
index, v = c.kv.get("foo")


def change_later():
    time.sleep(0.3)
    c.kv.put("foo", "changed")


threading.Thread(target=change_later).start()
started = time.time()
new_index, v2 = c.kv.get("foo", index=index, wait="10s")
assert v2["Value"] == b"changed", v2
assert int(new_index) > int(index)
assert time.time() - started < 5, "woke on the change, not the timeout"

c.agent.service.deregister("web1")
_, nodes = c.catalog.service("web")
assert nodes == [], nodes
print("python-consul: all checks passed")
