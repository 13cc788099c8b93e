#!/usr/bin/python3
"""The tour's failing workloads: seeds the simulated API server
(tests/kubesim) through its control API with a namespace `shop` holding
three healthy pods and four failing ones, each failing as a real cluster
shows it (pod status as the kubelet or the scheduler writes it), and the
Warning events those components emit about them:

    checkout  CrashLoopBackOff   BackOff (crash)
    cart      ImagePullBackOff   Failed, BackOff pulling image (image)
    search    OOMKilled          OOMKilling from node-problem-detector (oom)
    report    Pending, unschedulable for 40 minutes   FailedScheduling (scheduling)

    scripts/demo_cluster.py http://127.0.0.1:CONTROL_PORT

prints what it created, one line per pod. Python 3 stdlib only; only
for the simulated cluster (a real one is never written to).
"""
import datetime
import hashlib
import json
import sys
import urllib.error
import urllib.request
import uuid

NAMESPACE = "shop"
IMAGE_REGISTRY = "registry.example/shop"

# name, app, what is wrong (None: healthy), restarts
PODS = [
    ("web-5d8f7b9c4-2xkqp", "web", None, 0),
    ("web-5d8f7b9c4-8mtzv", "web", None, 0),
    ("api-7c6b9d8f5-lq4wz", "api", None, 0),
    ("checkout-6f7d9c8b4-x2k4p", "checkout", "CrashLoopBackOff", 7),
    ("cart-84c9f6d7b5-9tpwn", "cart", "ImagePullBackOff", 0),
    ("search-5b7c8d9f6-hq2mn", "search", "OOMKilled", 3),
    ("report-7d6f5c4b9-vw8zr", "report", "Unschedulable", 0),
]

# The category the agent gives each seeded event (docs/EVENTS.md).
EVENT_CATEGORIES = ("crash", "image", "oom", "scheduling")
UNSCHEDULABLE = ("0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are "
                 "available: 1 No preemption victims found for incoming pod.")


def ago(seconds):
    t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def image(app):
    return "%s/%s:2.4.0" % (IMAGE_REGISTRY, app)


def condition(ctype, status, since, reason=None, message=None):
    c = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def container_status(name, app, ready, restarts, state, last_state=None):
    s = {"name": name, "image": image(app), "imageID": "", "ready": ready,
         "restartCount": restarts, "started": "running" in state, "state": state,
         "lastState": last_state or {}}
    if "running" in state or last_state:
        s["imageID"] = "%s@sha256:%s" % (image(app), hashlib.sha256(app.encode()).hexdigest())
        s["containerID"] = "containerd://" + hashlib.sha256(name.encode() + b"/" + str(restarts).encode()).hexdigest()
    return s


def pod(name, app, trouble, restarts, node, namespace=NAMESPACE):
    hash_ = name.split("-")[-2]
    memory = "32Gi" if trouble == "Unschedulable" else "256Mi"
    created = ago(2400 if trouble == "Unschedulable" else 3600)
    spec = {"containers": [{"name": app, "image": image(app), "ports": [{"containerPort": 8080,
                                                                          "protocol": "TCP"}],
                            "resources": {"requests": {"cpu": "100m", "memory": memory},
                                          "limits": {"memory": memory}}}]}
    meta = {"name": name, "namespace": namespace, "generateName": name[:-5],
            "creationTimestamp": created,
            "labels": {"app": app, "pod-template-hash": hash_},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": "%s-%s" % (app, hash_),
                                 "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, "replicaset/%s/%s" % (app, hash_))),
                                 "controller": True, "blockOwnerDeletion": True}]}
    started = ago(3590)
    if trouble == "Unschedulable":
        status = {"phase": "Pending", "qosClass": "Burstable", "conditions": [
            condition("PodScheduled", "False", created, "Unschedulable", UNSCHEDULABLE)]}
        return {"metadata": meta, "spec": spec, "status": status}
    spec["nodeName"] = node
    if trouble is None:
        state, last = {"running": {"startedAt": started}}, None
    elif trouble == "CrashLoopBackOff":
        state = {"waiting": {"reason": "CrashLoopBackOff",
                             "message": "back-off 5m0s restarting failed container=%s pod=%s_%s"
                                        % (app, name, namespace)}}
        last = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": ago(75),
                               "finishedAt": ago(70)}}
    elif trouble == "ImagePullBackOff":
        state = {"waiting": {"reason": "ImagePullBackOff",
                             "message": "Back-off pulling image \"%s\"" % image(app)}}
        last = None
    else:  # OOMKilled, running again
        state = {"running": {"startedAt": ago(120)}}
        last = {"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": ago(900),
                               "finishedAt": ago(121)}}
    ready = trouble in (None, "OOMKilled")
    phase = "Pending" if trouble == "ImagePullBackOff" else "Running"
    rs = "True" if ready else "False"
    why = None if ready else "ContainersNotReady"
    msg = None if ready else "containers with unready status: [%s]" % app
    status = {"phase": phase, "qosClass": "Burstable", "hostIP": "10.0.12.34",
              "podIP": "10.244.1.%d" % (10 + PODS.index((name, app, trouble, restarts))),
              "startTime": created,
              "conditions": [condition("Initialized", "True", created),
                             condition("Ready", rs, started, why, msg),
                             condition("ContainersReady", rs, started, why, msg),
                             condition("PodScheduled", "True", created)],
              "containerStatuses": [container_status(app, app, ready, restarts, state, last)]}
    return {"metadata": meta, "spec": spec, "status": status}


def event(involved, reason, message, component, host, count, first_ago):
    return {"metadata": {"namespace": involved.get("namespace") or "default"},
            "involvedObject": involved, "reason": reason, "message": message,
            "source": {"component": component, "host": host} if host else {"component": component},
            "firstTimestamp": ago(first_ago), "lastTimestamp": ago(0), "count": count,
            "type": "Warning", "reportingComponent": component, "reportingInstance": host or ""}


def pod_ref(p, app):
    return {"kind": "Pod", "namespace": p["metadata"]["namespace"], "name": p["metadata"]["name"],
            "uid": p["metadata"]["uid"], "apiVersion": "v1",
            "resourceVersion": p["metadata"]["resourceVersion"],
            "fieldPath": "spec.containers{%s}" % app}


def events(created, node):
    """The Warning events about the created pods (as the API server
    returned them) and their node."""
    by_app = {p["metadata"]["labels"]["app"]: p for p in created}
    node_ref = {"kind": "Node", "name": node, "uid": node, "apiVersion": "v1"}
    return [
        event(pod_ref(by_app["checkout"], "checkout"), "BackOff",
              "Back-off restarting failed container checkout in pod %s_%s(%s)"
              % (by_app["checkout"]["metadata"]["name"], by_app["checkout"]["metadata"]["namespace"],
                 by_app["checkout"]["metadata"]["uid"]),
              "kubelet", node, 31, 1500),
        event(pod_ref(by_app["cart"], "cart"), "Failed",
              "Failed to pull image \"%s\": rpc error: code = NotFound desc = failed to pull and "
              "unpack image \"%s\": failed to resolve reference \"%s\": %s: not found"
              % (image("cart"), image("cart"), image("cart"), image("cart")),
              "kubelet", node, 4, 900),
        event(pod_ref(by_app["cart"], "cart"), "BackOff",
              "Back-off pulling image \"%s\"" % image("cart"), "kubelet", node, 52, 890),
        event(node_ref, "OOMKilling",
              "Memory cgroup out of memory: Killed process 28317 (java) total-vm:4821344kB, "
              "anon-rss:262144kB, file-rss:0kB, shmem-rss:0kB, UID:65534 pgtables:1284kB "
              "oom_score_adj:984", "kernel-monitor", node, 3, 900),
        event({k: v for k, v in pod_ref(by_app["report"], "report").items() if k != "fieldPath"},
              "FailedScheduling", UNSCHEDULABLE, "default-scheduler", None, 8, 2400),
    ]


def control(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise SystemExit("demo_cluster: %s %s: %s %s" % (method, path, e.code, e.read().decode(errors="replace")))
    except urllib.error.URLError as e:
        raise SystemExit("demo_cluster: %s %s: %s" % (method, path, e.reason))


def seed(base):
    nodes = control(base, "GET", "/objects?resource=nodes")["items"]
    if not nodes:
        raise SystemExit("demo_cluster: the simulated cluster has no node")
    node = nodes[0]["metadata"]["name"]
    control(base, "POST", "/objects", {"resource": "namespaces", "object": {"metadata": {"name": NAMESPACE}}})
    created = [control(base, "POST", "/objects", {"resource": "pods", "object": pod(*p, node)}) for p in PODS]
    evs = events(created, node)
    for ev in evs:
        control(base, "POST", "/objects", {"resource": "events", "object": ev})
    return node, created, evs


def main(argv):
    if len(argv) != 2 or not argv[1].startswith("http://"):
        print("usage: demo_cluster.py http://127.0.0.1:CONTROL_PORT", file=sys.stderr)
        return 2
    node, created, evs = seed(argv[1].rstrip("/"))
    failing = [p for p in PODS if p[2]]
    print("namespace %s: %d pods, %d of them failing; node %s" % (NAMESPACE, len(PODS), len(failing), node))
    for name, _, trouble, restarts in PODS:
        what = {None: "Running", "Unschedulable": "Pending: no node has 32Gi of memory free",
                "OOMKilled": "Running again after an OOM kill"}.get(trouble, trouble)
        print("  %-26s %s%s" % (name, what, " (%d restarts)" % restarts if restarts else ""))
    print("%d Warning events about them, as the kubelet, the scheduler and node-problem-detector "
          "write them" % len(evs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
