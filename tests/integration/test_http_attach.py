"""Attachments over HTTP (CONTRACT §9, doc/http-api.md): POST …/messages takes
"attachments": [{"name", "data": base64}] with attach/'s types and limits;
refusals answer 400 or 413 with the reason and keep nothing."""

import base64
import os

from attach_files import pdf, png, zipfile_bytes
from http_support import client, shim, shim_factory  # noqa: F401  (fixtures)
from mcpfs_testlib import read_text, wait_for


def b64(data):
    return base64.b64encode(data).decode()


def test_post_with_attachments(client, shim, fake):
    assert client.request("POST", "/v1/contexts", {"name": "h"}).status == 201
    body = {"content": "what is this?",
            "attachments": [{"name": "r.pdf", "data": b64(pdf())},
                            {"name": "p.png", "data": b64(png())}]}
    r = client.request("POST", "/v1/contexts/h/messages", body)
    assert r.status == 202, r
    assert client.output("h") == "reply to: what is this?"
    blocks = fake.calls[-1].messages[-1]["content"]
    assert [b["type"] for b in blocks] == ["image", "document", "text"]   # name order
    assert base64.b64decode(blocks[0]["source"]["data"]) == png()
    assert blocks[1]["title"] == "r.pdf"
    hist = client.request("GET", "/v1/contexts/h/history").json()
    assert [a["name"] for a in hist["messages"][0]["attachments"]] == ["p.png", "r.pdf"]
    assert "[attached: r.pdf, PDF," in read_text(shim.path / "h" / "history")
    assert os.listdir(shim.path / "h" / "attach") == []


def test_post_attachments_refused(client, shim, fake):
    shim.mount.allow_error(r"refused a message")
    assert client.request("POST", "/v1/contexts", {"name": "h"}).status == 201
    calls = len(fake.calls)
    cases = [
        ({"name": "x.pdf", "data": b64(zipfile_bytes())}, 400, "unsupported type: zip archive"),
        ({"name": "x.png", "data": "not base64!"}, 400, "data is not base64"),
        ({"name": "x.png", "data": b64(png() + b"\0" * (5 << 20))}, 413,
         "an image is at most 5 MiB"),
    ]
    for att, code, reason in cases:
        r = client.request("POST", "/v1/contexts/h/messages",
                           {"content": "hi", "attachments": [{"name": "ok.png",
                                                              "data": b64(png())}, att]})
        assert r.status == code, (att["name"], r)
        assert reason in r.error()[1]
        assert os.listdir(shim.path / "h" / "attach") == []   # nothing kept
    many = [{"name": "n%02d.txt" % i, "data": b64(b"x\n")} for i in range(21)]  # noqa
    r = client.request("POST", "/v1/contexts/h/messages", {"content": "hi", "attachments": many})
    assert r.status == 413 and "at most 20" in r.error()[1]
    # A body past the shim's ceiling (8 MiB and the JSON's room) is refused
    # whole: larger files go through the mount's attach/.
    r = client.request("POST", "/v1/contexts/h/messages",
                       {"content": "hi", "attachments": [{"name": "big.pdf",
                                                          "data": b64(pdf(pad=7 << 20))}]})
    assert r.status == 413
    # The limit on all files of a message counts attach/'s files too.
    with open(shim.path / "h" / "attach" / "big.pdf", "wb") as f:
        f.write(pdf(pad=20 << 20))
    r = client.request("POST", "/v1/contexts/h/messages",
                       {"content": "hi", "attachments": [{"name": "b.pdf",
                                                          "data": b64(pdf(pad=5 << 20))}]})
    assert r.status == 413 and "at most 24 MiB together" in r.error()[1]
    assert os.listdir(shim.path / "h" / "attach") == ["big.pdf"]
    assert len(fake.calls) == calls


def test_post_attachments_over_the_spend_limit(client, shim, fake):
    """A message refused by a reached spend limit (402) keeps none of its
    attachments; once the limit is lifted they go with the message."""
    shim.mount.allow_error(r"refused a message")
    assert client.request("POST", "/v1/contexts", {"name": "h"}).status == 201
    assert client.request("POST", "/v1/contexts/h/messages", {"content": "one"}).status == 202
    assert client.output("h") == "reply to: one"
    r = client.request("PATCH", "/v1/contexts/h", {"config": {"spend_limit_usd": 0.000001}})
    assert r.status == 200, r
    body = {"content": "two", "attachments": [{"name": "p.png", "data": b64(png())}]}
    calls = len(fake.calls)
    r = client.request("POST", "/v1/contexts/h/messages", body)
    assert r.status == 402, r
    assert "spend limit 0.000001 USD reached (context)" in r.error()[1]
    assert os.listdir(shim.path / "h" / "attach") == []
    assert len(fake.calls) == calls
    r = client.request("PATCH", "/v1/contexts/h", {"config": {"spend_limit_usd": None}})
    assert r.status == 200, r
    assert client.request("POST", "/v1/contexts/h/messages", body).status == 202
    assert client.output("h") == "reply to: two"
    assert [b["type"] for b in fake.calls[-1].messages[-1]["content"]] == ["image", "text"]
