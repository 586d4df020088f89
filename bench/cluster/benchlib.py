"""Shared helpers for the cluster benchmarks (python3 stdlib only).

Every child process is started through `spawn`, which records its pid in
$BENCH_WORK/pids so the shell trap can kill it even if Python dies first.
Every wait is bounded.
"""

import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

WORK = os.environ.get("BENCH_WORK", "/tmp")
MESH = os.environ.get("MESH_BIN", "mesh")

_children = []


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def now():
    return time.monotonic()


# === processes ===


def spawn(name, argv, env=None, stdout=None):
    """Start `argv` with stdout/stderr in $BENCH_WORK/<name>.{out,log}."""
    out = open(stdout or os.path.join(WORK, name + ".out"), "ab")
    err = open(os.path.join(WORK, name + ".log"), "ab")
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=full_env)
    out.close()
    err.close()
    with open(os.path.join(WORK, "pids"), "a") as f:
        f.write(f"{p.pid}\n")
    _children.append(p)
    return p


def kill9(p):
    if p is not None and p.poll() is None:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)


def kill_all():
    for p in _children:
        try:
            kill9(p)
        except Exception:
            pass


def free_port(udp_too=False):
    """A loopback port free for TCP (and UDP, for gossip peers) right now."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if not udp_too:
                return port
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# === polling ===


def wait_until(what, fn, timeout, interval=0.05):
    """fn() until it returns something truthy; raises after `timeout` seconds."""
    deadline = now() + timeout
    last_err = None
    while now() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - keep polling, report the last one
            last_err = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last_err})")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# === HTTP ===


def request(method, addr, path, body=None, timeout=2.0, headers=None):
    """One request on a fresh connection; returns (status, body bytes)."""
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


class KeepAlive:
    """A persistent HTTP/1.1 connection, reopened after errors."""

    def __init__(self, addr, timeout=1.0):
        self.host, port = addr.rsplit(":", 1)
        self.port = int(port)
        self.timeout = timeout
        self.conn = None

    def get(self, path):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request("GET", path)
                r = self.conn.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")

    def close(self):
        if self.conn:
            self.conn.close()


# === mesh agents ===


class Mesh:
    """One `mesh agent` process. Ports are 0 on first start, then reused."""

    def __init__(self, name, server=True, expect=3, join=None, data_dir=None, extra=None,
                 rust_log=None, grpc=False):
        self.name = name
        self.grpc = grpc
        self.server = server
        self.expect = expect
        self.join = join
        self.data_dir = data_dir or os.path.join(WORK, name)
        self.extra = extra or []
        self.rust_log = rust_log
        self.http = self.rpc = self.serf = None
        self.proc = None
        self.starts = 0

    def argv(self):
        port = lambda a: a.rsplit(":", 1)[1] if a else "0"  # noqa: E731
        a = [MESH, "agent", f"-node={self.name}", f"-data-dir={self.data_dir}",
             "-bind=127.0.0.1", "-client=127.0.0.1",
             f"-http-port={port(self.http)}", f"-serf-lan-port={port(self.serf)}",
             "-dns-port=-1", "-grpc-port=0" if self.grpc else "-grpc-port=-1"]
        if self.server:
            a += ["-server", f"-bootstrap-expect={self.expect}", f"-server-port={port(self.rpc)}"]
        if self.join:
            a.append(f"-retry-join={self.join}")
        return a + self.extra

    def start(self, wait_ready=True):
        self.starts += 1
        self.out = os.path.join(WORK, f"{self.name}.{self.starts}.out")
        env = {"RUST_LOG": self.rust_log} if self.rust_log else {}
        self.t_exec = now()
        self.proc = spawn(self.name, self.argv(), env=env, stdout=self.out)
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=30):
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {WORK}/{self.name}.log")
            with open(self.out) as f:
                for line in f:
                    if line.startswith("==> mesh agent ready:"):
                        return line
            return None

        line = wait_until(f"{self.name} ready line", ready, timeout, 0.01)
        fields = dict(kv.split("=", 1) for kv in line.split(":", 1)[1].split() if "=" in kv)
        self.http = fields["http"]
        self.serf = fields["serf_lan"]
        self.rpc = fields.get("rpc") if fields.get("rpc") not in (None, "-") else None
        self.grpc_addr = fields.get("grpc") if fields.get("grpc") not in (None, "-") else None

    def kill(self):
        kill9(self.proc)

    @property
    def pid(self):
        return self.proc.pid

    def leader(self):
        """The leader's RPC address as this agent sees it, or ''."""
        st, body = request("GET", self.http, "/v1/status/leader", timeout=1)
        return json.loads(body) if st == 200 else ""


def mesh_cluster(n=3, extra=None, rust_log=None, timeout=60):
    """n servers joined through the first one's gossip address; returns once
    every server reports the same non-empty leader."""
    first = Mesh("s1", expect=n, extra=extra, rust_log=rust_log).start()
    servers = [first]
    for i in range(2, n + 1):
        servers.append(Mesh(f"s{i}", expect=n, join=first.serf, extra=extra,
                            rust_log=rust_log).start())
    wait_agreed_leader(servers, timeout)
    return servers


def wait_agreed_leader(servers, timeout=60):
    def agreed():
        leaders = {s.leader() for s in servers}
        return len(leaders) == 1 and "" not in leaders and leaders.pop()

    return wait_until("a leader all servers agree on", agreed, timeout, 0.05)


def mesh_leader(servers):
    """The server whose RPC address is the agreed leader."""
    rpc = wait_agreed_leader(servers)
    for s in servers:
        if s.rpc == rpc:
            return s
    raise RuntimeError(f"leader {rpc} is none of {[s.rpc for s in servers]}")


# === TCP ===


def echo_server():
    """A TCP echo server on a loopback port (threads); returns the port."""
    import threading
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)

    def serve(c):
        with c:
            while True:
                d = c.recv(4096)
                if not d:
                    return
                c.sendall(d)

    def accept():
        while True:
            c, _ = srv.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return srv.getsockname()[1]


def roundtrip(port, timeout=1.0):
    """One echo round trip through 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"ping")
            return s.recv(4) == b"ping"
    except OSError:
        return False
