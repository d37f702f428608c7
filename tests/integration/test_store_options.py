"""--store=URL (-o store=, $MCPFS_STORE) and --import=DIR on the command line
(CONTRACT §1 and §12): parsing, the errors a user sees, and start-up against a
database that is not there — one line naming the URL with its password masked,
exit 1, nothing mounted."""

import os
import re
import socket

import pytest

from mcpfs_testlib import daemon_env, is_mounted, output, read_file, reply_for, run, send
from pg_support import PgServer, require_pg

SECRET = "s3cret-pw"


def closed_port():
    """A loopback port nothing listens on (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(mcpfs_bin, workdir, args, env=None, mount=True):
    mp = workdir / "mnt"
    mp.mkdir(exist_ok=True)
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    argv = [mcpfs_bin, "-f", "--state-dir=%s" % (workdir / "state")] + list(args)
    if mount:
        argv.append(str(mp))
    r = run(argv, timeout=30, env=daemon_env(home, "http://127.0.0.1:9", env))
    assert not is_mounted(mp), "mounted although start-up failed: %r" % r
    assert os.listdir(mp) == []
    return r


def one_line(r):
    assert r.rc == 1, r
    lines = r.err.splitlines()
    assert len(lines) == 1, r.err
    assert r.out == "", r.out
    return lines[0]


@pytest.mark.parametrize("form", ["--store=%s", "-o store=%s", "env"])
def test_unreachable_store_fails_at_once_naming_the_url_masked(mcpfs_bin, workdir, form):
    port = closed_port()
    url = "postgresql://mcpfs:%s@127.0.0.1:%d/mcpfs" % (SECRET, port)
    if form == "env":
        r = start(mcpfs_bin, workdir, [], env={"MCPFS_STORE": url})
    else:
        r = start(mcpfs_bin, workdir, (form % url).split(" ", 1))
    line = one_line(r)
    assert line.startswith("mcpfs: store: cannot connect to "
                           "postgresql://mcpfs:***@127.0.0.1:%d/mcpfs: " % port), line
    assert "Connection refused" in line, line
    assert SECRET not in r.out + r.err
    # no state dir was made: the store failed first
    assert not (workdir / "state").exists()


def test_store_option_wins_over_the_environment(mcpfs_bin, workdir):
    port = closed_port()
    env_url = "host=%s/nowhere user=mcpfs password=%s" % (workdir, SECRET)
    url = "postgresql://mcpfs@127.0.0.1:%d/mcpfs" % port
    line = one_line(start(mcpfs_bin, workdir, ["--store=" + url],
                          env={"MCPFS_STORE": env_url}))
    assert line.startswith("mcpfs: store: cannot connect to %s: " % url), line
    # and a conninfo string's password= is masked like a URI's
    line = one_line(start(mcpfs_bin, workdir, [], env={"MCPFS_STORE": env_url}))
    assert line.startswith("mcpfs: store: cannot connect to host=%s/nowhere user=mcpfs "
                           "password=***: " % workdir), line
    assert SECRET not in line


def test_empty_store_environment_is_the_state_dir(mcpfs_bin, workdir):
    """MCPFS_STORE="" means no store: the usual error about the mount point
    comes, not one about a database."""
    r = start(mcpfs_bin, workdir, ["%s/missing" % workdir], env={"MCPFS_STORE": ""},
              mount=False)
    assert r.rc == 1 and "store" not in r.err, r
    assert "missing" in r.err, r


def test_store_and_import_option_errors(mcpfs_bin, workdir):
    assert one_line(start(mcpfs_bin, workdir, ["--store="])) == \
        "mcpfs: --store needs a value (URL)"
    assert one_line(start(mcpfs_bin, workdir, ["--import=%s" % workdir], mount=False)) == \
        ("mcpfs: --import=%s needs --store=URL (or $MCPFS_STORE): the database to copy into"
         % workdir)
    line = one_line(start(mcpfs_bin, workdir, ["--store=postgresql:///x",
                                               "--import=%s" % workdir]))
    assert line == ("mcpfs: --import copies and exits: it takes no mount point, --no-mount or "
                    "--http (got '%s')" % (workdir / "mnt")), line
    line = one_line(start(mcpfs_bin, workdir, ["--store=postgresql:///x", "--no-mount",
                                               "--http", "--import=%s" % workdir],
                          mount=False))
    assert line.startswith("mcpfs: --import copies and exits"), line
    # a URL libpq cannot read: named, masked, and nothing mounted
    line = one_line(start(mcpfs_bin, workdir, ["--store=postgresql://u:%s%%zz@h/x" % SECRET]))
    assert line.startswith("mcpfs: store: postgresql://u:***@h/x is not a PostgreSQL URL: "), line
    assert SECRET not in line


def test_help_names_store_and_import(mcpfs_bin):
    r = run([mcpfs_bin, "--help"])
    assert r.rc == 0
    assert re.search(r"^  --store=URL +keep contexts in PostgreSQL.*\(-o store=…\)$", r.out, re.M)
    assert re.search(r"^  --import=DIR +copy the contexts of state dir DIR", r.out, re.M)
    assert "MCPFS_STORE" in r.out


def test_store_keeps_the_contexts_in_the_database(mount_factory, fake, workdir):
    """--store: a context made and talked to on the mount is rows of the
    database (no state dir made), comes back after a remount, and a second
    daemon on the same URL lists it and reads its history."""
    require_pg()
    with PgServer() as pg:
        a = mount_factory(args=["--store=" + pg.url], state_dir=True)
        c = a.ctx("shared")
        send(c, "hello\n")
        assert output(c) == reply_for("hello")
        rows = pg.psql("SELECT c.name, count(*) FROM mcpfs.contexts c JOIN mcpfs.records r"
                       " ON r.context_id = c.id GROUP BY c.name").split()
        assert rows and rows[0].startswith("shared|"), rows
        assert not a.state.exists()
        history = read_file(c / "history")
        assert history.count(reply_for("hello")) == 1
        a.remount()
        assert read_file(c / "history") == history
        b = mount_factory(name="b", args=["--store=" + pg.url], state_dir=True)
        assert [n for n in os.listdir(b.path) if not n.startswith(".")] == ["shared"]
        assert read_file(b.path / "shared" / "history") == read_file(c / "history")
        a.stop()
        b.stop()
