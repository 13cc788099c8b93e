"""Helpers for the executor's tests: fresh commands, sending them over NATS
in either encoding, the sandbox probe installed as a tool, and a beacon
that counts every exec of it (how a test proves a rejected command started
no process)."""
import datetime
import json
import os
import shutil
import socket
import threading
import uuid

from lib import agentpb

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def probe_binary():
    build = os.path.dirname(os.environ.get("AGENT_BIN", os.path.join(ROOT, "build", "collect-agent")))
    return os.path.join(build, "tests", "tools", "sandbox_probe")


def rfc3339(dt):
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def now_rfc3339(offset_seconds=0.0):
    return rfc3339(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_seconds))


def command(tool="kubectl", action="get", args=(), cluster_id="c1", **fields):
    """A fresh command: a new id, issued now, expiring in a minute."""
    cmd = {"id": "cmd-" + uuid.uuid4().hex, "cluster_id": cluster_id, "tool": tool, "action": action,
           "args": list(args), "issued_at": now_rfc3339(), "expires_at": now_rfc3339(60), "issuer": "tests"}
    cmd.update(fields)
    return cmd


def encode(cmd, encoding="json"):
    """(payload, headers) for cmd in the encoding."""
    if encoding == "protobuf":
        return agentpb.encode("Command", cmd), {"Content-Type": "application/x-protobuf"}
    return json.dumps(cmd).encode(), {"Content-Type": "application/json"}


def decode_result(data, encoding="json"):
    if encoding == "protobuf":
        return agentpb.decode("CommandResult", data)
    return json.loads(data)


def result_of(msg):
    """A CommandResult message decoded by its Content-Type (the agent's
    nats.encoding, whatever the command's)."""
    pb = msg.headers.get("Content-Type") == "application/x-protobuf"
    return decode_result(msg.data, "protobuf" if pb else "json")


def request(client, cmd, encoding="json", timeout=20, cluster_id="c1"):
    payload, headers = encode(cmd, encoding)
    reply = client.request(f"agent.command.{cluster_id}", payload, headers=headers, timeout=timeout)
    return result_of(reply)


class Beacon:
    """A loopback TCP listener; the probe connects to it on every start
    (when a file named `beacon` holding the port sits next to the probe)
    and sends its argv. execs() is what it heard."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self._lines = []
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while not data.endswith(b"\n"):
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
            with self._lock:
                self._lines.append(data.decode(errors="replace").rstrip("\n"))

    def execs(self):
        with self._lock:
            return list(self._lines)

    def close(self):
        self._stop = True
        self._thread.join(timeout=2)
        self.sock.close()


def install_probe(directory, name, beacon=None):
    """Copy the probe to directory/name (made 0755); with a beacon, every
    exec of it is reported there. Returns the path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    shutil.copyfile(probe_binary(), path)
    os.chmod(path, 0o755)
    if beacon is not None:
        with open(os.path.join(directory, "beacon"), "w") as f:
            f.write(str(beacon.port))
    return path


PROBE_ACTIONS = ("echo", "env", "fds", "write", "syscall", "sleep", "spawn-sleepers", "forkbomb", "alloc",
                 "flood", "cpu", "exit", "ls")


def exec_env(probe_path=None, kubectl_path=None, extra=None):
    """Agent env enabling the probe as tool `probe` (all its modes as
    actions) beside kubectl's default actions."""
    actions = ["kubectl get", "kubectl describe", "kubectl logs", "kubectl top", "kubectl events",
               "kubectl explain", "kubectl api-resources", "kubectl api-versions", "kubectl version",
               "kubectl cluster-info", "kubectl auth can-i"]
    env = {}
    if probe_path:
        env["COLLECT_AGENT_EXEC_ALLOWED_TOOLS"] = "kubectl,probe"
        env["COLLECT_AGENT_EXEC_TOOL_PATHS"] = f"probe={probe_path}"
        actions += [f"probe {a}" for a in PROBE_ACTIONS]
    env["COLLECT_AGENT_EXEC_ACTIONS"] = ",".join(actions)
    if kubectl_path:
        env["COLLECT_AGENT_EXEC_KUBECTL_PATH"] = kubectl_path
    if extra:
        env.update(extra)
    return env
