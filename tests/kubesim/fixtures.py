"""pytest helper for kubesim: start the simulated API server, drive it.

    from fixtures import KubeSim
    with KubeSim(tmp_path, node_name="node-b", bookmark_interval=1) as sim:
        sim.emit_events(namespace="default", count=10)
        status, headers, body = sim.api_get("/api/v1/events?limit=5")

Options become command-line flags (node_name -> --node-name; True -> bare
flag; dict node_labels -> k=v,k=v).  Python 3 stdlib only.
"""

import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
KUBESIM = os.path.join(HERE, "kubesim.py")


class KubeSimError(Exception):
    pass


class KubeSim:
    def __init__(self, tmp_path, start_timeout=30, **options):
        self.state_dir = os.path.join(str(tmp_path), "kubesim")
        self.options = options
        self.start_timeout = start_timeout
        self.proc = None
        self.api_url = self.control_url = None
        self.api_port = self.control_port = None
        self.kubeconfig = os.path.join(self.state_dir, "kubeconfig")
        self.token_file = os.path.join(self.state_dir, "token")
        self.sa_dir = os.path.join(self.state_dir, "serviceaccount")
        self.ca_file = os.path.join(self.state_dir, "ca.crt")
        self._stderr = None

    # ---- lifecycle ----

    def args(self):
        argv = [sys.executable if sys.executable.startswith("/usr/bin/") else "/usr/bin/python3",
                KUBESIM, "--state-dir", self.state_dir]
        for k, v in self.options.items():
            if v is None or v is False:
                continue
            flag = "--" + k.replace("_", "-")
            if v is True:
                argv.append(flag)
            elif isinstance(v, dict):
                argv += [flag, ",".join("%s=%s" % kv for kv in v.items())]
            else:
                argv += [flag, str(v)]
        return argv

    def start(self):
        os.makedirs(self.state_dir, exist_ok=True)
        self._stderr = open(os.path.join(self.state_dir, "stderr.log"), "ab")
        self.proc = subprocess.Popen(self.args(), stdout=subprocess.PIPE, stderr=self._stderr,
                                     stdin=subprocess.DEVNULL)
        line = [None]

        def read():
            line[0] = self.proc.stdout.readline()
        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(self.start_timeout)
        text = (line[0] or b"").decode().strip()
        if not text.startswith("READY "):
            self.stop()
            with open(os.path.join(self.state_dir, "stderr.log"), "rb") as f:
                err = f.read().decode(errors="replace")[-2000:]
            raise KubeSimError("kubesim did not start: %r\n%s" % (text, err))
        _, self.api_url, self.control_url = text.split()
        self.api_port = int(urllib.parse.urlsplit(self.api_url).port)
        self.control_port = int(urllib.parse.urlsplit(self.control_url).port)
        return self

    def stop(self):
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        if self._stderr:
            self._stderr.close()
            self._stderr = None
        self.proc = None
        return rc

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # ---- files ----

    @property
    def token(self):
        with open(self.token_file) as f:
            return f.read().strip()

    # ---- control API ----

    def control(self, method, path, body=None, expect=(200, 201), timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        out = json.loads(raw) if raw else None
        if expect and resp.status not in expect:
            raise KubeSimError("%s %s -> %d %s" % (method, path, resp.status, out))
        return out

    def create(self, resource, obj):
        return self.control("POST", "/objects", {"resource": resource, "object": obj})

    def modify(self, resource, obj, replace=False, manager=None):
        body = {"resource": resource, "object": obj}
        if replace:
            body["replace"] = True
        if manager:
            body["manager"] = manager
        return self.control("PUT", "/objects", body)

    def delete(self, resource, name, namespace=None):
        q = {"resource": resource, "name": name}
        if namespace is not None:
            q["namespace"] = namespace
        return self.control("DELETE", "/objects?" + urllib.parse.urlencode(q))

    def objects(self, resource, namespace=None):
        q = {"resource": resource}
        if namespace is not None:
            q["namespace"] = namespace
        return self.control("GET", "/objects?" + urllib.parse.urlencode(q))

    def emit_events(self, **kw):
        return self.control("POST", "/emit-events", kw)

    def fault(self, **kw):
        return self.control("POST", "/faults", kw)

    def compact(self):
        return self.control("POST", "/compact", {})

    def rotate_token(self):
        return self.control("POST", "/rotate-token", {})["token"]

    def add_token(self, token, deny=(), user=None):
        body = {"token": token, "deny": list(deny)}
        if user:
            body["user"] = user
        return self.control("POST", "/tokens", body)

    def set_log(self, pod, text, namespace="default", container=None):
        """The text `kubectl logs` gets for the pod (every container, or the
        one named)."""
        body = {"namespace": namespace, "pod": pod, "text": text}
        if container:
            body["container"] = container
        return self.control("POST", "/logs", body)

    def stats(self):
        return self.control("GET", "/stats")

    def metrics_api(self, enabled=True, available=True, paginate=None):
        """metrics.k8s.io on (enabled), off (404, not in /apis), or listed in
        /apis but answering 503 (enabled, not available). paginate: LISTs
        honour limit/continue (True) or ignore them like metrics-server
        (False); None leaves it as it is."""
        body = {"enabled": enabled, "available": available}
        if paginate is not None:
            body["paginate"] = paginate
        return self.control("POST", "/metrics-api", body)

    def populate(self, namespaces=0, nodes=0, pods=0, unhealthy_fraction=0.0, seed=None,
                 timeout=600):
        """Bulk-create realistic namespaces ns-NNNNN, nodes node-NNNN and pods
        spread over them; returns the counts and the resourceVersion."""
        body = {"namespaces": namespaces, "nodes": nodes, "pods": pods,
                "unhealthy_fraction": unhealthy_fraction}
        if seed is not None:
            body["seed"] = seed
        return self.control("POST", "/populate", body, timeout=timeout)

    def churn(self, resource="pods", count=1, seed=None):
        """Modify `count` random pods (restartCount+1 or a readiness toggle,
        alternating); returns the new resourceVersion."""
        body = {"resource": resource, "count": count}
        if seed is not None:
            body["seed"] = seed
        return self.control("POST", "/churn", body)

    def requests(self, limit=None):
        return self.control("GET", "/requests" + ("?limit=%d" % limit if limit else ""))["items"]

    # ---- API helpers (HTTPS, the simulator's CA) ----

    def ssl_context(self):
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def api_get(self, path, token=..., headers=None, timeout=30):
        """GET on the API; returns (status, headers dict (lower-case keys), body bytes).
        token: ... = the current valid token, None = no Authorization header."""
        if token is ...:
            token = self.token
        conn = http.client.HTTPSConnection("127.0.0.1", self.api_port, timeout=timeout,
                                           context=self.ssl_context())
        try:
            h = dict(headers or {})
            if token is not None:
                h["Authorization"] = "Bearer " + token
            conn.request("GET", path, headers=h)
            resp = conn.getresponse()
            body = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
        finally:
            conn.close()

    def api_json(self, path, token=..., expect=200):
        status, _, body = self.api_get(path, token=token)
        if expect is not None and status != expect:
            raise KubeSimError("GET %s -> %d %s" % (path, status, body[:500]))
        return json.loads(body)

    def raw_request(self, path, token=..., timeout=30, extra_headers=""):
        """Send one GET over a raw TLS socket and read until the server closes or
        the chunked body ends; returns the raw bytes (headers + framing)."""
        import socket
        if token is ...:
            token = self.token
        sock = socket.create_connection(("127.0.0.1", self.api_port), timeout=timeout)
        tls = self.ssl_context().wrap_socket(sock, server_hostname="localhost")
        try:
            req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: kubesim-test\r\n" % (
                path, self.api_port)
            if token is not None:
                req += "Authorization: Bearer %s\r\n" % token
            req += extra_headers + "Connection: close\r\n\r\n"
            tls.sendall(req.encode())
            out = b""
            while True:
                try:
                    b = tls.recv(65536)
                except (ssl.SSLError, ConnectionResetError, OSError):
                    break
                if not b:
                    break
                out += b
            return out
        finally:
            tls.close()


class RawStream:
    """A request on a raw TLS socket whose response is read incrementally."""

    def __init__(self, sim, path, token=..., timeout=30):
        import socket
        if token is ...:
            token = sim.token
        sock = socket.create_connection(("127.0.0.1", sim.api_port), timeout=timeout)
        self.tls = sim.ssl_context().wrap_socket(sock, server_hostname="localhost")
        req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: kubesim-test\r\n" % (
            path, sim.api_port)
        if token is not None:
            req += "Authorization: Bearer %s\r\n" % token
        self.tls.sendall((req + "Connection: close\r\n\r\n").encode())
        self.data = b""
        self.eof = False

    def read_some(self):
        try:
            b = self.tls.recv(65536)
        except (ssl.SSLError, ConnectionResetError, OSError):
            b = b""
        if not b:
            self.eof = True
        self.data += b
        return b

    def read_until(self, pred):
        """Read until pred(data) holds or the server closes; returns pred(data)."""
        while not pred(self.data) and not self.eof:
            self.read_some()
        return pred(self.data)

    def read_all(self):
        while not self.eof:
            self.read_some()
        return self.data

    def close(self):
        self.tls.close()


def watch_lines(chunks):
    """(complete lines, trailing partial line) of a watch body. A real API
    server does not keep one event per chunk: a burst shares chunks and a
    chunk may end inside a line, so a client reassembles lines."""
    body = b"".join(chunks)
    *lines, rest = body.split(b"\n")
    return [x + b"\n" for x in lines], rest


def complete_lines(raw):
    """Number of complete watch lines so far in a raw chunked response."""
    try:
        return len(watch_lines(parse_chunked(raw)[2])[0])
    except ValueError:
        return 0


def parse_chunked(raw):
    """Split a raw HTTP/1.1 response into (status line, headers list, chunks,
    ended_cleanly).  chunks: list of payload bytes; ended_cleanly: the 0 chunk
    and its CRLF were seen."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("no header end")
    lines = head.decode().split("\r\n")
    status, headers = lines[0], [tuple(x.split(": ", 1)) for x in lines[1:]]
    chunks, ended = [], False
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            ended = rest.startswith(b"\r\n")
            break
        if len(rest) < size + 2:
            chunks.append(rest[:size])   # incomplete chunk (connection dropped)
            break
        if rest[size:size + 2] != b"\r\n":
            raise ValueError("bad chunk trailer")
        chunks.append(rest[:size])
        rest = rest[size + 2:]
    return status, headers, chunks, ended


def wait_for(pred, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()
