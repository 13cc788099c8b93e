"""collect-agent against a real kube-apiserver v1.28 (+ etcd), reading it
with the ServiceAccount token that deploy/'s ClusterRole grants, publishing
to a real nats-server.

Objects are created through the real API with the admin token. The server
is shared by the session, so every test works in its own namespace and
judges what arrives against what it created (plus the Warning events that
already existed, which an agent's first LIST legitimately publishes)."""
import json
import time
import uuid

import pytest

from envtest_cluster import TcpRelay
from lib.agentproc import wait_for
from lib.events_helpers import RFC3339, EventCollector, event_stats, field, metric, parse_time

# docs/EVENTS.md, classification table (reason -> category, severity).
CLASS = {
    "BackOff": ("crash", "warning"),
    "FailedScheduling": ("scheduling", "warning"),
    "FailedMount": ("storage", "warning"),
    "OOMKilling": ("oom", "warning"),
    "NetworkNotReady": ("network", "critical"),
}


# ------------------------------------------------------------------ helpers

def ts(t=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def new_event(namespace, reason="BackOff", etype="Warning", kind="Pod", message=None, count=1):
    """A core/v1 Event as a kubelet would write it (count 1, timestamps now)."""
    obj = "web-" + uuid.uuid4().hex[:6]
    obj_uid = str(uuid.uuid4())
    now = ts()
    inv = {"kind": kind, "name": obj, "uid": obj_uid, "apiVersion": "v1"}
    if kind == "Pod":
        inv.update(namespace=namespace, resourceVersion="4711", fieldPath="spec.containers{web}")
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{obj}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
        "involvedObject": inv,
        "reason": reason,
        "message": message or f"{reason} for {kind.lower()} {obj} in {namespace}",
        "source": {"component": "kubelet", "host": "node-a"},
        "firstTimestamp": now, "lastTimestamp": now, "count": count, "type": etype,
        "reportingComponent": "kubelet", "reportingInstance": "node-a",
    }


def create_events(cluster, namespace, n, **kw):
    """Create n events through the API; returns {uid: object as stored}.
    Events about cluster-scoped objects (Nodes) go to "default", as the
    API server requires (and kubelets do)."""
    if kw.get("kind", "Pod") == "Node":
        namespace = "default"
    out = {}
    for i in range(n):
        o = cluster.admin.post_json(f"/api/v1/namespaces/{namespace}/events", new_event(namespace, **kw))
        out[o["metadata"]["uid"]] = o
    return out


def warning_uids(cluster):
    """uids of every Warning event in the cluster right now."""
    lst = cluster.admin.get_json("/api/v1/events?fieldSelector=type%3DWarning")
    return {o["metadata"]["uid"] for o in lst["items"]}


def subscribe(client, subject):
    sub = client.subscribe(subject)
    client.flush()
    return EventCollector(sub)


def ready_agent(agent_factory, nats_url, env=None, **kw):
    a = agent_factory(nats_url, env=env, **kw)
    a.wait_ready(timeout=30)
    return a


def cluster_id_of(agent):
    return agent.health()["cluster_id"]


def assert_exactly_once(col, want, allowed=()):
    """Every uid of want arrived; nothing outside want | allowed arrived;
    no (uid, count) arrived twice."""
    got = col.uids()
    missing = set(want) - got
    assert not missing, f"{len(missing)} events never arrived: {sorted(missing)[:5]}"
    unexpected = got - set(want) - set(allowed)
    assert not unexpected, f"{len(unexpected)} unexpected events: {sorted(unexpected)[:5]}"
    assert not col.repeated(), f"repeated (uid, count): {sorted(col.repeated())[:10]}"


def watch_stats(agent):
    return event_stats(agent)["reflectors"][0]["watch"]


# ------------------------------------------------------------------ 1, 2

def test_agent_becomes_ready(cluster, nats_server, agent_factory):
    agent = ready_agent(agent_factory, nats_server.url)
    status, body = agent.get("/health/ready")
    assert status == 200, body
    h = agent.health()
    assert h["ready"] is True, h
    assert h["kubernetes"].get("api_ok", True) is not False, h["kubernetes"]
    agent.assert_clean_exit()


def test_cluster_id_is_the_kube_system_uid(cluster, nats_server, nats_client, agent_factory):
    kube_system = cluster.admin.get_json("/api/v1/namespaces/kube-system")
    uid = kube_system["metadata"]["uid"]
    version = cluster.admin.get_json("/version")["gitVersion"]
    reg = nats_client.subscribe("agent.register.>")
    nats_client.flush()
    agent = ready_agent(agent_factory, nats_server.url)

    msg = reg.next(timeout=20)
    assert msg.subject == f"agent.register.{uid}"
    assert msg.headers.get("Content-Type") == "application/json"
    info = json.loads(msg.data)
    assert info["cluster_id"] == uid
    assert info["cluster_source"] == "kube-system-uid"
    assert info["kubernetes_version"] == version
    h = agent.health()
    assert h["cluster_id"] == uid
    assert h["cluster_source"] == "kube-system-uid"
    agent.assert_clean_exit()


# ------------------------------------------------------------------ 3

def test_warning_events_arrive_exactly_once_with_their_fields(cluster, namespace, nats_server, nats_client,
                                                               agent_factory):
    cid = cluster.admin.get_json("/api/v1/namespaces/kube-system")["metadata"]["uid"]
    col = subscribe(nats_client, f"agent.event.{cid}")
    # Before the agent starts: these come through its first LIST.
    made = create_events(cluster, namespace, 6, reason="BackOff")
    made.update(create_events(cluster, namespace, 2, reason="OOMKilling", kind="Node"))
    normal = create_events(cluster, namespace, 4, reason="Pulled", etype="Normal")
    preexisting = warning_uids(cluster) - set(made)

    agent = ready_agent(agent_factory, nats_server.url)
    assert cluster_id_of(agent) == cid
    # After: these come through the WATCH.
    made.update(create_events(cluster, namespace, 6, reason="FailedScheduling"))
    made.update(create_events(cluster, namespace, 2, reason="NetworkNotReady"))
    normal.update(create_events(cluster, namespace, 4, reason="Started", etype="Normal"))

    col.until_uids(made, timeout=30)
    col.quiet(2.0)
    assert_exactly_once(col, made, allowed=preexisting)
    assert not (col.uids() & set(normal)), "Normal events are not published by default"

    for r in col.items:
        if r.uid not in made:
            continue
        o, e = made[r.uid], r.event
        inv = o["involvedObject"]
        assert r.headers["Content-Type"] == "application/json"
        assert r.headers["Nats-Msg-Id"] == f"{r.uid}-{o['metadata']['resourceVersion']}"
        assert e["cluster_id"] == cid
        assert e["uid"] == o["metadata"]["uid"]
        assert e["resource_version"] == o["metadata"]["resourceVersion"]
        assert e["type"] == "Warning"
        assert e["reason"] == o["reason"]
        assert e["message"] == o["message"]
        assert e["namespace"] == o["metadata"]["namespace"]
        assert field(e, "involved_object.kind") == inv["kind"]
        assert field(e, "involved_object.name") == inv["name"]
        assert field(e, "involved_object.uid") == inv["uid"]
        assert field(e, "involved_object.namespace") == inv.get("namespace", "")
        assert field(e, "involved_object.api_version") == inv["apiVersion"]
        assert field(e, "involved_object.field_path") == inv.get("fieldPath", "")
        assert field(e, "source.component") == "kubelet"
        assert field(e, "source.host") == "node-a"
        assert parse_time(e["first_timestamp"]) == parse_time(o["firstTimestamp"])
        assert parse_time(e["last_timestamp"]) == parse_time(o["lastTimestamp"])
        assert RFC3339.match(e["observed_at"])
        assert e["count"] == 1
        assert (e["category"], e["severity"]) == CLASS[o["reason"]], (o["reason"], e)
    c = event_stats(agent)
    assert c["dropped"] == 0, c
    agent.assert_clean_exit()


# ------------------------------------------------------------------ 4

def test_count_bump_arrives_as_a_second_message(cluster, namespace, nats_server, nats_client, agent_factory):
    cid = cluster.admin.get_json("/api/v1/namespaces/kube-system")["metadata"]["uid"]
    col = subscribe(nats_client, f"agent.event.{cid}")
    preexisting = warning_uids(cluster)
    # dedup_window 0s: every count is published as it comes (the default
    # 1m window would hold count 2 back for a minute: same semantics, slower).
    agent = ready_agent(agent_factory, nats_server.url, env={"COLLECT_AGENT_EVENTS_DEDUP_WINDOW": "0s"})
    first = create_events(cluster, namespace, 1, reason="BackOff")
    uid, ev = next(iter(first.items()))
    col.until(lambda c: uid in c.uids(), timeout=20, what="count 1")

    later = ts(time.time() + 30)
    ev = dict(ev, count=2, lastTimestamp=later)
    bumped = cluster.admin.put_json(f"/api/v1/namespaces/{namespace}/events/{ev['metadata']['name']}", ev)
    assert bumped["count"] == 2
    col.until(lambda c: (uid, 2) in c.keys(), timeout=20, what="count 2")
    col.quiet(2.0)

    mine = [r for r in col.items if r.uid == uid]
    assert [r.count for r in mine] == [1, 2]
    assert_exactly_once(col, {uid}, allowed=preexisting)
    second = mine[1]
    assert second.event["resource_version"] == bumped["metadata"]["resourceVersion"]
    assert second.headers["Nats-Msg-Id"] == f"{uid}-{bumped['metadata']['resourceVersion']}"
    assert mine[0].headers["Nats-Msg-Id"] != second.headers["Nats-Msg-Id"]
    assert parse_time(second.event["last_timestamp"]) == parse_time(later)
    assert parse_time(second.event["first_timestamp"]) == parse_time(ev["firstTimestamp"])
    agent.assert_clean_exit()


def micro_now():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int((t % 1) * 1e6)


def test_events_written_through_events_k8s_io_with_series(cluster, namespace, nats_server, nats_client,
                                                          agent_factory):
    """kube-scheduler and most controllers write events.k8s.io/v1 Events:
    eventTime and a series instead of firstTimestamp/lastTimestamp/count. The
    agent reads them through core/v1, where the real server shows them with
    null timestamps, no count and a `series`; every repeat must still arrive."""
    cid = cluster.admin.get_json("/api/v1/namespaces/kube-system")["metadata"]["uid"]
    col = subscribe(nats_client, f"agent.event.{cid}")
    preexisting = warning_uids(cluster)
    agent = ready_agent(agent_factory, nats_server.url, env={"COLLECT_AGENT_EVENTS_DEDUP_WINDOW": "0s"})
    path = f"/apis/events.k8s.io/v1/namespaces/{namespace}/events"
    ev = cluster.admin.post_json(path, {
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web-1." + uuid.uuid4().hex[:16], "namespace": namespace},
        "eventTime": micro_now(), "reportingController": "default-scheduler",
        "reportingInstance": "default-scheduler-node-a", "action": "Scheduling",
        "reason": "FailedScheduling", "type": "Warning", "note": "0/3 nodes are available: 3 Insufficient memory.",
        "regarding": {"kind": "Pod", "namespace": namespace, "name": "web-1", "uid": str(uuid.uuid4()),
                      "apiVersion": "v1"}})
    uid = ev["metadata"]["uid"]
    core = cluster.admin.get_json(f"/api/v1/namespaces/{namespace}/events/{ev['metadata']['name']}")
    assert core["firstTimestamp"] is None and "count" not in core     # what the agent reads
    col.until(lambda c: uid in c.uids(), timeout=20, what="the event")
    last = None
    for n in (2, 3):
        ev["series"] = {"count": n, "lastObservedTime": micro_now()}
        ev = cluster.admin.put_json(f"{path}/{ev['metadata']['name']}", ev)
        last = ev["series"]["lastObservedTime"]
        col.until(lambda c: (uid, n) in c.keys(), timeout=20, what=f"series count {n}")
    col.quiet(2.0)
    mine = [r for r in col.items if r.uid == uid]
    assert [r.count for r in mine] == [1, 2, 3]
    assert_exactly_once(col, {uid}, allowed=preexisting)
    e = mine[-1].event
    assert e["reason"] == "FailedScheduling" and e["message"] == ev["note"]
    assert (e["category"], e["severity"]) == CLASS["FailedScheduling"]
    assert field(e, "involved_object.name") == "web-1"
    assert field(e, "source.component") == "default-scheduler"
    assert e["resource_version"] == ev["metadata"]["resourceVersion"]
    # the agent keeps milliseconds of the server's microseconds
    assert abs((parse_time(e["first_timestamp"]) - parse_time(ev["eventTime"])).total_seconds()) < 0.001
    assert abs((parse_time(e["last_timestamp"]) - parse_time(last)).total_seconds()) < 0.001
    agent.assert_clean_exit()


# ------------------------------------------------------------------ 5

# Short watches so that the event watch ends (cleanly, at the server's
# timeoutSeconds) and resumes from its resourceVersion every 2-3 s.
SHORT_WATCH = {"COLLECT_AGENT_KUBERNETES_WATCH_TIMEOUT_MIN": "2s",
               "COLLECT_AGENT_KUBERNETES_WATCH_TIMEOUT_MAX": "3s",
               "COLLECT_AGENT_KUBERNETES_BACKOFF_INITIAL": "500ms",
               "COLLECT_AGENT_KUBERNETES_BACKOFF_MAX": "2s"}


def test_compaction_gives_410_and_the_relist_loses_and_repeats_nothing(cluster, namespace, nats_server,
                                                                     nats_client, agent_factory):
    cid = cluster.admin.get_json("/api/v1/namespaces/kube-system")["metadata"]["uid"]
    col = subscribe(nats_client, f"agent.event.{cid}")
    preexisting = warning_uids(cluster)
    relay = TcpRelay(cluster.api_port)
    try:
        agent = ready_agent(agent_factory, nats_server.url, env=SHORT_WATCH,
                            kubeconfig=cluster.kubeconfig_via(relay.port))
        before = set(create_events(cluster, namespace, 8, reason="BackOff"))
        col.until_uids(before, timeout=20)
        wait_for(lambda: watch_stats(agent)["watch_restarts"] >= 1, timeout=20,
                 what="the event watch to end and resume once")

        # 1. The clean-end path. The agent watches type=Warning only and
        # event watches carry no bookmarks, so Normal events move etcd's
        # revision on while the agent's resourceVersion stays put. Compact
        # past it: when the watch ends at timeoutSeconds the agent resumes
        # from a compacted resourceVersion, gets the real in-stream 410 and
        # relists, which finds only what it has already published.
        gone0 = watch_stats(agent)["relists_gone"]
        create_events(cluster, namespace, 3, reason="Pulled", etype="Normal")
        cluster.compact()
        wait_for(lambda: watch_stats(agent)["relists_gone"] > gone0, timeout=30,
                 what="a relist caused by 410 after the watch ended")
        wait_for(lambda: watch_stats(agent)["watching"], timeout=20, what="watching again")

        # 2. The gap path. The stream goes silent (the relay holds every
        # byte), Warning events are created and history is compacted past
        # them, then the connections are cut: the agent resumes from the
        # last resourceVersion it saw, gets 410, and only the relist can
        # find the events of the gap.
        gone1 = watch_stats(agent)["relists_gone"]
        relay.pause()
        gap = set(create_events(cluster, namespace, 10, reason="FailedMount"))
        gap |= set(create_events(cluster, namespace, 2, reason="OOMKilling", kind="Node"))
        create_events(cluster, namespace, 2, reason="Pulled", etype="Normal")
        cluster.compact()
        relay.cut()
        relay.resume()
        col.until_uids(before | gap, timeout=30)
        wait_for(lambda: watch_stats(agent)["relists_gone"] > gone1, timeout=20,
                 what="a relist caused by 410 after the cut")

        after = set(create_events(cluster, namespace, 5, reason="FailedScheduling"))
        col.until_uids(before | gap | after, timeout=20)
        col.quiet(4.0)   # longer than a watch: a resume that replays would show here
        assert_exactly_once(col, before | gap | after, allowed=preexisting)

        w = watch_stats(agent)
        assert w["relists_gone"] >= 2, w
        assert w["lists"] >= 3, w
        ev = event_stats(agent)
        assert ev["dropped"] == 0, ev
        agent.assert_clean_exit()
    finally:
        relay.stop()


# ------------------------------------------------------------------ 6

def is_status(r, code, reason):
    body = r.json()
    return (body.get("kind") == "Status" and body.get("apiVersion") == "v1" and body.get("status") == "Failure"
            and body.get("code") == code and body.get("reason") == reason)


def test_an_event_with_a_nul_in_its_message_is_forwarded_with_the_others(cluster, namespace, nats_server,
                                                                          nats_client, agent_factory):
    """The real API server stores an Event whose message holds a NUL (Go
    writes it as \\u0000 in JSON). It used to fail the whole LIST page as
    "not JSON": every event on it lost, retried for ever. Now it is
    forwarded (the NUL as U+FFFD), by the LIST and by the watch, with the
    others around it."""
    cid = cluster.admin.get_json("/api/v1/namespaces/kube-system")["metadata"]["uid"]
    col = subscribe(nats_client, f"agent.event.{cid}")
    nul = new_event(namespace, message="before\x00after")
    stored = cluster.admin.post_json(f"/api/v1/namespaces/{namespace}/events", nul)
    assert stored["message"] == "before\x00after"  # accepted and kept as is
    listed = set(create_events(cluster, namespace, 2)) | {stored["metadata"]["uid"]}
    agent = ready_agent(agent_factory, nats_server.url)
    watched = cluster.admin.post_json(f"/api/v1/namespaces/{namespace}/events",
                                      new_event(namespace, message="watched\x00too"))
    more = set(create_events(cluster, namespace, 2)) | {watched["metadata"]["uid"]}
    col.until_uids(listed | more, timeout=20)
    got = {r.uid: r.event for r in col.items}
    assert got[stored["metadata"]["uid"]]["message"] == "before\ufffdafter"
    assert got[watched["metadata"]["uid"]]["message"] == "watched\ufffdtoo"
    w = watch_stats(agent)
    assert w["errors"] == 0 and w["list_items_invalid"] == 0, w
    agent.assert_clean_exit()


def test_the_service_account_cannot_read_secrets_or_write_events(cluster, namespace):
    api = cluster.agent_api
    user = f"system:serviceaccount:{cluster.agent_namespace}:{cluster.agent_sa}"
    for path, scope in (("/api/v1/secrets", "at the cluster scope"),
                        ("/api/v1/namespaces/kube-system/secrets", 'in the namespace "kube-system"'),
                        (f"/api/v1/namespaces/{cluster.agent_namespace}/secrets",
                         f'in the namespace "{cluster.agent_namespace}"')):
        r = api.request("GET", path)
        assert r.status == 403, (path, r.status, r.body[:300])
        assert r.header("Content-Type") == "application/json"
        assert is_status(r, 403, "Forbidden"), r.body
        msg = r.json()["message"]
        assert f'User "{user}" cannot list resource "secrets"' in msg and scope in msg, msg
    r = api.request("POST", f"/api/v1/namespaces/{namespace}/events", new_event(namespace))
    assert r.status == 403, (r.status, r.body[:300])
    assert is_status(r, 403, "Forbidden"), r.body
    assert f'User "{user}" cannot create resource "events"' in r.json()["message"]
    # and what the ClusterRole grants works with the same token
    assert api.request("GET", "/api/v1/events?limit=1").status == 200
    assert api.request("GET", "/api/v1/namespaces/kube-system").status == 200


# ------------------------------------------------------------------ state file

STATE_HEADER = "# collect-agent events state v1\n"


def test_restart_with_state_file_resumes_without_replay(cluster, namespace, nats_server, nats_client,
                                                        agent_factory, tmp_path):
    cid = cluster.admin.get_json("/api/v1/namespaces/kube-system")["metadata"]["uid"]
    col = subscribe(nats_client, f"agent.event.{cid}")
    state = tmp_path / "events.state"
    env = {"COLLECT_AGENT_EVENTS_STATE_FILE": str(state)}
    first = ready_agent(agent_factory, nats_server.url, env=env)
    before = set(create_events(cluster, namespace, 4))
    col.until_uids(before, timeout=20)
    first.assert_clean_exit()
    assert state.read_text().startswith(STATE_HEADER)

    down = set(create_events(cluster, namespace, 5, reason="FailedMount"))
    col.take()
    second = ready_agent(agent_factory, nats_server.url, env=env)
    col.until_uids(down, timeout=20)
    col.quiet(2.0)
    assert_exactly_once(col, down)       # nothing of the first run is sent again
    w = watch_stats(second)
    assert w["lists"] == 0, w            # it resumed the watch instead of listing
    second.assert_clean_exit()


def state_file(path, rv):
    path.write_text(f"{STATE_HEADER}saved_at {int(time.time())}\nrv /api/v1/events {rv}\n")
    return str(path)


def test_state_file_from_the_future_does_not_silence_the_agent(cluster, namespace, nats_server, nats_client,
                                                               agent_factory, tmp_path):
    cid = cluster.admin.get_json("/api/v1/namespaces/kube-system")["metadata"]["uid"]
    col = subscribe(nats_client, f"agent.event.{cid}")
    future = cluster.etcd_revision() + 10_000_000
    r = cluster.admin.request("GET", f"/api/v1/events?resourceVersion={future}")
    assert r.status == 504 and "Too large resource version" in r.json()["message"], r.body
    agent = agent_factory(nats_server.url, env={"COLLECT_AGENT_EVENTS_STATE_FILE":
                                                state_file(tmp_path / "events.state", future), **SHORT_WATCH})
    agent.wait_ready(timeout=30)
    made = set(create_events(cluster, namespace, 3))
    col.until_uids(made, timeout=6)   # the resume point is checked and refused: a LIST at once
    w = watch_stats(agent)
    assert w["relists_bad_rv"] == 1 and w["lists"] == 1, w
    agent.assert_clean_exit()


def test_state_file_with_a_refused_resource_version_falls_back_to_a_list(cluster, namespace, nats_server,
                                                                         nats_client, agent_factory, tmp_path):
    cid = cluster.admin.get_json("/api/v1/namespaces/kube-system")["metadata"]["uid"]
    col = subscribe(nats_client, f"agent.event.{cid}")
    agent = agent_factory(nats_server.url, env={"COLLECT_AGENT_EVENTS_STATE_FILE":
                                                state_file(tmp_path / "events.state", "x1"), **SHORT_WATCH})
    made = set(create_events(cluster, namespace, 3))
    col.until_uids(made, timeout=6)   # the resume point is refused: a LIST at once
    assert agent.get("/health/ready")[0] == 200
    w = watch_stats(agent)
    assert w["relists_bad_rv"] == 1 and w["lists"] == 1, w
    wait_for(lambda: " x1\n" not in (tmp_path / "events.state").read_text(), timeout=15,
             what="the state file repaired")
    agent.assert_clean_exit()
