"""Summarizing pruning (CONTRACT §10, issue 14 point 1): with `prune =
summarize` (the default) a cut folds the exchanges it cuts into a rolling
summary by one extra call, sent as a second system block with cache
breakpoints; `summary` shows and edits it; `history` and `history.json` show
it with its turns; `status` says `summarizing`; a failed summary call drops
that cut; `ctl compact [FOCUS]` folds all but the newest 2 exchanges now."""

import errno
import json
import os
import re
import threading

from http_support import shim, shim_factory  # noqa: F401  (fixtures)
from mcpfs_testlib import (
    call_with_timeout, output, read_file, reply_for, run, send, status, wait_for, wait_status, write_file,
)

FOLD = re.compile(r"Fold into the new summary: the earlier summary \(if any\) and the first "
                  r"(\d+) exchanges above \(turns (\d+) to (\d+)\)\.")


def long_message(i, chars=1600):
    head = "message %d: " % i
    return head + ("lorem ipsum dolor sit amet " * (chars // 27 + 1))[:chars - len(head)]


def is_summary_call(call):
    return bool(FOLD.search(call.last_user_text))


def system_blocks(call):
    s = call.body.get("system")
    if s is None:
        return []
    return s if isinstance(s, list) else [{"type": "text", "text": s}]


def converse(c, fake, n, start=1, chars=1600):
    for i in range(start, start + n):
        msg = long_message(i, chars)
        send(c, msg + "\n")
        assert output(c) == reply_for(msg)


def test_a_cut_folds_into_a_summary_sent_as_a_second_system_block(ctx, fake):
    write_file(ctx / "system", "You are terse.\n")
    write_file(ctx / "config", "budget_tokens = 3000\n")
    converse(ctx, fake, 12)
    summaries = [c for c in fake.calls if is_summary_call(c)]
    assert summaries, "no summary call was made"
    first = summaries[0]
    # the summary call: same model, the conversation's prefix, then the instruction
    m = FOLD.search(first.last_user_text)
    assert int(m.group(2)) == 1 and int(m.group(1)) >= 1, first.last_user_text
    assert first.body["model"] == fake.calls[0].body["model"]
    assert system_blocks(first)[0]["text"] == "You are terse.\n"
    # it sends the prefix the call before it wrote to the cache, so it reads it
    assert first.cache_read_input_tokens > 0, first.cache_read_input_tokens
    prev = fake.calls[fake.calls.index(first) - 1]
    assert json.dumps(first.body["system"]) == json.dumps(prev.body["system"])
    assert first.body["messages"][0] == prev.body["messages"][0]
    # every call after the first summary carries it as system block 2, both
    # blocks with a breakpoint
    i = fake.calls.index(first)
    after = [c for c in fake.calls[i + 1:] if not is_summary_call(c)]
    assert after
    for call in after:
        blocks = system_blocks(call)
        assert len(blocks) == 2, blocks
        assert blocks[0]["text"] == "You are terse.\n"
        assert blocks[1]["text"].startswith("Summary of the earlier part of this conversation")
        assert all(b.get("cache_control") == {"type": "ephemeral"} for b in blocks), blocks
        # what the summary covers is not sent again
        covered = int(re.search(r"turns \d+-(\d+)", blocks[1]["text"]).group(1))
        assert all(not t.startswith("message %d: " % covered) for t in call.user_texts)
    # between two cuts, the prefix (system blocks and first messages) is the same
    # bytes, so the cache is read
    main = [c for c in fake.calls if not is_summary_call(c)]
    same = [(a, b) for a, b in zip(main, main[1:])
            if system_blocks(a) == system_blocks(b) and len(system_blocks(a)) == 2]
    assert same, "no two calls in a row shared the summary"
    for a, b in same:
        assert json.dumps(a.body["system"]) == json.dumps(b.body["system"])
        if a.body["messages"][0] == b.body["messages"][0]:
            assert b.cache_read_input_tokens > 0, (b.index, b.cache_read_input_tokens)
    # the summary file, history and history.json agree
    text = read_file(ctx / "summary")
    assert text.startswith("Summary of turns 1-"), text
    hist = read_file(ctx / "history")
    h = re.search(r"--- summary of turns (\d+)-(\d+) ---\n", hist)
    assert h and h.group(1) == "1", hist
    assert text in hist
    hj = json.loads(read_file(ctx / "history.json"))
    assert hj["summary"]["text"] == text
    assert hj["summary"]["turns"] == [1, int(h.group(2))]
    st = status(ctx)
    assert st.state == "idle" and st["summary"].startswith("turns 1-%s, " % h.group(2)), st.text
    # the transcript keeps everything
    t = read_file(ctx / "transcript")
    assert all("message %d: " % i in t for i in range(1, 13))


def test_rolling_summary_carries_the_earlier_one(ctx, fake):
    write_file(ctx / "config", "budget_tokens = 2500\n")
    converse(ctx, fake, 16)
    summaries = [c for c in fake.calls if is_summary_call(c)]
    assert len(summaries) >= 2, len(summaries)
    # the second summary call sends the first summary as its system block
    blocks = system_blocks(summaries[1])
    assert blocks and blocks[-1]["text"].startswith("Summary of the earlier part"), blocks
    a = FOLD.search(summaries[0].last_user_text)
    b = FOLD.search(summaries[1].last_user_text)
    assert int(b.group(2)) == int(a.group(3)) + 1, (a.groups(), b.groups())
    assert "- message %s: " % a.group(3) in blocks[-1]["text"]  # the fake's digest of it
    last = FOLD.search(summaries[-1].last_user_text)
    hj = json.loads(read_file(ctx / "history.json"))
    assert hj["summary"]["turns"] == [1, int(last.group(3))]


def test_prune_drop_sends_no_summary(ctx, fake):
    write_file(ctx / "config", "budget_tokens = 2500\nprune = drop\n")
    converse(ctx, fake, 10)
    assert not any(is_summary_call(c) for c in fake.calls)
    assert read_file(ctx / "summary") == ""
    assert "summary" not in json.loads(read_file(ctx / "history.json"))
    assert all(c.body.get("system") is None for c in fake.calls)
    assert "prune = drop" in read_file(ctx / "config")


def test_summary_model_and_prompt(ctx, fake):
    write_file(ctx / "config", "budget_tokens = 2500\nsummary_model = claude-haiku-4-5\n"
               "summary_prompt = Summarize like a pirate.\n")
    converse(ctx, fake, 8)
    s = [c for c in fake.calls if is_summary_call(c)]
    assert s
    assert s[0].body["model"] == "claude-haiku-4-5"
    assert s[0].last_user_text.startswith("Summarize like a pirate.\n\nFold into")
    cfg = read_file(ctx / "config")
    assert "summary_model = claude-haiku-4-5" in cfg
    r = run("echo 'prune = forget' > '%s/config'" % ctx)
    assert r.rc != 0 and "not summarize or drop" in status(ctx)["last_refused"], r


def test_summary_file_write_replace_remove(ctx, fake):
    send(ctx, "hello\n")
    assert output(ctx) == reply_for("hello")
    assert read_file(ctx / "summary") == ""
    r = run("echo 'The user likes cats.' > '%s/summary'" % ctx)
    assert r.rc == 0, r
    assert read_file(ctx / "summary") == "The user likes cats.\n"
    assert "--- summary ---\nThe user likes cats.\n" in read_file(ctx / "history")
    hj = json.loads(read_file(ctx / "history.json"))
    assert hj["summary"] == {"text": "The user likes cats.\n", "turns": None}
    send(ctx, "next\n")
    assert output(ctx) == reply_for("next")
    blocks = system_blocks(fake.calls[-1])
    assert len(blocks) == 1 and blocks[0]["text"].endswith("The user likes cats.\n"), blocks
    # invalid UTF-8 fails the write itself
    r = run("printf 'bad \\377\\n' > '%s/summary'" % ctx)
    assert r.rc != 0 and "Invalid or incomplete multibyte" in r.err, r
    assert read_file(ctx / "summary") == "The user likes cats.\n"
    # over the limit: EFBIG at write
    fd = os.open(ctx / "summary", os.O_WRONLY | os.O_TRUNC)
    try:
        try:
            os.write(fd, b"x" * (256 * 1024 + 1))
            raise AssertionError("a summary over 256 KiB was taken")
        except OSError as e:
            assert e.errno == errno.EFBIG
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    assert read_file(ctx / "summary") == "The user likes cats.\n"
    r = run(": > '%s/summary'" % ctx)
    assert r.rc == 0, r
    assert read_file(ctx / "summary") == ""
    assert "summary" not in json.loads(read_file(ctx / "history.json"))
    send(ctx, "last\n")
    assert output(ctx) == reply_for("last")
    assert fake.calls[-1].body.get("system") is None


def test_summary_survives_a_remount(mount, fake):
    c = mount.ctx("c")
    write_file(c / "config", "budget_tokens = 2500\n")
    converse(c, fake, 10)
    converse(c, fake, 3, start=11, chars=100)
    before = read_file(c / "summary")
    assert before.startswith("Summary of turns 1-")
    write_file(c / "ctl", "compact\n")
    wait_status(c, "idle")
    compacted = read_file(c / "summary")
    assert compacted != before
    hist = read_file(c / "history")
    mount.remount()
    assert read_file(c / "summary") == compacted
    assert read_file(c / "history") == hist
    calls = len(fake.calls)
    send(c, "after remount\n")
    assert output(c) == reply_for("after remount")
    assert system_blocks(fake.calls[calls])[-1]["text"].endswith(compacted)


def test_ctl_compact_with_focus_and_its_errors(ctx, fake):
    r = run("echo compact > '%s/ctl'" % ctx)
    assert r.rc != 0 and "Invalid argument" in r.err, r
    assert "nothing to fold" in status(ctx)["last_refused"]
    converse(ctx, fake, 5, chars=200)
    n = len(fake.calls)
    r = run("echo 'compact the cat names' > '%s/ctl'" % ctx)
    assert r.rc == 0, r
    wait_status(ctx, "idle")
    s = fake.calls[n]
    assert is_summary_call(s)
    m = FOLD.search(s.last_user_text)
    assert m.groups() == ("3", "1", "3"), m.groups()
    assert s.last_user_text.endswith("\nFocus: the cat names")
    hj = json.loads(read_file(ctx / "history.json"))
    assert hj["summary"]["turns"] == [1, 3]
    assert [x["content"] for x in hj["messages"][::2]] == [
        long_message(4, 200) + "\n", long_message(5, 200) + "\n"]
    # the next call sends the newest 2 exchanges after the summary
    send(ctx, "go on\n")
    assert output(ctx) == reply_for("go on")
    assert fake.calls[-1].n_messages == 5
    # nothing left to fold: the newest 2 (and the new one) stay
    write_file(ctx / "ctl", "compact\n")
    wait_status(ctx, "idle")
    r = run("echo compact > '%s/ctl'" % ctx)
    assert r.rc != 0, r


def test_compact_refused_while_a_call_is_in_flight(ctx, fake):
    converse(ctx, fake, 4, chars=200)
    fake.script("hold", hold_after=1)
    send(ctx, "held\n")
    fake.wait_held()
    r = run("echo compact > '%s/ctl'" % ctx)
    assert r.rc != 0 and "Invalid argument" in r.err, r
    assert "in flight" in status(ctx)["last_refused"]
    fake.release()
    assert output(ctx) == reply_for("held")


def test_a_failed_summary_call_drops_that_cut(mount, fake):
    c = mount.ctx("c")
    mount.allow_error(r"HTTP 400|no summary today")
    write_file(c / "config", "budget_tokens = 2500\n")
    fake.summary_script("status", status=400, error_type="invalid_request_error",
                        error_message="no summary today")
    for i in range(1, 15):
        n = len(fake.calls)
        msg = long_message(i)
        send(c, msg + "\n")
        assert output(c) == reply_for(msg)
        if len(fake.calls) > n + 1:
            break
    else:
        raise AssertionError("no cut happened")
    assert is_summary_call(fake.calls[n]) and fake.calls[n].status == 400
    st = status(c)
    assert st.state == "idle" and st["turn_state"] == "done", st.text
    assert "no summary today" in st["summary_error"], st.text
    assert "the cut dropped instead" in st["summary_error"], st.text
    assert st.get("last_error") is None, st.text
    assert read_file(c / "summary") == ""
    # the cut dropped: the call after it starts later, without a summary
    main = fake.calls[n + 1]
    assert not is_summary_call(main) and main.body.get("system") is None
    assert not main.user_texts[0].startswith("message 1: ")
    assert re.search(r"--- pruned: \d+ earlier message", read_file(c / "history"))
    # the next cut summarizes again
    for i in range(i + 1, i + 15):
        n = len(fake.calls)
        msg = long_message(i)
        send(c, msg + "\n")
        assert output(c) == reply_for(msg)
        if len(fake.calls) > n + 1:
            break
    assert is_summary_call(fake.calls[n]) and fake.calls[n].status == 200
    assert read_file(c / "summary").startswith("Summary of turns ")
    assert status(c).get("summary_error") is None


def test_summarizing_status_and_previous_output_readable_while_held(ctx, fake):
    """While a summary call is held, `status` says summarizing, and a reader of
    the turn the summary call follows reads its whole reply and EOF."""
    write_file(ctx / "config", "budget_tokens = 2500\n")
    fake.summary_script("hold", hold_after=0)
    for i in range(1, 15):
        n = len(fake.calls)
        prev = open(ctx / "output", "rb")  # bound to turn i - 1
        msg = long_message(i)
        done = threading.Event()

        def writer(msg=msg):
            send(ctx, msg + "\n")
            done.set()
        threading.Thread(target=writer, daemon=True).start()
        assert done.wait(10)
        wait_for(lambda: len(fake.calls) > n, what="a call")
        if is_summary_call(fake.calls[n]):
            break
        prev.close()
        assert output(ctx) == reply_for(msg)
    else:
        raise AssertionError("no summary call happened")
    try:
        fake.wait_held()
        st = wait_status(ctx, "summarizing")
        assert st["summary_call"].startswith("folding turns 1-"), st.text
        assert st["turn"] == str(i) and st["turn_state"] == "queued", st.text
        # the previous turn's output: all of it, then EOF, while the call is held
        got = call_with_timeout(prev.read, 5, what="reading the previous output")
        assert got.decode() == reply_for(long_message(i - 1))
        assert status(ctx).state == "summarizing"
    finally:
        prev.close()
        fake.release()
    assert output(ctx) == reply_for(msg)
    st = wait_status(ctx, "idle")
    assert st.get("summary_call") is None and st["summary"].startswith("turns 1-"), st.text


def test_cancel_ends_a_summary_call(ctx, fake):
    write_file(ctx / "config", "budget_tokens = 2500\n")
    converse(ctx, fake, 5, chars=200)
    fake.summary_script("hold", hold_after=0)
    write_file(ctx / "ctl", "compact\n")
    fake.wait_held()
    assert wait_status(ctx, "summarizing")["summary_call"].endswith("(compact)")
    write_file(ctx / "ctl", "cancel\n")
    st = wait_status(ctx, "idle")
    assert "cancelled" in st["summary_error"] and "nothing changed" in st["summary_error"]
    assert read_file(ctx / "summary") == ""
    fake.release()


def test_shim_history_and_mcp_compact(shim, fake):
    """Over HTTP: GET …/history has the summary as history.json does; the MCP
    tool `ctl` takes `compact FOCUS` through the same ctl_run."""
    from test_mcp import Rpc
    c = shim.path / "h"
    c.mkdir()
    write_file(c / "config", "budget_tokens = 2500\n")
    converse(c, fake, 8)
    r = shim.api.request("GET", "/v1/contexts/h/history")
    assert r.status == 200
    hist = r.json()
    assert hist == json.loads(read_file(c / "history.json"))
    assert hist["summary"]["text"].startswith("Summary of turns 1-")
    a, b = hist["summary"]["turns"]
    assert a == 1 and b >= 1
    converse(c, fake, 3, start=9, chars=100)
    rpc = Rpc(shim.port)
    rpc.initialize()
    n = len(fake.calls)
    res = rpc.request("tools/call", {"name": "ctl", "arguments": {
        "context": "h", "command": "compact the numbers"}})[-1]["result"]
    assert not res.get("isError"), res
    wait_status(c, "idle")
    s = fake.calls[n]
    assert is_summary_call(s) and s.last_user_text.endswith("\nFocus: the numbers")
    hist = shim.api.request("GET", "/v1/contexts/h/history").json()
    assert hist["summary"]["turns"] == [1, 9]
    assert len(hist["messages"]) == 4
    res = rpc.request("tools/call", {"name": "ctl", "arguments": {
        "context": "h", "command": "compact"}})[-1]["result"]
    assert res.get("isError") and "nothing to fold" in res["content"][0]["text"], res


def test_summary_calls_count_in_usage_and_cost(mount, fake):
    """A summary call's tokens count in `usage` and its cost under the model it
    asked for (summary_model), live and after a remount (its SUMMARY record
    keeps usage and model); `.usage` has a row for that model."""
    from decimal import ROUND_HALF_UP, Decimal
    from test_cost import table_rows, tokens, usage, usage_table
    c = mount.ctx("c")
    write_file(c / "config", "budget_tokens = 2500\nsummary_model = claude-opus-4-1\n")
    converse(c, fake, 8)
    calls = fake.calls
    summaries = [x for x in calls if is_summary_call(x)]
    assert summaries and all(x.body["model"] == "claude-opus-4-1" for x in summaries)
    main = [x for x in calls if not is_summary_call(x)]
    assert all(x.body["model"] == "claude-sonnet-5-5" for x in main)

    def toks(group):
        return [sum(x.input_tokens for x in group), sum(x.output_tokens for x in group),
                sum(x.cache_creation_input_tokens for x in group),
                sum(x.cache_read_input_tokens for x in group)]

    prices = table_rows()
    usd = sum(Decimal(t) * p for group, model in ((main, "claude-sonnet-5-5"),
                                                  (summaries, "claude-opus-4-1"))
              for t, p in zip(toks(group), prices[model])) / Decimal(10**6)
    want = str(usd.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP))
    for when in ("live", "after a remount"):
        u = usage(c)
        assert int(u["calls"]) == len(calls), (when, u)
        assert tokens(u, "total_") == toks(calls), (when, u)
        assert u["total_cost_usd"] == want, (when, u, want)
        rows = {r[2]: r for r in usage_table(mount) if r[0] == "model"}
        assert rows["claude-opus-4-1"][3] == str(len(summaries)), (when, rows)
        assert rows["claude-sonnet-5-5"][3] == str(len(main)), (when, rows)
        mount.remount()
