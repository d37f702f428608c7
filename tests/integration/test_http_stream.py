"""CONTRACT §7 streaming: GET output and POST messages with SSE follow a turn
live, whichever front end sent its message; a waiting stream costs no thread
(200 clients at once), sends heartbeats, notices a client that left, and the
daemon stops cleanly with streams open."""

import json
import os
import re
import select
import socket
import subprocess
import threading
import time

import pytest

from mcpfs_testlib import Reader, read_partial, reply_for, send, wait_for
from http_support import (  # noqa: F401  (fixtures)
    SseClient, quote, shim, shim_factory,
)


def first_deltas(text, k, n=4):
    """The text of the first k of the fake's n deltas of text."""
    size = max(1, -(-len(text) // n))
    return text[:k * size]


def read_at_least(pipe, n, timeout):
    """Bytes from a pipe as they come, until there are n (or the time is up)."""
    data, end = b"", time.monotonic() + timeout
    while len(data) < n and time.monotonic() < end:
        if select.select([pipe], [], [], 0.2)[0]:
            b = os.read(pipe.fileno(), 65536)
            if not b:
                break
            data += b
    return data


def no_retries(api, name):
    r = api.request("PATCH", "/v1/contexts/%s" % quote(name), {"config": {"max_retries": 0}})
    assert r.status == 200, r


# --- both front ends, mid-stream ------------------------------------------------------------


def test_fs_message_streams_over_http(shim, fake):
    """Input written through the mount; output read over HTTP while it streams."""
    ctx = shim.mount.ctx("fs")
    fake.script("hold", hold_after=2)
    send(ctx, "written via the mount\n")
    want = reply_for("written via the mount")
    plain = SseClient(shim.port, "GET", "/v1/contexts/fs/output", sse=False)
    sse = SseClient(shim.port, "GET", "/v1/contexts/fs/output")
    assert plain.status == 200 and sse.status == 200
    part = first_deltas(want, 2)
    wait_for(lambda: plain.data == part.encode(), what="the first two deltas as text")
    wait_for(lambda: sse.text() == part, what="the first two deltas as SSE")
    time.sleep(0.3)
    assert not plain.done and not sse.done and sse.final() is None
    fake.release()
    assert plain.wait_done().data == want.encode() and plain.error is None
    assert sse.wait_done().text() == want
    assert sse.final()[0] == "done" and sse.final()[1]["stop_reason"] == "end_turn"


def test_slow_reply_arrives_in_pieces(shim, fake):
    """With a slow fake, bytes reach the HTTP reader before the reply ends."""
    ctx = shim.mount.ctx("slow")
    fake.script("slow", delay_ms=300)
    send(ctx, "slowly please")
    c = SseClient(shim.port, "GET", "/v1/contexts/slow/output", sse=False)
    seen = set()
    while not c.done:
        seen.add(c.data)
        time.sleep(0.02)
    c.wait_done()
    want = reply_for("slowly please").encode()
    assert c.data == want
    partial = [d for d in seen if d and d != want]
    assert len(partial) >= 2, "the reply came in one piece: %r" % seen


def test_curl_n_prints_a_reply_while_it_streams(shim, fake):
    """`curl -N` gets the text/plain stream chunked, piece by piece."""
    ctx = shim.mount.ctx("cn")
    fake.script("hold", hold_after=2)
    send(ctx, "to curl")
    want = reply_for("to curl")
    head = shim.path.parent / "cn.headers"
    p = subprocess.Popen(["curl", "-sS", "-N", "-D", str(head),
                          "http://127.0.0.1:%d/v1/contexts/cn/output" % shim.port],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        got = read_at_least(p.stdout, len(first_deltas(want, 2)), 15)
        assert got == first_deltas(want, 2).encode()
        assert p.poll() is None, "curl ended before the reply did"
        headers = head.read_text().lower()
        assert "transfer-encoding: chunked" in headers
        assert "content-type: text/plain" in headers
        fake.release()
        rest, err = p.communicate(timeout=15)
        assert p.returncode == 0, err
        assert got + rest == want.encode()
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()


def test_http_message_streams_to_fs(shim, fake):
    """POST messages (SSE) over HTTP; `output` of the mount follows it live."""
    shim.api.create("h")
    fake.script("hold", hold_after=1)
    sse = SseClient(shim.port, "POST", "/v1/contexts/h/messages", {"content": "via http"})
    want = reply_for("via http")
    reader = Reader(shim.path / "h" / "output")
    wait_for(lambda: reader.data == first_deltas(want, 1).encode(), what="mount reader part")
    wait_for(lambda: sse.text() == first_deltas(want, 1), what="SSE part")
    fake.release()
    assert reader.finish().text == want
    assert sse.wait_done().text() == want
    assert sse.final()[0] == "done"
    data, err = read_partial(shim.path / "h" / "output")
    assert data.decode() == want and err is None


def test_queued_message_stream_waits_for_its_own_turn(shim, fake):
    shim.api.create("q")
    fake.script("hold", hold_after=1)
    first = SseClient(shim.port, "POST", "/v1/contexts/q/messages", {"content": "one"})
    fake.wait_held()
    second = SseClient(shim.port, "POST", "/v1/contexts/q/messages", {"content": "two"})
    time.sleep(0.3)
    assert second.events == [] and not second.done
    fake.release()
    assert first.wait_done().text() == reply_for("one")
    assert second.wait_done().text() == reply_for("two")
    assert [c.last_user_text for c in fake.calls] == ["one", "two"]


# --- turns that end badly ------------------------------------------------------------------------


def test_failed_turn(shim, fake):
    shim.api.create("f")
    no_retries(shim.api, "f")
    fake.script("error", error_after=1, error_type="overloaded_error",
                error_message="Overloaded")
    sse = SseClient(shim.port, "POST", "/v1/contexts/f/messages", {"content": "boom"})
    sse.wait_done()
    want = first_deltas(reply_for("boom"), 1)
    assert sse.text() == want
    name, obj = sse.final()
    assert name == "error" and obj["type"] == "overloaded_error"
    assert "Overloaded" in obj["message"]
    # text/plain: the partial text, then an incomplete body (like EIO on `cat`).
    plain = SseClient(shim.port, "GET", "/v1/contexts/f/output", sse=False).wait_done()
    assert plain.data == want.encode()
    assert plain.error is not None  # http.client.IncompleteRead
    r = subprocess.run(["curl", "-sS", "http://127.0.0.1:%d/v1/contexts/f/output" % shim.port],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    assert r.returncode == 18 and r.stdout == want.encode(), r  # partial file
    assert shim.api.request("GET", "/v1/contexts/f").json()["status"] == "error"


def test_cancel_ends_streams(shim, fake):
    shim.api.create("c")
    fake.script("hold", hold_after=1)
    sse = SseClient(shim.port, "POST", "/v1/contexts/c/messages", {"content": "stop me"})
    fake.wait_held()
    r = shim.api.request("POST", "/v1/contexts/c/cancel")
    assert r.status == 200
    name, obj = sse.wait_done().final()
    assert name == "error" and obj["type"] == "cancelled"
    fake.release()


def test_delete_ends_streams(shim, fake):
    shim.api.create("d")
    fake.script("hold", hold_after=1)
    sse = SseClient(shim.port, "POST", "/v1/contexts/d/messages", {"content": "bye"})
    plain = SseClient(shim.port, "GET", "/v1/contexts/d/output", sse=False)
    fake.wait_held()
    assert shim.api.request("DELETE", "/v1/contexts/d").status == 204
    assert sse.wait_done().final() is not None
    plain.wait_done()
    fake.release()
    assert shim.api.request("GET", "/v1/health").status == 200


def test_http10_client_gets_a_close_delimited_stream(shim):
    shim.api.create("ten")
    shim.api.send("ten", "old client")
    s = socket.create_connection(("127.0.0.1", shim.port), timeout=10)
    s.sendall(b"GET /v1/contexts/ten/output HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n\r\n" % shim.port)
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0]
    assert body == reply_for("old client").encode()


# --- many clients, heartbeats, clients that go away -----------------------------------------------


@pytest.mark.mcpfs_timeout(240)
def test_200_sse_clients_on_50_contexts(shim, fake):
    api = shim.api
    names = ["ctx%02d" % i for i in range(50)]
    for n in names:
        api.create(n)
    fake.set_default("hold", hold_after=1)
    clients = {}
    for n in names:
        clients[n] = [SseClient(shim.port, "POST", "/v1/contexts/%s/messages" % n,
                                {"content": "message for " + n})]
    fake.wait_calls(50)
    for n in names:
        clients[n] += [SseClient(shim.port, "GET", "/v1/contexts/%s/output" % n)
                       for _ in range(3)]
    every = [c for cs in clients.values() for c in cs]
    assert len(every) == 200 and all(c.status == 200 for c in every)
    # All 200 wait at once, each holding its turn's first delta.
    wait_for(lambda: all(c.events for c in every), 30, what="every client's first delta")
    assert not any(c.done for c in every)
    # Suspended, not a thread each: libfuse's workers, the network thread, the
    # notifier and libmicrohttpd's small pool, whatever the number of streams.
    threads = len(os.listdir("/proc/%d/task" % shim.mount.proc.pid))
    assert threads < 60, "%d threads for 200 waiting streams" % threads
    fake.set_default("normal")
    fake.release()
    for n, cs in clients.items():
        for c in cs:
            c.wait_done(60)
            assert c.text() == reply_for("message for " + n), (n, c.data[-300:])
            assert c.final()[0] == "done" and c.error is None
    assert api.request("GET", "/v1/health").status == 200
    assert all(c["status"] == "idle" for c in api.request("GET", "/v1/contexts").json()
               ["contexts"])
    api.send("ctx07", "still fine?")
    assert api.output("ctx07") == reply_for("still fine?")


@pytest.mark.mcpfs_args("-d")
@pytest.mark.mcpfs_timeout(120)
def test_heartbeat_and_gone_client(shim, fake):
    """An idle SSE stream sends ": keep-alive" about every 15 s; a client that
    left is noticed at that write and its stream released."""
    shim.api.create("hb")
    fake.script("hold", hold_after=1, hold_timeout=90)
    stay = SseClient(shim.port, "POST", "/v1/contexts/hb/messages", {"content": "wait"})
    fake.wait_held()
    gone = SseClient(shim.port, "GET", "/v1/contexts/hb/output")
    wait_for(lambda: gone.events, what="the gone client's first delta")
    gone.close()
    t0 = time.monotonic()
    wait_for(lambda: b": keep-alive" in stay.data, 25, what="a heartbeat comment")
    assert 10 < time.monotonic() - t0 < 25
    wait_for(lambda: "(unfinished)" in shim.mount.log(), 25, what="the gone stream released")
    assert not stay.done
    fake.release()
    assert stay.wait_done().text() == reply_for("wait")
    assert stay.final()[0] == "done"


@pytest.mark.mcpfs_args("-d")
def test_plain_text_client_that_left_is_released(shim, fake):
    """A text/plain stream carries no heartbeat; its client's socket is watched
    instead, so one that closed is noticed within seconds, not at the reply's end."""
    shim.api.create("pt")
    fake.script("hold", hold_after=1, hold_timeout=60)
    shim.api.send("pt", "wait")
    fake.wait_held()
    gone = SseClient(shim.port, "GET", "/v1/contexts/pt/output", sse=False)
    stay = SseClient(shim.port, "GET", "/v1/contexts/pt/output", sse=False)
    wait_for(lambda: gone.data and stay.data, what="both clients' first bytes")
    released = re.compile(r"http: stream of context \d+ turn 1 closed after \d+ bytes$", re.M)
    assert not released.search(shim.mount.log())
    gone.close()
    t0 = time.monotonic()
    wait_for(lambda: released.search(shim.mount.log()), 10, what="the gone stream released")
    assert time.monotonic() - t0 < 5
    assert len(released.findall(shim.mount.log())) == 1  # the other one stays
    fake.release()
    assert stay.wait_done().data == reply_for("wait").encode()


def test_stop_with_streams_open(shim_factory, fake):
    """Unmounting with suspended streams: they end, the daemon exits 0."""
    sh = shim_factory()
    sh.api.create("s")
    fake.script("hold", hold_after=1, hold_timeout=30)
    clients = [SseClient(sh.port, "POST", "/v1/contexts/s/messages", {"content": "x"})]
    fake.wait_held()
    clients += [SseClient(sh.port, "GET", "/v1/contexts/s/output", sse=sse)
                for sse in (True, False) for _ in range(3)]
    wait_for(lambda: all(c.data for c in clients), what="every client's first bytes")
    rc = sh.mount.stop()
    assert rc == 0
    for c in clients:
        c.wait_done(10)
    fake.release()


def test_many_short_requests_in_parallel(shim):
    """Keep-alive and parallel JSON requests across the pool's threads."""
    shim.api.create("p")
    errors = []

    def body(i):
        try:
            for _ in range(20):
                assert shim.api.request("GET", "/v1/contexts/p").status == 200
                assert shim.api.request("GET", "/v1/nothing").status == 404
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    ts = [threading.Thread(target=body, args=(i,)) for i in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors[:3]
    info = shim.api.request("GET", "/v1/contexts/p").json()
    assert json.dumps(info)
