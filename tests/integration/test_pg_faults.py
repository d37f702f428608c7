"""The database going away under a --store daemon (CONTRACT §12, issue 16 "Faults";
doc/design/shared-store.md §5): `pg_ctl stop` and `pg_ctl restart` (fast, and
immediate: a crash) while a reply streams.  The reply still completes on the mount,
`status` and `.status` say `store: unreachable`, writes fail with EIO at once,
reads of what is loaded keep working; once the server is back the daemon
reconnects by itself, writes the reply's records (parts, then its end), and the
next message works.  Nothing committed is lost, nothing is written twice."""

import os
import signal
import subprocess
import time

import pytest

from mcpfs_testlib import output, read_file, reply_for, send, wait_for
from pg_support import PgServer, require_pg

PIECES = ["one ", "two ", "three"]
WHOLE = "".join(PIECES)
REPLY_END = 5  # enum journal_record_type (record_type.h)
REPLY_PART = 4


def store_line(path):
    for line in read_file(path).splitlines():
        if line.startswith("store: "):
            return line[len("store: "):]
    return None


def records(pg, name, type_):
    return int(pg.psql("SELECT count(*) FROM mcpfs.records r JOIN mcpfs.contexts c"
                       " ON c.id = r.context_id WHERE c.name = '%s' AND r.type = %d"
                       % (name, type_)).strip())


def start_held_reply(fake, ctx, text):
    """A reply that stops after its first delta until fake.release()."""
    fake.script("normal", pieces=PIECES, hold_after=[1])
    send(ctx, text)
    fake.wait_held(0)
    # the first delta is read (so checkpointed) and flushed by the server's WAL
    # writer (a checkpoint is a commit without a flush wait; shared-store.md §2)
    wait_for(lambda: read_file_nonblock(ctx / "output") == PIECES[0], 10,
             what="the first delta on the mount")
    time.sleep(0.5)


def read_file_nonblock(path):
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return os.read(fd, 65536).decode()
    except BlockingIOError:
        return ""
    finally:
        os.close(fd)


def timed_bash(cmd):
    t0 = time.monotonic()
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)
    return r, time.monotonic() - t0


def check_back(pg, mount_factory, a, ctx, name):
    """After the server is back: store: ok, the reply's records written once,
    a second daemon reads the whole reply, the next message works."""
    wait_for(lambda: store_line(ctx / "status") == "ok", 20, what="store: ok")
    wait_for(lambda: records(pg, name, REPLY_END) == 1, 20, what="the reply's end in the database")
    assert store_line(a.path / ".status") == "ok"
    st = read_file(ctx / "status")
    assert "journal_error" not in st, st
    b = mount_factory(name="b", args=["--store=" + pg.url], state_dir=True)
    hist = read_file(b.path / name / "history")
    assert hist.count(WHOLE) == 1, hist
    assert read_file(b.path / name / "output") == WHOLE
    b.stop()
    send(ctx, "next\n")
    assert output(ctx) == reply_for("next")
    assert records(pg, name, REPLY_END) == 2


def test_stop_mid_stream_reply_completes_writes_fail_eio_then_reconnects(
        mount_factory, fake):
    require_pg()
    with PgServer() as pg:
        a = mount_factory(args=["--store=" + pg.url], state_dir=True,
                          allow_errors=[r"store|unreachable|Input/output"])
        ctx = a.ctx("away")
        assert store_line(ctx / "status") == "ok"
        assert store_line(a.path / ".status") == "ok"
        start_held_reply(fake, ctx, "go\n")
        pg.stop("fast")
        fake.release()
        # the call goes on locally: the whole reply on the mount
        assert output(ctx) == WHOLE
        wait_for(lambda: (store_line(ctx / "status") or "").startswith("unreachable: "), 10,
                 what="store: unreachable")
        line = store_line(a.path / ".status")
        assert line.startswith("unreachable: "), line
        print("status while away: store: %s" % line)
        # writes fail with EIO at once, with the reason in status
        r, took = timed_bash("echo hi > %s/input" % ctx)
        print("echo > input while away: %.3f s, %s" % (took, r.stderr.strip()))
        assert r.returncode != 0 and "Input/output error" in r.stderr, r
        assert "last_refused" in read_file(ctx / "status")
        r, took = timed_bash("mkdir %s/newer" % a.path)
        print("mkdir while away: %.3f s, %s" % (took, r.stderr.strip()))
        assert r.returncode != 0 and "Input/output error" in r.stderr, r
        # reads of what is loaded keep working
        r = subprocess.run(["cat", str(ctx / "history")], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0 and WHOLE in r.stdout, r
        pg.start()
        check_back(pg, mount_factory, a, ctx, "away")
        a.stop()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_restart_mid_stream_loses_nothing(mount_factory, fake, mode):
    require_pg()
    with PgServer() as pg:
        a = mount_factory(args=["--store=" + pg.url], state_dir=True,
                          allow_errors=[r"store|unreachable|Input/output"])
        ctx = a.ctx("r")
        start_held_reply(fake, ctx, "go\n")
        pg.restart(mode)
        fake.release()
        assert output(ctx) == WHOLE
        check_back(pg, mount_factory, a, ctx, "r")
        a.stop()


def test_unsaved_reply_past_8_mib_fails_the_turn_honestly(mount_factory, fake):
    """While the database is away a call keeps at most 8 MiB of unsaved reply
    (STORE_UNSAVED_MAX): a longer one is cut there and fails with
    store_unreachable; what it streamed is written once the server is back."""
    require_pg()
    with PgServer() as pg:
        a = mount_factory(args=["--store=" + pg.url], state_dir=True,
                          allow_errors=[r"store|unreachable|Input/output"])
        ctx = a.ctx("big")
        fake.script("normal", huge=12 << 20, hold_after=[1])
        send(ctx, "long\n")
        fake.wait_held(0)
        pg.stop("fast")
        fake.release()
        wait_for(lambda: "store_unreachable" in read_file(ctx / "status"), 60,
                 what="the turn failed: store_unreachable")
        st = read_file(ctx / "status")
        assert st.splitlines()[0] == "error", st
        assert "8388608 bytes of the reply" in st, st
        r = subprocess.run(["cat", str(ctx / "output")], capture_output=True, timeout=60)
        assert r.returncode != 0 and b"Input/output error" in r.stderr, r.stderr
        kept = len(r.stdout)
        print("reply kept in memory when the turn failed: %d bytes" % kept)
        assert (8 << 20) < kept <= (8 << 20) + 64 * 1024  # one delta past the bound
        pg.start()
        wait_for(lambda: records(pg, "big", REPLY_END) == 1, 30,
                 what="the failed reply's end in the database")
        saved = int(pg.psql("SELECT sum(length(payload)) FROM mcpfs.records r JOIN"
                            " mcpfs.contexts c ON c.id = r.context_id WHERE c.name = 'big'"
                            " AND r.type = %d" % REPLY_PART).strip())
        assert saved >= kept, (saved, kept)
        a.stop()


def server_pids(pg):
    """The server's processes: the postmaster and its children."""
    top = int((pg.data / "postmaster.pid").read_text().split()[0])
    pids = [top]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open("/proc/%s/stat" % d).read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == top:
                pids.append(int(d))
    return pids


def test_frozen_server_bounds_the_wait_then_goes_on(mount_factory, fake):
    """A server that answers nothing (SIGSTOP: a frozen host, a cut network):
    a write waits at most PG_REPLY_TIMEOUT_MS (5 s) and fails with EIO, the
    next ones at once; reads keep working; status says why; after SIGCONT the
    daemon reconnects and the next message works."""
    require_pg()
    with PgServer() as pg:
        a = mount_factory(args=["--store=" + pg.url], state_dir=True,
                          allow_errors=[r"store|unreachable|Input/output"])
        ctx = a.ctx("frozen")
        send(ctx, "before\n")
        assert output(ctx) == reply_for("before")
        pids = server_pids(pg)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            r, took = timed_bash("mkdir %s/during" % a.path)
            print("mkdir on a frozen server: %.3f s, %s" % (took, r.stderr.strip()))
            assert r.returncode != 0 and "Input/output error" in r.stderr, r
            line = store_line(ctx / "status")
            assert line.startswith("unreachable: ") and "no answer" in line, line
            r, took = timed_bash("echo hi > %s/input" % ctx)
            print("echo > input right after: %.3f s, %s" % (took, r.stderr.strip()))
            assert r.returncode != 0 and "Input/output error" in r.stderr, r
            assert reply_for("before") in read_file(ctx / "history")
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)

        def sent():
            r = subprocess.run(["bash", "-c", "echo after > %s/input" % ctx],
                               capture_output=True, timeout=60)
            return r.returncode == 0
        wait_for(sent, 30, interval=0.5, what="a message accepted once the server runs")
        assert output(ctx) == reply_for("after")
        assert store_line(ctx / "status") == "ok"
        a.stop()
