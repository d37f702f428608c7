"""Correctness beside the performance work (bench/run measures the speed; no
timing is asserted here): prompt caching as the API would count it.

The fake applies the caching rules of claude-api-and-shim.md §4.2 (see its
docstring): a prefix written by an earlier request and ending at a breakpoint is
read from cache, the rest up to the last breakpoint is written, 1024 tokens at
least, 5 minutes of life.  mcpfs marks the system prompt, the previous reply and
the new message, so from the second turn on the whole earlier conversation
must be a cache read, and `usage` must show the figures the API reported."""

import json

from mcpfs_testlib import output, parse_kv, send, wait_status

SYSTEM = "You are a patient assistant who explains things slowly. " * 90  # ~5 KB


def texts(rec):
    """System text and the message texts of a recorded request, in order."""
    msgs = [m["content"] if isinstance(m["content"], str) else
            "".join(b.get("text", "") for b in m["content"]) for m in rec.body["messages"]]
    return rec.system, msgs


def nbytes(*parts):
    return sum(len(p.encode("utf-8")) for p in parts)


def turn(ctx, text):
    send(ctx, text)
    output(ctx)
    wait_status(ctx, "idle")
    return parse_kv((ctx / "usage").read_text())


def test_cache_reads_the_previous_conversation(fake, ctx):
    (ctx / "system").write_text(SYSTEM)
    u1 = turn(ctx, "first question")
    r1 = fake.calls[-1]
    sysx, m1 = texts(r1)
    assert sysx.strip() == SYSTEM.strip()
    # nothing cached yet: everything up to the last breakpoint (the message) is written
    assert r1.cache_read_input_tokens == 0
    assert r1.cache_creation_input_tokens == nbytes(sysx, *m1) // 4
    assert int(u1["last_cache_read_input_tokens"]) == 0
    assert int(u1["last_cache_creation_input_tokens"]) == r1.cache_creation_input_tokens

    u2 = turn(ctx, "second question")
    r2 = fake.calls[-1]
    _, m2 = texts(r2)
    assert len(m2) == 3 and m2[0] == m1[0]
    body = json.dumps(r2.body)
    assert body.count('"cache_control"') == 3  # system, previous reply, new message
    # turn 1 wrote the prefix ending at its message; turn 2 reads exactly that
    assert r2.cache_read_input_tokens == nbytes(sysx, m2[0]) // 4
    assert r2.cache_creation_input_tokens == nbytes(sysx, *m2) // 4 - r2.cache_read_input_tokens
    assert int(u2["last_cache_read_input_tokens"]) == r2.cache_read_input_tokens
    assert int(u2["last_cache_creation_input_tokens"]) == r2.cache_creation_input_tokens
    assert int(u2["last_input_tokens"]) == r2.input_tokens

    u3 = turn(ctx, "third question")
    r3 = fake.calls[-1]
    _, m3 = texts(r3)
    assert r3.cache_read_input_tokens == nbytes(sysx, *m3[:3]) // 4
    total_read = sum(int(r.cache_read_input_tokens) for r in fake.calls)
    total_write = sum(int(r.cache_creation_input_tokens) for r in fake.calls)
    assert int(u3["total_cache_read_input_tokens"]) == total_read
    assert int(u3["total_cache_creation_input_tokens"]) == total_write
    assert int(u3["calls"]) == 3


def test_cache_entries_expire_after_five_minutes(fake, ctx):
    (ctx / "system").write_text(SYSTEM)
    turn(ctx, "first question")
    fake.prompt_cache.skew += 301  # the conversation paused for over 5 minutes
    turn(ctx, "second question")
    r2 = fake.calls[-1]
    sysx, m2 = texts(r2)
    assert r2.cache_read_input_tokens == 0
    assert r2.cache_creation_input_tokens == nbytes(sysx, *m2) // 4
    fake.prompt_cache.skew += 299  # within the lifetime of what turn 2 wrote
    turn(ctx, "third question")
    assert fake.calls[-1].cache_read_input_tokens == nbytes(sysx, *m2) // 4


def test_short_prefix_is_not_cached(fake, ctx):
    u = turn(ctx, "hello")
    u = turn(ctx, "hello again")
    assert '"cache_control"' in json.dumps(fake.calls[-1].body)
    assert fake.calls[-1].cache_read_input_tokens == 0
    assert fake.calls[-1].cache_creation_input_tokens == 0
    assert int(u["total_cache_read_input_tokens"]) == 0
    assert int(u["total_cache_creation_input_tokens"]) == 0


def test_prompt_cache_off_sends_no_breakpoints(fake, ctx):
    (ctx / "config").write_text("prompt_cache = off\n")
    (ctx / "system").write_text(SYSTEM)
    turn(ctx, "first question")
    u = turn(ctx, "second question")
    for r in fake.calls:
        assert "cache_control" not in json.dumps(r.body)
        assert r.cache_read_input_tokens == 0 and r.cache_creation_input_tokens == 0
    assert int(u["total_cache_read_input_tokens"]) == 0
    assert int(u["total_cache_creation_input_tokens"]) == 0
    sysx, m = texts(fake.calls[-1])
    assert int(u["last_input_tokens"]) == nbytes(sysx, *m) // 4 + 5
