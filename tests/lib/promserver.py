"""Run a real Prometheus server (Debian's /usr/bin/prometheus) for tests:
loopback only, a temporary config and storage directory, stopped by stop()."""
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request

from lib.agentproc import free_port, wait_for


def prometheus_binary():
    """The prometheus binary, or None: $PROMETHEUS_BIN, then $PATH."""
    path = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")
    return path if path and os.access(path, os.X_OK) else None


def listening_addresses(pid):
    """(address, port) of every TCP socket in LISTEN state that process pid
    holds, read from /proc: the address as text ("127.0.0.1", "::", ...)."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    out = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != "0A" or inode not in inodes:
                continue
            addr_hex, port_hex = local.split(":")
            raw = bytes.fromhex(addr_hex)
            if v6:
                # four host-order 32-bit words
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                import ipaddress
                addr = str(ipaddress.IPv6Address(raw))
            else:
                addr = ".".join(str(b) for b in raw[::-1])
            out.append((addr, int(port_hex, 16)))
    return out


class Prometheus:
    """One Prometheus server scraping the given targets every scrape_interval.
    It listens on 127.0.0.1:<free port> only."""

    def __init__(self, workdir, targets, job="collect-agent", scrape_interval="1s"):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = os.path.join(self.workdir, "prometheus.yml")
        self.storage = os.path.join(self.workdir, "data")
        self.log_path = os.path.join(self.workdir, "prometheus.log")
        self.job = job
        with open(self.config_path, "w") as f:
            f.write(
                "global:\n"
                f"  scrape_interval: {scrape_interval}\n"
                f"  scrape_timeout: {scrape_interval}\n"
                f"  evaluation_interval: {scrape_interval}\n"
                "scrape_configs:\n"
                f"  - job_name: {job}\n"
                "    metrics_path: /metrics\n"
                "    static_configs:\n"
                f"      - targets: {json.dumps(list(targets))}\n")
        self.proc = None
        self._log = None

    def start(self):
        binary = prometheus_binary()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.storage}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h",
             "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir)
        wait_for(lambda: self._ready(), timeout=30, interval=0.2, what="prometheus /-/ready")
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def logs(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def api(self, path, **params):
        """GET /api/v1/<path>; the decoded JSON answer, errors included
        (Prometheus answers 400 with {"status":"error",...} on a bad query)."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read())

    def query(self, expr):
        """The result of an instant query; raises on a query error."""
        ans = self.api("query", query=expr)
        if ans.get("status") != "success":
            raise AssertionError(f"query {expr!r}: {ans.get('errorType')}: {ans.get('error')}")
        return ans["data"]["result"]

    def targets(self):
        return self.api("targets")["data"]["activeTargets"]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log:
            self._log.close()
            self._log = None
        return self.proc.returncode if self.proc else None


def wait_scrapes(prom, n=3, timeout=30):
    """Wait until every target is up and has been scraped at least n times
    (so rate() over a short window has points)."""
    def done():
        ups = prom.query("up")
        counts = prom.query("count_over_time(up[5m])")
        return (ups and all(float(r["value"][1]) == 1 for r in ups)
                and len(counts) == len(ups) and all(float(r["value"][1]) >= n for r in counts))
    wait_for(done, timeout=timeout, interval=0.25, what=f"every target up, scraped {n} times")
