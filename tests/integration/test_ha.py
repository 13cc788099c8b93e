"""Issue 12, high availability: two agents (POD_NAME a and b) share a
coordination.k8s.io/v1 Lease in the simulated API server and a real
nats-server. Exactly one leads and publishes events and metrics samples;
both answer commands; the Lease moves on SIGTERM (released at once), on
SIGKILL (after the lease duration) and when the API server refuses lease
updates; a new leader resumes events from the checkpoint in the Lease.

Durations are short (lease 3 s, renew deadline 2 s, retry 0.5 s) and waits
generous; handover times are measured and printed, never asserted tight."""
import json
import subprocess
import time

from lib.agentproc import wait_for
from lib.events_helpers import EventCollector, metric
from lib.exec_helpers import command, request

from lib.ha_helpers import (CHECKPOINT, CID, LEASE, LEASE_S, LEASES, NS, collect, emit, ha, labels, lease,
                            leader, start_pair, subscribe)


# ------------------------------------------------------------------ 1

def test_one_leader_publishes_every_replica_answers(agent_factory, nats_server, nats_client, kubesim):
    events = EventCollector(subscribe(nats_client, f"agent.event.{CID}"))
    samples = subscribe(nats_client, f"agent.metrics.{CID}")
    beats = subscribe(nats_client, f"agent.heartbeat.{CID}")
    agents = start_pair(agent_factory, nats_server, kubesim)
    first = leader(agents, kubesim)
    other = "b" if first == "a" else "a"

    # /health and /metrics of both; the standby is ready and live.
    for n, a in agents.items():
        wait_for(lambda: a.get("/health/ready")[0] == 200, timeout=20, what=f"{n} ready")
        assert a.get("/health/live")[0] == 200
        h = ha(a)
        assert h["enabled"] is True and h["identity"] == n
        assert h["lease_namespace"] == NS and h["lease_name"] == LEASE
        assert h["holder"] == first
        assert metric(a, "agent_ha_leader", labels()) == (1 if n == first else 0)
    for a in agents.values():
        status, text = a.get("/metrics")
        assert status == 200
        proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    standby = agents[other].health()
    assert standby["events"]["running"] is False and "standby" in standby["events"]["error"]
    assert standby["metrics"]["running"] is False
    rec = lease(kubesim)
    assert rec["spec"]["leaseDurationSeconds"] == LEASE_S
    assert metric(agents[first], "agent_ha_lease_transitions", labels()) == rec["spec"].get("leaseTransitions", 0)

    # Events: each published once, by the leader.
    r = emit(kubesim, 50)
    events.until(lambda c: c.uids() >= set(r["uids"]), timeout=30, what="50 events")
    time.sleep(2)
    events.poll(0.5)
    assert events.uids() == set(r["uids"])
    assert not events.repeated()
    assert metric(agents[other], "agent_events_published_total", labels()) == 0
    assert metric(agents[first], "agent_events_published_total", labels()) == 50

    # Metrics samples: only from the leader.
    got = collect(samples, 4)
    assert got, "no metrics sample in 4 s"
    senders = {json.loads(m.data)["agent_id"] for m in got}
    assert senders == {first}

    # Heartbeats carry the role and the holder.
    roles = {}
    deadline = time.monotonic() + 10
    while len(roles) < 2 and time.monotonic() < deadline:
        for m in collect(beats, 0.5):
            hb = json.loads(m.data)
            roles[hb["agent_id"]] = (hb.get("role"), hb.get("leader"))
    assert roles == {first: ("leader", first), other: ("standby", first)}

    # Commands: every replica serves the queue group (rejected commands are
    # answered too, with the replica's agent_id).
    answered = set()
    for _ in range(40):
        res = request(nats_client, command(tool="not-a-tool", cluster_id=CID), cluster_id=CID)
        assert res["status"] == "rejected"
        answered.add(res["agent_id"])
        if answered == {"a", "b"}:
            break
    assert answered == {"a", "b"}

    for a in agents.values():
        a.assert_clean_exit()


# ------------------------------------------------------------------ 2

def test_sigterm_releases_and_the_standby_takes_over(agent_factory, nats_server, kubesim):
    agents = start_pair(agent_factory, nats_server, kubesim)
    first = leader(agents, kubesim)
    other = "b" if first == "a" else "a"
    before = lease(kubesim)["spec"].get("leaseTransitions", 0)

    t0 = time.monotonic()
    code, _ = agents[first].terminate()
    assert code == 0
    released = lease(kubesim)["spec"]
    # Released as client-go does: no holder, a 1 s lease.
    assert released.get("holderIdentity", "") in ("", other)
    assert any(r.get("msg") == "released the Lease" for r in agents[first].log_records())
    new = leader({other: agents[other]}, kubesim, timeout=LEASE_S + 20)
    took = time.monotonic() - t0
    print(f"\nSIGTERM handover: {took:.2f} s (lease {LEASE_S} s, retry 0.5 s)")
    assert new == other
    spec = lease(kubesim)["spec"]
    assert spec["holderIdentity"] == other
    assert spec["leaseTransitions"] == before + 1
    assert metric(agents[other], "agent_ha_lease_transitions", labels()) == before + 1
    assert metric(agents[other], "agent_ha_leadership_acquired_total", labels()) == 1
    agents[other].assert_clean_exit()


def test_sigterm_release_retries_once_after_a_conflict(agent_factory, nats_server, kubesim):
    """The release may carry a stale resourceVersion (a renew it cancelled
    was applied after all): the server answers 409. The leader reads the
    Lease once more and, still the holder, releases that one, so the
    standby need not wait out the lease. Renews 10 s apart here, so the
    conflict is the release's."""
    from lib.ha_helpers import ha_env
    slow = {"COLLECT_AGENT_HA_LEASE_DURATION": "30s", "COLLECT_AGENT_HA_RENEW_DEADLINE": "20s",
            "COLLECT_AGENT_HA_RETRY_PERIOD": "10s"}
    agent = agent_factory(args=["--nats", nats_server.url, "--kubeconfig", kubesim.kubeconfig, "--cluster-id", CID],
                          env=ha_env("a", slow), name="a")
    wait_for(lambda: ha(agent)["role"] == "leader", timeout=30, what="leading")
    kubesim.fault(status=409, count=1, path_prefix=LEASES, verb="update")
    code, _ = agent.terminate()
    assert code == 0
    assert lease(kubesim)["spec"].get("holderIdentity", "") == "", lease(kubesim)["spec"]
    msgs = [r.get("msg") for r in agent.log_records()]
    assert "released the Lease" in msgs, msgs


# ------------------------------------------------------------------ 3

def test_sigkill_the_lease_expires_and_moves(agent_factory, nats_server, kubesim):
    agents = start_pair(agent_factory, nats_server, kubesim)
    first = leader(agents, kubesim)
    other = "b" if first == "a" else "a"
    before = lease(kubesim)["spec"].get("leaseTransitions", 0)

    t0 = time.monotonic()
    agents[first].terminate(sig=9)
    new = leader({other: agents[other]}, kubesim, timeout=LEASE_S + 30)
    took = time.monotonic() - t0
    print(f"\nSIGKILL failover: {took:.2f} s (lease {LEASE_S} s: bound lease + 2 s = {LEASE_S + 2} s)")
    assert new == other
    spec = lease(kubesim)["spec"]
    assert spec["holderIdentity"] == other
    assert spec["leaseTransitions"] == before + 1
    agents[other].assert_clean_exit()


# ------------------------------------------------------------------ 4

def test_refused_lease_updates_step_down_and_recover(agent_factory, nats_server, nats_client, kubesim):
    events = EventCollector(subscribe(nats_client, f"agent.event.{CID}"))
    agents = start_pair(agent_factory, nats_server, kubesim)
    first = leader(agents, kubesim)
    early = emit(kubesim, 5)
    events.until(lambda c: len(c.uids()) >= 5, timeout=30, what="first events")
    wait_for(lambda: int(lease(kubesim)["metadata"].get("annotations", {}).get(CHECKPOINT, "0"))
             >= int(early["last_rv"]), timeout=20, what="checkpoint past the first events")

    published = metric(agents[first], "agent_events_published_total", labels())
    assert published == 5
    kubesim.fault(status=403, seconds=120, path_prefix=LEASES, verb="update")
    # The leader cannot renew: it steps down after renew_deadline; nobody
    # can take over while updates are refused.
    wait_for(lambda: all(ha(a)["role"] == "standby" for a in agents.values()), timeout=20,
             what="the leader stepped down")
    assert metric(agents[first], "agent_ha_step_downs_total", labels()) == 1
    assert metric(agents[first], "agent_ha_lease_errors_total", labels()) >= 1
    assert "HTTP 403" in ha(agents[first])["last_error"]
    # Its watcher is gone, and its counters do not go back to 0 (Prometheus
    # counters never decrease).
    assert agents[first].health()["events"]["running"] is False
    assert metric(agents[first], "agent_events_published_total", labels()) == published
    # ... and publishes nothing.
    time.sleep(1)
    events.poll(0.5)
    seen = set(events.uids())
    during = emit(kubesim, 7)
    time.sleep(LEASE_S + 1)
    events.poll(0.5)
    assert events.uids() == seen, "events were published while nobody held the Lease"
    assert all(ha(a)["role"] == "standby" for a in agents.values())

    kubesim.fault(clear=True)
    new = leader(agents, kubesim, timeout=30)
    print(f"\nleader after the fault: {new} (before: {first})")
    # What was created while nobody led arrives after the takeover.
    events.until(lambda c: c.uids() >= set(during["uids"]), timeout=30, what="events made during the fault")
    time.sleep(2)
    events.poll(0.5)
    assert events.uids() == set(early["uids"]) | set(during["uids"])
    assert not events.repeated()
    # Counters add up across the terms: whoever leads now published the 7,
    # and the first leader's 5 still count where they were.
    total = sum(metric(a, "agent_events_published_total", labels()) for a in agents.values())
    assert total == 12
    for a in agents.values():
        a.assert_clean_exit()


# ------------------------------------------------------------------ 5

def test_new_leader_resumes_from_the_checkpoint(agent_factory, nats_server, nats_client, kubesim):
    events = EventCollector(subscribe(nats_client, f"agent.event.{CID}"))
    agents = start_pair(agent_factory, nats_server, kubesim)
    first = leader(agents, kubesim)
    other = "b" if first == "a" else "a"
    early = emit(kubesim, 30)
    events.until(lambda c: c.uids() >= set(early["uids"]), timeout=30, what="early events")
    # The checkpoint in the Lease passes the early events (kubesim's
    # resourceVersions are numbers; the agent never compares them).
    wait_for(lambda: int(lease(kubesim)["metadata"].get("annotations", {}).get(CHECKPOINT, "0"))
             >= int(early["last_rv"]), timeout=20, what="checkpoint past the early events")
    checkpoint = lease(kubesim)["metadata"]["annotations"][CHECKPOINT]

    agents[first].terminate(sig=9)
    late = emit(kubesim, 20)  # while nobody leads
    new = leader({other: agents[other]}, kubesim, timeout=LEASE_S + 30)
    assert new == other
    events.until(lambda c: c.uids() >= set(late["uids"]), timeout=30, what="events made while nobody led")
    time.sleep(2)
    events.poll(0.5)
    # Resumed at the checkpoint: the early events are not sent again (a
    # relist with events.since would have sent all 30 again).
    assert events.uids() == set(early["uids"]) | set(late["uids"])
    assert not events.repeated()
    resumed = [r for r in agents[other].log_records() if r.get("msg") == "events resume where the last leader stopped"]
    assert resumed and resumed[0].get("resource_version") == checkpoint
    agents[other].assert_clean_exit()


# ------------------------------------------------------------------ 6

def test_lease_edited_by_hand_to_another_holder(agent_factory, nats_server, kubesim):
    """The leader's next renew is refused (409: the resourceVersion moved),
    it reads the Lease, sees another holder and stops at once; nobody
    renews that holder, so after the lease duration a replica takes over."""
    from lib.lease_api import http_request
    agents = start_pair(agent_factory, nats_server, kubesim)
    first = leader(agents, kubesim)
    req = http_request("127.0.0.1", kubesim.api_port, kubesim.token, kubesim.ca_file)
    obj = lease(kubesim)
    obj["spec"]["holderIdentity"] = "someone-else"
    obj["spec"]["leaseTransitions"] = obj["spec"].get("leaseTransitions", 0) + 1
    status, body = req("PUT", f"{LEASES}/{LEASE}", obj, {"Content-Type": "application/json"})
    assert status == 200, body
    wait_for(lambda: metric(agents[first], "agent_ha_step_downs_total", labels()) == 1, timeout=20,
             what="the leader stepped down")
    assert metric(agents[first], "agent_ha_lease_conflicts_total", labels()) >= 1
    new = leader(agents, kubesim, timeout=LEASE_S + 30)
    spec = lease(kubesim)["spec"]
    assert spec["holderIdentity"] == new
    assert spec["leaseTransitions"] == obj["spec"]["leaseTransitions"] + 1
    for a in agents.values():
        a.assert_clean_exit()


# ------------------------------------------------------------------ 7

def test_lease_that_cannot_be_written_is_not_ready(agent_factory, nats_server, nats_client, kubesim):
    """A Lease in a namespace that does not exist cannot be created: the
    replica says so on /health/ready, never leads and publishes nothing."""
    events = EventCollector(subscribe(nats_client, f"agent.event.{CID}"))
    args = ["--nats", nats_server.url, "--kubeconfig", kubesim.kubeconfig, "--cluster-id", CID]
    from lib.ha_helpers import ha_env
    a = agent_factory(args=args, env=ha_env("a", {"POD_NAMESPACE": "no-such-namespace"}), name="a")

    def not_ready_with_reason():
        status, body = a.get("/health/ready")
        return status == 503 and "cannot write the Lease" in body and "no-such-namespace" in body
    wait_for(not_ready_with_reason, timeout=20, what="not ready, naming the Lease")
    h = ha(a)
    assert h["role"] == "standby" and h["lease_namespace"] == "no-such-namespace"
    assert 'namespaces \\"no-such-namespace\\" not found' in a.get("/health/ready")[1]
    emit(kubesim, 3)
    time.sleep(2)
    events.poll(0.5)
    assert not events.uids()
    assert metric(a, "agent_ha_leader", labels()) == 0
    a.assert_clean_exit()


def test_many_watched_namespaces_keep_a_leader(agent_factory, nats_server, kubesim):
    """events.namespaces allows 1000 entries, each watch with its resume
    point in the Lease: the Lease the API server answers (the annotations,
    and each key again in managedFields) grows far past a plain Lease's
    size. Every answer must still be read: a Lease over the read limit
    once left every replica standby for good (found in review at 150
    namespaces of 63 characters; 300 here, about 80 KB of Lease)."""
    names = [f"ns{i:03d}-" + "x" * 56 + "z" for i in range(300)]  # the longest names
    extra = {"COLLECT_AGENT_EVENTS_NAMESPACES": ",".join(names)}
    agents = start_pair(agent_factory, nats_server, kubesim, extra=extra)
    first = leader(agents, kubesim, timeout=60)
    wait_for(lambda: len(lease(kubesim)["metadata"].get("annotations", {})) >= 300, timeout=120,
             what="a resume point per watch in the Lease")
    size = len(json.dumps(lease(kubesim)))
    assert size > 64 << 10, size
    renewed = lease(kubesim)["spec"]["renewTime"]
    wait_for(lambda: lease(kubesim)["spec"]["renewTime"] != renewed, timeout=LEASE_S * 3,
             what="a renew of the big Lease")
    assert leader(agents, kubesim) == first, size
    assert all(not ha(a)["last_error"] for a in agents.values()), {n: ha(a) for n, a in agents.items()}
    for a in agents.values():
        a.assert_clean_exit()
