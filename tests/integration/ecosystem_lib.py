"""ecosystem_lib.py — helpers of the test_ecosystem_*.py files: what is installed
where (meson install, the Debian package) and running a script in a private
mount namespace, so that a test can put files where the system looks for them
(/usr/local, /etc/fstab, /dev/fuse) without changing the machine.

Everything waits with a timeout and every mount made in a namespace is undone
by the script's own trap before the namespace goes away.
"""

import os
import re
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest

from mcpfs_testlib import REPO, run, test_tmp_base


def build_dir(mcpfs_bin):
    """The meson build directory the binary under test comes from."""
    d = Path(mcpfs_bin).resolve().parent
    if not (d / "build.ninja").is_file():
        pytest.fail("%s is not in a meson build directory (no build.ninja beside it); "
                    "set MCPFS_BIN to <builddir>/mcpfs" % mcpfs_bin)
    return d


def options_table(mcpfs_bin, fmt):
    r = run([mcpfs_bin, "--options-table=" + fmt], timeout=20)
    assert r.rc == 0 and r.out, r
    return r.out


def table_rows(mcpfs_bin):
    """(options, keys) from `mcpfs --options-table=tsv`: options as tuples
    (usage, o_form, help, default), keys as (key, default, help)."""
    opts, keys = [], []
    for line in options_table(mcpfs_bin, "tsv").splitlines():
        kind, *cells = line.split("\t")
        (opts if kind == "option" else keys).append(tuple(cells))
    assert opts and keys
    return opts, keys


def render_man(path):
    """man -l, one paragraph a line (so nothing is wrapped or hyphenated)."""
    env = dict(os.environ, MANWIDTH="2000", MAN_KEEP_FORMATTING="", LC_ALL="C.UTF-8")
    r = run(["man", "--warnings", "-l", str(path)], env=env, timeout=30)
    assert r.rc == 0, r
    assert r.err.strip() == "", "groff warnings rendering %s:\n%s" % (path, r.err)
    return r.out


def man_entries(text, section):
    """{tag: paragraph} of a man page section rendered by render_man: tags at
    7 spaces, their paragraph at 11."""
    m = re.search(r"^%s\n(.*?)(?=^[A-Z][A-Z ]+\n)" % re.escape(section), text, re.M | re.S)
    assert m, "no section %s in the man page" % section
    out, tag = {}, None
    for line in m.group(1).splitlines():
        if re.match(r"^ {7}\S", line):
            tag = line.strip()
            out[tag] = ""
        elif re.match(r"^ {11}\S", line) and tag is not None:
            out[tag] = (out[tag] + " " + line.strip()).strip()
    return out


def man_tag(usage, oform):
    return usage + (", -o " + oform if oform else "")


def check_man_page(text, opts, keys):
    entries = man_entries(text, "OPTIONS")
    for usage, oform, help_, default in opts:
        tag = man_tag(usage, oform)
        assert tag in entries, "man page has no option %r; it has %r" % (tag, list(entries))
        want = help_ + "." + (" Default: %s." % default if default else "")
        assert entries[tag] == want, (tag, entries[tag], want)
    listed = [t for t in entries if t.startswith("-") and not t.startswith("-o OPT")]
    assert len(listed) == len(opts), "man page options %r, table %r" % (listed, opts)
    entries = man_entries(text, "CONFIGURATION KEYS")
    for key, default, help_ in keys:
        tag = "%s (default: %s)" % (key, default)
        assert entries.get(tag) == help_ + ".", (tag, entries)
    assert len([t for t in entries if " (default: " in t]) == len(keys), entries


def meson_install(mcpfs_bin, destdir, timeout=120):
    """`meson install --destdir` of the binary's build directory (not rebuilt:
    scripts/test has just built it).  Returns the installed prefix under
    destdir."""
    bd = build_dir(mcpfs_bin)
    r = run(["meson", "install", "-C", str(bd), "--no-rebuild", "--quiet",
             "--destdir", str(destdir)], timeout=timeout)
    assert r.rc == 0, r
    r = run(["meson", "introspect", "--buildoptions", str(bd)], timeout=30)
    assert r.rc == 0, r
    import json
    prefix = next(o["value"] for o in json.loads(r.out) if o["name"] == "prefix")
    return Path(str(destdir) + prefix)


def can_unshare():
    r = run(["unshare", "-m", "--propagation", "private", "true"], timeout=10)
    return r.rc == 0


def require_unshare():
    if os.geteuid() != 0:
        pytest.skip("needs root (mount namespaces, mount(8) as root): run the suite as root")
    if not can_unshare():
        pytest.skip("this machine does not allow a private mount namespace (unshare -m)")


NS_PRELUDE = r"""
set -u
# Every mount made below lives in this private namespace; the daemons the
# script starts are stopped, and their mounts undone, by the trap.
ns_mounts=""
ns_cleanup() {
    for m in $ns_mounts; do
        if grep -q " $m " /proc/self/mountinfo; then
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
        fi
    done
    for p in $(ns_daemons); do kill "$p" 2>/dev/null; done
}
trap ns_cleanup EXIT
# Pids of the mcpfs daemons whose command line names one of $ns_mounts.
ns_daemons() {
    for d in /proc/[0-9]*; do
        a0=$(tr '\0' '\n' 2>/dev/null <"$d/cmdline" | head -n 1)
        [ "${a0##*/}" = mcpfs ] || continue
        c=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline") || continue
        for m in $ns_mounts; do
            case "$c" in *" $m "*|*" $m") echo "${d#/proc/}" ;; esac
        done
    done
}
# Unmounts $1, as the command prefix $2... (e.g. runuser -u USER --) when
# given; retries for 5 s (a FUSE release may still be on its way), then shows
# the error.
ns_umount() {
    m=$1
    shift
    for i in $(seq 50); do
        "$@" umount "$m" 2>/dev/null && return 0
        "$@" fusermount3 -u "$m" 2>/dev/null && return 0
        sleep 0.1
    done
    "$@" umount "$m"
}
# Waits (10 s at most) for every daemon of $ns_mounts to exit.
ns_wait_daemons() {
    i=0
    while [ -n "$(ns_daemons)" ]; do
        i=$((i + 1))
        [ $i -gt 100 ] && { echo "daemon still running after unmount" >&2; return 1; }
        sleep 0.1
    done
}
"""


def in_namespace(script, env=None, timeout=60):
    """Runs a bash script in a new private mount namespace (as root).  The
    script may use ns_mounts (mount points its trap undoes), ns_daemons,
    ns_umount and ns_wait_daemons (see NS_PRELUDE)."""
    body = NS_PRELUDE + textwrap.dedent(script)
    return run(["unshare", "-m", "--propagation", "private", "bash", "-c", body],
               env=env, timeout=timeout)


def scratch_dir(prefix):
    """A directory under the test temp base (never /tmp), removed by the caller."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=test_tmp_base()))


def copy_source(dst):
    """The source tree as it is now — every file git tracks or would track
    (untracked work included), without build directories (meson writes a
    .gitignore into each), VCS data or caches: what a package build starts
    from.  Without git, a copy that skips meson build directories."""
    r = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                        "--exclude-standard"], capture_output=True, timeout=60)
    if r.returncode == 0:
        for name in sorted(set(r.stdout.decode().split("\0")) - {""}):
            src, out = REPO / name, Path(dst) / name
            if not os.path.lexists(src) or os.path.isdir(src) and not os.path.islink(src):
                continue  # deleted in the work tree, or a submodule
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out, follow_symlinks=False)
        return

    def ignore(d, names):
        return {n for n in names if n in (".git", "__pycache__", ".pytest_cache")
                or (Path(d) / n / "meson-private").is_dir() or n.startswith("build")}
    shutil.copytree(REPO, dst, ignore=ignore, symlinks=True)


def rmtree_unless_mounted(path):
    with open("/proc/self/mountinfo") as f:
        if any((" %s/" % path) in line or (" %s " % path) in line for line in f):
            return
    shutil.rmtree(path, ignore_errors=True)


def meson_project_version():
    import re
    text = (REPO / "meson.build").read_text()
    m = re.search(r"version\s*:\s*'([^']+)'", text)
    assert m, "no version in meson.build"
    return m.group(1)


def subprocess_ok(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          **kw).returncode == 0
