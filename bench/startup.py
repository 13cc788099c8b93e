#!/usr/bin/env python3
"""Start-to-ready time and idle memory of collect-agent.

Starts a local nats-server (and, with --kubesim, the simulated API server),
then starts the agent N times and measures for each run:
  - start-to-ready: from just before exec to the first 200 from /health/ready,
    polled every millisecond;
  - idle RSS: VmRSS and VmHWM from /proc/<pid>/status after --idle seconds.
Prints a table and the medians. Not a test: it asserts nothing.

    /usr/bin/python3 bench/startup.py [--runs 10] [--idle 5] [--kubesim] [--agent build/collect-agent]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "kubesim"))
from lib.agentproc import free_port  # noqa: E402
from lib.nats import NatsServer  # noqa: E402


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def ready(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=0.5) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--idle", type=float, default=5.0)
    ap.add_argument("--kubesim", action="store_true", help="also require the simulated API server")
    ap.add_argument("--agent", default=os.path.join(ROOT, "build", "collect-agent"))
    args = ap.parse_args()

    nats = NatsServer()
    nats.start()
    sim = None
    tmp = tempfile.mkdtemp(prefix="ca-bench-")
    extra = []
    if args.kubesim:
        from fixtures import KubeSim
        sim = KubeSim(os.path.join(tmp, "kubesim"))
        sim.__enter__()
        extra = ["--kubeconfig", sim.kubeconfig]
    rows = []
    try:
        for i in range(args.runs):
            port = free_port()
            env = {"PATH": os.environ["PATH"], "COLLECT_AGENT_HTTP_LISTEN": f"127.0.0.1:{port}",
                   "COLLECT_AGENT_LOG_LEVEL": "warn", "NODE_NAME": "node-a"}
            t0 = time.perf_counter()
            proc = subprocess.Popen([args.agent, "--nats", nats.url, "--cluster-id", "bench", *extra],
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while not ready(port):
                if proc.poll() is not None:
                    raise SystemExit(f"agent exited with {proc.returncode}")
                if time.perf_counter() - t0 > 30:
                    raise SystemExit("agent not ready after 30 s")
                time.sleep(0.001)
            t_ready = (time.perf_counter() - t0) * 1000
            time.sleep(args.idle)
            rss = status_kb(proc.pid, "VmRSS")
            hwm = status_kb(proc.pid, "VmHWM")
            proc.terminate()
            proc.wait(timeout=10)
            rows.append((t_ready, rss, hwm))
            print(f"run {i + 1}: ready {t_ready:7.1f} ms   idle RSS {rss / 1024:5.2f} MiB   peak RSS {hwm / 1024:5.2f} MiB")
    finally:
        if sim:
            sim.__exit__(None, None, None)
        nats.stop()
    print(f"median: ready {statistics.median(r[0] for r in rows):.1f} ms, "
          f"idle RSS {statistics.median(r[1] for r in rows) / 1024:.2f} MiB, "
          f"peak RSS {statistics.median(r[2] for r in rows) / 1024:.2f} MiB over {len(rows)} runs")


if __name__ == "__main__":
    main()
