"""The layering rules are in the build (issue 12, point 4; HACKING.md, Layers):
a copy of the tree, configured with meson, gets one forbidden #include at a
time, and `ninja` must fail before compiling anything, naming the rule; with
the include taken out again the check passes.  The tree itself passes it."""

import shutil
import subprocess

import pytest

from ecosystem_lib import copy_source, scratch_dir
from mcpfs_testlib import REPO, run

# (file, the line added at its top, what ninja's output must say)
FORBIDDEN = [
    ("src/core/store.c", "#include <curl/curl.h>",
     "src/core/store.c:1: core may not include <curl/curl.h> (libcurl)"),
    ("src/core/context.c", "#include <microhttpd.h>",
     "src/core/context.c:1: core may not include <microhttpd.h> (libmicrohttpd)"),
    ("src/core/journal.c", "#include <fuse3/fuse_lowlevel.h>",
     "src/core/journal.c:1: core may not include <fuse3/fuse_lowlevel.h> (libfuse3)"),
    ("src/core/prune.c", '#include "mcpfs/shim.h"',
     'src/core/prune.c:1: core may not include "mcpfs/shim.h" (net)'),
    ("include/mcpfs/store.h", '#include "mcpfs/fs.h"',
     'include/mcpfs/store.h:1: core may not include "mcpfs/fs.h" (fs)'),
    ("src/fs/fs.c", '#include "mcpfs/claude.h"',
     'src/fs/fs.c:1: fs may not include "mcpfs/claude.h" (net)'),
    ("src/fs/fs.c", '#include "../net/shim_impl.h"',
     'src/fs/fs.c:1: fs may not include "../net/shim_impl.h" (net)'),
    ("src/net/shim.c", '#include "mcpfs/fs.h"',
     'src/net/shim.c:1: net may not include "mcpfs/fs.h" (fs)'),
    ("src/net/claude.c", "#include <fuse_lowlevel.h>",
     "src/net/claude.c:1: net may not include <fuse_lowlevel.h> (libfuse3)"),
    ("src/util/buf.c", "#include <cjson/cJSON.h>",
     "src/util/buf.c:1: util may not include <cjson/cJSON.h> (cJSON)"),
    ("src/util/log.c", "#include <xxhash.h>",
     "src/util/log.c:1: util may not include <xxhash.h> (xxHash)"),
    ("src/util/utf8.c", '#include "mcpfs/store.h"',
     'src/util/utf8.c:1: util may not include "mcpfs/store.h" (core)'),
    ("tools/journal_dump.c", '#include "mcpfs/shim.h"',
     'tools/journal_dump.c:1: tools may not include "mcpfs/shim.h" (net)'),
    # only the PostgreSQL engine (src/pg/) sees libpq; the others see it through pg.h
    ("src/core/store.c", "#include <libpq-fe.h>",
     "src/core/store.c:1: core may not include <libpq-fe.h> (libpq)"),
    ("src/main.c", "#include <libpq-fe.h>",
     "src/main.c:1: main may not include <libpq-fe.h> (libpq)"),
    ("src/net/shim.c", '#include "mcpfs/pg.h"',
     'src/net/shim.c:1: net may not include "mcpfs/pg.h" (pg)'),
    ("src/pg/pg_conn.c", '#include "mcpfs/shim.h"',
     'src/pg/pg_conn.c:1: pg may not include "mcpfs/shim.h" (net)'),
]


@pytest.fixture(scope="module")
def tree():
    """A copy of the source tree, configured in tree/b (no tests, no man page)."""
    top = scratch_dir("layers-")
    src = top / "src"
    copy_source(src)
    r = run(["meson", "setup", "b", "-Dtests=false", "-Dman=disabled"], cwd=str(src),
            timeout=300)
    assert r.rc == 0, r
    yield src
    shutil.rmtree(top, ignore_errors=True)


def ninja(src, *targets):
    return subprocess.run(["ninja", "-C", "b"] + list(targets), cwd=str(src),
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("path,line,message", FORBIDDEN,
                         ids=["%s:%s" % (f[0], f[1].split()[1]) for f in FORBIDDEN])
def test_forbidden_include_fails_the_build(tree, path, line, message):
    f = tree / path
    original = f.read_text()
    f.write_text(line + "\n" + original)
    try:
        r = ninja(tree)
    finally:
        f.write_text(original)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "layer rule broken: " + message in out, out
    assert "the rules are in HACKING.md, Layers" in out, out
    assert "Compiling C object" not in out, "the check must run before any compile:\n" + out
    # Taken out again, the check passes (the compile itself is not this test's).
    r = ninja(tree, "layers_checked.h")
    assert r.returncode == 0, r.stdout + r.stderr


def test_new_header_of_no_layer_is_refused(tree):
    """A header include/mcpfs/X.h with no src/<layer>/X.c must be placed in
    scripts/check-layers before it is used."""
    h = tree / "include" / "mcpfs" / "orphan_thing.h"
    h.write_text("#pragma once\n")
    try:
        r = ninja(tree, "layers_checked.h")
    finally:
        h.unlink()
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "include/mcpfs/orphan_thing.h: which layer?" in out, out
    assert ninja(tree, "layers_checked.h").returncode == 0


def test_the_tree_keeps_the_rules():
    r = run([str(REPO / "scripts" / "check-layers")], timeout=60)
    assert r.rc == 0, r
