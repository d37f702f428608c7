"""CONTRACT §7 security and §1 start-up errors of the HTTP shim (SECURITY.md):
Host allow-list (DNS rebinding), Origin (cross-site requests), bearer token,
content type, body limits, odd names, no CORS, loopback-only binding, and the
one-line start-up errors."""

import json
import os
import socket
import subprocess
import time

import pytest

from mcpfs_testlib import daemon_env, is_mounted, run, wait_for
from http_support import (  # noqa: F401  (fixtures)
    Api, CurlApi, client, free_port, ipv6_loopback_works, non_loopback_ipv4, nomount, recv_all,
    shim, shim_factory, start_failure,
)

TOKEN = "s3cret-token-0123456789abcdef"


def raw(port, data, host="127.0.0.1", family=socket.AF_INET, timeout=10):
    """Sends raw request bytes; returns (status, response bytes)."""
    s = socket.socket(family)
    s.settimeout(timeout)
    s.connect((host, port))
    s.sendall(data)

    def whole(out):
        if b"\r\n\r\n" in out and b"Connection: close" not in out:
            head, _, body = out.partition(b"\r\n\r\n")
            n = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                 if line.lower().startswith(b"content-length:")]
            return n and len(body) >= n[0]
        return False
    try:
        out, err = recv_all(s, whole)
    finally:
        s.close()
    if err is not None:
        raise err
    return int(out.split(b" ", 2)[1]), out


# --- Host: DNS rebinding ------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example:{p}", "evil.example", "127.0.0.1:{q}",
                                  "localhost:{q}", "127.0.0.1", "localhost", "0.0.0.0:{p}",
                                  "127.0.0.2:{p}", "localhost.:{p}", "[::1]", "evil.localhost:{p}",
                                  "127.0.0.1:{p}.evil.example", ""])
def test_foreign_host_is_403(shim, host):
    h = host.format(p=shim.port, q=shim.port + 1)
    for method, path, body in [("GET", "/v1/health", None), ("GET", "/v1/contexts", None),
                               ("POST", "/v1/contexts", {"name": "evil"})]:
        r = shim.api.request(method, path, body, headers={"Host": h})
        assert r.status == 403, (h, r)
        assert r.error()[0] == "permission_error"
    assert not (shim.path / "evil").exists()


@pytest.mark.parametrize("host", ["127.0.0.1:{p}", "localhost:{p}", "[::1]:{p}", "LOCALHOST:{p}"])
def test_loopback_hosts_are_accepted(shim, host):
    r = shim.api.request("GET", "/v1/health", headers={"Host": host.format(p=shim.port)})
    assert r.status == 200


def test_port_80_clients_may_omit_the_port(nomount):
    try:
        s = socket.socket()
        s.bind(("127.0.0.1", 80))
        s.close()
    except OSError:
        pytest.skip("cannot listen on port 80 here (not root, or taken)")
    api = nomount(port=80).api
    for host in ["localhost", "127.0.0.1", "[::1]", "localhost:80", "LocalHost"]:
        assert api.request("GET", "/v1/health", headers={"Host": host}).status == 200, host
    for host in ["evil.example", "localhost:81", "[::1]:8080"]:
        assert api.request("GET", "/v1/health", headers={"Host": host}).status == 403, host
    assert api.request("GET", "/v1/health", headers={"Origin": "http://localhost"}).status == 200
    assert api.request("GET", "/v1/health", headers={"Origin": "http://evil"}).status == 403


def test_missing_or_repeated_host(shim):
    p = shim.port
    status, _ = raw(p, b"GET /v1/health HTTP/1.0\r\n\r\n")
    assert status == 403
    status, _ = raw(p, b"GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert status in (400, 403)
    status, _ = raw(p, ("GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nHost: evil.example\r\n"
                        "Connection: close\r\n\r\n" % p).encode())
    assert status in (400, 403)


def test_host_check_with_curl(shim):
    c = shim.curl()
    assert c.request("GET", "/v1/contexts", headers={"Host": "rebind.example:%d" % shim.port}) \
        .status == 403
    assert c.request("GET", "/v1/contexts").status == 200


# --- Origin: cross-site requests ------------------------------------------------------------------


@pytest.mark.parametrize("origin", ["http://evil.example", "https://127.0.0.1:{p}", "null",
                                    "http://127.0.0.1:{q}", "http://localhost:{p}.evil.example",
                                    "http://127.0.0.1", "file://", ""])
def test_foreign_origin_is_403(client, shim, fake, origin):
    o = origin.format(p=shim.port, q=shim.port + 1)
    shim.api.create("o")
    for method, path, body in [("GET", "/v1/contexts/o", None),
                               ("POST", "/v1/contexts/o/messages", {"content": "csrf"}),
                               ("DELETE", "/v1/contexts/o", None)]:
        r = client.request(method, path, body, headers={"Origin": o})
        assert r.status == 403, (o, r)
        assert r.error()[0] == "permission_error"
    assert fake.calls == []
    assert (shim.path / "o").is_dir()


@pytest.mark.parametrize("origin", ["http://127.0.0.1:{p}", "http://localhost:{p}",
                                    "http://[::1]:{p}"])
def test_own_origin_is_accepted(shim, origin):
    r = shim.api.request("GET", "/v1/health", headers={"Origin": origin.format(p=shim.port)})
    assert r.status == 200


def test_no_cors_and_no_preflight(client, shim):
    r = client.request("OPTIONS", "/v1/contexts", headers={
        "Origin": "http://127.0.0.1:%d" % shim.port, "Access-Control-Request-Method": "POST"})
    assert r.status == 405
    for path in ("/v1/health", "/v1/contexts", "/v1/nothing"):
        r = client.request("GET", path)
        assert not [k for k in r.headers if k.startswith("access-control-")], r.headers


# --- content type: the preflight-free CSRF bodies ----------------------------------------------------


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x", "application/jsonx",
                                   "text/json"])
def test_wrong_content_type_is_415(client, shim, fake, ctype):
    shim.api.create("t")
    headers = {"Content-Type": ctype} if ctype else {}
    for path, body in [("/v1/contexts/t/messages", b'{"content":"csrf"}'),
                       ("/v1/contexts", b'{"name":"made"}')]:
        r = client.request("POST", path, body, headers=headers)
        assert r.status == 415, (ctype, r)
        assert r.error()[0] == "unsupported_media_type_error"
    r = client.request("PATCH", "/v1/contexts/t", b'{"system":"x"}', headers=headers)
    assert r.status == 415
    assert fake.calls == [] and not (shim.path / "made").exists()
    r = client.request("POST", "/v1/contexts/t/messages", b'{"content":"ok"}',
                       headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status == 202


# --- body limits --------------------------------------------------------------------------------------


def test_oversized_bodies_are_413(client, shim, fake):
    shim.api.create("big")
    limit = 2 * (1 << 20) + (64 << 10)
    big = b'{"content":"' + b"a" * limit + b'"}'
    r = client.request("POST", "/v1/contexts/big/messages", big,
                       headers={"Content-Type": "application/json"})
    assert r.status == 413, r
    assert r.error()[0] == "request_too_large"
    # Under the body cap but over max_input_bytes: the core's limit, same status.
    text = "b" * ((1 << 20) + 1)
    r = client.request("POST", "/v1/contexts/big/messages", {"content": text})
    assert r.status == 413, r
    # A smaller per-context limit moves both.
    assert shim.api.request("PATCH", "/v1/contexts/big",
                            {"config": {"max_input_bytes": 100}}).status == 200
    r = client.request("POST", "/v1/contexts/big/messages", {"content": "c" * 101})
    assert r.status == 413
    r = client.request("POST", "/v1/contexts/big/messages", {"content": "d" * 100000})
    assert r.status == 413
    r = client.request("POST", "/v1/contexts/big/messages", {"content": "e" * 100})
    assert r.status == 202
    fake.wait_calls(1)
    assert [c.last_user_text for c in fake.calls] == ["e" * 100]


def test_chunked_bodies_are_refused(shim):
    """Chunk lines are parsed below any hook, bare LFs accepted: no chunked bodies."""
    shim.api.create("ch")
    head = ("PATCH /v1/contexts/ch HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: "
            "application/json\r\nTransfer-Encoding: chunked\r\n\r\n" % shim.port).encode()
    small = b'{"system":"chunked"}'
    for eol in (b"\r\n", b"\n"):
        chunks = b"%x%s%s%s0%s%s" % (len(small), eol, small, eol, eol, eol)
        status, out = raw(shim.port, head + chunks)
        assert status == 400, out[:300]
        assert b"Content-Length" in out and b"Connection: close" in out
    assert shim.api.request("GET", "/v1/contexts/ch").json()["system"] == ""


def test_413_with_expect_100_continue(shim):
    """curl waits for 100 Continue on big bodies; the refusal comes first."""
    big = shim.path.parent / "big.json"
    big.write_bytes(b'{"content":"' + b"x" * (3 << 20) + b'"}')
    shim.api.create("ex")
    r = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H",
             "Content-Type: application/json", "-H", "Expect: 100-continue", "--data-binary",
             "@%s" % big, "http://127.0.0.1:%d/v1/contexts/ex/messages" % shim.port])
    assert r.out == "413", r


def test_duplicate_keys_are_400(client, shim, fake):
    """A key given twice means different things to different JSON parsers."""
    shim.api.create("dup")
    for path, method, body in [
            ("/v1/contexts", "POST", b'{"name":"x","name":"y"}'),
            ("/v1/contexts/dup", "PATCH", b'{"system":"a","system":"b"}'),
            ("/v1/contexts/dup", "PATCH", b'{"config":{"max_tokens":5,"max_tokens":6}}'),
            ("/v1/contexts/dup/messages", "POST", b'{"content":"a","content":"b"}')]:
        r = client.request(method, path, body, headers={"Content-Type": "application/json"})
        assert r.status == 400, (body, r)
        assert "duplicate key" in r.error()[1]
    assert sorted(c["name"] for c in shim.api.request("GET", "/v1/contexts").json()
                  ["contexts"]) == ["dup"]
    assert shim.api.request("GET", "/v1/contexts/dup").json()["system"] == ""
    assert fake.calls == []


def test_malformed_json_is_400(client, shim, fake):
    shim.api.create("j")
    for body in [b"{", b"", b"[]", b'"str"', b"{'single': 1}", b'{"content":"x",}',
                 b'{"content":"\xc3\x28"}', b'{"content":"\\ud800"}', b"\xef\xbb\xbf{}",
                 b'{"content":"a","content":"b"}']:
        r = client.request("POST", "/v1/contexts/j/messages", body,
                           headers={"Content-Type": "application/json"})
        assert r.status == 400, (body, r)
        assert r.error()[0] == "invalid_request_error"
    assert fake.calls == []


# --- the bearer token ---------------------------------------------------------------------------------


@pytest.fixture
def tshim(shim_factory):
    return shim_factory(token=TOKEN)


def test_token_required(tshim, fake):
    port = tshim.port
    for c in (Api(port), CurlApi(port)):
        r = c.request("GET", "/v1/health")
        assert r.status == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.error()[0] == "authentication_error"
        r = c.request("POST", "/v1/contexts", {"name": "x"})
        assert r.status == 401
        for bad in ["Bearer wrong", "Bearer " + TOKEN[:-1], "Bearer " + TOKEN + "x",
                    "Basic " + TOKEN, TOKEN, "Bearer", "Bearer  "]:
            r = c.request("GET", "/v1/contexts", headers={"Authorization": bad})
            assert r.status == 401, (bad, r)
        r = c.request("GET", "/v1/contexts", headers={"Authorization": "bearer " + TOKEN})
        assert r.status == 200
    ok = Api(port, token=TOKEN)
    assert ok.request("POST", "/v1/contexts", {"name": "t"}).status == 201
    assert Api(port).request("POST", "/v1/contexts/t/messages", {"content": "x"}).status == 401
    assert fake.calls == []
    ok.send("t", "with token")
    assert ok.output("t") == "reply to: with token"
    # Host and Origin still apply with a valid token.
    assert ok.request("GET", "/v1/health", headers={"Host": "evil.example:%d" % port}) \
        .status == 403
    assert ok.request("GET", "/v1/health", headers={"Origin": "http://evil.example"}).status == 403


def test_token_file_is_never_served(tshim, fake):
    """Neither a response (headers or body), nor the mount, nor the log shows the token."""
    api = Api(tshim.port, token=TOKEN)
    api.create("tk")
    api.send("tk", "hello")
    assert api.output("tk") == "reply to: hello"
    for path in ["/v1/health", "/v1/contexts", "/v1/contexts/tk", "/v1/contexts/tk/history",
                 "/v1/contexts/tk/transcript", "/v1/contexts/nope"]:
        api.request("GET", path)
    Api(tshim.port).request("GET", "/v1/contexts")  # refused: 401
    assert len(api.seen) >= 8
    for r in api.seen:
        assert TOKEN.encode() not in r.body, r
        assert all(TOKEN not in v for _, v in r.headers.items()), r
    assert TOKEN not in tshim.mount.log()
    for f in tshim.path.rglob("*"):
        if f.is_file() and f.name != "ctl":  # ctl is write-only
            assert TOKEN.encode() not in f.read_bytes(), f


# --- request framing ----------------------------------------------------------------------------


@pytest.mark.parametrize("framing,why", [
    ("Content-Length: 2\r\nContent-Length: 3", "more than one Content-Length"),
    ("Transfer-Encoding: gzip", "only Transfer-Encoding accepted is chunked"),
    ("Transfer-Encoding: chunked\r\nContent-Length: 2", "Transfer-Encoding and Content-Length"),
], ids=["two-lengths", "te-gzip", "te-and-length"])
def test_ambiguous_body_framing_is_400_and_closes(shim, framing, why):
    """Request smuggling needs a body whose end two parsers see differently: refused."""
    body = b'2\r\n{}\r\n0\r\n\r\n' if "chunked" in framing else b"{}"
    req = ("POST /v1/contexts HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: "
           "application/json\r\n%s\r\n\r\n" % (shim.port, framing)).encode() + body
    status, out = raw(shim.port, req + b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n",
                      timeout=5)
    head, _, text = out.partition(b"\r\n\r\n")
    assert status == 400, out[:300]
    assert b"Connection: close" in head
    assert why.encode() in text
    assert out.count(b"HTTP/1.1 ") == 1, "a second request was read from the same bytes"
    assert shim.api.request("GET", "/v1/contexts").json()["contexts"] == []


def one_answer(port, data):
    """Sends data and a second request after it; returns the one answer read."""
    follow = b"DELETE /v1/contexts/victim HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port
    status, out = raw(port, data + follow, timeout=5)
    head, _, body = out.partition(b"\r\n\r\n")
    assert out.count(b"HTTP/1.1 ") == 1, out
    assert b"Connection: close" in head, out
    return status, body


SMUGGLED = [
    # name, request head (after the request line and Host), body
    ("obs-folded-te", "Content-Length: {n}\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n",
     b'{"name":"made"}'),
    ("folded-te-value", "Transfer-Encoding:\r\n chunked\r\nContent-Length: {n}\r\n",
     b'{"name":"made"}'),
    ("two-te", "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
     b'f\r\n{"name":"made"}\r\n0\r\n\r\n'),
    ("bare-lf-chunks", "Transfer-Encoding: chunked\r\n", b'f\n{"name":"made"}\n0\n\n'),
    ("space-before-colon", "Origin : http://evil.example\r\nContent-Length: {n}\r\n",
     b'{"name":"made"}'),
    ("tab-before-colon", "Origin\t: http://evil.example\r\nContent-Length: {n}\r\n",
     b'{"name":"made"}'),
    ("nul-in-value", "Origin: http://127.0.0.1:{p}\x00evil\r\nContent-Length: {n}\r\n",
     b'{"name":"made"}'),
    ("cr-in-value", "X-A: a\rb\r\nContent-Length: {n}\r\n", b'{"name":"made"}'),
    ("bare-lf-header", "Content-Length: {n}\nX-A: b\r\n", b'{"name":"made"}'),
    ("nul-in-name", "X-A\x00b: c\r\nContent-Length: {n}\r\n", b'{"name":"made"}'),
    # libmicrohttpd appends a folded line to the header's *name*: "Content-"
    # and " Length" made a Content-Length of "1x" (its doubled 400).
    ("folded-length-name", "Content-: 1x\r\n Length\r\n", b'{"name":"made"}'),
]


@pytest.mark.parametrize("name,head,body", SMUGGLED, ids=[c[0] for c in SMUGGLED])
def test_request_smuggling_is_400_and_closes(shim, name, head, body):
    """Header blocks libmicrohttpd reads one way and a proxy may read another:
    folded lines, two Transfer-Encodings, bare LFs, names with a space before
    the colon (which hid an Origin), NULs and CRs in values."""
    shim.api.create("victim")
    p = shim.port
    req = ("POST /v1/contexts HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json"
           "\r\n" % p).encode() + head.format(n=len(body), p=p).encode("latin-1") + b"\r\n" + body
    status, text = one_answer(p, req)
    assert status == 400, text
    assert json.loads(text)["error"]["type"] == "invalid_request_error"
    names = [c["name"] for c in shim.api.request("GET", "/v1/contexts").json()["contexts"]]
    assert names == ["victim"]


@pytest.mark.parametrize("line", [b"GET /v1/health\x00/../contexts HTTP/1.1",
                                  b"GET /v1/con texts HTTP/1.1", b"GET /v1/health HTTP/1.1\n",
                                  b"DELETE /v1/contexts/victim\x00 HTTP/1.1",
                                  b"GET /v1/health\x01 HTTP/1.1",
                                  b" GET /v1/health HTTP/1.1", b"GET /v1/health HTTP/1.1 ",
                                  b"GET\t/v1/health HTTP/1.1", b"GET /v1/health",
                                  b"GET /v1/health HTTP/1.1\x00"],
                         ids=["nul-in-path", "space-in-path", "bare-lf", "nul-delete", "ctl",
                              "space-before-method", "space-after-version", "tab-after-method",
                              "no-version", "nul-after-version"])
def test_odd_request_lines_get_one_clean_400(shim, line):
    """libmicrohttpd answered a space before the method with nothing at all, and
    some of the others with its own HTML 400."""
    shim.api.create("victim")
    req = line.rstrip(b"\n") + (b"\n" if line.endswith(b"\n") else b"\r\n")
    req += b"Host: 127.0.0.1:%d\r\n\r\n" % shim.port
    status, text = one_answer(shim.port, req)
    assert status == 400, text
    assert json.loads(text)["error"]["type"] == "invalid_request_error"
    assert (shim.path / "victim").is_dir()


@pytest.mark.parametrize("value", ["1x", "+2", "-1", "2 2", "0x2", "", "2 ", "\t2\t"])
def test_malformed_content_length_gets_one_clean_400(shim, value):
    """libmicrohttpd answered these itself, its 400's header block written twice
    (a space after the digits too: it takes the value up to the line's end)."""
    req = ("POST /v1/contexts HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: "
           "application/json\r\nContent-Length: %s\r\n\r\n{}" % (shim.port, value)).encode()
    status, out = raw(shim.port, req, timeout=5)
    assert status == 400, out
    assert out.count(b"HTTP/1.1 ") == 1, out
    assert b"Connection: close" in out.partition(b"\r\n\r\n")[0]
    assert json.loads(out.partition(b"\r\n\r\n")[2])["error"]["type"] == "invalid_request_error"
    assert shim.api.request("GET", "/v1/contexts").json()["contexts"] == []


def test_a_malformed_content_length_sent_slowly_gets_one_clean_400(shim):
    """A header block that takes its time is held until it is all in, and
    checked then: it is never handed to libmicrohttpd unchecked."""
    s = socket.create_connection(("127.0.0.1", shim.port), timeout=10)
    try:
        for piece in [b"POST /v1/contexts HTTP/1.1\r\n",
                      b"Host: 127.0.0.1:%d\r\nContent-Type: application/json\r\n" % shim.port,
                      b"Content-Length: 1x\r\n", b"\r\n{}"]:
            s.sendall(piece)
            time.sleep(0.6)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    finally:
        s.close()
    assert out.startswith(b"HTTP/1.1 400 "), out
    assert out.count(b"HTTP/1.1 ") == 1, out
    assert b"Connection: close" in out.partition(b"\r\n\r\n")[0]


def test_a_second_request_on_a_connection_is_never_read(shim):
    """Every answer closes its connection (Connection: close, streams too), so
    every request is the first of its own connection and checked as such: a
    malformed Content-Length pipelined after a good request got
    libmicrohttpd's doubled 400 after the 200."""
    p = shim.port
    shim.api.create("c")
    good = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % p
    bad = (b"POST /v1/contexts HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: "
           b"application/json\r\nContent-Length: 1x\r\n\r\n{}" % p)
    status, out = raw(p, good + bad, timeout=5)
    assert status == 200, out
    assert out.count(b"HTTP/1.1 ") == 1, out
    assert b"Connection: close" in out.partition(b"\r\n\r\n")[0]
    # Sent after the answer: the connection is closed by then.
    s = socket.create_connection(("127.0.0.1", p), timeout=5)
    try:
        s.sendall(good)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
        assert out.count(b"HTTP/1.1 200 ") == 1 and b"Connection: close" in out, out
        try:
            s.sendall(bad)
            late = s.recv(65536)
        except OSError:
            late = b""
        assert late == b"", late
    finally:
        s.close()
    # A stream says so too (chunked, then closed).
    status, out = raw(p, b"GET /v1/contexts/c/output HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                      b"Accept: text/event-stream\r\n\r\n" % p, timeout=5)
    head = out.partition(b"\r\n\r\n")[0]
    assert status == 200 and b"Connection: close" in head, out
    assert b"Transfer-Encoding: chunked" in head, out
    assert shim.api.request("GET", "/v1/contexts").json()["contexts"] == [
        {"name": "c", "status": "idle"}]


@pytest.mark.parametrize("size,lines,status", [(15000, 1, 200), (17000, 1, 431), (10, 99, 200),
                                               (10, 100, 431)],
                         ids=["15000-bytes", "17000-bytes", "100-lines", "101-lines"])
def test_a_header_block_over_16_kib_or_100_lines_gets_one_clean_431(shim, size, lines, status):
    """What passes the shim's own check fits libmicrohttpd's memory for the
    connection (which answered HTML itself past it)."""
    extra = b"".join(b"X-%d: %s\r\n" % (i, b"a" * size) for i in range(lines))
    req = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n" % (shim.port, extra)
    got, out = raw(shim.port, req, timeout=5)
    assert got == status, out[:300]
    assert out.count(b"HTTP/1.1 ") == 1, out[:300]
    if status == 431:
        assert json.loads(out.partition(b"\r\n\r\n")[2])["error"]["type"] == "request_too_large"


def test_a_content_length_of_too_many_digits_gets_one_clean_413(shim):
    """Twenty digits overflow libmicrohttpd's counter: it answered 413 itself,
    its header block twice."""
    req = ("POST /v1/contexts HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: "
           "application/json\r\nContent-Length: 99999999999999999999\r\n\r\n{}"
           % shim.port).encode()
    status, out = raw(shim.port, req, timeout=5)
    assert status == 413, out
    assert out.count(b"HTTP/1.1 ") == 1, out
    assert b"Connection: close" in out.partition(b"\r\n\r\n")[0]


def test_malformed_content_length_is_refused_and_closes(shim):
    """What holds today: 400, nothing created, the bytes after it never read."""
    req = ("POST /v1/contexts HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: "
           "application/json\r\nContent-Length: 1x\r\n\r\n" % shim.port).encode()
    follow = b'POST /v1/contexts HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: ' \
        b'application/json\r\nContent-Length: 15\r\n\r\n{"name":"made"}' % shim.port
    status, out = raw(shim.port, req + follow, timeout=5)
    assert status == 400, out
    assert shim.api.request("GET", "/v1/contexts").json()["contexts"] == []


def test_control_characters_in_json_strings_are_400(client, shim, fake):
    """cJSON takes a raw control character inside a string; JSON does not."""
    shim.api.create("cc")
    for body in [b'{"content":"a\x01b"}', b'{"content":"tab\there"}',
                 b'{"content":"line\nbreak"}']:
        r = client.request("POST", "/v1/contexts/cc/messages", body,
                           headers={"Content-Type": "application/json"})
        assert r.status == 400, (body, r)
        assert "control character" in r.error()[1]
    # As bytes on the wire: one answer, its header block once.
    body = b'{"content":"a\x01b"}'
    status, out = raw(shim.port, b"POST /v1/contexts/cc/messages HTTP/1.1\r\nHost: 127.0.0.1:%d"
                      b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                      % (shim.port, len(body), body), timeout=5)
    assert status == 400 and out.count(b"HTTP/1.1 ") == 1, out
    assert "control character" in json.loads(out.partition(b"\r\n\r\n")[2])["error"]["message"]
    r = shim.api.request("POST", "/v1/contexts/cc/messages", {"content": "a\x01\tb\n"})
    assert r.status == 202, r  # the same characters escaped are fine
    fake.wait_calls(1)
    assert [c.last_user_text for c in fake.calls] == ["a\x01\tb\n"]


# --- start-up errors (one line on stderr, exit 1) -------------------------------------------------------


@pytest.fixture
def env(fake, workdir):
    (workdir / "home").mkdir(exist_ok=True)
    return daemon_env(workdir / "home", fake.base_url)


def one_line(rc, lines, *values):
    assert rc == 1, (rc, lines)
    assert len(lines) == 1, lines
    for v in values:
        assert str(v) in lines[0], (v, lines[0])
    return lines[0]


@pytest.mark.parametrize("mode", ["mount", "no-mount", "daemon"])
def test_port_in_use(mcpfs_bin, env, workdir, mode):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    mnt = workdir / "mnt"
    mnt.mkdir()
    args = ["--state-dir=%s" % (workdir / "st"), "--http=127.0.0.1:%d" % port]
    args += {"mount": ["-f", str(mnt)], "no-mount": ["--no-mount"], "daemon": [str(mnt)]}[mode]
    try:
        rc, lines = start_failure(mcpfs_bin, args, env)
    finally:
        s.close()
    line = one_line(rc, lines, "127.0.0.1:%d" % port)
    assert "in use" in line
    assert not is_mounted(str(mnt))


@pytest.mark.parametrize("addr,named", [
    ("192.0.2.77:{p}", "192.0.2.77"), ("[fd00::77]:{p}", "fd00::77"),
    ("0.0.0.0:{p}", "0.0.0.0"), ("[::]:{p}", "[::]"), ("example.com:{p}", "example.com"),
    ("::1:{p}", "::1"), ("127.0.0.1:0", "port 0"), ("619009", "619009"),
])
def test_bad_or_non_loopback_address(mcpfs_bin, env, workdir, addr, named):
    a = addr.format(p=free_port())
    rc, lines = start_failure(mcpfs_bin, ["--state-dir=%s" % (workdir / "st"), "--no-mount",
                                          "--http=%s" % a], env)
    one_line(rc, lines, named)


def test_non_loopback_needs_token_and_binds_only_it(mcpfs_bin, env, workdir, nomount):
    ip = non_loopback_ipv4()
    if not ip:
        pytest.skip("this machine has no non-loopback IPv4 address")
    port = free_port()
    rc, lines = start_failure(mcpfs_bin, ["--state-dir=%s" % (workdir / "st"), "--no-mount",
                                          "--http=%s:%d" % (ip, port)], env)
    assert "--http-token-file" in one_line(rc, lines, ip)
    nm = nomount(token=TOKEN)  # loopback first, for comparison
    assert nm.api.request("GET", "/v1/health").status == 200
    tok = workdir / "tok"
    tok.write_text(TOKEN)
    os.chmod(tok, 0o600)
    p = subprocess.Popen([mcpfs_bin, "--state-dir=%s" % (workdir / "st2"), "--no-mount",
                          "--http=%s:%d" % (ip, port), "--http-token-file=%s" % tok],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env)
    try:
        api = Api(port, host=ip, token=TOKEN)
        wait_for(lambda: p.poll() is not None or api.healthy(), 10, what="shim on " + ip)
        assert api.request("GET", "/v1/health").status == 200
        # Only that address: nothing listens on loopback at this port.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        assert api.request("GET", "/v1/health", headers={"Host": "localhost:%d" % port}) \
            .status == 200
        assert api.request("GET", "/v1/health", headers={"Host": "evil:%d" % port}).status == 403
    finally:
        p.terminate()
        _, err = p.communicate(timeout=10)
    assert p.returncode == 0, err


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_token_file_permissions(mcpfs_bin, env, workdir, mode):
    tok = workdir / "token"
    tok.write_text(TOKEN + "\n")
    os.chmod(tok, mode)
    rc, lines = start_failure(mcpfs_bin, ["--state-dir=%s" % (workdir / "st"), "--no-mount",
                                          "--http=127.0.0.1:%d" % free_port(),
                                          "--http-token-file=%s" % tok], env)
    assert "chmod 600" in one_line(rc, lines, tok)


@pytest.mark.parametrize("content", ["", "short", "has space inside token", "\x01" * 20])
def test_token_file_contents(mcpfs_bin, env, workdir, content):
    tok = workdir / "token"
    tok.write_text(content)
    os.chmod(tok, 0o600)
    rc, lines = start_failure(mcpfs_bin, ["--state-dir=%s" % (workdir / "st"), "--no-mount",
                                          "--http=127.0.0.1:%d" % free_port(),
                                          "--http-token-file=%s" % tok], env)
    one_line(rc, lines, tok)


def test_token_file_as_an_o_option(mount_factory, workdir):
    """The fstab form: -o http=ADDR:PORT,http_token_file=F."""
    port = free_port()
    token_file = workdir / "o-token"
    token_file.write_text(TOKEN + "\n")
    os.chmod(token_file, 0o600)
    m = mount_factory(args=["-o", "http=127.0.0.1:%d,http_token_file=%s" % (port, token_file)])
    ok = Api(port, token=TOKEN)
    wait_for(ok.healthy, 10, what="the HTTP shim to answer")
    assert Api(port).request("GET", "/v1/contexts").status == 401
    assert ok.request("GET", "/v1/contexts").status == 200
    assert m.proc.poll() is None


def test_missing_token_file(mcpfs_bin, env, workdir):
    tok = workdir / "missing-token"
    rc, lines = start_failure(mcpfs_bin, ["--state-dir=%s" % (workdir / "st"), "--no-mount",
                                          "--http=127.0.0.1:%d" % free_port(),
                                          "--http-token-file=%s" % tok], env)
    one_line(rc, lines, tok)


def test_ipv6_loopback(nomount):
    if not ipv6_loopback_works():
        pytest.skip("no IPv6 loopback on this machine")
    nm = nomount(host="::1")
    api, port = nm.api, nm.port
    assert api.request("GET", "/v1/health").status == 200
    assert api.request("GET", "/v1/health", headers={"Host": "[::1]:%d" % port}).status == 200
    assert api.request("GET", "/v1/health", headers={"Host": "evil:%d" % port}).status == 403
    assert api.request("POST", "/v1/contexts", {"name": "six"}).status == 201
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    assert nm.proc.poll() is None


def test_bare_port_means_loopback(mcpfs_bin, env, workdir):
    """--http=PORT serves 127.0.0.1:PORT (and only there)."""
    port = free_port()
    log = open(workdir / "bare.log", "wb")
    p = subprocess.Popen([mcpfs_bin, "--state-dir=%s" % (workdir / "st"), "--no-mount",
                          "--http=%d" % port], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         env=env)
    try:
        api = Api(port)
        wait_for(lambda: p.poll() is not None or api.healthy(), 10, what="--http=PORT")
        assert p.poll() is None, (workdir / "bare.log").read_text()
        assert api.request("GET", "/v1/health").json()["status"] == "ok"
        host = non_loopback_ipv4()
        if host:
            with pytest.raises(OSError):
                socket.create_connection((host, port), timeout=2).close()
    finally:
        p.terminate()
        assert p.wait(10) == 0
        log.close()


def test_http_without_value_is_127_0_0_1_61900(mcpfs_bin, env, workdir):
    """CONTRACT §1: --http alone serves on the default address."""
    try:
        s = socket.socket()
        s.bind(("127.0.0.1", 61900))
        s.close()
    except OSError:
        pytest.skip("port 61900 is taken on this machine")
    log = open(workdir / "default.log", "wb")
    p = subprocess.Popen([mcpfs_bin, "--state-dir=%s" % (workdir / "st"), "--no-mount",
                          "--http"], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    try:
        api = Api(61900)
        wait_for(lambda: p.poll() is not None or api.healthy(), 10, what="--http on 61900")
        assert p.poll() is None, (workdir / "default.log").read_text()
        assert api.request("GET", "/v1/contexts").status == 200
    finally:
        p.terminate()
        assert p.wait(10) == 0
        log.close()
