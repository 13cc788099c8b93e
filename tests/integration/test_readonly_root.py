"""The agent as the image and the Deployment run it: root filesystem
read-only, writable only the emptyDirs /tmp and /var/lib/collect-agent, user
65534, the ConfigMap's configuration (deploy/base/configmap.yaml), real kubectl.
It gets ready, runs a command (its private dir, kubeconfig and output files
in /tmp), keeps its events state file, and never meets a read-only file
system. A control agent pointed at /var/tmp shows the root really refuses
writes. tests/lib/readonly_root.py builds the mount namespace; no docker
needed (tests/lib/test_image_paths.py is the static side of this check)."""
import os
import shutil
import tempfile

import pytest
import yaml

from lib.agentproc import agent_binary, wait_for
from lib.exec_helpers import command, request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HELPER = os.path.join(ROOT, "tests", "lib", "readonly_root.py")
CID = "ro-1"
NOBODY = 65534

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a mount namespace"),
    pytest.mark.skipif(not (shutil.which("unshare") and shutil.which("mount")), reason="needs util-linux"),
    pytest.mark.skipif(not os.path.exists("/usr/bin/kubectl"), reason="needs kubectl"),
]


@pytest.fixture
def shared_dir():
    """A directory user 65534 can read (pytest's tmp_path is root's, 0700)."""
    d = tempfile.mkdtemp(prefix="readonly-root-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def deployment_config(shared, sim):
    """The ConfigMap's collect-agent.yaml, and the simulated cluster's
    kubeconfig and CA, where user 65534 can read them."""
    with open(os.path.join(ROOT, "deploy", "base", "configmap.yaml")) as f:
        cm = next(d for d in yaml.safe_load_all(f) if d and d.get("kind") == "ConfigMap")
    config = os.path.join(shared, "collect-agent.yaml")
    with open(config, "w") as f:
        f.write(cm["data"]["collect-agent.yaml"])
    ca = os.path.join(shared, "ca.crt")
    shutil.copyfile(sim.ca_file, ca)
    with open(sim.kubeconfig) as f:
        kc_text = f.read().replace(sim.ca_file, ca)
    kubeconfig = os.path.join(shared, "kubeconfig")
    with open(kubeconfig, "w") as f:
        f.write(kc_text)
    for path in (config, ca, kubeconfig):
        os.chown(path, NOBODY, NOBODY)
        os.chmod(path, 0o600)
    return config, kubeconfig


def start(agent_factory, nats_server, config, kubeconfig, env=None, ready=True):
    a = agent_factory(start=False, env=dict(env or {}, COLLECT_AGENT_EVENTS_SINCE="1h"))
    a.args = ["unshare", "--mount", "--propagation", "private", "/usr/bin/python3", HELPER, "--",
              agent_binary(), "--config", config, "--nats", nats_server.url, "--kubeconfig", kubeconfig,
              "--cluster-id", CID]
    a.start()
    if ready:
        a.wait_ready(timeout=30)
    return a


def state_file(agent):
    return agent.health()["events"]["state_file"]


def test_agent_runs_with_a_read_only_root(nats_server, nats_client, kubesim, agent_factory, shared_dir):
    config, kubeconfig = deployment_config(shared_dir, kubesim)
    agent = start(agent_factory, nats_server, config, kubeconfig)
    assert "the agent runs as root" not in agent.logs(), "not running as 65534"

    r = request(nats_client, command("kubectl", "get", ["namespaces"], cluster_id=CID), timeout=60, cluster_id=CID)
    assert r["status"] == "succeeded", r
    assert "kube-system" in r["stdout"], r

    kubesim.emit_events(namespace="default", count=3, reason="BackOff")
    st = wait_for(lambda: (lambda s: s if s["writes"] >= 1 else None)(state_file(agent)), timeout=30,
                  what="the events state file written")
    assert st["path"] == "/var/lib/collect-agent/events.state" and st["error"] == "", st
    agent.assert_clean_exit()
    assert "Read-only file system" not in agent.logs(), agent.logs()[-4000:]


def test_the_root_really_is_read_only(nats_server, kubesim, agent_factory, shared_dir):
    """Control: the same agent told to write outside the emptyDirs cannot:
    the executor refuses to start (not ready, saying why) and the state file
    is not written."""
    config, kubeconfig = deployment_config(shared_dir, kubesim)
    agent = start(agent_factory, nats_server, config, kubeconfig, ready=False,
                  env={"COLLECT_AGENT_EXEC_WORK_DIR": "/var/tmp",
                       "COLLECT_AGENT_EVENTS_STATE_FILE": "/var/tmp/events.state"})
    code, body = wait_for(lambda: (lambda r: r if r[0] == 503 and "exec.work_dir" in r[1] else None)(
        agent.get("/health/ready")), timeout=30, what="not ready for exec.work_dir")
    assert "exec: exec.work_dir /var/tmp is not a writable directory" in body, body
    n = [0]

    def state_error():
        # Each event moves the resourceVersion: a new write, and the
        # outcome of the previous one shows.
        n[0] += 1
        kubesim.emit_events(namespace="default", count=1, reason="BackOff", name_prefix=f"ro{n[0]}")
        s = state_file(agent)
        return s if s["error"] else None

    st = wait_for(state_error, timeout=30, interval=1.0, what="the state file's error")
    assert "Read-only file system" in st["error"], st
    agent.assert_clean_exit()
