"""agentctl under valgrind: every verb and every error path, run as
`valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
agentctl ...` against a real nats-server and a real agent, so a definite leak,
an invalid read or write, or a jump on uninitialised memory anywhere in
agentctl fails the test (exit 99, valgrind's report in the message).

Why here and not in scripts/test.sh's `meson test --wrap=valgrind` step:
meson prepends the wrapper to a test's command, and a test whose program is
a Python script runs as `valgrind python3 script.py`: valgrind would watch
python, and agentctl, a child, would run untraced. Here valgrind is
agentctl's own parent.

Runs in the plain build (build/agentctl). In a sanitizer build (build-asan)
valgrind and ASan's shadow memory do not mix, and LeakSanitizer already
checks agentctl there (tests/integration/test_agentctl.py): skipped."""
import os
import shutil
import subprocess
import threading
import time

import pytest

from lib.agentproc import agent_binary
from lib.exec_helpers import exec_env, install_probe, probe_binary
from lib.nats import NatsServer, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SIGNING = os.path.join(ROOT, "tests", "fixtures", "exec", "signing")
CID = "c1"
VALGRIND_ERROR = 99
VALGRIND = ["valgrind", f"--error-exitcode={VALGRIND_ERROR}", "--leak-check=full",
            "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite", "--track-origins=yes",
            "--quiet"]


def agentctl_binary():
    return os.path.join(os.path.dirname(agent_binary()), "agentctl")


def sanitizer_build(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    return any(lib in out for lib in ("libasan", "libubsan", "libtsan"))


pytestmark = [
    pytest.mark.skipif(not os.path.exists(agentctl_binary()), reason="agentctl not built"),
    pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed"),
    pytest.mark.skipif(os.path.exists(agentctl_binary()) and sanitizer_build(agentctl_binary()),
                       reason="a sanitizer build: LeakSanitizer checks agentctl there (test_agentctl.py)"),
]


class Run:
    """One agentctl run under valgrind; check() fails on a valgrind error."""

    def __init__(self, args, env, log_path):
        self.args = args
        self.log_path = log_path
        e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        e.update(env or {})
        self.proc = subprocess.Popen([*VALGRIND, f"--log-file={log_path}", agentctl_binary(), *args], env=e,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.code = self.out = self.err = None

    def finish(self, timeout=120):
        out, err = self.proc.communicate(timeout=timeout)
        self.code, self.out, self.err = self.proc.returncode, out, err.decode(errors="replace")
        return self

    def report(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def check(self, expected):
        assert self.code != VALGRIND_ERROR, f"valgrind found errors in agentctl {self.args}:\n{self.report()}"
        assert self.code == expected, (self.args, self.code, self.err, self.report())
        return self


@pytest.fixture
def ctl(tmp_path):
    """ctl(*args, env=None, expect=0) runs agentctl under valgrind to the end;
    ctl.start(*args, env=None) starts it and returns the Run."""
    n = [0]

    def start(*args, env=None):
        n[0] += 1
        return Run(list(args), env, str(tmp_path / f"valgrind-{n[0]}.log"))

    def run(*args, env=None, expect=0, timeout=120):
        return start(*args, env=env).finish(timeout).check(expect)

    run.start = start
    return run


# ----------------------------------------------------------- without an agent


def test_usage_errors(ctl):
    ctl("--help")
    ctl("exec", "--cluster", CID, "--", "probe", expect=64)
    ctl("tail", "logs", expect=64)
    ctl("exec", "--cluster", CID, "--sign-key", os.path.join(SIGNING, "public.pem"), "--", "probe", "echo",
        expect=64)


def test_no_nats(ctl):
    url = f"nats://127.0.0.1:{free_port()}"
    for args in (("agents",), ("tail", "heartbeats"), ("exec", "--cluster", CID, "--", "probe", "echo", "x")):
        r = ctl("--nats", url, *args, expect=4)
        assert "cannot connect to NATS" in r.err, r.err


def test_wrong_credentials(ctl):
    server = NatsServer(args=["--user", "ops", "--pass", "right-password"])
    server.start()
    try:
        env = {"COLLECT_AGENT_NATS_AUTH_USER": "ops", "COLLECT_AGENT_NATS_AUTH_PASSWORD": "wrong"}
        r = ctl("--nats", server.url, "exec", "--cluster", CID, "--", "probe", "echo", env=env, expect=4)
        assert "wrong credentials?" in r.err, r.err
    finally:
        server.stop()


def test_no_agent_silent_agent_and_undecodable_reply(ctl, nats_server, nats_client):
    url = nats_server.url
    r = ctl("--nats", url, "exec", "--cluster", "nobody", "--", "kubectl", "get", "pods", expect=3)
    assert "connected?" in r.err, r.err
    ctl("--nats", url, "agents", "--window", "500ms", expect=1)

    nats_client.subscribe("agent.command.silent")
    liar = nats_client.subscribe("agent.command.liar")
    nats_client.flush()
    r = ctl("--nats", url, "exec", "--cluster", "silent", "--timeout", "1s", "--", "kubectl", "get", "pods",
            expect=3)
    assert "no agent answered" in r.err, r.err

    def answer():
        m = liar.next(timeout=60)
        nats_client.publish(m.reply, b"\x00not a result", headers={"Content-Type": "application/x-protobuf"})

    t = threading.Thread(target=answer)
    t.start()
    r = ctl("--nats", url, "--timeout", "30s", "exec", "--cluster", "liar", "--", "kubectl", "get", "pods",
            expect=5)
    t.join()
    assert "does not decode" in r.err, r.err


def test_tail_stops_on_sigterm(ctl, nats_server):
    run = ctl.start("--nats", nats_server.url, "tail", "events")
    time.sleep(3)  # valgrind starts it slowly; SIGTERM before the loop runs is handled too
    run.proc.terminate()
    run.finish().check(0)


# --------------------------------------------------------------- with an agent


def start_agent(agent_factory, nats_server, kubesim, tmp_path, encoding):
    probe = install_probe(str(tmp_path / "tools"), "probe")
    work = tmp_path / "work"
    work.mkdir()
    env = {"COLLECT_AGENT_HEARTBEAT_INTERVAL": "300ms", "COLLECT_AGENT_METRICS_INTERVAL": "1s",
           "COLLECT_AGENT_NATS_ENCODING": encoding, "COLLECT_AGENT_EXEC_REQUIRE_SIGNATURE": "true",
           "COLLECT_AGENT_EXEC_PUBLIC_KEY_FILES": os.path.join(SIGNING, "public.pem")}
    env.update(exec_env(probe, probe, {"COLLECT_AGENT_EXEC_WORK_DIR": str(work)}))
    a = agent_factory(args=["--nats", nats_server.url, "--kubeconfig", kubesim.kubeconfig, "--cluster-id", CID],
                      env=env)
    a.wait_ready(timeout=30)
    return a


def tail_until(run, poke, timeout=120):
    """Call poke() every half second until the tail run exits."""
    deadline = time.monotonic() + timeout
    while run.proc.poll() is None and time.monotonic() < deadline:
        poke()
        time.sleep(0.5)
    return run.finish(timeout=10)


@pytest.mark.skipif(not os.path.exists(probe_binary()), reason="sandbox probe not built")
@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_every_verb_with_an_agent(ctl, nats_server, kubesim, agent_factory, tmp_path, encoding):
    """The agent publishes in `encoding` and agentctl sends commands in it,
    so both decoders and both encoders of agentctl run under valgrind."""
    agent = start_agent(agent_factory, nats_server, kubesim, tmp_path, encoding)
    url = nats_server.url
    enc = {"COLLECT_AGENT_NATS_ENCODING": encoding}
    key = ["--sign-key", os.path.join(SIGNING, "private.pem")]

    r = ctl("--nats", url, "agents", "--window", "3s", env=enc)
    assert f"{CID} " in r.out.decode() and "online" in r.out.decode(), r.out
    ctl("--nats", url, "-o", "json", "agents", "--window", "3s", env=enc)

    # exec: succeeded, the command's own exit code, -o json, rejected (by
    # policy, and unsigned), timed out on the agent
    r = ctl("--nats", url, "--timeout", "30s", "exec", "--cluster", CID, *key, "--", "probe", "echo", "hi",
            env=enc)
    assert r.out == b"hi\n", r.out
    ctl("--nats", url, "--timeout", "30s", "exec", "--cluster", CID, *key, "--", "probe", "exit", "3", env=enc,
        expect=3)
    ctl("--nats", url, "--timeout", "30s", "-o", "json", "exec", "--cluster", CID, *key, "--", "probe", "flood",
        "100000", "both", env=enc)
    r = ctl("--nats", url, "--timeout", "30s", "exec", "--cluster", CID, *key, "--", "kubectl", "delete", "pods",
            env=enc, expect=2)
    assert r.err.startswith("rejected: "), r.err
    r = ctl("--nats", url, "--timeout", "30s", "exec", "--cluster", CID, "--", "probe", "echo", env=enc, expect=2)
    assert "not signed" in r.err, r.err
    r = ctl("--nats", url, "--timeout", "1s", "exec", "--cluster", CID, *key, "--", "probe", "sleep", "60",
            env=enc, expect=124)
    assert "timed out on the agent" in r.err, r.err

    # tail, text and json, each kind
    nothing = lambda: None  # noqa: E731
    tail_until(ctl.start("--nats", url, "tail", "heartbeats", "--count", "2", env=enc), nothing).check(0)
    tail_until(ctl.start("--nats", url, "-o", "json", "tail", "metrics", "--count", "1", env=enc),
               nothing).check(0)
    tail_until(ctl.start("--nats", url, "tail", "metrics", "--cluster", CID, "--count", "1", env=enc),
               nothing).check(0)
    n = [0]

    def emit():
        n[0] += 1
        kubesim.emit_events(namespace="shop", count=1, reason="BackOff", name_prefix=f"web{n[0]}")

    r = tail_until(ctl.start("--nats", url, "tail", "events", "--count", "1", env=enc), emit).check(0)
    assert " BackOff: " in r.out.decode(), r.out
    tail_until(ctl.start("--nats", url, "-o", "json", "tail", "events", "--count", "1", env=enc), emit).check(0)

    def run_command():
        subprocess.run([agentctl_binary(), "--nats", url, "exec", "--cluster", CID, *key, "--", "probe", "echo",
                        "x"], capture_output=True, timeout=30)

    r = tail_until(ctl.start("--nats", url, "tail", "results", "--count", "1", env=enc), run_command).check(0)
    assert " succeeded exit 0 " in r.out.decode(), r.out
    agent.assert_clean_exit()
