#!/usr/bin/env python3
"""Capture what an SRE sees in each failure of docs/TROUBLESHOOTING.md from
real runs, and write it into the doc: for each scenario below it starts
nats-server, the simulated API server (kubesim) and build/collect-agent,
breaks one thing, waits until the probe says so, and replaces the region

    <!-- captured-health NAME -->
    ...
    <!-- /captured-health -->

with the probe's status and body, the agent's warning and error log lines
and the metrics that show it. tests/lib/test_troubleshooting_doc.py checks
that every reason in the doc is one the code can produce.

    ninja -C build && scripts/capture_troubleshooting_examples.py [--build-dir build] [--print] [NAME...]

--print writes the regions to stdout instead of the doc; NAMEs limit the
run to those scenarios (the doc's other regions are left as they are).
"""
import argparse
import contextlib
import json
import os
import re
import sys
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "lib"),
                os.path.join(ROOT, "tests", "kubesim")]

from fixtures import KubeSim  # noqa: E402
from lib.agentproc import Agent, wait_for  # noqa: E402
from lib.nats import NatsServer, free_port  # noqa: E402

DOC = os.path.join(ROOT, "docs", "TROUBLESHOOTING.md")
REGION = re.compile(r"(<!-- captured-health ([\w-]+) -->\n)(.*?)(<!-- /captured-health -->)", re.S)
CLUSTER = "prod-eu-1"
BASE_ENV = {"COLLECT_AGENT_LOG_LEVEL": "info", "COLLECT_AGENT_KUBERNETES_BACKOFF_MAX": "2s",
            "COLLECT_AGENT_NATS_RECONNECT_WAIT": "500ms", "COLLECT_AGENT_METRICS_INTERVAL": "2s"}


def wait(pred, timeout, what):
    try:
        return wait_for(pred, timeout=timeout, interval=0.2, what=what)
    except TimeoutError as e:
        sys.exit(f"capture: {e}")


def probe(agent, path):
    code, body = agent.get(path, timeout=3.0)
    return code, body


def not_ready_with(agent, words, path="/health/ready"):
    def check():
        code, body = probe(agent, path)
        return (code, body) if code == 503 and all(w in body for w in words) else None
    return check


def kubeconfig_with(sim, path, port=None, token=None):
    with open(sim.kubeconfig) as f:
        text = f.read()
    if port is not None:
        text = re.sub(r"server: https://127\.0\.0\.1:\d+", f"server: https://127.0.0.1:{port}", text)
    if token is not None:
        text = re.sub(r"token: \S+", f"token: {token}", text)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def log_lines(agent, limit=4):
    """The agent's warn and error records, one of each message, as logged."""
    out, seen = [], set()
    for line in agent.logs().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("level") not in ("warn", "error") or rec.get("msg") in seen:
            continue
        if rec.get("msg", "").startswith("the agent runs as root"):
            continue  # this machine's, not the Deployment's (65534)
        seen.add(rec.get("msg"))
        out.append(line)
    return out[:limit]


def metric_lines(agent, names):
    _, text = probe(agent, "/metrics")
    return [line for line in text.splitlines()
            if not line.startswith("#") and re.split(r"[{ ]", line, 1)[0] in names]


def start_agent(work, name, nats_url, kubeconfig, env=None, cluster_id=True):
    args = ["--nats", nats_url, "--kubeconfig", kubeconfig]
    if cluster_id:
        args += ["--cluster-id", CLUSTER]
    e = dict(BASE_ENV)
    e.update(env or {})
    a = Agent(work, args=args, env=e, name=name)
    a.start(wait_live=False)
    return a


# Each scenario is a context manager: given (work dir, nats, kubesim) it
# yields (agent, probe path, metric names, extra text) while the failure lasts.


@contextlib.contextmanager
def nats_down(work, nats, sim):
    a = start_agent(work, "nats-down", f"nats://127.0.0.1:{free_port()}", sim.kubeconfig)
    wait(not_ready_with(a, ["NATS not connected"]), 30, "NATS not connected")
    yield a, "/health/ready", ["agent_connected", "agent_nats_reconnects_total"], ""


@contextlib.contextmanager
def nats_auth(work, nats, sim):
    server = NatsServer(args=["--user", "collect-agent", "--pass", "the-right-one"])
    server.start()
    work_env = {"COLLECT_AGENT_NATS_AUTH_USER": "collect-agent", "COLLECT_AGENT_NATS_AUTH_PASSWORD": "stale"}
    try:
        a = start_agent(work, "nats-auth", server.url, sim.kubeconfig, work_env)
        wait(not_ready_with(a, ["closed for good"], "/health/live"), 30, "NATS closed for good")
        ctl = subprocess.run([os.path.join(os.path.dirname(os.environ["AGENT_BIN"]), "agentctl"), "--nats",
                              server.url, "agents"], env=dict(work_env, PATH=os.environ.get("PATH", "/usr/bin")),
                             capture_output=True, text=True, timeout=60)
        yield a, "/health/live", ["agent_connected"], (
            "The same credentials with agentctl, which connects once and says why:\n\n```\n"
            f"$ COLLECT_AGENT_NATS_AUTH_USER=collect-agent COLLECT_AGENT_NATS_AUTH_PASSWORD=... agentctl --nats "
            f"{server.url} agents\n{ctl.stderr.strip()}\n```\n")
    finally:
        server.stop()


@contextlib.contextmanager
def api_down(work, nats, sim):
    kc = kubeconfig_with(sim, os.path.join(work, "down.kubeconfig"), port=free_port())
    a = start_agent(work, "api-down", nats.url, kc, cluster_id=False)
    wait(not_ready_with(a, ["cluster ID unknown", "Kubernetes API"]), 60, "API down")
    yield a, "/health/ready", ["agent_kube_requests_total"], ""


@contextlib.contextmanager
def rbac_forbidden(work, nats, sim):
    sim.add_token("no-events-token", deny=["list events", "watch events"],
                  user="system:serviceaccount:collect-agent:collect-agent")
    kc = kubeconfig_with(sim, os.path.join(work, "rbac.kubeconfig"), token="no-events-token")
    a = start_agent(work, "rbac", nats.url, kc)
    wait(not_ready_with(a, ["event watch", "forbidden"]), 60, "403 on events")
    yield a, "/health/ready", ["agent_kube_requests_total"], ""


@contextlib.contextmanager
def gone_loop(work, nats, sim):
    a = start_agent(work, "gone-loop", nats.url, sim.kubeconfig, {"COLLECT_AGENT_METRICS_ENABLED": "false"})
    wait(lambda: probe(a, "/health/ready")[0] == 200, 60, "ready")
    sim.fault(status=410, verb="watch", seconds=20)
    sim.fault(drop_watches=True)
    try:
        wait(not_ready_with(a, ["(410)"]), 30, "a loop of 410s")
        yield a, "/health/ready", ["agent_kube_watch_restarts_total"], ""
    finally:
        sim.fault(clear=True)


@contextlib.contextmanager
def watch_stalled(work, nats, sim):
    a = start_agent(work, "stalled", nats.url, sim.kubeconfig, {"COLLECT_AGENT_KUBERNETES_STALL_TIMEOUT": "5s",
                                                                "COLLECT_AGENT_METRICS_ENABLED": "false"})
    wait(lambda: probe(a, "/health/ready")[0] == 200, 60, "ready")
    sim.fault(stall_watches=True)
    sim.fault(drop_watches=True)
    try:
        wait(not_ready_with(a, ["made no progress"], "/health/live"), 60, "a stalled watch")
        yield a, "/health/live", [], ""
    finally:
        sim.fault(clear=True)


@contextlib.contextmanager
def metrics_full(work, nats, sim):
    a = start_agent(work, "metrics-full", nats.url, sim.kubeconfig, {"COLLECT_AGENT_METRICS_MAX_PODS": "10"})
    wait(not_ready_with(a, ["metrics.max_pods"]), 60, "more pods than metrics.max_pods")
    yield a, "/health/ready", ['agent_metrics_objects'], ""


SCENARIOS = {"nats-down": nats_down, "nats-auth": nats_auth, "api-down": api_down,
             "rbac-forbidden": rbac_forbidden, "gone-loop": gone_loop, "watch-stalled": watch_stalled,
             "metrics-full": metrics_full}


def region_text(path, code, body, logs, metrics, extra):
    text = f"```\n$ curl -s -w ' %{{http_code}}\\n' localhost:8080{path}\n{body} {code}\n```\n"
    if logs:
        text += "\nLog:\n\n```\n" + "\n".join(logs) + "\n```\n"
    if metrics:
        text += "\nMetrics:\n\n```\n" + "\n".join(metrics) + "\n```\n"
    if extra:
        text += "\n" + extra
    return text


def capture(names, build_dir):
    os.environ["AGENT_BIN"] = os.path.join(build_dir, "collect-agent")
    texts = {}
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"capture-{name}-") as work, NatsServer() as nats, \
                KubeSim(work) as sim:
            sim.populate(namespaces=2, nodes=2, pods=24, unhealthy_fraction=0.2, seed=5)
            with SCENARIOS[name](work, nats, sim) as (agent, path, metric_names, extra):
                try:
                    code, body = probe(agent, path)
                    texts[name] = region_text(path, code, body, log_lines(agent),
                                              metric_lines(agent, metric_names), extra)
                finally:
                    agent.stop()
        print(f"captured {name}", file=sys.stderr)
    return texts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--print", action="store_true")
    ap.add_argument("names", nargs="*", help=", ".join(SCENARIOS))
    opts = ap.parse_args()
    unknown = [n for n in opts.names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario {unknown}: one of {', '.join(SCENARIOS)}")
    texts = capture(opts.names or list(SCENARIOS), os.path.abspath(opts.build_dir))
    if opts.print:
        for name, text in texts.items():
            print(f"--- {name}\n{text}")
        return
    with open(DOC, encoding="utf-8") as f:
        doc = f.read()
    regions = [m.group(2) for m in REGION.finditer(doc)]
    missing = sorted(set(SCENARIOS) - set(regions))
    if missing or len(regions) != len(set(regions)):
        sys.exit(f"capture: {DOC} must have one region for each of {sorted(SCENARIOS)}; missing {missing}")
    doc = REGION.sub(lambda m: m.group(1) + texts.get(m.group(2), m.group(3)) + m.group(4), doc)
    with open(DOC, "w", encoding="utf-8") as f:
        f.write(doc)
    print(f"{DOC}: {len(texts)} scenarios")


if __name__ == "__main__":
    main()
