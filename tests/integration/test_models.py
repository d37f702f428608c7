"""Current Claude models (CONTRACT §8): requests shaped from the Models API's
capabilities for each generation, settings a model does not take named in
`status`, deprecated and retired models, `.models`, model ids checked when
written, and the capability cache (memory, state dir, one day).

The fake serves the Models API and refuses what the real API refuses (a budget
to an adaptive-only model, temperature to the Claude 5 family, an effort level
a model lacks...), so a request it accepts is well-formed for its model."""

import math

import pytest

from mcpfs_testlib import (
    read_file, read_partial, reply_for, run, send, output, status, wait_for, wait_status,
    write_file,
)
from http_support import client, shim, shim_factory  # noqa: F401  (fixtures)


def configure(ctx, model, config):
    write_file(ctx / "model", model + "\n")
    write_file(ctx / "config", "prompt_cache = off\n" + config)


# (model, config lines, the request's thinking, its output_config, status `ignored`)
SHAPES = [
    # Claude 5: adaptive thinking only, effort levels, no temperature
    ("claude-sonnet-5-5", "thinking = on\neffort = high\n",
     {"type": "adaptive"}, {"effort": "high"}, None),
    ("claude-sonnet-5-5", "thinking = 2048\n", {"type": "adaptive"}, None, None),
    ("claude-sonnet-5-5", "thinking_budget = 2048\n", {"type": "adaptive"}, None, None),
    ("claude-sonnet-5-5", "thinking = off\neffort = max\n", None, {"effort": "max"}, None),
    ("claude-sonnet-5-5", "effort = xhigh\n", None, None,
     "effort xhigh (the model takes low, medium, high, max)"),
    ("claude-mythos-5-1", "thinking = on\neffort = xhigh\n",
     {"type": "adaptive"}, {"effort": "xhigh"}, None),
    ("claude-opus-5-1", "thinking = 3000\neffort = low\n",
     {"type": "adaptive"}, {"effort": "low"}, None),
    ("claude-fable-5-1", "effort = max\n", None, None,
     "effort max (the model takes low, medium, high)"),
    # 4.6: both forms, effort
    ("claude-sonnet-4-6", "thinking = 2048\neffort = medium\n",
     {"type": "enabled", "budget_tokens": 2048}, {"effort": "medium"}, None),
    ("claude-sonnet-4-6", "thinking = on\n", {"type": "adaptive"}, None, None),
    # 4.5 and older: budgets only, no effort
    ("claude-sonnet-4-5", "max_tokens = 8000\nthinking = on\neffort = high\n",
     {"type": "enabled", "budget_tokens": 2000}, None, "effort (the model takes none)"),
    ("claude-haiku-4-5", "thinking = on\n", {"type": "enabled", "budget_tokens": 1024}, None,
     None),
    ("claude-sonnet-4-5", "thinking = 3000\n", {"type": "enabled", "budget_tokens": 3000},
     None, None),
    ("claude-haiku-4-5", "max_tokens = 1024\nthinking = on\n", None, None,
     "thinking (max_tokens leaves no room for a budget of 1024)"),
    # no thinking at all
    ("claude-test-model", "thinking = on\neffort = low\n", None, None,
     "thinking (the model takes none), effort (the model takes none)"),
    ("claude-sonnet-5-5", "thinking = off\n", None, None, None),
]


@pytest.mark.parametrize("model,config,thinking,oc,ignored", SHAPES)
def test_request_is_shaped_from_the_capabilities(ctx, fake, model, config, thinking, oc,
                                                 ignored):
    configure(ctx, model, config)
    send(ctx, "hello\n")
    assert output(ctx) == reply_for("hello")
    body = fake.calls[-1].body
    max_tokens = int(dict(line.split(" = ") for line in
                          read_file(ctx / "config").splitlines())["max_tokens"])
    want = {"model": model, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "hello\n"}], "stream": True}
    if thinking:
        want["thinking"] = thinking
    if oc:
        want["output_config"] = oc
    assert body == want
    assert list(body) == [k for k in ("model", "max_tokens", "messages", "thinking",
                                      "output_config", "stream") if k in want]
    assert status(ctx).get("ignored") == ignored


def test_temperature_is_sent_only_when_set(ctx, fake):
    configure(ctx, "claude-haiku-4-5", "")
    send(ctx, "one\n")
    assert output(ctx) == reply_for("one")
    assert "temperature" not in fake.calls[-1].body
    write_file(ctx / "config", "temperature = 0.3\n")
    send(ctx, "two\n")
    assert output(ctx) == reply_for("two")
    assert fake.calls[-1].body["temperature"] == 0.3
    write_file(ctx / "config", "temperature = default\n")
    send(ctx, "three\n")
    assert output(ctx) == reply_for("three")
    assert "temperature" not in fake.calls[-1].body


@pytest.mark.allow_errors(r"invalid_request_error")
@pytest.mark.fake_invalid_ok
def test_temperature_to_claude_5_fails_with_the_api_message(ctx, fake):
    configure(ctx, "claude-sonnet-5-5", "temperature = 0.3\n")
    send(ctx, "hi\n")
    data, err = read_partial(ctx / "output")
    assert data == b"" and err is not None and err.errno == 5  # EIO
    st = wait_status(ctx, "error")
    assert st["last_error"].startswith("invalid_request_error: temperature:")
    assert fake.calls[-1].body["temperature"] == 0.3  # sent as the user set it


def test_deprecated_model_says_so_and_still_calls(ctx, fake):
    configure(ctx, "claude-opus-4-1", "")
    # the write asked for the list too: the advice is there before any turn
    wait_for(lambda: "claude-opus-5-1" in (status(ctx).get("lifecycle") or ""), 10,
             what="the advice in status")
    send(ctx, "hi\n")
    assert output(ctx) == reply_for("hi")
    assert fake.calls[-1].model == "claude-opus-4-1"
    assert status(ctx)["lifecycle"] == (
        "claude-opus-4-1 is deprecated (retires 2027-01-05); the newest active model of "
        "line 'claude-opus' is claude-opus-5-1")


@pytest.mark.allow_errors(r"model_retired")
def test_retired_model_fails_the_turn_before_any_call(ctx, fake):
    configure(ctx, "claude-3-5-haiku-20241022", "")
    n = len(fake.calls)
    r = run("cat '%s/input' >/dev/null; echo hi > '%s/input'; cat '%s/output'"
            % (ctx, ctx, ctx))
    assert r.rc != 0 and "Input/output error" in r.err, r
    st = wait_status(ctx, "error")
    advice = ("claude-3-5-haiku-20241022 is retired (retired 2026-02-19); the newest active "
              "model of line 'claude-haiku' is claude-haiku-4-5")
    assert st["last_error"] == "model_retired: " + advice
    assert st["lifecycle"] == advice
    assert len(fake.calls) == n  # no call


def test_models_file_lists_every_page_newest_first(mount, fake):
    fake.models_page_max = 3
    text = read_file(mount.path / ".models")
    want = ["%s\t%s\t%s\t%d" % (m["id"], m["display_name"], m["lifecycle"],
                                m["max_input_tokens"]) for m in fake.models]
    assert text.splitlines() == want
    pages = [r for r in fake.models_requests if r.path == "/v1/models"]
    assert len(pages) == math.ceil(len(want) / 3)
    assert pages[0].query == "limit=1000"
    assert pages[1].query == "limit=1000&after_id=" + want[2].split("\t")[0]
    # cut -f works on it; a second read within the day asks nothing more
    r = run("cut -f1 '%s/.models'" % mount.path)
    assert r.rc == 0 and r.out.split() == [m["id"] for m in fake.models]
    assert len([r for r in fake.models_requests if r.path == "/v1/models"]) == len(pages)
    assert "claude-3-5-haiku-20241022\tClaude Haiku 3.5\tretired\t200000" in text


def test_unknown_model_write_is_einval_in_bash(mount, fake):
    c = mount.ctx("c")
    r = run("echo claude-nope-9 > '%s/model'" % c)
    assert r.rc != 0 and "Invalid argument" in r.err, r
    assert read_file(c / "model") == "claude-sonnet-5-5\n"
    r = run("echo 'model = claude-nope-9' > '%s/config'" % c)
    assert r.rc != 0 and "Invalid argument" in r.err, r
    r = run("echo 'model = claude-nope-9' > '%s/.config'" % mount.path)
    assert r.rc != 0 and "Invalid argument" in r.err, r
    assert "model = claude-sonnet-5-5" in read_file(mount.path / ".config")
    # a model the API knows is accepted, and checked once
    r = run("echo claude-opus-5-1 > '%s/model'" % c)
    assert r.rc == 0, r
    assert [r.path for r in fake.models_requests].count("/v1/models/claude-nope-9") == 1
    assert status(c).get("model_check") is None


def test_offline_model_write_is_accepted_unchecked(mount_factory):
    m = mount_factory(base_url="http://127.0.0.1:9")  # nothing listens there
    c = m.ctx("c")
    r = run("echo claude-opus-5-1 > '%s/model'" % c)
    assert r.rc == 0, r
    assert read_file(c / "model") == "claude-opus-5-1\n"
    assert status(c)["model_check"].startswith("unchecked (")
    # .models offline: one comment line, and cat exits 0
    r = run("cat '%s/.models'" % m.path)
    assert r.rc == 0 and r.out.startswith("# cannot list models: "), r


def test_capability_cache_survives_a_remount(mount, fake):
    c = mount.ctx("c")
    send(c, "one\n")
    assert output(c) == reply_for("one")
    gets = [r.path for r in fake.models_requests]
    assert gets == ["/v1/models/claude-sonnet-5-5"]
    assert (mount.state / "models.json").is_file()
    mount.remount()
    write_file(c / "config", "thinking = on\n")
    send(c, "two\n")
    assert output(c) == reply_for("two")
    assert fake.calls[-1].body["thinking"] == {"type": "adaptive"}
    assert [r.path for r in fake.models_requests] == gets  # nothing asked again


def test_models_calls_per_100_turns(mount, fake):
    c = mount.ctx("c")
    for i in range(100):
        send(c, "turn %d\n" % i)
        assert output(c) == reply_for("turn %d" % i)
    assert len(fake.calls) == 100
    n = len(fake.models_requests)
    print("calls to /v1/models per 100 turns: %d" % n)
    assert n <= 1


@pytest.mark.allow_errors(r"invalid_request_error")
@pytest.mark.fake_invalid_ok
def test_without_capabilities_only_what_the_user_set_is_sent(mount, fake):
    fake.models_status = 500  # the Models API fails; the Messages API works
    c = mount.ctx("c")
    write_file(c / "config", "prompt_cache = off\nthinking = 2048\neffort = high\n")
    send(c, "hi\n")
    read_partial(c / "output")
    body = fake.calls[-1].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["output_config"] == {"effort": "high"}
    st = wait_status(c, "error")  # Sonnet 5.5 takes no budget: the API says so
    assert "thinking.type.enabled is not supported" in st["last_error"]
    assert st["model_check"].startswith("unchecked (HTTP 500: api_error")
    assert st.get("ignored") is None


def test_shim_checks_model_ids_and_takes_the_new_keys(client, shim, fake):
    r = client.request("POST", "/v1/contexts", {"name": "s", "model": "claude-nope-9"})
    assert r.status == 400 and r.json()["error"]["type"] == "invalid_request_error", r
    assert client.request("GET", "/v1/contexts/s").status == 404  # nothing was created
    r = client.request("POST", "/v1/contexts", {"name": "s", "model": "claude-sonnet-4-6",
                                                "config": {"thinking": 2048, "effort": "low",
                                                           "prompt_cache": False}})
    assert r.status == 201, r
    r = client.request("PATCH", "/v1/contexts/s", {"model": "claude-nope-9"})
    assert r.status == 400 and "does not exist" in r.json()["error"]["message"], r
    r = client.request("PATCH", "/v1/contexts/s", {"config": {"model": "claude-nope-9"}})
    assert r.status == 400 and "does not exist" in r.json()["error"]["message"], r
    info = client.request("GET", "/v1/contexts/s").json()
    assert info["model"] == "claude-sonnet-4-6"
    assert info["config"]["thinking"] == 2048 and info["config"]["effort"] == "low"
    send(shim.path / "s", "hi\n")
    assert output(shim.path / "s") == reply_for("hi")
    assert fake.calls[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert fake.calls[-1].body["output_config"] == {"effort": "low"}
