"""Fixtures of the envtest tier: a real kube-apiserver + etcd once per
pytest session (skipped, with the reason, when the assets are missing), a
real nats-server per test, and collect-agent processes that read the real
server with the ServiceAccount token deploy/ grants."""
import os
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for p in (HERE, os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "lib")):
    if p not in sys.path:
        sys.path.insert(0, p)

from envtest_cluster import ASSETS_ENV, Cluster, ClusterError, closed_port_url  # noqa: E402
from lib.agentproc import Agent  # noqa: E402
from lib.nats import NatsClient, NatsServer  # noqa: E402


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """The real API server of the session (pytest.skip when the tier's
    assets are missing, an error with the server's own log when it does
    not come up)."""
    missing = Cluster.missing()
    if missing:
        pytest.skip(f"envtest tier: {missing}")
    c = Cluster(str(tmp_path_factory.mktemp("envtest")), os.environ[ASSETS_ENV])
    try:
        c.start()
    except ClusterError as e:
        c.stop()
        pytest.fail(f"envtest tier: the real API server did not start: {e}", pytrace=False)
    except BaseException:
        c.stop()
        raise
    yield c
    c.stop()


@pytest.fixture
def namespace(cluster):
    """A fresh namespace for one test's objects."""
    name = "t-" + uuid.uuid4().hex[:10]
    cluster.admin.post_json("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                   "metadata": {"name": name}})
    return name


@pytest.fixture
def nats_server():
    server = NatsServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_client(nats_server):
    client = NatsClient(nats_server.url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def metadata_url():
    """Cloud metadata endpoints point here: a loopback port nobody serves."""
    return closed_port_url()


@pytest.fixture
def agent_factory(tmp_path, cluster, metadata_url):
    """agent_factory(nats_url, env={...}, kubeconfig=None) -> a started Agent
    reading the real server with the ServiceAccount token (cluster ID
    detected, no cloud contacted). Every agent is stopped at the end."""
    agents = []

    def make(nats_url, env=None, kubeconfig=None, args=(), start=True):
        e = {
            "COLLECT_AGENT_CLUSTER_AWS_METADATA_ENDPOINT": metadata_url,
            "COLLECT_AGENT_CLUSTER_GCE_METADATA_ENDPOINT": metadata_url,
            "COLLECT_AGENT_CLUSTER_AZURE_METADATA_ENDPOINT": metadata_url,
            "COLLECT_AGENT_CLUSTER_METADATA_TIMEOUT": "200ms",
        }
        e.update(env or {})
        a = Agent(tmp_path, args=["--nats", nats_url, "--kubeconfig", kubeconfig or cluster.kubeconfig,
                                  *args],
                  env=e, name=f"agent{len(agents)}")
        agents.append(a)
        if start:
            a.start()
        return a

    yield make
    for a in agents:
        a.stop()
