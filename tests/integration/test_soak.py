"""Soak, short (issue 4 item 7; tests/torture/soak.py has the rules): 1500 turns
across 15 contexts with random cancels of calls in flight, deletes and two
remounts.  Every reply must be the fake's reply to its message, a cancelled
reader must end with EIO, the daemon must log no unexpected error, and over
its longest lifetime it must end with no more open descriptors than after the
warm-up and, for a binary without sanitizers, an RSS within 10 % of the RSS
after the warm-up.  scripts/soak runs the long version (10,000 turns, 100
contexts)."""

import subprocess
import sys

import pytest

from mcpfs_testlib import REPO

sys.path.insert(0, str(REPO / "tests" / "torture"))
from soak import run_soak  # noqa: E402

TURNS = 1500
CONTEXTS = 15
RSS_LIMIT_PCT = 10.0


def sanitizer_runtime(binary):
    """The sanitizer runtime the binary links (libasan, libtsan...), or None.
    Their shadow memory and quarantine of freed blocks make RSS mean nothing
    here; LeakSanitizer checks for leaks at exit instead."""
    r = subprocess.run(["ldd", binary], capture_output=True, text=True)
    for word in r.stdout.split():
        if word.startswith(("libasan", "libtsan", "libubsan", "liblsan")):
            return word
    return None


@pytest.mark.mcpfs_timeout(400)
def test_soak_short(mount_factory, fake):
    m = mount_factory(start=False)
    fig, errors = run_soak(m, fake, TURNS, CONTEXTS, seed=20261203, remounts=2,
                           cancel_p=0.02, delete_p=0.08)
    print("\nsoak %s" % {k: v for k, v in fig.items() if k != "segments"})
    assert not errors, "\n".join(errors[:20])
    assert fig["turns"] == TURNS and fig["bad_replies"] == 0
    assert fig["remounts"] == 2
    # the run did what it is for
    assert fig["cancels"] >= 10 and fig["deletes"] >= 50, fig
    assert fig["main_segment_turns"] >= TURNS * 3 // 5, fig
    # the criteria, on the longest daemon lifetime
    assert "fds_warm" in fig, "no warm-up sample: %r" % fig
    assert fig["fds_end"] <= fig["fds_warm"], fig
    if sanitizer_runtime(m.bin) is None:
        assert fig["rss_growth_pct"] <= RSS_LIMIT_PCT, fig
