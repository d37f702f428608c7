"""A full disk (CONTRACT §3.2-§3.3, §4, §6): the state directory on a 512 KiB
tmpfs, filled to the last byte by a filler file.  A message then fails at the
write that brings its bytes with ENOSPC (room for its record is held on disk
as it arrives; test_write_errors.py has the many-writers case), `status` says why and nothing is sent; settings
changes and mkdir fail with ENOSPC and change nothing; every journal stays
valid (mcpfs-journal-dump --verify); operations that need no space (reading,
mv, rm -rf) keep working; and once the filler is gone everything works again,
also after a remount.

tmpfs allocates whole pages, so a journal's last page may have room for a
small record even when the file system is full.  Every write that must fail
here is therefore larger than a page (a 12 KiB message, a 6 KiB system prompt
that each settings record repeats) and so needs a page that is not there.

Mounting the tmpfs needs root; without it these tests are skipped.
"""

import errno
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from mcpfs_testlib import (
    REPO, call_with_timeout, content_text, is_mounted, output, read_file, read_partial,
    reply_for, run, send, status, wait_for, wait_status, write_file,
)

TMPFS_SIZE = "512k"
PAGE = 4096
BIG_MESSAGE = "big message " + "y" * (3 * PAGE) + "\n"
BIG_SYSTEM = "You are terse. " + "s" * (6000 - 15)


def umount(path):
    """umount, retried while the file system is busy, then lazily."""
    end = time.monotonic() + 10
    while is_mounted(path) and time.monotonic() < end:
        subprocess.run(["umount", str(path)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
        if is_mounted(path):
            time.sleep(0.1)
    if is_mounted(path):
        subprocess.run(["umount", "-l", str(path)], timeout=10)
        wait_for(lambda: not is_mounted(path), 10, what="lazy umount of %s" % path)


@pytest.fixture
def small(mount_factory):
    """A Mount whose state directory is a 512 KiB tmpfs; always unmounted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the state directory needs root")
    mt = mount_factory(start=False)
    mt.state.mkdir()
    r = run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % TMPFS_SIZE, "tmpfs",
             str(mt.state)])
    assert r.rc == 0, r
    try:
        mt.start()
        yield mt
    finally:
        mt.cleanup()  # the daemon first: it holds the journals open
        umount(mt.state)


class Filler:
    """Fills a file system to its last byte, and frees it again."""

    def __init__(self, directory):
        self.path = Path(directory) / "filler"

    def fill(self):
        def body():
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                for chunk in (1 << 16, PAGE, 1):
                    try:
                        while True:
                            os.write(fd, b"x" * chunk)
                    except OSError as e:
                        assert e.errno == errno.ENOSPC, e
            finally:
                os.close(fd)
        call_with_timeout(body, 30, "filling the state directory")
        st = os.statvfs(self.path.parent)
        assert st.f_bavail == 0, "the state directory still has %d blocks" % st.f_bavail

    def remove(self):
        os.unlink(self.path)


def journal_dump(mt):
    exe = os.environ.get("MCPFS_JOURNAL_DUMP")
    if not exe:
        near = Path(mt.bin).parent / "mcpfs-journal-dump"
        exe = str(near if near.exists() else REPO / "build" / "mcpfs-journal-dump")
    return exe


def assert_journals_valid(mt, names):
    """Every context has its journal and each verifies clean."""
    files = [mt.state / "contexts" / n / "journal" for n in names]
    assert sorted(os.listdir(mt.state / "contexts")) == sorted(names)
    for f in files:
        assert f.is_file(), f
    r = run([journal_dump(mt), "--verify"] + [str(f) for f in files])
    assert r.rc == 0, r
    for line in r.out.splitlines():
        assert re.search(r"bad records 0 .* torn bytes 0", line), line


def assert_no_leftovers(mt):
    """No temporary file, no half-made context, nothing left in the trash."""
    left = [p for p in os.listdir(mt.state) if p.endswith(".tmp")]
    assert left == [], "temporary files left in the state directory: %r" % left
    assert os.listdir(mt.state / "trash") == []


def contexts(mt):
    return sorted(n for n in os.listdir(mt.path) if not n.startswith("."))


def history_texts(ctx):
    hj = json.loads(read_file(ctx / "history.json"))
    return [(m["role"], content_text(m["content"]).strip()) for m in hj["messages"]]


# --- a message --------------------------------------------------------------------------------


def test_message_under_enospc_fails_at_the_write_and_sends_nothing(small, fake):
    mt, filler = small, Filler(small.state)
    c = mt.ctx("c")
    send(c, "before\n")
    assert output(c) == reply_for("before")
    filler.fill()

    # Python: the write fails with ENOSPC (CONTRACT §3.3), and so does the close.
    def write_then_close():
        fd = os.open(c / "input", os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, BIG_MESSAGE.encode())
        finally:
            with pytest.raises(OSError) as ei:
                os.close(fd)
            assert ei.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as ei:
        call_with_timeout(write_then_close, 10, "writing input")
    assert ei.value.errno == errno.ENOSPC
    st = status(c)
    assert st.state == "idle", st.text  # a refused message is not a failed turn
    assert re.match(r"write of input: cannot save the message: No space left on device",
                    st.get("last_refused", "")), st.text
    # A shell redirection sees it too.
    r = run("head -c %d /dev/zero | tr '\\0' z > '%s/input'" % (3 * PAGE, c))
    assert r.rc != 0 and "No space left on device" in r.err, r

    # Nothing was sent and nothing changed: output is still the last reply.
    assert output(c) == reply_for("before")
    assert history_texts(c) == [("user", "before"), ("assistant", reply_for("before"))]
    assert mt.proc.poll() is None
    assert_journals_valid(mt, ["c"])

    filler.remove()
    send(c, "after\n")
    assert output(c) == reply_for("after")
    assert [x.last_user_text.strip() for x in fake.calls] == ["before", "after"]
    st = wait_status(c, "idle")
    assert st.get("last_error") is None and st.get("last_refused") is None, st.text
    assert_journals_valid(mt, ["c"])

    mt.remount()
    assert contexts(mt) == ["c"]
    assert history_texts(c) == [("user", "before"), ("assistant", reply_for("before")),
                                ("user", "after"), ("assistant", reply_for("after"))]
    assert "big message" not in read_file(c / "transcript")
    assert_journals_valid(mt, ["c"])
    send(c, "remounted\n")
    assert output(c) == reply_for("remounted")


# --- settings ---------------------------------------------------------------------------------


def settings_snapshot(mt, c):
    return {n: read_file(p) for n, p in (("config", c / "config"), ("model", c / "model"),
                                         ("system", c / "system"),
                                         (".config", mt.path / ".config"))}


def test_settings_change_under_enospc_fails_and_changes_nothing(small, fake):
    mt, filler = small, Filler(small.state)
    c = mt.ctx("c")
    write_file(c / "system", BIG_SYSTEM)
    write_file(c / "config", "max_tokens = 321\n")
    write_file(mt.path / ".config", "max_tokens = 654\n")
    before = settings_snapshot(mt, c)
    filler.fill()

    changes = [(c / "config", "max_tokens = 5\n"), (c / "model", "claude-haiku-4-5\n"),
               (c / "system", BIG_SYSTEM.replace("terse", "brief")),
               (mt.path / ".config", "max_tokens = 7\n")]
    for path, text in changes:
        with pytest.raises(OSError) as ei:
            write_file(path, text)
        assert ei.value.errno == errno.ENOSPC, (path, ei.value)
        assert settings_snapshot(mt, c) == before, path
    r = run("/bin/echo 'max_tokens = 5' > '%s/config'" % c)
    assert r.rc != 0 and "No space left on device" in r.err, r
    # bash's builtin ignores close errors: the write itself fails (CONTRACT §3.3)
    for path, text in changes:
        r = run("echo '%s' > '%s'" % (text.strip(), path))
        assert r.rc != 0 and "No space left on device" in r.err, r
    st = status(c)
    assert re.search(r"write of (config|model|system): cannot save settings: No space left",
                      st.get("last_refused", "")), st.text
    assert settings_snapshot(mt, c) == before
    assert status(c).state == "idle"  # a refused setting is not a failed turn
    assert mt.proc.poll() is None
    assert_journals_valid(mt, ["c"])
    assert_no_leftovers(mt)

    filler.remove()
    for path, text in changes:
        write_file(path, text)
    after = settings_snapshot(mt, c)
    assert re.search(r"(?m)^max_tokens = 5$", after["config"]), after["config"]
    assert after["model"] == "claude-haiku-4-5\n"
    assert "brief" in after["system"]
    assert re.search(r"(?m)^max_tokens = 7$", after[".config"]), after[".config"]
    assert_no_leftovers(mt)
    mt.remount()
    assert settings_snapshot(mt, c) == after
    send(c, "hello\n")
    assert output(c) == reply_for("hello")
    call = fake.calls[-1]
    assert call.max_tokens == 5 and call.model == "claude-haiku-4-5"
    assert "brief" in call.system
    assert_journals_valid(mt, ["c"])


# --- contexts ---------------------------------------------------------------------------------


def test_mkdir_under_enospc_fails_cleanly_and_space_free_operations_work(small, fake):
    mt, filler = small, Filler(small.state)
    a = mt.ctx("a")
    send(a, "hello\n")
    assert output(a) == reply_for("hello")
    filler.fill()

    with pytest.raises(OSError) as ei:
        os.mkdir(mt.path / "d")
    assert ei.value.errno == errno.ENOSPC, ei.value
    r = run(["mkdir", str(mt.path / "e")])
    assert r.rc != 0 and "No space left on device" in r.err, r
    assert contexts(mt) == ["a"]
    assert_journals_valid(mt, ["a"])  # no half-made context on disk
    assert_no_leftovers(mt)

    # What needs no space still works: reading, renaming, deleting.
    assert output(a) == reply_for("hello")
    assert read_file(a / "transcript")
    r = run(["mv", str(a), str(mt.path / "b")])
    assert r.rc == 0, r
    b = mt.path / "b"
    assert contexts(mt) == ["b"] and output(b) == reply_for("hello")
    assert_journals_valid(mt, ["b"])

    filler.remove()
    d = mt.ctx("d")
    send(d, "in d\n")
    assert output(d) == reply_for("in d")
    filler.fill()
    r = run(["rm", "-rf", str(b)])
    assert r.rc == 0 and r.err == "", r
    assert contexts(mt) == ["d"]
    assert_no_leftovers(mt)
    filler.remove()

    mt.remount()
    assert contexts(mt) == ["d"]
    assert output(d) == reply_for("in d")
    assert_journals_valid(mt, ["d"])
    assert [x.last_user_text.strip() for x in fake.calls] == ["hello", "in d"]


# --- a reply ----------------------------------------------------------------------------------


def start_reply_then_fill(mt, fake, filler, size):
    """A message is saved and sent; the disk fills while its reply streams."""
    c = mt.ctx("c")
    fake.script("hold", hold_after=1, huge=size)
    send(c, "long one\n")
    fake.wait_held(0)
    filler.fill()
    fake.release()
    return c


def test_reply_under_enospc_keeps_the_journal_valid(small, fake):
    mt, filler = small, Filler(small.state)
    c = start_reply_then_fill(mt, fake, filler, 40000)
    data, err = read_partial(c / "output", timeout=20)
    assert err is None and len(data) == 40000  # the reader gets the reply it was sent
    assert mt.proc.poll() is None
    assert_journals_valid(mt, ["c"])

    filler.remove()
    send(c, "next\n")
    assert output(c) == reply_for("next")
    mt.remount()
    assert_journals_valid(mt, ["c"])
    # What was lost is never passed off as a whole reply after the restart.
    t = read_file(c / "transcript")
    whole = fake.calls[0].reply_text
    assert whole in t or re.search(r"turn 1, (failed|interrupted)", t), t[-2000:]
    send(c, "remounted\n")
    assert output(c) == reply_for("remounted")


def test_reply_under_enospc_is_reported_in_status(small, fake):
    mt, filler = small, Filler(small.state)
    c = start_reply_then_fill(mt, fake, filler, 40000)
    data, err = read_partial(c / "output", timeout=20)
    assert err is None and len(data) == 40000
    st = status(c)
    filler.remove()
    assert re.search(r"No space left on device", st.text), st.text
