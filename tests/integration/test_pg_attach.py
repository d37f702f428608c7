"""Attachments on a shared store (CONTRACT §9 and §12): the blobs are rows of
the database (mcpfs.blobs, one per content; mcpfs.context_blobs, one per
context holding it), so a file attached on daemon A is in attach/ of daemon B,
B sends it (its call carries the bytes A stored), both transcripts say so,
and a clear or rmdir collects what no context holds.  Also the engine's blob
ops through storage.h against the server (tests/pg/test_pg_blob.c)."""

import base64
import os
import subprocess
from pathlib import Path

import pytest

from attach_files import pdf, png
from mcpfs_testlib import REPO, daemon_env, output, read_text, reply_for, run, send, wait_for


def count(pg, table):
    return int(pg.psql("SELECT count(*) FROM mcpfs.%s" % table).split()[0])


def test_blob_ops_on_postgresql(pg):
    """put (idempotent, a 5 MiB one read back in 128 KiB pieces), stat, read,
    link (a fork), sweep and remove, as on the other engines; nothing is left
    in the tables once no context holds it."""
    b = os.environ.get("MCPFS_BIN") or str(REPO / "build" / "mcpfs")
    driver = Path(b).resolve().parent / "tests" / "test_pg_blob"
    if not driver.is_file():
        pytest.skip("%s was not built (meson found no libpq)" % driver)
    r = subprocess.run([str(driver), pg.url], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.rstrip().endswith(" 0 failed") and r.stderr == "", r.stdout + r.stderr
    assert count(pg, "blobs") == 0 and count(pg, "context_blobs") == 0


def test_attached_on_a_sent_from_b(mount_factory, fake, pg, tmp_path):
    a = mount_factory(args=["--store=" + pg.url], state_dir=True)
    c = a.ctx("shared")
    src = tmp_path / "r.pdf"
    src.write_bytes(pdf())
    assert run(["cp", str(src), str(c / "attach") + "/"]).rc == 0
    (c / "attach" / "a.png").write_bytes(png())
    (c / "attach" / "same.png").write_bytes(png())   # the same content: one row
    assert count(pg, "blobs") == 2 and count(pg, "context_blobs") == 2
    os.unlink(c / "attach" / "same.png")

    # daemon B: attach/ holds A's files, their bytes read from the database
    b = mount_factory(name="b", args=["--store=" + pg.url], state_dir=True)
    cb = b.path / "shared"
    assert sorted(os.listdir(cb / "attach")) == ["a.png", "r.pdf"]
    r = subprocess.run(["cat", str(cb / "attach" / "r.pdf")], capture_output=True, timeout=20)
    assert r.returncode == 0 and r.stdout == pdf()
    assert (cb / "attach" / "a.png").read_bytes() == png()
    assert os.stat(cb / "attach" / "r.pdf").st_size == len(pdf())

    # B sends the message: its call carries the files A stored
    send(cb, "look")
    assert output(cb) == reply_for("look")
    blocks = fake.calls[-1].messages[-1]["content"]
    assert [x["type"] for x in blocks] == ["image", "document", "text"]
    assert base64.b64decode(blocks[0]["source"]["data"], validate=True) == png()
    assert base64.b64decode(blocks[1]["source"]["data"], validate=True) == pdf()
    assert os.listdir(cb / "attach") == []
    assert "[attached: a.png, PNG, 164 B]" in read_text(cb / "transcript")

    # A, restarted, has B's turn: the same transcript, attach/ empty, and its
    # next call sends the turn's attachments again
    a.remount()
    assert read_text(c / "transcript") == read_text(cb / "transcript")
    assert os.listdir(c / "attach") == []
    send(c, "again")
    assert output(c) == reply_for("again")
    first = fake.calls[-1].messages[0]["content"]
    assert base64.b64decode(first[0]["source"]["data"]) == png()
    assert "attachments_lost" not in read_text(c / "status")

    # a clear collects them; a context removed takes its own along
    (c / "ctl").write_text("clear\n")
    wait_for(lambda: count(pg, "blobs") == 0, what="blobs collected after clear")
    assert count(pg, "context_blobs") == 0
    (c / "attach" / "b.pdf").write_bytes(pdf(pages=2))
    assert count(pg, "blobs") == 1
    os.rmdir(c)
    assert count(pg, "blobs") == 0 and count(pg, "context_blobs") == 0
    a.stop()
    b.stop()


def test_attached_on_a_seen_live_on_b(mount_factory, fake, pg):
    """Both daemons up: a file attached on A appears in attach/ of B through
    the feed; B sends it; A's attach/ empties and its transcript gets the turn."""
    a = mount_factory(args=["--store=" + pg.url], state_dir=True)
    b = mount_factory(name="b", args=["--store=" + pg.url], state_dir=True)
    c = a.ctx("live")
    cb = b.path / "live"
    wait_for(lambda: cb.is_dir(), what="the context on B")
    (c / "attach" / "a.png").write_bytes(png())
    wait_for(lambda: os.listdir(cb / "attach") == ["a.png"], what="a.png in B's attach/")
    assert (cb / "attach" / "a.png").read_bytes() == png()
    send(cb, "look")
    assert output(cb) == reply_for("look")
    blocks = fake.calls[-1].messages[-1]["content"]
    assert base64.b64decode(blocks[0]["source"]["data"], validate=True) == png()
    wait_for(lambda: os.listdir(c / "attach") == [], what="A's attach/ emptied")
    wait_for(lambda: "[attached: a.png, PNG, 164 B]" in read_text(c / "transcript"),
             what="the turn in A's transcript")
    assert output(c) == reply_for("look")
    # the response cache is off on a shared store, and .status says why
    assert "response_cache: off (not kept with --store" in read_text(b.path / ".status")
    a.stop()
    b.stop()


def test_import_copies_the_attachments(mount_factory, fake, pg):
    """--import copies a context's blobs with its records: the turn's
    attachment is sent again from the database, the file waiting in attach/
    is there with its bytes; run again, nothing is written twice."""
    src = mount_factory(name="src", state_dir=True)
    c = src.ctx("pics")
    (c / "attach" / "a.png").write_bytes(png())
    send(c, "look")
    assert output(c) == reply_for("look")
    (c / "attach" / "r.pdf").write_bytes(pdf())
    src.stop()
    for _ in range(2):
        r = run([src.bin, "--store=" + pg.url, "--import=%s" % src.state], timeout=120,
                env=daemon_env(src.home, "http://127.0.0.1:9"))
        assert r.rc == 0, r
        assert count(pg, "blobs") == 2 and count(pg, "context_blobs") == 2
    d = mount_factory(name="db", args=["--store=" + pg.url], state_dir=True)
    cd = d.path / "pics"
    assert os.listdir(cd / "attach") == ["r.pdf"]
    assert (cd / "attach" / "r.pdf").read_bytes() == pdf()
    send(cd, "again")
    assert output(cd) == reply_for("again")
    first = fake.calls[-1].messages[0]["content"]
    assert base64.b64decode(first[0]["source"]["data"], validate=True) == png()
    last = fake.calls[-1].messages[-1]["content"]
    assert [x["type"] for x in last] == ["document", "text"]
    assert base64.b64decode(last[0]["source"]["data"], validate=True) == pdf()
    assert "attachments_lost" not in read_text(cd / "status")
    d.stop()
