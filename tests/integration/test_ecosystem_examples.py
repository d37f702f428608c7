"""examples/summarize.sh, history-jq.sh and edit-system.sh against a real mount
and the fake API (README promises them; test_examples.py covers ask.sh and
chat.sh, test_http_examples.py the HTTP clients)."""

import json
import os

import pytest

from mcpfs_testlib import REPO, output, read_file, reply_for, run, send

EXAMPLES = REPO / "examples"


@pytest.fixture
def env(mount, tool_env):
    e = dict(tool_env)
    e["MCPFS_MOUNT"] = str(mount.path)
    return e


def contexts(mount):
    return sorted(p for p in os.listdir(mount.path) if not p.startswith("."))


def test_summarize_each_file_in_a_scratch_context(mount, fake, env, workdir):
    a = workdir / "a.txt"
    b = workdir / "notes.md"
    a.write_text("Alpha line one.\nAlpha line two.\n")
    b.write_text("# Notes\nBeta.\n")
    r = run([EXAMPLES / "summarize.sh", a, b], env=env, timeout=30)
    assert r.rc == 0, r
    assert r.out == ("== %s ==\n%s\n== %s ==\n%s\n"
                     % (a, reply_for("File: a.txt\n\nAlpha line one.\nAlpha line two."),
                        b, reply_for("File: notes.md\n\n# Notes\nBeta.")))
    assert len(fake.calls) == 2
    for call in fake.calls:
        # One file per call (the history was cleared) under the summary prompt.
        assert call.n_messages == 1
        assert call.system.startswith("Summarize the file")
    assert contexts(mount) == []  # the scratch context is gone


def test_summarize_reports_bad_files_and_goes_on(mount, fake, env, workdir):
    good = workdir / "good.txt"
    good.write_text("fine\n")
    binary = workdir / "blob.bin"
    binary.write_bytes(b"\xff\xfe\x00 not utf-8")
    missing = workdir / "missing.txt"
    r = run([EXAMPLES / "summarize.sh", "-p", "One word.", missing, binary, good], env=env,
            timeout=30)
    assert r.rc == 1, r
    assert "cannot read '%s'" % missing in r.err
    assert "'%s' was refused" % binary in r.err
    assert r.out.endswith("== %s ==\n%s\n" % (good, reply_for("File: good.txt\n\nfine")))
    assert [c.system.strip() for c in fake.calls] == ["One word."]
    assert contexts(mount) == []


@pytest.mark.allow_errors()
def test_summarize_reports_a_failed_call(mount, fake, env, workdir):
    f = workdir / "f.txt"
    f.write_text("text\n")
    fake.script("status", status=400, error_type="invalid_request_error",
                error_message="prompt is too long")
    r = run([EXAMPLES / "summarize.sh", f], env=env, timeout=30)
    assert r.rc == 1, r
    assert "summarize.sh: invalid_request_error" in r.err and "prompt is too long" in r.err
    assert contexts(mount) == []


def test_history_jq_views(mount, fake, env):
    c = mount.ctx("talk")
    (c / "system").write_text("Be brief.\n")
    send(c, "first question\nwith two lines\n")
    assert output(c) == reply_for("first question\nwith two lines")
    send(c, "second ✓\n")
    assert output(c) == reply_for("second ✓")
    tool = str(EXAMPLES / "history-jq.sh")

    r = run([tool, "talk"], env=env)
    assert r.rc == 0, r
    first_reply = reply_for("first question\nwith two lines")
    assert r.out.splitlines() == [
        "1\tuser\t30\tfirst question",
        "2\tassistant\t%d\treply to: first question" % len(first_reply.encode()),
        "3\tuser\t11\tsecond ✓",
        "4\tassistant\t%d\t%s" % (len(reply_for("second ✓").encode()), reply_for("second ✓")),
    ]
    r = run([tool, "talk", "last"], env=env)
    assert r.rc == 0 and r.out == reply_for("second ✓") + "\n", r
    r = run([tool, "talk", "export"], env=env)
    assert r.rc == 0, r
    msgs = [json.loads(line) for line in r.out.splitlines()]
    assert msgs == json.loads(read_file(c / "history.json"))["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    r = run([tool, "talk", "stats"], env=env)
    assert r.rc == 0, r
    assert r.out.splitlines() == [
        "model: claude-sonnet-5-5", "messages: 4", "pruned_messages: 0",
        "user_bytes: 41",
        "assistant_bytes: %d" % (len(first_reply.encode()) + len(reply_for("second ✓").encode())),
    ]
    r = run([tool, "nope"], env=env)
    assert r.rc == 1 and "no context 'nope'" in r.err
    r = run([tool, "talk", "bogus"], env=env)
    assert r.rc == 2 and "unknown view 'bogus'" in r.err


def test_edit_system_prompt_with_an_editor(mount, fake, env):
    c = mount.ctx("c")
    (c / "system").write_text("You are formal.\nAnswer in English.\n")
    env = dict(env, EDITOR='vim -es -N -u NONE -c "%s/formal/terse/" -c wq')
    r = run([EXAMPLES / "edit-system.sh", "c"], env=env, timeout=30)
    assert r.rc == 0, r
    assert r.out == "c/system: changed\nYou are terse.\nAnswer in English.\n"
    assert read_file(c / "system") == "You are terse.\nAnswer in English.\n"
    send(c, "hello\n")
    assert output(c) == reply_for("hello")
    assert fake.calls[-1].system == "You are terse.\nAnswer in English.\n"
    # An editor that changes nothing.
    env["EDITOR"] = "vim -es -N -u NONE -c q"
    r = run([EXAMPLES / "edit-system.sh", "c"], env=env, timeout=30)
    assert r.rc == 0 and r.out == "c/system: unchanged\n", r
    # VISUAL wins over EDITOR, and a new context is created.
    env["VISUAL"] = "vim -es -N -u NONE -c \"call setline(1, 'Be kind.')\" -c wq"
    r = run([EXAMPLES / "edit-system.sh", "new"], env=env, timeout=30)
    assert r.rc == 0, r
    assert read_file(mount.path / "new" / "system") == "Be kind.\n"


@pytest.mark.allow_errors()
def test_edit_config_valid_and_invalid(mount, fake, env):
    c = mount.ctx("c")
    tool = EXAMPLES / "edit-system.sh"
    env = dict(env, EDITOR='vim -es -N -u NONE -c "%s/^max_tokens = .*/max_tokens = 77/" -c wq')
    r = run([tool, "-c", "c"], env=env, timeout=30)
    assert r.rc == 0, r
    assert "max_tokens = 77" in read_file(c / "config")
    send(c, "hi\n")
    assert output(c) == reply_for("hi")
    assert fake.calls[-1].max_tokens == 77
    # An invalid value: the save fails, the editor says so, nothing changes.
    before = read_file(c / "config")
    env["EDITOR"] = 'vim -es -N -u NONE -c "%s/^max_tokens = .*/max_tokens = lots/" -c wq'
    r = run([tool, "-c", "c"], env=env, timeout=30)
    assert r.rc == 1, r
    assert "the editor failed; c/config is unchanged" in r.err
    assert read_file(c / "config") == before
