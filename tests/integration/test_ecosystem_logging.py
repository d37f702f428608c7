"""The log: one line per call at info level (warning when it failed) naming the
context, the model, the HTTP status, the latency, the retries, the token counts
(input, output, cache creation, cache read) and the request id; the text of
messages and replies only with -d; never the API key.  (-f logs to stderr, which
the mount fixture keeps in mount.log(); without -f the same lines go to syslog.)"""

import os
import re

import pytest

from mcpfs_testlib import (DEFAULT_KEY, output, parse_kv, read_file, read_partial, reply_for,
                           send, wait_for, wait_status)

OK_LINE = re.compile(
    r"^mcpfs: info: call (?P<id>\d+): HTTP (?P<status>\d+), (?P<ms>\d+) ms, "
    r"(?P<retries>\d+) retries, context '(?P<ctx>(?:[^'\\]|\\.)*)', model (?P<model>\S+), "
    r"tokens in=(?P<tin>\d+|-) out=(?P<tout>\d+|-) cache_creation=(?P<tcc>\d+|-) "
    r"cache_read=(?P<tcr>\d+|-), stop (?P<stop>\S+), request id '(?P<rid>[^']*)'$", re.M)
FAIL_LINE = re.compile(
    r"^mcpfs: warning: call (?P<id>\d+) failed: (?P<type>\w+): (?P<msg>.*) "
    r"\(HTTP (?P<status>\d+), (?P<ms>\d+) ms, (?P<retries>\d+) retries, "
    r"context '(?P<ctx>(?:[^'\\]|\\.)*)', model (?P<model>\S+), "
    r"tokens in=(?P<tin>\d+|-) out=(?P<tout>\d+|-) cache_creation=(?P<tcc>\d+|-) "
    r"cache_read=(?P<tcr>\d+|-), request id '(?P<rid>[^']*)'\)$", re.M)
CALL_LINE = re.compile(r"^mcpfs: (info|warning|error): call \d+", re.M)


def call_lines(log):
    return [m.group(0) for m in CALL_LINE.finditer(log)]


def usage(ctx):
    return parse_kv(read_file(ctx / "usage"), ":")


def wait_line(mount, rx, n=1):
    return wait_for(lambda: (lambda ms: ms if len(ms) >= n else None)(
        list(rx.finditer(mount.log()))), 10, what="%d log line(s) %s" % (n, rx.pattern[:40]))


def test_one_line_per_successful_call(mount, fake):
    c = mount.ctx("notes")
    (c / "system").write_text("x" * 6000)  # long enough to be cached (>= 1024 tokens)
    send(c, "first\n")
    assert output(c) == reply_for("first")
    send(c, "second\n")
    assert output(c) == reply_for("second")
    lines = wait_line(mount, OK_LINE, 2)
    log = mount.log()
    assert len(lines) == 2 and len(call_lines(log)) == 2, log
    for m, rec in zip(lines, fake.calls):
        assert m["status"] == "200" and m["retries"] == "0"
        assert m["ctx"] == "notes" and m["model"] == "claude-sonnet-5-5"
        assert m["stop"] == "end_turn"
        assert m["rid"] == rec.request_id and m["rid"].startswith("req_")
        assert int(m["tin"]) == rec.input_tokens and int(m["tout"]) == rec.output_tokens
    # The token counts are the API's, the same the usage file shows; the second
    # call read the system prompt from the cache the first one wrote.
    u = usage(c)
    last = lines[-1]
    assert last["tcc"] == u["last_cache_creation_input_tokens"]
    assert last["tcr"] == u["last_cache_read_input_tokens"]
    assert int(lines[0]["tcc"]) > 0 and int(last["tcr"]) > 0
    # No content at info level.
    assert "first" not in log and "second" not in log and "xxxxxxxx" not in log


@pytest.mark.mcpfs_args("--model=claude-test-model")
def test_the_line_names_the_context_model_and_retries(mount, fake):
    fake.script("status", status=529, times=1)
    fake.script("normal", input_tokens=1234, output_tokens=56)
    c = mount.ctx("a b's")
    (c / "config").write_text("max_retries = 3\n")
    send(c, "hello\n")
    assert output(c, 20) == reply_for("hello")
    (m,) = wait_line(mount, OK_LINE)
    assert m["ctx"] == "a b\\'s" and m["model"] == "claude-test-model"  # quoted
    assert m["retries"] == "1"
    assert (m["tin"], m["tout"]) == ("1234", "56")
    assert m["rid"] == fake.calls[-1].request_id
    assert len(call_lines(mount.log())) == 1  # the retry is not a line of its own


@pytest.mark.allow_errors()
def test_one_line_per_failed_call(mount, fake):
    fake.script("status", status=401, error_type="authentication_error",
                error_message="invalid x-api-key")
    c = mount.ctx("c")
    send(c, "hello\n")
    data, err = read_partial(c / "output")
    assert err is not None
    (m,) = wait_line(mount, FAIL_LINE)
    assert m["type"] == "authentication_error" and m["msg"] == "invalid x-api-key"
    assert m["status"] == "401" and m["retries"] == "0"
    assert m["ctx"] == "c" and m["model"] == "claude-sonnet-5-5"
    assert (m["tin"], m["tout"], m["tcc"], m["tcr"]) == ("-", "-", "-", "-")
    assert m["rid"] == fake.calls[-1].request_id
    # A mid-stream error after some text: the tokens of message_start are known.
    fake.script("error", error_after=2, error_type="overloaded_error",
                error_message="Overloaded")
    send(c, "again\n")
    data, err = read_partial(c / "output")
    assert err is not None
    lines = wait_line(mount, FAIL_LINE, 2)
    m = lines[-1]
    assert m["type"] == "overloaded_error" and m["status"] == "200"
    assert m["tin"] == str(fake.calls[-1].input_tokens)
    assert len(call_lines(mount.log())) == 2


def test_cancelled_call_is_one_info_line(mount, fake):
    fake.script("hold")
    c = mount.ctx("c")
    send(c, "wait\n")
    wait_status(c, "streaming")  # message_start came, then the fake holds
    (c / "ctl").write_text("cancel\n")
    wait_status(c, "error")
    rid = fake.calls[-1].request_id
    m = wait_for(lambda: re.search(r"^mcpfs: info: call 1: cancelled after \d+ ms, 0 retries, "
                                   r"context 'c', model claude-sonnet-5-5, tokens in=(\d+) out=1 "
                                   r"cache_creation=0 cache_read=0, request id '%s'$" % rid,
                                   mount.log(), re.M), 10, what="the cancel line")
    assert int(m.group(1)) == fake.calls[-1].input_tokens
    assert len(call_lines(mount.log())) == 1
    fake.release()


@pytest.mark.mcpfs_args("-d")
def test_debug_adds_content_and_never_the_key(mount, fake):
    c = mount.ctx("c")
    send(c, "the secret word\nis swordfish\n")
    assert output(c) == reply_for("the secret word\nis swordfish")
    wait_line(mount, OK_LINE)
    log = mount.log()
    assert re.search(r"^mcpfs: debug: call 1: context 'c', turn 1: "
                     r"message 'the secret word\\nis swordfish\\n' \(29 bytes\)$", log, re.M), log
    assert re.search(r"^mcpfs: debug: context 'c', turn 1: "
                     r"reply 'reply to: the secret word\\nis swordfish' \(38 bytes, done\)$",
                     log, re.M), log
    assert DEFAULT_KEY not in log and DEFAULT_KEY[-8:] not in log


def test_key_from_a_file_never_in_the_log(mount_factory, fake, workdir):
    key = workdir / "key"
    key.write_text(DEFAULT_KEY + "\n")
    os.chmod(key, 0o600)
    m = mount_factory(args=["-d", "--api-key-file=%s" % key],
                      env={"ANTHROPIC_API_KEY": None})
    c = m.ctx("c")
    send(c, "hi\n")
    assert output(c) == reply_for("hi")
    wait_line(m, OK_LINE)
    assert fake.calls[-1].headers.get("x-api-key") == DEFAULT_KEY
    log = m.log()
    assert "message 'hi\\n'" in log  # -d logs content...
    assert DEFAULT_KEY not in log and DEFAULT_KEY[-8:] not in log  # ...never the key
