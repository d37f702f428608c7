#!/usr/bin/python3
"""valgrind_session.py — one representative mcpfs session under valgrind
memcheck (scripts/valgrind runs it).

The daemon runs as `valgrind --tool=memcheck --leak-check=full … mcpfs -f …`
against the fake Anthropic server, and the session does what a user does:
mkdir, several turns in two contexts (readers while replies stream, queued
messages), a mid-stream failure and a non-retried 400, a retried 529, cancel
of a held call, retry, clear, settings edits (system, model, config, .config),
rename, rmdir while a call streams, a remount (so journals are loaded and
replayed), and a clean unmount, after which valgrind writes its leak report.

Then the log is summarised: memcheck errors, and leaks by kind, split into
those whose allocation stack reaches mcpfs code (src/…) and the rest (libfuse,
libcurl, OpenSSL, glibc).  Exit status 0 only when valgrind reported no error
and no definite or indirect leak from mcpfs code.

Usage: valgrind_session.py [--bin PATH] [--log FILE]
"""

import argparse
import errno
import os
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from mcpfs_testlib import (  # noqa: E402
    FakeAnthropic, Mount, Reader, output, read_file, read_partial, reply_for, send,
    test_tmp_base, wait_for, wait_status, write_file,
)

T = 60.0  # generous timeouts: everything is ~20x slower under valgrind


def session(m, fake):
    a = m.ctx("alpha")
    b = m.ctx("beta")
    write_file(m.path / ".config", "max_tokens = 2048\n", T)
    write_file(a / "system", "You are terse.\n", T)
    write_file(a / "model", "claude-haiku-4-5\n", T)
    write_file(a / "config", "temperature = 0.5\nmax_retries = 1\n", T)
    # Several turns; readers while the replies stream; queued messages.
    for i in range(3):
        send(a, "hello %d\n" % i, T)
        assert output(a, T) == reply_for("hello %d" % i)
    fake.set_default("slow", delay_ms=50)
    send(b, "one\n", T)
    send(b, "two\n", T)
    send(b, "three\n", T)
    r1 = Reader(b / "output")
    r2 = Reader(b / "output")
    assert r1.finish(T).data.decode() == reply_for("three")
    assert r2.finish(T).data.decode() == reply_for("three")
    fake.set_default("normal")
    # A mid-stream failure, a 400 (not retried), a 529 (retried).
    fake.script("error", error_after=1)
    send(a, "fails mid-stream\n", T)
    data, err = read_partial(a / "output", T)
    assert err is not None and err.errno == errno.EIO, (data, err)
    fake.script("status", status=400)
    send(a, "bad request\n", T)
    data, err = read_partial(a / "output", T)
    assert err is not None and err.errno == errno.EIO
    write_file(a / "ctl", "retry\n", T)
    assert output(a, T) == reply_for("bad request")
    fake.script("status", status=529, retry_after_ms=10)
    send(a, "overloaded once\n", T)
    assert output(a, T) == reply_for("overloaded once")
    # Cancel a held call, then retry it.
    fake.script("hold", hold_after=1)
    send(b, "held\n", T)
    fake.wait_held(timeout=T)
    write_file(b / "ctl", "cancel\n", T)
    wait_status(b, "error", T)
    fake.release()
    write_file(b / "ctl", "retry\n", T)
    assert output(b, T) == reply_for("held")
    write_file(b / "ctl", "clear\n", T)
    # Every rendering, once.
    for f in ("history", "history.json", "transcript", "status", "usage", "config", "model",
              "system"):
        read_file(a / f, T)
    read_file(m.path / ".status", T)
    # Rename; rmdir while a call streams (its reader ends).
    os.rename(a, m.path / "gamma")
    a = m.path / "gamma"
    fake.script("hold", hold_after=1)
    send(b, "deleted while streaming\n", T)
    fake.wait_held(timeout=T)
    r3 = Reader(b / "output")
    os.rmdir(b)
    r3.finish(T)
    fake.release()
    # A remount loads the journal back.
    assert m.stop(timeout=T * 2) in (0, None)
    m.start(timeout=T * 2)
    assert output(a, T) == reply_for("overloaded once")
    send(a, "after remount\n", T)
    assert output(a, T) == reply_for("after remount")
    # Files closed right before the unmount: the kernel may drop their RELEASE,
    # and the daemon must still free what they hold.
    fds = [os.open(a / f, os.O_RDONLY) for f in ("output", "status", "history") * 10]
    for fd in fds:
        os.close(fd)
    rc = m.stop(timeout=T * 2)
    return rc


LEAK_KINDS = ("definitely lost", "indirectly lost", "possibly lost")


def summarise(log_text):
    """(errors, {kind: (bytes, blocks)}, [leak records reaching mcpfs code],
    [other leak records])."""
    errors = 0
    for m in re.finditer(r"ERROR SUMMARY: (\d+) errors", log_text):
        errors = max(errors, int(m.group(1)))
    totals = {}
    for kind in LEAK_KINDS:
        m = re.search(r"%s: ([\d,]+) bytes in ([\d,]+) blocks" % kind, log_text)
        totals[kind] = tuple(int(x.replace(",", "")) for x in m.groups()) if m else (0, 0)
    ours, theirs = [], []
    # A record: "N bytes in M blocks are <kind> in loss record i of n" + its stack.
    for rec in re.split(r"\n==\d+== \n", log_text):
        if not re.search(r"are (definitely|indirectly|possibly) lost in loss record", rec):
            continue
        (ours if re.search(r"[( ](?:[^ ()]*/)?(?:src|tools)/[^ ()]*\.c:\d+\)", rec) else
         theirs).append(rec.strip())
    return errors, totals, ours, theirs


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("MCPFS_BIN") or str(REPO / "build" / "mcpfs"))
    ap.add_argument("--log", default=None, help="valgrind log file (default: in the temp dir)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="mcpfs-valgrind-", dir=test_tmp_base()))
    vglog = Path(args.log or root / "valgrind.%p.log").resolve()
    supp = REPO / "tests" / "valgrind.supp"
    wrapper = root / "mcpfs-under-valgrind"
    vg = ["valgrind", "--tool=memcheck", "--leak-check=full",
          "--show-leak-kinds=definite,indirect,possible", "--errors-for-leak-kinds=definite,indirect",
          "--error-exitcode=99", "--track-origins=yes", "--num-callers=30",
          # the notifier thread calls truncate(2) on our own mount: without this
          # hint valgrind keeps its lock across that call and the FUSE threads
          # that must answer it never run
          "--sim-hints=fuse-compatible",
          "--fullpath-after=%s/" % REPO,
          "--log-file=%s" % vglog]
    if supp.exists():
        vg.append("--suppressions=%s" % supp)
    wrapper.write_text("#!/bin/sh\nexec %s %s \"$@\"\n" % (" ".join(vg), args.bin))
    wrapper.chmod(stat.S_IRWXU)
    fake = FakeAnthropic().start()
    m = Mount(wrapper, fake.base_url, root, watchdog=900, allow_all_errors=True)
    rc = None
    try:
        m.start(timeout=T * 2)
        rc = session(m, fake)
    finally:
        m.cleanup()
        fake.stop()
    logs = sorted(root.glob("valgrind.*.log")) if args.log is None else [vglog]
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    errors, totals, ours, theirs = summarise(text)
    runs = len(re.findall(r"ERROR SUMMARY", text))
    print("valgrind: %d daemon run(s), exit status of the last %s" % (runs, rc))
    print("valgrind: %d error(s) (memcheck ERROR SUMMARY, leaks of kind definite/indirect "
          "included)" % errors)
    for kind in LEAK_KINDS:
        print("valgrind: %-16s %d bytes in %d blocks" % ((kind + ":",) + totals[kind]))
    print("valgrind: leak records reaching mcpfs code: %d; only in libraries: %d"
          % (len(ours), len(theirs)))
    for rec in ours:
        print("--- leak from mcpfs code:\n" + rec)
    for rec in theirs:
        print("--- library leak (not mcpfs code):\n" + "\n".join(rec.splitlines()[:12]))
    bad = errors or ours or rc not in (0, None) or runs == 0 or m.problems()
    for p in m.problems():
        print("problem: " + p)
    if bad or args.keep:
        print("logs kept in %s" % root)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
