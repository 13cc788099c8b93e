"""Running the real kubectl against kubesim (or a real API server) in tests.

    kubectl = find_kubectl()                 # None when no kubectl is installed
    r = run(kubectl, kubeconfig, ["get", "pods", "-A"], home=tmp)
    r.rc, r.out, r.err

Also the objects the kubectl tests put on both servers (the same pod on
kubesim and on envtest's real kube-apiserver), so the outputs compare.
Python 3 stdlib only.
"""

import datetime
import os
import re
import subprocess

KUBECTL_PATHS = ("/usr/bin/kubectl", "/usr/local/bin/kubectl")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def find_kubectl():
    """/usr/bin/kubectl or /usr/local/bin/kubectl (the ones the agent looks
    for), or None."""
    for p in KUBECTL_PATHS:
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def sibling_kubectls(kubectl):
    """Versioned kubectls installed next to `kubectl` (google-cloud-sdk's
    kubectl.1.NN, between which its /usr/bin/kubectl dispatcher picks the one
    matching the server's version): the newest, so that a client newer than
    the server (aggregated discovery v2 first, protobuf requests) is also
    covered. Empty when there are none."""
    real = os.path.realpath(kubectl)
    d = os.path.dirname(real)
    found = []
    try:
        names = os.listdir(d)
    except OSError:
        return []
    for n in names:
        m = re.fullmatch(r"kubectl\.1\.(\d+)", n)
        if m and os.access(os.path.join(d, n), os.X_OK):
            found.append((int(m.group(1)), os.path.join(d, n)))
    return [p for _, p in sorted(found)[-1:]]


class Result:
    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err

    def __repr__(self):
        return "rc=%d\nstdout:\n%s\nstderr:\n%s" % (self.rc, self.out, self.err)


def run(kubectl, kubeconfig, args, home, timeout=60, env=None):
    """kubectl args with its own HOME (so its discovery cache is the test's
    own), no colours; ANSI sequences stripped from the output anyway."""
    e = {"PATH": "/usr/bin:/bin", "HOME": home, "KUBECONFIG": kubeconfig, "LANG": "C.UTF-8",
         "NO_COLOR": "1", "TERM": "dumb"}
    e.update(env or {})
    os.makedirs(home, exist_ok=True)
    p = subprocess.run([kubectl, *args], env=e, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout)
    return Result(p.returncode, ANSI.sub("", p.stdout.decode(errors="replace")),
                  ANSI.sub("", p.stderr.decode(errors="replace")))


def write_kubeconfig(path, server, ca_file, token=None, token_file=None, namespace="default"):
    """A kubeconfig like the one the agent writes for kubectl: the server and
    CA of the cluster, the bearer token inline (`token:`) or by path
    (`tokenFile:`)."""
    user = "    tokenFile: %s\n" % token_file if token_file else "    token: %s\n" % token
    with open(path, "w") as f:
        f.write("apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n"
                "    certificate-authority: %s\n    server: %s\n  name: c\n"
                "contexts:\n- context:\n    cluster: c\n    namespace: %s\n    user: u\n  name: c\n"
                "current-context: c\npreferences: {}\nusers:\n- name: u\n  user:\n%s"
                % (ca_file, server, namespace, user))
    os.chmod(path, 0o600)
    return path


def table_rows(text):
    """The rows of kubectl's column output as dicts keyed by header; columns
    are cut where the header's words start (cells may hold spaces)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"(?:(?<=\s\s)|^)\S", header)]
    names = [header[s:e].strip() for s, e in zip(starts, starts[1:] + [None])]
    out = []
    for ln in lines[1:]:
        cells = [ln[s:e].strip() if s < len(ln) else "" for s, e in zip(starts, starts[1:] + [None])]
        out.append(dict(zip(names, cells)))
    return out


# ---- the objects both servers get -------------------------------------------

def ts(delta_s=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=delta_s)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def web_pod(namespace, node):
    """spec of a two-container pod on `node` (no status)."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": namespace, "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": [
                {"name": "web", "image": "registry.example/web:1.4.2",
                 "ports": [{"containerPort": 8080, "protocol": "TCP"}]},
                {"name": "sidecar", "image": "registry.example/envoy:1.28.1"}]}}


def web_pod_status(started):
    """Running, web ready, sidecar in CrashLoopBackOff after 3 restarts."""
    return {"phase": "Running", "hostIP": "10.0.12.34", "hostIPs": [{"ip": "10.0.12.34"}],
            "podIP": "10.244.1.17", "podIPs": [{"ip": "10.244.1.17"}], "startTime": started,
            "qosClass": "BestEffort",
            "conditions": [
                {"type": "Initialized", "status": "True", "lastProbeTime": None,
                 "lastTransitionTime": started},
                {"type": "Ready", "status": "False", "lastProbeTime": None, "lastTransitionTime": started,
                 "reason": "ContainersNotReady", "message": "containers with unready status: [sidecar]"},
                {"type": "ContainersReady", "status": "False", "lastProbeTime": None,
                 "lastTransitionTime": started, "reason": "ContainersNotReady",
                 "message": "containers with unready status: [sidecar]"},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                 "lastTransitionTime": started}],
            "containerStatuses": [
                {"name": "web", "state": {"running": {"startedAt": started}}, "lastState": {},
                 "ready": True, "restartCount": 0, "image": "registry.example/web:1.4.2",
                 "imageID": "registry.example/web@sha256:" + "a" * 64,
                 "containerID": "containerd://" + "1" * 64, "started": True},
                {"name": "sidecar",
                 "state": {"waiting": {"reason": "CrashLoopBackOff",
                                       "message": "back-off 40s restarting failed container=sidecar"}},
                 "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": started,
                                              "finishedAt": started,
                                              "containerID": "containerd://" + "2" * 64}},
                 "ready": False, "restartCount": 3, "image": "registry.example/envoy:1.28.1",
                 "imageID": "registry.example/envoy@sha256:" + "b" * 64,
                 "containerID": "containerd://" + "2" * 64, "started": False}]}


def backoff_event(namespace, pod_uid, node, when):
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web-1.17c0ffee00000001", "namespace": namespace},
            "involvedObject": {"kind": "Pod", "namespace": namespace, "name": "web-1", "uid": pod_uid,
                               "apiVersion": "v1", "fieldPath": "spec.containers{sidecar}"},
            "reason": "BackOff", "message": "Back-off restarting failed container sidecar in pod web-1_%s(%s)"
            % (namespace, pod_uid),
            "source": {"component": "kubelet", "host": node},
            "firstTimestamp": when, "lastTimestamp": when, "count": 4, "type": "Warning"}
