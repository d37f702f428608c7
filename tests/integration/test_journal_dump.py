"""mcpfs-journal-dump reads each payload as the daemon's loader does (record.h):
a record framed soundly whose payload the loader skips as a bad record is
reported on its own line, counted in the summary line and makes the exit status
1, and the daemon reports the same record as corrupt in `status`.  Valid records
print as they always did."""

import ctypes
import ctypes.util
import json
import os
import re
import struct
from pathlib import Path

import pytest

from mcpfs_testlib import output, read_file, reply_for, run, send, status

_xxh = ctypes.CDLL(ctypes.util.find_library("xxhash") or "libxxhash.so.0")
_xxh.XXH3_64bits.restype = ctypes.c_uint64
_xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def xxh3(b):
    return _xxh.XXH3_64bits(b, len(b))


def frame(rtype, payload):
    """One record as doc/design/journal.md §2 frames it."""
    head = struct.pack("<IHHI", 0x314A434D, rtype, 0, len(payload))
    head += struct.pack("<I", xxh3(head) & 0xFFFFFFFF)
    return head + payload + struct.pack("<Q", xxh3(head + payload))


def compact(o):
    return json.dumps(o, separators=(",", ":")).encode()


def dump(mount, name, *args):
    tool = os.environ.get("MCPFS_JOURNAL_DUMP") or str(Path(mount.bin).parent /
                                                        "mcpfs-journal-dump")
    return run([tool, *args, str(mount.state / "contexts" / name / "journal")])


@pytest.mark.allow_errors()
def test_dump_reports_a_payload_the_loader_skips(mount, fake):
    c = mount.ctx("c")
    send(c, "hello there\n")
    assert output(c) == reply_for("hello there")
    assert mount.stop() == 0
    clean = dump(mount, "c")
    assert clean.rc == 0, clean
    assert "invalid" not in clean.out and "skipped by the loader" not in clean.out
    assert re.search(r"records \d+, bad records 0 \(0 bytes skipped\), torn bytes 0, "
                     r"good end \d+\n\Z", clean.out), clean.out

    journal = mount.state / "contexts" / "c" / "journal"
    at = journal.stat().st_size
    with open(journal, "ab") as f:
        # a USER without its text (§4), then a valid one: framing is sound
        f.write(frame(3, compact({"turn": 2, "ms": 1})))
        f.write(frame(3, compact({"turn": 2, "text": "kept", "ms": 1})))
    r = dump(mount, "c")
    assert r.rc == 1, r
    assert re.search(r"^\s*%d  USER .*\"turn\":2,\"ms\":1\}$" % at, r.out, re.M), r.out
    assert re.search(r"^\s*%d  \(invalid\)\s+a bad record, skipped by the loader: "
                     r"USER without a text$" % at, r.out, re.M), r.out
    assert r.out.count("(invalid)") == 1, r.out
    assert re.search(r"bad records 0 \(0 bytes skipped\), torn bytes 0, good end \d+, "
                     r"invalid payloads 1$", r.out, re.M), r.out
    v = dump(mount, "c", "--verify")
    assert v.rc == 1 and v.out.count("\n") == 1 and "invalid payloads 1" in v.out, v

    # the daemon skips the same record, counts it, and keeps the valid one
    mount.start()
    assert re.match(r"1 corrupt record\(s\) skipped",
                    status(c).get("journal_recovered", "")), status(c).text
    assert "kept" in read_file(c / "transcript")
