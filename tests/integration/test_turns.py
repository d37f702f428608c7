"""CONTRACT §3 (a turn) and the per-context files of §2: sending, one message per
open file description, validation, queueing, reading output while it streams,
and the settings and history renderings."""

import errno
import json
import os
import re
import select
import signal
import threading
import time

import pytest

from mcpfs_testlib import (
    DEFAULT_KEY, PipeReader, Reader, blocked_in_read, content_text, output, parse_kv,
    read_available, read_file, reply_for, run, send, sentinel_check, status,
    wait_for, wait_opened, wait_status, write_file,
)


def texts(call):
    return [(role, text.strip()) for role, text in call.texts()]


# --- sending -----------------------------------------------------------------------------------


def test_echo_then_cat_prints_the_reply(ctx, fake):
    r = run("cd '%s' && echo hello > input && cat output" % ctx)
    assert r.rc == 0, r
    assert r.out == reply_for("hello")
    assert r.err == ""


def test_request_wire_format(ctx, fake):
    send(ctx, "hello\n")
    assert output(ctx) == reply_for("hello")
    c = fake.calls[0]
    assert c.method == "POST" and c.path == "/v1/messages"
    assert c.headers["x-api-key"] == DEFAULT_KEY
    assert c.headers["anthropic-version"] == "2023-06-01"
    assert c.headers["content-type"].split(";")[0].strip() == "application/json"
    assert c.body["stream"] is True
    assert c.body["model"] == "claude-sonnet-5-5"
    assert c.body["max_tokens"] == 4096
    assert c.roles == ["user"]
    assert content_text(c.messages[0]["content"]).rstrip("\n") == "hello"
    assert status(ctx).state == "idle"


def test_each_reply_replaces_the_last(ctx, fake):
    for word in ("one", "two", "three"):
        send(ctx, word + "\n")
        assert output(ctx) == reply_for(word)
    assert texts(fake.calls[2]) == [("user", "one"), ("assistant", reply_for("one")),
                                    ("user", "two"), ("assistant", reply_for("two")),
                                    ("user", "three")]


PAIRS = 3000  # CONTRACT §3.2: "not once in thousands a stale one"


@pytest.mark.mcpfs_timeout(900)
def test_thousands_of_echo_cat_pairs_never_stale(ctx, fake):
    fake.record_bodies = False
    script = r'''
cd "$1" || exit 2
for i in $(seq 1 "$2"); do
    echo "msg $i" > input || exit 3
    printf '%s\t%s\n' "$i" "$(cat output)"
done
'''
    r = run(["bash", "-c", script, "loop", str(ctx), str(PAIRS)], timeout=840)
    assert r.rc == 0, r
    lines = r.out.splitlines()
    assert len(lines) == PAIRS
    stale = [line for i, line in enumerate(lines, 1)
             if line != "%d\treply to: msg %d" % (i, i)]
    assert stale == [], "%d stale or wrong replies, first: %r" % (len(stale), stale[:5])
    assert len(fake.calls) == PAIRS


def test_one_message_per_open_file_description_subshell(ctx, fake):
    r = run("cd '%s' && (echo a; /bin/true; echo b) > input && cat output" % ctx)
    assert r.rc == 0, r
    assert len(fake.calls) == 1
    assert fake.calls[0].last_user_text.rstrip("\n") == "a\nb"
    assert r.out == reply_for("a\nb")
    sentinel_check(fake, ctx, ["a\nb"])


def test_one_message_per_open_file_description_exec_fd(ctx, fake):
    r = run("cd '%s' && exec 3>input && echo a >&3 && sleep 0.1 && echo b >&3 && exec 3>&- "
            "&& cat output" % ctx)
    assert r.rc == 0, r
    assert r.out == reply_for("a\nb")
    sentinel_check(fake, ctx, ["a\nb"])


def test_closes_of_copies_beside_writes_form_one_message(ctx, fake):
    """Each close of a copy of the descriptor is a FLUSH, which the kernel does
    not order with writes through the same open file (a process closing its
    copy while another writes): the message is still every byte written, once."""
    piece = b"0123456789abcdef" * 8
    n = 1500
    fd = os.open(ctx / "input", os.O_WRONLY | os.O_TRUNC)
    done = threading.Event()

    def closer():
        while not done.is_set():
            os.close(os.dup(fd))

    t = threading.Thread(target=closer)
    t.start()
    try:
        for _ in range(n):
            assert os.write(fd, piece) == len(piece)
    finally:
        done.set()
        t.join()
    os.close(fd)
    assert output(ctx, timeout=20) == reply_for((piece * n).decode())
    assert len(fake.calls) == 1
    assert fake.calls[0].last_user_text == (piece * n).decode()


def test_threads_reading_one_descriptor_get_the_same_text(ctx, fake):
    """Reads at offset 0 render a fresh snapshot into the open file's buffer;
    two threads reading one descriptor must not see each other's half-made one."""
    for i in range(30):
        send(ctx, "message %d %s\n" % (i, "z" * 500))
        output(ctx)
    for name in ("history", "transcript"):
        fd = os.open(ctx / name, os.O_RDONLY)
        try:
            want = os.pread(fd, 1 << 20, 0)
            assert len(want) > 8000
            bad = []

            def reader():
                for _ in range(1500):
                    got = os.pread(fd, 1 << 20, 0)
                    if got != want:
                        bad.append(len(got))

            ts = [threading.Thread(target=reader) for _ in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            assert bad == [], "%s: %d reads of 6000 differed" % (name, len(bad))
        finally:
            os.close(fd)


def test_many_writes_form_one_message(ctx, fake):
    word = "Grüße 東京 🌸".encode()
    fd = os.open(ctx / "input", os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, b"part one, ")
        # a character split across two writes is still one valid message
        os.write(fd, word[:2])
        os.write(fd, word[2:])
        os.write(fd, b", end\n")
    finally:
        os.close(fd)
    msg = "part one, Grüße 東京 🌸, end"
    assert output(ctx) == reply_for(msg)
    sentinel_check(fake, ctx, [msg])


def test_empty_and_blank_messages_send_nothing(ctx, fake):
    r = run("cd '%s' && : > input && echo > input && printf ' \\n\\t \\r\\n' > input "
            "&& touch input && printf '' > input" % ctx)
    assert r.rc == 0, r
    with open(ctx / "input", "w"):
        pass
    sentinel_check(fake, ctx, [])


def test_truncate_and_touch_on_input_are_harmless(ctx, fake):
    send(ctx, "first\n")
    assert output(ctx) == reply_for("first")
    r = run("cd '%s' && touch input && : > input && truncate -s 0 input" % ctx)
    assert r.rc == 0, r
    assert output(ctx) == reply_for("first")
    sentinel_check(fake, ctx, ["first"])


def test_message_over_size_limit_is_efbig(ctx, fake):
    write_file(ctx / "config", "max_input_bytes = 100\n")
    fd = os.open(ctx / "input", os.O_WRONLY | os.O_TRUNC)
    try:
        with pytest.raises(OSError) as ei:
            os.write(fd, b"x" * 200)
        assert ei.value.errno == errno.EFBIG
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    r = run("head -c 300 /dev/zero | tr '\\0' y > '%s/input'" % ctx)
    assert r.rc != 0 and "File too large" in r.err, r
    exact = "z" * 99 + "\n"  # exactly the limit is fine
    send(ctx, exact)
    assert output(ctx) == reply_for(exact)
    sentinel_check(fake, ctx, ["z" * 99])


@pytest.mark.allow_errors()
def test_invalid_utf8_is_eilseq_at_the_write(ctx, fake):
    """CONTRACT §3.3: the write that completes an invalid sequence fails, and
    so does the close; a sequence cut off at the very end fails the close."""
    fd = os.open(ctx / "input", os.O_WRONLY | os.O_TRUNC)
    try:
        with pytest.raises(OSError) as ei:
            os.write(fd, b"caf\xc3 and \xff\xfe\n")
        assert ei.value.errno == errno.EILSEQ
    finally:
        with pytest.raises(OSError) as ei:
            os.close(fd)
        assert ei.value.errno == errno.EILSEQ
    assert re.search(r"utf-?8", status(ctx).text, re.I), status(ctx).text
    with pytest.raises(OSError) as ei:
        with open(ctx / "input", "wb") as f:
            f.write(b"cut off \xe6\x97")
    assert ei.value.errno == errno.EILSEQ
    sentinel_check(fake, ctx, [])


# --- queueing and turn binding ------------------------------------------------------------------------


def test_messages_queue_and_go_in_order(ctx, fake):
    fake.script("hold", hold_after=1)
    send(ctx, "m1\n")
    fake.wait_held(0)
    send(ctx, "m2\n")
    send(ctx, "m3\n")
    st = status(ctx)
    assert st.state in ("waiting", "streaming"), st
    assert st.get("queued") == "2", st
    assert len(fake.calls) == 1
    fake.release()
    assert output(ctx) == reply_for("m3")
    calls = fake.wait_calls(3, done=True)
    assert len(calls) == 3
    assert texts(calls[0]) == [("user", "m1")]
    assert texts(calls[1]) == [("user", "m1"), ("assistant", reply_for("m1")), ("user", "m2")]
    assert texts(calls[2]) == texts(calls[1]) + [("assistant", reply_for("m2")), ("user", "m3")]
    assert wait_status(ctx, "idle").get("queued", "0") == "0"


def test_quick_messages_while_slow_all_sent_in_order(ctx, fake):
    fake.set_default("slow", delay_ms=100)
    r = run("cd '%s' && for m in one two three; do echo $m > input; done" % ctx)
    assert r.rc == 0, r
    assert output(ctx, timeout=20) == reply_for("three")
    calls = fake.wait_calls(3, done=True)
    assert [c.last_user_text.strip() for c in calls] == ["one", "two", "three"]
    assert [c.n_messages for c in calls] == [1, 3, 5]


def test_reader_stays_with_its_turn(ctx, fake):
    fake.script("hold", hold_after=1)
    send(ctx, "first\n")
    call = fake.wait_held(0)
    r1 = Reader(ctx / "output")
    wait_for(lambda: r1.data == call.text_sent.encode(), 10, what="the first delta")
    send(ctx, "second\n")
    r2 = Reader(ctx / "output")  # opened after close(): bound to "second"
    fake.release()
    r1.finish(10)
    r2.finish(10)
    assert (r1.text, r1.error) == (reply_for("first"), None)
    assert (r2.text, r2.error) == (reply_for("second"), None)


def test_output_after_close_waits_for_its_own_reply(ctx, fake):
    send(ctx, "zero\n")
    assert output(ctx) == reply_for("zero")
    fake.script("hold", hold_after=0)
    send(ctx, "one\n")
    fake.wait_held(1)
    r = Reader(ctx / "output")  # must never give the previous reply
    fake.release()
    r.finish(10)
    assert r.text == reply_for("one")


def test_nonblocking_read_gives_eagain(ctx, fake):
    fake.script("hold", hold_after=[0, 2], pieces=["ab", "cd", "ef"])
    send(ctx, "hello\n")
    fake.wait_held(0)
    assert read_available(ctx / "output") == (b"", errno.EAGAIN)
    fake.release()
    fake.wait_until(lambda: fake.calls[0].holds_reached == 2 and fake.calls[0].held, 5)
    wait_for(lambda: read_available(ctx / "output") == (b"abcd", errno.EAGAIN), 5,
             what="the partial reply, then EAGAIN")
    fake.release()
    wait_for(lambda: read_available(ctx / "output") == (b"abcdef", None), 5,
             what="the whole reply, then EOF")


def test_poll_and_select_on_output(ctx, fake):
    fake.script("hold", hold_after=0)
    send(ctx, "hello\n")
    fake.wait_held(0)
    fd = os.open(ctx / "output", os.O_RDONLY | os.O_NONBLOCK)
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        assert p.poll(300) == [], "output polled readable with no reply byte"
        assert select.select([fd], [], [], 0.2)[0] == []
        fake.release()
        ev = p.poll(5000)
        assert ev and ev[0][1] & select.POLLIN
        got = b""
        end = time.monotonic() + 5
        while time.monotonic() < end:
            if not p.poll(1000):
                continue
            try:
                b = os.read(fd, 4096)
            except BlockingIOError:
                continue
            if not b:
                break
            got += b
        assert got.decode() == reply_for("hello")
        assert select.select([fd], [], [], 1)[0] == [fd]  # at EOF: readable
    finally:
        os.close(fd)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_signal_ends_blocked_cat_at_once(mount, ctx, fake, sig):
    fake.set_default("stall", stall_after=0, stall_seconds=60)
    send(ctx, "hello\n")
    fake.wait_until(lambda: fake.calls and fake.calls[0].stalled, 10, "the stall")
    # SIGINT as at a terminal, also when the test run is a background job of a
    # shell (which starts it with SIGINT ignored, and cat would inherit that)
    p = mount.spawn(["cat", str(ctx / "output")],
                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_opened(p.pid, ctx / "output")
    wait_for(lambda: blocked_in_read(p.pid), 5, what="cat to block in read")
    t0 = time.monotonic()
    os.kill(p.pid, sig)
    rc = p.wait(5)
    elapsed = time.monotonic() - t0
    assert rc == -sig
    assert elapsed < 0.5, "cat took %.2fs to die" % elapsed


@pytest.mark.mcpfs_timeout(120)
def test_waiting_readers_hold_no_worker_thread(mount, fake):
    """More blocked `cat output` than libfuse has workers (32): the mount still
    answers everything else, and every reader gets its whole reply."""
    n = 48
    fake.set_default("hold", hold_after=1)
    ctxs = [mount.ctx("r%02d" % i) for i in range(n)]
    for i, c in enumerate(ctxs):
        send(c, "reader %d\n" % i)
    fake.wait_calls(n)
    cats = [mount.spawn(["cat", str(c / "output")]) for c in ctxs]
    for p in cats:
        wait_for(lambda: blocked_in_read(p.pid), 10, what="cat to block in read")
    threads = len(os.listdir("/proc/%d/task" % mount.proc.pid))
    assert threads < n, "%d daemon threads for %d waiting readers" % (threads, n)
    # the mount is not starved: metadata, another context's whole turn
    assert len(os.listdir(mount.path)) >= n
    other = mount.ctx("other")
    fake.set_default("normal")
    send(other, "not starved\n")
    assert output(other, timeout=10) == reply_for("not starved")
    fake.release()
    for i, p in enumerate(cats):
        out, _ = p.communicate(timeout=20)
        assert p.returncode == 0 and out.decode() == reply_for("reader %d" % i)


def test_cat_streams_and_blocks_until_complete(mount, ctx, fake):
    fake.script("hold", hold_after=[2], pieces=["first ", "second ", "third"])
    send(ctx, "hello\n")
    fake.wait_held(0)
    p = mount.spawn(["cat", str(ctx / "output")])
    out = PipeReader(p.stdout)
    out.wait_text("first second ", 5)
    assert p.poll() is None, "cat ended before the reply was complete"
    fake.release()
    assert p.wait(10) == 0
    out.thread.join(5)
    assert out.text == "first second third"


def test_tail_f_shows_reply_while_it_streams(mount, ctx, fake):
    fake.script("hold", hold_after=[2], pieces=["alpha\n", "beta\n", "gamma\n", "delta\n"])
    send(ctx, "hello\n")
    call = fake.wait_held(0)
    p = mount.spawn(["tail", "-f", str(ctx / "output")])
    out = PipeReader(p.stdout)
    out.wait_text("alpha\nbeta\n", 5)
    assert call.held and not call.completed
    fake.release()
    out.wait_text("alpha\nbeta\ngamma\ndelta\n", 10)


@pytest.mark.parametrize("argv", [["tail", "-f"], ["tail", "-n", "3", "--follow"],
                                  ["/usr/bin/tail", "-F"], ["tail", "-fn3"]],
                         ids=["-f", "--follow", "-F", "-fn3"])
def test_tail_f_started_before_the_reply_follows_it(mount, ctx, fake, argv):
    """tail -f opened while the reply is still empty shows it as it streams."""
    fake.script("hold", hold_after=[0, 2], pieces=["alpha\n", "beta\n", "gamma\n", "delta\n"])
    send(ctx, "hello\n")
    fake.wait_held(0)
    p = mount.spawn(argv + [str(ctx / "output")])
    out = PipeReader(p.stdout)
    time.sleep(0.3)
    fake.release()
    out.wait_text("alpha\nbeta\n", 5)
    call = fake.wait_held(0)
    assert not call.completed and out.text == "alpha\nbeta\n"
    fake.release()
    out.wait_text("alpha\nbeta\ngamma\ndelta\n", 10)


@pytest.mark.parametrize("argv,want", [(["tail", "-n", "2"], "gamma\ndelta\n"),
                                       (["tail", "-c", "6"], "delta\n"),
                                       (["head", "-n", "1"], "alpha\n")])
def test_tail_without_follow_waits_for_the_reply(mount, ctx, fake, argv, want):
    """Only a following tail is shown an empty reply as empty: plain tail (and
    head) read the reply once it is there."""
    fake.script("hold", hold_after=[0], pieces=["alpha\n", "beta\n", "gamma\n", "delta\n"])
    send(ctx, "hello\n")
    fake.wait_held(0)
    p = mount.spawn(argv + [str(ctx / "output")])
    time.sleep(0.5)
    assert p.poll() is None, "%s returned before the reply began" % argv[0]
    fake.release()
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 0
    assert out.decode() == want


def test_thinking_is_not_in_output(ctx, fake):
    fake.script("thinking", thinking="SECRET-THOUGHTS about the answer")
    send(ctx, "hello\n")
    out = output(ctx)
    assert out == reply_for("hello")
    assert "SECRET-THOUGHTS" in read_file(ctx / "transcript")
    send(ctx, "again\n")  # a thinking block in the history must still make a valid request
    assert output(ctx) == reply_for("again")


@pytest.mark.parametrize("opts", [
    {"kind": "fragment", "fragment": 1},
    {"kind": "fragment", "fragment": "random", "ping": True},
    {"kind": "ping"},
    {"kind": "crlf"},
    {"kind": "http10"},
    {"kind": "fixture", "fixture": "stream_C"},
], ids=["1-byte-fragments", "random-fragments-ping", "ping", "crlf", "http10", "stream-C"])
def test_stream_shapes_give_exact_text(ctx, fake, opts):
    text = "Grüße — 東京 🌸 and more text"
    if opts.get("kind") != "fixture":
        opts = dict(opts, text=text)
    else:
        text = "Grüße — 東京 🌸"
    fake.script(opts)
    send(ctx, "hello\n")
    assert read_file(ctx / "output", binary=True) == text.encode()


def test_fixture_stream_a(ctx, fake):
    fake.script("fixture", fixture="stream_A")
    send(ctx, "hello\n")
    assert output(ctx) == "Hello! How can I help you today?"


@pytest.mark.mcpfs_timeout(240)
def test_huge_reply(ctx, fake):
    fake.script("huge", huge=5 << 20)
    send(ctx, "big\n")
    data = read_file(ctx / "output", timeout=120, binary=True)
    assert len(data) == 5 << 20
    assert data == fake.calls[0].reply_text.encode()
    assert os.stat(ctx / "output").st_size == 5 << 20


def test_usage_after_calls(ctx, fake):
    fake.script("fixture", fixture="stream_A")  # input 18, output 12
    send(ctx, "hello\n")
    assert output(ctx) == "Hello! How can I help you today?"
    u = parse_kv(read_file(ctx / "usage"))
    ins = [v for k, v in u.items() if "input" in k.lower()]
    outs = [v for k, v in u.items() if "output" in k.lower()]
    assert "18" in ins and "12" in outs, u
    send(ctx, "again\n")
    assert output(ctx) == reply_for("again")
    c = fake.calls[1]
    u = parse_kv(read_file(ctx / "usage"))
    ins = [v for k, v in u.items() if "input" in k.lower()]
    outs = [v for k, v in u.items() if "output" in k.lower()]
    assert str(c.input_tokens) in ins and str(18 + c.input_tokens) in ins, u
    assert str(c.output_tokens) in outs and str(12 + c.output_tokens) in outs, u


# --- renderings ---------------------------------------------------------------------------------


def two_turns(ctx):
    write_file(ctx / "system", "You are terse.\n")
    send(ctx, "hello\n")
    assert output(ctx) == reply_for("hello")
    send(ctx, "again\n")
    assert output(ctx) == reply_for("again")


def test_history_renderings(ctx, fake):
    two_turns(ctx)
    h = read_file(ctx / "history")
    for s in ("You are terse.", "hello", reply_for("hello"), "again", reply_for("again")):
        assert s in h, s
    hj = json.loads(read_file(ctx / "history.json"))
    assert set(hj) >= {"model", "system", "messages"}
    assert hj["model"] == read_file(ctx / "model").strip()
    assert content_text(hj["system"]).strip() == "You are terse."
    roles = [m["role"] for m in hj["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert [content_text(m["content"]).strip() for m in hj["messages"]] == \
        ["hello", reply_for("hello"), "again", reply_for("again")]
    t = read_file(ctx / "transcript")
    for s in ("hello", reply_for("hello"), "again", reply_for("again")):
        assert s in t, s


def test_history_json_is_what_the_next_call_sends(ctx, fake):
    two_turns(ctx)
    hj = json.loads(read_file(ctx / "history.json"))
    send(ctx, "third\n")
    assert output(ctx) == reply_for("third")
    c = fake.calls[2]
    assert [(m["role"], content_text(m["content"])) for m in hj["messages"]] == c.texts()[:-1]
    assert content_text(hj["system"]) == c.system
    assert hj["model"] == c.model


def test_system_file(ctx, fake):
    write_file(ctx / "system", "You are terse.\nAnswer in English.\n")
    assert read_file(ctx / "system").rstrip("\n") == "You are terse.\nAnswer in English."
    send(ctx, "hello\n")
    assert output(ctx) == reply_for("hello")
    assert fake.calls[0].system.strip() == "You are terse.\nAnswer in English."
    write_file(ctx / "system", "")
    assert read_file(ctx / "system") == ""
    send(ctx, "again\n")
    assert output(ctx) == reply_for("again")
    assert fake.calls[1].system == ""  # empty: no system prompt


def test_model_file(ctx, fake):
    assert read_file(ctx / "model") == "claude-sonnet-5-5\n"
    r = run("echo claude-haiku-4-5 > '%s/model'" % ctx)
    assert r.rc == 0, r
    assert read_file(ctx / "model") == "claude-haiku-4-5\n"
    send(ctx, "hello\n")
    assert output(ctx) == reply_for("hello")
    assert fake.calls[0].model == "claude-haiku-4-5"
    assert json.loads(read_file(ctx / "history.json"))["model"] == "claude-haiku-4-5"


def test_config_file(ctx, fake):
    # The default model (Claude 5) refuses temperature: one that takes it.
    write_file(ctx / "config", "model = claude-haiku-4-5\nmax_tokens = 123\ntemperature = 0.5\n")
    cfg = parse_kv(read_file(ctx / "config"), "=")
    assert cfg["max_tokens"] == "123"
    assert float(cfg["temperature"]) == 0.5
    send(ctx, "hello\n")
    assert output(ctx) == reply_for("hello")
    assert fake.calls[0].body["max_tokens"] == 123
    assert fake.calls[0].body["temperature"] == 0.5


@pytest.mark.parametrize("text", [
    "max_tokens = banana\n", "frobnicate = 1\n", "temperature = 7\n", "max_tokens\n",
    "max_tokens = 100\nbudget_tokens = -3\n",
], ids=["not-a-number", "unknown-key", "out-of-range", "no-value", "second-line-bad"])
@pytest.mark.allow_errors()
def test_invalid_config_is_einval_and_changes_nothing(ctx, fake, text):
    write_file(ctx / "config", "max_tokens = 321\n")
    before = read_file(ctx / "config")
    with pytest.raises(OSError) as ei:
        write_file(ctx / "config", text)
    assert ei.value.errno == errno.EINVAL
    assert read_file(ctx / "config") == before
    send(ctx, "hello\n")
    assert output(ctx) == reply_for("hello")
    assert fake.calls[0].body["max_tokens"] == 321


@pytest.mark.allow_errors()
def test_invalid_model_is_einval_and_changes_nothing(ctx):
    with pytest.raises(OSError) as ei:
        write_file(ctx / "model", "not a model!\n")
    assert ei.value.errno == errno.EINVAL
    assert read_file(ctx / "model") == "claude-sonnet-5-5\n"


def test_root_config_sets_defaults_for_new_contexts(mount, fake):
    write_file(mount.path / ".config", "max_tokens = 777\n")
    assert parse_kv(read_file(mount.path / ".config"), "=")["max_tokens"] == "777"
    c = mount.ctx("n")
    assert parse_kv(read_file(c / "config"), "=")["max_tokens"] == "777"
    send(c, "hello\n")
    assert output(c) == reply_for("hello")
    assert fake.calls[0].body["max_tokens"] == 777


@pytest.mark.allow_errors()
def test_invalid_root_config_is_einval(mount):
    before = read_file(mount.path / ".config")
    with pytest.raises(OSError) as ei:
        write_file(mount.path / ".config", "max_tokens = lots\n")
    assert ei.value.errno == errno.EINVAL
    assert read_file(mount.path / ".config") == before


@pytest.mark.mcpfs_args("--model=claude-haiku-4-5", "--max-tokens=2000", "--budget-tokens=50000")
def test_command_line_defaults(ctx, fake):
    assert read_file(ctx / "model").strip() == "claude-haiku-4-5"
    cfg = parse_kv(read_file(ctx / "config"), "=")
    assert cfg["max_tokens"] == "2000" and cfg["budget_tokens"] == "50000"
    send(ctx, "hello\n")
    assert output(ctx) == reply_for("hello")
    assert fake.calls[0].model == "claude-haiku-4-5"
    assert fake.calls[0].max_tokens == 2000


def test_ctl_clear_empties_history(ctx, fake):
    two_turns(ctx)
    write_file(ctx / "ctl", "clear\n")
    hj = json.loads(read_file(ctx / "history.json"))
    assert hj["messages"] == []
    assert "hello" in read_file(ctx / "transcript")
    send(ctx, "fresh\n")
    assert output(ctx) == reply_for("fresh")
    assert texts(fake.calls[2]) == [("user", "fresh")]
