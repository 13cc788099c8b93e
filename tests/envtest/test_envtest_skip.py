"""The tier without its assets: every test is skipped, at once, with a
reason that names what is missing, and the project's summary counts them
as skipped. Needs no kube-apiserver."""
import os
import subprocess
import sys
import time

import pytest

import envtest_cluster
from envtest_cluster import ASSETS_ENV, Cluster

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TIER = os.path.join(HERE, "test_envtest_agent.py")


def test_missing_names_what_is_missing(tmp_path, monkeypatch):
    assert Cluster.missing({}) == f"{ASSETS_ENV} is not set (it names the directory holding kube-apiserver)"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert Cluster.missing({ASSETS_ENV: str(empty)}) == f"no executable kube-apiserver in {ASSETS_ENV}={empty}"
    (empty / "kube-apiserver").write_text("#!/bin/sh\n")     # present but not executable
    assert Cluster.missing({ASSETS_ENV: str(empty)}).startswith("no executable kube-apiserver")
    os.chmod(empty / "kube-apiserver", 0o755)
    monkeypatch.setattr(envtest_cluster, "ETCD", str(tmp_path / "no-etcd"))
    assert Cluster.missing({ASSETS_ENV: str(empty)}) == f"{tmp_path / 'no-etcd'} is missing (apt-get install etcd-server)"


def run_tier(tmp_path, assets):
    env = {k: v for k, v in os.environ.items() if k != ASSETS_ENV}
    if assets is not None:
        env[ASSETS_ENV] = assets
    junit = tmp_path / "results" / "pytest-envtest.xml"
    junit.parent.mkdir(exist_ok=True)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable if sys.executable.startswith("/usr/bin/") else "/usr/bin/python3",
                        "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", f"--junitxml={junit}",
                        "--basetemp", str(tmp_path / "inner"), TIER],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    return p, junit, time.monotonic() - t0


@pytest.mark.parametrize("case", ["unset", "empty dir"])
def test_without_assets_every_test_is_skipped_with_the_reason(tmp_path, case):
    if case == "unset":
        assets, reason = None, f"{ASSETS_ENV} is not set"
    else:
        d = tmp_path / "assets"
        d.mkdir()
        assets, reason = str(d), f"no executable kube-apiserver in {ASSETS_ENV}={d}"
    p, junit, took = run_tier(tmp_path, assets)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    last = out.strip().splitlines()[-1]
    assert " skipped" in last and "passed" not in last and "failed" not in last and "error" not in last, out
    assert reason in out, out
    n = int(last.split()[0])
    assert n >= 6, out
    # the project's summary line counts them as skipped, not passed or failed
    s = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "scripts", "summarize_tests.py"),
                        str(junit.parent)], capture_output=True, text=True, timeout=30)
    assert s.stdout.strip() == f"0 passed, 0 failed, {n} skipped", s.stdout + s.stderr
    print(f"{case}: {n} skipped in {took:.1f}s")
