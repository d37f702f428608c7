"""CONTRACT §11 with the official MCP TypeScript SDK (@modelcontextprotocol/sdk,
installed by tests/mcp/install-sdk): its Client drives mcpfs over Streamable
HTTP and over the stdio bridge (`mcpfs --mcp-stdio`) through
tests/mcp/sdk_client.mjs, while the test watches the same context through the
mount: list the tools, create a context, send a message and receive its
deltas as progress, read the resources, cancel a call in flight."""

import json
import os
import shutil
import subprocess

import pytest

from mcpfs_testlib import REPO, read_available, read_text, reply_for, wait_status
from http_support import shim, shim_factory  # noqa: F401  (fixtures)

TOOLS = ["list_contexts", "create_context", "send_message", "get_history", "ctl",
         "delete_context"]
VIEWS = ["history", "transcript", "output", "status", "usage"]
SDK_VERSION = "1.32.2"


@pytest.fixture(scope="session")
def sdk_dir():
    if not shutil.which("node"):
        pytest.skip("node is missing (Debian: apt-get install nodejs)")
    p = subprocess.run([str(REPO / "tests" / "mcp" / "install-sdk")], capture_output=True,
                       text=True, timeout=600,
                       env=dict(os.environ, MCPFS_MCP_SDK_VERSION=SDK_VERSION))
    if p.returncode != 0:
        pytest.skip("npm could not install @modelcontextprotocol/sdk@%s: %s"
                    % (SDK_VERSION, p.stderr.strip()[-500:]))
    return p.stdout.strip()


class Node:
    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def step(self, name):
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise AssertionError("the SDK client ended before step %r: %s"
                                 % (name, self.proc.stderr.read()[-3000:]))
        obj = json.loads(line)
        assert obj["step"] == name, obj
        return obj

    def say(self, text="go"):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def text_of(result):
    assert [c["type"] for c in result["content"]] == ["text"], result
    return result["content"][0]["text"]


@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_sdk_client(transport, sdk_dir, shim, fake, mcpfs_bin):
    script = str(REPO / "tests" / "mcp" / "sdk_client.mjs")
    if transport == "http":
        argv = ["node", script, sdk_dir, "http", "http://127.0.0.1:%d/mcp" % shim.port]
    else:
        argv = ["node", script, sdk_dir, "stdio", mcpfs_bin, "127.0.0.1:%d" % shim.port]
    fake.script("slow", text="alpha beta gamma delta", deltas=4, delay_ms=40)
    fake.script("hold", hold_after=1)
    node = Node(argv)
    try:
        c = node.step("connected")
        assert c["server"]["name"] == "mcpfs" and set(c["caps"]) == {"tools", "resources"}
        tools = node.step("tools")["tools"]
        assert [t["name"] for t in tools] == TOOLS
        assert all(t["inputSchema"]["type"] == "object" for t in tools)
        assert {t["name"] for t in tools if t["annotations"]["readOnlyHint"]} == \
            {"list_contexts", "get_history"}
        r = node.step("created")["result"]
        assert r["isError"] is False
        ctx = shim.path / "sdk"
        assert read_text(ctx / "system") == "Be brief."

        s = node.step("sent")
        assert text_of(s["result"]) == "alpha beta gamma delta"
        assert s["result"]["structuredContent"]["usage"]["output_tokens"] > 0
        # The SDK handles notifications a microtask after a response that came in
        # the same read, and drops progress whose request has been answered: the
        # last piece may be missing (test_mcp.py checks that mcpfs sends them all).
        assert len(s["progress"]) >= 2
        assert "alpha beta gamma delta".startswith("".join(p["message"] for p in s["progress"]))
        assert [p["progress"] for p in s["progress"]] == \
            sorted({p["progress"] for p in s["progress"]})
        assert read_text(ctx / "output") == "alpha beta gamma delta"

        res = node.step("resources")
        assert [r["uri"] for r in res["resources"]] == \
            ["mcpfs://contexts/sdk/%s" % v for v in VIEWS]
        assert len(res["templates"]) == 5
        for v in VIEWS:
            assert res["read"][v] == read_text(ctx / v), v
        node.say()

        # the call the fake holds: the mount sees it streaming at the same time
        h = node.step("holding")
        st = wait_status(ctx, "streaming")
        assert st["turn"] == "2"
        assert read_available(ctx / "output")[0] == h["progress"]["message"].encode()
        node.say()
        cancelled = node.step("cancelled")["settled"]
        assert "err" in cancelled and "cancel" in cancelled["err"]
        st = wait_status(ctx, "error")
        assert "cancelled" in read_text(ctx / "status")
        fake.release()
        node.say()
        hist = text_of(node.step("history")["result"])
        assert hist == read_text(ctx / "history") and "hello sdk" in hist
        f = node.step("forked")["result"]
        assert f["isError"] is False and text_of(f) == "created the fork"
        assert read_text(shim.path / "sdk-fork" / "transcript").startswith(
            "--- forked from 'sdk' at turn 1 ---")
        assert read_text(shim.path / "sdk-fork" / "history") == read_text(ctx / "history")
        node.step("closed")
        assert node.proc.wait(20) == 0
    finally:
        node.close()
