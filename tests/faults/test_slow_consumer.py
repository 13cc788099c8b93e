"""The agent as a slow consumer (issue 12's fault suite): while it cannot
read (SIGSTOP), a flood on its command subject fills what nats-server keeps
for it, and the server cuts it off as a slow consumer. Once it runs again it
must reconnect by itself, become ready, answer commands and publish events;
the flood is bounded on its side (the subscription's pending limits), and
the process stays live and within its budget."""
import json
import os
import signal
import time
import urllib.request
import uuid

from lib.agentproc import wait_for
from lib.events_helpers import EventCollector, metric, rss_kib
from lib.nats import NatsClient, NatsServer, free_port

CID = "c1"


def varz(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/varz", timeout=5) as r:
        return json.loads(r.read())


def test_a_slow_consumer_is_cut_off_and_comes_back(tmp_path, kubesim, agent_factory):
    conf = tmp_path / "nats.conf"
    # A small per-client outbound limit, so the cut comes after a few MB (the
    # kernel's socket buffers hold some before nats-server counts); the
    # server wants max_payload no larger than max_pending.
    conf.write_text("max_pending: 262144\nmax_payload: 65536\nwrite_deadline: \"2s\"\n")
    monitor = free_port()
    server = NatsServer(args=["-c", str(conf), "-m", str(monitor)])
    server.start()
    client = NatsClient(server.url)
    try:
        env = {"COLLECT_AGENT_EVENTS_DEDUP_WINDOW": "0s", "COLLECT_AGENT_NATS_RECONNECT_WAIT": "200ms"}
        agent = agent_factory(["--nats", server.url, "--kubeconfig", kubesim.kubeconfig, "--cluster-id", CID],
                              env=env)
        agent.wait_ready()
        rss_before = rss_kib(agent.proc.pid)

        os.kill(agent.proc.pid, signal.SIGSTOP)
        try:
            junk = b'{"id":"' + b"x" * 1000 + b'"}'
            deadline = time.monotonic() + 60
            while varz(monitor).get("slow_consumers", 0) == 0 and time.monotonic() < deadline:
                for _ in range(2000):
                    client.publish(f"agent.command.{CID}", junk)
                client.flush()
            assert varz(monitor)["slow_consumers"] >= 1, "nats-server never cut the stopped agent off"
        finally:
            os.kill(agent.proc.pid, signal.SIGCONT)

        # Back by itself: reconnected, ready, live.
        wait_for(lambda: (metric(agent, "agent_nats_reconnects_total") or 0) >= 1, timeout=60,
                 what="the agent reconnecting after the cut")
        agent.wait_ready(timeout=60)
        assert agent.get("/health/live")[0] == 200
        # It serves: a command gets its answer, an event arrives.
        cmd = {"id": "after-" + uuid.uuid4().hex, "cluster_id": CID, "tool": "nope", "action": "get",
               "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        reply = json.loads(client.request(f"agent.command.{CID}", json.dumps(cmd).encode(),
                                          headers={"Content-Type": "application/json"}, timeout=30).data)
        assert reply["command_id"] == cmd["id"] and reply["status"] == "rejected", reply
        sub = client.subscribe(f"agent.event.{CID}")
        client.flush()
        col = EventCollector(sub)
        kubesim.emit_events(namespace="after", count=5, reason="BackOff", name_prefix="after", uids=False)
        col.until(lambda c: len(c.items) >= 5, timeout=30, what="events after the cut")
        # What the flood left on the agent's side was bounded: its memory
        # stays within the room the budget gives incoming commands.
        assert rss_kib(agent.proc.pid) < rss_before + 64 * 1024, (rss_before, rss_kib(agent.proc.pid))
        agent.assert_clean_exit()
    finally:
        client.close()
        server.stop()
