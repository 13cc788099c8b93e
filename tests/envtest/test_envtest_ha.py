"""Leader election against the real kube-apiserver: kubesim's Lease
answers compared with the real server's (codes, Status reason, message and
details, field shapes), and two agents sharing a Lease with the
ServiceAccount token deploy/ grants (its Role allows get, create and
update of leases in the agent's namespace only)."""
import os
import sys
import time
import uuid

from lib.agentproc import wait_for
from lib.events_helpers import metric
from lib.lease_api import http_request, lease_sequence, shape

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "kubesim"))
from fixtures import KubeSim  # noqa: E402


def test_kubesim_leases_answer_as_the_real_server(cluster, namespace, tmp_path):
    real = lease_sequence(http_request("127.0.0.1", cluster.api_port, cluster.admin_token, cluster.ca_file),
                          ns=namespace)
    with KubeSim(tmp_path / "kubesim") as sim:
        sim.create("namespaces", {"metadata": {"name": namespace}})
        got = lease_sequence(http_request("127.0.0.1", sim.api_port, sim.token, sim.ca_file), ns=namespace)
    assert set(got) == set(real)
    for name in real:
        assert shape(got[name]) == shape(real[name]), name


def lease_of(cluster, ns, name):
    return cluster.admin.get_json(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}")


def test_two_agents_one_leads_and_hand_over_on_sigterm(cluster, nats_server, agent_factory):
    # The Lease lives in the agent's own namespace: deploy/'s Role grants
    # leases there only. A fresh cluster ID gives a Lease of this test's own.
    namespace = cluster.agent_namespace
    cid = "envtest-ha-" + uuid.uuid4().hex[:6]
    name = f"collect-agent-{cid}"

    def env(pod):
        return {"POD_NAME": pod, "POD_NAMESPACE": namespace, "COLLECT_AGENT_HA_ENABLED": "true",
                "COLLECT_AGENT_HA_LEASE_DURATION": "3s", "COLLECT_AGENT_HA_RENEW_DEADLINE": "2s",
                "COLLECT_AGENT_HA_RETRY_PERIOD": "500ms"}
    agents = {p: agent_factory(nats_server.url, env=env(p), args=["--cluster-id", cid]) for p in ("a", "b")}

    def one_leader():
        roles = {p: a.health()["ha"]["role"] for p, a in agents.items() if a.proc.poll() is None}
        leaders = [p for p, r in roles.items() if r == "leader"]
        return leaders[0] if len(leaders) == 1 else None
    first = wait_for(one_leader, timeout=30, what="one leader")
    other = "b" if first == "a" else "a"
    obj = lease_of(cluster, namespace, name)
    assert obj["spec"]["holderIdentity"] == first
    assert obj["spec"]["leaseDurationSeconds"] == 3
    assert obj["spec"]["renewTime"].endswith("Z") and "." in obj["spec"]["renewTime"]
    before = obj["spec"].get("leaseTransitions", 0)
    for a in agents.values():
        wait_for(lambda: a.get("/health/ready")[0] == 200, timeout=30, what="ready")
    assert metric(agents[first], "agent_ha_leader") == 1
    assert metric(agents[other], "agent_ha_leader") == 0

    t0 = time.monotonic()
    code, _ = agents[first].terminate()
    assert code == 0
    wait_for(lambda: lease_of(cluster, namespace, name)["spec"].get("holderIdentity") == other, timeout=30,
             what="the Lease moves to the other agent")
    took = time.monotonic() - t0
    print(f"\nreal API server, SIGTERM handover: {took:.2f} s")
    obj = lease_of(cluster, namespace, name)
    assert obj["spec"]["leaseTransitions"] == before + 1
    wait_for(lambda: agents[other].health()["ha"]["role"] == "leader", timeout=10, what="the other leads")
    agents[other].assert_clean_exit()
    # Released on the way out: no holder, a 1 s lease.
    obj = lease_of(cluster, namespace, name)
    assert obj["spec"].get("holderIdentity", "") == ""
    assert obj["spec"]["leaseDurationSeconds"] == 1
