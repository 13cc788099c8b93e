"""Start and watch a real collect-agent process for integration tests."""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def agent_binary():
    return os.environ.get("AGENT_BIN", os.path.join(ROOT, "build", "collect-agent"))


def free_port():
    # Outside the ephemeral range: see tests/lib/nats.py free_port.
    from lib.nats import free_port as _free_port
    return _free_port()


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Poll predicate until it returns a truthy value; raise on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - keep polling, report the last error
            last = e
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what} (last: {last!r})")


class Agent:
    """One collect-agent process. Logs go to a file under tmp_path; the HTTP
    endpoints listen on a free loopback port."""

    def __init__(self, tmp_path, args=(), env=None, name="agent"):
        self.tmp_path = tmp_path
        self.port = free_port()
        self.log_path = os.path.join(str(tmp_path), f"{name}.log")
        self.args = [agent_binary(), *args]
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "COLLECT_AGENT_HTTP_LISTEN": f"127.0.0.1:{self.port}",
            "COLLECT_AGENT_LOG_LEVEL": "debug",
        }
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                self.env[k] = os.environ[k]
        if env:
            self.env.update(env)
        self.proc = None
        self._log = None

    def start(self, wait_live=True):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        if wait_live:
            self._wait_with_log(lambda: self.get("/health/live")[0] == 200, 15, "agent /health/live")
        return self

    def _wait_with_log(self, predicate, timeout, what):
        """wait_for, but a timeout carries the agent's last log lines: a failed start
        in CI must say why, and the log file is gone once tmp_path is cleaned."""
        try:
            return wait_for(predicate, timeout=timeout, what=what)
        except TimeoutError as e:
            running = "running" if self.proc and self.proc.poll() is None else "exited"
            raise TimeoutError(f"{e}; agent {running}, last log lines:\n{self.logs()[-4000:]}") from None

    def get(self, path, timeout=2.0):
        """(status, body) of an HTTP GET on the agent; (0, error) when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except (urllib.error.URLError, ConnectionError, socket.timeout) as e:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
            return 0, str(e)

    def health(self):
        return json.loads(self.get("/health")[1])

    def wait_ready(self, timeout=15):
        return self._wait_with_log(lambda: self.get("/health/ready")[0] == 200, timeout, "agent ready")

    def logs(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def log_records(self):
        out = []
        for line in self.logs().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def terminate(self, sig=signal.SIGTERM, timeout=10):
        """Send sig and wait; returns (exit code, seconds taken)."""
        if not self.proc or self.proc.poll() is not None:
            return (self.proc.returncode if self.proc else None), 0.0
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        return code, time.monotonic() - t0

    def stop(self):
        code = None
        if self.proc and self.proc.poll() is None:
            code, _ = self.terminate()
        elif self.proc:
            code = self.proc.returncode
        if self._log:
            self._log.close()
            self._log = None
        return code

    def assert_clean_exit(self):
        """Fail when the process died of a signal or a sanitizer reported."""
        code = self.stop()
        text = self.logs()
        assert "ERROR: AddressSanitizer" not in text, text[-4000:]
        assert "runtime error:" not in text, text[-4000:]
        assert "ERROR: LeakSanitizer" not in text, text[-4000:]
        assert code == 0, f"agent exit code {code}\n{text[-4000:]}"


def run_agent_once(args, env=None, timeout=20):
    """Run collect-agent to completion (for --check-config, --version...)."""
    e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        if k in os.environ:
            e[k] = os.environ[k]
    if env:
        e.update(env)
    return subprocess.run([agent_binary(), *args], env=e, capture_output=True, text=True, timeout=timeout)
