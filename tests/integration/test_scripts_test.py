"""scripts/test's summary counts skips (issue 11, point 9): its integration()
and unit() functions are run here on a stand-in pytest and a stand-in meson
project whose tests exit 0, 77 or 1 (unit() runs `meson test`, issue 12,
point 6), and the last line's format is checked."""

import os
import re
import tempfile
import textwrap
from pathlib import Path

from mcpfs_testlib import REPO, run

SCRIPT = REPO / "scripts" / "test"


def functions():
    """The shell functions of scripts/test, as text."""
    text = SCRIPT.read_text()
    out = []
    for name in ("unit", "integration"):
        m = re.search(r"^%s\(\) \{.*?^\}$" % name, text, re.M | re.S)
        assert m, "scripts/test has no function %s" % name
        out.append(m.group(0))
    return "\n".join(out)


def count(top, pytest_summary, unit_codes):
    """unit() runs `meson test`: here on a real meson project whose tests exit
    with unit_codes (77: skipped, as meson counts it)."""
    workdir = Path(tempfile.mkdtemp(dir=str(top)))
    src = workdir / "src"
    src.mkdir()
    tests = "".join("test('t%d', find_program('sh'), args : ['-c', 'echo unit %d; exit %d'])\n"
                    % (i, i, rc) for i, rc in enumerate(unit_codes))
    (src / "meson.build").write_text("project('stand-in', 'c')\n" + tests)
    r = run(["meson", "setup", str(workdir / "bd"), str(src)], timeout=120)
    assert r.rc == 0, r
    fake_py = workdir / "py"
    fake_py.write_text("#!/bin/sh\necho '%s'\n" % pytest_summary)
    os.chmod(fake_py, 0o755)
    script = textwrap.dedent("""\
        set -uo pipefail
        cd %s
        root=%s
        PY=%s
        passed=0 failed=0 skipped=0
        """ % (workdir, workdir, fake_py)) + functions() + textwrap.dedent("""
        unit bd >/dev/null
        integration bd plain >/dev/null
        echo "$passed $failed $skipped"
        """)
    r = run(["bash", "-c", script])
    assert r.rc == 0, r
    return tuple(int(x) for x in r.out.split())


def test_summary_counts_skips(workdir):
    assert count(workdir, "==== 5 passed, 2 skipped in 3.1s ====", [0, 77, 1]) == (6, 1, 3)
    assert count(workdir, "==== 1 failed, 4 passed, 3 skipped, 1 error in 9s ====", []) == \
        (4, 2, 3)
    assert count(workdir, "==== 7 skipped in 0.1s ====", [77]) == (0, 0, 8)


def test_last_line_names_all_three():
    lines = [ln for ln in SCRIPT.read_text().splitlines()
             if ln.strip().startswith("echo \"$passed")]
    assert lines == ['echo "$passed passed, $failed failed, $skipped skipped"'], lines


def test_meson_test_runs_unit_tests_and_fuzz_replays(mcpfs_bin):
    """What unit() runs: every unit test binary and every corpus replay of
    tests/meson.build and tests/fuzz/meson.build is a meson test."""
    from ecosystem_lib import build_dir
    r = run(["meson", "test", "-C", str(build_dir(mcpfs_bin)), "--no-rebuild", "--list"],
            timeout=60)
    assert r.rc == 0, r
    names = set(ln.strip() for ln in r.out.splitlines())
    for unit in sorted((REPO / "tests" / "unit").glob("test_*.c")):
        assert "mcpfs:unit / %s" % unit.stem[len("test_"):] in names, (unit, names)
    for fuzz in sorted((REPO / "tests" / "fuzz").glob("fuzz_*.c")):
        assert "mcpfs:fuzz / %s" % fuzz.stem in names, (fuzz, names)
