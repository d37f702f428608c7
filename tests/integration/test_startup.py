"""CONTRACT §1: the command line, start-up errors (non-zero exit, one line on
stderr naming the value at fault), the API key's sources, and that the key never
shows in the mount, the state directory or the log."""

import os
import secrets
import signal
import socket
import subprocess

import pytest

from mcpfs_testlib import (
    daemon_env, free_port, is_mounted, output, read_file, read_partial, reply_for, run, send,
    unmount, wait_for, wait_status,
)


def start_expecting_failure(mcpfs_bin, args, env, mountpoint=None, foreground=True, timeout=15):
    """Runs mcpfs expecting it to refuse to start.  Returns (rc, stderr lines).
    Cleans up (and fails) if it mounted and kept running instead."""
    argv = [mcpfs_bin] + (["-f"] if foreground else []) + list(args)
    if mountpoint is not None:
        argv.append(str(mountpoint))
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        if mountpoint is not None:
            unmount(mountpoint) or unmount(mountpoint, lazy=True)
        p.kill()
        try:
            p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pass  # a daemonized child still holds the pipes
        pytest.fail("mcpfs kept running (or kept its stderr open) with %r" % argv)
    finally:
        if mountpoint is not None and is_mounted(str(mountpoint)):
            unmount(mountpoint) or unmount(mountpoint, lazy=True)
    lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    return p.returncode, lines


def assert_one_line_naming(rc, lines, *values):
    assert rc not in (0, None), "mcpfs started, rc %r" % rc
    assert len(lines) == 1, "expected one line on stderr, got %r" % lines
    for v in values:
        assert str(v) in lines[0], "%r does not name %r" % (lines[0], v)


@pytest.fixture
def env(fake, workdir):
    (workdir / "home").mkdir(exist_ok=True)
    return daemon_env(workdir / "home", fake.base_url)


@pytest.fixture
def mnt(workdir):
    p = workdir / "mnt"
    p.mkdir()
    return p


def state_arg(workdir):
    return "--state-dir=%s" % (workdir / "state")


# --- start-up errors -----------------------------------------------------------------------------


def test_version_and_help(mcpfs_bin):
    r = run([mcpfs_bin, "--version"])
    assert r.rc == 0 and r.out.strip(), r
    r = run([mcpfs_bin, "--help"])
    assert r.rc == 0, r
    for opt in ("--state-dir", "--model", "--max-tokens", "--budget-tokens", "--http",
                "--api-key-file"):
        assert opt in r.out, opt


def test_missing_mountpoint(mcpfs_bin, env, workdir):
    missing = workdir / "no-such-dir"
    rc, lines = start_expecting_failure(mcpfs_bin, [state_arg(workdir)], env, missing)
    assert_one_line_naming(rc, lines, missing)


def test_nonempty_mountpoint(mcpfs_bin, env, workdir, mnt):
    (mnt / "somefile").write_text("x")
    rc, lines = start_expecting_failure(mcpfs_bin, [state_arg(workdir)], env, mnt)
    assert_one_line_naming(rc, lines, mnt)
    assert (mnt / "somefile").read_text() == "x"


@pytest.mark.parametrize("value", ["banana", "-5", "12abc"])
@pytest.mark.parametrize("foreground", [True, False], ids=["foreground", "daemon"])
def test_bad_max_tokens(mcpfs_bin, env, workdir, mnt, value, foreground):
    rc, lines = start_expecting_failure(
        mcpfs_bin, [state_arg(workdir), "--max-tokens=%s" % value], env, mnt, foreground)
    assert_one_line_naming(rc, lines, value)


def test_http_port_out_of_range(mcpfs_bin, env, workdir, mnt):
    rc, lines = start_expecting_failure(mcpfs_bin, [state_arg(workdir), "--http=619009"], env,
                                        mnt)
    assert_one_line_naming(rc, lines, "619009")
    assert "port 619009 is out of range 1-65535" in lines[0]


def test_http_address_in_use(mcpfs_bin, env, workdir, mnt):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        rc, lines = start_expecting_failure(
            mcpfs_bin, [state_arg(workdir), "--http=127.0.0.1:%d" % port], env, mnt)
    finally:
        s.close()
    assert_one_line_naming(rc, lines, "127.0.0.1", port)
    assert not is_mounted(str(mnt))


def test_non_loopback_http_needs_a_token(mcpfs_bin, env, workdir, mnt):
    rc, lines = start_expecting_failure(
        mcpfs_bin, [state_arg(workdir), "--http=0.0.0.0:%d" % free_port()], env, mnt)
    assert_one_line_naming(rc, lines, "0.0.0.0")


def test_state_dir_cannot_be_created(mcpfs_bin, env, workdir, mnt):
    blocker = workdir / "a-file"
    blocker.write_text("not a directory")
    bad = blocker / "state"
    rc, lines = start_expecting_failure(mcpfs_bin, ["--state-dir=%s" % bad], env, mnt)
    assert_one_line_naming(rc, lines, bad)


def test_missing_key_file(mcpfs_bin, env, workdir, mnt):
    missing = workdir / "no-key"
    rc, lines = start_expecting_failure(
        mcpfs_bin, [state_arg(workdir), "--api-key-file=%s" % missing], env, mnt)
    assert_one_line_naming(rc, lines, missing)


def test_unreadable_key_file(mcpfs_bin, env, workdir, mnt):
    """A key file that exists but cannot be read (here: a directory)."""
    bad = workdir / "key-dir"
    bad.mkdir(mode=0o700)
    rc, lines = start_expecting_failure(
        mcpfs_bin, [state_arg(workdir), "--api-key-file=%s" % bad], env, mnt)
    assert_one_line_naming(rc, lines, bad)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_too_open_key_file(mcpfs_bin, env, workdir, mnt, mode):
    key = workdir / "key"
    key.write_text("test-key-not-real\n")
    os.chmod(key, mode)
    rc, lines = start_expecting_failure(
        mcpfs_bin, [state_arg(workdir), "--api-key-file=%s" % key], env, mnt)
    assert_one_line_naming(rc, lines, key)
    assert "test-key-not-real" not in lines[0]


# --- options that work -------------------------------------------------------------------------


def test_api_key_file_is_used(mount_factory, fake, workdir):
    key = workdir / "key"
    key.write_text("file-key-not-real\n")
    os.chmod(key, 0o600)
    fake.api_key = "file-key-not-real"
    m = mount_factory(args=["--api-key-file=%s" % key], env={"ANTHROPIC_API_KEY": None})
    c = m.ctx("c")
    send(c, "hello\n")
    assert output(c) == reply_for("hello")
    assert fake.calls[0].headers["x-api-key"] == "file-key-not-real"


def test_fstab_style_o_options(mount_factory, fake):
    m = mount_factory(args=["-o", "max_tokens=1234,model=claude-haiku-4-5,budget_tokens=60000"])
    c = m.ctx("c")
    send(c, "hello\n")
    assert output(c) == reply_for("hello")
    assert fake.calls[0].max_tokens == 1234
    assert fake.calls[0].model == "claude-haiku-4-5"
    assert "budget_tokens = 60000" in read_file(c / "config")


@pytest.mark.parametrize("how", ["MCPFS_STATE_DIR", "XDG_STATE_HOME", "HOME"])
def test_default_state_dir(mount_factory, fake, workdir, how):
    """CONTRACT §1: $MCPFS_STATE_DIR, else $XDG_STATE_HOME/mcpfs, else
    ~/.local/state/mcpfs."""
    m = mount_factory(start=False)
    m.argv = lambda: [m.bin, "-f", str(m.path)]
    if how == "MCPFS_STATE_DIR":
        expected = workdir / "env-state"
        m.env_overrides = {"MCPFS_STATE_DIR": str(expected)}
    elif how == "XDG_STATE_HOME":
        expected = workdir / "xdg" / "mcpfs"
        m.env_overrides = {"XDG_STATE_HOME": str(workdir / "xdg")}
    else:
        expected = m.home / ".local" / "state" / "mcpfs"
        m.env_overrides = {"XDG_STATE_HOME": None}
    m.start()
    c = m.ctx("somecontext")
    send(c, "hello\n")
    assert output(c) == reply_for("hello")
    assert m.stop() == 0
    assert expected.is_dir() and os.listdir(expected), "nothing in %s" % expected


def test_unmount_ends_the_foreground_daemon(mount):
    assert mount.stop() == 0
    assert not is_mounted(str(mount.path))


def find_daemon(mcpfs_bin, mountpoint):
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if os.fsencode(str(mountpoint)) in args and \
                os.path.basename(args[0]) == os.fsencode(os.path.basename(mcpfs_bin)):
            return int(d)
    return None


def test_daemonizes_without_f(mcpfs_bin, fake, env, workdir, mnt):
    r = run([mcpfs_bin, state_arg(workdir), str(mnt)], env=env, timeout=15)
    pid = None
    try:
        assert r.rc == 0, r
        wait_for(lambda: is_mounted(str(mnt)) and os.path.ismount(mnt), 10, what="the mount")
        pid = find_daemon(mcpfs_bin, mnt)
        assert pid, "no mcpfs process for %s" % mnt
        c = mnt / "c"
        os.mkdir(c)
        send(c, "hello\n")
        assert output(c) == reply_for("hello")
    finally:
        unmount(mnt) or unmount(mnt, lazy=True)
        if pid:
            try:
                wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
                         open("/proc/%d/stat" % pid).read().split(")")[1].split()[0] == "Z",
                         10, what="the daemon to exit after unmount")
            finally:
                if os.path.exists("/proc/%d" % pid):
                    os.kill(pid, signal.SIGKILL)


# --- the API key never shows ---------------------------------------------------------------------


@pytest.mark.allow_errors()
def test_api_key_never_appears(mount_factory, fake, workdir):
    key = "sk-ant-test-" + secrets.token_hex(20)
    fake.api_key = key
    m = mount_factory(env={"ANTHROPIC_API_KEY": key})
    c = m.ctx("c")
    send(c, "hello\n")
    assert output(c) == reply_for("hello")
    fake.script("status", status=401)
    d = m.ctx("d")
    send(d, "fails\n")
    wait_status(d, "error", 20)
    seen = []
    for root, dirs, files in os.walk(m.path):
        for f in files:
            p = os.path.join(root, f)
            try:
                data, _ = read_partial(p, timeout=10)
            except OSError:
                continue
            seen.append(p)
            assert key.encode() not in data, p
            assert key[-16:].encode() not in data, p
    assert len(seen) >= 20
    assert m.stop() == 0
    for root, dirs, files in os.walk(m.state):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                data = fh.read()
            assert key.encode() not in data and key[-16:].encode() not in data, f
    log = m.log()
    assert key not in log and key[-16:] not in log


# --- the state directory's lock (issue 17, point 7) ---------------------------------------------


def test_deleted_lock_file_still_locks_the_state_dir(mount_factory, mcpfs_bin, env, workdir):
    """Deleting STATE/lock under a running daemon does not let a second daemon
    start on the same state directory: the directory itself is locked."""
    first = mount_factory(name="first")
    c = first.ctx("c")
    send(c, "hello\n")
    assert output(c) == reply_for("hello")
    os.unlink(first.state / "lock")
    second = workdir / "second"
    second.mkdir()
    rc, lines = start_expecting_failure(mcpfs_bin, ["--state-dir=%s" % first.state], env, second)
    assert_one_line_naming(rc, lines, first.state)
    assert "in use by another mcpfs" in lines[0]
    assert not is_mounted(str(second))
    # The first daemon goes on undisturbed.
    send(c, "again\n")
    assert output(c) == reply_for("again")


# --- start-up checks of the environment and the secret files (issue 17, point 11) ---------------


@pytest.mark.parametrize("suffix, what", [
    ("/?beta=1", "query"), ("#top", "fragment"), ("/\nX-Injected: 1", "control character"),
    (" /v1", "space"), ("/" + "a" * 2100, "too long"),
], ids=["query", "fragment", "newline", "space", "long"])
def test_bad_base_url_is_refused(mcpfs_bin, fake, workdir, mnt, suffix, what):
    """A base URL with a query, a fragment or a newline made every call fail
    later; it is refused at start-up with one line that names it."""
    (workdir / "home").mkdir(exist_ok=True)
    env = daemon_env(workdir / "home", fake.base_url + suffix)
    rc, lines = start_expecting_failure(mcpfs_bin, [state_arg(workdir)], env, mnt)
    assert_one_line_naming(rc, lines, "ANTHROPIC_BASE_URL", fake.base_url)
    assert what in lines[0]
    assert not fake.calls


def test_base_url_credentials_are_masked(mount_factory, fake):
    """user:password@ in ANTHROPIC_BASE_URL never shows in .status (nor the
    log); the rest of the URL does."""
    url = fake.base_url.replace("http://", "http://alice:s3cret-pw@")
    m = mount_factory(env={"ANTHROPIC_BASE_URL": url})
    st = read_file(m.path / ".status")
    assert "s3cret-pw" not in st and "alice" not in st, st
    assert fake.base_url.replace("http://", "http://***@") in st, st
    c = m.ctx("c")
    send(c, "hello\n")
    assert output(c) == reply_for("hello")
    assert "s3cret-pw" not in m.log()


@pytest.mark.parametrize("which", ["api-key-file", "http-token-file"])
def test_fifo_secret_file_is_refused(mcpfs_bin, env, workdir, mnt, which):
    """A FIFO as the key or token file blocked start-up forever (open(2) waits for
    a writer); it is refused as not a regular file."""
    fifo = workdir / "secret.fifo"
    os.mkfifo(fifo, 0o600)
    args = [state_arg(workdir), "--%s=%s" % (which, fifo)]
    if which == "http-token-file":
        args.append("--http=127.0.0.1:%d" % free_port())
    rc, lines = start_expecting_failure(mcpfs_bin, args, env, mnt, timeout=10)
    assert_one_line_naming(rc, lines, fifo)
    assert "not a regular file" in lines[0]
