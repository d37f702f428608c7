"""Slow and failing fsync of one context's journal (CONTRACT §3.2, §6), injected
with an LD_PRELOAD library built here (preload/fsync_fault.c), so that the
daemon has no test hooks: a held fsync of context b's journal stalls neither
another context's turn nor its `status`, and b's writer or reader still waits
for its own commit; a failed fsync reaches the writer (close() fails with EIO)
or the reader (the text, then EIO), `status` says what happened, the journal is
recovered without a restart, and a remount shows the same state.

The assertions are about progress while b's fsync is held (a whole turn of a
is read, a's status answers), never about how long anything took."""

import errno
import os
import re
import subprocess
import threading
import time

import pytest

from mcpfs_testlib import (
    REPO, Reader, output, read_file, reply_for, run, send, status, wait_for, write_file,
)

PRELOAD_SRC = REPO / "tests" / "integration" / "preload" / "fsync_fault.c"


@pytest.fixture(scope="module")
def preload(tmp_path_factory):
    """The fault library, compiled once per module."""
    out = tmp_path_factory.mktemp("preload") / "fsync_fault.so"
    cc = os.environ.get("CC", "cc")
    r = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(out), str(PRELOAD_SRC),
                        "-ldl"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


class Faults:
    """The control directory of fsync_fault.c."""

    def __init__(self, d):
        self.dir = d
        d.mkdir(exist_ok=True)

    def hold(self):
        (self.dir / "hold").touch()

    def release(self):
        (self.dir / "hold").unlink()

    def held(self):
        return (self.dir / "held").exists()

    def fail_next(self):
        (self.dir / "fail").touch()

    def failed(self):
        """The armed failure was used."""
        return not (self.dir / "fail").exists()


@pytest.fixture
def faults(mount_factory, workdir):
    """Set up after the mount factory, so torn down before it: a hold left by a
    failing test is released before the daemon is stopped."""
    f = Faults(workdir / "faults")
    yield f
    for name in ("hold", "fail"):
        try:
            (f.dir / name).unlink()
        except FileNotFoundError:
            pass


def faulty_mount(mount_factory, preload, faults, match, **kw):
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {"LD_PRELOAD": str(preload), "MCPFS_FAULT_DIR": str(faults.dir),
           "MCPFS_FAULT_MATCH": match,
           # the library is loaded before the sanitizer's runtime
           "ASAN_OPTIONS": asan + ":verify_asan_link_order=0"}
    mt = mount_factory(env=env, **kw)
    return mt


class Background:
    """fn() in a thread; .done, .error, join()."""

    def __init__(self, fn):
        self.error = None
        self.done = False

        def body():
            try:
                fn()
            except Exception as e:  # noqa: BLE001 — reported by join()
                self.error = e
            self.done = True
        self.thread = threading.Thread(target=body, daemon=True)
        self.thread.start()

    def join(self, timeout=20):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "still blocked"


def a_whole_turn(a, fake, word):
    """A message to a, its reply read whole in 20 deltas, and a's status."""
    fake.script("normal", deltas=20)
    send(a, word + "\n")
    assert output(a) == reply_for(word)
    assert status(a).state == "idle"


def test_a_held_fsync_of_b_stalls_neither_a_turn_nor_status(mount_factory, fake, faults,
                                                             preload):
    mt = faulty_mount(mount_factory, preload, faults, "/contexts/b/journal")
    a, b = mt.ctx("a"), mt.path / "b"

    # mkdir b: it returns once b's new journal is durable
    faults.hold()
    maker = Background(lambda: os.mkdir(b))
    wait_for(faults.held, 10, what="the fsync of b's new journal to be held")
    a_whole_turn(a, fake, "first")
    assert faults.held() and not maker.done, "mkdir returned before its fsync"
    faults.release()
    maker.join()
    assert maker.error is None, maker.error

    # b's message: the writer's close() waits for its fsync, held
    faults.hold()
    writer = Background(lambda: send(b, "bee\n", timeout=60))
    wait_for(faults.held, 10, what="b's fsync to be held")
    for i in range(5):  # each its own files: none may share a lock with b's input
        a_whole_turn(a, fake, "alpha %d" % i)
    assert faults.held() and not writer.done, "b's fsync was not held throughout"
    faults.release()
    writer.join()
    assert writer.error is None, writer.error
    assert output(b) == reply_for("bee")

    # b's reply end: its reader sees the end once it is durable
    fake.script("hold", hold_after=2)
    send(b, "second\n")
    fake.wait_held()
    reader = Reader(b / "output")
    wait_for(lambda: reader.data, 10, what="b's first deltas")
    faults.hold()
    fake.release()
    wait_for(faults.held, 10, what="the fsync of b's reply end to be held")
    a_whole_turn(a, fake, "again")
    assert faults.held() and not reader.eof, "b's reply ended before its fsync"
    faults.release()
    reader.finish(20)
    assert reader.error is None and reader.data == reply_for("second").encode()
    assert mt.stop() == 0
    mt.start()
    assert output(b) == reply_for("second")
    assert output(a) == reply_for("again")


def sync_line(ctx):
    return status(ctx).get("journal_fsync", "")


def verify_journal(mt, name):
    exe = os.environ.get("MCPFS_JOURNAL_DUMP") or str(REPO / "build" / "mcpfs-journal-dump")
    r = run([exe, "--verify", str(mt.state / "contexts" / name / "journal")])
    assert r.rc == 0 and re.search(r"bad records 0 .* torn bytes 0", r.out), r


@pytest.mark.allow_errors(r"Input/output error")
def test_a_failed_fsync_of_a_message_fails_its_close_and_is_recovered(mount_factory, fake,
                                                                     faults, preload):
    mt = faulty_mount(mount_factory, preload, faults, "/contexts/c/journal")
    c = mt.ctx("c")
    send(c, "first\n")
    assert output(c) == reply_for("first")
    calls = len(fake.calls)

    faults.fail_next()
    with pytest.raises(OSError) as e:
        send(c, "lost\n")
    assert e.value.errno == errno.EIO
    assert faults.failed()
    assert len(fake.calls) == calls, "a message whose commit failed was sent"
    st = status(c)
    # a close refused with an errno: `last_refused`, the word unchanged (CONTRACT §3.3)
    assert st.state == "idle", st.text
    assert "cannot save the message: Input/output error" in st.get("last_refused", ""), st.text
    assert re.match(r"failed at \S+ \(Input/output error\); recovered", sync_line(c)), st.text
    assert "lost" not in read_file(c / "transcript")

    # the same context works without a restart, and the failed message is not in it
    send(c, "next\n")
    assert output(c) == reply_for("next")
    assert fake.calls[-1].n_messages == 3
    before = read_file(c / "transcript")
    assert mt.stop() == 0
    verify_journal(mt, "c")
    mt.start()
    assert read_file(c / "transcript") == before
    assert status(c).state == "idle"


@pytest.mark.allow_errors(r"Input/output error")
def test_a_failed_fsync_of_a_reply_end_reaches_its_reader(mount_factory, fake, faults,
                                                          preload):
    mt = faulty_mount(mount_factory, preload, faults, "/contexts/c/journal")
    c = mt.ctx("c")
    fake.script("hold", hold_after=2)
    send(c, "question\n")
    fake.wait_held(0)
    reader = Reader(c / "output")
    wait_for(lambda: reader.data, 10, what="the first deltas")
    faults.fail_next()
    fake.release()
    reader.finish(20)
    assert faults.failed()
    # the text, then EIO: the reply was not committed
    assert reader.data == reply_for("question").encode()
    assert isinstance(reader.error, OSError) and reader.error.errno == errno.EIO, reader.error
    st = status(c)
    assert st.state == "error", st.text
    assert st.get("last_error", "").startswith("journal_error: the reply could not be saved"), \
        st.text
    assert re.match(r"failed at \S+ \(Input/output error\); recovered", sync_line(c)), st.text
    assert re.search(r"--- assistant \(turn 1\) ---\n%s\n\n--- turn 1, failed: journal_error: "
                     r"the reply could not be saved" % re.escape(reply_for("question")),
                     read_file(c / "transcript"))

    # retry and a new message work without a restart
    write_file(c / "ctl", "retry\n")
    assert output(c) == reply_for("question")
    send(c, "next\n")
    assert output(c) == reply_for("next")
    before = read_file(c / "transcript")
    assert mt.stop() == 0
    verify_journal(mt, "c")
    mt.start()
    assert read_file(c / "transcript") == before
    assert status(c).state == "idle"


@pytest.mark.allow_errors(r"Input/output error")
def test_a_failed_reply_end_after_restart_is_failed_not_interrupted(mount_factory, fake,
                                                                    faults, preload):
    """The reader saw EIO; after a remount the turn is the same failure, with
    the same text, not an interrupted one."""
    mt = faulty_mount(mount_factory, preload, faults, "/contexts/c/journal")
    c = mt.ctx("c")
    fake.script("hold", hold_after=1)
    send(c, "question\n")
    fake.wait_held(0)
    faults.fail_next()
    fake.release()
    reader = Reader(c / "output")
    reader.finish(20)
    assert faults.failed()
    assert reader.error is not None and reader.error.errno == errno.EIO
    wait_for(lambda: "recovered" in sync_line(c), 10, what="the recovery in status")
    assert mt.stop() == 0
    verify_journal(mt, "c")
    mt.start()
    st = status(c)
    assert st.get("last_error", "").startswith("journal_error:"), st.text
    with pytest.raises(OSError) as e:
        read_file(c / "output")
    assert e.value.errno == errno.EIO
    text = read_file(c / "transcript")
    assert re.search(r"--- assistant \(turn 1\) ---\n%s\n\n--- turn 1, failed: journal_error: "
                     % re.escape(reply_for("question")), text), text


@pytest.mark.allow_errors(r"Input/output error")
def test_a_failed_fsync_of_a_setting_changes_nothing(mount_factory, fake, faults, preload):
    mt = faulty_mount(mount_factory, preload, faults, "/contexts/c/journal")
    c = mt.ctx("c")
    write_file(c / "config", "max_tokens = 111\n")
    faults.fail_next()
    with pytest.raises(OSError) as e:
        write_file(c / "config", "max_tokens = 222\n")
    assert e.value.errno == errno.EIO
    assert faults.failed()
    assert "max_tokens = 111" in read_file(c / "config")
    assert re.match(r"failed at \S+ \(Input/output error\); recovered", sync_line(c))
    # a new system prompt whose fsync fails: neither it nor its mark in the
    # transcript stays (the transcript shows only what the journal holds)
    faults.fail_next()
    with pytest.raises(OSError) as e:
        write_file(c / "system", "Lost prompt.\n")
    assert e.value.errno == errno.EIO
    assert read_file(c / "system") == ""
    assert "Lost prompt" not in read_file(c / "transcript")
    write_file(c / "system", "Be brief.\n")
    assert "--- system prompt set ---\nBe brief." in read_file(c / "transcript")
    send(c, "hi\n")
    assert output(c) == reply_for("hi")
    assert fake.calls[-1].max_tokens == 111 and fake.calls[-1].system.strip() == "Be brief."
    assert mt.stop() == 0
    verify_journal(mt, "c")
    mt.start()
    assert "max_tokens = 111" in read_file(c / "config")
    assert read_file(c / "system") == "Be brief.\n"


def test_deleting_a_context_while_its_reply_end_is_synced(mount_factory, fake, faults, preload):
    """The reader of a complete reply whose end is being synced sees its end when
    the context is deleted meanwhile, and the sync that outlives the context
    harms nothing."""
    mt = faulty_mount(mount_factory, preload, faults, "/contexts/d/journal")
    d = mt.ctx("d")
    fake.script("hold", hold_after=1)
    send(d, "question\n")
    fake.wait_held(0)
    reader = Reader(d / "output")
    wait_for(lambda: reader.data, 10, what="the first delta")
    faults.hold()
    fake.release()
    wait_for(faults.held, 10, what="the fsync of the reply's end to be held")
    assert not reader.eof
    os.rmdir(d)
    reader.finish(10)
    assert reader.error is None and reader.data == reply_for("question").encode()
    faults.release()
    e = mt.ctx("e")
    send(e, "still here\n")
    assert output(e) == reply_for("still here")
    assert "d" not in os.listdir(mt.path)


def test_a_message_keeps_its_disk_room_while_its_journal_syncs(mount_factory, fake, faults,
                                                               preload):
    """The room a message's writes held on disk (store_reserve) goes to its
    record only once no fsync runs on its journal: given back before the wait,
    anything writing meanwhile (here a filler) took it, and the close failed
    with ENOSPC although every write had succeeded."""
    import test_disk_full as disk  # the module, so that its tests are not collected here
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the state directory needs root")
    mt = faulty_mount(mount_factory, preload, faults, "/contexts/c/journal", start=False)
    mt.state.mkdir()
    r = run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % disk.TMPFS_SIZE, "tmpfs",
             str(mt.state)])
    assert r.rc == 0, r
    try:
        mt.start()
        c = mt.ctx("c")
        send(c, "before\n")
        assert output(c) == reply_for("before")
        fake.script("hold", hold_after=0)  # b's reply waits for the room to come back
        # both messages written, their room held, then the disk is filled
        fb = os.open(c / "input", os.O_WRONLY | os.O_TRUNC)
        os.write(fb, b"b first\n")
        fa = os.open(c / "input", os.O_WRONLY | os.O_TRUNC)
        os.write(fa, disk.BIG_MESSAGE.encode())
        filler = disk.Filler(mt.state)
        filler.fill()
        # b's close commits, its fsync held: the journal is busy
        faults.hold()
        closer_b = Background(lambda: os.close(fb))
        wait_for(faults.held, 10, what="the fsync of b's message to be held")
        # a's close waits for that fsync; whatever it held must stay held
        closer_a = Background(lambda: os.close(fa))
        time.sleep(0.5)  # lets a's close reach the wait (the failure needs no more)
        filler.fill()  # takes any room given back meanwhile
        assert not closer_a.done and not closer_b.done
        faults.release()
        closer_b.join()
        closer_a.join()
        assert closer_b.error is None, closer_b.error
        assert closer_a.error is None, "a's close: %r" % closer_a.error
        fake.wait_held(1)  # b's call: released only once it has arrived
        filler.remove()
        fake.release()
        wait_for(lambda: len(fake.calls) >= 3 and status(c).state == "idle", 20,
                 what="both messages sent")
        assert [x.last_user_text.strip() for x in fake.calls[1:]] == \
            ["b first", disk.BIG_MESSAGE.strip()]
    finally:
        mt.cleanup()
        disk.umount(mt.state)


def test_a_retry_waits_for_the_sync_of_the_reply_it_replaces(mount_factory, fake, faults,
                                                             preload):
    """`retry` right after a reply ended, while that end's fsync is held: its
    RETRY record waits for that sync (it was refused with EBUSY), is synced
    with the store lock released (another context's turn goes on), and the
    regenerated reply follows."""
    mt = faulty_mount(mount_factory, preload, faults, "/contexts/c/journal")
    a, c = mt.ctx("a"), mt.ctx("c")
    fake.script("hold", hold_after=2)
    send(c, "question\n")
    fake.wait_held(0)
    faults.hold()
    fake.release()
    wait_for(faults.held, 10, what="the fsync of c's reply end to be held")
    wait_for(lambda: status(c).get("turn_state") == "done", 10, what="c's reply to end")
    retry = Background(lambda: write_file(c / "ctl", "retry\n", 60))
    a_whole_turn(a, fake, "meanwhile")
    assert faults.held() and not retry.done, "the retry did not wait for the sync"
    faults.release()
    retry.join()
    assert retry.error is None, retry.error
    wait_for(lambda: status(c).state == "idle" and status(c).get("turn_attempt") == "2", 20,
             what="the regenerated reply")
    assert output(c) == reply_for("question")
    assert "--- turn 1, regenerated" in read_file(c / "transcript")
    assert mt.stop() == 0
    mt.start()
    st = status(c)
    assert st.get("turn_attempt") == "2" and st.get("turn_state") == "done", st.text
