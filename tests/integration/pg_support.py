"""pg_support.py — a PostgreSQL 15 server of a test's own (Debian's
postgresql-15: /usr/lib/postgresql/15/bin), for the tests of the PostgreSQL
store (test_pg_store.py).

PgServer.start() runs initdb and `pg_ctl start` in a fresh directory under the
tests' temp base, listening on a Unix socket in that directory only (no TCP),
trust authentication for the superuser `mcpfs`, and creates the database
`mcpfs`; .url is the libpq URI to it.  PostgreSQL refuses to run as root, and
the tests run as root in CI: the server then runs as the `postgres` user that
Debian's package creates (`nobody` where it is missing), through runuser(1);
the client side stays root, which the socket lets in.  restart(), stop() and
start() drive pg_ctl; close() always stops it (immediate mode) and removes the
directory.  Use it as a context manager or through the test's fixture.

require_pg() skips a test when PostgreSQL is not installed, except under CI
(MCPFS_CI=1, set by .ci/run), where a missing server is a failure: CI installs
packaging/test-deps.txt, so a skip there would hide a broken setup.

The PostgreSQL mode of the mount tests: with MCPFS_TEST_STORE=pg, conftest's
mount fixtures start every daemon with --store=URL of a database of its own
(new_database(), dropped at teardown) on one server for the whole session, so
the same test files run against the shared store (CONTRACT §12; .ci/run runs
the core's files that way).  Tests marked @pytest.mark.state_dir_only (they
look into the state dir's journals) are skipped in that mode.
"""

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from mcpfs_testlib import test_tmp_base

PG_BIN = Path(os.environ.get("MCPFS_PG_BIN", "/usr/lib/postgresql/15/bin"))


def store_mode():
    """The store the mount tests run against: "pg", or None for the state dir."""
    mode = os.environ.get("MCPFS_TEST_STORE", "")
    if mode not in ("", "dir", "pg"):
        raise RuntimeError("MCPFS_TEST_STORE=%r: use pg (or dir, the default)" % mode)
    return "pg" if mode == "pg" else None




def pg_available():
    return all((PG_BIN / t).is_file() for t in ("initdb", "pg_ctl", "postgres", "createdb"))


def require_pg():
    import pytest  # here: bench/run uses this file without pytest
    if pg_available():
        return
    msg = "PostgreSQL 15 is not installed (%s; Debian: apt-get install postgresql-15)" % PG_BIN
    if os.environ.get("MCPFS_CI"):
        pytest.fail(msg + ", and CI (MCPFS_CI) must have it: packaging/test-deps.txt")
    pytest.skip(msg)


def server_user():
    """Who runs the server: None (this user) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("no unprivileged user (postgres, nobody) to run PostgreSQL as")


class PgServer:
    def __init__(self):
        self.dir = None
        self.running = False
        self.user = server_user()

    @property
    def data(self):
        return self.dir / "data"

    @property
    def sock(self):
        return self.dir / "sock"

    @property
    def log(self):
        return self.dir / "server.log"

    @property
    def url(self):
        return "postgresql:///mcpfs?host=%s&user=mcpfs" % self.sock

    def _as_server(self, *cmd, timeout=120, check=True):
        argv = [str(c) for c in cmd]
        if self.user is not None:
            argv = ["runuser", "-u", self.user.pw_name, "--"] + argv
        r = subprocess.run(argv, cwd=self.dir, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise AssertionError("%s failed (%d):\n%s%s\n--- server.log ---\n%s" % (
                " ".join(argv), r.returncode, r.stdout, r.stderr, tail))
        return r

    def start(self):
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="mcpfs-pg-", dir=test_tmp_base()))
            os.chmod(self.dir, 0o755)
            self.sock.mkdir(mode=0o700)
            if self.user is not None:
                for p in (self.dir, self.sock):
                    os.chown(p, self.user.pw_uid, self.user.pw_gid)
            self._as_server(PG_BIN / "initdb", "-D", self.data, "-U", "mcpfs", "--auth=trust",
                            "-E", "UTF8", "--no-sync", "--no-instructions")
            with open(self.data / "postgresql.conf", "a") as f:
                f.write("\n# mcpfs tests (tests/integration/pg_support.py)\n"
                        "listen_addresses = ''\n"
                        "unix_socket_directories = '%s'\n"
                        "max_connections = 40\n"
                        "shared_buffers = 16MB\n"
                        "fsync = on\n"
                        "synchronous_commit = on\n" % self.sock)
            self._start()
            r = subprocess.run([str(PG_BIN / "createdb"), "-h", str(self.sock), "-U", "mcpfs",
                                "mcpfs"], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
        else:
            self._start()
        return self

    def _start(self):
        self._as_server(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60",
                        "start")
        self.running = True

    def stop(self, mode="fast"):
        self._as_server(PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def restart(self, mode="fast"):
        """mode "immediate" is a crash: no checkpoint, WAL replayed at start."""
        self._as_server(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-m", mode, "-w",
                        "-t", "60", "restart")
        self.running = True

    def psql(self, sql, db="mcpfs"):
        r = subprocess.run([str(PG_BIN / "psql"), "-h", str(self.sock), "-U", "mcpfs", "-d",
                            db, "-XAtqc", sql], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def new_database(self):
        """A new empty database; returns (its name, the URL to it)."""
        self._databases = getattr(self, "_databases", 0) + 1
        name = "mcpfs_t%d" % self._databases
        self.psql("CREATE DATABASE %s" % name)
        return name, self.url.replace("/mcpfs?", "/%s?" % name)

    def drop_database(self, name):
        """Drops it, ending any session still on it (a daemon killed mid-call)."""
        self.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)

    def close(self):
        if self.dir is None:
            return
        if self.running:
            self._as_server(PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop",
                            check=False, timeout=60)
            self.running = False
        if not os.environ.get("MCPFS_TEST_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
