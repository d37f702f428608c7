"""CONTRACT §10, the response cache (issue 14 point 4): with `response_cache =
on`, a request whose exact body was answered before with end_turn is answered
from STATE/cache with no call (the fake's recorded requests prove it), `usage`
and `status` say cache_hit; any change of history or settings misses; the
cache is bounded by `.config` response_cache_bytes, least recently used first,
survives remounts, and a torn entry is a miss, never served."""

import json
import os

import pytest

from http_support import shim, shim_factory  # noqa: F401  (fixtures)
from mcpfs_testlib import (
    REPO, output, parse_kv, read_file, reply_for, run, send, status, wait_status, write_file,
)

TOOL = {"type": "tool_use", "id": "toolu_01A", "name": "get_weather",
        "input": {"city": "Paris"}}
CITATION = {"type": "web_search_result_location", "cited_text": "Paris is sunny.",
            "encrypted_index": "EncIdx1", "title": "Weather in Paris",
            "url": "https://weather.example/paris"}
CITED = {"type": "text", "text": " It is sunny.", "citations": [CITATION]}


def usage(ctx):
    return parse_kv(read_file(ctx / "usage"))


def cache_on(mount):
    write_file(mount.path / ".config", "response_cache = on\n")


def ask(mount, name, text):
    """A new context (with .config's defaults) sends text; returns it and the reply."""
    c = mount.ctx(name)
    send(c, text + "\n")
    return c, output(c)


def entries(mount):
    return sorted(p for p in os.listdir(mount.state / "cache") if not p.startswith("."))


def root_status(mount):
    return parse_kv(read_file(mount.path / ".status"))


def assistant_blocks(ctx):
    msgs = json.loads(read_file(ctx / "transcript.json"))["messages"]
    return [m.get("blocks") for m in msgs if m["role"] == "assistant"]


def test_off_by_default(mount, fake):
    a, out_a = ask(mount, "a", "same question")
    b, out_b = ask(mount, "b", "same question")
    assert out_a == out_b == reply_for("same question")
    assert len(fake.calls) == 2
    assert "response_cache = off" in read_file(b / "config")
    u = usage(b)
    assert u["cache_hits"] == "0" and u["last_call"] == "api" and u["calls"] == "1", u
    assert status(b).get("turn_source") is None
    assert entries(mount) == []


def test_hit_answers_with_no_call(mount, fake):
    cache_on(mount)
    assert "response_cache = on" in read_file(mount.path / ".config")
    fake.script("normal", text="Answer.", blocks=[TOOL], blocks_after=[CITED])
    a, out_a = ask(mount, "a", "weather?")
    assert out_a == "Answer. It is sunny."
    assert len(fake.calls) == 1
    assert usage(a)["last_call"] == "api"
    assert len(entries(mount)) == 1

    # the same body from another context: answered at once, no call
    b, out_b = ask(mount, "b", "weather?")
    assert out_b == out_a
    assert len(fake.calls) == 1
    st = wait_status(b, "idle")
    assert st["turn_source"] == "cache_hit" and st["stop_reason"] == "end_turn", st.text
    assert st["turn_state"] == "done" and st.get("request_id") is None, st.text
    u = usage(b)
    # a hit costs no tokens and is no call
    assert u["cache_hits"] == "1" and u["last_call"] == "cache_hit", u
    assert u["calls"] == "0" and u["total_input_tokens"] == "0", u
    assert u["last_input_tokens"] == "0" and u["last_output_tokens"] == "0", u
    # the reply looks like the original, every block of it
    assert assistant_blocks(b) == assistant_blocks(a)
    assert "[tool use: get_weather" in read_file(b / "transcript")
    assert "Answer. It is sunny." in read_file(b / "history")

    # the cached reply goes into b's history like any other: the next call sends it
    send(b, "and tomorrow?\n")
    assert output(b) == reply_for("and tomorrow?")
    assert len(fake.calls) == 2
    sent = fake.calls[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert any(blk.get("citations") == [CITATION] for blk in sent[1]["content"]), sent[1]
    u = usage(b)
    assert u["last_call"] == "api" and u["cache_hits"] == "1" and u["calls"] == "1", u

    # it survives a remount, hits and all
    mount.remount()
    u = usage(b)
    assert u["cache_hits"] == "1" and u["calls"] == "1", u
    assert assistant_blocks(b)[0] == assistant_blocks(a)[0]
    c, out_c = ask(mount, "c", "weather?")
    assert out_c == out_a and len(fake.calls) == 2
    assert usage(c)["last_call"] == "cache_hit"
    assert status(c)["turn_source"] == "cache_hit"


def test_per_context_setting(mount, fake):
    a, _ = ask(mount, "a", "q")
    write_file(a / "config", "response_cache = on\n")
    b = mount.ctx("b")
    write_file(b / "config", "response_cache = on\n")
    send(b, "q\n")
    assert output(b) == reply_for("q")
    assert len(fake.calls) == 2      # a asked with the cache off: nothing kept
    c = mount.ctx("c")
    write_file(c / "config", "response_cache = on\n")
    send(c, "q\n")
    assert output(c) == reply_for("q")
    assert len(fake.calls) == 2      # b's answer was kept
    d, _ = ask(mount, "d", "q")      # off: asks
    assert len(fake.calls) == 3


@pytest.mark.parametrize("setting", [
    ("system", "Be brief.\n"),
    ("model", "claude-haiku-4-5\n"),
    ("config", "max_tokens = 1000\n"),
    ("config", "temperature = 0.5\n", "model = claude-haiku-4-5\n"),
    ("config", "effort = high\n"),
    ("config", "prompt_cache = off\n"),
    ("config", "thinking = 2048\n"),
    ("config", "tools = web_search\n"),
    ("schema", '{"type":"object","properties":{"a":{"type":"string"}},'
               '"required":["a"],"additionalProperties":false}\n'),
])
def test_miss_after_a_change_of_settings(mount, fake, setting):
    cache_on(mount)
    if len(setting) > 2:  # a base for every context (sonnet-5-5 takes no temperature)
        write_file(mount.path / ".config", setting[2])
    ask(mount, "a", "q")
    assert len(fake.calls) == 1
    # the same settings: a hit
    ask(mount, "b", "q")
    assert len(fake.calls) == 1
    # one setting changed: the body differs, so a call
    c = mount.ctx("c")
    write_file(c / setting[0], setting[1])
    send(c, "q\n")
    output(c)
    assert wait_status(c, "idle")["turn_state"] == "done"
    assert len(fake.calls) == 2
    assert usage(c)["last_call"] == "api"
    assert status(c).get("turn_source") is None
    # and that answer is kept under its own key
    d = mount.ctx("d")
    write_file(d / setting[0], setting[1])
    send(d, "q\n")
    output(d)
    assert len(fake.calls) == 2
    assert usage(d)["last_call"] == "cache_hit"


def test_miss_after_a_change_of_history(mount, fake):
    cache_on(mount)
    a, _ = ask(mount, "a", "q")
    send(a, "q2\n")
    assert output(a) == reply_for("q2")
    assert len(fake.calls) == 2     # a new message: a new body
    send(a, "q\n")                  # the same words after a history: another body
    assert output(a) == reply_for("q")
    assert len(fake.calls) == 3
    assert usage(a)["cache_hits"] == "0"
    # after clear the history is empty again: the first body, a hit
    write_file(a / "ctl", "clear\n")
    send(a, "q\n")
    assert output(a) == reply_for("q")
    assert len(fake.calls) == 3
    assert usage(a)["cache_hits"] == "1"


def test_only_end_turn_is_kept(mount, fake):
    cache_on(mount)
    fake.script("normal", stop_reason="max_tokens")
    a, _ = ask(mount, "a", "q")
    assert status(a)["stop_reason"] == "max_tokens"
    ask(mount, "b", "q")
    assert len(fake.calls) == 2
    ask(mount, "c", "q")
    assert len(fake.calls) == 2     # b's end_turn answer was kept


def test_retry_asks_again(mount, fake):
    cache_on(mount)
    ask(mount, "a", "q")
    b, _ = ask(mount, "b", "q")
    assert len(fake.calls) == 1
    fake.script("normal", text="another answer")
    write_file(b / "ctl", "retry\n")
    assert output(b) == "another answer"
    assert len(fake.calls) == 2
    assert usage(b)["last_call"] == "api"
    # the regenerated answer replaced the entry
    c, out_c = ask(mount, "c", "q")
    assert out_c == "another answer" and len(fake.calls) == 2


def test_eviction_least_recently_used_first(mount, fake):
    cache_on(mount)
    # each entry holds a 400-byte reply: two fit in 1024 bytes, three do not
    write_file(mount.path / ".config", "response_cache_bytes = 1024\n")
    assert "response_cache_bytes = 1024" in read_file(mount.path / ".config")
    fake.set_default("normal", text="A" * 400)
    ask(mount, "c1", "m1")
    ask(mount, "c2", "m2")
    assert len(fake.calls) == 2 and len(entries(mount)) == 2
    ask(mount, "c3", "m1")          # a hit: m1 is now the most recently used
    assert len(fake.calls) == 2
    ask(mount, "c4", "m3")          # a call; m2, the least recently used, goes
    assert len(fake.calls) == 3 and len(entries(mount)) == 2
    assert root_status(mount)["response_cache"].startswith("2 entries, ")
    ask(mount, "c5", "m1")          # still there
    assert len(fake.calls) == 3
    ask(mount, "c6", "m3")          # still there
    assert len(fake.calls) == 3
    ask(mount, "c7", "m2")          # evicted: asked again
    assert len(fake.calls) == 4
    assert usage(mount.path / "c7")["last_call"] == "api"


def test_lru_order_survives_remount(mount, fake):
    cache_on(mount)
    write_file(mount.path / ".config", "response_cache_bytes = 1024\n")
    fake.set_default("normal", text="A" * 400)
    ask(mount, "c1", "m1")
    ask(mount, "c2", "m2")
    ask(mount, "c3", "m1")          # m1 used last
    assert len(fake.calls) == 2
    mount.remount()
    assert "response_cache_bytes = 1024" in read_file(mount.path / ".config")
    ask(mount, "c4", "m3")          # evicts m2, not m1
    assert len(fake.calls) == 3
    ask(mount, "c5", "m1")
    assert len(fake.calls) == 3
    ask(mount, "c6", "m2")
    assert len(fake.calls) == 4
    # a smaller bound evicts at once
    write_file(mount.path / ".config", "response_cache_bytes = 1024\n")
    assert len(entries(mount)) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_torn_entry_is_a_miss(mount, fake, damage):
    cache_on(mount)
    fake.set_default("normal", text="the real answer")
    ask(mount, "a", "q")
    [name] = entries(mount)
    path = mount.state / "cache" / name
    mount.stop()
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[:len(data) // 2])
    else:
        i = len(data) - 12          # a byte of the reply's text
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x20]) + data[i + 1:])
    mount.start()
    b, out_b = ask(mount, "b", "q")
    assert out_b == "the real answer"
    assert len(fake.calls) == 2     # not served: asked again
    assert usage(b)["last_call"] == "api"
    assert root_status(mount)["response_cache_torn"].startswith("1 ")
    # the new answer replaced the torn file
    c, out_c = ask(mount, "c", "q")
    assert out_c == "the real answer" and len(fake.calls) == 2


def test_bound_is_checked_at_write(mount, fake):
    cfg = mount.path / ".config"
    assert "response_cache_bytes = 268435456" in read_file(cfg)
    for bad, why in (("12", "out of range 1024-1099511627776"),
                     ("lots", "not a whole number"),
                     ("1099511627777", "out of range")):
        r = run("echo 'response_cache_bytes = %s' > '%s'" % (bad, cfg))
        assert r.rc != 0 and "Invalid argument" in r.err, r
        st = parse_kv(read_file(mount.path / ".status"))
        assert why in st["last_refused"], st
    assert "response_cache_bytes = 268435456" in read_file(cfg)
    # a context has no bound of its own
    c = mount.ctx("c")
    r = run("echo 'response_cache_bytes = 4096' > '%s/config'" % c)
    assert r.rc != 0 and "Invalid argument" in r.err, r
    # a valid one, with other keys, is kept across a remount
    r = run("printf 'max_tokens = 999\\nresponse_cache_bytes = 65536\\n' > '%s'" % cfg)
    assert r.rc == 0, r
    mount.remount()
    text = read_file(cfg)
    assert "response_cache_bytes = 65536" in text and "max_tokens = 999" in text
    assert root_status(mount)["response_cache"] == "0 entries, 0 of 65536 bytes"


def test_shim_post_message_hit(shim, fake):
    api = shim.api
    write_file(shim.mount.path / ".config", "response_cache = on\n")
    api.create("a")
    api.send("a", "hello")
    assert api.output("a") == reply_for("hello")
    assert len(fake.calls) == 1
    api.create("b", config={"response_cache": True})
    r = api.request("POST", "/v1/contexts/b/messages", {"content": "hello"},
                    headers={"Accept": "text/event-stream"})
    assert r.status == 200, r
    events = r.text
    assert "event: done" in events, events
    done = json.loads(events.split("event: done\ndata: ", 1)[1].split("\n", 1)[0])
    assert done["stop_reason"] == "end_turn" and done["cache_hit"] is True, done
    assert done["usage"]["input_tokens"] == 0, done
    assert reply_for("hello") in "".join(
        json.loads(ln[6:])["text"] for ln in events.splitlines()
        if ln.startswith("data: ") and '"text"' in ln)
    assert len(fake.calls) == 1
    info = api.request("GET", "/v1/contexts/b").json()
    assert info["config"]["response_cache"] is True
    assert info["usage"]["cache_hits"] == 1 and info["usage"]["last_call"] == "cache_hit", info
    assert info["usage"]["calls"] == 0, info
    assert info["usage"]["last_cost_usd"] == 0 and info["usage"]["cost_usd"] == 0, info
    # off for a context over HTTP: a call
    api.create("c", config={"response_cache": False})
    api.send("c", "hello")
    assert api.output("c") == reply_for("hello")
    assert len(fake.calls) == 2
    assert api.request("GET", "/v1/contexts/c").json()["usage"]["last_call"] == "api"


# --- with cost (CONTRACT §10, Cost) and fork --------------------------------------------


def journal_ends(mount, name):
    """The REPLY_END records of a context's journal, as mcpfs-journal-dump prints them."""
    dump = os.environ.get("MCPFS_JOURNAL_DUMP") or str(REPO / "build" / "mcpfs-journal-dump")
    r = run([dump, str(mount.state / "contexts" / name / "journal")])
    assert r.rc == 0, r
    return [ln.replace(" ", "") for ln in r.out.splitlines() if "REPLY_END" in ln]


@pytest.mark.parametrize("model", ["claude-sonnet-5-5", "claude-haiku-4-5"])
def test_a_hit_costs_nothing(mount, fake, model):
    """A hit is no call: last_cost_usd is 0 (not the last call's, and not
    `unknown` for a model without a price), total_cost_usd and `.usage` stay
    as they were, and its REPLY_END names the model its request named."""
    write_file(mount.path / ".config", "model = %s\nresponse_cache = on\n" % model)
    a, _ = ask(mount, "a", "one")
    send(a, "two\n")
    assert output(a) == reply_for("two") and len(fake.calls) == 2
    b = mount.ctx("b")
    write_file(b / "config", "response_cache = off\n")
    send(b, "one\n")                 # a call: b's own cost
    assert output(b) == reply_for("one") and len(fake.calls) == 3
    before = usage(b)
    assert before["last_call"] == "api", before
    if model == "claude-sonnet-5-5":
        assert before["total_cost_usd"] != "0.000000", before
        assert before["last_cost_usd"] == before["total_cost_usd"], before
    else:
        assert before["last_cost_usd"] == before["total_cost_usd"] == "unknown", before
    rows = read_file(mount.path / ".usage")
    write_file(b / "config", "response_cache = on\n")
    send(b, "two\n")                 # the same body as a's second call: a hit
    assert output(b) == reply_for("two") and len(fake.calls) == 3
    for _ in range(2):
        u = usage(b)
        assert u["last_call"] == "cache_hit" and u["cache_hits"] == "1", u
        assert u["last_cost_usd"] == "0.000000", u
        assert u["total_cost_usd"] == before["total_cost_usd"] and u["calls"] == "1", u
        assert read_file(mount.path / ".usage") == rows
        mount.remount()              # the same from the journal
    ends = journal_ends(mount, "b")
    assert len(ends) == 2 and '"cache_hit":true' in ends[1], ends
    assert '"model":"%s"' % model in ends[1], ends


def test_fork_copies_a_hit_as_a_reply(mount, fake):
    """A fork copies a reply the cache answered like any other: its text and
    blocks, not its hit (the fork's usage starts at zero, cache_hits too)."""
    cache_on(mount)
    fake.script("normal", text="Answer.", blocks=[TOOL], blocks_after=[CITED])
    a, out_a = ask(mount, "a", "weather?")
    b, out_b = ask(mount, "b", "weather?")
    assert out_b == out_a and len(fake.calls) == 1
    assert usage(b)["cache_hits"] == "1"
    assert run("echo 'fork f' > '%s/ctl'" % b).rc == 0
    f = mount.path / "f"
    for _ in range(2):
        assert output(f) == out_a
        assert assistant_blocks(f) == assistant_blocks(a)
        u = usage(f)
        assert u["cache_hits"] == "0" and u["calls"] == "0" and u["last_call"] == "none", u
        assert u["last_cost_usd"] == u["total_cost_usd"] == "0.000000", u
        assert status(f).get("turn_source") is None
        assert usage(b)["cache_hits"] == "1"
        mount.remount()
    ends = journal_ends(mount, "f")
    assert len(ends) == 1 and "cache_hit" not in ends[0], ends
    # the copied reply is history: the next turn sends it (the body is new: a call)
    send(f, "and tomorrow?\n")
    assert output(f) == reply_for("and tomorrow?") and len(fake.calls) == 2
    sent = fake.calls[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert any(blk.get("citations") == [CITATION] for blk in sent[1]["content"]), sent[1]
