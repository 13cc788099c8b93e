"""Helpers for the end-to-end tests of the event watcher (issue 4):
decoding agent.event.* messages, collecting them until a condition or a
quiet period, reading /metrics and /health counters, the agent's RSS, and a
TCP gate that stands between the agent and nats-server so a test decides
when the agent may reconnect.

Stdlib only (plus tests/lib/agentpb.py for protobuf payloads)."""
import datetime
import json
import re
import socket
import threading
import time

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
TRUNC_MARKER = re.compile(r"\u2026\[truncated (\d+) bytes\]$")


# --------------------------------------------------------------- messages

def decode_message(msg, type_name):
    """One NATS message as a dict, by its Content-Type: JSON, or the
    protobuf message type_name of proto/agent.proto."""
    ct = msg.headers.get("Content-Type")
    if ct == "application/json":
        return json.loads(msg.data)
    assert ct == "application/x-protobuf", f"unexpected Content-Type {ct!r}"
    from lib import agentpb
    return agentpb.decode(type_name, msg.data)


def decode_event(msg):
    return decode_message(msg, "Event")


def field(d, path, default=""):
    """d["a"]["b"] for path "a.b"; default when a level is missing (protobuf
    decoding omits empty strings, JSON keeps them)."""
    cur = d
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def parse_time(s):
    """An RFC 3339 UTC timestamp as an aware datetime."""
    assert RFC3339.match(s), f"not RFC 3339 UTC: {s!r}"
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


class Received:
    """One event message: the decoded event plus its headers."""

    def __init__(self, msg):
        self.msg = msg
        self.headers = msg.headers
        self.event = decode_event(msg)
        self.uid = self.event.get("uid", "")
        self.count = int(self.event.get("count", 0))
        self.at = time.monotonic()

    def __repr__(self):
        return f"<event {self.uid} count={self.count} reason={self.event.get('reason')}>"


class EventCollector:
    """Everything that arrives on one subscription, decoded, in order."""

    def __init__(self, sub):
        self.sub = sub
        self.items = []

    def poll(self, timeout=0.1):
        """Take what arrived within timeout; returns how many were new."""
        n = 0
        try:
            self.items.append(Received(self.sub.next(timeout=timeout)))
            n += 1
        except TimeoutError:
            return 0
        for m in self.sub.drain():
            self.items.append(Received(m))
            n += 1
        return n

    def until(self, pred, timeout, what="condition"):
        """Collect until pred(self) is true; TimeoutError (with a summary)
        when it is not within timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if pred(self):
                return self
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out waiting for {what}: {len(self.items)} events, "
                                   f"{len(self.uids())} distinct uids")
            self.poll(min(0.2, max(0.01, deadline - time.monotonic())))

    def until_uids(self, uids, timeout, what=None):
        want = set(uids)
        return self.until(lambda c: want <= c.uids(), timeout,
                          what or f"{len(want)} uids (missing {len(want - self.uids())})")

    def quiet(self, seconds=1.0, limit=60.0):
        """Collect until nothing arrived for `seconds` (at most `limit`)."""
        deadline = time.monotonic() + limit
        last = time.monotonic()
        while time.monotonic() < deadline:
            if self.poll(0.1):
                last = time.monotonic()
            elif time.monotonic() - last >= seconds:
                return self
        raise TimeoutError(f"events kept arriving for {limit}s")

    def uids(self):
        return {r.uid for r in self.items}

    def keys(self):
        return [(r.uid, r.count) for r in self.items]

    def repeated(self):
        """(uid, count) pairs that arrived more than once."""
        seen, rep = set(), set()
        for k in self.keys():
            if k in seen:
                rep.add(k)
            seen.add(k)
        return rep

    def by_uid(self):
        out = {}
        for r in self.items:
            out.setdefault(r.uid, []).append(r)
        return out

    def take(self):
        """The items collected so far; the collector starts empty again."""
        items, self.items = self.items, []
        return items


# ---------------------------------------------------------- agent counters

def metric(agent, name, labels=None):
    """Value of one sample of /metrics (labels: dict that must be a subset of
    the sample's labels); None when absent."""
    status, text = agent.get("/metrics", timeout=5)
    assert status == 200, text
    return metric_in(text, name, labels)


def metric_in(text, name, labels=None):
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if labels and any(got.get(k) != v for k, v in labels.items()):
            continue
        return float(m.group(4))
    return None


def event_stats(agent):
    """The events section of /health (counters, queue, reflectors)."""
    return agent.health()["events"]


def rss_kib(pid):
    """VmRSS of a process in KiB (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def is_sanitized(pid):
    """True when the process runs with ASan (its RSS says nothing then)."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


# ------------------------------------------------------------------ gate

class TcpGate:
    """A TCP relay on 127.0.0.1 in front of an upstream port. While open, a
    connection is relayed byte for byte to the upstream; while closed, new
    connections are accepted and closed at once (the client sees the server
    go away and retries). close() also cuts the relayed connections.

    It lets a test bring nats-server back and subscribe before the agent
    can reconnect, without racing the agent's reconnect timer."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(("127.0.0.1", 0))
        self._lsock.listen(16)
        self.port = self._lsock.getsockname()[1]
        self._open = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns = []
        self.accepted = 0
        self.relayed = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-gate", daemon=True)
        self._thread.start()

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def open(self):
        self._open.set()

    def close(self):
        self._open.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            _shut(s)

    def stop(self):
        self._stop.set()
        self.close()
        _shut(self._lsock)
        self._lsock.close()
        self._thread.join(timeout=5)

    def _accept_loop(self):
        self._lsock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                c, _ = self._lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            if not self._open.is_set():
                _shut(c)
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
            except OSError:
                _shut(c)
                c.close()
                continue
            u.settimeout(None)
            c.settimeout(None)
            self.relayed += 1
            with self._lock:
                self._conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _shut(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        _shut(src)
        _shut(dst)
        # each side is closed by the pump that reads from it
        try:
            src.close()
        except OSError:
            pass
