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

import pytest

from mcpfs_testlib import read_file, reply_for, run, status, wait_status

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
