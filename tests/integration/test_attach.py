"""Attachments (CONTRACT §9) through a real mount: attach/ takes files by
content (cp, cat >, python), refuses other types and every limit at write()
with its errno and the reason in `status`, sends them with the next message
(the fake's recorded request holds the blocks), empties attach/, resends them
with their turn, survives a remount, and collects blobs no turn refers to."""

import base64
import errno
import os
import re
import subprocess

import pytest

from attach_files import TYPES, png, pdf, zipfile_bytes, jpeg
from mcpfs_testlib import read_text, run, send, output, status, wait_for, wait_status

ALLOW = (r"refused a write of file", r"refused a close of file")


def put(path, data):
    with open(path, "wb") as f:
        f.write(data)


def write_errno(path, data):
    """The errno of writing data to path in one open, or 0."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as e:
        return e.errno
    try:
        for i in range(0, len(data), 1 << 20):
            os.write(fd, data[i:i + (1 << 20)])
    except OSError as e:
        return e.errno
    finally:
        try:
            os.close(fd)
        except OSError as e:
            return e.errno
    return 0


def last_user_blocks(fake):
    call = fake.calls[-1]
    content = call.messages[-1]["content"]
    assert isinstance(content, list)
    return content


def blobs(mount, name="c"):
    """The blobs context name holds: its blob-HASH links in the state dir, or
    with MCPFS_TEST_STORE=pg its rows of mcpfs.context_blobs."""
    if mount.store:
        db = re.search(r"/(\w+)\?", mount.store).group(1)
        rows = mount.pg.psql("SELECT 'blob-' || b.hash FROM mcpfs.context_blobs b"
                             " JOIN mcpfs.contexts c ON c.id = b.context_id"
                             " WHERE c.name = '%s' ORDER BY 1" % name, db=db)
        return rows.split()
    return sorted(p for p in os.listdir(mount.state / "contexts" / name) if p.startswith("blob-"))


@pytest.fixture
def m(mount, pg_session):
    for a in ALLOW:
        mount.allow_error(a)
    mount.pg = pg_session
    return mount


def test_every_type_sent_in_name_order_then_attach_empty(m, fake, ctx, tmp_path):
    files = {}
    for name, (_, _, _, make) in TYPES.items():
        files[name] = make()
        src = tmp_path / name
        src.write_bytes(files[name])
        assert run(["cp", str(src), str(ctx / "attach") + "/"]).rc == 0
    assert sorted(os.listdir(ctx / "attach")) == sorted(TYPES)
    for name, data in files.items():
        assert os.stat(ctx / "attach" / name).st_size == len(data)
        assert (ctx / "attach" / name).read_bytes() == data
    send(ctx, "what are these?")
    assert output(ctx) == "reply to: what are these?"
    blocks = last_user_blocks(fake)
    assert [b["type"] for b in blocks] == [TYPES[n][1] for n in sorted(TYPES)] + ["text"]
    for name, b in zip(sorted(TYPES), blocks):
        kind, block, media, _ = TYPES[name]
        assert b["source"]["media_type"] == media
        if kind == "text":
            assert b["source"]["type"] == "text"
            assert b["source"]["data"] == files[name].decode()
            assert b["title"] == name
        else:
            assert base64.b64decode(b["source"]["data"], validate=True) == files[name]
    assert blocks[-1]["type"] == "text" and blocks[-1]["text"] == "what are these?"
    assert os.listdir(ctx / "attach") == []
    hist = read_text(ctx / "history")
    assert "[attached: e.pdf, PDF, %d B]" % len(files["e.pdf"]) in hist
    assert "[attached: f.md, text," in hist
    assert "[attached: a.png, PNG," in read_text(ctx / "transcript")
    import json
    hj = json.loads(read_text(ctx / "history.json"))
    names = [a["name"] for a in hj["messages"][0]["attachments"]]
    assert names == sorted(TYPES)
    # The turn's files go with it in later calls.
    send(ctx, "and again")
    output(ctx)
    first = fake.calls[-1].messages[0]["content"]
    assert [b.get("title") or b["source"]["media_type"] for b in first[:-1]] == [
        TYPES[n][2] if TYPES[n][1] == "image" else n for n in sorted(TYPES)]
    assert fake.calls[-1].texts()[-1] == ("user", "and again")


def test_cat_and_python_and_rm(m, fake, ctx):
    p = subprocess.run("printf 'line one\\nline two\\n' | cat > %s/attach/notes.txt" % ctx,
                       shell=True)
    assert p.returncode == 0
    put(ctx / "attach" / "pic.png", png())
    with open(ctx / "attach" / "report.pdf", "wb") as f:   # python, in pieces
        data = pdf(pad=1_260_000)
        for i in range(0, len(data), 4096):
            f.write(data[i:i + 4096])
    assert sorted(os.listdir(ctx / "attach")) == ["notes.txt", "pic.png", "report.pdf"]
    assert run(["rm", str(ctx / "attach" / "report.pdf")]).rc == 0
    put(ctx / "attach" / "report.pdf", data)
    assert run(["rm", str(ctx / "attach" / "pic.png")]).rc == 0
    assert sorted(os.listdir(ctx / "attach")) == ["notes.txt", "report.pdf"]
    send(ctx, "read it")
    output(ctx)
    assert "[attached: report.pdf, PDF, 1.2 MiB]" in read_text(ctx / "history")
    blocks = last_user_blocks(fake)
    assert len(blocks) == 3 and blocks[0]["title"] == "notes.txt"
    assert blocks[1]["title"] == "report.pdf"
    assert blocks[0]["source"]["data"] == "line one\nline two\n"


def test_unsupported_type_refused_at_write(m, fake, ctx, tmp_path):
    src = tmp_path / "x.pdf"   # the name says PDF; the content is a zip archive
    src.write_bytes(zipfile_bytes())
    r = run(["cp", str(src), str(ctx / "attach") + "/"])
    assert r.rc != 0 and "Invalid argument" in r.err
    assert os.listdir(ctx / "attach") == []
    assert "unsupported type: zip archive" in status(ctx).get("last_refused", "")
    assert write_errno(ctx / "attach" / "bin", b"hello\0world") == errno.EINVAL
    assert "binary data" in status(ctx)["last_refused"]
    assert os.listdir(ctx / "attach") == []


def test_limits(m, fake, ctx):
    big_image = png() + b"\0" * (5 << 20)
    assert write_errno(ctx / "attach" / "big.png", big_image) == errno.EFBIG
    assert "an image is at most 5 MiB" in status(ctx)["last_refused"]
    assert os.listdir(ctx / "attach") == []
    assert write_errno(ctx / "attach" / "huge.pdf", pdf(pad=(24 << 20) + 1)) == errno.EFBIG
    assert "a file is at most 24 MiB" in status(ctx)["last_refused"]
    assert write_errno(ctx / "attach" / "one.pdf", pdf(pad=13 << 20)) == 0
    assert write_errno(ctx / "attach" / "two.pdf", pdf(pad=12 << 20)) == errno.ENOSPC
    assert "at most 24 MiB together" in status(ctx)["last_refused"]
    assert os.listdir(ctx / "attach") == ["one.pdf"]
    os.unlink(ctx / "attach" / "one.pdf")
    for i in range(20):
        assert write_errno(ctx / "attach" / ("n%02d.txt" % i), b"x%d\n" % i) == 0
    assert write_errno(ctx / "attach" / "n20.txt", b"one more\n") == errno.ENOSPC
    assert "holds 20 files" in status(ctx)["last_refused"]
    assert len(os.listdir(ctx / "attach")) == 20


def test_remount_keeps_pending_and_sent(m, fake, ctx):
    put(ctx / "attach" / "a.jpg", jpeg())
    send(ctx, "one")
    output(ctx)
    put(ctx / "attach" / "b.pdf", pdf())
    m.remount()
    c = m.path / "c"
    assert os.listdir(c / "attach") == ["b.pdf"]
    assert (c / "attach" / "b.pdf").read_bytes() == pdf()
    send(c, "two")
    output(c)
    msgs = fake.calls[-1].messages
    assert msgs[0]["content"][0]["source"]["media_type"] == "image/jpeg"
    assert base64.b64decode(msgs[0]["content"][0]["source"]["data"]) == jpeg()
    assert msgs[2]["content"][0]["title"] == "b.pdf"
    assert os.listdir(c / "attach") == []


def test_gc_after_rm_clear_rmdir(m, fake, ctx):
    put(ctx / "attach" / "a.png", png())
    put(ctx / "attach" / "same.png", png())   # the same content: one blob
    assert len(blobs(m)) == 1
    os.unlink(ctx / "attach" / "same.png")
    assert len(blobs(m)) == 1                  # a.png still refers to it
    os.unlink(ctx / "attach" / "a.png")
    assert blobs(m) == []
    put(ctx / "attach" / "a.png", png())
    send(ctx, "look")
    output(ctx)
    assert len(blobs(m)) == 1
    (ctx / "ctl").write_text("clear\n")
    wait_for(lambda: blobs(m) == [], what="blob collected after clear")
    assert "[attached: a.png, PNG," in read_text(ctx / "transcript")
    put(ctx / "attach" / "b.pdf", pdf())
    assert len(blobs(m)) == 1
    os.rmdir(ctx)
    if m.store:
        assert blobs(m) == []
    else:
        assert not (m.state / "contexts" / "c").exists()


def test_model_without_image_input_fails_before_any_call(m, fake, ctx):
    (ctx / "model").write_text("claude-fable-5-1\n")
    put(ctx / "attach" / "a.png", png())
    calls = len(fake.calls)
    send(ctx, "see?")
    wait_status(ctx, "error")
    st = status(ctx)
    assert "takes no image input" in st["last_error"] and "a.png" in st["last_error"]
    assert len(fake.calls) == calls


@pytest.mark.state_dir_only("damages blob files")
def test_lost_blob_sends_a_note(m, fake, ctx):
    """A blob missing, or damaged (same size, other bytes), is reported and a
    note goes in its place; an orphan blob or a crash's .tmp is swept at load."""
    put(ctx / "attach" / "a.png", png())
    put(ctx / "attach" / "b.pdf", pdf())
    send(ctx, "one")
    output(ctx)
    m.stop()
    d = m.state / "contexts" / "c"
    by_size = {os.stat(d / b).st_size: b for b in blobs(m)}
    os.unlink(d / by_size[len(png())])
    damaged = bytearray((d / by_size[len(pdf())]).read_bytes())
    damaged[-3] ^= 0xff
    (d / by_size[len(pdf())]).write_bytes(bytes(damaged))
    (d / ("blob-" + "0" * 32)).write_bytes(b"orphan")
    (d / ("blob-" + "1" * 32 + ".tmp")).write_bytes(b"torn")
    m.start()
    c = m.path / "c"
    st = read_text(c / "status")
    assert "attachments_lost: 1" in st   # the missing one; the damaged one once read
    assert not (d / ("blob-" + "0" * 32)).exists()
    assert not (d / ("blob-" + "1" * 32 + ".tmp")).exists()
    send(c, "two")
    output(c)
    first = fake.calls[-1].messages[0]["content"]
    assert first[0]["type"] == "text" and "a.png (PNG, 164 B) is not sent: its stored copy " \
        "is missing" in first[0]["text"]
    assert first[1]["type"] == "text" and "b.pdf" in first[1]["text"] and \
        "is damaged" in first[1]["text"]
    assert "attachments_lost: 2" in read_text(c / "status")
    assert "[attached: a.png, PNG, 164 B]" in read_text(c / "history")


def test_fake_checks_sources_like_the_api():
    """The fake refuses what the API refuses of an image or document block, so a
    request it accepted above had well-formed blocks."""
    from fake_anthropic import validate_body, validate_sources

    def check(b):
        return validate_body(b) or validate_sources(b)

    def body(block):
        return {"model": "claude-sonnet-5-5", "max_tokens": 10,
                "messages": [{"role": "user", "content": [block, {"type": "text",
                                                                  "text": "hi"}]}]}

    def image(media, data):
        return {"type": "image", "source": {"type": "base64", "media_type": media,
                                            "data": data}}
    good = base64.b64encode(png()).decode()
    assert check(body(image("image/png", good))) is None
    assert "does not match" in check(body(image("image/jpeg", good)))
    assert "invalid base64" in check(body(image("image/png", good[:-3] + "!!!")))
    assert "media_type" in check(body(image("image/bmp", good)))
    doc = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                          "data": good}}
    assert "not valid" in check(body(doc))


def test_names_attach_takes(m, fake, ctx):
    for name in (".hidden", "a\x01b"):
        with pytest.raises(OSError) as ei:
            open(ctx / "attach" / name, "wb").close()
        assert ei.value.errno == errno.EINVAL, name
    with pytest.raises(OSError) as ei:
        os.mkdir(ctx / "attach" / "sub")
    assert ei.value.errno == errno.EACCES
    assert os.listdir(ctx / "attach") == []


def test_pruning_counts_attachments(m, fake, ctx):
    """A PDF's pages count against budget_tokens (2,500 tokens a page): 4 pages
    alone are over a budget of 8,000, so the turn fails before any call."""
    (ctx / "config").write_text("budget_tokens = 8000\n")
    put(ctx / "attach" / "r.pdf", pdf(pages=4))
    calls = len(fake.calls)
    send(ctx, "read it")
    wait_status(ctx, "error")
    assert status(ctx)["last_error"].startswith("budget_exceeded: the message needs about 10")
    assert len(fake.calls) == calls
    # Three pages fit, and the next turn's history holds them: 7,500 + 2 messages.
    put(ctx / "attach" / "s.pdf", pdf(pages=3))
    send(ctx, "this one")
    assert output(ctx) == "reply to: this one"


def test_attachments_and_reply_blocks_together(m, fake, ctx):
    """A turn with an attachment whose reply has blocks (thinking, a server
    tool's use and result): the next call sends the user message's image before
    its text and the reply's blocks as the API wants them; history.json shows
    the attachment on the user message and the blocks as the reply's content,
    the same after a remount (ATTACH/USER and BLOCK records replayed together)."""
    from fake_anthropic import fake_signature
    import json
    thought = "The image is a gradient."
    search = {"type": "server_tool_use", "id": "srvtoolu_01C", "name": "web_search",
              "input": {"query": "gradient"}}
    results = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01C",
               "content": [{"type": "web_search_result", "title": "Gradients",
                            "url": "https://g.example/", "encrypted_content": "EncG",
                            "page_age": None}]}
    put(ctx / "attach" / "a.png", png())
    fake.script("normal", text="A gradient.",
                blocks=[{"type": "thinking", "thinking": thought}, search, results])
    send(ctx, "what is it?")
    assert output(ctx) == "A gradient."
    send(ctx, "sure?")
    assert output(ctx) == "reply to: sure?"
    sent = fake.calls[-1].messages
    assert [b["type"] for b in sent[0]["content"]] == ["image", "text"]
    assert sent[0]["content"][1]["text"] == "what is it?"
    reply = [{k: v for k, v in b.items() if k != "cache_control"} for b in sent[1]["content"]]
    assert reply == [{"type": "thinking", "thinking": thought,
                      "signature": fake_signature(thought)},
                     search, results, {"type": "text", "text": "A gradient."}]

    def check():
        msgs = json.loads(read_text(ctx / "history.json"))["messages"]
        assert msgs[0]["content"] == "what is it?"
        assert [a["name"] for a in msgs[0]["attachments"]] == ["a.png"]
        assert msgs[1]["content"] == reply
        assert "attachments" not in msgs[2] and msgs[3]["content"] == "reply to: sure?"
        tj = json.loads(read_text(ctx / "transcript.json"))["messages"]
        assert [a["name"] for a in tj[0]["attachments"]] == ["a.png"]
        assert [b["type"] for b in tj[1]["blocks"]] == [
            "thinking", "server_tool_use", "web_search_tool_result", "text"]
        assert "[attached: a.png, PNG," in read_text(ctx / "history")
        return msgs

    before = check()
    m.stop()
    m.start()
    assert check() == before


def test_spend_limit_leaves_attach_waiting(m, fake, ctx):
    """A message refused by a reached spend limit (EDQUOT at write) takes no
    file of attach/: they wait there and go with the next message sent."""
    m.allow_error(r"refused a message|spend limit")
    send(ctx, "one")
    assert output(ctx) == "reply to: one"
    (ctx / "config").write_text("spend_limit_usd = 0.000001\n")
    put(ctx / "attach" / "a.png", png())
    calls = len(fake.calls)
    assert write_errno(ctx / "input", b"two\n") == errno.EDQUOT
    assert os.listdir(ctx / "attach") == ["a.png"]
    assert len(fake.calls) == calls
    (ctx / "config").write_text("spend_limit_usd = none\n")
    send(ctx, "three")
    assert output(ctx) == "reply to: three"
    assert [b["type"] for b in last_user_blocks(fake)] == ["image", "text"]
    assert os.listdir(ctx / "attach") == []


def test_fork_keeps_attachments(m, fake, ctx):
    """`ctl fork` copies a turn's attachments: the fork's USER record lists
    them and its directory holds their blobs (hard links), so its next call
    sends them, after a remount and after the source is gone too; the files
    waiting in attach/ stay with the source."""
    put(ctx / "attach" / "a.png", png())
    put(ctx / "attach" / "r.pdf", pdf())
    send(ctx, "look")
    assert output(ctx) == "reply to: look"
    put(ctx / "attach" / "w.pdf", pdf(pages=3))
    (ctx / "ctl").write_text("fork d\n")
    d = m.path / "d"
    src, dst = m.state / "contexts" / "c", m.state / "contexts" / "d"
    assert len(blobs(m, "c")) == 3 and len(blobs(m, "d")) == 2
    for b in blobs(m, "d") if not m.store else []:
        assert os.stat(dst / b).st_ino == os.stat(src / b).st_ino
    assert os.listdir(d / "attach") == []
    assert "[attached: a.png, PNG," in read_text(d / "history")

    def check():
        send(d, "again?")
        assert output(d) == "reply to: again?"
        first = fake.calls[-1].messages[0]["content"]
        assert [b["type"] for b in first] == ["image", "document", "text"]
        assert base64.b64decode(first[0]["source"]["data"]) == png()
        assert base64.b64decode(first[1]["source"]["data"]) == pdf()
        assert "attachments_lost" not in read_text(d / "status")
    check()
    m.remount()
    check()
    for f in os.listdir(ctx / "attach"):
        os.unlink(ctx / "attach" / f)
    (ctx / "ctl").write_text("clear\n")
    os.rmdir(ctx)
    m.remount()
    check()


# --- stored once per state directory -------------------------------------------------

def shared(mount):
    """STATE/blobs: each content once, by its hash."""
    return sorted(os.listdir(mount.state / "blobs"))


def all_blob_files(mount):
    """Every file under the state directory that holds a blob's bytes, as
    `find STATE -name 'blob-*'` plus STATE/blobs/*."""
    p = run(["find", str(mount.state), "-type", "f", "(", "-name", "blob-*", "-o", "-path",
             "*/blobs/*", ")"])
    assert p.rc == 0
    return sorted(p.out.split())


def inodes(mount):
    """The distinct inodes holding blob bytes, each with its link count."""
    seen = {}
    for f in all_blob_files(mount):
        st = os.stat(f)
        seen[st.st_ino] = st.st_nlink
    return seen


def sends_document(fake, ctx, data, text="again"):
    """The next request of ctx carries data as a document block."""
    send(ctx, text)
    assert output(ctx) == "reply to: " + text
    docs = [base64.b64decode(b["source"]["data"])
            for msg in fake.calls[-1].messages if isinstance(msg["content"], list)
            for b in msg["content"] if b["type"] == "document"]
    assert data in docs
    assert "attachments_lost" not in read_text(ctx / "status")


@pytest.mark.state_dir_only("looks into STATE/blobs")
def test_same_file_in_two_contexts_stored_once(m, fake, ctx, tmp_path):
    """The same file cp'd into attach/ of two contexts is one inode (STATE/blobs
    and a hard link in each context); rm, clear and rmdir of one leave the
    other's requests whole; the last reference gone, STATE/blobs is empty."""
    data = pdf(pad=300_000)
    src = tmp_path / "report.pdf"
    src.write_bytes(data)
    d = m.ctx("d")
    for c in (ctx, d):
        assert run(["cp", str(src), str(c / "attach") + "/"]).rc == 0
    h = shared(m)
    assert len(h) == 1
    assert inodes(m) == {os.stat(m.state / "blobs" / h[0]).st_ino: 3}
    assert blobs(m, "c") == blobs(m, "d") == ["blob-" + h[0]]
    # rm of a waiting file in one context: the other still sends it.
    assert run(["rm", str(ctx / "attach" / "report.pdf")]).rc == 0
    assert list(inodes(m).values()) == [2]
    sends_document(fake, d, data, "look")
    assert run(["cp", str(src), str(ctx / "attach") + "/"]).rc == 0
    sends_document(fake, ctx, data, "look")
    assert list(inodes(m).values()) == [3]
    m.remount()
    ctx, d = m.path / "c", m.path / "d"
    sends_document(fake, d, data)
    assert list(inodes(m).values()) == [3]
    # clear of one context: its link goes, the other's request is whole.
    (ctx / "ctl").write_text("clear\n")
    wait_for(lambda: blobs(m, "c") == [], what="c's link dropped after clear")
    assert list(inodes(m).values()) == [2]
    sends_document(fake, d, data, "after clear")
    # rmdir of one context.
    e = m.ctx("e")
    assert run(["cp", str(src), str(e / "attach") + "/"]).rc == 0
    sends_document(fake, e, data, "in e")
    assert list(inodes(m).values()) == [3]
    assert run(["rmdir", str(d)]).rc == 0
    assert list(inodes(m).values()) == [2]
    sends_document(fake, e, data, "after rmdir")
    # The last reference gone: nothing left anywhere.
    (e / "ctl").write_text("clear\n")
    wait_for(lambda: shared(m) == [], what="the shared copy deleted with its last link")
    assert all_blob_files(m) == []


@pytest.mark.state_dir_only("leaves files in STATE/blobs")
def test_crash_leftovers_swept(m, fake, ctx):
    """kill -9, then what a crash between the steps of a put, a clear or an
    rmdir leaves: a torn temp file, a shared copy no context links, a
    context's half-made link, a link no record names, a context half
    deleted.  The next start sweeps them; both contexts still send."""
    data = pdf()
    d = m.ctx("d")
    for c in (ctx, d):
        put(c / "attach" / "r.pdf", data)
        send(c, "one")
        output(c)
    put(ctx / "attach" / "w.png", png())
    m.kill9()
    st, b = m.state, m.state / "blobs"
    [hp] = [x for x in shared(m) if os.stat(b / x).st_size == len(data)]
    (b / (hp + ".4242.tmp")).write_bytes(data[:100])                 # a torn write
    orphan, linked, gone = "a" * 32, "b" * 32, "c" * 32
    (b / orphan).write_bytes(b"written, never linked")                # crash before the link
    (b / linked).write_bytes(b"linked, no ATTACH record")
    os.link(b / linked, st / "contexts" / "d" / ("blob-" + linked))
    os.link(b / hp, st / "contexts" / "c" / ("blob-" + hp + ".tmp"))  # half a link_in
    (b / gone).write_bytes(b"its context was being deleted")
    os.makedirs(st / "trash" / "99-1")
    os.link(b / gone, st / "trash" / "99-1" / ("blob-" + gone))
    os.link(b / hp, st / "trash" / "99-1" / ("blob-" + hp))
    m.start()
    ctx, d = m.path / "c", m.path / "d"
    read_text(ctx / "status")  # loads c and d
    read_text(d / "status")
    assert sorted(os.listdir(ctx / "attach")) == ["w.png"]
    assert len(shared(m)) == 2 and hp in shared(m)                    # r.pdf and w.png
    for x in (orphan, linked, gone):
        assert not (b / x).exists()
    assert not (b / (hp + ".4242.tmp")).exists()
    assert blobs(m, "c") == sorted(["blob-" + x for x in shared(m)])
    assert blobs(m, "d") == ["blob-" + hp]
    assert os.listdir(st / "trash") == []
    assert os.stat(b / hp).st_nlink == 3
    sends_document(fake, ctx, data)
    sends_document(fake, d, data)


@pytest.mark.state_dir_only("rebuilds an old state dir")
def test_old_state_dir_shared_at_load(m, fake, ctx):
    """A state directory of an earlier version (a copy per context, no
    STATE/blobs) keeps working, and its copies become one at load."""
    data = pdf(pages=3)
    d = m.ctx("d")
    for c in (ctx, d):
        put(c / "attach" / "r.pdf", data)
        send(c, "one")
        output(c)
    put(ctx / "attach" / "w.png", png())
    m.stop()
    import shutil
    shutil.rmtree(m.state / "blobs")
    for name in ("c", "d"):
        for f in blobs(m, name):
            p = m.state / "contexts" / name / f
            content = p.read_bytes()
            p.unlink()
            p.write_bytes(content)                # its own inode, as before
    assert all(n == 1 for n in inodes(m).values()) and len(inodes(m)) == 3
    m.start()
    ctx, d = m.path / "c", m.path / "d"
    assert "attachments_lost" not in read_text(ctx / "status")
    assert "attachments_lost" not in read_text(d / "status")
    assert len(shared(m)) == 2
    assert sorted(inodes(m).values()) == [2, 3]   # w.png in c; r.pdf in c and d
    for name in ("c", "d"):
        for f in blobs(m, name):
            assert os.stat(m.state / "contexts" / name / f).st_ino == \
                os.stat(m.state / "blobs" / f[5:]).st_ino
    sends_document(fake, ctx, data)
    sends_document(fake, d, data)


@pytest.mark.state_dir_only("damages STATE/blobs")
def test_damaged_shared_copy_not_spread(m, fake, ctx):
    """A shared copy damaged on disk is reported as lost for the context that
    holds it (attachments_lost, a note in its place) and is not linked into
    another context that attaches the same content: that one gets a good new
    copy, which the first context takes at its next load (the hash checked)."""
    data = pdf()
    put(ctx / "attach" / "r.pdf", data)
    send(ctx, "one")
    output(ctx)
    m.stop()
    [h] = shared(m)
    damaged = bytearray((m.state / "blobs" / h).read_bytes())
    damaged[-3] ^= 0xff
    with open(m.state / "blobs" / h, "r+b") as f:   # in place: every link sees it
        f.write(bytes(damaged))
    m.start()
    ctx = m.path / "c"
    send(ctx, "two")
    output(ctx)
    first = fake.calls[-1].messages[0]["content"]
    assert first[0]["type"] == "text" and "r.pdf" in first[0]["text"] and \
        "is damaged" in first[0]["text"]
    assert "attachments_lost: 1" in read_text(ctx / "status")
    d = m.ctx("d")
    put(d / "attach" / "r.pdf", data)
    sends_document(fake, d, data, "fresh")
    good = os.stat(m.state / "blobs" / h)
    assert good.st_ino == os.stat(m.state / "contexts" / "d" / ("blob-" + h)).st_ino
    assert good.st_ino != os.stat(m.state / "contexts" / "c" / ("blob-" + h)).st_ino
    assert good.st_nlink == 2
    m.remount()
    ctx = m.path / "c"
    sends_document(fake, ctx, data, "healed")
    assert os.stat(m.state / "blobs" / h).st_nlink == 3
    (ctx / "ctl").write_text("clear\n")
    wait_for(lambda: blobs(m, "c") == [], what="c's link collected")
    assert shared(m) == [h] and os.stat(m.state / "blobs" / h).st_nlink == 2


@pytest.mark.state_dir_only("counts STATE/blobs inodes")
def test_same_file_attached_at_once_in_many_contexts(m, fake, tmp_path):
    """cp of one file into attach/ of six contexts at once: however the puts
    interleave, one inode holds it (STATE/blobs and a link in each)."""
    data = pdf(pad=2_000_000)
    src = tmp_path / "big.pdf"
    src.write_bytes(data)
    names = ["c%d" % i for i in range(6)]
    ctxs = [m.ctx(n) for n in names]
    procs = [m.spawn(["cp", str(src), str(c / "attach") + "/"]) for c in ctxs]
    assert [p.wait(20) for p in procs] == [0] * len(procs)
    [h] = shared(m)
    assert inodes(m) == {os.stat(m.state / "blobs" / h).st_ino: len(names) + 1}
    sends_document(fake, ctxs[3], data, "big")
