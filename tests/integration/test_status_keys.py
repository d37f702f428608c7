"""`status` says one thing (CONTRACT §2, issue 11 point 6): the first line is
the context as a whole (idle | queued | waiting | streaming | error), every
other key has one meaning — the newest turn's keys are named `turn_*` (with
`stop_reason`, `request_id`, `last_error` of that turn), the call in flight's
`call_*` and `retrying`, a refused write `last_refused` — and every key is
documented in README and the man page.  The combinations that contradicted
themselves before: queued behind a streaming turn, a refused write after a
failed turn, retries of a call, `retry` of a failed turn.
"""

import re

from mcpfs_testlib import (
    REPO, output, read_file, reply_for, run, send, status, wait_for, wait_status, write_file,
)

# Every key `status` may print after its first line, in README's table order.
KEYS = ["turn", "queued", "model", "turn_state", "turn_attempt", "turn_output_bytes",
        "turn_retries", "stop_reason", "turn_history", "turn_source", "request_id", "continued", "paused",
        "turn_request",
        "last_error", "http_status", "error_request_id",
        "call_turn", "call_retries", "retrying", "last_refused", "journal_error",
        "store", "journal_recovered", "journal", "journal_fsync", "summary", "summary_call",
        "summary_error", "model_check", "lifecycle",
        "ignored", "attach", "attachments_lost"]
WORDS = ("idle", "queued", "waiting", "streaming", "summarizing", "error")


def check(st):
    """Only documented keys, each once, and the first line one of the words."""
    assert st.state in WORDS, st.text
    keys = [ln.split(":", 1)[0] for ln in st.text.splitlines()[1:]]
    assert len(keys) == len(set(keys)), st.text
    unknown = [k for k in keys if k not in KEYS]
    assert unknown == [], "undocumented status keys %r:\n%s" % (unknown, st.text)
    # the old keys whose meaning clashed are gone
    assert not re.search(r"(?m)^(state|attempt|output_bytes):", st.text), st.text
    return st


def test_queued_behind_a_streaming_turn(mount, fake):
    c = mount.ctx("c")
    fake.script("hold", hold_after=1)
    send(c, "first\n")
    fake.wait_held(0)
    st = check(wait_status(c, "streaming"))
    assert st["turn"] == "1" and st["turn_state"] == "streaming", st.text
    assert st["call_turn"] == "1" and st["queued"] == "0", st.text
    send(c, "second\n")
    st = check(status(c))
    # the context streams turn 1; the newest turn, 2, is queued behind it
    assert st.state == "streaming", st.text
    assert st["turn"] == "2" and st["turn_state"] == "queued", st.text
    assert st["call_turn"] == "1" and st["queued"] == "1", st.text
    assert st["turn_output_bytes"] == "0", st.text
    fake.release()
    assert output(c) == reply_for("second")
    st = check(wait_status(c, "idle"))
    assert st["turn"] == "2" and st["turn_state"] == "done", st.text
    assert st["stop_reason"] == "end_turn" and st.get("call_turn") is None, st.text


def test_refused_write_after_a_failed_turn(mount, fake):
    c = mount.ctx("c")
    fake.script("status", status=400, error_type="invalid_request_error",
                error_message="bad thing")
    send(c, "fails\n")
    st = check(wait_status(c, "error"))
    assert st["turn_state"] == "failed", st.text
    assert st["last_error"] == "invalid_request_error: bad thing", st.text
    assert st["http_status"] == "400", st.text
    r = run("printf 'caf\\351\\n' > '%s/input'" % c)
    assert r.rc != 0, r
    st = check(status(c))
    # the failed call is still what last_error says; the refusal is apart
    assert st.state == "error" and st["turn_state"] == "failed", st.text
    assert st["last_error"] == "invalid_request_error: bad thing", st.text
    assert st["last_refused"].startswith("write of input: message is not valid UTF-8"), st.text

    # a later complete turn: idle, done, neither error key
    send(c, "works\n")
    assert output(c) == reply_for("works")
    st = check(wait_status(c, "idle"))
    assert st["turn_state"] == "done", st.text
    assert st.get("last_error") is None and st.get("last_refused") is None, st.text
    # a refused write after a complete turn: still idle, not `error`
    r = run("echo 'temperature = 9' > '%s/config'" % c)
    assert r.rc != 0, r
    st = check(status(c))
    assert st.state == "idle" and st["turn_state"] == "done", st.text
    assert st.get("last_error") is None and "temperature" in st["last_refused"], st.text


def test_retries_of_a_call_and_retry_of_a_turn(mount, fake):
    c = mount.ctx("c")
    # two overloaded answers; after the second the server asks for 60 s
    fake.script_many({"kind": "status", "status": 529},
                     {"kind": "status", "status": 529, "retry_after": 60})

    def second_retry():
        st = status(c)
        return st if st.get("call_retries") == "2 of 2" else None
    send(c, "busy\n")
    st = check(wait_for(second_retry, 20, what="the second retry"))
    # one turn, its first attempt, whose call waits to be retried a 2nd time
    assert st.state == "waiting", st.text
    assert st["turn_attempt"] == "1" and st["turn_state"] == "waiting", st.text
    assert st["call_turn"] == "1", st.text
    assert st["retrying"].startswith("after overloaded_error"), st.text
    assert st.get("last_error") is None, st.text
    write_file(c / "ctl", "cancel\n")
    st = check(wait_status(c, "error"))
    assert st["last_error"].startswith("cancelled"), st.text
    assert st.get("retrying") is None and st.get("call_retries") is None, st.text

    # `retry` of the failed turn is the turn's second attempt
    write_file(c / "ctl", "retry\n")
    assert output(c) == reply_for("busy")
    st = check(wait_status(c, "idle"))
    assert st["turn"] == "1" and st["turn_attempt"] == "2", st.text
    assert st["turn_state"] == "done" and st.get("last_error") is None, st.text
    assert len(fake.calls) == 3


def test_every_status_key_is_documented():
    readme = read_file(REPO / "README.md")
    man = read_file(REPO / "packaging" / "man" / "mcpfs.1.scd")
    for k in KEYS:
        assert re.search(r"\| `%s` \|" % re.escape(k), readme), "README: no row for %s" % k
        assert re.search(r"(?m)^\|  \*%s\*$" % re.escape(k.replace("_", "\\_")), man), \
            "man page: no row for %s" % k
    for w in WORDS:
        assert re.search(r"\| `%s` \|" % w, readme), "README: no row for %s" % w
