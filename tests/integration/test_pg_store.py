"""The PostgreSQL storage engine (src/pg/, include/mcpfs/storage.h) against a
real PostgreSQL 15 server started for the test (pg_support.py): CONTRACT §12's
store underneath, before it is wired into the daemon (doc/design/shared-store.md
says what each test proves and what remains).

The C driver build/tests/test_pg_store runs each case against the server's URL
and checks the engine through storage.h; this file starts and restarts the
server around it.
"""

import os
import subprocess
from pathlib import Path

import pytest

from mcpfs_testlib import REPO


def driver(name="test_pg_store"):
    b = os.environ.get("MCPFS_BIN") or str(REPO / "build" / "mcpfs")
    path = Path(b).resolve().parent / "tests" / name
    if not path.is_file():
        msg = "%s was not built (meson found no libpq: apt-get install libpq-dev)" % path
        if os.environ.get("MCPFS_CI"):
            pytest.fail(msg + ", and CI (MCPFS_CI) must have it: packaging/build-deps.txt")
        pytest.skip(msg)
    return str(path)


def run_case(case, url, timeout=120, name="test_pg_store"):
    r = subprocess.run([driver(name), case, url], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, "%s %s: exit %d\n%s%s" % (name, case, r.returncode, r.stdout,
                                                       r.stderr)
    assert r.stdout.rstrip().endswith(" 0 failed"), r.stdout
    # the engine never writes to stderr (a daemon's log): libpq's notices neither
    assert r.stderr == "", r.stderr
    return r.stdout


def test_create_rename_delete_list_append_load(pg):
    run_case("basic", pg.url)
    # the schema mcpfs made, versioned
    assert pg.psql("SELECT version FROM mcpfs.schema_version").split() == ["1"]
    # a second start-up finds it and migrates nothing
    run_case("lease", pg.url)
    assert pg.psql("SELECT count(*) FROM mcpfs.schema_version").split() == ["1"]


@pytest.mark.parametrize("case", ["hidden", "tail", "meta", "sweep"])
def test_storage_seam_side_ops(pg, case):
    """storage.h beyond records: hidden contexts (a fork built whole, then
    named), tail, the side file, and the sweep of hidden contexts a dead daemon
    left (tests/pg/test_pg_side.c)."""
    run_case(case, pg.url, name="test_pg_side")


def test_copy_between_two_databases_in_batches(pg):
    """storage_copy (the engine-neutral part of --import) from one database into
    another: more records than a load batch and a commit's worth, copied whole
    and in order; a second copy finds everything there."""
    pg.psql("CREATE DATABASE copy_target")
    r = subprocess.run([driver("test_pg_side"), "copy", pg.url,
                        pg.url.replace("/mcpfs?", "/copy_target?")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.rstrip().endswith(" 0 failed") and r.stderr == "", r.stdout + r.stderr


def test_notify_wakes_the_other_connection_which_catches_up_by_seq(pg):
    run_case("feed", pg.url)


def test_lost_notification_caught_up_by_the_next_poll(pg):
    run_case("lost", pg.url)


def test_concurrent_appends_from_two_connections_one_order(pg):
    run_case("concurrent", pg.url)


def test_lease_takeover_after_expiry(pg):
    run_case("lease", pg.url)


def test_append_if_at_the_expected_seq_else_eagain(pg):
    out = run_case("if_at", pg.url)
    print(out)


@pytest.mark.parametrize("mode", ["immediate", "fast"])
def test_server_restart_mid_append_loses_nothing_committed(pg, mode):
    """pg_ctl restart while appends go on: appends fail with EIO and status says
    unreachable, the engine reconnects by itself, and every acknowledged record
    is in the database afterwards (immediate: a crash, WAL replayed)."""
    p = subprocess.Popen([driver(), "restart", pg.url], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in p.stdout:
            lines.append(line)
            if line.strip() == "READY":
                break
        assert lines and lines[-1].strip() == "READY", "".join(lines) + p.stderr.read()
        pg.restart(mode=mode)
        out, err = p.communicate(timeout=150)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out = "".join(lines) + out
    assert p.returncode == 0, out + err
    assert "ERROR -5 unreachable: " in out, out
    assert err == "", err
    assert out.rstrip().endswith(" 0 failed"), out


def test_unreachable_url_one_line_password_masked(pg):
    secret = "s3cret-pw"
    for url, shown in (
        ("postgresql://mcpfs:%s@127.0.0.1:1/mcpfs" % secret,
         "postgresql://mcpfs:***@127.0.0.1:1/mcpfs"),
        ("postgresql:///mcpfs?host=%s/nowhere&user=mcpfs&password=%s" % (pg.dir, secret),
         "postgresql:///mcpfs?host=%s/nowhere&user=mcpfs&password=***" % pg.dir),
        ("host=%s/nowhere password='%s x\\'y' user=mcpfs" % (pg.dir, secret),
         "host=%s/nowhere password=*** user=mcpfs" % pg.dir),
    ):
        r = subprocess.run([driver(), "unreachable", url], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == "-5"
        why = lines[1]
        assert why.startswith("store: cannot connect to " + shown + ": "), why
        assert secret not in r.stdout + r.stderr
        assert len(lines) == 3  # the one line, then the checks' summary

    # a URL libpq cannot parse: its complaint quotes the password, masked too
    r = subprocess.run([driver(), "unreachable", "postgresql://mcpfs:p%%zz%s@localhost/x" % secret],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "-22"
    assert lines[1].startswith("store: postgresql://mcpfs:***@localhost/x is not a PostgreSQL URL: "
                               "invalid percent-encoded token: "), lines[1]
    assert secret not in r.stdout + r.stderr and "zz" not in r.stdout

    # a server that stopped: the same, naming its URL
    pg.stop()
    r = subprocess.run([driver(), "unreachable", pg.url], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[1].startswith("store: cannot connect to %s: " % pg.url)
