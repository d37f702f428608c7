"""README's first command, as a new user runs it: `./scripts/setup ~/mcp` in a
fresh copy of the source tree (it installs the build dependencies, builds in
build/ and mounts), then the first thing README suggests doing with the mount.
Runs once per test run (not in the sanitizer pass: it builds its own binary)."""

import os
import re

import pytest

from ecosystem_lib import copy_source, rmtree_unless_mounted, scratch_dir
from mcpfs_testlib import REPO, daemon_env, is_mounted, run, reply_for, wait_for


def readme_command(pattern):
    """The first line of a sh block in README's "Two commands" section that matches."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for line in block.splitlines():
            cmd = line.split("#", 1)[0].strip()
            if re.search(pattern, cmd):
                return cmd
    pytest.fail("README's Two commands section has no command matching %r" % pattern)


def test_readme_names_two_commands():
    assert readme_command(r"^\./scripts/setup ~/mcp$")
    assert readme_command(r"^\./scripts/test$")
    assert "scripts/test" in (REPO / ".ci" / "run").read_text()


@pytest.mark.mcpfs_timeout(900)
def test_first_command_sets_up_builds_and_mounts(fake):
    if os.environ.get("MCPFS_BIN", "").find("asan") >= 0:
        pytest.skip("run once, in the plain pass (it builds its own binary)")
    if os.geteuid() != 0:
        pytest.skip("scripts/setup installs packages with sudo: run the suite as root")
    cmd = readme_command(r"^\./scripts/setup ")
    top = scratch_dir("mcpfs-setup-")
    src, home = top / "mcpfs", top / "home"
    home.mkdir()
    copy_source(src)
    env = daemon_env(home, fake.base_url)
    env["MCPFS_STATE_DIR"] = str(top / "state")
    mnt = home / "mcp"
    try:
        r = run(["bash", "-c", cmd], cwd=str(src), env=env, timeout=840)
        assert r.rc == 0, (r.out[-3000:], r.err[-3000:])
        assert "mounted on %s" % mnt in r.out, r.out[-2000:]
        assert is_mounted(str(mnt))
        # README's tour, first lines
        r = run(["bash", "-c", 'mkdir ~/mcp/demo && echo "Name three primes." > ~/mcp/demo/input'
                 ' && cat ~/mcp/demo/output'], env=env, timeout=60)
        assert r.rc == 0 and r.out == reply_for("Name three primes."), r
        assert [c.last_user_text.strip() for c in fake.calls] == ["Name three primes."]
        assert (top / "state" / "contexts" / "demo").is_dir()
    finally:
        if is_mounted(str(mnt)):
            run(["fusermount3", "-u", str(mnt)], timeout=30)
            wait_for(lambda: not is_mounted(str(mnt)), 10, what="the unmount")
        rmtree_unless_mounted(top)
