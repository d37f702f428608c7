"""CONTRACT §11: the Model Context Protocol at POST /mcp, as raw JSON-RPC over
http.client: protocol 2025-11-25 (initialize, Mcp-Session-Id) and 2026-07-28
(stateless: _meta and the MCP-Protocol-Version, Mcp-Method, Mcp-Name headers),
the tools and resources, streamed send_message with progress, cancelling by
closing the stream and by notifications/cancelled, and the error cases.  The
official TypeScript SDK's runs are in test_mcp_sdk.py."""

import base64
import errno
import http.client
import json
import os
import re
import socket
import subprocess

import pytest

from mcpfs_testlib import (
    REPO, read_text, reply_for, send, status, wait_for, wait_status, write_file,
)
from http_support import (  # noqa: F401  (fixtures)
    DEFAULT_KEY, parse_sse, shim, shim_factory,
)

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
TOOLS = ["list_contexts", "create_context", "send_message", "get_history", "ctl",
         "delete_context"]
VIEWS = ["history", "transcript", "output", "status", "usage"]


class Rpc:
    """One JSON-RPC message per POST; .session after initialize()."""

    def __init__(self, port, token=None):
        self.port = port
        self.token = token
        self.session = None
        self.next_id = 1
        self.seen = []  # every answer's bytes, for the "no API key" check

    def post(self, body, headers=None, raw=False, timeout=20):
        h = {"Content-Type": "application/json",
             "Accept": "application/json, text/event-stream"}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        if self.session:
            h["Mcp-Session-Id"] = self.session
            h["MCP-Protocol-Version"] = LEGACY
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("POST", "/mcp", body=data, headers=h)
            r = conn.getresponse()
            payload = r.read()
            self.seen.append(payload)
            return r.status, {k.lower(): v for k, v in r.getheaders()}, payload
        finally:
            conn.close()

    @staticmethod
    def messages(headers, payload):
        """The JSON-RPC messages of a JSON or an SSE answer."""
        if headers.get("content-type", "").startswith("text/event-stream"):
            return [json.loads(d) for _, d in parse_sse(payload)]
        return [json.loads(payload)] if payload else []

    def request(self, method, params=None, headers=None, expect=200):
        msg = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        self.next_id += 1
        if params is not None:
            msg["params"] = params
        status, hdrs, payload = self.post(msg, headers)
        assert status == expect, (status, payload)
        msgs = self.messages(hdrs, payload)
        assert msgs and msgs[-1]["id"] == msg["id"], msgs
        return msgs

    def initialize(self):
        status, hdrs, payload = self.post({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {},
                       "clientInfo": {"name": "pytest", "version": "1"}}})
        assert status == 200, payload
        res = json.loads(payload)["result"]
        self.session = hdrs["mcp-session-id"]
        assert len(self.session) == 32 and all(0x21 <= ord(c) <= 0x7e for c in self.session)
        status, _, payload = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert status == 202 and payload == b""
        return res


def modern_headers(method, name=None, version=MODERN):
    h = {"MCP-Protocol-Version": version, "Mcp-Method": method}
    if name is not None:
        h["Mcp-Name"] = name
    return h


def meta(version=MODERN, **extra):
    m = {"io.modelcontextprotocol/protocolVersion": version,
         "io.modelcontextprotocol/clientInfo": {"name": "pytest", "version": "1"},
         "io.modelcontextprotocol/clientCapabilities": {}}
    m.update(extra)
    return m


def modern(rpc, method, params=None, name=None, expect=200, **meta_extra):
    p = dict(params or {})
    p["_meta"] = meta(**meta_extra)
    return rpc.request(method, p, modern_headers(method, name), expect=expect)


def call_modern(rpc, tool, args, **meta_extra):
    return modern(rpc, "tools/call", {"name": tool, "arguments": args}, name=tool,
                  **meta_extra)


def text_of(result):
    assert [c["type"] for c in result["content"]] == ["text"], result
    return result["content"][0]["text"]


@pytest.fixture
def rpc(shim):
    return Rpc(shim.port)


# --- 2025-11-25 ---------------------------------------------------------------------


def test_legacy_handshake_and_tools(rpc, shim):
    res = rpc.initialize()
    assert res["protocolVersion"] == LEGACY
    assert res["serverInfo"]["name"] == "mcpfs" and res["serverInfo"]["version"]
    assert set(res["capabilities"]) == {"tools", "resources"}
    tools = rpc.request("tools/list")[0]["result"]["tools"]
    assert [t["name"] for t in tools] == TOOLS
    by = {t["name"]: t for t in tools}
    assert by["list_contexts"]["annotations"]["readOnlyHint"] is True
    assert by["get_history"]["annotations"]["readOnlyHint"] is True
    assert by["delete_context"]["annotations"]["destructiveHint"] is True
    assert by["send_message"]["annotations"]["readOnlyHint"] is False
    assert by["send_message"]["inputSchema"]["required"] == ["context", "text"]
    # a word of ctl_run, and for compact its focus text after a space
    assert by["ctl"]["inputSchema"]["properties"]["command"]["pattern"] == \
        "^(cancel|clear|retry|compact|fork|undo)( .*)?$"
    assert "resultType" not in rpc.request("ping")[0]["result"]

    r = rpc.request("tools/call", {"name": "create_context",
                                   "arguments": {"name": "rev", "system": "Be brief."}})
    assert r[0]["result"]["isError"] is False
    assert read_text(shim.path / "rev" / "system") == "Be brief."
    r = rpc.request("tools/call", {"name": "list_contexts", "arguments": {}})
    assert r[0]["result"]["structuredContent"] == {
        "contexts": [{"name": "rev", "status": "idle", "meta": {}}]}
    # without a progress token: the result alone, still on an SSE stream
    msgs = rpc.request("tools/call", {"name": "send_message",
                                      "arguments": {"context": "rev", "text": "hello"}})
    assert len(msgs) == 1
    res = msgs[0]["result"]
    assert res["isError"] is False and text_of(res) == reply_for("hello")
    sc = res["structuredContent"]
    assert sc["text"] == reply_for("hello") and sc["stop_reason"] == "end_turn"
    assert sc["turn"] == 1 and sc["usage"]["output_tokens"] > 0
    assert read_text(shim.path / "rev" / "output") == reply_for("hello")
    hist = text_of(rpc.request("tools/call", {"name": "get_history",
                                              "arguments": {"context": "rev"}})[0]["result"])
    assert hist == read_text(shim.path / "rev" / "history") and "hello" in hist
    for v in VIEWS:
        rpc.request("resources/read", {"uri": "mcpfs://contexts/rev/" + v})
    assert not [p for p in rpc.seen if DEFAULT_KEY.encode() in p]


def test_legacy_progress_deltas(rpc, shim, fake):
    rpc.initialize()
    os.mkdir(shim.path / "p")
    fake.script("slow", text="one two three four five six", deltas=6, delay_ms=50)
    msgs = rpc.request("tools/call", {"name": "send_message", "arguments": {
        "context": "p", "text": "go"}, "_meta": {"progressToken": "tok-1"}})
    notes, final = msgs[:-1], msgs[-1]
    assert len(notes) >= 2
    for n in notes:
        assert n["method"] == "notifications/progress" and "id" not in n
        assert n["params"]["progressToken"] == "tok-1"
    progress = [n["params"]["progress"] for n in notes]
    assert progress == sorted(set(progress))
    assert "".join(n["params"]["message"] for n in notes) == "one two three four five six"
    assert text_of(final["result"]) == "one two three four five six"


def test_legacy_cancelled_notification(rpc, shim, fake):
    """notifications/cancelled naming the request cancels its turn; the mount sees it."""
    rpc.initialize()
    os.mkdir(shim.path / "c")
    fake.script("hold", hold_after=1)
    conn = http.client.HTTPConnection("127.0.0.1", shim.port, timeout=20)
    conn.request("POST", "/mcp", body=json.dumps({
        "jsonrpc": "2.0", "id": "call-7", "method": "tools/call",
        "params": {"name": "send_message", "arguments": {"context": "c", "text": "x"},
                   "_meta": {"progressToken": 7}}}),
        headers={"Content-Type": "application/json", "Mcp-Session-Id": rpc.session,
                 "MCP-Protocol-Version": LEGACY,
                 "Accept": "application/json, text/event-stream"})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("content-type").startswith("text/event-stream")
    wait_status(shim.path / "c", "streaming")
    # another request id in the session does nothing
    status, _, _ = rpc.post({"jsonrpc": "2.0", "method": "notifications/cancelled",
                             "params": {"requestId": "call-8"}})
    assert status == 202
    assert read_text(shim.path / "c" / "status").startswith("streaming")
    status, _, _ = rpc.post({"jsonrpc": "2.0", "method": "notifications/cancelled",
                             "params": {"requestId": "call-7", "reason": "test"}})
    assert status == 202
    wait_status(shim.path / "c", "error")
    assert "cancelled" in read_text(shim.path / "c" / "status")
    body = r.read()
    conn.close()
    msgs = [json.loads(d) for _, d in parse_sse(body)]
    assert msgs and all(m["method"] == "notifications/progress" for m in msgs)  # no response
    fake.release()


def test_closing_the_stream_cancels(rpc, shim, fake):
    rpc.initialize()
    os.mkdir(shim.path / "k")
    fake.script("hold", hold_after=1)
    s = socket.create_connection(("127.0.0.1", shim.port))
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "send_message",
                                  "arguments": {"context": "k", "text": "x"},
                                  "_meta": {"progressToken": 1}}}).encode()
    s.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
              b"Mcp-Session-Id: %s\r\nMCP-Protocol-Version: %s\r\nContent-Length: %d\r\n\r\n"
              % (shim.port, rpc.session.encode(), LEGACY.encode(), len(body)) + body)
    got = b""
    while b"notifications/progress" not in got:
        got += s.recv(65536)
    s.close()
    wait_status(shim.path / "k", "error", timeout=30)
    assert "cancelled" in read_text(shim.path / "k" / "status")
    fake.release()
    # the context goes on
    assert send(shim.path / "k", "again") is None or True
    wait_for(lambda: read_text(shim.path / "k" / "output") == reply_for("again"))


def test_legacy_session_rules(rpc, shim):
    status, _, payload = rpc.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert status == 400 and json.loads(payload)["error"]["code"] == -32600
    rpc.initialize()
    good = rpc.session
    rpc.session = "0" * 32
    status, _, payload = rpc.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert status == 404
    rpc.session = good
    status, _, payload = rpc.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                  {"MCP-Protocol-Version": "2024-01-01"})
    assert status == 400
    err = json.loads(payload)["error"]
    assert err["data"]["supported"] == [MODERN, LEGACY]
    # DELETE ends the session
    conn = http.client.HTTPConnection("127.0.0.1", shim.port, timeout=10)
    conn.request("DELETE", "/mcp", headers={"Mcp-Session-Id": good})
    assert conn.getresponse().status == 204
    conn.close()
    status, _, _ = rpc.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert status == 404


def test_get_is_405(shim):
    conn = http.client.HTTPConnection("127.0.0.1", shim.port, timeout=10)
    conn.request("GET", "/mcp", headers={"Accept": "text/event-stream"})
    r = conn.getresponse()
    r.read()
    assert r.status == 405 and "POST" in r.getheader("allow")
    conn.request("DELETE", "/mcp")
    r = conn.getresponse()
    r.read()
    assert r.status == 405
    conn.close()


# --- 2026-07-28 ---------------------------------------------------------------------


def test_modern_discover_and_tools(rpc, shim):
    res = modern(rpc, "server/discover")[0]["result"]
    assert res["resultType"] == "complete"
    assert res["supportedVersions"] == [MODERN, LEGACY]
    assert set(res["capabilities"]) == {"tools", "resources"}
    assert res["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mcpfs"
    tools = modern(rpc, "tools/list")[0]["result"]
    assert [t["name"] for t in tools["tools"]] == TOOLS and tools["resultType"] == "complete"
    r = call_modern(rpc, "create_context", {"name": "m"})[0]["result"]
    assert r["isError"] is False and (shim.path / "m").is_dir()
    msgs = call_modern(rpc, "send_message", {"context": "m", "text": "hi"}, progressToken=5)
    assert msgs[-1]["result"]["resultType"] == "complete"
    assert text_of(msgs[-1]["result"]) == reply_for("hi")
    assert all(m["params"]["progressToken"] == 5 for m in msgs[:-1]) and len(msgs) > 1
    # no session is minted
    status, hdrs, _ = rpc.post({"jsonrpc": "2.0", "id": 9, "method": "ping",
                                "params": {"_meta": meta()}}, modern_headers("ping"))
    assert status == 200 and "mcp-session-id" not in hdrs
    # a notification is accepted and ignored
    status, _, payload = rpc.post({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                   "params": {"requestId": 1, "_meta": meta()}},
                                  modern_headers("notifications/cancelled"))
    assert status == 202 and payload == b""
    status, _, payload = rpc.post({"jsonrpc": "2.0", "method": "notifications/whatever",
                                   "params": {"_meta": meta()}})
    assert status == 202 and payload == b""


def test_modern_header_rules(rpc, shim):
    os.mkdir(shim.path / "h")
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "list_contexts", "arguments": {}, "_meta": meta()}}

    def err(headers, status=400):
        st, _, payload = rpc.post(body, headers)
        assert st == status, payload
        return json.loads(payload)["error"]
    e = err({"Mcp-Method": "tools/call", "Mcp-Name": "list_contexts"})
    assert e["code"] == -32020  # no MCP-Protocol-Version
    e = err(modern_headers("tools/call", "list_contexts", version=LEGACY))
    assert e["code"] == -32020
    e = err(modern_headers("tools/list", "list_contexts"))
    assert e["code"] == -32020 and "Mcp-Method" in e["message"]
    e = err(modern_headers("tools/call", "delete_context"))
    assert e["code"] == -32020 and "Mcp-Name" in e["message"]
    e = err({"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call"})
    assert e["code"] == -32020
    # the base64 form of Mcp-Name is decoded before comparing
    enc = "=?base64?%s?=" % base64.b64encode(b"list_contexts").decode()
    st, _, payload = rpc.post(body, modern_headers("tools/call", enc))
    assert st == 200 and json.loads(payload)["result"]["isError"] is False
    # resources/read compares Mcp-Name with params.uri
    uri = "mcpfs://contexts/h/status"
    r = modern(rpc, "resources/read", {"uri": uri}, name=uri)[0]["result"]
    assert r["contents"][0]["text"].startswith("idle")


def test_modern_versions(rpc, shim):
    body = {"jsonrpc": "2.0", "id": 3, "method": "tools/list",
            "params": {"_meta": meta(version="1900-01-01")}}
    st, _, payload = rpc.post(body, modern_headers("tools/list", version="1900-01-01"))
    assert st == 400
    e = json.loads(payload)
    assert e["id"] == 3 and e["error"]["code"] == -32022
    assert e["error"]["data"] == {"supported": [MODERN, LEGACY], "requested": "1900-01-01"}
    # a required _meta field missing: Invalid params, 400
    body = {"jsonrpc": "2.0", "id": 4, "method": "tools/list",
            "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": MODERN}}}
    st, _, payload = rpc.post(body, modern_headers("tools/list"))
    assert st == 400 and json.loads(payload)["error"]["code"] == -32602
    # unknown method: 404 with -32601
    st, _, payload = rpc.post({"jsonrpc": "2.0", "id": 5, "method": "nope/nope",
                               "params": {"_meta": meta()}}, modern_headers("nope/nope"))
    assert st == 404 and json.loads(payload)["error"]["code"] == -32601


# --- JSON-RPC errors ------------------------------------------------------------------


def test_jsonrpc_errors(rpc, shim):
    st, _, payload = rpc.post(b"{not json")
    e = json.loads(payload)
    assert st == 400 and e["error"]["code"] == -32700 and e["id"] is None
    st, _, payload = rpc.post([{"jsonrpc": "2.0", "id": 1, "method": "ping"}])
    assert st == 400 and json.loads(payload)["error"]["code"] == -32600
    st, _, payload = rpc.post({"jsonrpc": "1.0", "id": 1, "method": "ping"})
    assert st == 400 and json.loads(payload)["error"]["code"] == -32600
    st, _, payload = rpc.post({"jsonrpc": "2.0", "id": None, "method": "ping"})
    assert st == 400 and json.loads(payload)["error"]["code"] == -32600
    for bad_id in (b"1.5", b"1e300", b"true", b"[1]"):
        st, _, payload = rpc.post(b'{"jsonrpc":"2.0","id":' + bad_id + b',"method":"ping"}')
        assert st == 400 and json.loads(payload)["error"]["code"] == -32600, bad_id
    rpc.initialize()
    r = rpc.request("no/such/method")[0]
    assert r["error"]["code"] == -32601
    r = rpc.request("tools/call", {"name": "nope", "arguments": {}})[0]
    assert r["error"]["code"] == -32602
    r = rpc.request("resources/read", {"uri": "mcpfs://contexts/none/history"})[0]
    assert r["error"]["code"] == -32002
    # a string id comes back as it was
    st, _, payload = rpc.post({"jsonrpc": "2.0", "id": "abc", "method": "ping"})
    assert st == 200 and json.loads(payload)["id"] == "abc"


def test_tool_errors_are_results(rpc, shim):
    rpc.initialize()

    def call(name, args):
        return rpc.request("tools/call", {"name": name, "arguments": args})[0]["result"]
    r = call("send_message", {"context": "ghost", "text": "x"})
    assert r["isError"] is True and text_of(r) == "no context named 'ghost'"
    r = call("create_context", {"name": ".hidden"})
    assert r["isError"] is True and "invalid context name" in text_of(r)
    r = call("create_context", {"name": 5})
    assert r["isError"] is True and "must be a string" in text_of(r)
    call("create_context", {"name": "e"})
    r = call("create_context", {"name": "e"})
    assert r["isError"] is True and "exists" in text_of(r)
    r = call("send_message", {"context": "e", "text": "   "})
    assert r["isError"] is True and "empty" in text_of(r)
    r = call("ctl", {"context": "e", "command": "retry"})
    assert r["isError"] is True and text_of(r).startswith("nothing to retry")
    r = call("ctl", {"context": "e", "command": "explode"})
    assert r["isError"] is True
    r = call("get_history", {"context": "e", "extra": 1})
    assert r["isError"] is True and "unknown argument 'extra'" in text_of(r)
    r = call("delete_context", {"context": "e"})
    assert r["isError"] is False and not (shim.path / "e").exists()


def test_ctl_says_the_same_through_the_file_mcp_and_http(rpc, shim):
    """One parser (ctl.h) behind the ctl file, the MCP tool `ctl` and POST
    .../cancel: an unknown command, a retry with nothing to retry and a cancel
    with nothing to cancel read the same in all of them."""
    rpc.initialize()

    def call(args):
        r = rpc.request("tools/call", {"name": "ctl", "arguments": args})[0]["result"]
        return r["isError"], text_of(r)
    c = shim.mount.ctx("e")

    def refused_in_file(line):
        with pytest.raises(OSError) as e:
            write_file(c / "ctl", line + "\n")
        assert e.value.errno == errno.EINVAL
        v = status(c).get("last_refused", "")
        m = re.match(r"write of ctl: (.*) \(at \d{4}-", v)
        assert m, v
        return m.group(1)
    for word in ("frobnicate", "retry"):
        in_file = refused_in_file(word)
        assert call({"context": "e", "command": word}) == (True, in_file)
    assert refused_in_file("frobnicate") == \
        "unknown command 'frobnicate' (cancel, clear, retry, compact, fork, undo)"
    r = shim.api.request("POST", "/v1/contexts/e/cancel")
    assert r.status == 409, r
    said = r.json()["error"]["message"]
    assert said == "nothing to cancel: no call is in flight"
    assert call({"context": "e", "command": "cancel"}) == (False, said)
    write_file(c / "ctl", "cancel\n")  # the file: success, doing nothing


@pytest.mark.fake_invalid_ok
def test_failed_turn_is_error_result(rpc, shim, fake):
    rpc.initialize()
    os.mkdir(shim.path / "f")
    fake.script("status", status=400, times=1)
    r = rpc.request("tools/call", {"name": "send_message",
                                   "arguments": {"context": "f", "text": "x"}})[-1]["result"]
    assert r["isError"] is True
    status = read_text(shim.path / "f" / "status")
    last = [line for line in status.splitlines() if line.startswith("last_error: ")][0]
    assert last == "last_error: " + text_of(r)


# --- resources ------------------------------------------------------------------------


def test_resources(rpc, shim):
    rpc.initialize()
    os.mkdir(shim.path / "r 1")
    send(shim.path / "r 1", "hello")
    wait_for(lambda: read_text(shim.path / "r 1" / "output") == reply_for("hello"))
    tpl = rpc.request("resources/templates/list")[0]["result"]["resourceTemplates"]
    assert [t["uriTemplate"] for t in tpl] == \
        ["mcpfs://contexts/{name}/%s" % v for v in VIEWS]
    res = rpc.request("resources/list")[0]["result"]["resources"]
    assert [r["uri"] for r in res] == ["mcpfs://contexts/r%%201/%s" % v for v in VIEWS]
    for v in VIEWS:
        r = rpc.request("resources/read", {"uri": "mcpfs://contexts/r%%201/%s" % v})
        c = r[0]["result"]["contents"]
        assert len(c) == 1 and c[0]["mimeType"] == "text/plain"
        assert c[0]["text"] == read_text(shim.path / "r 1" / v), v


# --- security: the shim's own checks apply ---------------------------------------------


def test_origin_and_host(rpc, shim):
    st, _, _ = rpc.post({"jsonrpc": "2.0", "id": 1, "method": "ping"},
                        {"Origin": "http://evil.example"})
    assert st == 403
    conn = http.client.HTTPConnection("127.0.0.1", shim.port, timeout=10)
    conn.request("POST", "/mcp", body="{}", headers={"Host": "evil.example:%d" % shim.port,
                                                     "Content-Type": "application/json"})
    assert conn.getresponse().status == 403
    conn.close()


def test_token(shim_factory):
    s = shim_factory(token="t0ken-" + "x" * 20)
    st, hdrs, _ = Rpc(s.port).post({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert st == 401 and hdrs["www-authenticate"].startswith("Bearer")
    st, _, _ = Rpc(s.port, token="wrong-" + "y" * 20).post(
        {"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert st == 401
    rpc = Rpc(s.port, token=s.token)
    rpc.initialize()
    assert rpc.request("ping")[0]["result"] == {}


def test_body_bounded(rpc, shim):
    st, _, _ = rpc.post(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"' +
                        b"a" * (5 << 20) + b'"}}')
    assert st == 413


# --- the stdio bridge and the documented client lines ----------------------------------


def bridge(mcpfs_bin, port, lines, extra=(), timeout=30):
    """Runs `mcpfs --mcp-stdio` with lines on stdin; returns (rc, messages, stderr)."""
    p = subprocess.run([mcpfs_bin, "--mcp-stdio", "--http=127.0.0.1:%d" % port] + list(extra),
                       input="".join(json.dumps(x) + "\n" for x in lines),
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, [json.loads(x) for x in p.stdout.splitlines()], p.stderr


def test_bridge_both_versions(shim, mcpfs_bin, workdir):
    """A stateless request, then a whole 2025-11-25 session, through one bridge;
    it never touches a state directory (one that cannot exist is named)."""
    os.mkdir(shim.path / "bé")
    send(shim.path / "bé", "hi")
    wait_for(lambda: read_text(shim.path / "bé" / "output") == reply_for("hi"))
    rc, msgs, err = bridge(mcpfs_bin, shim.port, [
        {"jsonrpc": "2.0", "id": "d", "method": "server/discover",
         "params": {"_meta": meta()}},
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": LEGACY, "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"}}},
    ], extra=["--state-dir=/nonexistent/mcpfs-state"])
    assert rc == 0, err
    by = {m["id"]: m for m in msgs}  # answers may come in any order
    assert sorted(by, key=str) == [1, "d"]
    assert by["d"]["result"]["supportedVersions"] == [MODERN, LEGACY]
    assert by[1]["result"]["protocolVersion"] == LEGACY
    assert not os.path.exists("/nonexistent/mcpfs-state")
    # a URI that is not plain ASCII goes through Mcp-Name's base64 form
    uri = "mcpfs://contexts/bé/output"
    rc, msgs, err = bridge(mcpfs_bin, shim.port, [
        {"jsonrpc": "2.0", "id": 2, "method": "resources/read",
         "params": {"uri": uri, "_meta": meta()}}])
    assert rc == 0, err
    assert msgs[0]["result"]["contents"][0]["text"] == reply_for("hi")
    # (separately: requests on one bridge run concurrently, and a new message
    # would make `output` the next, still empty, reply)
    rc, msgs, err = bridge(mcpfs_bin, shim.port, [
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "send_message", "arguments": {"context": "bé", "text": "two"},
                    "_meta": meta(progressToken="p")}},
    ])
    assert rc == 0, err
    final = [m for m in msgs if m.get("id") == 3]
    assert len(final) == 1 and text_of(final[0]["result"]) == reply_for("two")
    notes = [m for m in msgs if "id" not in m]
    assert notes and all(m["method"] == "notifications/progress" for m in notes)


def test_bridge_errors(shim_factory, mcpfs_bin, workdir):
    s = shim_factory(token="bridge-token-" + "z" * 16)
    line = {"jsonrpc": "2.0", "id": 7, "method": "ping", "params": {"_meta": meta()}}
    rc, msgs, _ = bridge(mcpfs_bin, s.port, [line])
    assert rc == 0 and msgs[0]["id"] == 7 and "401" in msgs[0]["error"]["message"]
    tok = workdir / "tok"
    tok.write_text(s.token + "\n")
    os.chmod(tok, 0o600)
    rc, msgs, _ = bridge(mcpfs_bin, s.port, [line], extra=["--http-token-file=%s" % tok])
    assert rc == 0 and msgs[0]["result"]["resultType"] == "complete"
    os.chmod(tok, 0o644)
    rc, msgs, err = bridge(mcpfs_bin, s.port, [line], extra=["--http-token-file=%s" % tok])
    assert rc == 1 and "readable by group or others" in err and not msgs
    # nothing listening: a JSON-RPC error naming the address, for the request only
    k = socket.socket()
    k.bind(("127.0.0.1", 0))
    port = k.getsockname()[1]
    k.close()
    rc, msgs, _ = bridge(mcpfs_bin, port, [line, {"jsonrpc": "2.0",
                                                   "method": "notifications/initialized"}])
    assert rc == 0 and len(msgs) == 1
    assert msgs[0]["id"] == 7 and "127.0.0.1:%d" % port in msgs[0]["error"]["message"]


def test_bridge_bad_lines(shim, mcpfs_bin):
    """A line that is not JSON gets the shim's parse error; one over the body cap
    is refused by the bridge itself; blank lines are skipped; then it goes on."""
    p = subprocess.run([mcpfs_bin, "--mcp-stdio", "--http=127.0.0.1:%d" % shim.port],
                       input="{not json\n\n" + "x" * (5 << 20) + "\n" + json.dumps(
                           {"jsonrpc": "2.0", "id": 1, "method": "ping",
                            "params": {"_meta": meta()}}) + "\n",
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    msgs = [json.loads(x) for x in p.stdout.splitlines()]
    codes = sorted(m["error"]["code"] for m in msgs if "error" in m)
    assert codes == [-32700, -32600]
    assert [m["id"] for m in msgs if "result" in m] == [1]


def test_bridge_pipelined_session(shim, mcpfs_bin):
    """A 2025-11-25 client that writes initialize, notifications/initialized and
    a tools/call in one write, without waiting: the lines after initialize wait
    for its Mcp-Session-Id; the notification gets no answer."""
    os.mkdir(shim.path / "piped")
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": LEGACY, "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "list_contexts", "arguments": {}}},
    ]
    p = subprocess.Popen([mcpfs_bin, "--mcp-stdio", "--http=127.0.0.1:%d" % shim.port],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    data = "".join(json.dumps(x) + "\n" for x in lines).encode()
    assert os.write(p.stdin.fileno(), data) == len(data)  # one write
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    msgs = [json.loads(x) for x in out.decode().splitlines()]
    assert [m.get("id") for m in msgs] == [1, 2], msgs
    assert msgs[0]["result"]["protocolVersion"] == LEGACY
    assert "error" not in msgs[1] and not msgs[1]["result"].get("isError")
    assert "piped" in text_of(msgs[1]["result"])
    assert b"error" not in err, err


def test_bridge_refused_notification(shim, mcpfs_bin):
    """A notification the shim refuses (no session) is reported on stderr, never
    answered on stdout; the request after it is answered as usual."""
    rc, msgs, err = bridge(mcpfs_bin, shim.port, [
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"_meta": meta()}},
    ])
    assert rc == 0, err
    assert [m.get("id") for m in msgs] == [1] and msgs[0]["result"] is not None
    assert "notifications/initialized" in err and "Mcp-Session-Id" in err, err


def test_doc_lines(shim, mcpfs_bin):
    """doc/mcp.md's Claude Code URL and Claude Desktop command work as written."""
    doc = (REPO / "doc" / "mcp.md").read_text()
    assert "claude mcp add --transport http mcpfs http://127.0.0.1:61900/mcp" in doc
    cfg = json.loads(re.search(r"```json\n(.*?)```", doc, re.S).group(1))
    server = cfg["mcpServers"]["mcpfs"]
    assert server["command"] == "mcpfs"
    args = [a.replace("61900", str(shim.port)) for a in server["args"]]
    p = subprocess.run([mcpfs_bin] + args, capture_output=True, text=True, timeout=30,
                       input=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                         "params": {"protocolVersion": LEGACY,
                                                    "capabilities": {}, "clientInfo":
                                                    {"name": "desktop", "version": "1"}}})
                       + "\n")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["result"]["serverInfo"]["name"] == "mcpfs"


@pytest.mark.fake_invalid_ok
def test_example_ask(shim, fake, workdir):
    ex = str(REPO / "examples" / "mcp" / "ask.py")
    url = "http://127.0.0.1:%d/mcp" % shim.port
    fake.script("slow", delay_ms=20)
    p = subprocess.run([ex, "--url", url, "ex ample", "two", "words"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout == reply_for("two words") + "\n"
    assert read_text(shim.path / "ex ample" / "output") == reply_for("two words")
    fake.script("status", status=400, times=1)
    p = subprocess.run([ex, "--url", url, "ex ample", "again"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 1 and p.stderr.startswith("ask.py: ")
    assert p.stderr.strip()[len("ask.py: "):] in read_text(shim.path / "ex ample" / "status")
    # not mcpfs: a clear line, not a traceback
    p = subprocess.run([ex, "--url", "http://127.0.0.1:%d/v1/health" % shim.port, "x", "y"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "Traceback" not in p.stderr and p.stderr.startswith("ask.py:")


# --- limits ---------------------------------------------------------------------------------


def test_resources_pages(rpc, shim):
    """resources/list: 100 contexts (500 resources) a page; the cursor is the last name."""
    names = sorted("p%03d" % i for i in range(130))
    for n in names:
        os.mkdir(shim.path / n)
    rpc.initialize()
    page1 = rpc.request("resources/list")[0]["result"]
    assert len(page1["resources"]) == 500 and page1["nextCursor"] == names[99]
    # a context created meanwhile before the cursor shifts nothing
    os.mkdir(shim.path / "a-new")
    page2 = rpc.request("resources/list", {"cursor": page1["nextCursor"]})[0]["result"]
    assert "nextCursor" not in page2
    got = [r["uri"] for r in page1["resources"] + page2["resources"]]
    assert got == ["mcpfs://contexts/%s/%s" % (n, v) for n in names for v in VIEWS]


def test_sessions_bounded(shim):
    """At most 256 sessions: the least recently used one is evicted (404 after)."""
    first = Rpc(shim.port)
    first.initialize()
    keep = Rpc(shim.port)
    keep.initialize()
    for _ in range(255):
        Rpc(shim.port).initialize()
        keep.request("ping")  # kept recent
    assert keep.request("ping")[0]["result"] == {}
    st, _, _ = first.post({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert st == 404
    first.session = None
    first.initialize()  # and it may start again
    assert first.request("ping")[0]["result"] == {}
