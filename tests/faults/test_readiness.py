"""Readiness comes from the reflectors' state (listed and streaming), not
from the last finished request (issue 8, item 5): after a burst of 500s
the agent is ready again as soon as its watch is back, while events flow;
during loops of 410, 429 or 400 in which nothing flows it is not ready,
and says why."""
import json
import time

from lib.agentproc import wait_for
from lib.events_helpers import EventCollector

CID = "c1"
FAST = {"COLLECT_AGENT_KUBERNETES_BACKOFF_MAX": "2s", "COLLECT_AGENT_EVENTS_DEDUP_WINDOW": "0s"}


def start(nats_server, kubesim, agent_factory, nats_client=None):
    col = None
    if nats_client:
        col = EventCollector(nats_client.subscribe(f"agent.event.{CID}"))
        nats_client.flush()
    agent = agent_factory(["--nats", nats_server.url, "--kubeconfig", kubesim.kubeconfig,
                           "--cluster-id", CID], env=FAST)
    agent.wait_ready()
    return agent, col


def ready(agent):
    code, body = agent.get("/health/ready", timeout=1.0)
    return code, (json.loads(body).get("reason", "") if body.startswith("{") else body)


def test_ready_again_right_after_a_burst_of_500s(nats_server, nats_client, kubesim, agent_factory):
    agent, col = start(nats_server, kubesim, agent_factory, nats_client)
    kubesim.fault(status=500, seconds=8)
    kubesim.fault(drop_watches=True)
    wait_for(lambda: ready(agent)[0] == 503, timeout=10, what="not ready during the 500s")
    t_end = time.monotonic() + 8
    # Once the burst is over the watch comes back: ready within seconds
    # (the old rule waited for a request to finish, and a watch finishes
    # only at its timeout, minutes later).
    wait_for(lambda: time.monotonic() > t_end and ready(agent)[0] == 200, timeout=30,
             what="ready again after the burst")
    uids = set(r["metadata"]["uid"] for r in [kubesim.create("events", {
        "metadata": {"name": f"after.{i}", "namespace": "burst"},
        "involvedObject": {"kind": "Pod", "name": f"p{i}", "namespace": "burst", "uid": f"u-{i}"},
        "reason": "BackOff", "message": "after the burst", "type": "Warning", "count": 1}) for i in range(3)])
    col.until_uids(uids, timeout=20)
    assert ready(agent)[0] == 200
    agent.assert_clean_exit()


def test_not_ready_in_a_410_loop(nats_server, kubesim, agent_factory):
    agent, _ = start(nats_server, kubesim, agent_factory)
    kubesim.fault(status=410, verb="watch", seconds=15)
    kubesim.fault(drop_watches=True)
    # (first the cut stream itself, then the loop of 410s)
    wait_for(lambda: (lambda r: r[0] == 503 and "410" in r[1])(ready(agent)), timeout=14,
             what="not ready, saying 410, in the 410 loop")
    assert agent.get("/health/live", timeout=1.0)[0] == 200  # a loop is not a stall (yet)
    wait_for(lambda: ready(agent)[0] == 200, timeout=40, what="ready after the loop")
    agent.assert_clean_exit()


def test_not_ready_in_a_429_loop(nats_server, kubesim, agent_factory):
    agent, _ = start(nats_server, kubesim, agent_factory)
    kubesim.fault(status=429, verb="list", seconds=12, retry_after=1)
    kubesim.compact()
    kubesim.emit_events(namespace="throttle", count=1, reason="Started", type="Normal")
    kubesim.compact()
    kubesim.fault(drop_watches=True)  # the resume point is gone: a LIST, answered 429
    code, why = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(ready(agent)), timeout=12,
                         what="not ready while every LIST is throttled")
    assert "events" in why, why
    wait_for(lambda: ready(agent)[0] == 200, timeout=40, what="ready after the throttling")
    agent.assert_clean_exit()
