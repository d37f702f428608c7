"""Terminal programs in tmux, read back from the screen: less +F following a
streaming reply, and nano saving a message and a setting."""

import shutil
import subprocess
import time
import uuid

import pytest

from mcpfs_testlib import output, read_file, reply_for, send, sentinel_check, wait_for


class Tmux:
    """One detached tmux session on a private socket."""

    def __init__(self, argv, cwd, env):
        if not shutil.which("tmux"):
            pytest.fail("tmux is not installed (packaging/test-deps.txt)")
        self.sock = "mcpfs-" + uuid.uuid4().hex[:8]
        self.env = env
        self.tmux("new-session", "-d", "-x", "120", "-y", "30", "-c", str(cwd), *argv)

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.sock, *args], env=self.env, timeout=10,
                              capture_output=True, text=True)

    def keys(self, *keys):
        self.tmux("send-keys", "-t", "0", *keys)

    def screen(self):
        return self.tmux("capture-pane", "-p", "-t", "0").stdout

    def wait_screen(self, text, timeout=10.0):
        wait_for(lambda: text in self.screen(), timeout, what="%r on the screen" % text)

    def save_and_quit_nano(self):
        self.keys("C-o")
        self.wait_screen("File Name to Write")
        self.keys("Enter")
        self.wait_screen("Wrote")
        self.keys("C-x")
        wait_for(lambda: not self.alive(), 5, what="nano to exit")

    def alive(self):
        return self.tmux("has-session", "-t", "0").returncode == 0

    def close(self):
        self.tmux("kill-server")


@pytest.fixture
def term_env(tool_env):
    env = dict(tool_env)
    env["TERM"] = "xterm"
    return env


def test_less_follows_a_streaming_reply(ctx, fake, term_env):
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    fake.set_default("slow", pieces=[w + "\n" for w in words], delay_ms=400)
    send(ctx, "spell it\n")
    t = Tmux(["less", "+F", "output"], ctx, term_env)
    try:
        t.wait_screen("alpha", 10)
        assert "foxtrot" not in t.screen()  # it shows the reply while it streams
        t.wait_screen("foxtrot", 10)
        t.keys("C-c")
        t.keys("q")
        wait_for(lambda: not t.alive(), 5, what="less to quit")
    finally:
        t.close()


def test_nano_in_tmux_saves_one_message_and_a_setting(ctx, fake, term_env):
    t = Tmux(["nano", "input"], ctx, term_env)
    try:
        t.wait_screen("GNU nano")
        t.keys("-l", "hello from tmux nano")
        t.save_and_quit_nano()
    finally:
        t.close()
    assert output(ctx) == reply_for("hello from tmux nano")
    sentinel_check(fake, ctx, ["hello from tmux nano"])
    t = Tmux(["nano", "model"], ctx, term_env)
    try:
        t.wait_screen("GNU nano")
        t.keys("C-k")  # cut the line
        t.keys("-l", "claude-haiku-4-5")
        t.save_and_quit_nano()
    finally:
        t.close()
    assert read_file(ctx / "model").strip() == "claude-haiku-4-5"


def test_journal_dump_verifies_a_real_journal(mount, fake):
    import os
    from mcpfs_testlib import REPO, run
    c = mount.ctx("dumped")
    send(c, "to the journal\n")
    assert output(c) == reply_for("to the journal")
    dump = os.environ.get("MCPFS_JOURNAL_DUMP") or str(REPO / "build" / "mcpfs-journal-dump")
    journal = mount.state / "contexts" / "dumped" / "journal"
    r = run([dump, str(journal)])
    assert r.rc == 0, r
    assert "USER" in r.out and "REPLY_END" in r.out and "to the journal" in r.out
    with open(journal, "r+b") as f:  # flip a byte inside the last record
        f.seek(-5, os.SEEK_END)
        b = f.read(1)
        f.seek(-5, os.SEEK_END)
        f.write(bytes([b[0] ^ 0x40]))
    r = run([dump, "--verify", str(journal)])
    assert r.rc == 1, r
