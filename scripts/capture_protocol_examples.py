#!/usr/bin/env python3
"""Capture the examples of docs/PROTOCOL.md from a real run and write them
into the doc: starts nats-server, the simulated API server (kubesim, with
a small cluster in which some pods fail) and build/collect-agent, listens on
`agent.>` like an orchestrator, sends three commands with build/agentctl
(signed with the test-only key of tests/fixtures/exec/signing), and replaces
each region

    <!-- captured MESSAGE NAME -->
    ...
    <!-- /captured -->

of docs/PROTOCOL.md with the message captured for it: its subject, its NATS
headers and its JSON payload, pretty-printed (the agent sends it compact).
tests/lib/test_protocol_doc.py checks every example against proto/agent.proto.

    ninja -C build && scripts/capture_protocol_examples.py [--build-dir build] [--print]

--print writes the regions to stdout instead of the doc. Needs nats-server,
python3-cryptography and kubectl (scripts/install-deps.sh installs them).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "lib"),
                os.path.join(ROOT, "tests", "kubesim")]

from fixtures import KubeSim  # noqa: E402
from lib.agentproc import Agent, wait_for  # noqa: E402
from lib.nats import NatsClient, NatsServer  # noqa: E402

DOC = os.path.join(ROOT, "docs", "PROTOCOL.md")
SIGNING = os.path.join(ROOT, "tests", "fixtures", "exec", "signing")
CLUSTER = "prod-eu-1"
EVENT_NAMESPACE = "shop"
COMMAND_NAMESPACE = "ns-00002"  # one of kubesim's populated namespaces, with failing pods
# Lists of a MetricsSample kept in the doc; the rest is cut (the example
# stays a valid message, the doc says what was cut).
KEEP = {"nodes": 1, "namespaces": 2, "unhealthy_pods": 3}
REGION = re.compile(r"(<!-- captured (\w+) ([\w-]+) -->\n)(.*?)(<!-- /captured -->)", re.S)


def wait(pred, timeout, what):
    try:
        return wait_for(pred, timeout=timeout, interval=0.1, what=what)
    except TimeoutError as e:
        sys.exit(f"capture: {e}")


class Recorder:
    """Every message on agent.> (commands included: a plain subscriber sees
    them beside the agents' queue group), decoded."""

    def __init__(self, client):
        self.sub = client.subscribe("agent.>")
        self.msgs = []

    def poll(self):
        for m in self.sub.drain():
            body = json.loads(m.data)
            self.msgs.append((m, body))
        return self.msgs

    def find(self, kind, pred=lambda b: True):
        for m, b in self.poll():
            if m.subject.startswith(f"agent.{kind}.") and pred(b):
                return m, b
        return None


def trimmed_sample(body):
    """The sample with its lists cut to KEEP (namespaces with pods first, so
    the example shows figures), and a note of what was cut."""
    out, notes = dict(body), []
    for key, keep in KEEP.items():
        items = body.get(key, [])
        if key == "namespaces":
            items = sorted(items, key=lambda n: -sum(n["pods"].values()))
        if len(items) > keep:
            out[key] = items[:keep]
            notes.append(f"{key}: {keep} of {len(items)}")
    return out, notes


def region_text(msg, body, note=""):
    headers = "\n".join(f"{k}: {v}" for k, v in msg.headers.items() if k in ("Content-Type", "Nats-Msg-Id"))
    text = f"```\nsubject: {msg.subject}\n{headers}\n```\n\n"
    if note:
        text += f"{note}\n\n"
    text += "```json\n" + json.dumps(body, indent=2, ensure_ascii=False) + "\n```\n"
    return text


def agentctl(build_dir, url, *args):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run([os.path.join(build_dir, "agentctl"), "--nats", url, *args], env=env,
                          capture_output=True, text=True, timeout=60)


def capture(build_dir, work):
    os.environ["AGENT_BIN"] = os.path.join(build_dir, "collect-agent")
    captured = {}
    with NatsServer() as nats, KubeSim(work, metrics_api=True) as sim:
        sim.populate(namespaces=3, nodes=3, pods=24, unhealthy_fraction=0.25, seed=11)
        sim.create("namespaces", {"metadata": {"name": EVENT_NAMESPACE}})
        client = NatsClient(nats.url)
        rec = Recorder(client)
        client.flush()
        agent = Agent(work, name="agent", args=["--nats", nats.url, "--kubeconfig", sim.kubeconfig], env={
            "COLLECT_AGENT_CLUSTER_ID": CLUSTER,
            "NODE_NAME": "node-0001", "POD_NAME": "collect-agent-6f7c9d8b5-x2k8p",
            "POD_NAMESPACE": "collect-agent",
            "COLLECT_AGENT_LOG_LEVEL": "info",
            "COLLECT_AGENT_HEARTBEAT_INTERVAL": "2s", "COLLECT_AGENT_METRICS_INTERVAL": "3s",
            "COLLECT_AGENT_EXEC_REQUIRE_SIGNATURE": "true",
            "COLLECT_AGENT_EXEC_PUBLIC_KEY_FILES": os.path.join(SIGNING, "public.pem"),
            "COLLECT_AGENT_EXEC_WORK_DIR": str(work)})
        agent.start()
        try:
            agent.wait_ready(timeout=60)
            captured["register"] = wait(lambda: rec.find("register", lambda b: b.get("kubernetes_version")),
                                        30, "AgentInfo with kubernetes_version")
            captured["heartbeat"] = wait(lambda: rec.find("heartbeat"), 30, "Heartbeat")
            sample = wait(lambda: rec.find("metrics", lambda b: b["unhealthy_pods"]), 60,
                          "MetricsSample with unhealthy pods")
            captured["sample"] = sample
            sim.emit_events(namespace=EVENT_NAMESPACE, count=1, reason="BackOff", name_prefix="web")
            captured["event"] = wait(lambda: rec.find("event", lambda b: b["reason"] == "BackOff"), 30,
                                     "Event")

            key = ["--sign-key", os.path.join(SIGNING, "private.pem"), "--issuer", "ops@example.com"]
            ok = agentctl(build_dir, nats.url, "--timeout", "30s", "exec", "--cluster", CLUSTER, *key,
                          "--namespace", COMMAND_NAMESPACE, "--", "kubectl", "get", "pods", "-o", "wide")
            if ok.returncode != 0:
                sys.exit(f"capture: kubectl get pods failed ({ok.returncode}): {ok.stderr}")
            rejected = agentctl(build_dir, nats.url, "--timeout", "30s", "exec", "--cluster", CLUSTER, *key,
                                "--namespace", COMMAND_NAMESPACE, "--", "kubectl", "get", "secrets")
            slow = agentctl(build_dir, nats.url, "--timeout", "2s", "exec", "--cluster", CLUSTER, *key,
                            "--namespace", COMMAND_NAMESPACE, "--", "kubectl", "get", "pods", "--watch")
            if (rejected.returncode, slow.returncode) != (2, 124):
                sys.exit(f"capture: expected a rejection and a timeout, got {rejected.returncode} "
                         f"({rejected.stderr.strip()}) and {slow.returncode} ({slow.stderr.strip()})")
            commands = [x for x in rec.poll() if x[0].subject.startswith("agent.command.")]
            captured["command"] = next(c for c in commands if c[1]["action"] == "get" and "wide" in c[1]["args"])
            for status in ("succeeded", "rejected", "timeout"):
                captured[f"result-{status}"] = wait(
                    lambda: rec.find("result", lambda b, s=status: b["status"] == s), 30, f"{status} result")
        finally:
            agent.stop()
            client.close()
    return captured


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--print", action="store_true", help="print the regions instead of rewriting the doc")
    opts = ap.parse_args()
    build_dir = os.path.abspath(opts.build_dir)
    with tempfile.TemporaryDirectory(prefix="capture-protocol-") as work:
        captured = capture(build_dir, work)

    texts = {}
    for name, (msg, body) in captured.items():
        note = ""
        if name == "sample":
            body, cut = trimmed_sample(body)
            if cut:
                note = ("Trimmed for this page (" + "; ".join(cut) + ", namespaces with pods first); "
                        "everything else as sent.")
        texts[name] = region_text(msg, body, note)
    if opts.print:
        for name, text in texts.items():
            print(f"--- {name}\n{text}")
        return
    with open(DOC, encoding="utf-8") as f:
        doc = f.read()
    seen = []

    def replace(m):
        name = m.group(3)
        if name not in texts:
            sys.exit(f"capture: {DOC} has a region '{name}' that nothing captures")
        seen.append(name)
        return m.group(1) + texts[name] + m.group(5)

    doc = REGION.sub(replace, doc)
    missing = sorted(set(texts) - set(seen))
    if missing:
        sys.exit(f"capture: {DOC} has no region for {missing}")
    with open(DOC, "w", encoding="utf-8") as f:
        f.write(doc)
    print(f"{DOC}: {len(seen)} examples")


if __name__ == "__main__":
    main()
