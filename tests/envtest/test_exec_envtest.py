"""Issue 10 against a real kube-apiserver: the real kubectl runs from inside
the agent's sandbox, with the kubeconfig the agent writes from deploy/'s
ServiceAccount token, and answers the orchestrator over NATS.

What the ServiceAccount may not do (read secrets, write anything) is
refused twice: by the executor's policy before any process starts, and by
RBAC when the policy lets a read through."""
import json
import os
import uuid

import pytest

from lib.exec_helpers import command, request


def real_kubectl():
    for p in ("/usr/bin/kubectl", "/usr/local/bin/kubectl"):
        if os.access(p, os.X_OK):
            return p
    return None


pytestmark = pytest.mark.skipif(real_kubectl() is None, reason="no kubectl in /usr/bin or /usr/local/bin")


def make_pod(cluster, namespace, name):
    # No controller makes the namespace's default ServiceAccount here, and
    # admission wants it.
    r = cluster.admin.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                              {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})
    assert r.status in (201, 409), r.body
    cluster.admin.post_json(f"/api/v1/namespaces/{namespace}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "exec-test"}},
        "spec": {"containers": [{"name": "c", "image": "registry.example/app:1"}]}})


@pytest.fixture
def pods(cluster, namespace):
    """make(name) creates a pod in the test's namespace; all are deleted at
    the end (no controller here deletes a namespace's pods, and other
    tests count the cluster's pods)."""
    made = []

    def make(name):
        make_pod(cluster, namespace, name)
        made.append(name)

    yield make
    for name in made:
        cluster.admin.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}?gracePeriodSeconds=0")


@pytest.fixture
def exec_agent(agent_factory, nats_server, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    cid = "envtest-" + uuid.uuid4().hex[:6]
    agent = agent_factory(nats_server.url, env={
        "COLLECT_AGENT_CLUSTER_ID": cid, "COLLECT_AGENT_EXEC_WORK_DIR": str(work),
        "COLLECT_AGENT_METRICS_ENABLED": "false", "COLLECT_AGENT_EVENTS_ENABLED": "false"})
    agent.wait_ready(timeout=30)
    return agent, cid, work


def test_real_kubectl_get_pods_all_namespaces(cluster, namespace, nats_client, exec_agent, pods):
    agent, cid, work = exec_agent
    pods("exec-pod-1")
    r = request(nats_client, command("kubectl", "get", ["pods", "-A"], cluster_id=cid, timeout_seconds=60),
                timeout=90, cluster_id=cid)
    assert r["status"] == "succeeded", r
    lines = r["stdout"].splitlines()
    assert lines[0].split()[:3] == ["NAMESPACE", "NAME", "READY"], r["stdout"]
    assert any(line.split()[:2] == [namespace, "exec-pod-1"] for line in lines), r["stdout"]

    r = request(nats_client, command("kubectl", "get", ["pods", "-o", "json", "-l", "app=exec-test"],
                                     cluster_id=cid, namespace=namespace), timeout=90, cluster_id=cid)
    assert r["status"] == "succeeded", r
    assert [p["metadata"]["name"] for p in json.loads(r["stdout"])["items"]] == ["exec-pod-1"]
    assert os.listdir(work) == []
    agent.assert_clean_exit()


def test_what_the_service_account_may_not_do_is_refused(cluster, namespace, nats_client, exec_agent):
    agent, cid, _ = exec_agent
    # The policy refuses secrets before anything runs.
    r = request(nats_client, command("kubectl", "get", ["secrets", "-A"], cluster_id=cid), cluster_id=cid)
    assert r["status"] == "rejected" and "secret" in r["error"]
    # A read the policy allows but RBAC does not (the ClusterRole has no
    # configmaps): kubectl runs, the API server says Forbidden.
    r = request(nats_client, command("kubectl", "get", ["configmaps"], cluster_id=cid, namespace=namespace),
                timeout=90, cluster_id=cid)
    assert r["status"] == "failed" and r["exit_code"] == 1, r
    assert "Forbidden" in r["stderr"] or "forbidden" in r["stderr"], r["stderr"]
    # auth can-i answers from the agent's own identity.
    r = request(nats_client, command("kubectl", "auth", ["can-i", "delete", "pods"], cluster_id=cid,
                                     namespace=namespace), timeout=90, cluster_id=cid)
    assert r["stdout"].strip() == "no", r
    r = request(nats_client, command("kubectl", "auth", ["can-i", "list", "pods"], cluster_id=cid,
                                     namespace=namespace), timeout=90, cluster_id=cid)
    assert r["status"] == "succeeded" and r["stdout"].strip() == "yes", r
    agent.assert_clean_exit()
