#!/usr/bin/python3
"""Issue 3 figure: watch-stream parse rate, next to the rates of the servers feeding it.

Three measurements, each repeated --repeat times (medians reported), with the
measured side on CPU 1 and its peer on CPU 0:
  1. bench_watch_parse (the agent's kube/watch.h parser alone, in process) on
     N ~1.3 KB Event watch lines: one event per feed, and 64 KiB feeds;
  2. bench_apiserver alone: its raw reader (bench_apiserver --read) takes a
     WATCH of N events in each framing and only de-chunks and counts lines;
  3. tests/kubesim alone (Python, HTTPS): --kubesim-count events are emitted,
     then a raw TLS reader in this script replays them with one WATCH from the
     resourceVersion before the burst and counts watch lines. The reader's
     own CPU time is printed so the reader is seen not to be the limit.
Prints a Markdown table. Not a test: it asserts nothing.

    /usr/bin/python3 bench/watch_stream_rate.py --build build-bench [--count 200000] [--repeat 3]
"""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "kubesim"))

MEASURED_CPU = 1
PEER_CPU = 0


def pinned(cpu):
    return lambda: os.sched_setaffinity(0, {cpu})


def parse_rates(args):
    out = {"event": [], "64k": []}
    exe = os.path.join(args.build, "bench", "bench_watch_parse")
    for _ in range(args.repeat):
        text = subprocess.run([exe, str(args.count)], capture_output=True, text=True, check=True,
                              preexec_fn=pinned(MEASURED_CPU)).stdout
        for key, label in (("event", "one event per feed"), ("64k", "64 KiB feeds")):
            m = re.search(re.escape(label) + r"\s+(\d+) objects/s\s+([\d.]+) MB/s", text)
            out[key].append((float(m.group(1)), float(m.group(2))))
        print("# bench_watch_parse:", " | ".join(text.strip().splitlines()[1:]), file=sys.stderr, flush=True)
    return out


def apiserver_rates(args):
    out = {"event": [], "64k": []}
    exe = os.path.join(args.build, "bench", "bench_apiserver")
    for framing in ("event", "64k"):
        srv = subprocess.Popen([exe, "--count", str(args.count), "--framing", framing], stdout=subprocess.PIPE,
                               text=True, preexec_fn=pinned(PEER_CPU))
        try:
            ready = json.loads(srv.stdout.readline())
            for _ in range(args.repeat):
                r = subprocess.run([exe, "--read", str(ready["ready"]), "--expect", str(args.count)],
                                   capture_output=True, text=True, check=True, preexec_fn=pinned(MEASURED_CPU))
                res = json.loads(r.stdout)
                out[framing].append((res["rate"], res["mb_per_s"]))
                print(f"# bench_apiserver {framing}: {res}", file=sys.stderr, flush=True)
        finally:
            srv.terminate()
            srv.wait()
    return out


def kubesim_rate(args):
    from fixtures import KubeSim
    results = []
    tmp = tempfile.mkdtemp(prefix="ca-bench-kubesim-")
    os.sched_setaffinity(0, {PEER_CPU})  # kubesim inherits CPU 0
    sim = KubeSim(tmp)
    sim.__enter__()
    os.sched_setaffinity(0, {MEASURED_CPU})
    try:
        for i in range(args.repeat):
            rv0 = sim.stats()["resource_version"]
            left = args.kubesim_count
            while left > 0:
                k = min(left, 5000)
                sim.emit_events(namespace=f"bench-{i}", count=k, type="Warning", reason="BackOff",
                                kind="Pod", name_prefix="web")
                left -= k
            results.append(read_kubesim(sim, rv0, args.kubesim_count))
            r = results[-1]
            print(f"# kubesim: {r}", file=sys.stderr, flush=True)
    finally:
        sim.__exit__(None, None, None)
    return results


def read_kubesim(sim, rv0, expect):
    sock = socket.create_connection(("127.0.0.1", sim.api_port), timeout=60)
    tls = sim.ssl_context().wrap_socket(sock, server_hostname="localhost")
    path = f"/api/v1/events?watch=1&resourceVersion={rv0}&timeoutSeconds=600"
    tls.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{sim.api_port}\r\n"
                 f"Authorization: Bearer {sim.token}\r\nAccept: application/json\r\n\r\n").encode())
    # kubesim writes exactly one watch line per chunk, so every line starts a
    # chunk's data with '{"type":"'; counting that pattern in the raw bytes
    # (in C, via bytes.count) keeps the reader far cheaper than the server.
    # The last few bytes of each read are carried over, so a pattern split
    # across two reads is counted once.
    pat = b'{"type":"'
    carry = b""
    lines = wire = 0
    t0 = None
    c0 = time.process_time()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while lines < expect:
        n = tls.recv_into(view)
        if not n:
            break
        if t0 is None:
            t0 = time.monotonic()
        wire += n
        data = carry + bytes(view[:n])
        lines += data.count(pat)
        # keep a tail that cannot hold a whole pattern (so none is counted twice)
        carry = data[-(len(pat) - 1):]
    t1 = time.monotonic()
    cpu = time.process_time() - c0
    tls.close()
    dt = t1 - t0
    return {"events": lines, "wire_bytes": wire, "seconds": round(dt, 3), "rate": lines / dt,
            "mb_per_s": wire / dt / 1e6, "reader_cpu_s": round(cpu, 3)}


def med(pairs, i):
    return statistics.median(p[i] for p in pairs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--count", type=int, default=200000)
    ap.add_argument("--kubesim-count", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--parts", default="parse,apiserver,kubesim", help="which measurements to run")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    load0 = os.getloadavg()
    parts = args.parts.split(",")
    parse = parse_rates(args) if "parse" in parts else None
    srv = apiserver_rates(args) if "apiserver" in parts else None
    sim = kubesim_rate(args) if "kubesim" in parts else []
    load1 = os.getloadavg()
    print(f"\nMedians of {args.repeat} runs; load average {load0[0]:.2f} before, {load1[0]:.2f} after.\n")
    print("| what (one core) | framing | events/s | MB/s |")
    print("|---|---|---:|---:|")
    for f, name in (("event", "one event per chunk"), ("64k", "64 KiB chunks")) if parse else ():
        print(f"| watch parser alone (bench_watch_parse, {args.count} events) | {name} | "
              f"{med(parse[f], 0):,.0f} | {med(parse[f], 1):.1f} |")
    for f, name in (("event", "one event per chunk"), ("64k", "64 KiB chunks")) if srv else ():
        print(f"| bench_apiserver alone (raw reader, {args.count} events) | {name} | "
              f"{med(srv[f], 0):,.0f} | {med(srv[f], 1):.1f} |")
    if sim:
        print(f"| tests/kubesim alone (Python, TLS; raw reader, {args.kubesim_count} events) | one event per chunk | "
              f"{statistics.median(r['rate'] for r in sim):,.0f} | "
              f"{statistics.median(r['mb_per_s'] for r in sim):.1f} |")
        print(f"\nkubesim reader CPU: {', '.join(str(r['reader_cpu_s']) for r in sim)} s for "
              f"{', '.join(str(r['seconds']) for r in sim)} s of streaming.")


if __name__ == "__main__":
    main()
