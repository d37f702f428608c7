"""Issue 17 (the red-team battery): an upstream that keeps sending after
message_stop, a NUL in a text delta, a lazy unmount while a reply streams, and
SIGTERM with reads parked on output.  Each test failed before its fix."""

import os
import signal
import time

import pytest

from mcpfs_testlib import (
    Reader, blocked_in_read, is_mounted, output, read_file, reply_for, send, status, unmount,
    wait_for,
)
from http_support import shim, shim_factory  # noqa: F401  (fixtures)


# --- point 10: the drain after message_stop is bounded ------------------------------------------


def test_bytes_trickled_after_message_stop_do_not_hold_the_connection(mount, fake):
    """An upstream that sends a byte every 100 ms after message_stop kept its
    connection forever (each byte moved the drain's deadline).  The turn is
    complete at message_stop, and the connection is closed within the drain's
    bound (2 s in all) while the fake still has a minute of bytes to send."""
    fake.set_default("normal", trickle_after_stop=True, trickle_bytes=1, trickle_ms=100,
                     trickle_seconds=60)
    c = mount.ctx("c")
    send(c, "hello\n")
    assert output(c) == reply_for("hello")
    assert status(c)["turn_state"] == "done"
    rec = fake.calls[0]
    wait_for(lambda: rec.done, 20, what="the daemon to close the trickling connection")
    assert rec.completed and rec.closed_by_client, rec.to_dict()
    assert rec.trickled > 0
    # The next call works (on a new connection).
    fake.set_default("normal")
    send(c, "again\n")
    assert output(c) == reply_for("again")


def test_a_flood_after_message_stop_is_cut_by_bytes(mount, fake):
    """Bytes as fast as the fake can send them after message_stop: the drain
    stops at 64 KiB, long before the fake's 64 MiB are through."""
    total = 64 << 20
    fake.set_default("normal", trickle_after_stop=True, trickle_bytes=64 << 10, trickle_ms=0,
                     trickle_total=total)
    c = mount.ctx("c")
    send(c, "hello\n")
    assert output(c) == reply_for("hello")
    rec = fake.calls[0]
    wait_for(lambda: rec.done, 20, what="the daemon to close the flooding connection")
    assert rec.closed_by_client, rec.to_dict()
    # What the kernel's socket buffers hold is on top of the 64 KiB read.
    assert rec.trickled < total // 2, rec.trickled


# --- point 14: SIGTERM with reads parked on output ----------------------------------------------


def test_sigterm_answers_parked_reads(mount, fake):
    """Readers of a queued reply (its context busy with the turn before) are
    parked when SIGTERM comes.  libfuse frees a request only once it is
    answered: they leaked (LeakSanitizer, exit 1, in the sanitizer build) and
    the readers saw the mount vanish.  Now each read is answered EIO, like a
    reply cut short, and the daemon exits 0 with no leak report."""
    fake.set_default("hold", hold_after=1)
    c = mount.ctx("c")
    send(c, "first\n")
    wait_for(lambda: fake.calls and fake.calls[0].held, 10, what="the first call to hold")
    send(c, "second\n")  # queued behind the first
    readers = [mount.spawn(["cat", c / "output"]) for _ in range(4)]
    for r in readers:
        wait_for(lambda: blocked_in_read(r.pid), 10, what="cat to block in read")
    mount._expect_exit = True
    os.kill(mount.proc.pid, signal.SIGTERM)
    rc = mount.proc.wait(30)
    fake.release()
    errs = []
    for r in readers:
        _, err = r.communicate(timeout=10)
        errs.append(err.decode("utf-8", "replace"))
    log = mount.log()
    assert "LeakSanitizer" not in log, log
    assert rc == 0, log
    for e in errs:
        # The read's own answer, not the mount gone from under it.
        assert e.splitlines()[0].endswith("Input/output error"), errs
    assert not is_mounted(mount.path)


# --- point 5: nothing outside the mount after a lazy unmount -----------------------------------


def test_lazy_unmount_leaves_files_at_the_old_path_alone(mount, fake):
    """After `fusermount3 -uz` the daemon goes on serving the open files of the
    detached mount, and its notifier went on truncating MOUNTPOINT/NAME/output
    by path: a user's file created there went from 2,000 bytes to the reply's
    size.  The notifier now works only inside its own mount."""
    text = "".join("word%03d " % i for i in range(40))
    fake.set_default("slow", text=text, deltas=40, delay_ms=100)
    c = mount.ctx("c")
    send(c, "hello\n")
    reader = Reader(c / "output")  # keeps the detached mount, and the daemon, alive
    wait_for(lambda: len(reader.data) > 0, 10, what="the reply to start")
    # A descriptor in the mount that outlives the stream, so that the daemon's
    # last passes after the reply's end still happen while it is alive.
    held = os.open(c / "status", os.O_RDONLY)
    mount._expect_exit = True
    assert unmount(mount.path, lazy=True)
    assert not is_mounted(mount.path)
    # The mount point is an ordinary directory again; a user's file appears
    # where output was.
    os.mkdir(mount.path / "c")
    mine = mount.path / "c" / "output"
    data = b"x" * 2000
    mine.write_bytes(data)
    reader.finish(30)
    assert reader.error is None and reader.data.decode() == text
    time.sleep(0.5)  # the notifier's passes after the end (it wakes every 100 ms)
    os.close(held)
    assert mount.proc.wait(10) == 0, mount.log_tail()
    assert mine.read_bytes() == data
    assert os.listdir(mount.path / "c") == ["output"]


# --- point 9: a NUL in a text delta ---------------------------------------------------------------


def test_nul_in_a_text_delta_is_kept(mount, fake):
    """A text delta holding \\u0000 was cut at the NUL (a strlen on decoded
    text) and the reply still showed done.  The NUL byte and everything after
    it reach output, survive a remount, and go back to the API in the history."""
    fake.set_default("normal", pieces=["before ", "a\u0000b", " after"])
    c = mount.ctx("c")
    send(c, "hello\n")
    want = b"before a\x00b after"
    assert read_file(c / "output", binary=True) == want
    assert status(c)["turn_output_bytes"] == str(len(want))
    mount.remount()
    assert read_file(c / "output", binary=True) == want
    assert status(c)["turn_state"] == "done"
    fake.set_default("normal")
    send(c, "next\n")
    assert output(c) == reply_for("next")
    assert fake.calls[-1].texts()[1] == ("assistant", "before a\u0000b after")


def test_nul_in_a_text_is_kept_in_transcript_and_json(shim, fake):
    """JSON renderings went through cJSON as C strings: history.json and the
    shim's GET …/history and …/transcript ended the reply at the NUL.  Each now
    holds \\u0000 and what follows it; the transcript file holds the byte."""
    fake.set_default("normal", pieces=["before ", "a\u0000b", " after"])
    r = shim.api.request("POST", "/v1/contexts", {"name": "n"})
    assert r.status in (200, 201), r.body
    c = shim.path / "n"
    send(c, "hello tail\n")
    want = "before a\u0000b after"
    assert read_file(c / "output", binary=True) == want.encode()
    text = read_file(c / "transcript", binary=True)
    assert b"before a\x00b after" in text and b"hello tail" in text, text
    for where in ("history", "transcript"):
        r = shim.api.request("GET", "/v1/contexts/n/" + where)
        assert r.status == 200, r.body
        assert b"a\\u0000b after" in r.body, r.body
        texts = [m["content"] if isinstance(m["content"], str) else m["content"][0]["text"]
                 for m in r.json()["messages"]]
        assert want in texts and "hello tail\n" in texts, texts
    hist = read_file(c / "history.json", binary=True)
    assert b"a\\u0000b after" in hist, hist
