"""Errors at write() (CONTRACT §3.3): bash and dash ignore the result of
close(), so every error that can be known when a write() arrives is returned
by that write — an invalid complete line of `config` or `.config`, an invalid
`model`, a complete invalid UTF-8 sequence in `input` or `system`, a message
over max_input_bytes or whose estimate alone exceeds budget_tokens (EFBIG), a
full state disk (ENOSPC).  Each refusal shows in `status` as `last_refused`
(reason and time; `last_error` stays the calls') and in the log at warning
level.  Driven by the real shells (bash, dash), python and /usr/bin/printf.
"""

import errno
import os
import re
import shutil

import pytest

from mcpfs_testlib import (
    call_with_timeout, output, read_file, reply_for, run, send, status, wait_status, write_file,
    write_pieces,
)
from test_disk_full import Filler, assert_journals_valid, small  # noqa: F401 (fixture)
from http_support import shim, shim_factory  # noqa: F401 (fixtures)

SHELLS = [s for s in ("bash", "dash") if shutil.which(s)]


def sh(shell, script):
    return run([shell, "-c", script])


def failed_in(shell, r, message):
    """The command's status was non-zero and the shell said so on stderr: bash
    with strerror's text; dash's builtins say "I/O error" for any errno."""
    assert "rc=0" not in r.out and re.search(r"rc=[1-9]", r.out), r
    builtin_dash = shell == "dash" and re.search(r"(echo|printf): I/O error", r.err)
    assert message in r.err or builtin_dash, r


def refused(ctx, pattern):
    st = status(ctx)
    v = st.get("last_refused", "")
    assert re.search(pattern, v), st.text
    assert re.search(r"\(at \d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d", v), st.text
    return st


def warned(mt, pattern):
    lines = [ln for ln in mt.log().splitlines() if "mcpfs: warning:" in ln and
             re.search(pattern, ln)]
    assert lines, "no warning /%s/ in the log:\n%s" % (pattern, mt.log_tail())


# --- config, .config, model, system through the shells -------------------------------------


@pytest.mark.parametrize("shell", SHELLS)
def test_shell_sees_an_invalid_config_line(mount, fake, shell):
    c = mount.ctx("c")
    before = read_file(c / "config")
    r = sh(shell, "echo 'temperature = 9' > '%s/config'; echo \"rc=$?\"" % c)
    failed_in(shell, r, "Invalid argument")
    assert read_file(c / "config") == before
    st = refused(c, r"write of config: line 1: temperature: '9' is out of range 0-1")
    assert st.state == "idle" and st.get("last_error") is None, st.text
    warned(mount, r"context 'c': refused a write of config: line 1: temperature")

    # .config, the defaults: the same at the root
    root = read_file(mount.path / ".config")
    r = sh(shell, "echo 'no_such_key = 1' > '%s/.config'; echo \"rc=$?\"" % mount.path)
    failed_in(shell, r, "Invalid argument")
    assert read_file(mount.path / ".config") == root
    warned(mount, r"refused a write of \.config: line 1: unknown key 'no_such_key'")
    st = read_file(mount.path / ".status")
    assert re.search(r"(?m)^last_refused: write of \.config: line 1: unknown key 'no_such_key' "
                     r"\(at ", st), st

    # a line is judged when its newline comes: the second, bad one fails its write
    failed, closed = write_pieces(c / "config", [b"max_tokens = 7", b"7\nmax_tok",
                                                 b"ens = x\n"])
    assert failed == (2, errno.EINVAL) and closed == errno.EINVAL, (failed, closed)
    assert read_file(c / "config") == before  # nothing of it applied
    refused(c, r"line 2: max_tokens: 'x' is not a whole number")

    # a valid change still works, and a cross-key rule still waits for the close
    r = sh(shell, "echo 'max_tokens = 321' > '%s/config'; echo \"rc=$?\"" % c)
    assert "rc=0" in r.out and r.err == "", r
    assert "max_tokens = 321" in read_file(c / "config")
    failed, closed = write_pieces(c / "config", [b"thinking_budget = 2000\n"])
    assert failed is None and closed == errno.EINVAL, (failed, closed)
    refused(c, r"close of config: thinking \(2000\) must be less than max_tokens")


@pytest.mark.parametrize("shell", SHELLS)
def test_shell_sees_an_invalid_model_and_system(mount, fake, shell):
    c = mount.ctx("c")
    model = read_file(c / "model")
    r = sh(shell, "echo 'not a model!' > '%s/model'; echo \"rc=$?\"" % c)
    failed_in(shell, r, "Invalid argument")
    assert read_file(c / "model") == model
    refused(c, r"write of model: invalid model id 'not a model!'")
    warned(mount, r"refused a write of model: invalid model id")
    # a line not yet ended is refused as soon as no ending can make it valid
    r = sh(shell, "printf 'claude haiku' > '%s/model'; echo \"rc=$?\"" % c)
    failed_in(shell, r, "Invalid argument")
    refused(c, r"write of model: invalid model id 'claude haiku'")
    failed, closed = write_pieces(c / "model", [b"claude-", b"x" * 200])
    assert failed == (1, errno.EINVAL) and closed == errno.EINVAL, (failed, closed)
    assert read_file(c / "model") == model
    r = sh(shell, "echo claude-haiku-4-5 > '%s/model'; echo \"rc=$?\"" % c)
    assert "rc=0" in r.out and r.err == "", r
    assert read_file(c / "model") == "claude-haiku-4-5\n"

    # system: a complete invalid sequence (printf's \351 is Latin-1 é)
    r = sh(shell, "printf 'You are caf\\351.\\n' > '%s/system'; echo \"rc=$?\"" % c)
    failed_in(shell, r, "Invalid or incomplete multibyte")
    assert read_file(c / "system") == ""
    refused(c, r"write of system: system prompt is not valid UTF-8 text")


@pytest.mark.parametrize("shell", SHELLS)
def test_shell_sees_a_refused_ctl_command(mount, fake, shell):
    c = mount.ctx("c")
    r = sh(shell, "echo frobnicate > '%s/ctl'; echo \"rc=$?\"" % c)
    failed_in(shell, r, "Invalid argument")
    refused(c, r"write of ctl: unknown command 'frobnicate'")
    r = sh(shell, "echo retry > '%s/ctl'; echo \"rc=$?\"" % c)
    failed_in(shell, r, "Invalid argument")
    refused(c, r"write of ctl: nothing to retry")
    warned(mount, r"context 'c': refused a write of ctl: nothing to retry")


# --- input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shell", SHELLS)
def test_shell_sees_invalid_utf8_in_input(mount, fake, shell):
    c = mount.ctx("c")
    r = sh(shell, "printf 'caf\\351 cr\\350me\\n' > '%s/input'; echo \"rc=$?\"" % c)
    failed_in(shell, r, "Invalid or incomplete multibyte")
    st = refused(c, r"write of input: message is not valid UTF-8; nothing was sent")
    assert st.state == "idle" and st.get("last_error") is None, st.text
    warned(mount, r"context 'c': refused a write of input: message is not valid UTF-8")
    assert fake.calls == []
    send(c, "fine\n")
    assert output(c) == reply_for("fine")
    assert status(c).get("last_refused") is None  # an accepted message clears it


def test_python_writes_see_utf8_errors_at_the_write(mount, fake):
    c = mount.ctx("c")
    # the write that completes an invalid sequence fails...
    failed, closed = write_pieces(c / "input", [b"good so far ", b"half \xe6", b"\x28\n"])
    assert failed == (2, errno.EILSEQ) and closed == errno.EILSEQ, (failed, closed)
    failed, closed = write_pieces(c / "input", [b"nul \x00 here\n"])
    assert failed == (0, errno.EILSEQ), failed
    refused(c, r"a NUL byte")
    # ...a sequence cut off at the very end is known only at the close
    failed, closed = write_pieces(c / "input", [b"flower \xf0\x9f\x8c"])
    assert failed is None and closed == errno.EILSEQ, (failed, closed)
    refused(c, r"close of input: message is not valid UTF-8")
    # a character split across writes is fine
    failed, closed = write_pieces(c / "input", [b"caf\xc3", b"\xa9\n"])
    assert failed is None and closed is None, (failed, closed)
    assert output(c) == reply_for("café")
    assert [x.last_user_text.strip() for x in fake.calls] == ["café"]


@pytest.mark.parametrize("shell", SHELLS)
def test_message_over_budget_alone_fails_its_write(mount, fake, shell):
    c = mount.ctx("c")
    write_file(c / "config", "budget_tokens = 1000\n")
    r = sh(shell, "head -c 6000 /dev/zero | tr '\\0' w > '%s/input'; echo \"rc=$?\"" % c)
    failed_in(shell, r, "File too large")
    refused(c, r"write of input: message alone needs about \d+ tokens, over budget_tokens "
               r"\(1000\); nothing was sent")
    assert fake.calls == []
    assert status(c).state == "idle"
    # the shell's own builtin echo: the write fails, so bash says so
    r = sh(shell, "echo %s > '%s/input'; echo \"rc=$?\"" % ("v" * 5000, c))
    failed_in(shell, r, "File too large")
    # max_input_bytes the same way
    write_file(c / "config", "budget_tokens = 100000\nmax_input_bytes = 100\n")
    r = sh(shell, "echo %s > '%s/input'; echo \"rc=$?\"" % ("m" * 200, c))
    failed_in(shell, r, "File too large")
    refused(c, r"message is 201 bytes, over max_input_bytes \(100\)")
    send(c, "small\n")
    assert output(c) == reply_for("small")
    assert [x.last_user_text.strip() for x in fake.calls] == ["small"]


def test_refused_write_after_a_failed_turn_keeps_last_error(mount, fake):
    """A refused write does not overwrite the failed call's last_error."""
    c = mount.ctx("c")
    fake.script("status", status=400, times=1)
    send(c, "will fail\n")
    st = wait_status(c, "error")
    err = st.get("last_error")
    assert err, st.text
    r = run("echo 'temperature = 9' > '%s/config'" % c)
    assert r.rc != 0, r
    st = status(c)
    assert st.state == "error" and st.get("last_error") == err, st.text
    assert st.get("turn_state") == "failed", st.text
    assert "temperature" in st.get("last_refused", ""), st.text


def test_the_mount_and_the_shim_give_the_same_reason(shim, fake):
    """A message refused through the shim and through the mount: the same
    reason in the HTTP answer, in `status` and in the warning of the log."""
    c = shim.path / "c"
    os.mkdir(c)
    write_file(c / "config", "budget_tokens = 1000\n")
    big = "w" * 4000  # one write of printf's: the same length refused both ways
    r = shim.api.request("POST", "/v1/contexts/c/messages", {"content": big})
    assert r.status == 413, r
    http_reason = r.error()[1]
    st = status(c)
    assert st.get("last_refused", "").startswith(http_reason), (http_reason, st.text)
    warned(shim.mount, r"http: context 'c': refused a message: %s" % re.escape(http_reason))
    r2 = run("printf %s > '%s/input'" % (big, c))
    assert r2.rc != 0 and "File too large" in r2.err, r2
    mount_reason = status(c)["last_refused"]
    assert mount_reason.startswith("write of input: " + http_reason), (http_reason, mount_reason)
    warned(shim.mount, r"context 'c': refused a write of input: %s" % re.escape(http_reason))
    assert fake.calls == []


# --- a full disk -----------------------------------------------------------------------------


def test_full_disk_fails_the_write_not_the_close(small, fake):
    """The issue's case: 40 `python3 -c print > c/input` on a state disk that
    fills up.  Every message is either delivered or its writer exits non-zero."""
    mt, filler = small, Filler(small.state)
    c = mt.ctx("c")
    send(c, "before\n")
    assert output(c) == reply_for("before")
    filler.fill()
    # a little room: some messages fit, then the disk is full again
    os.truncate(filler.path, max(0, os.path.getsize(filler.path) - 6 * 4096))

    results = []
    for i in range(40):
        text = "message %d %s" % (i, "p" * 3000)
        # the shell redirection, as the issue had it
        r = run("python3 -c 'print(\"%s\")' > '%s/input'" % (text, c))
        results.append((text, r))
    wait_status(c, "idle", 30)
    delivered = {x.last_user_text.strip() for x in fake.calls}
    lost = [t[:12] for t, r in results if r.rc == 0 and t not in delivered]
    assert lost == [], "messages lost with exit status 0: %r" % lost
    failed = [r for t, r in results if r.rc != 0]
    print("\n40 messages on a full disk: %d delivered, %d refused (writer exit %s)"
          % (40 - len(failed), len(failed), sorted({r.rc for r in failed})))
    assert failed, "the disk never filled: %r" % [r.rc for t, r in results]
    assert any("No space left on device" in r.err for r in failed), failed[0]
    assert any(t in delivered for t, r in results), "nothing fitted at all"
    st = status(c)
    assert "No space left on device" in st.get("last_refused", ""), st.text
    assert mt.proc.poll() is None

    # the write itself fails, seen from python
    def write_once():
        fd = os.open(c / "input", os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, b"z" * 20000)
        finally:
            try:
                os.close(fd)
            except OSError:
                pass
    with pytest.raises(OSError) as ei:
        call_with_timeout(write_once, 10, "writing input")
    assert ei.value.errno == errno.ENOSPC
    # and the shells' own echo: the status is non-zero and the shell says so
    for shell in SHELLS:
        r = sh(shell, "echo 'from %s' > '%s/input'; echo \"rc=$?\"" % (shell, c))
        failed_in(shell, r, "No space left on device")
    n = len(fake.calls)
    filler.remove()
    send(c, "after\n")
    assert output(c) == reply_for("after")
    assert [x.last_user_text.strip() for x in fake.calls[n:]] == ["after"]
    assert_journals_valid(mt, ["c"])
