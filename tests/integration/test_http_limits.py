"""The shim under hostile clients (SECURITY.md §7 and §9, doc/reliability.md
"Hostile HTTP clients"): what a client can make the daemon hold in memory, and
how many connections slow or streaming clients can take from the others.

Memory is asserted as a limit (VmHWM, the peak resident size, from
/proc/PID/status), never as a time.  The connection tests open over a thousand
loopback sockets, raise this process's descriptor limit for it, and bound every
wait."""

import http.client
import json
import resource
import socket
import subprocess
import threading
import time

import pytest

from mcpfs_testlib import proc_status, wait_for
from http_support import nomount, recv_all  # noqa: F401  (fixture)

MIB = 1 << 20
RSS_BOUND_MIB = 256  # SECURITY.md §7: the daemon's peak through this battery


def sanitized(binary):
    """Whether the binary links a sanitizer runtime: its shadow memory and
    quarantine make RSS mean nothing (as in test_soak.py); the peaks are then
    not checked, the rest of each test is."""
    r = subprocess.run(["ldd", binary], capture_output=True, text=True)
    return any(w.startswith(("libasan", "libtsan", "libubsan", "liblsan"))
               for w in r.stdout.split())


def peak_ok(nm, bound=RSS_BOUND_MIB):
    """The daemon's peak resident size is under bound MiB (always true for a
    sanitizer build)."""
    if sanitized(nm.proc.args[0]):
        return True
    hwm = vm(nm.proc.pid, "VmHWM")
    assert hwm < bound, "peak %.0f MiB, over %d MiB" % (hwm, bound)
    return True


def vm(pid, key):
    """VmRSS or VmHWM of pid, in MiB."""
    kib = proc_status(pid, key)
    assert kib is not None, "no %s in /proc/%d/status" % (key, pid)
    return kib / 1024


def head(port, method, path, length, extra=""):
    return ("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n%s\r\n" % (method, path, port, length, extra)).encode()


def send_raw(port, method, path, body, timeout=60):
    """One request with Connection: close; returns (status, headers+body bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(head(port, method, path, len(body), "Connection: close\r\n") + body)
    except OSError:
        pass  # answered and closed before the whole body went: read the answer
    out, _ = recv_all(s)  # an error (a reset) ends what was answered
    s.close()
    assert out.startswith(b"HTTP/1.1 "), out[:200]
    return int(out.split(b" ", 2)[1]), out


def parallel(n, fn):
    results = [None] * n

    def run(i):
        results[i] = fn()
    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return results


@pytest.fixture
def many_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192)
    if want < 2600:
        pytest.skip("the descriptor limit (hard %d) is too low for 1,100 sockets" % hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --- memory ----------------------------------------------------------------------------


def no_calls(api, name):
    """Messages of 0.6 to 1 MiB are accepted but none is sent: each alone fits
    budget_tokens (a message over it alone is refused, 413), and with the
    system prompt (200,000 tokens) each is over it, so its turn fails before
    any call and the message is kept (CONTRACT §3.3, §5)."""
    r = api.request("PATCH", "/v1/contexts/" + name,
                    {"system": "s" * 600000, "config": {"budget_tokens": 360000}})
    assert r.status == 200, r


def settled(api, name, turns):
    """Waits until every one of the context's turns has failed: a turn first
    waits for the model's capabilities, so the context may still change (and
    a rendering of it be made anew) for a moment after its 202s."""
    def done():
        # The listing, not GET /v1/contexts/NAME: that is a shared rendering
        # itself, and a live one would count against the renderings' budget.
        j = api.request("GET", "/v1/contexts").json()
        return {"name": name, "status": "error"} in j["contexts"]
    wait_for(done, 30, what="the %d turns of %s to end" % (turns, name))


def test_memory_stays_bounded_through_hostile_bodies_and_readers(nomount, fake):
    """The issue's battery: a PATCH raising max_input_bytes then a 32 MiB body of
    zeros; eight parallel 2.1 MB bodies (an array of zeros, and text over the
    limit); a 40 MiB context built of messages refused for the budget, read by six
    clients that do not read.  Before the bounds: 1.8 GB resident."""
    nm = nomount()
    api, p = nm.api, nm.port
    assert api.request("POST", "/v1/contexts", {"name": "a"}).status == 201
    r = api.request("PATCH", "/v1/contexts/a", {"config": {"max_input_bytes": 16 * MIB}})
    assert r.status == 200, r
    zeros = b'{"content":[' + b"0," * (16 * MIB) + b'0]}'
    status, out = send_raw(p, "POST", "/v1/contexts/a/messages", zeros)
    assert status == 413, out[:300]
    assert b"over the limit of %d" % ((8 << 20) + (64 << 10)) in out
    assert peak_ok(nm)
    # Defaults again: 2.1 MB bodies fit the body limit (2 MiB + 64 KiB).
    assert api.request("PATCH", "/v1/contexts/a",
                       {"config": {"max_input_bytes": MIB}}).status == 200
    array = b'{"content":[' + b"0," * (1050 << 10) + b'0]}'
    text = b'{"content":"' + b"t" * (2100 << 10) + b'"}'
    for body, want in ((array, 400), (text, 413)):
        got = parallel(8, lambda: send_raw(p, "POST", "/v1/contexts/a/messages", body))
        assert {s for s, _ in got} <= {want, 503}, [o[:200] for _, o in got]
        assert want in {s for s, _ in got}
    assert peak_ok(nm)
    assert fake.calls == []
    # A 40 MiB context for free: each message with the system prompt is over
    # the budget, fails without a call, and is kept (as the mount keeps it).
    assert api.request("POST", "/v1/contexts", {"name": "big"}).status == 201
    no_calls(api, "big")
    for i in range(40):
        r = api.request("POST", "/v1/contexts/big/messages", {"content": "m%d" % i * (MIB // 3)})
        assert r.status == 202, r
    settled(api, "big", 40)
    assert fake.calls == []
    readers = []
    for _ in range(6):
        s = socket.create_connection(("127.0.0.1", p), timeout=30)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /v1/contexts/big/transcript HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % p)
        readers.append(s)
    try:
        for s in readers:
            assert s.recv(12) == b"HTTP/1.1 200"
        assert peak_ok(nm)
        # One copy for the six: the next reader is sent the same snapshot.
        r = api.request("GET", "/v1/contexts/big/transcript", timeout=60)
        assert r.status == 200 and len(r.json()["messages"]) == 80
    finally:
        for s in readers:
            s.close()
    assert peak_ok(nm)


def test_a_patch_cannot_lift_the_body_ceiling(nomount, fake):
    """max_input_bytes goes up to 16 MiB; a body over 8 MiB + 64 KiB is 413 anyway."""
    nm = nomount()
    api = nm.api
    api.create("c")
    assert api.request("PATCH", "/v1/contexts/c", {"config": {
        "max_input_bytes": 16 * MIB, "budget_tokens": 10000000}}).status == 200
    r = api.request("POST", "/v1/contexts/c/messages", {"content": "x" * (9 * MIB)})
    assert r.status == 413, r
    assert r.error()[0] == "request_too_large"
    r = api.request("POST", "/v1/contexts/c/messages", {"content": "y" * (3 * MIB)})
    assert r.status == 202, r
    fake.wait_calls(1)
    assert len(fake.calls[0].last_user_text) == 3 * MIB


def test_bodies_in_flight_have_a_budget(nomount, fake):
    """Three 8 MiB bodies announced and not sent hold the 24 MiB budget: the next
    body gets 503 with Retry-After at once (Expect: 100-continue), the same body
    fits again when they are gone."""
    nm = nomount()
    api, p = nm.api, nm.port
    api.create("c")
    assert api.request("PATCH", "/v1/contexts/c", {"config": {
        "max_input_bytes": 16 * MIB, "budget_tokens": 10000000}}).status == 200
    holders = []
    try:
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", p), timeout=10)
            s.sendall(head(p, "POST", "/v1/contexts/c/messages", 8 * MIB))
            s.sendall(b'{"content":"')  # and no more
            holders.append(s)
        body = json.dumps({"content": "z" * (2 * MIB)}).encode()

        def busy():
            s = socket.create_connection(("127.0.0.1", p), timeout=10)
            s.sendall(head(p, "POST", "/v1/contexts/c/messages", len(body),
                           "Expect: 100-continue\r\n"))
            out = s.recv(65536)
            s.close()
            return out
        got = []
        wait_for(lambda: got.append(busy()) or got[-1].startswith(b"HTTP/1.1 503"), 10,
                 what="503 while the budget is taken")
        out = got[-1]
        assert b"Retry-After: 2\r\n" in out
        assert json.loads(out.partition(b"\r\n\r\n")[2])["error"]["type"] == "overloaded_error"
    finally:
        for s in holders:
            s.close()
    wait_for(lambda: api.request("POST", "/v1/contexts/c/messages",
                                 {"content": "z" * (2 * MIB)}).status == 202, 15,
             what="the budget to be free again")
    fake.wait_calls(1)
    assert len(fake.calls[0].last_user_text) == 2 * MIB


@pytest.mark.parametrize("body,why", [
    (b'{"config":' + b"[" * 40 + b"]" * 40 + b"}", "nested too deeply"),
    (b'{"config":{"x":[' + b"1," * 5000 + b'1]}}', "too many values"),
], ids=["depth-40", "5001-values"])
def test_json_shape_is_bounded_before_parsing(nomount, body, why):
    nm = nomount()
    nm.api.create("c")
    r = nm.api.request("PATCH", "/v1/contexts/c", body,
                       headers={"Content-Type": "application/json"})
    assert r.status == 400, r
    assert why in r.error()[1]


def test_renderings_in_flight_have_a_budget(nomount):
    """Two transcripts of 50 MiB do not fit 96 MiB at once: the second waits (503);
    it is served once the first reader is gone."""
    nm = nomount()
    api, p = nm.api, nm.port
    for name in ("one", "two"):
        assert api.request("POST", "/v1/contexts", {"name": name}).status == 201
        no_calls(api, name)
        for i in range(50):
            assert api.request("POST", "/v1/contexts/%s/messages" % name,
                               {"content": "%s%02d" % (name, i) * (MIB // 5)}).status == 202
        settled(api, name, 50)
    s = socket.create_connection(("127.0.0.1", p), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET /v1/contexts/one/transcript HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % p)
    try:
        assert s.recv(12) == b"HTTP/1.1 200"
        r = api.request("GET", "/v1/contexts/two/transcript", timeout=60)
        assert r.status == 503, r
        assert r.headers["retry-after"] == "2"
        assert r.error()[0] == "overloaded_error"
    finally:
        s.close()
    wait_for(lambda: api.request("GET", "/v1/contexts/two/transcript", timeout=60).status == 200,
             20, what="the second transcript once the first reader left")
    assert peak_ok(nm, 2 * RSS_BOUND_MIB)


def test_a_transcript_over_the_limit_is_refused_without_rendering(nomount):
    """100 MiB of messages whose turns fail for the budget (kept, as the mount keeps them):
    the transcript is over the 96 MiB of renderings, so it is refused before a
    JSON tree of it is built; six clients asking cost nothing."""
    nm = nomount()
    api = nm.api
    assert api.request("POST", "/v1/contexts", {"name": "huge"}).status == 201
    no_calls(api, "huge")
    for i in range(100):
        assert api.request("POST", "/v1/contexts/huge/messages",
                           {"content": "h%02d" % i * (MIB // 3)}).status == 202
    settled(api, "huge", 100)
    got = parallel(6, lambda: api.request("GET", "/v1/contexts/huge/transcript", timeout=60))
    for r in got:
        assert r.status == 500, r
        assert "over the shim's limit of 96 MiB" in r.error()[1]
    assert peak_ok(nm)
    r = api.request("GET", "/v1/contexts/huge/history")
    assert r.status == 200, r


# --- connections -------------------------------------------------------------------------


def probe(api, timeout=10):
    """health and cancel answer (cancel: 200 or 409); True when both did."""
    try:
        h = api.request("GET", "/v1/health", timeout=timeout).status
        c = api.request("POST", "/v1/contexts/c/cancel", timeout=timeout).status
    except OSError:
        return False
    return h == 200 and c in (200, 409)


def test_1100_slowloris_clients_do_not_lock_others_out(nomount, fake, many_fds):
    """Each slow client sends one header line every second and never ends its
    headers: a deadline per line would never fire.  The header block has 10 s in
    total, and a new connection closes the one waiting longest when only the
    reserve is left, so health and cancel keep answering throughout."""
    nm = nomount()
    api, p = nm.api, nm.port
    api.create("c")
    slow = []
    try:
        for i in range(1100):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", p))
            slow.append(s)
        time.sleep(0.5)
        for s in slow:
            try:
                s.send(b"GET /v1/health HTTP/1.1\r\n")
            except OSError:
                pass
        time.sleep(1.5)  # the attack in place (its first half second may take the reserve)
        answered, rounds, start = 0, 0, time.monotonic()
        while time.monotonic() - start < 14 and rounds < 30:
            rounds += 1
            for s in slow:
                try:
                    s.send(b"X-Slow: %d\r\n" % rounds)
                except OSError:
                    pass
            # 4 s, under the slow clients' 10 s: a probe that got in only when
            # their header deadline freed the places fails.
            answered += probe(api, timeout=4)
            time.sleep(0.5)
        assert answered == rounds, "%d of %d probes answered" % (answered, rounds)

        def all_closed():
            for s in slow:
                try:
                    while s.fileno() >= 0 and s.recv(4096) == b"":
                        s.close()
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
            return all(s.fileno() < 0 for s in slow)
        wait_for(all_closed, 30, interval=0.5, what="every slow client to be closed")
    finally:
        for s in slow:
            s.close()
    assert probe(api)
    assert nm.proc.poll() is None


def test_a_body_has_60_seconds_in_total(nomount, fake):
    """A body trickling one byte every 5 s never lets libmicrohttpd's idle
    timeout fire; the body's deadline, 60 s from its headers, does.  (About a
    minute: the limit itself.)"""
    nm = nomount()
    api, p = nm.api, nm.port
    api.create("sb")
    s = socket.create_connection(("127.0.0.1", p), timeout=1)
    s.sendall(head(p, "POST", "/v1/contexts/sb/messages", 100))
    start, closed = time.monotonic(), False
    try:
        while not closed and time.monotonic() - start < 90:
            try:
                s.send(b" ")
                closed = s.recv(100) == b""
            except socket.timeout:
                time.sleep(4)
            except OSError:
                closed = True
    finally:
        s.close()
    assert closed, "the slow body's connection is still open after 90 s"
    assert api.request("POST", "/v1/contexts/sb/messages", {"content": "after"}).status == 202
    fake.wait_calls(1)
    assert [c.last_user_text for c in fake.calls] == ["after"]


def test_1030_streams_leave_the_reserve(nomount, fake, many_fds):
    """Streams on a waiting reply stop at 960 (1024 less the reserve of 64): the
    rest get 503 with Retry-After, and health and cancel still answer."""
    nm = nomount()
    api, p = nm.api, nm.port
    api.create("c")
    fake.script("hold")
    assert api.request("POST", "/v1/contexts/c/messages", {"content": "wait"}).status == 202
    fake.wait_calls(1)
    streams = []
    try:
        for _ in range(1030):
            s = socket.create_connection(("127.0.0.1", p), timeout=10)
            s.sendall(b"GET /v1/contexts/c/output HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                      b"Accept: text/event-stream\r\n\r\n" % p)
            streams.append(s)
        statuses, busy = {}, None
        for s in streams:
            out = s.recv(4096)
            while b"\r\n\r\n" not in out:
                more = s.recv(4096)
                assert more, out
                out += more
            code = int(out.split(b" ", 2)[1])
            statuses[code] = statuses.get(code, 0) + 1
            if code == 503:
                busy = out
        # 960, or a few more: the count is checked, then the stream listed, on
        # libmicrohttpd's four threads.
        assert 960 <= statuses.get(200, 0) <= 964, statuses
        assert statuses.get(200, 0) + statuses.get(503, 0) == 1030, statuses
        assert b"Retry-After: 2\r\n" in busy
        for _ in range(9):
            assert probe(api)
    finally:
        for s in streams:
            s.close()
        fake.release()
    assert nm.proc.poll() is None
