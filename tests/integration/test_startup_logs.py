"""Start-up and logs as a user meets them (issue 11, point 8): the one-line
warning without a key, --log-file / -o log_file on a daemonized mount (no
syslog here), mounting twice, a mount left by a crash, the reason of a refused
mkdir in the log, and the shim naming the address it is bound to."""

import errno
import os
import re
import stat
import subprocess

import pytest

from mcpfs_testlib import (
    REPO, daemon_env, is_mounted, read_partial, reply_for, run, send, output, unmount,
    wait_for, wait_status,
)
from http_support import free_port, ipv6_loopback_works, nomount  # noqa: F401

NO_KEY = re.compile(r"^mcpfs: warning: no API key \(.*\): the mount works, but every call "
                    r"fails until a key is given$")


@pytest.fixture
def daemonized(mcpfs_bin, fake, workdir):
    """start(args, env_overrides) -> Result of `mcpfs ARGS MNT` daemonizing on
    workdir/mnt; every mount is undone (and its daemon ends) at teardown."""
    mnt = workdir / "mnt"
    mnt.mkdir()
    home = workdir / "home"
    home.mkdir()

    def start(args=(), env=None):
        argv = [mcpfs_bin, "--state-dir=%s" % (workdir / "state")] + list(args) + [str(mnt)]
        return run(argv, env=daemon_env(home, fake.base_url, env), timeout=20)

    start.mnt = mnt
    yield start
    if is_mounted(mnt) and not unmount(mnt):
        unmount(mnt, lazy=True)


def stop(mnt):
    """Unmounts a daemonized mount (retrying while a release is on its way)."""
    wait_for(lambda: unmount(mnt), 10, what="fusermount3 -u %s" % mnt)


def test_no_key_one_warning_line_and_the_mount_works(daemonized):
    r = daemonized(env={"ANTHROPIC_API_KEY": None})
    assert r.rc == 0, r
    lines = r.err.splitlines()
    assert len(lines) == 1 and NO_KEY.match(lines[0]), r.err
    c = daemonized.mnt / "c"
    os.mkdir(c)
    send(c, "hello\n")
    st = wait_status(c, "error", 20)
    assert re.search(r"no_api_key", st.text), st.text
    data, err = read_partial(c / "output")
    assert err is not None and err.errno == errno.EIO
    stop(daemonized.mnt)


@pytest.mark.fake_invalid_ok
@pytest.mark.mcpfs_env(ANTHROPIC_API_KEY=None)
def test_no_key_in_the_foreground_is_one_log_line(mount):
    warnings = [ln for ln in mount.log().splitlines() if "no API key" in ln]
    assert len(warnings) == 1 and NO_KEY.match(warnings[0]), mount.log()


@pytest.mark.parametrize("form", ["--log-file=%s", "-olog_file=%s"])
def test_log_file_of_a_daemonized_mount(daemonized, fake, workdir, form):
    log = workdir / "logs" / "mcpfs.log"
    log.parent.mkdir()
    log.write_text("an earlier line\n")
    r = daemonized([form % log])
    assert r.rc == 0 and r.err == "", r
    c = daemonized.mnt / "c"
    os.mkdir(c)
    send(c, "logged\n")
    assert output(c) == reply_for("logged")
    with pytest.raises(OSError):
        os.mkdir(daemonized.mnt / ".hidden")
    stop(daemonized.mnt)
    wait_for(lambda: "unmounted" in log.read_text(), 10, what="the daemon's last line")
    text = log.read_text()
    assert text.startswith("an earlier line\n")  # appended, not truncated
    stamp = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z mcpfs\[\d+\]: "
    assert re.search(stamp + r"info: mounted on ", text, re.M), text
    assert re.search(stamp + r"info: call 1: HTTP 200, .*context 'c'", text, re.M), text
    assert re.search(stamp + r"warning: mkdir '\.hidden' refused: names that start with "
                     r"'\.' are reserved$", text, re.M), text
    assert re.search(stamp + r"info: unmounted$", text, re.M), text
    # A second run appends to the same file.
    r = daemonized([form % log])
    assert r.rc == 0, r
    stop(daemonized.mnt)
    wait_for(lambda: log.read_text().count("info: unmounted") == 2, 10, what="second run")


def test_new_log_file_is_private_and_a_bad_one_is_a_start_up_error(daemonized, workdir):
    log = workdir / "new.log"
    r = daemonized(["--log-file=%s" % log])
    assert r.rc == 0, r
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    stop(daemonized.mnt)
    bad = workdir / "no-such-dir" / "x.log"
    r = daemonized(["--log-file=%s" % bad])
    assert r.rc == 1 and not is_mounted(daemonized.mnt), r
    assert r.err.splitlines() == ["mcpfs: cannot open log file '%s': No such file or directory"
                                  % bad], r.err


def test_mounting_twice_says_already_mounted(mount, mcpfs_bin, fake, workdir):
    for state in (mount.state, workdir / "other-state"):
        r = run([mcpfs_bin, "-f", "--state-dir=%s" % state, str(mount.path)],
                env=daemon_env(mount.home, fake.base_url))
        assert r.rc == 1, r
        assert r.err.splitlines() == [
            "mcpfs: mount point '%s' is already mounted (mcpfs): unmount it first with "
            "'fusermount3 -u %s'" % (mount.path, mount.path)], r.err
    assert os.path.ismount(mount.path)  # the first mount is untouched


def test_after_a_crash_the_error_says_fusermount3_uz(mount, mcpfs_bin, fake):
    mount._expect_exit = True
    mount.proc.kill()  # SIGKILL, and no unmount: the dead mount stays
    mount.proc.wait(10)
    assert is_mounted(mount.path)
    r = run([mcpfs_bin, "-f", "--state-dir=%s" % mount.state, str(mount.path)],
            env=daemon_env(mount.home, fake.base_url))
    assert r.rc == 1, r
    assert r.err.splitlines() == [
        "mcpfs: mount point '%s': Transport endpoint is not connected (an mcpfs that stopped "
        "without unmounting?): run 'fusermount3 -uz %s' and mount again"
        % (mount.path, mount.path)], r.err
    # The advice works.
    assert run(["fusermount3", "-uz", str(mount.path)]).rc == 0
    mount.start()
    assert os.path.ismount(mount.path)


def test_refused_mkdir_logs_why(mount):
    # (A name past 255 bytes is refused by the kernel before mcpfs sees it.)
    cases = [(".dot", errno.EINVAL, r"names that start with '\.' are reserved"),
             ("tab\there", errno.EINVAL, r"a name cannot hold control characters"),
             ("bad\xff".encode("latin-1").decode("utf-8", "surrogateescape"), errno.EINVAL,
              r"a name must be valid UTF-8")]
    for name, err, why in cases:
        with pytest.raises(OSError) as e:
            os.mkdir(os.path.join(str(mount.path), name))
        assert e.value.errno == err, name
        wait_for(lambda: re.search(r"mcpfs: warning: mkdir '.*' refused: " + why, mount.log()),
                 5, what="the reason of mkdir %r in the log" % name)
    c = mount.ctx("c")
    with pytest.raises(PermissionError):
        os.mkdir(c / "sub")
    wait_for(lambda: "warning: mkdir 'sub' refused: contexts do not nest" in mount.log(), 5)
    # mkdir -p of an existing context is routine: no warning.
    assert run(["mkdir", "-p", str(c)]).rc == 0
    assert "mkdir 'c' refused" not in mount.log()


def test_shim_host_error_names_the_bound_address(nomount):  # noqa: F811
    if not ipv6_loopback_works():
        pytest.skip("no IPv6 loopback on this machine")
    nm = nomount(host="::1")
    r = nm.api.request("GET", "/v1/health", headers={"Host": "evil.example:%d" % nm.port})
    assert r.status == 403
    msg = r.json()["error"]["message"]
    assert msg == ("Host 'evil.example:%d' is not this server's loopback address ([::1]:%d)"
                   % (nm.port, nm.port)), msg
