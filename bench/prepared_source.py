#!/usr/bin/env python3
"""bench/prepared_source.py — an API source that costs next to no CPU, for the
32 MiB figure of bench/run's paced section.

    prepared_source.py PORT_FILE BODY_FILE FAKE_URL

Answers every POST (a Messages call) with BODY_FILE, an HTTP/1.1 chunked SSE
body rendered beforehand (bench/run writes it), sent with sendfile(2): the
kernel copies it from the page cache, no Python runs per byte or per event.
Any other request (the daemon's GET /v1/models/ID) is relayed to the fake at
FAKE_URL.  Listens on 127.0.0.1, an ephemeral port written to PORT_FILE; one
thread per connection, keep-alive honoured.  Standard library only."""

import os
import socket
import sys
import threading
import urllib.error
import urllib.request

HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
        b"cache-control: no-cache\r\nrequest-id: req_prepared\r\ntransfer-encoding: chunked\r\n\r\n")


def read_request(conn, buf):
    """(method, path, headers dict, rest of buf) or None at the peer's close."""
    while b"\r\n\r\n" not in buf:
        d = conn.recv(65536)
        if not d:
            return None
        buf += d
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    method, path = lines[0].split()[:2]
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("expect", "").lower() == "100-continue":
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    n = int(headers.get("content-length", "0"))
    while len(buf) < n:
        d = conn.recv(65536)
        if not d:
            return None
        buf += d
    return method, path, headers, buf[n:]


def relay(conn, fake, path, headers):
    """Answers a non-POST request with the fake's answer to it."""
    fwd = {k: v for k, v in headers.items() if k in ("x-api-key", "anthropic-version",
                                                      "authorization", "anthropic-beta")}
    try:
        with urllib.request.urlopen(urllib.request.Request(fake + path, headers=fwd)) as r:
            status, body, ctype = r.status, r.read(), r.headers.get("content-type")
    except urllib.error.HTTPError as e:
        status, body, ctype = e.code, e.read(), e.headers.get("content-type")
    conn.sendall(b"HTTP/1.1 %d Relayed\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n"
                 % (status, (ctype or "application/json").encode(), len(body)) + body)


def serve(conn, body_path, fake):
    buf = b""
    with conn, open(body_path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        while True:
            req = read_request(conn, buf)
            if req is None:
                return
            method, path, headers, buf = req
            if method != "POST":
                relay(conn, fake, path, headers)
                continue
            conn.sendall(HEAD)
            off = 0
            while off < size:
                off += os.sendfile(conn.fileno(), f.fileno(), off, size - off)


def serve_quietly(conn, body_path, fake):
    try:
        serve(conn, body_path, fake)
    except OSError:  # the client went away mid-body
        pass


def main():
    port_file, body_path, fake = sys.argv[1:4]
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(ls.getsockname()[1]))
    os.rename(port_file + ".tmp", port_file)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve_quietly, args=(conn, body_path, fake), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except (BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass
