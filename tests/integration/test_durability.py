"""CONTRACT §6: contexts, settings, messages and replies survive unmount,
remount and kill -9; a reply in flight at a crash comes back interrupted; a torn
or corrupt journal record does not take down the context."""

import errno
import json
import os
import re
import shutil
import time

import pytest

from mcpfs_testlib import (
    Reader, content_text, output, read_file, read_partial, reply_for, send, status, wait_for,
    wait_status, write_file,
)


def snapshot(ctx):
    return {n: read_file(ctx / n) for n in ("history", "history.json", "transcript", "system",
                                             "model", "config", "output")}


def contexts(mount):
    return sorted(n for n in os.listdir(mount.path) if not n.startswith("."))


def populate(mount):
    a, b = mount.ctx("a"), mount.ctx("b")
    write_file(a / "system", "You are terse.\n")
    write_file(a / "model", "claude-haiku-4-5\n")
    write_file(a / "config", "max_tokens = 321\ntemperature = 0.25\n")
    for word in ("hello", "again"):
        send(a, word + "\n")
        assert output(a) == reply_for(word)
    send(b, "bee\n")
    assert output(b) == reply_for("bee")
    return a, b


def test_restart_keeps_everything(mount, fake):
    a, b = populate(mount)
    before = {"a": snapshot(a), "b": snapshot(b)}
    root_config = read_file(mount.path / ".config")
    rc = mount.stop()
    assert rc == 0
    mount.start()
    assert contexts(mount) == ["a", "b"]
    assert {"a": snapshot(a), "b": snapshot(b)} == before
    assert read_file(mount.path / ".config") == root_config
    assert status(a).state == "idle"
    send(a, "third\n")
    assert output(a) == reply_for("third")
    c = fake.calls[-1]
    assert c.n_messages == 5 and c.system.strip() == "You are terse."
    assert c.model == "claude-haiku-4-5" and c.max_tokens == 321


def test_rename_delete_and_defaults_survive_remount(mount, fake):
    a, b = populate(mount)
    os.rename(a, mount.path / "renamed")
    os.rmdir(b)
    write_file(mount.path / ".config", "max_tokens = 555\n")
    mount.remount()
    assert contexts(mount) == ["renamed"]
    assert output(mount.path / "renamed") == reply_for("again")
    assert "max_tokens = 555" in read_file(mount.path / ".config")
    n = mount.ctx("new")
    assert "max_tokens = 555" in read_file(n / "config")


def test_kill9_when_idle_keeps_committed_state(mount, fake):
    a, b = populate(mount)
    before = {"a": snapshot(a), "b": snapshot(b)}
    mount.kill9()
    mount.start()
    assert contexts(mount) == ["a", "b"]
    assert {"a": snapshot(a), "b": snapshot(b)} == before


@pytest.mark.allow_errors()
def test_kill9_mid_stream_comes_back_interrupted(mount, fake):
    c = mount.ctx("c")
    send(c, "before\n")
    assert output(c) == reply_for("before")
    fake.script("hold", hold_after=2)
    send(c, "hello\n")
    call = fake.wait_held(1)
    partial = call.text_sent
    reader = Reader(c / "output")
    wait_for(lambda: reader.data == partial.encode(), 10, what="the partial reply")
    mount.kill9()
    reader.finish(10)
    mount.start()
    st = wait_status(c, "error", 10)
    assert re.search(r"interrupted", st.text, re.I), st.text
    data, err = read_partial(c / "output")
    assert data.decode() == partial
    assert err is not None and err.errno == errno.EIO
    assert "hello" in read_file(c / "transcript")
    # the context goes on: the next message is sent with a valid history
    send(c, "after\n")
    assert output(c) == reply_for("after")
    assert fake.calls[-1].roles[0] == "user"


@pytest.mark.allow_errors()
def test_message_is_durable_before_it_is_sent(mount, fake):
    c = mount.ctx("c")
    fake.script("hold", hold_after=0)
    send(c, "durable message\n")
    fake.wait_held(0)  # the request is out, so the message must be on disk
    mount.kill9()
    mount.start()
    assert "durable message" in read_file(c / "transcript")
    st = wait_status(c, "error", 10)
    assert re.search(r"interrupted", st.text, re.I), st.text
    write_file(c / "ctl", "retry\n")
    assert output(c) == reply_for("durable message")


def journal_files(state, marker):
    """Files of the state directory that hold `marker` (the journal of the
    context that was sent it)."""
    out = []
    for root, _, files in os.walk(state):
        for f in files:
            p = os.path.join(root, f)
            try:
                with open(p, "rb") as fh:
                    if marker.encode() in fh.read():
                        out.append(p)
            except OSError:
                pass
    return out


@pytest.mark.state_dir_only("tears a journal file")
@pytest.mark.allow_errors()
def test_torn_journal_tail_is_survived(mount, fake):
    c = mount.ctx("c")
    send(c, "keep me\n")
    assert output(c) == reply_for("keep me")
    assert mount.stop() == 0
    files = journal_files(mount.state, "keep me")
    assert files, "no state file holds the message"
    for p in files:
        with open(p, "ab") as f:
            f.write(b"\x4d\x43\x00\x01\x00\x00\x10\x00torn record that never finish")
    mount.start()
    assert contexts(mount) == ["c"]
    hj = json.loads(read_file(c / "history.json"))
    assert [m["role"] for m in hj["messages"]] == ["user", "assistant"]
    # reported where the user looks, and the daemon keeps working
    recovered = status(c).get("journal_recovered", "")
    assert re.match(r"0 corrupt record\(s\) skipped, [1-9]\d* torn byte\(s\) truncated$",
                    recovered), status(c).text
    send(c, "still works\n")
    assert output(c) == reply_for("still works")
    assert fake.calls[-1].n_messages == 3


@pytest.mark.state_dir_only("damages a journal file")
@pytest.mark.allow_errors()
def test_corrupt_last_record_keeps_the_rest(mount, fake):
    c, d = mount.ctx("c"), mount.ctx("d")
    send(c, "first exchange\n")
    assert output(c) == reply_for("first exchange")
    send(c, "second exchange\n")
    assert output(c) == reply_for("second exchange")
    send(d, "other context\n")
    assert output(d) == reply_for("other context")
    assert mount.stop() == 0
    files = journal_files(mount.state, "second exchange")
    assert files, "no state file holds the message"
    for p in files:
        with open(p, "r+b") as f:
            data = bytearray(f.read())
            # a bit flipped inside the last record (the end of the second reply)
            data[len(data) - 6] ^= 0x20
            f.seek(0)
            f.write(data)
    mount.start()
    assert contexts(mount) == ["c", "d"]
    assert output(d) == reply_for("other context")
    # (a bad last record cannot be told from a torn write: either is reported)
    assert re.match(r"\d+ corrupt record\(s\) skipped, \d+ torn byte\(s\) truncated$",
                    status(c).get("journal_recovered", "")), status(c).text
    assert status(d).get("journal_recovered") is None, status(d).text
    hj = json.loads(read_file(c / "history.json"))
    texts = [content_text(m["content"]).strip() for m in hj["messages"]]
    assert texts[:2] == ["first exchange", reply_for("first exchange")]
    assert [m["role"] for m in hj["messages"]][:1] == ["user"]
    send(c, "third\n")
    assert output(c) == reply_for("third")
    assert fake.calls[-1].roles[0] == "user"


def daemon_rchar(mount):
    with open("/proc/%d/io" % mount.proc.pid) as f:
        return int(next(ln for ln in f if ln.startswith("rchar:")).split()[1])


@pytest.mark.state_dir_only("copies journal files")
@pytest.mark.mcpfs_timeout(240)
def test_contexts_load_lazily(mount, fake):
    """Listing (and stat of every context) reads no journal: 3,000 contexts of
    ~1 KB journals, and the daemon reads a small fraction of one per context."""
    c = mount.ctx("seed")
    send(c, "a journal to copy " + "x" * 600 + "\n")
    assert output(c).startswith("reply to:")
    assert mount.stop() == 0
    roots = [p.parent for p in mount.state.rglob("*") if p.is_file() and b"a journal to copy"
             in p.read_bytes()]
    assert len(roots) == 1, roots
    ctxdir = roots[0]
    journal_bytes = sum(p.stat().st_size for p in ctxdir.rglob("*") if p.is_file())
    assert journal_bytes > 600
    n = 3000
    for i in range(n):
        shutil.copytree(ctxdir, ctxdir.parent / ("%s-%04d" % (ctxdir.name, i)))
    mount.start()
    before = daemon_rchar(mount)
    names = os.listdir(mount.path)
    assert len([x for x in names if not x.startswith(".")]) == n + 1
    for x in names[:500]:
        os.stat(mount.path / x)
    read = daemon_rchar(mount) - before
    assert read < (n * journal_bytes) // 20, "listing read %d bytes of %d journals of %d bytes" \
        % (read, n, journal_bytes)
    # first use of one context loads it
    one = sorted(x for x in names if not x.startswith("."))[7]
    text = read_file(mount.path / one / "transcript")
    assert text.startswith("--- user (turn 1, ") and "a journal to copy xxx" in text


def synced_journals(log, after, before):
    """Journals fsynced (fsync/fdatasync returning 0) with entry times in [after, before)."""
    out = []
    for line in log.read_text().splitlines():
        m = re.search(r"^\d+ +(\d+\.\d+) f(?:data)?sync\(\d+<([^>]*)>\) = 0", line)
        if m and after <= float(m.group(1)) < before and m.group(2).endswith("/journal"):
            out.append(m.group(2))
    return out


def traced_mount(mount_factory, trace, calls):
    """A mount whose daemon runs under strace, logging these system calls (with
    file names and times) to trace; returns it and its plain argv."""
    if not shutil.which("strace"):
        pytest.fail("strace is not installed (packaging/test-deps.txt)")
    # LeakSanitizer cannot run under ptrace: no leak check in this one daemon.
    asan = os.environ.get("ASAN_OPTIONS", "")
    mt = mount_factory(start=False, env={"ASAN_OPTIONS": asan + ":detect_leaks=0"})
    plain = mt.argv
    mt.argv = lambda: ["strace", "-f", "-y", "-ttt", "-e", "trace=" + calls,
                       "-o", str(trace)] + plain()
    mt.start()
    return mt, plain


@pytest.mark.state_dir_only("traces the journal's fsyncs")
def test_every_commit_is_fsynced_before_it_is_acknowledged(mount_factory, fake, workdir):
    """CONTRACT §6: the journal is fsynced at each commit — a message before the
    writer's close() returns, a reply before its reader sees end-of-file, a
    setting before its close() returns — watched with strace."""
    trace = workdir / "fsync.trace"
    mt, _ = traced_mount(mount_factory, trace, "fsync,fdatasync")
    c = mt.ctx("c")
    journal = "/contexts/c/journal"
    fake.script("hold", hold_after=1)

    t0 = time.time()
    fd = os.open(c / "input", os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"commit me\n")
    os.close(fd)
    t1 = time.time()
    assert any(j.endswith(journal) for j in synced_journals(trace, t0, t1)), \
        "no journal fsync while the writer closed"
    call = fake.wait_held(0)
    reader = Reader(c / "output")
    wait_for(lambda: reader.data, 10, what="the first delta")
    t2 = time.time()
    fake.release()
    reader.finish(10)
    t3 = time.time()
    assert reader.error is None and reader.data == reply_for("commit me").encode()
    assert call.completed
    assert any(j.endswith(journal) for j in synced_journals(trace, t2, t3)), \
        "no journal fsync between the reply's end and its reader's end-of-file"

    t4 = time.time()
    write_file(c / "system", "Be brief.\n")
    t5 = time.time()
    assert any(j.endswith(journal) for j in synced_journals(trace, t4, t5)), \
        "no journal fsync while the setting was saved"
    assert mt.stop() == 0


@pytest.mark.state_dir_only("traces the journal's writeback")
def test_a_long_reply_is_written_back_while_it_streams(mount_factory, fake, workdir):
    """A reply's checkpoints are appended without fsync; every MiB the daemon
    starts their writeback (sync_file_range), so that the commit at the reply's
    end waits for the last MiB only — watched with strace.  The reply is whole,
    also after a remount."""
    trace = workdir / "wb.trace"
    mt, plain = traced_mount(mount_factory, trace, "sync_file_range,fdatasync")
    c = mt.ctx("c")
    size = 5 << 20
    fake.script("huge", huge=size, delta_size=4096)
    write_file(c / "input", "a long one\n")
    with open(c / "output", "rb") as f:
        got = f.read()
    assert len(got) == size
    calls = [ln for ln in trace.read_text().splitlines()
             if "sync_file_range(" in ln and "/contexts/c/journal>" in ln]
    assert 3 <= len(calls) <= 6, "\n".join(calls) or "no sync_file_range on the journal"
    assert all(ln.rstrip().endswith("= 0") and "SYNC_FILE_RANGE_WRITE" in ln for ln in calls)
    assert mt.stop() == 0
    mt.argv = plain
    mt.start()
    with open(c / "output", "rb") as f:
        assert f.read() == got
    assert mt.stop() == 0
