"""The coordination.k8s.io/v1 Lease requests leader election makes, and the
bad ones around them, as one sequence any API server can be put through:
the real one (tests/envtest, and the capture in
tests/fixtures/kube-api-samples/leases-coordination-v1.json) and kubesim
(tests/kubesim/test_kubesim.py). shape() keeps what must agree (codes,
Status reason/message/details, field names) and drops what cannot (uids,
resourceVersions, times)."""
import copy
import json
import ssl
import http.client

LEASE = "collect-agent-x"
BASE = "/apis/coordination.k8s.io/v1"


def lease_sequence(request, ns="default"):
    """request(method, path, body_obj, headers) -> (status, body_bytes);
    returns {name: {"status": int, "body": object or text}}."""
    out = {}
    coll = "%s/namespaces/%s/leases" % (BASE, ns)

    def req(name, method, path, body=None, headers=None):
        status, raw = request(method, path, body, dict({"Content-Type": "application/json"},
                                                        **(headers or {})))
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode(errors="replace")
        out[name] = {"status": status, "body": parsed}
        return parsed

    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": LEASE,
                          "annotations": {"collect-agent.io/events-resource-version": "123"}},
             "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15,
                      "acquireTime": "2026-12-05T23:00:00.000000Z",
                      "renewTime": "2026-12-05T23:00:00.000000Z", "leaseTransitions": 0}}
    req("discovery", "GET", BASE)
    req("get-404", "GET", coll + "/" + LEASE)
    req("create-201", "POST", coll, lease)
    req("create-409-exists", "POST", coll, lease)
    got = req("get-200", "GET", coll + "/" + LEASE)
    upd = copy.deepcopy(got)
    upd["spec"]["holderIdentity"] = "b"
    upd["spec"]["leaseTransitions"] = 1
    newer = req("update-200", "PUT", coll + "/" + LEASE, upd)
    stale = copy.deepcopy(got)
    stale["spec"]["holderIdentity"] = "c"
    req("update-409-conflict", "PUT", coll + "/" + LEASE, stale)
    norv = copy.deepcopy(newer)
    del norv["metadata"]["resourceVersion"]
    norv["spec"]["holderIdentity"] = "d"
    req("update-no-rv-422", "PUT", coll + "/" + LEASE, norv)
    bad = copy.deepcopy(newer)
    bad["spec"]["leaseDurationSeconds"] = 0
    req("update-invalid-422", "PUT", coll + "/" + LEASE, bad)
    badmicro = copy.deepcopy(newer)
    badmicro["spec"]["renewTime"] = "2026-12-05T23:00:00Z"
    req("update-renew-no-micro", "PUT", coll + "/" + LEASE, badmicro)
    req("update-404", "PUT", coll + "/nope", dict(upd, metadata={"name": "nope", "resourceVersion": "1"}))
    mism = copy.deepcopy(newer)
    mism["metadata"]["name"] = "other"
    req("update-name-mismatch-400", "PUT", coll + "/" + LEASE, mism)
    req("create-invalid-name-422", "POST", coll, dict(lease, metadata={"name": "Bad_Name"}))
    req("create-neg-duration-422", "POST", coll, dict(lease, metadata={"name": "neg"},
                                                      spec={"leaseDurationSeconds": -1}))
    req("list-200", "GET", coll)
    req("patch-merge-200", "PATCH", coll + "/" + LEASE, {"spec": {"holderIdentity": "e"}},
        {"Content-Type": "application/merge-patch+json"})
    req("delete-200", "DELETE", coll + "/" + LEASE)
    req("delete-404", "DELETE", coll + "/" + LEASE)
    req("create-empty-holder", "POST", coll, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                              "metadata": {"name": "empty"}, "spec": {}})
    req("get-ns-missing-404", "GET", BASE + "/namespaces/nonexist/leases/x")
    req("create-ns-missing-404", "POST", BASE + "/namespaces/nonexist/leases", dict(lease, metadata={"name": "x"}))
    return out


VOLATILE = {"uid", "resourceVersion", "creationTimestamp", "time"}
# Not served by kubesim's discovery documents for any group (a known
# difference, tests/kubesim/README.md).
DROPPED = {"storageVersionHash"}


def shape(v, key=None):
    """What two servers must agree on: values of Status objects and spec
    fields kept, identifiers and times replaced by their type."""
    if isinstance(v, dict):
        return {k: ("<%s>" % type(x).__name__ if k in VOLATILE else shape(x, k))
                for k, x in v.items() if k not in DROPPED}
    if isinstance(v, list):
        return [shape(x) for x in v]
    return v


def http_request(host, port, token, ca_file, user_agent="collect-agent-envtest/1"):
    """A request function for lease_sequence over HTTPS with a bearer token."""
    ctx = ssl.create_default_context(cafile=ca_file)

    def request(method, path, body, headers):
        conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=30)
        try:
            h = dict(headers, Authorization="Bearer " + token, Accept="application/json")
            h["User-Agent"] = user_agent
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()
    return request
