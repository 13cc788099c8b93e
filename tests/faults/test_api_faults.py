"""API server faults while events flow (issue 12's fault list): a 410
storm (every WATCH answered 410 Gone for a while, so the agent relists again
and again) and the watch stream cut in the middle of a line, repeatedly,
during a burst. In both, once the fault ends every event emitted before,
during and after it arrives, and no (uid, count) arrives twice: relists are
deduplicated and a cut line is neither half-parsed nor lost. The agent stays
live throughout."""
import threading
import time

from lib.agentproc import wait_for
from lib.events_helpers import EventCollector, metric

CID = "c1"


def start(nats_server, nats_client, kubesim, agent_factory):
    sub = nats_client.subscribe(f"agent.event.{CID}")
    nats_client.flush()
    col = EventCollector(sub)
    agent = agent_factory(["--nats", nats_server.url, "--kubeconfig", kubesim.kubeconfig, "--cluster-id", CID],
                          env={"COLLECT_AGENT_EVENTS_DEDUP_WINDOW": "0s",
                               "COLLECT_AGENT_KUBERNETES_BACKOFF_INITIAL": "100ms",
                               "COLLECT_AGENT_KUBERNETES_BACKOFF_MAX": "1s"})
    agent.wait_ready(timeout=30)
    return agent, col


def emit(kubesim, namespace, count, prefix):
    r = kubesim.emit_events(namespace=namespace, count=count, reason="BackOff", name_prefix=prefix, uids=True)
    return r["uids"]


class Emitter(threading.Thread):
    """Batches of events every 200 ms until stopped; keeps their uids."""

    def __init__(self, kubesim, namespace):
        super().__init__(daemon=True)
        self.kubesim, self.namespace = kubesim, namespace
        self.uids, self.stop_ev = [], threading.Event()

    def run(self):
        k = 0
        while not self.stop_ev.is_set():
            self.uids += emit(self.kubesim, self.namespace, 20, f"b{k}")
            k += 1
            time.sleep(0.2)

    def stop(self):
        self.stop_ev.set()
        self.join(timeout=20)


def assert_exactly_once(col, want):
    got = col.uids()
    assert got == set(want), f"missing {len(set(want) - got)}, unexpected {len(got - set(want))}"
    assert not col.repeated(), f"repeated (uid, count): {sorted(col.repeated())[:10]}"


def test_410_storm_loses_and_repeats_nothing(nats_server, nats_client, kubesim, agent_factory):
    agent, col = start(nats_server, nats_client, kubesim, agent_factory)
    before = emit(kubesim, "storm410", 20, "before")
    col.until_uids(before, timeout=30)
    em = Emitter(kubesim, "storm410")
    em.start()
    kubesim.fault(status=410, verb="watch", seconds=10)
    kubesim.fault(drop_watches=True)
    live = []
    t_end = time.monotonic() + 10
    while time.monotonic() < t_end:
        live.append(agent.get("/health/live", timeout=2.0)[0])
        time.sleep(0.5)
    em.stop()
    wait_for(lambda: agent.get("/health/ready")[0] == 200, timeout=60, what="ready after the storm")
    after = emit(kubesim, "storm410", 20, "after")
    want = set(before) | set(em.uids) | set(after)
    col.until_uids(want, timeout=60)
    col.quiet(1.5)
    assert_exactly_once(col, want)
    assert set(live) == {200}, live
    refl = agent.health()["events"]["reflectors"][0]["watch"]
    assert refl["lists"] >= 2, refl  # it relisted through the storm
    assert metric(agent, "agent_events_dropped_total") == 0
    agent.assert_clean_exit()


def test_stream_cut_mid_line_during_a_burst(nats_server, nats_client, kubesim, agent_factory):
    agent, col = start(nats_server, nats_client, kubesim, agent_factory)
    em = Emitter(kubesim, "cut")
    em.start()
    cuts = 0
    for _ in range(8):
        time.sleep(0.7)
        cuts += kubesim.fault(drop_watches=True, mid_line=True)["dropped"]
    em.stop()
    after = emit(kubesim, "cut", 20, "after")
    want = set(em.uids) | set(after)
    col.until_uids(want, timeout=60)
    col.quiet(1.5)
    assert cuts >= 4, cuts
    assert_exactly_once(col, want)
    assert agent.get("/health/live")[0] == 200
    assert metric(agent, "agent_events_dropped_total") == 0
    agent.assert_clean_exit()
