"""Issue 9, end to end: the simulated API server -> collect-agent's metrics
collector -> a real nats-server -> a test subscriber.

Samples come every second (COLLECT_AGENT_METRICS_INTERVAL=1s). Each test
changes the cluster through kubesim's control API and waits for a sample
that shows the change, then checks every number it affects against what
the test created; parts of one sample are put back together and must
agree on everything they share (tests/lib/metrics_helpers.py)."""
import json
import urllib.parse

import pytest

from lib.agentproc import wait_for
from lib.events_helpers import metric
from lib.metrics_helpers import (SampleCollector, by_name, crashloop_status, parse_ts, pod,
                                 pod_metrics_usage, quantity, ts)
from lib.nats import NatsClient

CID = "c1"
SUBJECT = f"agent.metrics.{CID}"
GI = 1024 ** 3
MI = 1024 ** 2


def start(agent_factory, nats_server, kubesim, env=None, encoding="json"):
    e = {"COLLECT_AGENT_METRICS_INTERVAL": "1s", "COLLECT_AGENT_NATS_ENCODING": encoding}
    e.update(env or {})
    a = agent_factory(args=["--nats", nats_server.url, "--kubeconfig", kubesim.kubeconfig,
                            "--cluster-id", CID], env=e)
    a.wait_ready(timeout=20)
    return a


def subscribe(client):
    sub = client.subscribe(SUBJECT)
    client.flush()
    return SampleCollector(sub)


def ns_of(sample, name):
    return by_name(sample["namespaces"]).get(name)


def unhealthy(sample):
    return [(u["namespace"], u["name"], u["reason"]) for u in sample["unhealthy_pods"]]


def shop(kubesim):
    """Namespace shop: two healthy web pods with requests and limits, a
    crash-looping one, one OOM-killed a minute ago (now running again,
    not ready), a long-Pending one, a finished one."""
    kubesim.create("namespaces", {"metadata": {"name": "shop"}})
    for i in (1, 2):
        kubesim.create("pods", pod(f"web-{i}", "shop", containers=["web", "sidecar"],
                                   requests={"cpu": "250m", "memory": "64Mi"},
                                   limits={"cpu": "1", "memory": "128Mi"}))
    kubesim.create("pods", pod("crash-1", "shop", ready=False, requests={"cpu": "100m", "memory": "32Mi"},
                               statuses=crashloop_status(restarts=7, crashed_ago=40)))
    oom = crashloop_status(restarts=3, crashed_ago=60, reason="OOMKilled")
    oom[0]["state"] = {"running": {"startedAt": ts(50)}}
    kubesim.create("pods", pod("oom-1", "shop", ready=False, statuses=oom,
                               requests={"cpu": "1500m", "memory": "1.5Gi"}))
    kubesim.create("pods", pod("pending-1", "shop", node=None, phase="Pending", created=ts(900),
                               requests={"cpu": "2", "memory": "1Gi"}))
    kubesim.create("pods", pod("done-1", "shop", phase="Succeeded", requests={"cpu": "3", "memory": "3Gi"}))


# ------------------------------------------------------------------ the numbers

@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_sample_numbers(nats_server, kubesim, agent_factory, encoding):
    client = NatsClient(nats_server.url)
    col = subscribe(client)
    shop(kubesim)
    a = start(agent_factory, nats_server, kubesim, encoding=encoding)
    s = col.next_sample(lambda s: ns_of(s, "shop") and ns_of(s, "shop")["pods"]["running"] == 4)

    assert s["cluster_id"] == CID and s["parts"] == 1
    assert [d["part"] for _, d in col.parts[s["sample_id"]]] == [1]
    assert s["sample_id"].startswith(s["agent_id"] + "-")
    assert s["usage_available"] is False
    assert "not served" in s["usage_unavailable_reason"] and "404" in s["usage_unavailable_reason"]
    assert "usage" not in s["summary"] and all("usage" not in n for n in s["nodes"])

    sm = s["summary"]
    assert sm["nodes_total"] == 1 and sm["nodes_ready"] == 1
    assert sm["namespaces"] == 4  # default, kube-public, kube-system, shop
    assert sm["pods"] == {"pending": 1, "running": 4, "succeeded": 1, "failed": 0, "unknown": 0}
    assert sm["restarts"] == 10 and sm["containers_restarting"] == 1  # crash-1; oom-1 runs again
    # crash-1, oom-1 (restarted after an OOM kill), pending-1 past the 5m threshold
    assert sm["unhealthy_pods"] == 3
    # Not finished: 2 web pods x 2 containers x (250m, 64Mi) + crash-1 + oom-1 + pending-1.
    assert sm["requests"] == {"cpu_millicores": 4 * 250 + 100 + 1500 + 2000,
                              "memory_bytes": 4 * 64 * MI + 32 * MI + 1536 * MI + GI}
    assert sm["limits"] == {"cpu_millicores": 4 * 1000, "memory_bytes": 4 * 128 * MI}
    # kubesim's node: cpu 4 / 3920m, memory 16106128Ki / 15087120Ki, pods 58.
    assert sm["capacity"] == {"cpu_millicores": 4000, "memory_bytes": 16106128 * 1024, "pods": 58}
    assert sm["allocatable"] == {"cpu_millicores": 3920, "memory_bytes": 15087120 * 1024, "pods": 58}

    node = by_name(s["nodes"])["node-a"]
    assert node["ready"] is True and node["unschedulable"] is False
    assert node["pods"] == 4  # bound and not finished (pending-1 has no node, done-1 finished)
    assert node["kubelet_version"] == "v1.28.7"
    conds = {c["type"]: c for c in node["conditions"]}
    assert set(conds) == {"MemoryPressure", "DiskPressure", "PIDPressure", "Ready"}
    assert conds["Ready"]["status"] == "True" and conds["Ready"]["reason"] == "KubeletReady"
    parse_ts(conds["Ready"]["last_transition_time"])

    sh = ns_of(s, "shop")
    assert sh["phase"] == "Active"
    assert sh["pods"] == sm["pods"] and sh["restarts"] == 10
    assert sh["requests"] == sm["requests"] and sh["limits"] == sm["limits"]
    assert ns_of(s, "default")["pods"] == {"pending": 0, "running": 0, "succeeded": 0, "failed": 0, "unknown": 0}

    # Worst first: OOMKilled (within the hour) > CrashLoopBackOff > PendingTooLong.
    assert unhealthy(s) == [("shop", "oom-1", "OOMKilled"), ("shop", "crash-1", "CrashLoopBackOff"),
                            ("shop", "pending-1", "PendingTooLong")]
    u = s["unhealthy_pods"]
    assert u[0]["restarts"] == 3 and u[0]["node"] == "node-a" and u[0]["phase"] == "Running"
    assert u[1]["restarts"] == 7
    assert abs((parse_ts(u[1]["since"]) - parse_ts(ts(40))).total_seconds()) < 5  # the last crash
    assert u[2]["phase"] == "Pending" and u[2].get("node", "") == ""
    assert s["unhealthy_pods_omitted"] == 0

    # The collector's own metrics and health.
    assert metric(a, "agent_metrics_samples_total", {"cluster_id": CID}) >= 1
    assert metric(a, "agent_metrics_objects", {"cluster_id": CID, "kind": "pods"}) == 6
    assert metric(a, "agent_metrics_objects", {"cluster_id": CID, "kind": "namespaces"}) == 4
    assert metric(a, "agent_metrics_usage_available", {"cluster_id": CID}) == 0
    h = a.health()
    assert h["metrics"]["stores"]["pods"]["entries"] == 6
    assert h["metrics"]["usage"]["available"] is False
    a.assert_clean_exit()
    client.close()


def test_agentinfo_advertises_metrics(nats_server, kubesim, agent_factory):
    client = NatsClient(nats_server.url)
    sub = client.subscribe(f"agent.register.{CID}")
    client.flush()
    start(agent_factory, nats_server, kubesim)
    info = json.loads(sub.next(timeout=10).data)
    assert info["capabilities"]["metrics"] is True
    client.close()


def test_changes_show_in_next_sample(nats_server, kubesim, agent_factory):
    """A pod starting to crash-loop, an OOM kill, a node turning NotReady, a
    pod deleted, a namespace deleted: each in the next sample, with the
    numbers that go with it."""
    client = NatsClient(nats_server.url)
    col = subscribe(client)
    kubesim.create("namespaces", {"metadata": {"name": "shop"}})
    kubesim.create("namespaces", {"metadata": {"name": "batch"}})
    kubesim.create("pods", pod("web-1", "shop", requests={"cpu": "250m", "memory": "64Mi"}))
    kubesim.create("pods", pod("web-2", "shop", requests={"cpu": "250m", "memory": "64Mi"}))
    for i in range(3):
        kubesim.create("pods", pod(f"job-{i}", "batch", requests={"cpu": "1", "memory": "1Gi"}))
    a = start(agent_factory, nats_server, kubesim)
    s = col.next_sample(lambda s: s["summary"]["pods"]["running"] == 5)
    assert s["unhealthy_pods"] == [] and s["summary"]["restarts"] == 0

    # web-1 starts crash-looping.
    kubesim.modify("pods", {"metadata": {"name": "web-1", "namespace": "shop"},
                            "status": {"conditions": [{"type": "Ready", "status": "False",
                                                       "lastTransitionTime": ts(5)}],
                                       "containerStatuses": crashloop_status(restarts=4, crashed_ago=5)}})
    s = col.next_sample(lambda s: unhealthy(s) == [("shop", "web-1", "CrashLoopBackOff")], after=s["sample_id"])
    assert s["summary"]["restarts"] == 4 and s["summary"]["containers_restarting"] == 1
    assert ns_of(s, "shop")["restarts"] == 4 and ns_of(s, "batch")["restarts"] == 0

    # job-0 is OOM-killed and restarted: worse than the crash loop.
    oom = crashloop_status(restarts=1, crashed_ago=2, reason="OOMKilled")
    oom[0]["state"] = {"running": {"startedAt": ts(1)}}
    kubesim.modify("pods", {"metadata": {"name": "job-0", "namespace": "batch"},
                            "status": {"containerStatuses": oom}})
    s = col.next_sample(lambda s: len(s["unhealthy_pods"]) == 2, after=s["sample_id"])
    assert unhealthy(s) == [("batch", "job-0", "OOMKilled"), ("shop", "web-1", "CrashLoopBackOff")]
    assert s["summary"]["restarts"] == 5 and ns_of(s, "batch")["restarts"] == 1

    # The node turns NotReady.
    node = kubesim.objects("nodes")["items"][0]
    conds = node["status"]["conditions"]
    for c in conds:
        if c["type"] == "Ready":
            c.update(status="Unknown", reason="NodeStatusUnknown", lastTransitionTime=ts(0))
    kubesim.modify("nodes", {"metadata": {"name": "node-a"}, "status": {"conditions": conds}})
    s = col.next_sample(lambda s: s["summary"]["nodes_ready"] == 0, after=s["sample_id"])
    n = by_name(s["nodes"])["node-a"]
    assert n["ready"] is False and s["summary"]["nodes_total"] == 1
    ready = [c for c in n["conditions"] if c["type"] == "Ready"][0]
    assert ready["status"] == "Unknown" and ready["reason"] == "NodeStatusUnknown"

    # A pod is deleted.
    kubesim.delete("pods", "web-2", namespace="shop")
    s = col.next_sample(lambda s: ns_of(s, "shop")["pods"]["running"] == 1, after=s["sample_id"])
    assert s["summary"]["pods"]["running"] == 4
    assert ns_of(s, "shop")["requests"] == {"cpu_millicores": 250, "memory_bytes": 64 * MI}
    assert by_name(s["nodes"])["node-a"]["pods"] == 4

    # A namespace is deleted (with its pods, as the namespace controller does).
    for i in range(3):
        kubesim.delete("pods", f"job-{i}", namespace="batch")
    kubesim.delete("namespaces", "batch")
    s = col.next_sample(lambda s: ns_of(s, "batch") is None, after=s["sample_id"])
    assert s["summary"]["namespaces"] == 4 and s["summary"]["pods"]["running"] == 1
    assert unhealthy(s) == [("shop", "web-1", "CrashLoopBackOff")]
    assert s["summary"]["requests"] == {"cpu_millicores": 250, "memory_bytes": 64 * MI}
    a.assert_clean_exit()
    client.close()


# ------------------------------------------------------------------ usage

def test_usage_absent_then_present(nats_server, kubesim, agent_factory):
    """Without metrics.k8s.io every sample flows with usage_available false
    and why; once the API appears, usage is there (re-checked each
    interval): node usage as metrics-server reports it, namespace usage
    the sum of its pods' containers."""
    client = NatsClient(nats_server.url)
    col = subscribe(client)
    kubesim.create("namespaces", {"metadata": {"name": "shop"}})
    p = pod("web-1", "shop", containers=["web", "sidecar"])
    p["metadata"]["annotations"] = {"kubesim/usage": "120m,100Mi"}
    kubesim.create("pods", p)
    kubesim.create("pods", pod("web-2", "shop"))
    a = start(agent_factory, nats_server, kubesim)
    s = col.next_sample(lambda s: s["summary"]["pods"]["running"] == 2)
    assert s["usage_available"] is False and "404" in s["usage_unavailable_reason"]

    kubesim.control("POST", "/metrics-api", {"enabled": True})
    s = col.next_sample(lambda s: s["usage_available"], after=s["sample_id"], timeout=20)
    assert "usage_unavailable_reason" not in s or s["usage_unavailable_reason"] == ""
    parse_ts(s["usage_observed_at"])
    # kubesim's NodeMetrics: 250m, 2048Mi per node.
    assert by_name(s["nodes"])["node-a"]["usage"] == {"cpu_millicores": 250, "memory_bytes": 2048 * MI}
    assert s["summary"]["usage"] == {"cpu_millicores": 250, "memory_bytes": 2048 * MI}
    # web-1: 2 containers x (120m, 100Mi); web-2: 1 x kubesim's default (10m, 32Mi).
    assert ns_of(s, "shop")["usage"] == {"cpu_millicores": 250, "memory_bytes": 232 * MI}
    assert ns_of(s, "default")["usage"] == {"cpu_millicores": 0, "memory_bytes": 0}
    assert metric(a, "agent_metrics_usage_available", {"cluster_id": CID}) == 1

    # The API goes away again: said in the next samples, everything else flows.
    kubesim.control("POST", "/metrics-api", {"enabled": False})
    s = col.next_sample(lambda s: not s["usage_available"], after=s["sample_id"], timeout=20)
    assert s["summary"]["pods"]["running"] == 2 and "usage" not in s["summary"]
    a.assert_clean_exit()
    client.close()


# ------------------------------------------------------------------ usage, namespace by namespace

PODMETRICS = "/apis/metrics.k8s.io/v1beta1/pods"
# The smallest kubernetes.max_list_page_bytes allowed (src/config/config.c).
PAGE_CAP = MI


def served_usage(kubesim):
    """Per-namespace usage as kubesim serves it, and the size of the
    cluster-wide PodMetrics list (one response: limit is ignored)."""
    status, _, body = kubesim.api_get(PODMETRICS + "?limit=1")
    assert status == 200
    return pod_metrics_usage(json.loads(body)["items"]), len(body)


def namespace_list_bytes(kubesim, ns):
    status, _, body = kubesim.api_get(f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods?limit=1")
    assert status == 200
    return len(body)


def cluster_wide_requests(kubesim):
    return sum(1 for r in kubesim.requests() if r["url"].split("?")[0] == PODMETRICS)


def test_usage_namespace_by_namespace(nats_server, kubesim, agent_factory):
    """metrics-server ignores limit: 4,000 PodMetrics (1.3 MB in one
    response) do not fit in a 1 MiB kubernetes.max_list_page_bytes even at
    limit=1, while each of the 8 namespaces' lists does. Usage is read
    namespace by namespace, every namespace's sum exactly what the server
    serves, and later passes go straight to the namespaces."""
    client = NatsClient(nats_server.url)
    col = subscribe(client)
    kubesim.metrics_api(enabled=True, available=True, paginate=False)
    kubesim.populate(namespaces=8, nodes=2, pods=4000, seed=9)
    want, whole = served_usage(kubesim)
    assert whole > PAGE_CAP and len(want) == 8
    assert all(namespace_list_bytes(kubesim, ns) < PAGE_CAP / 4 for ns in want)
    a = start(agent_factory, nats_server, kubesim,
              env={"COLLECT_AGENT_KUBERNETES_MAX_LIST_PAGE_BYTES": str(PAGE_CAP)})
    s = col.next_sample(lambda s: s["usage_available"] and s["summary"]["pods"]["running"] == 4000,
                        timeout=60)
    names = [n["name"] for n in s["namespaces"]]
    assert len(names) == 11 and set(want) < set(names)
    for name in names:
        # default, kube-public, kube-system: no pods, a zero sum (known)
        assert ns_of(s, name)["usage"] == want.get(name, {"cpu_millicores": 0, "memory_bytes": 0}), name
    # Nodes' usage is still one cluster-wide list: 3 nodes x 250m, 2048Mi.
    assert s["summary"]["usage"] == {"cpu_millicores": 750, "memory_bytes": 3 * 2048 * MI}

    h = a.health()["metrics"]["usage"]
    assert h["available"] is True and h["mode"] == "namespaces"
    assert h["namespaces_unknown"] == 0 and h["namespace_lists_too_big"] == 0
    assert metric(a, "agent_metrics_usage_per_namespace", {"cluster_id": CID}) == 1
    assert metric(a, "agent_metrics_usage_namespaces_unknown", {"cluster_id": CID}) == 0
    switched = [r for r in a.log_records() if "namespace by namespace" in r.get("msg", "")]
    assert len(switched) == 1 and switched[0]["level"] == "warn"

    # Later passes list the namespaces only (the cluster-wide list is tried
    # again after an hour), and stay exact.
    tried = cluster_wide_requests(kubesim)
    passes = h["passes"]
    wait_for(lambda: a.health()["metrics"]["usage"]["passes"] >= passes + 3, timeout=30,
             what="three more passes")
    assert cluster_wide_requests(kubesim) == tried
    s = col.next_sample(lambda s: s["usage_available"], after=s["sample_id"])
    for name in want:
        assert ns_of(s, name)["usage"] == want[name], name
    a.assert_clean_exit()
    client.close()


def test_usage_namespace_too_big_alone(nats_server, kubesim, agent_factory):
    """One namespace whose own PodMetrics list does not fit: its usage is
    absent from the samples (unknown, never a partial sum), counted and
    logged once; every other namespace's is exact."""
    client = NatsClient(nats_server.url)
    col = subscribe(client)
    kubesim.metrics_api(enabled=True, available=True, paginate=False)
    kubesim.populate(namespaces=1, nodes=1, pods=4000, seed=3)  # all in ns-00000
    for ns in ("shop", "batch"):
        kubesim.create("namespaces", {"metadata": {"name": ns}})
    p = pod("web-1", "shop", containers=["web", "sidecar"])
    p["metadata"]["annotations"] = {"kubesim/usage": "120m,100Mi"}
    kubesim.create("pods", p)
    kubesim.create("pods", pod("web-2", "shop"))
    kubesim.create("pods", pod("job-1", "batch", containers=["a", "b", "c"]))
    want, _ = served_usage(kubesim)
    assert namespace_list_bytes(kubesim, "ns-00000") > PAGE_CAP
    assert want["shop"] == {"cpu_millicores": 250, "memory_bytes": 232 * MI}
    assert want["batch"] == {"cpu_millicores": 30, "memory_bytes": 96 * MI}
    a = start(agent_factory, nats_server, kubesim,
              env={"COLLECT_AGENT_KUBERNETES_MAX_LIST_PAGE_BYTES": str(PAGE_CAP)})
    s = col.next_sample(lambda s: s["usage_available"] and s["summary"]["pods"]["running"] == 4003,
                        timeout=60)
    big = ns_of(s, "ns-00000")
    assert "usage" not in big and big["pods"]["running"] == 4000
    assert ns_of(s, "shop")["usage"] == want["shop"]
    assert ns_of(s, "batch")["usage"] == want["batch"]
    assert ns_of(s, "default")["usage"] == {"cpu_millicores": 0, "memory_bytes": 0}
    assert s["summary"]["usage"] == {"cpu_millicores": 500, "memory_bytes": 2 * 2048 * MI}

    wait_for(lambda: a.health()["metrics"]["usage"]["passes"] >= 3, timeout=30, what="three passes")
    h = a.health()["metrics"]["usage"]
    assert h["available"] is True and h["mode"] == "namespaces"
    assert h["namespaces_unknown"] == 1 and h["namespace_lists_too_big"] == 1
    assert metric(a, "agent_metrics_usage_namespaces_unknown", {"cluster_id": CID}) == 1
    assert metric(a, "agent_metrics_usage_namespace_lists_too_big_total", {"cluster_id": CID}) >= 3
    logged = [r for r in a.log_records() if r.get("namespace") == "ns-00000"]
    assert len(logged) == 1 and "left out" in logged[0]["msg"]  # rate-limited: one line
    a.assert_clean_exit()
    client.close()


# ------------------------------------------------------------------ usage, zone by zone

NODEMETRICS = "/apis/metrics.k8s.io/v1beta1/nodes"
ZONE = "topology.kubernetes.io/zone"


def served_node_usage(kubesim):
    """{node: {"cpu_millicores", "memory_bytes"}} as kubesim serves it, and
    the size of the cluster-wide NodeMetrics list (one response)."""
    status, _, body = kubesim.api_get(NODEMETRICS + "?limit=1")
    assert status == 200
    return {i["metadata"]["name"]: {"cpu_millicores": quantity(i["usage"]["cpu"], milli=True),
                                    "memory_bytes": quantity(i["usage"]["memory"])}
            for i in json.loads(body)["items"]}, len(body)


def node_list_requests(kubesim):
    """Requests for NodeMetrics lists: cluster-wide ones, and by selector."""
    whole, by = 0, {}
    for r in kubesim.requests():
        path, _, query = r["url"].partition("?")
        if path != NODEMETRICS:
            continue
        q = urllib.parse.parse_qs(query)
        if "labelSelector" in q:
            by[q["labelSelector"][0]] = by.get(q["labelSelector"][0], 0) + 1
        else:
            whole += 1
    return whole, by


def test_usage_nodes_zone_by_zone(nats_server, kubesim, agent_factory):
    """metrics-server ignores limit: 3,000 NodeMetrics with their nodes'
    labels (1.3 MB in one response) do not fit in a 1 MiB
    kubernetes.max_list_page_bytes even at limit=1, while each zone's list
    does. Node usage is read zone by zone (and the nodes without a zone
    label by !topology.kubernetes.io/zone), every node's exactly what the
    server serves."""
    client = NatsClient(nats_server.url)
    col = subscribe(client)
    kubesim.metrics_api(enabled=True, available=True, paginate=False)
    kubesim.populate(namespaces=1, nodes=3000, pods=10, seed=11)
    kubesim.create("nodes", {"metadata": {"name": "node-odd", "labels": {ZONE: "eu-west-1b"},
                                          "annotations": {"kubesim/usage": "1234m,777Mi"}}})
    kubesim.create("nodes", {"metadata": {"name": "node-bare",
                                          "annotations": {"kubesim/usage": "50m,64Mi"}}})
    want, whole = served_node_usage(kubesim)
    assert whole > PAGE_CAP and len(want) == 3003
    assert want["node-odd"] == {"cpu_millicores": 1234, "memory_bytes": 777 * MI}
    a = start(agent_factory, nats_server, kubesim,
              env={"COLLECT_AGENT_KUBERNETES_MAX_LIST_PAGE_BYTES": str(PAGE_CAP)})
    s = col.next_sample(lambda s: s["usage_available"] and len(s["nodes"]) == 3003, timeout=60)
    got = {n["name"]: n.get("usage") for n in s["nodes"]}
    assert got == want
    assert s["summary"]["usage"] == {
        "cpu_millicores": sum(u["cpu_millicores"] for u in want.values()),
        "memory_bytes": sum(u["memory_bytes"] for u in want.values())}

    wait_for(lambda: a.health()["metrics"]["usage"]["passes"] >= 3, timeout=30, what="three passes")
    h = a.health()["metrics"]["usage"]
    assert h["available"] is True and h["node_mode"] == "zones" and h["mode"] == "cluster"
    assert h["nodes_unknown"] == 0 and h["zone_lists_too_big"] == 0
    assert metric(a, "agent_metrics_usage_per_zone", {"cluster_id": CID}) == 1
    assert metric(a, "agent_metrics_usage_nodes_unknown", {"cluster_id": CID}) == 0
    switched = [r for r in a.log_records() if "zone by zone" in r.get("msg", "")]
    assert len(switched) == 1 and switched[0]["level"] == "warn"

    # Later passes list the zones only (the cluster-wide list is tried
    # again after an hour), each zone once a pass, and stay exact.
    tried, by = node_list_requests(kubesim)
    assert set(by) == {f"{ZONE}=eu-west-1{z}" for z in "abc"} | {"!" + ZONE}
    passes = h["passes"]
    wait_for(lambda: a.health()["metrics"]["usage"]["passes"] >= passes + 3, timeout=30,
             what="three more passes")
    assert node_list_requests(kubesim)[0] == tried
    s = col.next_sample(lambda s: s["usage_available"], after=s["sample_id"])
    assert {n["name"]: n.get("usage") for n in s["nodes"]} == want
    a.assert_clean_exit()
    client.close()


# ------------------------------------------------------------------ parts

@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_split_under_small_max_payload(nats_server, kubesim, agent_factory, encoding):
    """200 namespaces and 20 crash-looping pods under a 4096-byte limit:
    several parts, each within the limit and valid alone, that reassemble
    into exactly the cluster."""
    client = NatsClient(nats_server.url)
    col = subscribe(client)
    for i in range(200):
        kubesim.create("namespaces", {"metadata": {"name": f"team-{i:03d}"}})
    for i in range(20):
        kubesim.create("pods", pod(f"crash-{i:02d}", f"team-{i:03d}", ready=False,
                                   statuses=crashloop_status(restarts=i + 1, crashed_ago=30)))
    start(agent_factory, nats_server, kubesim,
          env={"COLLECT_AGENT_METRICS_MAX_PAYLOAD_BYTES": "4096", "COLLECT_AGENT_METRICS_MAX_UNHEALTHY_PODS": "15"},
          encoding=encoding)
    s = col.next_sample(lambda s: s["summary"]["namespaces"] == 203 and s["summary"]["pods"]["running"] == 20)
    parts = col.parts[s["sample_id"]]
    assert len(parts) == s["parts"] >= 2
    for msg, d in parts:
        assert len(msg.data) <= 4096
        assert msg.headers["Nats-Msg-Id"] == f"{s['sample_id']}-{d['part']}"
    names = [n["name"] for n in s["namespaces"]]
    assert names == sorted(names) and len(names) == len(set(names)) == 203
    assert set(names) == {f"team-{i:03d}" for i in range(200)} | {"default", "kube-public", "kube-system"}
    for i in range(20):
        assert ns_of(s, f"team-{i:03d}")["restarts"] == i + 1
    # The 15 worst: most restarts first; the other 5 counted.
    assert [u["name"] for u in s["unhealthy_pods"]] == [f"crash-{i:02d}" for i in range(19, 4, -1)]
    assert s["unhealthy_pods_omitted"] == 5 and s["summary"]["unhealthy_pods"] == 20
    assert len(s["nodes"]) == 1
    client.close()


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_split_under_the_servers_max_payload(tmp_path, kubesim, agent_factory, encoding):
    """The server's max_payload is the tighter limit (metrics.max_payload_bytes
    at its 1 MiB default): each part and its headers (Content-Type,
    Nats-Msg-Id), which the server counts too, fit, and the sample is whole.
    Parts filled to the payload limit alone were refused once."""
    from lib.nats import NatsServer
    conf = tmp_path / "small.conf"
    conf.write_text("max_payload: 8192\n")
    server = NatsServer(args=["-c", str(conf)])
    server.start()
    try:
        client = NatsClient(server.url)
        col = subscribe(client)
        for i in range(300):
            kubesim.create("namespaces", {"metadata": {"name": f"team-{i:03d}"}})
        # The longest pod name: the agent ID, and each part's Nats-Msg-Id with it.
        a = start(agent_factory, server, kubesim, encoding=encoding, env={"POD_NAME": "p" * 253})
        s = col.next_sample(lambda s: s["summary"]["namespaces"] == 303)
        parts = col.parts[s["sample_id"]]
        assert len(parts) == s["parts"] >= 2
        assert all(len(msg.data) <= 8192 for msg, _ in parts)
        assert {n["name"] for n in s["namespaces"]} >= {f"team-{i:03d}" for i in range(300)}
        assert metric(a, "agent_metrics_samples_dropped_total", {"cluster_id": CID}) == 0
        client.close()
        a.assert_clean_exit()
    finally:
        server.stop()


# ------------------------------------------------------------------ bad input

def test_bad_input_counted_and_skipped(nats_server, kubesim, agent_factory):
    """An unparsable quantity, a negative restart count, an unknown phase,
    a pod on a node that does not exist: counted, logged, and no total
    elsewhere goes wrong."""
    client = NatsClient(nats_server.url)
    col = subscribe(client)
    kubesim.create("namespaces", {"metadata": {"name": "shop"}})
    kubesim.create("pods", pod("good", "shop", requests={"cpu": "500m", "memory": "1Gi"}))
    kubesim.create("pods", pod("banana", "shop", requests={"cpu": "banana", "memory": "2Gi"}))
    bad_count = pod("negative", "shop")
    bad_count["status"]["containerStatuses"][0]["restartCount"] = -5
    kubesim.create("pods", bad_count)
    kubesim.create("pods", pod("weird-phase", "shop", phase="Exploded"))
    kubesim.create("pods", pod("ghost", "shop", node="node-nowhere", requests={"cpu": "100m"}))
    a = start(agent_factory, nats_server, kubesim)
    s = col.next_sample(lambda s: ns_of(s, "shop") and ns_of(s, "shop")["pods"]["running"] == 4)
    # The bad phase skipped whole; the rest counted, the bad cpu as absent.
    assert s["summary"]["pods"]["running"] == 4 and s["summary"]["pods"]["unknown"] == 0
    assert ns_of(s, "shop")["requests"] == {"cpu_millicores": 600, "memory_bytes": 3 * GI}
    assert s["summary"]["restarts"] == 0
    # ghost is in its namespace's and the cluster's counts, on no node.
    assert by_name(s["nodes"])["node-a"]["pods"] == 3
    wait_for(lambda: metric(a, "agent_metrics_pods_unknown", {"cluster_id": CID, "unknown": "node"}) == 1,
             timeout=5, what="ghost counted")
    assert metric(a, "agent_metrics_invalid_total", {"cluster_id": CID, "reason": "quantity"}) >= 1
    assert metric(a, "agent_metrics_invalid_total", {"cluster_id": CID, "reason": "count"}) >= 1
    assert metric(a, "agent_metrics_invalid_total", {"cluster_id": CID, "reason": "phase"}) >= 1
    logs = a.logs()
    assert "banana" in logs and "Exploded" in logs
    assert any(r.get("msg") == "skipped what the cluster sent" and r.get("reason") == "quantity"
               for r in a.log_records())
    assert any(r.get("msg", "").startswith("pods bound to nodes") for r in a.log_records())
    a.assert_clean_exit()
    client.close()
