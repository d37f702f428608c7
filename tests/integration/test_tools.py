"""CONTRACT §4: plain tools and editors on a real mount (outside /tmp)."""

import errno
import json
import os
import re
import threading
import time

import pytest

from mcpfs_testlib import (
    PipeReader, PtySession, output, read_file, reply_for, run, send, sentinel_check,
    wait_for, wait_opened, which_or_fail,
)

LINES = ["first line\n", "second line\n", "third line\n"]


# --- plain tools ----------------------------------------------------------------------------------


def test_cat_output_into_another_input_while_streaming(mount, fake):
    a, b = mount.ctx("a"), mount.ctx("b")
    fake.script("hold", hold_after=[1], pieces=LINES)
    send(a, "copy me\n")
    fake.wait_held(0)
    p = mount.spawn(["bash", "-c", "exec cat '%s/output' > '%s/input'" % (a, b)])
    wait_opened(p.pid, a / "output")
    fake.release()
    assert p.wait(15) == 0, p.stderr.read()
    calls = fake.wait_calls(2, done=True)
    assert calls[1].last_user_text == "".join(LINES)
    assert output(b) == reply_for("".join(LINES))


def test_cp_output_while_streaming(mount, ctx, fake):
    dest = mount.root / "copy.txt"
    fake.script("hold", hold_after=[1], pieces=LINES)
    send(ctx, "hello\n")
    fake.wait_held(0)
    p = mount.spawn(["cp", str(ctx / "output"), str(dest)])
    wait_opened(p.pid, ctx / "output")
    fake.release()
    assert p.wait(15) == 0, p.stderr.read()
    assert dest.read_text() == "".join(LINES)


def test_cp_complete_output(mount, ctx, fake):
    send(ctx, "hello\n")
    assert output(ctx) == reply_for("hello")
    dest = mount.root / "copy2.txt"
    r = run(["cp", str(ctx / "output"), str(dest)])
    assert r.rc == 0, r
    assert dest.read_text() == reply_for("hello")


def test_head_grep_wc(ctx, fake):
    fake.script("reply", pieces=LINES)
    send(ctx, "hello\n")
    o = str(ctx / "output")
    assert run(["head", "-n", "1", o]).out == "first line\n"
    assert run(["grep", "-c", "line", o]).out == "3\n"
    assert run(["grep", "second", o]).out == "second line\n"
    assert run("wc -l < '%s'" % o).out.strip() == "3"


def test_python_read_and_for_line(ctx, fake):
    fake.script("hold", hold_after=[1], pieces=LINES)
    send(ctx, "hello\n")
    call = fake.wait_held(0)
    lines = []

    def body():
        with open(ctx / "output") as f:
            for line in f:
                lines.append(line)
    t = threading.Thread(target=body, daemon=True)
    t.start()
    wait_for(lambda: lines == LINES[:1], 10, what="the first line while streaming")
    assert call.held
    fake.release()
    t.join(10)
    assert not t.is_alive()
    assert lines == LINES
    with open(ctx / "output") as f:
        assert f.read() == "".join(LINES)


def test_jq_reads_history_json(ctx, fake):
    send(ctx, "hello\n")
    assert output(ctx) == reply_for("hello")
    hj = str(ctx / "history.json")
    r = run(["jq", ".", hj])
    assert r.rc == 0, r
    assert json.loads(r.out)["messages"]
    assert run(["jq", "-e", ".messages | length == 2", hj]).rc == 0
    assert run(["jq", "-r", ".model", hj]).out.strip() == read_file(ctx / "model").strip()
    assert run(["jq", "-r", ".messages[0].role", hj]).out.strip() == "user"


def test_inotifywait_monitor_sees_modify_and_close_write(mount, ctx, fake):
    which_or_fail("inotifywait")
    fake.script("hold", hold_after=[1, 2], pieces=["one ", "two ", "three"])
    send(ctx, "hello\n")
    call = fake.wait_held(0)
    p = mount.spawn(["inotifywait", "-m", "-e", "modify,close_write", str(ctx / "output")])
    out, err = PipeReader(p.stdout), PipeReader(p.stderr)
    err.wait_text("Watches established", 10)
    fake.release()
    fake.wait_until(lambda: call.holds_reached == 2 and call.held, 10, "the second hold")
    out.wait_text("MODIFY", 10)  # while the reply is still streaming
    assert not call.completed
    fake.release()
    out.wait_text("CLOSE_WRITE", 10)


def test_inotifywait_once_returns_when_reply_arrives(mount, ctx, fake):
    fake.script("hold", hold_after=[0])
    send(ctx, "hello\n")
    fake.wait_held(0)
    p = mount.spawn(["inotifywait", "-e", "modify,close_write", str(ctx / "output")])
    PipeReader(p.stderr).wait_text("Watches established", 10)
    fake.release()
    assert p.wait(10) == 0
    assert re.search(r"MODIFY|CLOSE_WRITE", p.stdout.read().decode())


def test_inotifywait_modify_is_coalesced_on_a_paced_reply(mount, ctx, fake):
    """A reply paced like the API's (small deltas 2 ms apart) raises MODIFY at most
    once per notifier pass (one per 100 ms), not once per delta: each event is a
    truncate through the mount, several FUSE round trips.  A blocked `cat output`
    reads every delta meanwhile, and CLOSE_WRITE still comes at the end."""
    which_or_fail("inotifywait")
    pieces = ["d%03d " % i for i in range(200)]
    fake.script("normal", hold_after=[1], pieces=pieces, delay_ms=2)
    send(ctx, "hello\n")
    call = fake.wait_held(0)
    p = mount.spawn(["inotifywait", "-m", "-e", "modify,close_write", str(ctx / "output")])
    out, err = PipeReader(p.stdout), PipeReader(p.stderr)
    err.wait_text("Watches established", 10)
    cat = mount.spawn(["cat", str(ctx / "output")])
    wait_opened(cat.pid, ctx / "output")
    t0 = time.monotonic()
    fake.release()
    out.wait_text("CLOSE_WRITE", 30)
    elapsed = time.monotonic() - t0
    assert call.completed
    assert cat.wait(10) == 0
    assert cat.stdout.read().decode() == "".join(pieces)
    modify = out.text.count("MODIFY")
    # passes at least 100 ms apart: the first at the first delta, the last at the
    # end (its truncate is a MODIFY too); one more for the clocks' rounding
    assert 1 <= modify <= elapsed / 0.1 + 3, (modify, elapsed, out.text[-500:])


# --- editors (CONTRACT §4) ----------------------------------------------------------------------------

EDITOR_ERRORS = re.compile(r"\bE\d{2,4}:|ATTENTION|Cannot write backup|Error writing|"
                           r"Close failed|Permission denied|Input/output error")


def edit(session, keys_before_save, save, saved_rx, quit_keys, start_rx):
    """Drives an editor: wait for its screen, type, save, wait for the save
    message, quit; returns the exit code."""
    try:
        session.expect(start_rx, 15)
        session.quiet(0.4)
        session.send(keys_before_save)
        session.send(save)
        if saved_rx:
            session.expect(saved_rx, 15)
        if quit_keys:
            session.send(quit_keys)
        return session.wait(20)
    finally:
        session.kill()


def vim(ctx, name, env):
    which_or_fail("vim")
    return PtySession(["vim", "-i", "NONE", name], env=env, cwd=ctx)


def test_vim_saves_one_message(ctx, fake, tool_env):
    s = vim(ctx, "input", tool_env)
    rc = edit(s, "ihello from vim\x1b", ":wq\r", None, None, r'"input"')
    assert rc == 0, s.screen[-2000:]
    assert not EDITOR_ERRORS.search(s.screen), s.screen[-2000:]
    assert output(ctx) == reply_for("hello from vim")
    sentinel_check(fake, ctx, ["hello from vim"])


def test_two_vims_on_two_contexts_at_once(mount, fake, tool_env):
    a, b = mount.ctx("a"), mount.ctx("b")
    sa, sb = vim(a, "input", tool_env), vim(b, "input", tool_env)
    try:
        for s in (sa, sb):
            s.expect(r'"input"', 15)
            s.quiet(0.4)
        sa.send("ifrom vim a\x1b")
        sb.send("ifrom vim b\x1b")
        sa.send(":wq\r")
        sb.send(":wq\r")
        assert sa.wait(20) == 0 and sb.wait(20) == 0
        for s in (sa, sb):
            assert not EDITOR_ERRORS.search(s.screen), s.screen[-2000:]
    finally:
        sa.kill()
        sb.kill()
    assert output(a) == reply_for("from vim a")
    assert output(b) == reply_for("from vim b")
    assert sorted(c.last_user_text.strip() for c in fake.calls) == ["from vim a", "from vim b"]


def test_vim_ex_mode_saves_one_message(ctx, fake, tool_env):
    r = run(["vim", "-es", "-i", "NONE", "-c", "call setline(1, 'hello from ex')", "-c", "wq",
             "input"], cwd=str(ctx), env=tool_env, timeout=20)
    assert r.rc == 0, r
    assert output(ctx) == reply_for("hello from ex")
    sentinel_check(fake, ctx, ["hello from ex"])


def test_vim_edits_system(ctx, fake, tool_env):
    s = vim(ctx, "system", tool_env)
    rc = edit(s, "iBe brief.\x1b", ":wq\r", None, None, r'"system"')
    assert rc == 0 and not EDITOR_ERRORS.search(s.screen), s.screen[-2000:]
    assert read_file(ctx / "system").rstrip("\n") == "Be brief."
    send(ctx, "hello\n")
    assert output(ctx) == reply_for("hello")
    assert fake.calls[0].system.strip() == "Be brief."


@pytest.mark.parametrize("opts", ["set backupcopy=no writebackup", "set backupcopy=no backup",
                                  ""])
@pytest.mark.parametrize("name,text,check", [
    ("system", "Be brief.", lambda call: call.system.strip() == "Be brief."),
    ("config", "max_tokens = 77", lambda call: call.max_tokens == 77),
    ("input", "hello from vim", None),
])
def test_vim_backup_by_rename_saves(ctx, fake, tool_env, opts, name, text, check):
    """vim with backupcopy=no renames NAME to NAME~, writes NAME, then deletes
    NAME~: the backup rename leaves a (hidden) copy that the unlink finds, so
    the save ends without E207.  "" is vim's default settings."""
    which_or_fail("vim")
    args = ["vim", "-u", "NONE", "-N", "-es", "-i", "NONE"]
    if opts:
        args += ["-c", opts]
    r = run(args + ["-c", "%delete", "-c", "call setline(1, %r)" % text, "-c", "w", "-c", "q!",
                    name],
            cwd=str(ctx), env=tool_env, timeout=20)
    assert r.rc == 0, r
    assert not EDITOR_ERRORS.search(r.out + r.err), r
    assert not [n for n in os.listdir(ctx) if n.endswith("~")]
    if name == "input":
        assert output(ctx) == reply_for(text)
        assert [c.last_user_text.strip() for c in fake.calls] == [text]  # exactly one
        return
    assert text in read_file(ctx / name).splitlines()
    send(ctx, "hello\n")
    assert output(ctx) == reply_for("hello")
    assert check(fake.calls[0]), fake.calls[0]


def test_nano_saves_one_message(ctx, fake, tool_env):
    which_or_fail("nano")
    s = PtySession(["nano", "input"], env=tool_env, cwd=ctx)
    rc = edit(s, "hello from nano", "\x13", r"Wrote", "\x18", r"GNU nano")
    assert rc == 0, s.screen[-2000:]
    assert not EDITOR_ERRORS.search(s.screen), s.screen[-2000:]
    assert output(ctx) == reply_for("hello from nano")
    sentinel_check(fake, ctx, ["hello from nano"])


def test_emacs_saves_one_message(ctx, fake, tool_env):
    which_or_fail("emacs")
    s = PtySession(["emacs", "-nw", "-Q", "input"], env=tool_env, cwd=ctx)
    rc = edit(s, "hello from emacs", "\x18\x13", r"Wrote", "\x18\x03", r"input")
    assert rc == 0, s.screen[-2000:]
    assert not EDITOR_ERRORS.search(s.screen), s.screen[-2000:]
    assert output(ctx) == reply_for("hello from emacs")
    sentinel_check(fake, ctx, ["hello from emacs"])


def test_emacs_batch_saves_one_message(ctx, fake, tool_env):
    which_or_fail("emacs")
    r = run(["emacs", "-Q", "--batch", "--eval",
             '(progn (find-file "input") (insert "hello from batch") (save-buffer))'],
            cwd=str(ctx), env=tool_env, timeout=30)
    assert r.rc == 0, r
    assert not EDITOR_ERRORS.search(r.err), r
    assert output(ctx) == reply_for("hello from batch")
    sentinel_check(fake, ctx, ["hello from batch"])


@pytest.mark.parametrize("name,text,check", [
    ("system", "You answer in haiku.", lambda call: call.system == "You answer in haiku."),
    ("config", "max_tokens = 77", lambda call: call.max_tokens == 77),
    ("model", "claude-haiku-4-5", lambda call: call.model == "claude-haiku-4-5"),
])
def test_emacs_batch_edits_settings(ctx, fake, tool_env, name, text, check):
    """Emacs replaces the whole setting (its backup rename included) on save."""
    which_or_fail("emacs")
    r = run(["emacs", "-Q", "--batch", "--eval",
             '(progn (find-file "%s") (erase-buffer) (insert "%s") (save-buffer))'
             % (name, text)], cwd=str(ctx), env=tool_env, timeout=30)
    assert r.rc == 0, r
    assert not EDITOR_ERRORS.search(r.err), r
    assert text in read_file(ctx / name).splitlines()
    assert not [n for n in os.listdir(ctx) if n.endswith("~") or n.startswith("#")]
    send(ctx, "hello\n")
    assert output(ctx) == reply_for("hello")
    assert check(fake.calls[0]), fake.calls[0]


@pytest.mark.allow_errors()
def test_emacs_batch_invalid_config_fails_and_changes_nothing(ctx, fake, tool_env):
    which_or_fail("emacs")
    before = read_file(ctx / "config")
    r = run(["emacs", "-Q", "--batch", "--eval",
             '(progn (find-file "config") (erase-buffer) (insert "max_tokens = lots")'
             ' (save-buffer))'], cwd=str(ctx), env=tool_env, timeout=30)
    assert r.rc != 0, r
    assert read_file(ctx / "config") == before


def test_copy_file_range_on_output_falls_back(ctx, fake, tmp_path):
    """A copy offload from `output` is refused with EINVAL (so tools read and
    write instead); it never copies part of a reply that is still streaming."""
    fake.script("hold", hold_after=[1], pieces=["one ", "two ", "three"])
    send(ctx, "hello\n")
    fake.wait_held(0)
    src = os.open(ctx / "output", os.O_RDONLY)
    dst = os.open(tmp_path / "copy", os.O_WRONLY | os.O_CREAT, 0o600)
    other = ctx.parent / "cfr-target"
    other.mkdir()
    tgt = os.open(other / "input", os.O_WRONLY)
    # The kernel clamps a copy to the size it last heard of, and copies nothing
    # past it without asking: learn the streaming size first, so that the copy
    # reaches the daemon, which refuses it.
    assert os.fstat(src).st_size == len("one ")
    try:
        for out in (dst, tgt):
            with pytest.raises(OSError) as ei:
                os.copy_file_range(src, out, 1 << 20)
            assert ei.value.errno in (errno.EINVAL, errno.EXDEV), ei.value
        fake.release()
        got = b""  # reads still work on the same descriptor
        while True:
            b = os.read(src, 1 << 20)
            if not b:
                break
            got += b
        assert got == b"one two three"
    finally:
        for fd in (src, dst, tgt):
            os.close(fd)
    assert output(ctx) == "one two three"
    assert os.path.getsize(tmp_path / "copy") == 0
    assert len(fake.calls) == 1  # nothing reached the other context


@pytest.mark.parametrize("name,text", [("model", "claude-haiku-4-5"),
                                       ("config", "max_tokens = 99")])
def test_nano_edits_settings(ctx, fake, tool_env, name, text):
    which_or_fail("nano")
    s = PtySession(["nano", name], env=tool_env, cwd=ctx)
    # replace the whole buffer: cut every line (^K repeatedly), then type
    rc = edit(s, "\x0b" * 40 + text, "\x13", r"Wrote", "\x18", r"GNU nano")
    assert rc == 0 and not EDITOR_ERRORS.search(s.screen), s.screen[-2000:]
    assert text in read_file(ctx / name)
    send(ctx, "hello\n")
    assert output(ctx) == reply_for("hello")
    if name == "model":
        assert fake.calls[0].model == "claude-haiku-4-5"
    else:
        assert fake.calls[0].max_tokens == 99
