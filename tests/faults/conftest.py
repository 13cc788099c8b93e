"""Fault tests reuse the integration fixtures (nats_server, nats_client,
kubesim, agent_factory) as they are: tests/integration/conftest.py is the
one place they are defined."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repository's tests/ directory

from integration.conftest import *  # noqa: E402,F401,F403
