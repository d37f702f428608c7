"""mcpfs through mount(8), mount.fuse3 and fstab.

`mount -t fuse.mcpfs SOURCE MOUNTPOINT -o OPTS` runs mount.fuse3, which runs
`mcpfs SOURCE MOUNTPOINT -o OPTS` through /bin/sh with PATH cleared by mount(8):
mcpfs must be in /usr/local/bin or /usr/bin.  The tests put it there in a
private mount namespace (a bind mount over /usr/local/bin), so the machine is
not changed, and bind their own /etc/fstab the same way.  They need root."""

import os
import pwd
import re
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from ecosystem_lib import in_namespace, require_unshare
from mcpfs_testlib import (
    DEFAULT_KEY, REPO, free_port, is_mounted, output, reply_for, run, send,
)


def readme_fstab_line():
    """The fstab example of README.md (the line of a code block that mounts
    fuse.mcpfs)."""
    lines = [ln for ln in (REPO / "README.md").read_text().splitlines()
             if re.match(r"^mcpfs\s+\S+\s+fuse\.mcpfs\s", ln)]
    assert len(lines) == 1, "README should have one fstab example line: %r" % lines
    return lines[0]


@pytest.fixture
def lbin(workdir, mcpfs_bin):
    """A directory holding `mcpfs` (a link to the binary under test), to be
    bound over /usr/local/bin."""
    d = workdir / "lbin"
    d.mkdir()
    (d / "mcpfs").symlink_to(os.path.realpath(mcpfs_bin))
    return d


@pytest.fixture
def ns_env(fake):
    """The environment the namespace scripts run with: the fake API's URL, no
    key (the key comes from api_key_file)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ANTHROPIC_") and not k.startswith("MCPFS_")}
    env["ANTHROPIC_BASE_URL"] = fake.base_url
    env["LC_ALL"] = "C.UTF-8"
    return env


def key_file(path, owner=None):
    path.write_text(DEFAULT_KEY + "\n")
    os.chmod(path, 0o600)
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return path


def check_fake_saw(fake, model, texts):
    assert [c.last_user_text.strip() for c in fake.calls] == texts
    for c in fake.calls:
        assert c.headers.get("x-api-key") == DEFAULT_KEY
        assert c.model == model


# --- without mount(8): the SOURCE argument and -o options ----------------------------------


def test_source_argument_is_accepted_and_ignored(mount_factory, fake):
    m = mount_factory(args=["-o", "rw,nosuid,nodev,noatime,x-systemd.automount,x-foo=1",
                            "mcpfs"])
    with open("/proc/self/mountinfo") as f:
        line = next(ln for ln in f if " %s " % m.path in ln)
    flags = line.split()[5].split(",")
    assert {"rw", "nosuid", "nodev", "noatime"} <= set(flags), line
    assert " fuse.mcpfs mcpfs " in line
    c = m.ctx("c")
    send(c, "hello\n")
    assert output(c) == reply_for("hello")


def test_more_than_source_and_mountpoint_is_an_error(mcpfs_bin, workdir):
    r = run([mcpfs_bin, "-f", "--state-dir=%s" % (workdir / "s"), "mcpfs", str(workdir),
             str(workdir / "x")], timeout=10)
    assert r.rc == 1
    assert r.err.strip() == ("mcpfs: unexpected argument '%s' (at most SOURCE and MOUNTPOINT)"
                             % (workdir / "x"))


# --- mount -t fuse.mcpfs, as root ---------------------------------------------------------------


class SyslogSink:
    """A datagram socket that syslog(3) can send to, bound at path; collects
    the messages in a thread."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.sock.settimeout(0.2)
        self.lines = []
        self.stopping = False
        self.thread = threading.Thread(target=self.run, daemon=True, name="syslog")
        self.thread.start()

    def run(self):
        while not self.stopping:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.lines.append(data.decode("utf-8", "replace"))

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


# A private /dev whose log is the test's socket (the machine runs no syslog
# daemon, and /dev itself is not per namespace).
PRIVATE_DEV_LOG = r"""
    mkdir -p %(devd)s && mount -t tmpfs -o mode=755 tmpfs %(devd)s || exit 30
    for n in null zero full random urandom tty fuse; do
        [ -e /dev/$n ] || continue
        touch %(devd)s/$n && mount --bind /dev/$n %(devd)s/$n || exit 31
    done
    ln -s /proc/self/fd %(devd)s/fd
    ln -s %(sock)s %(devd)s/log
    mount --rbind %(devd)s /dev || exit 32
"""


def test_mount_t_fuse_mcpfs(workdir, lbin, ns_env, fake):
    """As root: mount(8) → mount.fuse3 → `mcpfs mcpfs MNT -o ...`, which
    daemonizes and logs each call to syslog."""
    require_unshare()
    mnt, state = workdir / "mnt", workdir / "state"
    mnt.mkdir()
    key = key_file(workdir / "key")
    port = free_port()
    fake.add_model("m-fstab")  # the Models API (and so the Messages API) knows it
    opts = ("state_dir=%s,model=m-fstab,http=127.0.0.1:%d,api_key_file=%s,"
            "rw,nosuid,nodev,noatime,_netdev,nofail" % (state, port, key))
    sink = SyslogSink(workdir / "log.sock")
    try:
        r = run_mount_t(workdir, lbin, ns_env, mnt, opts, port)
    finally:
        sink.close()
    check_mount_t(r, fake, mnt, state)
    # Daemonized, it logged to syslog: one line per call (and start and stop).
    calls = [ln for ln in sink.lines if re.search(r"mcpfs\[\d+\]: call \d+", ln)]
    assert len(calls) == 1, sink.lines
    assert re.match(r"^<30>.* mcpfs\[\d+\]: call 1: HTTP 200, \d+ ms, 0 retries, context 'c', "
                    r"model m-fstab, tokens in=\d+ out=\d+ cache_creation=0 cache_read=0, "
                    r"stop end_turn, request id 'req_\w+'$", calls[0]), calls[0]
    assert any("mounted on '%s'" % mnt in ln for ln in sink.lines), sink.lines
    assert not any(DEFAULT_KEY in ln or "hello" in ln for ln in sink.lines)


def run_mount_t(workdir, lbin, ns_env, mnt, opts, port):
    return in_namespace((PRIVATE_DEV_LOG + r"""
        mount --bind %(lbin)s /usr/local/bin
        ns_mounts="%(mnt)s"
        mount -t fuse.mcpfs mcpfs %(mnt)s -o %(opts)s || exit 10
        echo "MOUNTINFO $(grep " %(mnt)s " /proc/self/mountinfo)"
        for p in $(ns_daemons); do
            echo "DAEMON $(tr '\0' ' ' </proc/$p/cmdline)"
        done
        mkdir %(mnt)s/c && echo hello > %(mnt)s/c/input || exit 11
        echo "OUTPUT $(cat %(mnt)s/c/output)"
        echo "MODEL $(cat %(mnt)s/c/model)"
        echo "HEALTH $(curl -s http://127.0.0.1:%(port)d/v1/health)"
        ns_umount %(mnt)s || exit 12
        ns_wait_daemons || exit 13
        grep -q " %(mnt)s " /proc/self/mountinfo && exit 14
        echo DONE
        """) % dict(lbin=lbin, mnt=mnt, opts=opts, port=port, devd=workdir / "devd",
                    sock=workdir / "log.sock"), env=ns_env, timeout=60)


def check_mount_t(r, fake, mnt, state):
    assert r.rc == 0 and "DONE" in r.out, r
    out = dict(line.split(" ", 1) for line in r.out.splitlines() if " " in line)
    flags = out["MOUNTINFO"].split()[5].split(",")
    assert {"rw", "nosuid", "nodev", "noatime"} <= set(flags), out["MOUNTINFO"]
    assert " fuse.mcpfs mcpfs " in out["MOUNTINFO"]
    # mount.fuse3 ran "mcpfs SOURCE MOUNTPOINT -o ...", and kept _netdev and
    # nofail to itself.
    daemon = out["DAEMON"].split()
    assert daemon[:3] == ["mcpfs", "mcpfs", str(mnt)] and daemon[3] == "-o"
    assert "_netdev" not in daemon[4] and "nofail" not in daemon[4]
    assert "state_dir=%s" % state in daemon[4]
    assert out["OUTPUT"] == reply_for("hello")
    assert out["MODEL"] == "m-fstab"
    assert '"status":"ok"' in out["HEALTH"]
    check_fake_saw(fake, "m-fstab", ["hello"])
    assert (state / "contexts").is_dir()
    assert not is_mounted(mnt)


def test_fstab_line_of_readme_as_root(workdir, lbin, ns_env, fake):
    require_unshare()
    home = workdir / "home-me"
    (home / ".config" / "mcpfs").mkdir(parents=True)
    mnt = home / "mcp"
    mnt.mkdir()
    key_file(home / ".config" / "mcpfs" / "key")
    line = readme_fstab_line().replace("/home/me", str(home))
    (workdir / "fstab").write_text("# test fstab\n" + line + "\n")
    r = in_namespace(r"""
        mount --bind %(lbin)s /usr/local/bin
        mount --bind %(fstab)s /etc/fstab
        ns_mounts="%(mnt)s"
        mount %(mnt)s || exit 10
        echo "FINDMNT $(findmnt -n -o FSTYPE,SOURCE %(mnt)s)"
        mkdir %(mnt)s/c && echo "from fstab" > %(mnt)s/c/input || exit 11
        echo "OUTPUT $(cat %(mnt)s/c/output)"
        ns_umount %(mnt)s || exit 12
        ns_wait_daemons || exit 13
        echo DONE
        """ % dict(lbin=lbin, fstab=workdir / "fstab", mnt=mnt), env=ns_env, timeout=60)
    assert r.rc == 0 and "DONE" in r.out, r
    assert "FINDMNT fuse.mcpfs mcpfs" in r.out
    assert "OUTPUT " + reply_for("from fstab") in r.out
    check_fake_saw(fake, "claude-sonnet-5-5", ["from fstab"])
    assert (home / ".local" / "state" / "mcpfs" / "contexts").is_dir()


# --- the `user` option: an ordinary user mounts from fstab ------------------------------------


USER_FUSE = r"""
# Ordinary users need a /dev/fuse they can open (mode 0666 on a normal
# system); this machine may have made it 0600.  Bind a 0666 node over it,
# in this namespace only.
if ! runuser -u %(user)s -- test -r /dev/fuse -a -w /dev/fuse; then
    mkdir -p %(devd)s && mount -t tmpfs -o mode=755 tmpfs %(devd)s &&
        mknod -m 666 %(devd)s/fuse c 10 229 && mount --bind %(devd)s/fuse /dev/fuse || {
        echo "SKIP /dev/fuse is not usable by ordinary users here and no device node can be made"
        exit 77
    }
fi
"""


def test_fstab_user_option_lets_an_ordinary_user_mount(workdir, lbin, ns_env, fake):
    require_unshare()
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' to mount as")
    os.chmod(workdir, 0o755)
    home = workdir / "home-me"
    for d in (home, home / ".config", home / ".config" / "mcpfs", home / "mcp"):
        d.mkdir()
        os.chown(d, user.pw_uid, user.pw_gid)
    key_file(home / ".config" / "mcpfs" / "key", owner=user)
    mnt = home / "mcp"
    line = readme_fstab_line().replace("/home/me", str(home))
    assert re.search(r"\bnoauto,user,_netdev\b", line)
    (workdir / "fstab").write_text(line + "\n")
    as_user = "runuser -u %s --" % user.pw_name
    r = in_namespace((USER_FUSE + r"""
        mount --bind %(lbin)s /usr/local/bin
        mount --bind %(fstab)s /etc/fstab
        ns_mounts="%(mnt)s"
        %(as_user)s mount %(mnt)s || exit 10
        for p in $(ns_daemons); do echo "DAEMON_UID $(stat -c %%u /proc/$p)"; done
        %(as_user)s sh -c 'mkdir %(mnt)s/c && echo "as a user" > %(mnt)s/c/input' || exit 11
        echo "OUTPUT $(%(as_user)s cat %(mnt)s/c/output)"
        # root may look, but the mount is private to its user
        if ls %(mnt)s/c >/dev/null 2>&1; then echo "ROOT_SEES yes"; else echo "ROOT_SEES no"; fi
        ns_umount %(mnt)s %(as_user)s || exit 12
        ns_wait_daemons || exit 13
        echo DONE
        """) % dict(lbin=lbin, fstab=workdir / "fstab", mnt=mnt, as_user=as_user,
                    user=user.pw_name, devd=workdir / "devd"), env=ns_env, timeout=60)
    if r.rc == 77:
        pytest.skip(r.out.strip().splitlines()[-1])
    assert r.rc == 0 and "DONE" in r.out, r
    assert "DAEMON_UID %d" % user.pw_uid in r.out
    assert "OUTPUT " + reply_for("as a user") in r.out
    assert "ROOT_SEES no" in r.out
    check_fake_saw(fake, "claude-sonnet-5-5", ["as a user"])
    state = home / ".local" / "state" / "mcpfs"
    assert state.is_dir() and state.stat().st_uid == user.pw_uid


# --- systemd reads the same fstab line ------------------------------------------------------------


def test_systemd_fstab_generator_makes_a_network_mount(workdir):
    gen = Path("/lib/systemd/system-generators/systemd-fstab-generator")
    if not gen.exists() or not subprocess.run(["which", "systemd-analyze"],
                                              capture_output=True).returncode == 0:
        pytest.skip("systemd (its fstab generator and systemd-analyze) is not installed")
    line = readme_fstab_line().replace("/home/me", str(workdir / "home-me"))
    # At boot, as root: the same line without noauto and user.
    line = line.replace("noauto,user,", "")
    (workdir / "fstab").write_text(line + "\n")
    out = workdir / "gen"
    out.mkdir()
    env = dict(os.environ, SYSTEMD_FSTAB=str(workdir / "fstab"), SYSTEMD_LOG_LEVEL="err")
    r = run([gen, out, out, out], env=env)
    assert r.rc == 0, r
    unit_name = run(["systemd-escape", "--path", "--suffix=mount",
                     str(workdir / "home-me" / "mcp")]).out.strip()
    unit = out / unit_name
    text = unit.read_text()
    assert "Type=fuse.mcpfs" in text and "What=mcpfs" in text
    # _netdev: a network file system, mounted after the network is up.
    # (remote-fs.target requires it; with nofail it would only want it).
    assert (out / "remote-fs.target.requires" / unit_name).is_symlink(), \
        sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert "After=network-online.target" in text or "_netdev" in text
    r = run(["systemd-analyze", "verify", unit], timeout=30)
    assert r.rc == 0 and r.err.strip() == "", r
