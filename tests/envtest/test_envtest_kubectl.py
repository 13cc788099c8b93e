"""What kubectl gets from kubesim against what it gets from the real
kube-apiserver: the same node, namespace, pod (two containers, one in
CrashLoopBackOff) and event on both, then the server-side Tables kubectl
asks for (columns, cells, types, includeObject), the 406s, aggregated
discovery, pods/log errors, access reviews, and the real kubectl's output.

Needs COLLECT_AGENT_ENVTEST_ASSETS (skipped without it, like the whole
tier); the kubectl part also needs /usr/bin/kubectl or /usr/local/bin/kubectl.
"""
import copy
import json
import os
import re
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "kubesim"))
from envtest_cluster import ApiClient  # noqa: E402
from fixtures import KubeSim  # noqa: E402
import kubectl_run as kr  # noqa: E402

TABLE = ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;"
         "g=meta.k8s.io,application/json")
AGGREGATED = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")
DURATION = re.compile(r"^(\d+[smhdy])+$")
UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Side:
    def __init__(self, name, client, server, ca_file, token):
        self.name, self.client, self.server, self.ca_file, self.token = name, client, server, ca_file, token

    def get(self, path, accept="application/json", token=...):
        c = self.client if token is ... else ApiClient("127.0.0.1", self.client.port, self.ca_file, token)
        return c.request("GET", path, headers={"Accept": accept})

    def table(self, path):
        r = self.get(path, TABLE)
        assert r.status == 200, (self.name, path, r.body[:300])
        return r.json()


@pytest.fixture(scope="module")
def pair(cluster, tmp_path_factory):
    """(real, kubesim, namespace, node): the same objects on both."""
    suffix = uuid.uuid4().hex[:6]
    ns, node = "kc-" + suffix, "kc-node-" + suffix
    sim = KubeSim(tmp_path_factory.mktemp("kubectl-parity"), node_name=node)
    sim.start()
    admin = cluster.admin
    try:
        # the node: kubesim's seeded one, registered on the real server as a kubelet would
        sim_node = sim.objects("nodes")["items"][0]
        admin.post_json("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {
            k: sim_node["metadata"][k] for k in ("name", "labels", "annotations")}, "spec": sim_node["spec"]})
        real_node = admin.get_json(f"/api/v1/nodes/{node}")
        real_node["status"] = sim_node["status"]
        admin.put_json(f"/api/v1/nodes/{node}/status", real_node)
        # the namespace, its default ServiceAccount (no controller makes it), the pod
        admin.post_json("/api/v1/namespaces", {"metadata": {"name": ns}})
        admin.post_json(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "default"}})
        started = kr.ts(-75)
        pod = kr.web_pod(ns, node)
        admin.post_json(f"/api/v1/namespaces/{ns}/pods", pod)
        real_pod = admin.patch_merge(f"/api/v1/namespaces/{ns}/pods/web-1/status",
                                     {"status": kr.web_pod_status(started)})
        sim.create("namespaces", {"metadata": {"name": ns}})
        sim_pod = copy.deepcopy(pod)
        sim_pod["status"] = kr.web_pod_status(started)
        sim_pod = sim.create("pods", sim_pod)
        when = kr.ts(-20)
        admin.post_json(f"/api/v1/namespaces/{ns}/events",
                        kr.backoff_event(ns, real_pod["metadata"]["uid"], node, when))
        ev = kr.backoff_event(ns, sim_pod["metadata"]["uid"], node, when)
        ev.pop("kind"), ev.pop("apiVersion")
        sim.create("events", ev)
        sim.add_token("denied", ["get pods"], user=f"system:serviceaccount:{ns}:nobody")
        real = Side("real", admin, cluster.server, cluster.ca_file, cluster.admin_token)
        real.denied = cluster.token_for(ns, "nobody")
        simulated = Side("kubesim", ApiClient("127.0.0.1", sim.api_port, sim.ca_file, sim.token),
                         sim.api_url, sim.ca_file, sim.token)
        simulated.denied = "denied"
        yield real, simulated, ns, node
    finally:
        admin.request("DELETE", f"/api/v1/namespaces/{ns}/pods/web-1", {"gracePeriodSeconds": 0})
        admin.request("DELETE", f"/api/v1/nodes/{node}")
        sim.stop()


def norm_cell(c):
    """Ages differ by the seconds between the two requests, uids (in an
    event's message) by server."""
    if isinstance(c, str):
        if DURATION.match(c):
            return "<age>"
        return UID.sub("<uid>", re.sub(r"\((\d+[smhdy])+ ago\)", "(<age> ago)", c))
    return c


def norm_rows(t):
    return [[norm_cell(c) for c in r["cells"]] for r in t["rows"]]


def test_pod_tables_match(pair):
    real, sim, ns, node = pair
    for path in (f"/api/v1/namespaces/{ns}/pods", f"/api/v1/namespaces/{ns}/pods/web-1",
                 f"/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dweb&limit=500"):
        a, b = real.table(path), sim.table(path)
        assert list(a) == list(b) == ["kind", "apiVersion", "metadata", "columnDefinitions", "rows"]
        assert (a["kind"], a["apiVersion"]) == (b["kind"], b["apiVersion"])
        assert list(a["metadata"]) == list(b["metadata"])
        assert a["columnDefinitions"] == b["columnDefinitions"], path
        assert [c["name"] for c in b["columnDefinitions"]] == [
            "Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"]
        assert norm_rows(a) == norm_rows(b), path
        assert [[type(c) for c in r["cells"]] for r in a["rows"]] == [[type(c) for c in r["cells"]] for r in b["rows"]]
        ra, rb = a["rows"][0], b["rows"][0]
        assert list(ra) == list(rb)
        assert (ra["object"]["kind"], ra["object"]["apiVersion"]) == (rb["object"]["kind"], rb["object"]["apiVersion"])
        assert sorted(ra["object"]["metadata"]) == sorted(rb["object"]["metadata"])
    assert norm_rows(sim.table(f"/api/v1/namespaces/{ns}/pods"))[0][:4] == ["web-1", "1/2", "CrashLoopBackOff",
                                                                          "3 (<age> ago)"]


def test_include_object_matches(pair):
    real, sim, ns, _ = pair
    for inc in ("None", "Object", "Metadata", "Foo"):
        path = f"/api/v1/namespaces/{ns}/pods?includeObject={inc}"
        a, b = real.get(path, TABLE), sim.get(path, TABLE)
        assert a.status == b.status, inc
        ja, jb = a.json(), b.json()
        if a.status != 200:
            assert ja == jb
            continue
        oa, ob = ja["rows"][0]["object"], jb["rows"][0]["object"]
        if oa is None:
            assert ob is None
        else:
            assert (oa["kind"], oa["apiVersion"]) == (ob["kind"], ob["apiVersion"]), inc
            assert set(oa) == set(ob)


def test_node_namespace_event_tables_match(pair):
    real, sim, ns, node = pair
    for path in (f"/api/v1/nodes/{node}", f"/api/v1/namespaces/{ns}", f"/api/v1/namespaces/{ns}/events",
                 f"/apis/events.k8s.io/v1/namespaces/{ns}/events"):
        a, b = real.table(path), sim.table(path)
        assert a["columnDefinitions"] == b["columnDefinitions"], path
        assert norm_rows(a) == norm_rows(b), path
        assert [[type(c) for c in r["cells"]] for r in a["rows"]] == [[type(c) for c in r["cells"]] for r in b["rows"]]
        assert list(a["rows"][0]) == list(b["rows"][0])


def test_watch_table_matches(pair):
    real, sim, ns, _ = pair
    path = f"/api/v1/namespaces/{ns}/pods?watch=1&timeoutSeconds=1"
    out = []
    for side in (real, sim):
        r = side.get(path, TABLE)
        assert r.status == 200
        ev = [json.loads(x) for x in r.body.splitlines() if x.strip()]
        out.append([(e["type"], e["object"]["kind"], e["object"]["columnDefinitions"] is None,
                     norm_rows(e["object"])) for e in ev])
    assert out[0] == out[1]


def test_not_acceptable_matches(pair):
    real, sim, ns, _ = pair
    for path, accept in ((f"/api/v1/namespaces/{ns}/pods", "text/html"),
                         (f"/api/v1/namespaces/{ns}/pods", "application/json;as=Table;v=v2;g=meta.k8s.io"),
                         (f"/api/v1/namespaces/{ns}/pods/web-1", "text/html"),
                         (f"/api/v1/namespaces/{ns}/pods", "application/*"),
                         ("/version", "text/html"), ("/api", "text/html"),
                         ("/apis", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"),
                         (f"/api/v1/namespaces/{ns}/pods/web-1/log?container=web",
                          "application/json;as=Table;v=v1;g=meta.k8s.io")):
        a, b = real.get(path, accept), sim.get(path, accept)
        assert (a.status, a.body) == (b.status, b.body), (path, accept)


def test_aggregated_discovery_matches(pair):
    real, sim, _, _ = pair
    for path in ("/api", "/apis"):
        a, b = real.get(path, AGGREGATED), sim.get(path, AGGREGATED)
        assert a.status == b.status == 200
        assert a.header("Content-Type") == b.header("Content-Type")
        assert a.json() == b.json(), path
    a, b = real.get("/apis/apps/v1"), sim.get("/apis/apps/v1")
    names = lambda r: [x["name"] for x in r.json()["resources"]]  # noqa: E731
    assert names(a) == names(b)


def test_log_errors_match(pair):
    real, sim, ns, _ = pair
    for q in ("nope/log", "web-1/log", "web-1/log?container=zzz"):
        a, b = real.get(f"/api/v1/namespaces/{ns}/pods/{q}"), sim.get(f"/api/v1/namespaces/{ns}/pods/{q}")
        assert (a.status, a.json()) == (b.status, b.json()), q


def test_reviews_match(pair):
    real, sim, ns, _ = pair
    ssar = {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
            "spec": {"resourceAttributes": {"namespace": ns, "verb": "get", "resource": "pods"}}}
    out = []
    for side in (real, sim):
        c = ApiClient("127.0.0.1", side.client.port, side.ca_file, side.denied)
        r = c.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", ssar,
                      headers={"User-Agent": "kubectl/v1.28.15 (linux/amd64) kubernetes/8418565"})
        assert r.status == 201
        body = r.json()
        body["metadata"]["managedFields"][0].pop("time")
        out.append(body)
    assert out[0] == out[1]


@pytest.fixture(scope="module")
def kubectl():
    k = kr.find_kubectl()
    if not k:
        pytest.skip("no kubectl in /usr/bin or /usr/local/bin")
    return k


def test_kubectl_output_matches(pair, kubectl, tmp_path):
    real, sim, ns, node = pair
    outs = []
    for side in (real, sim):
        kc = kr.write_kubeconfig(str(tmp_path / f"kc-{side.name}"), side.server, side.ca_file, token=side.token,
                                 namespace=ns)
        home = str(tmp_path / f"home-{side.name}")
        got = []
        for args in (["get", "pods", "-o", "wide"], ["get", "pods/web-1"], ["get", f"nodes/{node}", "-o", "wide"],
                     ["get", f"namespaces/{ns}"], ["get", "events"], ["get", "pods", "-l", "app=nothing"],
                     ["logs", "nope"], ["auth", "can-i", "get", "pods"], ["explain", "pods.spec.nodeName"]):
            r = kr.run(kubectl, kc, args, home)
            text = re.sub(r"(?<!\S)(\d+[smhdy])+(?!\S)", "<age>", r.out)
            text = UID.sub("<uid>", re.sub(r"\((\d+[smhdy])+ ago\)", "(<age> ago)", text))
            got.append((args, r.rc, text, r.err))
        outs.append(got)
    for a, b in zip(*outs):
        assert a == b
