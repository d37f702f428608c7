"""mcpfs --store=URL --import=DIR (CONTRACT §12; doc/design/shared-store.md
§6): a state dir's contexts, made through a real mount, copied into a real
PostgreSQL 15 (pg_support.py) record for record; run again it changes nothing,
stopped half-way it resumes, a name the store gives another context is
reported and skipped, and a state dir a daemon is using is refused."""

import json
import struct

import pytest

import socket

from mcpfs_testlib import daemon_env, run, send, wait_status

MAGIC = b"MCJ1"


def journal_records(path):
    """(type, payload) of each record of a clean journal (doc/design/journal.md:
    magic, type u16, zero u16, length u32, header check u32, payload, check u64)."""
    data = path.read_bytes()
    out, off = [], 0
    while off < len(data):
        assert data[off:off + 4] == MAGIC, "not a clean journal at %d: %s" % (off, path)
        rtype, _zero, length = struct.unpack_from("<HHI", data, off + 4)
        out.append((rtype, data[off + 16:off + 16 + length]))
        off += 16 + length + 8
    return out


def state_records(state):
    return {d.name: journal_records(d / "journal") for d in (state / "contexts").iterdir()}


def store_records(pg):
    rows = pg.psql("SELECT c.name, r.seq, r.type, encode(r.payload, 'hex') FROM mcpfs.records r"
                   " JOIN mcpfs.contexts c ON c.id = r.context_id WHERE c.name IS NOT NULL"
                   " ORDER BY c.name, r.seq")
    out = {}
    for line in rows.splitlines():
        name, seq, rtype, payload = line.split("|")
        recs = out.setdefault(name, [])
        assert int(seq) == len(recs) + 1, "a gap in %s's seqs" % name
        recs.append((int(rtype), bytes.fromhex(payload)))
    return out


@pytest.fixture
def state(mount_factory, fake):
    """A state dir with three contexts: two exchanges, one, none; then unmounted
    (in the state dir also in the PostgreSQL mode of the tests: it is the source)."""
    mount = mount_factory(state_dir=True)
    for name, messages in (("alpha", ["one", "two"]), ("beta b", ["three"]), ("ünï", [])):
        c = mount.ctx(name)
        for m in messages:
            send(c, m + "\n")
            wait_status(c, "idle")
    mount.stop()
    return mount


def do_import(mount, pg, dir=None):
    return run([mount.bin, "--store=" + pg.url, "--import=%s" % (dir or mount.state)],
               timeout=120, env=daemon_env(mount.home, "http://127.0.0.1:9"))


def outcome_lines(r):
    return sorted(r.out.splitlines()[:-1])


def test_import_copies_every_record_and_again_changes_nothing(state, pg):
    want = state_records(state.state)
    assert len(want) == 3 and len(want["alpha"]) >= 5, want
    r = do_import(state, pg)
    assert r.rc == 0, r
    assert r.err == "", r.err
    assert outcome_lines(r) == ["'alpha': copied", "'beta b': copied", "'ünï': copied"], r.out
    n = sum(len(v) - 1 for v in want.values())
    assert r.out.splitlines()[-1] == (
        "imported '%s' into %s: 3 copied, 0 resumed, 0 already there, 0 skipped; %d records"
        % (state.state, pg.url, n)), r.out
    assert store_records(pg) == want
    # created_ms is the CREATE record's
    for line in pg.psql("SELECT name, created_ms FROM mcpfs.contexts").splitlines():
        name, ms = line.split("|")
        assert int(ms) == json.loads(want[name][0][1])["created_ms"], line

    again = do_import(state, pg)
    assert again.rc == 0, again
    assert outcome_lines(again) == ["'alpha': already there", "'beta b': already there",
                                    "'ünï': already there"], again.out
    assert again.out.splitlines()[-1].endswith(
        "0 copied, 0 resumed, 3 already there, 0 skipped; 0 records")
    assert store_records(pg) == want
    assert pg.psql("SELECT count(*) FROM mcpfs.contexts").split() == ["3"]


def test_import_stopped_half_way_resumes(state, pg):
    want = state_records(state.state)
    assert do_import(state, pg).rc == 0
    # as if the import had stopped after alpha's second record
    pg.psql("DELETE FROM mcpfs.records r USING mcpfs.contexts c WHERE c.id = r.context_id"
            " AND c.name = 'alpha' AND r.seq > 2;"
            "UPDATE mcpfs.contexts SET last_seq = 2 WHERE name = 'alpha'")
    r = do_import(state, pg)
    assert r.rc == 0, r
    assert "'alpha': resumed" in r.out.splitlines(), r.out
    assert r.out.splitlines()[-1].endswith(
        "0 copied, 1 resumed, 2 already there, 0 skipped; %d records" % (len(want["alpha"]) - 2))
    assert store_records(pg) == want


def test_name_taken_or_changed_in_the_store_is_skipped_and_reported(state, pg):
    want = state_records(state.state)
    assert do_import(state, pg).rc == 0
    # beta b's name now belongs to another context (another CREATE), and alpha
    # got a record in the store that the state dir has not
    pg.psql("UPDATE mcpfs.records r SET payload = r.payload || '\\x20'::bytea"
            " FROM mcpfs.contexts c WHERE c.id = r.context_id AND c.name = 'beta b'"
            " AND r.seq = 1;"
            "WITH c AS (UPDATE mcpfs.contexts SET last_seq = last_seq + 1 WHERE name = 'alpha'"
            " RETURNING id, last_seq)"
            " INSERT INTO mcpfs.records SELECT id, last_seq, 3, '{}'::bytea FROM c")
    before = store_records(pg)
    r = do_import(state, pg)
    assert r.rc == 1, r
    assert sorted(r.err.splitlines()) == [
        "mcpfs: 'alpha': skipped: the store's copy differs from this state dir (changed there "
        "since the import)",
        "mcpfs: 'beta b': skipped: the name is taken in the store by another context",
    ], r.err
    assert r.out.splitlines() == [
        "'ünï': already there",
        "imported '%s' into %s: 0 copied, 0 resumed, 1 already there, 2 skipped; 0 records"
        % (state.state, pg.url)], r.out
    assert store_records(pg) == before  # left alone
    assert before["ünï"] == want["ünï"]


def test_import_refuses_a_state_dir_in_use_and_a_missing_one(state, pg):
    state.start()
    r = do_import(state, pg)
    assert r.rc == 1, r
    assert r.err == ("mcpfs: import from '%s': state dir '%s' is in use by a running mcpfs: "
                     "stop it first\n" % (state.state, state.state)), r.err
    # refused before the store was touched: no schema made
    assert pg.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'mcpfs'").split() == ["0"]
    state.stop()
    missing = state.root / "missing"
    r = do_import(state, pg, dir=missing)
    assert r.rc == 1 and r.err == ("mcpfs: import from '%s': cannot read state dir '%s': No "
                                   "such file or directory\n" % (missing, missing)), r.err


def test_import_into_an_unreachable_store_fails_naming_it(state):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    url = "postgresql://mcpfs:pw-secret@127.0.0.1:%d/mcpfs" % port
    r = run([state.bin, "--store=" + url, "--import=%s" % state.state], timeout=60,
            env=daemon_env(state.home, "http://127.0.0.1:9"))
    assert r.rc == 1, r
    assert r.err.startswith("mcpfs: import from '%s': store: cannot connect to "
                            "postgresql://mcpfs:***@127.0.0.1:" % state.state), r.err
    assert "pw-secret" not in r.err and len(r.err.splitlines()) == 1

