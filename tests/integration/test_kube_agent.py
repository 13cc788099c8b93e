"""Issue 3, through the real agent: how it finds credentials, what it says
when they are wrong, and that it keeps working when the token rotates."""
import json
import os
import re
import subprocess

from lib.agentproc import agent_binary, run_agent_once, wait_for
from lib.nats import NatsClient

FAST = {"COLLECT_AGENT_HEARTBEAT_INTERVAL": "200ms", "COLLECT_AGENT_KUBERNETES_BACKOFF_MAX": "1s",
        "NODE_NAME": "node-a"}


def kube_health(agent):
    return agent.health()["kubernetes"]


def test_kubeconfig_alone_is_enough(nats_server, kubesim, agent_factory):
    """A new user's first run: --kubeconfig and nothing else (NATS at its
    default address is faked by pointing the default at our server)."""
    agent = agent_factory(["--kubeconfig", kubesim.kubeconfig],
                          env={"COLLECT_AGENT_NATS_SERVERS": nats_server.url})
    agent.wait_ready(timeout=20)
    health = agent.health()
    assert health["kubernetes"]["api_ok"] is True
    assert health["kubernetes"]["server"] == kubesim.api_url
    assert "kubeconfig" in health["kubernetes"]["credentials"]
    # The cluster is named by its kube-system namespace UID (nothing else
    # names a bare cluster), like the captured sample.
    ns = kubesim.api_json("/api/v1/namespaces/kube-system")
    assert health["cluster_id"] == ns["metadata"]["uid"]
    assert health["cluster_source"] == "kube-system-uid"
    ua = [r for r in kubesim.requests() if r.get("url", "").startswith("/version")]
    assert ua, "the agent asked /version"
    agent.assert_clean_exit()


def test_kubeconfig_from_environment(nats_server, kubesim, agent_factory):
    agent = agent_factory(["--nats", nats_server.url],
                          env={**FAST, "KUBECONFIG": "/nonexistent/a:" + kubesim.kubeconfig})
    agent.wait_ready(timeout=20)
    assert kubesim.kubeconfig in kube_health(agent)["credentials"]
    agent.assert_clean_exit()


def in_cluster_env(kubesim):
    return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(kubesim.api_port),
            "COLLECT_AGENT_KUBERNETES_SERVICE_ACCOUNT_DIR": kubesim.sa_dir}


def test_in_cluster_credentials_and_token_rotation(nats_server, nats_client, kubesim, agent_factory):
    events = nats_client.subscribe("agent.event.c1")
    nats_client.flush()
    agent = agent_factory(["--nats", nats_server.url, "--cluster-id", "c1"],
                          env={**FAST, **in_cluster_env(kubesim), "COLLECT_AGENT_EVENTS_DEDUP_WINDOW": "0s"})
    agent.wait_ready(timeout=20)
    assert kube_health(agent)["credentials"] == "in-cluster"
    kubesim.emit_events(namespace="a", count=2, type="Warning", reason="BackOff", message="before rotation")
    got = {json.loads(events.next(timeout=10).data)["message"] for _ in range(2)}
    assert got == {"before rotation"}
    # The projected token rotates: the old one is refused from now on. The
    # watch is dropped so the agent must make new requests with the new token.
    old_token = kubesim.token
    kubesim.rotate_token()
    assert kubesim.token != old_token
    assert kubesim.api_get("/version", token=old_token)[0] == 401, "the old token is refused"
    kubesim.fault(drop_watches=True)
    kubesim.emit_events(namespace="a", count=3, type="Warning", reason="BackOff", message="after rotation")
    got = [json.loads(events.next(timeout=20).data)["message"] for _ in range(3)]
    assert got == ["after rotation"] * 3
    assert kube_health(agent)["token_reloads"] >= 1
    # Every watch was cut: each is unready until it is back (one backoff),
    # the metrics collector's as well as the events'.
    agent.wait_ready(timeout=10)
    agent.assert_clean_exit()


def test_wrong_ca_is_rejected_with_a_clear_error(nats_server, kubesim, agent_factory, tmp_path):
    other = tmp_path / "other-ca"
    other.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other",
                    "-keyout", str(other / "ca.key"), "-out", str(other / "ca.crt")],
                   check=True, capture_output=True)
    with open(kubesim.kubeconfig) as f:
        text = f.read()
    bad = tmp_path / "bad-ca.kubeconfig"
    bad.write_text(text.replace(kubesim.ca_file, str(other / "ca.crt")))
    assert str(other / "ca.crt") in bad.read_text()
    agent = agent_factory(["--nats", nats_server.url, "--cluster-id", "c1", "--kubeconfig", str(bad)], env=FAST)
    wait_for(lambda: kube_health(agent)["last_error"], timeout=15, what="a TLS error in /health")
    err = kube_health(agent)["last_error"]
    assert re.search(r"certificate|SSL|TLS", err, re.I), err
    status, body = agent.get("/health/ready")
    assert status == 503
    assert "Kubernetes API" in json.loads(body)["reason"]
    agent.assert_clean_exit()


def test_missing_kubeconfig_file_stops_start_up():
    r = subprocess.run([agent_binary(), "--kubeconfig", "/nonexistent/kubeconfig", "--cluster-id", "c1"],
                       env={"PATH": os.environ["PATH"], "HOME": "/nonexistent",
                            "COLLECT_AGENT_HTTP_LISTEN": "127.0.0.1:0",
                            **{k: v for k, v in os.environ.items() if k.endswith("SAN_OPTIONS")}},
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1
    assert "/nonexistent/kubeconfig" in r.stderr


def test_exec_plugin_is_reported_as_unsupported(tmp_path):
    kc = tmp_path / "exec.kubeconfig"
    kc.write_text("""apiVersion: v1
kind: Config
current-context: eks
clusters:
- name: eks
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
- name: aws
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: aws
      args: [eks, get-token, --cluster-name, prod]
contexts:
- name: eks
  context: {cluster: eks, user: aws}
""")
    r = subprocess.run([agent_binary(), "--kubeconfig", str(kc), "--cluster-id", "c1"],
                       env={"PATH": os.environ["PATH"], "HOME": "/nonexistent",
                            "COLLECT_AGENT_HTTP_LISTEN": "127.0.0.1:0",
                            **{k: v for k, v in os.environ.items() if k.endswith("SAN_OPTIONS")}},
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1
    assert "exec" in r.stderr and "not support" in r.stderr, r.stderr


def test_kube_metrics_are_exported(nats_server, kubesim, agent_factory):
    agent = agent_factory(["--nats", nats_server.url, "--cluster-id", "c1", "--kubeconfig", kubesim.kubeconfig],
                          env=FAST)
    agent.wait_ready(timeout=20)
    text = agent.get("/metrics")[1]
    m = re.search(r'^agent_kube_requests_total\{cluster_id="c1",code="200"\} (\d+)$', text, re.M)
    assert m and int(m.group(1)) >= 2, text
    assert re.search(r'^agent_kube_watch_restarts_total\{cluster_id="c1"\} \d+$', text, re.M)
    proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    agent.assert_clean_exit()
