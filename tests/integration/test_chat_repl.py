"""examples/chat.sh (mcpfs-chat) in a real terminal: a pseudo-terminal, keys
typed as a user types them (Ctrl-C, Up, Ctrl-D), the screen read back, and the
fake API telling what was sent."""

import re

import pytest

from mcpfs_testlib import REPO, PtySession, read_file, reply_for, send, status, wait_for

CHAT = REPO / "examples" / "chat.sh"
UP = "\x1b[A"


@pytest.fixture
def chat(mount, tool_env):
    """start(context="talk") -> a PtySession running chat.sh, at its prompt."""
    sessions = []

    def start(context="talk"):
        env = dict(tool_env, MCPFS_MOUNT=str(mount.path), TERM="xterm")
        p = PtySession([str(CHAT), context], env, cwd=str(mount.root))
        sessions.append(p)
        p.expect(r"you> ")
        return p

    yield start
    for p in sessions:
        p.kill()


def prompts(p):
    return p.screen.count("you> ")


def ctrl_d(p):
    """Ctrl-D at the prompt, once readline reads (typed earlier, while the
    terminal is still in canonical mode, the end-of-file could be lost)."""
    wait_for(lambda: p.screen.rstrip().endswith("you>"), 10, what="the prompt")
    p.quiet(0.2)
    p.send("\x04")


def test_ctrl_c_cancels_the_streaming_reply_and_returns_to_the_prompt(mount, fake, chat):
    fake.script("hold", hold_after=1)
    p = chat()
    p.send("tell me a long story\r")
    call = fake.wait_held(0)
    p.expect(re.escape(call.text_sent))  # the reply is streaming on the screen
    p.send("\x03")
    p.expect(r"\[cancelled")
    wait_for(lambda: prompts(p) == 2, 10, what="the prompt to come back")
    # The call was cancelled, not left running: the daemon closed it and the
    # context says why.
    fake.wait_until(lambda: call.closed_by_client, 10, "the daemon to close the call")
    st = status(mount.path / "talk")
    assert st.state == "error" and re.search(r"cancel", st.text, re.I), st.text
    assert p.rc is None  # the REPL lives on
    # The next message goes normally.
    p.send("and now?\r")
    p.expect(re.escape(reply_for("and now?")))
    ctrl_d(p)  # Ctrl-D leaves
    assert p.wait(10) == 0
    assert [c.last_user_text.strip() for c in fake.calls] == ["tell me a long story", "and now?"]


def test_up_recalls_the_last_line_and_ctrl_c_drops_a_draft(mount, fake, chat):
    p = chat()
    p.send("first question\r")
    p.expect(re.escape(reply_for("first question")))
    wait_for(lambda: prompts(p) == 2, 10, what="the second prompt")
    p.send(UP)
    p.quiet()
    p.send("\r")
    wait_for(lambda: len(fake.calls) == 2, 10, what="the recalled line to be sent")
    wait_for(lambda: prompts(p) == 3, 10, what="the third prompt")
    # Ctrl-C at the prompt drops what was typed, and the REPL goes on.
    p.send("half a thought")
    p.quiet()
    p.send("\x03")
    wait_for(lambda: prompts(p) == 4, 10, what="a fresh prompt after Ctrl-C")
    p.send("whole thought\r")
    p.expect(re.escape(reply_for("whole thought")))
    p.send("/quit\r")
    assert p.wait(10) == 0
    assert [c.last_user_text.strip() for c in fake.calls] == \
        ["first question", "first question", "whole thought"]


def test_help_and_unknown_commands_send_nothing(mount, fake, chat):
    p = chat()
    p.send("/help\r")
    p.expect(r"/retry")
    p.expect(r"nothing is sent")
    p.send("/frobnicate now\r")
    p.expect(r"unknown command /frobnicate")
    p.send("/cancel\r")
    p.expect(r"nothing to cancel")
    p.send("/retry\r")
    p.expect(r"nothing to retry")
    ctrl_d(p)
    assert p.wait(10) == 0
    assert fake.requests == []  # not one request reached the API
    assert "frobnicate" not in read_file(mount.path / "talk" / "transcript")


def test_multi_line_message_and_double_slash(mount, fake, chat):
    p = chat()
    p.send('"""\r')
    p.expect(r"\.\.\.> ")
    p.send("line one\r")
    p.send("  line two\r")
    p.send('"""\r')
    p.expect(re.escape(reply_for("line one")))
    p.send("//etc is a directory\r")
    p.expect(re.escape(reply_for("/etc is a directory")))
    ctrl_d(p)
    assert p.wait(10) == 0
    assert [c.last_user_text for c in fake.calls] == \
        ["line one\n  line two\n", "/etc is a directory\n"]


@pytest.mark.allow_errors()
def test_retry_after_a_failed_turn_says_so_and_resends(mount, fake, chat):
    (mount.path / "talk").mkdir()
    (mount.path / "talk" / "config").write_text("max_retries = 0\n")
    fake.script("status", status=400, error_type="invalid_request_error",
                error_message="try again later")
    p = chat()
    p.send("please\r")
    p.expect(r"error: invalid_request_error: try again later")
    p.send("/retry\r")
    p.expect(r"\[sending the newest message again\]")
    p.expect(re.escape(reply_for("please")))
    ctrl_d(p)
    assert p.wait(10) == 0
    assert [c.last_user_text.strip() for c in fake.calls] == ["please", "please"]


def test_retries_show_as_retrying(mount, fake, chat):
    # One 529 with retry-after: 2, then the reply: the call is retried, and
    # for those two seconds status says so, which the REPL shows.
    fake.script("status", status=529, error_type="overloaded_error",
                error_message="Overloaded", retry_after=2)
    p = chat()
    p.send("are you there\r")
    p.expect(r"retrying… \(.*overloaded_error")
    p.expect(re.escape(reply_for("are you there")))
    ctrl_d(p)
    assert p.wait(10) == 0
    assert len(fake.calls) == 2


def test_cancel_command_stops_another_writers_call(mount, fake, chat):
    fake.script("hold", hold_after=1)
    c = mount.ctx("talk")
    p = chat()
    send(c, "from another terminal\n")
    call = fake.wait_held(0)
    p.send("/cancel\r")
    p.expect(r"\[cancelled the call in flight\]")
    fake.wait_until(lambda: call.closed_by_client, 10, "the daemon to close the call")
    ctrl_d(p)
    assert p.wait(10) == 0
    assert len(fake.calls) == 1
