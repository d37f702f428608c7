"""Crash torture, short and seeded (CONTRACT §6; tests/torture/torture.py has
the rules of what counts as committed).  15 cycles of random work — messages
queued and streaming, readers, cancel, retry, renames, deletes, settings — each
ended by SIGKILL at a random moment, then a remount and a check of every
committed message, reply and setting.  scripts/torture runs the long version."""

import sys

import pytest

from mcpfs_testlib import REPO

sys.path.insert(0, str(REPO / "tests" / "torture"))
from torture import run_torture  # noqa: E402


@pytest.mark.allow_errors()
def test_crash_torture_short(mount_factory, fake):
    m = mount_factory(start=False)
    fig, losses, violations = run_torture(m, fake, cycles=15, seed=20251121, max_phase=0.8)
    assert not losses and not violations, "\n".join(
        ["losses:"] + losses + ["violations:"] + violations + ["figures: %r" % fig])
    assert fig["kills"] == 15
    # the run did what it is for: replies in flight at kills, and checks that saw them
    assert fig.get("calls_in_flight_at_kill", 0) > 0
    assert fig.get("new_replies_interrupted", 0) > 0
    assert fig.get("new_messages_verified", 0) >= 30
    assert fig.get("checks", 0) >= 10
