"""CONTRACT §2 (`thinking`, `transcript.json`), §3.6 and §8: every block of a
reply is kept in the journal and shown in `transcript` and `transcript.json`;
`thinking` streams the thinking; replies go back to the API with the blocks it
requires; a reply that ends with pause_turn is continued, at most 3 times."""

import errno
import json
import os
import re
import select
import subprocess
from pathlib import Path

import pytest

from fake_anthropic import fake_signature
from http_support import shim, shim_factory  # noqa: F401  (fixtures)
from mcpfs_testlib import (
    PipeReader, Reader, output, parse_kv, read_file, read_partial, reply_for, send, status, wait_for,
    wait_status, which_or_fail,
)

THOUGHT = "First I weigh the options, then I answer."
TOOL = {"type": "tool_use", "id": "toolu_01A", "name": "get_weather",
        "input": {"city": "Paris", "units": ["C", "F"]}}
MYSTERY = {"type": "mystery_block", "payload": {"x": 1},
           "_delta": {"type": "mystery_delta", "more": True}}
CITATION = {"type": "web_search_result_location", "cited_text": "Paris is sunny.",
            "encrypted_index": "EncIdx1", "title": "Weather in Paris",
            "url": "https://weather.example/paris"}
CITED = {"type": "text", "text": " It is sunny.", "citations": [CITATION]}
SEARCH = {"type": "server_tool_use", "id": "srvtoolu_01B", "name": "web_search",
          "input": {"query": "weather paris"}}
RESULTS = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01B", "content": [
    {"type": "web_search_result", "title": "Paris forecast", "url": "https://a.example/p",
     "encrypted_content": "EncA", "page_age": None},
    {"type": "web_search_result", "title": "Météo Paris", "url": "https://b.example/m",
     "encrypted_content": "EncB", "page_age": "1 day"}]}


def every_block(fake):
    fake.script("normal", text="Answer.",
                blocks=[{"type": "thinking", "thinking": THOUGHT},
                        {"type": "redacted_thinking", "data": "RedactedOpaque=="},
                        TOOL, MYSTERY],
                blocks_after=[CITED])


def reply_json(ctx, turn=None):
    msgs = json.loads(read_file(ctx / "transcript.json"))["messages"]
    got = [m for m in msgs if m["role"] == "assistant" and not m.get("replaced")]
    return got[-1] if turn is None else [m for m in got if m["turn"] == turn][-1]


def check_every_block(ctx):
    blocks = reply_json(ctx, 1)["blocks"]
    assert [b["type"] for b in blocks] == ["thinking", "redacted_thinking", "tool_use",
                                           "mystery_block", "text", "text"]
    th, red, tool, mys, text, cited = blocks
    assert th == {"type": "thinking", "thinking": THOUGHT,
                  "signature": fake_signature(THOUGHT)}
    assert red == {"type": "redacted_thinking", "data": "RedactedOpaque=="}
    assert tool == dict(TOOL)
    assert mys == {"type": "mystery_block", "payload": {"x": 1}}
    assert text == {"type": "text", "text": "Answer."}
    assert cited == {"type": "text", "text": " It is sunny.", "citations": [CITATION]}


def test_every_block_kept_and_shown(mount, ctx, fake):
    every_block(fake)
    send(ctx, "weather?\n")
    # Only text goes to output (§3.6): the cited text block is text.
    assert output(ctx) == "Answer. It is sunny."
    assert read_file(ctx / "thinking") == THOUGHT + "\n\n[redacted]"
    tr = read_file(ctx / "transcript")
    assert THOUGHT in tr
    for line in ("[redacted thinking]",
                 '[tool use: get_weather {"city":"Paris","units":["C","F"]}]',
                 "[block: mystery_block]",
                 "[citation: Weather in Paris <https://weather.example/paris>]"):
        assert line + "\n" in tr, (line, tr)
    check_every_block(ctx)
    # jq reads it.
    r = subprocess.run([which_or_fail("jq"), "-r", ".messages[1].blocks[].type",
                        str(ctx / "transcript.json")], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout.split() == [
        "thinking", "redacted_thinking", "tool_use", "mystery_block", "text", "text"]
    # Back to the API: the text with its citation; the tool use (it would want
    # a tool_result), the unknown block and the thinking stay out.
    send(ctx, "and tomorrow?\n")
    assert output(ctx) == reply_for("and tomorrow?")
    sent = fake.calls[-1].messages[1]
    assert sent["role"] == "assistant" and strip_cache(sent["content"]) == [
        {"type": "text", "text": "Answer."}, CITED]
    # The prompt cache's breakpoint is on the last text block.
    assert sent["content"][-1]["cache_control"] == {"type": "ephemeral"}
    hist = json.loads(read_file(ctx / "history.json"))["messages"][1]
    assert hist["content"] == strip_cache(sent["content"])


def strip_cache(blocks):
    return [{k: v for k, v in b.items() if k != "cache_control"} for b in blocks]


def test_every_block_survives_remount_and_kill9(mount, ctx, fake):
    every_block(fake)
    send(ctx, "weather?\n")
    assert output(ctx) == "Answer. It is sunny."
    before = {n: read_file(ctx / n) for n in ("transcript", "transcript.json", "thinking")}
    mount.stop()
    mount.start()
    assert {n: read_file(ctx / n) for n in before} == before
    check_every_block(ctx)
    mount.kill9()
    mount.start()
    assert {n: read_file(ctx / n) for n in before} == before
    assert "journal_recovered" not in read_file(ctx / "status")


def test_server_tool_blocks_and_thinking_go_back(mount, ctx, fake):
    fake.script("normal", text="It will rain.",
                blocks=[{"type": "thinking", "thinking": THOUGHT}, SEARCH, RESULTS])
    send(ctx, "forecast?\n")
    assert output(ctx) == "It will rain."
    tr = read_file(ctx / "transcript")
    assert '[server tool use: web_search {"query":"weather paris"}]\n' in tr
    assert ("[web_search_tool_result]\n  Paris forecast <https://a.example/p>\n"
            "  Météo Paris <https://b.example/m>\n") in tr
    send(ctx, "thanks\n")
    assert output(ctx) == reply_for("thanks")
    # The fake checks the signature against the thinking it was given for.
    assert strip_cache(fake.calls[-1].messages[1]["content"]) == [
        {"type": "thinking", "thinking": THOUGHT, "signature": fake_signature(THOUGHT)},
        SEARCH, RESULTS, {"type": "text", "text": "It will rain."}]


def test_the_fake_refuses_what_the_api_refuses(fake):
    """The checks the tests above rely on: a thinking block without its
    signature, or with one given for other text, a tool use without its
    result, are 400s."""
    import urllib.error
    import urllib.request

    def post(content):
        body = {"model": "claude-sonnet-5-5", "max_tokens": 100, "messages": [
            {"role": "user", "content": "a"}, {"role": "assistant", "content": content},
            {"role": "user", "content": "b"}]}
        rq = urllib.request.Request(fake.base_url + "/v1/messages", json.dumps(body).encode(),
                                    {"x-api-key": "test-key-not-real",
                                     "anthropic-version": "2023-06-01",
                                     "content-type": "application/json"})
        try:
            return urllib.request.urlopen(rq, timeout=10).status
        except urllib.error.HTTPError as e:
            return e.code
    text = {"type": "text", "text": "ok"}
    assert post([{"type": "thinking", "thinking": "t"}, text]) == 400
    assert post([{"type": "thinking", "thinking": "t", "signature": ""}, text]) == 400
    assert post([{"type": "thinking", "thinking": "t", "signature": fake_signature("u")},
                 text]) == 400
    assert post([dict(TOOL), text]) == 400
    assert post([SEARCH, text]) == 400
    assert post([{"type": "thinking", "thinking": "t", "signature": fake_signature("t")},
                 SEARCH, RESULTS, text]) == 200
    fake.reset()


def test_thinking_streams_like_output(mount, ctx, fake):
    fake.script("normal", blocks=[{"type": "thinking", "thinking": THOUGHT}],
                pieces=["one ", "two ", "three"], hold_after=[1])
    send(ctx, "think\n")
    fake.wait_held(0)
    tail = mount.spawn(["tail", "-f", str(ctx / "thinking")])
    reader = Reader(ctx / "thinking")
    wait_for(lambda: reader.data == THOUGHT.encode(), 10, what="the thinking")
    assert not reader.done  # the reply goes on: readers wait
    fd = os.open(ctx / "thinking", os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert os.read(fd, 4096) == THOUGHT.encode()
        with pytest.raises(BlockingIOError):
            os.read(fd, 4096)
        p = select.poll()
        p.register(fd, select.POLLIN)
        assert p.poll(0) == []
        fake.release()
        assert p.poll(10000) != []
        wait_for(lambda: os.read(fd, 4096) == b"", 10, what="EOF on the non-blocking reader")
    finally:
        os.close(fd)
    reader.finish(10)
    assert reader.eof and reader.data == THOUGHT.encode()
    PipeReader(tail.stdout).wait_text(THOUGHT)
    tail.kill()
    assert output(ctx) == "one two three"


def test_thinking_of_a_reply_without_thinking_is_empty(ctx, fake):
    assert read_file(ctx / "thinking") == ""
    send(ctx, "plain\n")
    assert output(ctx) == reply_for("plain")
    assert read_file(ctx / "thinking") == ""
    assert os.stat(ctx / "thinking").st_size == 0
    assert reply_json(ctx)["blocks"] == [{"type": "text", "text": reply_for("plain")}]


@pytest.mark.allow_errors()
def test_kill9_mid_block_keeps_the_complete_blocks(mount, ctx, fake):
    hold_tool = dict(TOOL, _hold=True)
    fake.script("normal", text="Let me check.",
                blocks=[{"type": "thinking", "thinking": THOUGHT}],
                blocks_after=[hold_tool])
    send(ctx, "weather?\n")
    fake.wait_held(0)
    reader = Reader(ctx / "output")
    wait_for(lambda: reader.data == b"Let me check.", 10, what="the text")
    mount.kill9()
    reader.finish(10)
    mount.start()
    st = wait_status(ctx, "error", 10)
    assert re.search(r"interrupted", st.text), st.text
    data, err = read_partial(ctx / "output")
    assert data == b"Let me check." and err is not None and err.errno == errno.EIO
    blocks = reply_json(ctx, 1)["blocks"]
    # The tool use was cut off mid-way: it is not kept; what was complete is.
    assert blocks == [{"type": "thinking", "thinking": THOUGHT,
                       "signature": fake_signature(THOUGHT)},
                      {"type": "text", "text": "Let me check."}]
    assert read_file(ctx / "thinking") == THOUGHT
    assert "journal_recovered" not in st.text


def test_pause_turn_is_continued(mount, ctx, fake):
    fake.script("normal", text="Let me search. ", blocks_after=[SEARCH],
                stop_reason="pause_turn")
    fake.script("normal", text="It will rain.", blocks=[RESULTS], hold_after=[0])
    send(ctx, "forecast?\n")
    reader = Reader(ctx / "output")
    fake.wait_held(1)
    # Between the calls the reader has the first part and waits: no end yet.
    wait_for(lambda: reader.data == b"Let me search. ", 10, what="the paused part")
    assert not reader.done
    fake.release()
    reader.finish(10)
    assert reader.eof and reader.data == b"Let me search. It will rain."
    assert len(fake.calls) == 2
    cont = fake.calls[1].messages
    assert [m["role"] for m in cont] == ["user", "assistant"]
    # The paused reply goes back as it is.
    assert cont[1]["content"] == [{"type": "text", "text": "Let me search. "}, SEARCH]
    st = status(ctx)
    assert st.state == "idle" and st["continued"].startswith("1")
    assert st["stop_reason"] == "end_turn" and st.get("paused") is None
    blocks = reply_json(ctx)["blocks"]
    assert [b["type"] for b in blocks] == ["text", "server_tool_use",
                                           "web_search_tool_result", "text"]
    assert parse_kv(read_file(ctx / "usage"))["calls"] == "2"
    # The next call sends the one reply with its search and results.
    send(ctx, "thanks\n")
    assert output(ctx) == reply_for("thanks")
    assert strip_cache(fake.calls[-1].messages[1]["content"]) == [
        {"type": "text", "text": "Let me search. "}, SEARCH, RESULTS,
        {"type": "text", "text": "It will rain."}]


def test_pause_turn_continued_at_most_three_times(mount, ctx, fake):
    for i in range(4):
        fake.script("normal", text="part %d. " % i, stop_reason="pause_turn")
    send(ctx, "go\n")
    assert output(ctx) == "part 0. part 1. part 2. part 3. "
    assert len(fake.calls) == 4
    st = status(ctx)
    assert st.state == "idle" and st["stop_reason"] == "pause_turn"
    assert re.search(r"after 3 continuations", st["paused"]), st.text
    assert st["continued"].startswith("3")
    # Each continuation sent the reply so far (ending without white space, as
    # the API wants a last assistant message to end).
    assert fake.calls[3].messages[-1]["content"] == [
        {"type": "text", "text": "part 0. part 1. part 2."}]


def test_shim_serves_blocks_and_thinking(shim, fake):
    """The shim's transcript is transcript.json, every block included, and
    GET .../thinking streams the thinking like GET .../output."""
    api = shim.api
    assert api.request("POST", "/v1/contexts", {"name": "h"}).status == 201
    fake.script("normal", blocks=[{"type": "thinking", "thinking": THOUGHT}],
                pieces=["one ", "two"], hold_after=[1])
    assert api.request("POST", "/v1/contexts/h/messages", {"content": "hi"}).status == 202
    fake.wait_held(-1)
    got = {}

    def get_thinking():
        got["r"] = api.request("GET", "/v1/contexts/h/thinking")
    import threading
    th = threading.Thread(target=get_thinking, daemon=True)
    th.start()
    th.join(0.5)
    assert th.is_alive()  # the reply goes on: the thinking stream stays open
    fake.release()
    th.join(10)
    r = got["r"]
    assert r.status == 200 and r.body.decode() == THOUGHT
    assert r.headers["content-type"].startswith("text/plain")
    assert read_file(shim.path / "h" / "thinking") == THOUGHT
    t = api.request("GET", "/v1/contexts/h/transcript")
    assert t.status == 200
    assert json.loads(t.body) == json.loads(read_file(shim.path / "h" / "transcript.json"))
    assert json.loads(t.body)["messages"][1]["blocks"][0]["signature"] == fake_signature(THOUGHT)


# --- the recorded streams of tests/fixtures/recorded (real API output) ---------------------------

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"


def accumulate(data):
    """The content of a recorded stream's message, accumulated as the SDKs do;
    None when the stream does not end with message_stop."""
    blocks, partial = {}, {}
    for name, payload in parse_events(data):
        try:
            obj = json.loads(payload)
        except ValueError:
            return None  # a stream mcpfs fails (test_recorded_streams.py)
        kind = obj.get("type") or name
        if kind == "content_block_start":
            blocks[obj["index"]] = dict(obj["content_block"])
        elif kind == "content_block_delta":
            b, d = blocks[obj["index"]], obj["delta"]
            t = d.get("type")
            if t == "text_delta":
                b["text"] = b.get("text", "") + d["text"]
            elif t == "thinking_delta":
                b["thinking"] = b.get("thinking", "") + d["thinking"]
            elif t == "signature_delta":
                b["signature"] = b.get("signature", "") + d["signature"]
            elif t == "input_json_delta":
                partial[obj["index"]] = partial.get(obj["index"], "") + d["partial_json"]
            elif t == "citations_delta":
                b.setdefault("citations", []).append(d["citation"])
        elif kind == "error":
            return None
        elif kind == "message_stop":
            # A block cut off (max_tokens) ends with the message, as in the SDKs;
            # its input is what its pieces make, {} when they make no JSON.
            for i, p in partial.items():
                try:
                    blocks[i]["input"] = json.loads(p) if p else blocks[i]["input"]
                except ValueError:
                    blocks[i]["input"] = {}
            return [blocks[i] for i in sorted(blocks)]
    return None


def parse_events(data):
    name, datas = None, []
    for raw in data.replace(b"\r\n", b"\n").split(b"\n") + [b""]:
        if not raw:
            if datas:
                yield name, "\n".join(datas)
            name, datas = None, []
        elif raw.startswith(b"event:"):
            name = raw[6:].strip().decode()
        elif raw.startswith(b"data:"):
            datas.append(raw[5:].lstrip(b" ").decode())


def normal(blocks):
    """Plain text blocks side by side are one text, empty ones none (mcpfs keeps
    the text of a reply as one stream); a text block's empty citations none."""
    out = []
    for b in blocks:
        b = dict(b)
        if b.get("type") == "text" and not b.get("citations"):
            b.pop("citations", None)
            if not b["text"]:
                continue
            if out and out[-1].get("type") == "text" and "citations" not in out[-1]:
                out[-1] = {"type": "text", "text": out[-1]["text"] + b["text"]}
                continue
        if b.get("type") == "thinking":
            b.setdefault("signature", "")
            if not b["signature"]:
                b.pop("signature")
        out.append(b)
    return out


def test_recorded_streams_keep_every_block(mount, fake):
    """Each real recorded stream that completes: transcript.json holds every
    block the SDKs accumulate from it, in order, before and after a remount."""
    names = []
    for path in sorted(CORPUS.glob("*.sse")):
        want = accumulate(path.read_bytes())
        if want is None:
            continue
        c = mount.ctx(path.stem)
        fake.script("fixture", fixture="recorded:" + path.stem)
        send(c, "replay\n")
        read_partial(c / "output")
        wait_for(lambda: status(c).state in ("idle", "error"), 10, what=path.stem)
        got = reply_json(c)["blocks"]
        assert normal(got) == normal(want), path.stem
        names.append(path.stem)
    assert len(names) >= 30 and any("redacted" in n for n in names)
    mount.stop()
    mount.start()
    for n in names:
        c = mount.path / n
        assert normal(reply_json(c)["blocks"]) == normal(
            accumulate((CORPUS / (n + ".sse")).read_bytes())), n
