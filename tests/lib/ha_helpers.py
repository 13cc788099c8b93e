"""Two agents sharing a Lease (tests/integration/test_ha.py,
tests/faults/test_ha_failover.py): their environment, who leads, the Lease
as the simulated API server holds it, events emitted in batches."""
import itertools
import time

from fixtures import KubeSimError
from lib.agentproc import wait_for

CID = "c1"
NS = "default"
LEASE = f"collect-agent-{CID}"
LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{LEASE}"
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"
CHECKPOINT = "collect-agent.io/events-resource-version"
LEASE_S = 3


def ha_env(name, extra=None):
    env = {
        "POD_NAME": name,
        "POD_NAMESPACE": NS,
        "COLLECT_AGENT_HA_ENABLED": "true",
        "COLLECT_AGENT_HA_LEASE_DURATION": f"{LEASE_S}s",
        "COLLECT_AGENT_HA_RENEW_DEADLINE": "2s",
        "COLLECT_AGENT_HA_RETRY_PERIOD": "500ms",
        "COLLECT_AGENT_HA_CHECKPOINT_INTERVAL": "500ms",
        "COLLECT_AGENT_METRICS_INTERVAL": "1s",
        "COLLECT_AGENT_HEARTBEAT_INTERVAL": "1s",
    }
    env.update(extra or {})
    return env


def start_pair(agent_factory, nats_server, kubesim, extra=None):
    args = ["--nats", nats_server.url, "--kubeconfig", kubesim.kubeconfig, "--cluster-id", CID]
    return {n: agent_factory(args=args, env=ha_env(n, extra), name=n) for n in ("a", "b")}


def ha(agent):
    return agent.health()["ha"]


def lease(kubesim):
    return kubesim.api_json(LEASE_PATH)


def leader(agents, kubesim, timeout=30):
    """The one agent that says it leads, once it is alone in saying so and
    the Lease names it; the others must say standby."""
    def one():
        roles = {n: ha(a)["role"] for n, a in agents.items() if a.proc.poll() is None}
        leaders = [n for n, r in roles.items() if r == "leader"]
        if len(leaders) != 1:
            return None
        try:
            holder = lease(kubesim)["spec"].get("holderIdentity")
        except KubeSimError:
            return None
        return leaders[0] if holder == leaders[0] else None
    name = wait_for(one, timeout=timeout, interval=0.1, what="exactly one leader")
    return name


def subscribe(client, subject):
    sub = client.subscribe(subject)
    client.flush()
    return sub


def collect(sub, seconds):
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            out.append(sub.next(timeout=0.2))
        except TimeoutError:
            pass
    return out


_batches = itertools.count(1)


def emit(kubesim, count, reason="BackOff"):
    """count events about objects of their own (no aggregation with another
    batch's: each (object, reason) is new)."""
    r = kubesim.emit_events(namespace=NS, count=count, reason=reason, uids=True,
                            name_prefix=f"batch{next(_batches)}")
    assert r["count"] == count
    return r


def labels():
    return {"cluster_id": CID}


