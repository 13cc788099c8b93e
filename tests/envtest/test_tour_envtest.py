"""Issue 11: the tour with DEMO_KUBECONFIG against the real kube-apiserver,
as a user points it at a real cluster. The kubeconfig is the agent's
ServiceAccount token of deploy/ (read-only RBAC). The workloads the tour
shows are the ones the test created through the API as their controllers
would (scripts/demo_cluster.py's pods and events); the tour must find them
all: the agent online under the server's kube-system UID, an event of each
category, the sample naming the crash loop, and kubectl listing the pods."""
import os
import uuid

import pytest

from lib.tour import BUILD_DIR, assert_nothing_left, demo_cluster, event_lines, run_tour, section, sections, tour_env

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(BUILD_DIR, "agentctl")),
                                reason="agentctl not built")


def seed(cluster, namespace, node):
    """demo_cluster's pods (spec, then status through pods/status: the
    server ignores a created pod's status) and their Warning events."""
    api = cluster.admin
    # No controller makes a namespace's default ServiceAccount here; pods need it.
    api.post_json(f"/api/v1/namespaces/{namespace}/serviceaccounts",
                  {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})
    created = []
    for name, app, trouble, restarts in demo_cluster.PODS:
        obj = demo_cluster.pod(name, app, trouble, restarts, node, namespace=namespace)
        status = obj.pop("status")
        meta = {k: v for k, v in obj["metadata"].items() if k != "creationTimestamp"}
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": obj["spec"]}
        api.post_json(f"/api/v1/namespaces/{namespace}/pods", body)
        created.append(api.patch_merge(f"/api/v1/namespaces/{namespace}/pods/{name}/status", {"status": status}))
    for ev in demo_cluster.events(created, node):
        ns = ev["involvedObject"].get("namespace") or "default"
        ev = dict(ev, apiVersion="v1", kind="Event",
                  metadata={"name": "%s.%s" % (ev["involvedObject"]["name"], uuid.uuid4().hex[:16]), "namespace": ns})
        api.post_json(f"/api/v1/namespaces/{ns}/events", ev)
    return created


def test_the_tour_reads_a_real_cluster(tmp_path, cluster, namespace, metadata_url):
    node = "tour-" + uuid.uuid4().hex[:8]
    seed(cluster, namespace, node)
    cluster_id = cluster.admin.get_json("/api/v1/namespaces/kube-system")["metadata"]["uid"]
    # The session's other tests made events too: listen the whole DEMO_SECONDS
    # (the agent publishes the last 5 minutes' at start) rather than stop at a count.
    env = tour_env(tmp_path, DEMO_INSTALL="check", DEMO_KUBECONFIG=cluster.kubeconfig, DEMO_SECONDS=60,
                   # In a full CI session the cluster holds thousands of other tests'
                   # recent events: all of them come in one burst, which agentctl tail
                   # must print whole (it once kept 64 and dropped the rest silently).
                   DEMO_EVENTS=100000,
                   # no cloud is asked for the cluster's name: a loopback port nobody serves
                   COLLECT_AGENT_CLUSTER_AWS_METADATA_ENDPOINT=metadata_url,
                   COLLECT_AGENT_CLUSTER_GCE_METADATA_ENDPOINT=metadata_url,
                   COLLECT_AGENT_CLUSTER_AZURE_METADATA_ENDPOINT=metadata_url,
                   COLLECT_AGENT_CLUSTER_METADATA_TIMEOUT="200ms")
    code, out, err = run_tour(env)
    assert code == 0, out + err
    parts = sections(out)
    assert any(h.startswith(f"Setting up: the cluster of {cluster.kubeconfig}") for h in parts), list(parts)

    agents = section(parts, "1. ")
    rows = [line.split() for line in agents if line.startswith(cluster_id)]
    assert len(rows) == 1 and rows[0][-1] == "online", agents

    ours = [(cat, obj) for cid, cat, obj in event_lines(section(parts, "2. "))
            if cid == cluster_id and (obj.startswith(f"{namespace}/") or obj == f"-/Node/{node}")]
    lines = event_lines(section(parts, "2. "))
    assert set(demo_cluster.EVENT_CATEGORIES) <= {cat for cat, _ in ours}, (
        f"ours: {ours}; {len(lines)} event lines in all, from namespaces "
        f"{sorted({obj.split('/')[0] for _, _, obj in lines})[:40]}")

    sample = [line for line in section(parts, "3. ") if f" {cluster_id} part " in line]
    assert sample and "; pods " in sample[0] and " CrashLoopBackOff (7 restarts)" in sample[0], sample
    # no metrics.k8s.io on this server: the line says so instead of usage
    assert "; no usage: " in sample[0], sample[0]

    diagnostic = section(parts, "4. ")
    listed = {r.split()[1] for r in diagnostic[2:] if r.split()[:1] == [namespace]}
    assert listed == {name for name, *_ in demo_cluster.PODS}, diagnostic

    pids = assert_nothing_left(env, tmp_path)
    assert "kubesim" not in pids, pids
