"""Helpers and fixtures of the HTTP shim tests (CONTRACT §7); no tests here.

Fixtures (import them into a test module to use them)
  shim          a mount with --http=127.0.0.1:<free port>, its Api and port:
                Shim(mount, api, port); mcpfs_args/mcpfs_env markers apply
  shim_factory  make(args=(), env=None, token=None) -> Shim: more of them, with a
                token file when token is given
  client        parametrized over "http.client" and "curl": the same request()
                interface driven by Python's http.client or by the curl tool
  nomount       make(args=(), token=None) -> NoMount: `mcpfs --no-mount --http`
                in the foreground, stopped (SIGTERM, exit 0 checked) at teardown

Api.request(method, path, body=None, headers=None) -> Resp(status, headers,
body): body may be a dict (sent as JSON with Content-Type: application/json),
bytes or str (sent as is, with no Content-Type unless headers give one).
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from mcpfs_testlib import (
    DEFAULT_KEY, daemon_env, free_port, parse_sse, wait_for,
)

__all__ = ["Resp", "Api", "CurlApi", "Shim", "NoMount", "SseClient", "free_port", "recv_all", "quote",
           "shim", "shim_factory", "client", "nomount", "start_failure", "non_loopback_ipv4",
           "ipv6_loopback_works", "parse_sse", "DEFAULT_KEY"]


def recv_all(s, done=None):
    """Receives from socket s until the peer closes it, an error, or done(bytes
    so far) is true.  Returns (bytes, OSError or None)."""
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                return out, None
            out += b
            if done is not None and done(out):
                return out, None
    except OSError as e:
        return out, e


def quote(name):
    """Percent-encodes a context name for a path: every byte but unreserved."""
    b = name.encode("utf-8") if isinstance(name, str) else name
    return "".join(chr(c) if chr(c).isalnum() and c < 128 or chr(c) in "-._~" else "%%%02X" % c
                   for c in b)


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.header_list = [(k.lower(), v) for k, v in headers]
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8")

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def error(self):
        """(type, message) of an error body; asserts its shape."""
        obj = self.json()
        assert set(obj) == {"error"}, obj
        assert set(obj["error"]) == {"type", "message"}, obj
        assert isinstance(obj["error"]["message"], str) and obj["error"]["message"]
        return obj["error"]["type"], obj["error"]["message"]

    def __repr__(self):
        return "<Resp %s %r %r>" % (self.status, self.headers, self.body[:300])


def _encode_body(body, headers):
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    return body, headers


class Api:
    """http.client against the shim; one connection per request."""

    name = "http.client"

    def __init__(self, port, host="127.0.0.1", token=None):
        self.port = port
        self.host = host
        self.token = token
        self.seen = []  # every Resp, for the "no API key anywhere" checks

    def base(self):
        return "http://%s:%d" % (self.host, self.port)

    def auth(self, headers):
        if self.token and "Authorization" not in headers:
            headers["Authorization"] = "Bearer " + self.token
        return headers

    def request(self, method, path, body=None, headers=None, timeout=15):
        body, headers = _encode_body(body, headers)
        headers = self.auth(headers)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            resp = Resp(r.status, r.getheaders(), data)
        finally:
            conn.close()
        self.seen.append(resp)
        return resp

    def healthy(self):
        try:
            return self.request("GET", "/v1/health", timeout=2).status == 200
        except OSError:
            return False

    def create(self, name, **fields):
        body = dict(fields)
        body["name"] = name
        r = self.request("POST", "/v1/contexts", body)
        assert r.status == 201, r
        return r

    def send(self, name, text):
        r = self.request("POST", "/v1/contexts/%s/messages" % quote(name), {"content": text})
        assert r.status == 202, r
        return r.json()["turn"]

    def output(self, name, timeout=15):
        r = self.request("GET", "/v1/contexts/%s/output" % quote(name), timeout=timeout)
        assert r.status == 200, r
        return r.text


class CurlApi(Api):
    """The same interface, through the curl tool (a subprocess per request)."""

    name = "curl"

    def request(self, method, path, body=None, headers=None, timeout=15):
        body, headers = _encode_body(body, headers)
        headers = self.auth(headers)
        with tempfile.TemporaryDirectory(prefix="mcpfs-curl-", dir="/var/tmp") as d:
            hdr, out, inp = (os.path.join(d, n) for n in ("h", "o", "i"))
            # -X HEAD would wait for a body; -I is curl's HEAD.
            argv = ["curl", "-sS", "--path-as-is", "-D", hdr, "-o", out, "--max-time",
                    str(timeout)] + (["-I"] if method == "HEAD" else ["-X", method])
            # curl adds a form Content-Type to --data-binary; "Name:" removes it.
            if body is not None and not any(k.lower() == "content-type" for k in headers):
                argv += ["-H", "Content-Type:"]
            for k, v in headers.items():
                argv += ["-H", "%s: %s" % (k, v) if v != "" else "%s;" % k]
            if body is not None:
                with open(inp, "wb") as f:
                    f.write(body)
                argv += ["--data-binary", "@" + inp]
            argv.append(self.base() + path)
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=timeout + 10)
            assert p.returncode == 0, "curl failed (%d): %s" % (p.returncode, p.stderr)
            with open(hdr, "rb") as f:
                head = f.read().decode("latin-1")
            with open(out, "rb") as f:
                data = f.read() if os.path.exists(out) else b""
        # Keep the last header block (after any "100 Continue").
        blocks = [b for b in re.split(r"\r\n\r\n", head) if b.startswith("HTTP/")]
        lines = blocks[-1].split("\r\n")
        status = int(lines[0].split()[1])
        headers_out = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]
                       if ":" in line]
        resp = Resp(status, headers_out, data)
        self.seen.append(resp)
        return resp


class Shim:
    def __init__(self, mount, api, port, token=None):
        self.mount = mount
        self.api = api
        self.port = port
        self.token = token

    @property
    def path(self):
        return self.mount.path

    def curl(self):
        return CurlApi(self.port, token=self.token)


def _token_file(workdir, token, mode=0o600):
    p = workdir / ("token-%d" % time.monotonic_ns())
    p.write_text(token + "\n")
    os.chmod(p, mode)
    return p


@pytest.fixture
def shim_factory(mount_factory, workdir):
    n = [0]

    def make(args=(), env=None, token=None):
        n[0] += 1
        port = free_port()
        extra = ["--http=127.0.0.1:%d" % port]
        if token:
            extra.append("--http-token-file=%s" % _token_file(workdir, token))
        m = mount_factory(args=list(args) + extra, env=env, name="mnt%d" % n[0])
        api = Api(port, token=token)
        wait_for(api.healthy, 10, what="the HTTP shim to answer")
        return Shim(m, api, port, token)
    return make


@pytest.fixture
def shim(request, shim_factory):
    args = request.node.get_closest_marker("mcpfs_args")
    env = request.node.get_closest_marker("mcpfs_env")
    return shim_factory(args=list(args.args) if args else (),
                        env=dict(env.kwargs) if env else None)


@pytest.fixture(params=["http.client", "curl"])
def client(request, shim):
    return shim.api if request.param == "http.client" else shim.curl()


class NoMount:
    """`mcpfs --no-mount --http=…` in the foreground."""

    def __init__(self, binary, fake, workdir, args=(), token=None, host="127.0.0.1", port=None):
        self.port = port or free_port()
        self.home = workdir / "home"
        self.home.mkdir(exist_ok=True)
        self.state = workdir / "nomount-state"
        self.log_path = workdir / "nomount.log"
        shown = "[%s]" % host if ":" in host else host
        argv = [binary, "--state-dir=%s" % self.state, "--no-mount",
                "--http=%s:%d" % (shown, self.port)] + list(args)
        if token:
            argv.append("--http-token-file=%s" % _token_file(workdir, token))
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, env=daemon_env(self.home, fake.base_url))
        self.api = Api(self.port, host=host, token=token)
        wait_for(lambda: self.proc.poll() is not None or self.api.healthy(), 10,
                 what="--no-mount daemon to answer")
        assert self.proc.poll() is None, self.log_text()

    def log_text(self):
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            rc = "hung"
        self.log.close()
        return rc


@pytest.fixture
def nomount(mcpfs_bin, fake, workdir):
    made = []

    def make(args=(), token=None, host="127.0.0.1", port=None):
        nm = NoMount(mcpfs_bin, fake, workdir, args, token, host, port)
        made.append(nm)
        return nm
    yield make
    problems = []
    for nm in made:
        rc = nm.stop()
        bad = [line for line in nm.log_text().splitlines()
               if re.search(r"mcpfs: (error|crit|alert|emerg):|Sanitizer|runtime error:",
                            line)]
        if rc != 0 or bad:
            problems.append("--no-mount daemon: exit %r, log lines %r" % (rc, bad))
    if problems:
        pytest.fail("\n".join(problems))


def start_failure(binary, args, env, timeout=15):
    """Runs mcpfs expecting it to refuse to start: (rc, stderr lines)."""
    p = subprocess.Popen([binary] + list(args), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate(timeout=10)
        pytest.fail("mcpfs kept running with %r" % (args,))
    return p.returncode, [x for x in err.decode("utf-8", "replace").splitlines() if x.strip()]


def non_loopback_ipv4():
    """An IPv4 address of this machine that is not loopback, or None."""
    try:
        out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(rb"inet (\d+\.\d+\.\d+\.\d+)/", out)
    return m.group(1).decode() if m else None


def ipv6_loopback_works():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


class SseClient:
    """An SSE (or plain) GET/POST read in a background thread: .data (bytes so
    far), .events (parsed), .done (the response ended), .error."""

    def __init__(self, port, method, path, body=None, sse=True, token=None, host="127.0.0.1"):
        headers = {"Accept": "text/event-stream"} if sse else {}
        if token:
            headers["Authorization"] = "Bearer " + token
        body, headers = _encode_body(body, headers)
        self.conn = http.client.HTTPConnection(host, port, timeout=60)
        self.conn.request(method, path, body=body, headers=headers)
        # The shim answers Connection: close, so http.client hands the socket
        # to the response (conn.sock becomes None): close() needs it.
        self.sock = self.conn.sock
        self.resp = self.conn.getresponse()
        self._lock = threading.Lock()
        self._data = b""
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="sse-client")
        self.thread.start()

    def _run(self):
        try:
            while True:
                b = self.resp.read1(65536)
                if not b:
                    return
                with self._lock:
                    self._data += b
        except Exception as e:  # noqa: BLE001 — reported to the test
            self.error = e
        finally:
            self.conn.close()

    @property
    def status(self):
        return self.resp.status

    @property
    def data(self):
        with self._lock:
            return self._data

    @property
    def events(self):
        return parse_sse(self.data)

    @property
    def done(self):
        return not self.thread.is_alive()

    def text(self):
        return "".join(json.loads(d)["text"] for e, d in self.events if e == "delta")

    def final(self):
        """The last event (name, obj) or None."""
        ev = [(e, json.loads(d)) for e, d in self.events if e in ("done", "error")]
        return ev[-1] if ev else None

    def wait_done(self, timeout=15):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "stream still open after %.0fs; got %r" % (
            timeout, self.data[-500:])
        return self

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
