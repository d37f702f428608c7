"""CONTRACT §3.7-§3.8 and §5: failed turns, retries, ctl cancel/retry, the
missing API key, and pruning to the token budget."""

import errno
import json
import re

import pytest

from mcpfs_testlib import (
    Reader, content_text, output, read_file, read_partial, reply_for, run, send, status,
    wait_for, wait_status, write_file,
)

# Every test here makes calls fail on purpose; the daemon may log them as errors.
pytestmark = pytest.mark.allow_errors()


def cat(ctx, timeout=30):
    return run(["cat", str(ctx / "output")], timeout=timeout)


def assert_failed_read(ctx, partial):
    """`cat output` prints the partial text, then fails with EIO."""
    r = cat(ctx)
    assert r.rc != 0, r
    assert "Input/output error" in r.err, r
    assert r.out == partial
    data, err = read_partial(ctx / "output")
    assert data.decode() == partial
    assert err is not None and err.errno == errno.EIO


def assert_error_status(ctx, fake, *needles):
    st = wait_status(ctx, "error", 20)
    for n in needles:
        assert re.search(n, st.text, re.I), "%r not in status:\n%s" % (n, st.text)
    ids = [c.request_id for c in fake.calls]
    assert any(i in st.text for i in ids), "no request id of %r in status:\n%s" % (ids, st.text)
    return st


# --- failed turns ----------------------------------------------------------------------------------


def test_mid_stream_error_gives_partial_text_then_eio(ctx, fake):
    fake.set_default("error", error_after=2, error_type="overloaded_error",
                     error_message="Overloaded")
    r = run("echo hello > '%s/input'; cat '%s/output'" % (ctx, ctx), timeout=30)
    partial = fake.calls[-1].text_sent
    assert partial == "reply to"
    assert r.rc != 0 and "Input/output error" in r.err, r
    assert r.out == partial
    assert_error_status(ctx, fake, "overloaded_error", "Overloaded")
    assert_failed_read(ctx, partial)


def test_no_retry_once_a_reader_got_bytes(ctx, fake):
    fake.set_default("hold", hold_after=1, error_after=1)
    send(ctx, "hello\n")
    call = fake.wait_held(0)
    reader = Reader(ctx / "output")
    wait_for(lambda: reader.data == call.text_sent.encode(), 10, what="the first delta")
    fake.release()
    reader.finish(10)
    assert reader.data.decode() == call.text_sent
    assert reader.error is not None and reader.error.errno == errno.EIO
    assert_error_status(ctx, fake, "overloaded_error")
    assert len(fake.calls) == 1


def test_recorded_error_stream_b(ctx, fake):
    fake.set_default("fixture", fixture="stream_B")
    send(ctx, "primes?\n")
    assert_error_status(ctx, fake, "overloaded_error")
    assert_failed_read(ctx, "The first three primes are 2, 3")


def test_disconnect_mid_stream_fails_the_turn(ctx, fake):
    fake.set_default("disconnect", disconnect_after=2)
    send(ctx, "hello\n")
    st = wait_status(ctx, "error", 20)
    assert any(c.request_id in st.text for c in fake.calls), st.text
    assert_failed_read(ctx, "reply to")


def test_idle_timeout_fails_a_stalled_stream(ctx, fake):
    write_file(ctx / "config", "idle_timeout = 1\nmax_retries = 0\n")
    fake.set_default("stall", stall_after=1, stall_seconds=60)
    send(ctx, "hello\n")
    st = wait_status(ctx, "error", 15)
    assert re.search(r"time", st.text, re.I), st.text
    assert_failed_read(ctx, "repl")
    assert len(fake.calls) == 1


@pytest.mark.parametrize("code,etype", [
    (400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
    (404, "not_found_error"), (413, None),
])
def test_client_errors_are_not_retried(ctx, fake, code, etype):
    if etype:
        fake.script("status", status=code)
    else:
        fake.script("status", status=code, body="html")  # Cloudflare's page, not JSON
    send(ctx, "hello\n")
    st = assert_error_status(ctx, fake, etype or str(code))
    assert len(fake.calls) == 1
    assert_failed_read(ctx, "")
    assert st.state == "error"


@pytest.mark.parametrize("code", [408, 409, 429, 500, 502, 503, 529])
def test_retryable_statuses_are_retried(ctx, fake, code):
    fake.script("status", status=code, times=2)
    send(ctx, "hello\n")
    assert output(ctx, timeout=30) == reply_for("hello")
    assert len(fake.calls) == 3
    assert all(c.last_user_text == fake.calls[0].last_user_text for c in fake.calls)
    assert wait_status(ctx, "idle").state == "idle"


def test_connection_errors_are_retried(ctx, fake):
    fake.script("drop", times=2)
    send(ctx, "hello\n")
    assert output(ctx, timeout=30) == reply_for("hello")
    assert len(fake.calls) == 3


def test_retries_give_up_after_max_retries(ctx, fake):
    fake.set_default("status", status=529)
    send(ctx, "hello\n")
    assert_error_status(ctx, fake, "overloaded_error")
    assert len(fake.calls) == 3  # the first attempt and 2 retries
    assert_failed_read(ctx, "")


def test_max_retries_setting(ctx, fake):
    write_file(ctx / "config", "max_retries = 0\n")
    fake.set_default("status", status=529)
    send(ctx, "hello\n")
    assert_error_status(ctx, fake, "overloaded_error")
    assert len(fake.calls) == 1


def test_retry_after_is_honoured(ctx, fake):
    fake.script("status", status=429, retry_after=1)
    send(ctx, "hello\n")
    assert output(ctx, timeout=30) == reply_for("hello")
    calls = fake.calls
    assert len(calls) == 2
    gap = calls[1].mono - calls[0].mono
    assert gap >= 0.9, "retried after %.2fs despite retry-after: 1" % gap


def test_ctl_retry_sends_the_turn_again(ctx, fake):
    fake.script("status", status=400, error_message="bad thing")
    send(ctx, "hello\n")
    assert_error_status(ctx, fake, "invalid_request_error", "bad thing")
    assert len(fake.calls) == 1
    write_file(ctx / "ctl", "retry\n")
    assert output(ctx) == reply_for("hello")
    calls = fake.wait_calls(2, done=True)
    assert len(calls) == 2
    assert calls[1].last_user_text == calls[0].last_user_text
    assert calls[1].n_messages == 1
    assert wait_status(ctx, "idle")


def test_ctl_cancel_during_stream(ctx, fake):
    fake.script("hold", hold_after=2)
    send(ctx, "hello\n")
    call = fake.wait_held(0)
    reader = Reader(ctx / "output")
    wait_for(lambda: reader.data == call.text_sent.encode(), 10, what="two deltas")
    r = run("echo cancel > '%s/ctl'" % ctx)
    assert r.rc == 0, r
    reader.finish(10)
    assert reader.data.decode() == call.text_sent
    assert reader.error is not None and reader.error.errno == errno.EIO
    st = wait_status(ctx, "error", 10)
    assert re.search(r"cancel", st.text, re.I), st.text
    fake.wait_until(lambda: call.closed_by_client, 10, "the daemon to close the call")
    assert_failed_read(ctx, call.text_sent)
    assert len(fake.calls) == 1


def test_ctl_cancel_ends_only_the_call_in_flight(ctx, fake):
    """CONTRACT §3.4: queued messages are never dropped; cancel ends the call in
    flight, and the messages queued behind it go next, in order."""
    fake.script("hold", hold_after=1)
    send(ctx, "first\n")
    call = fake.wait_held(0)
    first = Reader(ctx / "output")
    send(ctx, "second\n")
    send(ctx, "third\n")
    assert status(ctx).get("queued") == "2", status(ctx).text
    r = run("echo cancel > '%s/ctl'" % ctx)
    assert r.rc == 0, r
    first.finish(10)
    assert first.error is not None and first.error.errno == errno.EIO
    fake.wait_until(lambda: call.closed_by_client, 10, "the daemon to close the call")
    fake.release()
    assert output(ctx, timeout=20) == reply_for("third")
    calls = fake.wait_calls(3)
    assert [c.last_user_text.strip() for c in calls] == ["first", "second", "third"]
    # the cancelled exchange is not history; the others are
    assert calls[2].user_texts[:-1] == ["second\n"] and calls[2].n_messages == 3
    t = read_file(ctx / "transcript")
    assert re.search(r"turn 1, failed: cancelled", t), t
    assert wait_status(ctx, "idle")


def test_next_message_after_failed_turn_is_sent(ctx, fake):
    fake.script("status", status=400)
    send(ctx, "broken\n")
    wait_status(ctx, "error", 20)
    send(ctx, "next\n")
    assert output(ctx) == reply_for("next")
    assert fake.calls[-1].last_user_text.strip() == "next"
    assert wait_status(ctx, "idle")


def test_failed_mid_stream_turn_then_next_message(ctx, fake):
    fake.set_default("error", error_after=2)
    send(ctx, "first\n")
    wait_status(ctx, "error", 20)
    fake.set_default("normal")
    send(ctx, "second\n")
    assert output(ctx) == reply_for("second")


@pytest.mark.fake_invalid_ok
@pytest.mark.mcpfs_env(ANTHROPIC_API_KEY=None)
def test_missing_api_key_fails_each_call_clearly(mount, fake):
    c = mount.ctx("c")
    send(c, "hello\n")
    st = wait_status(c, "error", 20)
    assert re.search(r"api[ _-]?key", st.text, re.I), st.text
    data, err = read_partial(c / "output")
    assert data == b"" and err is not None and err.errno == errno.EIO
    assert all("x-api-key" not in call.headers for call in fake.calls)


@pytest.mark.mcpfs_env(ANTHROPIC_API_KEY=None, ANTHROPIC_AUTH_TOKEN="test-token-not-real")
def test_auth_token_is_sent_as_bearer(mount, fake):
    fake.auth_token = "test-token-not-real"
    c = mount.ctx("c")
    send(c, "hello\n")
    assert output(c) == reply_for("hello")
    h = fake.calls[0].headers
    assert h["authorization"] == "Bearer test-token-not-real"
    assert "x-api-key" not in h


# --- pruning (CONTRACT §5) ----------------------------------------------------------------------------


def long_message(i, chars=2400):
    head = "message %d: " % i
    return head + ("lorem ipsum dolor sit amet " * (chars // 27 + 1))[:chars - len(head)]


def test_pruning_sends_only_what_fits(ctx, fake):
    write_file(ctx / "config", "budget_tokens = 2000\nprune = drop\n")
    n = 6
    for i in range(1, n + 1):
        msg = long_message(i)
        send(ctx, msg + "\n")
        assert output(ctx) == reply_for(msg)
    last = fake.calls[-1]
    assert last.roles[0] == "user"
    assert last.n_messages % 2 == 1
    assert last.n_messages < 2 * n - 1, "nothing was pruned: %d messages" % last.n_messages
    assert last.last_user_text.strip() == long_message(n)
    # whole exchanges dropped oldest first: what is left is the newest ones
    kept = [t.strip() for t in last.user_texts]
    assert kept == [long_message(i) for i in range(n - len(kept) + 1, n + 1)]
    # every call fits the budget by the fake's own estimate, with slack for the
    # daemon's estimator (chars/4 is what the fake reports as input_tokens)
    assert all(c.input_tokens <= 2000 * 1.5 for c in fake.calls)
    hj = json.loads(read_file(ctx / "history.json"))
    assert len(hj["messages"]) < 2 * n
    assert [m["role"] for m in hj["messages"]][:1] in (["user"], [])
    assert re.search(r"prun", read_file(ctx / "history"), re.I)
    t = read_file(ctx / "transcript")
    for i in range(1, n + 1):
        assert "message %d: " % i in t


def test_pruning_is_calibrated_by_the_tokens_the_api_counts(mount, fake):
    """CONTRACT §5: the estimate is corrected with the input_tokens the API
    reports.  Two contexts get the same conversation; for one the API counts
    three times the tokens (a denser tokenizer).  That one must keep fewer
    exchanges, and keep what it sends within the budget by the API's count."""
    budget, n = 6000, 12
    sent = {}
    for name, scale in (("light", 1.0), ("dense", 3.0)):
        c = mount.ctx(name)
        write_file(c / "config", "budget_tokens = %d\nprompt_cache = off\nprune = drop\n"
                   % budget)
        fake.set_default("normal", input_tokens_scale=scale)
        first = len(fake.calls)
        for i in range(1, n + 1):
            msg = long_message(i, 1600)
            send(c, msg + "\n")
            assert output(c) == reply_for(msg)
        calls = fake.calls[first:]
        sent[name] = calls
        for call in calls:
            assert call.roles[0] == "user"
            assert all(a != b for a, b in zip(call.roles, call.roles[1:])), call.roles
    light, dense = sent["light"][-1], sent["dense"][-1]
    assert dense.n_messages < light.n_messages, (dense.n_messages, light.n_messages)
    # Once calibrated (the first calls teach it), what is sent fits the budget
    # as the API counts it.
    for call in sent["dense"][4:]:
        assert call.input_tokens <= budget, [c.input_tokens for c in sent["dense"]]
    assert light.input_tokens > budget // 2  # the light one really uses its budget


def test_message_alone_over_budget_fails_its_write(ctx, fake):
    """CONTRACT §3.3, §5: a message whose estimate alone exceeds budget_tokens
    fails the write that takes it over (EFBIG); nothing is sent."""
    write_file(ctx / "config", "budget_tokens = 2000\n")
    with pytest.raises(OSError) as ei:
        send(ctx, long_message(1, 12000) + "\n")
    assert ei.value.errno == errno.EFBIG
    st = status(ctx)
    assert st.state == "idle", st.text
    assert re.search(r"over budget_tokens \(2000\)", st.get("last_refused", "")), st.text
    assert fake.calls == []
    send(ctx, "small\n")  # the context still works
    assert output(ctx) == reply_for("small")
    assert [content_text(m["content"]).strip() for m in fake.calls[0].messages][-1] == "small"


def test_message_with_system_prompt_over_budget_fails_without_a_call(ctx, fake):
    """With the system prompt the message no longer fits: the turn fails
    before any call, with the reason in last_error."""
    write_file(ctx / "config", "budget_tokens = 2000\n")
    write_file(ctx / "system", long_message(0, 4000))
    send(ctx, long_message(1, 4000) + "\n")
    st = wait_status(ctx, "error", 10)
    assert re.match(r"budget_exceeded: .*budget", st.get("last_error", "")), st.text
    assert st.get("turn_state") == "failed", st.text
    assert fake.calls == []
    data, err = read_partial(ctx / "output")
    assert data == b"" and err is not None and err.errno == errno.EIO
    write_file(ctx / "system", "")
    send(ctx, "small\n")
    assert output(ctx) == reply_for("small")
