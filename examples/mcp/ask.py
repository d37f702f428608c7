#!/usr/bin/env python3
"""Asks one question of an mcpfs context over MCP (protocol 2026-07-28, no
handshake), printing the reply as it streams.  Python's standard library only.

    examples/mcp/ask.py [--url URL] [--token-file F] CONTEXT QUESTION...

URL defaults to http://127.0.0.1:61900/mcp.  The context is created when it
does not exist.  Exits 1 with the reason on standard error when a tool fails
(the words the context's `status` shows) or the server is not mcpfs."""

import argparse
import http.client
import json
import sys
import urllib.parse

VERSION = "2026-07-28"


def call(url, token, msg_id, method, params, on_progress=None):
    """One JSON-RPC request; returns its result, or raises RuntimeError."""
    u = urllib.parse.urlsplit(url)
    meta = {"io.modelcontextprotocol/protocolVersion": VERSION,
            "io.modelcontextprotocol/clientInfo": {"name": "mcpfs-ask.py", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}
    if on_progress:
        meta["progressToken"] = msg_id
    body = {"jsonrpc": "2.0", "id": msg_id, "method": method,
            "params": dict(params, _meta=meta)}
    headers = {"Content-Type": "application/json",
               "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": VERSION, "Mcp-Method": method}
    if "name" in params:
        headers["Mcp-Name"] = params["name"]
    if token:
        headers["Authorization"] = "Bearer " + token
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=600)
    try:
        conn.request("POST", u.path or "/", json.dumps(body), headers)
        r = conn.getresponse()
        ctype = r.getheader("Content-Type", "")
        if ctype.startswith("text/event-stream"):
            final = None
            data = []
            for raw in r:            # SSE: one JSON-RPC message per event
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
                elif not line and data:
                    msg = json.loads("\n".join(data))
                    data = []
                    if msg.get("method") == "notifications/progress" and on_progress:
                        on_progress(msg["params"].get("message", ""))
                    elif "id" in msg:
                        final = msg
        else:
            payload = r.read()
            try:
                final = json.loads(payload)
            except ValueError:
                final = None
        if not isinstance(final, dict) or final.get("jsonrpc") != "2.0":
            raise RuntimeError("%s answered %d without a JSON-RPC message: is it mcpfs?"
                               % (url, r.status))
        if "error" in final:
            raise RuntimeError(final["error"].get("message", "error"))
        return final["result"]
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser(description="Ask an mcpfs context over MCP.")
    ap.add_argument("--url", default="http://127.0.0.1:61900/mcp")
    ap.add_argument("--token-file")
    ap.add_argument("context")
    ap.add_argument("question", nargs="+")
    a = ap.parse_args()
    token = open(a.token_file).read().strip() if a.token_file else None
    try:
        res = call(a.url, token, 1, "tools/call",
                   {"name": "create_context", "arguments": {"name": a.context}})
        if res.get("isError") and "exists" not in res["content"][0]["text"]:
            raise RuntimeError(res["content"][0]["text"])

        shown = []

        def show(text):
            shown.append(text)
            sys.stdout.write(text)
            sys.stdout.flush()
        res = call(a.url, token, 2, "tools/call",
                   {"name": "send_message",
                    "arguments": {"context": a.context, "text": " ".join(a.question)}},
                   on_progress=show)
        if res.get("isError"):
            raise RuntimeError(res["content"][0]["text"])
        if not shown:
            sys.stdout.write(res["content"][0]["text"])
        sys.stdout.write("\n")
    except (RuntimeError, OSError) as e:
        sys.stderr.write("ask.py: %s\n" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
