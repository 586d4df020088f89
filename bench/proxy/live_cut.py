"""Live connections closed by a deny intention, end to end through the agent.

  live_cut.py UPSTREAM AGENT_HTTP SOURCE DESTINATION N

Opens N keep-alive connections to UPSTREAM (a sidecar's upstream listener
for DESTINATION), proves each one carries an HTTP request and answer, then
writes a deny intention SOURCE -> DESTINATION through the agent's HTTP API
(PUT /v1/connect/intentions/exact) and waits, at most 10 s, for every
connection to be closed (EOF or reset). Prints one line: p50, p99 and max of
the time from sending the PUT to each close, and the PUT's own latency.
Deletes the intention again. Exits non-zero if a connection is not closed,
or answers instead of closing. Python 3 standard library only.
"""

import http.client
import selectors
import socket
import sys
import time


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


def fetch_once(sock):
    """One GET over `sock`; returns once the whole answer has arrived."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("a connection closed before the deny")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("a connection closed mid-answer before the deny")
        body += chunk


def intention(agent, method, source, destination, body=None):
    host, port = agent.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    path = f"/v1/connect/intentions/exact?source={source}&destination={destination}"
    c.request(method, path, body=body)
    r = c.getresponse()
    r.read()
    if r.status != 200:
        raise SystemExit(f"{method} {path}: HTTP {r.status}")


def main():
    upstream, agent, source, destination, n = sys.argv[1:6]
    host, port = upstream.rsplit(":", 1)
    conns = []
    for _ in range(int(n)):
        s = socket.create_connection((host, int(port)), timeout=10)
        fetch_once(s)
        s.setblocking(False)
        conns.append(s)

    sel = selectors.DefaultSelector()
    for s in conns:
        sel.register(s, selectors.EVENT_READ)
    t0 = time.monotonic()
    intention(agent, "PUT", source, destination, b'{"Action": "deny"}')
    acked = time.monotonic() - t0
    closed = []
    deadline = t0 + 10
    while len(closed) < len(conns):
        left = deadline - time.monotonic()
        if left <= 0:
            raise SystemExit(f"{len(conns) - len(closed)} of {len(conns)} connections still open after 10 s")
        for key, _ in sel.select(left):
            try:
                data = key.fileobj.recv(4096)
            except ConnectionResetError:
                data = b""
            if data:
                raise SystemExit("a connection got data instead of being closed")
            closed.append(time.monotonic() - t0)
            sel.unregister(key.fileobj)
            key.fileobj.close()
    intention(agent, "DELETE", source, destination)
    ms = [t * 1000 for t in closed]
    print(
        f"p50 {percentile(ms, 0.5):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, "
        f"max {max(ms):.1f} ms (the PUT itself: {acked * 1000:.1f} ms)"
    )


if __name__ == "__main__":
    main()
