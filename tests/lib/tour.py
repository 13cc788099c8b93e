"""Running scripts/demo.sh (the tour) from tests: free ports, its work
directory under the test's tmp_path, apt-get and sudo guarded, its output
split by step, and the check that it left nothing behind.
Used by tests/integration/test_demo.py and tests/envtest/test_tour_envtest.py."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from lib.agentproc import agent_binary
from lib.nats import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if os.path.join(ROOT, "scripts") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
import demo_cluster  # noqa: E402  (the seeded workloads, for the tests)

__all__ = ["BUILD_DIR", "DEMO", "ROOT", "assert_nothing_left", "demo_cluster", "event_lines", "run_tour",
           "section", "sections", "started_pids", "tour_env"]

DEMO = os.path.join(ROOT, "scripts", "demo.sh")
BUILD_DIR = os.path.dirname(os.path.abspath(agent_binary()))
TOUR_TIMEOUT = 600


def guard_bin(tmp_path):
    """A directory with apt-get and sudo that record the call and fail."""
    d = tmp_path / "guard-bin"
    d.mkdir()
    for name in ("apt-get", "sudo"):
        p = d / name
        p.write_text("#!/bin/sh\necho \"%s $*\" >>'%s'\necho '%s must not run in the tests' >&2\nexit 99\n"
                     % (name, tmp_path / "guard-called", name))
        p.chmod(0o755)
    return str(d)


def tour_env(tmp_path, **knobs):
    ports = {"DEMO_NATS_PORT": free_port(), "DEMO_NATS_MONITOR_PORT": free_port(), "DEMO_HTTP_PORT": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEMO_", "COLLECT_AGENT_", "KUBECONFIG"))}
    env["PATH"] = guard_bin(tmp_path) + ":" + env.get("PATH", "") + ":/usr/sbin:/usr/bin:/sbin:/bin"
    env.update({k: str(v) for k, v in ports.items()})
    env["DEMO_WORK_DIR"] = str(tmp_path / "tour")
    env["DEMO_BUILD_DIR"] = BUILD_DIR
    # An upper bound for a loaded machine; the tour normally needs seconds.
    env["DEMO_SECONDS"] = "120"
    env.update({k: str(v) for k, v in knobs.items()})
    return env


def interruptible():
    """preexec_fn for the tour: Ctrl-C works even when the tests themselves
    were started in the background of a non-interactive shell, which starts
    them with SIGINT ignored; bash cannot trap a signal ignored on entry."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_tour(env):
    """Run the tour in its own process group, which is killed whole if the
    tour hangs, so that a broken tour leaves nothing behind either."""
    tour = subprocess.Popen(["bash", DEMO], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=interruptible)
    try:
        out, err = tour.communicate(timeout=TOUR_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(tour.pid, signal.SIGKILL)
        out, err = tour.communicate()
        pytest.fail("the tour did not end within %ds:\n%s%s" % (TOUR_TIMEOUT, out.decode(errors="replace"),
                                                                 err.decode(errors="replace")))
    return tour.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def sections(out):
    """{heading: its lines} for every '== heading' line of the tour."""
    parts, current = {}, None
    for line in out.splitlines():
        if line.startswith("== "):
            current = line[3:]
            parts[current] = []
        elif current is not None:
            parts[current].append(line)
    return parts


def section(parts, prefix):
    found = [lines for heading, lines in parts.items() if heading.startswith(prefix)]
    assert len(found) == 1, (prefix, list(parts))
    return found[0]


def port_open(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def started_pids(env):
    path = os.path.join(env["DEMO_WORK_DIR"], "pids")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {name: int(pid) for name, pid in (line.split() for line in f if line.strip())}


def assert_nothing_left(env, tmp_path):
    """Every process the tour started is gone and its ports are closed
    (the processes were TERMed by the tour and are reaped by init: a
    moment may pass before /proc forgets them)."""
    pids = started_pids(env)
    ports = [int(env[k]) for k in ("DEMO_NATS_PORT", "DEMO_NATS_MONITOR_PORT", "DEMO_HTTP_PORT")]
    ports_file = os.path.join(env["DEMO_WORK_DIR"], "kubesim", "ports.json")
    if "kubesim" in pids and os.path.exists(ports_file):
        with open(ports_file) as f:
            ports += list(json.load(f).values())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not any(running(p) for p in pids.values()) and not any(port_open(p) for p in ports):
            break
        time.sleep(0.1)
    left = {n: p for n, p in pids.items() if running(p)}
    for pid in left.values():  # the test leaves nothing behind either
        os.kill(pid, signal.SIGKILL)
    assert not left, left
    assert not [p for p in ports if port_open(p)], ports
    assert not (tmp_path / "guard-called").exists(), (tmp_path / "guard-called").read_text()
    return pids


def event_lines(lines):
    """The `agentctl tail events` lines of a section: (cluster, category, object)."""
    out = []
    for line in lines:
        f = line.split(" ", 6)
        if len(f) == 7 and f[0].endswith("Z") and f[4] in ("Warning", "Normal"):
            out.append((f[1], f[3], f[5]))
    return out
