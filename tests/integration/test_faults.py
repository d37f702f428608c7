"""The fault matrix (CONTRACT §3.7-§3.8): every way a call can go wrong, one test
each, with the same five checks — how many requests the fake received (the
retries), what `status` says (first line, `last_error: TYPE: message`,
`http_status`, the request id), what `cat output` sees (the partial text, then
EIO and a non-zero exit), how long the failure took against a bound derived
from the settings, and that the daemon still works afterwards.

test_failures.py covers the rules one at a time (client errors not retried,
retryable statuses retried until a success, retry-after honoured once, the
idle timeout, ctl retry/cancel); this file is the exhaustive matrix of
failures that stay failures after every retry, plus malformed streams, an
HTTP/1.0 close-delimited stream, a refused connection and a DNS failure.

Every context runs with idle_timeout = 1, connect_timeout = 2 and max_retries
= 2, so a failure is over in seconds; the bound of each case is
attempts x (what one attempt may take) + the back-off before each retry
(min(0.5 s x 2^n, 8 s), or the server's retry-after) + SLACK for a loaded
two-core machine or a sanitizer build.  Run with -s to see one line per case.
"""

import errno
import re
import socket
import time
from dataclasses import dataclass

import pytest

from mcpfs_testlib import (
    FakeAnthropic, output, read_file, read_partial, reply_for, run, send, status, wait_for,
    wait_status, write_file,
)

IDLE = 1        # idle_timeout, seconds
CONNECT = 2     # connect_timeout, seconds
RETRIES = 2     # max_retries
SLACK = 4.0     # seconds on top of every bound
SETTINGS = "idle_timeout = %d\nconnect_timeout = %d\nmax_retries = %d\n" % (IDLE, CONNECT,
                                                                             RETRIES)
MESSAGE = "hello"
REPLY = reply_for(MESSAGE)  # "reply to: hello", 4 text deltas of 4 bytes
DELTA = 4


def backoff(n):
    """Longest wait before retry n+1 by the documented rule (jitter only shortens it)."""
    return min(0.5 * 2 ** n, 8.0)


def bound(attempts, per_attempt=0.0, hints=()):
    """Longest a failure may take: every attempt, every wait between, and SLACK."""
    waits = sum(hints[i] if i < len(hints) else backoff(i) for i in range(attempts - 1))
    return attempts * per_attempt + waits + SLACK


@dataclass
class Case:
    id: str
    behaviour: dict
    calls: int                  # requests the fake must receive
    etype: str                  # regex for the error type in last_error
    message: str = "."          # regex for the error message
    http: int = None            # http_status in status (None: no such line)
    partial: int = 0            # text deltas output shows before EIO
    per_attempt: float = 0.0    # seconds one attempt may take (a timeout)
    hints: tuple = ()           # retry-after of each retry, seconds
    request_id: bool = True     # the fake's request id must be in status


ALL = 1 + RETRIES  # the first attempt and every retry

CASES = [
    # client errors: one request, no retry
    Case("401", {"kind": "status", "status": 401}, 1, "authentication_error", "x-api-key",
         http=401),
    Case("403", {"kind": "status", "status": 403}, 1, "permission_error", "permission",
         http=403),
    Case("404", {"kind": "status", "status": 404}, 1, "not_found_error", "Not found", http=404),
    # Cloudflare's HTML page, not the API's JSON: quoted, not parsed
    Case("413-html-body", {"kind": "status", "status": 413, "body": "html"}, 1,
         "http_error|request_too_large", r"413.*Request Entity Too Large", http=413),
    # retried until max_retries, honouring the server's hint
    Case("429-retry-after", {"kind": "status", "status": 429, "retry_after": 1}, ALL,
         "rate_limit_error", "rate limit", http=429, hints=(1.0, 1.0)),
    # retry-after-ms wins over retry-after (which would make this take a minute)
    Case("429-retry-after-ms", {"kind": "status", "status": 429, "retry_after_ms": 1200,
                                "retry_after": 30}, ALL,
         "rate_limit_error", "rate limit", http=429, hints=(1.2, 1.2)),
    Case("500", {"kind": "status", "status": 500}, ALL, "api_error", "Internal server error",
         http=500),
    Case("502", {"kind": "status", "status": 502}, ALL, "api_error", ".", http=502),
    Case("529", {"kind": "status", "status": 529}, ALL, "overloaded_error", "Overloaded",
         http=529),
    Case("529-x-should-retry-false", {"kind": "status", "status": 529, "should_retry": False},
         1, "overloaded_error", "Overloaded", http=529),
    Case("400-x-should-retry-true", {"kind": "status", "status": 400, "should_retry": True},
         ALL, "invalid_request_error", ".", http=400),
    # an SSE error event: retried while no text reached output, final after
    Case("error-event-before-text", {"kind": "error", "error_after": 0}, ALL,
         "overloaded_error", "Overloaded", http=200),
    Case("error-event-mid-stream", {"kind": "error", "error_after": 2, "error_type": "api_error",
                                    "error_message": "Internal server error"}, 1,
         "api_error", "Internal server error", http=200, partial=2),
    # the connection goes away
    Case("drop-before-first-byte", {"kind": "drop"}, ALL, "connection_error", ".",
         request_id=False),
    Case("disconnect-after-first-byte", {"kind": "normal", "disconnect_after_bytes": 1}, ALL,
         "stream_error", "before message_stop", http=200),
    Case("disconnect-after-text", {"kind": "disconnect", "disconnect_after": 1}, 1,
         "stream_error", "before message_stop", http=200, partial=1),
    Case("reset-after-text", {"kind": "disconnect", "disconnect_after": 1,
                              "disconnect_mode": "rst"}, 1,
         "stream_error", "before message_stop", http=200, partial=1),
    # silence past idle_timeout
    Case("stall-before-headers", {"kind": "normal", "header_delay_ms": 30000}, ALL,
         "timeout_error", "no data", per_attempt=IDLE, request_id=False),
    Case("stall-before-text", {"kind": "stall", "stall_after": 0, "stall_seconds": 30}, ALL,
         "timeout_error", "no data", http=200, per_attempt=IDLE),
    Case("stall-mid-stream", {"kind": "stall", "stall_after": 1, "stall_seconds": 30}, 1,
         "timeout_error", "no data", http=200, partial=1, per_attempt=IDLE),
    # malformed streams
    Case("malformed-json-in-delta", {"kind": "normal", "inject_after": 2,
                                     "inject": "bad_json"}, 1,
         "stream_error", "malformed 'content_block_delta'", http=200, partial=2),
    Case("malformed-json-before-text", {"kind": "normal", "inject_after": 0,
                                        "inject": "bad_json"}, ALL,
         "stream_error", "malformed", http=200),
    Case("delta-data-not-json", {"kind": "normal", "inject_after": 1, "inject": "not_json"}, 1,
         "stream_error", "malformed", http=200, partial=1),
    Case("delta-text-not-a-string", {"kind": "normal", "inject_after": 3,
                                     "inject": "bad_delta"}, 1,
         "stream_error", "malformed", http=200, partial=3),
    # a 200 that is no event stream (a proxy's page): said so, not parsed, not retried
    Case("200-html-not-a-stream", {"kind": "status", "status": 200, "body": "html"}, 1,
         "stream_error", "content-type .text/html., not an event stream", http=200),
    # an event past the parser's 16 MiB cap (a line that never ends): refused, not
    # buffered without bound, and not retried (the reply would not shrink)
    Case("event-over-16-MiB", {"kind": "normal", "inject_after": 1,
                               "inject": "data: " + "x" * (16 << 20)}, 1,
         "stream_error", "event of the stream is over 16777216 bytes", http=200, partial=1),
    # a close-delimited body cut short: only the missing message_stop tells
    Case("http10-cut-after-text", {"kind": "http10", "disconnect_after": 1}, 1,
         "stream_error", "before message_stop", http=200, partial=1),
]


@pytest.fixture
def fctx(mount):
    c = mount.ctx("c")
    write_file(c / "config", SETTINGS)
    return c


def report(case_id, calls, elapsed, limit):
    print("\nfault %-30s requests=%d elapsed=%5.2fs bound=%5.2fs" % (case_id, calls, elapsed,
                                                                    limit))


def cat_output(ctx, timeout):
    """`cat output` from just after the message is sent: (Result, seconds)."""
    t0 = time.monotonic()
    send(ctx, MESSAGE + "\n")
    r = run(["cat", str(ctx / "output")], timeout=timeout)
    return r, time.monotonic() - t0


def assert_eio_after(ctx, r, partial):
    """cat printed exactly the partial text and then failed with EIO."""
    assert r.rc == 1, r
    assert "Input/output error" in r.err, r
    assert r.out == partial, r
    data, err = read_partial(ctx / "output")
    assert data.decode() == partial
    assert err is not None and err.errno == errno.EIO, err


def assert_still_works(mount, ctx, fake, history=()):
    """The daemon is up and the next message is sent normally; a failed turn is
    not part of the history that call sends."""
    assert mount.proc.poll() is None, "the daemon exited"
    fake.set_default("normal")
    n = len(fake.calls)
    send(ctx, "again\n")
    assert output(ctx, timeout=20) == reply_for("again")
    assert wait_status(ctx, "idle").state == "idle"
    calls = fake.calls
    assert len(calls) == n + 1
    assert [t.strip() for _, t in calls[-1].texts()] == list(history) + ["again"]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(mount, fctx, fake, case):
    fake.set_default(**case.behaviour)
    limit = bound(case.calls, case.per_attempt, case.hints)
    r, elapsed = cat_output(fctx, timeout=limit + 20)
    calls = fake.wait_calls(case.calls, timeout=10, done=True)
    report(case.id, len(calls), elapsed, limit)

    assert len(calls) == case.calls, "requests: %r" % calls
    assert all(c.last_user_text.strip() == MESSAGE for c in calls)
    assert elapsed <= limit, "%s took %.2fs, over its bound of %.2fs" % (case.id, elapsed, limit)
    for i, hint in enumerate(case.hints):
        gap = calls[i + 1].mono - calls[i].mono
        assert gap >= hint - 0.05, "retry %d came %.2fs after, before retry-after %.1fs" % (
            i + 1, gap, hint)

    partial = REPLY[:case.partial * DELTA]
    assert calls[-1].text_sent.startswith(partial)  # (after an injection the fake goes on)
    assert_eio_after(fctx, r, partial)

    st = wait_status(fctx, "error", 10)
    m = re.match(r"(%s): (.*)$" % case.etype, st.get("last_error", ""))
    assert m, "last_error of type /%s/ expected:\n%s" % (case.etype, st.text)
    assert re.search(case.message, m.group(2), re.I), st.text
    assert st.get("http_status") == (str(case.http) if case.http else None), st.text
    assert st.get("turn_output_bytes") == str(len(partial)), st.text
    if case.request_id:
        assert calls[-1].request_id in st.text, st.text

    assert_still_works(mount, fctx, fake)


# --- streams that must succeed ----------------------------------------------------------------


@pytest.mark.parametrize("opts", [
    {"inject_after": 0},
    {"inject_after": 2},
    {"inject_after": 4},
    {"inject_after": 2, "crlf": True, "fragment": "random"},
], ids=["before-text", "mid-stream", "after-text", "crlf-fragmented"])
def test_garbage_sse_lines_are_ignored(mount, fctx, fake, opts):
    """Lines that are no SSE field a client knows (bare words, binary junk, a
    comment, id:, retry:) are ignored by the WHATWG rules the SDKs follow: the
    reply is whole and nothing is retried."""
    fake.set_default("normal", **opts)
    r, elapsed = cat_output(fctx, timeout=bound(1) + 20)
    report("garbage-lines-" + "-".join("%s=%s" % kv for kv in sorted(opts.items())),
           len(fake.calls), elapsed, bound(1))
    assert r.rc == 0 and r.err == "", r
    assert r.out == REPLY
    assert len(fake.calls) == 1
    assert any(e.startswith("inject:garbage") for e in fake.calls[0].events_sent)
    assert elapsed <= bound(1)
    assert wait_status(fctx, "idle").state == "idle"
    assert_still_works(mount, fctx, fake, [MESSAGE, REPLY])


@pytest.mark.parametrize("opts", [{}, {"fragment": "random"}, {"delay_ms": 50}],
                         ids=["plain", "fragmented", "slow"])
def test_http10_close_delimited_stream_succeeds(mount, fctx, fake, opts):
    fake.set_default("http10", **opts)
    r, elapsed = cat_output(fctx, timeout=bound(1) + 20)
    report("http10-" + (next(iter(opts)) if opts else "plain"), len(fake.calls), elapsed,
           bound(1))
    assert r.rc == 0 and r.err == "", r
    assert r.out == REPLY
    calls = fake.wait_calls(1, timeout=10, done=True)  # the fake notes it a moment later
    assert len(calls) == 1 and calls[0].completed
    assert elapsed <= bound(1)
    st = wait_status(fctx, "idle")
    assert st.get("stop_reason") == "end_turn", st.text
    assert st.get("last_error") is None, st.text
    assert_still_works(mount, fctx, fake, [MESSAGE, REPLY])


# --- no server at all -------------------------------------------------------------------------


def closed_port():
    """A loopback port nothing listens on (bound, then closed)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def assert_connection_failure(mount, c, etype_msg, limit, case_id):
    r, elapsed = cat_output(c, timeout=limit + 20)
    report(case_id, 0, elapsed, limit)
    assert elapsed <= limit, "%s took %.2fs, over its bound of %.2fs" % (case_id, elapsed, limit)
    assert_eio_after(c, r, "")
    st = wait_status(c, "error", 10)
    assert re.match(r"connection_error: .*(%s)" % etype_msg, st.get("last_error", ""), re.I), \
        st.text
    assert st.get("http_status") is None, st.text
    # every attempt was made: the first and max_retries retries
    log = wait_for(lambda: re.search(r"call \d+ failed: connection_error: .*\(HTTP 0, \d+ ms, "
                                     r"(\d+) retries", mount.log()), 10, what="the call's log line")
    assert int(log.group(1)) == RETRIES, log.group(0)
    assert mount.proc.poll() is None
    assert "base" in read_file(mount.path / ".status").lower()


def test_connection_refused(mount_factory, fake):
    port = closed_port()
    mt = mount_factory(base_url="http://127.0.0.1:%d" % port)
    c = mt.ctx("c")
    write_file(c / "config", SETTINGS)
    assert_connection_failure(mt, c, "refused|connect", bound(ALL), "connection-refused")
    assert fake.calls == []
    # Now something answers on that port: the same daemon sends the next message.
    late = FakeAnthropic(port=port).start()
    try:
        send(c, "again\n")
        assert output(c, timeout=20) == reply_for("again")
        assert [t.strip() for _, t in late.calls[0].texts()] == ["again"]
        assert len(late.calls) == 1
    finally:
        late.stop()


def unanswered_port():
    """A loopback listener that completes no handshake: its accept queue is
    full (listen(0) and connections never accepted), so the kernel drops every
    further SYN and a connect() waits until the client gives up.  Returns
    (port, sockets to close)."""
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(0)
    port = lsn.getsockname()[1]
    held = [lsn]
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        held.append(c)
    time.sleep(0.2)
    return port, held


@pytest.mark.parametrize("seconds", [1, 3])
def test_connect_timeout_bounds_each_attempt(mount_factory, fake, seconds):
    """A server that never completes the TCP handshake: each attempt ends after
    connect_timeout, whatever it is set to, and the turn fails clearly."""
    port, held = unanswered_port()
    try:
        mt = mount_factory(base_url="http://127.0.0.1:%d" % port)
        c = mt.ctx("c")
        write_file(c / "config", "connect_timeout = %d\nmax_retries = 0\n" % seconds)
        r, elapsed = cat_output(c, timeout=seconds + 20)
        report("connect-timeout-%ds" % seconds, 0, elapsed, seconds + SLACK)
        assert seconds - 0.1 <= elapsed <= seconds + SLACK, elapsed
        assert_eio_after(c, r, "")
        st = wait_status(c, "error", 10)
        assert re.match(r"connection_error: .*(timed? ?out|timeout)", st.get("last_error", ""),
                        re.I), st.text
        assert mt.proc.poll() is None
    finally:
        for s in held:
            s.close()
    assert fake.calls == []


@pytest.mark.parametrize("host,per_attempt", [
    # Never resolves (RFC 6761), but the resolver may ask a name server:
    # connect_timeout bounds each attempt.
    ("nonexistent.invalid", CONNECT),
    # A label over 63 bytes: the resolver library refuses the name itself, no
    # query is sent, so this fails at once whatever the network does.
    ("x" * 70 + ".invalid", 0.0),
], ids=["dot-invalid", "label-over-63-bytes"])
def test_dns_failure(mount_factory, fake, host, per_attempt):
    mt = mount_factory(base_url="http://%s:1" % host)
    c = mt.ctx("c")
    write_file(c / "config", SETTINGS)
    assert_connection_failure(mt, c, "resolve", bound(ALL, per_attempt), "dns-" + host[:20])
    assert fake.calls == []
    # The same daemon, remounted on the fake, has kept the context and works.
    mt.base_url = fake.base_url
    mt.remount()
    assert status(c).state == "error"  # the failed turn survived the restart
    send(c, "again\n")
    assert output(c, timeout=20) == reply_for("again")
    assert [t.strip() for _, t in fake.calls[0].texts()] == ["again"]
