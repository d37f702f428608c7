#!/usr/bin/python3
"""fsync_stall.py — what a slow fsync of one context's journal costs the others.

Mounts mcpfs with tests/integration/preload/fsync_fault.c preloaded, then
ROUNDS times: holds every fsync of context b's journal for HOLD seconds while a
message to b is saved (its writer's close() waits), and meanwhile runs whole
turns in context a (a message, its reply read to the end) and reads
`a/status`, one after the other.  Prints, per round and in all, the turns of a
completed and the status reads answered while b's fsync was held, and the
longest a status read took.  The fake answers at once.

Usage: fsync_stall.py [--bin PATH] [--hold SECONDS] [--rounds N]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from mcpfs_testlib import (  # noqa: E402
    FakeAnthropic, Mount, read_all, reply_for, test_tmp_base, write_all,
)


def one_round(mt, ctl, hold, n):
    a, b = mt.path / "a", mt.path / "b"
    (ctl / "hold").touch()
    writer = threading.Thread(target=write_all, args=(b / "input", "b %d\n" % n))
    writer.start()
    while not (ctl / "held").exists():
        time.sleep(0.001)
    held_at = time.monotonic()
    turns = reads = 0
    worst = 0.0
    done = [False]

    def release():
        time.sleep(hold)
        done[0] = True
        (ctl / "hold").unlink()
    t = threading.Thread(target=release)
    t.start()
    while not done[0]:
        word = "a %d %d" % (n, turns)
        write_all(a / "input", word + "\n")
        if done[0]:
            break
        got = read_all(a / "output").decode()
        if done[0]:
            break
        assert got == reply_for(word), got
        turns += 1
        t0 = time.monotonic()
        read_all(a / "status")
        worst = max(worst, time.monotonic() - t0)
        if not done[0]:
            reads += 1
    t.join()
    writer.join()
    assert read_all(b / "output").decode() == reply_for("b %d" % n)
    return turns, reads, worst, time.monotonic() - held_at


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("MCPFS_BIN", str(REPO / "build" / "mcpfs")))
    ap.add_argument("--hold", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    root = Path(tempfile.mkdtemp(prefix="mcpfs-fsync-", dir=test_tmp_base()))
    lib = root / "fsync_fault.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(lib),
                    str(REPO / "tests" / "integration" / "preload" / "fsync_fault.c"), "-ldl"],
                   check=True)
    ctl = root / "ctl"
    ctl.mkdir()
    fake = FakeAnthropic().start()
    fake.set_default("normal", deltas=20)
    mt = Mount(args.bin, fake.base_url, root, env={
        "LD_PRELOAD": str(lib), "MCPFS_FAULT_DIR": str(ctl),
        "MCPFS_FAULT_MATCH": "/contexts/b/journal"}, watchdog=0)
    mt.start()
    try:
        os.mkdir(mt.path / "a")
        os.mkdir(mt.path / "b")
        total = [0, 0, 0.0]
        for n in range(args.rounds):
            turns, reads, worst, took = one_round(mt, ctl, args.hold, n)
            print("round %d: b's fsync held %.2f s; a: %d turns of 20 deltas, %d status reads "
                  "(longest %.1f ms)" % (n + 1, took, turns, reads, worst * 1000))
            total[0] += turns
            total[1] += reads
            total[2] = max(total[2], worst)
        print("in all: %d rounds of %.1f s: a completed %d turns and %d status reads while b's "
              "fsync was held; longest status read %.1f ms"
              % (args.rounds, args.hold, total[0], total[1], total[2] * 1000))
    finally:
        if (ctl / "hold").exists():
            (ctl / "hold").unlink()
        mt.stop()
        fake.stop()
        subprocess.run(["rm", "-rf", str(root)])


if __name__ == "__main__":
    main()
