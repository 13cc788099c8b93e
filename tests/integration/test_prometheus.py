"""Issue 11: a real Prometheus scrapes a running collect-agent's /metrics.

Prometheus is Debian's `prometheus` package (scripts/install-deps.sh test);
the tests that need it are skipped when it is not installed."""
import re

import pytest

from lib.agentproc import Agent
from lib.nats import NatsServer
from lib.promserver import Prometheus, listening_addresses, prometheus_binary, wait_scrapes

CLUSTER = "prom-c1"

needs_prometheus = pytest.mark.skipif(
    prometheus_binary() is None,
    reason="prometheus is not installed (Debian package `prometheus`, scripts/install-deps.sh test; "
           "or set PROMETHEUS_BIN)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """nats-server, the simulated API server, one agent; started once for
    the module (the machine is small)."""
    from fixtures import KubeSim
    tmp = tmp_path_factory.mktemp("prom")
    nats = NatsServer()
    nats.start()
    try:
        with KubeSim(tmp / "kubesim") as sim:
            agent = Agent(tmp, args=["--nats", nats.url, "--cluster-id", CLUSTER, "--kubeconfig", sim.kubeconfig],
                          env={"COLLECT_AGENT_HEARTBEAT_INTERVAL": "1s"}, name="agent")
            agent.start()
            try:
                agent.wait_ready()
                yield agent
            finally:
                agent.stop()
    finally:
        nats.stop()


@pytest.fixture(scope="module")
def prom(stack, tmp_path_factory):
    if prometheus_binary() is None:
        pytest.skip("prometheus is not installed (Debian package `prometheus`, scripts/install-deps.sh test)")
    p = Prometheus(tmp_path_factory.mktemp("prometheus"), targets=[f"127.0.0.1:{stack.port}"])
    p.start()
    try:
        wait_scrapes(p, n=3)
        yield p
    finally:
        code = p.stop()
        assert p.proc.poll() is not None, "prometheus still running"
        assert code == 0, f"prometheus exit code {code}\n{p.logs()[-4000:]}"


def _value(sample):
    return float(sample["value"][1])


# ---------------------------------------------------------------------------
# Prometheus scrapes the agent

@needs_prometheus
def test_prometheus_listens_on_loopback_only(prom):
    addrs = listening_addresses(prom.proc.pid)
    assert addrs, "prometheus holds no listening socket"
    assert all(a == "127.0.0.1" for a, _ in addrs), f"prometheus listens beyond loopback: {addrs}"
    assert ("127.0.0.1", prom.port) in addrs


@needs_prometheus
def test_scrape_up_and_agent_families(prom, stack):
    up = prom.query('up{job="collect-agent"}')
    assert len(up) == 1, up
    assert up[0]["metric"]["instance"] == f"127.0.0.1:{stack.port}"
    assert _value(up[0]) == 1

    running = prom.query("agent_running")
    assert [(r["metric"].get("cluster_id"), _value(r)) for r in running] == [(CLUSTER, 1.0)], running
    connected = prom.query("agent_connected")
    assert [(r["metric"].get("cluster_id"), _value(r)) for r in connected] == [(CLUSTER, 1.0)], connected

    info = prom.query("agent_info")
    assert len(info) == 1 and info[0]["metric"]["cluster_id"] == CLUSTER
    assert re.match(r"^\d+\.\d+\.\d+", info[0]["metric"]["version"])

    # A labelled family: one series per final status, all of this cluster.
    commands = prom.query("agent_commands_total")
    statuses = {r["metric"]["status"] for r in commands}
    assert {"succeeded", "failed", "rejected", "timeout"} <= statuses, statuses
    assert {r["metric"]["cluster_id"] for r in commands} == {CLUSTER}
    # The agent has listed and watched: 200s on the API server counter.
    ok = prom.query('agent_kube_requests_total{code="200"}')
    assert ok and _value(ok[0]) > 0, ok
    # The histogram scrapes as buckets Prometheus can take a quantile of.
    q = prom.query("histogram_quantile(0.99, sum by (le) (agent_command_duration_seconds_bucket))")
    assert len(q) == 1, q


@needs_prometheus
def test_target_has_no_scrape_errors(prom, stack):
    targets = prom.targets()
    assert len(targets) == 1, targets
    t = targets[0]
    assert t["scrapeUrl"] == f"http://127.0.0.1:{stack.port}/metrics"
    assert t["health"] == "up", t
    assert t["lastError"] == "", t
    # Several successful scrapes in a row, none failed since the first one.
    assert _value(prom.query('min_over_time(up{job="collect-agent"}[1m])')[0]) == 1
    # No sample was refused (out of order, duplicate, bad type...): the
    # scrape added every sample the agent served.
    scraped = prom.query("scrape_samples_scraped")
    added = prom.query("scrape_samples_post_metric_relabeling")
    assert _value(scraped[0]) > 50 and _value(scraped[0]) == _value(added[0]), (scraped, added)
    assert "error" not in prom.logs().lower(), prom.logs()[-4000:]
