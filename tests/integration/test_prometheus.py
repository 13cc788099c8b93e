"""Issue 11: a real Prometheus scrapes a running collect-agent's /metrics, and
the Grafana dashboard (deploy/grafana-dashboard.json) only asks for families
the agent serves, in PromQL that Prometheus accepts.

Prometheus is Debian's `prometheus` package (scripts/install-deps.sh test);
the tests that need it are skipped when it is not installed."""
import json
import os
import re

import pytest

from lib.agentproc import ROOT, Agent
from lib.nats import NatsServer
from lib.promserver import Prometheus, listening_addresses, prometheus_binary, wait_scrapes

DASHBOARD = os.path.join(ROOT, "deploy", "grafana-dashboard.json")
CLUSTER = "prom-c1"

needs_prometheus = pytest.mark.skipif(
    prometheus_binary() is None,
    reason="prometheus is not installed (Debian package `prometheus`, scripts/install-deps.sh test; "
           "or set PROMETHEUS_BIN)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """nats-server, the simulated API server, one agent; started once for
    the module (the machine is small)."""
    from fixtures import KubeSim
    tmp = tmp_path_factory.mktemp("prom")
    nats = NatsServer()
    nats.start()
    try:
        with KubeSim(tmp / "kubesim") as sim:
            agent = Agent(tmp, args=["--nats", nats.url, "--cluster-id", CLUSTER, "--kubeconfig", sim.kubeconfig],
                          env={"COLLECT_AGENT_HEARTBEAT_INTERVAL": "1s"}, name="agent")
            agent.start()
            try:
                agent.wait_ready()
                yield agent
            except BaseException:
                agent.stop()
                raise
            agent.assert_clean_exit()
    finally:
        nats.stop()


@pytest.fixture(scope="module")
def prom(stack, tmp_path_factory):
    if prometheus_binary() is None:
        pytest.skip("prometheus is not installed (Debian package `prometheus`, scripts/install-deps.sh test)")
    p = Prometheus(tmp_path_factory.mktemp("prometheus"), targets=[f"127.0.0.1:{stack.port}"])
    p.start()
    try:
        wait_scrapes(p, n=3)
        yield p
    finally:
        code = p.stop()
        assert p.proc.poll() is not None, "prometheus still running"
        assert code == 0, f"prometheus exit code {code}\n{p.logs()[-4000:]}"


def _value(sample):
    return float(sample["value"][1])


# ---------------------------------------------------------------------------
# Prometheus scrapes the agent

@needs_prometheus
def test_prometheus_listens_on_loopback_only(prom):
    addrs = listening_addresses(prom.proc.pid)
    assert addrs, "prometheus holds no listening socket"
    assert all(a == "127.0.0.1" for a, _ in addrs), f"prometheus listens beyond loopback: {addrs}"
    assert ("127.0.0.1", prom.port) in addrs


@needs_prometheus
def test_scrape_up_and_agent_families(prom, stack):
    up = prom.query('up{job="collect-agent"}')
    assert len(up) == 1, up
    assert up[0]["metric"]["instance"] == f"127.0.0.1:{stack.port}"
    assert _value(up[0]) == 1

    running = prom.query("agent_running")
    assert [(r["metric"].get("cluster_id"), _value(r)) for r in running] == [(CLUSTER, 1.0)], running
    connected = prom.query("agent_connected")
    assert [(r["metric"].get("cluster_id"), _value(r)) for r in connected] == [(CLUSTER, 1.0)], connected

    info = prom.query("agent_info")
    assert len(info) == 1 and info[0]["metric"]["cluster_id"] == CLUSTER
    assert re.match(r"^\d+\.\d+\.\d+", info[0]["metric"]["version"])

    # A labelled family: one series per final status, all of this cluster.
    commands = prom.query("agent_commands_total")
    statuses = {r["metric"]["status"] for r in commands}
    assert {"succeeded", "failed", "rejected", "timeout"} <= statuses, statuses
    assert {r["metric"]["cluster_id"] for r in commands} == {CLUSTER}
    # The agent has listed and watched: 200s on the API server counter.
    ok = prom.query('agent_kube_requests_total{code="200"}')
    assert ok and _value(ok[0]) > 0, ok
    # The histogram scrapes as buckets Prometheus can take a quantile of.
    q = prom.query("histogram_quantile(0.99, sum by (le) (agent_command_duration_seconds_bucket))")
    assert len(q) == 1, q


@needs_prometheus
def test_target_has_no_scrape_errors(prom, stack):
    targets = prom.targets()
    assert len(targets) == 1, targets
    t = targets[0]
    assert t["scrapeUrl"] == f"http://127.0.0.1:{stack.port}/metrics"
    assert t["health"] == "up", t
    assert t["lastError"] == "", t
    # Several successful scrapes in a row, none failed since the first one.
    assert _value(prom.query('min_over_time(up{job="collect-agent"}[1m])')[0]) == 1
    # No sample was refused (out of order, duplicate, bad type...): the
    # scrape added every sample the agent served.
    scraped = prom.query("scrape_samples_scraped")
    added = prom.query("scrape_samples_post_metric_relabeling")
    assert _value(scraped[0]) > 50 and _value(scraped[0]) == _value(added[0]), (scraped, added)
    assert "error" not in prom.logs().lower(), prom.logs()[-4000:]


# ---------------------------------------------------------------------------
# The Grafana dashboard

# PromQL words that are not metric names.
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                   "unless", "offset", "inf", "nan"}
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "${__range}": "1h"}


def load_dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def all_panels(dash):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def dashboard_exprs(dash):
    """(panel title, expr) of every query target in the dashboard."""
    out = []
    for p in all_panels(dash):
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    return out


def metric_names(expr):
    """The metric names a PromQL expression selects."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)           # string literals
    e = re.sub(r"\{[^}]*\}", "", e)                          # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                         # range and subquery durations
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = []
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("("):                             # a function or an aggregation
            continue
        if word.lower() in PROMQL_KEYWORDS:
            continue
        if m.start() > 0 and (e[m.start() - 1].isdigit() or e[m.start() - 1] == "."):
            continue                                         # 1e3, 0.5 ...
        names.append(word)
    return names


def concrete(expr, cluster=CLUSTER):
    """The expression as Grafana sends it, with the template variables set."""
    for k, v in GRAFANA_VARS.items():
        expr = expr.replace(k, v)
    return expr.replace("${cluster_id}", cluster).replace("$cluster_id", cluster)


def served_families(text):
    """Every sample name in a /metrics text (a histogram gives its _bucket,
    _sum and _count), and the family names of its # TYPE lines."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
    return names


def test_metric_names_parser():
    assert metric_names('sum by (cluster_id, le) (rate(a_bucket{cluster_id=~"$cluster_id"}[$__rate_interval]))') \
        == ["a_bucket"]
    assert metric_names("histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))) / on (instance) y") == ["x_bucket", "y"]
    assert metric_names('increase(c_total{code!~"2..|error"}[1h]) > 1e3') == ["c_total"]


def test_dashboard_structure():
    dash = load_dashboard()
    assert dash["title"] and dash["uid"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    cid = variables["cluster_id"]
    assert cid["type"] == "query"
    assert cid["datasource"]["uid"] == "${datasource}"
    assert "label_values(agent_info, cluster_id)" in json.dumps(cid["query"])

    ids = [p["id"] for p in all_panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    exprs = dashboard_exprs(dash)
    assert len(exprs) >= 20
    for p in all_panels(dash):
        if p["type"] == "row":
            continue
        assert p.get("targets"), f"panel {p['title']!r} has no query"
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            # Every agent series is filtered by the cluster variable.
            for name in metric_names(t["expr"]):
                sel = re.search(re.escape(name) + r"\{([^}]*)\}", t["expr"])
                assert sel and 'cluster_id=~"$cluster_id"' in sel.group(1), \
                    f"panel {p['title']!r}: {name} is not filtered by $cluster_id in {t['expr']}"
    # The families the brief asks for are all shown.
    shown = {n for _, e in exprs for n in metric_names(e)}
    for want in ["agent_events_received_total", "agent_events_published_total", "agent_events_dropped_total",
                 "agent_event_queue_size", "agent_connected", "agent_nats_reconnects_total",
                 "agent_kube_requests_total", "agent_kube_watch_restarts_total", "agent_metrics_samples_total",
                 "agent_metrics_sample_duration_seconds_bucket", "agent_commands_total",
                 "agent_command_duration_seconds_bucket", "process_resident_memory_bytes",
                 "process_cpu_seconds_total", "agent_ha_leader", "agent_nats_js_acked_total",
                 "agent_nats_js_acks_pending", "agent_events_spool_records", "agent_events_spool_dropped_total"]:
        assert want in shown, f"the dashboard does not show {want}"


def test_dashboard_metrics_exist_in_agent(stack):
    status, text = stack.get("/metrics")
    assert status == 200
    served = served_families(text)
    assert "agent_running" in served and "agent_command_duration_seconds_bucket" in served
    missing = []
    for title, expr in dashboard_exprs(load_dashboard()):
        names = metric_names(expr)
        assert names, f"panel {title!r}: no metric in {expr}"
        missing += [f"{title!r}: {n}" for n in names if n not in served]
    assert not missing, "the dashboard asks for families the agent does not serve:\n" + "\n".join(missing)


@needs_prometheus
def test_dashboard_queries_accepted_by_prometheus(prom):
    dash = load_dashboard()
    errors, empty = [], []
    var_query = "agent_info"   # label_values(agent_info, cluster_id)
    assert {r["metric"]["cluster_id"] for r in prom.query(var_query)} == {CLUSTER}
    for title, expr in dashboard_exprs(dash):
        q = concrete(expr)
        assert "$" not in q, f"panel {title!r}: a template variable left in {q}"
        ans = prom.api("query", query=q)
        if ans["status"] != "success":
            errors.append(f"{title!r}: {q}\n    {ans.get('errorType')}: {ans.get('error')}")
            continue
        # A range query as Grafana sends it, too.
        rng = prom.api("query_range", query=q, start=f"{_now() - 60:.3f}", end=f"{_now():.3f}", step="5")
        if rng["status"] != "success":
            errors.append(f"{title!r} (range): {q}\n    {rng.get('errorType')}: {rng.get('error')}")
            continue
        if not ans["data"]["result"]:
            empty.append(f"{title!r}: {q}")
    assert not errors, "Prometheus refuses dashboard queries:\n" + "\n".join(errors)
    # Every query finds series of this cluster (a wrong label name or value
    # in a matcher would select nothing).
    assert not empty, "dashboard queries select nothing:\n" + "\n".join(empty)


def _now():
    import time
    return time.time()


# ---------------------------------------------------------------------------
# deploy/overlays/prometheus-operator/servicemonitor.yaml and the scrape
# config in docs/DEPLOY.md

def _load_yaml(name):
    yaml = pytest.importorskip("yaml")
    with open(os.path.join(ROOT, "deploy", name)) as f:
        return yaml.safe_load(f)


def test_servicemonitor_selects_the_service():
    sm = _load_yaml("overlays/prometheus-operator/servicemonitor.yaml")
    svc = _load_yaml("base/service.yaml")
    kust = _load_yaml("base/kustomization.yaml")
    overlay = _load_yaml("overlays/prometheus-operator/kustomization.yaml")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["kind"] == "ServiceMonitor"
    assert sm["metadata"]["namespace"] == svc["metadata"]["namespace"]
    assert svc["metadata"]["namespace"] in sm["spec"]["namespaceSelector"]["matchNames"]
    for k, v in sm["spec"]["selector"]["matchLabels"].items():
        assert svc["metadata"]["labels"].get(k) == v, f"the Service has no label {k}={v}"
    ports = {p["name"] for p in svc["spec"]["ports"]}
    for ep in sm["spec"]["endpoints"]:
        assert ep["port"] in ports, f"ServiceMonitor port {ep['port']!r} not a Service port {ports}"
        assert ep.get("path", "/metrics") == "/metrics"
    # Optional: the Operator's CRD may not exist, so kubectl apply -k deploy/
    # must not need it; the overlay adds it.
    assert "servicemonitor.yaml" not in kust["resources"]
    assert "servicemonitor.yaml" in overlay["resources"]


def test_deploy_md_scrape_config_is_valid():
    """The plain-Prometheus example in docs/DEPLOY.md passes promtool, and
    its keep rule keeps the Service's http port."""
    import shutil
    import subprocess
    import tempfile
    yaml = pytest.importorskip("yaml")
    with open(os.path.join(ROOT, "docs", "DEPLOY.md")) as f:
        text = f.read()
    section = text[text.index("\n## Prometheus\n"):]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "one yaml block in DEPLOY.md's Prometheus section"
    cfg = yaml.safe_load(blocks[0])
    job = cfg["scrape_configs"][0]
    keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"][0]
    svc = _load_yaml("base/service.yaml")
    value = ";".join([svc["metadata"]["name"], svc["spec"]["ports"][0]["name"]])
    assert re.fullmatch(keep["regex"], value), (keep, value)
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == [svc["metadata"]["namespace"]]
    if not shutil.which("promtool"):
        pytest.skip("promtool is not installed (Debian package `prometheus`)")
    sd = job["kubernetes_sd_configs"][0]
    assert sd["role"] in {"node", "service", "pod", "endpoints", "endpointslice", "ingress"}
    assert set(sd) <= {"role", "namespaces", "selectors", "api_server", "kubeconfig_file", "attach_metadata"}

    def promtool(config_text):
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
            f.write(config_text)
            f.flush()
            return subprocess.run(["promtool", "check", "config", f.name], capture_output=True, text=True)

    proc = promtool(blocks[0])
    if proc.returncode != 0 and "field kubernetes_sd_configs not found" in proc.stdout + proc.stderr:
        # Debian builds Prometheus without Kubernetes service discovery:
        # check the rest of the job (relabelling...) with a static target.
        del job["kubernetes_sd_configs"]
        job["static_configs"] = [{"targets": ["127.0.0.1:8080"]}]
        proc = promtool(yaml.safe_dump(cfg))
    assert proc.returncode == 0, proc.stdout + proc.stderr
