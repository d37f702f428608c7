"""Fixtures of the mcpfs integration tests: a real mount, real tools, and a fake
Anthropic server on loopback (tests/fake/fake_anthropic.py).

Fixtures
  fake          a started FakeAnthropic on 127.0.0.1 (random port), new for each
                test; the test fails if the daemon sent it an invalid request
                (unless marked @pytest.mark.fake_invalid_ok)
  mcpfs_bin     path of the daemon: $MCPFS_BIN, else <repo>/build/mcpfs
  workdir       a fresh directory under $MCPFS_TEST_TMPDIR or /var/tmp (never /tmp)
  mount_factory make(args=(), env=None, name="mnt", start=True, base_url=None,
                allow_errors=(regex, ...), state_dir=False) -> Mount (see
                mcpfs_testlib.Mount; state_dir: in the state dir even in the
                PostgreSQL mode); every
                Mount is unmounted and its daemon stopped at teardown, and the
                test fails on unexpected daemon error lines, a crash, or a hang
  mount         mount_factory() with the args of @pytest.mark.mcpfs_args(...) and
                the env of @pytest.mark.mcpfs_env(NAME=value or None to unset)
  ctx           mount.ctx("c"): a new context directory (a Path)
  tool_env      environment for tools (private HOME, no ANTHROPIC_* variables)

Markers
  allow_errors(*regex)   daemon `mcpfs: error:` lines matching one regex are
                         expected; with no argument, any error line is
  mcpfs_args(*args)      extra command-line arguments for the `mount` fixture
  mcpfs_env(**env)       environment changes for the `mount` fixture
  mcpfs_timeout(seconds) the watchdog (default 120 s): past it the daemon is
                         killed, which unblocks every file operation, and the
                         test fails
  fake_invalid_ok        the daemon may send requests the fake rejects
  state_dir_only(why)    looks into the state dir's files: skipped in the
                         PostgreSQL mode

The PostgreSQL mode (MCPFS_TEST_STORE=pg, pg_support.py): one PostgreSQL server
for the session, and every Mount of mount_factory started with --store=URL of
a new database of its own, dropped at teardown.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from mcpfs_testlib import REPO, FakeAnthropic, Mount, test_tmp_base
from mcpfs_testlib import tool_env as _tool_env
from pg_support import PgServer, require_pg
from pg_support import store_mode


def pytest_configure(config):
    for line in (
        "allow_errors(*regex): daemon error log lines matching one regex are expected "
        "(no argument: any)",
        "mcpfs_args(*args): extra mcpfs command-line arguments for the mount fixture",
        "mcpfs_env(**env): environment changes for the mount fixture (None unsets)",
        "mcpfs_timeout(seconds): watchdog for the test's daemon (default 120)",
        "fake_invalid_ok: the daemon may send requests the fake rejects",
        "state_dir_only(why): looks into the state dir's files; skipped with "
        "MCPFS_TEST_STORE=pg",
    ):
        config.addinivalue_line("markers", line)


def pytest_runtest_setup(item):
    marker = item.get_closest_marker("state_dir_only")
    if marker is not None and store_mode() == "pg":
        pytest.skip("state dir only (MCPFS_TEST_STORE=pg): %s"
                    % (marker.args[0] if marker.args else "looks into its files"))


@pytest.fixture(scope="session")
def pg_session():
    """With MCPFS_TEST_STORE=pg, the session's PostgreSQL server; else None."""
    if store_mode() != "pg":
        yield None
        return
    require_pg()
    server = PgServer().start()
    yield server
    server.close()


@pytest.fixture
def pg():
    """A PostgreSQL server of the test's own (the two-daemon tests)."""
    require_pg()
    with PgServer() as server:
        yield server


@pytest.fixture
def two(pg, mount_factory):
    """Mounts A and B on the same database."""
    a = mount_factory(args=["--store=" + pg.url], state_dir=True)
    b = mount_factory(name="b", args=["--store=" + pg.url], state_dir=True)
    return a, b


@pytest.fixture(scope="session")
def mcpfs_bin():
    path = os.environ.get("MCPFS_BIN") or str(REPO / "build" / "mcpfs")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("mcpfs binary not found at %s (build it: meson setup build && "
                    "meson compile -C build, or set MCPFS_BIN)" % path)
    return path


@pytest.fixture
def fake(request):
    f = FakeAnthropic().start()
    yield f
    invalid = f.invalid
    f.stop()
    if invalid and request.node.get_closest_marker("fake_invalid_ok") is None:
        pytest.fail("the daemon sent %d request(s) the fake rejected:\n  %s" % (
            len(invalid), "\n  ".join("#%d %s %s -> %s: %s" % (r.index, r.method, r.path,
                                                               r.status, r.error)
                                      for r in invalid)))


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="mcpfs-test-", dir=test_tmp_base())
    yield Path(d)
    if os.environ.get("MCPFS_TEST_KEEP"):
        return
    # Never remove through a live mount.
    mounted = False
    with open("/proc/self/mountinfo") as f:
        mounted = any((" %s/" % d) in line or (" %s " % d) in line for line in f)
    if not mounted:
        shutil.rmtree(d, ignore_errors=True)


def _markers(request):
    allow = request.node.get_closest_marker("allow_errors")
    timeout = request.node.get_closest_marker("mcpfs_timeout")
    return {
        "allowed": list(allow.args) if allow else [],
        "allow_all": bool(allow) and not allow.args,
        "watchdog": float(timeout.args[0]) if timeout else 120.0,
    }


@pytest.fixture
def mount_factory(request, mcpfs_bin, fake, workdir, pg_session):
    mounts = []
    databases = []
    m = _markers(request)

    def make(args=(), env=None, name="mnt", start=True, base_url=None, allow_errors=(),
             state_dir=False):
        store = None
        if pg_session is not None and not state_dir:
            db, store = pg_session.new_database()
            databases.append(db)
        mt = Mount(mcpfs_bin, base_url or fake.base_url, workdir, name=name, args=args, env=env,
                   allowed_errors=list(m["allowed"]) + list(allow_errors),
                   allow_all_errors=m["allow_all"], watchdog=m["watchdog"], store=store)
        mounts.append(mt)
        if start:
            mt.start()
        return mt

    yield make
    problems = []
    for mt in mounts:
        mt.cleanup()
    for db in databases:
        pg_session.drop_database(db)
    for mt in mounts:
        for p in mt.problems():
            problems.append("%s: %s" % (mt.path, p))
    if problems:
        logs = "\n".join("--- %s:\n%s" % (mt.log_path, mt.log_tail(60)) for mt in mounts)
        pytest.fail("\n".join(problems) + "\n" + logs)


@pytest.fixture
def mount(request, mount_factory):
    args = request.node.get_closest_marker("mcpfs_args")
    env = request.node.get_closest_marker("mcpfs_env")
    return mount_factory(args=list(args.args) if args else (),
                         env=dict(env.kwargs) if env else None)


@pytest.fixture
def ctx(mount):
    return mount.ctx("c")


@pytest.fixture
def tool_env(mount):
    return _tool_env(mount.home)
