"""Cluster-ID detection, one test per source, against the simulated API server
and loopback fakes of the cloud metadata servers (tests/lib/fakemeta.py).

Every test points all three metadata endpoints at loopback fakes, so a
detector that asked a cloud it should not have asked is caught by the
fake's request log, and nothing ever leaves the machine.

Detection runs in one of two hosts, chosen once per session:
- "agent": the collect-agent binary ($AGENT_BIN), read through /health
  (its "cluster" member is ca_cluster_health_json());
- "driver": tests/unit/test_cluster --detect (built with the unit tests,
  $BUILD_DIR/tests/unit/test_cluster), which loads the config the same way
  and prints the same JSON; used while the agent does not report a
  "cluster" member in /health yet.
CLUSTER_ID_TEST_BACKEND=agent|driver forces one.
"""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests", "kubesim"))

from fixtures import KubeSim  # noqa: E402
from lib.agentproc import Agent, agent_binary, wait_for  # noqa: E402
from lib.fakemeta import FakeAWS, FakeAzure, FakeGCE, Hanging  # noqa: E402

KUBE_SYSTEM_UID = "d5fba74e-51a6-4dfe-8564-d26d014c5e9a"  # the simulator's seed, from the samples
EKS_VERSION = "v1.28.7-eks-abc1234"
GKE_VERSION = "v1.29.1-gke.1589017"


# ------------------------------------------------------------------ hosts

def driver_binary():
    if os.environ.get("CLUSTER_DRIVER"):
        return os.environ["CLUSTER_DRIVER"]
    build = os.environ.get("BUILD_DIR") or os.path.dirname(agent_binary())
    return os.path.join(build, "tests", "unit", "test_cluster")


_backend = None


def backend(tmp_path_factory):
    global _backend
    if _backend:
        return _backend
    forced = os.environ.get("CLUSTER_ID_TEST_BACKEND")
    if forced:
        _backend = forced
        return _backend
    _backend = "driver"
    if os.path.exists(agent_binary()):
        probe = Agent(tmp_path_factory.mktemp("probe"), env={"CLUSTER_ID": "probe"}, name="probe")
        try:
            probe.start()
            health = probe.health()
            if isinstance(health.get("cluster"), dict) and "state" in health["cluster"]:
                _backend = "agent"
        except Exception:  # noqa: BLE001 - an agent that cannot be probed is not the host
            pass
        finally:
            probe.stop()
    return _backend


def finished(cluster):
    return cluster and (cluster.get("state") == "done" or
                        (cluster.get("last_error") or "").startswith("no cluster ID"))


class Detect:
    """Run one detection against a simulator with the given env; returns the
    cluster health object."""

    def __init__(self, tmp_path, tmp_path_factory, agent_factory):
        self.tmp_path = tmp_path
        self.tmp_path_factory = tmp_path_factory
        self.agent_factory = agent_factory
        self.agent = None
        self.stderr = ""

    def __call__(self, sim, env=None, args=(), timeout=30, min_attempts=1, until=None):
        """until(cluster) -> bool: with the agent, also wait for this (fields
        like kubernetes_version that may arrive after the decision)."""
        env = dict(env or {})
        if sim is not None:
            env.setdefault("KUBECONFIG", sim.kubeconfig)
        env.setdefault("NODE_NAME", "node-a")
        if backend(self.tmp_path_factory) == "agent":
            self.agent = self.agent_factory(list(args), env=env)

            def ready():
                c = self.agent.health().get("cluster")
                if finished(c) and c.get("attempts", 0) >= min_attempts and (until is None or until(c)):
                    return c
                return None
            return wait_for(ready, timeout=timeout, what="cluster detection")
        full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.tmp_path)}
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                full[k] = os.environ[k]
        full.update(env)
        binary = driver_binary()
        assert os.path.exists(binary), "build the unit tests first: %s is missing" % binary
        p = subprocess.run([binary, "--detect", *args, "--timeout-ms", str(int(timeout * 1000)),
                            "--min-attempts", str(min_attempts)],
                           env=full, capture_output=True, text=True, timeout=timeout + 30)
        self.stderr = p.stderr
        assert p.returncode == 0, p.stderr[-4000:]
        lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
        assert lines, p.stdout + p.stderr[-4000:]
        return json.loads(lines[-1])


@pytest.fixture
def detect(tmp_path, tmp_path_factory, agent_factory):
    d = Detect(tmp_path, tmp_path_factory, agent_factory)
    yield d
    if d.agent is not None:
        d.agent.assert_clean_exit()  # no sanitizer report, exit 0 on SIGTERM


@pytest.fixture
def clouds():
    """All three clouds faked on loopback; env pointing the agent at them."""
    aws, gce, azure = FakeAWS(tags=None), FakeGCE(), FakeAzure()
    for s in (aws, gce, azure):
        s.start()
    env = {"COLLECT_AGENT_CLUSTER_AWS_METADATA_ENDPOINT": aws.url,
           "COLLECT_AGENT_CLUSTER_GCE_METADATA_ENDPOINT": gce.url,
           "COLLECT_AGENT_CLUSTER_AZURE_METADATA_ENDPOINT": azure.url}

    class Clouds:
        pass
    c = Clouds()
    c.aws, c.gce, c.azure, c.env = aws, gce, azure, env
    yield c
    for s in (aws, gce, azure):
        s.stop()


def sim_with(tmp_path, **options):
    return KubeSim(tmp_path / "sim", **options)


def assert_no_metadata(clouds, *except_):
    for name in ("aws", "gce", "azure"):
        if name in except_:
            continue
        got = getattr(clouds, name).requests()
        assert got == [], "%s metadata was asked: %r" % (name, [(r["method"], r["path"]) for r in got])


# ------------------------------------------------------------------ tests

def test_env_cluster_id(tmp_path, detect, clouds, kubesim):
    c = detect(kubesim, env={**clouds.env, "CLUSTER_ID": "prod-eu-1"}, until=lambda c: c["kubernetes_version"])
    assert c["state"] == "done", c
    assert c["id"] == "prod-eu-1"
    assert c["source"] == "env"
    assert c["last_error"] == ""
    # The API is still asked for /version, which goes into AgentInfo.
    assert c["kubernetes_version"] == "v1.28.7"
    assert_no_metadata(clouds)


def test_flag_beats_env_and_config(tmp_path, detect, clouds, kubesim):
    c = detect(kubesim, env={**clouds.env, "CLUSTER_ID": "from-env", "COLLECT_AGENT_CLUSTER_ID": "from-config"},
               args=["--cluster-id", "from-flag"])
    assert (c["id"], c["source"]) == ("from-flag", "env")


def test_invalid_env_id_is_not_used(tmp_path, detect, clouds, kubesim):
    c = detect(kubesim, env={**clouds.env, "CLUSTER_ID": "Not_A_Valid.ID"})
    assert c["state"] == "done"
    assert c["source"] == "kube-system-uid"
    assert "CLUSTER_ID \"Not_A_Valid.ID\" is not a valid cluster ID" in c["findings"]


def test_config_cluster_id(tmp_path, detect, clouds, kubesim):
    c = detect(kubesim, env={**clouds.env, "COLLECT_AGENT_CLUSTER_ID": "from-config"})
    assert (c["state"], c["id"], c["source"]) == ("done", "from-config", "config")
    assert "env: neither --cluster-id nor CLUSTER_ID is set" in c["findings"]
    assert_no_metadata(clouds)


def test_eks_from_imds_tags(tmp_path, detect, clouds):
    clouds.aws.tags = {"Name": "worker", "aws:eks:cluster-name": "Shop_Prod",
                       "eks:nodegroup-name": "general"}
    with sim_with(tmp_path, gitversion=EKS_VERSION,
                  node_provider_id="aws:///eu-west-1a/i-0abc123def4567890") as sim:
        c = detect(sim, env=clouds.env)
    assert c["state"] == "done", c
    assert c["source"] == "eks"
    assert c["id"] == "shop-prod"
    assert c["cluster_name"] == "Shop_Prod"
    assert c["provider"] == "aws"
    assert c["region"] == "eu-west-1"
    assert c["kubernetes_version"] == EKS_VERSION
    reqs = clouds.aws.requests()
    assert [(r["method"], r["path"]) for r in reqs] == [
        ("PUT", "/latest/api/token"),
        ("GET", "/latest/meta-data/tags/instance"),
        ("GET", "/latest/meta-data/tags/instance/aws:eks:cluster-name")]
    headers = {k.lower(): v for k, v in reqs[0]["headers"].items()}
    assert int(headers["x-aws-ec2-metadata-token-ttl-seconds"]) > 0
    for r in reqs[1:]:
        h = {k.lower(): v for k, v in r["headers"].items()}
        assert h["x-aws-ec2-metadata-token"] in clouds.aws.tokens
    assert_no_metadata(clouds, "aws")


def test_eks_from_kubernetes_io_cluster_tag(tmp_path, detect, clouds):
    clouds.aws.tags = {"Name": "worker", "kubernetes.io/cluster/billing": "owned"}
    with sim_with(tmp_path, gitversion=EKS_VERSION, node_provider_id="aws:///us-east-2b/i-1") as sim:
        c = detect(sim, env=clouds.env)
    assert (c["source"], c["id"], c["region"]) == ("eks", "billing", "us-east-2")


def test_eks_without_tags_uses_eksctl_label(tmp_path, detect, clouds):
    clouds.aws.tags = None  # tags not allowed in instance metadata: 404
    with sim_with(tmp_path, gitversion=EKS_VERSION,
                  node_provider_id="aws:///eu-west-1a/i-0abc123def4567890",
                  node_labels={"alpha.eksctl.io/cluster-name": "shop-prod",
                               "topology.kubernetes.io/region": "eu-west-1"}) as sim:
        c = detect(sim, env=clouds.env)
    assert (c["state"], c["source"], c["id"], c["provider"], c["region"]) == \
        ("done", "eks", "shop-prod", "aws", "eu-west-1")
    # IMDS was tried first, with a token.
    assert [r["method"] for r in clouds.aws.requests()][:1] == ["PUT"]
    assert_no_metadata(clouds, "aws")


def test_eks_nothing_hands_over(tmp_path, detect, clouds):
    """EKS but neither tags nor label: the next source decides, and the
    findings say why EKS did not."""
    with sim_with(tmp_path, gitversion=EKS_VERSION) as sim:
        c = detect(sim, env=clouds.env)
    assert c["source"] == "kube-system-uid"
    assert "eks: IMDS: instance tags: HTTP 404" in c["findings"]
    assert "has no label alpha.eksctl.io/cluster-name" in c["findings"]


def test_gke_from_metadata(tmp_path, detect, clouds):
    clouds.gce.attributes.update({"cluster-name": "analytics", "cluster-location": "us-central1-a",
                                  "cluster-uid": "8f3c2a1e5b7d4c6f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f"})
    with sim_with(tmp_path, gitversion=GKE_VERSION) as sim:
        c = detect(sim, env=clouds.env)
    assert c["state"] == "done", c
    assert (c["source"], c["id"], c["provider"], c["region"]) == ("gke", "analytics", "gcp", "us-central1")
    assert c["cluster_uid"] == clouds.gce.attributes["cluster-uid"]
    assert c["cluster_name"] == "analytics"
    paths = clouds.gce.paths()
    assert paths == ["/computeMetadata/v1/instance/attributes/cluster-name",
                     "/computeMetadata/v1/instance/attributes/cluster-location",
                     "/computeMetadata/v1/instance/attributes/cluster-uid"]
    for r in clouds.gce.requests():
        h = {k.lower(): v for k, v in r["headers"].items()}
        assert h["metadata-flavor"] == "Google"
    assert_no_metadata(clouds, "gce")


def test_gke_regional_cluster(tmp_path, detect, clouds):
    clouds.gce.attributes.update({"cluster-name": "Regional_One", "cluster-location": "europe-west4"})
    with sim_with(tmp_path, gitversion=GKE_VERSION) as sim:
        c = detect(sim, env=clouds.env)
    assert (c["source"], c["id"], c["region"], c["cluster_uid"]) == ("gke", "regional-one", "europe-west4", "")


AKS_LABELS = {"kubernetes.azure.com/cluster": "MC_shop-rg_shop-aks-label_westeurope",
              "kubernetes.azure.com/agentpool": "nodepool1"}


def test_aks_from_imds(tmp_path, detect, clouds):
    clouds.azure.compute = {"name": "aks-nodepool1-12345678-vmss_0", "location": "westeurope",
                            "resourceGroupName": "MC_shop-rg_shop-aks_westeurope",
                            "vmId": "02aab8a4-74ef-476e-8182-f6d2ba4166a6"}
    with sim_with(tmp_path, node_labels=AKS_LABELS) as sim:
        c = detect(sim, env=clouds.env)
    assert c["state"] == "done", c
    assert (c["source"], c["id"], c["provider"], c["region"]) == ("aks", "shop-aks", "azure", "westeurope")
    reqs = clouds.azure.requests()
    assert len(reqs) == 1
    assert reqs[0]["path"] == "/metadata/instance/compute?api-version=2020-09-01&format=json"
    assert {k.lower(): v for k, v in reqs[0]["headers"].items()}["metadata"] == "true"
    assert_no_metadata(clouds, "azure")


def test_aks_from_node_label_when_imds_hangs(tmp_path, detect, clouds):
    """IMDS accepts and never answers: after the metadata timeout the node
    label decides. The API request timeout is set far beyond the test's own
    limit, so only the metadata timeout can end the request."""
    with Hanging() as hang, sim_with(tmp_path, node_labels=AKS_LABELS) as sim:
        env = {**clouds.env, "COLLECT_AGENT_CLUSTER_AZURE_METADATA_ENDPOINT": hang.url,
               "COLLECT_AGENT_CLUSTER_METADATA_TIMEOUT": "300ms",
               "COLLECT_AGENT_KUBERNETES_REQUEST_TIMEOUT": "10m"}
        c = detect(sim, env=env, timeout=60)
        assert hang.connections() >= 1
        assert hang.request_lines()[0].startswith("GET /metadata/instance/compute?")
    assert c["state"] == "done", c
    assert (c["source"], c["id"], c["provider"], c["region"]) == ("aks", "shop-aks-label", "azure", "westeurope")


def test_node_labels_configured_key(tmp_path, detect, clouds):
    with sim_with(tmp_path, node_labels={"example.com/cluster": "Billing.EU"},
                  node_provider_id="aws:///eu-central-1b/i-9") as sim:
        c = detect(sim, env={**clouds.env, "COLLECT_AGENT_CLUSTER_NODE_LABEL_KEY": "example.com/cluster"})
    assert c["state"] == "done", c
    assert (c["source"], c["id"], c["cluster_name"]) == ("node-labels", "billing-eu", "Billing.EU")
    assert (c["provider"], c["region"]) == ("aws", "eu-central-1")  # from the providerID
    assert_no_metadata(clouds)


def test_kube_system_uid(tmp_path, detect, clouds, kubesim):
    c = detect(kubesim, env=clouds.env)
    assert c["state"] == "done", c
    assert (c["source"], c["id"], c["cluster_uid"]) == ("kube-system-uid", KUBE_SYSTEM_UID, KUBE_SYSTEM_UID)
    assert c["provider"] == ""
    for part in ("eks: not EKS (gitVersion v1.28.7)", "gke: not GKE (gitVersion v1.28.7)",
                 "aks: not AKS", "node-labels: cluster.node_label_key is not set"):
        assert part in c["findings"], c["findings"]


def test_bare_cluster_sends_no_metadata_request(tmp_path, detect, clouds):
    """A bare cluster whose node even carries a provider-ish label: no cloud is
    asked, not one packet; the GCE endpoint is a hanging server so even a
    connection attempt would show."""
    with Hanging() as hang, sim_with(tmp_path, node_labels={"kubernetes.io/role": "worker"}) as sim:
        env = {**clouds.env, "COLLECT_AGENT_CLUSTER_GCE_METADATA_ENDPOINT": hang.url}
        c = detect(sim, env=env)
        assert hang.connections() == 0
    assert c["state"] == "done"
    assert c["source"] == "kube-system-uid"
    assert_no_metadata(clouds)


def test_nothing_works(tmp_path, detect, clouds, kubesim):
    env = {**clouds.env, "COLLECT_AGENT_CLUSTER_DETECT": "env,config"}
    c = detect(kubesim, env=env)
    assert c["state"] == "waiting"
    assert c["id"] == ""
    assert c["last_error"].startswith("no cluster ID: "), c
    assert "env: neither --cluster-id nor CLUSTER_ID is set" in c["last_error"]
    assert "config: cluster.id is empty" in c["last_error"]
    if detect.agent is not None:
        status, body = detect.agent.get("/health/ready")
        assert status == 503, body
    assert_no_metadata(clouds)


def test_api_outage_is_retried(tmp_path, detect, clouds, kubesim):
    """/version fails three times: detection retries with backoff and then
    succeeds; no source was skipped for it."""
    kubesim.fault(status=503, count=3, path_prefix="/version")
    c = detect(kubesim, env={**clouds.env, "COLLECT_AGENT_KUBERNETES_BACKOFF_INITIAL": "50ms",
                             "COLLECT_AGENT_KUBERNETES_BACKOFF_MAX": "200ms"}, min_attempts=1)
    assert c["state"] == "done", c
    assert c["source"] == "kube-system-uid"
    assert c["attempts"] >= 4, c
    assert c["last_error"] == ""


def test_api_down_reports_progress(tmp_path, detect, clouds):
    """No API server at all: never gives up, says why in health."""
    with sim_with(tmp_path) as sim:
        kubeconfig = sim.kubeconfig
        env = {**clouds.env, "KUBECONFIG": kubeconfig, "COLLECT_AGENT_KUBERNETES_BACKOFF_INITIAL": "50ms",
               "COLLECT_AGENT_KUBERNETES_BACKOFF_MAX": "100ms"}
    # The simulator is stopped now: its port refuses connections.
    if backend(detect.tmp_path_factory) == "agent":
        detect.agent = detect.agent_factory([], env={**env, "NODE_NAME": "node-a"})
        c = wait_for(lambda: (lambda c: c if c.get("attempts", 0) >= 3 else None)(detect.agent.health()["cluster"]),
                     timeout=30, what="three attempts")
    else:
        c = detect(None, env=env, timeout=3)
    assert c["state"] in ("waiting", "detecting")
    assert c["attempts"] >= 2, c
    assert "Kubernetes API unavailable: GET /version" in c["last_error"], c
    assert_no_metadata(clouds)
