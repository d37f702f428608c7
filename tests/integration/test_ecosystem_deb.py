"""packaging/debian builds an installable .deb (`dpkg-buildpackage -us -uc -b` on
a copy of the source tree, so that nothing lands in the checkout), whose binary
mounts for real against the fake API once unpacked with `dpkg -x`, and which
`dpkg -i` installs (and `dpkg -r` removes) for real in a sealed copy of the
machine's root: overlays on /usr, /etc and /var/lib in a private mount
namespace, so the machine itself is never changed."""

import os
import re
import shutil

import pytest

from ecosystem_lib import (copy_source, in_namespace, meson_project_version, render_man,
                           require_unshare, rmtree_unless_mounted, scratch_dir)
from mcpfs_testlib import Mount, daemon_env, output, reply_for, run, send

BUILD_TIMEOUT = 300  # seconds; about 30 on 2 cores


@pytest.fixture(scope="module")
def package():
    """{"dir", "deb", "log"}: the package built from a copy of the tree."""
    for tool in ("dpkg-buildpackage", "dh", "dpkg-deb"):
        assert shutil.which(tool), ("%s is not installed: install packaging/test-deps.txt "
                                    "(debhelper, dpkg-dev, fakeroot)" % tool)
    top = scratch_dir("mcpfs-deb-")
    try:
        src = top / "mcpfs"
        copy_source(src)
        shutil.copytree(src / "packaging" / "debian", src / "debian")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DEB_", "DH_", "MCPFS_", "ANTHROPIC_"))}
        env["LC_ALL"] = "C.UTF-8"
        r = run(["dpkg-buildpackage", "-us", "-uc", "-b", "-jauto"], cwd=str(src), env=env,
                timeout=BUILD_TIMEOUT)
        (top / "build.log").write_text(r.out + r.err)
        assert r.rc == 0, "dpkg-buildpackage failed; the end of its log:\n%s" % (
            (r.out + r.err)[-4000:])
        arch = run(["dpkg", "--print-architecture"]).out.strip()
        deb = top / ("mcpfs_%s_%s.deb" % (meson_project_version(), arch))
        assert deb.is_file(), sorted(os.listdir(top))
        yield {"dir": top, "deb": deb, "log": r.out + r.err}
    finally:
        rmtree_unless_mounted(top)


def test_build_is_warning_free(package):
    warnings = [ln for ln in package["log"].splitlines() if "warning:" in ln
                and not ln.startswith("dpkg-") and "dwz:" not in ln]
    assert not warnings, "compiler warnings in the package build:\n" + "\n".join(warnings)


def test_control_fields(package):
    deb = package["deb"]

    def field(name):
        r = run(["dpkg-deb", "-f", deb, name])
        assert r.rc == 0, r
        return r.out.strip()
    assert field("Package") == "mcpfs"
    assert field("Version") == meson_project_version()
    depends = [d.strip() for d in field("Depends").split(",")]
    names = [d.split()[0] for d in depends]
    # ${shlibs:Depends} (every library the binaries link) and fuse3 (fusermount3).
    for lib in ("libc6", "libfuse3-3", "libcurl4", "libcjson1", "libxxhash0", "libmicrohttpd12",
                "fuse3"):
        assert lib in names, "Depends lacks %s: %s" % (lib, depends)
    assert re.fullmatch(r"libfuse3-3 \(>= 3\.\d+.*\)", depends[names.index("libfuse3-3")])


def test_contents(package):
    r = run(["dpkg-deb", "-c", package["deb"]])
    assert r.rc == 0, r
    paths = {ln.split()[-1].lstrip(".") for ln in r.out.splitlines()}
    for p in ("/usr/bin/mcpfs", "/usr/bin/mcpfs-journal-dump", "/usr/share/man/man1/mcpfs.1.gz",
              "/usr/bin/mcpfs-ask", "/usr/bin/mcpfs-chat", "/usr/share/man/man1/mcpfs-ask.1.gz",
              "/usr/share/man/man1/mcpfs-chat.1.gz", "/usr/share/doc/mcpfs/interface.md.gz",
              "/usr/share/bash-completion/completions/mcpfs",
              "/usr/lib/systemd/user/mcpfs@.service", "/usr/share/doc/mcpfs/copyright",
              "/usr/share/doc/mcpfs/examples/ask.sh", "/usr/share/doc/mcpfs/http-api.md.gz"):
        assert p in paths, "%s is not in the package:\n%s" % (p, "\n".join(sorted(paths)))
    assert {"/usr/share/doc/mcpfs/README.md", "/usr/share/doc/mcpfs/README.md.gz"} & paths
    assert not any("/tests" in p or p.endswith(".a") for p in paths)


def test_installable(package):
    """dpkg accepts the package on this machine: its dependencies are met and
    nothing conflicts (a dry run changes nothing)."""
    if os.geteuid() != 0:
        pytest.skip("dpkg --dry-run -i needs root")
    r = run(["dpkg", "--dry-run", "-i", package["deb"]], timeout=60)
    assert r.rc == 0, r


def test_unpacked_binary_mounts_for_real(package, fake):
    root = package["dir"] / "root"
    r = run(["dpkg", "-x", package["deb"], root])
    assert r.rc == 0, r
    binary = root / "usr" / "bin" / "mcpfs"
    r = run([binary, "--version"])
    assert r.rc == 0 and r.out.strip() == "mcpfs " + meson_project_version(), r
    unit = (root / "usr/lib/systemd/user/mcpfs@.service").read_text()
    assert re.search(r"^ExecStart=/usr/bin/mcpfs -f \$MCPFS_OPTIONS %f$", unit, re.M)
    text = render_man(root / "usr/share/man/man1/mcpfs.1.gz")
    assert "--state-dir=DIR, -o state_dir=DIR" in text
    # FILES names the package's paths (prefix /usr), not meson's default /usr/local.
    files = text.split("\nFILES\n", 1)[1]
    assert "/usr/bin/mcpfs-chat" in files and "/usr/share/doc/mcpfs/" in files, files
    assert "/usr/local" not in files, files
    for cmd in ("mcpfs-ask", "mcpfs-chat"):
        assert os.access(root / "usr/bin" / cmd, os.X_OK), cmd
    work = scratch_dir("mcpfs-deb-mount-")
    m = Mount(binary, fake.base_url, work)
    try:
        m.start()
        c = m.ctx("from-the-package")
        send(c, "hello from dpkg\n")
        assert output(c) == reply_for("hello from dpkg")
        assert m.stop() == 0
    finally:
        m.cleanup()
        problems, tail = m.problems(), m.log_tail()
        rmtree_unless_mounted(work)
    assert not problems, "%s\n%s" % (problems, tail)
    assert [c.last_user_text.strip() for c in fake.calls] == ["hello from dpkg"]


def test_dpkg_installs_mounts_and_removes_in_a_sealed_root(package, fake):
    """A real `dpkg -i` (dependencies checked, files and man-db trigger), the
    installed /usr/bin/mcpfs mounting, then `dpkg -r` leaving nothing behind."""
    require_unshare()
    before = run(["dpkg-query", "-W", "-f=${Status}", "mcpfs"]).out
    work = scratch_dir("mcpfs-deb-install-")
    mnt, home = work / "mnt", work / "home"
    mnt.mkdir()
    home.mkdir()
    try:
        r = in_namespace(r"""
            t=%(work)s/overlay
            mkdir -p $t && mount -t tmpfs tmpfs $t || exit 20
            for d in usr etc var/lib var/cache var/log; do
                u=$t/$(echo $d | tr / _)
                mkdir -p $u.up $u.work
                mount -t overlay overlay -o lowerdir=/$d,upperdir=$u.up,workdir=$u.work /$d \
                    || exit 21
            done
            dpkg -i %(deb)s || exit 22
            echo "STATUS $(dpkg-query -W -f='${Status} ${Version}' mcpfs)"
            echo "WHICH $(command -v mcpfs)"
            echo "MAN $(man -w mcpfs)"
            ns_mounts="%(mnt)s"
            /usr/bin/mcpfs --state-dir=%(work)s/state %(mnt)s || exit 23
            mkdir %(mnt)s/pkg && echo "installed for real" > %(mnt)s/pkg/input || exit 24
            echo "OUTPUT $(cat %(mnt)s/pkg/output)"
            ns_umount %(mnt)s || exit 25
            ns_wait_daemons || exit 26
            dpkg -r mcpfs || exit 27
            echo "AFTER $(dpkg-query -W -f='${Status}' mcpfs 2>&1)"
            left=$(ls /usr/bin/mcpfs /usr/share/man/man1/mcpfs.1.gz \
                   /usr/lib/systemd/user/mcpfs@.service 2>/dev/null)
            echo "LEFT ${left:-none}"
            echo DONE
            """ % dict(work=work, deb=package["deb"], mnt=mnt),
            env=daemon_env(home, fake.base_url), timeout=120)
        assert r.rc == 0 and "DONE" in r.out, r
        out = dict(line.split(" ", 1) for line in r.out.splitlines() if " " in line)
        assert out["STATUS"] == "install ok installed " + meson_project_version(), out
        assert out["WHICH"] == "/usr/bin/mcpfs"
        assert out["MAN"] == "/usr/share/man/man1/mcpfs.1.gz"
        assert out["OUTPUT"] == reply_for("installed for real")
        assert "install ok installed" not in out["AFTER"], out["AFTER"]
        assert out["LEFT"] == "none"
        assert [c.last_user_text.strip() for c in fake.calls] == ["installed for real"]
    finally:
        rmtree_unless_mounted(work)
    # The machine's own package database never saw it.
    assert run(["dpkg-query", "-W", "-f=${Status}", "mcpfs"]).out == before
