"""mcpfs_testlib.py — the one Python harness of mcpfs: the mount (Mount), the
fake Anthropic API (in this process, FakeAnthropic, or as its own process,
FakeProcess), the tools' environment and the file, process and /proc helpers.
The integration tests (tests/integration/), the soak, torture, fsync-stall and
valgrind drivers (tests/torture/) and the benchmark (bench/run) all import it;
a helper two of them need belongs here, not in either.

What a test calls waits with a timeout: a test must fail, never hang.  Reads of a
file on the mount that may block (output) run in a thread or a subprocess, so
a daemon that never answers costs a timeout, and the mount's watchdog (see
Mount) kills the daemon, which aborts every blocked request.

Only the Python standard library is used.
"""

import errno
import fcntl
import os
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fake"))

from fake_anthropic import (  # noqa: E402  (after the path is set)
    API_VERSION, DEFAULT_KEY, FakeAnthropic, FakeControl, content_text, parse_sse, sse_text,
)

__all__ = [
    "API_VERSION", "DEFAULT_KEY", "FakeAnthropic", "FakeControl", "content_text", "parse_sse",
    "sse_text", "REPO", "wait_for", "call_with_timeout", "read_file", "read_text",
    "read_partial", "read_available", "write_file", "write_all", "write_pieces", "read_all", "read_to_end",
    "free_port", "FakeProcess", "proc_status", "fd_count", "fuse_conn_of", "abort_conn",
    "thread_stacks", "Reader", "PipeReader", "Result", "run",
    "parse_status", "parse_kv", "reply_for", "is_mounted", "unmount", "has_open",
    "wait_opened", "proc_state", "blocked_in_read", "PtySession", "Mount", "tool_env", "daemon_env",
    "test_tmp_base", "send", "output", "status", "wait_status", "sentinel_check",
]


def test_tmp_base():
    """Where temp mounts go: $MCPFS_TEST_TMPDIR or /var/tmp — never /tmp, where
    editors make no backups and so behave unlike on a real mount."""
    base = os.environ.get("MCPFS_TEST_TMPDIR", "/var/tmp")
    real = os.path.realpath(base)
    assert not (real == "/tmp" or real.startswith("/tmp/")), \
        "MCPFS_TEST_TMPDIR must not be under /tmp (%s)" % real
    os.makedirs(real, exist_ok=True)
    return real


test_tmp_base.__test__ = False  # not a test, despite the name


# --- waiting ------------------------------------------------------------------------


def wait_for(pred, timeout=10.0, interval=0.02, what=None):
    """Calls pred() until it returns a true value, which is returned.  Raises
    AssertionError naming `what` after timeout seconds.  Exceptions from pred
    propagate."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= end:
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (timeout, what or getattr(pred, "__name__", "condition")))
        time.sleep(interval)


def call_with_timeout(fn, timeout=10.0, what=None):
    """Runs fn() in a daemon thread; returns its value or re-raises its exception.
    Raises AssertionError if it has not returned after timeout seconds (the
    thread is left behind, blocked; the mount's teardown frees it)."""
    box = {}

    def body():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: B902 — handed to the caller
            box["error"] = e

    t = threading.Thread(target=body, daemon=True, name="call-with-timeout")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise AssertionError("%s did not return within %.1fs" % (what or fn, timeout))
    if "error" in box:
        raise box["error"]
    return box.get("value")


# --- files --------------------------------------------------------------------------


def read_file(path, timeout=10.0, binary=False):
    """The whole content of a file (blocks until EOF, at most timeout seconds)."""
    def body():
        with open(path, "rb") as f:
            return f.read()
    data = call_with_timeout(body, timeout, "reading %s" % path)
    return data if binary else data.decode("utf-8")


def read_text(path, timeout=10.0):
    return read_file(path, timeout)


def read_to_end(path, flags=0, chunk=65536):
    """Opens path (O_RDONLY | flags) and reads until EOF or an error, in this
    thread and without a timeout.  Returns (bytes, OSError or None)."""
    data = []
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        while True:
            try:
                b = os.read(fd, chunk)
            except OSError as e:
                return b"".join(data), e
            if not b:
                return b"".join(data), None
            data.append(b)
    finally:
        os.close(fd)


def read_all(path, chunk=65536):
    """The whole content of a file, read in this thread without a timeout (the
    drivers and the benchmark; a test uses read_file).  An OSError propagates."""
    data, err = read_to_end(path, 0, chunk)
    if err is not None:
        raise err
    return data


def write_all(path, data):
    """open(O_WRONLY | O_TRUNC), every byte written, close, in this thread
    without a timeout; text is written as UTF-8.  OSErrors (from a write or the
    close) propagate, so the caller sees the errno a writer sees."""
    b = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        view = memoryview(b)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        try:
            os.close(fd)
        except OSError:
            pass
        raise
    os.close(fd)


def write_pieces(path, pieces, flags=os.O_WRONLY | os.O_TRUNC, timeout=10.0):
    """Writes each of pieces (bytes) whole through one descriptor, then closes
    it, stopping at the first write that fails.  Returns ((index of that piece,
    its errno) or None, errno of the close or None)."""
    def body():
        fd = os.open(path, flags)
        failed = closed = None
        try:
            for i, p in enumerate(pieces):
                try:
                    view = memoryview(p)
                    while view:
                        view = view[os.write(fd, view):]
                except OSError as e:
                    failed = (i, e.errno)
                    break
        finally:
            try:
                os.close(fd)
            except OSError as e:
                closed = e.errno
        return failed, closed
    return call_with_timeout(body, timeout, "writing %s" % path)


def read_partial(path, timeout=10.0, chunk=65536):
    """Reads until EOF or an error.  Returns (bytes, OSError or None)."""
    return call_with_timeout(lambda: read_to_end(path, 0, chunk), timeout,
                             "reading %s" % path)


def read_available(path, timeout=5.0):
    """What an O_NONBLOCK reader gets now: (bytes, errno or None at the end).
    Reads until EAGAIN, EOF or an error."""
    def body():
        data, err = read_to_end(path, os.O_NONBLOCK)
        return data, err.errno if err is not None else None
    return call_with_timeout(body, timeout, "non-blocking read of %s" % path)


def write_file(path, data, timeout=10.0):
    """open(path, "w"), one write, close.  OSErrors (from the write or the close)
    propagate, so a test can check the errno a writer sees."""
    call_with_timeout(lambda: write_all(path, data), timeout, "writing %s" % path)


class _Collected:
    """Bytes a background thread collects: ._add(b) there, .data anywhere."""

    def __init__(self):
        self._lock = threading.Lock()
        self._data = b""

    def _add(self, b):
        with self._lock:
            self._data += b

    @property
    def data(self):
        with self._lock:
            return self._data


class Reader(_Collected):
    """Opens a file now (in the caller's thread) and reads it in a background
    thread until EOF or an error.  .data (bytes so far), .error (OSError or
    None), .eof; finish() joins with a timeout."""

    def __init__(self, path, chunk=65536):
        super().__init__()
        self.path = str(path)
        self.fd = os.open(self.path, os.O_RDONLY)
        self.chunk = chunk
        self.error = None
        self.eof = False
        self.thread = threading.Thread(target=self._run, daemon=True, name="reader")
        self.thread.start()

    def _run(self):
        try:
            while True:
                b = os.read(self.fd, self.chunk)
                if not b:
                    self.eof = True
                    return
                self._add(b)
        except OSError as e:
            self.error = e
        finally:
            try:
                os.close(self.fd)
            except OSError:
                pass

    @property
    def text(self):
        return self.data.decode("utf-8")

    @property
    def done(self):
        return not self.thread.is_alive()

    def finish(self, timeout=10.0):
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError("reader of %s still blocked after %.1fs (got %r)"
                                 % (self.path, timeout, self.data))
        return self


class PipeReader(_Collected):
    """Collects a subprocess pipe in a background thread."""

    def __init__(self, pipe):
        super().__init__()
        self.pipe = pipe
        self.thread = threading.Thread(target=self._run, daemon=True, name="pipe-reader")
        self.thread.start()

    def _run(self):
        fd = self.pipe.fileno()
        while True:
            try:
                b = os.read(fd, 65536)
            except OSError:
                return
            if not b:
                return
            self._add(b)

    @property
    def text(self):
        return self.data.decode("utf-8", "replace")

    def wait_text(self, s, timeout=10.0):
        return wait_for(lambda: s in self.text, timeout, what="%r in output (got %r)"
                        % (s, self.text[-300:]))


class Result:
    def __init__(self, argv, rc, outb, errb, elapsed):
        self.argv = argv
        self.rc = rc
        self.outb = outb
        self.errb = errb
        self.out = outb.decode("utf-8", "replace")
        self.err = errb.decode("utf-8", "replace")
        self.elapsed = elapsed

    def __repr__(self):
        return "<Result %r rc=%s out=%r err=%r>" % (self.argv, self.rc, self.out[-300:],
                                                   self.err[-300:])


def run(cmd, timeout=20.0, input=None, env=None, cwd=None):
    """Runs a command (a list, or a string for `bash -c`) with a timeout.  On
    timeout its process group is killed and AssertionError raised."""
    argv = ["bash", "-c", cmd] if isinstance(cmd, str) else [str(a) for a in cmd]
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                         start_new_session=True)
    if isinstance(input, str):
        input = input.encode()
    try:
        out, err = p.communicate(input, timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            out, err = p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            out, err = b"", b"(process stuck after SIGKILL)"
        raise AssertionError("%r timed out after %.1fs; stdout=%r stderr=%r"
                             % (cmd, timeout, out[-500:], err[-500:]))
    return Result(argv, p.returncode, out, err, time.monotonic() - t0)


# --- mcpfs file formats ------------------------------------------------------------------


class Status:
    def __init__(self, text):
        self.text = text
        lines = text.splitlines()
        self.state = lines[0].strip() if lines else ""
        self.fields = parse_kv("\n".join(lines[1:]), ":")

    def get(self, key, default=None):
        return self.fields.get(key, default)

    def __getitem__(self, key):
        return self.fields[key]

    def __repr__(self):
        return "<Status %r>" % self.text


def parse_status(text):
    """`status`: first line one word, then `key: value` lines."""
    return Status(text)


def parse_kv(text, sep=None):
    """`key: value` or `key = value` lines (blank and # lines skipped) → dict."""
    out = {}
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if sep is None:
            m = re.match(r"([^:=]+?)\s*[:=]\s?(.*)$", s)
        else:
            m = re.match(r"([^%s]+?)\s*%s\s?(.*)$" % (re.escape(sep), re.escape(sep)), s)
        if m:
            out[m.group(1).strip()] = m.group(2).strip()
    return out


def reply_for(text):
    """The fake's default reply to a message."""
    return "reply to: " + text.strip()


# --- shortcuts on a context directory ------------------------------------------------------


def send(ctx, text, timeout=10.0):
    write_file(Path(ctx) / "input", text, timeout)


def output(ctx, timeout=10.0):
    return read_file(Path(ctx) / "output", timeout)


def status(ctx, timeout=5.0):
    return parse_status(read_file(Path(ctx) / "status", timeout))


def wait_status(ctx, state, timeout=10.0):
    """Waits until the first line of ctx/status is `state`; returns the Status."""
    last = [None]

    def ok():
        st = status(ctx)
        last[0] = st
        return st if st.state == state else None
    try:
        return wait_for(ok, timeout, what="status %r" % state)
    except AssertionError:
        raise AssertionError("status of %s never became %r; last: %r" % (ctx, state, last[0]))


def sentinel_check(fake, ctx, expected, timeout=10.0):
    """Proves what a context sent without sleeping: sends a sentinel message,
    waits for its reply, then asserts the stripped last user texts of every
    call so far are exactly expected + [sentinel]."""
    n = len(fake.calls)
    word = "sentinel-%d-%d" % (os.getpid(), n)
    send(ctx, word + "\n", timeout)
    assert output(ctx, timeout) == reply_for(word)
    got = [c.last_user_text.strip() for c in fake.calls]
    assert got == list(expected) + [word], "calls sent: %r" % got


# --- processes and mounts -------------------------------------------------------------------


def _unescape_mountinfo(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def is_mounted(path):
    """True while anything is mounted at path (also a dead FUSE mount, which
    os.path.ismount reports as not mounted)."""
    path = str(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 4 and _unescape_mountinfo(parts[4]) == path:
                return True
    return False


def unmount(path, lazy=False, timeout=10.0):
    """fusermount3 -u (or -uz).  Returns True when path is no longer mounted."""
    if not is_mounted(path):
        return True
    argv = ["fusermount3", "-u"] + (["-z"] if lazy else []) + [str(path)]
    try:
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return not is_mounted(path)


def fuse_conn_of(path):
    """The FUSE connection number (minor device) of the mount at path, or None."""
    path = str(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            p = line.split()
            if len(p) > 4 and _unescape_mountinfo(p[4]) == path:
                return int(p[2].split(":")[1])
    return None


def abort_conn(conn):
    """Aborts a FUSE connection through fusectl (mounting it if needed); True
    when the abort was written."""
    d = "/sys/fs/fuse/connections"
    if not os.path.exists(os.path.join(d, str(conn))):
        subprocess.run(["mount", "-t", "fusectl", "none", d], stderr=subprocess.DEVNULL)
    try:
        with open(os.path.join(d, str(conn), "abort"), "w") as f:
            f.write("1")
        return True
    except OSError:
        return False


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid, key):
    """The number of a /proc/PID/status line (VmRSS, VmHWM: KiB; Threads), or
    None when pid has no such line."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def fd_count(pid):
    """How many descriptors pid has open."""
    return len(os.listdir("/proc/%d/fd" % pid))


def thread_stacks(pid):
    """State and kernel stack of each thread of pid (for a hang report)."""
    out = []
    try:
        tids = sorted(os.listdir("/proc/%d/task" % pid))
    except OSError:
        return "(gone)"
    for t in tids:
        base = "/proc/%d/task/%s/" % (pid, t)
        try:
            state = open(base + "stat").read().rsplit(")", 1)[1].split()[0]
            stack = " < ".join(l.split()[-1].split("+")[0]
                               for l in open(base + "stack").read().splitlines()[:5])
        except OSError:
            continue
        out.append("tid %s %s %s" % (t, state, stack))
    return "; ".join(out)


def proc_state(pid):
    """The one-letter state of a process (R, S, D, Z…), or None when gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def has_open(pid, path):
    """True when process pid has path open."""
    path = str(path)
    d = "/proc/%d/fd" % pid
    try:
        for fd in os.listdir(d):
            try:
                if os.readlink(os.path.join(d, fd)) == path:
                    return True
            except OSError:
                pass
    except OSError:
        pass
    return False


def wait_opened(pid, path, timeout=10.0):
    return wait_for(lambda: has_open(pid, path), timeout,
                    what="process %d to open %s" % (pid, path))


_READ_SYSCALLS = {"x86_64": {0, 17, 19}, "aarch64": {63, 65, 67}}


def blocked_in_read(pid):
    """True while process pid sleeps inside read(2) (from /proc/PID/syscall;
    where that is unavailable, while it sleeps at all)."""
    st = proc_state(pid)
    if st not in ("S", "D"):
        return False
    import platform
    nrs = _READ_SYSCALLS.get(platform.machine())
    try:
        with open("/proc/%d/syscall" % pid) as f:
            first = f.read().split()[0]
    except (OSError, IndexError):
        return True
    if nrs is None or first == "running":
        return first != "running"
    try:
        return int(first) in nrs
    except ValueError:
        return False


def tool_env(home, extra=None):
    """Environment for tools run by tests: no Anthropic variables, a private HOME."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ANTHROPIC_") and not k.startswith("MCPFS_")}
    env.update({"HOME": str(home), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "xterm",
                "XDG_CONFIG_HOME": str(Path(home) / ".config")})
    env.pop("XDG_STATE_HOME", None)
    if extra:
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
    return env


def daemon_env(home, base_url, overrides=None):
    """Environment for the daemon: the fake's URL, a fake key (never a real one:
    inherited ANTHROPIC_* variables are dropped), a private HOME and state home."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ANTHROPIC_")
           and k not in ("MCPFS_STATE_DIR", "MCPFS_STORE", "XDG_STATE_HOME")}
    env.update({"HOME": str(home), "XDG_STATE_HOME": str(Path(home) / ".local" / "state"),
                "LANG": "C.UTF-8", "ANTHROPIC_BASE_URL": base_url,
                "ANTHROPIC_API_KEY": DEFAULT_KEY})
    for k, v in (overrides or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


class FakeProcess:
    """The fake API server as its own process (its GIL is not the caller's:
    bench/run), on a free port it writes to a file.  .port, .url, .ctl (a
    FakeControl, the same scripting as FakeAnthropic's through HTTP), .stop()."""

    def __init__(self, timeout=60, base=None):
        self.dir = tempfile.mkdtemp(prefix="mcpfs-fake-", dir=base or test_tmp_base())
        pf = os.path.join(self.dir, "port")
        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        with open(os.path.join(self.dir, "log"), "w") as log:
            self.proc = subprocess.Popen(
                [python, str(REPO / "tests" / "fake" / "fake_anthropic.py"), "--port", "0",
                 "--port-file", pf], stdout=subprocess.DEVNULL, stderr=log)

        def port():
            try:
                with open(pf) as f:
                    return f.read().strip()
            except OSError:
                return None
        self.port = int(wait_for(port, 10, what="the fake API's port file"))
        self.url = "http://127.0.0.1:%d" % self.port
        self.ctl = FakeControl(self.url, timeout=timeout)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


ERROR_LINE = re.compile(r"mcpfs: error:")
ALWAYS_BAD = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
                        r"mcpfs: (crit|alert|emerg):|Segmentation fault|Assertion .* failed")


class Mount:
    """One mcpfs daemon in the foreground on a temp mount point.

    .path (mount point, a Path), .state (state dir), .home, .proc (Popen),
    .log() (everything the daemon wrote to stderr, all runs), .start(),
    .stop() (fusermount3 -u, then wait for the daemon; returns its status),
    .kill9() (SIGKILL, then fusermount3 -u -z), .remount(args=None, env=None),
    .ctx(name) (mkdir, returns the Path), .spawn(argv, **kw) (a Popen killed at
    teardown), .allow_error(regex), .cleanup() and .problems() for the fixture.
    store: a --store URL (the PostgreSQL mode, pg_support.py), or None: the
    contexts are in .state.
    """

    def __init__(self, binary, base_url, root, name="mnt", args=(), env=None,
                 allowed_errors=(), allow_all_errors=False, watchdog=120.0, store=None):
        self.bin = str(binary)
        self.base_url = base_url
        self.root = Path(os.path.realpath(root))
        self.path = self.root / name
        self.state = self.root / (name + "-state")
        self.home = self.root / "home"
        self.log_path = self.root / (name + ".log")
        self.args = list(args)
        self.store = store
        self.env_overrides = dict(env or {})
        self.proc = None
        self.runs = 0
        self.children = []
        self._allowed = [re.compile(r) for r in allowed_errors]
        self.allow_all_errors = allow_all_errors
        self._problems = []
        self._expect_exit = False
        self._watchdog_s = watchdog
        self._watchdog = None
        self._lock = threading.Lock()
        for d in (self.path, self.home):
            d.mkdir(parents=True, exist_ok=True)

    # --- life cycle --------------------------------------------------------------------

    def argv(self):
        store = ["--store=%s" % self.store] if self.store else []
        return [self.bin, "-f", "--state-dir=%s" % self.state] + store + self.args + \
            [str(self.path)]

    def env(self):
        return daemon_env(self.home, self.base_url, self.env_overrides)

    def start(self, timeout=10.0, poll=0.02):
        """Starts the daemon and waits for the mount to answer, looking every
        poll seconds (bench/run times the start with a finer one)."""
        self.runs += 1
        with open(self.log_path, "ab") as log:
            log.write(("=== test harness: start #%d: %s\n" % (self.runs, " ".join(self.argv())))
                      .encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, env=self.env(), cwd=str(self.root))
        self._expect_exit = False
        end = time.monotonic() + timeout
        while not is_mounted(self.path):
            if self.proc.poll() is not None:
                self._expect_exit = True
                raise AssertionError("mcpfs exited with status %s before mounting %s; log:\n%s"
                                     % (self.proc.returncode, self.path, self.log_tail()))
            if time.monotonic() > end:
                raise AssertionError("mcpfs did not mount %s within %.0fs; log:\n%s"
                                     % (self.path, timeout, self.log_tail()))
            time.sleep(poll)
        # A mounted FUSE file system answers once its session loop runs.
        wait_for(lambda: os.path.ismount(self.path), timeout, interval=poll,
                 what="mount to answer")
        if self._watchdog is None and self._watchdog_s:
            self._watchdog = threading.Timer(self._watchdog_s, self._watchdog_fire)
            self._watchdog.daemon = True
            self._watchdog.start()
        return self

    def _watchdog_fire(self):
        self._problem("watchdog: the test ran longer than %.0fs; the daemon was killed "
                      "(a blocked file operation, or a hang)" % self._watchdog_s)
        try:
            self.kill9()
        except Exception as e:  # noqa: BLE001 — the watchdog must not die
            self._problem("watchdog: kill failed: %r" % e)

    def _problem(self, msg):
        with self._lock:
            self._problems.append(msg)

    def stop(self, timeout=10.0):
        """Unmounts (fusermount3 -u) and waits for the daemon to exit; returns
        its exit status.  Retries a busy unmount, then falls back to -uz."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            self._unexpected_exit()
        self._expect_exit = True
        end = time.monotonic() + timeout
        while is_mounted(self.path) and time.monotonic() < end:
            if unmount(self.path):
                break
            time.sleep(0.1)
        if is_mounted(self.path):
            self._problem("fusermount3 -u %s kept failing; used -uz" % self.path)
            unmount(self.path, lazy=True)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._problem("mcpfs did not exit within %.0fs after unmount" % timeout)
            self.proc.kill()
            return self.proc.wait(10)

    def kill9(self):
        """SIGKILLs the daemon, then lazily unmounts the dead mount."""
        if self.proc is None:
            return
        self._expect_exit = True
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self._problem("mcpfs pid %d survived SIGKILL for 10s" % self.proc.pid)
        unmount(self.path, lazy=True)
        wait_for(lambda: not is_mounted(self.path), 10, what="lazy unmount of %s" % self.path)

    def remount(self, args=None, env=None, timeout=10.0):
        """Stops (if running) and starts again on the same state directory."""
        if self.proc is not None and self.proc.poll() is None:
            rc = self.stop()
            if rc != 0:
                self._problem("mcpfs exited with status %s on unmount" % rc)
        elif is_mounted(self.path):
            unmount(self.path, lazy=True)
        if args is not None:
            self.args = list(args)
        if env is not None:
            self.env_overrides = dict(env)
        return self.start(timeout)

    def _unexpected_exit(self):
        if not self._expect_exit:
            self._problem("mcpfs exited by itself with status %s" % self.proc.returncode)
            self._expect_exit = True

    def cleanup(self):
        """Kills spawned processes, unmounts, stops the daemon.  Never raises."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        for p in self.children:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    try:
                        p.kill()
                    except OSError:
                        pass
        for p in self.children:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:
            if self.proc is not None and self.proc.poll() is None:
                rc = self.stop()
                if rc not in (0, None):
                    self._problem("mcpfs exited with status %s on unmount" % rc)
            elif self.proc is not None:
                self._unexpected_exit()
        except Exception as e:  # noqa: BLE001
            self._problem("teardown: %r" % e)
        if is_mounted(self.path):
            unmount(self.path, lazy=True)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    # --- the log ------------------------------------------------------------------------

    def log(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log().splitlines()[-n:])

    def allow_error(self, regex):
        """Declares daemon error lines matching regex expected in this test."""
        self._allowed.append(re.compile(regex))

    def unexpected_log_lines(self):
        bad = []
        for line in self.log().splitlines():
            if ALWAYS_BAD.search(line):
                bad.append(line)
            elif ERROR_LINE.search(line) and not self.allow_all_errors \
                    and not any(r.search(line) for r in self._allowed):
                bad.append(line)
        return bad

    def problems(self):
        with self._lock:
            out = list(self._problems)
        bad = self.unexpected_log_lines()
        if bad:
            out.append("unexpected daemon log lines (declare with "
                       "@pytest.mark.allow_errors(regex)):\n  " + "\n  ".join(bad))
        return out

    # --- conveniences ------------------------------------------------------------------------

    def ctx(self, name="c"):
        p = self.path / name
        os.mkdir(p)
        return p

    def spawn(self, argv, **kw):
        """Popen registered for killing (its process group) at teardown."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("env", tool_env(self.home))
        kw["start_new_session"] = True
        if isinstance(argv, str):
            argv = ["bash", "-c", argv]
        p = subprocess.Popen([str(a) for a in argv], **kw)
        self.children.append(p)
        return p


# --- editors in a pseudo-terminal --------------------------------------------------------------

ANSI = re.compile(rb"\x1b\[[0-9;?>=!]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|"
                  rb"\x1b[()*+][0-9A-Za-z]|\x1b[=>78cDEHMNOZ]")


class PtySession:
    """Runs a program on a pseudo-terminal (80x24), as a user at a keyboard."""

    def __init__(self, argv, env, cwd=None, rows=24, cols=80):
        self.argv = [str(a) for a in argv]
        pid, fd = pty.fork()
        if pid == 0:  # child
            try:
                # As at a terminal, also when the test run is a background job
                # of a shell (which starts it with SIGINT and SIGQUIT ignored,
                # and a shell cannot trap a signal ignored at its start).
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGQUIT, signal.SIG_DFL)
                if cwd:
                    os.chdir(cwd)
                os.execvpe(self.argv[0], self.argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self._lock = threading.Lock()
        self._buf = b""
        self.rc = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="pty")
        self.thread.start()

    def _run(self):
        while True:
            try:
                r, _, _ = select.select([self.fd], [], [], 0.1)
                if not r:
                    continue
                b = os.read(self.fd, 65536)
            except OSError:
                return
            if not b:
                return
            with self._lock:
                self._buf += b

    def _reap(self, block):
        if self.rc is not None:
            return True
        try:
            pid, st = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return False
        self.rc = os.waitstatus_to_exitcode(st)
        return True

    @property
    def raw(self):
        with self._lock:
            return self._buf

    @property
    def screen(self):
        """Everything written so far, escape sequences removed."""
        return ANSI.sub(b"", self.raw).decode("utf-8", "replace")

    def expect(self, pattern, timeout=10.0):
        rx = re.compile(pattern)
        try:
            return wait_for(lambda: rx.search(self.screen), timeout, what=repr(pattern))
        except AssertionError:
            raise AssertionError("%s: %r never appeared; screen:\n%s"
                                 % (self.argv[0], pattern, self.screen[-2000:]))

    def quiet(self, seconds=0.3, timeout=10.0):
        """Waits until nothing was written for `seconds` (the screen settled)."""
        end = time.monotonic() + timeout
        last, since = len(self.raw), time.monotonic()
        while time.monotonic() < end:
            time.sleep(0.05)
            n = len(self.raw)
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since >= seconds:
                return
        raise AssertionError("%s: screen never settled" % self.argv[0])

    def send(self, data, per_char_delay=0.0):
        if isinstance(data, str):
            data = data.encode("utf-8")
        if per_char_delay:
            for i in range(len(data)):
                os.write(self.fd, data[i:i + 1])
                time.sleep(per_char_delay)
        else:
            os.write(self.fd, data)

    def wait(self, timeout=15.0):
        """Waits for the program to exit; returns its exit code.  Kills it (and
        raises AssertionError with the screen) on timeout."""
        end = time.monotonic() + timeout
        while not self._reap(block=False):
            if time.monotonic() > end:
                self.kill()
                raise AssertionError("%s did not exit within %.0fs; screen:\n%s"
                                     % (self.argv[0], timeout, self.screen[-2000:]))
            time.sleep(0.02)
        self.thread.join(2)
        return self.rc

    def kill(self):
        if self.rc is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                self._reap(block=True)
            except OSError:
                pass
        try:
            os.close(self.fd)
        except OSError:
            pass


def which_or_fail(name):
    path = shutil.which(name)
    assert path, "%s is not installed; the integration tests need it" % name
    return path


errno_name = errno.errorcode.get
