"""Server tools (CONTRACT §8): `tools = web_search, web_fetch` in config sends
Anthropic's server tools in the version the model takes (the capability cache:
server_tools, code_execution), leaves them out for a model that takes none and
names them under `ignored:`, refuses an unknown tool name at the write, and
`output` shows only the reply's text when server_tool_use, result and citation
blocks come between its text blocks.

The fake answers a request with server tools in the real wire shape (a text
block, server_tool_use with input_json_delta, web_search_tool_result /
web_fetch_tool_result, then text opening with a citations_delta) and refuses,
as the API does, a tool version the model does not take and an unknown type,
so a request it accepts is well-formed for its model."""

import http.client
import json

import pytest

from mcpfs_testlib import (
    API_VERSION, DEFAULT_KEY, parse_sse, read_file, reply_for, run, sse_text, status,
    wait_status,
)

LEAD = "Let me look that up. "


def sh(cmd, ctx):
    return run(["bash", "-c", cmd], timeout=20, cwd=str(ctx))


def tools_of(body):
    return body.get("tools")


@pytest.mark.parametrize("model,search,fetch", [
    ("claude-sonnet-4-5", "web_search_20250305", "web_fetch_20250910"),
    ("claude-haiku-4-5", "web_search_20250305", "web_fetch_20250910"),
    ("claude-sonnet-5-5", "web_search_20260318", "web_fetch_20260318"),
    ("claude-mythos-5-1", "web_search_20260318", "web_fetch_20260318"),
])
def test_tools_go_out_in_the_version_the_model_takes(ctx, fake, model, search, fetch):
    r = sh("echo %s > model && echo 'tools = web_search, web_fetch' >> config && "
           "echo 'what is new? https://example.org/news' > input && cat output" % model, ctx)
    assert r.rc == 0, r
    # Only the text blocks, joined: the lead before the tools and the reply.
    assert r.out == LEAD + reply_for("what is new? https://example.org/news")
    body = fake.calls[-1].body
    assert tools_of(body) == [{"type": search, "name": "web_search"},
                              {"type": fetch, "name": "web_fetch"}]
    assert fake.calls[-1].valid
    st = status(ctx)
    assert st.get("ignored") is None, st.text
    assert "tools = web_search, web_fetch" in read_file(ctx / "config")


def test_output_is_exactly_the_text_with_every_block_between(ctx, fake):
    r = sh("echo 'tools = web_search' >> config && echo 'rust 2027 edition' > input && "
           "cat output && cat output | od -c | head -1", ctx)
    assert r.rc == 0, r
    want = LEAD + reply_for("rust 2027 edition")
    assert read_file(ctx / "output") == want
    rec = fake.calls[-1]
    # The stream really carried the other blocks and deltas.
    assert rec.events_sent.count("content_block_start") == 4, rec.events_sent
    assert tools_of(rec.body) == [{"type": "web_search_20260318", "name": "web_search"}]
    # The next turn sends the reply's text back as the assistant's message.
    sh("echo again > input && cat output > /dev/null", ctx)
    assert fake.calls[-1].texts()[1] == ("assistant", want)


def test_a_model_without_server_tools_leaves_them_out_and_status_says_so(ctx, fake):
    fake.add_model("claude-plain-1", "Plain", web_search=False, web_fetch=False)
    r = sh("echo claude-plain-1 > model && echo 'tools = web_search,web_fetch' >> config && "
           "echo hello > input && cat output", ctx)
    assert r.rc == 0, r
    assert r.out == reply_for("hello")
    assert "tools" not in fake.calls[-1].body
    assert status(ctx).get("ignored") == "tools (the model takes no server tools)"


def test_a_model_without_web_search_gets_web_fetch_alone(ctx, fake):
    fake.add_model("claude-searchless-1", "Searchless", web_search=False, web_fetch=True)
    r = sh("echo claude-searchless-1 > model && "
           "echo 'tools = web_search, web_fetch' >> config && "
           "echo 'read https://example.org/a' > input && cat output", ctx)
    assert r.rc == 0, r
    assert r.out == LEAD + reply_for("read https://example.org/a")
    assert tools_of(fake.calls[-1].body) == [{"type": "web_fetch_20250910",
                                              "name": "web_fetch"}]
    assert status(ctx).get("ignored") == "tools: web_search (the model does not take it)"


@pytest.mark.parametrize("value,msg", [
    ("web_browse", "'web_browse' is not a server tool mcpfs knows"),
    ("web_search, code_execution", "'code_execution' is not a server tool"),
    ("web_search,", "a ',' ends the list"),
])
def test_an_unknown_tool_fails_the_write(ctx, fake, value, msg):
    r = sh("echo 'tools = %s' >> config" % value, ctx)
    assert r.rc != 0
    assert "Invalid argument" in r.err
    st = status(ctx)
    assert msg in st.get("last_refused", ""), st.text
    assert "tools = none" in read_file(ctx / "config")


def test_tools_none_and_empty_turn_them_off(ctx, fake):
    sh("echo 'tools = web_fetch' >> config", ctx)
    assert "tools = web_fetch" in read_file(ctx / "config")
    assert sh("echo 'tools =' >> config", ctx).rc == 0
    assert "tools = none" in read_file(ctx / "config")
    sh("echo hi > input && cat output", ctx)
    assert "tools" not in fake.calls[-1].body


@pytest.mark.fake_invalid_ok
def test_without_capabilities_the_newest_versions_go(mount_factory, fake):
    # The Models API answers 500: no capabilities, the newest versions named.
    fake.models_status = 500
    m = mount_factory(allow_errors=(r".",))
    ctx = m.ctx("c")
    r = sh("echo claude-sonnet-4-5 > model; echo 'tools = web_search, web_fetch' >> config; "
           "echo hi > input; cat output", ctx)
    body = fake.calls[-1].body
    assert tools_of(body) == [{"type": "web_search_20260318", "name": "web_search"},
                              {"type": "web_fetch_20260318", "name": "web_fetch"}]
    # The fake refuses a version the model does not take, as the API does.
    assert not fake.calls[-1].valid
    assert "'web_search_20260318' is not supported for claude-sonnet-4-5" in \
        fake.calls[-1].error
    st = wait_status(ctx, "error")
    assert "web_search_20260318" in st.get("last_error", ""), st.text


def test_tools_survive_a_remount_and_dot_config_defaults_them(mount, fake):
    ctx = mount.ctx("c")
    sh("echo 'tools = web_fetch' >> config", ctx)
    run(["bash", "-c", "echo 'tools = web_search' >> .config"], cwd=str(mount.path))
    mount.remount()
    assert "tools = web_fetch" in read_file(ctx / "config")
    d = mount.ctx("d")
    assert "tools = web_search" in read_file(d / "config")
    sh("echo hi > input && cat output", d)
    assert tools_of(fake.calls[-1].body) == [{"type": "web_search_20260318",
                                              "name": "web_search"}]


# --- the fake's side, spoken to directly ------------------------------------------------


def fake_post(fake, body):
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    conn.request("POST", "/v1/messages", json.dumps(body),
                 {"x-api-key": DEFAULT_KEY, "anthropic-version": API_VERSION,
                  "content-type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def request(model, tools, text="find it https://example.org/x"):
    return {"model": model, "max_tokens": 1024, "stream": True, "tools": tools,
            "messages": [{"role": "user", "content": text}]}


@pytest.mark.fake_invalid_ok
@pytest.mark.parametrize("model,tool,msg", [
    ("claude-sonnet-4-5", {"type": "web_search_20260209", "name": "web_search"},
     "'web_search_20260209' is not supported for claude-sonnet-4-5"),
    ("claude-sonnet-4-5", {"type": "web_fetch_20260318", "name": "web_fetch"},
     "'web_fetch_20260318' is not supported for claude-sonnet-4-5"),
    ("claude-sonnet-5-5", {"type": "web_search_20991231", "name": "web_search"},
     "Input tag 'web_search_20991231'"),
    ("claude-sonnet-5-5", {"type": "web_browse_20250305", "name": "web_browse"},
     "Input tag 'web_browse_20250305'"),
    ("claude-sonnet-5-5", {"type": "web_search_20250305", "name": "search"},
     "tools.0.name: Input should be 'web_search'"),
])
def test_the_fake_refuses_what_the_api_refuses(fake, model, tool, msg):
    status_code, data = fake_post(fake, request(model, [tool]))
    assert status_code == 400, data
    err = json.loads(data)["error"]
    assert err["type"] == "invalid_request_error" and msg in err["message"], err


def test_the_fake_streams_the_wire_shape_of_a_search_and_a_fetch(fake):
    status_code, data = fake_post(fake, request("claude-sonnet-5-5", [
        {"type": "web_search_20260318", "name": "web_search"},
        {"type": "web_fetch_20260318", "name": "web_fetch"}]))
    assert status_code == 200
    events = [json.loads(d) for _, d in parse_sse(data)]
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [b["type"] for b in starts] == ["text", "server_tool_use", "web_search_tool_result",
                                          "server_tool_use", "web_fetch_tool_result", "text"]
    assert [b.get("name") for b in starts if b["type"] == "server_tool_use"] == \
        ["web_search", "web_fetch"]
    # Each call's input arrives as input_json_delta pieces, the first one empty.
    for i, want in ((1, {"query": "find it https://example.org/x"}),
                    (3, {"url": "https://example.org/x"})):
        parts = [e["delta"]["partial_json"] for e in events
                 if e["type"] == "content_block_delta" and e["index"] == i]
        assert parts[0] == "" and json.loads("".join(parts)) == want
    assert starts[2]["tool_use_id"] == starts[1]["id"]
    assert starts[2]["content"][0]["type"] == "web_search_result"
    assert starts[4]["content"]["type"] == "web_fetch_result"
    assert starts[4]["content"]["url"] == "https://example.org/x"
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"
              and e["index"] == 5]
    assert deltas[0]["type"] == "citations_delta"
    assert deltas[0]["citation"]["type"] == "web_search_result_location"
    assert sse_text(parse_sse(data)) == LEAD + reply_for("find it https://example.org/x")
    usage = [e for e in events if e["type"] == "message_delta"][0]["usage"]
    assert usage["server_tool_use"] == {"web_search_requests": 1, "web_fetch_requests": 1}


def test_the_fake_describes_server_tools_as_the_sdk_types_do(fake):
    caps = fake.model("claude-sonnet-4-5")["capabilities"]
    assert caps["server_tools"] == {"supported": True, "web_search": {"supported": True},
                                    "code_execution": {"supported": False}}
    assert fake.model("claude-sonnet-5-5")["capabilities"]["code_execution"] == \
        {"supported": True}
