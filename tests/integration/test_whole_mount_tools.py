"""CONTRACT §2, §4: `ctl` is readable (it lists its commands), and with no call in
flight rsync -a, tar c, cp -r, grep -r and find over the whole mount exit 0."""

import errno
import os
import re
import tarfile

import pytest

from mcpfs_testlib import output, read_file, reply_for, run, send, wait_status, write_file

CTX_FILES = {"input", "output", "history", "history.json", "transcript", "system", "model",
             "config", "status", "usage", "ctl", "schema", "thinking", "transcript.json",
             "summary"}


def ctl_commands(ctx):
    text = read_file(ctx / "ctl")
    lines = text.splitlines()
    assert lines and text.endswith("\n"), text
    cmds = []
    for line in lines:
        m = re.match(r"^([a-z]+)\t(\S.*)$", line)
        assert m, "not 'command<TAB>description': %r" % line
        cmds.append(m.group(1))
    return cmds


def test_ctl_lists_its_commands_and_each_is_accepted(ctx, fake):
    st = os.stat(ctx / "ctl")
    assert st.st_mode & 0o600 == 0o600
    text = read_file(ctx / "ctl")
    assert st.st_size == len(text.encode())
    cmds = ctl_commands(ctx)
    assert {"cancel", "retry", "clear"} <= set(cmds), cmds
    with pytest.raises(OSError) as ei:  # so that "accepted" below means something
        write_file(ctx / "ctl", "no-such-command\n")
    assert ei.value.errno == errno.EINVAL
    # each listed command is accepted where it applies: after a complete
    # exchange and a failed turn
    for i, cmd in enumerate(cmds):
        send(ctx, "ok %d\n" % i)
        assert output(ctx) == reply_for("ok %d" % i)
        fake.script("status", status=400, error_message="bad thing")
        send(ctx, "fails %d\n" % i)
        wait_status(ctx, "error")
        # fork takes the new context's name (CONTRACT §10)
        write_file(ctx / "ctl", cmd + (" copy%d" % i if cmd == "fork" else "") + "\n")
        if cmd == "retry":
            assert output(ctx) == reply_for("fails %d" % i)
        # cancel, compact and fork leave the failed turn as it is
        wait_status(ctx, "error" if cmd in ("cancel", "compact", "fork") else "idle")
    # reading it changed nothing, and it still reads the same
    assert read_file(ctx / "ctl") == text


@pytest.fixture
def populated(mount, fake):
    """A mount with a context that had exchanges and settings, and a fresh one
    with a temporary file and a vim swap file (hidden: not copied)."""
    a = mount.ctx("alpha")
    write_file(a / "system", "You are terse.")
    write_file(a / "model", "claude-haiku-4-5\n")
    send(a, "first question\n")
    assert output(a) == reply_for("first question")
    send(a, "second question\n")
    assert output(a) == reply_for("second question")
    b = mount.ctx("beta")
    for name in ("tmpabc123", ".input.swp"):
        fd = os.open(b / name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"hidden")
        os.close(fd)
    for c in (a, mount.path / "beta"):
        wait_status(c, "idle")
    return mount


def expected_tree(mount):
    """Every file of the mount and its content, read directly."""
    want = {".status": read_file(mount.path / ".status", binary=True),
            ".config": read_file(mount.path / ".config", binary=True),
            ".models": read_file(mount.path / ".models", binary=True),
            ".usage": read_file(mount.path / ".usage", binary=True)}
    for c in ("alpha", "beta"):
        for f in CTX_FILES:
            want["%s/%s" % (c, f)] = read_file(mount.path / c / f, binary=True)
    return want


def check_sizes(mount, want):
    for rel, data in want.items():
        assert os.stat(mount.path / rel).st_size == len(data), rel


def copied_tree(root):
    got = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                got[os.path.relpath(p, root)] = fh.read()
    return got


def assert_same_tree(got, want):
    assert set(got) == set(want), sorted(set(got) ^ set(want))
    for k in want:
        assert got[k] == want[k], k


def test_rsync_copies_the_whole_mount(populated, workdir):
    dest = workdir / "rsync-copy"
    r = run(["rsync", "-a", str(populated.path) + "/", str(dest) + "/"], timeout=60)
    assert r.rc == 0 and r.err == "", r
    want = expected_tree(populated)
    check_sizes(populated, want)
    assert_same_tree(copied_tree(dest), want)
    assert "reply to: second question" in want["alpha/output"].decode()


def test_tar_archives_the_whole_mount(populated, workdir):
    archive = workdir / "mount.tar"
    r = run(["tar", "cf", str(archive), "-C", str(populated.path), "."], timeout=60)
    assert r.rc == 0, r
    assert r.err == "", r  # no "file changed as we read it", no "shrank"
    want = expected_tree(populated)
    with tarfile.open(archive) as t:
        got = {os.path.normpath(m.name): t.extractfile(m).read()
               for m in t.getmembers() if m.isfile()}
    assert_same_tree(got, want)


def test_cp_r_copies_the_whole_mount(populated, workdir):
    dest = workdir / "cp-copy"
    r = run(["cp", "-r", str(populated.path), str(dest)], timeout=60)
    assert r.rc == 0 and r.err == "", r
    want = expected_tree(populated)
    assert_same_tree(copied_tree(dest), want)


def test_grep_r_searches_the_whole_mount(populated):
    r = run(["grep", "-r", "second question", str(populated.path)], timeout=60)
    assert r.rc == 0 and r.err == "", r
    hits = {os.path.relpath(line.split(":", 1)[0], populated.path)
            for line in r.out.splitlines()}
    assert {"alpha/output", "alpha/transcript", "alpha/history"} <= hits, hits
    r = run(["grep", "-rl", "cancel", str(populated.path)], timeout=60)
    assert r.rc == 0, r
    assert {"alpha/ctl", "beta/ctl"} <= {os.path.relpath(p, populated.path)
                                         for p in r.out.splitlines()}


def test_find_lists_the_whole_mount(populated):
    r = run(["find", str(populated.path), "-type", "f", "-size", "-100M"], timeout=60)
    assert r.rc == 0 and r.err == "", r
    got = {os.path.relpath(p, populated.path) for p in r.out.splitlines()}
    assert got == set(expected_tree(populated)), got
    r = run(["find", str(populated.path), "-readable", "-type", "f", "-exec", "cat", "{}", "+"],
            timeout=60)
    assert r.rc == 0 and r.err == "", r
