"""bench/run checks for its tools instead of installing them (issue 12,
point 6): with wrk and strace out of PATH, the shim and scale sections are
skipped and say so, one line names the Debian packages to install, apt-get is
never run, and with nothing left to run doc/performance.md is not touched."""

import os
import shutil

from ecosystem_lib import scratch_dir
from mcpfs_testlib import REPO, run


def test_missing_tools_skip_their_sections_and_name_the_packages(mcpfs_bin):
    top = scratch_dir("bench-tools-")
    try:
        bindir = top / "bin"
        bindir.mkdir()
        os.symlink("/usr/bin/python3", bindir / "python3")
        os.symlink(shutil.which("fusermount3"), bindir / "fusermount3")
        called = top / "apt-called"
        for name in ("apt-get", "apt"):  # a stand-in that tells on whoever calls it
            (bindir / name).write_text("#!/bin/sh\necho \"$0 $*\" >> %s\nexit 1\n" % called)
            os.chmod(bindir / name, 0o755)
        doc = REPO / "doc" / "performance.md"
        before = doc.read_bytes()
        env = dict(os.environ, PATH=str(bindir), MCPFS_BIN=mcpfs_bin)
        r = run([str(bindir / "python3"), str(REPO / "bench" / "run"), "shim", "scale"],
                env=env, timeout=60)
        assert r.rc == 0, r
        lines = r.out.splitlines()
        assert "shim: skipped: wrk%s not found" % (
            ", nginx" if not os.path.exists("/usr/sbin/nginx") else "") in lines, r
        assert "scale: skipped: strace not found" in lines, r
        install = [ln for ln in lines if "apt-get install" in ln]
        assert len(install) == 1, r
        packages = install[0].split("apt-get install ", 1)[1].split()
        assert {"wrk", "strace"} <= set(packages), r
        assert set(packages) <= {"wrk", "strace", "nginx-light"}, r
        assert "no section left to run; doc/performance.md unchanged" in r.out, r
        assert not called.exists(), called.read_text()
        assert doc.read_bytes() == before
        # A tool every run needs: nothing starts, exit 2, still the one line.
        os.unlink(bindir / "fusermount3")
        r = run([str(bindir / "python3"), str(REPO / "bench" / "run"), "latency"],
                env=env, timeout=60)
        assert r.rc == 2, r
        assert "install: apt-get install fuse3" in r.out, r
        assert not called.exists()
    finally:
        shutil.rmtree(top, ignore_errors=True)
