"""scripts/format --check fails on drift from .clang-format and names the files;
scripts/format fixes them; .ci/run runs the check before the tests (issue 12,
point 4; HACKING.md, Format).  Run on a scratch git tree holding the repository's
.clang-format and scripts/format, so the tree itself is never rewritten."""

import shutil

import pytest

from ecosystem_lib import scratch_dir
from mcpfs_testlib import REPO, run

GOOD = """\
static int add(int a, int b)
{
\tif (a > b)
\t\treturn a - b;
\treturn a + b;
}
"""
BAD = "static int add(int a,int b) { if (a>b) return a-b;\n    return a+b; }\n"


@pytest.fixture
def tree():
    if not shutil.which("clang-format"):
        pytest.fail("clang-format is not installed (packaging/test-deps.txt)")
    top = scratch_dir("format-")
    (top / "scripts").mkdir()
    shutil.copy2(REPO / "scripts" / "format", top / "scripts" / "format")
    shutil.copy2(REPO / ".clang-format", top / ".clang-format")
    for d in ("src/core", "include/mcpfs", "tests/unit"):
        (top / d).mkdir(parents=True)
    (top / "src/core/good.c").write_text(GOOD)
    (top / "include/mcpfs/good.h").write_text("int add(int a, int b);\n")
    (top / "tests/unit/bad_test.c").write_text(BAD)
    (top / "src/core/bad.c").write_text(BAD)
    (top / "notes.txt").write_text(BAD)  # not C: never looked at
    r = run(["git", "init", "-q", str(top)])
    assert r.rc == 0, r
    yield top
    shutil.rmtree(top, ignore_errors=True)


def check(top, *files):
    return run([str(top / "scripts" / "format"), "--check"] + list(files), cwd=str(top))


def test_check_names_the_drifting_files_and_format_fixes_them(tree):
    r = check(tree)
    assert r.rc == 1, r
    assert sorted(r.out.split()) == ["src/core/bad.c", "tests/unit/bad_test.c"], r
    assert "2 file(s) differ from .clang-format" in r.err, r
    assert (tree / "src/core/bad.c").read_text() == BAD  # --check changes nothing
    assert check(tree, "src/core/good.c").rc == 0
    r = run([str(tree / "scripts" / "format"), "src/core/bad.c"], cwd=str(tree))
    assert r.rc == 0, r
    assert (tree / "src/core/bad.c").read_text() == GOOD
    r = check(tree)
    assert r.rc == 1 and r.out.split() == ["tests/unit/bad_test.c"], r
    assert run([str(tree / "scripts" / "format")], cwd=str(tree)).rc == 0
    r = check(tree)
    assert r.rc == 0 and r.out == "", r
    assert (tree / "notes.txt").read_text() == BAD


def test_ci_runs_the_check_before_the_tests():
    lines = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()
             if ln.strip() and not ln.strip().startswith("#")]
    assert "./scripts/format --check" in lines
    assert lines.index("./scripts/format --check") < lines.index("exec ./scripts/test")
    deps = (REPO / "packaging" / "test-deps.txt").read_text().split()
    assert "clang-format" in deps
