"""Helpers for the metrics collector's tests (issue 9): decoding
agent.metrics.* parts, putting the parts of one sample back together, and
the pod and node objects the tests create.

A complete sample is every part 1..parts of one sample_id; `merge` checks
that the parts agree on everything they share and concatenates their
lists. Stdlib only (plus tests/lib/agentpb.py for protobuf payloads)."""
import datetime
import fractions
import json
import re
import time

from lib.events_helpers import decode_message


def decode_sample(msg):
    return decode_message(msg, "MetricsSample")


LISTS = ("nodes", "namespaces", "unhealthy_pods")


def merge(parts):
    """One sample from its parts (any order): shared fields must be equal
    in every part, lists are concatenated in part order."""
    parts = sorted(parts, key=lambda p: p["part"])
    n = parts[0]["parts"]
    assert [p["part"] for p in parts] == list(range(1, n + 1)), [p["part"] for p in parts]
    shared = {k: v for k, v in parts[0].items() if k not in LISTS + ("part",)}
    for p in parts[1:]:
        assert {k: v for k, v in p.items() if k not in LISTS + ("part",)} == shared
    out = dict(shared)
    for k in LISTS:
        out[k] = [x for p in parts for x in p.get(k, [])]
    return out


class SampleCollector:
    """Parts arriving on one subscription, grouped by sample_id."""

    def __init__(self, sub):
        self.sub = sub
        self.parts = {}      # sample_id -> [(msg, decoded)]
        self.order = []      # sample_ids in arrival order
        self.msg_ids = []

    def poll(self, timeout=0.2):
        try:
            msgs = [self.sub.next(timeout=timeout)]
        except TimeoutError:
            return
        msgs += self.sub.drain()
        for m in msgs:
            d = decode_sample(m)
            sid = d["sample_id"]
            if sid not in self.parts:
                self.parts[sid] = []
                self.order.append(sid)
            self.parts[sid].append((m, d))
            self.msg_ids.append(m.headers.get("Nats-Msg-Id"))

    def complete(self):
        """Complete samples, merged, oldest first."""
        out = []
        for sid in self.order:
            got = self.parts[sid]
            if len(got) == got[0][1]["parts"]:
                out.append(merge([d for _, d in got]))
        return out

    def next_sample(self, pred=lambda s: True, timeout=20.0, after=None):
        """The first complete sample taken after `after` (a sample_id; None:
        any) for which pred holds; AssertionError with the last one seen."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            self.poll()
            samples = self.complete()
            if after is not None:
                ids = [s["sample_id"] for s in samples]
                samples = samples[ids.index(after) + 1:] if after in ids else samples
            for s in samples:
                last = s
                if pred(s):
                    return s
        raise AssertionError(f"no matching sample within {timeout}s; last: "
                             f"{json.dumps(last)[:3000] if last else None}")


def ts(seconds_ago=0):
    t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds_ago)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def pod(name, namespace, node="node-a", phase="Running", containers=None, statuses=None,
        ready=True, created=None, requests=None, limits=None):
    """A pod as kubelet would have reported it. requests/limits: per
    container {"cpu": .., "memory": ..}."""
    containers = containers or ["app"]
    spec = {"containers": [{"name": c, "image": "nginx:1.25",
                            "resources": {k: v for k, v in (("requests", requests), ("limits", limits)) if v}}
                           for c in containers]}
    if node:
        spec["nodeName"] = node
    status = {"phase": phase}
    if phase == "Running":
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False",
                                 "lastTransitionTime": ts(120)}]
        status["startTime"] = ts(300)
        status["containerStatuses"] = statuses or [
            {"name": c, "ready": ready, "restartCount": 0, "image": "nginx:1.25",
             "state": {"running": {"startedAt": ts(300)}}} for c in containers]
    elif statuses:
        status["containerStatuses"] = statuses
    meta = {"name": name, "namespace": namespace}
    if created:
        meta["creationTimestamp"] = created
    return {"metadata": meta, "spec": spec, "status": status}


def crashloop_status(container="app", restarts=7, crashed_ago=30, reason="Error"):
    return [{"name": container, "ready": False, "restartCount": restarts, "image": "nginx:1.25",
             "state": {"waiting": {"reason": "CrashLoopBackOff",
                                   "message": "back-off 5m0s restarting failed container"}},
             "lastState": {"terminated": {"exitCode": 137 if reason == "OOMKilled" else 1, "reason": reason,
                                          "startedAt": ts(crashed_ago + 5),
                                          "finishedAt": ts(crashed_ago)}}}]


def by_name(items):
    return {x["name"]: x for x in items}


SUFFIXES = {"m": fractions.Fraction(1, 1000), "": 1, "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9,
            "T": 10 ** 12, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40}


def quantity(q, milli=False):
    """A Kubernetes quantity as the agent reads it (the forms kubesim
    serves: "10m", "1", "1.5", "32Mi"): millicores when milli, else units,
    both rounded up."""
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)", q)
    assert m and m.group(2) in SUFFIXES, q
    v = fractions.Fraction(m.group(1)) * SUFFIXES[m.group(2)] * (1000 if milli else 1)
    return -(-v.numerator // v.denominator)


def pod_metrics_usage(items):
    """{namespace: {"cpu_millicores", "memory_bytes"}} summed over the
    containers of PodMetrics items."""
    out = {}
    for it in items:
        u = out.setdefault(it["metadata"]["namespace"], {"cpu_millicores": 0, "memory_bytes": 0})
        for c in it["containers"]:
            u["cpu_millicores"] += quantity(c["usage"]["cpu"], milli=True)
            u["memory_bytes"] += quantity(c["usage"]["memory"])
    return out
