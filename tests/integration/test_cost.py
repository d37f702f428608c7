"""Cost and spending limits (CONTRACT §10, Cost): `cost_usd` in `usage` from the
price table shipped with mcpfs (data/prices.tsv, built in; `--prices=FILE`
replaces it), the root `.usage` (per context and per model, tab-separated, read
with awk), `spend_limit_usd` per context and in `.config` for all contexts
together (EDQUOT at the first write() of `input`, named in `status`), and the
same over HTTP (`cost_usd` in a context's usage, 402, GET /v1/usage).

Expected costs are computed here from the token counts `usage` shows and the
prices of the table, in exact decimals, so a test fails on a wrong price, a
missed cache count or a wrong rounding."""

import errno
import os
import subprocess
from decimal import ROUND_HALF_UP, Decimal

import pytest

from mcpfs_testlib import REPO, parse_kv, read_file, run, send, output, status, write_file
from http_support import shim, shim_factory  # noqa: F401  (fixtures)
from test_startup import assert_one_line_naming, start_expecting_failure

# The rows of data/prices.tsv this test relies on (USD per million tokens:
# input, output, cache write, cache read).
SONNET_5_5 = (Decimal("2"), Decimal("10"), Decimal("2.50"), Decimal("0.20"))
LONG = "word " * 1400  # over 1024 tokens (bytes // 4): the prompt is cached


def table_rows():
    rows = {}
    for line in (REPO / "data" / "prices.tsv").read_text().splitlines():
        f = line.split()
        if f and not f[0].startswith("#") and f[0] != "as_of":
            rows[f[0]] = tuple(Decimal(x) for x in f[1:])
    return rows


def cost(tokens, price):
    """USD of (input, output, cache_creation, cache_read) at price, 6 decimals."""
    usd = sum(Decimal(t) * p for t, p in zip(tokens, price)) / Decimal(10**6)
    return str(usd.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP))


def usage(ctx):
    return parse_kv(read_file(ctx / "usage"), ":")


def tokens(u, prefix):
    return [int(u[prefix + k]) for k in ("input_tokens", "output_tokens",
                                         "cache_creation_input_tokens",
                                         "cache_read_input_tokens")]


def exchange(ctx, text):
    send(ctx, text)
    output(ctx)


def usage_table(mount):
    """`.usage` as rows of fields (comment lines left out)."""
    text = read_file(mount.path / ".usage")
    assert text.startswith("# mcpfs usage"), text
    return [line.split("\t") for line in text.splitlines() if not line.startswith("#")]


def test_shipped_table_matches_built_in(mount):
    """The built-in table is data/prices.tsv: its date is the file's."""
    assert table_rows()["claude-sonnet-5-5"] == SONNET_5_5
    as_of = [line.split()[1] for line in (REPO / "data" / "prices.tsv").read_text().splitlines()
             if line.startswith("as_of")][0]
    ctx = mount.ctx("c")
    assert usage(ctx)["prices_as_of"] == as_of
    assert "built-in" in read_file(mount.path / ".usage").splitlines()[0]


def test_usage_cost_with_cache_reads_and_writes(mount):
    ctx = mount.ctx("c")
    u = usage(ctx)
    assert u["total_cost_usd"] == "0.000000" and u["last_cost_usd"] == "0.000000"
    exchange(ctx, LONG + "one")
    first = usage(ctx)
    exchange(ctx, LONG + "one")  # same prompt prefix: read from the cache
    u = usage(ctx)
    last = tokens(u, "last_")
    total = tokens(u, "total_")
    assert tokens(first, "total_")[2] > 0, "the first call wrote the cache: %r" % first
    assert last[3] > 0, "the second call read the cache: %r" % u
    assert u["last_cost_usd"] == cost(last, SONNET_5_5)
    assert u["total_cost_usd"] == cost(total, SONNET_5_5)
    assert u["cost_usd"] == u["total_cost_usd"], "cost_usd is the total: %r" % u
    assert first["total_cost_usd"] == cost(tokens(first, "total_"), SONNET_5_5)
    # token counts stay what they were
    assert int(u["calls"]) == 2


def test_dot_usage_per_context_and_model_read_with_awk(mount, tool_env):
    a, b = mount.ctx("a"), mount.ctx("b")
    write_file(b / "model", "claude-test-model\n")  # in the fake, not in the table
    exchange(a, "hello")
    exchange(a, "again")
    exchange(b, "hi")
    ua, ub = usage(a), usage(b)
    assert ub["total_cost_usd"] == "unknown" and ub["last_cost_usd"] == "unknown", ub
    assert ua["total_cost_usd"] != "unknown"
    # awk over the tab-separated lines
    r = run(["awk", "-F", "\t", '$1 == "context" { print $2, $4, $9 }', mount.path / ".usage"],
            env=tool_env)
    assert r.rc == 0, r
    assert r.out.splitlines() == ["a 2 %s" % ua["total_cost_usd"], "b 1 unknown"]
    r = run(["awk", "-F", "\t", '$1 == "model" { print $3, $4, $5 }', mount.path / ".usage"],
            env=tool_env)
    assert sorted(r.out.splitlines()) == sorted([
        "claude-sonnet-5-5 2 %s" % ua["total_input_tokens"],
        "claude-test-model 1 %s" % ub["total_input_tokens"]])
    rows = usage_table(mount)
    total = [row for row in rows if row[0] == "total"][0]
    assert total[3] == "3" and total[8] == "unknown"  # a model without a price
    # the total's tokens are the sum of the contexts'
    assert int(total[4]) == int(ua["total_input_tokens"]) + int(ub["total_input_tokens"])
    # read-only, listed, not removable
    assert ".usage" in run(["ls", "-a", mount.path], env=tool_env).out.split()
    r = run("echo x > %s/.usage" % mount.path, env=tool_env)
    assert r.rc != 0
    r = run(["rm", "-f", mount.path / ".usage"], env=tool_env)
    assert r.rc != 0


def test_spend_limit_of_a_context(mount, tool_env):
    ctx = mount.ctx("c")
    write_file(ctx / "config", "spend_limit_usd = 0.000001\n")
    exchange(ctx, "first")  # nothing spent yet: allowed
    assert usage(ctx)["total_cost_usd"] != "0.000000"
    r = run("echo second > %s/input" % ctx, env=tool_env)
    assert r.rc != 0 and "Disk quota exceeded" in r.err, r
    st = status(ctx)
    assert "spend limit 0.000001 USD reached (context)" in st["last_refused"], st
    assert int(usage(ctx)["calls"]) == 1  # nothing was sent
    assert "spend_limit_usd = 0.000001" in read_file(ctx / "config")
    # raised: writes go through again
    write_file(ctx / "config", "spend_limit_usd = 100\n")
    r = run("echo third > %s/input && cat %s/output" % (ctx, ctx), env=tool_env)
    assert r.rc == 0 and r.out == "reply to: third", r
    # back to a reached limit, then removed
    write_file(ctx / "config", "spend_limit_usd = 0.5e-6\n")
    assert run("echo x > %s/input" % ctx, env=tool_env).rc != 0
    write_file(ctx / "config", "spend_limit_usd = none\n")
    r = run("echo fourth > %s/input && cat %s/output" % (ctx, ctx), env=tool_env)
    assert r.rc == 0 and r.out == "reply to: fourth", r


def test_spend_limit_of_all_contexts(mount, tool_env):
    a = mount.ctx("a")
    write_file(mount.path / ".config", "spend_limit_usd = 0.00001\n")
    b = mount.ctx("b")
    # the root's limit is not each new context's own
    assert "spend_limit_usd = none" in read_file(b / "config")
    exchange(a, LONG)  # over 0.00001 USD at Sonnet 5.5's prices
    spent = Decimal(usage(a)["total_cost_usd"])
    assert spent >= Decimal("0.00001"), spent
    r = run("echo hi > %s/input" % b, env=tool_env)
    assert r.rc != 0 and "Disk quota exceeded" in r.err, r
    assert "spend limit 0.00001 USD reached (all contexts)" in status(b)["last_refused"]
    # a bad value is refused at write()
    r = run("echo 'spend_limit_usd = lots' > %s/.config" % mount.path, env=tool_env)
    assert r.rc != 0 and "Invalid argument" in r.err, r
    write_file(mount.path / ".config", "spend_limit_usd = 1\n")
    r = run("echo hi > %s/input && cat %s/output" % (b, b), env=tool_env)
    assert r.rc == 0 and r.out == "reply to: hi", r


def test_totals_survive_a_remount(mount):
    ctx = mount.ctx("c")
    exchange(ctx, LONG)
    write_file(ctx / "model", "claude-fable-5-1\n")
    exchange(ctx, "other model")
    before, table = usage(ctx), read_file(mount.path / ".usage")
    fable = table_rows()["claude-fable-5-1"]
    assert before["last_cost_usd"] == cost(tokens(before, "last_"), fable)
    mount.remount()
    assert usage(ctx) == before
    assert read_file(mount.path / ".usage") == table
    assert "claude-fable-5-1\t1\t" in table and "claude-sonnet-5-5\t1\t" in table


def test_stat_of_dot_usage_loads_no_journal(mount):
    """`ls -l` of the root must not load every context: until a read of
    `.usage` loaded them, its size is 0 (reads return it all regardless)."""
    for name in ("a", "b"):
        exchange(mount.ctx(name), "hi " + name)
    mount.remount()
    assert os.stat(mount.path / ".usage").st_size == 0
    text = read_file(mount.path / ".usage")
    assert "context\ta\t-\t1\t" in text and "context\tb\t-\t1\t" in text
    assert os.stat(mount.path / ".usage").st_size == len(text.encode())


def test_prices_file_replaces_the_table(mount_factory, workdir):
    f = workdir / "prices.tsv"
    f.write_text("# mine\nas_of 2027-01-02\nclaude-test-model 1 2 0 0\n")
    m = mount_factory(args=["--prices=%s" % f])
    ctx = m.ctx("c")
    write_file(ctx / "model", "claude-test-model\n")
    exchange(ctx, "priced now")
    u = usage(ctx)
    assert u["prices_as_of"] == "2027-01-02"
    assert u["total_cost_usd"] == cost(tokens(u, "total_"), (Decimal(1), Decimal(2), 0, 0))
    assert u["total_cost_usd"] != "0.000000"
    assert str(f) in read_file(m.path / ".usage").splitlines()[0]
    # the shipped table is replaced, not merged: Sonnet 5.5 has no price here
    d = m.ctx("d")
    exchange(d, "hi")
    assert usage(d)["total_cost_usd"] == "unknown"


@pytest.mark.parametrize("content,words", [
    ("as_of 2027-01-02\nclaude-x 1 2 3\n", ["line 2", "claude-x", "5 fields"]),
    ("as_of 2027-01-02\nclaude-x 1 2 3 lots\n", ["line 2", "lots"]),
    ("claude-x 1 2 3 4\n", ["line 1", "as_of"]),
    ("# nothing\n", ["no as_of"]),
])
def test_bad_prices_file_fails_start_up(mcpfs_bin, fake, workdir, content, words):
    f = workdir / "bad.tsv"
    f.write_text(content)
    mp = workdir / "mnt"
    mp.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "ANTHROPIC_API_KEY": "x",
           "ANTHROPIC_BASE_URL": fake.base_url}
    rc, lines = start_expecting_failure(
        mcpfs_bin, ["--state-dir=%s" % (workdir / "state"), "--prices=%s" % f], env, mp)
    assert_one_line_naming(rc, lines, f, *words)
    rc, lines = start_expecting_failure(
        mcpfs_bin, ["--state-dir=%s" % (workdir / "state"), "--prices=%s" % (workdir / "no")],
        env, mp)
    assert_one_line_naming(rc, lines, workdir / "no", "No such file")


def test_http_cost_limit_and_usage(shim):
    api = shim.api
    api.create("c", config={"spend_limit_usd": 0.000001})
    api.send("c", "one")
    api.output("c")
    info = api.request("GET", "/v1/contexts/c").json()
    u = info["usage"]
    want = cost([u["input_tokens"], u["output_tokens"], u["cache_creation_input_tokens"],
                 u["cache_read_input_tokens"]], SONNET_5_5)
    assert Decimal(str(u["cost_usd"])) == Decimal(want) and u["cost_usd"] > 0
    assert info["config"]["spend_limit_usd"] == 0.000001
    r = api.request("POST", "/v1/contexts/c/messages", {"content": "two"})
    assert r.status == 402, r
    err = r.json()["error"]
    assert err["type"] == "spend_limit_error"
    assert "spend limit 0.000001 USD reached (context)" in err["message"]
    r = api.request("GET", "/v1/usage")
    assert r.status == 200, r
    j = r.json()
    assert [c["name"] for c in j["contexts"]] == ["c"]
    assert j["contexts"][0]["cost_usd"] == u["cost_usd"]
    assert j["models"][0]["model"] == "claude-sonnet-5-5"
    assert j["total"]["calls"] == 1 and j["prices"]["as_of"]
    # removed over HTTP: sending works again
    r = api.request("PATCH", "/v1/contexts/c", {"config": {"spend_limit_usd": None}})
    assert r.status == 200, r
    assert api.send("c", "three") == 2
    assert api.request("POST", "/v1/usage").status == 405


def test_journal_dump_shows_the_model_of_each_call(mount):
    """The REPLY_END of a call names its model, so a later change of `model`
    does not reprice it (a key older loaders ignore, no new record type)."""
    ctx = mount.ctx("c")
    exchange(ctx, "hi")
    dump = os.environ.get("MCPFS_JOURNAL_DUMP") or str(REPO / "build" / "mcpfs-journal-dump")
    journal = mount.state / "contexts" / "c" / "journal"
    p = subprocess.run([str(dump), str(journal)], capture_output=True, text=True, timeout=20)
    assert '"model":"claude-sonnet-5-5"' in p.stdout.replace(" ", ""), p.stdout


def test_mcp_send_message_refused_by_the_limit(shim):
    """MCP's send_message is a new message too: refused as a tool error."""
    from test_mcp import Rpc, text_of
    rpc = Rpc(shim.port)
    rpc.initialize()

    def call(name, args):
        return rpc.request("tools/call", {"name": name, "arguments": args})[0]["result"]
    assert call("create_context", {"name": "m"})["isError"] is False
    write_file(shim.path / "m" / "config", "spend_limit_usd = 0\n")
    r = call("send_message", {"context": "m", "text": "hi"})
    assert r["isError"] is True
    assert text_of(r) == "spend limit 0.00 USD reached (context)", text_of(r)
    assert "spend limit 0.00 USD reached (context)" in status(shim.path / "m")["last_refused"]
    write_file(shim.path / "m" / "config", "spend_limit_usd = none\n")
    r = call("send_message", {"context": "m", "text": "hi"})
    assert r["isError"] is False and "reply to: hi" in text_of(r), r


def test_a_message_being_written_is_not_cut_off(mount):
    """The limit is checked at a message's first write(): one already started
    when the limit is reached is written and sent whole."""
    ctx = mount.ctx("c")
    exchange(ctx, "first")
    fd = os.open(ctx / "input", os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, b"second, ")
        write_file(ctx / "config", "spend_limit_usd = 0\n")  # reached now
        os.write(fd, b"whole")
    finally:
        os.close(fd)
    assert output(ctx) == "reply to: second, whole"
    with pytest.raises(OSError) as e:
        write_file(ctx / "input", "third")
    assert e.value.errno == errno.EDQUOT
