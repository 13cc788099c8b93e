"""Server-side printing for kubesim: meta.k8s.io Tables as kube-apiserver
v1.28 builds them (k8s.io/kubernetes/pkg/printers/internalversion).

kubectl asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...`
and prints the cells it gets; it does no formatting of its own. The server
always prints the wide form (every column, the ones with priority > 0 too);
`kubectl get -o wide` shows them, the default output hides them.

The column definitions (names, types, formats, descriptions, priorities)
come from the Tables captured from the real server in
tests/fixtures/kube-api-samples/table-*.json; the cells are computed here by
ports of printPod, printNode, printNamespace and printEvent, and ages by
apimachinery's duration.HumanDuration.  Python 3 stdlib only.
"""

import datetime
import json
import os

TABLE_SAMPLES = {"pods": "table-pods.json", "nodes": "table-nodes.json",
                 "namespaces": "table-namespaces.json", "events": "table-events.json"}


def load_columns(samples_dir):
    """{store: columnDefinitions} from the captured Tables, plus "default":
    the columns of the API server's default table convertor (Name, Created
    At) for the resources kubesim serves without a printer."""
    cols = {}
    for store, name in TABLE_SAMPLES.items():
        with open(os.path.join(samples_dir, name)) as f:
            cols[store] = json.load(f)["columnDefinitions"]
    name_col = dict(cols["pods"][0])
    age_desc = next(c["description"] for c in cols["pods"] if c["name"] == "Age")
    cols["default"] = [name_col, {"name": "Created At", "type": "date", "format": "",
                                  "description": age_desc, "priority": 0}]
    return cols


# ---- time --------------------------------------------------------------------

def parse_time(s):
    """A metav1.Time / MicroTime string as an aware datetime; None when unset."""
    if not s or not isinstance(s, str):
        return None
    try:
        t = s.replace("Z", "+00:00")
        return datetime.datetime.fromisoformat(t)
    except ValueError:
        return None


def human_duration(seconds_f):
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    seconds = int(seconds_f)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return "%ds" % seconds
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return "%dm" % minutes if s == 0 else "%dm%ds" % (minutes, s)
    if minutes < 60 * 3:
        return "%dm" % minutes
    hours = seconds // 3600
    if hours < 8:
        m = minutes % 60
        return "%dh" % hours if m == 0 else "%dh%dm" % (hours, m)
    if hours < 48:
        return "%dh" % hours
    if hours < 24 * 8:
        h = hours % 24
        return "%dd" % (hours // 24) if h == 0 else "%dd%dh" % (hours // 24, h)
    if hours < 24 * 365 * 2:
        return "%dd" % (hours // 24)
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return "%dy" % (hours // 24 // 365) if dy == 0 else "%dy%dd" % (hours // 24 // 365, dy)
    return "%dy" % (hours // 24 // 365)


def since(ts, now):
    """translateTimestampSince: "<unknown>" for an unset time."""
    t = parse_time(ts)
    if t is None:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


# ---- printers ----------------------------------------------------------------

POD_SUCCEEDED = [{"type": "Completed", "status": "True", "reason": "Succeeded",
                  "message": "The pod has completed successfully."}]
POD_FAILED = [{"type": "Completed", "status": "True", "reason": "Failed",
               "message": "The pod failed."}]


def _restartable_init(c):
    return bool(c) and c.get("restartPolicy") == "Always"


def _cond_true(status, ctype):
    return any(c.get("type") == ctype and c.get("status") == "True"
               for c in status.get("conditions") or [])


def print_pod(pod, now):
    """(cells, conditions) of printPod (v1.28, wide)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    containers = spec.get("containers") or []
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    restarts = 0
    restartable_restarts = 0
    total = len(containers)
    ready = 0
    last_restart = None
    last_restartable_restart = None
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    conditions = POD_SUCCEEDED if phase == "Succeeded" else POD_FAILED if phase == "Failed" else None
    total += sum(1 for c in spec.get("initContainers") or [] if _restartable_init(c))

    def later(a, ts):
        t = parse_time(ts)
        if t is not None and (a is None or a < t):
            return t
        return a

    initializing = False
    n_init = len(spec.get("initContainers") or [])
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        state = cs.get("state") or {}
        last_term = (cs.get("lastState") or {}).get("terminated")
        restarts += int(cs.get("restartCount") or 0)
        if last_term is not None:
            last_restart = later(last_restart, last_term.get("finishedAt"))
        restartable = _restartable_init(init_specs.get(cs.get("name")))
        if restartable:
            restartable_restarts += int(cs.get("restartCount") or 0)
            if last_term is not None:
                last_restartable_restart = later(last_restartable_restart, last_term.get("finishedAt"))
        term, waiting = state.get("terminated"), state.get("waiting")
        if term is not None and int(term.get("exitCode") or 0) == 0:
            continue
        if restartable and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if term is not None:
            if not term.get("reason"):
                if term.get("signal"):
                    reason = "Init:Signal:%d" % term["signal"]
                else:
                    reason = "Init:ExitCode:%d" % int(term.get("exitCode") or 0)
            else:
                reason = "Init:" + term["reason"]
        elif waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = "Init:%d/%d" % (i, n_init)
        initializing = True
        break

    if not initializing or _cond_true(status, "Initialized"):
        restarts = restartable_restarts
        last_restart = last_restartable_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            state = cs.get("state") or {}
            restarts += int(cs.get("restartCount") or 0)
            last_term = (cs.get("lastState") or {}).get("terminated")
            if last_term is not None:
                last_restart = later(last_restart, last_term.get("finishedAt"))
            waiting, term = state.get("waiting"), state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif term is not None and term.get("reason"):
                reason = term["reason"]
            elif term is not None:
                if term.get("signal"):
                    reason = "Signal:%d" % term["signal"]
                else:
                    reason = "ExitCode:%d" % int(term.get("exitCode") or 0)
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _cond_true(status, "Ready") else "NotReady"

    if meta.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif meta.get("deletionTimestamp"):
        reason = "Terminating"

    restarts_s = str(restarts)
    if restarts != 0 and last_restart is not None:
        restarts_s = "%d (%s ago)" % (restarts, human_duration((now - last_restart).total_seconds()))

    ips = status.get("podIPs") or []
    pod_ip = (ips[0].get("ip") if ips else "") or "<none>"
    gates = spec.get("readinessGates") or []
    gates_s = "<none>"
    if gates:
        true = 0
        for g in gates:
            for c in status.get("conditions") or []:
                if c.get("type") == g.get("conditionType"):
                    if c.get("status") == "True":
                        true += 1
                    break
        gates_s = "%d/%d" % (true, len(gates))
    cells = [meta.get("name", ""), "%d/%d" % (ready, total), reason, restarts_s,
             since(meta.get("creationTimestamp"), now),
             pod_ip, spec.get("nodeName") or "<none>",
             status.get("nominatedNodeName") or "<none>", gates_s]
    return cells, conditions


def _node_roles(labels):
    roles = set()
    for k, v in (labels or {}).items():
        if k.startswith("node-role.kubernetes.io/"):
            r = k[len("node-role.kubernetes.io/"):]
            if r:
                roles.add(r)
        elif k == "kubernetes.io/role" and v != "":
            roles.add(v)
    return sorted(roles)


def print_node(node, now):
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    st = []
    if "Ready" in conds:
        st.append("Ready" if conds["Ready"].get("status") == "True" else "NotReady")
    if not st:
        st.append("Unknown")
    if spec.get("unschedulable"):
        st.append("SchedulingDisabled")
    info = status.get("nodeInfo") or {}

    def addr(kind):
        for a in status.get("addresses") or []:
            if a.get("type") == kind:
                return a.get("address", "")
        return "<none>"
    return [meta.get("name", ""), ",".join(st), ",".join(_node_roles(meta.get("labels"))) or "<none>",
            since(meta.get("creationTimestamp"), now), info.get("kubeletVersion", ""),
            addr("InternalIP"), addr("ExternalIP"), info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"], None


def print_namespace(ns, now):
    meta = ns.get("metadata") or {}
    return [meta.get("name", ""), (ns.get("status") or {}).get("phase", ""),
            since(meta.get("creationTimestamp"), now)], None


def print_event(ev, now):
    """printEvent on the core/v1 form (events.k8s.io events are printed after
    conversion to it, as the real server does)."""
    meta = ev.get("metadata") or {}
    first = since(ev.get("firstTimestamp"), now)
    if parse_time(ev.get("firstTimestamp")) is None:
        first = since(ev.get("eventTime"), now)
    last = since(ev.get("lastTimestamp"), now)
    if parse_time(ev.get("lastTimestamp")) is None:
        last = first
    count = ev.get("count") or 0
    series = ev.get("series")
    if series:
        last = since(series.get("lastObservedTime"), now)
        count = series.get("count") or 0
    elif count == 0:
        count = 1
    inv = ev.get("involvedObject") or {}
    kind = (inv.get("kind") or "").lower()
    target = "%s/%s" % (kind, inv["name"]) if inv.get("name") else kind
    src = ev.get("source") or {}
    component = src.get("component") or ev.get("reportingComponent") or ""
    host = src.get("host") or ev.get("reportingInstance") or ""
    source = component + ", " + host if host else component
    return [last, ev.get("type", ""), ev.get("reason", ""), target, inv.get("fieldPath", ""), source,
            (ev.get("message") or "").strip(), first, int(count), meta.get("name", "")], None


def print_default(obj, now):
    meta = obj.get("metadata") or {}
    return [meta.get("name", ""), meta.get("creationTimestamp")], None


PRINTERS = {"pods": print_pod, "nodes": print_node, "namespaces": print_namespace,
            "events": print_event}


def row(store, obj, now, include, api_obj, pom_version="v1"):
    """One TableRow. obj: the stored (core) object; api_obj: the object as
    the request's API version shows it, with kind (for includeObject=Object).
    include: "Metadata" (the default), "Object" or "None"."""
    cells, conditions = PRINTERS.get(store, print_default)(obj, now)
    r = {"cells": cells}
    if conditions:
        r["conditions"] = conditions
    if include == "None":
        r["object"] = None
    elif include == "Object":
        r["object"] = api_obj
    else:
        r["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/" + pom_version,
                       "metadata": obj.get("metadata") or {}}
    return r


def table(columns, rows, metadata, version="v1", with_columns=True):
    return {"kind": "Table", "apiVersion": "meta.k8s.io/" + version, "metadata": metadata,
            "columnDefinitions": columns if with_columns else None, "rows": rows}
