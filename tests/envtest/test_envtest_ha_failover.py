"""Issue 12's failover check against the real kube-apiserver: two agents in
JetStream mode share a Lease (in the agent's namespace, with deploy/'s
ServiceAccount token), a nats-server -js holds a stream of the events
subject (duplicate window 2 m), 3,000 Events are created through the API,
and the leader is killed with SIGKILL a third of the way in. The Lease must
move to the other replica and the stream hold every Event exactly once: the
new leader resumes from the checkpoint in the Lease (advanced only over
events the stream acknowledged), and what it sends again is removed by the
stream's de-duplication on Nats-Msg-Id."""
import json
import threading
import time
import uuid

from lib.agentproc import wait_for
from lib.nats import NatsClient, NatsServer, js_stream_create, js_stream_info, js_stream_messages

TOTAL = 3000
LEASE_S = 3


def new_event(namespace, i):
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    obj = f"web-{i}-{uuid.uuid4().hex[:6]}"
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{obj}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
        "involvedObject": {"kind": "Pod", "name": obj, "namespace": namespace, "uid": str(uuid.uuid4()),
                           "apiVersion": "v1"},
        "reason": "BackOff", "message": f"Back-off restarting failed container in pod {obj}",
        "source": {"component": "kubelet", "host": "node-a"},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1, "type": "Warning",
    }


def test_leader_killed_mid_burst_on_the_real_api_server(cluster, namespace, agent_factory, tmp_path):
    cid = "envtest-failover-" + uuid.uuid4().hex[:6]
    lease_ns, lease_name = cluster.agent_namespace, f"collect-agent-{cid}"
    stream, subject = "FAILOVER", f"agent.event.{cid}"
    server = NatsServer(args=["-js", "-sd", str(tmp_path / "js")])
    server.start()
    client = NatsClient(server.url)
    try:
        js_stream_create(client, stream, [subject], duplicate_window_s=120)

        def env(pod):
            return {"POD_NAME": pod, "POD_NAMESPACE": lease_ns, "COLLECT_AGENT_HA_ENABLED": "true",
                    "COLLECT_AGENT_HA_LEASE_DURATION": f"{LEASE_S}s", "COLLECT_AGENT_HA_RENEW_DEADLINE": "2s",
                    "COLLECT_AGENT_HA_RETRY_PERIOD": "500ms", "COLLECT_AGENT_HA_CHECKPOINT_INTERVAL": "1s",
                    "COLLECT_AGENT_EVENTS_NAMESPACES": namespace,
                    "COLLECT_AGENT_EVENTS_DEDUP_WINDOW": "0s",
                    "COLLECT_AGENT_NATS_JETSTREAM_ENABLED": "true",
                    "COLLECT_AGENT_NATS_JETSTREAM_STREAM_NAME": stream}
        agents = {p: agent_factory(server.url, env=env(p), args=["--cluster-id", cid]) for p in ("a", "b")}

        def lease():
            return cluster.admin.get_json(f"/apis/coordination.k8s.io/v1/namespaces/{lease_ns}/leases/{lease_name}")

        def sole_leader(candidates):
            roles = {p: a.health()["ha"]["role"] for p, a in candidates.items() if a.proc.poll() is None}
            leaders = [p for p, r in roles.items() if r == "leader"]
            if len(leaders) != 1 or lease()["spec"].get("holderIdentity") != leaders[0]:
                return None
            return leaders[0]
        first = wait_for(lambda: sole_leader(agents), timeout=60, what="one leader")
        other = "b" if first == "a" else "a"
        for a in agents.values():
            wait_for(lambda: a.get("/health/ready")[0] == 200, timeout=60, what="both replicas ready")
        transitions = lease()["spec"].get("leaseTransitions", 0)

        uids = []

        def burst():
            for i in range(TOTAL):
                o = cluster.admin.post_json(f"/api/v1/namespaces/{namespace}/events", new_event(namespace, i))
                uids.append(o["metadata"]["uid"])
        t = threading.Thread(target=burst)
        t.start()
        wait_for(lambda: js_stream_info(client, stream)["state"]["messages"] >= TOTAL // 3, timeout=180,
                 interval=0.05, what="a third of the burst in the stream")
        killed_at = time.monotonic()
        agents[first].terminate(sig=9)
        new = wait_for(lambda: sole_leader({other: agents[other]}), timeout=LEASE_S + 30,
                       interval=0.1, what="the other replica leading")
        print(f"\nreal API server, SIGKILL failover: {time.monotonic() - killed_at:.2f} s (lease {LEASE_S} s)")
        t.join(timeout=600)
        assert len(uids) == TOTAL

        def all_stored():
            return js_stream_info(client, stream)["state"]["messages"] >= TOTAL
        wait_for(all_stored, timeout=180, interval=0.5, what="every event in the stream")
        time.sleep(3)  # anything sent twice would land now: the duplicate window must drop it
        stored = {}
        for m in js_stream_messages(client, stream):
            uid = json.loads(m.data)["uid"]
            stored[uid] = stored.get(uid, 0) + 1

        assert new == other
        spec = lease()["spec"]
        assert spec["holderIdentity"] == other and spec["leaseTransitions"] == transitions + 1, spec
        doubled = {u: n for u, n in stored.items() if n > 1}
        assert not doubled, f"{len(doubled)} events stored more than once"
        missing = set(uids) - set(stored)
        assert not missing, f"{len(missing)} of {TOTAL} events never reached the stream"
        assert set(stored) == set(uids)
        agents[other].assert_clean_exit()
    finally:
        client.close()
        server.stop()
