#!/usr/bin/python3
"""End-to-end events benchmark (issue 4): bench_apiserver -> collect-agent -> nats-server -> bench_nats_sink.

For each framing ("event": one watch line per HTTP chunk, as kube-apiserver
writes them; "64k": the lines packed into 64 KiB chunks) it:
  1. starts nats-server (-a 127.0.0.1, random port), bench_apiserver with N
     pre-generated Warning Events held back (--hold), bench_nats_sink, and the
     agent (--cluster-id bench, a kubeconfig pointing at http://127.0.0.1:P
     with a token, dedup window 0, no namespace rate limit, log level warn);
  2. pins the agent to one core (CPU 1) and everything else, this script
     included, to the other (CPU 0);
  3. once the agent's WATCH is open, snapshots the agent's CPU time
     (utime+stime of /proc/<pid>/stat), releases the stream (SIGUSR1) and
     waits until the sink has all N events (or goes idle);
  4. reports events/s end to end (first to last message at the sink), agent
     CPU seconds per 100k events, peak RSS (VmHWM), events sent / received,
     agent_events_{received,published,dropped}_total from /metrics, and the
     server's own send time.
Then a latency run: --rate events/s for --latency-seconds, one event per
chunk, each stamped with its send time; the sink reports p50/p99/max.

Prints a Markdown table (and, with --json FILE, the raw rows). Not a test:
it asserts nothing. Needs a release build:

    meson setup build-bench --buildtype=release && ninja -C build-bench
    /usr/bin/python3 bench/events_pipeline.py --build build-bench [--count 200000] [--repeat 3]
    # profile: flat, then inclusive (children) with DWARF call graphs on fewer events
    /usr/bin/python3 bench/events_pipeline.py --count 200000 --repeat 1 --rate 0 --perf /tmp/perf
    perf report -i /tmp/perf/perf-event-max.data --no-children --sort dso,sym --stdio
"""
import argparse
import json
import os
import queue
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from lib.agentproc import free_port  # noqa: E402
from lib.nats import NatsServer  # noqa: E402

TOKEN = "bench-token-0123456789"
CLUSTER = "bench"
AGENT_CPU = 1
OTHER_CPU = 0
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Proc:
    """A child whose stdout JSON lines are collected by a reader thread."""

    def __init__(self, argv, cpu, env=None, stderr=None):
        def pin():
            os.sched_setaffinity(0, {cpu})
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr or subprocess.DEVNULL,
                                  stdin=subprocess.DEVNULL, env=env, preexec_fn=pin)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.p.stdout:
            try:
                self.lines.put(json.loads(raw))
            except ValueError:
                pass

    def wait_line(self, key, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {key!r} line from {self.p.args[0]}")
            try:
                obj = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.p.poll() is not None:
                    raise RuntimeError(f"{self.p.args[0]} exited with {self.p.returncode}") from None
                continue
            if key in obj:
                return obj

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def cpu_seconds(pid):
    """(user, system) CPU seconds of the whole process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime and stime are fields 14 and 15.
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def ctx_switches(pid):
    """Voluntary + involuntary context switches per thread: {"tid name": n}."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            n, name = 0, "?"
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("Name:"):
                        name = line.split(None, 1)[1].strip()
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        n += int(line.split()[1])
            out[f"{tid} {name}"] = n
        except OSError:
            pass
    return out


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for name in ("agent_events_received_total", "agent_events_published_total",
                 "agent_events_dropped_total", "agent_events_filtered_total",
                 "agent_kube_watch_restarts_total", "agent_nats_js_acked_total", "agent_nats_js_dropped_total"):
        m = re.search(r"^" + name + r"(\{[^}]*\})? (\S+)$", text, re.M)
        out[name] = float(m.group(2)) if m else None
    return out


def write_kubeconfig(path, port):
    with open(path, "w") as f:
        f.write(f"""apiVersion: v1
kind: Config
clusters:
- name: bench
  cluster:
    server: http://127.0.0.1:{port}
users:
- name: bench
  user:
    token: {TOKEN}
contexts:
- name: bench
  context:
    cluster: bench
    user: bench
current-context: bench
""")


def run_once(args, framing, count, rate):
    tmp = tempfile.mkdtemp(prefix="ca-bench-events-")
    bindir = os.path.join(args.build, "bench")
    procs = []
    # inherits this script's affinity (CPU 0); with --jetstream a file store
    # in the run's temporary directory
    nats = NatsServer(args=["-js", "-sd", os.path.join(tmp, "js")] if args.jetstream else [])
    nats.start()
    try:
        srv_argv = [os.path.join(bindir, "bench_apiserver"), "--count", str(count), "--framing", framing,
                    "--hold", "--token", TOKEN, "--node", "node-a"]
        if rate:
            srv_argv += ["--rate", str(rate)]
        srv = Proc(srv_argv, OTHER_CPU)
        procs.append(srv)
        ready = srv.wait_line("ready", 120)
        kubeconfig = os.path.join(tmp, "kubeconfig")
        write_kubeconfig(kubeconfig, ready["ready"])

        idle = 10 if not rate else 5
        sink = Proc([os.path.join(bindir, "bench_nats_sink"), "--url", nats.url, "--cluster", CLUSTER,
                     "--expect", str(count), "--idle", str(idle), "--start-timeout", "120"], OTHER_CPU)
        procs.append(sink)
        sink.wait_line("ready", 30)

        http_port = free_port()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tmp,
            "NODE_NAME": "node-a",
            "COLLECT_AGENT_HTTP_LISTEN": f"127.0.0.1:{http_port}",
            "COLLECT_AGENT_LOG_LEVEL": "warn",
            "COLLECT_AGENT_EVENTS_DEDUP_WINDOW": "0",
            "COLLECT_AGENT_EVENTS_NAMESPACE_RATE": "0",
            # bench_apiserver speaks plain HTTP on loopback (no TLS cost in the figures)
            "COLLECT_AGENT_KUBERNETES_ALLOW_INSECURE_HTTP": "true",
            # bench_apiserver serves Events only: the metrics collector
            # (bench/metrics_scale.py measures it) would only retry 404s.
            "COLLECT_AGENT_METRICS_ENABLED": "false",
        }
        if args.jetstream:
            # events through JetStream, acknowledged one by one; the agent
            # creates the stream (file storage, 2 m duplicate window)
            env["COLLECT_AGENT_NATS_JETSTREAM_ENABLED"] = "true"
            env["COLLECT_AGENT_NATS_JETSTREAM_CREATE_STREAM"] = "true"
        agent_log = open(os.path.join(tmp, "agent.log"), "wb")
        agent = Proc([*shlex.split(args.agent_wrapper), os.path.join(args.build, "collect-agent"), "--cluster-id", CLUSTER,
                      "--kubeconfig", kubeconfig, "--nats", nats.url], AGENT_CPU, env=env, stderr=agent_log)
        procs.append(agent)
        srv.wait_line("watch_open", 120)
        time.sleep(0.2)  # let start-up settle (registration, first heartbeat)
        load_before = os.getloadavg()[0]
        perf = None
        if args.perf:
            os.makedirs(args.perf, exist_ok=True)
            perf_out = os.path.join(args.perf, f"perf-{framing}-{rate or 'max'}.data")
            cg = ["--call-graph", args.perf_callgraph] if args.perf_callgraph != "none" else []
            perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", *cg, "-o", perf_out,
                                     "-p", str(agent.p.pid)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        cpu0 = cpu_seconds(agent.p.pid)
        cs0 = ctx_switches(agent.p.pid)
        os.kill(srv.p.pid, signal.SIGUSR1)
        rss_max = 0
        summary = None
        while summary is None:
            try:
                summary = sink.wait_line("count", 0.05)
            except TimeoutError:
                if agent.p.poll() is None:
                    rss_max = max(rss_max, status_kb(agent.p.pid, "VmRSS"))
        cpu1 = cpu_seconds(agent.p.pid)
        cs1 = ctx_switches(agent.p.pid)
        per_thread = {k: v - cs0.get(k, 0) for k, v in cs1.items()}
        nthreads = len(cs1)
        cs_total = sum(per_thread.values())
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=30)
        hwm = status_kb(agent.p.pid, "VmHWM")
        rss_end = status_kb(agent.p.pid, "VmRSS")
        metrics = scrape(http_port)
        try:
            done = srv.wait_line("watch_done", 5)
        except TimeoutError:
            done = {}
        load_after = os.getloadavg()[0]
        received = summary["count"]
        return {
            "framing": framing, "count": count, "rate_target": rate,
            "sent": done.get("sent"), "received": received,
            "events_per_s": summary["rate"], "seconds": summary["seconds"],
            "agent_cpu_s": sum(cpu1) - sum(cpu0),
            "agent_user_s": cpu1[0] - cpu0[0], "agent_sys_s": cpu1[1] - cpu0[1],
            "cpu_s_per_100k": (sum(cpu1) - sum(cpu0)) * 100000 / received if received else None,
            "peak_rss_mib": hwm / 1024, "max_sampled_rss_mib": rss_max / 1024, "end_rss_mib": rss_end / 1024,
            "p50_ms": summary["p50_ms"], "p99_ms": summary["p99_ms"], "max_ms": summary["max_ms"],
            "latency_samples": summary["latency_samples"], "sink_dropped": summary["dropped"],
            "sink_end": summary["reason"],
            "server_send_s": done.get("seconds"), "server_rate": done.get("rate"),
            "ctx_switches_per_event": cs_total / received if received else None, "threads": nthreads,
            "ctx_switches_by_thread": per_thread,
            "metrics": metrics, "load_before": load_before, "load_after": load_after,
        }
    finally:
        for p in reversed(procs):
            p.stop()
        nats.stop()


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"), help="release build directory")
    ap.add_argument("--count", type=int, default=200000)
    ap.add_argument("--repeat", type=int, default=3, help="runs per framing (medians reported)")
    ap.add_argument("--framings", default="event,64k")
    ap.add_argument("--rate", type=int, default=1000, help="latency run: events/s (0 = skip)")
    ap.add_argument("--latency-seconds", type=int, default=20)
    ap.add_argument("--json", help="also write the raw rows here")
    ap.add_argument("--perf", help="record the agent with perf (cpu-clock) into this directory")
    ap.add_argument("--agent-wrapper", default="", help='e.g. "valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out"')
    ap.add_argument("--perf-callgraph", default="none", help="none (flat, least overhead), fp or dwarf")
    ap.add_argument("--jetstream", action="store_true",
                    help="nats-server -js, the agent in JetStream mode (nats.jetstream.enabled, create_stream)")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    if len(os.sched_getaffinity(0)) < 2 and os.cpu_count() < 2:
        sys.exit("needs 2 CPUs (agent on CPU 1, the rest on CPU 0)")
    os.sched_setaffinity(0, {OTHER_CPU})

    rows = []
    for framing in args.framings.split(","):
        for i in range(args.repeat):
            r = run_once(args, framing, args.count, 0)
            rows.append(r)
            print(f"# {framing} run {i + 1}: {r['events_per_s']:.0f} events/s, "
                  f"{r['cpu_s_per_100k']:.3f} CPU s/100k (user {r['agent_user_s']:.2f} s, sys {r['agent_sys_s']:.2f} s), peak RSS {r['peak_rss_mib']:.1f} MiB, "
                  f"{r['ctx_switches_per_event']:.2f} ctx switches/event ({r['threads']} threads), "
                  f"{r['received']}/{r['sent']} received, dropped {r['metrics']['agent_events_dropped_total']}, "
                  f"load {r['load_before']:.2f}->{r['load_after']:.2f}", file=sys.stderr, flush=True)
    lat = []
    if args.rate:
        for i in range(args.repeat):
            r = run_once(args, "event", args.rate * args.latency_seconds, args.rate)
            lat.append(r)
            print(f"# latency run {i + 1}: p50 {r['p50_ms']:.3f} ms p99 {r['p99_ms']:.3f} ms "
                  f"max {r['max_ms']:.3f} ms ({r['latency_samples']} samples), "
                  f"load {r['load_before']:.2f}->{r['load_after']:.2f}", file=sys.stderr, flush=True)

    print(f"\nN = {args.count} events, {args.repeat} run(s) per framing, medians "
          f"(agent pinned to CPU {AGENT_CPU}; nats-server, bench_apiserver, sink on CPU {OTHER_CPU})\n")
    print("| framing | events/s end to end | agent CPU s / 100k events | peak RSS (VmHWM) | "
          "received / sent | agent dropped | server send time (paced by the agent) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for framing in args.framings.split(","):
        rs = [r for r in rows if r["framing"] == framing]
        med = lambda k: statistics.median(r[k] for r in rs if r[k] is not None)  # noqa: E731
        print(f"| {framing} | {med('events_per_s'):,.0f} | {med('cpu_s_per_100k'):.3f} | "
              f"{max(r['peak_rss_mib'] for r in rs):.1f} MiB (max of runs) | "
              f"{min(r['received'] for r in rs)} / {rs[0]['sent']} (worst) | "
              f"{max(r['metrics']['agent_events_dropped_total'] or 0 for r in rs):.0f} | "
              f"{med('server_send_s'):.2f} s |")
    if lat:
        print(f"\nLatency at {args.rate} events/s for {args.latency_seconds} s (one event per chunk), "
              "watch write -> NATS subscriber receive:\n")
        print("| run | samples | p50 | p99 | max | peak RSS |")
        print("|---|---:|---:|---:|---:|---:|")
        for i, r in enumerate(lat):
            print(f"| {i + 1} | {r['latency_samples']} | {r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms | "
                  f"{r['max_ms']:.3f} ms | {r['peak_rss_mib']:.1f} MiB |")
        print(f"| median | | {statistics.median(r['p50_ms'] for r in lat):.3f} ms | "
              f"{statistics.median(r['p99_ms'] for r in lat):.3f} ms | "
              f"{statistics.median(r['max_ms'] for r in lat):.3f} ms | |")
    print("\nPer run:\n")
    print("| framing | rate target | events/s | CPU s/100k | user / sys s | ctx switches/event | VmHWM MiB | received/sent | "
          "metrics received/published/dropped | load before/after |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows + lat:
        m = r["metrics"]
        print(f"| {r['framing']} | {r['rate_target'] or 'max'} | {r['events_per_s']:,.0f} | "
              f"{fmt(r['cpu_s_per_100k'], '.3f')} | {r['agent_user_s']:.2f} / {r['agent_sys_s']:.2f} | "
              f"{fmt(r['ctx_switches_per_event'], '.2f')} | {r['peak_rss_mib']:.1f} | {r['received']}/{r['sent']} | "
              f"{fmt(m['agent_events_received_total'], '.0f')}/{fmt(m['agent_events_published_total'], '.0f')}/"
              f"{fmt(m['agent_events_dropped_total'], '.0f')} | {r['load_before']:.2f}/{r['load_after']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"pipeline": rows, "latency": lat}, f, indent=1)


if __name__ == "__main__":
    main()
