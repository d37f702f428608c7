"""CONTRACT §7: every route of the HTTP shim, its JSON shape and status codes,
driven by Python's http.client and by curl (the `client` fixture runs each test
once with each), and the same contexts seen through the mount."""

import json
import os

import pytest

from mcpfs_testlib import output, read_text, reply_for, send, wait_for, write_file
from http_support import (  # noqa: F401  (fixtures)
    DEFAULT_KEY, client, parse_sse, quote, shim, shim_factory,
)


def no_cors(resp):
    assert not [k for k in resp.headers if k.startswith("access-control-")], resp.headers


# --- health and the set of contexts ---------------------------------------------------------


def test_health(client):
    r = client.request("GET", "/v1/health")
    assert r.status == 200
    assert r.headers["content-type"].startswith("application/json")
    obj = r.json()
    assert obj["status"] == "ok" and isinstance(obj["version"], str) and obj["version"]
    no_cors(r)


def test_list_create_get_delete(client, shim):
    r = client.request("GET", "/v1/contexts")
    assert r.status == 200 and r.json() == {"contexts": []}
    r = client.request("POST", "/v1/contexts", {"name": "alpha"})
    assert r.status == 201 and r.json() == {"name": "alpha"}
    os.mkdir(shim.path / "beta")
    r = client.request("GET", "/v1/contexts")
    assert r.status == 200
    assert r.json() == {"contexts": [{"name": "alpha", "status": "idle"},
                                     {"name": "beta", "status": "idle"}]}
    assert (shim.path / "alpha").is_dir()
    r = client.request("GET", "/v1/contexts/alpha")
    assert r.status == 200
    info = r.json()
    assert info["name"] == "alpha" and info["status"] == "idle" and info["turn"] == 0
    assert info["system"] == "" and info["model"] == "claude-sonnet-5-5"
    assert info["config"]["max_tokens"] == 4096
    assert set(info["usage"]) >= {"input_tokens", "output_tokens", "calls"}
    r = client.request("DELETE", "/v1/contexts/alpha")
    assert r.status == 204 and r.body == b""
    assert not (shim.path / "alpha").exists()
    r = client.request("DELETE", "/v1/contexts/alpha")
    assert r.status == 404 and r.error()[0] == "not_found_error"
    r = client.request("GET", "/v1/contexts/alpha")
    assert r.status == 404 and r.error()[0] == "not_found_error"


def test_create_with_settings(client, shim):
    r = client.request("POST", "/v1/contexts", {"name": "s", "system": "Be brief.",
                                                "model": "claude-haiku-4-5",
                                                "config": {"max_tokens": 77}})
    assert r.status == 201, r
    assert read_text(shim.path / "s" / "system") == "Be brief."
    assert read_text(shim.path / "s" / "model").strip() == "claude-haiku-4-5"
    info = client.request("GET", "/v1/contexts/s").json()
    assert info["system"] == "Be brief." and info["config"]["max_tokens"] == 77


def test_create_without_a_name(client, shim):
    r = client.request("POST", "/v1/contexts", {})
    assert r.status == 201
    name = r.json()["name"]
    assert (shim.path / name).is_dir()
    r = client.request("POST", "/v1/contexts")  # no body at all
    assert r.status == 201 and r.json()["name"] != name


def test_create_conflict_and_bad_names(client, shim):
    assert client.request("POST", "/v1/contexts", {"name": "x"}).status == 201
    r = client.request("POST", "/v1/contexts", {"name": "x"})
    assert r.status == 409 and r.error()[0] == "conflict_error"
    for bad in [".hidden", "a/b", "", "x" * 256, "tab\there", "."]:
        r = client.request("POST", "/v1/contexts", {"name": bad})
        assert r.status == 400, (bad, r)
        assert r.error()[0] == "invalid_request_error"
    r = client.request("POST", "/v1/contexts", {"name": 5})
    assert r.status == 400
    r = client.request("POST", "/v1/contexts", {"name": "y", "bogus": 1})
    assert r.status == 400 and "bogus" in r.error()[1]
    # Refused settings leave nothing behind.
    r = client.request("POST", "/v1/contexts", {"name": "z", "model": "no spaces allowed"})
    assert r.status == 400
    assert not (shim.path / "z").exists()
    assert client.request("GET", "/v1/contexts/z").status == 404


def test_patch(client, shim):
    client.request("POST", "/v1/contexts", {"name": "p"})
    r = client.request("PATCH", "/v1/contexts/p", {"system": "You are terse.",
                                                   "config": {"temperature": 0.5}})
    assert r.status == 200, r
    assert r.json()["system"] == "You are terse."
    assert r.json()["config"]["temperature"] == 0.5
    assert read_text(shim.path / "p" / "system") == "You are terse."
    assert "temperature = 0.5" in read_text(shim.path / "p" / "config")
    r = client.request("PATCH", "/v1/contexts/p", {"model": "claude-opus-4-1"})
    assert r.status == 200 and r.json()["model"] == "claude-opus-4-1"
    assert r.json()["config"]["temperature"] == 0.5  # keys not named stay
    for bad in [{"config": {"temperature": 7}}, {"config": {"nope": 1}}, {"model": 3},
                {"name": "q"}, {"config": "max_tokens = 5"}]:
        r = client.request("PATCH", "/v1/contexts/p", bad)
        assert r.status == 400, (bad, r)
    assert client.request("PATCH", "/v1/contexts/p").status == 400  # no body
    assert client.request("PATCH", "/v1/contexts/none", {"model": "m"}).status == 404
    # Through the mount, and back.
    write_file(shim.path / "p" / "model", "claude-sonnet-4-5\n")
    assert client.request("GET", "/v1/contexts/p").json()["model"] == "claude-sonnet-4-5"


# --- messages and replies ----------------------------------------------------------------------


def test_message_202_then_output_history_transcript(client, shim, fake):
    client.request("POST", "/v1/contexts", {"name": "m"})
    r = client.request("POST", "/v1/contexts/m/messages", {"content": "hello there"})
    assert r.status == 202 and r.json() == {"turn": 1}
    r = client.request("GET", "/v1/contexts/m/output")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == reply_for("hello there")
    assert fake.calls[-1].last_user_text == "hello there"
    r = client.request("POST", "/v1/contexts/m/messages", {"content": "again"})
    assert r.json() == {"turn": 2}
    assert client.request("GET", "/v1/contexts/m/output").text == reply_for("again")
    h = client.request("GET", "/v1/contexts/m/history")
    assert h.status == 200
    hist = h.json()
    assert hist == json.loads(read_text(shim.path / "m" / "history.json"))
    assert [m["role"] for m in hist["messages"]] == ["user", "assistant"] * 2
    t = client.request("GET", "/v1/contexts/m/transcript")
    assert t.status == 200
    assert "hello there" in t.text and reply_for("again") in t.text
    json.loads(t.text)
    info = client.request("GET", "/v1/contexts/m").json()
    assert info["turn"] == 2 and info["usage"]["calls"] == 2
    assert info["usage"]["output_tokens"] > 0


def test_message_sse(client, shim):
    client.request("POST", "/v1/contexts", {"name": "e"})
    r = client.request("POST", "/v1/contexts/e/messages", {"content": "stream me"},
                       headers={"Accept": "text/event-stream"})
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.body)
    names = [e for e, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"delta"}, names
    text = "".join(json.loads(d)["text"] for e, d in events if e == "delta")
    assert text == reply_for("stream me")
    done = json.loads(events[-1][1])
    assert done["stop_reason"] == "end_turn"
    assert set(done["usage"]) == {"input_tokens", "output_tokens", "cache_creation_input_tokens",
                                  "cache_read_input_tokens"}
    assert done["usage"]["output_tokens"] > 0
    # GET output as SSE of a finished turn: the whole reply, then done.
    r = client.request("GET", "/v1/contexts/e/output", headers={"Accept": "text/event-stream"})
    assert r.status == 200
    events = parse_sse(r.body)
    assert "".join(json.loads(d)["text"] for e, d in events if e == "delta") == text
    assert events[-1][0] == "done"


def test_message_errors(client, shim):
    client.request("POST", "/v1/contexts", {"name": "b"})
    path = "/v1/contexts/b/messages"
    for body in [{}, {"content": 5}, {"content": "   \n"}, {"content": "x", "role": "user"},
                 [1, 2], "null", '{"content": "x"} trailing', '{"content": "a\\u0000b"}']:
        if isinstance(body, str):
            r = client.request("POST", path, body, headers={"Content-Type": "application/json"})
        else:
            r = client.request("POST", path, body)
        assert r.status == 400, (body, r)
        assert r.error()[0] == "invalid_request_error"
    r = client.request("POST", path, b'{"content": "\xff\xfe"}',
                       headers={"Content-Type": "application/json"})
    assert r.status == 400
    r = client.request("POST", "/v1/contexts/none/messages", {"content": "x"})
    assert r.status == 404
    assert client.request("GET", "/v1/contexts/b").json()["turn"] == 0


def test_output_of_a_context_without_a_turn(client, shim):
    client.request("POST", "/v1/contexts", {"name": "n"})
    r = client.request("GET", "/v1/contexts/n/output")
    assert r.status == 200 and r.body == b""
    r = client.request("GET", "/v1/contexts/n/output", headers={"Accept": "text/event-stream"})
    assert r.status == 200 and parse_sse(r.body) == []


def test_cancel(client, shim, fake):
    client.request("POST", "/v1/contexts", {"name": "k"})
    r = client.request("POST", "/v1/contexts/k/cancel")
    assert r.status == 409 and r.error()[0] == "conflict_error"
    fake.script("hold", hold_after=1)
    client.request("POST", "/v1/contexts/k/messages", {"content": "long one"})
    fake.wait_held()
    r = client.request("POST", "/v1/contexts/k/cancel")
    assert r.status == 200 and r.json() == {"cancelled": True}
    fake.release()
    wait_for(lambda: client.request("GET", "/v1/contexts/k").json()["status"] == "error",
             what="status error after cancel")
    assert client.request("POST", "/v1/contexts/k/cancel").status == 409
    assert client.request("POST", "/v1/contexts/none/cancel").status == 404


# --- routing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method,path,allow", [
    ("PUT", "/v1/contexts", "GET, POST"),
    ("DELETE", "/v1/health", "GET"),
    ("POST", "/v1/contexts/r", "GET, PATCH, DELETE"),
    ("GET", "/v1/contexts/r/messages", "POST"),
    ("POST", "/v1/contexts/r/output", "GET"),
    ("DELETE", "/v1/contexts/r/history", "GET"),
    ("PUT", "/v1/contexts/r/transcript", "GET"),
    ("GET", "/v1/contexts/r/cancel", "POST"),
    ("OPTIONS", "/v1/contexts", "GET, POST"),
    ("HEAD", "/v1/health", "GET"),
])
def test_405_with_allow(client, shim, method, path, allow):
    shim.api.create("r")
    r = client.request(method, path)
    assert r.status == 405
    assert r.headers["allow"] == allow
    no_cors(r)
    if method != "HEAD":
        assert r.error()[0] == "method_not_allowed_error"


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/", "/v1/contexts/", "/v1/contexts/r/",
                                  "/v1/contexts/r/nope", "/v1/contexts/r/output/x",
                                  "/v2/health", "/v1/healthz", "/v1/contexts//output"])
def test_404_paths(client, shim, path):
    shim.api.create("r")
    r = client.request("GET", path)
    assert r.status == 404, r
    assert r.error()[0] == "not_found_error"


# --- names in paths ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["café", "東京 🌸", "with space", "a%b", "plus+sign", "x" * 255])
def test_percent_encoded_names(client, shim, name):
    r = client.request("POST", "/v1/contexts", {"name": name})
    assert r.status == 201, r
    assert (shim.path / name).is_dir()
    r = client.request("GET", "/v1/contexts/" + quote(name))
    assert r.status == 200 and r.json()["name"] == name
    r = client.request("POST", "/v1/contexts/%s/messages" % quote(name), {"content": "hi"})
    assert r.status == 202
    assert output(shim.path / name) == reply_for("hi")
    listed = [c["name"] for c in client.request("GET", "/v1/contexts").json()["contexts"]]
    assert name in listed
    assert client.request("DELETE", "/v1/contexts/" + quote(name)).status == 204
    assert not (shim.path / name).exists()


@pytest.mark.parametrize("seg", ["a%2Fb", "a%2fb", "%2E%2E", "%2e", "..", ".", "%00x", "%ff",
                                 "%C3", "%zz", "a%2", "%", "%01ctl", ".hidden", "%2Ehidden",
                                 "x" * 256, "%78" * 256])
def test_bad_names_in_paths(client, shim, seg):
    os.mkdir(shim.path / "b")
    for sub in ("", "/output", "/messages"):
        method = "POST" if sub == "/messages" else "GET"
        r = client.request(method, "/v1/contexts/%s%s" % (seg, sub),
                           {"content": "x"} if method == "POST" else None)
        assert r.status == 400, (seg, sub, r)
        assert r.error()[0] == "invalid_request_error"
    assert sorted(os.listdir(shim.path)) == [".config", ".models", ".status", ".usage", "b"]


def test_encoded_slash_is_never_a_separator(client, shim):
    """b%2Foutput names a context "b/output", not b's output."""
    client.request("POST", "/v1/contexts", {"name": "b"})
    client.request("POST", "/v1/contexts/b/messages", {"content": "q"})
    r = client.request("GET", "/v1/contexts/b%2Foutput")
    assert r.status == 400


# --- both ways ---------------------------------------------------------------------------------


def test_http_to_fs(shim):
    api = shim.api
    api.create("h2f")
    api.send("h2f", "from http")
    assert output(shim.path / "h2f") == reply_for("from http")
    assert "from http" in read_text(shim.path / "h2f" / "transcript")


def test_fs_to_http(shim):
    ctx = shim.mount.ctx("f2h")
    send(ctx, "from the mount\n")
    assert shim.api.output("f2h") == reply_for("from the mount")
    info = shim.api.request("GET", "/v1/contexts/f2h").json()
    assert info["turn"] == 1 and info["status"] == "idle"
    write_file(ctx / "system", "sys via fs")
    assert shim.api.request("GET", "/v1/contexts/f2h").json()["system"] == "sys via fs"
    os.rename(ctx, shim.path / "renamed")
    assert shim.api.request("GET", "/v1/contexts/f2h").status == 404
    assert shim.api.output("renamed") == reply_for("from the mount")


def test_status_shows_http_address(shim):
    assert ("127.0.0.1:%d" % shim.port) in read_text(shim.path / ".status")


def test_api_key_never_in_responses(shim):
    api, curl = shim.api, shim.curl()
    for c in (api, curl):
        c.request("POST", "/v1/contexts", {"name": "k" + c.name[0]})
        c.request("POST", "/v1/contexts/k%s/messages" % c.name[0], {"content": "hi"},
                  headers={"Accept": "text/event-stream"})
        for path in ("/v1/health", "/v1/contexts", "/v1/contexts/k%s" % c.name[0],
                     "/v1/contexts/k%s/history" % c.name[0],
                     "/v1/contexts/k%s/transcript" % c.name[0],
                     "/v1/contexts/k%s/output" % c.name[0]):
            c.request("GET", path)
        c.request("GET", "/v1/contexts/nope")
    for r in api.seen + curl.seen:
        assert DEFAULT_KEY.encode() not in r.body
        assert not any(DEFAULT_KEY in v for _, v in r.header_list)
    assert DEFAULT_KEY not in shim.mount.log()
