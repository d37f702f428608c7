#!/usr/bin/env python3
"""fake_anthropic.py — a fake Anthropic Messages API for the mcpfs tests.

It speaks the wire format of shared/reference/claude-api-and-shim.md §1-§3:
POST /v1/messages with "stream": true answers 200, `content-type:
text/event-stream; charset=utf-8`, a `request-id: req_…` header and the events
message_start, content_block_start, content_block_delta (text_delta),
content_block_stop, message_delta (stop_reason, cumulative usage), message_stop,
each written as `event: X\\ndata: {json}\\n\\n` in HTTP/1.1 chunked encoding.
Errors are {"type":"error","error":{"type","message"},"request_id"} with the
status that fits.  Requests are validated (auth header, anthropic-version,
content-type, body fields, roles alternating from "user") and every request is
recorded so tests can assert what was sent.

The default reply to a call is "reply to: " + the last user message's text with
surrounding white space stripped, streamed in 4 deltas.  A summary call of mcpfs
(recognised by the line its instruction ends with, SUMMARY_ASK) is answered
with a deterministic summary instead (summary_reply()).  Usage: input_tokens =
len(UTF-8 bytes of every text in messages + system) // 4 + 5, output_tokens =
len(reply bytes) // 4 + 1.

Use it in-process:

    fake = FakeAnthropic().start()          # 127.0.0.1, random port
    fake.base_url                           # "http://127.0.0.1:PORT"
    fake.script("status", status=529, times=2)   # the next 2 calls
    fake.script("slow", delay_ms=300)       # then this one
    fake.set_default("normal")              # every call after the queue
    fake.calls                              # recorded POST /v1/messages
    fake.release()                          # let "hold" calls go on
    fake.stop()

or as a process with an HTTP control API (same behaviours, JSON):

    python3 tests/fake/fake_anthropic.py --port 0 --port-file F
    POST /_control/script   {"behaviours":[{"kind":"status","status":529}], "times":2}
    POST /_control/default  {"kind":"slow","delay_ms":300}
    POST /_control/reset    (forget requests, queue and default; abort streams in flight)
    POST /_control/release  (same as FakeAnthropic.release())
    GET  /_control/requests {"requests":[…RecordedRequest.to_dict()…]}
    GET  /_control/counts   {"counts":{"normal":3,…},"calls":N}
    GET  /_control/health   {"ok":true,"base_url":…}
    POST /_control/models   {"id":…, "name"?, "created"?, model_info() options} (add a model)

The Models API: GET /v1/models (?limit 1-1000, default 20, capped by
fake.models_page_max; ?after_id / ?before_id; {"data", "has_more", "first_id",
"last_id"}, newest first) and GET /v1/models/{id} (a ModelInfo, or 404
not_found_error) serve fake.models (DEFAULT_MODELS: both generations, one
deprecated, one retired; fake.add_model() adds more).  A Messages request is
also checked against its model as the real API does: an unknown or retired
model is a 404 not_found_error; a thinking budget to a model that takes only
adaptive thinking, adaptive thinking to a model without it, an effort level the
model lacks, temperature/top_p/top_k (other than temperature 1) to the Claude 5
family, an image to a model without image input are 400 invalid_request_error.

Server tools and structured output: a request whose tools name web_search or
web_fetch (types of SERVER_TOOLS; an unknown type, a tool the model does not
take, or a newer version than the basic one to a model without code execution
is a 400) is answered as the API streams such a turn: a short text block, then
per tool a server_tool_use block (input_json_delta of its query or URL) and
its web_search_tool_result / web_fetch_tool_result block, then the reply's
text block opening with a citations_delta (server_tool_calls()).  A request
with output_config.format {"type":"json_schema","schema":…} (refused with 400
for a model without structured_outputs, or a schema the API refuses:
schema_problem()) is answered with a JSON document the schema takes
(schema_instance()).

Behaviours are dicts {"kind": K, option: value, …}; a kind is a shortcut that
sets default options (KINDS below) and any option can be combined with any kind.
Options:

  text             reply text (default "reply to: <last user text>")
  pieces           explicit list of text deltas (overrides text)
  deltas           number of text deltas the text is split into (default 4)
  delta_size       characters per text delta (overrides deltas)
  delay_ms         sleep before every text delta ("slow")
  first_delay_ms   sleep after message_start, before the first block
  header_delay_ms  sleep before the status line is sent
  ping             a ping event before every other text delta
  thinking         text of a thinking block (thinking_delta + signature_delta)
                   sent as block 0 before the text block
  crlf             CRLF line endings in the SSE body
  fragment         write the SSE body in pieces of this many bytes, or
                   "random" (1..7 bytes, seeded by fragment_seed), one HTTP
                   chunk and one flush each, fragment_delay_ms apart (default 1)
  http10           answer "HTTP/1.0 200 OK" and a close-delimited body
  huge             reply of exactly this many bytes (ASCII), in 1000-char deltas
  fixture          replay this .sse file (a path, or a name in tests/fixtures/sse
                   such as "stream_A", or "recorded:NAME" for
                   tests/fixtures/recorded/NAME.sse, the corpus of recorded API
                   streams) byte for byte as the body; with crlf, every LF
                   not already after a CR is sent as CRLF
  hold_after       int or list of ints: after that many text deltas, wait until
                   release() (or hold_timeout seconds, default 60)
  stall_after      after that many text deltas, send nothing for stall_seconds
                   (default 30), then continue (stall_then="continue") or drop
                   the connection (stall_then="close")
  error_after      after that many text deltas, send an SSE error event
                   (error_type, default overloaded_error; error_message) and
                   end the body
  disconnect_after after that many text deltas, drop the connection without
                   finishing the chunked encoding
  inject_after     after that many text deltas, write `inject` into the SSE
                   body as it is (then the stream goes on as usual)
  inject           raw text to inject (default "garbage"), or a preset:
                   "garbage"   lines that are no SSE field a client knows (bare
                               words, binary junk, a comment, id:, retry:), and
                               an empty line that dispatches nothing: a WHATWG
                               parser ignores them all
                   "bad_json"  a content_block_delta event whose data is JSON
                               cut off in the middle of the text
                   "not_json"  a content_block_delta event whose data is not
                               JSON at all
                   "bad_delta" a content_block_delta event of valid JSON whose
                               text_delta has a number for its text
  trickle_after_stop  after message_stop, do not end the body: keep sending
                   bytes (SSE comment lines, trickle_bytes at a time, default 1,
                   trickle_ms apart, default 100) until the client closes the
                   connection, trickle_total bytes (default 64 MiB) or
                   trickle_seconds (default 60) have gone; records
                   trickled (bytes sent after message_stop) and closed_by_client
  disconnect_after_bytes  drop the connection after this many body bytes
  disconnect_mode  "fin" (default) or "rst"
  status           answer this HTTP status with an error body instead (with
                   error_type/error_message, retry_after, retry_after_ms,
                   should_retry (bool), body (raw text, or "html" for a
                   Cloudflare-like HTML page), content_type, close); 200
                   with a body answers that body instead of a stream
  drop             read the request, then close the connection with no answer
  headers          extra response headers (dict)
  stop_reason      default "end_turn"; kind "refusal" sets "refusal" and a refusing text
  input_tokens, output_tokens   override the usage numbers
  input_tokens_scale  report input tokens as the estimate times this (a tokenizer
                   that counts more, or fewer, tokens than bytes // 4); no cache
  usage_in_delta   message_delta usage repeats input/cache counts (default True)
  model            model echoed in message_start (default: the request's)
  stamp            prefix every text delta with "@<CLOCK_MONOTONIC ns> " taken just
                   before it is written (latency benchmarks)
  cache            apply the prompt-caching rules (default True; see below)
  cache_min_tokens shortest cacheable prefix in tokens (default 1024, Sonnet)
  cache_ttl        seconds a cache entry lives after its last write or hit
                   (default 300)

Prompt caching (claude-api-and-shim.md §4.2), when the request carries
cache_control (on blocks, at most 4, or at the top level: the last block): the
prompt is the blocks tools → system → messages (string content counts as one
text block; cache_control itself is not content).  A prefix's tokens are the
UTF-8 bytes of its texts // 4.  cache_read_input_tokens is the longest prefix
ending at a block boundary within 20 blocks before a breakpoint that an earlier
request wrote and that has not expired (a hit refreshes it);
cache_creation_input_tokens is the rest up to the last breakpoint; every
breakpoint prefix of at least cache_min_tokens is written.  input_tokens is
what remains.  FakeAnthropic.prompt_cache.skew (seconds) moves the cache's
clock so tests can let entries expire.

"Text deltas" count only text_delta events (not thinking deltas or pings).  At
one position the order is: holds, stall, inject, error, disconnect.  A position
past the last delta means "after all deltas, before content_block_stop".
"""

import argparse
import json
import os
import random
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

API_VERSION = "2023-06-01"
DEFAULT_KEY = "test-key-not-real"
HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE_DIR = os.path.normpath(os.path.join(HERE, "..", "fixtures", "sse"))
RECORDED_DIR = os.path.normpath(os.path.join(HERE, "..", "fixtures", "recorded"))

# kind -> default options
KINDS = {
    "normal": {},
    "reply": {},
    "slow": {"delay_ms": 200},
    "fragment": {"fragment": 1},
    "status": {"status": 500},
    "error": {"error_after": 1},
    "disconnect": {"disconnect_after": 1},
    "stall": {"stall_after": 1, "stall_seconds": 30.0},
    "hold": {"hold_after": 0},
    "thinking": {"thinking": "Let me think about this step by step."},
    "ping": {"ping": True},
    "huge": {"huge": 1 << 20},
    "http10": {"http10": True},
    "crlf": {"crlf": True},
    "fixture": {},
    "drop": {"drop": True},
    "delay": {"header_delay_ms": 1000},
    # A reply the model declined: the stream ends normally with stop_reason
    # "refusal" (CONTRACT §3.7); the text says so, as the API's does.
    "refusal": {"stop_reason": "refusal", "text": "I can't help with that request."},
}

OPTIONS = {
    "kind", "text", "pieces", "deltas", "delta_size", "delay_ms", "first_delay_ms",
    "header_delay_ms", "ping", "thinking", "signature", "crlf", "fragment",
    "fragment_seed", "fragment_delay_ms", "http10", "huge", "fixture", "hold_after",
    "hold_timeout", "stall_after", "stall_seconds", "stall_then", "error_after",
    "error_type", "error_message", "disconnect_after", "disconnect_after_bytes",
    "disconnect_mode", "status", "retry_after", "retry_after_ms", "should_retry",
    "body", "content_type", "close", "drop", "headers", "stop_reason", "input_tokens",
    "output_tokens", "usage_in_delta", "model", "request_id", "inject_after", "inject",
    "stamp", "cache", "cache_min_tokens", "cache_ttl", "input_tokens_scale",
    "trickle_after_stop", "trickle_bytes", "trickle_ms", "trickle_total", "trickle_seconds",
    "blocks", "blocks_after",
}

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

ERROR_MESSAGES = {
    "invalid_request_error": "Invalid request",
    "authentication_error": "invalid x-api-key",
    "billing_error": "Your credit balance is too low",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "Not found",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "api_error": "Internal server error",
    "timeout_error": "Request timed out",
    "overloaded_error": "Overloaded",
}

REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 402: "Payment Required",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    409: "Conflict", 413: "Payload Too Large", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout", 529: "Site Overloaded",
}

HTML_413 = (
    "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n"
    "<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>cloudflare"
    "</center>\r\n</body>\r\n</html>\r\n"
)

# Top-level body fields the Messages API accepts; anything else is a 400
# ("Extra inputs are not permitted"), as on the real API.
BODY_FIELDS = {
    "model", "max_tokens", "messages", "system", "stream", "temperature", "top_p",
    "top_k", "stop_sequences", "metadata", "cache_control", "thinking", "tools",
    "tool_choice", "service_tier", "container", "mcp_servers", "inference_geo",
    "output_config",
}
BLOCK_TYPES = {
    "text", "image", "document", "tool_use", "tool_result", "thinking",
    "redacted_thinking", "server_tool_use", "web_search_tool_result", "search_result",
    "web_fetch_tool_result",
}


def fake_signature(thinking):
    """The signature the fake gives a thinking block's text (emit_block); a
    thinking block sent back with a signature of this form must carry the very
    text it was given for, as the real API checks its signatures."""
    import hashlib
    return "fakesig-" + hashlib.sha256(thinking.encode()).hexdigest()[:32]


def check_blocks(msgs, i, c):
    """The rules the real API has for the blocks of message i (content c, a
    list): a thinking block's signature, redacted thinking's data, a tool use
    answered by a tool_result in the next message, a server tool use by its
    result in the same message (unless it is the last message, sent back to be
    continued).  Returns None or the error message."""
    last = i == len(msgs) - 1
    for j, blk in enumerate(c):
        t = blk.get("type")
        if t == "thinking":
            sig = blk.get("signature")
            if not isinstance(blk.get("thinking"), str):
                return "messages.%d.content.%d.thinking: Field required" % (i, j)
            if sig == "" or (isinstance(sig, str) and sig.startswith("fakesig-")
                             and sig != fake_signature(blk["thinking"])):
                return "messages.%d.content.%d: Invalid `signature` in `thinking` block" % (i, j)
        if t == "redacted_thinking" and not isinstance(blk.get("data"), str):
            return "messages.%d.content.%d.data: Field required" % (i, j)
        if t in ("tool_use", "server_tool_use"):
            if not isinstance(blk.get("id"), str) or not isinstance(blk.get("name"), str) \
                    or not isinstance(blk.get("input"), dict):
                return "messages.%d.content.%d: id, name and input are required" % (i, j)
        if t == "tool_use" and not last:
            nxt = msgs[i + 1].get("content") if i + 1 < len(msgs) else None
            ids = [b.get("tool_use_id") for b in nxt if isinstance(b, dict)
                   and b.get("type") == "tool_result"] if isinstance(nxt, list) else []
            if blk["id"] not in ids:
                return ("messages.%d: `tool_use` ids were found without `tool_result` blocks "
                        "immediately after: %s" % (i, blk["id"]))
        if t == "server_tool_use" and not last:
            if not any(isinstance(b, dict) and b.get("tool_use_id") == blk["id"]
                       for b in c[j + 1:]):
                return "messages.%d.content.%d: server tool use %s has no result" % (
                    i, j, blk["id"])
        if t and t.endswith("_tool_result") and t != "tool_result":
            if not any(isinstance(b, dict) and b.get("type") == "server_tool_use"
                       and b.get("id") == blk.get("tool_use_id") for b in c[:j]):
                return "messages.%d.content.%d: %s without its server tool use" % (i, j, t)
    return None


EFFORT_LEVELS = ("low", "medium", "high", "xhigh", "max")


def model_info(mid, name, created, line=None, adaptive=False, enabled=False, effort=(),
               image=True, pdf=True, structured=True, window=200000, max_tokens=64000,
               lifecycle="active", retires_at=None, family5=False, web_search=True,
               web_fetch=True):
    """A ModelInfo as GET /v1/models/{id} answers it: the SDKs' fields
    (capabilities with thinking.types, effort levels, image_input, pdf_input,
    structured_outputs; max_input_tokens, max_tokens) plus the ones mcpfs reads
    beyond them: lifecycle, retires_at, line.  family5 (not sent) makes the
    model refuse temperature/top_p/top_k, as the Claude 5 family does, and
    gives it code execution (capabilities.code_execution and
    server_tools.code_execution), which the newer server tool versions need.
    server_tools has the SDK types' shape ({"supported", "web_search",
    "code_execution"}: no entry of web_fetch's own, which the capability's
    "supported" stands for); web_fetch (not sent) is whether the model takes it."""
    sup = lambda b: {"supported": bool(b)}
    eff = {lv: sup(lv in effort) for lv in EFFORT_LEVELS}
    eff["supported"] = bool(effort)
    info = {
        "type": "model", "id": mid, "display_name": name, "created_at": created,
        "max_input_tokens": window, "max_tokens": max_tokens,
        "capabilities": {
            "batch": sup(True), "citations": sup(True), "code_execution": sup(family5),
            "context_management": {"supported": False},
            "effort": eff, "image_input": sup(image), "pdf_input": sup(pdf),
            "structured_outputs": sup(structured),
            "server_tools": {"supported": bool(web_search or web_fetch),
                             "web_search": sup(web_search), "code_execution": sup(family5)},
            "thinking": {"supported": adaptive or enabled,
                         "types": {"adaptive": sup(adaptive), "enabled": sup(enabled)}},
        },
        "lifecycle": lifecycle, "retires_at": retires_at, "line": line,
        "_family5": family5, "_web_fetch": bool(web_fetch),
    }
    return info


# The models the fake serves, newest first (the order of GET /v1/models).
DEFAULT_MODELS = [
    model_info("claude-mythos-5-1", "Claude Mythos 5.1", "2026-11-04T00:00:00Z", "claude-mythos",
               adaptive=True, effort=EFFORT_LEVELS, window=1000000, max_tokens=128000,
               family5=True),
    model_info("claude-fable-5-1", "Claude Fable 5.1", "2026-10-20T00:00:00Z", "claude-fable",
               adaptive=True, effort=("low", "medium", "high"), image=False, pdf=False,
               window=500000, max_tokens=64000, family5=True),
    model_info("claude-sonnet-5-5", "Claude Sonnet 5.5", "2026-09-22T00:00:00Z", "claude-sonnet",
               adaptive=True, effort=("low", "medium", "high", "max"), window=1000000,
               max_tokens=128000, family5=True),
    model_info("claude-opus-5-1", "Claude Opus 5.1", "2026-08-11T00:00:00Z", "claude-opus",
               adaptive=True, effort=EFFORT_LEVELS, window=1000000, max_tokens=128000,
               family5=True),
    model_info("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z", "claude-sonnet",
               adaptive=True, enabled=True, effort=("low", "medium", "high", "max"),
               window=1000000),
    model_info("claude-haiku-4-5", "Claude Haiku 4.5", "2025-10-15T00:00:00Z", "claude-haiku",
               enabled=True),
    model_info("claude-sonnet-4-5", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z", "claude-sonnet",
               enabled=True),
    model_info("claude-opus-4-1", "Claude Opus 4.1", "2025-08-05T00:00:00Z", "claude-opus",
               enabled=True, max_tokens=32000, lifecycle="deprecated",
               retires_at="2027-01-05T00:00:00Z"),
    model_info("claude-3-5-haiku-20241022", "Claude Haiku 3.5", "2024-10-22T00:00:00Z",
               "claude-haiku", pdf=False, structured=False, max_tokens=8192,
               lifecycle="retired", retires_at="2026-02-19T00:00:00Z"),
    model_info("claude-test-model", "Test Model", "2024-01-01T00:00:00Z", None),
]


def public_info(info):
    return {k: v for k, v in info.items() if not k.startswith("_")}


# Server tool versions the API names (SDK types), oldest first: a model without
# code execution takes only the first (basic) version of each.
SERVER_TOOLS = {
    "web_search": ("web_search_20250305", "web_search_20260209", "web_search_20260318"),
    "web_fetch": ("web_fetch_20250910", "web_fetch_20260209", "web_fetch_20260309",
                  "web_fetch_20260318"),
}
SCHEMA_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")


def validate_tools(tools):
    """The tools array itself (any model): a list of objects, each a server
    tool of a known type and its name, or a client tool (name + input_schema)."""
    if not isinstance(tools, list):
        return "tools: Input should be a valid list"
    known = [t for v in SERVER_TOOLS.values() for t in v]
    for i, t in enumerate(tools):
        if not isinstance(t, dict):
            return "tools.%d: Input should be an object" % i
        ty = t.get("type")
        if ty is None or ty == "custom":
            if not isinstance(t.get("name"), str) or not isinstance(t.get("input_schema"), dict):
                return "tools.%d: name and input_schema are required" % i
            continue
        if ty not in known:
            return ("tools.%d: Input tag '%s' found using 'type' does not match any of the "
                    "expected tags" % (i, ty))
        if t.get("name") != ty.rsplit("_", 1)[0]:
            return "tools.%d.name: Input should be '%s'" % (i, ty.rsplit("_", 1)[0])
    return None


def schema_problem(sch, path="schema"):
    """What the API refuses in a structured output schema: not an object, a
    `type` that is no JSON Schema type, an object type without
    additionalProperties: false (the API's documented rule)."""
    if not isinstance(sch, dict):
        return "%s: Input should be an object" % path
    ty = sch.get("type")
    tys = ty if isinstance(ty, list) else [ty] if ty is not None else []
    for t in tys:
        if t not in SCHEMA_TYPES:
            return "%s.type: %r is not a valid JSON Schema type" % (path, t)
    if "object" in tys and sch.get("additionalProperties") is not False:
        return "%s: additionalProperties must be set to false for object types" % path
    for key in ("properties", "$defs", "definitions"):
        for name, sub in (sch.get(key) or {}).items() if isinstance(sch.get(key), dict) else []:
            err = schema_problem(sub, "%s.%s.%s" % (path, key, name))
            if err:
                return err
    if isinstance(sch.get("items"), dict):
        err = schema_problem(sch["items"], path + ".items")
        if err:
            return err
    for key in ("anyOf", "allOf", "oneOf"):
        for j, sub in enumerate(sch.get(key) or []):
            err = schema_problem(sub, "%s.%s.%d" % (path, key, j))
            if err:
                return err
    return None


def validate_format(fmt):
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return "output_config.format.type: Input should be 'json_schema'"
    extra = sorted(set(fmt) - {"type", "schema"})
    if extra:
        return "output_config.format.%s: Extra inputs are not permitted" % extra[0]
    if "schema" not in fmt:
        return "output_config.format.schema: Field required"
    return schema_problem(fmt["schema"], "output_config.format.schema")


def validate_tools_for_model(tools, info):
    caps, mid = info["capabilities"], info["id"]
    for i, t in enumerate(tools or []):
        ty = t.get("type") if isinstance(t, dict) else None
        for name, versions in SERVER_TOOLS.items():
            if ty not in versions:
                continue
            takes = caps["server_tools"]["web_search"]["supported"] if name == "web_search" \
                else info.get("_web_fetch", True)
            if not takes:
                return "tools.%d: %s is not supported for %s" % (i, name, mid)
            if ty != versions[0] and not caps["code_execution"]["supported"]:
                return ("tools.%d.type: '%s' is not supported for %s; use '%s'"
                        % (i, ty, mid, versions[0]))
    return None


def schema_instance(sch, text, depth=0):
    """A JSON value valid for a simple schema, deterministic: every property,
    the first enum value or anyOf branch, text for strings, len(text) for
    integers, one item in arrays."""
    if not isinstance(sch, dict) or depth > 20:
        return None
    if "const" in sch:
        return sch["const"]
    if isinstance(sch.get("enum"), list) and sch["enum"]:
        return sch["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(sch.get(key), list) and sch[key]:
            return schema_instance(sch[key][0], text, depth + 1)
    ty = sch.get("type")
    if isinstance(ty, list):
        ty = ty[0] if ty else None
    if ty == "object":
        return {k: schema_instance(v, text, depth + 1)
                for k, v in (sch.get("properties") or {}).items()}
    if ty == "array":
        items = sch.get("items")
        return [schema_instance(items, text, depth + 1)] if isinstance(items, dict) else []
    return {"string": text, "integer": len(text), "number": len(text) / 2,
            "boolean": True}.get(ty)


def server_tool_calls(body):
    """The calls the fake makes for the request's server tools, in order: one
    search of the last user text, one fetch of the first URL in it
    (https://example.com/ when none).  Deterministic ids, inputs and results."""
    import base64
    q = last_user_text(body).strip()[:200] or "query"
    m = re.search(r"https?://\S+", q)
    url = m.group(0) if m else "https://example.com/"
    calls = []
    for t in (body or {}).get("tools") or []:
        ty = t.get("type") if isinstance(t, dict) else None
        sid = "srvtoolu_01Fake%018d" % (len(calls) + 1)
        if ty in SERVER_TOOLS["web_search"]:
            title = "Result for: " + q[:60]
            rurl = "https://example.com/results/1"
            calls.append({"id": sid, "name": "web_search", "input": {"query": q},
                          "result": {"type": "web_search_tool_result", "tool_use_id": sid,
                                     "content": [{"type": "web_search_result", "title": title,
                                                  "url": rurl, "page_age": "April 1, 2026",
                                                  "encrypted_content": base64.b64encode(
                                                      ("fake:" + q[:60]).encode()).decode()}]},
                          "citation": {"type": "web_search_result_location",
                                       "cited_text": "The fake's answer to " + q[:40],
                                       "url": rurl, "title": title,
                                       "encrypted_index": "RmFrZUVuY3J5cHRlZEluZGV4"}})
        elif ty in SERVER_TOOLS["web_fetch"]:
            calls.append({"id": sid, "name": "web_fetch", "input": {"url": url},
                          "result": {"type": "web_fetch_tool_result", "tool_use_id": sid,
                                     "content": {"type": "web_fetch_result", "url": url,
                                                 "retrieved_at": "2026-04-01T00:00:00Z",
                                                 "content": {"type": "document",
                                                             "source": {"type": "text",
                                                                        "media_type": "text/plain",
                                                                        "data": "Fetched text of " + url},
                                                             "title": "Page at " + url}}}})
    return calls


def validate_for_model(body, info):
    """The rules a model's capabilities add to a Messages request (the real API
    answers 400 invalid_request_error).  Returns None or the message."""
    if not isinstance(body, dict) or info is None:
        return None
    caps = info["capabilities"]
    mid = info["id"]
    if info.get("_family5"):
        for key in ("temperature", "top_p", "top_k"):
            if key in body and not (key == "temperature" and body[key] == 1):
                return "%s: is not supported for %s; only the default is accepted" % (key, mid)
    th = body.get("thinking")
    if isinstance(th, dict) and th.get("type") in ("enabled", "adaptive"):
        kind = th["type"]
        if not caps["thinking"]["supported"]:
            return "thinking: %s does not support extended thinking" % mid
        if not caps["thinking"]["types"][kind]["supported"]:
            if kind == "enabled":
                return ("thinking.type.enabled is not supported for %s; use "
                        "thinking.type.adaptive with output_config.effort instead" % mid)
            return "thinking.type.adaptive is not supported for %s" % mid
    err = validate_tools_for_model(body.get("tools"), info)
    if err:
        return err
    oc = body.get("output_config")
    if oc is not None:
        if not isinstance(oc, dict):
            return "output_config: Input should be an object"
        if oc.get("format") is not None and not caps["structured_outputs"]["supported"]:
            return "output_config.format: structured outputs are not supported for %s" % mid
        eff = oc.get("effort")
        if eff is not None:
            if eff not in EFFORT_LEVELS:
                return "output_config.effort: Input should be %s" % ", ".join(EFFORT_LEVELS)
            if not caps["effort"]["supported"]:
                return "output_config.effort: %s does not support effort" % mid
            if not caps["effort"][eff]["supported"]:
                return "output_config.effort: '%s' is not supported for %s" % (eff, mid)
    for i, m in enumerate(body.get("messages") or []):
        c = m.get("content") if isinstance(m, dict) else None
        for j, blk in enumerate(c if isinstance(c, list) else []):
            t = blk.get("type") if isinstance(blk, dict) else None
            if t == "image" and not caps["image_input"]["supported"]:
                return "messages.%d.content.%d: %s does not support image input" % (i, j, mid)
            if t == "document" and (blk.get("source") or {}).get("media_type") == \
                    "application/pdf" and not caps["pdf_input"]["supported"]:
                return "messages.%d.content.%d: %s does not support PDF input" % (i, j, mid)
    return None


def make_behaviour(kind="normal", **params):
    """Returns a behaviour dict from a kind name (or a dict) and options."""
    if isinstance(kind, dict):
        merged = dict(kind)
        merged.update(params)
        params = merged
        kind = params.pop("kind", "normal")
    if kind not in KINDS:
        raise ValueError("unknown behaviour kind %r (known: %s)" % (kind, ", ".join(sorted(KINDS))))
    b = {"kind": kind}
    b.update(KINDS[kind])
    b.update(params)
    unknown = set(b) - OPTIONS
    if unknown:
        raise ValueError("unknown behaviour option(s): %s" % ", ".join(sorted(unknown)))
    if kind == "fixture" and not b.get("fixture"):
        raise ValueError("kind 'fixture' needs fixture=<path or name>")
    return b


def content_text(content):
    """The text of a message content: a string, or the text blocks joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(blk.get("text", "") for blk in content
                       if isinstance(blk, dict) and blk.get("type") == "text")
    return ""


def system_text(system):
    if system is None:
        return ""
    return content_text(system)


def last_user_text(body):
    for m in reversed((body or {}).get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            return content_text(m.get("content"))
    return ""


# mcpfs's summary call (doc/design/pruning.md): its last user message ends
# with this line, naming how many exchanges above it folds and their turns.
SUMMARY_ASK = re.compile(r"Fold into the new summary: the earlier summary \(if any\) and the "
                         r"first (\d+) exchanges above \(turns (\d+) to (\d+)\)\.")
SUMMARY_HEAD = re.compile(r"^Summary of the earlier part of this conversation[^\n]*\n\n")
SUMMARY_MAX_CHARS = 1200  # the fake's summaries keep their newest part


def summary_reply(body):
    """The answer to a summary call, deterministic: "Summary of turns A-B."
    (A: the earlier summary's first turn, if it names one), the earlier
    summary's text (from the system block that carries one), then
    one line per folded exchange with the start of its user message; the
    newest SUMMARY_MAX_CHARS characters when longer.  None for another call."""
    m = SUMMARY_ASK.search(last_user_text(body))
    if not m:
        return None
    n, a, b = int(m.group(1)), m.group(2), m.group(3)
    earlier = ""
    system = (body or {}).get("system")
    for blk in system if isinstance(system, list) else []:
        t = blk.get("text", "") if isinstance(blk, dict) else ""
        if SUMMARY_HEAD.match(t):
            span = re.match(r"[^\n]*\(turns (\d+)-\d+\)", t)
            a = span.group(1) if span else a  # the rolling summary's first turn
            earlier = SUMMARY_HEAD.sub("", t).strip()
            earlier = re.sub(r"^Summary of turns \d+-\d+\.\s*", "", earlier)
    lines = [earlier] if earlier else []
    msgs = (body or {}).get("messages") or []
    for i in range(min(n, len(msgs) // 2)):
        lines.append("- " + content_text(msgs[2 * i].get("content")).strip()[:60])
    text = "\n".join(lines)
    if len(text) > SUMMARY_MAX_CHARS:
        text = text[-SUMMARY_MAX_CHARS:]
    return "Summary of turns %s-%s.\n%s" % (a, b, text)


def default_reply(body):
    summary = summary_reply(body)
    if summary is not None:
        return summary
    return "reply to: " + last_user_text(body).strip()


def media_tokens(blk):
    """Input tokens of an image or document block as the API counts them,
    roughly: an image width*height/750 (PNG and GIF sizes read, 1000 for
    others), a PDF 2300 a page, a text document its text; 0 for other blocks."""
    import base64
    import binascii
    src = blk.get("source") if isinstance(blk, dict) else None
    if blk.get("type") not in ("image", "document") or not isinstance(src, dict):
        return 0
    if src.get("type") == "text":
        return len(str(src.get("data", "")).encode("utf-8")) // 4
    try:
        raw = base64.b64decode(src.get("data") or "", validate=True)
    except (binascii.Error, ValueError):
        return 0
    if blk["type"] == "document":
        return 2300 * max(1, raw.count(b"/Type /Page") - raw.count(b"/Type /Pages"))
    if raw.startswith(b"\x89PNG") and len(raw) >= 24:
        w, h = struct.unpack(">II", raw[16:24])
    elif raw.startswith(b"GIF8") and len(raw) >= 10:
        w, h = struct.unpack("<HH", raw[6:10])
    else:
        return 1000
    return min(1600, max(1, w * h // 750))


def estimate_input_tokens(body):
    parts, media = [system_text((body or {}).get("system"))], 0
    for m in (body or {}).get("messages") or []:
        if isinstance(m, dict):
            parts.append(content_text(m.get("content")))
            c = m.get("content")
            media += sum(media_tokens(b) for b in (c if isinstance(c, list) else [])
                         if isinstance(b, dict))
    return len("".join(parts).encode("utf-8")) // 4 + 5 + media


CACHE_LOOKBACK = 20  # blocks before a breakpoint searched for an earlier prefix


def prompt_blocks(body):
    """The texts of the prompt in cache order, and the indices of the blocks that
    carry a breakpoint."""
    texts, marks = [], []

    def add(content):
        if isinstance(content, str):
            texts.append(content)
            return
        for blk in content if isinstance(content, list) else []:
            if isinstance(blk, dict):
                mt = media_tokens(blk)
                if mt:  # hashed by content, counted as the API counts it
                    import hashlib
                    key = "\x00media:" + hashlib.sha256(json.dumps(
                        blk.get("source"), sort_keys=True).encode()).hexdigest()
                    texts.append(key + " " * max(0, 4 * mt - len(key)))
                else:
                    texts.append(json.dumps(blk.get("input"), sort_keys=True)
                                 if blk.get("type") == "tool_use" else
                                 blk.get("text") or blk.get("thinking") or
                                 json.dumps({k: v for k, v in blk.items()
                                             if k != "cache_control"}, sort_keys=True))
                if "cache_control" in blk:
                    marks.append(len(texts) - 1)
    body = body or {}
    for tool in body.get("tools") or []:
        add([tool])
    if body.get("system") is not None:
        add(body["system"])
    for m in body.get("messages") or []:
        if isinstance(m, dict):
            texts.append("\x00role:" + str(m.get("role")))  # a role switch is content
            add(m.get("content"))
    if body.get("cache_control") and texts:
        marks.append(len(texts) - 1)
    return texts, sorted(set(marks))


class PromptCache:
    """The API's prompt cache as the module comment describes it; thread-safe."""

    def __init__(self):
        self.entries = {}  # prefix digest -> expiry (monotonic seconds)
        self.skew = 0.0
        self.lock = threading.Lock()

    def usage(self, body, total, min_tokens=1024, ttl=300.0):
        """(input_tokens, cache_creation, cache_read) for a request whose input
        is total tokens."""
        import hashlib
        texts, marks = prompt_blocks(body)
        if not marks:
            return total, 0, 0
        h = hashlib.sha256(str((body or {}).get("model")).encode())
        keys, toks, size = [], [], 0
        for t in texts:
            b = t.encode("utf-8")
            h.update(b"%d:" % len(b) + b)
            if not t.startswith("\x00role:"):  # hashed, but no tokens
                size += len(b)
            keys.append(h.digest())
            toks.append(size // 4)
        now = time.monotonic() + self.skew
        last = marks[-1]
        with self.lock:
            read, hit = 0, None
            for j in range(last, -1, -1):
                near = any(0 <= bp - j < CACHE_LOOKBACK for bp in marks)
                if near and toks[j] >= min_tokens and self.entries.get(keys[j], -1) > now:
                    read, hit = toks[j], keys[j]
                    break
            if hit is not None:
                self.entries[hit] = now + ttl
            creation = 0
            if toks[last] >= min_tokens:
                creation = toks[last] - read
                for bp in marks:
                    if toks[bp] >= min_tokens:
                        self.entries[keys[bp]] = now + ttl
        return max(0, total - read - creation), creation, read


def fixture_path(name):
    if name.startswith("recorded:"):
        return os.path.join(RECORDED_DIR, name[len("recorded:"):] + ".sse")
    if os.path.sep in name or name.endswith(".sse"):
        return name if os.path.isabs(name) else os.path.join(os.getcwd(), name)
    return os.path.join(FIXTURE_DIR, name + ".sse")


def parse_sse(data):
    """Parses an SSE body (bytes) by the WHATWG rules the SDKs follow: lines end
    in CRLF, LF or CR; one space after the colon is dropped; data lines join with
    LF; comments and unknown fields are ignored; an event dispatches on an empty
    line.  An unterminated last line is ignored.  Returns [(event, data_str)]."""
    events = []
    name, datas = "", []
    lines = re.split(rb"\r\n|\r|\n", data)
    for raw in lines[:-1]:
        if raw == b"":
            if datas:
                events.append((name or "message", "\n".join(datas)))
            name, datas = "", []
            continue
        if raw.startswith(b":"):
            continue
        field, sep, value = raw.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        value = value.decode("utf-8")
        if field == b"event":
            name = value
        elif field == b"data":
            datas.append(value)
    return events


def sse_text(events):
    """The text of the text_delta events of parsed SSE events."""
    out = []
    for _, data in events:
        try:
            obj = json.loads(data)
        except ValueError:
            continue
        if obj.get("type") == "content_block_delta" and obj["delta"].get("type") == "text_delta":
            out.append(obj["delta"]["text"])
    return "".join(out)


# An image's or PDF's first bytes, as the API checks them against media_type.
IMAGE_MAGIC = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff",
               "image/gif": b"GIF8", "image/webp": b"RIFF"}


def validate_source(blk):
    """The source of an image or document block as the API checks it: base64
    data that decodes, a media type it takes, and content of that type.
    Returns None or the error's path and message."""
    import base64
    import binascii
    src = blk.get("source")
    if not isinstance(src, dict):
        return "source: Field required"
    kind, media, data = src.get("type"), src.get("media_type"), src.get("data")
    if blk["type"] == "document" and kind == "text":
        if media != "text/plain" or not isinstance(data, str):
            return "source: a text source needs media_type text/plain and string data"
        return None
    if kind != "base64":
        return "source.type: Input should be 'base64' or 'text'"
    if not isinstance(data, str) or not data:
        return "source.data: Field required"
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return "source.data: invalid base64 data"
    if blk["type"] == "image":
        if media not in IMAGE_MAGIC:
            return ("source.media_type: Input should be 'image/jpeg', 'image/png', "
                    "'image/gif' or 'image/webp'")
        if not raw.startswith(IMAGE_MAGIC[media]) or \
                (media == "image/webp" and raw[8:12] != b"WEBP"):
            return "source: Image does not match the provided media type %s" % media
        if len(raw) > 5 * 1024 * 1024:
            return "source: image exceeds 5 MB maximum"
        return None
    if media != "application/pdf":
        return "source.media_type: Input should be 'application/pdf'"
    if not raw.startswith(b"%PDF-"):
        return "source: The PDF specified was not valid"
    return None


def validate_sources(body):
    """Every image and document block's source (validate_source), checked after
    the model's capabilities as the API does.  None or the message."""
    for i, m in enumerate((body or {}).get("messages") or []):
        c = m.get("content") if isinstance(m, dict) else None
        for j, blk in enumerate(c if isinstance(c, list) else []):
            if isinstance(blk, dict) and blk.get("type") in ("image", "document"):
                bad = validate_source(blk)
                if bad:
                    return "messages.%d.content.%d.%s" % (i, j, bad)
    return None


def validate_body(body):
    """Checks a parsed Messages request body as the API would.  Returns None, or
    an error message (the API answers 400 invalid_request_error)."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    extra = sorted(set(body) - BODY_FIELDS)
    if extra:
        return "%s: Extra inputs are not permitted" % extra[0]
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return "model: Field required"
    mt = body.get("max_tokens")
    if isinstance(mt, bool) or not isinstance(mt, int):
        return "max_tokens: Field required (an integer)"
    if mt < 1:
        return "max_tokens: must be at least 1"
    if "stream" in body and not isinstance(body["stream"], bool):
        return "stream: Input should be a valid boolean"
    if "temperature" in body:
        t = body["temperature"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
            return "temperature: Input should be a number between 0 and 1"
    th = body.get("thinking")
    if th is not None:
        if not isinstance(th, dict) or th.get("type") not in ("enabled", "disabled", "adaptive"):
            return "thinking: invalid"
        if th.get("type") == "adaptive" and set(th) - {"type", "display"}:
            return "thinking.adaptive.%s: Extra inputs are not permitted" % sorted(
                set(th) - {"type", "display"})[0]
        if th.get("type") == "enabled":
            bt = th.get("budget_tokens")
            if not isinstance(bt, int) or bt < 1024:
                return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
            if bt >= mt:
                return "`max_tokens` must be greater than `thinking.budget_tokens`"
    if "tools" in body:
        err = validate_tools(body["tools"])
        if err:
            return err
    oc = body.get("output_config")
    if isinstance(oc, dict) and oc.get("format") is not None:
        extra = sorted(set(oc) - {"effort", "format", "task_budget"})
        if extra:
            return "output_config.%s: Extra inputs are not permitted" % extra[0]
        err = validate_format(oc["format"])
        if err:
            return err
    cache_blocks = 0
    system = body.get("system")
    if system is not None:
        if isinstance(system, list):
            for i, blk in enumerate(system):
                if not isinstance(blk, dict) or blk.get("type") != "text" \
                        or not isinstance(blk.get("text"), str):
                    return "system.%d: Input should be a text block" % i
                if blk["text"] == "":
                    return "system: text content blocks must be non-empty"
                if "cache_control" in blk:
                    cache_blocks += 1
        elif not isinstance(system, str):
            return "system: Input should be a valid string or list of text blocks"
    msgs = body.get("messages")
    if not isinstance(msgs, list):
        return "messages: Field required"
    if not msgs:
        return "messages: at least one message is required"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            return "messages.%d: Input should be an object" % i
        extra = sorted(set(m) - {"role", "content"})
        if extra:
            return "messages.%d.%s: Extra inputs are not permitted" % (i, extra[0])
        role = m.get("role")
        if role not in ("user", "assistant"):
            return "messages.%d.role: Input should be 'user' or 'assistant'" % i
        want = "user" if i % 2 == 0 else "assistant"
        if role != want:
            return ("messages: roles must alternate between \"user\" and \"assistant\", "
                    "starting with \"user\" (messages.%d is %r)" % (i, role))
        c = m.get("content")
        last = i == len(msgs) - 1
        if isinstance(c, str):
            if c == "":
                return "messages.%d: text content blocks must be non-empty" % i
            if not c.strip() and not (last and role == "assistant"):
                return "messages.%d: text content blocks must contain non-whitespace text" % i
        elif isinstance(c, list):
            if not c:
                return "messages.%d.content: at least one content block is required" % i
            for j, blk in enumerate(c):
                if not isinstance(blk, dict) or blk.get("type") not in BLOCK_TYPES:
                    return "messages.%d.content.%d: unknown block type" % (i, j)
                if "cache_control" in blk:
                    cache_blocks += 1
                if blk["type"] == "text":
                    if not isinstance(blk.get("text"), str):
                        return "messages.%d.content.%d.text: Field required" % (i, j)
                    if blk["text"] == "":
                        return "messages.%d.content.%d: text content blocks must be non-empty" % (i, j)
                if blk["type"] == "thinking" and not isinstance(blk.get("signature"), str):
                    return "messages.%d.content.%d.signature: Field required" % (i, j)
            bad = check_blocks(msgs, i, c)
            if bad:
                return bad
        else:
            return "messages.%d.content: Input should be a string or a list of blocks" % i
        if last and role == "assistant":
            # The rule is about where the content ends: a last block that is
            # not text (a server tool use sent back to be continued) ends none.
            tail = c[-1] if isinstance(c, list) else None
            text = content_text(c if tail is None or tail.get("type") == "text" else [])
            if text != text.rstrip():
                return "messages: final assistant content cannot end with trailing whitespace"
    if cache_blocks > 4:
        return "A maximum of 4 blocks with cache_control may be provided. Found %d." % cache_blocks
    return None


class RecordedRequest:
    """One request the fake received (control requests are not recorded)."""

    def __init__(self, index, method, path, query, headers, raw, record_body):
        self.index = index
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers          # {lowercase name: value}
        self.time = time.time()
        self.mono = time.monotonic()
        self.raw_len = len(raw)
        self.body = None                # parsed JSON (None if not JSON or not kept)
        self.model = None
        self.max_tokens = None
        self.system = ""                # system prompt as text
        self.n_messages = 0
        self.roles = []
        self.user_texts = []
        self.last_user_text = ""
        self.stream = False
        self.valid = None               # None while unchecked, then True/False
        self.error = None               # validation error message
        self.behaviour = None           # the behaviour dict used
        self.kind = None                # its kind
        self.status = None              # HTTP status answered (None: none)
        self.request_id = None
        self.message_id = None
        self.reply_text = ""            # the whole reply this call would give
        self.text_sent = ""             # text of the text deltas actually sent
        self.deltas_sent = 0
        self.events_sent = []           # SSE event names sent
        self.bytes_sent = 0             # body bytes (not chunk framing)
        self.input_tokens = None
        self.output_tokens = None
        self.cache_creation_input_tokens = 0  # as reported (prompt caching rules)
        self.cache_read_input_tokens = 0
        self.held = False               # waiting in a hold now
        self.holds_reached = 0
        self.stalled = False            # in a stall now
        self.completed = False          # message_stop was sent
        self.closed_by_client = False   # the client went away before we were done
        self.trickled = 0               # bytes sent after message_stop (trickle_after_stop)
        self.done = False               # the handler finished with this request
        self.done_mono = None
        self._raw = raw
        try:
            parsed = json.loads(raw.decode("utf-8")) if raw else None
        except (ValueError, UnicodeDecodeError):
            parsed = None
        self._parsed = parsed
        if isinstance(parsed, dict):
            self.model = parsed.get("model")
            self.max_tokens = parsed.get("max_tokens")
            self.stream = parsed.get("stream") is True
            self.system = system_text(parsed.get("system"))
            msgs = parsed.get("messages") if isinstance(parsed.get("messages"), list) else []
            self.n_messages = len(msgs)
            self.roles = [m.get("role") if isinstance(m, dict) else None for m in msgs]
            self.user_texts = [content_text(m.get("content")) for m in msgs
                               if isinstance(m, dict) and m.get("role") == "user"]
            self.last_user_text = last_user_text(parsed)
            if record_body:
                self.body = parsed
        if not record_body:
            self._raw = b"" if parsed is not None else raw

    @property
    def messages(self):
        return (self.body or {}).get("messages") or []

    def texts(self):
        """[(role, text)] of every message (needs the body kept)."""
        return [(m.get("role"), content_text(m.get("content"))) for m in self.messages]

    def to_dict(self):
        d = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        if d["body"] is None and self._raw:
            d["raw"] = self._raw.decode("utf-8", "replace")
        return d

    def __repr__(self):
        return "<call #%d %s %s kind=%s status=%s last_user=%r>" % (
            self.index, self.method, self.path, self.kind, self.status,
            self.last_user_text[:40])


class _Dropped(Exception):
    """The exchange ended by dropping the connection."""


class _ClientGone(Exception):
    """The client closed the connection."""


class _Aborted(Exception):
    """The fake is stopping or was reset."""


class _Done(Exception):
    """The exchange ended early on purpose (error event sent)."""


class _Exchange:
    """Answers one API request according to one behaviour."""

    def __init__(self, fake, handler, rec, beh, body, abort):
        self.fake = fake
        self.h = handler
        self.sock = handler.connection
        self.rec = rec
        self.b = beh
        self.body = body or {}
        self.abort = abort
        self.seen_gen = fake._gen
        self.chunked = True
        self.nl = "\r\n" if beh.get("crlf") else "\n"
        self.tool_calls = []  # server tool calls made (server_tool_blocks)
        frag = beh.get("fragment")
        self.frag = frag
        self.rng = random.Random(beh.get("fragment_seed", 1234))
        self.frag_delay = beh.get("fragment_delay_ms", 1 if frag else 0) / 1000.0
        self.byte_limit = beh.get("disconnect_after_bytes")
        self.text_index = 0

    # --- low level ------------------------------------------------------------

    def peer_closed(self):
        try:
            # poll, not select: select() fails for a descriptor past 1023, which
            # with ~1,000 connections open took every newer client for gone.
            p = select.poll()
            p.register(self.sock, select.POLLIN)
            if not p.poll(0):
                return False
            d = self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True
        return d == b""

    def wait(self, seconds):
        """Sleeps, noticing a stop/reset and the client going away."""
        end = time.monotonic() + seconds
        while True:
            if self.abort.is_set():
                raise _Aborted()
            if self.peer_closed():
                self.rec.closed_by_client = True
                raise _ClientGone()
            rem = end - time.monotonic()
            if rem <= 0:
                return
            self.abort.wait(min(rem, 0.02))

    def raw(self, data):
        try:
            self.h.wfile.write(data)
            self.h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.rec.closed_by_client = True
            raise _ClientGone()
        except OSError:
            if self.abort.is_set():
                raise _Aborted()
            self.rec.closed_by_client = True
            raise _ClientGone()

    def piece(self, data):
        if self.abort.is_set():
            raise _Aborted()
        if self.chunked:
            self.raw(b"%x\r\n" % len(data) + data + b"\r\n")
        else:
            self.raw(data)
        self.rec.bytes_sent += len(data)

    def write(self, data):
        """Writes body bytes: fragmented, chunked, cut at disconnect_after_bytes."""
        cut = False
        if self.byte_limit is not None and self.rec.bytes_sent + len(data) >= self.byte_limit:
            data = data[:max(0, self.byte_limit - self.rec.bytes_sent)]
            cut = True
        if self.frag:
            pos = 0
            while pos < len(data):
                n = self.rng.randint(1, 7) if self.frag == "random" else int(self.frag)
                self.piece(data[pos:pos + n])
                pos += n
                if self.frag_delay:
                    self.wait(self.frag_delay)
        elif data:
            self.piece(data)
        if cut:
            self.drop()

    def end_body(self):
        if self.chunked:
            self.raw(b"0\r\n\r\n")

    def drop(self):
        """Closes the connection without finishing the response."""
        self.h.close_connection = True
        try:
            if self.b.get("disconnect_mode") == "rst":
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.sock.close()
            else:
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise _Dropped()

    def event(self, name, obj):
        data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False,
                                                           separators=(",", ":"))
        nl = self.nl
        self.write(("event: %s%sdata: %s%s%s" % (name, nl, data, nl, nl)).encode("utf-8"))
        self.rec.events_sent.append(name)

    def send_headers(self, status, headers, http10=False):
        self.rec.status = status
        if http10:
            lines = ["HTTP/1.0 %d %s" % (status, REASONS.get(status, "Status"))]
            lines += ["%s: %s" % kv for kv in headers]
            lines += ["Connection: close", "", ""]
            self.raw("\r\n".join(lines).encode("latin-1"))
            self.h.close_connection = True
            return
        self.h.send_response(status, REASONS.get(status))
        for k, v in headers:
            self.h.send_header(k, v)
        try:
            self.h.end_headers()
        except (BrokenPipeError, ConnectionResetError):
            self.rec.closed_by_client = True
            raise _ClientGone()

    # --- the exchange ------------------------------------------------------------

    def run(self):
        b, rec = self.b, self.rec
        try:
            if b.get("header_delay_ms"):
                self.wait(b["header_delay_ms"] / 1000.0)
            if b.get("drop"):
                self.drop()
            if b.get("status") not in (None, 200) or (b.get("status") == 200
                                                       and b.get("body") is not None):
                self.error_response()
            elif self.rec.path == "/v1/messages/count_tokens":
                self.fake._send_json(self.h, 200, {"input_tokens": estimate_input_tokens(self.body)},
                                     extra=[("request-id", rec.request_id)])
                rec.status = 200
            elif self.body.get("stream") is True:
                self.stream()
            else:
                self.nonstream()
        except (_Dropped, _ClientGone, _Aborted, _Done):
            self.h.close_connection = True
        finally:
            rec.held = False
            rec.stalled = False
            rec.done = True
            rec.done_mono = time.monotonic()

    def error_response(self):
        b, rec = self.b, self.rec
        st = int(b["status"])
        etype = b.get("error_type") or ERROR_TYPES.get(st, "api_error" if st >= 500
                                                       else "invalid_request_error")
        msg = b.get("error_message") or ERROR_MESSAGES.get(etype, "Error")
        body = b.get("body")
        if body is None:
            data = json.dumps({"type": "error", "error": {"type": etype, "message": msg},
                               "request_id": rec.request_id}).encode()
            ctype = "application/json"
        elif body == "html":
            data = HTML_413.encode()
            ctype = "text/html"
        else:
            data = body.encode() if isinstance(body, str) else bytes(body)
            ctype = b.get("content_type", "text/plain")
        headers = [("content-type", ctype), ("request-id", rec.request_id),
                   ("content-length", str(len(data)))]
        if b.get("retry_after") is not None:
            headers.append(("retry-after", str(b["retry_after"])))
        if b.get("retry_after_ms") is not None:
            headers.append(("retry-after-ms", str(b["retry_after_ms"])))
        if b.get("should_retry") is not None:
            headers.append(("x-should-retry", "true" if b["should_retry"] else "false"))
        headers += list((b.get("headers") or {}).items())
        if b.get("close"):
            headers.append(("connection", "close"))
            self.h.close_connection = True
        self.chunked = False
        self.send_headers(st, headers)
        self.raw(data)
        rec.bytes_sent = len(data)

    def reply_text(self):
        b = self.b
        if b.get("pieces") is not None:
            return "".join(b["pieces"])
        if b.get("huge") is not None:
            n = int(b["huge"])
            head = (b.get("text") or default_reply(self.body)) + "\n"
            lines = [head]
            size, i = len(head.encode()), 0
            while size < n:
                line = "%08d %s\n" % (i, "abcdefghijklmnopqrstuvwxyz0123456789" * 2)
                lines.append(line)
                size += len(line)
                i += 1
            text = "".join(lines)
            if not text.isascii():
                text = text.encode("utf-8")[:n].decode("utf-8", "ignore")
            return text[:n]
        if b.get("text") is not None:
            return b["text"]
        fmt = ((self.body or {}).get("output_config") or {}).get("format")
        if isinstance(fmt, dict):  # structured output: a document the schema takes
            return json.dumps(schema_instance(fmt.get("schema"), default_reply(self.body)),
                              ensure_ascii=False)
        return default_reply(self.body)

    def split(self, text):
        b = self.b
        if b.get("pieces") is not None:
            return list(b["pieces"])
        size = b.get("delta_size")
        if size is None and b.get("huge") is not None:
            size = 1000
        if size is None:
            n = max(1, int(b.get("deltas", 4)))
            size = max(1, -(-len(text) // n))
        return [text[i:i + size] for i in range(0, len(text), size)]

    def usage(self):
        rec, b = self.rec, self.b
        itok = b.get("input_tokens")
        self.cache_creation = self.cache_read = 0
        if itok is None and b.get("input_tokens_scale") is not None:
            itok = int(estimate_input_tokens(self.body) * float(b["input_tokens_scale"]))
        elif itok is None:
            itok = estimate_input_tokens(self.body)
            if b.get("cache", True):
                itok, self.cache_creation, self.cache_read = self.fake.prompt_cache.usage(
                    self.body, itok, int(b.get("cache_min_tokens", 1024)),
                    float(b.get("cache_ttl", 300)))
                rec.cache_creation_input_tokens = self.cache_creation
                rec.cache_read_input_tokens = self.cache_read
        otok = b.get("output_tokens")
        if otok is None:
            otok = len((rec.reply_text + (b.get("thinking") or "")).encode()) // 4 + 1
        rec.input_tokens, rec.output_tokens = itok, otok
        return itok, otok

    def stream_headers(self):
        rec, b = self.rec, self.b
        headers = [("content-type", "text/event-stream; charset=utf-8"),
                   ("cache-control", "no-cache"),
                   ("request-id", rec.request_id),
                   ("anthropic-organization-id", "00000000-0000-0000-0000-00000000fa6e")]
        headers += list((b.get("headers") or {}).items())
        if b.get("http10"):
            self.chunked = False
            self.send_headers(200, headers, http10=True)
        else:
            headers.append(("transfer-encoding", "chunked"))
            self.send_headers(200, headers)

    def checkpoint(self, k, n):
        b, rec = self.b, self.rec
        holds = b.get("hold_after")
        if holds is None:
            holds = []
        elif not isinstance(holds, (list, tuple)):
            holds = [holds]
        for h in holds:
            if min(int(h), n) == k:
                self.hold()
        if b.get("stall_after") is not None and min(int(b["stall_after"]), n) == k:
            rec.stalled = True
            self.wait(float(b.get("stall_seconds", 30.0)))
            rec.stalled = False
            if b.get("stall_then") == "close":
                self.drop()
        if b.get("inject_after") is not None and min(int(b["inject_after"]), n) == k:
            self.inject(b.get("inject") or "garbage")
        if b.get("error_after") is not None and min(int(b["error_after"]), n) == k:
            err = {"type": "error", "error": {"type": b.get("error_type") or "overloaded_error",
                                              "message": b.get("error_message") or "Overloaded"}}
            # The API spells this event with spaces after the colons (stream B).
            self.event("error", json.dumps(err, ensure_ascii=False))
            self.end_body()
            self.h.close_connection = True
            raise _Done()
        if b.get("disconnect_after") is not None and min(int(b["disconnect_after"]), n) == k:
            self.drop()

    def inject(self, what):
        """Writes a preset (see the module comment) or raw text into the body."""
        nl, idx = self.nl, self.text_index
        delta = '{"type":"content_block_delta","index":%d,"delta":{"type":"text_delta",' % idx
        presets = {
            "garbage": nl.join(["this line is no SSE field", "\x01\x02\x7f junk \ufffd",
                                "field-without-colon", ": a comment", "id: 7",
                                "retry: soon", "", ""]),
            "bad_json": "event: content_block_delta" + nl + "data: " + delta
                        + '"text":"cut off' + nl + nl,
            "not_json": "event: content_block_delta" + nl + "data: <html>oops</html>" + nl + nl,
            "bad_delta": "event: content_block_delta" + nl + "data: " + delta + '"text":42}}'
                         + nl + nl,
        }
        self.write(presets.get(what, what).encode("utf-8"))
        self.rec.events_sent.append("inject:" + (what if what in presets else "raw"))

    def hold(self):
        rec = self.rec
        rec.holds_reached += 1
        rec.held = True
        end = time.monotonic() + float(self.b.get("hold_timeout", 60))
        while self.fake._gen <= self.seen_gen and time.monotonic() < end:
            self.wait(0.02)
        self.seen_gen = self.fake._gen
        rec.held = False

    def stream(self):
        b, rec = self.b, self.rec
        self.stream_headers()
        if b.get("fixture"):
            with open(fixture_path(b["fixture"]), "rb") as f:
                data = f.read()
            if b.get("crlf"):
                data = re.sub(rb"(?<!\r)\n", b"\r\n", data)
            events = parse_sse(data)
            rec.reply_text = sse_text(events)
            self.write(data)
            rec.text_sent = rec.reply_text
            rec.events_sent = [e for e, _ in events]
            rec.completed = "message_stop" in rec.events_sent
            self.end_body()
            if b.get("http10"):
                self.h.close_connection = True
            return
        text = self.reply_text()
        rec.reply_text = text
        itok, otok = self.usage()
        model = b.get("model") or self.body.get("model")
        self.event("message_start", {"type": "message_start", "message": {
            "id": rec.message_id, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": itok,
                      "cache_creation_input_tokens": self.cache_creation,
                      "cache_read_input_tokens": self.cache_read, "output_tokens": 1}}})
        if b.get("first_delay_ms"):
            self.wait(b["first_delay_ms"] / 1000.0)
        idx = 0
        thinking = b.get("thinking")
        if thinking:
            self.event("content_block_start", {"type": "content_block_start", "index": 0,
                                               "content_block": {"type": "thinking", "thinking": "",
                                                                 "signature": ""}})
            half = max(1, len(thinking) // 2)
            for part in (thinking[:half], thinking[half:]):
                if part:
                    self.event("content_block_delta", {
                        "type": "content_block_delta", "index": 0,
                        "delta": {"type": "thinking_delta", "thinking": part}})
            self.event("content_block_delta", {
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "signature_delta",
                          "signature": b.get("signature") or "RmFrZVNpZ25hdHVyZUZvclRlc3Rz"}})
            self.event("content_block_stop", {"type": "content_block_stop", "index": 0})
            idx = 1
        for spec in b.get("blocks") or ():
            self.emit_block(idx, spec)
            idx += 1
        idx, cite = self.server_tool_blocks(idx)
        self.text_index = idx
        block = {"type": "text", "text": ""}
        if cite:
            block["citations"] = []
        self.event("content_block_start", {"type": "content_block_start", "index": idx,
                                           "content_block": block})
        if cite:
            self.event("content_block_delta", {"type": "content_block_delta", "index": idx,
                                               "delta": {"type": "citations_delta",
                                                         "citation": cite}})
        pieces = self.split(text)
        n = len(pieces)
        sent = []
        delay = (b.get("delay_ms") or 0) / 1000.0
        for i, p in enumerate(pieces):
            self.checkpoint(i, n)
            if delay:
                self.wait(delay)
            if b.get("ping") and i % 2 == 0:
                self.event("ping", '{"type": "ping"}')
            if b.get("stamp"):
                p = "@%d %s" % (time.monotonic_ns(), p)
            self.event("content_block_delta", {"type": "content_block_delta", "index": idx,
                                               "delta": {"type": "text_delta", "text": p}})
            rec.deltas_sent += 1
            if b.get("huge") is None:
                rec.text_sent += p
            else:  # += on an attribute copies: quadratic for a huge reply
                sent.append(p)
        if sent:
            rec.text_sent += "".join(sent)
        self.checkpoint(n, n)
        self.event("content_block_stop", {"type": "content_block_stop", "index": idx})
        for spec in b.get("blocks_after") or ():
            idx += 1
            self.emit_block(idx, spec)
        usage = {"output_tokens": otok}
        if b.get("usage_in_delta", True):
            usage = {"input_tokens": itok, "cache_creation_input_tokens": self.cache_creation,
                     "cache_read_input_tokens": self.cache_read, "output_tokens": otok}
        if self.tool_calls:
            usage["server_tool_use"] = {
                "web_search_requests": sum(c["name"] == "web_search" for c in self.tool_calls),
                "web_fetch_requests": sum(c["name"] == "web_fetch" for c in self.tool_calls)}
        self.event("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": b.get("stop_reason", "end_turn"),
                                               "stop_sequence": None},
                                     "usage": usage})
        self.event("message_stop", {"type": "message_stop"})
        rec.completed = True
        if b.get("trickle_after_stop"):
            self.trickle()
        self.end_body()

    def emit_block(self, idx, spec):
        """One block of the options "blocks" (before the reply's text) or
        "blocks_after", in the API's streaming form: thinking (thinking_delta,
        then signature_delta: fake_signature unless "signature" is given),
        redacted_thinking (whole at its start), tool_use and server_tool_use
        (input in input_json_delta pieces), text (citations_delta before its
        text_delta), anything else whole at its start (a "_delta" key of the
        spec is sent as one delta of that form, a type the client may not know;
        "_hold" holds a tool use after its first piece, as hold_after does)."""
        spec = dict(spec)
        t = spec["type"]
        extra = spec.pop("_delta", None)
        hold = spec.pop("_hold", False)  # held after its first delta (fake.release())

        def delta(d):
            self.event("content_block_delta", {"type": "content_block_delta", "index": idx,
                                               "delta": d})
        if t == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
        elif t in ("tool_use", "server_tool_use"):
            start = dict(spec, input={})
        elif t == "text":
            start = {"type": "text", "text": ""}
        else:
            start = spec
        self.event("content_block_start", {"type": "content_block_start", "index": idx,
                                           "content_block": start})
        if t == "thinking":
            th = spec["thinking"]
            half = max(1, len(th) // 2)
            for part in (th[:half], th[half:]):
                if part:
                    delta({"type": "thinking_delta", "thinking": part})
            delta({"type": "signature_delta",
                   "signature": spec.get("signature", fake_signature(th))})
        elif t in ("tool_use", "server_tool_use"):
            js = json.dumps(spec.get("input", {}))
            third = max(1, len(js) // 3)
            for k in range(0, len(js), third):
                delta({"type": "input_json_delta", "partial_json": js[k:k + third]})
                if hold and k == 0:
                    self.hold()
        elif t == "text":
            for c in spec.get("citations", ()):
                delta({"type": "citations_delta", "citation": c})
            delta({"type": "text_delta", "text": spec["text"]})
        if extra is not None:
            delta(extra)
        self.event("content_block_stop", {"type": "content_block_stop", "index": idx})

    def server_tool_blocks(self, idx):
        """With server tools in the request, before the reply's text block: a
        short text block, then each call's server_tool_use block (its input
        streamed as input_json_delta) and its result block (whole in
        content_block_start, as the API sends it).  Returns the next index and
        the citation the reply's text block carries (None: none)."""
        self.tool_calls = server_tool_calls(self.body)
        if not self.tool_calls:
            return idx, None
        rec, lead = self.rec, "Let me look that up. "
        self.event("content_block_start", {"type": "content_block_start", "index": idx,
                                           "content_block": {"type": "text", "text": ""}})
        self.event("content_block_delta", {"type": "content_block_delta", "index": idx,
                                           "delta": {"type": "text_delta", "text": lead}})
        self.event("content_block_stop", {"type": "content_block_stop", "index": idx})
        rec.text_sent += lead
        rec.reply_text = lead + rec.reply_text
        idx += 1
        cite = None
        for c in self.tool_calls:
            self.event("content_block_start", {"type": "content_block_start", "index": idx,
                                               "content_block": {"type": "server_tool_use",
                                                                 "id": c["id"], "name": c["name"],
                                                                 "input": {}}})
            js = json.dumps(c["input"], ensure_ascii=False)
            for part in ("", js[:len(js) // 2], js[len(js) // 2:]):
                self.event("content_block_delta", {"type": "content_block_delta", "index": idx,
                                                   "delta": {"type": "input_json_delta",
                                                             "partial_json": part}})
            self.event("content_block_stop", {"type": "content_block_stop", "index": idx})
            idx += 1
            self.event("content_block_start", {"type": "content_block_start", "index": idx,
                                               "content_block": c["result"]})
            self.event("content_block_stop", {"type": "content_block_stop", "index": idx})
            idx += 1
            cite = cite or c.get("citation")
        return idx, cite

    def trickle(self):
        """Bytes after message_stop until the client closes (or the limits)."""
        b, rec = self.b, self.rec
        n = max(1, int(b.get("trickle_bytes", 1)))
        gap = b.get("trickle_ms", 100) / 1000.0
        total = b.get("trickle_total", 64 << 20)
        end = time.monotonic() + b.get("trickle_seconds", 60.0)
        data = b":" * (n - 1) + b"\n"
        while rec.trickled < total and time.monotonic() < end:
            self.piece(data)  # _ClientGone once the client has closed
            rec.trickled += n
            if gap:
                self.wait(gap)
            elif self.peer_closed():
                rec.closed_by_client = True
                raise _ClientGone()

    def nonstream(self):
        b, rec = self.b, self.rec
        text = self.reply_text()
        rec.reply_text = text
        itok, otok = self.usage()
        content = []
        if b.get("thinking"):
            content.append({"type": "thinking", "thinking": b["thinking"],
                            "signature": b.get("signature") or "RmFrZVNpZ25hdHVyZUZvclRlc3Rz"})
        content.append({"type": "text", "text": text})
        msg = {"id": rec.message_id, "type": "message", "role": "assistant",
               "model": b.get("model") or self.body.get("model"), "content": content,
               "stop_reason": b.get("stop_reason", "end_turn"), "stop_sequence": None,
               "usage": {"input_tokens": itok, "cache_creation_input_tokens": self.cache_creation,
                         "cache_read_input_tokens": self.cache_read, "output_tokens": otok}}
        data = json.dumps(msg, ensure_ascii=False).encode("utf-8")
        self.chunked = False
        self.send_headers(200, [("content-type", "application/json"),
                                ("request-id", rec.request_id),
                                ("content-length", str(len(data)))])
        self.raw(data)
        rec.bytes_sent = len(data)
        rec.text_sent = text
        rec.completed = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # 1,000 clients connecting at once (bench/run's concurrent section) overflow
    # a short accept queue while the accepting thread waits for the GIL; a
    # dropped SYN is retried after 1, 3, 7 s... and then passes a 10 s
    # connect timeout.
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        # A client resetting a kept-alive connection (the daemon abandoning a
        # stream it found malformed) is not the fake's error: no traceback.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError,
                                          ConnectionAbortedError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-anthropic/1.0"
    sys_version = ""
    timeout = 120  # an idle keep-alive connection is closed after this

    def version_string(self):
        return self.server_version

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.server.fake._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        self.server.fake._track(self.connection, False)

    def log_message(self, fmt, *args):
        if self.server.fake.verbose:
            sys.stderr.write("fake-anthropic: %s - %s\n" % (self.address_string(), fmt % args))

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _read_body(self):
        te = (self.headers.get("transfer-encoding") or "").lower()
        if "chunked" in te:
            parts = []
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(16)
            return b"".join(parts)
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _dispatch(self):
        fake = self.server.fake
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        path = urlsplit(self.path).path
        try:
            if path.startswith("/_control/"):
                fake._control(self, path, body)
            else:
                fake._api(self, path, body)
        except (_Dropped, _ClientGone, _Aborted, _Done, BrokenPipeError,
                ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True


class FakeAnthropic:
    """The fake server, controlled in-process.  See the module comment."""

    def __init__(self, host="127.0.0.1", port=0, api_key=DEFAULT_KEY, auth_token=None,
                 record_bodies=True, verbose=False):
        self.host = host
        self.port = port
        self.api_key = api_key          # None: any x-api-key is accepted
        self.auth_token = auth_token    # None: any bearer token is accepted
        self.record_bodies = record_bodies
        self.verbose = verbose
        self._lock = threading.Lock()
        self._records = []
        self._queue = []
        self._summary_queue = []
        self._default = make_behaviour("normal")
        self._counts = {}
        self._abort = threading.Event()
        self._gen = 0
        self._seq = 0
        self._conns = set()
        self.prompt_cache = PromptCache()
        self.models = [dict(m) for m in DEFAULT_MODELS]   # newest first
        self.models_page_max = 1000     # the API's largest page
        self.models_status = 200        # else the Models API answers this error status
        self._server = None
        self._thread = None

    # --- life cycle -------------------------------------------------------------

    def start(self):
        self._server = _Server((self.host, self.port), _Handler)
        self._server.fake = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="fake-anthropic", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is None:
            return
        self._abort.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def base_url(self):
        return "http://%s:%d" % (self.host, self.port)

    # --- control -------------------------------------------------------------------

    def script(self, kind="normal", times=1, **params):
        """Queues a behaviour for the next `times` calls (after those queued)."""
        b = make_behaviour(kind, **params)
        with self._lock:
            self._queue.extend(dict(b) for _ in range(times))

    def script_many(self, *behaviours):
        """Queues several behaviours (kind names or dicts), one per call."""
        bs = [make_behaviour(b) for b in behaviours]
        with self._lock:
            self._queue.extend(bs)

    def set_default(self, kind="normal", **params):
        """The behaviour of every call once the queue is empty."""
        b = make_behaviour(kind, **params)
        with self._lock:
            self._default = b

    def pending(self):
        """Behaviours still queued."""
        with self._lock:
            return len(self._queue)

    def release(self):
        """Lets every call that has arrived (and is, or will be, at a hold) go on
        past its next hold."""
        with self._lock:
            self._gen += 1

    def reset(self):
        """Forgets requests, counts, queue and default; aborts calls in flight."""
        with self._lock:
            self._abort.set()
            self._abort = threading.Event()
            self._records = []
            self._queue = []
            self._summary_queue = []
            self._counts = {}
            self._default = make_behaviour("normal")
            self.prompt_cache = PromptCache()

    def add_model(self, mid, name=None, created="2026-01-01T00:00:00Z", **kw):
        """Serves one more model (newest first by created); kw as model_info()."""
        with self._lock:
            self.models = [m for m in self.models if m["id"] != mid]
            self.models.append(model_info(mid, name or mid, created, **kw))
            self.models.sort(key=lambda m: m["created_at"], reverse=True)

    def remove_model(self, mid):
        with self._lock:
            self.models = [m for m in self.models if m["id"] != mid]

    def model(self, mid):
        with self._lock:
            return next((m for m in self.models if m["id"] == mid), None)

    @property
    def models_requests(self):
        """Recorded GET /v1/models and /v1/models/{id} requests."""
        with self._lock:
            return [r for r in self._records
                    if r.path == "/v1/models" or r.path.startswith("/v1/models/")]

    @property
    def requests(self):
        """Every recorded request (not control requests), oldest first."""
        with self._lock:
            return list(self._records)

    @property
    def calls(self):
        """Recorded POST /v1/messages requests, oldest first."""
        with self._lock:
            return [r for r in self._records if r.method == "POST" and r.path == "/v1/messages"]

    @property
    def invalid(self):
        """Recorded requests that failed validation."""
        with self._lock:
            return [r for r in self._records if r.valid is False]

    @property
    def counts(self):
        """{kind: number of calls answered with that behaviour}."""
        with self._lock:
            return dict(self._counts)

    def wait_until(self, pred, timeout=10.0, what=None):
        """Polls pred() until it is true; returns its value or raises AssertionError."""
        end = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.monotonic() > end:
                raise AssertionError("fake: timed out after %.1fs waiting for %s; calls: %r"
                                     % (timeout, what or pred, self.calls))
            time.sleep(0.01)

    def wait_calls(self, n, timeout=10.0, done=False):
        """Waits until at least n calls arrived (and, with done, were answered)."""
        def ok():
            cs = self.calls
            if len(cs) < n:
                return None
            if done and not all(c.done for c in cs[:n]):
                return None
            return cs
        return self.wait_until(ok, timeout, "%d call(s)%s" % (n, " done" if done else ""))

    def wait_held(self, index=-1, timeout=10.0):
        """Waits until call `index` is waiting in a hold; returns it."""
        def ok():
            cs = self.calls
            try:
                c = cs[index]
            except IndexError:
                return None
            return c if c.held else None
        return self.wait_until(ok, timeout, "call %d to reach a hold" % index)

    # --- internals -------------------------------------------------------------------

    def _track(self, conn, add):
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def summary_script(self, kind="normal", times=1, **params):
        """Queues a behaviour for the next `times` summary calls of mcpfs
        (SUMMARY_ASK); other calls do not take from this queue."""
        b = make_behaviour(kind, **params)
        with self._lock:
            self._summary_queue.extend(dict(b) for _ in range(times))

    def _next_behaviour(self, body=None):
        with self._lock:
            if self._summary_queue and SUMMARY_ASK.search(last_user_text(body)):
                b = self._summary_queue.pop(0)
                self._counts[b["kind"]] = self._counts.get(b["kind"], 0) + 1
                return b
            b = self._queue.pop(0) if self._queue else dict(self._default)
            self._counts[b["kind"]] = self._counts.get(b["kind"], 0) + 1
            return b

    def _send_json(self, h, status, obj, extra=()):
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        h.send_response(status, REASONS.get(status))
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        for k, v in extra:
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _send_error(self, h, rec, status, etype, message):
        rec.status = status
        self._send_json(h, status, {"type": "error", "error": {"type": etype, "message": message},
                                    "request_id": rec.request_id},
                        extra=[("request-id", rec.request_id)])

    def _check_request(self, h, raw):
        """Returns (status, type, message) of a validation failure, or None, and the body."""
        hd = h.headers
        key = hd.get("x-api-key")
        auth = hd.get("authorization")
        bearer = None
        if auth is not None:
            m = re.match(r"(?i)bearer\s+(\S+)\s*$", auth)
            bearer = m.group(1) if m else None
        if key is None and bearer is None:
            return (401, "authentication_error", "x-api-key header is required"), None
        key_ok = key is not None and (self.api_key is None or key == self.api_key)
        bearer_ok = bearer is not None and (self.auth_token is None or bearer == self.auth_token)
        if not (key_ok or bearer_ok):
            return (401, "authentication_error", "invalid x-api-key"), None
        ver = hd.get("anthropic-version")
        if ver is None:
            return (400, "invalid_request_error", "anthropic-version: header is required"), None
        if ver != API_VERSION:
            return (400, "invalid_request_error",
                    "anthropic-version: invalid version %r" % ver), None
        ctype = (hd.get("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return (400, "invalid_request_error",
                    "content-type must be application/json, not %r" % hd.get("content-type")), None
        try:
            body = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            return (400, "invalid_request_error", "request body is not valid JSON: %s" % e), None
        if h.path.split("?")[0] == "/v1/messages/count_tokens" and isinstance(body, dict):
            probe = dict(body)
            probe.setdefault("max_tokens", 1)
            err = validate_body(probe)
        else:
            err = validate_body(body)
        if err:
            return (400, "invalid_request_error", err), body
        mid = body.get("model") if isinstance(body, dict) else None
        info = self.model(mid) if isinstance(mid, str) else None
        if isinstance(mid, str) and (info is None or info["lifecycle"] == "retired"):
            return (404, "not_found_error", "model: %s" % mid), body
        err = validate_for_model(body, info) or validate_sources(body)
        if err:
            return (400, "invalid_request_error", err), body
        return None, body

    def _check_get(self, h):
        """The headers of a GET of the Models API: (status, type, message) or None."""
        hd = h.headers
        key = hd.get("x-api-key")
        auth = hd.get("authorization")
        m = re.match(r"(?i)bearer\s+(\S+)\s*$", auth or "")
        bearer = m.group(1) if m else None
        key_ok = key is not None and (self.api_key is None or key == self.api_key)
        bearer_ok = bearer is not None and (self.auth_token is None or bearer == self.auth_token)
        if key is None and bearer is None:
            return 401, "authentication_error", "x-api-key header is required"
        if not (key_ok or bearer_ok):
            return 401, "authentication_error", "invalid x-api-key"
        if hd.get("anthropic-version") != API_VERSION:
            return 400, "invalid_request_error", "anthropic-version: header is required"
        return None

    def _models_page(self, query):
        """GET /v1/models: after_id/before_id/limit as the API pages them."""
        from urllib.parse import parse_qs
        q = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        try:
            limit = int(q.get("limit", "20"))
        except ValueError:
            return 400, {"type": "error", "error": {"type": "invalid_request_error",
                                                    "message": "limit: Input should be a valid integer"}}
        if not 1 <= limit <= 1000:
            return 400, {"type": "error", "error": {"type": "invalid_request_error",
                                                    "message": "limit: must be between 1 and 1000"}}
        limit = min(limit, self.models_page_max)
        with self._lock:
            ids = [m["id"] for m in self.models]
            infos = [public_info(m) for m in self.models]
        start, end = 0, len(ids)
        if "after_id" in q:
            if q["after_id"] not in ids:
                return 400, {"type": "error", "error": {"type": "invalid_request_error",
                                                        "message": "after_id: unknown id"}}
            start = ids.index(q["after_id"]) + 1
            page = infos[start:start + limit]
            more = start + limit < len(ids)
        elif "before_id" in q:
            if q["before_id"] not in ids:
                return 400, {"type": "error", "error": {"type": "invalid_request_error",
                                                        "message": "before_id: unknown id"}}
            end = ids.index(q["before_id"])
            page = infos[max(0, end - limit):end]
            more = end - limit > 0
        else:
            page = infos[:limit]
            more = limit < len(ids)
        return 200, {"data": page, "has_more": more,
                     "first_id": page[0]["id"] if page else None,
                     "last_id": page[-1]["id"] if page else None}

    def _api(self, h, path, raw):
        split = urlsplit(h.path)
        headers = {}
        for k, v in h.headers.items():
            k = k.lower()
            headers[k] = headers[k] + ", " + v if k in headers else v
        with self._lock:
            self._seq += 1
            rec = RecordedRequest(self._seq, h.command, path, split.query, headers, raw,
                                  self.record_bodies)
            rec.request_id = "req_fake%016d" % self._seq
            rec.message_id = "msg_fake%016d" % self._seq
            self._records.append(rec)
            abort = self._abort
        if path in ("/v1/messages", "/v1/messages/count_tokens") and h.command == "POST":
            bad, body = self._check_request(h, raw)
            if bad:
                rec.valid = False
                rec.error = bad[2]
                self._send_error(h, rec, *bad)
                rec.done = True
                return
            rec.valid = True
            beh = self._next_behaviour(body)
            rec.behaviour = beh
            rec.kind = beh["kind"]
            _Exchange(self, h, rec, beh, body, abort).run()
            return
        if (path == "/v1/models" or path.startswith("/v1/models/")) and h.command == "GET":
            bad = self._check_get(h)
            if not bad and self.models_status != 200:
                bad = (self.models_status, ERROR_TYPES.get(self.models_status, "api_error"),
                       ERROR_MESSAGES.get(ERROR_TYPES.get(self.models_status, "api_error"),
                                          "error"))
            if bad:
                rec.valid = False
                rec.error = bad[2]
                self._send_error(h, rec, *bad)
            elif path == "/v1/models":
                status, obj = self._models_page(split.query)
                rec.valid = status == 200
                rec.status = status
                self._send_json(h, status, obj, extra=[("request-id", rec.request_id)])
            else:
                from urllib.parse import unquote
                mid = unquote(path[len("/v1/models/"):])
                info = self.model(mid)
                if info is None:
                    rec.valid = True  # asking is well-formed: the answer is "no such model"
                    rec.error = "model: %s" % mid
                    self._send_error(h, rec, 404, "not_found_error", rec.error)
                else:
                    rec.valid = True
                    rec.status = 200
                    self._send_json(h, 200, public_info(info),
                                    extra=[("request-id", rec.request_id)])
            rec.done = True
            return
        rec.valid = False
        rec.error = "no route %s %s" % (h.command, path)
        self._send_error(h, rec, 404, "not_found_error", rec.error)
        rec.done = True

    def _control(self, h, path, raw):
        try:
            data = json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            return self._send_json(h, 400, {"error": "body is not JSON"})
        try:
            if path == "/_control/script" and h.command == "POST":
                if isinstance(data, dict) and "behaviours" in data:
                    bs, times = data["behaviours"], int(data.get("times", 1))
                elif isinstance(data, list):
                    bs, times = data, 1
                else:
                    bs, times = [data or {}], int((data or {}).pop("times", 1))
                made = [make_behaviour(b) for b in bs] * times
                with self._lock:
                    self._queue.extend(dict(b) for b in made)
                return self._send_json(h, 200, {"queued": len(made)})
            if path == "/_control/default" and h.command == "POST":
                self.set_default(data or {})
                return self._send_json(h, 200, {"ok": True})
            if path == "/_control/models" and h.command == "POST":
                d = dict(data or {})
                self.add_model(d.pop("id"), d.pop("name", None),
                               d.pop("created", "2026-01-01T00:00:00Z"), **d)
                return self._send_json(h, 200, {"ok": True})
            if path == "/_control/reset" and h.command == "POST":
                self.reset()
                return self._send_json(h, 200, {"ok": True})
            if path == "/_control/release" and h.command == "POST":
                self.release()
                return self._send_json(h, 200, {"ok": True})
            if path == "/_control/requests" and h.command == "GET":
                return self._send_json(h, 200, {"requests": [r.to_dict() for r in self.requests]})
            if path == "/_control/counts" and h.command == "GET":
                return self._send_json(h, 200, {"counts": self.counts, "calls": len(self.calls)})
            if path == "/_control/health" and h.command == "GET":
                return self._send_json(h, 200, {"ok": True, "base_url": self.base_url})
        except (ValueError, TypeError) as e:
            return self._send_json(h, 400, {"error": str(e)})
        return self._send_json(h, 404, {"error": "no control route %s %s" % (h.command, path)})


class FakeControl:
    """Controls a fake running as a separate process, over its HTTP control API."""

    def __init__(self, base_url, timeout=10):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method, path, obj=None):
        data = None if obj is None else json.dumps(obj).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout) as r:
            return json.loads(r.read().decode())

    def script(self, kind="normal", times=1, **params):
        return self._call("POST", "/_control/script",
                          {"behaviours": [make_behaviour(kind, **params)], "times": times})

    def script_many(self, *behaviours):
        return self._call("POST", "/_control/script",
                          {"behaviours": [make_behaviour(b) for b in behaviours]})

    def set_default(self, kind="normal", **params):
        return self._call("POST", "/_control/default", make_behaviour(kind, **params))

    def reset(self):
        return self._call("POST", "/_control/reset", {})

    def release(self):
        return self._call("POST", "/_control/release", {})

    def requests(self):
        return self._call("GET", "/_control/requests")["requests"]

    def calls(self):
        return [r for r in self.requests() if r["method"] == "POST" and r["path"] == "/v1/messages"]

    def counts(self):
        return self._call("GET", "/_control/counts")["counts"]

    def health(self):
        return self._call("GET", "/_control/health")


def main(argv=None):
    ap = argparse.ArgumentParser(description="fake Anthropic Messages API for mcpfs tests")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the port here once listening")
    ap.add_argument("--api-key", default=DEFAULT_KEY,
                    help="the x-api-key accepted ('' accepts any)")
    ap.add_argument("--auth-token", default="", help="the bearer token accepted ('' accepts any)")
    ap.add_argument("--default", help="default behaviour as JSON, e.g. '{\"kind\":\"slow\"}'")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    fake = FakeAnthropic(args.host, args.port, api_key=args.api_key or None,
                         auth_token=args.auth_token or None, verbose=args.verbose)
    if args.default:
        fake.set_default(json.loads(args.default))
    fake.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % fake.port)
        os.replace(tmp, args.port_file)
    print("fake-anthropic listening on %s" % fake.base_url, file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        pass
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
