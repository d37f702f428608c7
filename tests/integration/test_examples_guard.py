"""Every example refuses to run on what is not mcpfs (issue 11, point 7): with
$MCPFS_MOUNT a plain directory, each exits non-zero with one line on standard
error and writes nothing there (ask.sh used to leave its question in a file of
that directory and wait); the HTTP clients do the same for a server that is
not the shim.  And `client.py … | head` ends without a traceback."""

import os
import shlex

import pytest

from mcpfs_testlib import REPO, run, tool_env
from http_support import free_port, shim, shim_factory  # noqa: F401  (fixtures)

EXAMPLES = REPO / "examples"

SH_EXAMPLES = [
    ("ask.sh", ["what is two"], None),
    ("ask.sh", ["-c", "math", "what is two"], None),
    ("chat.sh", ["talk"], "hello\n"),
    ("edit-system.sh", ["c"], None),
    ("edit-system.sh", ["-c", "c"], None),
    ("history-jq.sh", ["c"], None),
    ("summarize.sh", [str(REPO / "README.md")], None),
]


def all_examples():
    """Every file of examples/ and examples/http/ (so a new one is not forgotten)."""
    out = []
    for d in (EXAMPLES, EXAMPLES / "http"):
        out += sorted(p.name if d == EXAMPLES else "http/" + p.name
                      for p in d.iterdir() if p.is_file())
    return out


def test_every_example_is_covered():
    covered = {name for name, _, _ in SH_EXAMPLES} | {"http/client.py", "http/curl-sse.sh"}
    assert set(all_examples()) == covered, all_examples()


@pytest.mark.parametrize("name,args,stdin", SH_EXAMPLES)
@pytest.mark.parametrize("where", ["plain", "default"])
def test_refuses_a_plain_directory(workdir, name, args, stdin, where):
    home = workdir / "home"
    plain = home / "mcp"  # also what ~/mcp, the default, is here
    plain.mkdir(parents=True)
    env = tool_env(home, {"EDITOR": "sh -c 'echo edited > \"$1\"' editor"})
    if where == "plain":
        env["MCPFS_MOUNT"] = str(plain)
    r = run([EXAMPLES / name] + args, env=env, input=stdin, timeout=20)
    assert r.rc == 1, r
    assert r.err.splitlines() == ["%s: '%s' is not an mcpfs mount (mount one there, or set "
                                  "MCPFS_MOUNT)" % (name, env.get("MCPFS_MOUNT", str(plain)))
                                  if where == "plain" else
                                  "%s: '%s/mcp' is not an mcpfs mount (mount one there, or "
                                  "set MCPFS_MOUNT)" % (name, home)], r
    assert r.out == ""
    assert os.listdir(plain) == []  # nothing written


@pytest.mark.fake_invalid_ok  # the fake answers GET /v1/health with 404
@pytest.mark.parametrize("name", ["client.py", "curl-sse.sh"])
def test_http_clients_refuse_what_is_not_the_shim(fake, workdir, name):
    prog = EXAMPLES / "http" / name
    # The fake API is an HTTP server, but not the shim.
    env = tool_env(workdir, {"MCPFS_HTTP": fake.base_url})
    r = run([prog, "ctx", "hello"], env=env)
    assert r.rc == 1 and r.out == "", r
    assert r.err.splitlines() == ["%s: %s is not an mcpfs HTTP shim (set MCPFS_HTTP)"
                                  % (name, fake.base_url)], r
    assert [q.method for q in fake.requests if q.method != "GET"] == []  # nothing posted
    # Nothing listening at all.
    url = "http://127.0.0.1:%d" % free_port()
    r = run([prog, "ctx", "hello"], env=tool_env(workdir, {"MCPFS_HTTP": url}))
    assert r.rc == 1 and r.out == "" and len(r.err.splitlines()) == 1, r
    assert r.err.startswith("%s: nothing answers at %s" % (name, url)), r


def test_client_py_into_head_ends_quietly(shim, fake):  # noqa: F811
    fake.set_default("slow", pieces=["line %d\n" % i for i in range(40)], delay_ms=20)
    env = tool_env(shim.mount.home, {"MCPFS_HTTP": "http://127.0.0.1:%d" % shim.port})
    r = run("%s piped 'count to forty' | head -n 2" % shlex.quote(str(EXAMPLES / "http" /
                                                                    "client.py")),
            env=env, timeout=30)
    assert r.rc == 0, r
    assert r.out == "line 0\nline 1\n", r
    assert r.err == "", r  # no BrokenPipeError traceback
