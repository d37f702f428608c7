"""Replays of real recorded Messages API streams (issue 13 point 2).

tests/fixtures/recorded/ holds streams copied byte for byte from the Anthropic
SDKs' own test suites (SOURCES.md names each file's repository, path, commit and
licence).  Every one is replayed by the fake through a real mount three ways:
whole, in 1-byte pieces, and with every LF sent as CRLF.  What mcpfs must do is
read from the stream itself, never written down per file:

* `output` is the concatenated text of its text blocks (a block's initial text
  in content_block_start, then its text deltas);
* a stream that reaches message_stop is a complete turn (EOF); one with an
  `error` event first, or an event that is not JSON, fails with EIO, the
  error's type in `status`; one that ends without message_stop fails with EIO;
* a complete reply that was refused (stop_reason refusal) or has no text is left
  out of the history (the next call does not send it, history.json does not show
  it; `status` says why) while `transcript` keeps the message; any other
  complete reply is in the history;
* the call counts in `usage` whether or not the stream reported usage.

The same file also holds the tests of the stream fixes on their own: a last
event without its blank line, a stream without usage, retries in `status`.
"""

import errno
import json
import re
from pathlib import Path

import pytest

from mcpfs_testlib import (
    REPO, content_text, parse_kv, parse_sse, read_file, read_partial, reply_for, send, status,
    wait_for, write_file,
)

CORPUS = REPO / "tests" / "fixtures" / "recorded"
FILES = sorted(p.stem for p in CORPUS.glob("*.sse"))
MODES = {
    "whole": {},
    "bytes": {"fragment": 1, "fragment_delay_ms": 0},
    "crlf": {"crlf": True},
}
CALL_FAILED = r"call \d+ failed"


def sse_events(data):
    """The events of a stream by the WHATWG rules the SDKs follow (the fake's
    parse_sse), the last complete event kept even without its blank line (the
    stream ended cleanly): a blank line added ends it."""
    return parse_sse(data + b"\n\n")


def expectation(data):
    """What a stream says mcpfs must show: text, end, error, stop reason."""
    exp = {"text": "", "complete": False, "error": None, "stop_reason": None}
    for name, payload in sse_events(data):
        try:
            obj = json.loads(payload)
        except ValueError:
            exp["error"] = "stream_error"  # an event mcpfs cannot read
            break
        kind = obj.get("type") or name
        if kind == "error":
            exp["error"] = obj["error"]["type"]
            break
        if kind == "content_block_delta" and obj["delta"].get("type") == "text_delta":
            exp["text"] += obj["delta"]["text"]
        elif kind == "content_block_start" and obj["content_block"].get("type") == "text":
            exp["text"] += obj["content_block"].get("text") or ""  # a block may start with text
        elif kind == "message_delta" and obj["delta"].get("stop_reason"):
            exp["stop_reason"] = obj["delta"]["stop_reason"]
        elif kind == "message_stop":
            exp["complete"] = True
            break
    if not exp["complete"] and exp["error"] is None:
        exp["error"] = "stream_error"  # ended before message_stop
    refused = exp["stop_reason"] == "refusal"
    exp["in_history"] = exp["complete"] and not refused and exp["text"].strip() != ""
    return exp


def usage_calls(ctx):
    return int(parse_kv(read_file(ctx / "usage"), ":")["calls"])


def replay(mount, fake, name, mode):
    """One replay of stream `name` in a new context; checks everything the
    stream says.  Returns a one-word result for the report."""
    data = (CORPUS / (name + ".sse")).read_bytes()
    exp = expectation(data)
    c = mount.ctx("%s-%s" % (name, mode))
    write_file(c / "config", "max_retries = 0\n")  # an error is the stream's, not retried
    fake.script("fixture", fixture="recorded:" + name, **MODES[mode])
    message = "replay %s %s\n" % (name, mode)
    send(c, message)
    got, err = read_partial(c / "output")
    st = wait_for(lambda: (lambda s: s if s.state in ("idle", "error") else None)(status(c)),
                  10, what="the end of the turn")
    where = "%s (%s): %s" % (name, mode, st.text)
    assert got.decode() == exp["text"], where
    if exp["error"]:
        assert err is not None and err.errno == errno.EIO, where
        assert st.state == "error" and st["turn_state"] == "failed", where
        assert st["last_error"].startswith(exp["error"] + ":"), where
        result = "EIO " + exp["error"]
    else:
        assert err is None, "%s: %r" % (where, err)
        assert st.state == "idle" and st["turn_state"] == "done", where
        assert st.get("stop_reason") == exp["stop_reason"], where
        result = "done " + (exp["stop_reason"] or "-")
    assert usage_calls(c) == 1, where  # with or without usage in the stream
    # the history: the next call sends the exchange only when it belongs there
    hist = json.loads(read_file(c / "history.json"))["messages"]
    # (a reply with citations is its blocks there, as the next call sends it)
    shown = [content_text(m["content"]) for m in hist]
    if exp["in_history"]:
        assert shown == [message, exp["text"]], where
        assert st.get("turn_history") is None, where
    else:
        assert shown == [], where
        if exp["complete"]:
            why = "refused" if exp["stop_reason"] == "refusal" else "has no text"
            assert why in st["turn_history"], where
            result += ", left out"
    assert message in read_file(c / "transcript"), where
    send(c, "next\n")
    assert read_file(c / "output") == reply_for("next"), where
    sent = fake.calls[-1].texts()
    before = [("user", message), ("assistant", exp["text"])] if exp["in_history"] else []
    assert sent == before + [("user", "next\n")], where
    return result


@pytest.mark.allow_errors(CALL_FAILED)
@pytest.mark.parametrize("name", FILES)
def test_recorded_stream(mount, fake, name):
    """Each corpus stream whole, in 1-byte pieces and with CRLF: the same result."""
    results = {mode: replay(mount, fake, name, mode) for mode in MODES}
    print("replayed %s: %s" % (name, "; ".join("%s %s" % kv for kv in results.items())))
    assert len(set(results.values())) == 1, results


def test_corpus_is_complete():
    """Every corpus file is named in SOURCES.md, and every file named there is
    in the corpus; the corpus covers what the issue lists."""
    sources = (CORPUS / "SOURCES.md").read_text()
    named = set(re.findall(r"^\| `([^`]+)\.sse` \|", sources, re.M))
    assert named == set(FILES)
    assert len(FILES) >= 40
    kinds = {expectation((CORPUS / (f + ".sse")).read_bytes())["stop_reason"] for f in FILES}
    assert {"end_turn", "tool_use", "refusal", "max_tokens", None} <= kinds
    blob = b"".join((CORPUS / (f + ".sse")).read_bytes() for f in FILES)
    for need in (b'"thinking_delta"', b'"signature_delta"', b'"tool_use"', b'"server_tool_use"',
                 b'"redacted_thinking"', b'"citations_delta"',
                 b'"web_search_tool_result"', b'event: ping', b'event: error'):
        assert need in blob, need
    ends = {(CORPUS / (f + ".sse")).read_bytes()[-2:] for f in FILES}
    assert b"\n\n" in ends and any(not e.endswith(b"\n\n") for e in ends)


def _without_usage(name):
    """A corpus stream with every usage object taken out."""
    out = []
    for line in (CORPUS / (name + ".sse")).read_bytes().split(b"\n"):
        if line.startswith(b"data: {"):
            obj = json.loads(line[6:])
            obj.pop("usage", None)
            if isinstance(obj.get("message"), dict):
                obj["message"].pop("usage", None)
            line = b"data: " + json.dumps(obj, separators=(",", ":")).encode()
        out.append(line)
    return b"\n".join(out)


@pytest.mark.allow_errors(CALL_FAILED)
def test_final_event_without_blank_line_and_a_truncated_one(mount, fake, tmp_path):
    """The Python SDK's fixtures end `data: {"type":"message_stop"}` without the
    blank line: the turn is complete.  A last event cut inside its data still
    fails with EIO, and so does a stream cut off on the wire."""
    name = "py-basic-response"
    data = (CORPUS / (name + ".sse")).read_bytes()
    assert not data.endswith(b"\n")
    exp = expectation(data)
    c = mount.ctx("final")
    fake.script("fixture", fixture="recorded:" + name)
    send(c, "hi\n")
    got, err = read_partial(c / "output")
    assert err is None and got.decode() == exp["text"], (err, got)
    assert status(c)["turn_state"] == "done"

    cut = tmp_path / "cut.sse"
    cut.write_bytes(data[:-len(b'ge_stop"}')])  # inside the last event's JSON
    c = mount.ctx("cut")
    write_file(c / "config", "max_retries = 0\n")
    fake.script("fixture", fixture=str(cut))
    send(c, "hi\n")
    got, err = read_partial(c / "output")
    assert err is not None and err.errno == errno.EIO
    assert got.decode() == exp["text"]
    st = status(c)
    assert st["turn_state"] == "failed" and st["last_error"].startswith("stream_error"), st.text

    # the whole stream, but the connection drops before the chunked body ends
    c = mount.ctx("dropped")
    write_file(c / "config", "max_retries = 0\n")
    fake.script("fixture", fixture="recorded:" + name, disconnect_after_bytes=len(data))
    send(c, "hi\n")
    got, err = read_partial(c / "output")
    assert err is not None and err.errno == errno.EIO
    assert status(c)["turn_state"] == "failed"


def test_stream_without_usage_counts_as_a_call(mount, fake, tmp_path):
    path = tmp_path / "nousage.sse"
    path.write_bytes(_without_usage("py-snap01-testasyncmessages"))
    assert b"usage" not in path.read_bytes()
    c = mount.ctx("c")
    fake.script("fixture", fixture=str(path))
    send(c, "one\n")
    assert read_file(c / "output") == expectation(path.read_bytes())["text"]
    usage = parse_kv(read_file(c / "usage"), ":")
    assert usage["calls"] == "1", usage
    send(c, "two\n")
    assert read_file(c / "output") == reply_for("two")
    assert parse_kv(read_file(c / "usage"), ":")["calls"] == "2"
    # and after a restart, from the journal
    mount.remount()
    assert parse_kv(read_file(c / "usage"), ":")["calls"] == "2"


def test_refusal_and_no_text_leave_the_history_with_status_saying_why(mount, fake):
    """py-refusal-response: an empty text block, stop_reason refusal;
    py-snap03-testsyncruntools: only a tool_use block."""
    c = mount.ctx("c")
    send(c, "first\n")
    assert read_file(c / "output") == reply_for("first")
    fake.script("fixture", fixture="recorded:py-refusal-response")
    send(c, "refuse me\n")
    got, err = read_partial(c / "output")
    assert err is None and got == b""
    st = status(c)
    assert st.state == "idle" and st["stop_reason"] == "refusal", st.text
    assert st["turn_history"] == "left out: the reply was refused (stop_reason: refusal)"
    fake.script("fixture", fixture="recorded:py-snap03-testsyncruntools")
    send(c, "use a tool\n")
    got, err = read_partial(c / "output")
    assert err is None and got == b""
    st = status(c)
    assert st.state == "idle" and st["stop_reason"] == "tool_use", st.text
    assert st["turn_history"].startswith("left out: the reply has no text"), st.text
    t = read_file(c / "transcript")
    assert "refuse me" in t and "turn 2, refused" in t
    assert "use a tool" in t and "turn 3: the reply has no text" in t
    hj = json.loads(read_file(c / "history.json"))
    assert [m["content"] for m in hj["messages"]] == ["first\n", reply_for("first")]
    h = read_file(c / "history")
    assert "first" in h and "refuse me" not in h and "use a tool" not in h, h
    send(c, "then\n")
    assert read_file(c / "output") == reply_for("then")
    assert status(c).get("turn_history") is None
    assert fake.calls[-1].texts() == [("user", "first\n"), ("assistant", reply_for("first")),
                                      ("user", "then\n")]


def test_retries_stay_in_status(mount, fake):
    """A turn whose call was retried after a 529 says so once it is done, and
    after a restart; `turn_attempt` stays the reply's attempt (1: no `retry`)."""
    c = mount.ctx("c")
    fake.script_many({"kind": "status", "status": 529, "retry_after_ms": 10},
                     {"kind": "status", "status": 529, "retry_after_ms": 10})
    send(c, "busy\n")
    assert read_file(c / "output") == reply_for("busy")
    st = status(c)
    assert st["turn_state"] == "done" and st["turn_retries"] == "2", st.text
    assert st["turn_attempt"] == "1", st.text
    assert len(fake.calls) == 3
    mount.remount()
    st = status(c)
    assert st["turn_retries"] == "2" and st["turn_attempt"] == "1", st.text
    send(c, "calm\n")
    assert read_file(c / "output") == reply_for("calm")
    assert status(c).get("turn_retries") is None
