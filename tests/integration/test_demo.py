"""Issue 11: the tour. scripts/demo.sh run as the README says (only the
ports and the work directory moved, so that it runs beside other tests),
with the build directory of AGENT_BIN (already built: ninja has nothing to
do), and checked part by part: the agent online with its cluster ID, a
failure event of each seeded category, the metrics summary with the seeded
pods, `kubectl get pods -A` through the agent; exit status 0 and no process
left behind. Then the ways it can stop early: a port in use, a step that
fails after processes were started, Ctrl-C; and DEMO_KUBECONFIG, a cluster
the tour must only read.

apt-get never runs here: install-deps.sh asks dpkg what is installed and
calls apt-get only for what is missing; an `apt-get` and a `sudo` first on
PATH fail loudly and leave a mark if it ever does."""
import os
import re
import signal
import socket
import subprocess

import pytest

from lib.tour import (BUILD_DIR, DEMO, ROOT, assert_nothing_left, demo_cluster, event_lines, interruptible, run_tour,
                      section, sections, started_pids, tour_env)

# The simulated cluster's kube-system namespace UID (tests/kubesim/README.md),
# which names the cluster when nothing else does (docs/CLUSTER_ID.md).
KUBESIM_CLUSTER_ID = "d5fba74e-51a6-4dfe-8564-d26d014c5e9a"

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(BUILD_DIR, "agentctl")),
                                reason="agentctl not built")


def test_the_tour_as_the_readme_runs_it(tmp_path):
    env = tour_env(tmp_path)
    code, out, err = run_tour(env)
    assert code == 0, out + err
    parts = sections(out)

    # 1. the agent online, with the cluster ID it found
    agents = section(parts, "1. ")
    header = [i for i, line in enumerate(agents) if line.split()[:2] == ["CLUSTER", "AGENT"]]
    assert len(header) == 1, agents
    row = agents[header[0] + 1].split()
    assert row[0] == KUBESIM_CLUSTER_ID and row[-1] == "online", agents
    assert row[2] == "0.1.0" and row[3] == "v1.28.7", row  # it registered while agentctl listened
    assert any(f"'{KUBESIM_CLUSTER_ID}' (found by: kube-system-uid" in line for line in agents), agents

    # 2. a failure event of each seeded category, about the seeded objects
    events = event_lines(section(parts, "2. "))
    categories = {cat for cid, cat, _ in events if cid == KUBESIM_CLUSTER_ID}
    assert set(demo_cluster.EVENT_CATEGORIES) <= categories, events
    seeded = {name for name, *_ in demo_cluster.PODS}
    assert {obj.rsplit("/", 1)[1] for _, cat, obj in events if cat != "oom"} <= seeded, events

    # 3. the metrics summary: the seeded pods, by phase, and the failing ones by reason
    sample = [line for line in section(parts, "3. ") if f" {KUBESIM_CLUSTER_ID} part 1/1: " in line]
    assert len(sample) == 1, parts
    m = re.search(r"nodes (\d+)/(\d+) ready; pods (\d+): (\d+) running, (\d+) pending; (\d+) restarts; "
                  r"in use: cpu \d+m of \d+m, memory \S+ of \S+ allocatable; (\d+) unhealthy: ", sample[0])
    assert m, sample[0]
    failing = [p for p in demo_cluster.PODS if p[2]]
    pending = [p for p in failing if p[2] in ("ImagePullBackOff", "Unschedulable")]
    assert [int(x) for x in m.groups()] == [1, 1, len(demo_cluster.PODS), len(demo_cluster.PODS) - len(pending),
                                            len(pending), sum(p[3] for p in demo_cluster.PODS), len(failing)]
    for reason in ("OOMKilled", "CrashLoopBackOff", "ImagePullBackOff", "PendingTooLong"):
        assert f" {reason}" in sample[0], sample[0]
    assert f"shop/{failing[0][0]} CrashLoopBackOff ({failing[0][3]} restarts)" in sample[0], sample[0]

    # 4. kubectl through the agent: every seeded pod, the crash loop as kubectl shows it
    diagnostic = section(parts, "4. ")
    assert diagnostic[0].endswith(f"exec --cluster {KUBESIM_CLUSTER_ID} -- kubectl get pods -A"), diagnostic
    assert diagnostic[1].split() == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"], diagnostic
    rows = {r.split()[1]: r.split() for r in diagnostic[2:] if r.strip()}
    assert set(rows) == seeded, diagnostic
    assert rows["checkout-6f7d9c8b4-x2k4p"][3] == "CrashLoopBackOff"
    # ... and it is the last thing shown before the tour stops what it started
    assert list(parts)[-1].startswith("stopped what the tour started"), list(parts)

    pids = assert_nothing_left(env, tmp_path)
    assert set(pids) == {"nats-server", "kubesim", "collect-agent", "agentctl-agents", "agentctl-events",
                         "agentctl-metrics"}, pids
    # The agent stopped cleanly, and under the sanitizers reported nothing.
    with open(os.path.join(env["DEMO_WORK_DIR"], "exit-statuses")) as f:
        statuses = dict(line.split() for line in f)
    assert statuses["collect-agent"] == "0", statuses
    with open(os.path.join(env["DEMO_WORK_DIR"], "agent.log")) as f:
        log = f.read()
    assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]


def test_a_port_in_use_stops_the_tour_with_a_clear_message(tmp_path):
    env = tour_env(tmp_path, DEMO_INSTALL="check")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(env["DEMO_NATS_PORT"])))
        taken.listen()
        code, out, err = run_tour(env)
    assert code == 1, out + err
    port = env["DEMO_NATS_PORT"]
    assert f"127.0.0.1:{port} is already in use" in err and "DEMO_NATS_PORT" in err, err
    assert started_pids(env) == {}
    assert_nothing_left(env, tmp_path)


def test_a_step_that_fails_stops_everything_it_started(tmp_path):
    """The agent cannot start (its kubeconfig is not YAML): the tour names
    the step, shows the agent's own error, exits 1, and stops nats-server
    and the listeners it had started."""
    bad = tmp_path / "kubeconfig"
    bad.write_text("this: [is not a kubeconfig\n")
    env = tour_env(tmp_path, DEMO_INSTALL="check", DEMO_KUBECONFIG=bad)
    code, out, err = run_tour(env)
    assert code == 1, out + err
    assert 'tour: step "Setting up: collect-agent' in err and "failed: collect-agent exited" in err, err
    assert "kubeconfig" in err.split("last lines of", 1)[1], err
    pids = assert_nothing_left(env, tmp_path)
    assert {"nats-server", "collect-agent", "agentctl-agents", "agentctl-events"} <= set(pids), pids


@pytest.mark.parametrize("when", ["   ready: ", "$ ", "== Everything keeps running"])
def test_ctrl_c_stops_everything(tmp_path, when):
    """SIGINT to the tour's process group, as a terminal sends it on Ctrl-C:
    once everything is up, while an agentctl step waits, or after the tour
    with DEMO_KEEP (everything kept running for the reader)."""
    env = tour_env(tmp_path, DEMO_INSTALL="check", DEMO_KEEP="1")
    tour = subprocess.Popen(["bash", DEMO], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=interruptible)
    seen = []
    try:
        for raw in tour.stdout:
            seen.append(raw.decode(errors="replace"))
            if seen[-1].startswith(when):
                break
        assert started_pids(env).keys() >= {"nats-server", "kubesim", "collect-agent"}, seen
        os.killpg(tour.pid, signal.SIGINT)
        out, err = tour.communicate(timeout=60)
    finally:
        if tour.poll() is None:
            tour.kill()
            tour.wait()
    assert tour.returncode == 130, "".join(seen) + out.decode() + err.decode()
    assert "tour: interrupted" in err.decode()
    assert "stopped what the tour started" in out.decode()
    assert_nothing_left(env, tmp_path)


def test_a_real_cluster_is_only_read(tmp_path, kubesim):
    """DEMO_KUBECONFIG: the tour starts no simulated cluster, runs against
    the one it is given, and only reads there (kubesim here, playing a real
    cluster that holds the same failing workloads)."""
    demo_cluster.seed(kubesim.control_url)
    writes_before = [r for r in kubesim.requests() if r["method"] != "GET"]
    env = tour_env(tmp_path, DEMO_INSTALL="check", DEMO_KUBECONFIG=kubesim.kubeconfig, DEMO_SECONDS=30)
    code, out, err = run_tour(env)
    assert code == 0, out + err
    parts = sections(out)
    assert any(h.startswith(f"Setting up: the cluster of {kubesim.kubeconfig}") for h in parts), list(parts)
    events = event_lines(section(parts, "2. "))
    assert set(demo_cluster.EVENT_CATEGORIES) <= {cat for _, cat, _ in events}, events
    rows = [r.split() for r in section(parts, "4. ")[2:] if r.strip()]
    assert {r[1] for r in rows} == {name for name, *_ in demo_cluster.PODS}, rows
    seen = kubesim.requests()
    assert len(seen) < 2000, "kubesim keeps the last 2000 requests: some may be lost"
    writes = [r for r in seen if r["method"] != "GET"]
    assert writes == writes_before, writes
    pids = assert_nothing_left(env, tmp_path)
    assert "kubesim" not in pids, pids
