"""Issue 12, "Checked by": two agents, a JetStream nats-server (-js) with a
stream on agent.> (duplicate window 2 m), 3,000 events created in the
simulated API server in batches, and the leader killed with SIGKILL in the
middle of the burst. The stream must hold every event exactly once: the new
leader resumes from the checkpoint in the Lease, and what it sends again is
removed by the stream's de-duplication on Nats-Msg-Id.

It runs twice: with the agents publishing over core NATS (the stream
captures the messages; a checkpoint advances once a PING/PONG after them came
back) and in JetStream mode (every event acked by the stream; a checkpoint
advances over acked events only).
"""
import json
import threading
import time

import pytest

from lib.agentproc import wait_for
from lib.ha_helpers import CID, LEASE_S, emit, lease, leader, start_pair
from lib.nats import NatsClient, NatsServer, js_stream_create, js_stream_info, js_stream_messages

STREAM = "AGENT_C1"
TOTAL, BATCH = 3000, 100


@pytest.fixture(scope="module", params=["core", "jetstream"])
def failover(tmp_path_factory, request):
    """Run the scenario once; both tests judge its outcome."""
    from fixtures import KubeSim
    from lib.agentproc import Agent

    tmp = tmp_path_factory.mktemp("failover")
    server = NatsServer(args=["-js", "-sd", str(tmp / "js")])
    server.start()
    sim = KubeSim(tmp / "kubesim")
    sim.start()
    client = NatsClient(server.url)
    agents_made = []

    def factory(args=(), env=None, name=None):
        a = Agent(tmp, args=args, env=env, name=name)
        agents_made.append(a)
        a.start()
        return a

    try:
        js_stream_create(client, STREAM, ["agent.>"], duplicate_window_s=120)
        extra = {"COLLECT_AGENT_HA_CHECKPOINT_INTERVAL": "1s"}
        if request.param == "jetstream":
            extra.update({"COLLECT_AGENT_NATS_JETSTREAM_ENABLED": "true",
                          "COLLECT_AGENT_NATS_JETSTREAM_STREAM_NAME": STREAM})
        agents = start_pair(factory, server, sim, extra=extra)
        first = leader(agents, sim)
        other = "b" if first == "a" else "a"
        transitions = lease(sim)["spec"].get("leaseTransitions", 0)

        uids, killed = [], {}

        def burst():
            for i in range(TOTAL // BATCH):
                uids.extend(emit(sim, BATCH)["uids"])
                time.sleep(0.05)
        t = threading.Thread(target=burst)
        t.start()
        # Kill the leader once a third of the burst is in the stream.
        wait_for(lambda: stream_events(client) >= TOTAL // 3, timeout=60, interval=0.05,
                 what="a third of the burst in the stream")
        killed["at"] = time.monotonic()
        killed["in_stream"] = stream_events(client)
        agents[first].terminate(sig=9)
        new = leader({other: agents[other]}, sim, timeout=LEASE_S + 30)
        killed["failover_s"] = time.monotonic() - killed["at"]
        t.join(timeout=120)
        assert len(uids) == TOTAL
        # Everything the new leader will send: wait until the stream stops
        # growing (or holds every event).
        last, still = -1, 0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and still < 6:
            n = js_stream_info(client, STREAM)["state"]["last_seq"]
            still = still + 1 if n == last else 0
            last = n
            time.sleep(0.5)
        stored = read_events(client)
        spec = lease(sim)["spec"]
        yield {"first": first, "other": other, "new": new, "uids": uids, "stored": stored,
               "transitions_before": transitions, "spec": spec, **killed}
        for a in agents.values():
            if a.proc.poll() is None:
                a.assert_clean_exit()
    finally:
        for a in agents_made:
            a.stop()
        client.close()
        sim.stop()
        server.stop()


def stream_events(client):
    return js_stream_info(client, STREAM)["state"]["messages"]


def read_events(client):
    """uid -> the number of event messages the stream holds for it."""
    out = {}
    for m in js_stream_messages(client, STREAM, subject=f"agent.event.{CID}"):
        uid = json.loads(m.data)["uid"]
        out[uid] = out.get(uid, 0) + 1
    return out


def test_leader_killed_mid_burst_the_lease_moves_and_nothing_is_doubled(failover):
    f = failover
    print(f"\nSIGKILL with {f['in_stream']} messages in the stream; failover in {f['failover_s']:.2f} s "
          f"(lease {LEASE_S} s); stream holds {len(f['stored'])} of {TOTAL} events")
    assert f["new"] == f["other"]
    assert f["spec"]["holderIdentity"] == f["other"]
    assert f["spec"]["leaseTransitions"] == f["transitions_before"] + 1
    doubled = {u: n for u, n in f["stored"].items() if n > 1}
    assert not doubled, f"{len(doubled)} events stored more than once"
    assert set(f["stored"]) <= set(f["uids"])


def test_leader_killed_mid_burst_nothing_is_lost(failover):
    missing = set(failover["uids"]) - set(failover["stored"])
    assert not missing, f"{len(missing)} of {TOTAL} events never reached the stream"
