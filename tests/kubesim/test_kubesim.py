"""kubesim against the responses captured from a real kube-apiserver.

Run: /usr/bin/python3 -m pytest -q tests/kubesim/test_kubesim.py
"""

import base64
import copy
import http.client
import json
import os
import re
import signal
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures import KubeSim, RawStream, complete_lines, parse_chunked, wait_for, watch_lines  # noqa: E402

SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "fixtures", "kube-api-samples")


def sample(name):
    with open(os.path.join(SAMPLES, name), "rb") as f:
        data = f.read()
    if name.endswith(".json"):
        try:
            return json.loads(data)
        except ValueError:
            return data
    if name.endswith(".jsonl"):
        return [json.loads(x) for x in data.splitlines() if x.strip()]
    return data


def sample_http(name):
    """(status line, [header names], body) of a captured .txt response."""
    raw = sample(name).decode().replace("\r\n", "\n")
    head, _, body = raw.partition("\n\n")
    lines = head.split("\n")
    return lines[0], [x.split(":", 1)[0] for x in lines[1:]], body


def shape(o, path=""):
    """The set of key paths of a JSON value (list items merged)."""
    out = set()
    if isinstance(o, dict):
        for k, v in o.items():
            p = "%s.%s" % (path, k)
            out.add(p)
            out |= shape(v, p)
    elif isinstance(o, list):
        for v in o:
            out |= shape(v, path + "[]")
    return out


def decode_continue(tok):
    return json.loads(base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)))


VOLATILE_META = ("uid", "resourceVersion", "creationTimestamp")


def strip_volatile(o):
    o = copy.deepcopy(o)
    for k in VOLATILE_META:
        o["metadata"].pop(k, None)
    for e in o["metadata"].get("managedFields", []):
        e.pop("time", None)
    return o


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    eks_labels = {k: v for k, v in sample("node-eks-ready.json")["metadata"]["labels"].items()
                  if not k.startswith("kubernetes.io/")}
    with KubeSim(tmp_path_factory.mktemp("shared"), bookmark_interval=1,
                 node_labels=eks_labels,
                 node_provider_id="aws:///eu-west-1a/i-0abc123def4567890") as s:
        yield s


# --------------------------------------------------------------------------
# start-up

def test_startup_files(sim):
    with open(os.path.join(sim.state_dir, "ports.json")) as f:
        ports = json.load(f)
    assert sim.api_url == "https://127.0.0.1:%d" % ports["api"]
    assert sim.control_url == "http://127.0.0.1:%d" % ports["control"]
    kc = open(sim.kubeconfig).read()
    assert "server: https://127.0.0.1:%d\n" % ports["api"] in kc
    assert "certificate-authority: %s\n" % sim.ca_file in kc
    assert "current-context: kubesim\n" in kc
    assert "token: %s\n" % sim.token in kc
    for f in ("token", "ca.crt", "namespace"):
        assert os.path.exists(os.path.join(sim.sa_dir, f))
    assert open(os.path.join(sim.sa_dir, "token")).read().strip() == sim.token
    assert open(os.path.join(sim.sa_dir, "ca.crt")).read() == open(sim.ca_file).read()


def test_sigterm_exits_cleanly(tmp_path):
    s = KubeSim(tmp_path, seed="empty").start()
    t = threading.Thread(target=s.raw_request, args=("/api/v1/pods?watch=1",), daemon=True)
    t.start()
    assert wait_for(lambda: s.stats()["open_watches"] == 1)
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(10) == 0      # an open watch does not hold it up
    t.join(10)
    s.stop()


# --------------------------------------------------------------------------
# discovery and plain GETs

def check_api_headers(headers, apf=True):
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-cache, private"
    assert re.match(r"^[0-9a-f-]{36}$", headers["audit-id"])
    assert headers["date"].endswith(" GMT")
    assert ("x-kubernetes-pf-flowschema-uid" in headers) == apf
    assert ("x-kubernetes-pf-prioritylevel-uid" in headers) == apf
    assert "server" not in headers


def test_version(sim):
    status, headers, body = sim.api_get("/version")
    assert status == 200
    check_api_headers(headers)
    v = json.loads(body)
    assert list(v) == list(sample("version.json"))
    assert v["gitVersion"] == "v1.28.7" and v["major"] == "1" and v["minor"] == "28"


def test_gitversion_option(tmp_path):
    with KubeSim(tmp_path, gitversion="v1.29.3-eks-abcdef", seed="empty") as s:
        v = s.api_json("/version")
        assert v["gitVersion"] == "v1.29.3-eks-abcdef" and v["minor"] == "29"


def test_discovery_matches_samples(sim):
    api = sim.api_json("/api")
    want = sample("api.json")
    want["serverAddressByClientCIDRs"][0]["serverAddress"] = "127.0.0.1:%d" % sim.api_port
    assert api == want
    assert sim.api_json("/apis") == sample("apis.json")
    assert sim.api_json("/api/v1") == sample("api-v1-resources.json")
    ev = sim.api_json("/apis/events.k8s.io/v1")
    assert ev["groupVersion"] == "events.k8s.io/v1"
    assert [r["name"] for r in ev["resources"]] == ["events"]


def test_pretty_for_curl_compact_otherwise(sim):
    # like kube-apiserver: indented bodies end without a newline, compact ones with one
    path = "/api/v1/namespaces/kube-system"
    _, _, body = sim.api_get(path, headers={"User-Agent": "curl/8.5.0"})
    assert body.startswith(b'{\n  "kind": "Namespace",') and body.endswith(b"\n}")
    _, _, body = sim.api_get(path, headers={"User-Agent": "collect-agent/0.1"})
    assert body.startswith(b'{"kind":"Namespace",') and body.endswith(b"}\n")
    _, _, body = sim.api_get(path + "?pretty=1", headers={"User-Agent": "collect-agent/0.1"})
    assert body.startswith(b'{\n  "kind"')
    _, _, body = sim.api_get(path + "?pretty=", headers={"User-Agent": "curl/8.5.0"})
    assert body.startswith(b'{"kind":')
    # /version is indented for every client, as the sample
    _, _, body = sim.api_get("/version", headers={"User-Agent": "collect-agent/0.1"})
    assert body.startswith(b'{\n  "major": "1",') and body.endswith(b"\n}")
    assert shape(json.loads(body)) == shape(sample("version.json"))


def test_keepalive(sim):
    conn = http.client.HTTPSConnection("127.0.0.1", sim.api_port, context=sim.ssl_context())
    for _ in range(3):
        conn.request("GET", "/api/v1/namespaces", headers={"Authorization": "Bearer " + sim.token})
        r = conn.getresponse()
        assert r.status == 200
        json.loads(r.read())
    conn.close()


def test_namespace_kube_system_like_sample(sim):
    ns = sim.api_json("/api/v1/namespaces/kube-system")
    want = sample("namespace-kube-system.json")
    assert shape(ns) == shape(want)
    assert ns["metadata"]["uid"] == want["metadata"]["uid"]
    assert strip_volatile(ns) == strip_volatile(want)
    names = [n["metadata"]["name"] for n in sim.api_json("/api/v1/namespaces")["items"]]
    assert names == ["default", "kube-public", "kube-system"]


def test_node_like_sample(sim):
    node = sim.api_json("/api/v1/nodes/node-a")
    want = sample("node-eks-ready.json")
    ours, theirs = shape(node), shape(want)
    # the captured node had no kubelet: hence its not-ready taint; ours is Ready
    # and carries the kubelet's attach/detach annotation
    assert theirs - ours == {".spec.taints", ".spec.taints[].key", ".spec.taints[].effect"}
    assert {p for p in ours - theirs if not p.startswith(".metadata.managedFields")} == {
        ".metadata.annotations",
        ".metadata.annotations.volumes.kubernetes.io/controller-managed-attach-detach",
        ".status.daemonEndpoints.kubeletEndpoint.Port"} - theirs
    assert node["metadata"]["labels"]["topology.kubernetes.io/zone"] == "eu-west-1a"
    assert node["spec"]["providerID"] == "aws:///eu-west-1a/i-0abc123def4567890"
    assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"
    lst = sim.api_json("/api/v1/nodes")
    assert list(lst) == list(sample("list-nodes.json"))
    assert "kind" not in lst["items"][0] and "apiVersion" not in lst["items"][0]


def test_default_node_has_no_cloud_labels(tmp_path):
    with KubeSim(tmp_path, node_name="worker-1") as s:
        node = s.api_json("/api/v1/nodes/worker-1")
        assert set(node["metadata"]["labels"]) == {"kubernetes.io/arch", "kubernetes.io/hostname",
                                                   "kubernetes.io/os"}
        assert "providerID" not in node["spec"]


def test_pod_like_sample(sim):
    want = sample("pod-crashloop-oomkilled.json")
    obj = copy.deepcopy(want)
    obj["metadata"]["namespace"] = "shape"
    created = sim.create("pods", obj)
    assert created["metadata"]["uid"] != want["metadata"]["uid"] or True
    got = sim.api_json("/api/v1/namespaces/shape/pods/" + want["metadata"]["name"])
    assert shape(got) == shape(want)
    w = strip_volatile(want)
    w["metadata"]["namespace"] = "shape"
    assert strip_volatile(got) == w
    # minimal pods get the server-side defaults of the sample pods
    sim.create("pods", {"metadata": {"name": "mini", "namespace": "shape"},
                        "spec": {"containers": [{"name": "web-1", "image": "registry.example/web:1.0"}]}})
    mini = sim.api_json("/api/v1/namespaces/shape/pods/mini")
    web1 = [p for p in sample("list-pods-page1.json")["items"] if p["metadata"]["name"] == "web-1"][0]
    assert set(mini["spec"]) >= set(web1["spec"]) - {"volumes"}
    assert mini["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert mini["metadata"]["managedFields"]


def test_get_not_found(sim):
    status, headers, body = sim.api_get("/api/v1/namespaces/default/pods/nope")
    assert status == 404
    check_api_headers(headers)
    assert json.loads(body) == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "message": 'pods "nope" not found',
                                "reason": "NotFound", "details": {"name": "nope", "kind": "pods"},
                                "code": 404}
    status, _, body = sim.api_get("/api/v1/frobs")
    assert status == 404 and json.loads(body)["reason"] == "NotFound"


def test_metrics_api_absent(sim):
    status, headers, body = sim.api_get("/apis/metrics.k8s.io/v1beta1/nodes")
    assert status == 404
    assert body == sample("metrics-api-absent-404.json")
    assert "metrics.k8s.io" not in [g["name"] for g in sim.api_json("/apis")["groups"]]


# --------------------------------------------------------------------------
# metrics.k8s.io (a metrics-server behind the aggregator)

@pytest.fixture(scope="module")
def msim(tmp_path_factory):
    with KubeSim(tmp_path_factory.mktemp("metrics"), metrics_api=True) as s:
        s.create("nodes", {"metadata": {"name": "node-b",
                                        "annotations": {"kubesim/usage": "1500m,3Gi"}}})
        for ns in ("apps", "web"):
            s.create("namespaces", {"metadata": {"name": ns}})
        for ns, name, phase, usage, ncont in (
                ("apps", "a-run-1", "Running", "120m,200Mi", 2),
                ("apps", "a-pending", "Pending", None, 1),
                ("apps", "a-run-2", "Running", None, 1),
                ("apps", "a-done", "Succeeded", None, 1),
                ("apps", "a-failed", "Failed", None, 1),
                ("web", "w-run-1", "Running", None, 3),
                ("web", "w-run-2", "Running", None, 1),
                ("web", "w-unknown", "Unknown", None, 1)):
            meta = {"name": name, "namespace": ns, "labels": {"app": name}}
            if usage:
                meta["annotations"] = {"kubesim/usage": usage}
            s.create("pods", {"metadata": meta, "spec": {
                "nodeName": "node-a", "containers": [{"name": "c%d" % i, "image": "busybox:1.36"}
                                                     for i in range(ncont)]},
                "status": {"phase": phase}})
        yield s


def metrics_pages(s, path, limit):
    items, pages, tok = [], 0, None
    while True:
        q = "?limit=%d" % limit + ("&continue=" + tok if tok else "")
        body = s.api_json(path + q)
        pages += 1
        items += body["items"]
        tok = body["metadata"].get("continue")
        if not tok:
            assert body["metadata"] == {}
            return items, pages
        assert set(body["metadata"]) == {"continue"} and len(body["items"]) == limit
        assert re.fullmatch(r"[A-Za-z0-9_-]+", tok)       # base64url, no padding


def test_metrics_api_nodes(msim):
    body = msim.api_json("/apis/metrics.k8s.io/v1beta1/nodes")
    assert body["kind"] == "NodeMetricsList" and body["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert body["metadata"] == {}
    usage = {i["metadata"]["name"]: i["usage"] for i in body["items"]}
    assert usage == {"node-a": {"cpu": "250m", "memory": "2048Mi"},       # the default
                     "node-b": {"cpu": "1500m", "memory": "3Gi"}}          # its annotation
    item = body["items"][0]
    assert set(item) == {"metadata", "timestamp", "window", "usage"}
    assert set(item["metadata"]) == {"name", "creationTimestamp", "labels"}
    assert item["metadata"]["labels"]["kubernetes.io/hostname"] == "node-a"
    items, pages = metrics_pages(msim, "/apis/metrics.k8s.io/v1beta1/nodes", 1)
    assert pages == 2 and [i["metadata"]["name"] for i in items] == ["node-a", "node-b"]


def test_metrics_api_label_selector_and_get(msim):
    """As metrics-server: a LIST selects by the node's (pod's) labels, and
    one NodeMetrics (PodMetrics) is read by name; 404 for an unknown one."""
    msim.metrics_api(True, True, paginate=False)
    try:
        nodes = "/apis/metrics.k8s.io/v1beta1/nodes"
        names = lambda q: [i["metadata"]["name"] for i in msim.api_json(nodes + q)["items"]]
        # node-a has the default labels, node-b none
        assert names("?labelSelector=kubernetes.io/hostname%3Dnode-a") == ["node-a"]
        assert names("?labelSelector=kubernetes.io/hostname%21%3Dnode-a&limit=1") == ["node-b"]
        assert names("?labelSelector=%21kubernetes.io/hostname") == ["node-b"]
        assert names("?labelSelector=topology.kubernetes.io/zone") == []
        pods = "/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%3Dw-run-2"
        assert [i["metadata"]["name"] for i in msim.api_json(pods)["items"]] == ["w-run-2"]
        st, _, b = msim.api_get(nodes + "?labelSelector=%3D%3D")
        assert st == 400 and json.loads(b)["reason"] == "BadRequest"
        one = msim.api_json(nodes + "/node-b")
        assert one["kind"] == "NodeMetrics" and one["apiVersion"] == "metrics.k8s.io/v1beta1"
        assert one["usage"] == {"cpu": "1500m", "memory": "3Gi"}
        assert one["metadata"]["name"] == "node-b"
        st, _, b = msim.api_get(nodes + "/node-nowhere")
        assert st == 404 and json.loads(b)["reason"] == "NotFound"
        one = msim.api_json("/apis/metrics.k8s.io/v1beta1/namespaces/apps/pods/a-run-1")
        assert one["kind"] == "PodMetrics" and len(one["containers"]) == 2
        # metrics-server has no metrics for a pod that is not running
        assert msim.api_get("/apis/metrics.k8s.io/v1beta1/namespaces/apps/pods/a-pending")[0] == 404
    finally:
        msim.metrics_api(True, True, paginate=True)


def test_metrics_api_pods_running_only_and_pages(msim):
    body = msim.api_json("/apis/metrics.k8s.io/v1beta1/pods")
    assert body["kind"] == "PodMetricsList" and body["metadata"] == {}
    names = [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in body["items"]]
    # metrics-server reports running pods only: not Pending, Succeeded, Failed, Unknown
    assert names == [("apps", "a-run-1"), ("apps", "a-run-2"), ("web", "w-run-1"),
                     ("web", "w-run-2")]
    by = {i["metadata"]["name"]: i for i in body["items"]}
    assert by["a-run-1"]["containers"] == [{"name": "c0", "usage": {"cpu": "120m", "memory": "200Mi"}},
                                           {"name": "c1", "usage": {"cpu": "120m", "memory": "200Mi"}}]
    assert [c["usage"] for c in by["w-run-1"]["containers"]] == [{"cpu": "10m", "memory": "32Mi"}] * 3
    assert by["w-run-2"]["metadata"]["labels"] == {"app": "w-run-2"}
    assert set(by["w-run-2"]) == {"metadata", "timestamp", "window", "containers"}
    # pages: every running pod once, in order, whatever the page size
    for limit in (1, 2, 3, 4):
        items, pages = metrics_pages(msim, "/apis/metrics.k8s.io/v1beta1/pods", limit)
        assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items] == names
        assert pages == -(-len(names) // limit)
    items, pages = metrics_pages(msim, "/apis/metrics.k8s.io/v1beta1/namespaces/apps/pods", 1)
    assert [i["metadata"]["name"] for i in items] == ["a-run-1", "a-run-2"] and pages == 2
    assert msim.api_json("/apis/metrics.k8s.io/v1beta1/namespaces/none/pods")["items"] == []
    body = msim.api_json("/apis/metrics.k8s.io/v1beta1/namespaces/web/pods")
    assert body["kind"] == "PodMetricsList" and body["metadata"] == {}
    assert [i["metadata"]["name"] for i in body["items"]] == ["w-run-1", "w-run-2"]
    assert msim.api_get("/apis/metrics.k8s.io/v1beta1/namespaces/web/nodes")[0] == 404
    # a token is opaque but checked; one from another namespace is refused
    tok = msim.api_json("/apis/metrics.k8s.io/v1beta1/pods?limit=1")["metadata"]["continue"]
    for bad in ("!!!", "eyJ4IjoxfQ"):
        st, _, b = msim.api_get("/apis/metrics.k8s.io/v1beta1/pods?limit=1&continue=" + bad)
        assert st == 400 and json.loads(b)["reason"] == "BadRequest"
    st, _, _ = msim.api_get("/apis/metrics.k8s.io/v1beta1/namespaces/web/pods?limit=1&continue=" + tok)
    assert st == 400
    assert msim.stats()["requests"]["list metrics.k8s.io"] >= 10


def test_metrics_api_without_pagination(msim):
    """paginate false: limit is ignored and no continue comes back, as from a
    real metrics-server."""
    try:
        assert msim.metrics_api(True, True, paginate=False)["paginate"] is False
        body = msim.api_json("/apis/metrics.k8s.io/v1beta1/pods?limit=1")
        assert len(body["items"]) == 4 and body["metadata"] == {}
        body = msim.api_json("/apis/metrics.k8s.io/v1beta1/namespaces/apps/pods?limit=1")
        assert [i["metadata"]["name"] for i in body["items"]] == ["a-run-1", "a-run-2"]
        assert body["metadata"] == {}
    finally:
        msim.metrics_api(True, True, paginate=True)


def test_metrics_api_unavailable(msim):
    """enabled but not available: the APIService exists (the group is in
    /apis and /apis/metrics.k8s.io is answered by the aggregator), but the
    proxied paths get the aggregator's 503 "service unavailable" text."""
    try:
        assert msim.metrics_api(True, False) == {"enabled": True, "available": False,
                                                 "paginate": True}
        assert "metrics.k8s.io" in [g["name"] for g in msim.api_json("/apis")["groups"]]
        group = msim.api_json("/apis/metrics.k8s.io")
        assert group["kind"] == "APIGroup" and group["name"] == "metrics.k8s.io"
        for path in ("/apis/metrics.k8s.io/v1beta1", "/apis/metrics.k8s.io/v1beta1/nodes",
                     "/apis/metrics.k8s.io/v1beta1/pods?limit=2",
                     "/apis/metrics.k8s.io/v1beta1/namespaces/apps/pods"):
            status, headers, body = msim.api_get(path)
            assert (status, body) == (503, b"service unavailable\n"), path
            assert headers["content-type"] == "text/plain; charset=utf-8"
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["content-length"] == "20" and "audit-id" in headers
        # off: as on a cluster without metrics-server
        msim.metrics_api(False)
        status, _, body = msim.api_get("/apis/metrics.k8s.io/v1beta1/nodes")
        assert status == 404 and body == sample("metrics-api-absent-404.json")
        assert "metrics.k8s.io" not in [g["name"] for g in msim.api_json("/apis")["groups"]]
    finally:
        msim.metrics_api(True, True)
    assert len(msim.api_json("/apis/metrics.k8s.io/v1beta1/nodes")["items"]) == 2
    # faults on metrics LISTs use the verb "list"
    msim.fault(status=429, count=1, retry_after=1, path_prefix="/apis/metrics.k8s.io", verb="list")
    assert msim.api_get("/apis/metrics.k8s.io/v1beta1")[0] == 200
    assert msim.api_get("/apis/metrics.k8s.io/v1beta1/pods")[0] == 429
    assert msim.api_get("/apis/metrics.k8s.io/v1beta1/pods")[0] == 200


# --------------------------------------------------------------------------
# authentication and authorization

def test_401(sim):
    want = sample("status-401.json")
    status, headers, body = sim.api_get("/api/v1/events", token="not-a-token")
    assert status == 401
    check_api_headers(headers, apf=False)
    assert json.loads(body) == want


def test_anonymous_requests(sim, tmp_path):
    # kube-apiserver's default --anonymous-auth=true: no token is the user
    # system:anonymous, whom RBAC lets read /version and the health paths only
    status, headers, body = sim.api_get("/api/v1/events", token=None)
    assert status == 403
    check_api_headers(headers)
    assert headers["x-content-type-options"] == "nosniff"
    assert json.loads(body) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'events is forbidden: User "system:anonymous" cannot list resource "events" in API '
                   'group "" at the cluster scope',
        "reason": "Forbidden", "details": {"kind": "events"}, "code": 403}
    status, _, body = sim.api_get("/api/v1/namespaces/kube-system", token=None)
    assert status == 403 and json.loads(body)["message"] == (
        'namespaces "kube-system" is forbidden: User "system:anonymous" cannot get resource '
        '"namespaces" in API group "" in the namespace "kube-system"')
    status, _, body = sim.api_get("/api", token=None)
    assert status == 403 and json.loads(body)["message"] == \
        'forbidden: User "system:anonymous" cannot get path "/api"'
    assert json.loads(body)["details"] == {}
    assert sim.api_get("/version", token=None)[0] == 200
    status, headers, body = sim.api_get("/readyz", token=None)
    assert status == 200 and body == b"ok"
    with KubeSim(tmp_path, seed="empty", anonymous_auth="false") as s:
        status, headers, body = s.api_get("/version", token=None)
        assert status == 401
        check_api_headers(headers, apf=False)
        assert json.loads(body) == sample("status-401.json")


def test_403(sim):
    sim.add_token("limited-1", ["list events", "watch pods"],
                  user="system:serviceaccount:capture:nopriv")
    status, headers, body = sim.api_get("/api/v1/events", token="limited-1")
    assert status == 403
    check_api_headers(headers)
    assert json.loads(body) == sample("status-403.json")
    st = sim.api_json("/api/v1/namespaces/default/pods?watch=1", token="limited-1", expect=403)
    assert st["message"] == ('pods is forbidden: User "system:serviceaccount:capture:nopriv" '
                             'cannot watch resource "pods" in API group "" in the namespace "default"')
    # what is not denied works
    assert sim.api_json("/api/v1/pods", token="limited-1")["kind"] == "PodList"
    st = sim.api_json("/apis/events.k8s.io/v1/events", token="limited-1")
    assert st["kind"] == "EventList"


def test_rotate_token(tmp_path):
    with KubeSim(tmp_path, seed="empty") as s:
        old = s.token
        assert s.api_get("/api/v1/namespaces", token=old)[0] == 200
        new = s.rotate_token()
        assert new != old
        assert s.token == new
        assert open(os.path.join(s.sa_dir, "token")).read().strip() == new
        assert s.api_get("/api/v1/namespaces", token=old)[0] == 401
        assert s.api_get("/api/v1/namespaces", token=new)[0] == 200


# --------------------------------------------------------------------------
# events: the samples re-created through the control API

def create_sample_events(s, ns="capture"):
    page1 = sample("list-events-page1.json")["items"]
    page2 = sample("list-events-page2.json")["items"]
    k8s = sample("list-events-k8s-io-v1.json")["items"]
    db0 = copy.deepcopy(k8s[0])
    db0["metadata"]["namespace"] = ns
    s.create("events.k8s.io", db0)
    for ev in (page1[1], page2[0]):
        ev = copy.deepcopy(ev)
        ev["metadata"]["namespace"] = ns
        for inv in (ev["involvedObject"],):
            inv["namespace"] = ns
        s.create("events", ev)
    return page1, page2, k8s


def test_event_pages_match_samples(tmp_path):
    with KubeSim(tmp_path) as s:
        page1, page2, _ = create_sample_events(s)
        got1 = s.api_json("/api/v1/namespaces/capture/events?limit=2")
        want1 = sample("list-events-page1.json")
        assert shape(got1) == shape(want1)
        assert list(got1["metadata"]) == ["resourceVersion", "continue", "remainingItemCount"]
        assert got1["metadata"]["remainingItemCount"] == 1
        assert [strip_volatile(i) for i in got1["items"]] == [strip_volatile(i) for i in page1]
        tok = decode_continue(got1["metadata"]["continue"])
        assert list(tok) == ["v", "rv", "start"]
        assert tok["v"] == "meta.k8s.io/v1" and tok["rv"] == int(got1["metadata"]["resourceVersion"])
        assert tok["start"] == page1[1]["metadata"]["name"] + "\u0000"
        assert "=" not in got1["metadata"]["continue"]
        got2 = s.api_json("/api/v1/namespaces/capture/events?limit=2&continue=" +
                          got1["metadata"]["continue"])
        assert shape(got2) == shape(sample("list-events-page2.json"))
        assert got2["metadata"] == {"resourceVersion": got1["metadata"]["resourceVersion"]}
        assert [strip_volatile(i) for i in got2["items"]] == [strip_volatile(i) for i in page2]
        # the same events through events.k8s.io/v1
        k8s = s.api_json("/apis/events.k8s.io/v1/namespaces/capture/events")
        want = sample("list-events-k8s-io-v1.json")
        assert shape(k8s) == shape(want)
        assert [strip_volatile(i) for i in k8s["items"]] == [strip_volatile(i) for i in want["items"]]
        for a, b in zip(k8s["items"], want["items"]):
            assert list(a) == list(b)
        # cluster-wide continue tokens carry namespace/name
        c = s.api_json("/api/v1/events?limit=1")
        assert decode_continue(c["metadata"]["continue"])["start"] == "capture/" + \
            page1[0]["metadata"]["name"] + "\u0000"


def test_emitted_events_realistic(sim):
    out = sim.emit_events(namespace="emit", count=5, type="Warning", reason="BackOff",
                          kind="Pod", name_prefix="p", count_field=3)
    assert len(out["uids"]) == 5 and int(out["last_rv"]) - int(out["first_rv"]) == 4
    items = sim.api_json("/api/v1/namespaces/emit/events")["items"]
    assert [i["metadata"]["uid"] for i in items] == out["uids"]
    want = sample("list-events-page1.json")["items"][1]
    for ev in items:
        assert list(ev) == list(want)
        assert shape(ev) == shape(want)
        assert ev["count"] == 3 and ev["type"] == "Warning" and ev["reason"] == "BackOff"
        assert ev["involvedObject"]["kind"] == "Pod" and ev["involvedObject"]["name"].startswith("p-")
        size = len(json.dumps({"type": "ADDED", "object": ev}, separators=(",", ":")))
        assert 900 <= size <= 1600, size
    big = sim.emit_events(namespace="emit-big", count=1500)
    assert "uids" not in big and int(big["last_rv"]) - int(big["first_rv"]) == 1499


# --------------------------------------------------------------------------
# lists: pagination, 410, selectors

def test_pagination_and_continue_expired(tmp_path):
    with KubeSim(tmp_path, seed="empty") as s:
        out = s.emit_events(namespace="burst", count=25)
        seen, cont, pages, rv = [], None, 0, None
        while True:
            q = "/api/v1/events?limit=10" + ("&continue=" + cont if cont else "")
            lst = s.api_json(q)
            pages += 1
            rv = rv or lst["metadata"]["resourceVersion"]
            assert lst["metadata"]["resourceVersion"] == rv
            seen += [i["metadata"]["uid"] for i in lst["items"]]
            cont = lst["metadata"].get("continue")
            if pages == 1:
                first_cont = cont
                # not visible in this list; sorted after its cursor
                s.emit_events(namespace="burst", count=3, name_prefix="zz")
            if not cont:
                break
        assert pages == 3 and sorted(seen) == sorted(out["uids"])
        s.compact()
        status, headers, body = s.api_get("/api/v1/events?limit=10&continue=" + first_cont)
        line, names, wbody = sample_http("list-continue-expired-410.txt")
        assert status == 410 and line == "HTTP/1.1 410 Gone"
        check_api_headers(headers)
        got, want = json.loads(body), json.loads(wbody)
        assert shape(got) == shape(want)
        assert {k: v for k, v in got.items() if k != "metadata"} == \
            {k: v for k, v in want.items() if k != "metadata"}
        tok = decode_continue(got["metadata"]["continue"])
        assert tok["rv"] == -1 and tok["start"] == decode_continue(first_cont)["start"]
        # the inconsistent remainder the new token offers
        rest = s.api_json("/api/v1/events?limit=100&continue=" + got["metadata"]["continue"])
        assert len(rest["items"]) == 28 - 10
        # a fresh list works
        assert len(s.api_json("/api/v1/events")["items"]) == 28


def test_list_rv0_served_from_cache_ignores_limit(sim):
    for i in range(3):
        sim.create("pods", {"metadata": {"name": "cache-%d" % i, "namespace": "cache"},
                            "spec": {"containers": [{"name": "c", "image": "x:1"}]}})
    lst = sim.api_json("/api/v1/namespaces/cache/pods?limit=1&resourceVersion=0")
    assert len(lst["items"]) == 3 and "continue" not in lst["metadata"]
    lst = sim.api_json("/api/v1/namespaces/cache/pods?limit=1")
    assert len(lst["items"]) == 1 and lst["metadata"]["continue"]
    # events have no watch cache: limit applies
    sim.emit_events(namespace="cache", count=3)
    lst = sim.api_json("/api/v1/namespaces/cache/events?limit=1&resourceVersion=0")
    assert len(lst["items"]) == 1


def test_selectors(sim):
    sim.emit_events(namespace="sel", count=2, type="Normal", reason="Pulled", name_prefix="a")
    sim.emit_events(namespace="sel", count=3, type="Warning", reason="BackOff", name_prefix="b")
    sim.emit_events(namespace="sel", count=1, type="Warning", reason="NodeNotReady", kind="Node",
                    name="node-a")

    def names(q):
        return [i["metadata"]["name"] for i in sim.api_json(q)["items"]]
    assert len(names("/api/v1/namespaces/sel/events?fieldSelector=type%3DNormal")) == 2
    assert len(names("/api/v1/events?fieldSelector=metadata.namespace%3Dsel,type%3DWarning")) == 4
    assert len(names("/api/v1/events?fieldSelector=metadata.namespace%3Dsel,reason!%3DBackOff")) == 3
    assert len(names("/api/v1/namespaces/sel/events?fieldSelector=involvedObject.kind%3DNode")) == 1
    one = names("/api/v1/namespaces/sel/events")[0]
    assert names("/api/v1/events?fieldSelector=metadata.name%3D" + one) == [one]
    assert len(names("/apis/events.k8s.io/v1/namespaces/sel/events?fieldSelector=regarding.kind%3DPod")) == 5
    for i, (labels, node) in enumerate(((({"app": "web", "tier": "fe"}), "node-a"),
                                        (({"app": "db"}), "node-b"), (({}), "node-a"))):
        sim.create("pods", {"metadata": {"name": "lp-%d" % i, "namespace": "sel", "labels": labels},
                            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x:1"}]}})
    base = "/api/v1/namespaces/sel/pods?"
    assert names(base + "labelSelector=app%3Dweb") == ["lp-0"]
    assert names(base + "labelSelector=app!%3Dweb") == ["lp-1", "lp-2"]
    assert names(base + "labelSelector=app") == ["lp-0", "lp-1"]
    assert names(base + "labelSelector=!app") == ["lp-2"]
    assert names(base + "labelSelector=app%20in%20(web,db),tier") == ["lp-0"]
    assert names(base + "fieldSelector=spec.nodeName%3Dnode-a") == ["lp-0", "lp-2"]
    status, headers, body = sim.api_get(base + "fieldSelector=spec.bogus%3Dx")
    assert status == 400
    check_api_headers(headers)
    st = json.loads(body)
    assert st["reason"] == "BadRequest" and st["code"] == 400 and st["kind"] == "Status"
    assert sim.api_get(base + "limit=abc")[0] == 400
    assert sim.api_get(base + "watch=1&timeoutSeconds=x")[0] == 400
    assert sim.api_get(base + "continue=%%%")[0] == 400


# --------------------------------------------------------------------------
# watches

WATCH_HEADER_NAMES = sample_http("watch-events-http11-headers.txt")[1]


def check_watch_framing(raw):
    status, headers, chunks, ended = parse_chunked(raw)
    assert status == "HTTP/1.1 200 OK"
    assert [h[0] for h in headers] == [h for h in WATCH_HEADER_NAMES if h]
    hd = dict(headers)
    assert hd["Content-Type"] == "application/json" and hd["Transfer-Encoding"] == "chunked"
    # Go's framing (see GoBodyWriter): a chunk is a full 2048-byte buffer, or
    # it ends at the end of a line (a flush when no event waits, or one
    # event bigger than the buffer written on its own).
    for c in chunks:
        assert c and (len(c) == 2048 or c.endswith(b"\n")), (len(c), c[-80:])
    lines, rest = watch_lines(chunks)
    assert rest == b"" or not ended, rest[:200]
    return [json.loads(x) for x in lines], ended


def test_watch_framing_follows_go(tmp_path):
    """The real server's watch handler writes each event through net/http's
    2048-byte buffer and flushes when no other event is waiting: a replay
    (or any burst) shares chunks, cut at 2048 bytes inside lines; a lone
    event on a quiet stream is one chunk."""
    with KubeSim(tmp_path, seed="empty") as s:
        rv = s.stats()["resource_version"]
        s.emit_events(namespace="burst", count=6)
        raw = s.raw_request("/api/v1/events?watch=1&timeoutSeconds=1&resourceVersion=" + rv)
        _, _, chunks, ended = parse_chunked(raw)
        lines, rest = watch_lines(chunks)
        assert ended and len(lines) == 6 and rest == b""
        assert sum(map(len, chunks)) == sum(map(len, lines))
        assert all(len(c) == 2048 for c in chunks[:-1]) and 0 < len(chunks[-1]) <= 2048
        assert len(chunks) == -(-sum(map(len, lines)) // 2048)
        # live, one at a time: one event per chunk
        rv = s.stats()["resource_version"]
        w = RawStream(s, "/api/v1/namespaces/quiet/events?watch=1&timeoutSeconds=3&resourceVersion=" + rv)
        try:
            for i in range(3):
                s.emit_events(namespace="quiet", count=1)
                assert w.read_until(lambda d: complete_lines(d) >= i + 1)
            raw = w.read_all()
        finally:
            w.close()
        _, _, chunks, ended = parse_chunked(raw)
        assert ended and len(chunks) == 3 and all(c.count(b"\n") == 1 and c.endswith(b"\n") for c in chunks)


def test_big_bodies_are_chunked_like_go(tmp_path):
    """Up to 2048 bytes a body has a Content-Length; beyond, it is chunked,
    in one chunk (the server encodes the object, then writes it at once)."""
    with KubeSim(tmp_path, seed="empty") as s:
        s.emit_events(namespace="big", count=3)
        raw = s.raw_request("/api/v1/namespaces/big/events?limit=1", timeout=10)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"Content-Length: %d" % len(body) in head.split(b"\r\n") and len(body) <= 2048
        assert b"Transfer-Encoding: chunked" not in head.split(b"\r\n")
        raw = s.raw_request("/api/v1/namespaces/big/events", timeout=10)
        status, headers, chunks, ended = parse_chunked(raw)
        names = [h[0] for h in headers]
        assert "Transfer-Encoding" in names and "Content-Length" not in names
        assert ended and len(chunks) == 1 and len(chunks[0]) > 2048
        assert len(json.loads(chunks[0])["items"]) == 3


def test_watch_raw_framing_replay_and_timeout(tmp_path):
    with KubeSim(tmp_path) as s:
        lst = s.api_json("/api/v1/events")
        rv = lst["metadata"]["resourceVersion"]
        create_sample_events(s)
        ev = s.objects("events", namespace="capture")["items"][1]
        s.modify("events", {"metadata": {"name": ev["metadata"]["name"], "namespace": "capture"},
                            "count": 5, "lastTimestamp": "2026-11-22T00:26:06Z"})
        s.delete("events", ev["metadata"]["name"], namespace="capture")
        raw = s.raw_request("/api/v1/events?watch=1&resourceVersion=%s&timeoutSeconds=1" % rv)
        events, ended = check_watch_framing(raw)
        assert ended, raw[-100:]
        assert raw.endswith(b"\r\n0\r\n\r\n")
        assert [e["type"] for e in events] == ["ADDED", "ADDED", "ADDED", "MODIFIED", "DELETED"]
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert rvs == sorted(rvs) and len(set(rvs)) == 5
        want = sample("watch-events-stream.jsonl")
        for e in events:
            assert list(e) == ["type", "object"]
            assert list(e["object"])[:3] == ["kind", "apiVersion", "metadata"]
        # kubelet-style events look like the captured kubelet-style ones
        assert shape(events[1]) == shape(want[0])
        assert shape(events[0]) == shape(want[5])
        mod = events[3]["object"]
        assert mod["count"] == 5
        assert [m["manager"] for m in mod["metadata"]["managedFields"]] == ["kubectl-create",
                                                                             "kubectl-patch"]
        assert mod["metadata"]["managedFields"][1]["fieldsV1"] == {"f:count": {}, "f:lastTimestamp": {}}
        assert "f:count" not in mod["metadata"]["managedFields"][0]["fieldsV1"]
        # DELETED carries the last state with a new resourceVersion
        assert events[4]["object"]["metadata"]["uid"] == mod["metadata"]["uid"]


def test_watch_rv0_starts_with_synthetic_added(sim):
    sim.emit_events(namespace="w0", count=4)
    raw = sim.raw_request("/api/v1/namespaces/w0/events?watch=true&resourceVersion=0&timeoutSeconds=1")
    events, ended = check_watch_framing(raw)
    assert ended and [e["type"] for e in events] == ["ADDED"] * 4
    raw = sim.raw_request("/api/v1/namespaces?watch=1&timeoutSeconds=1")
    events, ended = check_watch_framing(raw)
    assert ended and {e["object"]["metadata"]["name"] for e in events} >= {"default", "kube-system"}


def test_watch_too_old(tmp_path):
    with KubeSim(tmp_path) as s:
        s.emit_events(namespace="old", count=3)
        s.compact()
        for path, sample_name in (("/api/v1/events", "watch-events-too-old.txt"),
                                  ("/api/v1/pods", "watch-pods-too-old.txt")):
            raw = s.raw_request(path + "?watch=1&resourceVersion=2&allowWatchBookmarks=true")
            events, ended = check_watch_framing(raw)
            line, names, body = sample_http(sample_name)
            want = json.loads(body.strip().splitlines()[0])
            assert ended and len(events) == 1
            assert shape(events[0]) == shape(want)
            assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"
            if "events" in path:
                assert events[0] == want
            else:
                assert re.match(r"^too old resource version: 2 \(\d+\)$", events[0]["object"]["message"])
        # from the compaction point on, replay works
        st = s.stats()
        raw = s.raw_request("/api/v1/events?watch=1&timeoutSeconds=1&resourceVersion=" +
                            st["resource_version"])
        events, ended = check_watch_framing(raw)
        assert ended and events == []


def test_bookmarks_on_pods_never_on_events(sim):
    rv = sim.stats()["resource_version"]
    streams = {r: RawStream(sim, "/api/v1/%s?watch=1&allowWatchBookmarks=true&timeoutSeconds=4"
                               "&resourceVersion=%s" % (r, rv)) for r in ("pods", "events")}
    try:
        raws = {r: w.read_all() for r, w in streams.items()}
    finally:
        for w in streams.values():
            w.close()
    events, ended = check_watch_framing(raws["pods"])
    assert ended
    bms = [e for e in events if e["type"] == "BOOKMARK"]
    assert bms, events
    want = [e for e in sample("watch-pods-bookmarks.jsonl") if e["type"] == "BOOKMARK"][0]
    for b in bms:
        assert shape(b) == shape(want)
        assert b["object"]["spec"] == want["object"]["spec"] and b["object"]["status"] == {}
        assert b["object"]["metadata"]["creationTimestamp"] is None
    events, ended = check_watch_framing(raws["events"])
    assert ended and [e for e in events if e["type"] == "BOOKMARK"] == []


def test_watch_selector_transitions(sim):
    sim.create("pods", {"metadata": {"name": "tr", "namespace": "trans", "labels": {"app": "x"}},
                        "spec": {"containers": [{"name": "c", "image": "x:1"}]}})
    rv = sim.stats()["resource_version"]
    sim.modify("pods", {"metadata": {"name": "tr", "namespace": "trans", "labels": {"app": "y"}}})
    sim.modify("pods", {"metadata": {"name": "tr", "namespace": "trans", "labels": {"app": "x"}}})
    raw = sim.raw_request("/api/v1/namespaces/trans/pods?watch=1&labelSelector=app%3Dx"
                          "&timeoutSeconds=1&resourceVersion=" + rv)
    events, _ = check_watch_framing(raw)
    assert [e["type"] for e in events] == ["DELETED", "ADDED"]


def test_live_watch_gets_new_events(sim):
    rv = sim.stats()["resource_version"]
    result = {}

    def run():
        result["raw"] = sim.raw_request("/api/v1/namespaces/live/events?watch=1&timeoutSeconds=3"
                                        "&resourceVersion=" + rv)
    t = threading.Thread(target=run)
    t.start()
    assert wait_for(lambda: sim.stats()["open_watches"] >= 1)
    sim.emit_events(namespace="live", count=20)
    t.join(20)
    events, ended = check_watch_framing(result["raw"])
    assert ended and len(events) == 20


# --------------------------------------------------------------------------
# faults

def test_status_faults(sim):
    sim.fault(status=429, count=2, retry_after=3, path_prefix="/api/v1/events", verb="list")
    for _ in range(2):
        status, headers, body = sim.api_get("/api/v1/events?limit=1")
        assert status == 429 and headers["retry-after"] == "3"
        check_api_headers(headers)
        st = json.loads(body)
        assert st["kind"] == "Status" and st["reason"] == "TooManyRequests" and st["code"] == 429
        assert st["details"]["retryAfterSeconds"] == 3
    assert sim.api_get("/api/v1/events?limit=1")[0] == 200
    sim.fault(status=503, seconds=600, verb="watch")
    assert sim.api_get("/api/v1/pods?watch=1&timeoutSeconds=1")[0] == 503
    assert sim.api_get("/api/v1/pods")[0] == 200
    sim.fault(clear=True)
    assert sim.api_get("/api/v1/pods?watch=1&timeoutSeconds=1")[0] == 200
    sim.fault(status=500, count=1)
    status, _, body = sim.api_get("/version")
    assert status == 500 and json.loads(body)["reason"] == "InternalError"
    stats = sim.stats()
    assert stats["statuses"]["429"] >= 2 and stats["statuses"]["503"] >= 1
    assert stats["requests"]["list events"] >= 3


@pytest.mark.parametrize("mid_line", [False, True])
def test_drop_watches(sim, mid_line):
    ns = "drop-mid" if mid_line else "drop"
    sim.emit_events(namespace=ns, count=2)
    w = RawStream(sim, "/api/v1/namespaces/%s/events?watch=1&timeoutSeconds=30" % ns)
    try:
        assert w.read_until(lambda d: complete_lines(d) >= 2)
        out = sim.fault(drop_watches=True, mid_line=mid_line)
        assert out["dropped"] >= 1
        raw = w.read_all()
    finally:
        w.close()
    status, headers, chunks, ended = parse_chunked(raw)
    assert not ended
    assert sim.stats()["open_watches"] == 0
    complete, rest = watch_lines(chunks)
    assert len(complete) == 2
    for c in complete:
        assert json.loads(c)["type"] == "ADDED"
    if mid_line:
        assert rest and not chunks[-1].endswith(b"\n")
        with pytest.raises(ValueError):
            json.loads(rest)
    else:
        assert rest == b""


def test_stats_and_requests(sim):
    before = sim.stats()
    sim.api_get("/api/v1/nodes")
    after = sim.stats()
    assert after["requests"]["list nodes"] == before["requests"].get("list nodes", 0) + 1
    assert int(after["resource_version"]) >= int(before["resource_version"])
    assert sim.requests(limit=1)[-1]["url"] == "/api/v1/nodes"


def test_slow_watcher_is_ended_without_gap(tmp_path):
    import socket
    with KubeSim(tmp_path, seed="empty", watch_queue_limit=50) as s:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", s.api_port))
        tls = s.ssl_context().wrap_socket(raw, server_hostname="localhost")
        tls.sendall(("GET /api/v1/events?watch=1&timeoutSeconds=60 HTTP/1.1\r\nHost: x\r\n"
                     "Authorization: Bearer %s\r\nConnection: close\r\n\r\n" % s.token).encode())
        assert wait_for(lambda: s.stats()["open_watches"] == 1)
        # the reader reads nothing while 3000 events (~3.5 MB) are written
        out = s.emit_events(namespace="slow", count=3000, uids=False)
        first = int(out["first_rv"])
        data = b""
        tls.settimeout(30)
        while True:
            b = tls.recv(65536)
            if not b:
                break
            data += b
        tls.close()
        status, headers, chunks, ended = parse_chunked(data)
        assert ended                       # ended cleanly, like the real cacher
        lines, rest = watch_lines(chunks)
        assert rest == b""
        rvs = [int(json.loads(c)["object"]["metadata"]["resourceVersion"]) for c in lines]
        assert 0 < len(rvs) < 3000
        assert rvs == list(range(first, first + len(rvs)))   # no gap before the end
        # the client resumes from its last RV and gets the rest
        raw2 = s.raw_request("/api/v1/events?watch=1&timeoutSeconds=1&resourceVersion=%d" % rvs[-1])
        _, _, chunks2, ended2 = parse_chunked(raw2)
        assert ended2 and len(watch_lines(chunks2)[0]) == 3000 - len(rvs)


def test_stall_watches(sim):
    rv = sim.stats()["resource_version"]
    result = {}

    def run():
        result["raw"] = sim.raw_request("/api/v1/namespaces/stall/events?watch=1&timeoutSeconds=1"
                                        "&resourceVersion=" + rv)
    sim.fault(stall_watches=True)
    try:
        t = threading.Thread(target=run)
        t.start()
        assert wait_for(lambda: sim.stats()["open_watches"] >= 1)
        sim.emit_events(namespace="stall", count=3)
        assert sim.stats()["stalled"] is True
    finally:
        sim.fault(clear=True)
    t.join(20)
    events, ended = check_watch_framing(result["raw"])
    assert ended and len(events) == 3


# --------------------------------------------------------------------------
# scale: POST /populate and POST /churn (at a small size; bench/kubesim_scale.py
# measures 150,000 pods)

UNHEALTHY = ("CrashLoopBackOff", "OOMKilled", "ImagePullBackOff", "Unschedulable", "NotReady")


def go_compact(obj):
    """The bytes kube-apiserver (and kubesim's full rendering) would send."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        s = s.replace(a, b)
    return s.encode()


def list_all(s, path, limit):
    """Every item of a paginated LIST, checking each page's metadata."""
    items, tok, rv = [], None, None
    while True:
        body = s.api_json(path + "?limit=%d" % limit + ("&continue=" + tok if tok else ""))
        rv = rv or body["metadata"]["resourceVersion"]
        assert body["metadata"]["resourceVersion"] == rv
        items += body["items"]
        tok = body["metadata"].get("continue")
        if not tok:
            return items, rv
        assert len(body["items"]) == limit
        assert decode_continue(tok)["rv"] == int(rv)


def pod_kind(p):
    """Which unhealthy kind a populated pod shows (None: healthy)."""
    st = p["status"]
    css = st.get("containerStatuses") or []
    if not p["spec"].get("nodeName"):
        return "Unschedulable"
    waiting = [(c.get("state") or {}).get("waiting", {}).get("reason") for c in css]
    if "CrashLoopBackOff" in waiting:
        return "CrashLoopBackOff"
    if "ImagePullBackOff" in waiting:
        return "ImagePullBackOff"
    if any(((c.get("lastState") or {}).get("terminated") or {}).get("reason") == "OOMKilled" for c in css):
        return "OOMKilled"
    if any(not c["ready"] for c in css):
        return "NotReady"
    return None


@pytest.fixture(scope="module")
def psim(tmp_path_factory):
    with KubeSim(tmp_path_factory.mktemp("populate"), metrics_api=True) as s:
        s.populated = s.populate(namespaces=7, nodes=5, pods=200, unhealthy_fraction=0.1, seed=7)
        yield s


def test_populate_counts_and_names(psim):
    out = psim.populated
    assert {k: out[k] for k in ("namespaces", "nodes", "pods")} == {
        "namespaces": 7, "nodes": 5, "pods": 200}
    assert out["unhealthy"] == {k: 4 for k in UNHEALTHY}          # 10 % of 200, over 5 kinds
    assert out["resourceVersion"] == psim.stats()["resource_version"]
    assert isinstance(out["seconds"], float)
    nss = [n["metadata"]["name"] for n in psim.api_json("/api/v1/namespaces")["items"]]
    assert ["ns-%05d" % i for i in range(7)] == [n for n in nss if n.startswith("ns-")]
    nodes = [n["metadata"]["name"] for n in psim.api_json("/api/v1/nodes")["items"]]
    assert nodes == ["node-%04d" % i for i in range(5)] + ["node-a"]
    # created in order: namespaces, then nodes, then pods, one rv each
    st = psim.stats()["objects"]
    assert st["pods"] == 200 and st["nodes"] == 6
    # bad requests
    for bad in ({"pods": -1}, {"pods": "x"}, {"unhealthy_fraction": 2}):
        with pytest.raises(Exception, match="-> 400"):
            psim.control("POST", "/populate", bad)


def test_populated_pods_realistic(psim):
    pods, rv = list_all(psim, "/api/v1/pods", 37)
    assert len(pods) == 200 and rv == psim.populated["resourceVersion"]
    keys = [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods]
    assert len(set(keys)) == 200 and keys == sorted(keys, key=lambda k: "%s/%s" % k)
    assert {k[0] for k in keys} == {"ns-%05d" % i for i in range(7)}    # spread over namespaces
    nodes = {n["metadata"]["name"]: n for n in psim.api_json("/api/v1/nodes")["items"]}
    node_ip = {name: [a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"][0]
               for name, n in nodes.items()}
    assert len({p["spec"].get("nodeName") for p in pods} - {None}) >= 4  # and over nodes
    sizes = [len(go_compact(p)) for p in pods]
    assert 3000 < min(sizes) and max(sizes) < 8000 and 4000 < sum(sizes) / len(sizes) < 6000
    kinds = {}
    ips = set()
    want = sample("pod-crashloop-oomkilled.json")
    want_shape = shape(want) - {".kind", ".apiVersion"}      # list items carry neither
    for p in pods:
        m, spec, st = p["metadata"], p["spec"], p["status"]
        kind = pod_kind(p)
        kinds[kind] = kinds.get(kind, 0) + 1
        assert m["name"].startswith(m["generateName"]) and len(m["name"]) == len(m["generateName"]) + 5
        assert set(m["labels"]) == {"app", "pod-template-hash"}
        assert m["ownerReferences"][0]["kind"] == "ReplicaSet"
        assert m["ownerReferences"][0]["name"] == m["generateName"][:-1]
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", m["uid"])
        assert 1 <= len(spec["containers"]) <= 3
        for c in spec["containers"]:
            assert set(c["resources"]["requests"]) == {"cpu", "memory"}
            assert set(c["resources"].get("limits", {})) <= {"cpu", "memory"}
        assert st["qosClass"] in ("Burstable", "Guaranteed")
        assert st["qosClass"] == ("Guaranteed" if all(
            c["resources"].get("limits") == c["resources"]["requests"] for c in spec["containers"])
            else "Burstable")
        if kind == "Unschedulable":
            assert st["phase"] == "Pending" and "hostIP" not in st and "containerStatuses" not in st
            assert [(c["type"], c["status"], c["reason"]) for c in st["conditions"]] == [
                ("PodScheduled", "False", "Unschedulable")]
            assert [e["manager"] for e in m["managedFields"]] == ["kube-controller-manager",
                                                                  "kube-scheduler"]
            continue
        assert [e["manager"] for e in m["managedFields"]] == ["kube-controller-manager", "kubelet"]
        assert st["hostIP"] == node_ip[spec["nodeName"]]
        assert st["podIPs"] == [{"ip": st["podIP"]}] and st["podIP"] not in ips
        ips.add(st["podIP"])
        assert st["startTime"] and len(st["containerStatuses"]) == len(spec["containers"])
        assert [c["name"] for c in st["containerStatuses"]] == [c["name"] for c in spec["containers"]]
        conds = {c["type"]: c for c in st["conditions"]}
        assert list(conds) == ["Initialized", "Ready", "ContainersReady", "PodScheduled"]
        ready = all(c["ready"] for c in st["containerStatuses"])
        assert conds["Ready"]["status"] == conds["ContainersReady"]["status"] == str(ready)
        if not ready:
            assert conds["Ready"]["reason"] == "ContainersNotReady"
            assert conds["Ready"]["message"].startswith("containers with unready status: [")
        for c in st["containerStatuses"]:
            assert set(c) >= {"name", "state", "lastState", "ready", "restartCount", "image",
                              "imageID", "started"}
        if kind is None:
            assert st["phase"] == "Running" and ready
            assert all("running" in c["state"] and c["restartCount"] == 0
                       and c["containerID"].startswith("containerd://")
                       for c in st["containerStatuses"])
            assert shape(p) >= want_shape - {x for x in want_shape if "managedFields" in x
                                              or "waiting" in x or "terminated" in x
                                              or "limits" in x} - {
                ".status.conditions[].message", ".status.conditions[].reason"}  # all True
        bad = [c for c in st["containerStatuses"] if c["restartCount"] or not c["ready"]
               or "running" not in c["state"]]
        if kind == "CrashLoopBackOff":
            c = bad[0]
            assert st["phase"] == "Running" and c["restartCount"] > 0 and not c["ready"]
            assert c["state"]["waiting"]["message"].startswith("back-off 5m0s restarting failed")
            assert c["lastState"]["terminated"]["reason"] == "Error"
            assert shape(p) >= want_shape - {x for x in want_shape if "managedFields" in x
                                              or "limits" in x or "running" in x}
        elif kind == "OOMKilled":
            c = bad[0]
            assert st["phase"] == "Running" and c["restartCount"] > 0 and c["ready"]
            assert c["lastState"]["terminated"]["exitCode"] == 137 and "running" in c["state"]
        elif kind == "ImagePullBackOff":
            c = bad[0]
            assert st["phase"] == "Pending" and c["restartCount"] == 0 and not c["ready"]
            assert c["state"]["waiting"]["message"] == 'Back-off pulling image "%s"' % c["image"]
            assert "containerID" not in c and c["imageID"] == ""
        elif kind == "NotReady":
            c = bad[0]
            assert st["phase"] == "Running" and "running" in c["state"] and not c["ready"]
            assert c["started"] and c["restartCount"] == 0
    assert kinds == dict({None: 180}, **{k: 4 for k in UNHEALTHY})


def test_populated_nodes_and_namespaces_realistic(psim):
    nodes = [n for n in psim.api_json("/api/v1/nodes")["items"] if n["metadata"]["name"] != "node-a"]
    want = sample("node-eks-ready.json")
    zones = set()
    for n in nodes:
        lb = n["metadata"]["labels"]
        zones.add(lb["topology.kubernetes.io/zone"])
        assert lb["node.kubernetes.io/instance-type"] and lb["kubernetes.io/hostname"] == n["metadata"]["name"]
        assert n["spec"]["providerID"].startswith("aws:///%s/i-" % lb["topology.kubernetes.io/zone"])
        st = n["status"]
        assert [c["type"] for c in st["conditions"]] == ["MemoryPressure", "DiskPressure", "PIDPressure",
                                                         "Ready"]
        assert st["nodeInfo"]["kubeletVersion"] == "v1.28.7"
        for k in ("cpu", "memory", "pods"):
            assert st["capacity"][k] and st["allocatable"][k]
        assert shape(want) - shape(n) <= {".kind", ".apiVersion",      # list items carry neither
                                          ".spec.taints", ".spec.taints[].key", ".spec.taints[].effect",
                                          ".metadata.labels.alpha.eksctl.io/cluster-name",
                                          ".metadata.managedFields[].fieldsV1.f:metadata.f:labels."
                                          "f:alpha.eksctl.io/cluster-name"}
    assert zones == {"eu-west-1a", "eu-west-1b", "eu-west-1c"}
    ns = psim.api_json("/api/v1/namespaces/ns-00003")
    assert shape(ns) == shape(sample("namespace-kube-system.json"))
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "ns-00003"}


def test_cached_json_is_the_full_rendering(psim):
    """Pages are assembled from each object's cached JSON; the bytes must be
    what encoding the whole list would give, in every page size, and
    remainingItemCount must count what is left."""
    total = 200
    for limit in (1, 7, 64, 500):
        status, _, body = psim.api_get("/api/v1/pods?limit=%d" % limit)
        assert status == 200
        doc = json.loads(body)
        assert body == go_compact(doc) + b"\n"
        if limit < total:
            assert doc["metadata"]["remainingItemCount"] == total - limit
    # per namespace (a key prefix), and the next page of it
    doc = psim.api_json("/api/v1/namespaces/ns-00002/pods?limit=5")
    n_ns = len(psim.api_json("/api/v1/namespaces/ns-00002/pods")["items"])
    assert doc["metadata"]["remainingItemCount"] == n_ns - 5
    status, _, body = psim.api_get("/api/v1/namespaces/ns-00002/pods?limit=5&continue=" +
                                   doc["metadata"]["continue"])
    assert body == go_compact(json.loads(body)) + b"\n"
    assert json.loads(body)["metadata"].get("remainingItemCount", 0) == max(0, n_ns - 10)
    name = doc["items"][0]["metadata"]["name"]
    status, _, body = psim.api_get("/api/v1/namespaces/ns-00002/pods/" + name)
    one = json.loads(body)
    assert list(one)[:2] == ["kind", "apiVersion"] and body == go_compact(one) + b"\n"
    assert psim.api_json("/api/v1/namespaces/ns-00002/pods/%s?pretty=1" % name) == one
    for path in ("/api/v1/nodes", "/api/v1/namespaces"):
        body = psim.api_get(path + "?limit=3")[2]
        assert body == go_compact(json.loads(body)) + b"\n"


def test_changed_objects_are_rendered_again(psim):
    """The cached JSON goes when an object changes: GET, LIST and WATCH show the change."""
    pods = psim.api_json("/api/v1/namespaces/ns-00006/pods")["items"]
    a, b = pods[0]["metadata"]["name"], pods[1]["metadata"]["name"]
    rv = psim.stats()["resource_version"]
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("raw", psim.raw_request(
        "/api/v1/namespaces/ns-00006/pods?watch=1&timeoutSeconds=2&resourceVersion=" + rv)))
    t.start()
    assert wait_for(lambda: psim.stats()["open_watches"] >= 1)
    psim.modify("pods", {"metadata": {"name": a, "namespace": "ns-00006",
                                      "labels": {"kubesim-test": "changed"}}})
    got = psim.api_json("/api/v1/namespaces/ns-00006/pods/" + a)
    assert got["metadata"]["labels"]["kubesim-test"] == "changed"
    assert int(got["metadata"]["resourceVersion"]) == int(rv) + 1
    listed = {p["metadata"]["name"]: p for p in
              psim.api_json("/api/v1/namespaces/ns-00006/pods?limit=500")["items"]}
    assert listed[a] == {k: v for k, v in got.items() if k not in ("kind", "apiVersion")}
    psim.delete("pods", b, namespace="ns-00006")
    listed = psim.api_json("/api/v1/namespaces/ns-00006/pods?limit=500")["items"]
    assert b not in [p["metadata"]["name"] for p in listed] and len(listed) == len(pods) - 1
    # remainingItemCount after a delete (a tombstone in the key list)
    doc = psim.api_json("/api/v1/pods?limit=10")
    assert doc["metadata"]["remainingItemCount"] == 199 - 10
    t.join(10)
    events, ended = check_watch_framing(result["raw"])
    assert ended and [e["type"] for e in events] == ["MODIFIED", "DELETED"]
    assert events[0]["object"]["metadata"]["labels"]["kubesim-test"] == "changed"
    assert events[1]["object"]["metadata"]["name"] == b
    # put the namespace back as populated, for the tests that count
    psim.modify("pods", {"metadata": {"name": a, "namespace": "ns-00006",
                                      "labels": {"kubesim-test": None}}})


def test_churn(psim):
    before, rv = list_all(psim, "/api/v1/pods", 500)
    prev = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in before}
    raw = {}
    t = threading.Thread(target=lambda: raw.setdefault("w", psim.raw_request(
        "/api/v1/pods?watch=1&timeoutSeconds=2&resourceVersion=" + rv)))
    t.start()
    assert wait_for(lambda: psim.stats()["open_watches"] >= 1)
    out = psim.churn("pods", 20, seed=5)
    assert out["modified"] == 20
    assert out["resourceVersion"] == out["last_rv"] == psim.stats()["resource_version"]
    assert int(out["last_rv"]) - int(out["first_rv"]) == 19
    t.join(15)
    events, ended = check_watch_framing(raw["w"])
    assert ended and len(events) == 20 and {e["type"] for e in events} == {"MODIFIED"}
    assert [int(e["object"]["metadata"]["resourceVersion"]) for e in events] == \
        list(range(int(out["first_rv"]), int(out["last_rv"]) + 1))
    restarts = toggles = 0
    for e in events:
        p = e["object"]
        key = (p["metadata"]["namespace"], p["metadata"]["name"])
        old = prev[key]
        assert old["status"]["phase"] == "Running" == p["status"]["phase"]
        diffs = [(o, n) for o, n in zip(old["status"]["containerStatuses"],
                                        p["status"]["containerStatuses"]) if o != n]
        assert len(diffs) == 1
        o, n = diffs[0]
        if n["restartCount"] == o["restartCount"] + 1:
            restarts += 1
            assert n["ready"] == o["ready"]
            if "running" in o["state"]:
                assert n["lastState"]["terminated"]["reason"] == "Error"
                assert n["containerID"] != o["containerID"]
        else:
            toggles += 1
            assert n["ready"] != o["ready"] and n["restartCount"] == o["restartCount"]
        conds = {c["type"]: c["status"] for c in p["status"]["conditions"]}
        ready = all(c["ready"] for c in p["status"]["containerStatuses"])
        assert conds["Ready"] == conds["ContainersReady"] == str(ready)
        kubelet = [m for m in p["metadata"]["managedFields"] if m["manager"] == "kubelet"][0]
        assert kubelet["time"] >= [m for m in old["metadata"]["managedFields"]
                                   if m["manager"] == "kubelet"][0]["time"]
        prev[key] = p
    assert (restarts, toggles) == (10, 10)        # alternating
    with pytest.raises(Exception, match="-> 400"):
        psim.churn("nodes", 1)


def test_populate_with_an_open_slow_watch(tmp_path):
    """A watch open during /populate gets the creations like any others; one
    that falls --watch-queue-limit behind is ended cleanly (no gap), and
    resuming from its last rv, compacted away by --history-limit, gives 410:
    the client lists again. A watch started after the populate from the
    LIST's rv replays nothing."""
    import socket
    with KubeSim(tmp_path, seed="empty", watch_queue_limit=50, history_limit=100) as s:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", s.api_port))
        tls = s.ssl_context().wrap_socket(raw, server_hostname="localhost")
        rv0 = s.stats()["resource_version"]
        tls.sendall(("GET /api/v1/pods?watch=1&timeoutSeconds=60&resourceVersion=%s HTTP/1.1\r\n"
                     "Host: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n"
                     % (rv0, s.token)).encode())
        assert wait_for(lambda: s.stats()["open_watches"] == 1)
        out = s.populate(namespaces=3, nodes=2, pods=600, seed=1)    # ~3 MB of pods
        assert out["pods"] == 600
        data = b""
        tls.settimeout(30)
        while True:
            b = tls.recv(65536)
            if not b:
                break
            data += b
        tls.close()
        status, headers, chunks, ended = parse_chunked(data)
        assert ended
        lines, rest = watch_lines(chunks)
        assert rest == b""
        rvs = [int(json.loads(c)["object"]["metadata"]["resourceVersion"]) for c in lines]
        first = int(rv0) + 3 + 2 + 1           # after the namespaces and nodes
        assert 0 < len(rvs) < 600 and rvs == list(range(first, first + len(rvs)))
        resumed = s.raw_request("/api/v1/pods?watch=1&timeoutSeconds=5&resourceVersion=%d" % rvs[-1])
        events, ended = check_watch_framing(resumed)
        assert ended and len(events) == 1 and events[0]["type"] == "ERROR"
        assert events[0]["object"]["code"] == 410
        assert events[0]["object"]["message"].startswith("too old resource version: %d" % rvs[-1])
        # list again, then watch from the list: nothing is replayed
        pods, rv = list_all(s, "/api/v1/pods", 500)
        assert len(pods) == 600 and rv == out["resourceVersion"]
        events, ended = check_watch_framing(s.raw_request(
            "/api/v1/pods?watch=1&timeoutSeconds=1&resourceVersion=" + rv))
        assert ended and events == []
        assert s.stats()["history"] <= 100
        # a second populate puts pods among the existing ones (existing
        # namespaces and nodes when none are asked for): still one sorted list
        more = s.populate(pods=50, seed=2)
        assert (more["namespaces"], more["nodes"], more["pods"]) == (0, 0, 50)
        pods, _ = list_all(s, "/api/v1/pods", 64)
        keys = ["%s/%s" % (p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods]
        assert len(set(keys)) == 650 and keys == sorted(keys)
        assert {p["metadata"]["namespace"] for p in pods} == {"ns-00000", "ns-00001", "ns-00002"}
        assert s.populate(pods=0)["pods"] == 0


# --------------------------------------------------------------------------
# what the real kube-apiserver v1.28 answers to odd resourceVersions and
# options (checked against it in tests/envtest)

def test_resource_version_edge_cases(tmp_path):
    with KubeSim(tmp_path, seed="default") as s:
        s.emit_events(namespace="rv", count=2)
        cur = int(s.stats()["resource_version"])
        far = cur + 1000
        # too large: etcd (events) refuses at once, the watch cache after waiting 3 s
        st = s.api_json("/api/v1/events?resourceVersion=%d" % far, expect=504)
        assert st["message"] == "Timeout: Too large resource version: %d, current: %d" % (far, cur)
        assert st["reason"] == "Timeout" and "retryAfterSeconds" not in st["details"]
        assert st["details"]["causes"] == [{"reason": "ResourceVersionTooLarge",
                                            "message": "Too large resource version"}]
        st = s.api_json("/api/v1/namespaces?resourceVersion=%d" % far, expect=504)
        assert st["message"].startswith("Timeout: Too large resource version: ")
        assert st["details"]["retryAfterSeconds"] == 1
        # with a limit (and no resourceVersionMatch) the rv is an exact read:
        # the page as it was then, and a future revision is etcd's error
        st = s.api_json("/api/v1/namespaces?limit=5&resourceVersion=%d" % far, expect=500)
        assert st["message"] == "etcdserver: mvcc: required revision is a future revision"
        assert "reason" not in st
        first = s.api_json("/api/v1/namespaces/rv/events")["items"][0]["metadata"]["resourceVersion"]
        page = s.api_json("/api/v1/namespaces/rv/events?limit=5&resourceVersion=" + first)
        assert page["metadata"]["resourceVersion"] == first and len(page["items"]) == 1
        assert len(s.api_json("/api/v1/namespaces/rv/events?resourceVersion=" + first)["items"]) == 2
        # a watch from the future is no error: it opens and waits
        for path in ("/api/v1/events", "/api/v1/namespaces"):
            raw = s.raw_request(path + "?watch=1&timeoutSeconds=1&resourceVersion=%d" % far)
            status, _, chunks, ended = parse_chunked(raw)
            assert status == "HTTP/1.1 200 OK" and ended and chunks == []
        # not a number: 400 for an events LIST, 500 without a reason elsewhere
        st = s.api_json("/api/v1/events?resourceVersion=abc", expect=400)
        assert st["message"] == ('invalid resource version: resourceVersion: Invalid value: "abc": '
                                 'strconv.ParseUint: parsing "abc": invalid syntax')
        for path in ("/api/v1/namespaces?resourceVersion=-1", "/api/v1/events?watch=1&resourceVersion=abc",
                     "/api/v1/pods?watch=1&resourceVersion=abc"):
            st = s.api_json(path, expect=500)
            assert "reason" not in st and st["code"] == 500, st
            assert st["message"].startswith('resourceVersion: Invalid value: "'), st
        # option validation: 422 Invalid ListOptions
        st = s.api_json("/api/v1/events?resourceVersionMatch=Exact", expect=422)
        assert st == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": 'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
                                 'resourceVersionMatch is forbidden unless resourceVersion is provided',
                      "reason": "Invalid",
                      "details": {"group": "meta.k8s.io", "kind": "ListOptions", "causes": [
                          {"reason": "FieldValueForbidden",
                           "message": "Forbidden: resourceVersionMatch is forbidden unless resourceVersion "
                                      "is provided",
                           "field": "resourceVersionMatch"}]},
                      "code": 422}
        st = s.api_json("/api/v1/events?watch=1&sendInitialEvents=true", expect=422)
        assert len(st["details"]["causes"]) == 2 and st["message"].endswith("feature gate is enabled]")
        assert s.api_json("/api/v1/events?sendInitialEvents=true", expect=422)["details"]["causes"][0][
            "message"] == "Forbidden: sendInitialEvents is forbidden for list"
        # a continue token with resourceVersion=0 is accepted; any other rv is not
        page = s.api_json("/api/v1/namespaces/rv/events?limit=1")
        tok = page["metadata"]["continue"]
        assert len(s.api_json("/api/v1/namespaces/rv/events?limit=1&resourceVersion=0&continue=" + tok)[
            "items"]) == 1
        st = s.api_json("/api/v1/namespaces/rv/events?limit=1&resourceVersion=5&continue=" + tok, expect=400)
        assert st["message"] == "specifying resource version is not allowed when using continue"
        st = s.api_json("/api/v1/events?continue=abc", expect=400)
        assert st["message"].startswith("invalid continue token: continue key is not valid: ")


# ---- coordination.k8s.io/v1 leases (leader election) ----

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lib.lease_api import LEASE, http_request, lease_sequence  # noqa: E402
from lib.lease_api import shape as lease_shape  # noqa: E402  (this file has its own shape())

LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"


def test_leases_answer_as_captured(tmp_path):
    """Every request of the sequence (create, conflicts, invalid objects,
    MicroTime parsing, create on update, merge patch, delete, missing
    namespace) answers with the real server's code and Status body."""
    real = sample("leases-coordination-v1.json")
    with KubeSim(tmp_path) as s:
        got = lease_sequence(http_request("127.0.0.1", s.api_port, s.token, s.ca_file))
    assert set(got) == set(real)
    for name in real:
        assert lease_shape(got[name]) == lease_shape(real[name]), name


def lease_obj(holder, rv=None):
    meta = {"name": LEASE}
    if rv:
        meta["resourceVersion"] = rv
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 3,
                     "acquireTime": "2026-12-05T23:00:00.000000Z",
                     "renewTime": "2026-12-05T23:00:00.000000Z", "leaseTransitions": 0}}


def test_lease_update_faults_and_recovery(tmp_path):
    """A fault on the update verb of the lease path refuses updates (and
    only them) until cleared; a hang holds the request, then serves it."""
    with KubeSim(tmp_path) as s:
        req = http_request("127.0.0.1", s.api_port, s.token, s.ca_file)
        status, body = req("POST", LEASES, lease_obj("a"), {"Content-Type": "application/json"})
        assert status == 201
        rv = json.loads(body)["metadata"]["resourceVersion"]
        s.fault(status=403, seconds=60, path_prefix=LEASES, verb="update")
        status, body = req("PUT", LEASES + "/" + LEASE, lease_obj("b", rv), {})
        assert status == 403 and json.loads(body)["reason"] == "Forbidden"
        status, _ = req("GET", LEASES + "/" + LEASE, None, {})
        assert status == 200
        s.fault(clear=True)
        status, body = req("PUT", LEASES + "/" + LEASE, lease_obj("b", rv), {})
        assert status == 200 and json.loads(body)["spec"]["holderIdentity"] == "b"
        rv = json.loads(body)["metadata"]["resourceVersion"]
        s.fault(hang=2, count=1, path_prefix=LEASES, verb="update")
        t0 = time.monotonic()
        status, body = req("PUT", LEASES + "/" + LEASE, lease_obj("c", rv), {})
        assert status == 200 and time.monotonic() - t0 >= 1.5
        s.fault(status=500, hang=1, count=1, path_prefix=LEASES, verb="update")
        status, body = req("PUT", LEASES + "/" + LEASE, lease_obj("d", rv), {})
        assert status == 500
