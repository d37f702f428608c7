#!/usr/bin/python3
"""soak.py — many turns across many contexts, with random cancels, deletes and
remounts, watching the daemon's memory and descriptors.

Each turn writes a message to a random context's `input`, reads `output` to
the end and checks it is the fake's reply to that message.  Around the turns:
a cancel of a call held in flight (its reader must end with EIO), the delete of
a random context (and a new one in its place, so that the number of contexts
and the history they hold stay level), and clean remounts, at random points in
the first 40 % of the run.  The fake answers at once (no delay).

Figures: turns/s, and for each daemon lifetime ("segment") its RSS
(/proc/PID/status VmRSS) and open descriptors (/proc/PID/fd) after a warm-up
and at its end.  The longest segment — from the last remount to the end, at
least 60 % of the turns — must stay within the RSS limit (default 10 %) and
end with no more descriptors than after its warm-up.

Usage: soak.py [TURNS] [CONTEXTS] [--seed N] [--bin PATH]   (scripts/soak)
tests/integration/test_soak.py runs a small version through run_soak().
"""

import argparse
import errno
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from mcpfs_testlib import (  # noqa: E402
    FakeAnthropic, Mount, fd_count, proc_status, read_to_end, reply_for, test_tmp_base, write_all,
)


def read_all(path):
    """(bytes, errno or None): reads to EOF or an error."""
    data, err = read_to_end(path)
    return data, err.errno if err is not None else None


class Soak:
    def __init__(self, mount, fake, turns, contexts, seed=1, log=None, warmup=None,
                 remounts=3, cancel_p=0.01, delete_p=0.08, hang_timeout=60.0):
        self.m, self.fake = mount, fake
        self.turns, self.ncontexts = turns, contexts
        self.rng = random.Random(seed)
        self.log = log or (lambda s: None)
        self.cancel_p, self.delete_p = cancel_p, delete_p
        self.hang_timeout = hang_timeout
        # Remounts at random turns of the first 40 %; the last segment is the
        # long one that the RSS and descriptor limits are checked on.
        self.remount_at = sorted(self.rng.sample(range(max(1, turns // 10), max(2, turns * 2 // 5)),
                                                 remounts)) if remounts else []
        last = self.remount_at[-1] if self.remount_at else 0
        self.warmup = warmup if warmup is not None else min(2000, (turns - last) // 4)
        self.names = []
        self.next_name = 0
        self.next_msg = 0
        self.errors = []
        self.stats = {"turns": 0, "cancels": 0, "deletes": 0, "remounts": 0, "bad_replies": 0}
        self.segments = []  # dicts: start_turn, pid, warm (rss, fds), end (rss, fds), turns

    # --- pieces ------------------------------------------------------------------------

    def error(self, msg):
        self.errors.append(msg)
        self.log("ERROR: " + msg)

    def mkdir(self):
        self.next_name += 1
        name = "s%d" % self.next_name
        os.mkdir(self.m.path / name)
        self.names.append(name)

    def message(self):
        self.next_msg += 1
        return "soak %d %s\n" % (self.next_msg, "x" * self.rng.randint(0, 200))

    def turn(self):
        name = self.rng.choice(self.names)
        p = self.m.path / name
        text = self.message()
        write_all(p / "input", text.encode())
        data, err = read_all(p / "output")
        if err is not None or data != reply_for(text).encode():
            self.stats["bad_replies"] += 1
            self.error("%s: reply %r, error %s, to %r" % (name, data[:80], err, text[:40]))
        self.stats["turns"] += 1

    def cancel(self):
        """A call held in flight, cancelled: its reader ends with EIO."""
        name = self.rng.choice(self.names)
        p = self.m.path / name
        n = len(self.fake.calls)
        self.fake.script("hold", hold_after=1)
        text = self.message()
        write_all(p / "input", text.encode())
        self.fake.wait_until(lambda: len(self.fake.calls) > n and self.fake.calls[n].held,
                             self.hang_timeout, "the held call")
        write_all(p / "ctl", b"cancel\n")
        data, err = read_all(p / "output")
        if err != errno.EIO or not reply_for(text).encode().startswith(data):
            self.error("%s: cancelled turn gave %r then %s" % (name, data[:80], err))
        self.fake.release()
        self.stats["cancels"] += 1

    def delete(self):
        name = self.rng.choice(self.names)
        os.rmdir(self.m.path / name)
        self.names.remove(name)
        self.mkdir()
        self.stats["deletes"] += 1

    def sample(self):
        pid = self.m.proc.pid
        return proc_status(pid, "VmRSS") or 0, fd_count(pid)

    def start_segment(self, at):
        self.segments.append({"start_turn": at, "pid": self.m.proc.pid, "warm": None,
                              "warm_turn": None, "end": None, "turns": 0})

    # --- the run ---------------------------------------------------------------------------

    def run(self):
        self.fake.set_default("normal")
        if not self.m.proc or self.m.proc.poll() is not None:
            self.m.start(timeout=30)
        existing = sorted(n for n in os.listdir(self.m.path) if not n.startswith("."))
        self.names = existing
        while len(self.names) < self.ncontexts:
            self.mkdir()
        self.start_segment(0)
        t0 = time.monotonic()
        last_report = t0
        for i in range(self.turns):
            if self.remount_at and i == self.remount_at[0]:
                self.remount_at.pop(0)
                self.end_segment()
                self.m.remount(timeout=30)
                self.stats["remounts"] += 1
                self.start_segment(i)
            seg = self.segments[-1]
            if seg["warm"] is None and i - seg["start_turn"] >= self.warmup:
                seg["warm"], seg["warm_turn"] = self.sample(), i
            watchdog = threading.Timer(self.hang_timeout, self.hang)
            watchdog.daemon = True
            watchdog.start()
            try:
                r = self.rng.random()
                if r < self.cancel_p:
                    self.cancel()
                elif r < self.cancel_p + self.delete_p:
                    self.delete()
                self.turn()
            except (OSError, AssertionError) as e:
                self.error("turn %d: %r" % (i, e))
                watchdog.cancel()
                break
            watchdog.cancel()
            seg["turns"] += 1
            if time.monotonic() - last_report > 30 or (i + 1) % 2500 == 0:
                last_report = time.monotonic()
                self.log("%d turns, %.0f turns/s, rss %d kB, fds %d" % (
                    i + 1, (i + 1) / (last_report - t0), *self.sample()))
        self.end_segment()
        elapsed = time.monotonic() - t0
        rc = self.m.stop()
        if rc != 0:
            self.error("mcpfs exited with status %s on unmount" % rc)
        invalid = self.fake.invalid
        if invalid:
            self.error("the daemon sent %d request(s) the API would refuse" % len(invalid))
        for line in self.m.unexpected_log_lines():
            self.error("daemon log: %s" % line)
        return self.figures(elapsed)

    def hang(self):
        self.error("a turn took longer than %.0f s; killing the daemon" % self.hang_timeout)
        try:
            self.m.proc.kill()
        except OSError:
            pass

    def end_segment(self):
        seg = self.segments[-1]
        if self.m.proc and self.m.proc.poll() is None:
            seg["end"] = self.sample()

    def figures(self, elapsed):
        f = dict(self.stats)
        f["seconds"] = round(elapsed, 1)
        f["turns_per_s"] = round(self.stats["turns"] / elapsed, 1) if elapsed else 0
        f["segments"] = self.segments
        f["errors"] = len(self.errors)
        main = max(self.segments, key=lambda s: s["turns"])
        f["main_segment_turns"] = main["turns"]
        if main["warm"] and main["end"]:
            (r0, d0), (r1, d1) = main["warm"], main["end"]
            f["rss_warm_kb"], f["rss_end_kb"] = r0, r1
            f["rss_growth_pct"] = round(100.0 * (r1 - r0) / r0, 1)
            f["fds_warm"], f["fds_end"] = d0, d1
        return f


def run_soak(mount, fake, turns, contexts, seed=1, log=None, **kw):
    s = Soak(mount, fake, turns, contexts, seed=seed, log=log, **kw)
    return s.run(), s.errors


def main(argv=None):
    ap = argparse.ArgumentParser(description="mcpfs soak (see the module comment)")
    ap.add_argument("turns", type=int, nargs="?", default=10000)
    ap.add_argument("contexts", type=int, nargs="?", default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--remounts", type=int, default=3)
    ap.add_argument("--rss-limit", type=float, default=10.0, help="percent (default 10)")
    ap.add_argument("--bin", default=os.environ.get("MCPFS_BIN") or str(REPO / "build" / "mcpfs"))
    args = ap.parse_args(argv)
    root = tempfile.mkdtemp(prefix="mcpfs-soak-", dir=test_tmp_base())
    fake = FakeAnthropic(record_bodies=False).start()
    # no daemon error line is expected (test_soak.py checks the same)
    mount = Mount(args.bin, fake.base_url, root, watchdog=0)

    def log(s):
        print(s, file=sys.stderr, flush=True)

    print("soak: %d turns over %d contexts, %d remounts, seed %d, binary %s"
          % (args.turns, args.contexts, args.remounts, args.seed, args.bin))
    try:
        fig, errors = run_soak(mount, fake, args.turns, args.contexts, args.seed, log,
                               remounts=args.remounts)
    finally:
        mount.cleanup()
        fake.stop()
    for k in ("turns", "cancels", "deletes", "remounts", "bad_replies", "seconds", "turns_per_s",
              "main_segment_turns", "rss_warm_kb", "rss_end_kb", "rss_growth_pct", "fds_warm",
              "fds_end", "errors"):
        print("%-20s %s" % (k, fig.get(k)))
    for s in fig["segments"]:
        print("segment from turn %-6d %5d turns  warm (turn %s) rss %s kB fds %s  end rss %s kB "
              "fds %s" % (s["start_turn"], s["turns"], s["warm_turn"],
                          *(s["warm"] or ("-", "-")), *(s["end"] or ("-", "-"))))
    for e in errors[:20]:
        print("ERROR: " + e)
    ok = not errors and "rss_growth_pct" in fig and fig["rss_growth_pct"] <= args.rss_limit \
        and fig["fds_end"] <= fig["fds_warm"]
    print("soak: %s" % ("PASS" if ok else "FAIL"))
    if ok:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print("kept %s (log %s)" % (root, mount.log_path))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
