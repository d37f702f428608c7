#!/usr/bin/env python3
"""Writes the hand-made seeds of tests/fuzz/corpus/<target>/ (files named seed-*).

Each fuzz target reads its input in its own layout (see the comment at the top
of fuzz_<target>.c); the seeds put typical and edge-case inputs in that layout.
Inputs that libFuzzer found (files named by their SHA-1) sit beside them and are
kept by `scripts/fuzz --merge`.  The output is deterministic: rerunning this
changes nothing unless the seeds below changed.
"""
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def fixture(*path):
    with open(os.path.join(FIXTURES, *path), "rb") as f:
        return f.read()


# --- sse: config byte (cuts | cap << 3 | stop_at << 5), cut bytes, body ---------

CAP16, CAP64, CAP1K, BIG = 0, 1, 2, 3


def sse(cuts=(), cap=BIG, stop_at=0):
    return bytes([len(cuts) | cap << 3 | stop_at << 5, *cuts])


def cut_at(body, *positions):
    """Cut bytes that put fragment boundaries at these offsets of body."""
    n = len(body)
    return tuple(-(-p * 255 // n) for p in positions)


SSE_CASES = {
    "lf": b"event: e\ndata: x\n\n",
    "crlf": b"event: e\r\ndata: x\r\n\r\n",
    "cr": b"event: e\rdata: x\r\r",
    "mixed-ends": b"data: a\r\ndata: b\rdata: c\n\r\n",
    "comments": b": hello\nevent: e\n: mid\ndata: x\n\n: tail\n\n:\n\n",
    "multi-data": b"data: a\ndata:\ndata: b\n\n",
    "no-space": b"event:e\ndata:x\n\n",
    "two-spaces": b"data:  x \n\n",
    "field-no-colon": b"data\n\nevent\ndata\n\n",
    "unknown-fields": b"id: 1\nretry: 5\nfoo: bar\nDATA: no\ndata: x\n\n",
    "no-data": b"event: e\n\n\ndata: x\n\n",
    "incomplete": b"data: a\n\nevent: e\ndata: b",
    "nul": b"data: a\0b\n\n",
    "utf8": "data: {\"text\":\" \U0001F338 \u2028\"}\n\n".encode(),
    "blank-lines": b"\n\r\n\r\r\n",
}


RECORDED_SSE = ("py-basic-response", "py-refusal-response", "py-fable-stream-a-refusal",
                "py-server-tool-result-response", "go-cassette-next-streaming-0",
                "go-inline-error-malformed")


def recorded_events():
    """One event of each kind in tests/fixtures/recorded: (kind, event, data)."""
    seen = {}
    for fn in sorted(os.listdir(os.path.join(FIXTURES, "recorded"))):
        if not fn.endswith(".sse"):
            continue
        event = b"message"
        for line in fixture("recorded", fn).replace(b"\r", b"").split(b"\n"):
            if line.startswith(b"event: "):
                event = line[7:]
            elif line.startswith(b"data: "):
                kind = re.findall(rb'"type": ?"([a-z_]+)"', line)[:2]
                key = event + b"-" + b"-".join(kind[1:] or kind)
                seen.setdefault(key.decode(), (event, line[6:]))
    return seen


def seeds_sse():
    for name in ("stream_A", "stream_B", "stream_C"):
        s = fixture("sse", name + ".sse")
        write("sse", name + "-whole", sse() + s)
        write("sse", name + "-cuts", sse((40, 128, 200)) + s)
        write("sse", name + "-crlf", sse((10, 250)) + s.replace(b"\n", b"\r\n"))
        write("sse", name + "-cr", sse((127,)) + s.replace(b"\n", b"\r"))
        write("sse", name + "-cap1k-stop", sse((77,), CAP1K, 3) + s)
    for name, body in SSE_CASES.items():
        write("sse", name, sse((1, 100, 254)) + body)
    write("sse", "cap16-over", sse((5,), CAP16) + b"data: a\n\ndata: 0123456789abcdef\n\n")
    write("sse", "cap16-at", sse((), CAP16) + b"event: abcdefgh\ndata: 12\n\n")
    write("sse", "cap64-comment", sse((), CAP64) + b":" + b"c" * 70 + b"\n\ndata: x\n\n")
    crlf = b"data: a\r\ndata: b\n\n"
    write("sse", "crlf-split", sse(cut_at(crlf, 8)) + crlf)
    utf8 = "data: \u00e9\U0001F338\n\n".encode()
    write("sse", "utf8-split", sse(cut_at(utf8, 7, 9, 11)) + utf8)
    # recorded API streams (tests/fixtures/recorded): a last event without its
    # blank line, padded JSON, thinking and server tools, a malformed error
    for name in RECORDED_SSE:
        s = fixture("recorded", name + ".sse")
        write("sse", "rec-" + name, sse((33, 200)) + s)
        write("sse", "rec-" + name + "-crlf", sse((90,)) + s.replace(b"\n", b"\r\n"))
    # the writer reads the raw input as "name NUL data"
    write("sse", "writer", sse() + b"ping\0line 1\nline 2\n")
    write("sse", "writer-cr", sse() + b"ev\0a\rb")


# --- wire: "NAME LF JSON"; error: status(2) body; request: header + pieces -------


def seeds_wire():
    n = 0
    for name in ("stream_A", "stream_B", "stream_C"):
        event = None
        for line in fixture("sse", name + ".sse").split(b"\n"):
            if line.startswith(b"event: "):
                event = line[7:]
            elif line.startswith(b"data: "):
                write("wire", "%s-%02d" % (name, n), event + b"\n" + line[6:])
                n += 1
    events = {
        "thinking-start": ("content_block_start",
                           '{"type":"content_block_start","index":0,'
                           '"content_block":{"type":"thinking","thinking":""}}'),
        "thinking-delta": ("content_block_delta",
                           '{"type":"content_block_delta","index":0,'
                           '"delta":{"type":"thinking_delta","thinking":"Let me think"}}'),
        "signature": ("content_block_delta",
                      '{"type":"content_block_delta","index":0,'
                      '"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM"}}'),
        "tool-use": ("content_block_start",
                     '{"type":"content_block_start","index":1,"content_block":'
                     '{"type":"tool_use","id":"toolu_01","name":"f","input":{}}}'),
        "json-delta": ("content_block_delta",
                       '{"type":"content_block_delta","index":1,'
                       '"delta":{"type":"input_json_delta","partial_json":"{\\"a\\":"}}'),
        "redacted": ("content_block_start",
                     '{"type":"content_block_start","index":0,"content_block":'
                     '{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix"}}'),
        "citations-delta": ("content_block_delta",
                            '{"type":"content_block_delta","index":2,"delta":{"type":'
                            '"citations_delta","citation":{"type":"web_search_result_location",'
                            '"cited_text":"x","title":"T","url":"https://u.example/"}}}'),
        "unknown-block-nul": ("content_block_start",
                              '{"type":"content_block_start","index":3,"content_block":'
                              '{"type":"mystery","note":"a\\u0000b"}}'),
        "usage-null": ("message_delta",
                       '{"type":"message_delta","delta":{"stop_reason":"max_tokens",'
                       '"stop_sequence":null},"usage":{"output_tokens":4096,'
                       '"input_tokens":null,"cache_read_input_tokens":9007199254740992}}'),
        "error": ("error", '{"type":"error","error":{"type":"overloaded_error",'
                  '"message":"Overloaded"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}'),
        "unknown": ("future_event", '{"type":"future_event","x":[1,2,3]}'),
        "type-by-name": ("ping", "{}"),
        "type-not-string": ("ping", '{"type":7}'),
        "not-object": ("message_stop", "[1,2]"),
        "index-big": ("content_block_stop", '{"type":"content_block_stop","index":2147483648}'),
        "escapes": ("content_block_delta",
                    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
                    '"text":"\\u00e9\\ud83c\\udf38\\u2028\\n\\t\\"\\\\ \\ud800"}}'),
        "nul-spaced": ("content_block_delta",
                       '{ "type": "content_block_delta", "index": 0, "delta": '
                       '{"text": "a\\u0000b\\\\u0000", "type": "text_delta"} }'),
        "long-id": ("message_start", '{"type":"message_start","message":{"id":"' + "m" * 130
                    + '","model":"claude","usage":{"input_tokens":1.5}}}'),
    }
    # The text_delta fast path (wire_delta.c): its exact form, and forms one
    # byte away from it that must go to cJSON and come out the same.
    fast = {
        "plain": '"Hello, world"',
        "escapes": '"a\\n\\t\\"q\\" \\\\ \\/ \\b\\f\\r"',
        "u-escapes": '"\\u00e9\\u20AC\\ud83d\\ude00 \\uFFFF"',
        "u0000": '"a\\u0000b"',
        "lone-high": '"\\ud83dx"',
        "lone-low": '"\\ude00"',
        "bad-hex": '"\\u12g4"',
        "raw-utf8": '"\u00e9\u6f22\U0001F600"',
        "bad-utf8": b'"\xc3\x28"',
        "control": '"a\tb"',
        "empty": '""',
    }
    for name, text in fast.items():
        head = b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":'
        if isinstance(text, str):
            text = text.encode()
        write("wire", "fast-" + name, b"content_block_delta\n" + head + text + b"}}")
    write("wire", "fast-index-zero-lead", '{"type":"content_block_delta","index":01,"delta":'
          '{"type":"text_delta","text":"x"}}')
    write("wire", "fast-trailing", '{"type":"content_block_delta","index":3,"delta":'
          '{"type":"text_delta","text":"x"}} ')
    write("wire", "fast-spaces", '{"type": "content_block_delta", "index": 0, "delta": '
          '{"type": "text_delta", "text": "x"}}')
    for name, (event, data) in events.items():
        write("wire", "event-" + name, event + "\n" + data)
    for kind, (event, data) in recorded_events().items():
        write("wire", "rec-" + kind.replace("_", "-"), event + b"\n" + data)

    def status(code):
        return struct.pack(">h", code)

    write("wire", "http-429", status(429) + b'{"type":"error","error":{"type":"rate_limit_error",'
          b'"message":"Number of request tokens has exceeded your per-minute rate limit"},'
          b'"request_id":"req_018EeWyXxfu5pfWkrYcMdjWG"}')
    write("wire", "http-413-html", status(413) + b"<html>\r\n<head><title>413 Request Entity Too"
          b" Large</title></head>\r\n<body>\r\n<center><h1>413</h1></center>\r\n"
          b"<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n" + b"x" * 600)
    write("wire", "http-500-binary", status(500) + b"\x00\x01\xff\xfe\xc3\xa9\xe2\x98\x83\xf0")
    write("wire", "http-400-no-message", status(400) + b'{"error":{"type":"invalid_request_error"}}')

    def request(flags, roles, marks, temp, max_tokens, thinking, pieces):
        head = bytes([flags, roles, marks]) + struct.pack(">d", temp)
        head += struct.pack(">i", max_tokens)
        if flags & 16:
            head += struct.pack(">i", thinking)
        return head + b"\xff".join(p.encode() if isinstance(p, str) else p for p in pieces)

    everything = 1 | 2 | 4 | 8 | 16 | 32
    write("wire", "request-full", request(everything, 0b1010, 0b0100, 0.7, 4096, 2048,
          ["claude-sonnet-4-5", "You are terse.", "Hello", "Hi there.", "Count to 3 \u2603",
           "1 2 3", "caf\u00e9 \U0001F338 \"quotes\" \\ \n\t\x01"]))
    write("wire", "request-plain", request(4, 0, 0, 0, 1024, 0, ["Hello"]))
    write("wire", "request-bad-utf8", request(8 | 4, 0, 1, 1.0, 10, 0, [b"ok", b"\xc3\x28"]))
    write("wire", "request-nul", request(32, 0, 0, 0, 10, 0, ["m", b"a\0b"]))
    write("wire", "request-negative", request(16, 0, 0, 0, -1, -5, ["x"]))
    write("wire", "request-temp", request(8, 0, 0, 0.30000000000000004, 2**31 - 1, 0, ["x", "y"]))
    write("wire", "request-inf", request(8, 0, 0, float("inf"), 1, 0, ["x"]))


# --- journal: an image, or mode(1) pos(2) val(1) then "TYPE PAYLOAD" lines ---------


def seeds_journal():
    for name in ("good", "bad-middle", "garbage-tail", "interrupted", "oversize-length",
                 "torn-tail", "misplaced", "empty", "blocks", "forked-undone"):
        write("journal", name, fixture("journal", name + ".mcj"))
    lines = b"\n".join([
        b'\x01{"v":1,"created_ms":1700000000000,"settings":{},"system":""}',
        b'\x03{"turn":1,"text":"Hello","ms":1700000001000}',
        b'\x04{"turn":1,"attempt":1,"text":"Hi","thinking":""}',
        b'\x05{"turn":1,"attempt":1,"state":"done","stop_reason":"end_turn"}',
        b'\x07{"turn":1,"attempt":2,"ms":1700000002000}',
        b'\x06{"turn":2}',
        b"",
        b"\x07MCJ1 a magic in a payload",
    ])
    for mode, name in enumerate(("none", "flip", "truncate", "insert", "zero-tail")):
        for pos in (0, 100, 317):
            write("journal", "recipe-%s-%d" % (name, pos),
                  bytes([mode]) + struct.pack(">H", pos) + bytes([0x21]) + lines)
    # records of 24 bytes (empty payloads): resynchronising must try every offset
    write("journal", "recipe-flip-small", b"\x01\x00\x05\x01" + b"\x01\n\x02\n\x03\n\x04")


# --- settings: config text, or a JSON object -------------------------------------

DEFAULT_CONFIG = """model = claude-sonnet-4-5
max_tokens = 4096
temperature = default
budget_tokens = 100000
max_input_bytes = 1048576
max_retries = 2
connect_timeout = 10
idle_timeout = 90
thinking_budget = 0
prompt_cache = on
"""


def seeds_settings():
    write("settings", "default", DEFAULT_CONFIG)
    write("settings", "edited", "# my context\n\nmodel = claude-opus-4-1\r\n  max_tokens=8192  \n"
          "temperature = 0.7\nthinking_budget = 2048\nprompt_cache = OFF\n")
    write("settings", "bom", "\ufeffmax_retries = 10\nidle_timeout = 3600\n")
    write("settings", "thinking", "max_tokens = 2000\nthinking_budget = 1024\ntemperature = 1\n")
    write("settings", "cross-key", "max_tokens = 1024\nthinking_budget = 1024\n")
    write("settings", "numbers", "temperature = 1e-1\nmax_tokens = +12\nbudget_tokens = 0012\n"
          "temperature = .5\ntemperature = 0.30000000000000004\n")
    write("settings", "bad-number", "max_tokens = 12abc\n")
    write("settings", "bad-range", "temperature = 7\n")
    write("settings", "bad-huge", "max_tokens = 99999999999999999999999\n")
    write("settings", "bad-key", "colour = blue\n")
    write("settings", "bad-line", "just text\n")
    write("settings", "bad-model", "model = " + "\u00e9" * 50 + "\n")
    write("settings", "bad-model-bytes", b"model = \xff\xfe\x01 x\n")
    write("settings", "bad-bool", "prompt_cache = maybe\n")
    write("settings", "bad-thinking", "thinking_budget = 1000\n")
    write("settings", "no-key", " = 4\n")
    write("settings", "json", '{"model":"claude-sonnet-4-5","max_tokens":4096,"temperature":null,'
          '"budget_tokens":100000,"max_input_bytes":1048576,"max_retries":2,'
          '"connect_timeout":10,"idle_timeout":90,"thinking_budget":0,"prompt_cache":true}')
    write("settings", "json-partial", '{"temperature":0.25,"prompt_cache":false}')
    write("settings", "json-bad-type", '{"max_tokens":"4096"}')
    write("settings", "json-fraction", '{"max_tokens":4096.5}')
    write("settings", "json-huge", '{"budget_tokens":1e300}')
    write("settings", "json-unknown", '{"colour":"blue"}')
    write("settings", "thinking-effort", "thinking = on\neffort = max\nthinking = 2048\n"
          "effort = XHIGH\nthinking = off\neffort = default\n")
    write("settings", "bad-effort", "effort = extreme\n")
    write("settings", "bad-thinking-word", "thinking = maybe\n")
    write("settings", "json-thinking-effort", '{"thinking":"on","effort":"low"}')
    write("settings", "json-thinking-number", '{"thinking":4096,"max_tokens":8192}')
    write("settings", "json-bad-effort", '{"effort":3}')
    write("settings", "json-array", "[1,2]")


# --- shim: out-buffer byte, then a path segment -------------------------------------


def seeds_shim():
    names = {
        "plain": "demo", "utf8": "caf%C3%A9-%E2%98%83", "raw-utf8": "caf\u00e9",
        "slash": "a%2Fb", "nul": "a%00b", "dot": ".", "dotdot": "%2e%2E", "dotfile": ".x",
        "bad-escape": "%zz", "short-escape": "ab%4", "control": "a%0Ab", "space": "a%20b",
        "max": "n" * 255, "over": "n" * 256, "over-escaped": "%41" * 256, "empty": "",
        "bad-utf8": "%C3%28",
    }
    for name, seg in names.items():
        write("shim", name, b"\x00" + seg.encode())
    write("shim", "small-buffer", b"\xf0" + b"abcdefghijklmnop%41")


# --- http: selector byte (even: a path; odd: a body, bits 1-2 pick keys and optional)


def seeds_http():
    paths = {
        "health": "/v1/health", "contexts": "/v1/contexts", "context": "/v1/contexts/demo",
        "messages": "/v1/contexts/demo/messages", "output": "/v1/contexts/d%C3%A9mo/output",
        "history": "/v1/contexts/a%2Fb/history", "transcript": "/v1/contexts/x/transcript",
        "cancel": "/v1/contexts/x/cancel", "ctl": "/v1/contexts/x/ctl",
        "unknown-sub": "/v1/contexts/x/nope",
        "empty-name": "/v1/contexts//output", "trailing-slash": "/v1/contexts/x/",
        "dotdot": "/v1/contexts/%2e%2e/output", "prefix-only": "/v1/contexts/",
        "other": "/v2/health", "query": "/v1/health?x=1", "deep": "/v1/contexts/x/output/y",
    }
    for name, path in paths.items():
        write("http", "path-" + name, b"\x00" + path.encode())
    bodies = {
        "message": (1, b'{"content":"hello"}'),
        "create": (3, b'{"name":"n","system":"s","model":"m","config":{"max_tokens":5}}'),
        "empty-optional": (7, b""), "empty-required": (1, b""),
        "unknown-key": (1, b'{"content":"x","extra":1}'), "array": (1, b"[1]"),
        "trailing": (1, b'{"content":"x"} x'), "trailing-space": (1, b'{"content":"x"}\r\n'),
        "nul": (1, b'{"content":"a\\u0000b"}'), "bad-utf8": (1, b'{"content":"\xc3\x28"}'),
        "escapes": (1, b'{"content":"\\ud83d\\ude00 \\n \\\\u0000"}'),
        "no-keys": (5, b"{}"), "no-keys-extra": (5, b'{"a":1}'),
    }
    for name, (sel, body) in bodies.items():
        write("http", "body-" + name, bytes([sel]) + body)


# --- reply_part: turn(8) attempt(4) split(2), then text and thinking bytes ----------


def seeds_reply_part():
    def part(turn, attempt, text, thinking=b""):
        return struct.pack(">QIH", turn, attempt, len(text)) + text + thinking
    write("reply_part", "plain", part(1, 1, b"Hello! How can I help you today?"))
    write("reply_part", "escapes", part(7, 2, b'say "hi"\n\\\t', b"\x01\x1f\x7f\r\b\f"))
    write("reply_part", "utf8", part(3, 1, "Grüße — 東京 🌸".encode(), "thought".encode()))
    write("reply_part", "nul", part(2, 1, b"a\0b", b"c\0"))
    write("reply_part", "empty", part(0, 0, b""))
    write("reply_part", "big-turn", part(2**40, 2**31 - 1, b"x" * 300, b"y" * 40))


def main():
    for seeds in (seeds_sse, seeds_wire, seeds_journal, seeds_settings, seeds_shim, seeds_http,
                  seeds_reply_part):
        seeds()
    return 0


if __name__ == "__main__":
    sys.exit(main())
