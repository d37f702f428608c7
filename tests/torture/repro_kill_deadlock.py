#!/usr/bin/python3
"""repro_kill_deadlock.py — minimal reproduction: SIGKILL can leave mcpfs an
unkillable zombie, its mount hung and its state directory locked.

The notifier thread (src/fs/fs.c, notify_output) raises inotify events by
calling truncate(2) (and open/close) on `output` through the daemon's own
mount.  If SIGKILL arrives after a FUSE worker thread has read that request
and before it replied, the kernel waits, uninterruptibly, for the reply
(request_wait_answer); the dying process keeps its file table — and in it
/dev/fuse and the flock'd STATE/lock — until that thread returns, which never
happens: the connection is only aborted when /dev/fuse is closed.  Result: a
zombie with one thread in D state, every process touching the mount hangs,
and a new mcpfs on the same state directory fails ("in use by another mcpfs").
Only `echo 1 > /sys/fs/fuse/connections/N/abort` recovers.

The script streams replies in a few contexts (so the notifier is busy),
SIGKILLs the daemon at a random moment, and reports whether it was reaped
within 10 s.  It recovers a stuck connection through fusectl (mounting it if
needed), so it never leaves the machine hung.

Usage: repro_kill_deadlock.py [ATTEMPTS] [--bin PATH]; exit 1 when it happened.
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "tests" / "torture"))
from mcpfs_testlib import FakeAnthropic, Mount, test_tmp_base, unmount  # noqa: E402
from torture import abort_conn, fuse_conn_of  # noqa: E402


def kill_and_check(m, timeout=10.0):
    """SIGKILLs the daemon; True when it was reaped in time.  Otherwise
    describes the stuck threads, aborts the connection and returns False."""
    conn = fuse_conn_of(m.path)
    pid = m.proc.pid
    os.kill(pid, signal.SIGKILL)
    try:
        m.proc.wait(timeout)
        ok = True
    except subprocess.TimeoutExpired:
        ok = False
        print("daemon %d not reaped %.0f s after SIGKILL; its threads:" % (pid, timeout))
        for t in sorted(os.listdir("/proc/%d/task" % pid)):
            base = "/proc/%d/task/%s/" % (pid, t)
            try:
                state = open(base + "stat").read().rsplit(")", 1)[1].split()[0]
                stack = open(base + "stack").read().strip().splitlines()[:6]
            except OSError:
                continue
            print("  tid %s state %s\n    %s" % (t, state, "\n    ".join(stack)))
        if conn is not None and abort_conn(conn):
            print("  (recovered: aborted FUSE connection %d)" % conn)
        m.proc.wait(30)
    m._expect_exit = True
    unmount(m.path, lazy=True)
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("attempts", type=int, nargs="?", default=100)
    ap.add_argument("--bin", default=os.environ.get("MCPFS_BIN") or str(REPO / "build" / "mcpfs"))
    args = ap.parse_args(argv)
    rng = random.Random(1)
    fake = FakeAnthropic(record_bodies=False).start()
    fake.set_default("slow", delay_ms=5, deltas=40)
    root = tempfile.mkdtemp(prefix="mcpfs-repro-", dir=test_tmp_base())
    m = Mount(args.bin, fake.base_url, root, watchdog=0, allow_all_errors=True)
    stuck = 0
    try:
        for i in range(args.attempts):
            m.start(timeout=30)
            ctxs = []
            for k in range(4):
                p = m.path / ("c%d" % k)
                if not p.exists():
                    os.mkdir(p)
                ctxs.append(p)
            for p in ctxs:
                for _ in range(3):
                    with open(p / "input", "w") as f:
                        f.write("message %d\n" % i)
            time.sleep(rng.uniform(0.05, 0.5))  # a random moment while replies stream
            if not kill_and_check(m):
                stuck += 1
                print("attempt %d: the daemon hung after SIGKILL" % (i + 1))
    finally:
        m.cleanup()
        fake.stop()
    print("%d of %d kills left an unkillable daemon" % (stuck, args.attempts))
    return 1 if stuck else 0


if __name__ == "__main__":
    sys.exit(main())
