"""Structured output (CONTRACT §8): the `schema` file of a context holds a JSON
Schema; while it is set, requests carry output_config.format
{"type":"json_schema","schema":…} and `output` is the JSON document, which jq
reads.  An invalid schema fails the write (what a write can know: not an
object) or the close (the whole document: not JSON, a `type` that is no JSON
Schema type) with EINVAL, shown as last_refused; a model without structured
output fails the turn before any call.  The schema is durable and the shim
reads and PATCHes it.

The fake answers a format with a document its schema takes and refuses, as the
API does, a schema the API refuses (an object type without
additionalProperties: false) and a format to a model without structured output."""

import errno
import json
import os

import pytest

from mcpfs_testlib import read_file, reply_for, run, status, wait_status
from http_support import client, shim, shim_factory  # noqa: F401  (fixtures)

SCHEMA = {"type": "object",
          "properties": {"answer": {"type": "string"}, "length": {"type": "integer"},
                         "tags": {"type": "array", "items": {"type": "string"}}},
          "required": ["answer", "length", "tags"], "additionalProperties": False}


def sh(cmd, ctx):
    return run(["bash", "-c", cmd], timeout=20, cwd=str(ctx))


def close_error(path, text):
    """Writes text to path in one write: ("write", errno) when the write
    fails, ("close", errno) when the close does, (None, 0) when neither."""
    fd = os.open(str(path), os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, text.encode())
    except OSError as e:
        try:
            os.close(fd)  # a refused text stays refused: the close fails too
        except OSError:
            pass
        return "write", e.errno
    try:
        os.close(fd)
    except OSError as e:
        return "close", e.errno
    return None, 0


@pytest.mark.parametrize("model,config", [
    ("claude-sonnet-4-5", ""),
    ("claude-haiku-4-5", ""),
    ("claude-sonnet-5-5", "effort = high\n"),
    ("claude-opus-5-1", ""),
])
def test_output_is_the_json_document_and_jq_reads_it(ctx, fake, model, config):
    text = json.dumps(SCHEMA)
    r = run(["bash", "-c", "echo %s > model && printf '%%s' \"$SCHEMA\" > schema && "
             "printf '%s' >> config && echo 'count the words' > input && "
             "jq -r .answer output && jq -c . output" % (model, config)],
            cwd=str(ctx), env=dict(os.environ, SCHEMA=text))
    assert r.rc == 0, r
    want = reply_for("count the words")
    doc = {"answer": want, "length": len(want), "tags": [want]}
    assert r.out == want + "\n" + json.dumps(doc, separators=(",", ":")) + "\n"
    assert json.loads(read_file(ctx / "output")) == doc
    assert read_file(ctx / "schema") == text
    body = fake.calls[-1].body
    oc = {"format": {"type": "json_schema", "schema": SCHEMA}}
    if config:
        oc["effort"] = "high"
    assert body["output_config"] == oc
    assert list(body["output_config"]) == (["effort"] if config else []) + ["format"]
    assert fake.calls[-1].valid


def test_every_turn_carries_it_until_it_is_emptied(ctx, fake):
    r = run(["bash", "-c", "printf '%s\\n' \"$SCHEMA\" > schema && echo a > input && "
             "jq -e .answer output >/dev/null && echo b > input && cat output >/dev/null && "
             ": > schema && echo c > input && cat output"],
            cwd=str(ctx), env=dict(os.environ, SCHEMA=json.dumps(SCHEMA, indent=2)))
    assert r.rc == 0, r
    assert r.out == reply_for("c")
    calls = fake.calls
    assert [("output_config" in c.body) for c in calls[-3:]] == [True, True, False]
    assert read_file(ctx / "schema") == ""
    # The history sends the JSON replies back as the assistant's text.
    assert json.loads(calls[-1].texts()[1][1])["answer"] == reply_for("a")


@pytest.mark.parametrize("text,msg", [
    ("[1, 2]\n", "schema must be a JSON object"),
    ('"a string"\n', "schema must be a JSON object"),
    ("  42", "schema must be a JSON object"),
])
def test_what_a_write_can_know_fails_the_write(ctx, fake, text, msg):
    r = sh("printf '%%s' '%s' > schema" % text.replace("'", "'\\''"), ctx)
    assert r.rc != 0 and "Invalid argument" in r.err, r
    assert msg in status(ctx).get("last_refused", "")
    assert close_error(ctx / "schema", text) == ("write", errno.EINVAL)
    assert read_file(ctx / "schema") == ""


@pytest.mark.parametrize("text,msg", [
    ('{"type": "object", "properties": {"a": {"type": "strin"}}}',
     'type "strin" at /properties/a is not a JSON Schema type'),
    ('{"type": ["string", 7]}', "is not a JSON Schema type"),
    ('{"type": "object"', "schema is not JSON"),
    ('{"type": "object"} trailing', "schema is not JSON"),
    ('{"anyOf": [{"type": "text"}]}', "at /anyOf/0 is not a JSON Schema type"),
])
def test_what_needs_the_whole_document_fails_the_close(ctx, fake, text, msg):
    sh("printf '%%s' '%s' > schema" % json.dumps({"type": "string"}), ctx)
    assert close_error(ctx / "schema", text) == ("close", errno.EINVAL)
    st = status(ctx)
    assert msg in st.get("last_refused", ""), st.text
    assert read_file(ctx / "schema") == '{"type": "string"}'  # unchanged


def test_a_property_named_type_is_no_type_keyword(ctx, fake):
    schema = {"type": "object", "properties": {"type": {"type": "string"}},
              "required": ["type"], "additionalProperties": False}
    r = run(["bash", "-c", "printf '%s' \"$SCHEMA\" > schema && echo hi > input && "
             "jq -r .type output"], cwd=str(ctx), env=dict(os.environ, SCHEMA=json.dumps(schema)))
    assert r.rc == 0, r
    assert r.out == reply_for("hi") + "\n"


def test_a_model_without_structured_output_fails_before_any_call(ctx, fake):
    fake.add_model("claude-unstructured-1", "Unstructured", structured=False)
    r = run(["bash", "-c", "echo claude-unstructured-1 > model && "
             "printf '%s' \"$SCHEMA\" > schema && echo hi > input && cat output"],
            cwd=str(ctx), env=dict(os.environ, SCHEMA=json.dumps(SCHEMA)))
    assert r.rc != 0 and "Input/output error" in r.err, r
    st = wait_status(ctx, "error")
    assert "does not take structured output" in st.get("last_error", ""), st.text
    assert not [c for c in fake.calls if c.path == "/v1/messages"]


@pytest.mark.fake_invalid_ok
def test_a_schema_the_api_refuses_fails_the_turn_with_its_message(ctx, fake):
    # Valid JSON Schema, but the API wants additionalProperties: false on objects.
    sh("""printf '%s' '{"type": "object", "properties": {"a": {"type": "string"}}}' > schema""",
       ctx)
    r = sh("echo hi > input; cat output", ctx)
    assert r.rc != 0
    st = wait_status(ctx, "error")
    assert "additionalProperties must be set to false" in st.get("last_error", ""), st.text
    assert fake.calls[-1].status == 400


def test_the_schema_survives_a_remount(mount, fake):
    ctx = mount.ctx("c")
    text = json.dumps(SCHEMA, indent=1) + "\n"
    with open(ctx / "schema", "w") as f:
        f.write(text)
    mount.remount()
    assert read_file(ctx / "schema") == text
    r = sh("echo again > input && jq -r .answer output", ctx)
    assert r.out == reply_for("again") + "\n"
    assert fake.calls[-1].body["output_config"]["format"]["schema"] == SCHEMA


def test_the_shim_reads_and_patches_the_schema(client, shim, fake):
    client.create("s")
    assert client.request("GET", "/v1/contexts/s").json()["schema"] is None
    r = client.request("PATCH", "/v1/contexts/s", {"schema": SCHEMA})
    assert r.status == 200, r
    assert r.json()["schema"] == SCHEMA
    assert json.loads(read_file(shim.path / "s" / "schema")) == SCHEMA
    client.send("s", "via http")
    doc = json.loads(client.output("s"))
    assert doc["answer"] == reply_for("via http")
    r = client.request("PATCH", "/v1/contexts/s", {"schema": {"type": "nope"}})
    assert r.status == 400 and "not a JSON Schema type" in r.json()["error"]["message"], r
    r = client.request("PATCH", "/v1/contexts/s", {"schema": "[1]"})
    assert r.status == 400, r
    assert client.request("PATCH", "/v1/contexts/s", {"schema": None}).status == 200
    assert read_file(shim.path / "s" / "schema") == ""
    r = client.request("POST", "/v1/contexts", {"name": "t", "schema": json.dumps(SCHEMA)})
    assert r.status == 201, r
    assert client.request("GET", "/v1/contexts/t").json()["schema"] == SCHEMA


@pytest.mark.fake_invalid_ok
@pytest.mark.parametrize("model,schema,msg", [
    ("claude-unstructured-1", SCHEMA, "structured outputs are not supported"),
    ("claude-sonnet-5-5", {"type": "strng"}, "'strng' is not a valid JSON Schema type"),
    ("claude-sonnet-5-5", [1], "output_config.format.schema: Input should be an object"),
    ("claude-sonnet-5-5", {"type": "object", "properties": {}},
     "additionalProperties must be set to false"),
])
def test_the_fake_refuses_a_format_as_the_api_does(fake, model, schema, msg):
    import http.client
    from mcpfs_testlib import API_VERSION, DEFAULT_KEY
    fake.add_model("claude-unstructured-1", "Unstructured", structured=False)
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    conn.request("POST", "/v1/messages", json.dumps(
        {"model": model, "max_tokens": 100, "stream": True,
         "messages": [{"role": "user", "content": "hi"}],
         "output_config": {"format": {"type": "json_schema", "schema": schema}}}),
        {"x-api-key": DEFAULT_KEY, "anthropic-version": API_VERSION,
         "content-type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    assert resp.status == 400 and msg in data["error"]["message"], data


def test_a_schema_over_64_kib_fails_the_write(ctx, fake):
    big = '{"description": "%s"}' % ("x" * (64 << 10))
    assert close_error(ctx / "schema", big) == ("write", errno.EFBIG)
    assert "over the limit of 65536" in status(ctx).get("last_refused", "")


def test_sed_i_edits_the_schema(ctx, fake):
    run(["bash", "-c", "printf '%s' \"$SCHEMA\" > schema"], cwd=str(ctx),
        env=dict(os.environ, SCHEMA=json.dumps(SCHEMA)))
    r = sh("sed -i 's/\"answer\"/\"reply\"/g' schema && echo q > input && jq -r .reply output",
           ctx)
    assert r.rc == 0, r
    assert r.out == reply_for("q") + "\n"
    r = sh("sed -i 's/\"string\"/\"strung\"/' schema", ctx)
    assert r.rc != 0  # the rename onto schema fails with EINVAL
    assert "not a JSON Schema type" in status(ctx).get("last_refused", "")
