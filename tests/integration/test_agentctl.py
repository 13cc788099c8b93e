"""Issue 11, first part: agentctl, the orchestrator side's CLI, against a
real nats-server and real agents (kubesim behind them, the sandbox probe
installed as the tool `probe`).

agentctl is found next to AGENT_BIN (build/agentctl, or build-asan/agentctl
under the sanitizers)."""
import json
import os
import subprocess
import threading
import time

import pytest

from lib.agentproc import agent_binary
from lib.exec_helpers import exec_env, install_probe, probe_binary
from lib.nats import NatsClient, NatsServer, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SIGNING = os.path.join(ROOT, "tests", "fixtures", "exec", "signing")
CID = "c1"
FAST = {"COLLECT_AGENT_HEARTBEAT_INTERVAL": "200ms", "COLLECT_AGENT_NATS_RECONNECT_WAIT": "100ms",
        "COLLECT_AGENT_NATS_RECONNECT_WAIT_MAX": "500ms", "COLLECT_AGENT_METRICS_ENABLED": "false",
        "COLLECT_AGENT_EVENTS_ENABLED": "false"}


def agentctl_binary():
    return os.path.join(os.path.dirname(agent_binary()), "agentctl")


pytestmark = [
    pytest.mark.skipif(not os.path.exists(agentctl_binary()), reason="agentctl not built"),
    pytest.mark.skipif(not os.path.exists(probe_binary()), reason="sandbox probe not built"),
]


def ctl_env(extra=None):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    env.update(extra or {})
    return env


def agentctl(*args, env=None, timeout=30):
    """Run agentctl; (CompletedProcess with text output, seconds taken)."""
    t0 = time.monotonic()
    p = subprocess.run([agentctl_binary(), *args], env=ctl_env(env), capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    p.stdout_text = p.stdout.decode(errors="replace")
    p.stderr_text = p.stderr.decode(errors="replace")
    return p, time.monotonic() - t0


def agentctl_bg(*args, env=None):
    return subprocess.Popen([agentctl_binary(), *args], env=ctl_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def finish(proc, timeout=20):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


@pytest.fixture
def probe(tmp_path):
    path = install_probe(str(tmp_path / "tools"), "probe")
    work = tmp_path / "work"
    work.mkdir()
    return path, str(work)


def start_agent(agent_factory, nats_server, kubesim, probe, env=None, encoding="json"):
    path, work = probe
    e = dict(FAST)
    e.update(exec_env(path, path, {"COLLECT_AGENT_EXEC_WORK_DIR": work}))
    e["COLLECT_AGENT_NATS_ENCODING"] = encoding
    e.update(env or {})
    a = agent_factory(args=["--nats", nats_server.url, "--kubeconfig", kubesim.kubeconfig, "--cluster-id", CID],
                      env=e)
    a.wait_ready(timeout=20)
    return a


# ------------------------------------------------------------------ usage


def test_help_version_and_usage_errors():
    p, _ = agentctl("--help")
    assert p.returncode == 0 and "agents" in p.stdout_text and "exec" in p.stdout_text
    p, _ = agentctl("--version")
    assert p.returncode == 0 and p.stdout_text.startswith("agentctl ")
    for args, words in [((), "no verb"), (("frobnicate",), "unknown verb 'frobnicate'"),
                        (("--bogus", "agents"), "unrecognized option"),
                        (("agents", "--window", "soon"), "--window: 'soon' is not a duration"),
                        (("--timeout", "-1s", "agents"), "--timeout"),
                        (("-o", "yaml", "agents"), "-o: 'yaml'"),
                        (("tail",), "what to follow"), (("tail", "logs"), "'logs' is not one of"),
                        (("tail", "events", "--count", "0"), "--count"),
                        (("exec", "--", "probe", "echo"), "--cluster ID is required"),
                        (("exec", "--cluster", "c1", "probe", "echo"), "put '--' before the command"),
                        (("exec", "--cluster", "c1", "--", "probe"), "give a TOOL and an ACTION"),
                        (("exec", "--cluster", "a.b", "--", "probe", "echo"), "not a cluster ID"),
                        (("exec", "--cluster", "c1", "--namespace", "Bad_NS", "--", "probe", "echo"),
                         "not a namespace name")]:
        p, took = agentctl(*args)
        assert p.returncode == 64, (args, p.stderr_text)
        assert words in p.stderr_text, (args, p.stderr_text)
        assert took < 2


# ------------------------------------------------------------------ NATS


def test_no_nats_fails_fast():
    url = f"nats://127.0.0.1:{free_port()}"
    for args in (("agents",), ("tail", "heartbeats"),
                 ("exec", "--cluster", CID, "--timeout", "30s", "--", "probe", "echo", "x")):
        p, took = agentctl("--nats", url, *args)
        assert p.returncode == 4, (args, p.stderr_text)
        assert f"cannot connect to NATS at {url}" in p.stderr_text
        assert took < 5, took


def test_wrong_credentials_are_reported():
    server = NatsServer(args=["--user", "ops", "--pass", "right-password"])
    server.start()
    try:
        bad = {"COLLECT_AGENT_NATS_AUTH_USER": "ops", "COLLECT_AGENT_NATS_AUTH_PASSWORD": "not-the-pass"}
        p, took = agentctl("--nats", server.url, "exec", "--cluster", CID, "--", "probe", "echo", env=bad)
        assert p.returncode == 4, p.stderr_text
        assert "cannot connect to NATS" in p.stderr_text and "wrong credentials?" in p.stderr_text, p.stderr_text
        assert "not-the-pass" not in p.stderr_text
        assert took < 5
        # The right password connects: no agent there, so the server says
        # at once that nobody listens.
        good = {"COLLECT_AGENT_NATS_AUTH_USER": "ops", "COLLECT_AGENT_NATS_AUTH_PASSWORD": "right-password"}
        p, took = agentctl("--nats", server.url, "exec", "--cluster", CID, "--", "probe", "echo", env=good)
        assert p.returncode == 3, p.stderr_text
        assert "is an agent for cluster c1 connected?" in p.stderr_text
    finally:
        server.stop()


def connects(url, *flags, env=None):
    """agentctl's status for an exec nobody answers: 3 once connected
    (the server says at once that nobody listens), 4 when refused."""
    p, _ = agentctl("--nats", url, *flags, "exec", "--cluster", CID, "--", "probe", "echo", env=env)
    assert p.returncode in (3, 4), p.stderr_text
    return p.returncode


def test_auth_and_tls_flags(tmp_path):
    """The agent's NATS authentication and TLS as flags (and --config, an
    agent's config file): each connects where its absence or a wrong
    value is refused; a flag wins over the variable it stands for."""
    (tmp_path / "right").write_text("right-password\n")
    (tmp_path / "wrong").write_text("not-the-pass\n")
    server = NatsServer(args=["--user", "ops", "--pass", "right-password"])
    server.start()
    try:
        assert connects(server.url, "--user", "ops", "--password-file", str(tmp_path / "right")) == 3
        assert connects(server.url, "--user", "ops", "--password-file", str(tmp_path / "wrong")) == 4
        assert connects(server.url, "--user", "ops", "--password-file", str(tmp_path / "right"),
                        env={"COLLECT_AGENT_NATS_AUTH_USER": "someone-else"}) == 3
        cfg = tmp_path / "collect-agent.yaml"
        cfg.write_text(f"nats:\n  servers: [{server.url}]\n  auth:\n    user: ops\n"
                       f"    password_file: {tmp_path / 'right'}\n")
        p, _ = agentctl("--config", str(cfg), "exec", "--cluster", CID, "--", "probe", "echo")
        assert p.returncode == 3, p.stderr_text
    finally:
        server.stop()

    (tmp_path / "token").write_text("s3cret-token\n")
    server = NatsServer(args=["--auth", "s3cret-token"])
    server.start()
    try:
        assert connects(server.url, "--token-file", str(tmp_path / "token")) == 3
        assert connects(server.url) == 4
    finally:
        server.stop()

    from test_nats_auth import make_pki
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    server = NatsServer(args=["--tls", "--tlscert", str(pki / "server.crt"), "--tlskey", str(pki / "server.key"),
                              "--tlsverify", "--tlscacert", str(pki / "ca.crt")])
    server.start()
    try:
        assert connects(server.url, "--tls-ca", str(pki / "ca.crt"), "--tls-cert", str(pki / "client.crt"),
                        "--tls-key", str(pki / "client.key")) == 3
        assert connects(server.url, "--tls-ca", str(pki / "ca.crt")) == 4  # no client certificate
    finally:
        server.stop()

    from test_nats_auth import decentralized_setup
    conf, good, _, foreign = decentralized_setup(tmp_path)
    server = NatsServer(args=["-c", str(conf)])
    server.start()
    try:
        assert connects(server.url, "--creds", str(good)) == 3
        assert connects(server.url, "--creds", str(foreign)) == 4
    finally:
        server.stop()

    p, _ = agentctl("--creds", "", "agents")
    assert p.returncode == 64 and "--creds: empty value" in p.stderr_text, p.stderr_text
    p, _ = agentctl("--creds", str(tmp_path / "missing.creds"), "agents")
    assert p.returncode == 64 and "missing.creds" in p.stderr_text, p.stderr_text


def test_exec_without_agent_exits_3_quickly(nats_server):
    p, took = agentctl("--nats", nats_server.url, "exec", "--cluster", "nobody", "--timeout", "10s", "--",
                       "kubectl", "get", "pods")
    assert p.returncode == 3, p.stderr_text
    assert "agent.command.nobody" in p.stderr_text and "cluster nobody connected?" in p.stderr_text
    assert took < 5


def test_exec_silent_subscriber_times_out_with_3(nats_server, nats_client):
    """Something subscribes but never answers: agentctl waits --timeout plus
    its margin, then says so."""
    nats_client.subscribe("agent.command.silent")
    nats_client.flush()
    p, took = agentctl("--nats", nats_server.url, "exec", "--cluster", "silent", "--timeout", "1s", "--",
                       "kubectl", "get", "pods")
    assert p.returncode == 3, p.stderr_text
    assert "no agent answered on agent.command.silent within 6s" in p.stderr_text
    assert 5.5 < took < 10, took


def test_exec_undecodable_reply(nats_server, nats_client):
    sub = nats_client.subscribe("agent.command.liar")
    nats_client.flush()

    def answer():
        m = sub.next(timeout=10)
        nats_client.publish(m.reply, b"\x00not a result", headers={"Content-Type": "application/x-protobuf"})

    t = threading.Thread(target=answer)
    t.start()
    p, took = agentctl("--nats", nats_server.url, "exec", "--cluster", "liar", "--", "kubectl", "get", "pods")
    t.join()
    assert p.returncode == 5, p.stderr_text
    assert "does not decode" in p.stderr_text
    assert took < 5


# ------------------------------------------------------------------ agents


def test_agents_none_answered(nats_server):
    p, took = agentctl("--nats", nats_server.url, "agents", "--window", "500ms")
    assert p.returncode == 1
    assert "no agent answered on agent.register.* or agent.heartbeat.* within 500ms" in p.stderr_text
    assert took < 3


def test_agents_text_and_json(nats_server, kubesim, agent_factory, probe):
    # Listening before the agent starts catches its registration too.
    bg = agentctl_bg("--nats", nats_server.url, "-o", "json", "agents", "--window", "10s")
    time.sleep(0.5)
    agent = start_agent(agent_factory, nats_server, kubesim, probe)
    code, out, err = finish(bg)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 1, out
    row = rows[0]
    assert row["cluster_id"] == CID and row["agent_id"]
    assert row["version"] == "0.1.0" and "kubernetes_version" in row
    assert row["state"] == "online" and row["status"] in ("ok", "degraded")
    assert 0 <= row["last_heartbeat_age_seconds"] <= 2 and row["last_heartbeat"].endswith("Z")

    # Text: heartbeats only (the registration came before), one line each.
    p, _ = agentctl("--nats", nats_server.url, "agents", "--window", "1s")
    assert p.returncode == 0, p.stderr_text
    lines = p.stdout_text.splitlines()
    assert lines[0].split() == ["CLUSTER", "AGENT", "VERSION", "KUBERNETES", "HEARTBEAT", "STATE"]
    assert len(lines) == 2
    cols = lines[1].split()
    assert cols[0] == CID and cols[1] == row["agent_id"] and cols[-1] == "online"
    assert cols[4] in ("0s", "1s")

    # An agent that says it is stopping is offline at once.
    bg = agentctl_bg("--nats", nats_server.url, "-o", "json", "agents", "--window", "3s")
    time.sleep(1)
    code, _ = agent.terminate()
    assert code == 0
    code, out, err = finish(bg)
    row = json.loads(out.splitlines()[-1])
    assert code == 0 and row["status"] == "stopping" and row["state"] == "offline", out


# ------------------------------------------------------------------ tail


def tail_until(args, poke, nats_url, timeout=20):
    """Start `agentctl tail ARGS`, call poke() every half second until it
    exits (it subscribes a moment after it starts); its (code, out, err)."""
    bg = agentctl_bg("--nats", nats_url, *args)
    deadline = time.monotonic() + timeout
    while bg.poll() is None and time.monotonic() < deadline:
        poke()
        time.sleep(0.5)
    return finish(bg, timeout=5)


CRASHLOOP_POD = {
    "metadata": {"name": "web-0", "namespace": "default"},
    "spec": {"nodeName": "node-a", "containers": [{"name": "web", "image": "nginx:1.25"}]},
    "status": {"phase": "Running", "containerStatuses": [{
        "name": "web", "ready": False, "restartCount": 5, "image": "nginx:1.25",
        "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_tail_every_kind(nats_server, kubesim, agent_factory, probe, encoding):
    kubesim.create("pods", CRASHLOOP_POD)
    start_agent(agent_factory, nats_server, kubesim, probe, encoding=encoding,
                env={"COLLECT_AGENT_EVENTS_ENABLED": "true", "COLLECT_AGENT_METRICS_ENABLED": "true",
                     "COLLECT_AGENT_METRICS_INTERVAL": "1s"})
    url = nats_server.url
    nothing = lambda: None  # noqa: E731

    # heartbeats, text then json
    code, out, err = tail_until(["tail", "heartbeats", "--count", "2"], nothing, url)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 and all(f" {CID} " in ln and "uptime" in ln for ln in lines), out
    code, out, err = tail_until(["-o", "json", "tail", "heartbeats", "--cluster", CID, "--count", "1"], nothing,
                                url)
    hb = json.loads(out)
    assert code == 0 and hb["cluster_id"] == CID and hb["status"] in ("ok", "degraded")

    # metrics
    # metrics: one line a person reads, with the unhealthy pod and its reason
    code, out, err = tail_until(["tail", "metrics", "--count", "1"], nothing, url)
    assert code == 0, err
    assert len(out.splitlines()) == 1, out
    assert f" {CID} part 1/1: nodes 1/1 ready; pods 1: 1 running; 5 restarts; " in out, out
    assert out.rstrip().endswith("; 1 unhealthy: default/web-0 CrashLoopBackOff (5 restarts)"), out
    code, out, err = tail_until(["tail", "metrics", "--count", "1", "-o", "json"], nothing, url)
    sample = json.loads(out)
    assert code == 0 and sample["cluster_id"] == CID and "summary" in sample

    # events: kubesim emits a BackOff every half second until one shows
    n = [0]

    def emit():
        n[0] += 1
        kubesim.emit_events(namespace="shop", count=1, reason="BackOff", name_prefix=f"web{n[0]}")

    code, out, err = tail_until(["tail", "events", "--cluster", CID, "--count", "1"], emit, url)
    assert code == 0, err
    assert f" {CID} " in out and " shop/Pod/web" in out and " BackOff: " in out, out
    code, out, err = tail_until(["tail", "events", "--count", "1", "-o", "json"], emit, url)
    ev = json.loads(out)
    assert code == 0 and ev["reason"] == "BackOff" and ev["involved_object"]["namespace"] == "shop"

    # results: an exec every half second until one shows
    def run():
        agentctl("--nats", url, "exec", "--cluster", CID, "--", "probe", "echo", "hi")

    code, out, err = tail_until(["tail", "results", "--count", "1"], run, url)
    assert code == 0, err
    assert f" {CID} " in out and " succeeded exit 0 " in out, out
    code, out, err = tail_until(["-o", "json", "tail", "results", "--count", "1"], run, url)
    r = json.loads(out)
    assert code == 0 and r["status"] == "succeeded" and r["stdout"] == "hi\n"


def test_tail_stops_on_sigterm(nats_server):
    bg = agentctl_bg("--nats", nats_server.url, "tail", "events")
    time.sleep(1)
    assert bg.poll() is None
    bg.terminate()
    code, out, err = finish(bg, timeout=5)
    assert code == 0 and out == "", err


def wait_subscribed(nats_client, subject, out_path, timeout=10):
    """Publish a marker event until the tail started with stdout to
    out_path prints it (it is subscribed then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nats_client.publish(subject, json.dumps({"uid": "marker", "reason": "Marker"}).encode(),
                            headers={"Content-Type": "application/json"})
        nats_client.flush()
        time.sleep(0.2)
        with open(out_path) as f:
            if f.read().count("\n"):
                return
    raise AssertionError("agentctl tail never printed the marker")


def test_tail_keeps_an_agents_first_burst(nats_server, nats_client, tmp_path):
    """An agent publishes the last 5 minutes' events at once when it
    starts: thousands on a busy cluster. tail prints every one (it
    dropped all but its first 64 pending messages once, silently)."""
    subject, burst = f"agent.event.{CID}", 5000
    out_path = tmp_path / "tail.out"
    with open(out_path, "w") as out:
        bg = subprocess.Popen([agentctl_binary(), "--nats", nats_server.url, "-o", "json", "tail", "events",
                               "--count", str(burst + 1)], env=ctl_env(), stdout=out, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL)
    try:
        wait_subscribed(nats_client, subject, out_path)
        for i in range(burst):
            nats_client.publish(subject, json.dumps({"uid": f"e-{i}", "reason": "BackOff",
                                                     "message": "x" * 200}).encode(),
                                headers={"Content-Type": "application/json"})
        nats_client.flush()
        bg.wait(timeout=60)
    finally:
        if bg.poll() is None:
            bg.kill()
            bg.wait()
    err = bg.stderr.read().decode(errors="replace")
    uids = [json.loads(line)["uid"] for line in out_path.read_text().splitlines()]
    assert bg.returncode == 0 and "dropped" not in err, err
    markers = uids.index(f"e-0")
    assert uids[markers:] == [f"e-{i}" for i in range(burst)]
    assert set(uids[:markers]) == {"marker"}


def test_tail_says_when_it_dropped_messages(nats_server, nats_client, tmp_path):
    """More than tail may hold (CA_AGENTCTL_PENDING_BYTES) while its
    output is blocked: it says how many it dropped, and printed and
    dropped add up to what was sent; the exit status is 1."""
    subject, total = f"agent.event.{CID}", 45000  # ~90 MB, beyond the 64 MiB tail may hold
    out_path = tmp_path / "first.out"
    bg = subprocess.Popen([agentctl_binary(), "--nats", nats_server.url, "-o", "json", "tail", "events"],
                          env=ctl_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    lines, errs = [], []
    err_reader = threading.Thread(target=lambda: errs.extend(bg.stderr), daemon=True)
    err_reader.start()
    try:
        # Subscribed once the first marker line comes through the pipe.
        deadline = time.monotonic() + 10
        first = []
        reader = threading.Thread(target=lambda: first.append(bg.stdout.readline()), daemon=True)
        reader.start()
        while not first and time.monotonic() < deadline:
            nats_client.publish(subject, json.dumps({"uid": "marker"}).encode(),
                                headers={"Content-Type": "application/json"})
            nats_client.flush()
            reader.join(0.2)
        assert first, "agentctl tail never printed the marker"
        reader.join(5)  # markers still in flight land in the pipe unread: tail's writes block soon
        pad = "x" * 2000
        for i in range(total):
            nats_client.publish(subject, json.dumps({"uid": f"e-{i}", "message": pad}).encode(),
                                headers={"Content-Type": "application/json"})
        nats_client.flush(timeout=60)
        # Read the rest until nothing comes for 3 s (what waits is printed
        # at tens of thousands a second), then stop it.
        reader = threading.Thread(target=lambda: lines.extend(bg.stdout), daemon=True)
        reader.start()
        n = -1
        while n != len(lines):
            n = len(lines)
            time.sleep(3)
        bg.terminate()
        bg.wait(timeout=10)
        reader.join(5)
        err_reader.join(5)
    finally:
        if bg.poll() is None:
            bg.kill()
            bg.wait()
    err = b"".join(errs).decode(errors="replace")
    # While running, a report a second at most: stderr is no flood.
    assert err.count("\n") <= 3 + 60, err[-2000:]
    printed = [json.loads(line)["uid"] for line in lines]
    printed = [u for u in printed if u != "marker"]
    reported = sum(int(w.split()[1]) for w in err.splitlines() if " messages dropped: " in w)
    assert bg.returncode == 1, err
    assert reported > 0 and "what it printed is incomplete" in err, err
    assert len(printed) + reported == total, (len(printed), reported, err[-2000:])
    assert printed == sorted(printed, key=lambda u: int(u[2:])), "printed out of order"


# ------------------------------------------------------------------ exec


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_exec_success_failure_rejection_timeout(nats_server, kubesim, agent_factory, probe, encoding):
    agent = start_agent(agent_factory, nats_server, kubesim, probe, encoding=encoding)
    url = nats_server.url
    # Commands go out in the encoding agentctl is given (the agent takes both).
    env = {"COLLECT_AGENT_NATS_ENCODING": encoding}

    p, took = agentctl("--nats", url, "exec", "--cluster", CID, "--", "probe", "echo", "hello", "wörld", env=env)
    assert p.returncode == 0, p.stderr_text
    assert p.stdout == "hello\nwörld\n".encode() and p.stderr == b""

    p, _ = agentctl("--nats", url, "exec", "--cluster", CID, "--", "probe", "flood", "5", "both", env=env)
    assert p.returncode == 0, p.stderr_text
    assert p.stdout == b"yyyyy" and p.stderr == b"yyyyy"

    p, _ = agentctl("--nats", url, "exec", "--cluster", CID, "--", "probe", "exit", "3", env=env)
    assert p.returncode == 3, p.stderr_text

    p, _ = agentctl("--nats", url, "exec", "--cluster", CID, "--", "kubectl", "delete", "pods", "--all", env=env)
    assert p.returncode == 2
    assert p.stderr_text.startswith("rejected: ") and "delete" in p.stderr_text, p.stderr_text

    p, took = agentctl("--nats", url, "--timeout", "1s", "exec", "--cluster", CID, "--", "probe", "sleep", "60",
                       env=env)
    assert p.returncode == 124, p.stderr_text
    assert "timed out on the agent after 1s" in p.stderr_text
    assert took < 6, took

    p, _ = agentctl("--nats", url, "-o", "json", "exec", "--cluster", CID, "--", "probe",
                    "echo", "x", env=env)
    r = json.loads(p.stdout)
    assert p.returncode == 0 and r["status"] == "succeeded" and r["stdout"] == "x\n" and r["cluster_id"] == CID
    audit = [x for x in agent.log_records() if x.get("component") == "audit" and x.get("command_id") ==
             r["command_id"]]
    assert audit and audit[0]["issuer"] == "agentctl"
    agent.assert_clean_exit()


def test_exec_signed_commands(nats_server, kubesim, agent_factory, probe):
    start_agent(agent_factory, nats_server, kubesim, probe,
                env={"COLLECT_AGENT_EXEC_REQUIRE_SIGNATURE": "true",
                     "COLLECT_AGENT_EXEC_PUBLIC_KEY_FILES": os.path.join(SIGNING, "public.pem")})
    url = nats_server.url
    key = os.path.join(SIGNING, "private.pem")
    p, _ = agentctl("--nats", url, "exec", "--cluster", CID, "--sign-key", key, "--issuer", "ops@example.com",
                    "--", "probe", "echo", "signed")
    assert p.returncode == 0, p.stderr_text
    assert p.stdout == b"signed\n"
    for enc in ("protobuf",):
        p, _ = agentctl("--nats", url, "exec", "--cluster", CID, "--sign-key", key, "--", "probe", "echo", "pb",
                        env={"COLLECT_AGENT_NATS_ENCODING": enc})
        assert p.returncode == 0 and p.stdout == b"pb\n", p.stderr_text
    p, _ = agentctl("--nats", url, "exec", "--cluster", CID, "--", "probe", "echo", "unsigned")
    assert p.returncode == 2 and "rejected: command is not signed" in p.stderr_text, p.stderr_text
    p, _ = agentctl("--nats", url, "exec", "--cluster", CID, "--sign-key", os.path.join(SIGNING, "other_private.pem"),
                    "--", "probe", "echo", "x")
    assert p.returncode == 2 and "does not verify" in p.stderr_text, p.stderr_text
    p, took = agentctl("--nats", url, "exec", "--cluster", CID, "--sign-key", os.path.join(SIGNING, "public.pem"),
                       "--", "probe", "echo", "x")
    assert p.returncode == 64 and "public.pem" in p.stderr_text and took < 2, p.stderr_text


def test_exec_default_timeout_covers_the_command(nats_server, nats_client, kubesim, agent_factory, probe):
    """Without --timeout the command gets 30 s (the agent's documented
    exec.default_timeout, sent in the Command) and agentctl waits that plus
    its margin: a command longer than agentctl's 5 s listening default is
    answered, not reported as "no agent answered"."""
    start_agent(agent_factory, nats_server, kubesim, probe)
    url = nats_server.url
    seen = nats_client.subscribe(f"agent.command.{CID}")  # beside the agent's queue group
    nats_client.flush()

    p, _ = agentctl("--nats", url, "exec", "--cluster", CID, "--", "probe", "sleep", "7", timeout=60)
    assert p.returncode == 0, p.stderr_text
    assert "no agent answered" not in p.stderr_text
    assert json.loads(seen.next(timeout=10).data)["timeout_seconds"] == 30

    # --timeout still sets both: the command's timeout and the wait.
    p, _ = agentctl("--nats", url, "--timeout", "2s", "exec", "--cluster", CID, "--", "probe", "echo", "x")
    assert p.returncode == 0 and p.stdout == b"x\n", p.stderr_text
    assert json.loads(seen.next(timeout=10).data)["timeout_seconds"] == 2
