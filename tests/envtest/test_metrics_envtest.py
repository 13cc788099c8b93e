"""Issue 9 against a real kube-apiserver v1.28: the metrics collector reads
nodes, pods and namespaces with deploy/'s ServiceAccount and publishes a
MetricsSample every second on agent.metrics.<cluster_id>.

Objects are made the way a cluster makes them, through the real API with
the admin token: a Node is POSTed and its status (conditions, capacity,
allocatable, nodeInfo) set through nodes/status, as a kubelet registers;
a pod is POSTed (the server resets its status to Pending) bound to a node
by spec.nodeName, and its status (phase, conditions, containerStatuses)
set through pods/status. Nothing reconciles them: no kubelet, no
scheduler, no controllers.

The server is shared by the session: nodes are cluster-scoped and the
summary is cluster-wide, so every test removes the pods, nodes and
namespaces it made, and the cluster-wide numbers are checked against what
the API lists at that moment."""
import json
import time
import uuid

import pytest

from lib.agentproc import wait_for
from lib.events_helpers import metric
from lib.metrics_helpers import SampleCollector, by_name, crashloop_status, parse_ts, pod, ts

MI = 1024 ** 2
GI = 1024 ** 3
KI = 1024
ZERO_PODS = {"pending": 0, "running": 0, "succeeded": 0, "failed": 0, "unknown": 0}

# Samples every second; a Pending pod is PendingTooLong after 1 s (the
# real server stamps creationTimestamp itself: it cannot be backdated).
METRICS_ENV = {"COLLECT_AGENT_METRICS_INTERVAL": "1s", "COLLECT_AGENT_METRICS_PENDING_THRESHOLD": "1s"}


# ------------------------------------------------------------------ objects

class Objects:
    """What one test made through the real API, removed at its end."""

    def __init__(self, cluster):
        self.api = cluster.admin
        self.nodes, self.namespaces = [], []

    def namespace(self, name):
        """A namespace with its `default` ServiceAccount (the ServiceAccount
        admission plugin refuses pods without it, and no controller makes
        it here)."""
        if name not in self.namespaces:
            r = self.api.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                                  "metadata": {"name": name}})
            assert r.status in (201, 409), r.body
            self.namespaces.append(name)
        self.api.post_json(f"/api/v1/namespaces/{name}/serviceaccounts",
                           {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})
        return name

    def node(self, name, labels, capacity, allocatable, kubelet_version="v1.28.7", unschedulable=False,
             ready=True):
        """Register a node as a kubelet does: the object, then its status."""
        self.api.post_json("/api/v1/nodes", {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": dict(labels, **{"kubernetes.io/hostname": name})},
            "spec": {"unschedulable": unschedulable}})
        self.nodes.append(name)
        node = self.api.get_json(f"/api/v1/nodes/{name}")
        t = ts(600)

        def cond(ctype, status, reason):
            return {"type": ctype, "status": status, "reason": reason, "message": f"{reason} (envtest)",
                    "lastHeartbeatTime": ts(), "lastTransitionTime": t}
        node["status"] = {
            "capacity": capacity, "allocatable": allocatable,
            "conditions": [cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                           cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                           cond("PIDPressure", "False", "KubeletHasSufficientPID"),
                           cond("Ready", "True" if ready else "False",
                                "KubeletReady" if ready else "KubeletNotReady")],
            "nodeInfo": {"machineID": uuid.uuid4().hex, "systemUUID": str(uuid.uuid4()),
                         "bootID": str(uuid.uuid4()), "kernelVersion": "6.1.0-18-amd64",
                         "osImage": "Debian GNU/Linux 12 (bookworm)",
                         "containerRuntimeVersion": "containerd://1.7.11", "kubeletVersion": kubelet_version,
                         "kubeProxyVersion": kubelet_version, "operatingSystem": "linux",
                         "architecture": "amd64"},
        }
        return self.api.put_json(f"/api/v1/nodes/{name}/status", node)

    def set_node_condition(self, name, ctype, status, reason):
        """A status update as the kubelet (or the node lifecycle controller)
        makes it: read, change the condition, PUT with the resourceVersion."""
        node = self.api.get_json(f"/api/v1/nodes/{name}")
        for c in node["status"]["conditions"]:
            if c["type"] == ctype:
                c.update(status=status, reason=reason, lastTransitionTime=ts(), lastHeartbeatTime=ts())
        return self.api.put_json(f"/api/v1/nodes/{name}/status", node)

    def pod(self, obj, restart_policy=None):
        """POST the pod (metadata and spec; the server sets status
        Pending), then PATCH its status through pods/status."""
        ns = obj["metadata"]["namespace"]
        spec = dict(obj["spec"])
        if restart_policy:
            spec["restartPolicy"] = restart_policy
        created = self.api.post_json(f"/api/v1/namespaces/{ns}/pods",
                                     {"apiVersion": "v1", "kind": "Pod", "metadata": obj["metadata"], "spec": spec})
        assert created["status"]["phase"] == "Pending", created["status"]   # whatever was sent
        return self.patch_pod_status(ns, obj["metadata"]["name"], obj["status"])

    def patch_pod_status(self, ns, name, status):
        return self.api.patch_merge(f"/api/v1/namespaces/{ns}/pods/{name}/status", {"status": status})

    def delete_pod(self, ns, name):
        """Deleted at once. A plain DELETE of a pod bound to a node is
        graceful: the real server only sets deletionTimestamp (30 s) and
        waits for the kubelet, which never comes here; the collector
        rightly keeps counting such a pod, as the cluster does."""
        r = self.api.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}",
                             {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0})
        assert r.status in (200, 404), r.body

    def pods_in(self, ns):
        return [p["metadata"]["name"] for p in self.api.get_json(f"/api/v1/namespaces/{ns}/pods")["items"]]

    def delete_namespace(self, ns):
        """DELETE: the namespace turns Terminating and stays so (its
        `kubernetes` finalizer is the namespace controller's, which does
        not run here: it would have deleted the namespace's pods first)."""
        r = self.api.request("DELETE", f"/api/v1/namespaces/{ns}")
        assert r.status in (200, 202, 404), r.body
        return r

    def finalize_namespace(self, ns):
        """What the namespace controller does once the namespace is empty:
        clear spec.finalizers through the finalize subresource; the server
        then removes the namespace."""
        obj = self.api.get_json(f"/api/v1/namespaces/{ns}")
        obj["spec"]["finalizers"] = []
        self.api.put_json(f"/api/v1/namespaces/{ns}/finalize", obj)

    def cleanup(self):
        for ns in self.namespaces:
            try:
                for name in self.pods_in(ns):
                    self.delete_pod(ns, name)
                self.delete_namespace(ns)
                if self.api.request("GET", f"/api/v1/namespaces/{ns}").status == 200:
                    self.finalize_namespace(ns)
            except Exception:  # noqa: BLE001 - best effort, the next ones still go
                pass
        for name in self.nodes:
            self.api.request("DELETE", f"/api/v1/nodes/{name}")


@pytest.fixture
def objects(cluster):
    o = Objects(cluster)
    yield o
    o.cleanup()


def api_count(cluster, path):
    return len(cluster.admin.get_json(path)["items"])


def start_agent(agent_factory, nats_url, env=None):
    e = dict(METRICS_ENV)
    e.update(env or {})
    a = agent_factory(nats_url, env=e)
    a.wait_ready(timeout=30)
    return a


def collector(nats_client, cluster_id):
    sub = nats_client.subscribe(f"agent.metrics.{cluster_id}")
    nats_client.flush()
    return SampleCollector(sub)


def ns_of(sample, name):
    return by_name(sample["namespaces"]).get(name)


def unhealthy(sample):
    return [(u["name"], u["reason"]) for u in sample["unhealthy_pods"]]


# ------------------------------------------------------------------ the sample

def test_sample_of_nodes_and_pods_made_through_the_real_api(cluster, namespace, nats_server, nats_client,
                                                            agent_factory, objects):
    cid = cluster.admin.get_json("/api/v1/namespaces/kube-system")["metadata"]["uid"]
    assert api_count(cluster, "/api/v1/pods") == 0, "another test left pods behind"
    assert api_count(cluster, "/api/v1/nodes") == 0, "another test left nodes behind"
    shop = objects.namespace(namespace)
    batch = objects.namespace("batch-" + uuid.uuid4().hex[:8])
    node_a, node_b = f"{shop}-node-a", f"{shop}-node-b"

    # Before the agent starts (its first LISTs see them): the nodes, and
    # namespace batch with three running jobs.
    objects.node(node_a, {"topology.kubernetes.io/zone": "eu-west-1a",
                          "node.kubernetes.io/instance-type": "m5.xlarge"},
                 capacity={"cpu": "4", "memory": "16106128Ki", "pods": "110", "ephemeral-storage": "83873772Ki"},
                 allocatable={"cpu": "3920m", "memory": "15087120Ki", "pods": "110"})
    # cordoned, with only the deprecated beta labels (older clusters)
    objects.node(node_b, {"failure-domain.beta.kubernetes.io/zone": "eu-west-1b",
                          "beta.kubernetes.io/instance-type": "m5.large"},
                 capacity={"cpu": "2", "memory": "8Gi", "pods": "58"},
                 allocatable={"cpu": "1930m", "memory": "7Gi", "pods": "58"}, kubelet_version="v1.27.11",
                 unschedulable=True)
    for i in range(3):
        objects.pod(pod(f"job-{i}", batch, node=node_a, requests={"cpu": "1", "memory": "1Gi"}))

    col = collector(nats_client, cid)
    agent = start_agent(agent_factory, nats_server.url)

    # After: namespace shop's pods arrive through the watches, each as a
    # Pending ADDED then a MODIFIED carrying its status.
    web = dict(containers=["web", "sidecar"], requests={"cpu": "250m", "memory": "64Mi"},
               limits={"cpu": "1", "memory": "128Mi"})
    objects.pod(pod("web-1", shop, node=node_a, **web))
    objects.pod(pod("web-2", shop, node=node_a, **web))
    objects.pod(pod("crash-1", shop, node=node_a, ready=False, requests={"cpu": "100m", "memory": "32Mi"},
                    statuses=crashloop_status(restarts=7, crashed_ago=40)))
    objects.pod(pod("crash-2", shop, node=node_b, ready=False, statuses=crashloop_status(restarts=2, crashed_ago=20)))
    oom = crashloop_status(restarts=3, crashed_ago=60, reason="OOMKilled")
    oom[0]["state"] = {"running": {"startedAt": ts(50)}}
    # "1.5Gi" is stored as "1536Mi": the server canonicalizes quantities
    objects.pod(pod("oom-1", shop, node=node_a, ready=False, statuses=oom,
                    requests={"cpu": "1500m", "memory": "1.5Gi"}))
    old_oom = crashloop_status(restarts=2, crashed_ago=2 * 3600, reason="OOMKilled")
    old_oom[0].update(ready=True, state={"running": {"startedAt": ts(2 * 3600 - 10)}})
    objects.pod(pod("oom-old", shop, node=node_a, statuses=old_oom))   # over an hour ago: healthy again

    def waiting(reason):
        return [{"name": "app", "ready": False, "restartCount": 0, "image": "nginx:1.25",
                 "state": {"waiting": {"reason": reason, "message": f"{reason} (envtest)"}}}]
    objects.pod(pod("pull-1", shop, node=node_a, phase="Pending", statuses=waiting("ImagePullBackOff")))
    objects.pod(pod("errpull-1", shop, node=node_b, phase="Pending", statuses=waiting("ErrImagePull")))
    objects.pod(pod("config-1", shop, node=node_a, phase="Pending",
                    statuses=waiting("CreateContainerConfigError")))
    objects.pod(pod("pending-1", shop, node=None, phase="Pending", requests={"cpu": "2", "memory": "1Gi"}))
    objects.pod(pod("notready-1", shop, node=node_b, ready=False))
    # Limits only: the real server defaults requests to the limits.
    lim = objects.pod(pod("limits-only", shop, node=node_b, limits={"cpu": "500m", "memory": "256Mi"}))
    assert lim["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "500m", "memory": "256Mi"}
    done = [{"name": "app", "ready": False, "restartCount": 0, "image": "nginx:1.25",
             "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": ts(200),
                                      "finishedAt": ts(100)}}}]
    objects.pod(pod("done-1", shop, node=node_a, phase="Succeeded", statuses=done,
                    requests={"cpu": "3", "memory": "3Gi"}), restart_policy="Never")
    failed = [dict(done[0], state={"terminated": {"exitCode": 2, "reason": "Error", "startedAt": ts(200),
                                                  "finishedAt": ts(100)}})]
    objects.pod(pod("failed-1", shop, node=node_b, phase="Failed", statuses=failed,
                    requests={"cpu": "1", "memory": "1Gi"}), restart_policy="Never")
    stored = {p["metadata"]["name"]: p for p in cluster.admin.get_json(f"/api/v1/namespaces/{shop}/pods")["items"]}
    assert stored["oom-1"]["spec"]["containers"][0]["resources"]["requests"]["memory"] == "1536Mi"

    want_unhealthy = [("oom-1", "OOMKilled"), ("crash-1", "CrashLoopBackOff"), ("crash-2", "CrashLoopBackOff"),
                      ("pull-1", "ImagePullBackOff"), ("errpull-1", "ErrImagePull"),
                      ("config-1", "CreateContainerConfigError"), ("pending-1", "PendingTooLong"),
                      ("notready-1", "NotReady")]
    s = col.next_sample(lambda s: ns_of(s, shop) and ns_of(s, shop)["pods"]["failed"] == 1
                        and unhealthy(s) == want_unhealthy, timeout=30)

    # ---- the envelope
    assert s["cluster_id"] == cid and s["parts"] == 1
    assert s["sample_id"].startswith(s["agent_id"] + "-")
    (msg, part), = col.parts[s["sample_id"]]
    assert part["part"] == 1
    assert msg.headers["Content-Type"] == "application/json"
    assert msg.headers["Nats-Msg-Id"] == f"{s['sample_id']}-1"
    # A bare kube-apiserver has no metrics-server: metrics.k8s.io is 404.
    assert s["usage_available"] is False
    reason = s["usage_unavailable_reason"]
    assert "404" in reason and "not served" in reason, reason
    assert "usage" not in s["summary"] and all("usage" not in n for n in s["nodes"])
    assert all("usage" not in n for n in s["namespaces"])

    # ---- the summary (the cluster holds only this test's pods and nodes)
    sm = s["summary"]
    assert sm["nodes_total"] == 2 and sm["nodes_ready"] == 2
    assert sm["namespaces"] == api_count(cluster, "/api/v1/namespaces")
    assert sm["pods"] == {"pending": 4, "running": 8 + 3, "succeeded": 1, "failed": 1, "unknown": 0}
    assert sm["restarts"] == 7 + 2 + 3 + 2
    assert sm["containers_restarting"] == 2        # crash-1, crash-2 (oom-1 runs again)
    assert sm["unhealthy_pods"] == 8 and s["unhealthy_pods_omitted"] == 0
    # not finished: 2 web pods x 2 containers, crash-1, oom-1, pending-1,
    # limits-only (requests defaulted), 3 jobs; done-1 and failed-1 left out
    shop_req = {"cpu_millicores": 4 * 250 + 100 + 1500 + 2000 + 500,
                "memory_bytes": 4 * 64 * MI + 32 * MI + 1536 * MI + GI + 256 * MI}
    shop_lim = {"cpu_millicores": 4 * 1000 + 500, "memory_bytes": 4 * 128 * MI + 256 * MI}
    assert sm["requests"] == {"cpu_millicores": shop_req["cpu_millicores"] + 3000,
                              "memory_bytes": shop_req["memory_bytes"] + 3 * GI}
    assert sm["limits"] == shop_lim
    assert sm["capacity"] == {"cpu_millicores": 6000, "memory_bytes": 16106128 * KI + 8 * GI, "pods": 168}
    assert sm["allocatable"] == {"cpu_millicores": 3920 + 1930, "memory_bytes": 15087120 * KI + 7 * GI,
                                 "pods": 168}

    # ---- the nodes, in name order
    assert [n["name"] for n in s["nodes"]] == [node_a, node_b]
    a, b = s["nodes"]
    assert a["ready"] is True and a["unschedulable"] is False
    assert a["zone"] == "eu-west-1a" and a["instance_type"] == "m5.xlarge" and a["kubelet_version"] == "v1.28.7"
    assert a["capacity"] == {"cpu_millicores": 4000, "memory_bytes": 16106128 * KI, "pods": 110}
    assert a["allocatable"] == {"cpu_millicores": 3920, "memory_bytes": 15087120 * KI, "pods": 110}
    # bound and not finished: web x2, crash-1, oom-1, oom-old, pull-1,
    # config-1, 3 jobs (done-1 finished; pending-1 has no node)
    assert a["pods"] == 10
    real_a = cluster.admin.get_json(f"/api/v1/nodes/{node_a}")["status"]["conditions"]
    assert [(c["type"], c["status"], c["reason"]) for c in a["conditions"]] == \
        [(c["type"], c["status"], c["reason"]) for c in real_a]
    for got, real in zip(a["conditions"], real_a):
        assert parse_ts(got["last_transition_time"]) == parse_ts(real["lastTransitionTime"])
    assert b["ready"] is True and b["unschedulable"] is True
    assert b["zone"] == "eu-west-1b" and b["instance_type"] == "m5.large" and b["kubelet_version"] == "v1.27.11"
    assert b["capacity"] == {"cpu_millicores": 2000, "memory_bytes": 8 * GI, "pods": 58}
    assert b["allocatable"] == {"cpu_millicores": 1930, "memory_bytes": 7 * GI, "pods": 58}
    assert b["pods"] == 4      # crash-2, errpull-1, notready-1, limits-only (failed-1 finished)

    # ---- the namespaces, in name order
    names = [n["name"] for n in s["namespaces"]]
    assert names == sorted(names) and {shop, batch, "default", "kube-system"} <= set(names)
    sh, bt = ns_of(s, shop), ns_of(s, batch)
    assert sh["phase"] == "Active" and bt["phase"] == "Active"
    assert sh["pods"] == {"pending": 4, "running": 8, "succeeded": 1, "failed": 1, "unknown": 0}
    assert sh["restarts"] == 14 and sh["requests"] == shop_req and sh["limits"] == shop_lim
    assert bt["pods"] == dict(ZERO_PODS, running=3) and bt["restarts"] == 0
    assert bt["requests"] == {"cpu_millicores": 3000, "memory_bytes": 3 * GI}
    assert bt["limits"] == {"cpu_millicores": 0, "memory_bytes": 0}
    assert ns_of(s, "default")["pods"] == ZERO_PODS

    # ---- unhealthy pods, worst first, with what the pod says
    u = by_name(s["unhealthy_pods"])
    assert all(x["namespace"] == shop for x in s["unhealthy_pods"])
    assert (u["oom-1"]["restarts"], u["oom-1"]["node"], u["oom-1"]["phase"]) == (3, node_a, "Running")
    assert (u["crash-1"]["restarts"], u["crash-1"]["node"]) == (7, node_a)
    assert (u["crash-2"]["restarts"], u["crash-2"]["node"]) == (2, node_b)
    assert u["pull-1"]["phase"] == "Pending" and u["errpull-1"]["node"] == node_b
    assert u["pending-1"].get("node", "") == "" and u["pending-1"]["phase"] == "Pending"
    assert u["notready-1"]["phase"] == "Running" and u["notready-1"]["restarts"] == 0

    def status_of(name):
        return stored[name]["status"]
    # since: the OOM kill, the last crash, the Ready condition's change, the creation
    assert parse_ts(u["oom-1"]["since"]) == \
        parse_ts(status_of("oom-1")["containerStatuses"][0]["lastState"]["terminated"]["finishedAt"])
    assert parse_ts(u["crash-1"]["since"]) == \
        parse_ts(status_of("crash-1")["containerStatuses"][0]["lastState"]["terminated"]["finishedAt"])
    assert parse_ts(u["notready-1"]["since"]) == parse_ts(status_of("notready-1")["conditions"][0]["lastTransitionTime"])
    assert parse_ts(u["pending-1"]["since"]) == parse_ts(stored["pending-1"]["metadata"]["creationTimestamp"])

    # ---- the agent's own view agrees with the API
    h = agent.health()
    assert h["metrics"]["stores"]["pods"]["entries"] == api_count(cluster, "/api/v1/pods") == 17
    assert h["metrics"]["usage"]["available"] is False
    for r in ("quantity", "count", "phase", "name"):   # nothing the real server sends is refused
        assert metric(agent, "agent_metrics_invalid_total", {"reason": r}) == 0, r

    # ---- changes, each in a following sample

    # node-a turns NotReady (a status update, as the kubelet or the node
    # lifecycle controller makes it)
    objects.set_node_condition(node_a, "Ready", "False", "KubeletNotReady")
    s = col.next_sample(lambda s: s["summary"]["nodes_ready"] == 1, after=s["sample_id"])
    a = by_name(s["nodes"])[node_a]
    assert a["ready"] is False and s["summary"]["nodes_total"] == 2 and by_name(s["nodes"])[node_b]["ready"]
    conds = {c["type"]: c for c in a["conditions"]}
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "KubeletNotReady")
    assert conds["MemoryPressure"]["status"] == "False" and len(conds) == 4
    # capacity and allocatable still count a NotReady node
    assert s["summary"]["capacity"]["cpu_millicores"] == 6000 and a["pods"] == 10

    # crash-1 crashes once more
    st = status_of("crash-1")
    st["containerStatuses"][0]["restartCount"] = 8
    objects.patch_pod_status(shop, "crash-1", {"containerStatuses": st["containerStatuses"]})
    s = col.next_sample(lambda s: s["summary"]["restarts"] == 15, after=s["sample_id"])
    assert ns_of(s, shop)["restarts"] == 15 and by_name(s["unhealthy_pods"])["crash-1"]["restarts"] == 8
    assert unhealthy(s) == want_unhealthy

    # a pod is deleted
    objects.delete_pod(shop, "web-2")
    s = col.next_sample(lambda s: ns_of(s, shop)["pods"]["running"] == 7, after=s["sample_id"])
    assert s["summary"]["pods"]["running"] == 10
    # web-2: 2 containers x (250m, 64Mi) requested, (1, 128Mi) limits
    shop_req = {"cpu_millicores": shop_req["cpu_millicores"] - 500,
                "memory_bytes": shop_req["memory_bytes"] - 128 * MI}
    shop_lim = {"cpu_millicores": shop_lim["cpu_millicores"] - 2000,
                "memory_bytes": shop_lim["memory_bytes"] - 256 * MI}
    assert ns_of(s, shop)["requests"] == shop_req and ns_of(s, shop)["limits"] == shop_lim
    assert by_name(s["nodes"])[node_a]["pods"] == 9
    assert s["summary"]["limits"] == shop_lim

    # a namespace is deleted. The real server alone runs no namespace
    # controller: DELETE leaves it Terminating with its pods in place. The
    # test deletes the pods itself (what the controller would do), the
    # namespace shows Terminating and empty, then the finalize step (the
    # controller's last) lets the server remove it.
    n_ns = s["summary"]["namespaces"]
    for name in objects.pods_in(batch):
        objects.delete_pod(batch, name)
    r = objects.delete_namespace(batch)
    assert r.json()["status"]["phase"] == "Terminating"
    s = col.next_sample(lambda s: ns_of(s, batch) and ns_of(s, batch)["phase"] == "Terminating"
                        and ns_of(s, batch)["pods"] == ZERO_PODS, after=s["sample_id"])
    assert s["summary"]["namespaces"] == n_ns
    assert ns_of(s, batch)["requests"] == {"cpu_millicores": 0, "memory_bytes": 0}
    assert s["summary"]["pods"] == {"pending": 4, "running": 7, "succeeded": 1, "failed": 1, "unknown": 0}
    assert s["summary"]["requests"] == shop_req
    assert by_name(s["nodes"])[node_a]["pods"] == 6
    objects.finalize_namespace(batch)
    wait_for(lambda: cluster.admin.request("GET", f"/api/v1/namespaces/{batch}").status == 404, timeout=10,
             what="the finalized namespace to be removed")
    s = col.next_sample(lambda s: ns_of(s, batch) is None, after=s["sample_id"])
    assert s["summary"]["namespaces"] == n_ns - 1 == api_count(cluster, "/api/v1/namespaces")
    assert unhealthy(s) == want_unhealthy
    assert s["usage_available"] is False and "404" in s["usage_unavailable_reason"]
    agent.assert_clean_exit()


# ------------------------------------------------------------------ what pods/status takes

def test_status_the_real_server_takes_but_no_kubelet_writes(cluster, namespace, nats_server, nats_client,
                                                             agent_factory, objects):
    """kube-apiserver v1.28 validates little of a pod's status: pods/status
    stores a phase Kubernetes does not have and a negative restart count
    (an unparsable quantity, by contrast, is refused with 400). The pod
    with the bad phase was a good Pending pod first (ADDED), so its bad
    version comes as a MODIFIED: the collector must drop the record it
    held, not keep counting the old one, and take the pod back when its
    status is good again."""
    cid = cluster.admin.get_json("/api/v1/namespaces/kube-system")["metadata"]["uid"]
    ns = objects.namespace(namespace)
    col = collector(nats_client, cid)
    agent = start_agent(agent_factory, nats_server.url)
    objects.pod(pod("good", ns, node=None, requests={"cpu": "500m", "memory": "1Gi"}))
    objects.pod(pod("weird", ns, node=None, requests={"cpu": "2", "memory": "2Gi"}))
    bad = pod("negative", ns, node=None)
    bad["status"]["containerStatuses"][0]["restartCount"] = -5
    stored = objects.pod(bad)
    assert stored["status"]["containerStatuses"][0]["restartCount"] == -5    # taken as is
    s = col.next_sample(lambda s: ns_of(s, ns) and ns_of(s, ns)["pods"]["running"] == 3)
    assert ns_of(s, ns)["restarts"] == 0 and s["summary"]["restarts"] == 0
    assert ns_of(s, ns)["requests"] == {"cpu_millicores": 2500, "memory_bytes": 3 * GI}

    weird = objects.patch_pod_status(ns, "weird", {"phase": "Exploded"})
    assert weird["status"]["phase"] == "Exploded"                            # taken as is
    s = col.next_sample(lambda s: ns_of(s, ns)["pods"]["running"] == 2, after=s["sample_id"])
    assert ns_of(s, ns)["pods"] == dict(ZERO_PODS, running=2)               # in no phase at all
    assert ns_of(s, ns)["requests"] == {"cpu_millicores": 500, "memory_bytes": GI}
    assert s["summary"]["unhealthy_pods"] == 0
    assert agent.health()["metrics"]["stores"]["pods"]["entries"] == 2
    assert metric(agent, "agent_metrics_invalid_total", {"reason": "phase"}) >= 1
    assert metric(agent, "agent_metrics_invalid_total", {"reason": "count"}) >= 1

    objects.patch_pod_status(ns, "weird", {"phase": "Running"})
    s = col.next_sample(lambda s: ns_of(s, ns)["pods"]["running"] == 3, after=s["sample_id"])
    assert ns_of(s, ns)["requests"] == {"cpu_millicores": 2500, "memory_bytes": 3 * GI}
    agent.assert_clean_exit()


# ------------------------------------------------------------------ AgentInfo, RBAC

def can(cluster, verb, resource, group=""):
    """What the API server's authorizer says for deploy/'s ServiceAccount."""
    r = cluster.admin.post_json("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": f"system:serviceaccount:{cluster.agent_namespace}:{cluster.agent_sa}",
                 "groups": ["system:serviceaccounts", f"system:serviceaccounts:{cluster.agent_namespace}",
                            "system:authenticated"],
                 "resourceAttributes": {"verb": verb, "resource": resource, "group": group}}})
    return r["status"].get("allowed", False)


def test_agentinfo_says_metrics_and_the_service_account_may_read_what_it_samples(cluster, nats_server,
                                                                                 nats_client, agent_factory):
    for resource in ("nodes", "pods", "namespaces"):
        for verb in ("list", "watch"):
            assert can(cluster, verb, resource), f"deploy/'s ClusterRole does not grant {verb} {resource}"
        # and with the ServiceAccount's own token
        assert cluster.agent_api.request("GET", f"/api/v1/{resource}?limit=1").status == 200
        st, _, _ = cluster.agent_api.watch_raw(f"/api/v1/{resource}?watch=1&timeoutSeconds=1", timeout=15)
        assert st == 200, resource
    for resource in ("nodes", "pods"):
        assert can(cluster, "list", resource, "metrics.k8s.io")
    # Authorization comes before routing: a 404 (not 403) with the agent's
    # own token means the role grants metrics.k8s.io and it is not served.
    r = cluster.agent_api.request("GET", "/apis/metrics.k8s.io/v1beta1/nodes")
    assert r.status == 404, (r.status, r.body[:200])

    cid = cluster.admin.get_json("/api/v1/namespaces/kube-system")["metadata"]["uid"]
    reg = nats_client.subscribe(f"agent.register.{cid}")
    col = collector(nats_client, cid)
    agent = start_agent(agent_factory, nats_server.url)
    info = json.loads(reg.next(timeout=20).data)
    assert info["cluster_id"] == cid
    assert info["capabilities"]["metrics"] is True and info["capabilities"]["events"] is True
    s = col.next_sample(timeout=20)
    assert s["summary"]["namespaces"] == api_count(cluster, "/api/v1/namespaces")
    h = agent.health()
    watches = {w["name"]: w for w in h["metrics"]["watches"]}
    assert set(watches) == {"pods", "nodes", "namespaces"}
    for name, w in watches.items():
        assert w["ready"] and w["synced"] and w["errors"] == 0, w
    assert "404" in h["metrics"]["usage"]["reason"]
    agent.assert_clean_exit()


# ------------------------------------------------------------------ a quiet server

def test_metrics_watches_stay_live_on_a_quiet_server(cluster, nats_server, agent_factory):
    """The real watch cache sends a pod, node or namespace watch bookmarks
    only once that type changed after the watch began (kubesim sends them
    every minute regardless): on a quiet cluster a healthy watch's only
    progress is its renewal after timeoutSeconds. With stall_timeout 4s the
    collector's watches must be renewed within 2 s and /health/live stay
    200 (it used to fail after 4 s: they ran for 5 to 10 minutes)."""
    agent = start_agent(agent_factory, nats_server.url, env={"COLLECT_AGENT_KUBERNETES_STALL_TIMEOUT": "4s"})
    w0 = {w["name"]: w["watch_restarts"] for w in agent.health()["metrics"]["watches"]}
    deadline = time.monotonic() + 7.0      # well past the stall timeout
    while time.monotonic() < deadline:
        status, body = agent.get("/health/live")
        assert status == 200, body
        time.sleep(0.25)
    for w in agent.health()["metrics"]["watches"]:
        assert w["watch_restarts"] - w0[w["name"]] >= 2, w     # renewed every 2 s
        assert w["errors"] == 0 and w["relists_gone"] == 0, w
    agent.assert_clean_exit()
