#!/usr/bin/python3
"""torture.py — crash torture for mcpfs: random work, SIGKILL at a random moment,
remount, and check everything that was committed against an independent record.

Each cycle mounts mcpfs on the same state directory, checks the whole mount
against the record this driver keeps, then does random work — sending messages
(one, or several at once so they queue) while the fake Anthropic server streams
slowly, reading replies as they stream (blocking readers in threads, and
O_NONBLOCK peeks), cancelling, retrying, reading `status`, creating, renaming
and deleting contexts, editing `system`, `model`, `config` and `.config` — and
SIGKILLs the daemon at a random moment, from another thread, whatever it is
doing.  Sometimes the kill lands during the check itself, that is while the
daemon is loading journals and marking interrupted replies.

What "committed" means (the record's rules; CONTRACT §3, §6, journal.md §6)
---------------------------------------------------------------------------
Only what the daemon acknowledged counts.  An operation that the kill
interrupted (it failed with ECONNABORTED/ENOTCONN after the kill was sent) is
*uncertain*: either outcome is accepted, and the next check finds out which
one happened; from then on that outcome is committed like any other.

* A message is committed when close() of `input` returned 0 (the USER record
  is fsynced at FLUSH).  It must then appear, byte for byte, in `transcript`
  at its place and with its turn number.  A message whose write or close the
  kill interrupted may be there (whole) or not; a message that was never
  written must never appear.
* A reply is committed when a reader got end-of-file on `output` before the
  kill (the REPLY_END "done" record is fsynced before readers are woken): it
  must come back `done` with exactly that text (and in `history.json`).  When
  `status` said `idle` the newest reply is done and committed likewise, with
  the fake's deterministic reply text.
* A failed reply is committed when a reader got EIO before the kill (the
  failed REPLY_END is fsynced before readers are woken): it must come back
  failed with exactly the text read, and not as `interrupted`.
* After `status` said `idle`, every earlier turn of that context is final
  (done, or failed with its reason): none may come back `interrupted`.  So are
  they after `cancel` written to `ctl` returned 0 when at most one of them was
  not yet known final: cancel ends the call in flight, and the messages queued
  behind it are sent afterwards (so with more unfinished turns nothing is known).
* Any other reply may have been interrupted by the kill.  It must then come
  back failed, type `interrupted` (status last_error `interrupted: …`), with at
  least the bytes that any reader had already read (a reader is never given
  bytes that are not yet in a journal record).  Whatever state a reply comes
  back in, its text is a prefix of the fake's reply, and `done` means whole.
* Settings (`system`, `model`, `config` keys, the root `.config`) are committed
  when close() returned 0; they must read back exactly.  mkdir, rename and
  rmdir are committed when they returned 0: the context exists under its new
  name, and a deleted or renamed-away name never comes back.
* Always: every context lists and every file of it reads (none becomes
  unreadable), no turn is left queued or streaming after a restart, `output`
  ends with EOF for a done reply and with EIO after the partial text for a
  failed one, `status` agrees, names are never duplicated, and every request
  the daemon sends is valid for the API (roles alternate after recovery).

A violation of a committed item is a *loss*; any other broken rule a
*violation*.  Both must be 0.

Usage: torture.py [--cycles N] [--seed S] [--bin PATH] [--keep] [--verbose]
(scripts/torture wraps it); tests/integration/test_torture.py runs a short,
seeded version through run_torture().
"""

import argparse
import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from mcpfs_testlib import (  # noqa: E402
    FakeAnthropic, Mount, abort_conn, fuse_conn_of, is_mounted, read_all, read_partial, reply_for,
    test_tmp_base, thread_stacks, write_all,
)

DEFAULT_MODEL = "claude-sonnet-4-5"
DEFAULT_MAX_TOKENS = "4096"
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
         "juliett", "kilo", "lima", "mike", "é", "日本語", "ünïcode", "zulu", "42", "x"]
TRACKED_CONFIG = ("max_tokens", "temperature", "max_retries")
HDR = re.compile(r"^--- (.*) ---$", re.M)
USER_HDR = re.compile(r"^user \(turn (\d+), [^)]*\)$")
ASSIST_HDR = re.compile(r"^assistant \(turn (\d+)(?:, attempt \d+)?\)$")
FAILED_HDR = re.compile(r"^turn (\d+), failed: ([^:]*):")
MARK_HDR = re.compile(r"^turn (\d+)[,:] ")


class Turn:
    """One message and what is known about its reply."""

    def __init__(self, text, number, certain):
        self.text = text               # the message as written (str)
        self.full = reply_for(text).encode("utf-8")  # the fake's whole reply
        self.number = number           # turn number the daemon gives it
        self.certain = certain         # False: the kill interrupted its close()
        self.gen = 0                   # bumped by every acknowledged retry
        self.seen = b""                # longest prefix a reader got (this gen)
        self.final = False             # may not come back interrupted
        self.exact = None              # ("done"|"failed", bytes, type or None)
        self.resolved = False          # seen by a check since it last changed
        self.msg_checked = False       # the message was seen by a check

    def reset(self):
        self.gen += 1
        self.seen, self.final, self.exact, self.resolved = b"", False, None, False


class Ctx:
    """One context of the record."""

    def __init__(self, key, name, exists, defaults):
        self.key = key
        self.names = {name}            # more than one: an uncertain rename
        self.exists = exists           # "yes" | "maybe"
        self.system = {""}
        self.model = {DEFAULT_MODEL}
        self.config = {"max_tokens": set(defaults), "temperature": {"default"},
                       "max_retries": {"2"}}
        self.turns = []

    @property
    def name(self):
        assert len(self.names) == 1, self.names
        return next(iter(self.names))


class StreamReader:
    """A blocking reader of `output` in a thread, bound to the turn that was
    newest when it opened; remembers when it saw EOF or an error."""

    def __init__(self, path, ctx, turn):
        self.ctx, self.turn, self.gen = ctx, turn, turn.gen
        self.fd = os.open(path, os.O_RDONLY)
        self.data = b""
        self.err = None
        self.eof = False
        self.end_t = None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True, name="torture-reader")
        self.thread.start()

    def _run(self):
        try:
            while True:
                try:
                    b = os.read(self.fd, 4096)
                except OSError as e:
                    self.err, self.end_t = e.errno, time.monotonic()
                    return
                if not b:
                    self.eof, self.end_t = True, time.monotonic()
                    return
                with self.lock:
                    self.data += b
        finally:
            try:
                os.close(self.fd)
            except OSError:
                pass  # the daemon was killed


class Stats(dict):
    def add(self, key, n=1):
        self[key] = self.get(key, 0) + n


class Torture:
    """The driver.  mount: a mcpfs_testlib.Mount (started or not); fake: the
    FakeAnthropic it talks to."""

    def __init__(self, mount, fake, seed=1, log=None, max_phase=1.2, hang_timeout=60.0):
        self.m = mount
        self.fake = fake
        # The torture is about durability, not models: a default model that
        # takes every temperature the settings actions write (the Claude 5
        # default refuses them).
        self.m.args = list(self.m.args) + ["--model=" + DEFAULT_MODEL]
        self.rng = random.Random(seed)
        self.log = log or (lambda s: None)
        self.max_phase = max_phase
        self.hang_timeout = hang_timeout
        self.ctxs = {}                 # key -> Ctx
        self.tombstones = set()        # names that must never come back
        self.root_max_tokens = {DEFAULT_MAX_TOKENS}
        self.next_key = 0
        self.next_msg = 0
        self.next_name = 0
        self.next_val = 0
        self.readers = []
        self.kill_t = None
        self.hung = False
        self.stats = Stats()
        self.losses = []
        self.violations = []

    # --- bookkeeping ------------------------------------------------------------------

    def loss(self, msg):
        self.losses.append(msg)
        self.log("LOSS: " + msg)

    def violation(self, msg):
        self.violations.append(msg)
        self.log("VIOLATION: " + msg)

    def path(self, ctx):
        return self.m.path / ctx.name

    def live(self):
        return [c for c in self.ctxs.values() if c.exists == "yes"]

    def fresh_name(self, prefix):
        self.next_name += 1
        style = self.rng.random()
        if style < 0.15:
            return "%s %d é 日本" % (prefix, self.next_name)
        if style < 0.25:
            return "%s-%d-" % (prefix, self.next_name) + "n" * self.rng.randint(50, 200)
        return "%s%d" % (prefix, self.next_name)

    def fresh_message(self):
        self.next_msg += 1
        words = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(1, 12)))
        return "m%d %s\n" % (self.next_msg, words)

    # --- operations on the mount ------------------------------------------------------------

    def op(self, fn, expect=()):
        """Runs fn().  Returns ("ok", value), ("errno", e) for an expected errno,
        or ("killed", None) when it failed because the daemon was killed.  Any
        other failure is a violation (and counts as "errno")."""
        try:
            return "ok", fn()
        except OSError as e:
            if self.kill_t is not None:
                return "killed", None
            if e.errno in expect:
                return "errno", e.errno
            self.violation("unexpected %s from %s" % (e, getattr(fn, "what", fn)))
            return "errno", e.errno

    @staticmethod
    def write_once(path, data):
        """open(O_WRONLY|O_TRUNC), write, close: one message or one setting."""
        def fn():
            write_all(path, data)
        fn.what = "writing %s" % path
        return fn

    @staticmethod
    def read_bytes(path):
        def fn():
            return read_all(path)
        fn.what = "reading %s" % path
        return fn

    # --- actions --------------------------------------------------------------------------

    def a_mkdir(self):
        if len(self.live()) >= 8:
            return self.a_send()
        self.next_key += 1
        name = self.fresh_name("c")
        ctx = Ctx(self.next_key, name, "yes", self.root_max_tokens)

        def fn():
            os.mkdir(self.m.path / name)
        fn.what = "mkdir %s" % name
        r, _ = self.op(fn)
        if r != "errno":
            ctx.exists = "yes" if r == "ok" else "maybe"
            self.ctxs[ctx.key] = ctx
        return r

    def pick(self):
        live = self.live()
        return self.rng.choice(live) if live else None

    def a_send(self, count=1):
        ctx = self.pick()
        if ctx is None:
            return self.a_mkdir()
        for _ in range(count):
            text = self.fresh_message()
            number = (ctx.turns[-1].number if ctx.turns else 0) + 1
            r, _ = self.op(self.write_once(self.path(ctx) / "input", text.encode()))
            if r == "errno":
                return r
            ctx.turns.append(Turn(text, number, r == "ok"))
            self.stats.add("messages_sent")
            if r != "ok":
                return r
        return "ok"

    def a_burst(self):
        return self.a_send(self.rng.randint(2, 4))

    def a_read(self):
        ctx = self.pick()
        if ctx is None or not ctx.turns:
            return self.a_send()
        try:
            self.readers.append(StreamReader(self.path(ctx) / "output", ctx, ctx.turns[-1]))
            return "ok"
        except OSError as e:
            if self.kill_t is not None:
                return "killed"
            self.violation("cannot open %s/output: %s" % (ctx.name, e))
            return "errno"

    def a_peek(self):
        """An O_NONBLOCK read of everything available now."""
        ctx = self.pick()
        if ctx is None or not ctx.turns:
            return self.a_send()
        turn = ctx.turns[-1]
        path = self.path(ctx) / "output"

        def fn():
            data, err = b"", None
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                while True:
                    try:
                        b = os.read(fd, 4096)
                    except OSError as e:
                        if e.errno not in (errno.EAGAIN, errno.EIO):
                            raise
                        err = e.errno
                        break
                    if not b:
                        break
                    data += b
            finally:
                os.close(fd)
            return data, err
        fn.what = "peeking at %s" % path
        r, v = self.op(fn)
        if r == "ok":
            data, err = v
            self.evidence(ctx, turn, turn.gen, data, "eof" if err is None else
                          "eio" if err == errno.EIO else None)
        return r

    def a_cancel(self):
        ctx = self.pick()
        if ctx is None:
            return self.a_mkdir()
        unknown = [t for t in ctx.turns if not (t.final or t.exact)]
        r, _ = self.op(self.write_once(self.path(ctx) / "ctl", b"cancel\n"))
        if r == "ok" and len(unknown) <= 1:
            for t in ctx.turns:
                t.final = True
        return r

    def a_retry(self):
        ctx = self.pick()
        if ctx is None or not ctx.turns:
            return self.a_send()
        turn = ctx.turns[-1]
        r, _ = self.op(self.write_once(self.path(ctx) / "ctl", b"retry\n"), expect=(errno.EINVAL,))
        # An ended reply is sent again: a failed one, or a complete one to
        # regenerate it (the fake's reply to the same message is the same text).
        if r == "errno" and turn.exact:
            self.violation("retry of %s turn %d (known %s) was refused"
                           % (ctx.name, turn.number, turn.exact[0]))
        if r in ("ok", "killed"):
            turn.reset()
            self.stats.add("retries" if r == "ok" else "retries_uncertain")
        return r

    def a_status(self):
        ctx = self.pick()
        if ctx is None:
            return self.a_mkdir()
        r, v = self.op(self.read_bytes(self.path(ctx) / "status"))
        if r != "ok":
            return r
        lines = v.decode().splitlines()
        fields = dict(l.split(": ", 1) for l in lines[1:] if ": " in l)
        number = ctx.turns[-1].number if ctx.turns else 0
        if fields.get("turn") != str(number):
            self.violation("%s/status says turn %s, the record %d"
                           % (ctx.name, fields.get("turn"), number))
        if lines and lines[0] == "idle":
            for t in ctx.turns:
                t.final = True
            if ctx.turns:
                t = ctx.turns[-1]
                self.evidence(ctx, t, t.gen, t.full, "eof", source="status idle")
                self.stats.add("replies_read_whole", -1)
                self.stats.add("idle_seen")
        return r

    def a_rename(self):
        ctx = self.pick()
        if ctx is None:
            return self.a_mkdir()
        old, new = ctx.name, self.fresh_name("r")

        def fn():
            os.rename(self.m.path / old, self.m.path / new)
        fn.what = "rename %s %s" % (old, new)
        r, _ = self.op(fn)
        if r == "ok":
            ctx.names = {new}
            self.tombstones.add(old)
        elif r == "killed":
            ctx.names = {old, new}
        return r

    def a_rmdir(self):
        ctx = self.pick()
        if ctx is None or len(self.live()) < 3:
            return self.a_mkdir()
        name = ctx.name

        def fn():
            os.rmdir(self.m.path / name)
        fn.what = "rmdir %s" % name
        r, _ = self.op(fn)
        if r == "ok":
            del self.ctxs[ctx.key]
            self.tombstones.add(name)
        elif r == "killed":
            ctx.exists = "maybe"
        return r

    def next_value(self):
        self.next_val += 1
        return self.next_val

    def a_system(self):
        ctx = self.pick()
        if ctx is None:
            return self.a_mkdir()
        n = self.next_value()
        text = "" if n % 5 == 0 else "You are torture test %d.\nAnswer é briefly.\n" % n
        return self.setting(ctx, "system", text, ctx.system)

    def a_model(self):
        ctx = self.pick()
        if ctx is None:
            return self.a_mkdir()
        model = "claude-torture-%d" % self.next_value()
        self.fake.add_model(model, enabled=True)  # the Models API knows it
        r, _ = self.op(self.write_once(self.path(ctx) / "model", (model + "\n").encode()))
        self.commit_set(ctx.model, model, r)
        return r

    def a_config(self):
        ctx = self.pick()
        if ctx is None:
            return self.a_mkdir()
        vals = {"max_tokens": str(self.rng.randint(1024, 8192)),
                "temperature": self.rng.choice(["default", "0", "0.25", "0.5", "1"]),
                "max_retries": str(self.rng.randint(0, 2))}
        keys = self.rng.sample(TRACKED_CONFIG, self.rng.randint(1, 3))
        text = "".join("%s = %s\n" % (k, vals[k]) for k in keys)
        r, _ = self.op(self.write_once(self.path(ctx) / "config", text.encode()))
        for k in keys:
            self.commit_set(ctx.config[k], vals[k], r)
        return r

    def a_root_config(self):
        v = str(self.rng.randint(1024, 8192))
        r, _ = self.op(self.write_once(self.m.path / ".config",
                                       ("max_tokens = %s\n" % v).encode()))
        self.commit_set(self.root_max_tokens, v, r)
        return r

    def setting(self, ctx, fname, text, values):
        r, _ = self.op(self.write_once(self.path(ctx) / fname, text.encode()))
        self.commit_set(values, text, r)
        return r

    @staticmethod
    def commit_set(values, v, r):
        if r == "ok":
            values.clear()
            values.add(v)
        elif r == "killed":
            values.add(v)

    def a_pause(self):
        self.killed_event.wait(self.rng.uniform(0.002, 0.08))
        return "ok"

    ACTIONS = [("send", 22), ("burst", 6), ("read", 20), ("peek", 8), ("cancel", 5),
               ("retry", 4), ("status", 6), ("mkdir", 3), ("rename", 3), ("rmdir", 2),
               ("system", 3), ("model", 2), ("config", 3), ("root_config", 1), ("pause", 8)]

    def evidence(self, ctx, turn, gen, data, end, source="reader"):
        """What a reader got from `output` for (turn, gen): bytes, and end "eof",
        "eio", or None (blocked, or cut by the kill)."""
        if ctx.key not in self.ctxs or gen != turn.gen:
            return
        if not turn.full.startswith(data):
            self.violation("%s %s/output turn %d: %r is not a prefix of the reply %r"
                           % (source, ctx.name, turn.number, data, turn.full))
            return
        if turn.exact is not None:
            # Known already (a check after a restart, or an earlier reader):
            # what this reader got must agree with it.
            state, text = turn.exact[0], turn.exact[1]
            if not text.startswith(data) or (end == "eof" and (state, text) != ("done", data)) \
                    or (end == "eio" and (state, text) != ("failed", data)):
                self.violation("%s: %s/output turn %d gave %r then %s, but it is %s %r"
                               % (source, ctx.name, turn.number, data, end, state, text))
            return
        if len(data) > len(turn.seen):
            turn.seen = data
        if end == "eof":
            if data != turn.full:
                self.violation("%s: turn %d of %s ended after %r, not the whole reply"
                               % (source, turn.number, ctx.name, data))
            turn.exact = ("done", data, None)
            turn.final = True
            self.stats.add("replies_read_whole")
        elif end == "eio":
            turn.exact = ("failed", data, None)
            turn.final = True
            self.stats.add("replies_read_failed")

    # --- one phase of work and the kill ----------------------------------------------------

    def kill(self):
        """SIGKILLs the daemon now (from the killer thread)."""
        if self.kill_t is not None or self.m.proc is None:
            return
        self.kill_t = time.monotonic()
        self.stats.add("readers_at_kill", sum(1 for r in self.readers if r.thread.is_alive()))
        self.stats.add("calls_in_flight_at_kill", sum(1 for c in self.fake.calls if not c.done))
        self.killed_event.set()
        try:
            os.kill(self.m.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def hang(self):
        self.hung = True
        self.violation("a file operation hung for %.0fs; killing the daemon" % self.hang_timeout)
        self.kill()

    def script_fake(self):
        """The fake streams slowly so that replies are in flight at the kill;
        sometimes a call fails (mid-stream error, dropped connection, 529)."""
        self.fake.set_default("slow", delay_ms=self.rng.choice([2, 10, 30, 60, 120]),
                              deltas=self.rng.randint(2, 10))
        for _ in range(self.rng.randint(0, 2)):
            kind = self.rng.choice(["error", "disconnect", "status529", "none", "none"])
            if kind == "error":
                self.fake.script("error", error_after=self.rng.randint(0, 3), delay_ms=20)
            elif kind == "disconnect":
                self.fake.script("disconnect", disconnect_after=self.rng.randint(0, 3), delay_ms=20)
            elif kind == "status529":
                self.fake.script("status", status=529, retry_after_ms=50)

    def cycle(self):
        """One cycle: mount, check, work, kill."""
        self.kill_t = None
        self.killed_event = threading.Event()
        self.readers = []
        if not self.m.proc or self.m.proc.poll() is not None:
            self.m.start(timeout=30)
        watchdog = threading.Timer(self.hang_timeout, self.hang)
        watchdog.daemon = True
        watchdog.start()
        # Where the kill lands: usually at a random time of the phase; in some
        # cycles during the check after the remount (journals loading,
        # interrupted replies being marked); in others inside one operation
        # (armed a few microseconds before it starts).
        early = self.rng.random() < 0.12
        targeted = None if early or self.rng.random() < 0.6 else self.rng.randint(0, 40)
        killer = threading.Timer(self.rng.uniform(0.0, 0.08) if early else
                                 self.rng.uniform(0.002, 0.004) if targeted is not None else
                                 self.rng.uniform(0.02, self.max_phase), self.kill)
        killer.daemon = True
        if early:
            killer.start()
        try:
            checked = self.check()
            if not checked:
                self.stats.add("kills_during_check")
            else:
                self.script_fake()
                if not early and targeted is None:
                    killer.start()
                names = [a for a, _ in self.ACTIONS]
                weights = [w for _, w in self.ACTIONS]
                n = 0
                while self.kill_t is None and n < 300:
                    a = self.rng.choices(names, weights)[0]
                    if n == targeted:
                        while a == "pause":
                            a = self.rng.choices(names, weights)[0]
                        killer = threading.Timer(self.rng.uniform(0, 0.002), self.kill)
                        killer.daemon = True
                        killer.start()
                    r = getattr(self, "a_" + a)()
                    n += 1
                    self.stats.add("actions")
                    self.stats.add("action_" + a)
                    if r == "killed":
                        self.stats.add("actions_cut_by_kill")
                self.killed_event.wait(self.max_phase + 5)
        finally:
            killer.cancel()
            if self.kill_t is None:
                self.kill()
            watchdog.cancel()
        self.stats.add("kills")
        self.reap()
        self.m.kill9()
        for r in self.readers:
            r.thread.join(15)
            if r.thread.is_alive():
                self.violation("a reader of %s/output still blocked 15s after the kill"
                               % r.ctx.names)
                continue
            end = "eof" if r.eof and r.end_t < self.kill_t else \
                  "eio" if r.err == errno.EIO and r.end_t < self.kill_t else None
            self.evidence(r.ctx, r.turn, r.gen, r.data, end)
        self.readers = []
        self.stats.add("cycles")

    def reap(self):
        """Waits for the killed daemon to be gone.  One that SIGKILL cannot end
        (a thread stuck in a call on its own mount) is a violation; its FUSE
        connection is then aborted so that the run can go on."""
        conn = fuse_conn_of(self.m.path)
        try:
            self.m.proc.wait(15)
            return
        except subprocess.TimeoutExpired:
            pass
        self.violation("mcpfs pid %d not gone 15 s after SIGKILL: %s"
                       % (self.m.proc.pid, thread_stacks(self.m.proc.pid)))
        if conn is not None and abort_conn(conn):
            self.log("aborted FUSE connection %d" % conn)
        try:
            self.m.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.hung = True

    # --- the check ---------------------------------------------------------------------------

    def gather(self):
        """Reads everything the check needs.  None when the kill interrupted it."""
        obs = {"names": None, "ctx": {}}
        try:
            obs["names"] = sorted(n for n in os.listdir(self.m.path) if not n.startswith("."))
            obs["root"] = self.read_bytes(self.m.path / ".config")().decode()
            self.read_bytes(self.m.path / ".status")()
            for name in obs["names"]:
                p = self.m.path / name
                files = {}
                for f in ("transcript", "history.json", "history", "system", "model", "config",
                          "status", "usage"):
                    files[f] = self.read_bytes(p / f)()
                data, err = read_partial(p / "output", timeout=self.hang_timeout)
                if err is not None and err.errno != errno.EIO:
                    raise err
                files["output"] = (data, None if err is None else err.errno)
                obs["ctx"][name] = files
        except OSError as e:
            if self.kill_t is not None:
                return None
            self.violation("unreadable: %s" % e)
            return None
        except AssertionError as e:  # read_partial timed out
            self.violation("hang while checking: %s" % e)
            return None
        return obs

    def check(self):
        obs = self.gather()
        if obs is None:
            return False
        names = obs["names"]
        if len(set(names)) != len(names):
            self.violation("duplicate names in the listing: %r" % names)
        claimed = {}
        for ctx in list(self.ctxs.values()):
            present = [n for n in ctx.names if n in names]
            if len(present) > 1:
                self.violation("context %d appears as %r" % (ctx.key, present))
            if not present:
                if ctx.exists == "yes":
                    self.loss("context %r is gone" % sorted(ctx.names))
                else:
                    self.tombstones |= ctx.names
                del self.ctxs[ctx.key]
                continue
            for n in ctx.names - {present[0]}:
                self.tombstones.add(n)
            ctx.names, ctx.exists = {present[0]}, "yes"
            claimed[present[0]] = ctx
        for n in names:
            if n not in claimed:
                if n in self.tombstones:
                    self.loss("deleted or renamed-away context %r came back" % n)
                else:
                    self.violation("unknown context %r appeared" % n)
        root = dict(l.split(" = ", 1) for l in obs["root"].splitlines() if " = " in l)
        self.check_set(".config max_tokens", root.get("max_tokens"), self.root_max_tokens)
        for name, ctx in claimed.items():
            self.check_ctx(ctx, obs["ctx"][name])
        self.stats.add("checks")
        self.stats.add("contexts_checked", len(claimed))
        return True

    def check_set(self, what, got, values):
        self.stats.add("settings_verified")
        if got not in values:
            (self.loss if len(values) == 1 else self.violation)(
                "%s is %r, expected %s" % (what, got, " or ".join(map(repr, sorted(values)))))
        values.clear()
        values.add(got)

    def check_ctx(self, ctx, files):
        name = ctx.name
        try:
            users, replies = parse_transcript(files["transcript"].decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            self.violation("%s/transcript does not parse: %s" % (name, e))
            return
        # Messages: the committed ones in order, uncertain ones optional.
        kept, i = [], 0
        for t in ctx.turns:
            if i < len(users) and users[i][1].rstrip("\n") == t.text.rstrip("\n"):
                if users[i][0] != t.number:
                    self.violation("%s: message %r is turn %d, expected %d"
                                   % (name, t.text[:20], users[i][0], t.number))
                if not t.certain:
                    self.stats.add("uncertain_messages_present")
                elif not t.msg_checked:
                    self.stats.add("new_messages_verified")
                t.msg_checked = True
                t.number, t.certain = users[i][0], True
                kept.append(t)
                i += 1
                self.stats.add("messages_verified")
            elif t.certain:
                self.loss("%s: committed message turn %d %r is missing" % (name, t.number,
                                                                          t.text[:40]))
            else:
                self.stats.add("uncertain_messages_absent")
        for num, text in users[i:]:
            self.violation("%s: unexpected message turn %d %r" % (name, num, text[:40]))
        ctx.turns = kept
        for t in kept:
            self.check_reply(ctx, t, replies.get(t.number))
        self.check_history(ctx, files["history.json"])
        self.check_output(ctx, files)
        self.check_set("%s/system" % name, files["system"].decode(), ctx.system)
        self.check_set("%s/model" % name, files["model"].decode().rstrip("\n"), ctx.model)
        cfg = dict(l.split(" = ", 1) for l in files["config"].decode().splitlines() if " = " in l)
        for k in TRACKED_CONFIG:
            self.check_set("%s/config %s" % (name, k), cfg.get(k), ctx.config[k])

    def check_reply(self, ctx, t, obs):
        name = ctx.name
        self.stats.add("replies_verified")
        if obs is None:
            self.violation("%s turn %d has no reply block after a restart" % (name, t.number))
            return
        state, etype, text = obs
        data = text.encode("utf-8")
        if state not in ("done", "failed"):
            self.violation("%s turn %d is %r after a restart" % (name, t.number, state))
        if not t.full.startswith(data):
            self.loss("%s turn %d: text %r is not a prefix of the reply %r"
                      % (name, t.number, data, t.full))
        if t.exact:
            want_state, want_data, want_type = t.exact
            if state != want_state or data != want_data or \
                    (etype != want_type if want_type else etype == "interrupted"):
                self.loss("%s turn %d: committed %s reply %r came back %s %s %r"
                          % (name, t.number, want_state, want_data, state, etype, data))
        else:
            if state == "done" and data != t.full:
                self.loss("%s turn %d: done with %r, not the whole reply" % (name, t.number,
                                                                            data))
            if not data.startswith(t.seen):
                self.loss("%s turn %d: came back with %r, less than the %r a reader had read"
                          % (name, t.number, data, t.seen))
            if t.final and etype == "interrupted":
                self.loss("%s turn %d: final (cancelled/idle) but came back interrupted"
                          % (name, t.number))
        if not t.resolved:
            # First check since the reply last changed: what the kill left.
            kind = "interrupted" if etype == "interrupted" else state
            self.stats.add("new_replies_%s" % kind)
            if kind == "interrupted" and t.seen:
                self.stats.add("new_interrupted_after_partial_read")
        t.exact = (state, data, etype)
        t.final, t.seen, t.resolved = True, data, True

    def check_history(self, ctx, raw):
        try:
            hj = json.loads(raw.decode("utf-8"))
        except ValueError as e:
            self.violation("%s/history.json is not JSON: %s" % (ctx.name, e))
            return
        want = []
        for t in ctx.turns:
            if t.exact and t.exact[0] == "done":
                want += [("user", t.text), ("assistant", t.exact[1].decode())]
        got = [(m.get("role"), m.get("content")) for m in hj.get("messages", [])]
        pruned = hj.get("pruned_messages", 0)
        if got != want[pruned:]:
            self.loss("%s/history.json differs from the committed exchanges: got %d message(s), "
                      "expected %d (first difference %r)" % (
                          ctx.name, len(got), len(want) - pruned,
                          next(((a, b) for a, b in zip(got, want[pruned:]) if a != b), None)))

    def check_output(self, ctx, files):
        data, err = files["output"]
        st = files["status"].decode().splitlines()
        word = st[0] if st else ""
        fields = dict(l.split(": ", 1) for l in st[1:] if ": " in l)
        if not ctx.turns:
            if data or err or word != "idle":
                self.violation("%s: no turn, yet output %r/%s and status %r"
                               % (ctx.name, data, err, word))
            return
        t = ctx.turns[-1]
        if t.exact is None:
            return  # already reported: the reply was missing
        state, text, etype = t.exact
        if data != text or (err == errno.EIO) != (state == "failed"):
            self.violation("%s/output gave %r then %s for a %s reply %r"
                           % (ctx.name, data, errno.errorcode.get(err, "EOF"), state, text))
        want_word = "idle" if state == "done" else "error"
        if word != want_word:
            self.violation("%s/status says %r for a %s newest reply" % (ctx.name, word, state))
        if fields.get("turn") != str(t.number):
            self.violation("%s/status turn %s, expected %d" % (ctx.name, fields.get("turn"),
                                                               t.number))
        if etype and not fields.get("last_error", "").startswith(etype + ":"):
            self.violation("%s/status last_error %r, expected type %s"
                           % (ctx.name, fields.get("last_error"), etype))

    # --- the run -------------------------------------------------------------------------------

    def run(self, cycles):
        for i in range(cycles):
            self.cycle()
            if self.hung:
                break
            if (i + 1) % 20 == 0:
                self.log("cycle %d: %s" % (i + 1, self.summary_line()))
        # A last check, after a kill, then one after a clean unmount.
        self.kill_t = None
        self.killed_event = threading.Event()
        self.m.start(timeout=30)
        if not self.check():
            self.violation("the final check could not run")
        rc = self.m.stop()
        if rc != 0:
            self.violation("mcpfs exited with status %s on unmount" % rc)
        self.m.start(timeout=30)
        if not self.check():
            self.violation("the check after a clean unmount could not run")
        invalid = self.fake.invalid
        if invalid:
            self.violation("the daemon sent %d request(s) the API would refuse: %s"
                           % (len(invalid), invalid[0].error))
        for line in self.m.unexpected_log_lines():
            self.violation("daemon log: %s" % line)
        return self.figures()

    def figures(self):
        f = dict(self.stats)
        f["losses"] = len(self.losses)
        f["violations"] = len(self.violations)
        return f

    def summary_line(self):
        s = self.stats
        return ("%d cycles, %d kills, %d actions, %d contexts checked, %d messages, %d replies, "
                "%d settings verified, %d losses, %d violations"
                % (s.get("cycles", 0), s.get("kills", 0), s.get("actions", 0),
                   s.get("contexts_checked", 0), s.get("messages_verified", 0),
                   s.get("replies_verified", 0), s.get("settings_verified", 0),
                   len(self.losses), len(self.violations)))


def parse_transcript(text):
    """`transcript` → ([(turn, user text)], {turn: (state, error type, reply text)})
    for the newest attempt of each turn.  The driver's texts never contain a
    `--- … ---` line; a user block is its text (which ends in a newline) plus one
    newline, a reply block its text (which never does) plus two once it ended.
    A failure is a marker after the reply's block (or alone, when the attempt
    failed before any text); a regeneration's marker ends the attempt before."""
    users, replies, open_turns = [], {}, set()
    ms = list(HDR.finditer(text))
    for k, m in enumerate(ms):
        body = text[m.end() + 1:ms[k + 1].start() if k + 1 < len(ms) else len(text)]
        head = m.group(1)
        u = USER_HDR.match(head)
        a = ASSIST_HDR.match(head)
        f = FAILED_HDR.match(head)
        if u:
            users.append((int(u.group(1)), body[:-1]))
        elif a:
            if not body.endswith("\n\n"):
                raise ValueError("reply block of turn %s does not end in a blank line"
                                 % a.group(1))
            replies[int(a.group(1))] = ("done", None, body[:-2])
            open_turns.add(int(a.group(1)))
        elif f:
            n = int(f.group(1))
            # the failure of the attempt whose block came just before, or of
            # one that failed before any text
            prior = replies.get(n, (None, None, ""))[2] if n in open_turns else ""
            replies[n] = ("failed", f.group(2), prior)
            open_turns.discard(n)
        elif MARK_HDR.match(head):
            open_turns.discard(int(MARK_HDR.match(head).group(1)))
        elif not head.startswith(("system", "cleared", "thinking")):
            raise ValueError("unknown block %r" % head)
    return users, replies


def run_torture(mount, fake, cycles, seed=1, log=None, max_phase=1.2):
    """Runs the torture on a Mount and its fake; returns (figures, losses,
    violations)."""
    t = Torture(mount, fake, seed=seed, log=log, max_phase=max_phase)
    t0 = time.monotonic()
    fig = t.run(cycles)
    fig["seconds"] = round(time.monotonic() - t0, 1)
    return fig, t.losses, t.violations


def main(argv=None):
    ap = argparse.ArgumentParser(description="mcpfs crash torture (see the module comment)")
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--bin", default=os.environ.get("MCPFS_BIN") or str(REPO / "build" / "mcpfs"))
    ap.add_argument("--keep", action="store_true", help="keep the temp directory")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    root = tempfile.mkdtemp(prefix="mcpfs-torture-", dir=test_tmp_base())
    fake = FakeAnthropic(record_bodies=False).start()
    mount = Mount(args.bin, fake.base_url, root, watchdog=0, allow_all_errors=True)

    def log(s):
        print(s, file=sys.stderr, flush=True)

    print("torture: %d cycles, seed %d, binary %s, in %s" % (args.cycles, seed, args.bin, root))
    try:
        fig, losses, violations = run_torture(mount, fake, args.cycles, seed,
                                              log if args.verbose else
                                              (lambda s: log(s) if not s.startswith(("LOSS",
                                                                "VIOLATION")) else None))
    finally:
        mount.cleanup()
        fake.stop()
    keys = ["cycles", "kills", "kills_during_check", "actions", "actions_cut_by_kill",
            "messages_sent", "calls_in_flight_at_kill", "readers_at_kill", "checks",
            "contexts_checked", "messages_verified", "new_messages_verified",
            "uncertain_messages_present", "uncertain_messages_absent", "replies_verified",
            "new_replies_done", "new_replies_failed", "new_replies_interrupted",
            "new_interrupted_after_partial_read", "replies_read_whole", "replies_read_failed",
            "idle_seen", "retries", "settings_verified", "losses", "violations", "seconds"]
    for k in keys:
        print("%-28s %s" % (k, fig.get(k, 0)))
    print("actions by kind: " + ", ".join("%s %d" % (k[7:], v) for k, v in sorted(fig.items())
                                          if k.startswith("action_")))
    for x in losses:
        print("LOSS: " + x)
    for x in violations:
        print("VIOLATION: " + x)
    if not (losses or violations) and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print("state and log kept in %s (log: %s)" % (root, mount.log_path))
    return 1 if (losses or violations) else 0


if __name__ == "__main__":
    sys.exit(main())
