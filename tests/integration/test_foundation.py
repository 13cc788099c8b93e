"""Issue 2: the daemon connects to a real nats-server, registers, heartbeats,
serves probes and metrics, survives NATS outages and shuts down cleanly."""
import json
import os
import re
import subprocess
import time

import pytest

from lib.agentproc import ROOT, run_agent_once, wait_for
from lib.nats import NatsClient, NatsServer

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def decode(msg, type_name):
    ct = msg.headers.get("Content-Type")
    if ct == "application/json":
        return json.loads(msg.data)
    assert ct == "application/x-protobuf", f"unexpected Content-Type {ct!r}"
    from lib import agentpb
    return agentpb.decode(type_name, msg.data)


def agent_args(nats_server, kubesim, cluster_id="c1", extra=()):
    return ["--nats", nats_server.url, "--cluster-id", cluster_id, "--kubeconfig", kubesim.kubeconfig, *extra]


FAST = {"COLLECT_AGENT_HEARTBEAT_INTERVAL": "200ms", "COLLECT_AGENT_NATS_RECONNECT_WAIT": "100ms",
        "COLLECT_AGENT_NATS_RECONNECT_WAIT_MAX": "500ms"}


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_register_and_heartbeat(nats_server, kubesim, nats_client, agent_factory, encoding):
    reg = nats_client.subscribe("agent.register.c1")
    hb = nats_client.subscribe("agent.heartbeat.c1")
    nats_client.flush()
    agent = agent_factory(agent_args(nats_server, kubesim), env={**FAST, "COLLECT_AGENT_NATS_ENCODING": encoding,
                                                        "POD_NAME": "collect-agent-abc", "NODE_NAME": "node-a",
                                                        "POD_NAMESPACE": "collect-agent"})
    msg = reg.next(timeout=10)
    want_ct = "application/json" if encoding == "json" else "application/x-protobuf"
    assert msg.headers["Content-Type"] == want_ct
    assert msg.headers.get("Nats-Msg-Id")
    info = decode(msg, "AgentInfo")
    assert info["cluster_id"] == "c1"
    assert info["cluster_source"] == "env"
    assert info["agent_id"] == "collect-agent-abc"
    assert info["pod_name"] == "collect-agent-abc"
    assert info["node_name"] == "node-a"
    assert info["pod_namespace"] == "collect-agent"
    assert info["encoding"] == encoding
    assert re.match(r"^\d+\.\d+\.\d+", info["version"])
    assert RFC3339.match(info["started_at"]), info["started_at"]
    # The cluster ID came from the environment, so the first AgentInfo may
    # go out before /version answers: then it comes once more, with the
    # version and its own Nats-Msg-Id.
    if not info.get("kubernetes_version"):
        again = reg.next(timeout=5)
        assert again.headers["Nats-Msg-Id"] == msg.headers["Nats-Msg-Id"] + "-version"
        info = decode(again, "AgentInfo")
    assert info["kubernetes_version"] == "v1.28.7", info
    # Otherwise one AgentInfo per connection: the cluster ID and the
    # connection may become known in either order, and only one of the two
    # may send it.
    with pytest.raises(TimeoutError):
        extra = reg.next(timeout=1.5)
        raise AssertionError(f"a second AgentInfo on the same connection: {extra.headers}")

    beats = [hb.next(timeout=10) for _ in range(3)]
    ids = {m.headers["Nats-Msg-Id"] for m in beats}
    assert len(ids) == 3, "every heartbeat has its own Nats-Msg-Id"
    decoded = [decode(m, "Heartbeat") for m in beats]
    for d in decoded:
        assert d["cluster_id"] == "c1"
        assert d["agent_id"] == "collect-agent-abc"
        assert d["status"] == "ok"
        assert RFC3339.match(d["timestamp"])
    assert decoded[0]["timestamp"] < decoded[2]["timestamp"]
    agent.wait_ready()
    agent.assert_clean_exit()


def test_sigterm_sends_stopping_heartbeat_and_exits_fast(nats_server, kubesim, nats_client, agent_factory):
    hb = nats_client.subscribe("agent.heartbeat.c1")
    reg = nats_client.subscribe("agent.register.c1")
    nats_client.flush()
    agent = agent_factory(agent_args(nats_server, kubesim), env={"COLLECT_AGENT_HEARTBEAT_INTERVAL": "1h"})
    reg.next(timeout=10)
    agent.wait_ready()
    code, took = agent.terminate()
    assert code == 0
    assert took < 5.0
    last = decode(hb.next(timeout=5), "Heartbeat")
    assert last["status"] == "stopping"
    agent.assert_clean_exit()


def test_readiness_follows_nats_and_agent_reregisters(nats_server, kubesim, nats_client, agent_factory, tmp_path):
    agent = agent_factory(agent_args(nats_server, kubesim), env=FAST)
    agent.wait_ready()
    status, body = agent.get("/health/ready")
    assert status == 200
    nats_client.close()
    nats_server.stop()
    wait_for(lambda: agent.get("/health/ready")[0] == 503, timeout=15, what="ready 503 after NATS stops")
    status, body = agent.get("/health/ready")
    assert "NATS" in json.loads(body)["reason"]
    assert agent.get("/health/live")[0] == 200, "an outage is not a liveness failure"
    nats_server.start()
    client = NatsClient(nats_server.url)
    try:
        reg = client.subscribe("agent.register.c1")
        client.flush()
        agent.wait_ready(timeout=20)
        info = decode(reg.next(timeout=10), "AgentInfo")
        assert info["cluster_id"] == "c1"
    finally:
        client.close()
    metrics = agent.get("/metrics")[1]
    m = re.search(r'^agent_nats_reconnects_total\{cluster_id="c1"\} (\d+)', metrics, re.M)
    assert m and int(m.group(1)) >= 1, metrics
    agent.assert_clean_exit()


def test_nats_down_at_start_keeps_retrying(agent_factory, kubesim, tmp_path):
    server = NatsServer()
    agent = agent_factory(["--nats", server.url, "--cluster-id", "c1", "--kubeconfig", kubesim.kubeconfig], env=FAST)
    status, body = agent.get("/health/ready")
    assert status == 503
    assert "NATS" in json.loads(body)["reason"]
    time.sleep(0.5)
    assert agent.proc.poll() is None
    server.start()
    try:
        client = NatsClient(server.url)
        hb = client.subscribe("agent.heartbeat.c1")
        client.flush()
        agent.wait_ready(timeout=20)
        assert decode(hb.next(timeout=10), "Heartbeat")["status"] == "ok"
        client.close()
        agent.assert_clean_exit()
    finally:
        server.stop()


def test_not_ready_without_cluster_id_or_credentials(nats_server, agent_factory):
    # Only the env and config sources are allowed and neither names the
    # cluster; there are no Kubernetes credentials either.
    agent = agent_factory(["--nats", nats_server.url], env={**FAST, "COLLECT_AGENT_CLUSTER_DETECT": "env,config"})
    time.sleep(0.5)
    status, body = agent.get("/health/ready")
    assert status == 503
    reason = json.loads(body)["reason"]
    assert "cluster ID" in reason
    assert "no Kubernetes credentials" in reason
    assert agent.get("/health/live")[0] == 200
    # /health says the same as /health/ready, in its status code too.
    status, body = agent.get("/health")
    health = json.loads(body)
    assert health["ready"] is False and health["status"] == "degraded"
    assert status == 503
    agent.assert_clean_exit()


def test_not_ready_until_api_server_answers(nats_server, nats_client, kubesim, agent_factory):
    kubesim.fault(status=503, seconds=3)
    agent = agent_factory(agent_args(nats_server, kubesim), env=FAST)
    status, body = agent.get("/health/ready")
    assert status == 503
    assert "Kubernetes API" in json.loads(body)["reason"]
    agent.wait_ready(timeout=30)
    agent.assert_clean_exit()


def test_metrics_pass_promtool(nats_server, kubesim, agent_factory):
    agent = agent_factory(agent_args(nats_server, kubesim), env=FAST)
    agent.wait_ready()
    status, text = agent.get("/metrics")
    assert status == 200
    proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for family in ["agent_info", "agent_running", "agent_connected", "agent_uptime_seconds",
                   "agent_metrics_queue_size", "agent_command_queue_size", "agent_result_queue_size",
                   "agent_nats_reconnects_total", "agent_commands_total", "agent_command_duration_seconds",
                   "process_resident_memory_bytes", "process_cpu_seconds_total"]:
        assert re.search(rf"^# TYPE {family} ", text, re.M), f"{family} missing"
    assert re.search(r'^agent_connected\{cluster_id="c1"\} 1$', text, re.M)
    assert re.search(r'^agent_running\{cluster_id="c1"\} 1$', text, re.M)
    agent.assert_clean_exit()


def test_health_endpoints(nats_server, kubesim, agent_factory):
    agent = agent_factory(agent_args(nats_server, kubesim), env=FAST)
    agent.wait_ready()
    health = agent.health()
    assert health["cluster_id"] == "c1"
    assert agent.get("/health")[0] == 200
    assert health["nats"]["connected"] is True
    assert agent.get("/nope")[0] == 404
    agent.assert_clean_exit()


@pytest.mark.parametrize("content_type,payload,reason", [
    ("application/json", b"{not json", "does not decode as JSON"),
    ("application/json", b'{"tool":"kubectl"}', "id"),
    ("application/x-protobuf", b"\xff\xff\xff\xff\x0f", "does not decode as protobuf"),
])
def test_bad_command_is_rejected_and_agent_keeps_running(nats_server, kubesim, nats_client, agent_factory,
                                                         content_type, payload, reason):
    agent = agent_factory(agent_args(nats_server, kubesim), env=FAST)
    agent.wait_ready()
    results = nats_client.subscribe("agent.result.c1")
    nats_client.flush()
    reply = nats_client.request("agent.command.c1", payload, headers={"Content-Type": content_type}, timeout=10)
    result = json.loads(reply.data)
    assert result["status"] == "rejected"
    assert reason in result["error"]
    assert json.loads(results.next(timeout=5).data)["status"] == "rejected"
    assert agent.get("/health/ready")[0] == 200
    assert any(r.get("component") == "audit" for r in agent.log_records())
    agent.assert_clean_exit()


def test_results_go_only_to_inbox_reply_subjects(nats_server, kubesim, nats_client, agent_factory):
    """A command whose reply subject is not a request inbox (here the
    agent's own event subject) must not make the agent publish there: the
    result goes to agent.result.<id> alone and the audit line says why. A
    reply under an exec.reply_prefixes entry is answered."""
    agent = agent_factory(agent_args(nats_server, kubesim), env=FAST)
    agent.wait_ready()
    events = nats_client.subscribe("agent.event.c1")
    results = nats_client.subscribe("agent.result.c1")
    nats_client.flush()
    cmd = b'{"id":"r1","tool":"kubectl","action":"get","args":["pods"]}'
    nats_client.publish("agent.command.c1", cmd, headers={"Content-Type": "application/json"},
                        reply="agent.event.c1")
    assert json.loads(results.next(timeout=5).data)["command_id"] == "r1"
    with pytest.raises(TimeoutError):
        events.next(timeout=1.0)
    audit = [r for r in agent.log_records() if r.get("component") == "audit" and r.get("command_id") == "r1"]
    assert audit and "exec.reply_prefixes" in audit[0]["reply_sent"], audit
    reply = nats_client.request("agent.command.c1", cmd.replace(b"r1", b"r2"),
                                headers={"Content-Type": "application/json"}, timeout=10)
    assert json.loads(reply.data)["command_id"] == "r2"
    agent.assert_clean_exit()


def test_audit_of_a_command_flood_is_rate_limited(nats_server, kubesim, nats_client, agent_factory):
    """500 hostile commands at once: every one is refused and counted, but
    the audit log gets a bounded number of lines, and what it left out is
    counted in a line of its own."""
    agent = agent_factory(agent_args(nats_server, kubesim), env=FAST)
    agent.wait_ready()
    for i in range(500):
        nats_client.publish("agent.command.c1", b"{not json", headers={"Content-Type": "application/json"})
    nats_client.flush()
    def counted():
        m = agent.get("/metrics")[1]
        rejected = re.search(r'^agent_commands_total\{cluster_id="c1",status="rejected"\} (\d+)$', m, re.M)
        dropped = re.search(r'^agent_nats_dropped_messages_total\{cluster_id="c1"\} (\d+)$', m, re.M)
        if rejected and dropped and int(rejected.group(1)) + int(dropped.group(1)) == 500:
            return int(rejected.group(1))
        return None
    # Refused, or dropped by the command subscription's pending limit (64
    # messages): every one accounted for.
    rejected = wait_for(counted, timeout=20, what="500 commands accounted for")
    assert rejected >= 64
    wait_for(lambda: any(r.get("msg", "").startswith("rejected commands not logged")
                         for r in agent.log_records()), timeout=10, what="the audit summary line")
    audit = [r for r in agent.log_records() if r.get("component") == "audit"]
    lines = [r for r in audit if r.get("msg") == "command rejected"]
    summarized = sum(int(r["count"]) for r in audit if "count" in r) + \
        sum(int(r["not_logged_before"]) for r in lines if r.get("not_logged_before"))
    assert len(lines) < 100, len(lines)
    assert len(lines) + summarized == rejected, (len(lines), summarized, rejected)
    agent.assert_clean_exit()


def test_cli_version_help_and_default_config():
    r = run_agent_once(["--version"])
    assert r.returncode == 0 and r.stdout.startswith("collect-agent ")
    r = run_agent_once(["--help"])
    assert r.returncode == 0 and "--check-config" in r.stdout
    r = run_agent_once(["--print-default-config"])
    assert r.returncode == 0
    with open(os.path.join(ROOT, "config", "collect-agent.yaml")) as f:
        assert r.stdout == f.read()
    r = run_agent_once(["--bogus"])
    assert r.returncode == 2


INVALID = [
    ({"COLLECT_AGENT_NATS_SERVERS": "http://x:4222"}, "nats.servers"),
    ({"COLLECT_AGENT_NATS_SERVERS": "nats://host:99999"}, "nats.servers"),
    ({"COLLECT_AGENT_NATS_RECONNECT_WAIT": "soon"}, "nats.reconnect_wait"),
    ({"COLLECT_AGENT_NATS_MAX_RECONNECTS": "-5"}, "nats.max_reconnects"),
    ({"COLLECT_AGENT_HEARTBEAT_INTERVAL": "0s"}, "heartbeat.interval"),
    ({"COLLECT_AGENT_METRICS_INTERVAL": "abc"}, "metrics.interval"),
    ({"COLLECT_AGENT_EVENTS_BUFFER_SIZE": "0"}, "events.buffer_size"),
    ({"COLLECT_AGENT_LOG_LEVEL": "loud"}, "log.level"),
    ({"COLLECT_AGENT_HTTP_LISTEN": "127.0.0.1:70000"}, "http.listen"),
    ({"COLLECT_AGENT_NATS_ENCODING": "xml"}, "nats.encoding"),
    ({"COLLECT_AGENT_EVENTS_NAMESPACES": "Bad_NS"}, "events.namespaces"),
    ({"COLLECT_AGENT_EVENTS_MESSAGE_REGEX": "a(b"}, "events.message_regex"),
]


@pytest.mark.parametrize("env,key", INVALID)
def test_invalid_config_names_the_key(env, key):
    r = run_agent_once(["--check-config"], env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert key in r.stderr, r.stderr
    bad_value = list(env.values())[0]
    assert bad_value in r.stderr, r.stderr


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("nats:\n  servers: [nats://a:4222\nheartbeat:\n  interval: 1s\n")
    r = run_agent_once(["--check-config", "--config", str(path)])
    assert r.returncode == 2
    assert re.search(r"line \d+", r.stderr), r.stderr


def test_unknown_key_warns_but_starts(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("nats:\n  servers: [nats://127.0.0.1:4222]\n  serverz: [x]\n")
    r = run_agent_once(["--check-config", "--config", str(path)])
    assert r.returncode == 0, r.stderr
    assert "nats.serverz" in r.stderr


def test_unreadable_config_file(tmp_path):
    r = run_agent_once(["--check-config", "--config", str(tmp_path / "missing.yaml")])
    assert r.returncode == 2
    assert "missing.yaml" in r.stderr


def test_liveness_fails_when_nats_reconnects_run_out(nats_server, kubesim, agent_factory):
    """With a finite nats.max_reconnects, nats.c closes the connection for
    good when they run out; only a restart helps, so liveness says so."""
    agent = agent_factory(agent_args(nats_server, kubesim),
                          env={**FAST, "COLLECT_AGENT_NATS_MAX_RECONNECTS": "2"})
    agent.wait_ready()
    assert agent.get("/health/live")[0] == 200
    nats_server.stop()
    wait_for(lambda: agent.get("/health/live")[0] == 503, timeout=20, what="live 503 after reconnects ran out")
    body = json.loads(agent.get("/health/live")[1])
    assert "closed for good" in body["reason"] and "max_reconnects" in body["reason"]
    agent.assert_clean_exit()
