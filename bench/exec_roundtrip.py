#!/usr/bin/python3
"""The command executor's round trip (issue 10): a NATS request from this
script -> nats-server -> collect-agent (intake, policy, sandbox, the child,
the result) -> the reply, for a trivial allowed tool: the sandbox probe's
`exit 0` installed as tool `probe`.

  1. starts nats-server, kubesim (the agent needs an API server to be
     ready) and the agent (events and metrics off: only the executor works);
  2. --warmup requests, then --count requests one after another: the round
     trip as this script sees it (p50, p90, p99);
  3. the same number of NATS request-replies to a trivial responder in
     this script, the transport's own round trip;
  4. bench_sandbox (C): the sandbox's spawn+reap of the same probe against
     a bare fork/exec/wait of it.

The agent's overhead is the round trip less the transport's and less a
bare fork/exec/wait of the probe: what the agent adds (decode, checks,
private dir, spool files, sandbox set-up, pidfd and pipes on the loop,
encode, publish). Needs a release build:

    meson setup build-bench --buildtype=release && ninja -C build-bench
    /usr/bin/python3 bench/exec_roundtrip.py --build build-bench
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "lib"),
                os.path.join(ROOT, "tests", "kubesim")]


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def summary(name, ms):
    return f"| {name} | {statistics.median(ms):.2f} | {pct(ms, 90):.2f} | {pct(ms, 99):.2f} | {min(ms):.2f} |"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=50)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    os.environ["AGENT_BIN"] = os.path.join(build, "collect-agent")

    from fixtures import KubeSim
    from lib.agentproc import Agent
    from lib.exec_helpers import command, exec_env, install_probe
    from lib.nats import NatsClient, NatsServer

    tmp = tempfile.mkdtemp(prefix="exec-bench-")
    probe = install_probe(os.path.join(tmp, "tools"), "probe")
    work = os.path.join(tmp, "work")
    os.makedirs(work)
    with NatsServer() as nats, KubeSim(os.path.join(tmp, "kubesim")) as sim:
        env = exec_env(probe, extra={"COLLECT_AGENT_EXEC_WORK_DIR": work, "COLLECT_AGENT_LOG_LEVEL": "warn",
                                     "COLLECT_AGENT_EVENTS_ENABLED": "false",
                                     "COLLECT_AGENT_METRICS_ENABLED": "false"})
        agent = Agent(tmp, args=["--nats", nats.url, "--kubeconfig", sim.kubeconfig, "--cluster-id", "bench"],
                      env=env)
        agent.start()
        agent.wait_ready(timeout=30)
        client = NatsClient(nats.url)
        headers = {"Content-Type": "application/json"}

        def one():
            payload = json.dumps(command("probe", "exit", ["0"], cluster_id="bench")).encode()
            t0 = time.perf_counter()
            reply = client.request("agent.command.bench", payload, headers=headers, timeout=10)
            rtt = (time.perf_counter() - t0) * 1000
            r = json.loads(reply.data)
            assert r["status"] == "succeeded", r
            return rtt, r["duration_ms"]

        for _ in range(args.warmup):
            one()
        rtts, child = [], []
        for _ in range(args.count):
            a, b = one()
            rtts.append(a)
            child.append(b)
        with open(f"/proc/{agent.proc.pid}/status") as f:
            hwm = [line for line in f if line.startswith("VmHWM")][0].split()[1]
        agent.stop()

        # The transport alone: a responder in this process.
        responder = NatsClient(nats.url)
        sub = responder.subscribe("bench.echo")
        responder.flush()
        stop = False

        def echo():
            while not stop:
                try:
                    m = sub.next(timeout=0.5)
                except TimeoutError:
                    continue
                responder.publish(m.reply, m.data)

        th = threading.Thread(target=echo, daemon=True)
        th.start()
        payload = json.dumps(command("probe", "exit", ["0"], cluster_id="bench")).encode()
        for _ in range(args.warmup):
            client.request("bench.echo", payload, timeout=5)
        transport = []
        for _ in range(args.count):
            t0 = time.perf_counter()
            client.request("bench.echo", payload, timeout=5)
            transport.append((time.perf_counter() - t0) * 1000)
        stop = True
        th.join(timeout=2)
        client.close()
        responder.close()

    out = subprocess.run([os.path.join(build, "bench", "bench_sandbox")], capture_output=True, text=True,
                         check=True).stdout
    print(out.strip())
    bare = [line for line in out.splitlines() if line.startswith("bare")][0]
    bare_median_ms = float(bare.split("median")[1].split()[0]) / 1000.0
    print()
    print(f"{args.count} requests one after another; agent peak RSS {int(hwm) / 1024:.1f} MiB")
    print("| ms | p50 | p90 | p99 | min |")
    print("|---|---:|---:|---:|---:|")
    print(summary("round trip (request to result)", rtts))
    print(summary("transport alone (NATS request-reply, trivial responder)", transport))
    print(f"| the child as the result reports it (duration_ms) | {statistics.median(child):.0f} | "
          f"{pct(child, 90):.0f} | {pct(child, 99):.0f} | {min(child):.0f} |")
    overhead = statistics.median(rtts) - statistics.median(transport) - bare_median_ms
    print(f"\nagent overhead at p50: {statistics.median(rtts):.2f} - {statistics.median(transport):.2f} (transport)"
          f" - {bare_median_ms:.2f} (bare fork/exec/wait of the probe) = {overhead:.2f} ms")


if __name__ == "__main__":
    main()
