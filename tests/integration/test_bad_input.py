"""Bad input batteries (CONTRACT §2-§4): context names through mkdir and mv, the
message size limit, invalid UTF-8, every config key with bad values, invalid
model ids, random bytes into every writable file, and odd open flags.  Each
case must get a clear error (the errno the contract names), change nothing (read
back and compared) and leave the daemon alive.

Each battery prints one summary line (run with -s) and records its number of
cases as the property "cases" (pytest --junitxml), for doc/reliability.md.
"""

import errno
import os
import random
import re

from mcpfs_testlib import (
    call_with_timeout, output, read_file, read_partial, reply_for, run, send,
    status, wait_for, wait_status, write_file, write_pieces,
)

CTX_FILES = {"input", "output", "history", "history.json", "transcript", "system", "model",
             "config", "status", "usage", "ctl", "schema", "thinking", "transcript.json",
             "attach", "summary"}
READ_ONLY = ["output", "history", "history.json", "transcript", "status", "usage"]


def tally(record_property, battery, n, what="clear errors, nothing changed, daemon alive"):
    record_property("cases", n)
    print("\nbattery %-16s %4d cases: %s" % (battery, n, what))


def expect_error(fn, errnos, what):
    """fn() must raise OSError with one of errnos; returns the errno."""
    errnos = (errnos,) if isinstance(errnos, int) else tuple(errnos)
    try:
        call_with_timeout(fn, 10, what)
    except OSError as e:
        assert e.errno in errnos, "%s: %s, expected %s" % (
            what, errno.errorcode.get(e.errno, e.errno), "/".join(errno.errorcode[x]
                                                                  for x in errnos))
        return e.errno
    raise AssertionError("%s succeeded; expected %s" % (what, "/".join(errno.errorcode[x]
                                                                      for x in errnos)))


def alive(mount):
    assert mount.proc.poll() is None, "the daemon exited"
    assert read_file(mount.path / ".status")


def names_at(mount):
    return sorted(n for n in os.listdir(os.fsencode(mount.path)) if not n.startswith(b"."))


def names_on_disk(mount):
    return sorted(os.listdir(os.fsencode(mount.state / "contexts")))


def sent(fake):
    return [c.last_user_text.strip() for c in fake.calls]


# --- context names ----------------------------------------------------------------------------

E, T, X = errno.EINVAL, errno.ENAMETOOLONG, errno.EEXIST
# (id, name, errno of mkdir, errno of mv) — None: valid.  The first four never
# reach the daemon: the kernel resolves "", "." and ".." to existing
# directories and "/" separates components.
NAMES = [
    ("empty", b"", X, (errno.EXDEV, errno.EBUSY, errno.EINVAL, errno.EISDIR)),
    ("dot", b".", X, (errno.EBUSY, errno.EINVAL)),
    ("dotdot", b"..", X, (errno.EBUSY, errno.EINVAL, errno.ENOTEMPTY, errno.EXDEV)),
    ("slash", b"a/b", errno.ENOENT, errno.ENOENT),
    ("leading-dot", b".hidden", E, E),
    ("leading-dot-dotdot", b"...", E, E),
    ("reserved-like", b".config2", E, E),
    ("255-ascii", b"a" * 255, None, None),
    ("256-ascii", b"a" * 256, T, T),
    ("1000-ascii", b"n" * 1000, T, T),
    ("invalid-utf8-ff", b"bad\xff\xfe", E, E),
    ("invalid-utf8-latin1", b"caf\xe9", E, E),
    ("invalid-utf8-truncated", b"caf\xc3", E, E),
    ("invalid-utf8-overlong", b"\xc0\xafetc", E, E),
    ("invalid-utf8-surrogate", b"\xed\xa0\x80x", E, E),
    ("invalid-utf8-lone-continuation", b"a\x80b", E, E),
    ("control-newline", b"a\nb", E, E),
    ("control-tab", b"a\tb", E, E),
    ("control-soh", b"\x01", E, E),
    ("control-escape", b"\x1b[31mred", E, E),
    ("control-cr", b"a\r", E, E),
    ("del", b"a\x7fb", E, E),
    ("multibyte-255", "é".encode() * 127 + b"a", None, None),
    ("multibyte-256", "é".encode() * 128, T, T),
    ("cjk-255", "日".encode() * 85, None, None),
    ("cjk-256", "日".encode() * 85 + b"a", T, T),
    ("emoji-255", "🌸".encode() * 63 + b"abc", None, None),
    ("emoji-cut-at-255", ("🌸".encode() * 64)[:255], E, E),
    ("emoji-cut-at-256", ("🌸".encode() * 64)[:256], T, T),
    ("space-only", b" ", None, None),
    ("dash", b"-", None, None),
    ("spaces-inside", b"a b  c", None, None),
    ("byte-order-mark", b"\xef\xbb\xbfname", None, None),
    ("existing", b"c", X, None),  # mv c c is a no-op
]


def test_context_names_via_mkdir_and_mv(mount, fake, record_property):
    c = mount.ctx("c")
    send(c, "keep\n")
    assert output(c) == reply_for("keep")
    mp = os.fsencode(mount.path)
    base, base_disk = names_at(mount), names_on_disk(mount)
    n = 0
    for cid, name, mkdir_err, mv_err in NAMES:
        path = mp + b"/" + name
        # mkdir
        n += 1
        if mkdir_err is None:
            call_with_timeout(lambda: os.mkdir(path), 10, "mkdir %s" % cid)
            assert names_at(mount) == sorted(base + [name]), cid
            assert name in names_on_disk(mount), cid
            assert set(map(os.fsdecode, os.listdir(path))) == CTX_FILES, cid
            assert status(path.decode("utf-8")).state == "idle", cid
            call_with_timeout(lambda: os.rmdir(path), 10, "rmdir %s" % cid)
        else:
            expect_error(lambda: os.mkdir(path), mkdir_err, "mkdir %s" % cid)
        assert names_at(mount) == base, cid
        assert names_on_disk(mount) == base_disk, cid
        # mv c NAME
        n += 1
        if mv_err is None:
            call_with_timeout(lambda: os.rename(mp + b"/c", path), 10, "mv %s" % cid)
            assert names_at(mount) == sorted([name if x == b"c" else x for x in base]), cid
            assert read_file(path.decode("utf-8") + "/output") == reply_for("keep"), cid
            call_with_timeout(lambda: os.rename(path, mp + b"/c"), 10, "mv back %s" % cid)
        else:
            expect_error(lambda: os.rename(mp + b"/c", path), mv_err, "mv %s" % cid)
        assert names_at(mount) == base, cid
        assert names_on_disk(mount) == base_disk, cid
    # mv(1) itself reports the refusal (GNU mv words rename's EINVAL as "cannot
    # move ... to a subdirectory of itself")
    r = run(["mv", str(c), os.fsdecode(mp + b"/.hidden")])
    assert r.rc == 1 and "cannot move" in r.err, r
    assert names_at(mount) == base
    n += 1
    alive(mount)
    assert output(c) == reply_for("keep")
    send(c, "still here\n")
    assert output(c) == reply_for("still here")
    assert sent(fake) == ["keep", "still here"]
    tally(record_property, "context-names", n)


# --- the message size limit -------------------------------------------------------------------


def test_message_size_limit(mount, fake, record_property):
    big = mount.ctx("big")  # the default limit: 1 MiB
    write_file(big / "config", "budget_tokens = 10000000\n")
    small = mount.ctx("small")
    write_file(small / "config", "max_input_bytes = 1000\n")
    expected, n = [], 0
    mib = 1 << 20

    # (context, pieces, ok?, flags)
    cases = [
        ("exactly-1MiB", big, [b"m" * (mib - 1) + b"\n"], True, None),
        ("1MiB-plus-1", big, [b"m" * mib + b"\n"], False, None),
        ("1MiB-plus-1-in-two-writes", big, [b"m" * mib, b"\n"], False, None),
        ("exactly-1000", small, [b"a" * 999 + b"\n"], True, None),
        ("1001", small, [b"a" * 1000 + b"\n"], False, None),
        ("multibyte-ends-at-1000", small, [b"b" * 998 + "é".encode()], True, None),
        ("multibyte-crosses-1000", small, [b"b" * 999 + "é".encode()], False, None),
        ("100-writes-of-10", small, [b"%09d\n" % i for i in range(100)], True, None),
        ("101-writes-of-10", small, [b"%09d\n" % i for i in range(101)], False, None),
        ("append-1001", small, [b"c" * 500, b"c" * 500, b"c"], False,
         os.O_WRONLY | os.O_APPEND),
    ]
    for cid, ctx, pieces, ok, flags in cases:
        n += 1
        before = read_file(ctx / "output", timeout=30)
        fail, closed = write_pieces(ctx / "input", pieces, flags or os.O_WRONLY | os.O_TRUNC,
                                    timeout=30)
        failed, err = fail or (None, None)
        text = b"".join(pieces).decode()
        if ok:
            assert failed is None and closed is None, (cid, failed, err, closed)
            expected.append(text.strip())
            assert output(ctx, timeout=60) == reply_for(text), cid
        else:
            assert failed is not None and err == errno.EFBIG, (cid, failed, err)
            assert closed == errno.EFBIG, (cid, closed)
            st = status(ctx)
            assert re.search(r"over max_input_bytes", st.get("last_refused", "")), st.text
            assert read_file(ctx / "output", timeout=30) == before, cid
        assert sent(fake) == expected, cid
    # a shell sees "File too large"
    r = run("head -c 1001 /dev/zero | tr '\\0' q > '%s/input'" % small)
    assert r.rc != 0 and "File too large" in r.err, r
    n += 1
    # ftruncate past the limit
    def grow():
        fd = os.open(small / "input", os.O_WRONLY)
        try:
            os.ftruncate(fd, 1001)
        finally:
            os.close(fd)
    expect_error(grow, errno.EFBIG, "ftruncate input past the limit")
    n += 1
    alive(mount)
    send(small, "fits\n")
    assert output(small) == reply_for("fits")
    assert sent(fake) == expected + ["fits"]
    assert len(fake.calls[0].last_user_text) == mib
    tally(record_property, "message-size", n)


# --- invalid UTF-8 ----------------------------------------------------------------------------


UTF8 = [
    ("overlong-2-byte-slash", [b"a \xc0\xaf b\n"]),
    ("overlong-3-byte-slash", [b"\xe0\x80\xaf\n"]),
    ("overlong-4-byte-slash", [b"\xf0\x80\x80\xaf\n"]),
    ("overlong-nul", [b"nul \xc0\x80 here\n"]),
    ("surrogate-high", [b"\xed\xa0\x80\n"]),
    ("surrogate-low", [b"x\xed\xbf\xbfy\n"]),
    ("surrogate-pair-cesu8", [b"\xed\xa0\xbd\xed\xb8\x80\n"]),
    ("truncated-2-byte-at-end", [b"caf\xc3"]),
    ("truncated-3-byte-at-end", [b"\xe6\x97\xa5\xe6\x97"]),
    ("truncated-4-byte-at-end", [b"flower \xf0\x9f\x8c"]),
    ("truncated-in-middle", [b"a\xe6\x97b\n"]),
    ("lone-continuation", [b"\x80\n"]),
    ("lone-continuation-inside", [b"abc\xbfdef\n"]),
    ("above-u10ffff", [b"\xf4\x90\x80\x80\n"]),
    ("f5-lead-byte", [b"\xf5\x80\x80\x80\n"]),
    ("ff-byte", [b"\xff\n"]),
    ("utf16-bom", [b"\xfe\xff\x00h\x00i"]),
    ("latin1", [b"caf\xe9 cr\xe8me\n"]),
    ("valid-then-invalid-write", [b"all good so far, ", b"then \xc3\x28\n"]),
    ("invalid-split-across-writes", [b"half \xe6", b"\x28\n"]),
    ("nul-byte", [b"abc\x00def\n"]),  # the journal and the request hold C strings
]


def test_invalid_utf8_is_eilseq(mount, fake, record_property):
    """CONTRACT §3.3: the write that completes an invalid sequence fails (and
    every later write and the close); only a sequence cut off at the very end
    waits for the close.  The reason shows as last_refused; the context stays
    idle (a refused write is not a failed turn)."""
    ctx = mount.ctx("c")
    send(ctx, "valid\n")
    assert output(ctx) == reply_for("valid")
    n = 0
    for cid, pieces in UTF8:
        n += 1
        fail, closed = write_pieces(ctx / "input", pieces, timeout=30)
        failed, err = fail or (None, None)
        if cid.startswith("truncated-") and cid.endswith("-at-end"):
            assert failed is None, (cid, failed, err)  # the writes are taken...
        else:
            assert failed == len(pieces) - 1 and err == errno.EILSEQ, (cid, failed, err)
        assert closed == errno.EILSEQ, (cid, closed)  # ...the close refuses too
        st = status(ctx)
        assert st.state == "idle", (cid, st.text)
        assert re.search(r"not valid UTF-8", st.get("last_refused", "")), (cid, st.text)
        assert output(ctx) == reply_for("valid"), cid
        assert sent(fake) == ["valid"], cid
    r = run("/usr/bin/printf 'caf\\351\\n' > '%s/input'" % ctx)  # not bash's builtin
    assert r.rc != 0 and "Invalid or incomplete multibyte" in r.err, r
    n += 1
    alive(mount)
    send(ctx, "after all that\n")
    assert output(ctx) == reply_for("after all that")
    assert sent(fake) == ["valid", "after all that"]
    st = wait_status(ctx, "idle")
    assert st.get("last_error") is None and st.get("last_refused") is None, st.text
    tally(record_property, "invalid-utf8", n)


# --- config -----------------------------------------------------------------------------------


INT_KEYS = {  # key: (min, max)
    "max_tokens": (1, 1000000), "budget_tokens": (1, 10000000),
    "max_input_bytes": (1, 16777216), "max_retries": (0, 10), "connect_timeout": (1, 300),
    "idle_timeout": (1, 3600), "thinking_budget": (0, 999999),
}
NOT_INTS = ["abc", "12abc", "1.5", "1e3", "", "0x10", "99999999999999999999999", "+-1", "1 2",
            "5\x00", "\uff15", "- 5", "4096 tokens"]


def bad_config_lines():
    lines = []
    for key, (lo, hi) in INT_KEYS.items():
        lines += ["%s = %d" % (key, lo - 1), "%s = %d" % (key, hi + 1)]
        lines += ["%s = %s" % (key, v) for v in NOT_INTS]
    lines += ["thinking_budget = 1", "thinking_budget = 1023",
              "thinking_budget = 4096",  # not below max_tokens (4096)
              "max_tokens = 1000\nthinking_budget = 2000"]
    lines += ["temperature = %s" % v for v in ("-0.1", "1.01", "2", "abc", "nan", "inf", "-inf",
                                               "0.5x", "1e400", "0x1p-1", "1,5", ".", "-",
                                               "e", "0.5 0.5", "defaults")]
    lines += ["prompt_cache = %s" % v for v in ("maybe", "2", "", "onn", "o n", "tru", "-1")]
    lines += ["model = %s" % v for v in ("", "a b", "x" * 129, "\u00fc", "a;b", "m\x00", "a\tb",
                                         "'quoted'")]
    lines += ["frobnicate = 1", "Max_Tokens = 5", "max-tokens = 5", "max_tokens2 = 5",
              "ma x_tokens = 5", "model.name = x", "\u00fcber = 1"]
    lines += ["max_tokens", "= 5", "max_tokens == 5", "max_tokens : 5", "[section]",
              "max_tokens = 5 = 6", "\x00", "max_tokens = 100\nbudget_tokens = -3",
              "max_tokens = 100\nfrobnicate = 1", "# fine\nmax_tokens = x\n# fine"]
    return lines


def test_config_bad_values_are_einval_and_change_nothing(mount, fake, record_property):
    c = mount.ctx("c")
    # The default model (Claude 5) refuses temperature: one that takes it.
    write_file(c / "config", "model = claude-haiku-4-5\nmax_tokens = 321\ntemperature = 0.25\n")
    write_file(mount.path / ".config", "max_tokens = 654\n")
    targets = [c / "config", mount.path / ".config"]
    before = {t: read_file(t) for t in targets}
    n = 0
    for text in bad_config_lines():
        for t in targets:
            n += 1
            expect_error(lambda: write_file(t, text + "\n"), errno.EINVAL,
                         "%s <- %r" % (t.name, text))
            assert read_file(t) == before[t], (t.name, text)
    # a config over its size limit
    for t in targets:
        n += 1
        expect_error(lambda: write_file(t, "# padding\n" * 7000), (errno.EFBIG, errno.EINVAL),
                     "%s <- 70 KB" % t.name)
        assert read_file(t) == before[t]
    alive(mount)
    assert status(c).state == "idle"
    send(c, "hello\n")
    assert output(c) == reply_for("hello")
    assert fake.calls[0].max_tokens == 321 and fake.calls[0].body["temperature"] == 0.25
    d = mount.ctx("d")  # the defaults are intact too
    assert re.search(r"(?m)^max_tokens = 654$", read_file(d / "config"))
    tally(record_property, "config-values", n)


BAD_MODELS = ["", "\n", "   \n", "a b", "x" * 129, "\u00fc", "claude;rm -rf /", "a\x00b",
              "a\nb", "claude\tx", "<script>", "claude-3\x7f", "claude\u200b", "a\"b", "'m'",
              "%s%n", "back\\slash", "\xff", "model=x", "claude sonnet"]


def test_invalid_model_ids_are_einval(mount, fake, record_property):
    ctx = mount.ctx("c")
    n = 0
    # Well-formed ids are checked with the Models API too: these exist there.
    fake.add_model("x" * 128)
    fake.add_model("a/b:c@d.e_f-g")
    for good in ("x" * 128, " claude-haiku-4-5 \n", "a/b:c@d.e_f-g\r\n", "claude-sonnet-4-5\n"):
        write_file(ctx / "model", good)
        assert read_file(ctx / "model") == good.strip() + "\n"
        n += 1
    for bad in BAD_MODELS:
        n += 1
        expect_error(lambda: write_file(ctx / "model", bad), errno.EINVAL, "model <- %r" % bad)
        assert read_file(ctx / "model") == "claude-sonnet-4-5\n", bad
    r = run("/bin/echo 'no such model!' > '%s/model'" % ctx)
    assert r.rc != 0 and "Invalid argument" in r.err, r
    n += 1
    alive(mount)
    send(ctx, "hello\n")
    assert output(ctx) == reply_for("hello")
    assert fake.calls[0].model == "claude-sonnet-4-5"
    tally(record_property, "model-ids", n)


# --- random bytes -----------------------------------------------------------------------------

SEED = 20251121
PER_FILE = 50
KEYS = list(INT_KEYS) + ["temperature", "prompt_cache", "model"]


def random_input(rng):
    """Raw bytes, key = value-ish text, or valid UTF-8 with control characters."""
    kind = rng.randrange(3)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    if kind == 1:
        lines = []
        for _ in range(rng.randrange(1, 5)):
            junk = "".join(rng.choice("0123456789.-+eEx =#\t") for _ in range(rng.randrange(8)))
            lines.append("%s%s=%s" % (rng.choice(KEYS + ["junk", ""]), rng.choice(["", " "]),
                                      junk))
        return ("\n".join(lines) + rng.choice(["", "\n"])).encode()
    alphabet = "xyz \n\t\r\x01\x1b\x7f=#éü日🌸\u200b\ufeff"
    return ("x" + "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 100)))).encode()


def outcome(fn):
    try:
        call_with_timeout(fn, 10, "a random write")
        return None
    except OSError as e:
        return e.errno


def test_random_bytes_into_every_writable_file(mount, fake, record_property):
    rng = random.Random(SEED)
    ctxs = {name: mount.ctx(name) for name in ("rin", "rsys", "rmod", "rcfg", "rctl")}
    allowed = {"input": {errno.EILSEQ}, "system": {errno.EILSEQ}, "model": {errno.EINVAL},
               "config": {errno.EINVAL}, "ctl": {errno.EINVAL}, ".config": {errno.EINVAL}}
    targets = [("input", ctxs["rin"] / "input"), ("system", ctxs["rsys"] / "system"),
               ("model", ctxs["rmod"] / "model"), ("config", ctxs["rcfg"] / "config"),
               ("ctl", ctxs["rctl"] / "ctl"), (".config", mount.path / ".config")]
    accepted, counts, n = [], {}, 0
    for kind, path in targets:
        for _ in range(PER_FILE):
            data = random_input(rng)
            before = None if kind in ("input", "ctl") else read_file(path, binary=True)
            hist = read_file(path.parent / "history.json") if kind == "ctl" else None
            err = outcome(lambda: write_file(path, data))
            n += 1
            counts[(kind, err)] = counts.get((kind, err), 0) + 1
            if err is not None:
                assert err in allowed[kind], (kind, data, errno.errorcode.get(err, err))
                if before is not None:
                    assert read_file(path, binary=True) == before, (kind, data)
            elif kind == "input":
                text = data.decode("utf-8")
                if text.strip(" \t\n\r\v\f"):
                    accepted.append(text.strip())
            elif kind == "system":
                assert read_file(path, binary=True) == data, data
            elif kind == "model":
                assert read_file(path, binary=True) == data.strip() + b"\n", data
            if kind == "ctl":
                assert read_file(path.parent / "history.json") == hist, data
            assert mount.proc.poll() is None, "the daemon died on %s <- %r" % (kind, data)
    # every accepted message was sent, in order, and nothing else
    fake.wait_calls(len(accepted), timeout=60, done=True)
    wait_for(lambda: status(ctxs["rin"]).state not in ("queued", "waiting", "streaming"), 60,
             what="the last accepted message's turn to end")
    assert [c.last_user_text.strip() for c in fake.calls] == accepted
    # every file of every context is still readable, and each context works
    alive(mount)
    read_file(mount.path / ".config")
    for name, c in ctxs.items():
        assert set(os.listdir(c)) == CTX_FILES
        for f in CTX_FILES - {"output", "ctl", "attach"}:
            read_file(c / f)
        read_partial(c / "output")
        write_file(c / "model", "claude-sonnet-4-5\n")
        write_file(c / "config", "max_tokens = 4096\nthinking_budget = 0\n"
                                 "max_input_bytes = 1048576\nbudget_tokens = 100000\n")
        write_file(c / "system", "")
        send(c, "final %s\n" % name)
        assert output(c, timeout=20) == reply_for("final %s" % name)
    summary = ", ".join("%s %s: %d" % (k, errno.errorcode.get(e, "ok") if e else "ok", v)
                        for (k, e), v in sorted(counts.items(), key=str))
    tally(record_property, "random-bytes", n, "seed %d; %s" % (SEED, summary))


# --- open flags -------------------------------------------------------------------------------


def open_close(path, flags, write=None, read=False):
    def body():
        fd = os.open(path, flags, 0o600)
        try:
            for w in write or ():
                os.write(fd, w)
            if read:
                assert os.read(fd, 100) == b""
        finally:
            os.close(fd)
    call_with_timeout(body, 10, "open %s" % path)


def snapshot(mount, c):
    snap = {f: read_file(c / f) for f in CTX_FILES - {"output", "ctl", "input", "status", "attach"}}
    snap["output"] = read_partial(c / "output")[0]
    snap["status"] = status(c).state
    snap[".config"] = read_file(mount.path / ".config")
    snap["names"] = names_at(mount)
    snap["listing"] = sorted(os.listdir(c))
    return snap


def test_odd_open_flags(mount, fake, record_property):
    c = mount.ctx("c")
    send(c, "first\n")
    assert output(c) == reply_for("first")
    root = mount.path
    W, RW, RO = os.O_WRONLY, os.O_RDWR, os.O_RDONLY
    CX, TR, AP, DIR = os.O_CREAT | os.O_EXCL, os.O_TRUNC, os.O_APPEND, os.O_DIRECTORY
    refused = []  # (path, flags, errno)
    for f in READ_ONLY + [root / ".status"]:
        p = c / f if isinstance(f, str) else f
        refused += [(p, W, errno.EACCES), (p, RW, errno.EACCES), (p, W | TR, errno.EACCES),
                    (p, RW | AP, errno.EACCES), (p, RO | CX, errno.EEXIST),
                    (p, RO | DIR, errno.ENOTDIR)]
    for f in ("input", "system", "model", "config", "ctl"):
        refused += [(c / f, W | CX, errno.EEXIST), (c / f, RO | DIR, errno.ENOTDIR)]
    # ctl reads its list of commands (CONTRACT §2): no longer refused for reading
    refused += [(root / ".config", RW | CX, errno.EEXIST),
                (c, W | CX, errno.EEXIST), (c, W, errno.EISDIR), (c, RW, errno.EISDIR),
                (root, W, errno.EISDIR), (c / "new", W | os.O_CREAT, errno.EACCES),
                (root / "new", W | os.O_CREAT, errno.EACCES),
                (c, W | os.O_TMPFILE, (errno.EOPNOTSUPP, errno.EISDIR, errno.EACCES)),
                (root, W | os.O_TMPFILE, (errno.EOPNOTSUPP, errno.EISDIR, errno.EACCES))]
    n = 0
    before = snapshot(mount, c)
    for path, flags, err in refused:
        n += 1
        expect_error(lambda: open_close(path, flags), err, "open(%s, %#o)" % (path, flags))
    assert snapshot(mount, c) == before
    # O_TRUNC on what is read-only: accepted, nothing is truncated
    for f in READ_ONLY:
        n += 1
        open_close(c / f, RO | TR)
    open_close(root / ".status", RO | TR)
    n += 1
    assert snapshot(mount, c) == before
    # flags that are fine on input: one message per open file description
    accepted = [
        ("append", W | AP, [b"app", b"ended\n"], False),
        ("rdwr", RW, [b"read", b"write\n"], True),
        ("rdwr-append", RW | AP, [b"rdwr ", b"append\n"], True),
        ("creat-existing", W | os.O_CREAT | TR, [b"creat\n"], False),
        ("sync", W | TR | os.O_SYNC, [b"synced\n"], False),
        ("nonblock", W | TR | os.O_NONBLOCK, [b"nonblocking\n"], False),
    ]
    for cid, flags, pieces, read in accepted:
        n += 1
        open_close(c / "input", flags, pieces, read)
        text = b"".join(pieces).decode()
        assert output(c) == reply_for(text), cid
    n += 1
    open_close(c / "input", W | os.O_CREAT)  # no write: nothing sent
    # `>>` right after `>`: the kernel's idea of input's size is the last
    # message's; the append must not start with that many NULs
    n += 1
    r = run("cd '%s' && echo shell-one > input && cat output >/dev/null && "
            "echo shell-two >> input && cat output" % c)
    assert r.rc == 0 and r.out == reply_for("shell-two"), r
    accepted += [("shell", 0, [b"shell-one"], False), ("shell", 0, [b"shell-two"], False)]
    # O_APPEND on settings appends (the shell's >>)
    n += 2
    open_close(c / "system", W | AP, [b"You are terse."])
    open_close(c / "system", W | AP, [b" Very."])
    assert read_file(c / "system") == "You are terse. Very."
    open_close(c / "config", W | AP, [b"max_retries = 3\n"])
    assert re.search(r"(?m)^max_retries = 3$", read_file(c / "config"))
    n += 1
    alive(mount)
    send(c, "last\n")
    assert output(c) == reply_for("last")
    want = ["first"] + [b"".join(p).decode().strip() for _, _, p, _ in accepted] + ["last"]
    assert sent(fake) == want
    assert fake.calls[-1].system == "You are terse. Very."
    assert set(os.listdir(c)) == CTX_FILES
    assert names_at(mount) == [b"c"]
    tally(record_property, "open-flags", n)
