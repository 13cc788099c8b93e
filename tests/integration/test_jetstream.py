"""Issue 12, JetStream mode: events reach a real JetStream stream
(`nats-server -js -sd <store>`) acknowledged, exactly once and in order per
object, through retries, a missing stream, a killed or stopped server and a
full pending buffer; /metrics and /health say what is pending and why.

What the stream holds is read back with $JS.API.STREAM.MSG.GET (the
helpers in tests/lib/nats.py), not from a live subscription, so a message
the stream did not store counts as missing even if it was sent."""
import json
import os
import signal
import threading
import time

import pytest

from lib.agentproc import wait_for
from lib.events_helpers import decode_event, field, metric
from lib.nats import (JetStreamError, NatsClient, NatsServer, js_api, js_stream_create, js_stream_info,
                      js_stream_messages)

CID = "c1"
STREAM = "AGENT_c1"
SUBJECT = f"agent.event.{CID}"
STORED = [f"agent.{kind}.{CID}" for kind in ("register", "heartbeat", "event", "metrics", "result")]


@pytest.fixture
def js_server(tmp_path):
    server = NatsServer(args=["-js", "-sd", str(tmp_path / "jetstream")],
                        log_path=str(tmp_path / "nats-server.log"))
    server.start()
    yield server
    if server.proc and server.running:
        try:
            os.kill(server.proc.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    server.stop()


def client_for(server):
    return NatsClient(server.url)


def js_env(**over):
    env = {
        "COLLECT_AGENT_NATS_JETSTREAM_ENABLED": "true",
        "COLLECT_AGENT_NATS_JETSTREAM_CREATE_STREAM": "true",
        "COLLECT_AGENT_NATS_JETSTREAM_ACK_TIMEOUT": "1s",
        "COLLECT_AGENT_NATS_JETSTREAM_RETRY_BACKOFF": "100ms",
        "COLLECT_AGENT_NATS_JETSTREAM_RETRY_BACKOFF_MAX": "1s",
        "COLLECT_AGENT_NATS_RECONNECT_WAIT": "200ms",
        "COLLECT_AGENT_NATS_RECONNECT_WAIT_MAX": "1s",
        "COLLECT_AGENT_EVENTS_DEDUP_WINDOW": "0s",
        "COLLECT_AGENT_METRICS_ENABLED": "false",
    }
    env.update({f"COLLECT_AGENT_{k}": v for k, v in over.items()})
    return env


def agent_args(server, kubesim):
    return ["--nats", server.url, "--kubeconfig", kubesim.kubeconfig, "--cluster-id", CID]


def stored_events(server, subject=SUBJECT):
    """(decoded event, headers) of every event the stream holds, in stream
    order."""
    with client_for(server) as nc:
        return [(decode_event(m), m.headers) for m in js_stream_messages(nc, STREAM, subject)]


def stream_count(server, subject=SUBJECT):
    with client_for(server) as nc:
        try:
            info = js_api(nc, f"STREAM.INFO.{STREAM}", {"subjects_filter": subject})
        except JetStreamError:
            return 0
    return int(info["state"].get("subjects", {}).get(subject, 0))


def wait_stored(server, n, timeout=60):
    wait_for(lambda: stream_count(server) >= n, timeout=timeout, what=f"{n} events in the stream")


def nats_health(agent):
    return agent.health()["nats"]


def js_metric(agent, name):
    return metric(agent, name, {"cluster_id": CID})


def emit_objects(kubesim, objects, per_object, tag, namespace="js"):
    """per_object events for each object name, round robin; returns
    {object name: [uid in creation order]}."""
    order = {o: [] for o in objects}
    for i in range(per_object):
        for o in objects:
            r = kubesim.emit_events(namespace=namespace, count=1, reason="BackOff", name=o, uids=True,
                                    message=f"{tag} {o} #{i}")
            order[o] += r["uids"]
    return order


def assert_exactly_once_in_order(stored, order):
    """Every uid of order stored exactly once, no other, and per object in
    creation order."""
    uids = [e["uid"] for e, _ in stored]
    want = {u for us in order.values() for u in us}
    dup = {u for u in uids if uids.count(u) > 1}
    assert not dup, f"stored twice: {sorted(dup)[:5]}"
    assert set(uids) == want, f"missing {len(want - set(uids))}, unexpected {len(set(uids) - want)}"
    for obj, created in order.items():
        seen = [e["uid"] for e, _ in stored if field(e, "involved_object.name") == obj]
        assert seen == created, f"order of {obj}: stream {seen[:8]}... created {created[:8]}..."


# ------------------------------------------------------------------ 1

@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_events_stored_once_each_with_acks(js_server, kubesim, agent_factory, encoding):
    agent = agent_factory(agent_args(js_server, kubesim), env=js_env(NATS_ENCODING=encoding))
    agent.wait_ready(timeout=30)
    order = emit_objects(kubesim, ["p0", "p1", "p2"], 40, "once")
    wait_stored(js_server, 120)

    stored = stored_events(js_server)
    assert_exactly_once_in_order(stored, order)
    want_ct = "application/json" if encoding == "json" else "application/x-protobuf"
    for e, h in stored:
        assert h["Content-Type"] == want_ct
        assert h["Nats-Msg-Id"] == f"{e['uid']}-{e['resource_version']}"

    # The stream the agent created: its subjects, file storage, 2 m window.
    with client_for(js_server) as nc:
        cfg = js_stream_info(nc, STREAM)["config"]
    assert sorted(cfg["subjects"]) == sorted(STORED)
    assert cfg["duplicate_window"] == 120 * 10**9
    assert cfg["storage"] == "file"

    wait_for(lambda: js_metric(agent, "agent_nats_js_acks_pending") == 0, timeout=20, what="no acks pending")
    assert js_metric(agent, "agent_nats_js_acked_total") >= 120
    assert js_metric(agent, "agent_nats_js_dropped_total") == 0
    h = nats_health(agent)
    assert h["jetstream"]["stream"] == STREAM and h["jetstream"]["state"] == "ok", h
    wait_for(lambda: nats_health(agent)["confirmed_seq"] == nats_health(agent)["published_seq"],
             timeout=20, what="every publish confirmed")
    agent.assert_clean_exit()


def test_same_msg_id_sent_again_is_deduplicated(js_server, kubesim, agent_factory):
    agent = agent_factory(agent_args(js_server, kubesim), env=js_env())
    agent.wait_ready(timeout=30)
    emit_objects(kubesim, ["d0"], 5, "dup")
    wait_stored(js_server, 5)
    (e, h), = stored_events(js_server)[:1]
    with client_for(js_server) as nc:
        before = js_stream_info(nc, STREAM)["state"]["messages"]
        # What a retry after a lost acknowledgement (or a new leader) sends.
        ack = json.loads(nc.request(SUBJECT, json.dumps(e).encode(),
                                    headers={"Nats-Msg-Id": h["Nats-Msg-Id"],
                                             "Content-Type": "application/json"}).data)
        assert ack.get("duplicate") is True, ack
        assert js_stream_info(nc, STREAM)["state"]["messages"] == before
    agent.assert_clean_exit()


# ------------------------------------------------------------------ 2

class Burst(threading.Thread):
    """Events for a few objects, one at a time, until stopped; keeps the
    creation order per object."""

    def __init__(self, kubesim, objects, tag):
        super().__init__(daemon=True)
        self.kubesim, self.objects, self.tag = kubesim, objects, tag
        self.order = {o: [] for o in objects}
        self.stop_ev = threading.Event()
        self.n = 0

    def run(self):
        i = 0
        while not self.stop_ev.is_set():
            o = self.objects[i % len(self.objects)]
            r = self.kubesim.emit_events(namespace="burst", count=1, reason="BackOff", name=o, uids=True,
                                         message=f"{self.tag} {o} #{i}")
            self.order[o] += r["uids"]
            self.n += 1
            i += 1
            time.sleep(0.002)

    def stop(self):
        self.stop_ev.set()
        self.join(timeout=30)


def test_server_killed_and_restarted_during_a_burst(js_server, kubesim, agent_factory):
    agent = agent_factory(agent_args(js_server, kubesim), env=js_env())
    agent.wait_ready(timeout=30)
    burst = Burst(kubesim, ["k0", "k1", "k2", "k3"], "kill")
    burst.start()
    try:
        wait_for(lambda: stream_count(js_server) >= 100, timeout=60, what="events before the kill")
        js_server.stop(kill=True)  # SIGKILL: no goodbye, the store as it was
        time.sleep(1.5)
        js_server.start()          # same port, same store directory
        n_at_restart = burst.n
        wait_for(lambda: burst.n >= n_at_restart + 150, timeout=60, what="more events after the restart")
    finally:
        burst.stop()
    total = sum(len(v) for v in burst.order.values())
    wait_stored(js_server, total, timeout=90)
    time.sleep(1)
    assert_exactly_once_in_order(stored_events(js_server), burst.order)
    assert js_metric(agent, "agent_nats_js_dropped_total") == 0
    agent.assert_clean_exit()


# ------------------------------------------------------------------ 3

@pytest.mark.parametrize("mode", ["jetstream", "core"])
def test_confirmed_stops_while_the_server_is_stopped_and_catches_up(js_server, kubesim, agent_factory,
                                                                    mode):
    env = js_env() if mode == "jetstream" else js_env(NATS_JETSTREAM_ENABLED="false")
    if mode == "core":
        with client_for(js_server) as nc:  # core messages land in a stream all the same
            js_stream_create(nc, STREAM, STORED)
    agent = agent_factory(agent_args(js_server, kubesim), env=env)
    agent.wait_ready(timeout=30)
    first = emit_objects(kubesim, ["s0", "s1"], 10, "before")
    wait_stored(js_server, 20)
    wait_for(lambda: nats_health(agent)["confirmed_seq"] == nats_health(agent)["published_seq"],
             timeout=20, what="confirmed before the stop")

    os.kill(js_server.proc.pid, signal.SIGSTOP)
    try:
        h0 = nats_health(agent)
        second = emit_objects(kubesim, ["s0", "s1"], 30, "during")
        wait_for(lambda: nats_health(agent)["published_seq"] >= h0["published_seq"] + 60, timeout=20,
                 what="published grows by the 60 events")
        # Nothing is confirmed while the server does not answer.
        c1 = nats_health(agent)["confirmed_seq"]
        time.sleep(2)
        h2 = nats_health(agent)
        assert h2["confirmed_seq"] == c1, (c1, h2)
        assert h2["published_seq"] > h2["confirmed_seq"], h2
        if mode == "jetstream":
            pending = js_metric(agent, "agent_nats_js_acks_pending")
            assert pending > 0
            assert js_metric(agent, "agent_nats_js_pending_bytes") <= 4 * 1024 * 1024
    finally:
        os.kill(js_server.proc.pid, signal.SIGCONT)

    wait_for(lambda: nats_health(agent)["confirmed_seq"] >= h2["published_seq"], timeout=60,
             what="confirmed catches up")
    if mode == "jetstream":
        order = {o: first[o] + second[o] for o in first}
        wait_stored(js_server, 80, timeout=60)
        assert_exactly_once_in_order(stored_events(js_server), order)
        assert js_metric(agent, "agent_nats_js_dropped_total") == 0
        wait_for(lambda: js_metric(agent, "agent_nats_js_acks_pending") == 0, timeout=30, what="drained")
    agent.assert_clean_exit()


# ------------------------------------------------------------------ 4

def test_missing_stream_is_said_and_retried_until_created(js_server, kubesim, agent_factory):
    agent = agent_factory(agent_args(js_server, kubesim), env=js_env(NATS_JETSTREAM_CREATE_STREAM="false"))
    wait_for(lambda: "not found" in agent.get("/health/ready")[1], timeout=30, what="not ready: no stream")
    code, body = agent.get("/health/ready")
    assert code == 503 and f"JetStream stream {STREAM} not found" in body, body
    assert nats_health(agent)["jetstream"]["state"] == "stream missing"
    assert any("not found" in r.get("msg", "") and r.get("level") == "error" for r in agent.log_records()), \
        agent.logs()[-2000:]

    order = emit_objects(kubesim, ["m0", "m1"], 15, "missing")
    wait_for(lambda: js_metric(agent, "agent_nats_js_retries_total") >= 2, timeout=30, what="retries")
    assert js_metric(agent, "agent_nats_js_acks_pending") > 0
    assert "no responders" in (nats_health(agent)["jetstream"]["last_error"] or "")

    with client_for(js_server) as nc:
        js_stream_create(nc, STREAM, STORED)
    wait_stored(js_server, 30, timeout=60)
    assert_exactly_once_in_order(stored_events(js_server), order)
    agent.wait_ready(timeout=30)
    assert nats_health(agent)["jetstream"]["state"] == "ok"
    agent.assert_clean_exit()


def test_ready_again_once_the_stream_exists_with_nothing_pending(js_server, kubesim, agent_factory):
    """With nothing durable pending no publish notices the stream appear:
    the agent looks it up again every retry_backoff_max (1s here), so
    /health/ready turns 200 without an event, and logs the missing stream
    once, not on every look. Before the fix it stayed 503 until the next
    reconnect or publish."""
    agent = agent_factory(agent_args(js_server, kubesim), env=js_env(NATS_JETSTREAM_CREATE_STREAM="false"))
    wait_for(lambda: "not found" in agent.get("/health/ready")[1], timeout=30, what="not ready: no stream")
    assert nats_health(agent)["jetstream"]["pending"] == 0, nats_health(agent)
    time.sleep(3)  # a few looks that still find nothing
    assert agent.get("/health/ready")[0] == 503
    with client_for(js_server) as nc:
        js_stream_create(nc, STREAM, STORED)
    agent.wait_ready(timeout=10)
    js = nats_health(agent)["jetstream"]
    assert js["state"] == "ok" and js["pending"] == 0, js
    missing = [r for r in agent.log_records() if "not found" in r.get("msg", "") and r.get("level") == "error"]
    assert len(missing) == 1, missing
    assert any("publishing through JetStream" in r.get("msg", "") for r in agent.log_records())
    agent.assert_clean_exit()


def test_full_pending_buffer_drops_the_oldest(js_server, kubesim, agent_factory):
    agent = agent_factory(agent_args(js_server, kubesim),
                          env=js_env(NATS_JETSTREAM_CREATE_STREAM="false",
                                     NATS_JETSTREAM_MAX_PENDING_BYTES="65536",
                                     NATS_JETSTREAM_RETRY_BACKOFF="1s"))
    wait_for(lambda: "not found" in agent.get("/health/ready")[1], timeout=30, what="no stream")
    order = emit_objects(kubesim, ["f0"], 300, "full " + "x" * 200)
    created = order["f0"]
    wait_for(lambda: js_metric(agent, "agent_events_published_total") == 300, timeout=30,
             what="all events handed to the bus")
    dropped = js_metric(agent, "agent_nats_js_dropped_total")
    assert dropped > 0
    assert js_metric(agent, "agent_nats_js_pending_bytes") <= 65536
    assert any("dropped" in r.get("msg", "") for r in agent.log_records())

    with client_for(js_server) as nc:
        js_stream_create(nc, STREAM, STORED)
    wait_for(lambda: js_metric(agent, "agent_nats_js_acks_pending") == 0, timeout=60, what="drained")
    uids = [e["uid"] for e, _ in stored_events(js_server)]
    assert len(uids) + dropped == 300
    # The newest survive, in order; only the message in flight when the
    # buffer filled may be older than the rest.
    tail = created[-(len(uids) - 1):]
    assert uids[1:] == tail or uids == created[-len(uids):], (uids[:3], created[:3])
    agent.assert_clean_exit()


def test_burst_faster_than_the_stream_is_held_back_not_dropped(js_server, kubesim, agent_factory):
    """While the stream acknowledges, a full buffer pushes back on the
    watcher instead of dropping: every event of the burst is stored."""
    agent = agent_factory(agent_args(js_server, kubesim),
                          env=js_env(NATS_JETSTREAM_MAX_PENDING_BYTES="65536"))
    agent.wait_ready(timeout=30)
    r = kubesim.emit_events(namespace="b", count=1500, reason="BackOff", name="b0", uids=True,
                            message="burst {i} " + "y" * 300)
    wait_stored(js_server, 1500, timeout=120)
    stored = stored_events(js_server)
    assert [e["uid"] for e, _ in stored] == r["uids"]
    assert js_metric(agent, "agent_nats_js_dropped_total") == 0
    assert js_metric(agent, "agent_events_dropped_total") == 0
    agent.assert_clean_exit()


def test_backpressure_policy_keeps_the_backlog_upstream(js_server, kubesim, agent_factory):
    """nats.jetstream.when_full: backpressure: with no stream, the bus
    refuses what does not fit and the watcher keeps it; nothing is lost
    once the stream exists."""
    agent = agent_factory(agent_args(js_server, kubesim),
                          env=js_env(NATS_JETSTREAM_CREATE_STREAM="false",
                                     NATS_JETSTREAM_MAX_PENDING_BYTES="65536",
                                     NATS_JETSTREAM_WHEN_FULL="backpressure"))
    wait_for(lambda: "not found" in agent.get("/health/ready")[1], timeout=30, what="no stream")
    order = emit_objects(kubesim, ["w0"], 300, "wait " + "x" * 200)
    wait_for(lambda: js_metric(agent, "agent_nats_js_pending_bytes") > 32768, timeout=30, what="bus full")
    time.sleep(1)
    assert js_metric(agent, "agent_nats_js_dropped_total") == 0
    assert js_metric(agent, "agent_nats_js_pending_bytes") <= 65536
    with client_for(js_server) as nc:
        js_stream_create(nc, STREAM, STORED)
    wait_stored(js_server, 300, timeout=90)
    assert_exactly_once_in_order(stored_events(js_server), order)
    agent.assert_clean_exit()


def test_a_stream_that_captures_the_subject_is_refused_not_used(js_server, kubesim, agent_factory):
    """Another stream holds agent.event.c1 and AGENT_c1 does not exist: the
    agent's publishes carry Nats-Expected-Stream, so nothing lands in the
    wrong stream; /health/ready says why; once the right stream exists
    (and the other lets go of the subject) every event arrives."""
    with client_for(js_server) as nc:
        js_stream_create(nc, "OTHER", [SUBJECT])
    agent = agent_factory(agent_args(js_server, kubesim), env=js_env(NATS_JETSTREAM_CREATE_STREAM="false"))
    order = emit_objects(kubesim, ["o0"], 10, "other")
    wait_for(lambda: "expected stream" in (nats_health(agent)["jetstream"]["last_error"] or ""), timeout=30,
             what="the stream mismatch reported")
    code, body = agent.get("/health/ready")
    assert code == 503 and "JetStream unavailable" in body and "expected stream" in body, body
    with client_for(js_server) as nc:
        assert js_stream_info(nc, "OTHER")["state"]["messages"] == 0
        js_api(nc, "STREAM.DELETE.OTHER")
        js_stream_create(nc, STREAM, STORED)
    wait_stored(js_server, 10, timeout=60)
    assert_exactly_once_in_order(stored_events(js_server), order)
    agent.wait_ready(timeout=30)
    agent.assert_clean_exit()


def test_a_message_the_stream_refuses_for_good_is_dropped_not_retried(js_server, kubesim, agent_factory):
    """The stream refuses one event for good (larger than its
    max_msg_size: JSStreamMessageExceedsMaximumErr, 10054): it is dropped
    and counted lost, logged once, and every later event is stored in
    order; the agent stays ready. Before the fix it was retried for ever,
    readiness went 503 and nothing after it was sent."""
    with client_for(js_server) as nc:
        js_api(nc, f"STREAM.CREATE.{STREAM}", {"name": STREAM, "subjects": STORED, "storage": "file",
                                               "retention": "limits", "num_replicas": 1,
                                               "duplicate_window": int(120e9), "max_msg_size": 2048})
    agent = agent_factory(agent_args(js_server, kubesim), env=js_env(NATS_JETSTREAM_CREATE_STREAM="false"))
    agent.wait_ready(timeout=30)
    emit_objects(kubesim, ["r0"], 1, "big " + "x" * 4000)
    wait_for(lambda: js_metric(agent, "agent_nats_publish_lost_total") >= 1, timeout=30, what="big one lost")
    order = emit_objects(kubesim, ["r1"], 20, "small")
    wait_stored(js_server, 20, timeout=30)
    assert_exactly_once_in_order(stored_events(js_server), order)
    assert js_metric(agent, "agent_nats_publish_lost_total") == 1
    assert js_metric(agent, "agent_nats_js_retries_total") == 0
    js = nats_health(agent)["jetstream"]
    assert js["state"] == "ok" and js["pending"] == 0, js
    assert "maximum" in (js["last_error"] or ""), js
    code, body = agent.get("/health/ready")
    assert code == 200, body
    refused = [r for r in agent.log_records() if "refused for good" in r.get("msg", "")]
    assert len(refused) == 1, refused
    agent.assert_clean_exit()


def test_jetstream_mode_fits_the_default_memory_budget():
    """Turning JetStream on with every other default passes --check-config
    (the budget stays under 90 % of the Deployment's 128 MiB); the old
    boolean form still works and names the new key."""
    from lib.agentproc import run_agent_once
    r = run_agent_once(["--check-config"], env={"COLLECT_AGENT_NATS_JETSTREAM_ENABLED": "true",
                                                "COLLECT_AGENT_CLUSTER_ID": "c1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "nats.jetstream.max_pending_bytes" in r.stdout
    r = run_agent_once(["--check-config"], env={"COLLECT_AGENT_NATS_JETSTREAM": "true",
                                                "COLLECT_AGENT_CLUSTER_ID": "c1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "use nats.jetstream.enabled" in r.stdout + r.stderr
    r = run_agent_once(["--check-config"], env={"COLLECT_AGENT_NATS_JETSTREAM_STREAM_NAME": "a.b"})
    assert r.returncode == 2 and "nats.jetstream.stream_name" in r.stderr, r.stderr


def test_an_existing_stream_that_weakens_the_guarantees_is_logged(js_server, kubesim, agent_factory):
    """The agent uses a stream that exists as it is, and says what in it
    matters: a duplicate window shorter than configured, memory storage, a
    subject of the agent's it does not hold."""
    with client_for(js_server) as nc:
        js_stream_create(nc, STREAM, [SUBJECT, f"agent.heartbeat.{CID}"], duplicate_window_s=1, storage="memory")
    agent = agent_factory(agent_args(js_server, kubesim), env=js_env())
    agent.wait_ready(timeout=30)
    order = emit_objects(kubesim, ["e0"], 5, "existing")
    wait_stored(js_server, 5)
    assert_exactly_once_in_order(stored_events(js_server), order)
    msgs = [(r.get("msg", ""), r.get("subject")) for r in agent.log_records() if r.get("level") == "warn"]
    assert any("duplicate window is shorter" in m for m, _ in msgs), msgs
    assert any("in memory" in m for m, _ in msgs), msgs
    missing = {s for m, s in msgs if "does not hold" in m}
    assert missing == {f"agent.register.{CID}", f"agent.metrics.{CID}", f"agent.result.{CID}"}, missing
    with client_for(js_server) as nc:  # the agent did not change it
        cfg = js_stream_info(nc, STREAM)["config"]
    assert cfg["duplicate_window"] == 10**9 and cfg["storage"] == "memory"
    agent.assert_clean_exit()


def test_metric_samples_go_through_the_stream(js_server, kubesim, agent_factory):
    """Samples take the same acknowledged path as events: every part of a
    sample is stored once, with its Nats-Msg-Id, within max_payload less
    the room the JetStream header needs."""
    kubesim.populate(namespaces=3, nodes=2, pods=300, seed=5)
    agent = agent_factory(agent_args(js_server, kubesim),
                          env=js_env(METRICS_ENABLED="true", METRICS_INTERVAL="1s"))
    agent.wait_ready(timeout=30)
    subject = f"agent.metrics.{CID}"
    wait_for(lambda: stream_count(js_server, subject) >= 3, timeout=60, what="three samples in the stream")
    with client_for(js_server) as nc:
        stored = js_stream_messages(nc, STREAM, subject)
    ids = [m.headers["Nats-Msg-Id"] for m in stored]
    assert len(ids) == len(set(ids)), ids
    for m in stored:
        s = json.loads(m.data)
        # the 2 populated nodes and the simulator's own
        assert s["cluster_id"] == CID and s["summary"]["nodes_total"] == 3, s.get("summary")
    assert js_metric(agent, "agent_nats_js_ack_failures_total") == 0
    agent.assert_clean_exit()
