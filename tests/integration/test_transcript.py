"""The transcript only grows, regenerate, refusals (CONTRACT §3.7, §4).

`tail -f c/transcript` is the live log of the whole conversation: no byte once
shown ever changes, replies show as they stream, clears, failures and
regenerations are appended as markers.  `echo retry > c/ctl` after a complete
reply regenerates it (durably); a refused reply is complete and stays out of the
history.
"""

import errno
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from http_support import parse_sse, shim, shim_factory  # noqa: F401  (fixtures)
from mcpfs_testlib import (PipeReader, read_file, read_partial, reply_for, run, send, status,
                           output, wait_for, wait_status, write_file)


def transcript(ctx):
    return read_file(ctx / "transcript", binary=True)


class Snapshots:
    """Every transcript read during a test: each must be a prefix of the last."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.seen = []

    def take(self):
        data = transcript(self.ctx)
        self.seen.append(data)
        return data.decode()

    def check(self, final):
        for i, old in enumerate(self.seen):
            assert final.startswith(old), \
                "snapshot %d changed: %r\nis no prefix of\n%r" % (i, old[-400:], final[-800:])


def turn_key(st, key):
    """A per-turn key of `status`, named `turn_KEY` (or, before, `KEY`)."""
    return st.get("turn_" + key, st.get(key))


def ctl(ctx, command):
    return run("echo %s > '%s/ctl'" % (command, ctx))


@pytest.mark.mcpfs_timeout(180)
def test_tail_f_transcript_follows_the_conversation(mount, fake):
    """A real `tail -f` across turns (one streaming while it is watched), a
    failed turn, a clear and a regeneration prints exactly the final file."""
    mount.allow_error(r"HTTP 400|invalid_request")
    c = mount.ctx("c")
    write_file(c / "system", "You are terse.\n")
    snaps = Snapshots(c)
    tail = mount.spawn(["tail", "-c", "+1", "-s", "0.2", "-f", str(c / "transcript")])
    out = PipeReader(tail.stdout)

    send(c, "one\n")
    assert output(c) == reply_for("one")
    out.wait_text(reply_for("one"))
    snaps.take()

    # turn 2 streams while tail watches: the first pieces show before the rest
    fake.script("slow", pieces=["alpha ", "beta ", "gamma ", "delta"], hold_after=2)
    send(c, "two\n")
    fake.wait_held(-1)
    out.wait_text("alpha beta ")
    mid = snaps.take()
    assert mid.endswith("alpha beta "), mid[-200:]
    assert os.stat(c / "transcript").st_size == len(mid.encode())
    fake.release()
    assert output(c) == "alpha beta gamma delta"
    out.wait_text("gamma delta")

    fake.script("status", status=400)
    send(c, "three\n")
    wait_status(c, "error", 20)
    snaps.take()
    assert ctl(c, "clear").rc == 0
    snaps.take()
    send(c, "four\n")
    assert output(c) == reply_for("four")
    snaps.take()
    fake.script("normal", text="four, once more")
    r = ctl(c, "retry")
    assert r.rc == 0, r
    assert output(c) == "four, once more"
    wait_status(c, "idle")

    final = transcript(c)
    wait_for(lambda: out.data == final, 20,
             what="tail -f to print the whole transcript (got %r)" % out.data[-300:])
    snaps.check(final)
    text = final.decode()
    order = ["--- system prompt set ---\nYou are terse.\n",
             "--- user (turn 1, ", "one\n", "--- assistant (turn 1) ---\n" + reply_for("one"),
             "--- user (turn 2, ", "--- assistant (turn 2) ---\nalpha beta gamma delta\n\n",
             "--- user (turn 3, ", "--- turn 3, failed: invalid_request_error",
             "--- cleared: the history starts again here ---",
             "--- user (turn 4, ", "--- assistant (turn 4) ---\n" + reply_for("four"),
             "--- turn 4, regenerated: the reply above is replaced by attempt 2 ---",
             "--- assistant (turn 4, attempt 2) ---\nfour, once more\n\n"]
    at = 0
    for piece in order:
        found = text.find(piece, at)
        assert found >= 0, "%r missing after offset %d in\n%s" % (piece, at, text)
        at = found + len(piece)
    assert text.endswith("four, once more\n\n"), text[-200:]
    tail.kill()
    tail.wait(5)


def test_transcript_reader_keeps_reading_as_it_grows(ctx, fake):
    """One open descriptor, read to its end, then again after the reply grew:
    the new bytes follow the old ones (no rewrite, no stale snapshot), and
    stat's size matches what reads return."""
    fake.script("hold", pieces=["first half, ", "second half", "."], hold_after=[1, 2])
    send(ctx, "grow\n")
    fake.wait_held(-1)
    fd = os.open(ctx / "transcript", os.O_RDONLY)
    try:
        wait_for(lambda: os.pread(fd, 1 << 20, 0).endswith(b"first half, "), 10,
                 what="the streamed text in the transcript")
        head = os.pread(fd, 1 << 20, 0)
        assert os.fstat(fd).st_size == len(head)
        assert os.pread(fd, 4096, len(head)) == b""
        # more text while the reply still streams: a read at the end gets it
        fake.release()
        wait_for(lambda: os.pread(fd, 4096, len(head)) == b"second half", 10,
                 what="the next piece at the end of the transcript")
        assert os.fstat(fd).st_size == len(head) + len(b"second half")
        fake.release()
        assert output(ctx) == "first half, second half."
        rest = b""  # a short read is no end of file: read on to one, as tail does
        while True:
            b = os.pread(fd, 1 << 20, len(head) + len(rest))
            if not b:
                break
            rest += b
        assert rest == b"second half.\n\n", rest
        assert os.fstat(fd).st_size == len(head) + len(rest)
    finally:
        os.close(fd)


def test_inotify_modify_on_transcript(ctx, fake):
    """FUSE raises no inotify event for the daemon's own changes; like output's,
    the transcript's are made to happen."""
    send(ctx, "first\n")
    assert output(ctx) == reply_for("first")
    w = subprocess.Popen(["inotifywait", "-t", "20", "-e", "modify", str(ctx / "transcript")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        err = PipeReader(w.stderr)
        err.wait_text("Watches established")
        send(ctx, "second\n")
        assert output(ctx) == reply_for("second")
        out, _ = w.communicate(timeout=25)
    finally:
        if w.poll() is None:
            w.kill()
            w.wait(5)
    assert w.returncode == 0, (out, err.text)
    assert b"MODIFY" in out, (out, err.text)


def test_regenerate_replaces_the_reply_in_the_history(mount, fake):
    c = mount.ctx("c")
    send(c, "hello\n")
    assert output(c) == reply_for("hello")
    before = read_file(c / "transcript")
    fake.script("hold", text="a better hello", hold_after=1)
    r = ctl(c, "retry")
    assert r.rc == 0, r
    # once the write to ctl returned, output is the new reply (it waits for it)
    fake.wait_held(-1)
    hj = json.loads(read_file(c / "history.json"))
    assert hj["messages"] == [], hj  # the replaced reply left the history at once
    assert ctl(c, "retry").rc != 0  # in flight: nothing to regenerate yet
    fake.release()
    assert output(c) == "a better hello"
    calls = fake.wait_calls(2)
    assert calls[1].texts() == calls[0].texts() == [("user", "hello\n")]
    hj = json.loads(read_file(c / "history.json"))
    assert [(m["role"], m["content"]) for m in hj["messages"]] == \
        [("user", "hello\n"), ("assistant", "a better hello")]
    assert "a better hello" in read_file(c / "history")
    assert reply_for("hello") not in read_file(c / "history")
    t = read_file(c / "transcript")
    assert t.startswith(before)
    assert reply_for("hello") in t and "a better hello" in t and "regenerated" in t

    send(c, "next\n")
    assert output(c) == reply_for("next")
    assert fake.calls[-1].texts()[:2] == [("user", "hello\n"), ("assistant", "a better hello")]

    # durable: the same history, transcript and output after a remount
    hist, trans = read_file(c / "history.json"), read_file(c / "transcript")
    mount.remount()
    dump = os.environ.get("MCPFS_JOURNAL_DUMP") or str(Path(mount.bin).parent /
                                                         "mcpfs-journal-dump")
    r = run([dump, str(mount.state / "contexts" / "c" / "journal")])
    assert r.rc == 0 and re.search(r"RETRY .*\"turn\":1,\"attempt\":2", r.out), r
    assert read_file(c / "history.json") == hist
    assert read_file(c / "transcript") == trans
    send(c, "after\n")
    assert output(c) == reply_for("after")
    assert fake.calls[-1].texts()[:4] == [("user", "hello\n"), ("assistant", "a better hello"),
                                          ("user", "next\n"), ("assistant", reply_for("next"))]


def test_regenerate_is_durable_before_its_reply(mount, fake):
    """The RETRY record is saved when the write to ctl returns: killed before
    the new reply came, the context comes back with the new attempt interrupted,
    not with the replaced reply as if nothing had happened."""
    c = mount.ctx("c")
    send(c, "hello\n")
    assert output(c) == reply_for("hello")
    fake.script("hold", hold_after=0)
    assert ctl(c, "retry").rc == 0
    fake.wait_held(-1)
    seen = read_file(c / "transcript")
    mount.kill9()
    fake.release()
    mount.start()
    t = read_file(c / "transcript")
    assert t.startswith(seen), (seen, t)
    assert "turn 1, failed: interrupted" in t, t
    assert json.loads(read_file(c / "history.json"))["messages"] == []
    st = status(c)
    assert st.state == "error" and turn_key(st, "attempt") == "2", st.text


def test_crash_mid_stream_keeps_the_transcript_prefix(mount, fake):
    c = mount.ctx("c")
    fake.script("hold", pieces=["seen before the crash. ", "never seen"], hold_after=1)
    send(c, "crash\n")
    fake.wait_held(-1)
    wait_for(lambda: "seen before the crash. " in read_file(c / "transcript"), 10)
    seen = read_file(c / "transcript")
    mount.kill9()
    fake.release()
    mount.start()
    t = read_file(c / "transcript")
    assert t.startswith(seen), (seen, t)
    assert "turn 1, failed: interrupted" in t[len(seen):], t
    assert ctl(c, "retry").rc == 0
    assert output(c) == reply_for("crash")
    t2 = read_file(c / "transcript")
    assert t2.startswith(t) and t2.endswith(reply_for("crash") + "\n\n"), t2


def test_refusal_is_complete_and_left_out_of_the_history(ctx, fake):
    send(ctx, "fine\n")
    assert output(ctx) == reply_for("fine")
    fake.script("refusal")
    send(ctx, "something bad\n")
    data, err = read_partial(ctx / "output")
    assert err is None, err  # EOF, not EIO
    assert data == b"I can't help with that request."
    st = wait_status(ctx, "idle")
    assert st.get("stop_reason") == "refusal", st.text
    assert turn_key(st, "state") == "done", st.text
    hj = json.loads(read_file(ctx / "history.json"))
    assert [m["content"] for m in hj["messages"]] == ["fine\n", reply_for("fine")]
    t = read_file(ctx / "transcript")
    assert "something bad" in t and "I can't help with that request." in t
    assert "turn 2, refused (stop_reason: refusal)" in t
    send(ctx, "then\n")
    assert output(ctx) == reply_for("then")
    assert fake.calls[-1].texts() == [("user", "fine\n"), ("assistant", reply_for("fine")),
                                      ("user", "then\n")]


def test_retry_after_failure_still_sends_again(ctx, fake):
    fake.script("status", status=400)
    send(ctx, "broken\n")
    wait_status(ctx, "error", 20)
    assert ctl(ctx, "retry").rc == 0
    assert output(ctx) == reply_for("broken")
    assert [c.texts() for c in fake.calls] == [[("user", "broken\n")]] * 2
    t = read_file(ctx / "transcript")
    assert "turn 1, failed:" in t and "regenerated" not in t
    assert "--- assistant (turn 1, attempt 2) ---\n" + reply_for("broken") in t


def test_retry_with_nothing_to_retry_is_einval(ctx, fake):
    r = ctl(ctx, "retry")
    assert r.rc != 0 and "Invalid argument" in r.err, r
    fd = os.open(ctx / "ctl", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as e:
            os.write(fd, b"retry\n")
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(fd)


def test_shim_shows_regeneration_and_refusal(shim, fake):
    """Over HTTP: the transcript lists every attempt (the replaced one marked),
    and a refused reply's stream ends with `done`, stop_reason refusal."""
    api = shim.api
    assert api.request("POST", "/v1/contexts", {"name": "h"}).status == 201
    api.request("POST", "/v1/contexts/h/messages", {"content": "hello"})
    assert api.request("GET", "/v1/contexts/h/output").text == reply_for("hello")
    fake.script("normal", text="hello again")
    assert ctl(shim.path / "h", "retry").rc == 0
    assert api.request("GET", "/v1/contexts/h/output").text == "hello again"
    msgs = api.request("GET", "/v1/contexts/h/transcript").json()["messages"]
    assert [(m["role"], m["content"], m.get("attempt"), m.get("replaced", False))
            for m in msgs] == [("user", "hello", None, False),
                               ("assistant", reply_for("hello"), 1, True),
                               ("assistant", "hello again", 2, False)]
    fake.script("refusal")
    r = api.request("POST", "/v1/contexts/h/messages", {"content": "bad"},
                    headers={"Accept": "text/event-stream"})
    events = parse_sse(r.body)
    assert events[-1][0] == "done", events
    assert json.loads(events[-1][1])["stop_reason"] == "refusal"
    hist = api.request("GET", "/v1/contexts/h/history").json()
    assert [m["content"] for m in hist["messages"]] == ["hello", "hello again"]
