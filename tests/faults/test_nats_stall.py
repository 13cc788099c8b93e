"""A stalled NATS server (alive, not reading: SIGSTOP) must not block the
agent: probes answer within a second throughout, readiness says NATS cannot
deliver, SIGTERM ends the process within 5 s, and after the server resumes
events flow again (issue 8, item 2)."""
import os
import signal
import threading
import time

from lib.agentproc import wait_for
from lib.events_helpers import EventCollector

CID = "c1"


def agent_args(nats_url, kubesim):
    return ["--nats", nats_url, "--kubeconfig", kubesim.kubeconfig, "--cluster-id", CID]


def probe(agent, path):
    """(status, seconds) of one probe with the kubelet's kind of deadline."""
    t0 = time.monotonic()
    code, _ = agent.get(path, timeout=1.0)
    return code, time.monotonic() - t0


class Emitter(threading.Thread):
    """Warning events into the simulated cluster at a steady rate."""

    def __init__(self, kubesim, rate=1000, batch=100):
        super().__init__(daemon=True)
        self.kubesim, self.rate, self.batch = kubesim, rate, batch
        self.stop_ev, self.n = threading.Event(), 0

    def run(self):
        # ~1 MB/s of events: enough to fill the socket buffers towards a
        # server that stopped reading within seconds.
        while not self.stop_ev.is_set():
            self.kubesim.emit_events(namespace="stall", count=self.batch, reason="BackOff",
                                     name_prefix=f"s{self.n}", uids=False)
            self.n += self.batch
            time.sleep(self.batch / self.rate)

    def stop(self):
        self.stop_ev.set()
        self.join(timeout=10)


def test_stalled_nats_never_blocks_the_loop(nats_server, nats_client, kubesim, agent_factory):
    sub = nats_client.subscribe(f"agent.event.{CID}")
    nats_client.flush()
    col = EventCollector(sub)
    env = {"COLLECT_AGENT_EVENTS_DEDUP_WINDOW": "0s", "COLLECT_AGENT_HEARTBEAT_INTERVAL": "1s"}
    agent = agent_factory(agent_args(nats_server.url, kubesim), env=env)
    agent.wait_ready()
    emitter = Emitter(kubesim)
    emitter.start()
    col.until(lambda c: len(c.items) >= 20, timeout=20, what="events before the stall")

    os.kill(nats_server.proc.pid, signal.SIGSTOP)
    slow, ready_codes = [], []
    try:
        t_end = time.monotonic() + 20
        while time.monotonic() < t_end:
            for path in ("/health/live", "/health/ready"):
                code, took = probe(agent, path)
                if code == 0 or took > 1.0:
                    slow.append((path, code, round(took, 2)))
                if path == "/health/ready":
                    ready_codes.append(code)
            time.sleep(0.2)
        assert not slow, f"probes unanswered within 1 s while NATS is stalled: {slow[:10]}"
        # Readiness says it cannot deliver (a stalled connection, then a
        # reconnect that cannot finish), with the reason.
        assert 503 in ready_codes[-20:], ready_codes
        code, body = agent.get("/health/ready", timeout=1.0)
        assert code == 503 and "NATS" in body, body
        assert agent.get("/health/live", timeout=1.0)[0] == 200
    finally:
        os.kill(nats_server.proc.pid, signal.SIGCONT)

    # Back: events flow again and the agent is ready.
    before = len(col.items)
    agent.wait_ready(timeout=30)
    col.until(lambda c: len(c.items) >= before + 20, timeout=30, what="events after the stall")
    emitter.stop()
    agent.assert_clean_exit()


def test_sigterm_ends_within_5s_while_nats_is_stalled(nats_server, kubesim, agent_factory):
    env = {"COLLECT_AGENT_EVENTS_DEDUP_WINDOW": "0s", "COLLECT_AGENT_HEARTBEAT_INTERVAL": "1s"}
    agent = agent_factory(agent_args(nats_server.url, kubesim), env=env)
    agent.wait_ready()
    emitter = Emitter(kubesim)
    emitter.start()
    time.sleep(1)
    os.kill(nats_server.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(3)  # publishes pile up against the stalled server
        code, took = agent.terminate(signal.SIGTERM, timeout=15)
        assert took < 5.0, f"SIGTERM took {took:.1f} s with NATS stalled"
        assert code == 0, agent.logs()[-3000:]
    finally:
        os.kill(nats_server.proc.pid, signal.SIGCONT)
        emitter.stop()
    text = agent.logs()
    assert "ERROR: AddressSanitizer" not in text and "runtime error:" not in text, text[-3000:]
