"""CONTRACT §2, §4: tools that save by writing a temporary file beside the target
and renaming it over the target (sed -i, perl -i, Python's tempfile +
os.replace); every other rename of a context's file fails with EACCES; the
temporary files are hidden and bounded."""

import errno
import os
import re
import subprocess
import sys
import tempfile

import pytest

from mcpfs_testlib import (
    output, read_file, reply_for, run, send, sentinel_check, which_or_fail, write_file,
)

CTX_FILES = {"input", "output", "history", "history.json", "transcript", "system", "model",
             "config", "status", "usage", "ctl", "schema", "thinking", "transcript.json",
             "attach", "summary"}

# fs_impl.h
DIR_MAX_FILES = 16
MAX_FILES = 64
MAX_BYTES = 16 << 20
TOTAL_BYTES = 64 << 20


def config_value(ctx, key):
    m = re.search(r"(?m)^%s = (.*)$" % re.escape(key), read_file(ctx / "config"))
    return m and m.group(1)


def replace_with_temp(ctx, target, data):
    """Python's atomic write: NamedTemporaryFile beside the target, os.replace."""
    with tempfile.NamedTemporaryFile(dir=ctx, delete=False) as t:
        t.write(data)
    assert os.path.basename(t.name).startswith("tmp")
    os.replace(t.name, ctx / target)
    return t.name


def create_temp(ctx, name):
    """Creates ctx/name the way mkstemp(3) does; returns the descriptor."""
    return os.open(ctx / name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)


def test_sed_i_edits_config_and_system(ctx, fake):
    assert config_value(ctx, "max_tokens") != "77"
    r = run(["sed", "-i", "s/^max_tokens = .*/max_tokens = 77/", str(ctx / "config")])
    assert r.rc == 0 and r.err == "", r
    assert config_value(ctx, "max_tokens") == "77"
    write_file(ctx / "system", "You are terse.")
    r = run(["sed", "-i", "s/terse/kind/", str(ctx / "system")])
    assert r.rc == 0 and r.err == "", r
    assert read_file(ctx / "system") == "You are kind."
    assert set(os.listdir(ctx)) == CTX_FILES  # sed's temporary file is gone
    send(ctx, "hello\n")
    assert output(ctx) == reply_for("hello")
    assert fake.calls[0].max_tokens == 77
    assert fake.calls[0].system == "You are kind."


def test_perl_i_edits_system_and_model(ctx, fake):
    write_file(ctx / "system", "You are terse.")
    r = run(["perl", "-i", "-pe", "s/terse/brief/", str(ctx / "system")])
    assert r.rc == 0 and r.err == "", r
    assert read_file(ctx / "system") == "You are brief."
    r = run(["perl", "-i", "-pe", "s/.*/claude-haiku-4-5/", str(ctx / "model")])
    assert r.rc == 0 and r.err == "", r
    assert read_file(ctx / "model") == "claude-haiku-4-5\n"
    assert set(os.listdir(ctx)) == CTX_FILES
    send(ctx, "hello\n")
    assert output(ctx) == reply_for("hello")
    assert fake.calls[0].system == "You are brief."
    assert fake.calls[0].model == "claude-haiku-4-5"


def test_python_tempfile_replace_onto_config(ctx, fake):
    text = read_file(ctx / "config").replace("max_tokens = 4096", "max_tokens = 55")
    assert "max_tokens = 55" in text
    replace_with_temp(ctx, "config", text.encode())
    assert config_value(ctx, "max_tokens") == "55"
    assert set(os.listdir(ctx)) == CTX_FILES
    send(ctx, "hi\n")
    assert output(ctx) == reply_for("hi")
    assert fake.calls[0].max_tokens == 55


def test_python_tempfile_replace_onto_input_sends_one_message(ctx, fake):
    replace_with_temp(ctx, "input", b"hello by rename\n")
    assert output(ctx) == reply_for("hello by rename")
    # renamed while still open (os.replace inside the with block): one message too
    with tempfile.NamedTemporaryFile(dir=ctx, delete=False) as t:
        t.write(b"second by rename\n")
        t.flush()
        os.replace(t.name, ctx / "input")
        assert output(ctx) == reply_for("second by rename")
    assert read_file(ctx / "input") == ""
    assert set(os.listdir(ctx)) == CTX_FILES
    sentinel_check(fake, ctx, ["hello by rename", "second by rename"])


def test_emacs_atomic_save_of_config_and_input(ctx, fake, tool_env):
    """Emacs with file-precious-flag saves into tmpXXXXXX and renames it over
    the file: an editor's atomic save."""
    which_or_fail("emacs")
    for name, text in (("config", "max_tokens = 66"), ("input", "precious hello")):
        r = run(["emacs", "-Q", "--batch", "--eval",
                 '(progn (setq file-precious-flag t) (find-file "%s") (erase-buffer)'
                 ' (insert "%s") (save-buffer))' % (name, text)],
                cwd=str(ctx), env=tool_env, timeout=30)
        assert r.rc == 0 and "rror" not in r.err, r
    assert config_value(ctx, "max_tokens") == "66"
    assert output(ctx) == reply_for("precious hello")
    assert set(os.listdir(ctx)) == CTX_FILES
    sentinel_check(fake, ctx, ["precious hello"])
    assert fake.calls[0].max_tokens == 66


def test_invalid_content_fails_the_rename_and_changes_nothing(ctx, fake):
    before = read_file(ctx / "config")
    r = run(["sed", "-i", "s/^max_tokens = .*/max_tokens = lots/", str(ctx / "config")])
    assert r.rc != 0, r
    assert "Invalid argument" in r.err, r
    assert read_file(ctx / "config") == before
    # the same through os.replace: EINVAL, and the temporary file is still there
    for target, data in (("config", b"max_tokens = lots\n"), ("model", b"\n"),
                         ("input", b"caf\xc3(\n"), ("system", b"bad \xff utf-8")):
        old = read_file(ctx / target)
        with tempfile.NamedTemporaryFile(dir=ctx, delete=False) as t:
            t.write(data)
        with pytest.raises(OSError) as ei:
            os.replace(t.name, ctx / target)
        assert ei.value.errno == errno.EINVAL, (target, ei.value)
        assert read_file(ctx / target) == old, target
        with open(t.name, "rb") as f:
            assert f.read() == data
        os.unlink(t.name)
    assert set(os.listdir(ctx)) == CTX_FILES
    sentinel_check(fake, ctx, [])  # nothing was sent


def test_other_renames_fail_with_eacces(ctx, fake):
    r = run(["mv", str(ctx / "input"), str(ctx / "input2")])
    assert r.rc != 0 and "Permission denied" in r.err, r
    write_file(ctx / "system", "keep me")
    cases = [("input", "input2"), ("system", "config"), ("config", "system"),
             ("output", "output2"), ("history", "input"), ("ctl", "ctl2"), ("model", "x")]
    fd = create_temp(ctx, "tmp-other")
    os.close(fd)
    cases += [("tmp-other", "tmp-other2"), ("tmp-other", "output"), ("tmp-other", "status")]
    for old, new in cases:
        with pytest.raises(OSError) as ei:
            os.rename(ctx / old, ctx / new)
        assert ei.value.errno == errno.EACCES, (old, new, ei.value)
    os.unlink(ctx / "tmp-other")
    assert set(os.listdir(ctx)) == CTX_FILES
    assert read_file(ctx / "system") == "keep me"
    send(ctx, "still works\n")
    assert output(ctx) == reply_for("still works")
    sentinel_check(fake, ctx, ["still works"])


def test_only_exclusive_creates_make_temporary_files(ctx):
    # touch and `>` create without O_EXCL: refused as before (CONTRACT §2)
    for argv in (["touch", str(ctx / "notes")], ["sh", "-c", "echo x > '%s/notes'" % ctx]):
        r = run(argv)
        assert r.rc != 0 and "Permission denied" in r.err, r
    # vim's probe file stays refused, so vim keeps writing in place
    with pytest.raises(OSError) as ei:
        create_temp(ctx, "4913")
    assert ei.value.errno == errno.EACCES
    fd = create_temp(ctx, "sedAbc123")
    os.write(fd, b"scratch")
    os.close(fd)
    assert read_file(ctx / "sedAbc123") == "scratch"
    assert set(os.listdir(ctx)) == CTX_FILES  # hidden
    with pytest.raises(OSError) as ei:
        create_temp(ctx, "sedAbc123")
    assert ei.value.errno == errno.EEXIST
    os.unlink(ctx / "sedAbc123")
    assert not os.path.exists(ctx / "sedAbc123")


def test_temporary_file_count_limits(mount):
    ctxs = [mount.ctx("l%d" % i) for i in range(MAX_FILES // DIR_MAX_FILES + 1)]
    fds = []
    try:
        for c in ctxs[:-1]:
            for i in range(DIR_MAX_FILES):
                fds.append(create_temp(c, "tmp%02d" % i))
            with pytest.raises(OSError) as ei:  # per directory
                create_temp(c, "tmp-over")
            assert ei.value.errno == errno.ENOSPC
        with pytest.raises(OSError) as ei:  # in the whole mount
            create_temp(ctxs[-1], "tmp00")
        assert ei.value.errno == errno.ENOSPC
        # unlinking one frees its place
        os.unlink(ctxs[0] / "tmp00")
        fds.append(create_temp(ctxs[-1], "tmp00"))
    finally:
        for fd in fds:
            os.close(fd)


def test_temporary_files_left_behind_are_reclaimed(mount):
    c, d = mount.ctx("c"), mount.ctx("d")
    # a process that dies between creating its temporary files and renaming them
    code = ("import os, sys\n"
            "for i in range(%d):\n"
            "    os.close(os.open(os.path.join(sys.argv[1], 'tmpdead%%02d' %% i),"
            " os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))\n" % DIR_MAX_FILES)
    subprocess.run([sys.executable, "-c", code, str(c)], check=True, timeout=20)
    assert os.path.exists(c / "tmpdead00")
    # while this process holds one open, it is never taken
    fds = [create_temp(d, "tmp%02d" % i) for i in range(DIR_MAX_FILES)]
    try:
        fd = create_temp(c, "tmp-new")  # the directory is full: the dead one's go
        os.close(fd)
        assert not os.path.exists(c / "tmpdead00")
        for i in range(DIR_MAX_FILES):
            assert os.path.exists(d / ("tmp%02d" % i))
    finally:
        for fd in fds:
            os.close(fd)


def test_temporary_file_size_limits(mount):
    ctxs = [mount.ctx("s%d" % i) for i in range(TOTAL_BYTES // MAX_BYTES + 1)]
    chunk = b"x" * (1 << 20)
    fds = []
    try:
        for c in ctxs[:-1]:
            fd = create_temp(c, "tmpbig")
            fds.append(fd)
            for _ in range(MAX_BYTES // len(chunk)):
                os.write(fd, chunk)
            with pytest.raises(OSError) as ei:  # one file
                os.write(fd, b"y")
            assert ei.value.errno == errno.EFBIG
        fd = create_temp(ctxs[-1], "tmpbig")
        fds.append(fd)
        with pytest.raises(OSError) as ei:  # all of them
            os.write(fd, b"z")
        assert ei.value.errno == errno.ENOSPC
        os.ftruncate(fds[0], 0)  # freeing bytes makes room again
        assert os.write(fd, b"z") == 1
    finally:
        for fd in fds:
            os.close(fd)


def test_sed_i_and_os_replace_edit_root_config(mount, fake):
    root = mount.path
    r = run(["sed", "-i", "s/^max_tokens = .*/max_tokens = 88/", str(root / ".config")])
    assert r.rc == 0 and r.err == "", r
    assert re.search(r"(?m)^max_tokens = 88$", read_file(root / ".config"))
    c = mount.ctx("c")
    assert config_value(c, "max_tokens") == "88"
    before = read_file(root / ".config")
    with tempfile.NamedTemporaryFile(dir=root, delete=False) as t:
        t.write(before.replace("max_tokens = 88", "max_tokens = many").encode())
    with pytest.raises(OSError) as ei:
        os.replace(t.name, root / ".config")
    assert ei.value.errno == errno.EINVAL
    assert read_file(root / ".config") == before
    for new in ("c", ".status", "other"):  # only .config takes a temporary file
        with pytest.raises(OSError) as ei:
            os.rename(t.name, root / new)
        assert ei.value.errno in (errno.EACCES, errno.EISDIR), (new, ei.value)
    os.unlink(t.name)
    assert sorted(os.listdir(root)) == [".config", ".models", ".status", ".usage", "c"]
    r = run(["touch", str(root / "notes")])  # a plain create stays refused
    assert r.rc != 0 and "Permission denied" in r.err, r
    send(c, "hello\n")
    assert output(c) == reply_for("hello")
    assert fake.calls[0].max_tokens == 88
