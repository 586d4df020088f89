"""Drive a mesh agent with python-consul (py-consul), a real Consul client
that sends lowercase JSON keys. Usage: python_consul.py HOST:PORT"""
import base64
import json
import sys
import threading
import time

import consul
from consul.exceptions import BadRequest, NotFound

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

# Filters (?filter=): each endpoint filters its own shape, so the selectors
# differ: agent services are flat, catalog rows are ServiceXxx, health rows
# nest under Service. web2 carries Meta so Meta selectors have a target.
c.agent.service.register("web", service_id="web2", port=8081, tags=["v2"],
                         meta={"env": "prod"})
by_tag = c.agent.services(filter_expr='Tags contains "v1"')
assert sorted(by_tag) == ["web1"], by_tag
by_meta = c.agent.services(filter_expr='Meta.env == "prod"')
assert sorted(by_meta) == ["web2"], by_meta
_, rows = c.catalog.service("web", filter_expr='ServiceMeta.env == "prod"')
assert [r["ServiceID"] for r in rows] == ["web2"], rows
_, rows = c.health.service("web", filter_expr='Service.Tags contains "v1"')
assert [r["Service"]["ID"] for r in rows] == ["web1"], rows
_, rows = c.health.service("web", filter_expr='Service.Meta.env == "prod"')
assert [r["Service"]["ID"] for r in rows] == ["web2"], rows
# A malformed expression is the caller's fault: HTTP 400 (py-consul BadRequest).
for bad in (lambda: c.agent.services(filter_expr="Tags contains"),
            lambda: c.health.service("web", filter_expr="Service.Tags contains")):
    try:
        bad()
        raise AssertionError("a bad filter was accepted")
    except consul.ConsulException as e:
        assert isinstance(e, BadRequest) and str(e).startswith("400"), repr(e)

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

# Sessions: create/info/list/node/renew.
node = c.agent.self()["Config"]["NodeName"]
s1 = c.session.create(name="holder", ttl=15)
s2 = c.session.create(name="contender", behavior="delete")
_, info = c.session.info(s1)
assert info["ID"] == s1 and info["Name"] == "holder", info
assert info["Node"] == node and info["Behavior"] == "release", info
assert info["TTL"] == "15s", info
assert info["LockDelay"] == 15 * 10**9, info  # default 15s, in nanoseconds
assert info["NodeChecks"] == ["serfHealth"], info  # the default check
assert c.session.info(s2)[1]["Behavior"] == "delete"
_, sessions = c.session.list()
assert {s1, s2} <= {s["ID"] for s in sessions}, sessions
_, sessions = c.session.node(node)
assert {s1, s2} <= {s["ID"] for s in sessions}, sessions
renewed = c.session.renew(s1)
assert renewed["ID"] == s1 and renewed["TTL"] == "15s", renewed

# KV locks: one holder at a time; LockIndex counts acquisitions.
assert c.kv.put("lock", "one", acquire=s1)
assert not c.kv.put("lock", "two", acquire=s2)
_, v = c.kv.get("lock")
assert v["Session"] == s1 and v["LockIndex"] == 1 and v["Value"] == b"one", v
assert not c.kv.put("lock", "two", release=s2)  # s2 does not hold it
assert c.kv.put("lock", "one", release=s1)
_, v = c.kv.get("lock")
assert not v.get("Session") and v["LockIndex"] == 1, v
# An explicit release has no lock-delay: s2 may take it at once.
assert c.kv.put("lock", "two", acquire=s2)
_, v = c.kv.get("lock")
assert v["Session"] == s2 and v["LockIndex"] == 2, v
# Destroying a "delete" session deletes the keys it holds.
assert c.session.destroy(s2)
assert c.kv.get("lock")[1] is None
# Destroying a "release" session keeps the key, releases it, and starts the
# lock-delay (15s), during which nobody else may acquire it.
assert c.kv.put("held", "x", acquire=s1)
assert c.session.destroy(s1)
assert c.session.info(s1)[1] is None
_, v = c.kv.get("held")
assert v is not None and not v.get("Session") and v["Value"] == b"x", v
s3 = c.session.create()
assert not c.kv.put("held", "y", acquire=s3), "acquired during lock-delay"
assert c.session.destroy(s3)
try:
    c.session.renew(s1)
    raise AssertionError("renewed a destroyed session")
except NotFound:
    pass


def b64(s):
    return base64.b64encode(s.encode()).decode()


# Transactions: results come back in op order; writes echo the entry with
# its Value blanked, reads carry the base64 value; Errors is null on success.
r = c.txn.put([
    {"KV": {"Verb": "set", "Key": "txn/a", "Value": b64("1")}},
    {"KV": {"Verb": "set", "Key": "txn/b", "Value": b64("2")}},
    {"KV": {"Verb": "get", "Key": "txn/a"}},
])
assert r["Errors"] is None, r
assert [x["KV"]["Key"] for x in r["Results"]] == ["txn/a", "txn/b", "txn/a"], r
assert r["Results"][0]["KV"]["Value"] is None, r
assert r["Results"][2]["KV"]["Value"] == b64("1"), r
a_index = r["Results"][0]["KV"]["ModifyIndex"]
assert r["Results"][2]["KV"]["ModifyIndex"] == a_index, r
# check-index passes on the current ModifyIndex.
r = c.txn.put([
    {"KV": {"Verb": "check-index", "Key": "txn/a", "Index": a_index}},
    {"KV": {"Verb": "set", "Key": "txn/c", "Value": b64("3")}},
])
assert r["Errors"] is None and len(r["Results"]) == 2, r
assert c.kv.get("txn/c")[1]["Value"] == b"3"


def failed_txn(ops):
    """A failed txn is HTTP 409 with a JSON body; py-consul raises it."""
    try:
        c.txn.put(ops)
    except consul.ConsulException as e:
        code, _, body = str(e).partition(" ")
        assert code == "409", repr(e)
        return json.loads(body)
    raise AssertionError("the transaction succeeded")


# A stale cas fails the whole transaction: nothing from it is stored.
body = failed_txn([
    {"KV": {"Verb": "set", "Key": "txn/d", "Value": b64("4")}},
    {"KV": {"Verb": "cas", "Key": "txn/a", "Value": b64("x"), "Index": a_index - 1}},
])
assert body["Results"] is None, body
assert [e["OpIndex"] for e in body["Errors"]] == [1], body
assert "txn/a" in body["Errors"][0]["What"], body
assert c.kv.get("txn/d")[1] is None
assert c.kv.get("txn/a")[1]["Value"] == b"1"
# So does a check-index on an old index.
body = failed_txn([
    {"KV": {"Verb": "check-index", "Key": "txn/a", "Index": a_index + 1000}},
    {"KV": {"Verb": "delete", "Key": "txn/b"}},
])
assert [e["OpIndex"] for e in body["Errors"]] == [0], body
assert c.kv.get("txn/b")[1]["Value"] == b"2"

# Events: fire returns the event with a base64 Payload (py-consul decodes
# only in list). Delivery to the agent's buffer is by gossip, so poll.
ev = c.event.fire("deploy", "v2")
assert ev["Name"] == "deploy" and ev["ID"], ev
assert base64.b64decode(ev["Payload"]) == b"v2", ev


def deploy_events(**kw):
    index, events = c.event.list(name="deploy", **kw)
    assert all(e["Name"] == "deploy" for e in events), events
    return index, {e["ID"]: e for e in events}


deadline = time.time() + 10
while True:
    index, events = deploy_events()
    if ev["ID"] in events:
        break
    assert time.time() < deadline, "fired event never listed"
    time.sleep(0.05)
assert events[ev["ID"]]["Payload"] == b"v2", events

# A blocking list wakes when another event is fired.
fired = {}


def fire_later():
    time.sleep(0.3)
    fired.update(c.event.fire("deploy", "v3"))


firer = threading.Thread(target=fire_later)
firer.start()
started = time.time()
new_index, events = deploy_events(index=index, wait="10s")
assert time.time() - started < 5, "woke on the event, not the timeout"
firer.join()  # the list may wake before fire's own reply arrives
assert new_index != index, (index, new_index)  # event indexes are not monotonic
assert events[fired["ID"]]["Payload"] == b"v3", events

# Prepared queries: py-consul sends every query as a name_prefix_match
# template, so the name also matches longer names.
q = c.query.create("web", name="web-q", onlypassing=True, tags=["v1"])
qid = q["ID"]
stored = c.query.get(qid)
assert stored[0]["Name"] == "web-q", stored
assert stored[0]["Service"]["OnlyPassing"] is True, stored
assert any(x["ID"] == qid for x in c.query.list())
ran = c.query.execute("web-q")
assert [n["Service"]["ID"] for n in ran["Nodes"]] == ["web1"], ran
assert ran["Service"] == "web" and ran["Failovers"] == 0, ran
assert c.query.explain("web-q")["Query"]["ID"] == qid
assert c.query.update(qid, "web", name="web-q", tags=["v2"])
assert [n["Service"]["ID"] for n in c.query.execute(qid)["Nodes"]] == ["web2"]
assert c.query.delete(qid)
# py-consul reads Consul's 404 as None.
assert c.query.execute(qid) is None, "a deleted query still runs"

# Network coordinates: the agent reports its own; one set by hand sorts
# ?near= answers.
deadline = time.time() + 15
while True:
    _, coords = c.coordinate.nodes()
    if coords:
        break
    assert time.time() < deadline, "no coordinate reported"
me = coords[0]["Node"]
assert len(coords[0]["Coord"]["Vec"]) == 8, coords
dcs = c.coordinate.datacenters()
assert dcs[0]["Coordinates"][0]["Node"].startswith(me), dcs
far = dict(coords[0]["Coord"], Vec=[0.2] + [0.0] * 7)
c.catalog.register("far-node", "127.0.0.9", service={"Service": "web", "ID": "web-far"})
assert c.coordinate.update("far-node", far)
_, one = c.coordinate.node("far-node")
assert one[0]["Coord"]["Vec"][0] == 0.2, one
_, near = c.catalog.service("web", near="far-node")
assert near[0]["Node"] == "far-node", near
c.catalog.deregister("far-node")

c.agent.service.deregister("web1")
c.agent.service.deregister("web2")
_, nodes = c.catalog.service("web")
assert nodes == [], nodes
print("python-consul: all checks passed")
