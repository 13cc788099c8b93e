"""Issue 4, end to end: the simulated API server -> collect-agent's event
watcher -> a real nats-server -> a test subscriber playing the central
orchestrator.

Every test asserts on what the subscriber receives (by uid and count, the
Nats-Msg-Id "<uid>-<resourceVersion>"), on the simulator's request statistics and on
the agent's /metrics and /health counters. Conditions are polled with
deadlines; "nothing more arrives" is checked over a quiet period after the
expected messages came, so a duplicate sent late is still caught."""
import json
import re
import threading
import time

import pytest

from lib.agentproc import wait_for
from lib.events_helpers import (RFC3339, TRUNC_MARKER, EventCollector, TcpGate, event_stats, field,
                                is_sanitized, metric, parse_time, rss_kib)
from lib.nats import NatsClient

CID = "c1"
SUBJECT = f"agent.event.{CID}"

# docs/EVENTS.md, classification table (reason -> category, severity).
CLASS = {
    "BackOff": ("crash", "warning"),
    "FailedScheduling": ("scheduling", "warning"),
    "FailedMount": ("storage", "warning"),
    "OOMKilling": ("oom", "warning"),
    "ImagePullBackOff": ("image", "warning"),
    "NetworkNotReady": ("network", "critical"),
    "E2eMadeUpReason": ("other", "warning"),
}


def agent_args(nats_url, kubesim, extra=()):
    return ["--nats", nats_url, "--kubeconfig", kubesim.kubeconfig, "--cluster-id", CID, *extra]


def subscribe(client):
    sub = client.subscribe(SUBJECT)
    client.flush()
    return EventCollector(sub)


def emit(kubesim, namespace, count, reason, **kw):
    """emit_events with uids; returns the list of uids."""
    r = kubesim.emit_events(namespace=namespace, count=count, reason=reason, uids=True, **kw)
    assert r["count"] == count
    return r["uids"]


def sim_events(kubesim):
    """uid -> the Event object as the simulator holds it."""
    return {o["metadata"]["uid"]: o for o in kubesim.objects("events")["items"]}


def same_time(agent_ts, sim_ts):
    return parse_time(agent_ts) == parse_time(sim_ts)


def counters(agent):
    names = ["received", "published", "filtered", "dropped", "deduplicated", "rate_limited",
             "aggregated"]
    return {n: metric(agent, f"agent_events_{n}_total", {"cluster_id": CID}) for n in names}


def assert_exactly_once(col, want_uids):
    """Every uid in want_uids arrived, no other uid did, and no (uid, count)
    pair arrived twice."""
    got = col.uids()
    assert got == set(want_uids), (f"missing {len(set(want_uids) - got)}, "
                                   f"unexpected {len(got - set(want_uids))}")
    assert not col.repeated(), f"repeated (uid, count): {sorted(col.repeated())[:10]}"


# ------------------------------------------------------------------ 1

@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_every_warning_arrives_exactly_once_with_its_fields(nats_server, nats_client, kubesim,
                                                            agent_factory, encoding):
    col = subscribe(nats_client)
    warn = set()
    # Before the agent starts: these come through its first LIST.
    warn |= set(emit(kubesim, "e2e-a", 60, "BackOff", name_prefix="crash"))
    warn |= set(emit(kubesim, "e2e-b", 40, "FailedScheduling", name_prefix="pending"))
    normal = set(emit(kubesim, "e2e-c", 20, "Pulled", type="Normal", name_prefix="pulled"))
    agent = agent_factory(agent_args(nats_server.url, kubesim),
                          env={"COLLECT_AGENT_NATS_ENCODING": encoding})
    agent.wait_ready()
    # After: these come through the WATCH.
    warn |= set(emit(kubesim, "e2e-a", 50, "FailedMount", name_prefix="mount"))
    warn |= set(emit(kubesim, "e2e-b", 50, "OOMKilling", kind="Node", name_prefix="node-oom"))
    warn |= set(emit(kubesim, "e2e-c", 50, "ImagePullBackOff", name_prefix="img"))
    warn |= set(emit(kubesim, "e2e-d", 50, "E2eMadeUpReason", name_prefix="odd",
                     message="something new happened to {name} ({i})"))
    normal |= set(emit(kubesim, "e2e-d", 20, "Started", type="Normal", name_prefix="started"))
    assert len(warn) == 300

    col.until_uids(warn, timeout=30)
    col.quiet(1.5)
    assert_exactly_once(col, warn)
    assert not (col.uids() & normal), "Normal events are not published by default"

    objs = sim_events(kubesim)
    want_ct = "application/json" if encoding == "json" else "application/x-protobuf"
    for r in col.items:
        o, e = objs[r.uid], r.event
        inv = o["involvedObject"]
        assert r.headers["Content-Type"] == want_ct
        assert r.headers["Nats-Msg-Id"] == f"{o['metadata']['uid']}-{o['metadata']['resourceVersion']}"
        assert e["resource_version"] == o["metadata"]["resourceVersion"]
        assert e["cluster_id"] == CID
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
        assert field(e, "source.component") == o["source"]["component"]
        assert field(e, "source.host") == o["source"]["host"]
        assert same_time(e["first_timestamp"], o["firstTimestamp"])
        assert same_time(e["last_timestamp"], o["lastTimestamp"])
        assert RFC3339.match(e["observed_at"])
        assert e["count"] == o["count"] == 1
        assert e["resource_version"] == o["metadata"]["resourceVersion"]
        assert (e["category"], e["severity"]) == CLASS[o["reason"]], (o["reason"], e)
        assert e.get("message_truncated", False) is False
    reasons = {r.event["reason"] for r in col.items}
    assert reasons == {"BackOff", "FailedScheduling", "FailedMount", "OOMKilling", "ImagePullBackOff",
                       "E2eMadeUpReason"}

    c = counters(agent)
    assert c["published"] == 300
    assert c["dropped"] == 0
    # Normal events are filtered by the API server (fieldSelector=type=Warning).
    assert c["received"] == 300
    agent.assert_clean_exit()


# ------------------------------------------------------------------ 2

# The event set every filter case runs against: group -> (namespace, count,
# reason, kind, type). NetworkNotReady is critical; NodeNotReady is critical
# "also when Normal"; the others are warning (Pulled: Normal, info).
GROUPS = {
    "A": ("f-a", 4, "BackOff", "Pod", "Warning"),
    "B": ("f-a", 3, "FailedMount", "Pod", "Warning"),
    "C": ("f-b", 5, "FailedScheduling", "Pod", "Warning"),
    "D": ("f-b", 2, "OOMKilling", "Node", "Warning"),
    "E": ("f-c", 2, "NetworkNotReady", "Pod", "Warning"),
    "F": ("f-c", 3, "Pulled", "Pod", "Normal"),
    "G": ("default", 1, "NodeNotReady", "Node", "Normal"),
}

# (env, groups published, groups the agent receives and filters out)
FILTER_CASES = {
    "exclude_namespaces": ({"COLLECT_AGENT_EVENTS_EXCLUDE_NAMESPACES": "f-b,kube-system"}, "ABE", "CD"),
    # one reflector per listed namespace: the others never reach the agent
    "namespaces": ({"COLLECT_AGENT_EVENTS_NAMESPACES": "f-a,f-c"}, "ABE", ""),
    "exclude_reasons": ({"COLLECT_AGENT_EVENTS_EXCLUDE_REASONS": "FailedMount,OOMKilling"}, "ACE", "BD"),
    "include_kinds": ({"COLLECT_AGENT_EVENTS_INCLUDE_KINDS": "Node"}, "D", "ABCE"),
    "message_regex": ({"COLLECT_AGENT_EVENTS_MESSAGE_REGEX": "^Back-off restarting"}, "A", "BCDE"),
    "exclude_message_regex": ({"COLLECT_AGENT_EVENTS_EXCLUDE_MESSAGE_REGEX": "Insufficient (memory|cpu)"},
                              "ABDE", "C"),
    "min_severity": ({"COLLECT_AGENT_EVENTS_MIN_SEVERITY": "critical"}, "E", "ABCD"),
    "normal_with_min_severity": ({"COLLECT_AGENT_EVENTS_INCLUDE_TYPES": "Warning,Normal",
                                  "COLLECT_AGENT_EVENTS_MIN_SEVERITY": "warning"}, "ABCDEG", "F"),
}


@pytest.mark.parametrize("case", sorted(FILTER_CASES))
def test_filters_from_env(nats_server, nats_client, kubesim, agent_factory, case):
    env, published, filtered = FILTER_CASES[case]
    col = subscribe(nats_client)
    uids = {}
    for g, (ns, n, reason, kind, etype) in GROUPS.items():
        uids[g] = set(emit(kubesim, ns, n, reason, kind=kind, type=etype, name_prefix="f" + g.lower()))
    agent = agent_factory(agent_args(nats_server.url, kubesim), env=env)
    agent.wait_ready()
    want = set().union(*(uids[g] for g in published))
    n_filtered = sum(len(uids[g]) for g in filtered)
    col.until_uids(want, timeout=20)
    wait_for(lambda: counters(agent)["filtered"] == n_filtered, timeout=10,
             what=f"agent_events_filtered_total == {n_filtered}")
    col.quiet(1.5)
    assert_exactly_once(col, want)
    c = counters(agent)
    assert c["published"] == len(want)
    assert c["filtered"] == n_filtered
    assert c["received"] == len(want) + n_filtered
    assert c["dropped"] == 0
    agent.assert_clean_exit()


# ------------------------------------------------------------------ 3

def make_event(namespace, name, count, t):
    pod = "web-1"
    pod_uid = "7a6f0a52-3c55-4b4e-9a36-7b1d2c3e4f50"
    return {"metadata": {"name": name, "namespace": namespace},
            "involvedObject": {"kind": "Pod", "namespace": namespace, "name": pod, "uid": pod_uid,
                               "apiVersion": "v1", "resourceVersion": "4711",
                               "fieldPath": "spec.containers{web}"},
            "reason": "BackOff",
            "message": f"Back-off restarting failed container web in pod {pod}_{namespace}({pod_uid})",
            "source": {"component": "kubelet", "host": "node-a"},
            "firstTimestamp": t, "lastTimestamp": t, "count": count, "type": "Warning",
            "reportingComponent": "kubelet", "reportingInstance": "node-a"}


def ts(base, plus_s):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base + plus_s))


@pytest.mark.parametrize("window", ["0s", "4s"])
def test_count_1_to_5(nats_server, nats_client, kubesim, agent_factory, window):
    """One Event whose count rises 1 -> 5. Without aggregation every count is
    published; with a window the first goes out at once and the final count
    when the window closes (the default window is 1m: 4s keeps the test
    short with the same semantics). Never only the first."""
    col = subscribe(nats_client)
    agent = agent_factory(agent_args(nats_server.url, kubesim),
                          env={"COLLECT_AGENT_EVENTS_DEDUP_WINDOW": window})
    agent.wait_ready()
    base = int(time.time())
    created = kubesim.create("events", make_event("count", "web-1.17a1b2c3d4e5f607", 1, ts(base, 0)))
    uid = created["metadata"]["uid"]
    col.until(lambda c: len(c.items) >= 1, timeout=10, what="count 1")
    for k in range(2, 6):
        kubesim.modify("events", {"metadata": {"name": "web-1.17a1b2c3d4e5f607", "namespace": "count"},
                                  "count": k, "lastTimestamp": ts(base, 10 * (k - 1))})
    col.until(lambda c: any(r.count == 5 for r in c.items), timeout=20, what="count 5")
    col.quiet(1.5)
    counts = [r.count for r in col.items]
    assert {r.uid for r in col.items} == {uid}
    ids = [r.headers["Nats-Msg-Id"] for r in col.items]
    assert ids == [f"{uid}-{r.event['resource_version']}" for r in col.items]
    assert len(set(ids)) == len(ids), "every published version has its own Nats-Msg-Id"
    if window == "0s":
        assert counts == [1, 2, 3, 4, 5]
    else:
        assert counts == [1, 5]
        assert metric(agent, "agent_events_aggregated_total", {"cluster_id": CID}) >= 3
    last = col.items[-1].event
    assert last["count"] == 5
    assert same_time(last["last_timestamp"], ts(base, 40))
    assert same_time(last["first_timestamp"], ts(base, 0))
    assert col.items[0].event["count"] == 1
    agent.assert_clean_exit()


# ------------------------------------------------------------------ 4

def test_forty_namespaces_all_sync(nats_server, nats_client, kubesim, agent_factory):
    """events.namespaces with 40 entries: 40 watches, each holding its own
    HTTP/1.1 connection, all open at once (libcurl's default per-host limit
    of 16 would leave 24 of them waiting for ever), and every namespace's
    events arrive."""
    names = [f"team-{i:02d}" for i in range(40)]
    col = subscribe(nats_client)
    env = {"COLLECT_AGENT_EVENTS_NAMESPACES": ",".join(names),
           "COLLECT_AGENT_EVENTS_MAX_OBJECT_BYTES": "262144"}
    agent = agent_factory(agent_args(nats_server.url, kubesim), env=env)
    agent.wait_ready(timeout=60)
    wait_for(lambda: kubesim.stats()["open_watches"] >= 40, timeout=30, what="40 open watches")
    uids = set()
    for ns in names:
        uids |= set(emit(kubesim, ns, 1, "BackOff", name_prefix="ns"))
    col.until_uids(uids, timeout=30)
    reflectors = event_stats(agent)["reflectors"]
    assert len(reflectors) == 40 and all(r["watch"]["watching"] for r in reflectors)
    agent.assert_clean_exit()


def test_refused_resume_point_relists_and_repairs_the_state_file(nats_server, nats_client, kubesim,
                                                                  agent_factory, tmp_path):
    """A state file whose resourceVersion the API server refuses (400: from
    another cluster, or corrupt) must not be retried for ever, nor survive
    the restart: the agent lists afresh, delivers the events, and rewrites
    the file with a good resume point."""
    state = tmp_path / "state"
    state.write_text("# collect-agent events state v1\nsaved_at 1\nrv /api/v1/events not-a-number\n")
    uids = set(emit(kubesim, "badrv", 3, "BackOff", name_prefix="br"))
    col = subscribe(nats_client)
    env = {"COLLECT_AGENT_EVENTS_STATE_FILE": str(state), "COLLECT_AGENT_EVENTS_SINCE": "1h"}
    agent = agent_factory(agent_args(nats_server.url, kubesim), env=env)
    agent.wait_ready(timeout=30)
    col.until_uids(uids, timeout=20)
    refl = event_stats(agent)["reflectors"][0]["watch"]
    assert refl["relists_bad_rv"] == 1 and refl["lists"] == 1, refl
    wait_for(lambda: "not-a-number" not in state.read_text(), timeout=15, what="the state file repaired")
    rv = state.read_text().split("rv /api/v1/events ")[1].strip()
    assert rv.isdigit(), state.read_text()
    agent.assert_clean_exit()


def test_restart_with_state_file_resumes_without_replay(nats_server, nats_client, kubesim, agent_factory,
                                                        tmp_path):
    state = tmp_path / "events.state"
    env = {"COLLECT_AGENT_EVENTS_STATE_FILE": str(state)}
    col = subscribe(nats_client)
    a1 = agent_factory(agent_args(nats_server.url, kubesim), env=env, name="first")
    a1.wait_ready()
    first = set(emit(kubesim, "st", 40, "BackOff", name_prefix="before"))
    col.until_uids(first, timeout=20)
    a1.assert_clean_exit()
    text = state.read_text()
    assert text.startswith("# collect-agent events state v1\n"), text
    assert "rv /api/v1/events " in text, text

    down = set(emit(kubesim, "st", 30, "FailedMount", name_prefix="down"))
    lists_before = kubesim.stats()["requests"].get("list events", 0)
    col.take()
    a2 = agent_factory(agent_args(nats_server.url, kubesim), env=env, name="second")
    a2.wait_ready()
    col.until_uids(down, timeout=20)
    col.quiet(2.0)
    assert_exactly_once(col, down)  # nothing of the first run is replayed
    after = set(emit(kubesim, "st", 20, "FailedScheduling", name_prefix="after"))
    col.until_uids(down | after, timeout=20)
    col.quiet(1.0)
    assert_exactly_once(col, down | after)
    # It resumed the WATCH from the stored resourceVersion instead of
    # listing: one LIST of a single object at exactly that version checked
    # the resume point (a silent watch from the future otherwise), nothing
    # more.
    assert kubesim.stats()["requests"].get("list events", 0) == lists_before + 1
    probes = [r["url"] for r in kubesim.requests(limit=50) if r["verb"] == "list"
              and r["resource"] == "events"]
    assert probes and "limit=1" in probes[-1] and "resourceVersion=" in probes[-1], probes
    refl = event_stats(a2)["reflectors"][0]["watch"]
    assert refl["lists"] == 0, refl
    a2.assert_clean_exit()


# ------------------------------------------------------------------ 5

@pytest.mark.parametrize("mid_line", [False, True])
def test_forced_410_relist_loses_and_repeats_nothing(nats_server, nats_client, kubesim, agent_factory,
                                                     mid_line):
    col = subscribe(nats_client)
    agent = agent_factory(agent_args(nats_server.url, kubesim))
    agent.wait_ready()
    before = set(emit(kubesim, "gap", 25, "BackOff", name_prefix="before"))
    col.until_uids(before, timeout=20)
    lists0 = kubesim.stats()["requests"].get("list events", 0)

    # The gap: the open watch goes silent, events are created, history is
    # compacted past them, then the watch is cut. Resuming from the last
    # resourceVersion the agent saw gets 410; only a relist finds the gap.
    kubesim.fault(stall_watches=True)
    gap = set(emit(kubesim, "gap", 30, "FailedMount", name_prefix="gap"))
    gap |= set(emit(kubesim, "gap2", 10, "OOMKilling", kind="Node", name_prefix="gap-node"))
    kubesim.compact()
    assert kubesim.fault(drop_watches=True, mid_line=mid_line)["dropped"] >= 1
    kubesim.fault(clear=True)

    col.until_uids(before | gap, timeout=30)
    after = set(emit(kubesim, "gap", 10, "FailedScheduling", name_prefix="after"))
    col.until_uids(before | gap | after, timeout=20)
    col.quiet(1.5)
    assert_exactly_once(col, before | gap | after)

    st = kubesim.stats()
    assert st["requests"].get("list events", 0) >= lists0 + 1, st
    # the 410 is sent in the watch stream (HTTP 200 + ERROR object, like the real server)
    refl = event_stats(agent)["reflectors"][0]["watch"]
    assert refl["relists_gone"] >= 1, refl
    assert refl["lists"] >= 2, refl
    c = counters(agent)
    assert c["published"] == len(before | gap | after)
    assert c["dropped"] == 0
    agent.assert_clean_exit()


# ------------------------------------------------------------------ 6

def test_nats_outage_loses_and_repeats_nothing(nats_server, kubesim, agent_factory):
    gate = TcpGate(nats_server.port)
    try:
        gate.open()
        client = NatsClient(nats_server.url)
        col = subscribe(client)
        agent = agent_factory(agent_args(gate.url, kubesim),
                              env={"COLLECT_AGENT_NATS_RECONNECT_WAIT": "1s",
                                   "COLLECT_AGENT_NATS_RECONNECT_WAIT_MAX": "2s"})
        agent.wait_ready()
        warm = set(emit(kubesim, "out", 10, "BackOff", name_prefix="warm"))
        col.until_uids(warm, timeout=20)
        client.close()

        # Outage: nats-server goes away; the gate refuses the agent until the
        # test subscriber is back on the restarted server.
        gate.close()
        nats_server.stop()
        wait_for(lambda: agent.get("/health/ready")[0] == 503, timeout=15, what="ready 503 while NATS is down")
        down = set()
        for i in range(10):
            down |= set(emit(kubesim, f"out-{i % 3}", 50, "BackOff", name_prefix=f"down{i}"))
            time.sleep(0.8)  # spread the 500 events over the outage (pacing, not a correctness wait)
        assert len(down) == 500
        wait_for(lambda: event_stats(agent)["received"] == 510, timeout=20, what="agent received all 510")
        assert agent.get("/health/live")[0] == 200, "a NATS outage is not a liveness failure"

        nats_server.start()
        client = NatsClient(nats_server.url)
        col = subscribe(client)
        gate.open()
        agent.wait_ready(timeout=20)
        col.until_uids(down, timeout=30)
        col.quiet(2.0)
        assert_exactly_once(col, down)
        c = counters(agent)
        assert c["dropped"] == 0
        assert c["published"] == 510
        assert metric(agent, "agent_nats_reconnects_total", {"cluster_id": CID}) >= 1
        client.close()
        agent.assert_clean_exit()
    finally:
        gate.stop()


# ------------------------------------------------------------------ 7

# Short watches (timeoutSeconds 1-2 s) so that a healthy but quiet event
# watch reconnects, i.e. makes progress, well within the 3 s stall timeout.
API_OUTAGE_ENV = {"COLLECT_AGENT_KUBERNETES_STALL_TIMEOUT": "3s",
                  "COLLECT_AGENT_KUBERNETES_WATCH_TIMEOUT_MIN": "1s",
                  "COLLECT_AGENT_KUBERNETES_WATCH_TIMEOUT_MAX": "2s",
                  "COLLECT_AGENT_KUBERNETES_BACKOFF_INITIAL": "800ms",
                  "COLLECT_AGENT_KUBERNETES_BACKOFF_MAX": "2s"}


def stays(pred, seconds, interval=0.1):
    """pred() holds at every poll for `seconds`; returns the first failing
    value otherwise (None when it held)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        v = pred()
        if v is not True:
            return v
        time.sleep(interval)
    return None


def test_api_outage_fails_liveness_then_recovers_without_restart(nats_server, nats_client, kubesim,
                                                                 agent_factory):
    col = subscribe(nats_client)
    agent = agent_factory(agent_args(nats_server.url, kubesim), env=API_OUTAGE_ENV)
    agent.wait_ready()
    before = set(emit(kubesim, "api", 10, "BackOff", name_prefix="before"))
    col.until_uids(before, timeout=20)
    # healthy and quiet for longer than the stall timeout: still live
    bad = stays(lambda: agent.get("/health/live")[0] == 200 or agent.get("/health/live"), 4.0)
    assert bad is None, f"/health/live of a healthy, quiet agent: {bad}"

    # Move the server's resourceVersion past the agent's (a Normal event the
    # agent's type=Warning watch does not see), compact, make every LIST
    # answer 500 and cut the watch: resuming gets 410, relisting fails.
    lists0 = kubesim.stats()["requests"].get("list events", 0)
    emit(kubesim, "api", 1, "Started", type="Normal", name_prefix="bump")
    t0 = time.monotonic()
    kubesim.fault(status=500, seconds=120, verb="list")
    kubesim.compact()
    kubesim.fault(drop_watches=True)
    wait_for(lambda: agent.get("/health/live")[0] == 503, timeout=20, what="/health/live 503 after the stall")
    status, body = agent.get("/health/live")
    assert status == 503 and "stall" in body, body
    during = set(emit(kubesim, "api", 15, "FailedMount", name_prefix="during"))
    # keep the outage for ~15 s in all: many backoff cycles at a 2 s cap
    wait_for(lambda: time.monotonic() - t0 >= 15, timeout=30, interval=0.2, what="15 s of outage")
    assert agent.proc.poll() is None
    assert not (col.uids() & during), "nothing can be listed during the outage"
    attempts = kubesim.stats()["requests"].get("list events", 0) - lists0
    kubesim.fault(clear=True)
    outage = time.monotonic() - t0

    after = set(emit(kubesim, "api", 10, "FailedScheduling", name_prefix="after"))
    col.until_uids(before | during | after, timeout=30)
    wait_for(lambda: agent.get("/health/live")[0] == 200, timeout=15, what="/health/live 200 again")
    col.quiet(1.5)
    assert_exactly_once(col, before | during | after)

    # It kept retrying with capped backoff: delays are in [base/2, base]
    # (full jitter), base doubling from 0.8 s to the 2 s cap, so ~15 s of
    # outage holds several attempts, and never a tight loop.
    assert attempts >= 5, f"{attempts} LIST attempts in {outage:.1f}s of outage"
    assert attempts <= outage / 0.8 * 2, f"{attempts} LIST attempts in {outage:.1f}s of outage"
    refl = event_stats(agent)["reflectors"][0]["watch"]
    assert refl["relists_gone"] >= 1 and refl["errors"] >= attempts - 1, refl
    assert agent.get("/health/ready")[0] == 200
    agent.assert_clean_exit()


def test_quiet_cluster_is_not_a_stall(nats_server, kubesim, agent_factory):
    """A connected, healthy event watch in a cluster without new Warnings is
    not a stall (DESIGN.md section 5: event watches get no bookmarks, so
    progress must not depend on them). With a stall timeout shorter than the
    watch duration (here 3 s against the default 5-10 min watches) the agent
    must either refuse the configuration, naming kubernetes.stall_timeout,
    or keep /health/live at 200 while idle."""
    env = {"COLLECT_AGENT_KUBERNETES_STALL_TIMEOUT": "3s"}
    from lib.agentproc import run_agent_once
    r = run_agent_once(["--check-config"], env=env)
    if r.returncode != 0:
        assert r.returncode == 2 and "kubernetes.stall_timeout" in r.stderr, r.stderr
        return
    agent = agent_factory(agent_args(nats_server.url, kubesim), env=env)
    agent.wait_ready()
    bad = stays(lambda: agent.get("/health/live")[0] == 200 or agent.get("/health/live"), 7.0)
    assert bad is None, f"/health/live of a healthy, quiet agent: {bad}"
    agent.assert_clean_exit()


# ------------------------------------------------------------------ 8

def test_event_storm_stays_live_and_bounded(nats_server, nats_client, kubesim, agent_factory):
    col = subscribe(nats_client)
    agent = agent_factory(agent_args(nats_server.url, kubesim))
    agent.wait_ready()
    pid = agent.proc.pid
    sanitized = is_sanitized(pid)
    probe_failures, peak = [], [rss_kib(pid) or 0]
    stop = threading.Event()

    def watch_agent():
        while not stop.is_set():
            for path in ("/health/live", "/health/ready"):
                code = agent.get(path, timeout=5)[0]
                if code != 200:
                    probe_failures.append((path, code))
            peak[0] = max(peak[0], rss_kib(pid) or 0)
            time.sleep(0.05)

    t = threading.Thread(target=watch_agent, daemon=True)
    t.start()
    total = 20000
    try:
        for chunk in range(4):
            kubesim.emit_events(namespace=f"storm-{chunk}", count=total // 4, reason="BackOff",
                                name_prefix=f"storm{chunk}", uids=False)
        want_published = total
        col.until(lambda c: len(c.items) >= want_published, timeout=120, what=f"{total} events")
        col.quiet(1.5)
    finally:
        stop.set()
        t.join(timeout=10)
    print(f"event storm: peak VmRSS {peak[0]} KiB ({peak[0] / 1024:.1f} MiB){' (ASan)' if sanitized else ''}")

    assert not probe_failures, f"probes failed during the storm: {probe_failures[:10]}"
    assert len(col.uids()) == total
    assert not col.repeated()
    c = counters(agent)
    assert c["received"] == total
    assert c["published"] + c["dropped"] + c["filtered"] + c["rate_limited"] == total, c
    assert c["dropped"] == 0 and c["rate_limited"] == 0 and c["filtered"] == 0, c
    assert c["published"] == total
    assert metric(agent, "agent_event_queue_size", {"cluster_id": CID}) == 0
    if not sanitized:
        assert peak[0] < 64 * 1024, f"peak VmRSS {peak[0]} KiB"
    agent.assert_clean_exit()


def budget_total_mib(env=None):
    """The memory budget total that --check-config prints, in MiB."""
    from lib.agentproc import run_agent_once
    r = run_agent_once(["--check-config"], env=env)
    assert r.returncode == 0, r.stderr
    m = re.search(r"\| \*\*total\*\* \| \| \*\*([0-9.]+)\*\* \|", r.stdout)
    assert m, r.stdout
    return float(m.group(1))


def test_repeating_storm_stays_inside_the_budget(nats_server, nats_client, kubesim, agent_factory):
    """A storm whose events repeat, so that the aggregation windows fill
    with held repeats: the bytes they hold stay under
    events.dedup_window_bytes (the oldest windows close early and publish
    their repeat), nothing is lost, and the peak RSS stays inside the memory
    budget that --check-config computes for the same configuration."""
    env = {"COLLECT_AGENT_EVENTS_DEDUP_WINDOW": "5s",
           "COLLECT_AGENT_EVENTS_DEDUP_WINDOW_BYTES": str(2 << 20)}
    budget = budget_total_mib(env)
    col = subscribe(nats_client)
    agent = agent_factory(agent_args(nats_server.url, kubesim), env=env)
    agent.wait_ready()
    pid = agent.proc.pid
    sanitized = is_sanitized(pid)
    peak, held = [rss_kib(pid) or 0], [0]
    stop = threading.Event()

    def watch_agent():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(pid) or 0)
            code, body = agent.get("/health", timeout=5)
            if code in (200, 503):
                ev = json.loads(body).get("events") or {}
                held[0] = max(held[0], ev.get("window_bytes", 0))
            time.sleep(0.05)

    t = threading.Thread(target=watch_agent, daemon=True)
    t.start()
    keys = 8000
    try:
        # Every (object, reason) key twice: the first occurrence of each is
        # published at once, the second is held by its window.
        for rnd in range(2):
            r = kubesim.emit_events(namespace="repeat", count=keys, reason="BackOff",
                                    name_prefix="rep", uids=False)
            assert r["count"] == keys
        col.until(lambda c: len(c.items) >= 2 * keys, timeout=120, what=f"{2 * keys} messages")
        col.quiet(1.5)
    finally:
        stop.set()
        t.join(timeout=10)
    closed_early = metric(agent, "agent_events_windows_closed_early_total", {"cluster_id": CID})
    print(f"repeating storm: peak VmRSS {peak[0] / 1024:.1f} MiB, budget {budget:.1f} MiB, "
          f"windows held at most {held[0] / 1048576:.2f} MiB, closed early {closed_early:.0f}"
          f"{' (ASan)' if sanitized else ''}")
    assert len(col.items) == 2 * keys
    assert not col.repeated()
    assert closed_early > 0, "the windows never reached events.dedup_window_bytes"
    assert held[0] <= 2 << 20
    assert metric(agent, "agent_events_dropped_total", {"cluster_id": CID}) == 0
    if not sanitized:
        assert peak[0] < budget * 1024, f"peak VmRSS {peak[0]} KiB over the budget of {budget} MiB"
    agent.assert_clean_exit()


def test_poison_events_cost_only_themselves(nats_server, nats_client, kubesim, agent_factory):
    """An Event whose message holds a NUL (Go's encoder writes it as \\u0000)
    is forwarded (the NUL as U+FFFD), and one Event the agent cannot parse
    at all (a count far beyond int64) is skipped and counted: on the LIST
    it costs that item, never the page, and on the watch that line. Every
    other event arrives; liveness and readiness stay green."""
    base = int(time.time())
    made = {}

    def create(key, ev):
        made[key] = kubesim.create("events", ev)["metadata"]["uid"]

    def poison(prefix):
        ev = make_event("poison", f"{prefix}-nul.1", 1, ts(base, 0))
        ev["involvedObject"]["name"] = f"{prefix}-nul"
        ev["message"] = "before\x00after"
        create(f"{prefix}-nul", ev)
        ev = make_event("poison", f"{prefix}-huge.1", 10 ** 30, ts(base, 0))
        ev["involvedObject"]["name"] = f"{prefix}-huge"
        create(f"{prefix}-huge", ev)

    ok_before = set(emit(kubesim, "poison", 3, "BackOff", name_prefix="okb"))
    poison("list")
    ok_before |= set(emit(kubesim, "poison", 3, "BackOff", name_prefix="oka"))
    col = subscribe(nats_client)
    # make_event gives every event the same involved object: no aggregation
    agent = agent_factory(agent_args(nats_server.url, kubesim, ["--log-level", "info"]),
                          env={"COLLECT_AGENT_EVENTS_DEDUP_WINDOW": "0s"})
    agent.wait_ready()
    poison("watch")
    ok_after = set(emit(kubesim, "poison", 3, "BackOff", name_prefix="okw"))
    want = ok_before | ok_after | {made["list-nul"], made["watch-nul"]}
    col.until_uids(want, timeout=30)
    col.quiet(1.5)
    assert_exactly_once(col, want)
    got = {r.uid: r.event for r in col.items}
    for key in ("list-nul", "watch-nul"):
        assert got[made[key]]["message"] == "before\ufffdafter", got[made[key]]["message"]
    unparsable = metric(agent, "agent_events_invalid_total", {"cluster_id": CID, "reason": "unparsable"})
    assert unparsable == 2, unparsable
    refl = event_stats(agent)["reflectors"][0]["watch"]
    assert refl["lists"] == 1 and refl["errors"] == 0, refl  # the page was not refused
    assert agent.get("/health/live")[0] == 200 and agent.get("/health/ready")[0] == 200
    wait_for(lambda: any("invalid events skipped" in r.get("msg", "") for r in agent.log_records()),
             timeout=15, what="the rate-limited log line about invalid events")
    agent.assert_clean_exit()


# ------------------------------------------------------------------ 9

def test_bad_input_is_published_sensibly(nats_server, nats_client, kubesim, agent_factory):
    col = subscribe(nats_client)
    agent = agent_factory(agent_args(nats_server.url, kubesim))
    agent.wait_ready()
    ns = "bad"
    made = {}

    def create(key, obj):
        o = kubesim.create("events", obj)
        made[key] = o
        return o

    # no involvedObject, no source, no timestamps, no count
    create("bare", {"metadata": {"name": "bare.1", "namespace": ns}, "reason": "BackOff",
                    "message": "bare event", "type": "Warning"})
    base = int(time.time())
    ev = make_event(ns, "neg.1", -5, ts(base, 0))
    ev["involvedObject"]["name"] = "neg"
    ev["involvedObject"]["uid"] = "00000000-0000-0000-0000-00000000000a"
    create("negative", ev)
    ev = make_event(ns, "huge.1", 2 ** 62, ts(base, 0))
    ev["involvedObject"]["name"] = "huge"
    ev["involvedObject"]["uid"] = "00000000-0000-0000-0000-00000000000b"
    create("huge_count", ev)
    ev = make_event(ns, "strcount.1", 1, ts(base, 0))
    ev["count"] = "seven"
    ev["involvedObject"]["name"] = "strcount"
    ev["involvedObject"]["uid"] = "00000000-0000-0000-0000-00000000000c"
    create("string_count", ev)
    big_msg = "\u00e9" * 500000 + "tail"   # 1,000,004 bytes of UTF-8, 2-byte characters
    ev = make_event(ns, "big.1", 1, ts(base, 0))
    ev["message"] = big_msg
    ev["involvedObject"]["name"] = "big"
    ev["involvedObject"]["uid"] = "00000000-0000-0000-0000-00000000000d"
    create("big_message", ev)
    ev = make_event(ns, "odd.1", 1, ts(base, 0))
    ev["reason"] = "E2eMadeUpReason"
    ev["message"] = "no row for this reason"
    ev["involvedObject"]["name"] = "odd"
    ev["involvedObject"]["uid"] = "00000000-0000-0000-0000-00000000000e"
    create("unknown_reason", ev)
    # no metadata.uid: cannot be deduplicated or given a message id -> skipped
    ev = make_event(ns, "nouid.1", 1, ts(base, 0))
    ev["metadata"]["uid"] = ""
    ev["involvedObject"]["name"] = "nouid"
    ev["involvedObject"]["uid"] = "00000000-0000-0000-0000-00000000000f"
    create("no_uid", ev)

    published = {k: o["metadata"]["uid"] for k, o in made.items() if k != "no_uid"}
    col.until_uids(published.values(), timeout=20)
    # the agent is still up and publishing after all that
    ok = set(emit(kubesim, ns, 3, "BackOff", name_prefix="fine"))
    col.until_uids(set(published.values()) | ok, timeout=20)
    col.quiet(1.5)
    assert_exactly_once(col, set(published.values()) | ok)
    got = {r.uid: r for r in col.items}
    assert agent.get("/health/live")[0] == 200

    bare = got[published["bare"]]
    e = bare.event
    assert e["reason"] == "BackOff" and e["message"] == "bare event" and e["namespace"] == ns
    assert field(e, "involved_object.kind") == "" and field(e, "involved_object.name") == ""
    assert e["count"] == 1 and bare.headers["Nats-Msg-Id"] == f"{bare.uid}-{e['resource_version']}"
    assert (e["category"], e["severity"]) == ("crash", "warning")
    # the last timestamp falls back to metadata.creationTimestamp
    assert same_time(e["last_timestamp"], made["bare"]["metadata"]["creationTimestamp"])
    # no firstTimestamp: unset, or the same fallback as the last one
    assert field(e, "first_timestamp", None) in (None, "", e["last_timestamp"])

    r = got[published["negative"]]
    assert r.event["count"] == 1 and r.headers["Nats-Msg-Id"] == f"{r.uid}-{r.event['resource_version']}"
    r = got[published["huge_count"]]
    assert r.event["count"] == 2 ** 31 - 1 and r.headers["Nats-Msg-Id"] == f"{r.uid}-{r.event['resource_version']}"
    r = got[published["string_count"]]
    assert r.event["count"] == 1

    r = got[published["big_message"]]
    msg = r.event["message"]
    assert r.event["message_truncated"] is True
    m = TRUNC_MARKER.search(msg)
    assert m, msg[-80:]
    kept = msg[:m.start()]
    assert len(msg.encode()) <= 4096
    assert big_msg.startswith(kept) and kept, "the kept part is a prefix of the original"
    assert int(m.group(1)) == len(big_msg.encode()) - len(kept.encode())

    r = got[published["unknown_reason"]]
    assert (r.event["category"], r.event["severity"]) == ("other", "warning")

    assert event_stats(agent)["invalid"] == 1
    agent.assert_clean_exit()
