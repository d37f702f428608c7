"""CONTRACT §10 (second bullet): `fork NEW [TURN]` and `undo` in `ctl`, through a
real mount (bash's echo, cat), across a remount, with a call in flight, and
their errors at write(); the same commands over the HTTP shim (POST
/v1/contexts/{name}/ctl, http.client and curl) and the MCP tool `ctl`.  The fake
API's recorded requests prove what the fork's next call and the call after an
undo carry."""

import errno
import json
import os
import re
from pathlib import Path

import pytest

from mcpfs_testlib import (
    output, read_file, reply_for, run, send, status, wait_status, write_file,
)
from http_support import quote, shim, shim_factory  # noqa: F401  (fixtures)
from test_blocks import CITED, every_block, strip_cache
from test_disk_full import (  # noqa: F401  (the fixture `small`)
    BIG_MESSAGE, Filler, assert_journals_valid, assert_no_leftovers, contexts, small,
)
from test_mcp import Rpc, text_of


def ctl(ctx, line):
    """bash's echo into ctl: the way a user writes a command."""
    return run("echo '%s' > '%s/ctl'" % (line, ctx))


def texts(call):
    return [(role, text.strip()) for role, text in call.texts()]


def two_turns(c):
    for word in ("one", "two"):
        send(c, word + "\n")
        assert output(c) == reply_for(word)


def dump(mount, name):
    tool = os.environ.get("MCPFS_JOURNAL_DUMP") or str(Path(mount.bin).parent /
                                                        "mcpfs-journal-dump")
    r = run([tool, str(mount.state / "contexts" / name / "journal")])
    assert r.rc == 0, r
    return r.out


def refused(c, pattern):
    v = status(c).get("last_refused", "")
    assert re.search(pattern, v), v


# --- fork through the mount -------------------------------------------------------------


def test_fork_copies_settings_and_history(mount, fake):
    a = mount.ctx("a")
    write_file(a / "system", "You are terse.")
    write_file(a / "config", "max_tokens = 777\n")
    two_turns(a)
    r = ctl(a, "fork b")
    assert r.rc == 0 and r.err == "", r
    b = mount.path / "b"
    assert "b" in os.listdir(mount.path)
    assert read_file(b / "system") == "You are terse."
    assert "max_tokens = 777" in read_file(b / "config")
    r = run("cat '%s/history'" % b)
    assert r.rc == 0 and "--- user (turn 2) ---\ntwo" in r.out, r
    assert read_file(b / "history") == read_file(a / "history")
    t = read_file(b / "transcript")
    assert t.startswith("--- forked from 'a' at turn 2 ---\n\n--- system prompt set ---\n"), t
    assert reply_for("one") in t and reply_for("two") in t
    assert json.loads(read_file(b / "transcript.json"))["forked_from"] == \
        {"context": "a", "turn": 2}
    assert output(b) == reply_for("two")
    assert "calls: 0" in read_file(b / "usage")
    # the fork's next call carries the copied exchanges and settings
    send(b, "three\n")
    assert output(b) == reply_for("three")
    call = fake.calls[-1]
    assert texts(call) == [("user", "one"), ("assistant", reply_for("one")),
                           ("user", "two"), ("assistant", reply_for("two")),
                           ("user", "three")]
    assert call.system == "You are terse." and call.max_tokens == 777
    # the source goes on without it
    send(a, "four\n")
    assert output(a) == reply_for("four")
    assert [m for _, m in texts(fake.calls[-1])] == \
        ["one", reply_for("one"), "two", reply_for("two"), "four"]
    # durable: the same after a remount, the journal saying where it came from
    hist, trans = read_file(b / "history"), read_file(b / "transcript")
    mount.remount()
    assert read_file(b / "history") == hist and read_file(b / "transcript") == trans
    out = dump(mount, "b")
    assert re.search(r'FORKED_FROM .*"context":"a","turn":2', out), out


def test_fork_up_to_a_turn(mount, fake):
    a = mount.ctx("a")
    two_turns(a)
    assert ctl(a, "fork first 1").rc == 0
    f = mount.path / "first"
    assert read_file(f / "transcript").startswith("--- forked from 'a' at turn 1 ---")
    send(f, "again\n")
    assert output(f) == reply_for("again")
    assert texts(fake.calls[-1]) == [("user", "one"), ("assistant", reply_for("one")),
                                     ("user", "again")]
    assert "--- user (turn 2) ---\nagain" in read_file(f / "history")


def test_fork_errors_at_write(mount, fake):
    a = mount.ctx("a")
    mount.ctx("taken")
    two_turns(a)
    r = ctl(a, "fork taken")
    assert r.rc != 0 and "File exists" in r.err, r
    refused(a, r"write of ctl: a context named 'taken' exists")
    r = ctl(a, "fork .hidden")
    assert r.rc != 0 and "Invalid argument" in r.err, r
    refused(a, r"invalid name for the fork")
    r = ctl(a, "fork b 9")
    assert r.rc != 0 and "Invalid argument" in r.err, r
    refused(a, r"turn 9 is out of range: the newest turn that has ended is 2")
    r = ctl(a, "fork b two")
    assert r.rc != 0 and "Invalid argument" in r.err, r
    r = ctl(a, "fork")
    assert r.rc != 0 and "Invalid argument" in r.err, r
    refused(a, r"usage: fork NEW \[TURN\]")
    with pytest.raises(OSError) as e:
        write_file(a / "ctl", "fork " + "n" * 256 + "\n")
    assert e.value.errno == errno.ENAMETOOLONG
    assert sorted(n for n in os.listdir(mount.path) if not n.startswith(".")) == ["a", "taken"]
    assert sorted(os.listdir(mount.state / "contexts")) == ["a", "taken"]


def test_fork_while_a_call_is_in_flight(mount, fake):
    a = mount.ctx("a")
    two_turns(a)
    fake.script("hold", hold_after=1)
    send(a, "three\n")
    fake.wait_held(-1)
    assert ctl(a, "fork mid").rc == 0  # not waiting for the call
    m = mount.path / "mid"
    h = read_file(m / "history")
    assert reply_for("two") in h and "three" not in h, h
    assert read_file(m / "transcript").startswith("--- forked from 'a' at turn 2 ---")
    fake.release()
    assert output(a) == reply_for("three")
    assert "three" not in read_file(m / "history")
    send(m, "other\n")
    assert output(m) == reply_for("other")
    assert [t for _, t in texts(fake.calls[-1])] == \
        ["one", reply_for("one"), "two", reply_for("two"), "other"]


def test_fork_keeps_every_block(mount, fake):
    """Thinking, tool use, unknown blocks and citations of a copied reply are
    the fork's too: in transcript.json, and sent back as the source sends them."""
    a = mount.ctx("a")
    every_block(fake)
    send(a, "weather?\n")
    assert output(a) == "Answer. It is sunny."
    assert ctl(a, "fork b").rc == 0
    b = mount.path / "b"
    src = json.loads(read_file(a / "transcript.json"))
    dst = json.loads(read_file(b / "transcript.json"))
    assert dst["forked_from"] == {"context": "a", "turn": 1}
    assert [m["blocks"] for m in dst["messages"] if m["role"] == "assistant"] == \
        [m["blocks"] for m in src["messages"] if m["role"] == "assistant"]
    assert read_file(b / "thinking") == read_file(a / "thinking")
    assert read_file(b / "transcript").endswith(read_file(a / "transcript"))
    send(b, "and tomorrow?\n")
    assert output(b) == reply_for("and tomorrow?")
    assert strip_cache(fake.calls[-1].messages[1]["content"]) == \
        [{"type": "text", "text": "Answer."}, CITED]
    mount.remount()
    assert json.loads(read_file(b / "transcript.json"))["messages"][1]["blocks"] == \
        src["messages"][1]["blocks"]


# --- undo through the mount ---------------------------------------------------------------


def test_undo_takes_the_newest_exchange_out(mount, fake):
    c = mount.ctx("c")
    r = ctl(c, "undo")
    assert r.rc != 0 and "Invalid argument" in r.err, r
    refused(c, r"nothing to undo: the history has no complete exchange")
    two_turns(c)
    before = read_file(c / "transcript")
    r = run("echo undo > '%s/ctl' && cat '%s/history'" % (c, c))
    assert r.rc == 0 and reply_for("one") in r.out and "two" not in r.out, r
    t = read_file(c / "transcript")
    assert t == before + "--- turn 2 undone: taken out of the history ---\n\n", t
    assert output(c) == reply_for("one")  # output: the history's newest reply
    assert status(c).get("turn") == "1"
    assert [u["content"] for u in json.loads(read_file(c / "history.json"))["messages"]] == \
        ["one\n", reply_for("one")]
    # the next call goes without it
    send(c, "three\n")
    assert output(c) == reply_for("three")
    assert texts(fake.calls[-1]) == [("user", "one"), ("assistant", reply_for("one")),
                                     ("user", "three")]
    # durable
    hist, trans = read_file(c / "history"), read_file(c / "transcript")
    mount.remount()
    assert read_file(c / "history") == hist and read_file(c / "transcript") == trans
    assert output(c) == reply_for("three")
    assert re.search(r'UNDO .*"turn":2', dump(mount, "c"))
    # undo everything: output is empty, as after a clear
    assert ctl(c, "undo").rc == 0 and ctl(c, "undo").rc == 0
    assert read_file(c / "output") == ""
    assert ctl(c, "undo").rc != 0
    mount.remount()
    assert read_file(c / "output") == ""
    assert json.loads(read_file(c / "history.json"))["messages"] == []


def test_undo_refused_while_a_call_is_in_flight(mount, fake):
    c = mount.ctx("c")
    two_turns(c)
    fake.script("hold", hold_after=1)
    send(c, "three\n")
    fake.wait_held(-1)
    r = ctl(c, "undo")
    assert r.rc != 0 and "Invalid argument" in r.err, r
    refused(c, r"cannot undo while a call is in flight")
    fake.release()
    assert output(c) == reply_for("three")
    wait_status(c, "idle")
    assert ctl(c, "undo").rc == 0
    h = read_file(c / "history")
    assert "three" not in h and reply_for("two") in h
    r = ctl(c, "retry")
    assert r.rc != 0, r
    refused(c, r"nothing to retry: turn 3 was undone")


# --- HTTP and MCP ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["http.client", "curl"])
def test_fork_and_undo_over_http(shim, fake, kind):
    api = shim.api if kind == "http.client" else shim.curl()
    api.create("h")
    for word in ("one", "two"):
        api.send("h", word)
        assert api.output("h") == reply_for(word)
    r = api.request("POST", "/v1/contexts/h/ctl", {"command": "fork h2 1"})
    assert r.status == 200 and r.json() == {"done": "created the fork"}, r
    tr = api.request("GET", "/v1/contexts/h2/transcript").json()
    assert tr["forked_from"] == {"context": "h", "turn": 1}
    assert [m["content"] for m in tr["messages"]] == ["one", reply_for("one")]
    r = api.request("POST", "/v1/contexts/h/ctl", {"command": "fork h2"})
    assert r.status == 409 and "exists" in r.json()["error"]["message"], r
    r = api.request("POST", "/v1/contexts/h/ctl", {"command": "fork h3 7"})
    assert r.status == 400 and "out of range" in r.json()["error"]["message"], r
    r = api.request("POST", "/v1/contexts/h/ctl", {"command": "undo"})
    assert r.status == 200, r
    hist = api.request("GET", "/v1/contexts/h/history").json()
    assert [m["content"] for m in hist["messages"]] == ["one", reply_for("one")]
    api.send("h", "three")
    assert api.output("h") == reply_for("three")
    assert texts(fake.calls[-1]) == [("user", "one"), ("assistant", reply_for("one")),
                                     ("user", "three")]
    r = api.request("POST", "/v1/contexts/%s/ctl" % quote("no such"), {"command": "undo"})
    assert r.status == 404, r
    r = api.request("POST", "/v1/contexts/h/ctl", {"command": 3})
    assert r.status == 400, r
    r = api.request("GET", "/v1/contexts/h/ctl")
    assert r.status == 405, r
    # the same through the mount
    assert "h2" in os.listdir(shim.path)
    assert "--- turn 2 undone" in read_file(shim.path / "h" / "transcript")


def test_fork_and_undo_over_mcp(shim, fake):
    rpc = Rpc(shim.port)
    rpc.initialize()

    def call(args):
        r = rpc.request("tools/call", {"name": "ctl", "arguments": args})[0]["result"]
        return r["isError"], text_of(r)
    c = shim.mount.ctx("m")
    two_turns(c)
    assert call({"context": "m", "command": "fork", "name": "m1", "turn": 1}) == \
        (False, "created the fork")
    assert read_file(shim.path / "m1" / "transcript").startswith(
        "--- forked from 'm' at turn 1 ---")
    assert call({"context": "m", "command": "fork", "name": "m2"}) == (False, "created the fork")
    assert reply_for("two") in read_file(shim.path / "m2" / "history")
    err, said = call({"context": "m", "command": "fork", "name": "m1"})
    assert err and said == "a context named 'm1' exists"
    err, said = call({"context": "m", "command": "fork"})
    assert err and "needs 'name'" in said
    err, said = call({"context": "m", "command": "undo", "turn": 1})
    assert err and "fork only" in said
    assert call({"context": "m", "command": "undo"}) == \
        (False, "took the newest exchange out of the history")
    assert "two" not in read_file(c / "history")
    send(shim.path / "m2", "more\n")
    assert output(shim.path / "m2") == reply_for("more")
    assert [t for _, t in texts(fake.calls[-1])] == \
        ["one", reply_for("one"), "two", reply_for("two"), "more"]


def test_fork_and_undo_survive_kill9(mount, fake):
    """Durable when the write to ctl returns: a kill -9 right after loses
    neither the fork nor the undo."""
    a = mount.ctx("a")
    two_turns(a)
    assert ctl(a, "fork b").rc == 0 and ctl(a, "undo").rc == 0
    fork_hist = read_file(mount.path / "b" / "history")
    mount.kill9()
    mount.start()
    assert read_file(mount.path / "b" / "history") == fork_hist
    assert reply_for("two") in fork_hist
    h = read_file(a / "history")
    assert reply_for("one") in h and "two" not in h, h
    assert read_file(a / "transcript").endswith(
        "--- turn 2 undone: taken out of the history ---\n\n")
    assert os.listdir(mount.state / "trash") == []


def test_fork_under_enospc_leaves_nothing(small, fake):
    """A full disk fails the fork at the write with ENOSPC, and leaves no fork,
    whole or half, on disk or in the mount; with room again it works."""
    mt, filler = small, Filler(small.state)
    a = mt.ctx("a")
    send(a, BIG_MESSAGE)
    assert output(a) == reply_for(BIG_MESSAGE)
    filler.fill()
    r = ctl(a, "fork b")
    assert r.rc != 0 and "No space left on device" in r.err, r
    refused(a, r"cannot create the fork: No space left on device")
    assert contexts(mt) == ["a"]
    assert_journals_valid(mt, ["a"])
    assert_no_leftovers(mt)
    filler.remove()
    assert ctl(a, "fork b").rc == 0
    assert contexts(mt) == ["a", "b"]
    assert_journals_valid(mt, ["a", "b"])
    assert reply_for(BIG_MESSAGE) in read_file(mt.path / "b" / "history")


def test_fork_keeps_the_metadata(shim, fake):
    """user.* attributes describe the conversation: the fork has them too, in
    getfattr's view and in the shim's metadata filter, also after a remount."""
    a = shim.mount.ctx("a")
    os.setxattr(a, "user.project", b"acme")
    two_turns(a)
    assert ctl(a, "fork b").rc == 0
    b = shim.path / "b"
    assert os.getxattr(b, "user.project") == b"acme"

    def names():
        r = shim.api.request("GET", "/v1/contexts?meta.project=acme")
        assert r.status == 200, r
        return sorted(c["name"] for c in r.json()["contexts"])
    assert names() == ["a", "b"]
    shim.mount.remount()
    assert names() == ["a", "b"]
    assert os.getxattr(b, "user.project") == b"acme"


def test_fork_copies_the_summary(mount, fake):
    """A fork starts with the source's summary and the turns it covers: its
    `summary` file and its next call's second system block are the source's,
    and the turns the summary covers are not sent again.  A fork at a turn
    before the summary's end starts without it (the summary would tell it
    what it has not seen) and sends those turns whole."""
    from test_summary import converse, is_summary_call, system_blocks
    a = mount.ctx("a")
    write_file(a / "system", "You are terse.\n")
    write_file(a / "config", "budget_tokens = 2500\n")
    converse(a, fake, 10)
    summary = read_file(a / "summary")
    m = re.match(r"Summary of turns 1-(\d+)", summary)
    assert m, summary
    covered = int(m.group(1))
    last = [c for c in fake.calls if not is_summary_call(c)][-1]
    block = system_blocks(last)[1]["text"]
    assert block.startswith("Summary of the earlier part") and block.endswith(summary), block
    assert ctl(a, "fork b").rc == 0
    b = mount.path / "b"
    assert read_file(b / "summary") == summary
    hj = json.loads(read_file(b / "history.json"))
    assert hj["summary"] == json.loads(read_file(a / "history.json"))["summary"]
    assert status(b)["summary"] == status(a)["summary"]
    assert re.search(r"\d+  SUMMARY ", dump(mount, "b"))  # after the exchanges copied
    # a budget that cuts nothing: the call goes without a summary call first
    write_file(b / "config", "budget_tokens = 100000\n")
    n = len(fake.calls)
    send(b, "after the fork\n")
    assert output(b) == reply_for("after the fork")
    assert len(fake.calls) == n + 1
    call = fake.calls[-1]
    assert [x["text"] for x in system_blocks(call)] == ["You are terse.\n", block]
    sent = " ".join(call.user_texts)
    assert all("message %d: " % i not in sent for i in range(1, covered + 1)), sent
    assert "message %d: " % (covered + 1) in sent
    # survives a remount
    mount.remount()
    assert read_file(b / "summary") == summary
    # forked before the summary's end: no summary, every turn sent
    assert ctl(a, "fork early %d" % (covered - 1)).rc == 0
    e = mount.path / "early"
    assert read_file(e / "summary") == ""
    write_file(e / "config", "budget_tokens = 100000\n")
    send(e, "early fork\n")
    assert output(e) == reply_for("early fork")
    call = fake.calls[-1]
    assert [x["text"] for x in system_blocks(call)] == ["You are terse.\n"]
    assert call.user_texts[0].startswith("message 1: ")
