"""Fixtures shared by the integration tests: a real nats-server, the
simulated Kubernetes API server, and collect-agent processes."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests", "kubesim"))

from lib.agentproc import Agent  # noqa: E402
from lib.nats import NatsClient, NatsServer  # noqa: E402


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


@pytest.fixture
def kubesim(tmp_path):
    from fixtures import KubeSim
    with KubeSim(tmp_path / "kubesim") as sim:
        yield sim


@pytest.fixture
def agent_factory(tmp_path):
    """agent_factory(args=[...], env={...}, start=True) -> Agent; all are
    stopped at the end of the test and must exit cleanly."""
    agents = []

    def make(args=(), env=None, start=True, name=None, wait_live=True):
        a = Agent(tmp_path, args=args, env=env, name=name or f"agent{len(agents)}")
        agents.append(a)
        if start:
            a.start(wait_live=wait_live)
        return a

    yield make
    for a in agents:
        a.stop()
