#!/usr/bin/env python3
"""client.py — talk to Claude through mcpfs's HTTP shim, Python standard library
only.

    client.py [--url URL] [--token-file F] CONTEXT MESSAGE...   ask; print the reply as it streams
    client.py [--url URL] [--token-file F] --list               list the contexts

URL defaults to $MCPFS_HTTP, else http://127.0.0.1:61900; the token file to
$MCPFS_HTTP_TOKEN_FILE.  CONTEXT is created when it does not exist.  Exits 1
with the error on standard error when a request or the turn fails, and before
sending anything when the URL is not an mcpfs shim.  Like other Unix tools it
ends quietly when its reader goes away (`client.py … | head`).
"""

import argparse
import http.client
import json
import os
import signal
import sys
import urllib.parse


class Shim:
    def __init__(self, url, token=None):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port or 80
        self.headers = {"Authorization": "Bearer " + token} if token else {}

    def request(self, method, path, body=None, accept=None):
        """Returns (status, response); the caller reads the response."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
        headers = dict(self.headers)
        if body is not None:
            body = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if accept:
            headers["Accept"] = accept
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp


def check_shim(shim, url):
    """Exits unless an mcpfs shim answers at url: the requests that follow
    would create a context on whatever else is there."""
    try:
        status, resp = shim.request("GET", "/v1/health")
        body = resp.read()
    except OSError as e:
        sys.exit("client.py: nothing answers at %s (%s); start mcpfs --http or set "
                 "MCPFS_HTTP" % (url, e.strerror or e))
    if status == 401:
        sys.exit("client.py: the shim at %s wants a token (set MCPFS_HTTP_TOKEN_FILE)" % url)
    try:
        health = json.loads(body)
        ok = status == 200 and health.get("status") == "ok" and \
            isinstance(health.get("version"), str)
    except (ValueError, AttributeError):
        ok = False
    if not ok:
        sys.exit("client.py: %s is not an mcpfs HTTP shim (set MCPFS_HTTP)" % url)


def fail(resp):
    try:
        err = json.loads(resp.read())["error"]
        msg = "%s: %s" % (err["type"], err["message"])
    except (ValueError, KeyError):
        msg = "HTTP %d" % resp.status
    sys.exit("client.py: " + msg)


def events(resp):
    """(event, data) pairs of a Server-Sent Events body, as they arrive."""
    name, data = "message", []
    for raw in resp:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith(":"):
            continue  # a comment: the shim's keep-alive
        elif line.startswith("event:"):
            name = line[6:].lstrip(" ")
        elif line.startswith("data:"):
            data.append(line[5:][1:] if line[5:6] == " " else line[5:])


def ask(shim, context, message):
    status, resp = shim.request("POST", "/v1/contexts", {"name": context})
    if status not in (201, 409):  # created, or there already
        fail(resp)
    resp.read()
    path = "/v1/contexts/%s/messages" % urllib.parse.quote(context, safe="")
    status, resp = shim.request("POST", path, {"content": message}, "text/event-stream")
    if status != 200:
        fail(resp)
    for name, data in events(resp):
        obj = json.loads(data)
        if name == "delta":
            sys.stdout.write(obj["text"])
            sys.stdout.flush()
        elif name == "done":
            sys.stdout.write("\n")
            return 0
        elif name == "error":
            sys.stdout.write("\n")
            sys.exit("client.py: %s: %s" % (obj["type"], obj["message"]))
    sys.exit("client.py: the stream ended early")


def list_contexts(shim):
    status, resp = shim.request("GET", "/v1/contexts")
    if status != 200:
        fail(resp)
    for c in json.loads(resp.read())["contexts"]:
        print("%-10s %s" % (c["status"], c["name"]))
    return 0


def main():
    p = argparse.ArgumentParser(description="Talk to Claude through mcpfs's HTTP shim.")
    p.add_argument("--url", default=os.environ.get("MCPFS_HTTP", "http://127.0.0.1:61900"))
    p.add_argument("--token-file", default=os.environ.get("MCPFS_HTTP_TOKEN_FILE"))
    p.add_argument("--list", action="store_true", help="list the contexts")
    p.add_argument("context", nargs="?")
    p.add_argument("message", nargs="*")
    a = p.parse_args()
    token = None
    if a.token_file:
        with open(a.token_file) as f:
            token = f.read().strip()
    shim = Shim(a.url, token)
    check_shim(shim, a.url)
    if a.list:
        return list_contexts(shim)
    if not a.context or not a.message:
        p.error("give a CONTEXT and a MESSAGE (or --list)")
    return ask(shim, a.context, " ".join(a.message))


if __name__ == "__main__":
    # A closed pipe (`| head`) ends the program as it ends cat or grep, with no
    # BrokenPipeError traceback.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
