"""Two daemons, two mounts, one PostgreSQL (CONTRACT §12, issue 16;
doc/design/shared-store.md §3): what one daemon does to a context the other
shows without a remount — names (mkdir, mv, rmdir), settings (model, system,
config), a reply streamed on A read live on B by `cat` and `tail -f`, the
history after it — and a third daemon, `--no-mount` with the HTTP shim, serving
the same contexts.  Each waits with a generous deadline: how fast the feed is
(the 1 s goal) is bench/run's to measure, not a test's."""

import os

import pytest

from http_support import NoMount
from mcpfs_testlib import (
    PipeReader, Reader, read_file, reply_for, send, status, wait_for, write_file,
)

DEADLINE = 5.0


def names(m):
    return sorted(n for n in os.listdir(m.path) if not n.startswith("."))


def eventually(what, pred):
    return wait_for(pred, DEADLINE, interval=0.05, what=what)


def shows(path, text):
    """path's content becomes text (read again until then)."""
    def ok():
        try:
            return read_file(path) == text
        except OSError:
            return False
    return eventually("%s to read %r" % (path, text), ok)


def test_names_made_on_a_are_seen_on_b(two):
    a, b = two
    os.mkdir(a.path / "alpha")
    eventually("alpha listed on B", lambda: names(b) == ["alpha"])
    assert read_file(b.path / "alpha" / "output") == ""
    os.rename(a.path / "alpha", a.path / "beta")
    eventually("beta in place of alpha on B", lambda: names(b) == ["beta"])
    # The kernel keeps a looked-up name 1 s (fs_dir.c's ENTRY_TIMEOUT).
    eventually("alpha gone on B", lambda: not os.path.exists(b.path / "alpha"))
    assert read_file(b.path / "beta" / "output") == ""
    os.mkdir(b.path / "gamma")
    eventually("gamma listed on A", lambda: names(a) == ["beta", "gamma"])
    os.rmdir(a.path / "beta")
    eventually("beta gone from B", lambda: names(b) == ["gamma"])
    eventually("beta gone on B", lambda: not os.path.exists(b.path / "beta"))


def test_settings_made_on_a_are_seen_on_b(two, fake):
    a, b = two
    ca = a.path / "s"
    os.mkdir(ca)
    eventually("s listed on B", lambda: names(b) == ["s"])
    cb = b.path / "s"
    model = read_file(cb / "model")  # loaded on B before A changes it
    write_file(ca / "system", "You are terse.\n")
    shows(cb / "system", "You are terse.\n")
    write_file(ca / "model", "claude-opus-4-1\n")
    shows(cb / "model", "claude-opus-4-1\n")
    assert model != "claude-opus-4-1\n"
    write_file(ca / "config", "temperature = 0.25\n")
    eventually("temperature on B", lambda: "temperature = 0.25" in read_file(cb / "config"))


def test_a_reply_streamed_on_a_is_read_live_on_b(two, fake):
    """B's `cat output` and `tail -f output` get the reply's first bytes while
    A's call is still held, then the whole reply; B's history is A's."""
    a, b = two
    ca = a.path / "live"
    os.mkdir(ca)
    eventually("live listed on B", lambda: names(b) == ["live"])
    cb = b.path / "live"
    read_file(cb / "history")  # B has it loaded: what follows is applied live
    fake.script("hold", hold_after=[2], pieces=["alpha\n", "beta\n", "gamma\n", "delta\n"])
    send(ca, "hello\n")
    call = fake.wait_held(0)
    cat = Reader(cb / "output")  # nothing reads on A: its checkpoints feed B
    tail = PipeReader(b.spawn(["tail", "-f", str(cb / "output")]).stdout)
    eventually("B's cat to get the first bytes", lambda: cat.data == b"alpha\nbeta\n")
    tail.wait_text("alpha\nbeta\n", DEADLINE)
    assert call.held and not call.completed and not cat.done
    assert status(cb).state == status(ca).state == "streaming"  # A's turn, streaming on B
    fake.release()
    cat.finish(DEADLINE)
    assert cat.error is None and cat.text == "alpha\nbeta\ngamma\ndelta\n"
    tail.wait_text("alpha\nbeta\ngamma\ndelta\n", DEADLINE)
    assert read_file(ca / "output") == cat.text
    history = read_file(ca / "history")
    assert "alpha\nbeta\ngamma\ndelta" in history
    shows(cb / "history", history)
    assert read_file(cb / "output") == cat.text


def test_a_turn_on_b_after_a_turn_on_a(two, fake):
    """B answers its own message with A's exchange in the history it sends."""
    a, b = two
    ca = a.path / "both"
    os.mkdir(ca)
    send(ca, "first\n")
    assert read_file(ca / "output") == reply_for("first")
    cb = b.path / "both"
    eventually("both listed on B", lambda: names(b) == ["both"])
    shows(cb / "output", reply_for("first"))
    send(cb, "second\n")
    assert read_file(cb / "output") == reply_for("second")
    assert fake.calls[-1].roles == ["user", "assistant", "user"]
    shows(ca / "output", reply_for("second"))
    assert read_file(ca / "history") == read_file(cb / "history")


def test_the_shim_of_a_third_daemon_serves_the_same_context(two, pg, mcpfs_bin, fake,
                                                             workdir):
    a, b = two
    ca = a.path / "web"
    os.mkdir(ca)
    send(ca, "over http\n")
    assert read_file(ca / "output") == reply_for("over http")
    nm = NoMount(mcpfs_bin, fake, workdir, args=["--store=" + pg.url])
    try:
        ctx = nm.api.request("GET", "/v1/contexts/web")
        assert ctx.status == 200, ctx.body
        assert ctx.json()["name"] == "web"
        hist = nm.api.request("GET", "/v1/contexts/web/history")
        assert hist.status == 200, hist.body
        assert reply_for("over http") in hist.body.decode()
        send(ca, "again\n")
        assert read_file(ca / "output") == reply_for("again")

        def has_again():
            h = nm.api.request("GET", "/v1/contexts/web/history")
            return h.status == 200 and reply_for("again") in h.body.decode()
        eventually("the shim's history to show the second turn", has_again)
    finally:
        assert nm.stop() == 0, nm.log_text()  # SIGTERM: exit 0


def daemon_pids(mountpoint):
    """Processes whose command line names mountpoint (the daemon, once in the
    background)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if str(mountpoint).encode() in argv and any(a.endswith(b"mcpfs") for a in argv):
            pids.append(int(entry))
    return pids


def test_a_daemon_in_the_background_follows_the_others_and_stops_cleanly(
        pg, mount_factory, mcpfs_bin, fake, workdir):
    """Without -f the daemon forks into the background, which keeps only the
    calling thread: the listener, the feed and the lease threads start after
    that (store_start), so the background daemon still sees B's changes and
    B sees its own, and it stops cleanly at the unmount (its log says so)."""
    from mcpfs_testlib import daemon_env, is_mounted, run
    mnt = workdir / "bg"
    mnt.mkdir()
    log = workdir / "bg.log"
    env = daemon_env(workdir / "home", fake.base_url)
    r = run([str(mcpfs_bin), "--store=" + pg.url, "--log-file=" + str(log), str(mnt)],
            env=env)
    assert r.rc == 0, r.err
    try:
        wait_for(lambda: is_mounted(mnt), 10.0, what="the background mount")
        b = mount_factory(name="b", args=["--store=" + pg.url], state_dir=True)
        os.mkdir(b.path / "made-on-b")
        eventually("B's context listed in the background daemon",
                   lambda: sorted(n for n in os.listdir(mnt) if not n.startswith("."))
                   == ["made-on-b"])
        os.mkdir(mnt / "made-in-bg")
        eventually("the background daemon's context listed on B",
                   lambda: names(b) == ["made-in-bg", "made-on-b"])
        send(b.path / "made-on-b", "hello\n")
        shows(mnt / "made-on-b" / "output", reply_for("hello"))
    finally:
        pids = daemon_pids(mnt)
        run(["fusermount3", "-u", str(mnt)])
        wait_for(lambda: not any(os.path.exists("/proc/%d" % p) for p in pids), 15.0,
                 what="the background daemon to exit")
    text = log.read_text()
    assert text.splitlines()[-1].endswith("unmounted"), text[-2000:]
