"""CONTRACT §10, metadata: `user.*` extended attributes on a context's directory,
through a real mount with setfattr/getfattr (Debian's `attr`) and Python's
os.*xattr (and libc's getxattr/listxattr through ctypes for the size-0 probes and
ERANGE): every limit and errno, durability across a remount, `mv`, `rmdir`; and
over HTTP: "meta" in GET /v1/contexts/{name}, the `meta.KEY=VALUE` filter of
GET /v1/contexts (http.client and curl), "meta" in PATCH and POST, and in the
MCP tool list_contexts."""

import ctypes
import errno
import os

import pytest

from mcpfs_testlib import REPO, read_text, run, write_file
from http_support import (  # noqa: F401  (fixtures)
    client, quote, shim, shim_factory,
)

VALUE_MAX = 4096
KEYS_MAX = 64
NAME_MAX = 255  # "user." included, the kernel's XATTR_NAME_MAX

libc = ctypes.CDLL(None, use_errno=True)
libc.getxattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
libc.getxattr.restype = ctypes.c_ssize_t
libc.listxattr.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
libc.listxattr.restype = ctypes.c_ssize_t


def raw_getxattr(path, name, size):
    """libc getxattr(2) with a buffer of size bytes (NULL for 0): (n, bytes) or
    (-errno, None)."""
    buf = ctypes.create_string_buffer(size) if size else None
    n = libc.getxattr(str(path).encode(), name.encode(), buf, size)
    if n < 0:
        return -ctypes.get_errno(), None
    return n, (buf.raw[:n] if buf is not None else None)


def raw_listxattr(path, size):
    buf = ctypes.create_string_buffer(size) if size else None
    n = libc.listxattr(str(path).encode(), buf, size)
    if n < 0:
        return -ctypes.get_errno(), None
    return n, (buf.raw[:n] if buf is not None else None)


def errno_of(fn, *args, **kw):
    with pytest.raises(OSError) as ei:
        fn(*args, **kw)
    return ei.value.errno


def getfattr_d(path):
    r = run(["getfattr", "-d", "--absolute-names", str(path)])
    assert r.rc == 0, r
    return r.out


# --- the file system ----------------------------------------------------------------------


def test_setfattr_getfattr(ctx):
    r = run(["setfattr", "-n", "user.project", "-v", "acme", str(ctx)])
    assert r.rc == 0, r
    r = run(["setfattr", "-n", "user.owner", "-v", "Zoë", str(ctx)])
    assert r.rc == 0, r
    out = getfattr_d(ctx)
    assert 'user.project="acme"' in out and "user.owner=" in out
    r = run(["getfattr", "-n", "user.project", "--only-values", str(ctx)])
    assert r.rc == 0 and r.out == "acme", r
    r = run(["getfattr", "-n", "user.missing", str(ctx)])
    assert r.rc != 0 and "No such attribute" in r.err, r
    r = run(["setfattr", "-x", "user.project", str(ctx)])
    assert r.rc == 0, r
    assert "user.project" not in getfattr_d(ctx)
    r = run(["setfattr", "-x", "user.project", str(ctx)])
    assert r.rc != 0 and "No such attribute" in r.err, r


def test_python_xattr_calls(ctx):
    assert os.listxattr(ctx) == []
    os.setxattr(ctx, "user.project", b"acme")
    os.setxattr(ctx, "user.stage", b"")
    assert os.getxattr(ctx, "user.project") == b"acme"
    assert os.getxattr(ctx, "user.stage") == b""
    assert os.listxattr(ctx) == ["user.project", "user.stage"]
    os.setxattr(ctx, "user.project", b"acme2")
    assert os.getxattr(ctx, "user.project") == b"acme2"
    os.removexattr(ctx, "user.stage")
    assert os.listxattr(ctx) == ["user.project"]
    assert errno_of(os.getxattr, ctx, "user.stage") == errno.ENODATA
    assert errno_of(os.removexattr, ctx, "user.stage") == errno.ENODATA


def test_create_and_replace_flags(ctx):
    assert errno_of(os.setxattr, ctx, "user.k", b"v", os.XATTR_REPLACE) == errno.ENODATA
    os.setxattr(ctx, "user.k", b"v1", os.XATTR_CREATE)
    assert errno_of(os.setxattr, ctx, "user.k", b"v2", os.XATTR_CREATE) == errno.EEXIST
    assert os.getxattr(ctx, "user.k") == b"v1"
    os.setxattr(ctx, "user.k", b"v3", os.XATTR_REPLACE)
    assert os.getxattr(ctx, "user.k") == b"v3"


def test_size_probes_and_erange(ctx):
    value = b"x" * VALUE_MAX
    os.setxattr(ctx, "user.big", value)
    assert raw_getxattr(ctx, "user.big", 0) == (VALUE_MAX, None)
    assert raw_getxattr(ctx, "user.big", 100) == (-errno.ERANGE, None)
    assert raw_getxattr(ctx, "user.big", VALUE_MAX) == (VALUE_MAX, value)
    assert raw_getxattr(ctx, "user.none", 0) == (-errno.ENODATA, None)
    names = b"user.big\0"
    assert raw_listxattr(ctx, 0) == (len(names), None)
    assert raw_listxattr(ctx, 3) == (-errno.ERANGE, None)
    assert raw_listxattr(ctx, 64) == (len(names), names)


def test_limits(ctx):
    os.setxattr(ctx, "user.v", b"v" * VALUE_MAX)
    assert errno_of(os.setxattr, ctx, "user.v", b"v" * (VALUE_MAX + 1)) == errno.E2BIG
    assert "last_refused: a metadata value is at most 4096 bytes" in read_text(ctx / "status")
    assert os.getxattr(ctx, "user.v") == b"v" * VALUE_MAX
    long_name = "user." + "n" * (NAME_MAX - 5)
    os.setxattr(ctx, long_name, b"1")
    assert os.getxattr(ctx, long_name) == b"1"
    # one byte more: the kernel refuses it before mcpfs sees it
    assert errno_of(os.setxattr, ctx, long_name + "n", b"1") == errno.ERANGE
    assert errno_of(os.setxattr, ctx, "user.", b"1") == errno.EINVAL
    assert errno_of(os.setxattr, ctx, "user.bin", b"\xff\xfe") == errno.EINVAL
    assert errno_of(os.setxattr, ctx, "user.nul", b"a\0b") == errno.EINVAL
    for i in range(KEYS_MAX - 2):
        os.setxattr(ctx, "user.k%d" % i, b"x")
    assert len(os.listxattr(ctx)) == KEYS_MAX
    assert errno_of(os.setxattr, ctx, "user.one-more", b"x") == errno.ENOSPC
    assert "at most 64 metadata names" in read_text(ctx / "status")
    os.setxattr(ctx, "user.k0", b"replacing stays possible")
    os.removexattr(ctx, "user.k0")
    os.setxattr(ctx, "user.one-more", b"x")
    assert len(os.listxattr(ctx)) == KEYS_MAX
    r = run(["setfattr", "-n", "user.too-many", "-v", "x", str(ctx)])
    assert r.rc != 0 and "No space left" in r.err, r


def test_other_namespaces_and_places_are_enotsup(mount, ctx):
    for name in ("security.x", "trusted.x", "system.x"):
        assert errno_of(os.setxattr, ctx, name, b"1") in (errno.ENOTSUP, errno.EOPNOTSUPP)
    for name in ("security.selinux", "security.capability", "trusted.x"):
        assert errno_of(os.getxattr, ctx, name) == errno.ENOTSUP
        assert errno_of(os.removexattr, ctx, name) == errno.ENOTSUP
    for path in (mount.path, ctx / "input", ctx / "output", ctx / "config",
                 mount.path / ".status"):
        assert errno_of(os.setxattr, path, "user.x", b"1") == errno.ENOTSUP
        assert errno_of(os.getxattr, path, "user.x") == errno.ENOTSUP
        assert errno_of(os.listxattr, path) == errno.ENOTSUP
        assert errno_of(os.removexattr, path, "user.x") == errno.ENOTSUP
    r = run(["getfattr", "-d", str(ctx / "input")])
    assert r.rc != 0 and "Operation not supported" in r.err, r
    # writes to files (the kernel asks for security.capability) log nothing
    write_file(ctx / "system", "Be brief.")


def test_durable_across_remount_and_in_the_journal(mount, ctx):
    os.setxattr(ctx, "user.project", b"acme")
    os.setxattr(ctx, "user.gone", b"x")
    os.removexattr(ctx, "user.gone")
    mount.remount()
    out = getfattr_d(ctx)
    assert 'user.project="acme"' in out and "user.gone" not in out
    assert os.listxattr(ctx) == ["user.project"]
    dump = os.environ.get("MCPFS_JOURNAL_DUMP") or str(REPO / "build" / "mcpfs-journal-dump")
    r = run([dump, "-v", str(mount.state / "contexts" / "c" / "journal")])
    assert r.rc == 0, r
    assert ' META ' in r.out and '{"meta":{"project":"acme"}}' in r.out, r.out
    # SIGKILL right after setxattr returned: the record was fsynced
    os.setxattr(ctx, "user.after", b"kill")
    mount.kill9()
    mount.start()
    assert os.getxattr(ctx, "user.after") == b"kill"


def test_rename_and_rmdir(mount, ctx):
    os.setxattr(ctx, "user.project", b"acme")
    r = run(["mv", str(ctx), str(mount.path / "renamed")])
    assert r.rc == 0, r
    assert os.getxattr(mount.path / "renamed", "user.project") == b"acme"
    mount.remount()
    assert os.getxattr(mount.path / "renamed", "user.project") == b"acme"
    os.rmdir(mount.path / "renamed")
    os.mkdir(mount.path / "renamed")
    assert os.listxattr(mount.path / "renamed") == []


# --- HTTP -------------------------------------------------------------------------------


def names(resp):
    assert resp.status == 200, resp
    return [c["name"] for c in resp.json()["contexts"]]


def test_http_meta_and_filter(client, shim):
    for name in ("a", "b", "c d", "plain"):
        os.mkdir(shim.path / name)
    os.setxattr(shim.path / "a", "user.project", b"acme")
    os.setxattr(shim.path / "a", "user.team", b"x y")
    os.setxattr(shim.path / "b", "user.project", b"other")
    os.setxattr(shim.path / "c d", "user.project", b"acme")
    r = client.request("GET", "/v1/contexts/a")
    assert r.status == 200 and r.json()["meta"] == {"project": "acme", "team": "x y"}
    assert client.request("GET", "/v1/contexts/plain").json()["meta"] == {}
    assert names(client.request("GET", "/v1/contexts?meta.project=acme")) == ["a", "c d"]
    assert names(client.request("GET", "/v1/contexts?meta.project=acme&meta.team=x%20y")) == \
        ["a"]
    assert names(client.request("GET", "/v1/contexts?meta.project=acme&meta.team=x+y")) == ["a"]
    assert names(client.request("GET", "/v1/contexts?meta.team")) == ["a"]
    assert names(client.request("GET", "/v1/contexts?meta.project=nobody")) == []
    assert names(client.request("GET", "/v1/contexts?other=1")) == ["a", "b", "c d", "plain"]
    # the list itself is as before
    assert client.request("GET", "/v1/contexts?meta.project=other").json() == \
        {"contexts": [{"name": "b", "status": "idle"}]}
    for bad in ("meta.=1", "meta.project=%zz", "meta.project=%00", "meta.%ff=1",
                "meta." + "k" * 251 + "=1", "meta.k=" + "v" * 4097,
                "&".join("meta.k%d=1" % i for i in range(65))):
        r = client.request("GET", "/v1/contexts?" + bad)
        assert r.status == 400 and r.error()[0] == "invalid_request_error", (bad, r)


def test_http_filter_after_remount_reads_no_journal(shim):
    """After a remount the filter answers from the metadata kept beside each
    journal: with the journal emptied behind mcpfs's back while unmounted, the
    filter still finds the context (it would not if it loaded the journal)."""
    os.mkdir(shim.path / "a")
    os.mkdir(shim.path / "b")
    os.setxattr(shim.path / "a", "user.project", b"acme")
    shim.mount.stop()
    (shim.mount.state / "contexts" / "a" / "journal").write_bytes(b"")
    shim.mount.start()
    from http_support import Api
    from mcpfs_testlib import wait_for
    api = Api(shim.port)
    wait_for(api.healthy, 10, what="the HTTP shim to answer")
    assert names(api.request("GET", "/v1/contexts?meta.project=acme")) == ["a"]


def test_http_patch_and_post_meta(client, shim):
    r = client.request("POST", "/v1/contexts", {"name": "p", "meta": {"project": "acme"}})
    assert r.status == 201, r
    assert os.getxattr(shim.path / "p", "user.project") == b"acme"
    r = client.request("PATCH", "/v1/contexts/p", {"meta": {"stage": "beta", "project": None}})
    assert r.status == 200 and r.json()["meta"] == {"stage": "beta"}, r
    assert os.listxattr(shim.path / "p") == ["user.stage"]
    # mistakes are 400s and change nothing (the system prompt included)
    for meta in ({"k": 1}, {"": "v"}, {"k": "v" * 4097}, {"k" * 251: "v"},
                 {"k%d" % i: "v" for i in range(64)}, ["k"]):
        r = client.request("PATCH", "/v1/contexts/p", {"system": "changed", "meta": meta})
        assert r.status == 400 and r.error()[0] == "invalid_request_error", (meta, r)
    info = client.request("GET", "/v1/contexts/p").json()
    assert info["meta"] == {"stage": "beta"} and info["system"] == ""
    r = client.request("POST", "/v1/contexts", {"name": "q", "meta": {"k": 5}})
    assert r.status == 400, r
    assert not (shim.path / "q").exists()


def test_mcp_list_contexts_shows_meta(shim):
    os.mkdir(shim.path / "a")
    os.setxattr(shim.path / "a", "user.project", b"acme")
    os.mkdir(shim.path / "b")
    from test_mcp import Rpc
    rpc = Rpc(shim.port)
    rpc.initialize()
    r = rpc.request("tools/call", {"name": "list_contexts", "arguments": {}})
    assert r[0]["result"]["structuredContent"] == {"contexts": [
        {"name": "a", "status": "idle", "meta": {"project": "acme"}},
        {"name": "b", "status": "idle", "meta": {}}]}


# --- a full disk ------------------------------------------------------------------------


def test_setxattr_under_enospc_fails_and_changes_nothing(mount_factory, fake):
    """The state directory on a full 512 KiB tmpfs (test_disk_full.py's): a change
    of metadata fails with ENOSPC, `status` says why, the set and the journal stay
    as they were; once there is room it works and survives a remount."""
    import test_disk_full
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the state directory needs root")
    mt = mount_factory(start=False)
    mt.state.mkdir()
    r = run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % test_disk_full.TMPFS_SIZE,
             "tmpfs", str(mt.state)])
    assert r.rc == 0, r
    try:
        mt.start()
        filler = test_disk_full.Filler(mt.state)
        c = mt.ctx("c")
        big = b"v" * VALUE_MAX  # each record repeats every value: more than a page
        os.setxattr(c, "user.a", big)
        os.setxattr(c, "user.b", big)
        before = (os.listxattr(c), (mt.state / "contexts" / "c" / "meta").read_bytes())
        filler.fill()
        assert errno_of(os.setxattr, c, "user.c", big) == errno.ENOSPC
        assert errno_of(os.removexattr, c, "user.a") == errno.ENOSPC
        assert (os.listxattr(c), (mt.state / "contexts" / "c" / "meta").read_bytes()) == before
        assert "cannot save metadata: No space left" in read_text(c / "status")
        test_disk_full.assert_journals_valid(mt, ["c"])
        filler.remove()
        os.setxattr(c, "user.c", b"room again")
        mt.remount()
        assert os.listxattr(c) == ["user.a", "user.b", "user.c"]
        assert os.getxattr(c, "user.c") == b"room again"
        test_disk_full.assert_journals_valid(mt, ["c"])
    finally:
        mt.cleanup()  # the daemon first: it holds the journals open
        test_disk_full.umount(mt.state)
