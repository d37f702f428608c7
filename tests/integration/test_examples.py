"""The examples in examples/ run against a real mount (README promises them)."""

import os
import signal
import subprocess

import pytest

from mcpfs_testlib import REPO, read_file, reply_for, run, status, wait_for

EXAMPLES = REPO / "examples"


def example_env(mount, tool_env):
    env = dict(tool_env)
    env["MCPFS_MOUNT"] = str(mount.path)
    return env


def test_ask_once_uses_a_scratch_context(mount, fake, tool_env):
    r = run([str(EXAMPLES / "ask.sh"), "what", "is", "two"], env=example_env(mount, tool_env))
    assert r.rc == 0, r
    assert r.out.strip() == reply_for("what is two")
    assert [p for p in os.listdir(mount.path) if not p.startswith(".")] == []


def test_ask_in_a_named_context_keeps_the_conversation(mount, fake, tool_env):
    env = example_env(mount, tool_env)
    assert run([str(EXAMPLES / "ask.sh"), "-c", "math", "first"], env=env).rc == 0
    r = run([str(EXAMPLES / "ask.sh"), "-c", "math"], input=b"second question\n", env=env)
    assert r.rc == 0, r
    assert r.out.strip() == reply_for("second question")
    assert fake.calls[-1].n_messages == 3  # first, its reply, the second question
    assert "first" in read_file(mount.path / "math" / "history")


def test_ask_reports_a_failed_turn(mount, fake, tool_env):
    fake.script("status", status=401, error_type="authentication_error",
                error_message="invalid x-api-key")
    r = run([str(EXAMPLES / "ask.sh"), "-c", "bad", "hello"], env=example_env(mount, tool_env))
    assert r.rc != 0
    assert "authentication_error" in r.err


def contexts(mount):
    return [p for p in os.listdir(mount.path) if not p.startswith(".")]


USAGE = "usage: ask.sh [-c CONTEXT] [QUESTION...]  (no QUESTION: read it from standard input)"


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_ask_help_prints_usage_and_sends_nothing(mount, fake, tool_env, flag):
    r = run([str(EXAMPLES / "ask.sh"), flag, "what is two"], env=example_env(mount, tool_env))
    assert r.rc == 0, r
    assert r.out.splitlines() == [USAGE] and r.err == "", r
    assert fake.calls == [] and contexts(mount) == []


@pytest.mark.parametrize("args", [["-c"], ["-c", ""]])
def test_ask_c_without_a_name_prints_usage(mount, fake, tool_env, args):
    r = run([str(EXAMPLES / "ask.sh")] + args, env=example_env(mount, tool_env), input=b"hi\n")
    assert r.rc == 2, r
    assert r.err.splitlines() == [USAGE] and r.out == "", r
    assert fake.calls == [] and contexts(mount) == []


@pytest.mark.parametrize("question", ["", " "])
def test_ask_an_empty_question_fails_clearly(mount, fake, tool_env, question):
    r = run([str(EXAMPLES / "ask.sh"), question], env=example_env(mount, tool_env))
    assert r.rc == 1, r
    assert r.err.splitlines() == ["ask.sh: empty question: nothing sent"] and r.out == "", r
    assert fake.calls == [] and contexts(mount) == []


@pytest.mark.parametrize("how", ["not-utf8", "too-large"])
def test_ask_a_refused_question_says_why_and_removes_its_context(mount, fake, tool_env, how):
    env = example_env(mount, tool_env)
    if how == "not-utf8":
        r = run([str(EXAMPLES / "ask.sh"), os.fsdecode(b"caf\xe9 ?")], env=env)
    else:
        r = run([str(EXAMPLES / "ask.sh")], env=env, input=b"a" * ((1 << 20) + 4096) + b"\n")
    assert r.rc == 1, r
    lines = r.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ask.sh: not sent: "), r
    assert "I/O error" not in r.err and "(at " not in r.err, r
    assert ("UTF-8" if how == "not-utf8" else "over") in lines[0], r  # status's reason
    assert fake.calls == [] and contexts(mount) == []


def default_sigint():
    """SIGINT as at a terminal, also when the test run is a background job of
    a shell (started with SIGINT ignored, which a shell cannot trap)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("named", [False, True])
def test_ask_ctrl_c_cancels_the_call_and_removes_its_context(mount, fake, tool_env, named):
    """Ctrl-C cancels the call (`cancel` to ctl: with -c the context stays, and
    says so) and removes the scratch context."""
    fake.script("hold", hold_after=1)
    args = ["-c", "story"] if named else []
    p = subprocess.Popen([str(EXAMPLES / "ask.sh")] + args + ["tell me a long story"],
                         env=example_env(mount, tool_env), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         start_new_session=True, preexec_fn=default_sigint)
    try:
        call = fake.wait_held(0)
        ctx = "story" if named else "ask-%d" % p.pid
        wait_for(lambda: contexts(mount) == [ctx], 10, what="the context")
        os.killpg(p.pid, signal.SIGINT)  # Ctrl-C: to the whole process group
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 130, (out, err)
    assert err.decode().splitlines()[-1] == "ask.sh: interrupted: the call was cancelled", err
    fake.wait_until(lambda: call.closed_by_client, 10, "the daemon to close the call")
    assert contexts(mount) == (["story"] if named else [])
    assert len(fake.calls) == 1
    assert "call 1: cancelled" in mount.log(), mount.log()
    if named:
        st = status(mount.path / "story")
        assert st.state == "error" and "cancelled by the user" in st.text, st.text


def test_chat_repl_sends_each_line_and_handles_commands(mount, fake, tool_env):
    env = example_env(mount, tool_env)
    script = b"hello there\n/history\nsecond line\n/clear\n/quit\nnot sent\n"
    r = run([str(EXAMPLES / "chat.sh"), "talk"], input=script, env=env, timeout=30)
    assert r.rc == 0, r
    assert reply_for("hello there") in r.out
    assert reply_for("second line") in r.out
    assert "--- user (turn 1) ---" in r.out  # /history printed the history
    users = [c.last_user_text.strip() for c in fake.calls]
    assert users == ["hello there", "second line"]
    hj = read_file(mount.path / "talk" / "history.json")
    assert '"messages":\t[]' in hj or '"messages": []' in hj  # /clear emptied it
