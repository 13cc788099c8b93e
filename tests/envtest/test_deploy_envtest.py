"""deploy/ against the real kube-apiserver (issue 11): what an SRE runs,
run here with the real kubectl (/usr/bin/kubectl; google-cloud-sdk's
dispatcher picks kubectl 1.28 for this v1.28 server, with kustomize v5.0.4).

1. `kubectl apply -k deploy/ --server-side` succeeds, with no warning (the
   namespace warns on Pod Security `restricted`, so a Deployment whose
   template broke it would print one); a second apply changes nothing
   (every resourceVersion stays, `kubectl diff` is empty).
2. The Deployment's pod template passes Pod Security `restricted`: the
   namespace enforces it, a server-side dry-run of a Pod made from the
   template is accepted, and the same Pod weakened one way at a time is
   refused by the PodSecurity admission plugin (and accepted in a
   namespace without the label: the refusal is the label's doing).
3. The agent runs as the Deployment would: a TokenRequest token of the
   deploy's ServiceAccount, ca.crt and namespace bind-mounted at
   /var/run/secrets/kubernetes.io/serviceaccount in a private mount
   namespace (in_pod.py), KUBERNETES_SERVICE_HOST/PORT, no kubeconfig, the
   Deployment's uid/gid, args and env, its volumes at their mountPaths (the
   ConfigMap's file at /etc/collect-agent/collect-agent.yaml, the
   emptyDirs). Only OVERRIDES below differ, each with its reason. It gets
   ready, publishes AgentInfo, and none of its lists or watches is refused.
4. `kubectl auth can-i --as` the ServiceAccount: reads what it needs,
   writes nothing, no Secrets, no exec; Leases only in its own namespace.
5. The overlays render and pass a server-side dry-run apply: the
   nats-credentials one with its Secret mounted and the env pointing at it
   (and its pod's agent connects with a real .creds file through that
   Secret to a nats-server in operator mode), the prometheus-operator one
   against a ServiceMonitor CRD (tests/fixtures/crds/) installed here.

Objects applied stay in the session's server (no controller runs: the
Deployment makes no pod). Needs root for the mount namespace (skipped
otherwise) and kubectl (skipped without it); the whole file is skipped
without COLLECT_AGENT_ENVTEST_ASSETS, like the rest of the tier."""
import base64
import copy
import json
import os
import shutil
import sys
import tempfile
import uuid

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "kubesim"))
import kubectl_run as kr  # noqa: E402
from envtest_cluster import ROOT, closed_port_url  # noqa: E402
from lib.agentproc import Agent, run_agent_once, wait_for  # noqa: E402
from lib.nats import NatsServer  # noqa: E402

DEPLOY = os.path.join(ROOT, "deploy")
IN_POD = os.path.join(HERE, "in_pod.py")
SERVICEMONITOR_CRD = os.path.join(ROOT, "tests", "fixtures", "crds", "servicemonitors.monitoring.coreos.com.yaml")
KUBECTL = kr.find_kubectl()

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="no kubectl in /usr/bin or /usr/local/bin")


# ------------------------------------------------------------------ helpers

@pytest.fixture(scope="module")
def kubectl(cluster, tmp_path_factory):
    """kubectl(*args) -> kr.Result: the real kubectl as the cluster's admin,
    each run with a fresh HOME (no discovery cache outliving a CRD)."""
    d = tmp_path_factory.mktemp("kubectl-admin")
    kubeconfig = kr.write_kubeconfig(str(d / "admin.kubeconfig"), cluster.server, cluster.ca_file,
                                     token=cluster.admin_token)

    def run(*args, timeout=120):
        return kr.run(KUBECTL, kubeconfig, list(args), tempfile.mkdtemp(dir=str(d)), timeout=timeout)
    return run


def render(kubectl, path):
    r = kubectl("kustomize", path)
    assert r.rc == 0, r
    return [d for d in yaml.safe_load_all(r.out) if d]


def one(objs, kind, name=None):
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in {[o['kind'] for o in objs]}"
    return found[0]


def ref(o):
    """How kubectl apply names an object: deployment.apps/collect-agent."""
    group = o["apiVersion"].split("/")[0] if "/" in o["apiVersion"] else ""
    return f"{o['kind'].lower()}{'.' + group if group else ''}/{o['metadata']['name']}"


def container(deployment):
    return deployment["spec"]["template"]["spec"]["containers"][0]


def pod_from_template(deployment, name):
    """The Pod the Deployment's ReplicaSet would create (as far as admission sees it)."""
    t = copy.deepcopy(deployment["spec"]["template"])
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": deployment["metadata"]["namespace"],
                         "labels": t["metadata"].get("labels", {})},
            "spec": t["spec"]}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)
    return str(path)


@pytest.fixture(scope="module")
def deployed(cluster, kubectl):
    """deploy/ rendered, and the first `kubectl apply -k deploy/ --server-side`."""
    objs = render(kubectl, DEPLOY)
    first = kubectl("apply", "-k", DEPLOY, "--server-side")
    return objs, first


# ------------------------------------------------------------------ 1. apply

def test_apply_server_side_succeeds_and_is_idempotent(cluster, kubectl, deployed):
    objs, first = deployed
    assert first.rc == 0, first
    # The namespace warns on `restricted`: a template that broke it would
    # print "Warning: would violate PodSecurity" here.
    assert first.err == "", first
    for o in objs:
        assert f"{ref(o)} serverside-applied" in first.out.splitlines(), (ref(o), first.out)
    # The Role of leader election is part of what deploy/ applies.
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert ("Role", "collect-agent-leader-election") in kinds and \
        ("RoleBinding", "collect-agent-leader-election") in kinds, kinds
    assert not any(o["kind"] == "ServiceMonitor" for o in objs), "the base must not need the Operator's CRD"

    def versions():
        r = kubectl("get", "-k", DEPLOY, "-o", "json")
        assert r.rc == 0, r
        return {ref(o): o["metadata"]["resourceVersion"] for o in json.loads(r.out)["items"]}

    before = versions()
    assert set(before) == {ref(o) for o in objs}
    second = kubectl("apply", "-k", DEPLOY, "--server-side")
    assert second.rc == 0 and second.err == "", second
    assert versions() == before, "the second apply changed objects"
    d = kubectl("diff", "-k", DEPLOY, "--server-side")
    assert d.rc == 0 and d.out == "", d


# ------------------------------------------------------------------ 2. Pod Security

def test_podsecurity_admission_plugin_is_on(cluster):
    """kube-apiserver's default plugins include PodSecurity (the tier does not
    set --enable-admission-plugins); its start-up log lists it."""
    with open(cluster.api_log, errors="replace") as f:
        loaded = [ln for ln in f if "validating admission controller(s) successfully" in ln]
    assert loaded, "kube-apiserver did not log its validating admission controllers"
    assert "PodSecurity" in loaded[-1].split("following order:")[-1], loaded[-1]


WEAKENED = [
    # (what, change to the pod, what PodSecurity names)
    ("allowPrivilegeEscalation true",
     lambda p: p["spec"]["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
     "allowPrivilegeEscalation != false"),
    ("no seccompProfile",
     lambda p: (p["spec"]["securityContext"].pop("seccompProfile"),
                p["spec"]["containers"][0]["securityContext"].pop("seccompProfile")),
     "seccompProfile"),
    ("capabilities not dropped",
     lambda p: p["spec"]["containers"][0]["securityContext"].pop("capabilities"),
     "unrestricted capabilities"),
    ("runs as root",
     lambda p: (p["spec"]["securityContext"].update(runAsNonRoot=False, runAsUser=0),
                p["spec"]["containers"][0]["securityContext"].update(runAsNonRoot=False, runAsUser=0)),
     "runAsNonRoot != true"),
]


def test_pod_template_passes_restricted(cluster, kubectl, deployed, namespace, tmp_path):
    objs, first = deployed
    assert first.rc == 0, first
    dep = one(objs, "Deployment")
    ns = dep["metadata"]["namespace"]
    labels = cluster.admin.get_json(f"/api/v1/namespaces/{ns}")["metadata"]["labels"]
    assert labels.get("pod-security.kubernetes.io/enforce") == "restricted", labels

    pod = pod_from_template(dep, "pss-" + uuid.uuid4().hex[:6])
    r = kubectl("create", "--dry-run=server", "-o", "json", "-f", write_json(tmp_path / "pod.json", pod))
    assert r.rc == 0, r
    assert r.err == "", r   # no PodSecurity warning either
    accepted = json.loads(r.out)
    assert accepted["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False

    # A namespace without the label, with the ServiceAccount the pod names
    # (no controller makes one here): the control for the rejections below.
    r = cluster.admin.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                              {"apiVersion": "v1", "kind": "ServiceAccount",
                               "metadata": {"name": pod["spec"]["serviceAccountName"]}})
    assert r.status == 201, r.body
    for what, weaken, message in WEAKENED:
        bad = copy.deepcopy(pod)
        weaken(bad)
        path = write_json(tmp_path / "bad.json", bad)
        r = kubectl("create", "--dry-run=server", "-f", path)
        assert r.rc != 0, (what, r)
        assert 'violates PodSecurity "restricted:latest"' in r.err and message in r.err, (what, r)
        r = kubectl("create", "--dry-run=server", "-n", namespace, "-f",
                    write_json(tmp_path / "bad-elsewhere.json", dict(bad, metadata=dict(bad["metadata"],
                                                                                       namespace=namespace))))
        assert r.rc == 0, (what, "refused without the label too", r)


# ------------------------------------------------------------------ 3. the agent, in-cluster

# What differs from the pod on a test machine, and why. Everything else is
# the Deployment as rendered: its args, env, user, and volumes at their
# mountPaths (the ConfigMap's file at /etc/collect-agent/collect-agent.yaml,
# the emptyDirs at /var/lib/collect-agent and /tmp, the Secret's directory).
OVERRIDES = {
    # The ConfigMap's nats.example.com placeholder: the test's nats-server.
    "COLLECT_AGENT_NATS_SERVERS": "the test's nats-server on loopback (the ConfigMap names a placeholder)",
    # 0.0.0.0:8080 is the pod's own network namespace; here the port may be
    # taken, and tests talk only to loopback.
    "COLLECT_AGENT_HTTP_LISTEN": "127.0.0.1 and a free port instead of 0.0.0.0:8080",
    # cluster.id "" asks the cloud metadata services (169.254.169.254,
    # metadata.google.internal) as in a pod; tests talk only to loopback.
    "COLLECT_AGENT_CLUSTER_AWS_METADATA_ENDPOINT": "a closed loopback port",
    "COLLECT_AGENT_CLUSTER_GCE_METADATA_ENDPOINT": "a closed loopback port",
    "COLLECT_AGENT_CLUSTER_AZURE_METADATA_ENDPOINT": "a closed loopback port",
}


def pod_env(dep, pod_name, node_name):
    """The container's env as the kubelet fills it (downward API fieldRefs)."""
    fields = {"metadata.name": pod_name, "metadata.namespace": dep["metadata"]["namespace"],
              "spec.nodeName": node_name}
    env = {}
    for e in container(dep).get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def pod_volumes(objs, dep, pod_dir):
    """The container's volumeMounts as in_pod.py --mount arguments, each
    volume made in pod_dir as the kubelet makes it (ConfigMap and Secret
    files with their modes, a Secret's group the pod's fsGroup, emptyDirs
    0777; an optional Secret that does not exist is an empty directory)."""
    spec = dep["spec"]["template"]["spec"]
    fs_group = spec["securityContext"]["fsGroup"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    args = []
    for m in container(dep)["volumeMounts"]:
        v = volumes[m["name"]]
        d = os.path.join(pod_dir, "volumes", m["name"])
        if not os.path.isdir(d):
            os.makedirs(d, 0o755)
            if "configMap" in v:
                data = one(objs, "ConfigMap", v["configMap"]["name"])["data"]
                files = {i["path"]: data[i["key"]] for i in v["configMap"].get("items", [])} or data
                mode = v["configMap"].get("defaultMode", 0o644)
            elif "secret" in v:
                found = [o for o in objs if o["kind"] == "Secret"
                         and o["metadata"]["name"] == v["secret"]["secretName"]]
                assert found or v["secret"].get("optional"), f"no Secret {v['secret']['secretName']}"
                files = {k: base64.b64decode(b).decode() for k, b in (found[0]["data"] if found else {}).items()}
                mode = v["secret"].get("defaultMode", 0o644)
            elif "emptyDir" in v:
                files, mode = {}, None
                os.chmod(d, 0o777)
            else:
                raise AssertionError(f"volume kind of {v} not made here")
            for name, text in files.items():
                p = os.path.join(d, name)
                with open(p, "w") as f:
                    f.write(text)
                os.chown(p, 0, fs_group)
                os.chmod(p, mode)
        src = os.path.join(d, m["subPath"]) if m.get("subPath") else d
        args += ["--mount", f"{src}:{m['mountPath']}" + (":ro" if m.get("readOnly") else "")]
    return args


def config_file_of(objs, dep):
    """The ConfigMap file the Deployment's --config names, through its volume mount."""
    c = container(dep)
    args = [a for a in c.get("args", []) if a.startswith("--config=")]
    assert len(args) == 1, c.get("args")
    path = args[0].split("=", 1)[1]
    mounts = [m for m in c["volumeMounts"] if m["mountPath"] == path]
    assert len(mounts) == 1, (path, c["volumeMounts"])
    vol = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == mounts[0]["name"]][0]
    items = {i["path"]: i["key"] for i in vol["configMap"].get("items", [])}
    key = items.get(mounts[0]["subPath"], mounts[0]["subPath"])
    return one(objs, "ConfigMap", vol["configMap"]["name"])["data"][key]


@pytest.fixture
def pod_dir():
    """A directory uid 65534 can reach (pytest's tmp_path is under a 0700 root directory)."""
    d = tempfile.mkdtemp(prefix="collect-agent-pod-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None)
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def agent_as_pod(cluster, kubectl, objs, pod_dir, tmp_path, nats_url):
    """An Agent (not started) that runs as the rendered Deployment's pod
    would, with a fresh TokenRequest token of its ServiceAccount."""
    dep = one(objs, "Deployment")
    spec = dep["spec"]["template"]["spec"]
    ns, sa = dep["metadata"]["namespace"], spec["serviceAccountName"]
    uid = container(dep)["securityContext"]["runAsUser"]
    gid = container(dep)["securityContext"]["runAsGroup"]
    fs_group = spec["securityContext"]["fsGroup"]

    # The projected ServiceAccount volume, as the kubelet writes it.
    r = kubectl("create", "token", sa, "-n", ns, "--duration=1h")
    assert r.rc == 0, r
    token = r.out.strip()
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["sub"] == f"system:serviceaccount:{ns}:{sa}", claims
    sa_dir = os.path.join(pod_dir, "serviceaccount")
    os.mkdir(sa_dir, 0o755)
    with open(cluster.ca_file) as f:
        ca = f.read()
    for name, text, mode in (("token", token, 0o600), ("ca.crt", ca, 0o644), ("namespace", ns, 0o644)):
        p = os.path.join(sa_dir, name)
        with open(p, "w") as f:
            f.write(text)
        os.chown(p, uid, fs_group)
        os.chmod(p, mode)
    scratch = os.path.join(pod_dir, "scratch")
    os.mkdir(scratch, 0o700)

    closed = closed_port_url()
    pod_name = f"{dep['metadata']['name']}-{uuid.uuid4().hex[:10]}-{uuid.uuid4().hex[:5]}"
    env = pod_env(dep, pod_name, "envtest-node-" + uuid.uuid4().hex[:6])
    env.update({
        # What the kubelet sets in every container: the API server's Service.
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(cluster.api_port),
        "COLLECT_AGENT_NATS_SERVERS": nats_url,
        "COLLECT_AGENT_CLUSTER_AWS_METADATA_ENDPOINT": closed,
        "COLLECT_AGENT_CLUSTER_GCE_METADATA_ENDPOINT": closed,
        "COLLECT_AGENT_CLUSTER_AZURE_METADATA_ENDPOINT": closed,
    })
    agent = Agent(tmp_path, args=container(dep).get("args", []), env=env, name="in-pod")
    # Agent sets HTTP_LISTEN (loopback, a free port: an override listed
    # above) and a debug log level (not one: the ConfigMap's level stays).
    del agent.env["COLLECT_AGENT_LOG_LEVEL"]
    agent.env["HOME"] = "/nonexistent"
    overridden = {k for k in agent.env if k.startswith("COLLECT_AGENT_")} - \
        {e["name"] for e in container(dep).get("env", [])}
    assert overridden == set(OVERRIDES), overridden ^ set(OVERRIDES)
    assert "KUBECONFIG" not in agent.env
    agent.args = [sys.executable, IN_POD, "--scratch", scratch, "--serviceaccount", sa_dir,
                  *pod_volumes(objs, dep, pod_dir), "--uid", str(uid), "--gid", str(gid), "--", *agent.args]
    agent.pod_name, agent.uid, agent.gid = pod_name, uid, gid
    return agent


def assert_runs_as_the_pod(agent, cluster):
    assert agent.get("/health/live")[0] == 200, agent.get("/health")
    h = agent.health()
    assert h["kubernetes"]["credentials"] == "in-cluster", h["kubernetes"]
    assert h["kubernetes"]["server"] == f"https://127.0.0.1:{cluster.api_port}", h["kubernetes"]
    assert h["agent_id"] == agent.pod_name, h   # POD_NAME from the downward API
    if h.get("ha", {}).get("enabled"):
        # The ConfigMap turns leader election on; this lone replica leads once
        # the Lease is free (at most a lease duration when an earlier test's
        # agent did not release it). Only the leader runs the event watcher.
        h = wait_for(lambda: (lambda x: x if x["ha"]["role"] == "leader" else None)(agent.health()),
                     timeout=60, what="the lone replica leading")
        assert h["ha"]["identity"] == agent.pod_name, h["ha"]
    # The events state file is in the emptyDir at its configured path.
    assert h["events"]["state_file"]["path"] == "/var/lib/collect-agent/events.state", h["events"]["state_file"]
    text = agent.logs()
    assert "unknown environment variable" not in text and "unknown config key" not in text, text[-3000:]
    # It ran as the Deployment's user, not as root.
    with open(f"/proc/{agent.proc.pid}/status") as f:
        ids = {ln.split(":")[0]: ln.split()[1:] for ln in f if ln.startswith(("Uid:", "Gid:", "NoNewPrivs"))}
    assert ids["Uid"][0] == str(agent.uid) and ids["Gid"][0] == str(agent.gid) and ids["NoNewPrivs"] == ["1"], ids


@pytest.mark.skipif(os.geteuid() != 0, reason="a private mount namespace needs root")
def test_agent_runs_with_the_deploy_service_account_in_cluster(cluster, kubectl, deployed, nats_server,
                                                               nats_client, pod_dir, tmp_path):
    objs, first = deployed
    assert first.rc == 0, first
    agent = agent_as_pod(cluster, kubectl, objs, pod_dir, tmp_path, nats_server.url)
    kube_system_uid = cluster.admin.get_json("/api/v1/namespaces/kube-system")["metadata"]["uid"]
    reg = nats_client.subscribe("agent.register.>")
    nats_client.flush()
    try:
        agent.start(wait_live=False)   # waited for below, generously (a loaded machine)
        agent.wait_ready(timeout=120)
        assert_runs_as_the_pod(agent, cluster)
        msg = reg.next(timeout=30)
        assert msg.subject == f"agent.register.{kube_system_uid}", msg.subject
        info = json.loads(msg.data)
        assert info["cluster_id"] == kube_system_uid and info["cluster_source"] == "kube-system-uid", info

        # Its lists and watches: events, pods, nodes, namespaces, each listed
        # and watching, none refused.
        def listed():
            done = {r.get("reflector") for r in agent.log_records() if r.get("msg") == "list completed"}
            return {"events", "pods", "nodes", "namespaces"} <= done
        wait_for(listed, timeout=120, what="the agent's lists of events, pods, nodes and namespaces")

        def events_watch():
            w = agent.health()["events"]["reflectors"][0]["watch"]
            return w if w["watching"] else None
        watch = wait_for(events_watch, timeout=30, what="the events watch")
        assert watch["errors"] == 0 and watch["last_status"] == 200, watch
        requests = agent.health()["kubernetes"]["requests"]
        assert requests.get("200", 0) > 0 and "403" not in requests and "401" not in requests, requests
        refused = [r for r in agent.log_records() if r.get("status") in ("401", "403")]
        assert refused == [], refused
    finally:
        agent.stop()
    agent.assert_clean_exit()


# ------------------------------------------------------------------ 4. RBAC

SA_USER = "system:serviceaccount:collect-agent:collect-agent"
CAN_I = [
    # (verb, resource, extra args, allowed)
    ("list", "events", ["-A"], True),
    ("watch", "events", ["-A"], True),
    ("list", "events.events.k8s.io", ["-A"], True),
    ("watch", "events.events.k8s.io", ["-A"], True),
    ("list", "pods", ["-A"], True),
    ("watch", "pods", ["-A"], True),
    ("get", "pods", ["--subresource=log", "-n", "default"], True),
    ("list", "nodes", ["-A"], True),
    ("watch", "nodes", ["-A"], True),
    ("list", "namespaces", ["-A"], True),
    ("watch", "namespaces", ["-A"], True),
    ("get", "namespaces/kube-system", ["-A"], True),
    ("create", "pods", ["-n", "default"], False),
    ("update", "pods", ["-n", "default"], False),
    ("patch", "pods", ["-n", "default"], False),
    ("delete", "pods", ["-n", "default"], False),
    ("delete", "pods", ["-n", "collect-agent"], False),
    ("create", "pods", ["--subresource=exec", "-n", "default"], False),
    ("create", "pods", ["--subresource=attach", "-n", "default"], False),
    ("create", "pods", ["--subresource=portforward", "-n", "default"], False),
    ("create", "pods", ["--subresource=eviction", "-n", "default"], False),
    ("get", "secrets", ["-n", "default"], False),
    ("get", "secrets", ["-n", "collect-agent"], False),
    ("list", "secrets", ["-A"], False),
    ("watch", "secrets", ["-A"], False),
    ("get", "configmaps", ["-n", "collect-agent"], False),
    ("create", "events", ["-n", "default"], False),
    ("patch", "nodes", ["-A"], False),
    ("delete", "nodes", ["-A"], False),
    ("update", "namespaces", ["-A"], False),
    ("delete", "namespaces", ["-A"], False),
    ("create", "deployments.apps", ["-n", "default"], False),
    ("patch", "deployments.apps", ["-n", "collect-agent"], False),
    ("create", "serviceaccounts", ["--subresource=token", "-n", "collect-agent"], False),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ["-A"], False),
    ("create", "rolebindings.rbac.authorization.k8s.io", ["-n", "collect-agent"], False),
    ("deletecollection", "pods", ["-n", "default"], False),
    ("impersonate", "users", ["-A"], False),
    # (-A for cluster-scoped resources: kubectl would otherwise add the
    # kubeconfig's namespace and warn that it does not apply.)
    # Leader election (issue 12): one Lease in its own namespace.
    ("get", "leases.coordination.k8s.io", ["-n", "collect-agent"], True),
    ("create", "leases.coordination.k8s.io", ["-n", "collect-agent"], True),
    ("update", "leases.coordination.k8s.io", ["-n", "collect-agent"], True),
    ("delete", "leases.coordination.k8s.io", ["-n", "collect-agent"], False),
    ("patch", "leases.coordination.k8s.io", ["-n", "collect-agent"], False),
    ("get", "leases.coordination.k8s.io", ["-n", "default"], False),
    ("create", "leases.coordination.k8s.io", ["-n", "kube-system"], False),
    ("update", "leases.coordination.k8s.io", ["-n", "kube-node-lease"], False),
    ("update", "leases.coordination.k8s.io", ["-A"], False),
]


def test_service_account_can_read_and_cannot_write(cluster, kubectl, deployed):
    objs, first = deployed
    assert first.rc == 0, first
    sa = one(objs, "ServiceAccount")["metadata"]
    assert SA_USER == f"system:serviceaccount:{sa['namespace']}:{sa['name']}"
    wrong = []
    for verb, resource, extra, allowed in CAN_I:
        r = kubectl("auth", "can-i", verb, resource, *extra, f"--as={SA_USER}")
        answer = r.out.strip()
        # exit 0 = yes, 1 = no; anything else (a typo in a resource name
        # prints a warning) is a broken check, not an answer.
        assert answer in ("yes", "no") and r.rc == (0 if answer == "yes" else 1), (verb, resource, r)
        assert "Warning" not in r.err, (verb, resource, r)
        if (answer == "yes") != allowed:
            wrong.append(f"can-i {verb} {resource} {' '.join(extra)}: {answer}, expected {allowed}")
    assert wrong == [], "\n".join(wrong)


# ------------------------------------------------------------------ 5. overlays

FAKE_CREDS = """-----BEGIN NATS USER JWT-----
eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.test-only.not-a-signature
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.

-----BEGIN USER NKEY SEED-----
SUAtestonlyNOTaREALseedAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
------END USER NKEY SEED------
"""


def test_overlay_nats_credentials(cluster, kubectl, deployed, tmp_path):
    objs, first = deployed
    assert first.rc == 0, first
    # A copy of deploy/, as an SRE's checkout with their .creds file put in place.
    tree = tmp_path / "deploy"
    shutil.copytree(DEPLOY, tree, ignore=shutil.ignore_patterns("nats.creds"))
    overlay = str(tree / "overlays" / "nats-credentials")
    missing = kubectl("kustomize", overlay)
    assert missing.rc != 0 and "nats.creds" in missing.err, missing   # says which file is missing
    with open(os.path.join(overlay, "nats.creds"), "w") as f:
        f.write(FAKE_CREDS)

    rendered = render(kubectl, overlay)
    secret = one(rendered, "Secret")
    assert secret["metadata"]["name"].startswith("collect-agent-nats-"), secret["metadata"]
    assert secret["metadata"]["namespace"] == "collect-agent", secret["metadata"]
    assert base64.b64decode(secret["data"]["nats.creds"]).decode() == FAKE_CREDS
    dep = one(rendered, "Deployment")
    vol = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v.get("secret")]
    assert len(vol) == 1 and vol[0]["secret"]["secretName"] == secret["metadata"]["name"], vol
    assert vol[0]["secret"]["optional"] is False, vol
    mount = [m for m in container(dep)["volumeMounts"] if m["name"] == vol[0]["name"]]
    assert len(mount) == 1 and mount[0]["readOnly"] is True, mount
    env = {e["name"]: e.get("value") for e in container(dep)["env"]}
    creds_path = env.get("COLLECT_AGENT_NATS_AUTH_CREDENTIALS_FILE")
    assert creds_path == os.path.join(mount[0]["mountPath"], "nats.creds"), (creds_path, mount)
    # The variable names a real key (config/collect-agent.yaml, nats.auth).
    with open(os.path.join(ROOT, "config", "collect-agent.yaml")) as f:
        assert "credentials_file" in yaml.safe_load(f)["nats"]["auth"]
    # Everything else is the base as it is.
    base = {ref(o) for o in objs}
    assert {ref(o) for o in rendered} - base == {ref(secret)}, {ref(o) for o in rendered} ^ base
    # The agent takes the overlay's env without a warning (a misspelt
    # variable is "unknown environment variable, ignored").
    config = tmp_path / "collect-agent.yaml"
    config.write_text(config_file_of(rendered, dep))
    r = run_agent_once(["--check-config", f"--config={config}"],
                       env={"COLLECT_AGENT_NATS_AUTH_CREDENTIALS_FILE": os.path.join(overlay, "nats.creds")})
    assert r.returncode == 0 and "configuration OK" in r.stdout, (r.stdout[-2000:], r.stderr[-2000:])
    assert "unknown environment variable" not in r.stderr + r.stdout, r.stderr[-2000:]

    r = kubectl("apply", "-k", overlay, "--server-side", "--dry-run=server")
    assert r.rc == 0 and r.err == "", r
    assert f"secret/{secret['metadata']['name']} serverside-applied (server dry run)" in r.out.splitlines(), r
    assert "deployment.apps/collect-agent serverside-applied (server dry run)" in r.out.splitlines(), r
    # A dry run: the Secret was not made.
    got = cluster.admin.request("GET", f"/api/v1/namespaces/collect-agent/secrets/{secret['metadata']['name']}")
    assert got.status == 404, got.body


def nats_auth_helpers():
    """tests/integration/test_nats_auth.py's operator/account/user JWTs (a
    real .creds file and a nats-server config that trusts it)."""
    import importlib.util
    pytest.importorskip("cryptography")
    path = os.path.join(ROOT, "tests", "integration", "test_nats_auth.py")
    spec = importlib.util.spec_from_file_location("_nats_auth_helpers", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(os.geteuid() != 0, reason="a private mount namespace needs root")
def test_overlay_nats_credentials_agent_connects_with_the_secret(cluster, kubectl, deployed, pod_dir, tmp_path):
    """The agent as the overlay's pod: the .creds file reaches it only
    through the generated Secret mounted at /etc/collect-agent/nats and the
    overlay's env; a nats-server in operator mode refuses any client
    without a user JWT its account signed."""
    objs, first = deployed
    assert first.rc == 0, first
    conf, creds, _, _ = nats_auth_helpers().decentralized_setup(tmp_path)
    tree = tmp_path / "deploy"
    shutil.copytree(DEPLOY, tree, ignore=shutil.ignore_patterns("nats.creds"))
    overlay = str(tree / "overlays" / "nats-credentials")
    shutil.copyfile(creds, os.path.join(overlay, "nats.creds"))
    rendered = render(kubectl, overlay)
    server = NatsServer(args=["-c", str(conf)])
    server.start()
    try:
        agent = agent_as_pod(cluster, kubectl, rendered, pod_dir, tmp_path, server.url)
        assert not any(str(creds) in a for a in agent.args) and "COLLECT_AGENT_NATS_AUTH_CREDENTIALS_FILE" \
            not in set(agent.env) - {e["name"] for e in container(one(rendered, "Deployment"))["env"]}
        try:
            agent.start(wait_live=False)   # waited for below, generously (a loaded machine)
            agent.wait_ready(timeout=120)
            assert_runs_as_the_pod(agent, cluster)
            h = agent.health()
            assert h["nats"]["connected"] is True and h["nats"]["server"] == server.url, h["nats"]
        finally:
            agent.stop()
        agent.assert_clean_exit()
    finally:
        server.stop()


@pytest.fixture
def servicemonitor_crd(cluster, kubectl):
    crd = "customresourcedefinitions.apiextensions.k8s.io/servicemonitors.monitoring.coreos.com"

    def install():
        r = kubectl("apply", "--server-side", "-f", SERVICEMONITOR_CRD)
        assert r.rc == 0, r
        r = kubectl("wait", "--for=condition=Established", crd, "--timeout=60s", timeout=90)
        assert r.rc == 0, r
        # Discovery may list the new kind a moment after Established.
        wait_for(lambda: kubectl("get", "servicemonitors.monitoring.coreos.com", "-A").rc == 0,
                 timeout=60, interval=0.5, what="ServiceMonitor in the server's discovery")
    yield install
    kubectl("delete", crd, "--ignore-not-found", "--wait=true", timeout=90)


def test_overlay_prometheus_operator(cluster, kubectl, deployed, servicemonitor_crd, tmp_path):
    objs, first = deployed
    assert first.rc == 0, first
    overlay = os.path.join(DEPLOY, "overlays", "prometheus-operator")
    rendered = render(kubectl, overlay)
    sm = one(rendered, "ServiceMonitor")
    svc = one(rendered, "Service")
    assert sm["metadata"]["namespace"] == svc["metadata"]["namespace"] == "collect-agent"
    assert svc["metadata"]["namespace"] in sm["spec"]["namespaceSelector"]["matchNames"]
    for k, v in sm["spec"]["selector"]["matchLabels"].items():
        assert svc["metadata"]["labels"].get(k) == v, (k, v, svc["metadata"]["labels"])
    assert {e["port"] for e in sm["spec"]["endpoints"]} <= {p["name"] for p in svc["spec"]["ports"]}
    base = {ref(o) for o in objs}
    assert {ref(o) for o in rendered} - base == {ref(sm)}

    # Without the CRD the server knows no such kind: the dry run is real.
    r = kubectl("apply", "-k", overlay, "--server-side", "--dry-run=server")
    assert r.rc != 0 and 'no matches for kind "ServiceMonitor"' in r.err, r

    servicemonitor_crd()
    r = kubectl("apply", "-k", overlay, "--server-side", "--dry-run=server")
    assert r.rc == 0 and r.err == "", r
    assert "servicemonitor.monitoring.coreos.com/collect-agent serverside-applied (server dry run)" \
        in r.out.splitlines(), r
    # The CRD's schema is enforced: a bad interval is refused by the same dry run.
    bad = copy.deepcopy(sm)
    bad["spec"]["endpoints"][0]["interval"] = "30 seconds"
    r = kubectl("apply", "--server-side", "--dry-run=server", "-f", write_json(tmp_path / "bad-sm.json", bad))
    assert r.rc != 0 and "spec.endpoints[0].interval" in r.err, r
