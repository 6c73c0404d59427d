#!/usr/bin/env python3
"""Protocol-level readiness probes for the local service stack (stdlib only).

    probe.py kafka  [--host H] [--port P] [--timeout S] [--node-id N]
    probe.py redis  [--host H] [--port P] [--timeout S]
    probe.py mongo  [--host H] [--port P] [--timeout S]
    probe.py s3     [--host H] [--port P] [--timeout S]
    probe.py ...    --wait SECONDS   # retry until ready or SECONDS elapsed

Exit status 0 = ready (one line of detail on stdout), 1 = not ready (reason on stderr).

kafka: ApiVersions v0 (to learn the supported Metadata range), then a Metadata request
       (all topics); ready means the broker answers and lists itself (node id + port) as
       a live broker.  Kafka 4 dropped the oldest Metadata versions, so v4..v12 are spoken
       (non-flexible v4-v8, flexible/compact v9-v12).
redis: RESP PING -> +PONG (a "-LOADING" reply is "not ready").
mongo: OP_MSG {ping: 1, $db: "admin"} -> reply document with ok == 1.
s3:    SeaweedFS: GET /healthz -> 200 from the S3 gateway (--port), and from the volume server
       and the filer behind it (--port + 2, + 3): the gateway answers before they can store.

Kept free of third-party imports because it runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import struct
import sys
import time
from typing import Any


class NotReady(Exception):
    pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise NotReady("connection closed by peer")
        buf += chunk
    return bytes(buf)


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise NotReady(f"cannot connect to {host}:{port}: {e.strerror or e}") from None
    sock.settimeout(timeout)
    return sock


# --------------------------------------------------------------------------- kafka


class _Reader:
    def __init__(self, data: bytes):
        self.d = data
        self.o = 0

    def take(self, n: int) -> bytes:
        if self.o + n > len(self.d):
            raise NotReady("truncated kafka response")
        b = self.d[self.o : self.o + n]
        self.o += n
        return b

    def i8(self) -> int:
        return int(struct.unpack(">b", self.take(1))[0])

    def i16(self) -> int:
        return int(struct.unpack(">h", self.take(2))[0])

    def i32(self) -> int:
        return int(struct.unpack(">i", self.take(4))[0])

    def uvarint(self) -> int:
        shift = result = 0
        while True:
            b = self.take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def string(self) -> str | None:
        n = self.i16()
        if n < 0:
            return None
        return self.take(n).decode("utf-8", "replace")

    def compact_string(self) -> str | None:
        n = self.uvarint() - 1
        if n < 0:
            return None
        return self.take(n).decode("utf-8", "replace")

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.take(self.uvarint())


def _kafka_request(
    sock: socket.socket, api_key: int, version: int, corr: int, body: bytes, flexible: bool
) -> _Reader:
    client_id = b"kchat-probe"
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    if flexible:
        header += b"\x00"  # request header v2: empty tagged fields
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    r = _Reader(_recv_exact(sock, size))
    got = r.i32()
    if got != corr:
        raise NotReady(f"kafka correlation id mismatch ({got} != {corr})")
    if flexible:
        r.skip_tagged_fields()  # response header v1
    return r


def probe_kafka(host: str, port: int, timeout: float, node_id: int | None) -> str:
    with _connect(host, port, timeout) as sock:
        # ApiVersions v0: supported by every broker version, body is empty.
        r = _kafka_request(sock, 18, 0, 1, b"", flexible=False)
        err = r.i16()
        if err != 0:
            raise NotReady(f"ApiVersions error code {err}")
        ranges = {}
        for _ in range(r.i32()):
            key, lo, hi = r.i16(), r.i16(), r.i16()
            ranges[key] = (lo, hi)
        if 3 not in ranges:
            raise NotReady("broker does not advertise the Metadata API")
        lo, hi = ranges[3]
        version = min(hi, 12)
        if version < max(lo, 4):
            raise NotReady(f"no common Metadata version (broker supports v{lo}-v{hi})")

        flexible = version >= 9
        if not flexible:
            body = struct.pack(">i", -1)  # topics: null = all topics
            body += b"\x00"  # allow_auto_topic_creation=false
            if version >= 8:
                body += b"\x00\x00"  # include cluster/topic authorized ops
        else:
            body = b"\x00"  # topics: compact null array
            body += b"\x00"  # allow_auto_topic_creation=false
            if version <= 10:
                body += b"\x00"  # include_cluster_authorized_operations
            body += b"\x00"  # include_topic_authorized_operations
            body += b"\x00"  # tagged fields
        r = _kafka_request(sock, 3, version, 2, body, flexible=flexible)
        r.i32()  # throttle_time_ms (v3+)
        brokers = []
        n = (r.uvarint() - 1) if flexible else r.i32()
        for _ in range(max(n, 0)):
            nid = r.i32()
            bhost = r.compact_string() if flexible else r.string()
            bport = r.i32()
            if flexible:
                r.compact_string()  # rack
                r.skip_tagged_fields()
            else:
                r.string()  # rack
            brokers.append((nid, bhost, bport))
        cluster_id = r.compact_string() if flexible else r.string()
        controller_id = r.i32()

    me = [b for b in brokers if b[2] == port and (node_id is None or b[0] == node_id)]
    if not me:
        raise NotReady(
            f"broker answered Metadata v{version} but does not list itself yet (brokers={brokers})"
        )
    return (
        f"kafka ready: Metadata v{version} cluster_id={cluster_id} "
        f"controller={controller_id} brokers={brokers}"
    )


# --------------------------------------------------------------------------- redis


def probe_redis(host: str, port: int, timeout: float) -> str:
    with _connect(host, port, timeout) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        line = bytearray()
        while not line.endswith(b"\r\n"):
            chunk = sock.recv(256)
            if not chunk:
                raise NotReady("connection closed by peer")
            line += chunk
    reply = bytes(line).strip()
    if reply != b"+PONG":
        raise NotReady(f"redis replied {reply[:120]!r}")
    return "redis ready: PING -> PONG"


# --------------------------------------------------------------------------- mongo


def _bson_cstring(s: str) -> bytes:
    return s.encode() + b"\x00"


def _bson_encode(doc: dict[str, Any]) -> bytes:
    out = bytearray()
    for k, v in doc.items():
        if isinstance(v, bool):
            out += b"\x08" + _bson_cstring(k) + (b"\x01" if v else b"\x00")
        elif isinstance(v, int):
            out += b"\x10" + _bson_cstring(k) + struct.pack("<i", v)
        elif isinstance(v, float):
            out += b"\x01" + _bson_cstring(k) + struct.pack("<d", v)
        elif isinstance(v, str):
            b = v.encode()
            out += b"\x02" + _bson_cstring(k) + struct.pack("<i", len(b) + 1) + b + b"\x00"
        else:
            raise TypeError(type(v))
    return struct.pack("<i", len(out) + 5) + bytes(out) + b"\x00"


def _bson_decode(data: bytes, o: int = 0) -> tuple[dict[str, Any], int]:
    """Decode the document at offset o; returns (doc, end offset). Nested values are
    decoded only as far as needed to skip them."""
    size = struct.unpack_from("<i", data, o)[0]
    end = o + size
    o += 4
    doc = {}
    while o < end - 1:
        t = data[o]
        o += 1
        z = data.index(b"\x00", o)
        key = data[o:z].decode("utf-8", "replace")
        o = z + 1
        if t == 0x01:
            val = struct.unpack_from("<d", data, o)[0]
            o += 8
        elif t in (0x02, 0x0D, 0x0E):
            n = struct.unpack_from("<i", data, o)[0]
            val = data[o + 4 : o + 3 + n].decode("utf-8", "replace")
            o += 4 + n
        elif t in (0x03, 0x04):
            val, o = _bson_decode(data, o)
        elif t == 0x05:
            n = struct.unpack_from("<i", data, o)[0]
            val = data[o + 5 : o + 5 + n]
            o += 5 + n
        elif t == 0x07:
            val = data[o : o + 12].hex()
            o += 12
        elif t == 0x08:
            val = data[o] == 1
            o += 1
        elif t in (0x09, 0x11, 0x12):
            val = struct.unpack_from("<q", data, o)[0]
            o += 8
        elif t in (0x06, 0x0A, 0x7F, 0xFF):
            val = None
        elif t == 0x0B:
            z = data.index(b"\x00", o)
            z = data.index(b"\x00", z + 1)
            val = None
            o = z + 1
        elif t == 0x10:
            val = struct.unpack_from("<i", data, o)[0]
            o += 4
        elif t == 0x13:
            val = data[o : o + 16]
            o += 16
        else:
            raise NotReady(f"unsupported BSON type 0x{t:02x} in reply")
        doc[key] = val
    return doc, end


def probe_mongo(host: str, port: int, timeout: float) -> str:
    body = struct.pack("<I", 0) + b"\x00" + _bson_encode({"ping": 1, "$db": "admin"})
    request_id = 0x6B636874
    msg = struct.pack("<iiii", 16 + len(body), request_id, 0, 2013) + body  # OP_MSG
    with _connect(host, port, timeout) as sock:
        sock.sendall(msg)
        length, _rid, response_to, opcode = struct.unpack("<iiii", _recv_exact(sock, 16))
        rest = _recv_exact(sock, length - 16)
    if opcode != 2013 or response_to != request_id:
        raise NotReady(f"unexpected mongo reply (opcode={opcode}, responseTo={response_to})")
    if rest[4] != 0:
        raise NotReady("unexpected OP_MSG section kind in reply")
    doc, _ = _bson_decode(rest, 5)
    if doc.get("ok") not in (1, 1.0, True):
        raise NotReady(f"mongo ping not ok: {doc}")
    return f"mongo ready: ping -> {doc}"


# --------------------------------------------------------------------------- s3


def _http_status(host: str, port: int, path: str, timeout: float) -> int:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def probe_s3(host: str, port: int, timeout: float) -> str:
    parts = (("s3 gateway", port), ("volume server", port + 2), ("filer", port + 3))
    for name, p in parts:
        status = _http_status(host, p, "/healthz", timeout)
        if status != 200:
            raise NotReady(f"{name} on :{p} answered {status}")
    return f"s3 ready: gateway :{port}, volume server :{port + 2}, filer :{port + 3}"


# --------------------------------------------------------------------------- main

DEFAULT_PORTS = {
    "kafka": ("CHAT_KAFKA_PORT", 9092),
    "redis": ("CHAT_REDIS_PORT", 6379),
    "mongo": ("CHAT_MONGO_PORT", 27017),
    "s3": ("CHAT_S3_PORT", 8333),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="readiness probe (stdlib only)")
    ap.add_argument("service", choices=sorted(DEFAULT_PORTS))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int)
    ap.add_argument("--timeout", type=float, default=2.0, help="per-attempt socket timeout")
    ap.add_argument("--node-id", type=int, default=None, help="kafka: expected broker id")
    ap.add_argument(
        "--wait", type=float, default=0.0, help="keep retrying for up to this many seconds"
    )
    ap.add_argument("--quiet", "-q", action="store_true")
    a = ap.parse_args(argv)
    env, default = DEFAULT_PORTS[a.service]
    port = a.port or int(os.environ.get(env, default))

    deadline = time.monotonic() + a.wait
    while True:
        try:
            if a.service == "kafka":
                msg = probe_kafka(a.host, port, a.timeout, a.node_id)
            elif a.service == "redis":
                msg = probe_redis(a.host, port, a.timeout)
            elif a.service == "s3":
                msg = probe_s3(a.host, port, a.timeout)
            else:
                msg = probe_mongo(a.host, port, a.timeout)
            if not a.quiet:
                print(msg)
            return 0
        except (NotReady, OSError, struct.error, ValueError, IndexError) as e:
            reason = str(e) or type(e).__name__
            if time.monotonic() >= deadline:
                if not a.quiet:
                    print(f"{a.service} not ready on {a.host}:{port}: {reason}", file=sys.stderr)
                return 1
            time.sleep(0.25)


if __name__ == "__main__":
    sys.exit(main())
