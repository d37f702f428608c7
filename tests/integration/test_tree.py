"""CONTRACT §2: the tree — names, modes, contexts made and removed with real
tools, name rules, what may be created, and the no-op metadata calls of §4."""

import errno
import json
import os
import re
import stat

import pytest

from mcpfs_testlib import (
    Reader, output, read_file, reply_for, run, send, sentinel_check, status, wait_for,
)

CTX_FILES = {"input", "output", "history", "history.json", "transcript", "system", "model",
             "config", "status", "usage", "ctl", "schema", "thinking", "transcript.json",
             "attach", "summary"}
READ_ONLY = ["output", "history", "history.json", "transcript", "status", "usage"]
READ_WRITE = ["input", "system", "model", "config", "schema", "summary"]


def contexts(mount):
    return sorted(n for n in os.listdir(mount.path) if not n.startswith("."))


def test_fresh_mount_has_root_files_and_no_contexts(mount):
    assert contexts(mount) == []
    for name in (".status", ".config", ".models", ".usage"):
        st = os.stat(mount.path / name)
        assert stat.S_ISREG(st.st_mode), name
        assert st.st_mode & stat.S_IRUSR
    assert read_file(mount.path / ".status").strip()
    assert os.stat(mount.path / ".config").st_mode & stat.S_IWUSR


def test_mkdir_creates_context_with_its_files(mount):
    c = mount.ctx("c")
    assert contexts(mount) == ["c"]
    assert stat.S_ISDIR(os.stat(c).st_mode)
    assert set(os.listdir(c)) == CTX_FILES
    for name in CTX_FILES:
        st = os.stat(c / name)
        assert (stat.S_ISDIR if name == "attach" else stat.S_ISREG)(st.st_mode), name
        assert st.st_uid == os.getuid(), name


def test_file_modes_match_the_tree(ctx):
    for name in READ_ONLY:
        mode = os.stat(ctx / name).st_mode
        assert mode & stat.S_IRUSR, name
        assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), name
        with pytest.raises(OSError):
            fd = os.open(ctx / name, os.O_WRONLY)
            os.close(fd)
            pytest.fail("%s opened for writing" % name)
    for name in READ_WRITE:
        mode = os.stat(ctx / name).st_mode
        assert mode & stat.S_IRUSR and mode & stat.S_IWUSR, name
        os.close(os.open(ctx / name, os.O_RDWR))
    assert os.stat(ctx / "ctl").st_mode & stat.S_IWUSR
    os.close(os.open(ctx / "ctl", os.O_WRONLY))


def test_new_context_is_idle_and_empty(ctx):
    assert status(ctx).state == "idle"
    assert read_file(ctx / "input") == ""
    assert read_file(ctx / "system") == ""
    hj = json.loads(read_file(ctx / "history.json"))
    assert hj["messages"] == []


def test_input_reads_empty_after_a_message(ctx, fake):
    send(ctx, "hello\n")
    assert output(ctx) == reply_for("hello")
    assert read_file(ctx / "input") == ""
    assert os.stat(ctx / "input").st_size == 0


@pytest.mark.parametrize("cmd", [["rmdir"], ["rm", "-r"], ["rm", "-rf"]],
                         ids=["rmdir", "rm-r", "rm-rf"])
def test_delete_context_with_tools(mount, fake, cmd):
    c = mount.ctx("c")
    send(c, "hello\n")
    assert output(c) == reply_for("hello")
    r = run(cmd + [str(c)])
    assert r.rc == 0, r
    assert r.err == ""
    assert contexts(mount) == []
    assert not os.path.exists(c)
    c = mount.ctx("c")  # the name is free again, and the context is new
    assert json.loads(read_file(c / "history.json"))["messages"] == []
    assert "hello" not in read_file(c / "transcript")


def test_rm_rf_of_fresh_context(mount):
    c = mount.ctx("fresh")
    r = run(["rm", "-rf", str(c)])
    assert r.rc == 0 and r.err == "", r
    assert contexts(mount) == []


def test_delete_cancels_call_in_flight(mount, fake):
    c = mount.ctx("c")
    fake.script("hold", hold_after=1)
    send(c, "hello\n")
    call = fake.wait_held(0)
    reader = Reader(c / "output")
    wait_for(lambda: reader.data == call.text_sent.encode(), 10, what="the first delta")
    r = run(["rm", "-rf", str(c)])
    assert r.rc == 0, r
    assert contexts(mount) == []
    fake.wait_until(lambda: call.closed_by_client, 10, "the daemon to drop the call")
    reader.finish(10)  # EOF or an error, but not blocked forever
    assert not call.completed


def test_mv_renames_context(mount, fake):
    a = mount.ctx("a")
    send(a, "hello\n")
    assert output(a) == reply_for("hello")
    r = run(["mv", str(a), str(mount.path / "b")])
    assert r.rc == 0 and r.err == "", r
    assert contexts(mount) == ["b"]
    b = mount.path / "b"
    assert output(b) == reply_for("hello")
    send(b, "again\n")
    assert output(b) == reply_for("again")
    assert [t.strip() for _, t in fake.calls[1].texts()] == ["hello", reply_for("hello"), "again"]


def test_rename_onto_existing_context_is_eexist(mount):
    a, b = mount.ctx("a"), mount.ctx("b")
    with pytest.raises(OSError) as ei:
        os.rename(a, b)
    assert ei.value.errno == errno.EEXIST
    assert contexts(mount) == ["a", "b"]


def test_rename_to_reserved_name_is_einval(mount):
    a = mount.ctx("a")
    with pytest.raises(OSError) as ei:
        os.rename(a, mount.path / ".a")
    assert ei.value.errno == errno.EINVAL
    assert contexts(mount) == ["a"]


@pytest.mark.parametrize("name,err", [
    (".hidden", errno.EINVAL),
    (".status2", errno.EINVAL),
    (b"bad\xff\xfeutf8", errno.EINVAL),
    ("a" * 256, errno.ENAMETOOLONG),
    ("é" * 128, errno.ENAMETOOLONG),
], ids=["leading-dot", "leading-dot-2", "invalid-utf8", "256-ascii", "256-bytes-utf8"])
def test_invalid_context_names(mount, name, err):
    path = os.path.join(os.fsencode(mount.path), name if isinstance(name, bytes)
                        else name.encode())
    with pytest.raises(OSError) as ei:
        os.mkdir(path)
    assert ei.value.errno == err
    assert contexts(mount) == []


@pytest.mark.parametrize("name", ["a" * 255, "é" * 127 + "a", "日本語 with spaces", "x"],
                         ids=["255-ascii", "255-bytes-utf8", "utf8-spaces", "one-byte"])
def test_valid_context_names(mount, fake, name):
    c = mount.ctx(name)
    assert contexts(mount) == [name]
    send(c, "hi\n")
    assert output(c) == reply_for("hi")


def test_mkdir_existing_name_is_eexist(mount):
    mount.ctx("c")
    with pytest.raises(OSError) as ei:
        os.mkdir(mount.path / "c")
    assert ei.value.errno == errno.EEXIST


def test_cannot_create_files_at_root(mount):
    for name in ("notes.txt", "input", "c"):
        with pytest.raises(OSError) as ei:
            open(mount.path / name, "w").close()
        assert ei.value.errno == errno.EACCES, name
    assert contexts(mount) == []
    r = run(["touch", str(mount.path / "newfile")])
    assert r.rc != 0


def test_cannot_create_files_in_context(ctx):
    for name in ("notes.txt", "output2", "input.bak"):
        with pytest.raises(OSError) as ei:
            open(ctx / name, "w").close()
        assert ei.value.errno == errno.EACCES, name
    with pytest.raises(OSError) as ei:
        os.mkdir(ctx / "sub")
    assert ei.value.errno in (errno.EACCES, errno.EPERM)
    assert set(os.listdir(ctx)) == CTX_FILES


def test_metadata_calls_are_noops(ctx, fake):
    before = {n: read_file(ctx / n) for n in ("system", "model", "config")}
    for name in READ_WRITE:
        os.chmod(ctx / name, 0o600)
        os.chown(ctx / name, os.getuid(), os.getgid())
        os.utime(ctx / name)
    for name in ("output", "history", "status"):
        os.utime(ctx / name)
    for argv in (["chmod", "644"], ["chown", "%d:%d" % (os.getuid(), os.getgid())], ["touch"]):
        r = run(argv + [str(ctx / "input"), str(ctx / "system"), str(ctx / "config")])
        assert r.rc == 0, r
    r = run(["touch", str(ctx / "output")])
    assert r.rc == 0, r
    assert {n: read_file(ctx / n) for n in before} == before
    assert set(os.listdir(ctx)) == CTX_FILES
    # fsync on input is accepted and the message is sent once, on close
    fd = os.open(ctx / "input", os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"fsync me\n")
    os.fsync(fd)
    os.close(fd)
    assert output(ctx) == reply_for("fsync me")
    sentinel_check(fake, ctx, ["fsync me"])


def test_xattrs_are_not_supported(mount, ctx):
    """CONTRACT §4: ENOTSUP for every extended-attribute call on every node but a
    context's directory, which takes user.* ones (§10, test_meta.py) and no others."""
    for name in ("security.test", "trusted.test"):
        with pytest.raises(OSError) as ei:
            os.getxattr(ctx, name)
        assert ei.value.errno == errno.ENOTSUP, (name, ei.value)
    for path in (ctx / "input", ctx / "output", mount.path / ".status", mount.path):
        for call in (lambda: os.getxattr(path, "user.test"),
                     lambda: os.setxattr(path, "user.test", b"x"),
                     lambda: os.removexattr(path, "user.test"),
                     lambda: os.listxattr(path)):
            with pytest.raises(OSError) as ei:
                call()
            assert ei.value.errno == errno.ENOTSUP, (path, ei.value)
    # and the tools that copy attributes take that as "none here"
    r = run(["cp", "-a", str(ctx / "status"), str(mount.path.parent / "status.copy")])
    assert r.rc == 0, r


def test_root_status_shows_daemon_facts(mount, fake):
    text = read_file(mount.path / ".status")
    assert re.search(r"version", text, re.I), text
    assert fake.base_url in text or "127.0.0.1:%d" % fake.port in text, text
    flight = [k for k in _kv(text) if "flight" in k.lower()]
    assert flight, "no 'calls in flight' line in .status:\n" + text
    c = mount.ctx("c")
    fake.script("hold", hold_after=0)
    send(c, "hello\n")
    fake.wait_held(0)
    wait_for(lambda: _kv(read_file(mount.path / ".status")).get(flight[0]) == "1", 5,
             what=".status to show 1 call in flight")
    fake.release()
    assert output(c) == reply_for("hello")
    wait_for(lambda: _kv(read_file(mount.path / ".status")).get(flight[0]) == "0", 5,
             what=".status to show 0 calls in flight")
    # the number of contexts follows mkdir and rmdir
    assert _kv(read_file(mount.path / ".status"))["contexts"] == "1"
    mount.ctx("d")
    assert _kv(read_file(mount.path / ".status"))["contexts"] == "2"
    os.rmdir(c.parent / "d")
    assert _kv(read_file(mount.path / ".status"))["contexts"] == "1"


def _kv(text):
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


def test_stat_reports_current_output_size(ctx, fake):
    fake.script("hold", hold_after=[2], pieces=["alpha ", "beta ", "gamma ", "delta"])
    send(ctx, "hello\n")
    call = fake.wait_held(0)
    assert call.text_sent == "alpha beta "
    wait_for(lambda: os.stat(ctx / "output").st_size == len("alpha beta "), 5,
             what="st_size of the partial reply")
    fake.release()
    wait_for(lambda: os.stat(ctx / "output").st_size == len("alpha beta gamma delta"), 5,
             what="st_size of the whole reply")
    assert output(ctx) == "alpha beta gamma delta"


def as_nobody(*argv):
    return run(["runuser", "-u", "nobody", "--"] + list(argv))


@pytest.mark.parametrize("allow_other", [False, True], ids=["private", "allow_other"])
def test_mount_is_private_unless_allow_other(mount_factory, fake, allow_other):
    """CONTRACT §2: only the mounting user sees the mount, unless -o allow_other."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a command as another user")
    mt = mount_factory(args=["-o", "allow_other"] if allow_other else [])
    c = mt.ctx("c")
    send(c, "mine\n")
    assert output(c) == reply_for("mine")
    os.chmod(mt.path.parent, 0o755)  # the way to the mount point is open to all
    r = as_nobody("cat", str(c / "output"))
    if allow_other:
        assert r.rc == 0 and r.out == reply_for("mine"), r
    else:
        assert r.rc != 0 and "Permission denied" in r.err, r
        assert as_nobody("ls", str(mt.path)).rc != 0
        assert as_nobody("mkdir", str(mt.path / "theirs")).rc != 0
        assert sorted(os.listdir(mt.path)) == [".config", ".models", ".status", ".usage", "c"]


def open_files_limit(pid):
    """(soft, hard) of the process's limit of open files."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no 'Max open files' in /proc/%d/limits" % pid)


def test_more_contexts_than_the_soft_limit_of_open_files(mount_factory, fake, workdir):
    """Each loaded context keeps its journal open: started with a soft limit of
    64 descriptors, the daemon takes its hard limit, and 150 contexts all work,
    also after a remount that loads them again."""
    wrapper = workdir / "mcpfs-nofile-64"
    mt = mount_factory(start=False)
    wrapper.write_text("#!/bin/sh\nexec prlimit --nofile=64: -- '%s' \"$@\"\n" % mt.bin)
    wrapper.chmod(0o755)
    mt.bin = str(wrapper)
    mt.start()
    soft, hard = open_files_limit(mt.proc.pid)
    assert hard > 256 and soft == hard, (soft, hard)
    names = ["n%03d" % i for i in range(150)]
    for n in names:
        os.mkdir(mt.path / n)
    for n in names[::30] + names[-1:]:
        send(mt.path / n, "hello %s\n" % n)
        assert output(mt.path / n) == reply_for("hello %s" % n)
    mt.remount()
    assert contexts(mt) == names
    for n in names:  # every journal loaded again
        assert status(mt.path / n).state == "idle", n
    assert output(mt.path / names[-1]) == reply_for("hello %s" % names[-1])
