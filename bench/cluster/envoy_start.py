"""Envoy start to first request served through a `mesh connect envoy`
sidecar, on a cold agent cache: each round registers a new sidecar (a new
proxy, so its snapshot and leaf are made on demand), starts Envoy through
`mesh connect envoy`, and times until an echo round trip through its
upstream listener (then through db's Envoy, mTLS both ways) succeeds. The
floor it is compared with: the same Envoy binary started on a static
bootstrap whose listener proxies straight to the app (no xDS, no TLS).

Env: MESH_BIN, ENVOY_BIN, BENCH_ROUNDS (default 10)."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from benchlib import (Mesh, echo_server, free_port, kill9, median, now, request,  # noqa: E402
                      roundtrip, spawn, wait_until, WORK)

ENVOY = os.environ["ENVOY_BIN"]
MESH = os.environ["MESH_BIN"]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "10"))


def register(agent, body):
    st, text = request("PUT", agent.http, "/v1/agent/service/register", json.dumps(body).encode())
    assert st == 200, text


def sidecar(name, sid, port, public, upstreams):
    return {"Name": name, "ID": sid, "Port": port, "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": public, "Address": "127.0.0.1",
                                           "Proxy": {"Upstreams": upstreams}}}}


def connect_envoy(agent, sidecar_for, name):
    return spawn(name, [MESH, "connect", "envoy", "-sidecar-for", sidecar_for,
                        "-admin-bind", "127.0.0.1:0", "-envoy-binary", ENVOY],
                 env={"MESH_HTTP_ADDR": agent.http})


def first_request(port, timeout=30):
    t0 = now()
    wait_until("a round trip", lambda: roundtrip(port), timeout, interval=0.005)
    return now() - t0


def static_envoy(app, listen, i):
    path = os.path.join(WORK, f"static-{i}.json")
    with open(path, "w") as f:
        json.dump({
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {
                "listeners": [{"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                               "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                                   "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                                   "stat_prefix": "l", "cluster": "app"}}]}]}],
                "clusters": [{"name": "app", "type": "STATIC", "connect_timeout": "1s", "load_assignment": {
                    "cluster_name": "app", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                        "socket_address": {"address": "127.0.0.1", "port_value": app}}}}]}]}}]}}, f)
    return spawn(f"static-{i}", [ENVOY, "--config-path", path, "--disable-hot-restart", "-l", "error"])


def main():
    agent = Mesh("xds", expect=1, extra=["-dev"], grpc=True).start()
    app = echo_server()
    db_public = free_port()
    register(agent, sidecar("db", "db", app, db_public, []))
    db = connect_envoy(agent, "db", "envoy-db")
    mesh_times, static_times = [], []
    for i in range(ROUNDS):
        # The floor: Envoy itself, static config, no TLS.
        port = free_port()
        t_exec = now()
        p = static_envoy(app, port, i)
        wait_until("static Envoy serving", lambda: roundtrip(port), 30, interval=0.005)
        static_times.append(now() - t_exec)
        kill9(p)
        # mesh: a new proxy every round, so nothing is cached for it.
        port = free_port()
        register(agent, sidecar("web", f"web-{i}", 1, free_port(),
                                [{"DestinationName": "db", "LocalBindPort": port}]))
        t_exec = now()
        p = connect_envoy(agent, f"web-{i}", f"envoy-web-{i}")
        wait_until("mesh Envoy serving", lambda: roundtrip(port), 30, interval=0.005)
        mesh_times.append(now() - t_exec)
        kill9(p)
        request("PUT", agent.http, f"/v1/agent/service/deregister/web-{i}")
    kill9(db)
    agent.kill()
    fmt = lambda xs: f"min {min(xs)*1000:.0f} ms, median {median(xs)*1000:.0f} ms, max {max(xs)*1000:.0f} ms"  # noqa: E731
    print(f"envoy start to first request, {ROUNDS} rounds")
    print(f"  mesh connect envoy (xDS, mTLS through two Envoys, cold): {fmt(mesh_times)}")
    print(f"  Envoy on a static bootstrap (no xDS, no TLS):          {fmt(static_times)}")
    print(f"  ratio of medians: {median(mesh_times)/median(static_times):.2f}")


if __name__ == "__main__":
    main()
