"""NATS outages longer than memory holds, with the on-disk spool
(events.spool_dir, issue 12): nats-server killed and restarted on the same
port while the simulated cluster emits far more events than the memory
ring holds (events.buffer_size 50, nats.c's reconnect buffer 1 byte).

- every event arrives once NATS is back: counted by Nats-Msg-Id, no gap and
  no duplicate, in order per involved object, the spool empty afterwards;
- with a small spool cap the oldest are dropped and counted, the newest kept
  (exactly a suffix of what was emitted);
- the agent SIGKILLed with a non-empty spool and started again on the same
  directory and state file replays the spool: nothing lost. Duplicates are
  allowed there and only there, with the same Nats-Msg-Id: the state file
  stays before the oldest spooled event, so the resumed watch sends them
  again; the dedup memory, taught by the spool at start, drops the versions
  the spool holds, so only events published after the state file's last
  write (at most 2 s) can arrive twice, and a JetStream stream's duplicate
  window removes those.

The outage lasts OUTAGE_SECONDS (default 20; the issue's check is 300) at
EVENTS_PER_SECOND (default 100). Figures (spooled, replayed, RSS, time to
drain) are printed; run with -s to see them."""
import hashlib
import os
import re
import signal
import subprocess
import time

from lib.agentproc import run_agent_once, wait_for
from lib.events_helpers import EventCollector, TcpGate, metric, rss_kib
from lib.nats import NatsClient

CID = "c1"
OUTAGE_SECONDS = float(os.environ.get("OUTAGE_SECONDS", "20"))
EVENTS_PER_SECOND = int(os.environ.get("EVENTS_PER_SECOND", "100"))


def spool_env(tmp_path, **extra):
    env = {
        "COLLECT_AGENT_EVENTS_DEDUP_WINDOW": "0s",
        "COLLECT_AGENT_EVENTS_BUFFER_SIZE": "50",
        "COLLECT_AGENT_EVENTS_SPOOL_DIR": str(tmp_path / "spool"),
        "COLLECT_AGENT_EVENTS_STATE_FILE": str(tmp_path / "state"),
        "COLLECT_AGENT_NATS_RECONNECT_BUFFER_BYTES": "1",
        "COLLECT_AGENT_NATS_RECONNECT_WAIT": "500ms",
        "COLLECT_AGENT_NATS_RECONNECT_WAIT_MAX": "1s",
        "COLLECT_AGENT_HEARTBEAT_INTERVAL": "1s",
    }
    env.update(extra)
    return env


def msg_id(r):
    return r.headers.get("Nats-Msg-Id", "")


def emitted(kubesim, namespace):
    """(uid-rv ids in resourceVersion order, {id: involved object name})."""
    items = kubesim.api_json(f"/api/v1/namespaces/{namespace}/events")["items"]
    items.sort(key=lambda o: int(o["metadata"]["resourceVersion"]))
    ids = [f"{o['metadata']['uid']}-{o['metadata']['resourceVersion']}" for o in items]
    return ids


def check_order_per_object(items):
    """Per involved object, first arrivals in increasing resourceVersion
    (kubesim's versions are integers; the agent never compares them)."""
    last, seen = {}, set()
    for r in items:
        mid = msg_id(r)
        if mid in seen:
            continue
        seen.add(mid)
        e = r.event
        key = (e.get("involved_object", {}).get("namespace", ""), e.get("involved_object", {}).get("name", ""))
        rv = int(e["resource_version"])
        assert rv > last.get(key, -1), f"out of order for {key}: {rv} after {last[key]}"
        last[key] = rv


def outage(kubesim, agent, nats_server, gate, namespace, seconds, rate, spooled_at_least=1):
    """Kill NATS, emit rate events a second for `seconds` about 40 pods
    (several events per pod), and return how many were emitted."""
    gate.close()
    nats_server.stop(kill=True)
    wait_for(lambda: agent.get("/health/ready")[0] == 503, timeout=30, what="agent sees NATS gone")
    n, t_end, batch = 0, time.monotonic() + seconds, max(1, rate // 10)
    while time.monotonic() < t_end:
        kubesim.emit_events(namespace=namespace, count=batch, reason="BackOff",
                            name_prefix=f"p{n % 40:02d}", uids=False)
        n += batch
        time.sleep(batch / rate)
    wait_for(lambda: (metric(agent, "agent_events_spooled_total") or 0) >= spooled_at_least,
             timeout=30, what="events spooled")
    return n


def nats_back(nats_server, namespace_sub=f"agent.event.{CID}"):
    """Start NATS again on its port and subscribe before the agent can
    reconnect (the gate is still closed)."""
    nats_server.start()
    client = NatsClient(nats_server.url)
    sub = client.subscribe(namespace_sub)
    client.flush()
    return client, EventCollector(sub)


def test_outage_spools_and_replays_everything_in_order(nats_server, kubesim, agent_factory, tmp_path):
    gate = TcpGate(nats_server.port)
    gate.open()
    client = None
    try:
        agent = agent_factory(["--nats", gate.url, "--kubeconfig", kubesim.kubeconfig, "--cluster-id", CID],
                              env=spool_env(tmp_path))
        agent.wait_ready(timeout=30)
        n = outage(kubesim, agent, nats_server, gate, "outage", OUTAGE_SECONDS, EVENTS_PER_SECOND,
                   spooled_at_least=100)
        want = emitted(kubesim, "outage")
        assert len(want) == n
        spool = agent.health()["events"]["spool"]
        assert spool["records"] > 0 and spool["dropped"] == 0, spool
        rss_outage = rss_kib(agent.proc.pid)
        spooled = metric(agent, "agent_events_spooled_total")

        client, col = nats_back(nats_server)
        t0 = time.monotonic()
        gate.open()
        col.until(lambda c: set(want) <= {msg_id(r) for r in c.items}, timeout=120 + n / 100,
                  what=f"all {n} outage events")
        drain_s = time.monotonic() - t0
        wait_for(lambda: metric(agent, "agent_events_spool_records") == 0, timeout=30, what="spool empty")
        col.quiet(seconds=1.0)
        ids = [msg_id(r) for r in col.items]
        assert len(ids) == len(set(ids)), "no duplicates without a restart"
        assert set(ids) == set(want), "nothing but the outage events"
        check_order_per_object(col.items)
        assert metric(agent, "agent_events_dropped_total") == 0
        assert metric(agent, "agent_events_spool_dropped_total") == 0
        assert metric(agent, "agent_events_spool_corrupt_total") == 0
        assert metric(agent, "agent_events_spool_replayed_total") == spooled
        assert metric(agent, "agent_events_spool_bytes") == 0
        assert not [f for f in os.listdir(tmp_path / "spool") if f.endswith(".seg")]
        status, text = agent.get("/metrics")
        proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for family in ["agent_events_spool_bytes", "agent_events_spool_records", "agent_events_spooled_total",
                       "agent_events_spool_replayed_total", "agent_events_spool_dropped_total",
                       "agent_events_spool_corrupt_total"]:
            assert re.search(rf'^{family}\{{cluster_id="{CID}"\}} ', text, re.M), family
        rss_end = rss_kib(agent.proc.pid)
        print(f"\nspool outage {OUTAGE_SECONDS:.0f}s: {n} events emitted, {spooled:.0f} spooled, "
              f"{metric(agent, 'agent_events_spool_replayed_total'):.0f} replayed, "
              f"spool peak ~{spool['bytes']} bytes at the check, drained in {drain_s:.1f}s, "
              f"RSS {rss_outage} KiB during the outage, {rss_end} KiB after; "
              f"append {spool['append_us']} us in all")
        agent.assert_clean_exit()
    finally:
        gate.stop()
        if client:
            client.close()


def test_small_cap_drops_the_oldest(nats_server, kubesim, agent_factory, tmp_path):
    gate = TcpGate(nats_server.port)
    gate.open()
    client = None
    try:
        env = spool_env(tmp_path, COLLECT_AGENT_EVENTS_SPOOL_MAX_BYTES=str(128 * 1024),
                        COLLECT_AGENT_EVENTS_SPOOL_SEGMENT_BYTES=str(16 * 1024))
        agent = agent_factory(["--nats", gate.url, "--kubeconfig", kubesim.kubeconfig, "--cluster-id", CID],
                              env=env)
        agent.wait_ready(timeout=30)
        gate.close()
        nats_server.stop(kill=True)
        wait_for(lambda: agent.get("/health/ready")[0] == 503, timeout=30, what="agent sees NATS gone")
        for k in range(10):
            kubesim.emit_events(namespace="cap", count=200, reason="BackOff", name_prefix=f"p{k}", uids=False)
        want = emitted(kubesim, "cap")
        wait_for(lambda: (metric(agent, "agent_events_spooled_total") or 0) +
                 (metric(agent, "agent_event_queue_size") or 0) >= len(want),
                 timeout=60, what="every event queued or spooled")
        dropped = int(metric(agent, "agent_events_spool_dropped_total"))
        assert dropped > 0
        assert metric(agent, "agent_events_spool_bytes") <= 128 * 1024
        assert "event spool full or failing" in agent.logs()

        client, col = nats_back(nats_server)
        gate.open()
        kept = want[dropped:]
        col.until(lambda c: set(kept) <= {msg_id(r) for r in c.items}, timeout=120, what="the newest events")
        col.quiet(seconds=1.0)
        ids = [msg_id(r) for r in col.items]
        assert len(ids) == len(set(ids))
        assert ids == kept, "exactly the newest, in order"
        assert metric(agent, "agent_events_dropped_total") == 0
        agent.assert_clean_exit()
    finally:
        gate.stop()
        if client:
            client.close()


def files_of(*paths):
    """{path: (size, mtime_ns, sha256)} of the files at or under paths."""
    out = {}
    for top in paths:
        walk = [(str(top), [], [""])] if os.path.isfile(top) else os.walk(top)
        for d, _, names in walk:
            for n in names:
                p = os.path.join(d, n) if n else d
                st = os.stat(p)
                with open(p, "rb") as f:
                    out[p] = (st.st_size, st.st_mtime_ns, hashlib.sha256(f.read()).hexdigest())
    assert out, paths
    return out


def test_sigkill_with_a_spool_then_restart_replays_it(nats_server, kubesim, agent_factory, tmp_path):
    gate = TcpGate(nats_server.port)
    gate.open()
    client = None
    try:
        args = ["--nats", gate.url, "--kubeconfig", kubesim.kubeconfig, "--cluster-id", CID]
        env = spool_env(tmp_path)
        agent = agent_factory(args, env=env, name="first")
        agent.wait_ready(timeout=30)
        kubesim.emit_events(namespace="kill-early", count=5, reason="BackOff", name_prefix="early")
        n = outage(kubesim, agent, nats_server, gate, "kill", 3, 200, spooled_at_least=200)
        time.sleep(2.5)  # the state file is written every 2 s: let it hold the spool's resume point
        records = metric(agent, "agent_events_spool_records")
        assert records > 0
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait(timeout=10)
        want = emitted(kubesim, "kill")

        # --check-config (as kubectl exec runs it beside a live agent) only
        # looks at the spool and the state file: it once pruned the one and
        # rewrote the other.
        before = files_of(tmp_path / "spool", tmp_path / "state")
        r = run_agent_once(["--check-config", *args], env=env)
        assert r.returncode == 0, r.stderr
        assert files_of(tmp_path / "spool", tmp_path / "state") == before

        client, col = nats_back(nats_server)
        gate.open()
        agent2 = agent_factory(args, env=env, name="second")
        col.until(lambda c: set(want) <= {msg_id(r) for r in c.items}, timeout=120,
                  what=f"all {len(want)} events after the restart")
        wait_for(lambda: metric(agent2, "agent_events_spool_records") == 0, timeout=30, what="spool empty")
        spool = agent2.health()["events"]["spool"]
        assert spool["inherited"] == records, spool
        assert spool["corrupt"] == 0 and spool["dropped"] == 0, spool
        col.quiet(seconds=1.0)
        ids = [msg_id(r) for r in col.items]
        assert set(ids) <= set(want) | set(emitted(kubesim, "kill-early"))
        check_order_per_object(col.items)
        dups = len(ids) - len(set(ids))
        # The resumed watch starts before the oldest spooled event; the
        # dedup memory learns the spooled ones at start, so it does not
        # send those again (only what it had published since the state
        # file's last write, nothing here: NATS was down).
        assert dups < records, f"{dups} duplicates of {records:.0f} spooled"
        print(f"\nSIGKILL with {records:.0f} spooled of {n}: {len(ids)} messages, "
              f"{dups} duplicates (same Nats-Msg-Id)")
        agent2.assert_clean_exit()
    finally:
        gate.stop()
        if client:
            client.close()


def test_unwritable_spool_dir_is_a_clear_error(nats_server, kubesim, agent_factory, tmp_path):
    """/proc takes no new directory, not even from root: the watcher does
    not start, and readiness and the log say which key and why."""
    env = spool_env(tmp_path, COLLECT_AGENT_EVENTS_SPOOL_DIR="/proc/collect-agent-spool")
    agent = agent_factory(["--nats", nats_server.url, "--kubeconfig", kubesim.kubeconfig, "--cluster-id", CID],
                          env=env)
    code, body = wait_for(lambda: (lambda r: r if "spool_dir" in r[1] else None)(agent.get("/health/ready")),
                          timeout=30, what="readiness naming events.spool_dir")
    assert code == 503, body
    assert "events.spool_dir: cannot create /proc/collect-agent-spool" in body, body
    assert "events.spool_dir: cannot create /proc/collect-agent-spool" in agent.logs()
    agent.assert_clean_exit()


def test_check_config_refuses_unusable_spool_and_state_paths(kubesim, tmp_path):
    """--check-config judges the files without opening the spool: a
    directory procfs will not create, a regular file named as the spool
    directory, a state file whose directory is missing, one that is a
    directory. A spool directory still to be created passes and is not
    left behind."""
    args = ["--check-config", "--kubeconfig", kubesim.kubeconfig]
    (tmp_path / "plain").write_text("x")
    (tmp_path / "statedir").mkdir()
    cases = [
        ({"COLLECT_AGENT_EVENTS_SPOOL_DIR": "/proc/collect-agent-spool"},
         "events.spool_dir: /proc/collect-agent-spool: cannot create it: "),
        ({"COLLECT_AGENT_EVENTS_SPOOL_DIR": str(tmp_path / "plain")},
         f"events.spool_dir: {tmp_path / 'plain'}: not a directory"),
        ({"COLLECT_AGENT_EVENTS_STATE_FILE": str(tmp_path / "none" / "state")},
         f"events.state_file: its directory {tmp_path / 'none'}: no such directory"),
        ({"COLLECT_AGENT_EVENTS_STATE_FILE": str(tmp_path / "statedir")},
         f"events.state_file: {tmp_path / 'statedir'} is not a regular file"),
    ]
    for env, said in cases:
        r = run_agent_once(args, env=env)
        assert r.returncode == 2 and said in r.stderr, (env, r.stderr)
    r = run_agent_once(args, env={"COLLECT_AGENT_EVENTS_SPOOL_DIR": str(tmp_path / "new-spool"),
                                  "COLLECT_AGENT_EVENTS_STATE_FILE": str(tmp_path / "state")})
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "new-spool").exists() and not (tmp_path / "state").exists()
