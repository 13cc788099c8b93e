#!/usr/bin/python3
"""kubesim at the Kubernetes scalability envelope: populate, then list.

Starts tests/kubesim (KubeSim from tests/kubesim/fixtures.py), populates it
(default 10,000 namespaces, 5,000 nodes, 150,000 pods, 1 % unhealthy), then
from this process over HTTPS (one keep-alive connection, serial):
  1. a full paginated pod LIST (limit=500 by default), each page's JSON parsed;
  2. a WATCH from that LIST's resourceVersion: nothing may be replayed, and
     after POST /churn of --churn pods exactly that many MODIFIED events come;
  3. a paginated LIST of metrics.k8s.io PodMetrics and NodeMetrics.
With --watch-during-populate a pod WATCH, read as fast as it comes, is open
during the populate (does it keep up, or is it ended as too slow?).
Prints the figures (populate time, kubesim's RSS and peak RSS, list times)
as a Markdown table. Not a test: it asserts only that the watch saw what it
should.

    /usr/bin/python3 bench/kubesim_scale.py [--pods 150000 --nodes 5000 --namespaces 10000] [--limit 500]
"""
import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "kubesim"))
from fixtures import KubeSim  # noqa: E402


def rss_kib(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    return out


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class WatchLines:
    """A WATCH read on a raw TLS socket, de-chunked as it comes, lines counted."""

    def __init__(self, sim, path):
        import socket
        sock = socket.create_connection(("127.0.0.1", sim.api_port), timeout=120)
        self.tls = sim.ssl_context().wrap_socket(sock, server_hostname="localhost")
        self.tls.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                          "Connection: close\r\n\r\n" % (path, sim.token)).encode())
        self.raw, self.need, self.head = b"", None, False
        self.nlines, self.modified, self.tail = 0, 0, b"\n"   # as if a line ended before the first
        self.ended = False

    def _feed(self, data):
        self.raw += data
        if not self.head:
            i = self.raw.find(b"\r\n\r\n")
            if i < 0:
                return
            if not self.raw.startswith(b"HTTP/1.1 200"):
                raise SystemExit("watch: " + self.raw[:200].decode(errors="replace"))
            self.raw, self.head = self.raw[i + 4:], True
        parts = []
        while self.raw:
            if self.need is None:
                i = self.raw.find(b"\r\n")
                if i < 0:
                    break
                self.need, self.crlf = int(self.raw[:i], 16), 2
                self.raw = self.raw[i + 2:]
                if self.need == 0:          # the end of the stream
                    self.ended = True
                    break
            if self.need:
                take = min(self.need, len(self.raw))
                parts.append(self.raw[:take])
                self.need -= take
                self.raw = self.raw[take:]
            if self.need == 0:
                drop = min(self.crlf, len(self.raw))
                self.raw, self.crlf = self.raw[drop:], self.crlf - drop
                if self.crlf:
                    break
                self.need = None
        data = b"".join(parts)
        self.nlines += data.count(b"\n")
        # an event line starts after a newline; keep the last bytes for a
        # line start cut between two reads
        seen = self.tail + data
        self.modified += seen.count(b'\n{"type":"MODIFIED"')
        self.tail = seen[-18:]

    def lines(self):
        return self.nlines

    def lines_within(self, seconds):
        import select
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return self.lines()
            if self.tls.pending() or select.select([self.tls], [], [], left)[0]:
                self._feed(self.tls.recv(1 << 16))

    def wait_lines(self, n, timeout):
        deadline = time.monotonic() + timeout
        while self.lines() < n and time.monotonic() < deadline:
            data = self.tls.recv(1 << 16)
            if not data:
                break
            self._feed(data)
        return self.lines()

    def read_to(self, n):
        """Read until n lines, the end of the stream, or the connection's end."""
        while self.lines() < n and not self.ended:
            data = self.tls.recv(1 << 16)
            if not data:
                break
            self._feed(data)

    def close(self):
        self.tls.close()


ITEM_START = b'{"metadata":{"name":'     # how each item of a compact LIST begins


def paged_list(sim, path, limit, parse=True):
    """Every page of path over one HTTPS connection; (items, pages, bytes,
    seconds, rv). parse=False: only the list's metadata is decoded and items
    are counted, so the time is kubesim's plus the transfer, not Python's
    JSON decoder (about 40 MB/s on this machine)."""
    conn = http.client.HTTPSConnection("127.0.0.1", sim.api_port, timeout=120,
                                       context=sim.ssl_context())
    headers = {"Authorization": "Bearer " + sim.token, "Accept": "application/json"}
    items = pages = nbytes = 0
    tok, rv = None, None
    t0 = time.monotonic()
    while True:
        q = "%s%slimit=%d" % (path, "&" if "?" in path else "?", limit)
        if tok:
            q += "&continue=" + tok
        conn.request("GET", q, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise SystemExit("GET %s -> %d %s" % (q, resp.status, body[:300]))
        if parse:
            doc = json.loads(body)
            meta = doc["metadata"]
            items += len(doc["items"])
        else:
            i = body.index(b',"items":[')
            meta = json.loads(body[:i] + b"}")["metadata"]
            items += body.count(ITEM_START, i)
        pages += 1
        nbytes += len(body)
        rv = rv or meta.get("resourceVersion")
        tok = meta.get("continue")
        if not tok:
            break
    conn.close()
    return items, pages, nbytes, time.monotonic() - t0, rv


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--namespaces", type=int, default=10000)
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--pods", type=int, default=150000)
    ap.add_argument("--unhealthy-fraction", type=float, default=0.01)
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--churn", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--watch-during-populate", action="store_true",
                    help="also keep a pod WATCH open (read as fast as it comes) during the populate")
    a = ap.parse_args()

    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kubesim-scale-") as tmp:
        with KubeSim(tmp, metrics_api=True) as sim:
            pid = sim.proc.pid
            base = rss_kib(pid)
            cpu0 = cpu_seconds(pid)
            pw = None
            if a.watch_during_populate:
                pw = WatchLines(sim, "/api/v1/pods?watch=1&timeoutSeconds=1800&resourceVersion=" +
                                sim.stats()["resource_version"])
                pw_thread = threading.Thread(target=pw.read_to, args=(a.pods,), daemon=True)
                pw_thread.start()
            t0 = time.monotonic()
            pop = sim.populate(namespaces=a.namespaces, nodes=a.nodes, pods=a.pods,
                               unhealthy_fraction=a.unhealthy_fraction, seed=a.seed)
            t_pop = time.monotonic() - t0
            cpu_pop = cpu_seconds(pid) - cpu0
            after_pop = rss_kib(pid)
            if pw is not None:
                pw_thread.join(300)
                t_pw = time.monotonic() - t0
                pw_got, pw_ended = pw.lines(), pw.ended
                pw.close()
            print("# populate: %s" % json.dumps(pop), file=sys.stderr, flush=True)

            cpu1 = cpu_seconds(pid)
            n, pages, nbytes, t_list, rv = paged_list(sim, "/api/v1/pods", a.limit, parse=False)
            cpu_list = cpu_seconds(pid) - cpu1
            print("# pods: %d items, %d pages, %.1f MB, %.2f s" % (n, pages, nbytes / 1e6, t_list),
                  file=sys.stderr, flush=True)
            n2, _, _, t_list2, rv2 = paged_list(sim, "/api/v1/pods", a.limit, parse=True)
            print("# pods, parsed: %.2f s" % t_list2, file=sys.stderr, flush=True)
            if n2 != n or rv2 != rv:
                raise SystemExit("the two LISTs differ: %d/%s items/rv, then %d/%s" % (n, rv, n2, rv2))
            nn, npages, nnbytes, t_nodes, _ = paged_list(sim, "/api/v1/nodes", a.limit)
            nsn, _, _, t_ns, _ = paged_list(sim, "/api/v1/namespaces", a.limit)
            after_list = rss_kib(pid)

            # WATCH from the LIST's rv: nothing replayed; then the churn arrives
            w = WatchLines(sim, "/api/v1/pods?watch=1&resourceVersion=%s&timeoutSeconds=600" % rv)
            replayed = w.lines_within(2.0)
            t_c = time.monotonic()
            ch = sim.churn("pods", a.churn, seed=a.seed)
            t_churn = time.monotonic() - t_c
            seen = w.wait_lines(replayed + ch["modified"], 120)
            t_watch = time.monotonic() - t_c
            modified = w.modified
            w.close()
            if replayed or seen < ch["modified"] or modified != ch["modified"]:
                raise SystemExit("watch after the LIST: %d replayed, %d lines, %d MODIFIED for %d changes"
                                 % (replayed, seen, modified, ch["modified"]))

            mp, mpages, mbytes, t_mpods, _ = paged_list(sim, "/apis/metrics.k8s.io/v1beta1/pods", a.limit)
            mn, _, _, t_mnodes, _ = paged_list(sim, "/apis/metrics.k8s.io/v1beta1/nodes", a.limit)
            end = rss_kib(pid)

    mib = lambda k: "%.0f MiB" % (k / 1024)
    print("| figure | value |")
    print("|---|---|")
    print("| populate %d namespaces, %d nodes, %d pods (%d unhealthy) | %.1f s wall (%.1f s kubesim CPU); server says %.1f s |"
          % (pop["namespaces"], pop["nodes"], pop["pods"], sum(pop["unhealthy"].values()), t_pop, cpu_pop,
             pop["seconds"]))
    if a.watch_during_populate:
        print("| a pod WATCH open during the populate, read as it comes | %d of %d ADDED in %.1f s; %s |"
              % (pw_got, pop["pods"], t_pw, "ended early (too slow)" if pw_ended else "still open"))
    print("| kubesim RSS: start / after populate / after the LISTs / end | %s / %s / %s / %s |"
          % (mib(base["VmRSS"]), mib(after_pop["VmRSS"]), mib(after_list["VmRSS"]), mib(end["VmRSS"])))
    print("| kubesim peak RSS (VmHWM) | %s |" % mib(end["VmHWM"]))
    print("| LIST pods limit=%d, serial: %d items, %d pages, %.0f MB, transfer only | %.2f s (%.0f items/s; kubesim CPU %.1f s) |"
          % (a.limit, n, pages, nbytes / 1e6, t_list, n / t_list, cpu_list))
    print("| the same LIST, each page decoded by json.loads in the client | %.2f s |" % t_list2)
    print("| mean pod JSON size in the LIST | %.0f bytes |" % (nbytes / max(n, 1)))
    print("| LIST nodes limit=%d: %d items, %.0f MB | %.2f s |" % (a.limit, nn, nnbytes / 1e6, t_nodes))
    print("| LIST namespaces limit=%d: %d items | %.2f s |" % (a.limit, nsn, t_ns))
    print("| WATCH from the LIST's rv: replayed | %d events |" % replayed)
    print("| load average (1 min) at the start / end | %.1f / %.1f |" % (load0, os.getloadavg()[0]))
    print("| POST /churn %d pods; the watch has every MODIFIED | %.2f s; %.2f s |" % (ch["modified"], t_churn, t_watch))
    print("| LIST metrics.k8s.io pods limit=%d: %d items, %d pages, %.0f MB | %.2f s |"
          % (a.limit, mp, mpages, mbytes / 1e6, t_mpods))
    print("| LIST metrics.k8s.io nodes limit=%d: %d items | %.2f s |" % (a.limit, mn, t_mnodes))


if __name__ == "__main__":
    main()
