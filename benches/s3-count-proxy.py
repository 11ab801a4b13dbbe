#!/usr/bin/env python3
"""s3-count-proxy.py UPSTREAM_PORT PORT_FILE STATS_FILE - counts what a client asks of an S3
server (benches/object_storage.sh).

A threaded TCP proxy on 127.0.0.1: it listens on a free port (written to PORT_FILE once it
accepts connections), passes every connection's bytes unchanged to 127.0.0.1:UPSTREAM_PORT
and back, and reads both streams as HTTP/1.1 on the side (request lines, headers, bodies by
Content-Length or chunked; keep-alive connections carry many requests). Signed requests pass
untouched: a SigV4 signature covers the Host header as the client sent it, which the server
checks as received. On SIGTERM or SIGINT it stops accepting, waits (up to 10 s) for the open
connections to end, and writes STATS_FILE (JSON) and STATS_FILE.log (one line per
request, in the order they were answered: connection, kind, path, Range, status, body bytes
of the answer):

  requests      {"GET range": n, "PUT part": n, ...} by method and kind (below)
  statuses      {"206": n, ...} of the answers
  sent_body     bytes of request bodies (client to server; PUT parts, POST documents)
  fetched_body  bytes of answer bodies to ranged GETs (server to client)
  down_bytes    every byte from the server to the client, headers included
  up_bytes      every byte from the client to the server, headers included
  connections   TCP connections accepted
  get_sizes     {"LENGTH": n}: the length of each ranged GET (from its Range header)
  repeat_gets   ranged GETs of a byte range of an object already fetched on this run;
                repeat_bytes their bytes

Kinds: GET range (a Range header), GET list (?list-type or ?uploads: listings), GET (other),
PUT part (?partNumber), PUT, POST create upload (?uploads), POST complete (?uploadId),
DELETE, HEAD. Standard library only.
"""
import collections
import json
import os
import re
import signal
import socket
import sys
import threading

UPSTREAM = ("127.0.0.1", int(sys.argv[1]))
PORT_FILE, STATS_FILE = sys.argv[2], sys.argv[3]

lock = threading.Lock()
requests = collections.Counter()
statuses = collections.Counter()
get_sizes = collections.Counter()
seen_ranges = set()
log = []
totals = collections.Counter()  # sent_body fetched_body down_bytes up_bytes connections repeat_*


class Stream:
    """One direction of a connection read as HTTP/1.1 messages, fed as bytes arrive.
    on_head(first_line, headers) is called for each message's head and returns the body's
    kind: ("length", n), ("chunked", None) or ("close", None); on_body(n) for body bytes."""

    def __init__(self, on_head, on_body):
        self.buf = bytearray()
        self.state = "head"
        self.left = 0
        self.on_head, self.on_body = on_head, on_body

    def feed(self, data):
        self.buf += data
        while self.step():
            pass

    def step(self):
        b = self.buf
        if self.state == "head":
            end = b.find(b"\r\n\r\n")
            if end < 0:
                return False
            lines = bytes(b[:end]).decode("latin-1").split("\r\n")
            del b[: end + 4]
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            kind, n = self.on_head(lines[0], headers)
            if kind == "length":
                self.state, self.left = ("body", n) if n else ("head", 0)
            elif kind == "chunked":
                self.state = "chunk-size"
            else:
                self.state = "close"
            return True
        if self.state in ("body", "chunk-data"):
            take = min(self.left, len(b))
            if take == 0:
                return False
            self.on_body(take)
            del b[:take]
            self.left -= take
            if self.left == 0:
                self.state = "head" if self.state == "body" else "chunk-end"
            return True
        if self.state == "chunk-size":
            end = b.find(b"\r\n")
            if end < 0:
                return False
            size = int(bytes(b[:end]).split(b";")[0].strip() or b"0", 16)
            del b[: end + 2]
            if size == 0:
                self.state = "trailer"
            else:
                self.state, self.left = "chunk-data", size
            return True
        if self.state == "chunk-end":
            if len(b) < 2:
                return False
            del b[:2]
            self.state = "chunk-size"
            return True
        if self.state == "trailer":
            end = b.find(b"\r\n")
            if end < 0:
                return False
            del b[: end + 2]
            if end == 0:
                self.state = "head"
            return True
        # "close": the body runs to the end of the connection.
        self.on_body(len(b))
        del b[:]
        return False


def body_kind(headers):
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return "chunked", None
    if "content-length" in headers:
        return "length", int(headers["content-length"])
    return None


def request_kind(method, target, headers):
    q = target.partition("?")[2]
    params = {p.partition("=")[0] for p in q.split("&") if p}
    if method == "GET":
        if "range" in headers:
            return "GET range"
        if "list-type" in params or "uploads" in params:
            return "GET list"
        return "GET"
    if method == "PUT":
        return "PUT part" if "partNumber" in params else "PUT"
    if method == "POST":
        if "uploads" in params:
            return "POST create upload"
        if "uploadId" in params:
            return "POST complete"
        return "POST"
    return method


RANGE = re.compile(r"bytes=(\d+)-(\d+)$")


def pump(src, dst, stream, counter):
    try:
        while True:
            data = src.recv(1 << 20)
            if not data:
                break
            with lock:
                totals[counter] += len(data)
                stream.feed(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def serve(client):
    try:
        upstream = socket.create_connection(UPSTREAM)
    except OSError:
        client.close()
        return
    pending = collections.deque()  # (method, kind, path, range) of requests not answered yet
    answering = [None]
    with lock:
        totals["connections"] += 1
        conn_id = totals["connections"]

    def on_request(line, headers):
        method, target = (line.split(" ") + ["", ""])[:2]
        kind = request_kind(method, target, headers)
        requests[kind] += 1
        if kind == "GET range":
            m = RANGE.match(headers["range"].strip())
            if m:
                a, b = int(m.group(1)), int(m.group(2))
                get_sizes[str(b - a + 1)] += 1
                key = (target.partition("?")[0], a, b)
                if key in seen_ranges:
                    totals["repeat_gets"] += 1
                    totals["repeat_bytes"] += b - a + 1
                seen_ranges.add(key)
        pending.append((method, kind, target.partition("?")[0], headers.get("range", "-")))
        return body_kind(headers) or ("length", 0)

    def on_request_body(n):
        totals["sent_body"] += n

    def on_answer(line, headers):
        parts = line.split(" ")
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if 100 <= status < 200:
            answering[0] = None
            return "length", 0
        statuses[str(status)] += 1
        method, kind, path, rng = pending.popleft() if pending else ("", "", "", "-")
        entry = [conn_id, kind, path, rng, status, 0]
        log.append(entry)
        answering[0] = entry
        if method == "HEAD" or status in (204, 304):
            return "length", 0
        return body_kind(headers) or ("close", None)

    def on_answer_body(n):
        if answering[0] is not None:
            answering[0][5] += n
            if answering[0][1] == "GET range":
                totals["fetched_body"] += n

    up = threading.Thread(target=pump, args=(client, upstream, Stream(on_request, on_request_body), "up_bytes"))
    up.start()
    pump(upstream, client, Stream(on_answer, on_answer_body), "down_bytes")
    up.join()
    client.close()
    upstream.close()


stop = threading.Event()
for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda *_: stop.set())

listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(128)
listener.settimeout(0.1)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write("%d\n" % listener.getsockname()[1])
os.replace(PORT_FILE + ".tmp", PORT_FILE)

workers = []
while not stop.is_set():
    try:
        conn, _ = listener.accept()
    except socket.timeout:
        continue
    except InterruptedError:
        continue
    conn.settimeout(None)
    t = threading.Thread(target=serve, args=(conn,), daemon=True)
    t.start()
    workers.append(t)
listener.close()
for t in workers:
    t.join(timeout=10)
with lock:
    out = {
        "requests": dict(requests),
        "statuses": dict(statuses),
        "sent_body": totals["sent_body"],
        "fetched_body": totals["fetched_body"],
        "down_bytes": totals["down_bytes"],
        "up_bytes": totals["up_bytes"],
        "connections": totals["connections"],
        "get_sizes": dict(get_sizes),
        "repeat_gets": totals["repeat_gets"],
        "repeat_bytes": totals["repeat_bytes"],
        "open_connections": sum(t.is_alive() for t in workers),
    }
with open(STATS_FILE + ".tmp", "w") as f:
    json.dump(out, f, sort_keys=True)
os.replace(STATS_FILE + ".tmp", STATS_FILE)
with open(STATS_FILE + ".log", "w") as f:
    for entry in log:
        f.write("\t".join(map(str, entry)) + "\n")
