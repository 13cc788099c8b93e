"""Minimal NATS test helpers (stdlib only, for /usr/bin/python3).

NatsServer starts Debian's nats-server on a free loopback port; NatsClient is a
small but real client of the NATS text protocol (INFO, CONNECT, PING/PONG, SUB,
UNSUB, PUB, HPUB, MSG, HMSG) with a reader thread, used by the integration
tests to play the central orchestrator.

    with NatsServer() as srv:
        nc = NatsClient(srv.url)
        sub = nc.subscribe("agent.event.>")
        msg = sub.next(timeout=5)        # Msg(subject, reply, headers, data)
        nc.close()

The client does not reconnect: after the server goes away its calls raise
ConnectionError; make a new client.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import random
import socket
import ssl
import subprocess
import threading
import tempfile
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

__all__ = ["NatsServer", "NatsClient", "Subscription", "Msg", "NoRespondersError",
           "find_nats_server", "free_port", "JetStreamError", "js_api", "js_stream_create",
           "js_stream_info", "js_stream_delete", "js_stream_msg_get", "js_stream_messages"]

# Cap on one protocol line and one payload, so a broken peer cannot make the
# reader grow without bound (nats-server's max_payload tops out at 64 MiB).
MAX_LINE = 64 * 1024
MAX_PAYLOAD = 64 * 1024 * 1024


def find_nats_server() -> str:
    for path in ("/usr/sbin/nats-server", "/usr/bin/nats-server"):
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found (apt-get install nats-server)")
    return found


def _ephemeral_range() -> tuple:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free loopback port for a test server, chosen OUTSIDE the kernel's
    ephemeral range. A port from bind(0) is ephemeral: between closing the
    probe socket and the server's own bind, any outbound connection on the
    machine may take it as its source port, and the client under test then
    reaches the wrong peer. Listeners placed below the range cannot collide
    with outbound connections."""
    lo, _ = _ephemeral_range()
    low = 20000 if lo > 21000 else 1024
    high = min(lo, 32768) - 1
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class NatsServer:
    """A nats-server child process on 127.0.0.1.

    port: fixed port, or None for a free one (kept across restart()).
    args: extra command-line arguments (e.g. ["--auth", "tok"], ["-js"]).
    log_path: file for the server's log (default: discarded).
    """

    def __init__(self, port: Optional[int] = None, args: Sequence[str] = (),
                 log_path: Optional[str] = None, start_timeout: float = 10.0):
        self.port = port or free_port()
        self.args = list(args)
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.proc: Optional[subprocess.Popen] = None
        self._log = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "NatsServer":
        if self.running:
            return self
        cmd = [find_nats_server(), "-a", "127.0.0.1", "-p", str(self.port), *self.args]
        # Without a log file the output still goes to a temporary one, so a
        # server that does not start is reported with its own words.
        self._log = open(self.log_path, "ab") if self.log_path else tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                said = self._said()
                self._cleanup()
                raise RuntimeError(f"nats-server exited with {code}: {' '.join(cmd)}\n{said}")
            if _port_open(self.port):
                return self
            time.sleep(0.02)
        said = self._said()
        self.stop()
        raise TimeoutError(f"nats-server did not accept on port {self.port}:\n{said}")

    def _said(self) -> str:
        """The last lines the server wrote."""
        try:
            self._log.flush()
            if self.log_path:
                with open(self.log_path, "rb") as f:
                    data = f.read()
            else:
                self._log.seek(0)
                data = self._log.read()
            return data.decode(errors="replace")[-2000:]
        except (OSError, ValueError):
            return ""

    def stop(self, kill: bool = False) -> None:
        """Stop the server (SIGTERM, or SIGKILL when kill or it lingers)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._cleanup()

    def restart(self, kill: bool = False) -> "NatsServer":
        """Stop and start again on the same port."""
        self.stop(kill=kill)
        return self.start()

    def _cleanup(self) -> None:
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self) -> "NatsServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class Msg:
    subject: str
    reply: Optional[str]
    headers: Dict[str, str] = field(default_factory=dict)
    data: bytes = b""

    @property
    def status(self) -> Optional[str]:
        """The status code of a status message ("503" for no responders)."""
        return self.headers.get("Status")


class NoRespondersError(Exception):
    """A request found no subscriber (server status 503)."""


class Subscription:
    def __init__(self, client: "NatsClient", sid: int, subject: str, queue_group: Optional[str]):
        self._client = client
        self.sid = sid
        self.subject = subject
        self.queue_group = queue_group
        self._msgs: "queue.Queue[Msg]" = queue.Queue()

    def next(self, timeout: float = 5.0) -> Msg:
        """The next message; TimeoutError when none came within timeout."""
        try:
            return self._msgs.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no message on {self.subject!r} within {timeout}s") from None

    def pending(self) -> int:
        return self._msgs.qsize()

    def drain(self) -> list:
        """All messages received so far, without waiting."""
        out = []
        while True:
            try:
                out.append(self._msgs.get_nowait())
            except queue.Empty:
                return out

    def unsubscribe(self) -> None:
        self._client._unsubscribe(self)


def _encode_headers(headers: Dict[str, str]) -> bytes:
    lines = ["NATS/1.0"]
    for k, v in headers.items():
        k, v = str(k), str(v)
        if any(c in k for c in ":\r\n ") or any(c in v for c in "\r\n"):
            raise ValueError(f"bad header {k!r}: {v!r}")
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _decode_headers(raw: bytes) -> Dict[str, str]:
    text = raw.decode("utf-8", "replace")
    lines = text.split("\r\n")
    headers: Dict[str, str] = {}
    first = lines[0] if lines else ""
    if not first.startswith("NATS/1.0"):
        raise ValueError(f"bad header block: {first!r}")
    rest = first[len("NATS/1.0"):].strip()
    if rest:  # status line: "NATS/1.0 503" or "NATS/1.0 408 Request Timeout"
        code, _, desc = rest.partition(" ")
        headers["Status"] = code
        if desc:
            headers["Description"] = desc
    for line in lines[1:]:
        if not line:
            continue
        k, sep, v = line.partition(":")
        if sep:
            headers[k.strip()] = v.strip()
    return headers


class NatsClient:
    """A small NATS client over one socket, with a reader thread.

    url: nats://[user:pass@]127.0.0.1:port (tls:// for TLS; pass tls_ca_file).
    """

    def __init__(self, url: str, user: Optional[str] = None, password: Optional[str] = None,
                 token: Optional[str] = None, name: str = "pytest", timeout: float = 5.0,
                 tls_ca_file: Optional[str] = None, tls_insecure: bool = False):
        u = urllib.parse.urlsplit(url if "://" in url else "nats://" + url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 4222
        if u.username and user is None and token is None:
            if u.password is not None:
                user, password = urllib.parse.unquote(u.username), urllib.parse.unquote(u.password)
            else:
                token = urllib.parse.unquote(u.username)
        self.server_info: dict = {}
        self.last_error: Optional[str] = None
        self._wlock = threading.Lock()
        self._lock = threading.Lock()
        self._subs: Dict[int, Subscription] = {}
        self._next_sid = 1
        self._pongs: "list[threading.Event]" = []
        self._closed = threading.Event()
        self._buf = bytearray()

        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        # Small requests and replies: without this, Nagle and delayed ACKs
        # add 40 ms to a request-reply round trip.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.settimeout(timeout)
            info_line = self._read_line_blocking(sock)
            if not info_line.startswith(b"INFO "):
                raise ConnectionError(f"expected INFO, got {info_line[:80]!r}")
            self.server_info = json.loads(info_line[5:])
            want_tls = u.scheme == "tls" or tls_ca_file is not None or tls_insecure
            if self.server_info.get("tls_required") or want_tls:
                ctx = ssl.create_default_context(cafile=tls_ca_file)
                if tls_insecure:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                sock = ctx.wrap_socket(sock, server_hostname=self.host)
            connect = {"verbose": False, "pedantic": False, "headers": True,
                       "no_responders": True, "protocol": 1, "name": name,
                       "lang": "python-test", "version": "0.1", "tls_required": want_tls}
            if user is not None:
                connect["user"] = user
                connect["pass"] = password or ""
            if token is not None:
                connect["auth_token"] = token
            sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
            # The first PONG (or -ERR) answers the handshake.
            while True:
                line = self._read_line_blocking(sock)
                if line == b"PONG":
                    break
                if line.startswith(b"-ERR"):
                    raise ConnectionError(line.decode("utf-8", "replace"))
                if line == b"PING":
                    sock.sendall(b"PONG\r\n")
                # +OK or INFO: keep reading
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._reader = threading.Thread(target=self._read_loop, name="nats-reader", daemon=True)
        self._reader.start()

    # -------------------------------------------------------------- reading

    def _read_line_blocking(self, sock) -> bytes:
        while True:
            i = self._buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[:i + 2]
                return line
            if len(self._buf) > MAX_LINE:
                raise ConnectionError("protocol line too long")
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self._buf += chunk

    def _read_loop(self) -> None:
        try:
            while not self._closed.is_set():
                while self._parse_one():
                    pass
                try:
                    chunk = self._sock.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                self._buf += chunk
        except Exception as e:  # a protocol error ends the connection
            self.last_error = f"reader: {e}"
        finally:
            self._closed.set()
            with self._lock:
                pongs, self._pongs = self._pongs, []
            for ev in pongs:
                ev.set()  # waiters see the connection closed

    def _parse_one(self) -> bool:
        """Handle one complete protocol message from the buffer, if any."""
        buf = self._buf
        i = buf.find(b"\r\n")
        if i < 0:
            if len(buf) > MAX_LINE:
                raise ConnectionError("protocol line too long")
            return False
        line = bytes(buf[:i])
        op, _, rest = line.partition(b" ")
        op = op.upper()
        if op in (b"MSG", b"HMSG"):
            parts = rest.split()
            if op == b"MSG":
                if len(parts) not in (3, 4):
                    raise ConnectionError(f"bad MSG line {line!r}")
                subject, sid = parts[0], parts[1]
                reply = parts[2] if len(parts) == 4 else None
                hdr_len, total = 0, int(parts[-1])
            else:
                if len(parts) not in (4, 5):
                    raise ConnectionError(f"bad HMSG line {line!r}")
                subject, sid = parts[0], parts[1]
                reply = parts[2] if len(parts) == 5 else None
                hdr_len, total = int(parts[-2]), int(parts[-1])
            if total < 0 or total > MAX_PAYLOAD or hdr_len < 0 or hdr_len > total:
                raise ConnectionError(f"bad sizes in {line!r}")
            need = i + 2 + total + 2
            if len(buf) < need:
                return False  # payload not complete yet: wait for more bytes
            body = bytes(buf[i + 2:i + 2 + total])
            if buf[i + 2 + total:need] != b"\r\n":
                raise ConnectionError("payload not followed by CRLF")
            del buf[:need]
            headers = _decode_headers(body[:hdr_len]) if hdr_len else {}
            msg = Msg(subject.decode(), reply.decode() if reply else None, headers, body[hdr_len:])
            with self._lock:
                sub = self._subs.get(int(sid))
            if sub is not None:
                sub._msgs.put(msg)
            return True
        del buf[:i + 2]
        if op == b"PING":
            self._send(b"PONG\r\n")
        elif op == b"PONG":
            with self._lock:
                ev = self._pongs.pop(0) if self._pongs else None
            if ev:
                ev.set()
        elif op == b"INFO":
            try:
                self.server_info.update(json.loads(rest))
            except ValueError:
                pass
        elif op == b"-ERR":
            self.last_error = rest.decode("utf-8", "replace")
        # +OK and unknown ops are ignored
        return True

    # -------------------------------------------------------------- writing

    def _send(self, data: bytes) -> None:
        if self._closed.is_set():
            raise ConnectionError("connection closed")
        try:
            with self._wlock:
                self._sock.sendall(data)
        except OSError as e:
            self._closed.set()
            raise ConnectionError(f"send failed: {e}") from e

    @property
    def is_connected(self) -> bool:
        return not self._closed.is_set()

    def subscribe(self, subject: str, queue: Optional[str] = None) -> Subscription:
        with self._lock:
            sid = self._next_sid
            self._next_sid += 1
            sub = Subscription(self, sid, subject, queue)
            self._subs[sid] = sub
        q = f" {queue}" if queue else ""
        self._send(f"SUB {subject}{q} {sid}\r\n".encode())
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.pop(sub.sid, None)
        if not self._closed.is_set():
            self._send(f"UNSUB {sub.sid}\r\n".encode())

    def publish(self, subject: str, data: bytes = b"", headers: Optional[Dict[str, str]] = None,
                reply: Optional[str] = None) -> None:
        if isinstance(data, str):
            data = data.encode()
        r = f" {reply}" if reply else ""
        if headers:
            hdr = _encode_headers(headers)
            line = f"HPUB {subject}{r} {len(hdr)} {len(hdr) + len(data)}\r\n".encode()
            self._send(line + hdr + data + b"\r\n")
        else:
            line = f"PUB {subject}{r} {len(data)}\r\n".encode()
            self._send(line + data + b"\r\n")

    def flush(self, timeout: float = 5.0) -> None:
        """Round trip to the server: everything sent before was processed."""
        ev = threading.Event()
        with self._lock:
            self._pongs.append(ev)
        try:
            self._send(b"PING\r\n")
        except ConnectionError:
            with self._lock:
                if ev in self._pongs:
                    self._pongs.remove(ev)
            raise
        if not ev.wait(timeout):
            raise TimeoutError("no PONG from the server")
        if self._closed.is_set():
            raise ConnectionError("connection closed")

    def request(self, subject: str, data: bytes = b"", headers: Optional[Dict[str, str]] = None,
                timeout: float = 5.0) -> Msg:
        """Publish with a fresh inbox as reply subject; the first answer.
        NoRespondersError when nobody listens, TimeoutError when no answer."""
        inbox = "_INBOX." + uuid.uuid4().hex
        sub = self.subscribe(inbox)
        try:
            self.publish(subject, data, headers=headers, reply=inbox)
            msg = sub.next(timeout)
            if msg.status == "503" and not msg.data:
                raise NoRespondersError(f"no responders on {subject!r}")
            return msg
        finally:
            if not self._closed.is_set():
                try:
                    sub.unsubscribe()
                except ConnectionError:
                    pass

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._reader.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> "NatsClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------- JetStream
# The few JetStream API calls the tests need, as raw request/reply on
# $JS.API.* (what the nats CLI sends). A server answers {"error": {...}} for
# a refused call; that becomes JetStreamError with its err_code.


class JetStreamError(Exception):
    def __init__(self, code: int, err_code: int, description: str):
        super().__init__(f"{description} (code {code}, err_code {err_code})")
        self.code, self.err_code, self.description = code, err_code, description


def js_api(nc: "NatsClient", api: str, body: Optional[dict] = None, timeout: float = 5.0) -> dict:
    """One $JS.API.<api> request; the decoded answer, or JetStreamError."""
    data = json.dumps(body).encode() if body is not None else b""
    reply = json.loads(nc.request("$JS.API." + api, data, timeout=timeout).data or b"{}")
    err = reply.get("error")
    if err:
        raise JetStreamError(err.get("code", 0), err.get("err_code", 0), err.get("description", ""))
    return reply


def js_stream_create(nc: "NatsClient", name: str, subjects: Sequence[str],
                     duplicate_window_s: float = 120, storage: str = "file") -> dict:
    """Create a stream (limits retention); its info."""
    cfg = {"name": name, "subjects": list(subjects), "storage": storage, "retention": "limits",
           "num_replicas": 1, "duplicate_window": int(duplicate_window_s * 1e9)}
    return js_api(nc, f"STREAM.CREATE.{name}", cfg)


def js_stream_info(nc: "NatsClient", name: str) -> dict:
    return js_api(nc, f"STREAM.INFO.{name}")


def js_stream_delete(nc: "NatsClient", name: str) -> dict:
    return js_api(nc, f"STREAM.DELETE.{name}")


def js_stream_msg_get(nc: "NatsClient", name: str, seq: int) -> Msg:
    """The stored message at stream sequence seq, as a Msg (subject,
    headers, data)."""
    m = js_api(nc, f"STREAM.MSG.GET.{name}", {"seq": seq})["message"]
    raw = base64.b64decode(m.get("hdrs", "")) if m.get("hdrs") else b""
    headers = _decode_headers(raw) if raw else {}
    return Msg(m["subject"], None, headers, base64.b64decode(m.get("data", "")))


def js_stream_messages(nc: "NatsClient", name: str, subject: Optional[str] = None) -> list:
    """Every message the stream holds, oldest first (on subject only, when
    given)."""
    state = js_stream_info(nc, name)["state"]
    out = []
    for seq in range(state.get("first_seq", 1), state.get("last_seq", 0) + 1):
        try:
            m = js_stream_msg_get(nc, name, seq)
        except JetStreamError as e:
            if e.err_code == 10037:  # deleted message: no longer there
                continue
            raise
        if subject is None or m.subject == subject:
            out.append(m)
    return out
