"""Loopback fakes of the cloud metadata servers the cluster-ID detector asks.

    with FakeAWS(tags={"aws:eks:cluster-name": "shop-prod"}) as aws:
        env["COLLECT_AGENT_CLUSTER_AWS_METADATA_ENDPOINT"] = aws.url
        ...
        assert aws.paths() == ["/latest/api/token", "/latest/meta-data/tags/instance", ...]

Each server listens on 127.0.0.1 (port 0 = a free one), answers from its own
thread, and records every request (method, path, headers) so a test can
assert what was asked, and that a bare cluster asked nothing at all.
They follow the real services where it matters to a client:

- FakeAWS (IMDSv2): PUT /latest/api/token needs X-aws-ec2-metadata-token-ttl-seconds
  (1..21600) or answers 400; every GET needs X-aws-ec2-metadata-token with
  a token it issued or answers 401. Instance tags are at
  /latest/meta-data/tags/instance (keys, one per line, no final newline) and
  .../tags/instance/<key>; with tags=None (tags not allowed in metadata)
  both answer 404.
- FakeGCE: /computeMetadata/v1/instance/attributes/<name> needs
  Metadata-Flavor: Google or answers 403; a request carrying
  X-Forwarded-For is refused with 403 too. Answers carry Metadata-Flavor: Google.
- FakeAzure: /metadata/instance/compute needs Metadata: true (400 otherwise),
  an api-version query (400 otherwise), and answers the compute JSON.
- Hanging: accepts connections, reads the request, never answers; counts
  connections. Proves the detector's metadata timeout.

Python 3 stdlib only.
"""

import http.server
import json
import secrets
import socket
import threading
import urllib.parse


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep test output clean
        pass

    def _record(self):
        body = b""
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            body = self.rfile.read(n)
        self.server.owner._record(self.command, self.path, dict(self.headers.items()), body)

    def _send(self, status, body, ctype="text/plain", extra=None):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._record()
        self.server.owner.handle(self, "GET")

    def do_PUT(self):
        self._record()
        self.server.owner.handle(self, "PUT")

    def do_POST(self):
        self._record()
        self.server.owner.handle(self, "POST")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeMetadata:
    """Base: a threaded loopback HTTP server that records requests."""

    name = "metadata"

    def __init__(self, port=0):
        self._lock = threading.Lock()
        self._requests = []
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="fake-" + self.name)
        self._thread.start()
        return self

    def stop(self):
        if self._thread:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def _record(self, method, path, headers, body):
        with self._lock:
            self._requests.append({"method": method, "path": path, "headers": headers, "body": body})

    def requests(self):
        with self._lock:
            return list(self._requests)

    def paths(self):
        return [r["path"] for r in self.requests()]

    def count(self):
        return len(self.requests())

    def handle(self, h, method):
        h._send(404, "not found")

    @staticmethod
    def header(h, name):
        """Header value, case-insensitive (None if absent)."""
        return h.headers.get(name)


class FakeAWS(FakeMetadata):
    """EC2 IMDSv2."""

    name = "aws"
    MAX_TTL = 21600

    def __init__(self, tags=None, region="eu-west-1", port=0):
        super().__init__(port)
        self.tags = tags
        self.region = region
        self.tokens = set()

    def handle(self, h, method):
        path = urllib.parse.urlsplit(h.path).path
        if path == "/latest/api/token":
            if method != "PUT":
                return h._send(405, "")
            ttl = self.header(h, "X-aws-ec2-metadata-token-ttl-seconds")
            try:
                ok = ttl is not None and 1 <= int(ttl) <= self.MAX_TTL
            except ValueError:
                ok = False
            if not ok or self.header(h, "X-Forwarded-For"):
                return h._send(400, "")
            token = secrets.token_urlsafe(40)
            with self._lock:
                self.tokens.add(token)
            return h._send(200, token, extra={"X-aws-ec2-metadata-token-ttl-seconds": ttl})
        if method != "GET":
            return h._send(405, "")
        token = self.header(h, "X-aws-ec2-metadata-token")
        with self._lock:
            valid = token in self.tokens
        if not valid:
            return h._send(401, "")
        if path == "/latest/meta-data/placement/region":
            return h._send(200, self.region)
        prefix = "/latest/meta-data/tags/instance"
        if path == prefix or path == prefix + "/":
            if self.tags is None:
                return h._send(404, "")
            return h._send(200, "\n".join(self.tags))
        if path.startswith(prefix + "/"):
            key = urllib.parse.unquote(path[len(prefix) + 1:])
            if self.tags is None or key not in self.tags:
                return h._send(404, "")
            return h._send(200, self.tags[key])
        return h._send(404, "")


class FakeGCE(FakeMetadata):
    """GCE metadata server."""

    name = "gce"

    def __init__(self, attributes=None, port=0):
        super().__init__(port)
        self.attributes = dict(attributes or {})

    def handle(self, h, method):
        flavor = {"Metadata-Flavor": "Google"}
        if self.header(h, "Metadata-Flavor") != "Google" or self.header(h, "X-Forwarded-For"):
            return h._send(403, "Missing Metadata-Flavor:Google header.", extra=flavor)
        if method != "GET":
            return h._send(405, "", extra=flavor)
        path = urllib.parse.urlsplit(h.path).path
        prefix = "/computeMetadata/v1/instance/attributes/"
        if path.startswith(prefix) and path[len(prefix):] in self.attributes:
            return h._send(200, self.attributes[path[len(prefix):]], ctype="application/text",
                           extra=flavor)
        return h._send(404, "Not Found", extra=flavor)


class FakeAzure(FakeMetadata):
    """Azure IMDS."""

    name = "azure"

    def __init__(self, compute=None, port=0):
        super().__init__(port)
        self.compute = compute if compute is not None else {}

    def handle(self, h, method):
        def err(status, text):
            h._send(status, json.dumps({"error": text}), ctype="application/json; charset=utf-8")
        if self.header(h, "Metadata") != "true":
            return err(400, "Bad request. Required metadata header not specified")
        if self.header(h, "X-Forwarded-For"):
            return err(400, "Bad request. X-Forwarded-For header is not allowed")
        parts = urllib.parse.urlsplit(h.path)
        query = urllib.parse.parse_qs(parts.query)
        if "api-version" not in query:
            return err(400, "Bad request. api-version was not specified in the request")
        if parts.path == "/metadata/instance/compute":
            return h._send(200, json.dumps(self.compute), ctype="application/json; charset=utf-8")
        return err(404, "Not found")


class Hanging:
    """Accepts TCP connections, reads what comes, never answers."""

    name = "hanging"

    def __init__(self, port=0):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self._lock = threading.Lock()
        self._conns = []
        self._data = []
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._serve, daemon=True, name="fake-hanging")
        self._thread.start()
        return self

    def _serve(self):
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                self._drain()
                continue
            except OSError:
                return
            conn.setblocking(False)
            with self._lock:
                self._conns.append(conn)
                self._data.append(b"")
            self._drain()

    def _drain(self):
        with self._lock:
            for i, c in enumerate(self._conns):
                try:
                    b = c.recv(65536)
                    if b:
                        self._data[i] += b
                except (BlockingIOError, OSError):
                    pass

    def connections(self):
        self._drain()
        with self._lock:
            return len(self._conns)

    def count(self):
        return self.connections()

    def request_lines(self):
        self._drain()
        with self._lock:
            return [d.split(b"\r\n", 1)[0].decode(errors="replace") for d in self._data if d]

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(5)
            self._thread = None
        with self._lock:
            for c in self._conns:
                c.close()
            self._conns = []
        self._sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
