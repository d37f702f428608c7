"""The circle check (issue 12, point 2; HACKING.md, Circles): scripts/module-graph
--check reads a layer's static library with nm, and fails on a circle among its
files that scripts/module-graph.allow does not name.  Here on small libraries
built for the test: a circle appears, is allowed, grows, and a line of the list
without its reason is refused.  meson's test `circles` runs the same check on
the real libraries."""

import subprocess

import pytest

from mcpfs_testlib import REPO

SCRIPT = str(REPO / "scripts" / "module-graph")


def library(build, files):
    """build/libmcpfs-fs.a from {name.c: C source}, its members named like meson's."""
    objs = []
    for name, text in files.items():
        src = build / name
        src.write_text(text)
        obj = build / f"src_fs_{name}.o"
        subprocess.run(["cc", "-c", "-o", str(obj), str(src)], check=True)
        objs.append(str(obj))
    lib = build / "libmcpfs-fs.a"
    lib.unlink(missing_ok=True)
    subprocess.run(["ar", "rcs", str(lib)] + objs, check=True)


def check(build, allow_text):
    allow = build / "allow"
    allow.write_text(allow_text)
    r = subprocess.run([SCRIPT, "--check", str(allow), str(build), "fs"],
                       capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


A_USES_B = {"a.c": "int b_f(void);\nint a_f(void) { return b_f(); }\n",
            "b.c": "int b_f(void) { return 1; }\n"}
CIRCLE = {"a.c": "int b_f(void);\nint a_f(void) { return b_f(); }\n",
          "b.c": "int a_f(void);\nint b_f(void) { return 1; }\nint b_g(void) { return a_f(); }\n"}
GROWN = dict(CIRCLE, **{
    "b.c": "int a_f(void);\nint c_f(void);\n"
           "int b_f(void) { return c_f(); }\nint b_g(void) { return a_f(); }\n",
    "c.c": "int b_g(void);\nint c_f(void) { return b_g(); }\n"})


@pytest.fixture
def build(tmp_path):
    return tmp_path


def test_uses_downward_pass(build):
    library(build, A_USES_B)
    rc, out = check(build, "# nothing allowed\n")
    assert rc == 0, out
    assert out == ""


def test_new_circle_fails_naming_its_files(build):
    library(build, CIRCLE)
    rc, out = check(build, "# nothing allowed\n")
    assert rc == 1, out
    assert "fs: a circle not in" in out and "(2) a.c b.c" in out


def test_allowed_circle_passes(build):
    library(build, CIRCLE)
    rc, out = check(build, "fs a.c b.c | a loop and its items\n")
    assert rc == 0, out


def test_grown_circle_fails(build):
    library(build, GROWN)
    rc, out = check(build, "fs a.c b.c | a loop and its items\n")
    assert rc == 1, out
    assert "(3) a.c b.c c.c" in out


def test_gone_circle_is_named_but_passes(build):
    library(build, A_USES_B)
    rc, out = check(build, "fs a.c b.c | a loop and its items\n")
    assert rc == 0, out
    assert "no longer there" in out and "a.c b.c" in out


def test_line_without_reason_fails(build):
    library(build, CIRCLE)
    rc, out = check(build, "fs a.c b.c\n")
    assert rc == 1, out
    assert "want 'LAYER FILE.c FILE.c ... | reason'" in out


def test_why_names_the_symbols_of_each_edge(build):
    library(build, CIRCLE)
    r = subprocess.run([SCRIPT, "--why", str(build), "fs"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "a.c -> b.c: b_f" in r.stdout and "b.c -> a.c: a_f" in r.stdout
