"""A minimal client for a Serf agent's RPC port: handshake, then `members`.

The protocol is a stream of MessagePack values: a request header
{Command, Seq} optionally followed by a body, answered by a header
{Seq, Error} optionally followed by a body. Only what `members` needs is
implemented, so the poller stays in-process like the mesh one (spawning
`serf members` 32 times every 50 ms would load the 2 cores far more than
the HTTP poller loads them for mesh).
"""

import socket
import struct


# === MessagePack ===


def pack(v):
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 0x80:
            return bytes([v])
        if 0 <= v < 1 << 32:
            return b"\xce" + struct.pack(">I", v)
        return b"\xcf" + struct.pack(">Q", v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        return b"\xd9" + bytes([len(b)]) + b if len(b) < 256 else b"\xda" + struct.pack(">H", len(b)) + b
    if isinstance(v, dict):
        assert len(v) < 16
        return bytes([0x80 | len(v)]) + b"".join(pack(k) + pack(x) for k, x in v.items())
    raise TypeError(type(v))


class Incomplete(Exception):
    pass


def unpack(buf, i=0):
    """One value from buf[i:]; returns (value, next index) or raises Incomplete."""

    def need(n):
        if i + n > len(buf):
            raise Incomplete

    need(1)
    b = buf[i]
    i += 1
    if b < 0x80:
        return b, i
    if b >= 0xE0:
        return b - 0x100, i
    if 0x80 <= b <= 0x8F:
        return _map(buf, i, b & 0x0F)
    if 0x90 <= b <= 0x9F:
        return _array(buf, i, b & 0x0F)
    if 0xA0 <= b <= 0xBF:
        n = b & 0x1F
        need(n)
        return buf[i:i + n].decode(), i + n
    if b == 0xC0:
        return None, i
    if b in (0xC2, 0xC3):
        return b == 0xC3, i
    fixed = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b", 0xD1: ">h",
             0xD2: ">i", 0xD3: ">q", 0xCA: ">f", 0xCB: ">d"}
    if b in fixed:
        n = struct.calcsize(fixed[b])
        need(n)
        return struct.unpack_from(fixed[b], buf, i)[0], i + n
    sized = {0xD9: (1, "s"), 0xDA: (2, "s"), 0xDB: (4, "s"),
             0xC4: (1, "b"), 0xC5: (2, "b"), 0xC6: (4, "b"),
             0xDC: (2, "a"), 0xDD: (4, "a"), 0xDE: (2, "m"), 0xDF: (4, "m")}
    if b in sized:
        width, kind = sized[b]
        need(width)
        n = int.from_bytes(buf[i:i + width], "big")
        i += width
        if kind == "a":
            return _array(buf, i, n)
        if kind == "m":
            return _map(buf, i, n)
        need(n)
        raw = bytes(buf[i:i + n])
        return (raw.decode(errors="replace") if kind == "s" else raw), i + n
    raise ValueError(f"unsupported msgpack byte 0x{b:02x}")


def _array(buf, i, n):
    out = []
    for _ in range(n):
        v, i = unpack(buf, i)
        out.append(v)
    return out, i


def _map(buf, i, n):
    out = {}
    for _ in range(n):
        k, i = unpack(buf, i)
        v, i = unpack(buf, i)
        out[k] = v
    return out, i


# === RPC ===


class SerfRPC:
    def __init__(self, addr, timeout=2.0):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buf = bytearray()
        self.seq = 0
        self.call("handshake", {"Version": 1}, body_expected=False)

    def _read_value(self):
        while True:
            try:
                v, n = unpack(self.buf)
                del self.buf[:n]
                return v
            except Incomplete:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("serf RPC closed")
                self.buf += chunk

    def call(self, command, body=None, body_expected=True):
        self.seq += 1
        msg = pack({"Command": command, "Seq": self.seq})
        if body is not None:
            msg += pack(body)
        self.sock.sendall(msg)
        header = self._read_value()
        if header.get("Error"):
            raise RuntimeError(f"serf {command}: {header['Error']}")
        return self._read_value() if body_expected else None

    def members(self):
        """[{Name, Status, ...}] as this agent sees them."""
        return self.call("members")["Members"]

    def close(self):
        self.sock.close()
