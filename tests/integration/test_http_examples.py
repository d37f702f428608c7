"""The HTTP shim's documentation and examples run: every curl command of
doc/http-api.md against a live shim (answers compared by shape), and
examples/http/curl-sse.sh and examples/http/client.py end to end; then the
--no-mount mode and a daemonized mount with --http (CONTRACT §1)."""

import json
import os
import re
import signal

import pytest

from mcpfs_testlib import (
    REPO, daemon_env, output, read_text, reply_for, run, tool_env, unmount, wait_for,
)
from http_support import (  # noqa: F401  (fixtures)
    Api, free_port, nomount, parse_sse, shim, shim_factory, start_failure,
)

DOC = REPO / "doc" / "http-api.md"
CURL_SSE = REPO / "examples" / "http" / "curl-sse.sh"
CLIENT = REPO / "examples" / "http" / "client.py"
TOKEN = "doc-token-0123456789abcdef"


def console_blocks(section):
    """[(command, expected output)] of the ```console blocks of one ## section."""
    text = DOC.read_text()
    m = re.search(r"^## %s\n(.*?)(?=^## |\Z)" % re.escape(section), text, re.M | re.S)
    assert m, "no section %r in %s" % (section, DOC)
    out = []
    for block in re.findall(r"```console\n(.*?)```", m.group(1), re.S):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            chunk = re.sub(r"\\\n\s*", "", chunk)  # a command continued with `\`
            cmd, _, expected = chunk.partition("\n")
            out.append((cmd, expected))
    return out


def shape(v):
    """What must match between a documented and a real answer."""
    if isinstance(v, dict):
        if set(v) == {"error"}:
            return {"error": v["error"]["type"]}
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    if v is None or isinstance(v, float):
        return "number-or-null"  # temperature: null until set
    return type(v).__name__


def events_shape(body):
    names = [e for e, _ in parse_sse(body)]
    collapsed = [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]
    return collapsed, [shape(json.loads(d)) for e, d in parse_sse(body) if e != "delta"]


def check(cmd, expected, res):
    assert res.rc == 0, (cmd, res)
    exp = expected.encode()
    if exp.startswith(b"event: "):
        assert events_shape(res.outb) == events_shape(exp), (cmd, res.out)
    elif exp.startswith(b"{"):
        assert shape(json.loads(res.out)) == shape(json.loads(expected)), (cmd, res.out)
    elif exp.strip().isdigit():
        assert res.out.strip() == expected.strip(), (cmd, res.out)
    else:
        assert res.out.strip(), (cmd, res)


def test_doc_routes_run(shim, fake):
    base = "http://127.0.0.1:%d" % shim.port
    cmds = console_blocks("Routes")
    assert len(cmds) >= 13
    for cmd, expected in cmds:
        res = run(cmd.replace("http://127.0.0.1:61900", base), env=tool_env(shim.mount.home))
        check(cmd, expected, res)
    # The doc's story, seen on the mount: notes was made, talked to, deleted.
    assert not (shim.path / "notes").exists()
    assert [c.last_user_text for c in fake.calls] == ["What is a monad?", "Shorter, please."]


def test_doc_token_section_runs(shim_factory, workdir):
    sh = shim_factory(token=TOKEN)
    d = workdir / "tokdir"
    d.mkdir()
    (d / "token").write_text(TOKEN + "\n")
    for cmd, expected in console_blocks("With a token"):
        res = run(cmd.replace("http://127.0.0.1:61900", "http://127.0.0.1:%d" % sh.port),
                  env=tool_env(sh.mount.home), cwd=str(d))
        check(cmd, expected, res)


# --- examples/http --------------------------------------------------------------------------


def example_env(sh, token_file=None):
    env = tool_env(sh.mount.home, {"MCPFS_HTTP": "http://127.0.0.1:%d" % sh.port})
    if token_file:
        env["MCPFS_HTTP_TOKEN_FILE"] = str(token_file)
    return env


@pytest.mark.parametrize("example", ["curl-sse.sh", "client.py"])
def test_example_asks(shim, example):
    prog = str(CURL_SSE if example == "curl-sse.sh" else CLIENT)
    env = example_env(shim)
    r = run([prog, "my notes é", "what", "is", "this?"], env=env)
    assert r.rc == 0 and r.out == reply_for("what is this?") + "\n", r
    r = run([prog, "my notes é", "and again"], env=env)  # the context exists now
    assert r.rc == 0 and r.out == reply_for("and again") + "\n", r
    assert output(shim.path / "my notes é") == reply_for("and again")
    assert "what is this?" in read_text(shim.path / "my notes é" / "transcript")


@pytest.mark.parametrize("example", ["curl-sse.sh", "client.py"])
def test_example_reports_a_failed_turn(shim, fake, example):
    prog = str(CURL_SSE if example == "curl-sse.sh" else CLIENT)
    shim.api.create("bad")
    shim.api.request("PATCH", "/v1/contexts/bad", {"config": {"max_retries": 0}})
    fake.script("error", error_after=1, error_type="overloaded_error")
    r = run([prog, "bad", "fail please"], env=example_env(shim))
    assert r.rc == 1, r
    assert "overloaded_error" in r.err
    assert r.out.strip() and reply_for("fail please").startswith(r.out.strip())


@pytest.mark.parametrize("example", ["curl-sse.sh", "client.py"])
def test_example_with_token(shim_factory, workdir, example):
    prog = str(CURL_SSE if example == "curl-sse.sh" else CLIENT)
    sh = shim_factory(token=TOKEN)
    tok = workdir / ("tok-" + example)
    tok.write_text(TOKEN + "\n")
    os.chmod(tok, 0o600)
    r = run([prog, "t", "secret hello"], env=example_env(sh, tok))
    assert r.rc == 0 and r.out == reply_for("secret hello") + "\n", r
    r = run([prog, "t", "no token"], env=example_env(sh))
    assert r.rc == 1 and r.out == "", r
    assert TOKEN not in r.err


def test_client_lists(shim):
    shim.api.create("one")
    os.mkdir(shim.path / "two")
    r = run([str(CLIENT), "--list"], env=example_env(shim))
    assert r.rc == 0
    assert [line.split() for line in r.out.splitlines()] == [["idle", "one"], ["idle", "two"]]


# --- --no-mount -------------------------------------------------------------------------------


def test_no_mount_serves_and_stops(nomount, fake):
    nm = nomount()
    api = nm.api
    assert api.request("GET", "/v1/health").json()["status"] == "ok"
    api.create("solo")
    r = api.request("POST", "/v1/contexts/solo/messages", {"content": "no mount here"},
                    headers={"Accept": "text/event-stream"})
    assert r.status == 200
    text = "".join(json.loads(d)["text"] for e, d in parse_sse(r.body) if e == "delta")
    assert text == reply_for("no mount here")
    nm.proc.send_signal(signal.SIGINT)
    assert nm.proc.wait(10) == 0
    assert "stopped" in nm.log_text()


def test_no_mount_state_survives(nomount, mount_factory, fake):
    """What the shim alone stored, a later mount of the same state shows."""
    nm = nomount()
    nm.api.create("kept")
    nm.api.send("kept", "remember me")
    wait_for(lambda: nm.api.request("GET", "/v1/contexts/kept").json()["status"] == "idle")
    assert nm.stop() == 0
    m = mount_factory(args=["--state-dir=%s" % nm.state])
    assert output(m.path / "kept") == reply_for("remember me")


def test_no_mount_usage_errors(mcpfs_bin, fake, workdir):
    (workdir / "home").mkdir(exist_ok=True)
    env = daemon_env(workdir / "home", fake.base_url)
    st = "--state-dir=%s" % (workdir / "st")
    rc, lines = start_failure(mcpfs_bin, [st, "--no-mount"], env)
    assert rc == 1 and len(lines) == 1 and "--http" in lines[0], lines
    (workdir / "mnt").mkdir()
    rc, lines = start_failure(mcpfs_bin, [st, "--no-mount", "--http=127.0.0.1:1",
                                          str(workdir / "mnt")], env)
    assert rc == 1 and len(lines) == 1 and "mnt" in lines[0], lines


def test_daemonized_mount_serves_http(mcpfs_bin, fake, workdir):
    """Without -f the socket is bound before the fork and served after it."""
    (workdir / "home").mkdir(exist_ok=True)
    env = daemon_env(workdir / "home", fake.base_url)
    mnt = workdir / "dmnt"
    mnt.mkdir()
    port = free_port()
    r = run([mcpfs_bin, "--state-dir=%s" % (workdir / "dst"), "--http=127.0.0.1:%d" % port,
             str(mnt)], env=env)
    assert r.rc == 0, r
    try:
        api = Api(port)
        wait_for(api.healthy, 10, what="the daemon's HTTP shim")
        api.create("bg")
        api.send("bg", "in the background")
        assert output(mnt / "bg") == reply_for("in the background")
        assert ("127.0.0.1:%d" % port) in read_text(mnt / ".status")
    finally:
        unmount(mnt) or unmount(mnt, lazy=True)
    wait_for(lambda: not api.healthy(), 10, what="the daemon to stop serving after unmount")
