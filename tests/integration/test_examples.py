"""The examples in examples/ run against a real mount (README promises them)."""

import os

from mcpfs_testlib import REPO, read_file, reply_for, run

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
