#!/usr/bin/python3
"""The metrics collector at the Kubernetes scalability envelope (issue 9):
kubesim with 10,000 namespaces, 5,000 nodes and 150,000 pods (1 %
unhealthy) -> collect-agent -> nats-server -> this script.

  1. starts nats-server and kubesim (tests/kubesim, metrics.k8s.io served),
     populates it, then starts the agent (events off, so only the collector
     lists; --interval between samples);
  2. initial sync: agent start to /health/ready 200, and to the first
     complete sample (every part 1..parts of one sample_id), whose totals
     must match the populated cluster;
  3. one sample's CPU time (agent_metrics_sample_duration_seconds, sum /
     count of the samples taken), its parts and bytes;
  4. steady state: --churn-minutes with 1 % of the pods changed per minute
     (kubesim's /churn, spread over the minute): the agent's CPU time per
     minute (utime+stime from /proc);
  5. peak RSS (VmHWM) of the agent, against its memory budget and the
     Deployment's 128 MiB limit.

Prints a Markdown table. Not a test: it only checks the sample's totals.
Needs a release build:

    meson setup build-bench --buildtype=release && ninja -C build-bench
    /usr/bin/python3 bench/metrics_scale.py --build build-bench
    /usr/bin/python3 bench/metrics_scale.py --build build-bench --metrics-server
        # metrics.k8s.io ignoring limit as metrics-server does: the PodMetrics
        # list does not fit, usage is read namespace by namespace
"""
import argparse
import os
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "lib"),
                os.path.join(ROOT, "tests", "kubesim")]
from fixtures import KubeSim  # noqa: E402
from lib.agentproc import Agent  # noqa: E402
from lib.metrics_helpers import SampleCollector  # noqa: E402
from lib.nats import NatsClient, NatsServer  # noqa: E402


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    return out


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def prom(text, name):
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--pods", type=int, default=150000)
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--namespaces", type=int, default=10000)
    ap.add_argument("--interval", default="20s")
    ap.add_argument("--churn-minutes", type=float, default=3)
    ap.add_argument("--metrics-server", action="store_true",
                    help="metrics.k8s.io ignores limit, as metrics-server does: the PodMetrics "
                         "list does not fit and usage is read namespace by namespace")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="metrics-scale-")
    rows = []

    with NatsServer() as nats, KubeSim(os.path.join(tmp, "sim")) as sim:
        sim.metrics_api(True, paginate=not args.metrics_server)
        t0 = time.monotonic()
        # The envelope counts every object: kubesim already holds 3
        # namespaces (default, kube-public, kube-system) and node-a.
        sim.populate(namespaces=args.namespaces - 3, nodes=args.nodes - 1, pods=args.pods,
                     unhealthy_fraction=0.01, seed=1)
        rows.append(("kubesim populate", f"{time.monotonic() - t0:.1f} s"))

        client = NatsClient(nats.url)
        col = SampleCollector(client.subscribe("agent.metrics.bench"))
        client.flush()
        os.environ["AGENT_BIN"] = os.path.join(os.path.abspath(args.build), "collect-agent")
        agent = Agent(tmp, args=["--nats", nats.url, "--kubeconfig", sim.kubeconfig, "--cluster-id", "bench"],
                      env={"COLLECT_AGENT_METRICS_INTERVAL": args.interval,
                           "COLLECT_AGENT_EVENTS_ENABLED": "false", "COLLECT_AGENT_LOG_LEVEL": "info"})
        started = time.monotonic()
        agent.start()
        pid = agent.proc.pid
        deadline = started + 300
        while agent.get("/health/ready")[0] != 200:
            if time.monotonic() > deadline:
                raise SystemExit("agent not ready in 300 s: %s\n%s" % (agent.get("/health/ready")[1],
                                                                       agent.logs()[-3000:]))
            time.sleep(0.2)
        ready_s = time.monotonic() - started
        rows.append(("initial sync (start to /health/ready)", f"{ready_s:.1f} s"))
        rss_sync = proc_status(pid)

        want_ns = args.namespaces
        sample = col.next_sample(lambda s: s["summary"]["pods"]["running"] + s["summary"]["pods"]["pending"]
                                 >= args.pods * 0.98 and s["summary"]["namespaces"] == want_ns, timeout=300)
        first_s = time.monotonic() - started
        sm = sample["summary"]
        total = sum(sm["pods"].values())
        assert total == args.pods, (total, args.pods)
        assert sm["nodes_total"] == args.nodes, sm["nodes_total"]
        assert len(sample["nodes"]) == args.nodes and len(sample["namespaces"]) == want_ns
        parts = col.parts[sample["sample_id"]]
        nbytes = sum(len(m.data) for m, _ in parts)
        rows.append(("first complete sample after start", f"{first_s:.1f} s"))
        rows.append(("sample: parts, bytes (JSON)", f"{len(parts)}, {nbytes / 1e6:.1f} MB"))
        rows.append(("sample: unhealthy pods (listed / total)",
                     f"{len(sample['unhealthy_pods'])} / {sm['unhealthy_pods']}"))
        rows.append(("usage available", str(sample["usage_available"])))
        wait = time.monotonic() + 120
        while agent.health()["metrics"]["usage"]["passes"] < 2 and time.monotonic() < wait:
            time.sleep(1)
        usage = agent.health()["metrics"]["usage"]
        rows.append(("usage: mode, passes, last pass", f"{usage['mode']}, {usage['passes']}, "
                     f"{usage['last_pass_ms'] / 1000:.1f} s"))

        text = urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/metrics", timeout=5).read().decode()
        n = prom(text, "agent_metrics_sample_duration_seconds_count")
        ssum = prom(text, "agent_metrics_sample_duration_seconds_sum")
        rows.append(("CPU of one sample (mean of %d)" % int(n or 0), f"{1000 * ssum / n:.0f} ms" if n else "-"))
        health = agent.health()
        budget = health.get("memory_budget_bytes", 0)
        stores = health["metrics"]["stores"]
        rows.append(("store bytes: pods / nodes / namespaces",
                     " / ".join(f"{stores[k]['bytes'] / 2**20:.1f} MiB" for k in ("pods", "nodes", "namespaces"))))
        rows.append(("RSS after sync", f"{rss_sync['VmRSS'] / 1024:.1f} MiB"))

        # Steady state: 1 % of the pods per minute, in ten steps a minute.
        per_step = max(1, args.pods // 100 // 10)
        cpu0, t1 = cpu_seconds(pid), time.monotonic()
        steps = int(args.churn_minutes * 10)
        for i in range(steps):
            sim.churn(resource="pods", count=per_step, seed=i)
            time.sleep(max(0.0, t1 + (i + 1) * 6 - time.monotonic()))
        minutes = (time.monotonic() - t1) / 60
        cpu_min = (cpu_seconds(pid) - cpu0) / minutes
        rows.append((f"steady state, {per_step * 10} pods changed a minute",
                     f"{cpu_min:.2f} CPU s per minute ({100 * cpu_min / 60:.2f} % of a core)"))
        st = proc_status(pid)
        rows.append(("peak RSS (VmHWM)", f"{st['VmHWM'] / 1024:.1f} MiB"))
        rows.append(("memory budget (--check-config)", f"{budget / 2**20:.1f} MiB of 128 MiB"))
        text = urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/metrics", timeout=5).read().decode()
        n2 = prom(text, "agent_metrics_sample_duration_seconds_count")
        s2 = prom(text, "agent_metrics_sample_duration_seconds_sum")
        rows.append(("CPU of one sample (mean of all %d)" % int(n2 or 0), f"{1000 * s2 / n2:.0f} ms" if n2 else "-"))
        agent.stop()
        client.close()

    print("| measure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
