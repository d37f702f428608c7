"""Tests of the fake Anthropic server itself, so it is known good before it is
used to judge the daemon.  Plain http.client and raw sockets, no mount."""

import http.client
import json
import socket
import subprocess
import sys
import time
import types

import pytest

from mcpfs_testlib import (
    API_VERSION, DEFAULT_KEY, REPO, FakeAnthropic, FakeControl, parse_sse, sse_text, wait_for,
)

# These tests send invalid requests on purpose.
pytestmark = pytest.mark.fake_invalid_ok

FIXTURES = REPO / "tests" / "fixtures" / "sse"
SHARED = REPO.parent / "shared" / "reference" / "sse-examples"
HEADERS = {"x-api-key": DEFAULT_KEY, "anthropic-version": API_VERSION,
           "content-type": "application/json"}


def body(text="hello", stream=True, **extra):
    b = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": stream,
         "messages": [{"role": "user", "content": text}]}
    b.update(extra)
    return b


def post(fake, b, headers=HEADERS, path="/v1/messages", timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=timeout)
    data = b if isinstance(b, (bytes, str)) else json.dumps(b)
    conn.request("POST", path, data, headers)
    resp = conn.getresponse()
    return conn, resp


def call(fake, b=None, headers=HEADERS, **kw):
    conn, resp = post(fake, b if b is not None else body(), headers, **kw)
    data = resp.read()
    conn.close()
    return resp, data


def events_of(data):
    return [(e, json.loads(d)) for e, d in parse_sse(data)]


def raw_exchange(port, b, timeout=10):
    """Sends one request on a raw socket (Connection: close) and returns the raw
    response bytes, read until the server closes."""
    payload = json.dumps(b).encode()
    head = ("POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nx-api-key: %s\r\n"
            "anthropic-version: %s\r\ncontent-type: application/json\r\n"
            "content-length: %d\r\nConnection: close\r\n\r\n"
            % (port, DEFAULT_KEY, API_VERSION, len(payload))).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(head + payload)
    out = b""
    while True:
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            break
        if not d:
            break
        out += d
    s.close()
    return out


def dechunk(raw):
    """(status line, {header: value}, [chunk payloads], complete) of a raw
    chunked response."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    chunks, complete = [], False
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if size == 0:
            complete = rest.startswith(b"\r\n")
            break
        if len(rest) < size + 2:
            chunks.append(rest[:size])
            break
        chunks.append(rest[:size])
        rest = rest[size + 2:]
    return lines[0], headers, chunks, complete


# --- the normal stream -------------------------------------------------------------------------


def test_default_stream_shape(fake):
    resp, data = call(fake, body("hello\n"))
    assert resp.status == 200
    assert resp.getheader("content-type") == "text/event-stream; charset=utf-8"
    assert resp.getheader("request-id").startswith("req_")
    assert resp.getheader("transfer-encoding") == "chunked"
    evs = events_of(data)
    names = [e for e, _ in evs]
    assert names[0] == "message_start"
    assert names[1] == "content_block_start"
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [d for e, d in evs if e == "content_block_delta"]
    assert len(deltas) == 4
    assert all(d["delta"]["type"] == "text_delta" for d in deltas)
    for e, d in evs:
        assert d["type"] == e  # the JSON type always equals the event name
    assert sse_text(parse_sse(data)) == "reply to: hello"
    start = evs[0][1]["message"]
    assert start["model"] == "claude-sonnet-4-5"
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == len("hello\n".encode()) // 4 + 5
    md = evs[-2][1]
    assert md["delta"]["stop_reason"] == "end_turn"
    assert md["usage"]["output_tokens"] == len(b"reply to: hello") // 4 + 1
    # every event is `event: X\ndata: {json}\n\n`
    assert data.startswith(b"event: message_start\ndata: {")
    assert data.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    c = fake.calls[0]
    assert c.kind == "normal" and c.completed and c.text_sent == "reply to: hello"


def test_reply_derived_from_last_user_message(fake):
    b = body("first")
    b["messages"] += [{"role": "assistant", "content": "reply to: first"},
                      {"role": "user", "content": [{"type": "text", "text": "  second\n"}]}]
    b["system"] = "You are terse."
    resp, data = call(fake, b)
    assert sse_text(parse_sse(data)) == "reply to: second"
    est = len("You are terse.firstreply to: first  second\n".encode()) // 4 + 5
    assert events_of(data)[0][1]["message"]["usage"]["input_tokens"] == est
    c = fake.calls[0]
    assert c.system == "You are terse."
    assert c.n_messages == 3 and c.roles == ["user", "assistant", "user"]
    assert c.user_texts == ["first", "  second\n"]


def test_reply_text_and_delta_options(fake):
    fake.script("reply", text="abcdefghij", delta_size=3)
    fake.script("reply", pieces=["one ", "two ", "three"])
    _, d1 = call(fake)
    _, d2 = call(fake)
    t1 = [d["delta"]["text"] for e, d in events_of(d1) if e == "content_block_delta"]
    t2 = [d["delta"]["text"] for e, d in events_of(d2) if e == "content_block_delta"]
    assert t1 == ["abc", "def", "ghi", "j"]
    assert t2 == ["one ", "two ", "three"]


def test_non_streaming_reply(fake):
    resp, data = call(fake, body("hi", stream=False))
    assert resp.status == 200
    msg = json.loads(data)
    assert msg["type"] == "message" and msg["content"] == [{"type": "text", "text": "reply to: hi"}]


def test_keep_alive_connection_reused(fake):
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    for word in ("one", "two"):
        conn.request("POST", "/v1/messages", json.dumps(body(word)), HEADERS)
        resp = conn.getresponse()
        assert sse_text(parse_sse(resp.read())) == "reply to: " + word
    conn.close()
    assert len(fake.calls) == 2


# --- fixtures, byte for byte -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["stream_A", "stream_B", "stream_C"])
def test_fixture_files_match_shared_reference(name):
    mine = (FIXTURES / (name + ".sse")).read_bytes()
    if SHARED.is_dir():
        assert mine == (SHARED / (name + ".sse")).read_bytes()
    assert len(mine) == {"stream_A": 1089, "stream_B": 851, "stream_C": 1158}[name]


@pytest.mark.parametrize("name,text", [
    ("stream_A", "Hello! How can I help you today?"),
    ("stream_B", "The first three primes are 2, 3"),
    ("stream_C", "Grüße — 東京 🌸"),
])
def test_fixture_replayed_byte_exact(fake, name, text):
    fake.script("fixture", fixture=name)
    resp, data = call(fake)
    assert resp.status == 200
    assert data == (FIXTURES / (name + ".sse")).read_bytes()
    assert sse_text(parse_sse(data)) == text
    assert fake.calls[0].reply_text == text


def test_fixture_replayed_in_fragments(fake):
    fake.script("fixture", fixture="stream_C", fragment=3, fragment_delay_ms=0)
    raw = raw_exchange(fake.port, body())
    _, headers, chunks, complete = dechunk(raw)
    assert complete
    assert all(len(c) <= 3 for c in chunks)
    assert b"".join(chunks) == (FIXTURES / "stream_C.sse").read_bytes()


def test_parse_sse_byte_at_a_time_and_line_endings():
    data = (FIXTURES / "stream_C.sse").read_bytes()
    whole = parse_sse(data)
    assert parse_sse(data.replace(b"\n", b"\r\n")) == whole
    assert parse_sse(data.replace(b"\n", b"\r")) == whole
    # an unterminated tail is not an event
    assert parse_sse(data[:-1]) == whole[:-1]


# --- behaviours ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status,etype", [
    (400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
    (404, "not_found_error"), (429, "rate_limit_error"), (500, "api_error"),
    (502, "api_error"), (529, "overloaded_error"),
])
def test_status_error_shape(fake, status, etype):
    fake.script("status", status=status)
    resp, data = call(fake)
    assert resp.status == status
    assert resp.getheader("content-type") == "application/json"
    rid = resp.getheader("request-id")
    assert rid.startswith("req_")
    err = json.loads(data)
    assert err == {"type": "error", "error": {"type": etype, "message": err["error"]["message"]},
                   "request_id": rid}
    assert err["error"]["message"]
    assert fake.calls[0].status == status and fake.calls[0].request_id == rid


def test_status_retry_headers(fake):
    fake.script("status", status=429, retry_after=1, retry_after_ms=1000, should_retry=True,
                error_message="slow down")
    fake.script("status", status=529, should_retry=False)
    resp, data = call(fake)
    assert resp.getheader("retry-after") == "1"
    assert resp.getheader("retry-after-ms") == "1000"
    assert resp.getheader("x-should-retry") == "true"
    assert json.loads(data)["error"]["message"] == "slow down"
    resp, data = call(fake)
    assert resp.status == 529 and resp.getheader("x-should-retry") == "false"
    assert resp.getheader("retry-after") is None


def test_status_non_json_body(fake):
    fake.script("status", status=413, body="html")
    fake.script("status", status=502, body="upstream went away", content_type="text/plain")
    resp, data = call(fake)
    assert resp.status == 413 and resp.getheader("content-type") == "text/html"
    assert b"413 Request Entity Too Large" in data and not data.startswith(b"{")
    resp, data = call(fake)
    assert resp.status == 502 and data == b"upstream went away"


def test_scripted_queue_then_default(fake):
    fake.script("status", status=529, times=2)
    fake.set_default("reply", text="default!")
    got = [call(fake)[0].status for _ in range(2)]
    resp, data = call(fake)
    assert got == [529, 529] and resp.status == 200
    assert sse_text(parse_sse(data)) == "default!"
    assert fake.counts == {"status": 2, "reply": 1}
    assert len(fake.calls) == 3 and fake.pending() == 0


def test_mid_stream_error(fake):
    fake.script("error", error_after=2, error_type="overloaded_error")
    resp, data = call(fake)
    assert resp.status == 200
    evs = events_of(data)
    names = [e for e, _ in evs]
    assert names.count("content_block_delta") == 2
    assert names[-1] == "error" and "message_stop" not in names
    assert evs[-1][1] == {"type": "error", "error": {"type": "overloaded_error",
                                                     "message": "Overloaded"}}
    # the API's spelling, with spaces (stream B)
    assert b'data: {"type": "error", "error": {"type": "overloaded_error"' in data
    c = fake.calls[0]
    assert c.text_sent == "reply to: hello"[:len(c.text_sent)] and c.deltas_sent == 2
    assert not c.completed


def test_error_after_past_the_end_is_before_block_stop(fake):
    fake.script("error", error_after=99)
    _, data = call(fake)
    names = [e for e, _ in events_of(data)]
    assert names.count("content_block_delta") == 4 and names[-1] == "error"
    assert "content_block_stop" not in names


def test_disconnect_after_deltas(fake):
    fake.script("disconnect", disconnect_after=2, times=2)
    conn, resp = post(fake, body())
    with pytest.raises(http.client.IncompleteRead) as ei:
        resp.read()
    partial = ei.value.partial
    assert sse_text(parse_sse(partial)) == fake.calls[0].text_sent
    assert fake.calls[0].deltas_sent == 2 and not fake.calls[0].completed
    raw = raw_exchange(fake.port, body())
    assert not dechunk(raw)[3]  # the chunked encoding never finished


def test_disconnect_after_bytes_mid_utf8(fake):
    data = (FIXTURES / "stream_C.sse").read_bytes()
    cut = data.index("🌸".encode()) + 2  # inside the 4-byte character
    fake.script("fixture", fixture="stream_C", disconnect_after_bytes=cut)
    raw = raw_exchange(fake.port, body())
    _, _, chunks, complete = dechunk(raw)
    assert not complete
    assert b"".join(chunks) == data[:cut]


def test_disconnect_rst(fake):
    fake.script("disconnect", disconnect_after=1, disconnect_mode="rst")
    conn, resp = post(fake, body())
    with pytest.raises((http.client.IncompleteRead, ConnectionResetError)):
        resp.read()


def test_drop_without_response(fake):
    fake.script("drop")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        call(fake)
    assert fake.calls[0].kind == "drop" and fake.calls[0].status is None


def test_stall_then_continue(fake):
    fake.script("stall", stall_after=1, stall_seconds=0.6)
    conn, resp = post(fake, body())
    t0 = time.monotonic()
    first = b""
    while b"text_delta" not in first:
        first += resp.read1(65536)
    wait_for(lambda: fake.calls[0].stalled, 5)
    rest = resp.read()
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.5
    assert sse_text(parse_sse(first + rest)) == "reply to: hello"
    assert fake.calls[0].completed and not fake.calls[0].stalled


def test_stall_then_close(fake):
    fake.script("stall", stall_after=0, stall_seconds=0.3, stall_then="close")
    conn, resp = post(fake, body())
    with pytest.raises(http.client.IncompleteRead):
        resp.read()
    assert fake.calls[0].deltas_sent == 0


def test_stop_aborts_a_stall():
    f = FakeAnthropic().start()
    f.script("stall", stall_after=0, stall_seconds=60)
    conn, resp = post(f, body())
    wait_for(lambda: f.calls and f.calls[0].stalled, 5)
    t0 = time.monotonic()
    f.stop()
    assert time.monotonic() - t0 < 3
    wait_for(lambda: f.calls[0].done, 5)
    conn.close()


def test_hold_and_release(fake):
    fake.script("hold", hold_after=[1, 3])
    conn, resp = post(fake, body())
    c = fake.wait_held(0)
    assert c.deltas_sent == 1 and c.holds_reached == 1
    got = b""
    while sse_text(parse_sse(got)) != c.text_sent:
        got += resp.read1(65536)
    fake.release()
    wait_for(lambda: c.holds_reached == 2 and c.held, 5)
    assert c.deltas_sent == 3
    fake.release()
    got += resp.read()
    assert sse_text(parse_sse(got)) == "reply to: hello"
    assert c.completed


def test_client_close_is_recorded(fake):
    fake.script("hold", hold_after=1)
    conn, resp = post(fake, body())
    c = fake.wait_held(0)
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    wait_for(lambda: c.closed_by_client and c.done, 5)
    assert not c.completed


def test_reset_aborts_calls_in_flight(fake):
    fake.script("hold", hold_after=0)
    conn, resp = post(fake, body())
    c = fake.wait_held(0)
    fake.reset()
    wait_for(lambda: c.done, 5)
    assert fake.calls == [] and fake.counts == {}
    conn.close()


def test_slow(fake):
    fake.script("slow", delay_ms=100)
    t0 = time.monotonic()
    _, data = call(fake)
    assert time.monotonic() - t0 >= 0.39  # 4 deltas, 100 ms before each
    assert sse_text(parse_sse(data)) == "reply to: hello"


def test_fragment_fixed_size(fake):
    fake.script("fragment", fragment=1, fragment_delay_ms=0, text="Grüße — 東京 🌸")
    raw = raw_exchange(fake.port, body())
    _, headers, chunks, complete = dechunk(raw)
    assert complete and headers["transfer-encoding"] == "chunked"
    assert set(len(c) for c in chunks) == {1}
    data = b"".join(chunks)
    assert sse_text(parse_sse(data)) == "Grüße — 東京 🌸"


def test_fragment_random_splits_mid_character(fake):
    text = "Grüße — 東京 🌸 " * 20
    fake.script("fragment", fragment="random", fragment_seed=7, fragment_delay_ms=0, text=text)
    raw = raw_exchange(fake.port, body())
    _, _, chunks, complete = dechunk(raw)
    assert complete and max(len(c) for c in chunks) <= 7
    assert any(1 < len(c) < 7 for c in chunks)
    mid_char = 0
    for c in chunks:
        try:
            c.decode("utf-8")
        except UnicodeDecodeError:
            mid_char += 1
    assert mid_char > 0, "no fragment ended inside a multi-byte character"
    assert sse_text(parse_sse(b"".join(chunks))) == text


def test_thinking_block(fake):
    fake.script("thinking", thinking="Pondering.")
    _, data = call(fake)
    evs = events_of(data)
    assert evs[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    kinds = [(d["index"], d["delta"]["type"]) for e, d in evs if e == "content_block_delta"]
    assert kinds[:3] == [(0, "thinking_delta"), (0, "thinking_delta"), (0, "signature_delta")]
    assert all(k == (1, "text_delta") for k in kinds[3:])
    starts = [d["content_block"]["type"] for e, d in evs if e == "content_block_start"]
    assert starts == ["thinking", "text"]
    assert "".join(d["delta"].get("thinking", "") for e, d in evs
                   if e == "content_block_delta") == "Pondering."
    assert sse_text(parse_sse(data)) == "reply to: hello"


def test_ping_interleaved(fake):
    fake.script("ping")
    _, data = call(fake)
    names = [e for e, _ in parse_sse(data)]
    assert names.count("ping") == 2
    assert b'event: ping\ndata: {"type": "ping"}\n\n' in data
    assert sse_text(parse_sse(data)) == "reply to: hello"


def test_crlf(fake):
    fake.script("crlf")
    _, data = call(fake)
    assert b"\r\n" in data and data.count(b"\n") == data.count(b"\r\n")
    assert sse_text(parse_sse(data)) == "reply to: hello"


def test_huge(fake):
    fake.script("huge", huge=300000)
    _, data = call(fake)
    text = sse_text(parse_sse(data))
    assert len(text.encode()) == 300000 and text.startswith("reply to: hello\n")
    assert fake.calls[0].reply_text == text


def test_http10_close_delimited(fake):
    fake.script("http10")
    raw = raw_exchange(fake.port, body())
    head, _, data = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"transfer-encoding" not in head.lower() and b"content-length" not in head.lower()
    assert sse_text(parse_sse(data)) == "reply to: hello"
    # http.client reads a close-delimited body too
    fake.script("http10")
    resp, data = call(fake)
    assert resp.version == 10 and sse_text(parse_sse(data)) == "reply to: hello"


def test_header_delay(fake):
    fake.script("delay", header_delay_ms=300)
    t0 = time.monotonic()
    resp, _ = call(fake)
    assert resp.status == 200 and time.monotonic() - t0 >= 0.29


def test_unknown_behaviour_rejected(fake):
    with pytest.raises(ValueError):
        fake.script("bogus")
    with pytest.raises(ValueError):
        fake.script("slow", dealy_ms=3)


# --- validation --------------------------------------------------------------------------------


def test_missing_key_is_401(fake):
    h = {k: v for k, v in HEADERS.items() if k != "x-api-key"}
    resp, data = call(fake, body(), h)
    assert resp.status == 401
    assert json.loads(data)["error"]["type"] == "authentication_error"
    c = fake.calls[0]
    assert c.valid is False and c.status == 401 and fake.invalid == [c]


def test_wrong_key_is_401(fake):
    resp, _ = call(fake, body(), dict(HEADERS, **{"x-api-key": "sk-wrong"}))
    assert resp.status == 401


def test_bearer_token_accepted(fake):
    h = {k: v for k, v in HEADERS.items() if k != "x-api-key"}
    h["authorization"] = "Bearer some-token"
    resp, _ = call(fake, body(), h)
    assert resp.status == 200
    assert fake.calls[0].headers["authorization"] == "Bearer some-token"
    fake.auth_token = "right-token"
    resp, _ = call(fake, body(), h)
    assert resp.status == 401


INVALID_IDS = ["no-version", "bad-version", "bad-content-type", "no-model", "no-max-tokens",
               "string-max-tokens", "no-messages", "starts-with-assistant", "user-twice",
               "system-role", "empty-content", "blank-content", "extra-field", "temperature-3",
               "empty-system-block", "small-thinking-budget"]


@pytest.mark.parametrize("change,status", [
    (lambda h, b: h.pop("anthropic-version"), 400),
    (lambda h, b: h.__setitem__("anthropic-version", "2024-01-01"), 400),
    (lambda h, b: h.__setitem__("content-type", "text/plain"), 400),
    (lambda h, b: b.pop("model"), 400),
    (lambda h, b: b.pop("max_tokens"), 400),
    (lambda h, b: b.__setitem__("max_tokens", "10"), 400),
    (lambda h, b: b.__setitem__("messages", []), 400),
    (lambda h, b: b.__setitem__("messages", [{"role": "assistant", "content": "x"}]), 400),
    (lambda h, b: b["messages"].append({"role": "user", "content": "again"}), 400),
    (lambda h, b: b["messages"].__setitem__(0, {"role": "system", "content": "x"}), 400),
    (lambda h, b: b["messages"].__setitem__(0, {"role": "user", "content": ""}), 400),
    (lambda h, b: b["messages"].__setitem__(0, {"role": "user", "content": " \n"}), 400),
    (lambda h, b: b.__setitem__("frobnicate", 1), 400),
    (lambda h, b: b.__setitem__("temperature", 3), 400),
    (lambda h, b: b.__setitem__("system", [{"type": "text", "text": ""}]), 400),
    (lambda h, b: b.__setitem__("thinking", {"type": "enabled", "budget_tokens": 100}), 400),
], ids=INVALID_IDS)
def test_invalid_requests_are_400(fake, change, status):
    h, b = dict(HEADERS), body()
    change(h, b)
    fake.script("reply", text="must not be used")
    resp, data = call(fake, b, h)
    assert resp.status == status, data
    err = json.loads(data)
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert fake.calls[0].valid is False and fake.calls[0].error
    assert fake.pending() == 1  # an invalid request does not use up a scripted behaviour


def test_bad_json_is_400(fake):
    resp, data = call(fake, b"{not json")
    assert resp.status == 400 and fake.calls[0].valid is False


def test_valid_rich_request_accepted(fake):
    b = body("first", system=[{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
             temperature=0.5, metadata={"user_id": "u"})
    b["messages"] += [
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hm", "signature": "sig"},
            {"type": "text", "text": "ok"}]},
        {"role": "user", "content": [{"type": "text", "text": "next",
                                      "cache_control": {"type": "ephemeral"}}]}]
    resp, _ = call(fake, b)
    assert resp.status == 200 and fake.calls[0].valid


# --- recording --------------------------------------------------------------------------------


def test_requests_recorded(fake):
    t0 = time.time()
    call(fake, body("one"), dict(HEADERS, **{"x-extra": "1"}))
    call(fake, body("two"))
    calls = fake.calls
    assert [c.index for c in calls] == [1, 2]
    c = calls[0]
    assert c.method == "POST" and c.path == "/v1/messages"
    assert c.headers["x-api-key"] == DEFAULT_KEY and c.headers["x-extra"] == "1"
    assert c.headers["anthropic-version"] == API_VERSION
    assert c.body == body("one") and c.model == "claude-sonnet-4-5" and c.max_tokens == 1024
    assert c.stream and c.last_user_text == "one" and c.texts() == [("user", "one")]
    assert t0 - 1 <= c.time <= time.time() and calls[0].mono <= calls[1].mono
    assert c.done and c.completed and c.valid
    assert fake.counts == {"normal": 2}
    d = c.to_dict()
    json.dumps(d)
    assert d["last_user_text"] == "one"


def test_record_bodies_off_keeps_summaries():
    f = FakeAnthropic(record_bodies=False).start()
    try:
        call(f, body("x"))
        c = f.calls[0]
        assert c.body is None and c.last_user_text == "x" and c.n_messages == 1
    finally:
        f.stop()


def test_count_tokens_and_models(fake):
    resp, data = call(fake, {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "abcdefgh"}]},
                      path="/v1/messages/count_tokens")
    assert resp.status == 200 and json.loads(data) == {"input_tokens": 7}
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    conn.request("GET", "/v1/models", headers=HEADERS)
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["data"]
    conn.close()
    assert len(fake.calls) == 0 and len(fake.requests) == 2


# --- as a separate process, with the HTTP control API ------------------------------------------------


def test_subprocess_with_http_control(workdir):
    port_file = workdir / "port"
    p = subprocess.Popen([sys.executable, str(REPO / "tests" / "fake" / "fake_anthropic.py"),
                          "--port", "0", "--port-file", str(port_file)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(port_file.exists, 10, what="the port file")
        port = int(port_file.read_text())
        ctl = FakeControl("http://127.0.0.1:%d" % port)
        assert ctl.health()["ok"]
        ctl.script("status", status=529, retry_after=2, times=2)
        ctl.set_default("reply", text="from default")
        target = types.SimpleNamespace(port=port)
        assert call(target)[0].status == 529
        assert call(target)[0].getheader("retry-after") == "2"
        resp, data = call(target)
        assert sse_text(parse_sse(data)) == "from default"
        calls = ctl.calls()
        assert [c["status"] for c in calls] == [529, 529, 200]
        assert calls[0]["body"]["messages"][0]["content"] == "hello"
        assert ctl.counts() == {"status": 2, "reply": 1}
        ctl.script("hold", hold_after=1)
        conn, resp = post(target, body())
        wait_for(lambda: ctl.calls()[-1]["held"], 5)
        ctl.release()
        assert sse_text(parse_sse(resp.read())) == "reply to: hello"
        ctl.reset()
        assert ctl.requests() == []
    finally:
        p.terminate()
        try:
            assert p.wait(10) == 0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)


# --- the Models API and the per-model rules ---------------------------------------------------


def get_json(fake, path, headers=HEADERS):
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    conn.request("GET", path, headers={k: v for k, v in headers.items() if k != "content-type"})
    r = conn.getresponse()
    data = json.loads(r.read())
    conn.close()
    return r.status, data


def test_models_retrieve_is_a_model_info(fake):
    status, m = get_json(fake, "/v1/models/claude-sonnet-5-5")
    assert status == 200 and m["type"] == "model" and m["id"] == "claude-sonnet-5-5"
    caps = m["capabilities"]
    assert caps["thinking"]["types"] == {"adaptive": {"supported": True},
                                         "enabled": {"supported": False}}
    assert caps["effort"]["supported"] and caps["effort"]["max"] == {"supported": True}
    assert caps["image_input"] == {"supported": True} and m["max_input_tokens"] == 1000000
    assert not any(k.startswith("_") for k in m)
    status, m = get_json(fake, "/v1/models/claude-opus-4-1")
    assert m["lifecycle"] == "deprecated" and m["retires_at"].startswith("2027-01-05")
    status, err = get_json(fake, "/v1/models/claude-nope-9")
    assert status == 404 and err["type"] == "error" and \
        err["error"]["type"] == "not_found_error"
    status, err = get_json(fake, "/v1/models/claude-sonnet-5-5", headers={})
    assert status == 401


def test_models_list_pages_newest_first(fake):
    status, page = get_json(fake, "/v1/models")
    ids = [m["id"] for m in fake.models]
    assert status == 200 and [m["id"] for m in page["data"]] == ids[:20]
    assert ids[0] == "claude-mythos-5-1"
    created = [m["created_at"] for m in fake.models]
    assert created == sorted(created, reverse=True)
    fake.models_page_max = 3
    seen, after = [], None
    while True:
        status, page = get_json(fake, "/v1/models?limit=100" +
                                ("&after_id=" + after if after else ""))
        assert status == 200 and len(page["data"]) <= 3
        seen += [m["id"] for m in page["data"]]
        assert page["first_id"] == page["data"][0]["id"] and page["last_id"] == seen[-1]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == ids
    status, page = get_json(fake, "/v1/models?limit=2&before_id=" + ids[4])
    assert [m["id"] for m in page["data"]] == ids[2:4] and page["has_more"]
    assert get_json(fake, "/v1/models?limit=0")[0] == 400
    assert get_json(fake, "/v1/models?after_id=nope")[0] == 400


REFUSALS = [
    # (model, extra body fields or messages, status, words of the message)
    ("claude-sonnet-5-5", {"thinking": {"type": "enabled", "budget_tokens": 2048},
                           "max_tokens": 4096}, 400,
     "thinking.type.enabled is not supported"),
    ("claude-sonnet-5-5", {"temperature": 0.5}, 400, "temperature"),
    ("claude-mythos-5-1", {"top_p": 0.9}, 400, "top_p"),
    ("claude-opus-5-1", {"top_k": 5}, 400, "top_k"),
    ("claude-sonnet-4-5", {"thinking": {"type": "adaptive"}}, 400,
     "thinking.type.adaptive is not supported"),
    ("claude-3-5-haiku-20241022", {}, 404, "model"),
    ("claude-test-model", {"thinking": {"type": "adaptive"}}, 400, "does not support"),
    ("claude-fable-5-1", {"output_config": {"effort": "max"}}, 400, "'max' is not supported"),
    ("claude-sonnet-4-5", {"output_config": {"effort": "low"}}, 400, "does not support effort"),
    ("claude-sonnet-5-5", {"output_config": {"effort": "huge"}}, 400, "output_config.effort"),
    ("claude-fable-5-1", {"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
        {"type": "text", "text": "what is this"}]}]}, 400, "does not support image input"),
    ("claude-sonnet-5-5", {"messages": [{"role": "user", "content": "a"},
                                        {"role": "assistant", "content": ""},
                                        {"role": "user", "content": "b"}]}, 400, "non-empty"),
    ("claude-sonnet-5-5", {"messages": [{"role": "user", "content": "a"},
                                        {"role": "user", "content": "b"}]}, 400, "alternate"),
    ("claude-sonnet-5-5", {"messages": [{"role": "assistant", "content": "a"}]}, 400,
     "alternate"),
    ("claude-nope-9", {}, 404, "model: claude-nope-9"),
]


@pytest.mark.parametrize("model,extra,status,words", REFUSALS)
def test_refuses_what_the_model_does_not_take(fake, model, extra, status, words):
    resp, data = call(fake, body("hi", model=model, **extra))
    err = json.loads(data)
    assert resp.status == status, err
    assert err["type"] == "error" and err["error"]["type"] == (
        "invalid_request_error" if status == 400 else "not_found_error")
    assert words in err["error"]["message"] and err["request_id"].startswith("req_")
    assert len(fake.calls) == 1 and fake.calls[0].valid is False


ACCEPTED = [
    ("claude-sonnet-5-5", {"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}}),
    ("claude-sonnet-5-5", {"temperature": 1}),
    ("claude-sonnet-4-6", {"thinking": {"type": "enabled", "budget_tokens": 2048},
                           "temperature": 1, "max_tokens": 4096}),
    ("claude-sonnet-4-6", {"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}}),
    ("claude-sonnet-4-5", {"thinking": {"type": "enabled", "budget_tokens": 1024},
                           "temperature": 1, "max_tokens": 4096}),
    ("claude-haiku-4-5", {"temperature": 0.2}),
    ("claude-opus-4-1", {}),
    ("claude-mythos-5-1", {"output_config": {"effort": "xhigh"}}),
]


@pytest.mark.parametrize("model,extra", ACCEPTED)
def test_accepts_what_the_model_takes(fake, model, extra):
    resp, data = call(fake, body("hi", model=model, **extra))
    assert resp.status == 200, data
    assert fake.calls[0].valid is True


def test_add_model_serves_it(fake):
    assert call(fake, body("hi", model="my-model"))[0].status == 404
    fake.add_model("my-model", enabled=True)
    assert call(fake, body("hi", model="my-model"))[0].status == 200
    assert get_json(fake, "/v1/models/my-model")[1]["display_name"] == "my-model"
