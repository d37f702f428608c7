"""Descriptor limits: the daemon runs under RLIMIT_NOFILE 256 (prlimit) with 600
contexts.  `GET /v1/contexts` lists them all with their status word without
opening a journal; reading every context's history through the mount loads
them all, yet the journals open at once stay within the documented bound (a
quarter of the limit), every history is whole, and mkdir and new messages still
work — where each listed context used to keep its journal open until EMFILE."""

import json
import os
import shutil

import pytest

from mcpfs_testlib import output, read_file, reply_for, send, status, wait_for
from http_support import Api, free_port
from test_mcp import Rpc

N = 600
NOFILE = 256
BOUND = NOFILE // 4  # STORE_JOURNALS_OPEN_*: a quarter of the soft limit


def journals_open(mt):
    """Journals the daemon has open now."""
    d = "/proc/%d/fd" % mt.proc.pid
    n = 0
    for fd in os.listdir(d):
        try:
            if os.readlink(os.path.join(d, fd)).endswith("/journal"):
                n += 1
        except OSError:
            pass
    return n


def history(ctx):
    hj = json.loads(read_file(ctx / "history.json"))
    return [m["content"].strip() for m in hj["messages"]]


@pytest.mark.mcpfs_timeout(400)
def test_600_contexts_under_256_descriptors(mount_factory, fake):
    if not shutil.which("prlimit"):
        pytest.fail("prlimit (util-linux) is not installed")
    port = free_port()
    mt = mount_factory(args=["--http=127.0.0.1:%d" % port], start=False)
    plain = mt.argv
    mt.argv = lambda: ["prlimit", "--nofile=%d:%d" % (NOFILE, NOFILE), "--"] + plain()
    api = Api(port)

    # one exchange to copy, and a context whose reply a kill interrupts
    mt.start()
    seed = mt.ctx("seed")
    send(seed, "remember me\n")
    assert output(seed) == reply_for("remember me")
    fake.script("hold", hold_after=1)
    send(mt.ctx("cut"), "cut short\n")
    fake.wait_held()
    mt.kill9()
    fake.release()
    for i in range(N):
        shutil.copytree(mt.state / "contexts" / "seed", mt.state / "contexts" / ("c%03d" % i))

    mt.start()
    wait_for(api.healthy, 10, what="the HTTP shim to answer")
    r = api.request("GET", "/v1/contexts")
    assert r.status == 200
    listed = {e["name"]: e["status"] for e in r.json()["contexts"]}
    assert len(listed) == N + 2
    assert listed["cut"] == "error" and listed["seed"] == listed["c599"] == "idle"
    assert set(listed.values()) == {"idle", "error"}
    assert journals_open(mt) == 0, "listing opened journals"
    # the MCP tool list_contexts lists the same way
    rpc = Rpc(port)
    rpc.initialize()
    res = rpc.request("tools/call", {"name": "list_contexts", "arguments": {}})[0]["result"]
    assert {e["name"]: e["status"] for e in res["structuredContent"]["contexts"]} == listed
    assert journals_open(mt) == 0, "list_contexts opened journals"
    assert status(mt.path / "cut").state == "error"  # the same word once loaded

    names = sorted(n for n in listed if n != "cut")
    for name in names:
        assert history(mt.path / name) == ["remember me", reply_for("remember me")], name
    assert 0 < journals_open(mt) <= BOUND
    r = api.request("GET", "/v1/contexts")
    assert r.status == 200 and len(r.json()["contexts"]) == N + 2

    # creating, and a message to a context whose journal was closed since
    new = mt.ctx("new")
    send(new, "hello\n")
    assert output(new) == reply_for("hello")
    send(mt.path / "c000", "more\n")
    assert output(mt.path / "c000") == reply_for("more")
    assert journals_open(mt) <= BOUND
    assert mt.stop() == 0
    mt.start()
    assert history(mt.path / "c000")[-2:] == ["more", reply_for("more")]
    assert history(mt.path / "new") == ["hello", reply_for("hello")]
