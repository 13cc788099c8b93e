"""The real kubectl against kubesim: what the agent's commands will see.

kubectl is /usr/bin/kubectl or /usr/local/bin/kubectl (the tests that run
it are skipped, with the reason, when neither exists). On machines where
/usr/bin/kubectl is google-cloud-sdk's dispatcher it picks the kubectl of
the server's minor version (1.28 for kubesim); the newest kubectl.1.NN next
to it runs the same tests, so a client newer than the server (aggregated
discovery v2 asked first, protobuf request bodies) is covered too.

The server-side part (Tables, 406s, aggregated discovery, reviews) is also
checked without kubectl against the captured samples.

Run: /usr/bin/python3 -m pytest -q tests/kubesim/test_kubectl.py
"""

import json
import os
import re
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fixtures import KubeSim, parse_chunked, watch_lines  # noqa: E402
import kubectl_run as kr  # noqa: E402

SAMPLES = os.path.join(os.path.dirname(HERE), "fixtures", "kube-api-samples")
KUBECTL = kr.find_kubectl()
NO_KUBECTL = "no kubectl in /usr/bin or /usr/local/bin (apt-get install kubernetes-client)"
CLIENTS = ([KUBECTL] + kr.sibling_kubectls(KUBECTL)) if KUBECTL else []
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
LIMITED = "limited-token"
LIMITED_DENY = ["get pods", "list secrets"]
NOLOG = "no-log-token"
LOG_TEXT = "2026-01-01 starting web on :8080\nready to serve\n"


def sample(name):
    with open(os.path.join(SAMPLES, name)) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """kubesim with: namespaces shop and data; web-1 (shop, two containers,
    sidecar in CrashLoopBackOff), db-0 (data, Running), done-1 (shop,
    Succeeded); a BackOff event about web-1; a log text for web-1; a token
    denied get pods and list secrets, and one denied get pods/log."""
    s = KubeSim(tmp_path_factory.mktemp("kubectl"))
    s.start()
    try:
        for ns in ("shop", "data"):
            s.create("namespaces", {"metadata": {"name": ns}})
        node = "node-a"
        started = kr.ts(-90)
        pod = kr.web_pod("shop", node)
        pod["status"] = kr.web_pod_status(started)
        web = s.create("pods", pod)
        s.create("pods", {"metadata": {"name": "db-0", "namespace": "data", "labels": {"app": "db"}},
                          "spec": {"nodeName": node, "containers": [{"name": "postgres", "image": "postgres:16.1"}]},
                          "status": {"phase": "Running", "podIP": "10.244.1.18", "podIPs": [{"ip": "10.244.1.18"}],
                                     "containerStatuses": [{"name": "postgres", "ready": True, "restartCount": 0,
                                                            "state": {"running": {"startedAt": started}},
                                                            "containerID": "containerd://" + "3" * 64}]}})
        s.create("pods", {"metadata": {"name": "done-1", "namespace": "shop", "labels": {"app": "job"}},
                          "spec": {"nodeName": node, "restartPolicy": "Never",
                                   "containers": [{"name": "job", "image": "busybox:1.36"}]},
                          "status": {"phase": "Succeeded", "containerStatuses": [
                              {"name": "job", "ready": False, "restartCount": 0,
                               "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                        "startedAt": started, "finishedAt": started,
                                                        "containerID": "containerd://" + "4" * 64}}}]}})
        ev = kr.backoff_event("shop", web["metadata"]["uid"], node, kr.ts(-30))
        ev.pop("apiVersion")
        ev.pop("kind")
        s.create("events", ev)
        s.set_log("web-1", LOG_TEXT, namespace="shop", container="web")
        s.add_token(LIMITED, LIMITED_DENY, user="system:serviceaccount:agents:limited")
        s.add_token(NOLOG, ["get pods/log"], user="system:serviceaccount:agents:nolog")
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module", params=CLIENTS or [None],
                ids=[os.path.basename(c) for c in CLIENTS] or ["no-kubectl"])
def kubectl(request, sim, tmp_path_factory):
    """run(args, token=None, kubeconfig=None) for one kubectl binary, with its
    own HOME (discovery cache)."""
    if request.param is None:
        pytest.skip(NO_KUBECTL)
    home = str(tmp_path_factory.mktemp("home"))

    def run(args, token=None, kubeconfig=None, home_dir=None):
        kc = kubeconfig or sim.kubeconfig
        if token is not None:
            kc = kr.write_kubeconfig(os.path.join(home, "kc-%s" % re.sub(r"\W", "_", token)),
                                     sim.api_url, sim.ca_file, token=token)
        return kr.run(request.param, kc, list(args), home_dir or home)
    run.binary = request.param
    return run


def ok(r):
    assert r.rc == 0, r
    return r.out


# ---- kubectl get ---------------------------------------------------------------

def test_get_pods_all_namespaces(kubectl):
    rows = kr.table_rows(ok(kubectl(["get", "pods", "-A"])))
    by = {(r["NAMESPACE"], r["NAME"]): r for r in rows}
    assert set(by) == {("shop", "web-1"), ("shop", "done-1"), ("data", "db-0")}
    assert list(rows[0]) == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    web = by[("shop", "web-1")]
    assert (web["READY"], web["STATUS"]) == ("1/2", "CrashLoopBackOff")
    assert re.fullmatch(r"3 \(\d+s ago\)", web["RESTARTS"]), web
    assert re.fullmatch(r"\d+s", web["AGE"])
    assert (by[("data", "db-0")]["READY"], by[("data", "db-0")]["STATUS"]) == ("1/1", "Running")
    assert (by[("shop", "done-1")]["READY"], by[("shop", "done-1")]["STATUS"]) == ("0/1", "Completed")


def test_get_pods_in_namespace(kubectl):
    out = ok(kubectl(["get", "pods", "-n", "shop"]))
    rows = kr.table_rows(out)
    assert list(rows[0]) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert sorted(r["NAME"] for r in rows) == ["done-1", "web-1"]
    r = kubectl(["get", "pods", "-n", "empty-ns"])
    assert r.rc == 0 and r.out == ""
    assert "No resources found in empty-ns namespace." in r.err


def test_get_pods_json_and_yaml(kubectl):
    doc = json.loads(ok(kubectl(["get", "pods", "-A", "-o", "json"])))
    assert doc["kind"] == "List" and doc["apiVersion"] == "v1"
    items = {(i["metadata"]["namespace"], i["metadata"]["name"]): i for i in doc["items"]}
    assert set(items) == {("shop", "web-1"), ("shop", "done-1"), ("data", "db-0")}
    web = items[("shop", "web-1")]
    assert web["kind"] == "Pod" and web["apiVersion"] == "v1"
    assert web["spec"]["nodeName"] == "node-a"
    assert [c["name"] for c in web["spec"]["containers"]] == ["web", "sidecar"]
    assert web["status"]["containerStatuses"][1]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    yaml = pytest.importorskip("yaml")
    ydoc = yaml.safe_load(ok(kubectl(["get", "pods", "-n", "data", "-o", "yaml"])))
    assert [i["metadata"]["name"] for i in ydoc["items"]] == ["db-0"]
    assert ydoc["items"][0]["status"]["phase"] == "Running"


def test_get_pods_wide_and_name(kubectl):
    rows = kr.table_rows(ok(kubectl(["get", "pods", "-A", "-o", "wide"])))
    assert list(rows[0]) == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                             "NOMINATED NODE", "READINESS GATES"]
    web = next(r for r in rows if r["NAME"] == "web-1")
    assert (web["IP"], web["NODE"], web["NOMINATED NODE"], web["READINESS GATES"]) == \
        ("10.244.1.17", "node-a", "<none>", "<none>")
    done = next(r for r in rows if r["NAME"] == "done-1")
    assert done["IP"] == "<none>"
    names = ok(kubectl(["get", "pods", "-A", "-o", "name"])).split()
    assert sorted(names) == ["pod/db-0", "pod/done-1", "pod/web-1"]


def test_get_one_pod_and_selector(kubectl):
    rows = kr.table_rows(ok(kubectl(["get", "pods/web-1", "-n", "shop"])))
    assert [(r["NAME"], r["STATUS"]) for r in rows] == [("web-1", "CrashLoopBackOff")]
    r = kubectl(["get", "pods/nope", "-n", "shop"])
    assert r.rc == 1 and 'Error from server (NotFound): pods "nope" not found' in r.err
    rows = kr.table_rows(ok(kubectl(["get", "pods", "-l", "app=web", "-A"])))
    assert [(r["NAMESPACE"], r["NAME"]) for r in rows] == [("shop", "web-1")]
    rows = kr.table_rows(ok(kubectl(["get", "pods", "-l", "app in (db,job)", "-A"])))
    assert sorted(r["NAME"] for r in rows) == ["db-0", "done-1"]


def test_get_nodes_namespaces_events(kubectl):
    nodes = kr.table_rows(ok(kubectl(["get", "nodes"])))
    assert [(n["NAME"], n["STATUS"], n["ROLES"], n["VERSION"]) for n in nodes] == \
        [("node-a", "Ready", "<none>", "v1.28.7")]
    wide = kr.table_rows(ok(kubectl(["get", "nodes", "-o", "wide"])))
    assert (wide[0]["INTERNAL-IP"], wide[0]["EXTERNAL-IP"], wide[0]["CONTAINER-RUNTIME"]) == \
        ("10.0.12.34", "<none>", "containerd://1.7.11")
    ns = {r["NAME"]: r["STATUS"] for r in kr.table_rows(ok(kubectl(["get", "namespaces"])))}
    assert ns == {"default": "Active", "kube-public": "Active", "kube-system": "Active",
                  "shop": "Active", "data": "Active"}
    ev = kr.table_rows(ok(kubectl(["get", "events", "-A"])))
    assert [(e["NAMESPACE"], e["TYPE"], e["REASON"], e["OBJECT"]) for e in ev] == \
        [("shop", "Warning", "BackOff", "pod/web-1")]
    assert ev[0]["MESSAGE"].startswith("Back-off restarting failed container sidecar in pod web-1_shop(")


# ---- describe, logs ---------------------------------------------------------------

def test_describe_pod(kubectl):
    out = ok(kubectl(["describe", "pod", "web-1", "-n", "shop"]))
    assert re.search(r"^Name:\s+web-1$", out, re.M)
    assert re.search(r"^Namespace:\s+shop$", out, re.M)
    assert re.search(r"^Node:\s+node-a/10\.0\.12\.34$", out, re.M)
    assert re.search(r"^Status:\s+Running$", out, re.M)
    assert re.search(r"^  web:\n\s+Container ID:\s+containerd://1{64}$", out, re.M)
    assert re.search(r"^  sidecar:$", out, re.M)
    assert re.search(r"^\s+Reason:\s+CrashLoopBackOff$", out, re.M)
    assert re.search(r"^\s+Restart Count:\s+3$", out, re.M)
    # the pod's events, found by the field selector describe sends
    assert re.search(r"Warning\s+BackOff\s+\S+ \(x4 over \S+\)\s+kubelet\s+Back-off restarting", out), out


def test_describe_node(kubectl):
    out = ok(kubectl(["describe", "node", "node-a"]))
    assert re.search(r"^Name:\s+node-a$", out, re.M)
    assert re.search(r"^\s+Ready\s+True\s+.*KubeletReady", out, re.M)
    assert re.search(r"^\s+Kubelet Version:\s+v1\.28\.7$", out, re.M)
    assert "Non-terminated Pods:          (2 in total)" in out
    assert re.search(r"^\s+shop\s+web-1\s", out, re.M) and re.search(r"^\s+data\s+db-0\s", out, re.M)
    # no Lease object: describe says so, as against a cluster without one
    assert 'Lease:              Failed to get lease: leases.coordination.k8s.io "node-a" not found' in out


def test_logs(kubectl):
    assert ok(kubectl(["logs", "web-1", "-n", "shop", "-c", "web"])) == LOG_TEXT
    r = kubectl(["logs", "web-1", "-n", "shop"])
    assert r.rc == 0 and r.out == LOG_TEXT
    assert 'Defaulted container "web" out of: web, sidecar' in r.err
    assert ok(kubectl(["logs", "web-1", "-n", "shop", "-c", "web", "--tail=1"])) == "ready to serve\n"
    r = kubectl(["logs", "nope", "-n", "shop"])
    # kubectl >= 1.33 words it "error: error from server (NotFound): ... in namespace"
    assert r.rc == 1 and 'rror from server (NotFound): pods "nope" not found' in r.err, r
    r = kubectl(["logs", "web-1", "-n", "shop", "-c", "zzz"])
    assert r.rc == 1 and "container zzz is not valid for pod web-1" in r.err
    # the default text of a container kubesim was given none
    assert "db-0" in ok(kubectl(["logs", "db-0", "-n", "data"]))


# ---- version, discovery, explain ---------------------------------------------------

def test_version(kubectl):
    out = ok(kubectl(["version"]))
    assert re.search(r"^Server Version: v1\.28\.7$", out, re.M), out
    doc = json.loads(ok(kubectl(["version", "-o", "json"])))
    assert doc["serverVersion"]["gitVersion"] == "v1.28.7"
    assert doc["serverVersion"]["platform"] == "linux/amd64"


def test_api_resources_and_versions(kubectl):
    rows = kr.table_rows(ok(kubectl(["api-resources"])))
    by = {(r["NAME"], r["APIVERSION"]): r for r in rows}
    assert (by[("pods", "v1")]["SHORTNAMES"], by[("pods", "v1")]["NAMESPACED"], by[("pods", "v1")]["KIND"]) == \
        ("po", "true", "Pod")
    assert by[("nodes", "v1")]["NAMESPACED"] == "false"
    assert ("events", "events.k8s.io/v1") in by and ("deployments", "apps/v1") in by
    assert len(rows) > 50
    versions = ok(kubectl(["api-versions"])).split()
    assert {"v1", "apps/v1", "events.k8s.io/v1", "authorization.k8s.io/v1"} <= set(versions)
    assert "metrics.k8s.io/v1beta1" not in versions


def test_explain(kubectl):
    out = ok(kubectl(["explain", "pods"]))
    assert re.search(r"^KIND:\s+Pod$", out, re.M) and re.search(r"^VERSION:\s+v1$", out, re.M)
    assert "Pod is a collection of containers that can run on a host." in out
    out = ok(kubectl(["explain", "pods.spec.containers.image"]))
    assert "Container image name." in out


def test_cluster_info(kubectl, sim):
    out = ok(kubectl(["cluster-info"]))
    assert "Kubernetes control plane is running at %s" % sim.api_url in out


# ---- auth ---------------------------------------------------------------------------

def test_auth_can_i(kubectl):
    r = kubectl(["auth", "can-i", "get", "pods"])
    assert (r.rc, r.out.strip()) == (0, "yes")
    r = kubectl(["auth", "can-i", "get", "pods"], token=LIMITED)
    assert (r.rc, r.out.strip()) == (1, "no")
    r = kubectl(["auth", "can-i", "list", "pods", "-A"], token=LIMITED)
    assert (r.rc, r.out.strip()) == (0, "yes")
    r = kubectl(["auth", "can-i", "get", "pods", "--subresource=log"], token=NOLOG)
    assert (r.rc, r.out.strip()) == (1, "no")
    r = kubectl(["auth", "can-i", "get", "pods"], token=NOLOG)
    assert (r.rc, r.out.strip()) == (0, "yes")
    r = kubectl(["auth", "can-i", "list", "events.events.k8s.io"], token=LIMITED)
    assert (r.rc, r.out.strip()) == (0, "yes")


def test_auth_can_i_list(kubectl):
    rows = kr.table_rows(ok(kubectl(["auth", "can-i", "--list"], token=LIMITED)))
    verbs = {r["Resources"]: r["Verbs"] for r in rows if r["Resources"]}
    assert verbs["pods"] == "[list watch]"
    assert verbs["nodes"] == verbs["events"] == verbs["events.events.k8s.io"] == "[get list watch]"
    assert verbs["pods/log"] == "[get]" and "secrets" not in verbs
    rows = kr.table_rows(ok(kubectl(["auth", "can-i", "--list"])))
    assert any(r["Resources"] == "*.*" and r["Verbs"] == "[*]" for r in rows)


def test_forbidden_and_unauthorized(kubectl, tmp_path):
    r = kubectl(["get", "pods/web-1", "-n", "shop"], token=LIMITED)
    assert r.rc == 1
    assert r.err.strip() == ('Error from server (Forbidden): pods "web-1" is forbidden: User '
                             '"system:serviceaccount:agents:limited" cannot get resource "pods" in '
                             'API group "" in the namespace "shop"')
    r = kubectl(["logs", "web-1", "-n", "shop", "-c", "web"], token=NOLOG)
    assert r.rc == 1 and r.err.strip() == (
        'Error from server (Forbidden): pods "web-1" is forbidden: User "system:serviceaccount:agents:nolog" '
        'cannot get resource "pods/log" in API group "" in the namespace "shop"')
    # /version refused: client-go words it so for the real server too
    r = kubectl(["version"], token="not-a-token")
    assert r.rc == 1 and r.err.strip() == ("error: You must be logged in to the server (the server "
                                           "has asked for the client to provide credentials)"), r
    # a cold discovery cache: the discovery request is refused first (as
    # against a real server, client-go then reports it without the Status)
    r = kubectl(["get", "pods", "-A"], token="not-a-token", home_dir=str(tmp_path / "cold-home"))
    assert r.rc == 1 and "error: You must be logged in to the server" in r.err, r
    # a warm one (a valid token filled it): the LIST's 401 Status is printed
    assert kubectl(["get", "pods", "-A"], home_dir=str(tmp_path / "warm-home")).rc == 0
    r = kubectl(["get", "pods", "-A"], token="not-a-token", home_dir=str(tmp_path / "warm-home"))
    assert r.rc == 1 and r.err.strip() == "error: You must be logged in to the server (Unauthorized)", r


def test_token_file_kubeconfig(kubectl, sim, tmp_path):
    """The agent may write `tokenFile:` instead of the token: kubectl reads
    the file (and rereads it, so a rotated token is picked up)."""
    kc = kr.write_kubeconfig(str(tmp_path / "kc-file"), sim.api_url, sim.ca_file,
                             token_file=sim.token_file, namespace="shop")
    rows = kr.table_rows(ok(kubectl(["get", "pods"], kubeconfig=kc)))
    assert sorted(r["NAME"] for r in rows) == ["done-1", "web-1"]
    assert ok(kubectl(["logs", "web-1", "-c", "web"], kubeconfig=kc)) == LOG_TEXT
    r = kubectl(["auth", "can-i", "get", "pods"], kubeconfig=kc)
    assert (r.rc, r.out.strip()) == (0, "yes")


def test_rotated_token_file(tmp_path):
    if not KUBECTL:
        pytest.skip(NO_KUBECTL)
    with KubeSim(tmp_path) as s:
        kc_file = kr.write_kubeconfig(str(tmp_path / "kc-file"), s.api_url, s.ca_file,
                                      token_file=s.token_file)
        kc_inline = kr.write_kubeconfig(str(tmp_path / "kc-inline"), s.api_url, s.ca_file, token=s.token)
        home = str(tmp_path / "home")
        assert kr.run(KUBECTL, kc_inline, ["get", "namespaces", "-o", "name"], home).rc == 0
        s.rotate_token()
        r = kr.run(KUBECTL, kc_file, ["get", "namespaces", "-o", "name"], home)
        assert r.rc == 0 and "namespace/kube-system" in r.out.split(), r
        r = kr.run(KUBECTL, kc_inline, ["get", "namespaces", "-o", "name"], home)
        assert r.rc == 1 and "You must be logged in to the server (Unauthorized)" in r.err, r


# ---- the server side, without kubectl --------------------------------------------------

def api(sim, path, accept=None, token=..., method="GET"):
    h = {"Accept": accept} if accept is not None else {}
    status, headers, body = sim.api_get(path, token=token, headers=h)
    return status, headers, body


def test_table_columns_match_the_real_server(sim):
    for path, name in (("/api/v1/pods", "table-pods.json"), ("/api/v1/nodes", "table-nodes.json"),
                       ("/api/v1/namespaces", "table-namespaces.json"), ("/api/v1/events", "table-events.json"),
                       ("/apis/events.k8s.io/v1/events", "table-events.json")):
        status, headers, body = api(sim, path + "?limit=500", TABLE)
        assert status == 200 and headers["content-type"] == "application/json"
        t = json.loads(body)
        real = sample(name)
        assert list(t) == list(real) == ["kind", "apiVersion", "metadata", "columnDefinitions", "rows"]
        assert t["columnDefinitions"] == real["columnDefinitions"], path
        assert list(t["rows"][0]) == list(real["rows"][0]) == ["cells", "object"]
        assert [type(c) for c in t["rows"][0]["cells"]] == [type(c) for c in real["rows"][0]["cells"]], path
        obj = t["rows"][0]["object"]
        assert (obj["kind"], obj["apiVersion"], list(obj)) == ("PartialObjectMetadata", "meta.k8s.io/v1",
                                                              ["kind", "apiVersion", "metadata"])


def test_table_include_object_and_errors(sim):
    t = json.loads(api(sim, "/api/v1/namespaces/shop/pods?includeObject=None", TABLE)[2])
    assert all(r["object"] is None for r in t["rows"])
    web = next(r for r in t["rows"] if r["cells"][0] == "web-1")
    assert list(web) == list(sample("table-pods-include-none.json")["rows"][0]) == ["cells", "object"]
    t = json.loads(api(sim, "/api/v1/namespaces/shop/pods/web-1?includeObject=Object", TABLE)[2])
    assert t["metadata"]["resourceVersion"] == t["rows"][0]["object"]["metadata"]["resourceVersion"]
    assert (t["rows"][0]["object"]["kind"], t["rows"][0]["object"]["spec"]["nodeName"]) == ("Pod", "node-a")
    done = json.loads(api(sim, "/api/v1/namespaces/shop/pods/done-1", TABLE)[2])["rows"][0]
    assert done["conditions"] == [{"type": "Completed", "status": "True", "reason": "Succeeded",
                                   "message": "The pod has completed successfully."}]
    status, _, body = api(sim, "/api/v1/pods?includeObject=Foo", TABLE)
    assert status == 400 and json.loads(body)["message"] == (
        "Unable to convert to Table as requested: includeObject: Invalid value: \"Foo\": must be "
        "'Metadata', 'Object', 'None', or empty")
    t = json.loads(api(sim, "/api/v1/pods", "application/json;as=Table;v=v1beta1;g=meta.k8s.io")[2])
    assert t["apiVersion"] == "meta.k8s.io/v1beta1"
    assert t["rows"][0]["object"]["apiVersion"] == "meta.k8s.io/v1beta1"
    t = json.loads(api(sim, "/api/v1/namespaces?limit=1", TABLE)[2])
    assert t["metadata"]["continue"] and t["metadata"]["remainingItemCount"] == 4 and len(t["rows"]) == 1
    # q ordering: the plain form asked with a lower q loses to the Table
    t = json.loads(api(sim, "/api/v1/namespaces", "application/json;q=0.5," + TABLE.split(",")[0])[2])
    assert t["kind"] == "Table"
    pom = json.loads(api(sim, "/api/v1/namespaces",
                         "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io")[2])
    assert pom["kind"] == "PartialObjectMetadataList" and pom["items"][0]["kind"] == "PartialObjectMetadata"


def test_not_acceptable(sim):
    status, headers, body = api(sim, "/api/v1/pods", "text/html")
    assert status == 406 and body.startswith(b"{\n")
    assert json.loads(body) == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": "406: Not Acceptable\n\nAvailable representations: application/json, "
                                "application/yaml, application/vnd.kubernetes.protobuf, "
                                "application/json;stream=watch, application/vnd.kubernetes.protobuf;stream=watch",
                                "reason": "NotAcceptable", "details": {}, "code": 406}
    status, _, body = api(sim, "/api/v1/pods", "application/json;as=Table;v=v2;g=meta.k8s.io")
    assert status == 406 and json.loads(body)["message"] == (
        "only the following media types are accepted: application/json, application/yaml, "
        "application/vnd.kubernetes.protobuf") and "details" not in json.loads(body)
    status, _, body = api(sim, "/version", "text/html")
    assert status == 406 and json.loads(body)["message"].endswith("Available representations: application/json")
    status, _, body = api(sim, "/apis", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    assert status == 406
    # no Accept, */* and the agent's application/json: the plain form
    for accept in (None, "*/*", "application/json"):
        status, _, body = api(sim, "/api/v1/namespaces/shop", accept)
        assert status == 200 and json.loads(body)["kind"] == "Namespace"


def test_aggregated_discovery(sim):
    for path, name in (("/api", "aggregated-discovery-api.json"), ("/apis", "aggregated-discovery-apis.json")):
        accept = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                  "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")
        status, headers, body = api(sim, path, accept)
        assert status == 200
        assert headers["content-type"] == "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        assert headers["cache-control"] == "public" and headers["vary"] == "Accept" and headers["etag"]
        assert json.loads(body) == sample(name)
    # v2 only, with the plain form after it: the legacy document
    status, headers, body = api(sim, "/apis", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json")
    assert status == 200 and json.loads(body)["kind"] == "APIGroupList"
    # legacy group documents list the group's resources
    rl = json.loads(api(sim, "/apis/apps/v1")[2])
    assert "deployments" in [r["name"] for r in rl["resources"]] and "deployments/scale" in [r["name"] for r in rl["resources"]]


def test_watch_table(sim):
    raw = sim.raw_request("/api/v1/namespaces/shop/pods?watch=1&timeoutSeconds=1",
                          extra_headers="Accept: %s\r\n" % TABLE)
    status, _, chunks, ended = parse_chunked(raw)
    lines, rest = watch_lines(chunks)
    events = [json.loads(x) for x in lines]
    assert ended and rest == b"" and [e["type"] for e in events] == ["ADDED", "ADDED"]
    assert events[0]["object"]["kind"] == "Table" and events[0]["object"]["columnDefinitions"]
    assert events[1]["object"]["columnDefinitions"] is None
    assert [e["object"]["rows"][0]["cells"][0] for e in events] == ["done-1", "web-1"]


def test_watch_table_bookmark_as_the_real_server(tmp_path):
    real = [json.loads(x) for x in open(os.path.join(SAMPLES, "watch-pods-table-bookmarks.jsonl"))]
    real_bm = next(e for e in real if e["type"] == "BOOKMARK")
    with KubeSim(tmp_path, bookmark_interval=1) as s:
        raw = s.raw_request("/api/v1/pods?watch=1&timeoutSeconds=4&allowWatchBookmarks=true",
                            extra_headers="Accept: %s\r\n" % TABLE)
    events = [json.loads(x) for x in watch_lines(parse_chunked(raw)[2])[0]]
    bm = next(e for e in events if e["type"] == "BOOKMARK")
    rv = bm["object"]["metadata"]["resourceVersion"]
    real_bm["object"]["metadata"]["resourceVersion"] = rv
    real_bm["object"]["rows"][0]["object"]["metadata"]["resourceVersion"] = rv
    assert bm == real_bm


def test_reviews(sim):
    def post(path, body, token=..., ctype="application/json"):
        import http.client
        conn = http.client.HTTPSConnection("127.0.0.1", sim.api_port, context=sim.ssl_context(), timeout=10)
        h = {"Content-Type": ctype, "User-Agent": "kubectl/v1.28.15 (linux/amd64) kubernetes/8418565"}
        h["Authorization"] = "Bearer " + (sim.token if token is ... else token)
        conn.request("POST", path, body=body if isinstance(body, bytes) else json.dumps(body), headers=h)
        r = conn.getresponse()
        out = r.status, json.loads(r.read())
        conn.close()
        return out
    ssar = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    req = {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
           "spec": {"resourceAttributes": {"namespace": "default", "verb": "get", "resource": "pods"}}}
    status, allowed = post(ssar, req)
    status2, denied = post(ssar, req, token=LIMITED)
    assert (status, status2) == (201, 201)
    real_allowed, real_denied = sample("selfsubjectaccessreview-allowed.json"), sample("selfsubjectaccessreview-denied.json")
    assert allowed["status"]["allowed"] is True and denied["status"] == real_denied["status"]
    assert allowed["status"]["reason"].startswith("RBAC: allowed by ClusterRoleBinding ")
    for got, real in ((allowed, real_allowed), (denied, real_denied)):
        got["metadata"]["managedFields"][0]["time"] = real["metadata"]["managedFields"][0]["time"]
        assert got["metadata"] == real["metadata"]
    assert allowed["spec"] == real_allowed["spec"] == req["spec"]
    status, bad = post(ssar, {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1", "spec": {}})
    assert status == 422 and bad["message"].endswith(
        "exactly one of nonResourceAttributes or resourceAttributes must be specified")
    # the same review as kubectl >= 1.30 sends it: protobuf
    attrs = b"".join(bytes([(n << 3) | 2, len(v)]) + v for n, v in ((1, b"shop"), (2, b"get"), (5, b"pods"),
                                                                  (6, b"log")))
    spec = bytes([0x0A, len(attrs)]) + attrs
    msg = bytes([0x12, len(spec)]) + spec
    tm = b"\x0a\x17authorization.k8s.io/v1\x12\x17SelfSubjectAccessReview"
    env = b"k8s\x00" + bytes([0x0A, len(tm)]) + tm + bytes([0x12, len(msg)]) + msg
    status, pb = post(ssar, env, token=NOLOG, ctype="application/vnd.kubernetes.protobuf")
    assert status == 201 and pb["spec"]["resourceAttributes"] == {
        "namespace": "shop", "verb": "get", "resource": "pods", "subresource": "log"}
    assert pb["status"] == {"allowed": False}
    status, rules = post("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", {"spec": {"namespace": "default"}})
    real_rules = sample("selfsubjectrulesreview.json")
    assert status == 201 and list(rules) == list(real_rules) and rules["spec"] == {}
    assert list(rules["status"]) == list(real_rules["status"])
