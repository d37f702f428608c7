"""`stat transcript` gives the length of what a read returns (its size is
counted without copying the rendering, src/fs/fs_attr.c), through every kind of
block the transcript shows and while a reply streams."""

import os

from mcpfs_testlib import output, read_file, run, send, wait_for, wait_status, write_file


def same_size(ctx):
    data = read_file(ctx / "transcript", binary=True)
    assert os.stat(ctx / "transcript").st_size == len(data), data[-300:]
    return data


def test_transcript_size_is_its_length(mount, fake):
    mount.allow_error(r"HTTP 400|invalid_request")
    c = mount.ctx("c")
    same_size(c)  # empty
    write_file(c / "system", "You are terse. \u00e9\n")
    send(c, "one\n")
    output(c)
    same_size(c)
    fake.script("normal", text="with thoughts \u2603", thinking="let me think")
    send(c, "two\n")
    output(c)
    same_size(c)
    fake.script("normal", text="", stop_reason="refusal")
    send(c, "three\n")
    output(c)
    wait_status(c, "idle")
    same_size(c)
    fake.script("status", status=400)
    send(c, "four\n")
    wait_status(c, "error", 20)
    same_size(c)
    assert run("echo clear > '%s/ctl'" % c).rc == 0
    send(c, "five\n")
    output(c)
    fake.script("normal", text="five, once more")
    assert run("echo retry > '%s/ctl'" % c).rc == 0
    assert output(c) == "five, once more"
    wait_status(c, "idle")
    same_size(c)
    # a reply streaming: the size is that of the text shown so far
    fake.script("hold", pieces=["alpha ", "beta"], hold_after=1)
    send(c, "six\n")
    fake.wait_held(-1)
    wait_for(lambda: read_file(c / "transcript", binary=True).endswith(b"alpha "), 10,
             what="the first piece in the transcript")
    assert same_size(c).endswith(b"alpha ")
    fake.release()
    assert output(c) == "alpha beta"
    wait_status(c, "idle")
    assert same_size(c).endswith(b"alpha beta\n\n")
