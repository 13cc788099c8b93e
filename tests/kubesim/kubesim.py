#!/usr/bin/python3
"""kubesim: a simulated kube-apiserver for collect-agent's tests and demo.

Speaks the real wire protocol over HTTPS (HTTP/1.1, bearer tokens), well enough
for the real kubectl (Tables, aggregated discovery, logs, reviews, OpenAPI):
discovery, GET, paginated LIST with continue tokens, WATCH with bookmarks,
410 Expired in both forms, chunked watch streams framed as Go's net/http
frames them (a lone event is one chunk; a burst shares 2048-byte chunks).
Shapes, status codes, headers and framing follow the responses captured from
a real kube-apiserver v1.28.7 in tests/fixtures/kube-api-samples/ and what
tests/envtest/ sees from the real server; README.md lists what still differs.

A plain-HTTP control interface on another loopback port lets tests create,
modify and delete objects, emit bursts of events, inject faults, compact the
history and rotate tokens.  See README.md next to this file.

Python 3.11 stdlib + python3-cryptography (certificates).
"""

import argparse
import base64
import bisect
import collections
import copy
import datetime
import gc
import hashlib
import http.server
import itertools
import json
import lzma
import os
import random
import re
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import printers  # noqa: E402

# --------------------------------------------------------------------------
# JSON rendering, Go style

_GO_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
               ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


def _go_escape(s):
    # encoding/json escapes HTML characters and line/paragraph separators;
    # they can only appear inside strings, so replacing them is safe.
    for a, b in _GO_ESCAPES:
        if a in s:
            s = s.replace(a, b)
    return s


def dumps_compact(obj):
    return _go_escape(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))


def dumps_pretty(obj):
    return _go_escape(json.dumps(obj, indent=2, separators=(",", ": "), ensure_ascii=False))


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


def rfc3339(t=None):
    t = t or now_utc()
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(t=None):
    t = t or now_utc()
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_uid():
    return str(uuid.uuid4())


# --------------------------------------------------------------------------
# Resources

CORE = ""
EVENTS_GROUP = "events.k8s.io"


class ResourceInfo:
    def __init__(self, name, kind, namespaced, cached, group=CORE, version="v1", store=None):
        self.name = name            # plural, as in the URL
        self.kind = kind
        self.namespaced = namespaced
        self.cached = cached        # served by the watch cache (bookmarks, rv=0 from cache)
        self.group = group
        self.version = version
        self.store = store or name  # which store holds the objects

    @property
    def api_version(self):
        return self.version if not self.group else "%s/%s" % (self.group, self.version)

    @property
    def qualified(self):
        # "events" for core, "events.events.k8s.io" for the group (kubectl style)
        return self.name if not self.group else "%s.%s" % (self.name, self.group)

    @property
    def stat_name(self):
        return self.name if not self.group else self.group


RESOURCES = {
    ("", "namespaces"): ResourceInfo("namespaces", "Namespace", False, True),
    ("", "nodes"): ResourceInfo("nodes", "Node", False, True),
    ("", "pods"): ResourceInfo("pods", "Pod", True, True),
    ("", "events"): ResourceInfo("events", "Event", True, False),
    (EVENTS_GROUP, "events"): ResourceInfo("events", "Event", True, False, group=EVENTS_GROUP,
                                           store="events"),
}
STORES = ("namespaces", "nodes", "pods", "events")
CONTROL_RESOURCES = {
    "namespaces": RESOURCES[("", "namespaces")],
    "nodes": RESOURCES[("", "nodes")],
    "pods": RESOURCES[("", "pods")],
    "events": RESOURCES[("", "events")],
    "events.k8s.io": RESOURCES[(EVENTS_GROUP, "events")],
    "events.events.k8s.io": RESOURCES[(EVENTS_GROUP, "events")],
}

META_ORDER = ("name", "generateName", "namespace", "selfLink", "uid", "resourceVersion",
              "generation", "creationTimestamp", "deletionTimestamp",
              "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences",
              "finalizers", "managedFields")


def order_meta(meta):
    out = {}
    for k in META_ORDER:
        if k in meta:
            out[k] = meta[k]
    for k, v in meta.items():
        if k not in out:
            out[k] = v
    return out


# ---- events: core/v1 <-> events.k8s.io/v1 -----------------------------------

CORE_EVENT_ORDER = ("metadata", "involvedObject", "reason", "message", "source",
                    "firstTimestamp", "lastTimestamp", "count", "type", "eventTime",
                    "series", "action", "related", "reportingComponent",
                    "reportingInstance")


def normalize_core_event(ev):
    """Field order and zero values of a core/v1 Event as Go encodes it."""
    out = {"metadata": ev.get("metadata", {}),
           "involvedObject": ev.get("involvedObject") or {}}
    for k in ("reason", "message"):
        if ev.get(k):
            out[k] = ev[k]
    out["source"] = ev.get("source") or {}
    out["firstTimestamp"] = ev.get("firstTimestamp")
    out["lastTimestamp"] = ev.get("lastTimestamp")
    if ev.get("count"):
        out["count"] = ev["count"]
    if ev.get("type"):
        out["type"] = ev["type"]
    out["eventTime"] = ev.get("eventTime")
    for k in ("series", "action", "related"):
        if ev.get(k):
            out[k] = ev[k]
    out["reportingComponent"] = ev.get("reportingComponent") or ""
    out["reportingInstance"] = ev.get("reportingInstance") or ""
    return out


def core_to_events_v1(ev):
    out = {"metadata": ev["metadata"], "eventTime": ev.get("eventTime")}
    if ev.get("series"):
        out["series"] = ev["series"]
    if ev.get("reportingComponent"):
        out["reportingController"] = ev["reportingComponent"]
    if ev.get("reportingInstance"):
        out["reportingInstance"] = ev["reportingInstance"]
    if ev.get("action"):
        out["action"] = ev["action"]
    if ev.get("reason"):
        out["reason"] = ev["reason"]
    out["regarding"] = ev.get("involvedObject") or {}
    if ev.get("related"):
        out["related"] = ev["related"]
    if ev.get("message"):
        out["note"] = ev["message"]
    if ev.get("type"):
        out["type"] = ev["type"]
    out["deprecatedSource"] = ev.get("source") or {}
    out["deprecatedFirstTimestamp"] = ev.get("firstTimestamp")
    out["deprecatedLastTimestamp"] = ev.get("lastTimestamp")
    if ev.get("count"):
        out["deprecatedCount"] = ev["count"]
    return out


def events_v1_to_core(ev):
    core = {"metadata": ev.get("metadata", {}),
            "involvedObject": ev.get("regarding") or {},
            "reason": ev.get("reason"),
            "message": ev.get("note"),
            "source": ev.get("deprecatedSource") or {},
            "firstTimestamp": ev.get("deprecatedFirstTimestamp"),
            "lastTimestamp": ev.get("deprecatedLastTimestamp"),
            "count": ev.get("deprecatedCount"),
            "type": ev.get("type"),
            "eventTime": ev.get("eventTime"),
            "series": ev.get("series"),
            "action": ev.get("action"),
            "related": ev.get("related"),
            "reportingComponent": ev.get("reportingController"),
            "reportingInstance": ev.get("reportingInstance")}
    return normalize_core_event(core)


def render(ri, obj, with_kind):
    """The object as the API shows it for resource ri (list items carry no kind)."""
    if ri.store == "events" and ri.group == EVENTS_GROUP:
        obj = core_to_events_v1(obj)
    if not with_kind:
        return obj
    out = {"kind": ri.kind, "apiVersion": ri.api_version}
    out.update(obj)
    return out


def bookmark_object(ri, rv):
    skel = {"kind": ri.kind, "apiVersion": ri.api_version,
            "metadata": {"resourceVersion": rv, "creationTimestamp": None}}
    if ri.kind == "Pod":
        skel["spec"] = {"containers": None}
        skel["status"] = {}
    elif ri.kind == "Node":
        skel["spec"] = {}
        skel["status"] = {"daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
                          "nodeInfo": {k: "" for k in (
                              "machineID", "systemUUID", "bootID", "kernelVersion", "osImage",
                              "containerRuntimeVersion", "kubeletVersion", "kubeProxyVersion",
                              "operatingSystem", "architecture")}}
    elif ri.kind == "Namespace":
        skel["spec"] = {}
        skel["status"] = {}
    return skel


# --------------------------------------------------------------------------
# Discovery: every resource the captured documents list

# the subresources kubesim serves (GET)
SUBRESOURCES = {("", "pods"): ("log", "status"), ("", "nodes"): ("status",),
                ("", "namespaces"): ("status",)}

# authorization.k8s.io / authentication.k8s.io reviews answered on POST
REVIEWS = {("authorization.k8s.io", "selfsubjectaccessreviews"),
           ("authorization.k8s.io", "selfsubjectrulesreviews"),
           ("authentication.k8s.io", "selfsubjectreviews")}


def discovered_resources(disc):
    """(group, plural) -> ResourceInfo for every resource of the aggregated
    discovery documents (the preferred, first-listed version of each group);
    the simulated ones are RESOURCES' own. ri.store is None for the rest:
    kubesim serves them empty (LIST: no items, GET: 404 NotFound)."""
    out = {}
    docs = (disc["aggregated-discovery-api.json"], disc["aggregated-discovery-apis.json"])
    for doc in docs:
        for g in doc["items"]:
            group = g["metadata"].get("name", "")
            if not g["versions"]:
                continue
            v = g["versions"][0]
            for r in v["resources"]:
                key = (group, r["resource"])
                if key in RESOURCES:
                    out[key] = RESOURCES[key]
                    continue
                ri = ResourceInfo(r["resource"], r["responseKind"]["kind"],
                                  r["scope"] == "Namespaced", False, group=group,
                                  version=v["version"])
                ri.store = None
                ri.verbs = r.get("verbs") or []
                ri.subresources = {s["subresource"] for s in r.get("subresources") or []}
                out[key] = ri
    return out


def legacy_resource_list(group_doc, version):
    """The APIResourceList (legacy discovery, /apis/GROUP/VERSION) of one
    version of an aggregated discovery group."""
    res = []
    for v in group_doc["versions"]:
        if v["version"] != version:
            continue
        for r in v["resources"]:
            e = {"name": r["resource"], "singularName": r.get("singularResource", ""),
                 "namespaced": r["scope"] == "Namespaced", "kind": r["responseKind"]["kind"],
                 "verbs": r.get("verbs") or []}
            if r.get("shortNames"):
                e["shortNames"] = r["shortNames"]
            if r.get("categories"):
                e["categories"] = r["categories"]
            res.append(e)
            for sub in r.get("subresources") or []:
                rk = sub.get("responseKind") or {}
                s = {"name": "%s/%s" % (r["resource"], sub["subresource"]), "singularName": "",
                     "namespaced": r["scope"] == "Namespaced", "kind": rk.get("kind", "")}
                if rk.get("group"):
                    s["group"] = rk["group"]
                if rk.get("version"):
                    s["version"] = rk["version"]
                s["verbs"] = sub.get("verbs") or []
                res.append(s)
    return res


# --------------------------------------------------------------------------
# Content negotiation (Accept), as go-restful and apimachinery's negotiation
# do it

# what a resource route Produces (go-restful's first check; the 406 it
# answers lists them)
PRODUCES_GET = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
PRODUCES_LIST = PRODUCES_GET + ("application/json;stream=watch",
                                "application/vnd.kubernetes.protobuf;stream=watch")
SERIALIZERS = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
OPENAPI_V2_PB = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"


class NotAcceptable(Exception):
    def __init__(self, message, details=None):
        super().__init__(message)
        self.message = message
        self.details = details


def parse_accept(header):
    """goautoneg.ParseAccept: clauses (type, subtype, params) ordered by q
    (stable), then by specificity; q=0 dropped."""
    out = []
    for part in (header or "").split(","):
        part = part.strip()
        if not part:
            continue
        mt, *params = [x.strip() for x in part.split(";")]
        typ, _, sub = mt.partition("/")
        p, q = {}, 1.0
        for x in params:
            k, _, v = x.partition("=")
            k, v = k.strip(), v.strip()
            if k == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
            elif k:
                p[k] = v
        if q > 0:
            out.append((typ.strip(), (sub or "*").strip(), p, q))
    out.sort(key=lambda c: (-c[3], c[0] == "*", c[1] == "*"))
    return out


def restful_accepts(header, produces):
    """go-restful's Route.matchesAccept."""
    if not header:
        return True
    for mt in header.split(","):
        mt = mt.split(";")[0].strip()
        if mt == "*/*" or mt in produces:
            return True
    return False


def accepts_plain_json(clauses):
    return any(t in ("application", "*") and s in ("json", "*") and not p
               for t, s, p, q in clauses)


def negotiate(header, conversions, produces=PRODUCES_GET):
    """The representation to answer with: "json" or a conversion named in
    `conversions` {(as, group, version): result}. Raises NotAcceptable as
    the real server would: go-restful's check first, then the serializer
    negotiation. kubesim encodes JSON only, so a clause that only YAML or
    protobuf would satisfy is passed over (the real server would answer in
    that encoding)."""
    if not restful_accepts(header, produces):
        raise NotAcceptable("406: Not Acceptable\n\nAvailable representations: " + ", ".join(produces),
                            details={})
    if not (header or "").strip():
        return "json"
    for typ, sub, params, _ in parse_accept(header):
        if typ not in ("application", "*") or sub not in ("json", "*"):
            continue
        extra = {k: v for k, v in params.items() if k not in ("as", "g", "v", "pretty", "stream")}
        if extra:
            continue
        if "as" not in params and "g" not in params and "v" not in params:
            return "json"
        conv = conversions.get((params.get("as", ""), params.get("g", ""), params.get("v", "")))
        if conv is not None:
            return conv
    raise NotAcceptable("only the following media types are accepted: " + ", ".join(SERIALIZERS))


TABLE_CONVERSIONS = {("Table", "meta.k8s.io", "v1"): ("table", "v1"),
                     ("Table", "meta.k8s.io", "v1beta1"): ("table", "v1beta1")}


def object_conversions(list_like):
    conv = dict(TABLE_CONVERSIONS)
    kind = "PartialObjectMetadataList" if list_like else "PartialObjectMetadata"
    for v in ("v1", "v1beta1"):
        conv[(kind, "meta.k8s.io", v)] = ("pom", v)
    return conv


# --------------------------------------------------------------------------
# Protocol buffers, only as far as kubectl's review requests need them
# (kubectl >= 1.30 POSTs SelfSubjectAccessReview/RulesReview as
# application/vnd.kubernetes.protobuf)

PROTO_MAGIC = b"k8s\x00"


def proto_fields(buf):
    """{field number: [values]} of one message (varints as int,
    length-delimited as bytes; fixed-width values are skipped)."""
    out = {}
    i, n = 0, len(buf)

    def varint():
        nonlocal i
        shift = v = 0
        while True:
            if i >= n:
                raise ValueError("truncated varint")
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7
    while i < n:
        key = varint()
        num, wt = key >> 3, key & 7
        if wt == 0:
            val = varint()
        elif wt == 2:
            ln = varint()
            val = bytes(buf[i:i + ln])
            if len(val) != ln:
                raise ValueError("truncated field")
            i += ln
        elif wt == 1:
            i += 8
            continue
        elif wt == 5:
            i += 4
            continue
        else:
            raise ValueError("unsupported wire type %d" % wt)
        out.setdefault(num, []).append(val)
    return out


def _pstr(fields, num):
    v = fields.get(num)
    return v[-1].decode() if v else None


def review_from_protobuf(body, plural):
    """The JSON form of a SelfSubjectAccessReview / SelfSubjectRulesReview
    sent as protobuf (runtime.Unknown envelope after the k8s magic)."""
    if not body.startswith(PROTO_MAGIC):
        raise ValueError("no protobuf magic")
    env = proto_fields(body[len(PROTO_MAGIC):])
    raw = (env.get(2) or [b""])[-1]
    msg = proto_fields(raw)
    spec = proto_fields((msg.get(2) or [b""])[-1])
    out = {"spec": {}}
    if plural == "selfsubjectrulesreviews":
        ns = _pstr(spec, 1)
        if ns:
            out["spec"]["namespace"] = ns
        return out
    if spec.get(1):
        ra = proto_fields(spec[1][-1])
        attrs = {}
        for num, k in ((1, "namespace"), (2, "verb"), (3, "group"), (4, "version"),
                       (5, "resource"), (6, "subresource"), (7, "name")):
            v = _pstr(ra, num)
            if v:
                attrs[k] = v
        out["spec"]["resourceAttributes"] = attrs
    if spec.get(2):
        na = proto_fields(spec[2][-1])
        attrs = {}
        for num, k in ((1, "path"), (2, "verb")):
            v = _pstr(na, num)
            if v:
                attrs[k] = v
        out["spec"]["nonResourceAttributes"] = attrs
    return out


# --------------------------------------------------------------------------
# Selectors

class ApiError(Exception):
    """An error answered with a Status object (reason NO_REASON: none)."""

    def __init__(self, code, message, reason=None, details=None):
        super().__init__(message)
        self.code, self.message, self.reason, self.details = code, message, reason, details


class BadRequest(ApiError):
    def __init__(self, message):
        super().__init__(400, message)


NO_REASON = ""     # a Status without "reason" (the server's own internal errors)


def invalid_list_options(errors):
    """422 for ListOptions that fail validation, in the real server's words:
    errors is a list of (field, cause reason, message)."""
    texts = ["%s: %s" % (f, m) for f, _, m in errors]
    msg = 'ListOptions.meta.k8s.io "" is invalid: ' + (texts[0] if len(texts) == 1
                                                        else "[" + ", ".join(texts) + "]")
    return ApiError(422, msg, reason="Invalid", details={
        "group": "meta.k8s.io", "kind": "ListOptions",
        "causes": [{"reason": r, "message": m, "field": f} for f, r, m in errors]})


def validate_list_options(q, watch):
    """apimachinery's ValidateListOptions (v1.28, WatchList feature gate off)."""
    errs = []
    rv = q.get("resourceVersion", "")
    rvm = q.get("resourceVersionMatch", "")
    cont = q.get("continue", "")
    sie = q.get("sendInitialEvents") or None     # "sendInitialEvents=" is no value
    forbidden = "FieldValueForbidden"
    if watch:
        if sie is not None:
            if rvm != "NotOlderThan":
                errs.append(("resourceVersionMatch", forbidden, "Forbidden: sendInitialEvents requires "
                             "setting resourceVersionMatch to NotOlderThan"))
            errs.append(("sendInitialEvents", forbidden, "Forbidden: sendInitialEvents is forbidden "
                         "for watch unless the WatchList feature gate is enabled"))
        if rvm:
            if sie is None:
                errs.append(("resourceVersionMatch", forbidden, "Forbidden: resourceVersionMatch is "
                             "forbidden for watch unless sendInitialEvents is provided"))
            if rvm != "NotOlderThan":
                errs.append(("resourceVersionMatch", "FieldValueNotSupported",
                             'Unsupported value: "%s": supported values: "NotOlderThan"' % rvm))
            if cont:
                errs.append(("resourceVersionMatch", forbidden, "Forbidden: resourceVersionMatch is "
                             "forbidden when continue is provided"))
    else:
        if rvm:
            if not rv:
                errs.append(("resourceVersionMatch", forbidden, "Forbidden: resourceVersionMatch is "
                             "forbidden unless resourceVersion is provided"))
            if cont:
                errs.append(("resourceVersionMatch", forbidden, "Forbidden: resourceVersionMatch is "
                             "forbidden when continue is provided"))
            if rvm not in ("Exact", "NotOlderThan"):
                errs.append(("resourceVersionMatch", "FieldValueNotSupported",
                             'Unsupported value: "%s": supported values: "Exact", "NotOlderThan", ""'
                             % rvm))
            if rvm == "Exact" and rv == "0":
                errs.append(("resourceVersionMatch", forbidden, 'Forbidden: resourceVersionMatch '
                             '"exact" is forbidden for resourceVersion "0"'))
        if sie is not None:
            errs.append(("sendInitialEvents", forbidden, "Forbidden: sendInitialEvents is forbidden "
                         "for list"))
    if errs:
        raise invalid_list_options(errs)


FIELD_LABELS = {
    "events": {"metadata.name", "metadata.namespace", "involvedObject.kind",
               "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
               "involvedObject.apiVersion", "involvedObject.resourceVersion",
               "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"},
    "pods": {"metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy",
             "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork",
             "status.phase", "status.podIP", "status.nominatedNodeName"},
    "nodes": {"metadata.name", "spec.unschedulable"},
    "namespaces": {"metadata.name", "status.phase"},
}
# events.k8s.io/v1 field label conversion (pkg/apis/events/v1/conversion.go)
EVENTS_V1_FIELD_ALIASES = {
    "regarding.kind": "involvedObject.kind", "regarding.namespace": "involvedObject.namespace",
    "regarding.name": "involvedObject.name", "regarding.uid": "involvedObject.uid",
    "regarding.apiVersion": "involvedObject.apiVersion",
    "regarding.resourceVersion": "involvedObject.resourceVersion",
    "regarding.fieldPath": "involvedObject.fieldPath",
    "reportingController": "reportingComponent", "deprecatedSource": "source",
}


def field_value(store, obj, field):
    if field == "metadata.name":
        return obj["metadata"].get("name", "")
    if field == "metadata.namespace":
        return obj["metadata"].get("namespace", "")
    if store == "events":
        if field.startswith("involvedObject."):
            return str((obj.get("involvedObject") or {}).get(field.split(".", 1)[1], ""))
        if field == "source":
            return (obj.get("source") or {}).get("component", "")
        return str(obj.get(field) or "")
    if field == "spec.hostNetwork":
        return "true" if (obj.get("spec") or {}).get("hostNetwork") else "false"
    if field == "spec.unschedulable":
        return "true" if (obj.get("spec") or {}).get("unschedulable") else "false"
    cur = obj
    for part in field.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return "" if cur is None else str(cur)


def parse_field_selector(ri, s):
    reqs = []
    if not s:
        return reqs
    for term in s.split(","):
        term = term.strip()
        if not term:
            continue
        m = re.match(r"^([^!=]+?)\s*(==|!=|=)\s*(.*)$", term)
        if not m:
            raise BadRequest("invalid selector: '%s'; can't understand '%s'" % (s, term))
        field, op, value = m.group(1).strip(), m.group(2), m.group(3).strip()
        if ri.group == EVENTS_GROUP:
            field = EVENTS_V1_FIELD_ALIASES.get(field, field)
        if field not in FIELD_LABELS[ri.store]:
            raise BadRequest('field label not supported: %s' % m.group(1).strip())
        reqs.append((field, op != "!=", value))
    return reqs


_LABEL_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$")


def _split_selector(s):
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def metrics_item(what, o, now):
    """The NodeMetrics or PodMetrics (without kind) of a node or pod: usage
    from its kubesim/usage annotation, labels its own."""
    om = o["metadata"]
    usage = (om.get("annotations") or {}).get("kubesim/usage")
    if what == "pods":
        meta = {"name": om["name"], "namespace": om["namespace"], "creationTimestamp": now,
                "labels": om.get("labels") or {}}
        cpu, mem = (usage or "10m,32Mi").split(",")
        return {"metadata": meta, "timestamp": now, "window": "15s",
                "containers": [{"name": c["name"], "usage": {"cpu": cpu, "memory": mem}}
                               for c in (o.get("spec") or {}).get("containers", [])]}
    meta = {"name": om["name"], "creationTimestamp": now, "labels": om.get("labels") or {}}
    cpu, mem = (usage or "250m,2048Mi").split(",")
    return {"metadata": meta, "timestamp": now, "window": "20s", "usage": {"cpu": cpu, "memory": mem}}


def parse_label_selector(s):
    reqs = []
    if not s or not s.strip():
        return reqs
    for term in _split_selector(s):
        term = term.strip()
        if not term:
            raise BadRequest("unable to parse requirement: found '', expected: identifier")
        m = re.match(r"^(\S+)\s+(in|notin)\s*\((.*)\)$", term)
        if m:
            vals = {v.strip() for v in m.group(3).split(",") if v.strip()}
            reqs.append((m.group(1), m.group(2), vals))
        elif term.startswith("!"):
            reqs.append((term[1:].strip(), "!exists", None))
        else:
            m = re.match(r"^([^!=<>\s]+)\s*(==|!=|=)\s*(\S*)$", term)
            if m:
                op = "!=" if m.group(2) == "!=" else "="
                reqs.append((m.group(1), op, m.group(3)))
            elif re.match(r"^[^!=<>\s(),]+$", term):
                reqs.append((term, "exists", None))
            else:
                raise BadRequest("unable to parse requirement: <nil>: Invalid value: \"%s\": "
                                 "found '%s', expected: identifier" % (term, term[:1]))
        key = reqs[-1][0]
        if not key or not _LABEL_RE.match(key.split("/")[-1]):
            raise BadRequest("unable to parse requirement: <nil>: Invalid value: \"%s\": name "
                             "part must consist of alphanumeric characters, '-', '_' or '.', "
                             "and must start and end with an alphanumeric character" % key)
    return reqs


def label_match(reqs, obj):
    labels = obj["metadata"].get("labels") or {}
    for key, op, val in reqs:
        if op == "exists" and key not in labels:
            return False
        if op == "!exists" and key in labels:
            return False
        if op == "=" and labels.get(key) != val:
            return False
        if op == "!=" and labels.get(key) == val:
            return False
        if op == "in" and labels.get(key) not in val:
            return False
        if op == "notin" and key in labels and labels[key] in val:
            return False
    return True


class Filter:
    def __init__(self, ri, namespace, field_reqs, label_reqs):
        self.ri = ri
        self.namespace = namespace
        self.field_reqs = field_reqs
        self.label_reqs = label_reqs

    @property
    def empty(self):
        return not self.field_reqs and not self.label_reqs

    def match(self, obj):
        if obj is None:
            return False
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return False
        for field, eq, value in self.field_reqs:
            if (field_value(self.ri.store, obj, field) == value) != eq:
                return False
        return label_match(self.label_reqs, obj) if self.label_reqs else True


# --------------------------------------------------------------------------
# The store: objects with their versions, a change log, watchers

class LogEntry:
    __slots__ = ("rv", "store", "type", "obj", "prev", "key", "cache")

    def __init__(self, rv, store, etype, obj, prev, key):
        self.rv = rv
        self.store = store
        self.type = etype
        self.obj = obj      # core form, immutable once stored
        self.prev = prev
        self.key = key
        self.cache = {}


class Conflict(Exception):
    pass


class NotFound(Exception):
    pass


def obj_key(ri_or_store_namespaced, obj):
    ns = obj["metadata"].get("namespace") if ri_or_store_namespaced else None
    name = obj["metadata"]["name"]
    return "%s/%s" % (ns, name) if ns is not None else name


STORE_NAMESPACED = {"namespaces": False, "nodes": False, "pods": True, "events": True}


class Watcher:
    def __init__(self, ri, flt, bookmarks):
        self.ri = ri
        self.filter = flt
        self.bookmarks = bookmarks
        self.cond = threading.Condition(threading.Lock())
        self.queue = collections.deque()
        self.overflow = False
        self.drop = None          # None | "abrupt" | "mid_line"
        self.closed = threading.Event()
        self.sock = None
        self.last_line = None
        self.out = None           # the stream's GoBodyWriter
        self.after_rv = None      # watch from a future rv: only changes after it

    def push(self, item, limit):
        with self.cond:
            if self.overflow:
                return          # the stream ends; never leave a gap in it
            if len(self.queue) >= limit:
                self.overflow = True
            else:
                self.queue.append(item)
            self.cond.notify()

    def wake(self):
        with self.cond:
            self.cond.notify()


class Store:
    def __init__(self, history_limit, watch_queue_limit):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.rv = 1
        self.compacted = 0            # watches/continues from an rv below this are 410
        self.versions = {s: {} for s in STORES}   # key -> [(rv, obj or None)]
        self.keys = {s: [] for s in STORES}       # sorted keys (incl. tombstoned)
        self.live = {s: {} for s in STORES}       # key -> current obj
        self.log = []                 # LogEntry, rv ascending
        self.log_rvs = []
        # key -> compact JSON (bytes) of the live object in its core form,
        # without kind/apiVersion (a list item); dropped on every change, so
        # an entry always belongs to the current object
        self.rendered = {s: {} for s in STORES}
        # rv of the last create or delete per store (the set of keys alive at
        # an rv at or after it is the live set)
        self.membership_rv = {s: 0 for s in STORES}
        self.history_limit = history_limit
        self.watchers = set()
        self.watch_queue_limit = watch_queue_limit

    # ---- writes (callers hold no lock) ----

    def _next_rv(self):
        self.rv += 1
        return self.rv

    def _record(self, store, etype, obj, prev, key, insert_key=True):
        rv = int(obj["metadata"]["resourceVersion"])
        vers = self.versions[store].setdefault(key, [])
        if not vers and insert_key:
            bisect.insort(self.keys[store], key)
        vers.append((rv, obj if etype != "DELETED" else None))
        self.rendered[store].pop(key, None)
        if etype == "DELETED":
            self.live[store].pop(key, None)
        else:
            self.live[store][key] = obj
        if etype != "MODIFIED":
            self.membership_rv[store] = rv
        ent = LogEntry(rv, store, etype, obj, prev, key)
        self.log.append(ent)
        self.log_rvs.append(rv)
        for w in list(self.watchers):
            if w.ri.store == store:
                w.push(ent, self.watch_queue_limit)
        if len(self.log) > self.history_limit:
            self._trim(len(self.log) - self.history_limit + self.history_limit // 10)
        return ent

    def _trim(self, n):
        n = min(n, len(self.log))
        if n <= 0:
            return
        dropped = self.log[:n]
        del self.log[:n]
        del self.log_rvs[:n]
        self.compacted = max(self.compacted, dropped[-1].rv)
        self._compact_keys({(e.store, e.key) for e in dropped})

    def _compact_keys(self, pairs):
        c = self.compacted
        for store, key in pairs:
            vers = self.versions[store].get(key)
            if not vers:
                continue
            # keep the newest version <= c as base, and everything after it
            i = bisect.bisect_right([v[0] for v in vers], c) - 1
            if i > 0:
                del vers[:i]
            if len(vers) == 1 and vers[0][1] is None and vers[0][0] <= c:
                del self.versions[store][key]
                j = bisect.bisect_left(self.keys[store], key)
                if j < len(self.keys[store]) and self.keys[store][j] == key:
                    del self.keys[store][j]

    def compact(self):
        with self.lock:
            self.compacted = self.rv
            self.log.clear()
            self.log_rvs.clear()
            pairs = [(s, k) for s in STORES for k in list(self.versions[s])]
            self._compact_keys(pairs)
            return self.rv

    def create(self, store, obj):
        with self.lock:
            key = obj_key(STORE_NAMESPACED[store], obj)
            if key in self.live[store]:
                raise Conflict("%s \"%s\" already exists" % (store, obj["metadata"]["name"]))
            obj["metadata"]["resourceVersion"] = str(self._next_rv())
            obj["metadata"] = order_meta(obj["metadata"])
            self._record(store, "ADDED", obj, None, key)
            self.changed.notify_all()
            return obj

    def create_many(self, store, objs, render=False):
        """Create objects (an existing key is skipped). render: also cache
        each object's JSON now (bulk creation for benchmarks; keys arriving
        in ascending order keep the sorted key list cheap to extend)."""
        with self.lock:
            out = []
            live = self.live[store]
            rendered = self.rendered[store]
            namespaced = STORE_NAMESPACED[store]
            for obj in objs:
                key = obj_key(namespaced, obj)
                if key in live:
                    continue
                obj["metadata"]["resourceVersion"] = str(self._next_rv())
                obj["metadata"] = order_meta(obj["metadata"])
                self._record(store, "ADDED", obj, None, key)
                if render:
                    rendered[key] = dumps_compact(obj).encode()
                out.append(obj)
            self.changed.notify_all()
            return out

    def bulk_create(self, store, objs):
        """Create many generated objects at once (an existing key is
        skipped): each gets its own rv and ADDED entry, as from single
        creates, and its JSON is rendered into the cache now. The objects'
        metadata must already be in META_ORDER with a resourceVersion slot.
        Returns the objects created."""
        with self.lock:
            live, rendered, keys = self.live[store], self.rendered[store], self.keys[store]
            namespaced = STORE_NAMESPACED[store]
            new_keys, out = [], []
            for obj in objs:
                key = obj_key(namespaced, obj)
                if key in live:
                    continue
                # a deleted object's key stays listed while its tombstone does
                listed = key in self.versions[store]
                obj["metadata"]["resourceVersion"] = str(self._next_rv())
                self._record(store, "ADDED", obj, None, key, insert_key=False)
                rendered[key] = dumps_compact(obj).encode()
                if not listed:
                    new_keys.append(key)
                out.append(obj)
            if new_keys:
                # one merge instead of an insertion (a memmove) per key
                keys.extend(new_keys)
                if len(keys) > len(new_keys) and keys[-len(new_keys) - 1] > new_keys[0] or \
                        any(a > b for a, b in zip(new_keys, new_keys[1:])):
                    keys.sort()
            self.changed.notify_all()
            return out

    def update(self, store, key, fn):
        """fn(old) -> new object (a fresh dict); stores it with a new rv."""
        with self.lock:
            old = self.live[store].get(key)
            if old is None:
                raise NotFound(key)
            new = fn(old)
            new["metadata"]["resourceVersion"] = str(self._next_rv())
            new["metadata"] = order_meta(new["metadata"])
            self._record(store, "MODIFIED", new, old, key)
            self.changed.notify_all()
            return new

    def delete(self, store, key):
        with self.lock:
            old = self.live[store].get(key)
            if old is None:
                raise NotFound(key)
            gone = dict(old)
            gone["metadata"] = dict(old["metadata"])
            gone["metadata"]["resourceVersion"] = str(self._next_rv())
            self._record(store, "DELETED", gone, old, key)
            self.changed.notify_all()
            return gone

    # ---- reads (callers hold the lock) ----

    def get(self, store, key):
        return self.live[store].get(key)

    def at(self, store, key, rv):
        vers = self.versions[store].get(key)
        if not vers:
            return None
        if rv >= self.rv or vers[-1][0] <= rv:
            return vers[-1][1]
        for vrv, obj in reversed(vers):
            if vrv <= rv:
                return obj
        return None

    def item_json(self, store, key, obj):
        """Compact JSON bytes of obj (a version of key, core form, no kind),
        from the cache when obj is the live object; caches it then. Callers
        may hold the lock or not."""
        b = self.rendered[store].get(key)
        if b is not None and self.live[store].get(key) is obj:
            return b
        b = dumps_compact(obj).encode()
        with self.lock:
            if self.live[store].get(key) is obj:
                self.rendered[store][key] = b
        return b

    def wait_for_rv(self, rv, timeout):
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.rv < rv:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
            return True


# --------------------------------------------------------------------------
# Certificates

def make_certs(state_dir):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
    import ipaddress

    ca_crt = os.path.join(state_dir, "ca.crt")
    ca_key_path = os.path.join(state_dir, "ca.key")
    now = datetime.datetime.now(datetime.timezone.utc)
    if os.path.exists(ca_crt) and os.path.exists(ca_key_path):
        # Reuse the CA of an earlier run in the same directory, so a restarted
        # simulator is still trusted by a running agent.
        with open(ca_key_path, "rb") as f:
            ca_key = serialization.load_pem_private_key(f.read(), None)
        with open(ca_crt, "rb") as f:
            ca_cert = x509.load_pem_x509_certificate(f.read())
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
        ca_cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                                key_cert_sign=True, crl_sign=True,
                                                content_commitment=False, data_encipherment=False,
                                                key_agreement=False, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                                  critical=False)
                   .sign(ca_key, hashes.SHA256()))
        write_file(ca_key_path, ca_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()), 0o600)
        write_file(ca_crt, ca_cert.public_bytes(serialization.Encoding.PEM))
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([
        x509.DNSName("localhost"), x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"), x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1"))])
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(san, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    srv_crt = os.path.join(state_dir, "apiserver.crt")
    srv_key = os.path.join(state_dir, "apiserver.key")
    write_file(srv_key, key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()), 0o600)
    write_file(srv_crt, cert.public_bytes(serialization.Encoding.PEM))
    return ca_crt, srv_crt, srv_key


def write_file(path, data, mode=0o644):
    """Atomic replace (like the kubelet's projected volumes)."""
    if isinstance(data, str):
        data = data.encode()
    tmp = "%s.tmp.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# Realistic objects

def managed_entry(manager, t, fields, api_version="v1", subresource=None):
    e = {"manager": manager, "operation": "Update", "apiVersion": api_version, "time": t,
         "fieldsType": "FieldsV1", "fieldsV1": fields}
    if subresource:
        e["subresource"] = subresource
    return e


def fields_of(obj, skip=("metadata", "kind", "apiVersion")):
    """A FieldsV1 set naming the object's fields (one level below the top for
    maps, containers keyed by name, like the real managedFields)."""
    out = {}
    for k, v in obj.items():
        if k in skip:
            continue
        if isinstance(v, dict) and v and k in ("source", "spec", "status"):
            sub = {}
            for kk in sorted(v):
                if kk in ("containers", "initContainers") and isinstance(v[kk], list):
                    sub["f:" + kk] = {'k:{"name":"%s"}' % c.get("name", ""): container_fields(c)
                                      for c in v[kk] if isinstance(c, dict)}
                elif kk not in ("volumes", "tolerations", "serviceAccount", "priority",
                                "preemptionPolicy"):
                    sub["f:" + kk] = {}
            out["f:" + k] = sub
        else:
            out["f:" + k] = {}
    if obj.get("metadata", {}).get("labels"):
        labels = {".": {}}
        labels.update({"f:" + k: {} for k in sorted(obj["metadata"]["labels"])})
        out = dict({"f:metadata": {"f:labels": labels}}, **out)
    return dict(sorted(out.items()))


EVENT_FIELDS = {"f:count": {}, "f:firstTimestamp": {}, "f:involvedObject": {},
                "f:lastTimestamp": {}, "f:message": {}, "f:reason": {},
                "f:reportingComponent": {}, "f:reportingInstance": {},
                "f:source": {"f:component": {}, "f:host": {}}, "f:type": {}}

NS_FIELDS = {"f:metadata": {"f:labels": {".": {}, "f:kubernetes.io/metadata.name": {}}}}

MESSAGES = {
    "BackOff": "Back-off restarting failed container {container} in pod {name}_{namespace}({uid})",
    "OOMKilling": "Memory cgroup out of memory: Killed process 4242 ({container}) "
                  "total-vm:812340kB, anon-rss:524288kB, file-rss:0kB, shmem-rss:0kB, "
                  "UID:65534 pgtables:1284kB oom_score_adj:984",
    "FailedScheduling": "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes "
                        "are available: 3 No preemption victims found for incoming pod.",
    "Unhealthy": "Liveness probe failed: Get \"http://10.244.1.17:8080/healthz\": context "
                 "deadline exceeded (Client.Timeout exceeded while awaiting headers)",
    "Failed": "Failed to pull image \"registry.example/{container}:2.3.1\": rpc error: code = "
              "NotFound desc = failed to pull and unpack image",
    "FailedMount": "MountVolume.SetUp failed for volume \"config\" : configmap \"{name}-config\" "
                   "not found",
    "Pulled": "Successfully pulled image \"registry.example/{container}:2.3.1\" in 1.234s "
              "(1.234s including waiting)",
    "Started": "Started container {container}",
    "Killing": "Stopping container {container}",
    "Evicted": "The node was low on resource: memory. Threshold quantity: 100Mi, available: "
               "91232Ki. Container {container} was using 1532Mi, request is 256Mi, has larger "
               "consumption of memory.",
    "NodeNotReady": "Node {name} status is now: NodeNotReady",
}


class ObjectFactory:
    def __init__(self, node_name):
        self.node_name = node_name
        self.name_seq = int(time.time() * 1e9)
        self.lock = threading.Lock()

    def event_name(self, involved):
        # kubelet names events <object>.<hex unix nanos>
        with self.lock:
            self.name_seq += 1
            return "%s.%x" % (involved, self.name_seq)

    def fill_event(self, ev, api_version="v1"):
        meta = ev.setdefault("metadata", {})
        inv = ev.get("involvedObject") or {}
        if not meta.get("name"):
            meta["name"] = self.event_name(inv.get("name") or meta.get("generateName") or "event")
        meta.setdefault("namespace", inv.get("namespace") or "default")
        t = rfc3339()
        meta.setdefault("uid", new_uid())
        meta.setdefault("creationTimestamp", t)
        if "managedFields" not in meta:
            if api_version == "v1":
                fields = {"f:" + k: ({"f:" + kk: {} for kk in sorted(v)}
                                     if k == "source" and isinstance(v, dict) and v else {})
                          for k, v in ev.items() if k != "metadata" and v not in (None, "")}
                meta["managedFields"] = [managed_entry("kubelet", t, dict(sorted(fields.items())))]
            else:
                fields = {"f:" + k: {} for k in ("action", "eventTime", "note", "reason",
                                                  "regarding", "reportingController",
                                                  "reportingInstance", "type")}
                meta["managedFields"] = [managed_entry("kubectl-create", t, fields,
                                                       api_version="events.k8s.io/v1")]
        ev["metadata"] = meta
        return normalize_core_event(ev)

    def fill(self, store, obj):
        meta = obj.setdefault("metadata", {})
        t = rfc3339()
        meta.setdefault("uid", new_uid())
        meta.setdefault("creationTimestamp", t)
        if store == "namespaces":
            labels = meta.setdefault("labels", {})
            labels.setdefault("kubernetes.io/metadata.name", meta["name"])
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj.setdefault("status", {"phase": "Active"})
            if "managedFields" not in meta:
                meta["managedFields"] = [managed_entry("kubectl-create", t, NS_FIELDS)]
        elif store == "pods":
            meta.setdefault("namespace", "default")
            pod_defaults(obj)
            if "managedFields" not in meta:
                spec_obj = {k: v for k, v in obj.items() if k != "status"}
                entries = [managed_entry("kubectl-create", t, fields_of(spec_obj))]
                if obj.get("status"):
                    entries.insert(0, managed_entry(
                        "kubelet", t, {"f:status": {"f:" + k: {} for k in sorted(obj["status"])}},
                        subresource="status"))
                meta["managedFields"] = entries
        elif store == "nodes":
            if "managedFields" not in meta:
                entries = [managed_entry("kubelet", t, fields_of({"metadata": meta,
                                                                   "spec": obj.get("spec") or {}}))]
                if obj.get("status"):
                    entries.insert(0, managed_entry(
                        "kubelet", t, {"f:status": {"f:" + k: {} for k in sorted(obj["status"])}},
                        subresource="status"))
                meta["managedFields"] = entries
        obj["metadata"] = order_meta(meta)
        return obj

    def namespace(self, name, uid=None, manager="kube-apiserver"):
        t = rfc3339()
        return {"metadata": {"name": name, "uid": uid or new_uid(), "creationTimestamp": t,
                             "labels": {"kubernetes.io/metadata.name": name},
                             "managedFields": [managed_entry(manager, t, NS_FIELDS)]},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}

    def node(self, name, labels, provider_id, kubelet_version):
        t = rfc3339()
        all_labels = {"kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name,
                      "kubernetes.io/os": "linux"}
        all_labels.update(labels)
        all_labels = dict(sorted(all_labels.items()))
        spec = {}
        if provider_id:
            spec["providerID"] = provider_id
        cond_fields = {".": {}, "f:lastHeartbeatTime": {}, "f:lastTransitionTime": {},
                       "f:message": {}, "f:reason": {}, "f:status": {}, "f:type": {}}
        res_fields = {".": {}, "f:cpu": {}, "f:ephemeral-storage": {}, "f:hugepages-2Mi": {},
                      "f:memory": {}, "f:pods": {}}
        status_fields = {"f:status": {
            "f:addresses": {".": {}, 'k:{"type":"Hostname"}': {".": {}, "f:address": {}, "f:type": {}},
                            'k:{"type":"InternalIP"}': {".": {}, "f:address": {}, "f:type": {}}},
            "f:allocatable": dict(res_fields), "f:capacity": dict(res_fields),
            "f:conditions": {".": {}, **{'k:{"type":"%s"}' % c: dict(cond_fields) for c in
                                         ("DiskPressure", "MemoryPressure", "PIDPressure", "Ready")}},
            "f:daemonEndpoints": {"f:kubeletEndpoint": {"f:Port": {}}},
            "f:nodeInfo": {"f:" + k: {} for k in sorted((
                "architecture", "bootID", "containerRuntimeVersion", "kernelVersion",
                "kubeProxyVersion", "kubeletVersion", "machineID", "operatingSystem", "osImage",
                "systemUUID"))}}}
        label_fields = {"f:metadata": {"f:annotations": {".": {}, "f:volumes.kubernetes.io/controller-managed-attach-detach": {}},
                                       "f:labels": dict({".": {}}, **{"f:" + k: {} for k in all_labels})}}
        if provider_id:
            label_fields["f:spec"] = {"f:providerID": {}}

        def cond(ctype, status, reason, message):
            return {"type": ctype, "status": status, "lastHeartbeatTime": t,
                    "lastTransitionTime": t, "reason": reason, "message": message}
        return {
            "metadata": {"name": name, "uid": new_uid(), "creationTimestamp": t,
                         "labels": all_labels,
                         "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"},
                         "managedFields": [
                             managed_entry("kubelet", t, label_fields),
                             managed_entry("kubelet", t, status_fields, subresource="status")]},
            "spec": spec,
            "status": {
                "capacity": {"cpu": "4", "ephemeral-storage": "83873772Ki", "hugepages-2Mi": "0",
                             "memory": "16106128Ki", "pods": "58"},
                "allocatable": {"cpu": "3920m", "ephemeral-storage": "76224326324",
                                "hugepages-2Mi": "0", "memory": "15087120Ki", "pods": "58"},
                "conditions": [
                    cond("MemoryPressure", "False", "KubeletHasSufficientMemory",
                         "kubelet has sufficient memory available"),
                    cond("DiskPressure", "False", "KubeletHasNoDiskPressure",
                         "kubelet has no disk pressure"),
                    cond("PIDPressure", "False", "KubeletHasSufficientPID",
                         "kubelet has sufficient PID available"),
                    cond("Ready", "True", "KubeletReady", "kubelet is posting ready status")],
                "addresses": [{"type": "InternalIP", "address": "10.0.12.34"},
                              {"type": "Hostname", "address": name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {"machineID": uuid.uuid5(uuid.NAMESPACE_DNS, name).hex,
                             "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
                             "bootID": str(uuid.uuid5(uuid.NAMESPACE_OID, name)),
                             "kernelVersion": "5.10.205-195.807.amzn2.x86_64",
                             "osImage": "Amazon Linux 2",
                             "containerRuntimeVersion": "containerd://1.7.11",
                             "kubeletVersion": kubelet_version, "kubeProxyVersion": kubelet_version,
                             "operatingSystem": "linux", "architecture": "amd64"}}}

    def emitted_event(self, namespace, i, opts):
        kind = opts.get("kind") or "Pod"
        if opts.get("name"):
            inv_name = opts["name"]
        else:
            inv_name = "%s-%d" % (opts.get("name_prefix") or "pod", i)
        reason = opts.get("reason") or "BackOff"
        container = opts.get("container") or "app"
        inv_uid = str(uuid.uuid5(uuid.NAMESPACE_URL, "%s/%s/%s" % (kind, namespace, inv_name)))
        inv = {"kind": kind, "namespace": namespace, "name": inv_name, "uid": inv_uid,
               "apiVersion": "v1"}
        if kind == "Node":
            inv = {"kind": "Node", "name": inv_name, "uid": inv_name, "apiVersion": "v1"}
        elif kind == "Pod":
            inv["fieldPath"] = "spec.containers{%s}" % container
        message = opts.get("message") or MESSAGES.get(reason, reason + " for {kind} {name}")
        message = message.replace("{name}", inv_name).replace("{namespace}", namespace) \
            .replace("{uid}", inv_uid).replace("{container}", container).replace("{kind}", kind) \
            .replace("{i}", str(i))
        t = rfc3339()
        component = opts.get("component") or ("kernel-monitor" if reason == "OOMKilling"
                                               else "default-scheduler" if reason == "FailedScheduling"
                                               else "kubelet")
        host = opts.get("host") or self.node_name
        count = opts.get("count_field", 1)
        ev = {"metadata": {"name": self.event_name(inv_name), "namespace": namespace,
                           "uid": new_uid(), "creationTimestamp": t},
              "involvedObject": inv, "reason": reason, "message": message,
              "source": {"component": component, "host": host},
              "firstTimestamp": opts.get("first_timestamp") or t,
              "lastTimestamp": opts.get("last_timestamp") or t,
              "count": count, "type": opts.get("type") or "Warning", "eventTime": None,
              "reportingComponent": component, "reportingInstance": host}
        ev["metadata"]["managedFields"] = [managed_entry(component, t, EVENT_FIELDS)]
        return normalize_core_event(ev)


def pod_defaults(pod):
    """The defaults the real API server fills in on create (setdefault only)."""
    spec = pod.setdefault("spec", {})
    containers = spec.setdefault("containers", [])
    for c in containers:
        c.setdefault("resources", {})
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        img = c.get("image", "")
        c.setdefault("imagePullPolicy", "Always" if img.endswith(":latest") or ":" not in img.rsplit("/", 1)[-1] else "IfNotPresent")
    for k, v in (("restartPolicy", "Always"), ("terminationGracePeriodSeconds", 30),
                 ("dnsPolicy", "ClusterFirst"), ("serviceAccountName", "default"),
                 ("serviceAccount", "default"), ("securityContext", {}),
                 ("schedulerName", "default-scheduler"),
                 ("tolerations", [
                     {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                      "effect": "NoExecute", "tolerationSeconds": 300},
                     {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                      "effect": "NoExecute", "tolerationSeconds": 300}]),
                 ("priority", 0), ("enableServiceLinks", True),
                 ("preemptionPolicy", "PreemptLowerPriority")):
        spec.setdefault(k, v)
    status = pod.setdefault("status", {})
    status.setdefault("phase", "Pending")
    if "qosClass" not in status:
        req = [c.get("resources", {}) for c in containers]
        if not any(r.get("requests") or r.get("limits") for r in req):
            qos = "BestEffort"
        elif all(r.get("limits") and r.get("requests", r.get("limits")) == r.get("limits")
                 and {"cpu", "memory"} <= set(r.get("limits")) for r in req):
            qos = "Guaranteed"
        else:
            qos = "Burstable"
        status["qosClass"] = qos
    return pod


def container_fields(c):
    f = {".": {}}
    for k in sorted(c):
        if k == "resources" and c[k]:
            r = {".": {}}
            for rk in sorted(c[k]):
                r["f:" + rk] = dict({".": {}}, **{"f:" + x: {} for x in sorted(c[k][rk])})
            f["f:resources"] = r
        elif k not in ("volumeMounts",):
            f["f:" + k] = {}
    return f


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch; returns a new object."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# --------------------------------------------------------------------------
# Scale: realistic clusters in bulk (POST /populate) and steady churn (POST /churn)
#
# Generated objects share their identical parts (a workload's labels, owner
# references, containers, volumes, conditions and managedFields entries, the
# tolerations, empty maps): stored objects are never changed in place (every
# update builds new dicts along the changed path), so sharing is safe and
# keeps 150,000 pods within a few GB.

ZONES = ("eu-west-1a", "eu-west-1b", "eu-west-1c")
# (type, capacity cpu, memory, allocatable cpu, memory, pods)
INSTANCE_TYPES = (
    ("m6i.xlarge", "4", "16106128Ki", "3920m", "15087120Ki", "58"),
    ("m6i.2xlarge", "8", "32388212Ki", "7910m", "31369204Ki", "58"),
    ("c6i.4xlarge", "16", "31619536Ki", "15890m", "30600528Ki", "234"),
    ("r6i.2xlarge", "8", "65063608Ki", "7910m", "64044600Ki", "58"),
)
APP_WORDS = ("api", "web", "worker", "checkout", "cart", "payments", "search", "auth", "catalog",
             "orders", "notifier", "gateway", "frontend", "inventory", "billing", "recommender",
             "ledger", "redis", "nginx", "batch")
# sidecars: name, image, requests, limits (None: no limits)
SIDECARS = (("envoy", "registry.example/envoy:1.28.1", {"cpu": "100m", "memory": "64Mi"}, None),
            ("log-shipper", "registry.example/fluent-bit:2.2.2", {"cpu": "50m", "memory": "32Mi"},
             {"cpu": "100m", "memory": "64Mi"}))
UNHEALTHY_KINDS = ("CrashLoopBackOff", "OOMKilled", "ImagePullBackOff", "Unschedulable", "NotReady")
NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"      # k8s.io/apimachinery's rand.String alphabet
EMPTY = {}          # shared: never changed in place
TOLERATIONS = [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": 300},
               {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": 300}]
COND_FIELDS = {".": EMPTY, "f:lastProbeTime": EMPTY, "f:lastTransitionTime": EMPTY,
               "f:status": EMPTY, "f:type": EMPTY}
COND_FIELDS_MSG = dict(COND_FIELDS, **{"f:message": EMPTY, "f:reason": EMPTY})
IP_FIELDS = {".": EMPTY, "f:ip": EMPTY}


def ip4(n):
    return "%d.%d.%d.%d" % ((n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255)


def go_list(names):
    return "[%s]" % " ".join(names)     # fmt's %v of a []string


class Workload:
    """What the pods of one ReplicaSet share."""
    __slots__ = ("app", "gen_name", "t", "labels", "owner", "containers", "volumes", "spec_tpl",
                 "qos", "images", "image_ids", "running", "conds_ok", "mf_kcm", "mf_conds",
                 "mf_conds_msg", "started")


class Populator:
    def __init__(self, sim, rng):
        self.sim = sim
        self.rng = rng
        self.now = now_utc()
        self.t_now = rfc3339(self.now)

    def ago(self, lo, hi):
        return rfc3339(self.now - datetime.timedelta(seconds=self.rng.randint(lo, hi)))

    def rand_str(self, n):
        return "".join(self.rng.choices(NAME_CHARS, k=n))

    def uid(self):
        h = "%032x" % self.rng.getrandbits(128)
        return "%s-%s-4%s-%s%s-%s" % (h[:8], h[8:12], h[13:16], "89ab"[int(h[16], 16) & 3],
                                       h[17:20], h[20:])

    def container_id(self):
        return "containerd://%064x" % self.rng.getrandbits(256)

    # ---- namespaces and nodes ----

    def namespace(self, name):
        ns = self.sim.factory.namespace(name, uid=self.uid(), manager="kubectl-create")
        t = self.ago(86400, 400 * 86400)
        ns["metadata"]["creationTimestamp"] = t
        ns["metadata"]["managedFields"][0]["time"] = t
        ns["metadata"] = order_meta(dict(ns["metadata"], resourceVersion=None))
        return ns

    def node(self, i, name):
        r = self.rng
        zone = ZONES[i % len(ZONES)]
        itype, ccpu, cmem, acpu, amem, pods = INSTANCE_TYPES[r.randrange(len(INSTANCE_TYPES))]
        labels = {"topology.kubernetes.io/zone": zone, "topology.kubernetes.io/region": zone[:-1],
                  "node.kubernetes.io/instance-type": itype,
                  "eks.amazonaws.com/nodegroup": "ng-" + itype.split(".")[0]}
        provider = "aws:///%s/i-%017x" % (zone, r.getrandbits(68))
        n = self.sim.factory.node(name, labels, provider, self.sim.args.gitversion)
        meta = n["metadata"]
        meta["uid"] = self.uid()
        t = self.ago(3600, 90 * 86400)
        meta["creationTimestamp"] = t
        meta["annotations"] = dict(meta["annotations"], **{"node.alpha.kubernetes.io/ttl": "0"})
        st = n["status"]
        st["capacity"] = dict(st["capacity"], cpu=ccpu, memory=cmem, pods=pods)
        st["allocatable"] = dict(st["allocatable"], cpu=acpu, memory=amem, pods=pods)
        ip = ip4((10 << 24) + 256 + i)
        st["addresses"] = [{"type": "InternalIP", "address": ip},
                           {"type": "Hostname", "address": name}]
        n["metadata"] = order_meta(dict(meta, resourceVersion=None))
        return n, ip

    # ---- pods ----

    def workload(self, ns, word, ncont):
        r = self.rng
        wl = Workload()
        wl.app = word
        pth = self.rand_str(10)
        wl.gen_name = "%s-%s-" % (word, pth)
        wl.t = self.ago(600, 30 * 86400)
        wl.started = wl.t
        wl.labels = {"app": word, "pod-template-hash": pth}
        rs_uid = self.uid()
        wl.owner = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": wl.gen_name[:-1],
                     "uid": rs_uid, "controller": True, "blockOwnerDeletion": True}]
        vol = "kube-api-access-" + self.rand_str(5)
        wl.volumes = [{"name": vol, "projected": {"sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}], "defaultMode": 420}}]
        mounts = [{"name": vol, "readOnly": True,
                   "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
        cpu = r.choice(("100m", "250m", "500m", "1"))
        mem = r.choice(("128Mi", "256Mi", "512Mi", "1Gi", "2Gi"))
        main_res = {"requests": {"cpu": cpu, "memory": mem}}
        if r.random() < 0.3:
            main_res = {"limits": {"cpu": cpu, "memory": mem}, "requests": {"cpu": cpu, "memory": mem}}
        elif r.random() < 0.8:
            main_res = {"limits": {"memory": mem}, "requests": {"cpu": cpu, "memory": mem}}
        image = "registry.example/%s:%d.%d.%d" % (word, r.randint(1, 4), r.randint(0, 30), r.randint(0, 9))
        specs = [(word, image, main_res, [{"name": "http", "containerPort": 8080, "protocol": "TCP"}])]
        for name, img, req, lim in SIDECARS[:ncont - 1]:
            specs.append((name, img, {"limits": lim, "requests": req} if lim else {"requests": req}, None))
        wl.containers, wl.images, wl.image_ids = [], [], []
        for name, img, res, ports in specs:
            c = {"name": name, "image": img}
            if ports:
                c["ports"] = ports
            c.update({"resources": res, "volumeMounts": mounts,
                      "terminationMessagePath": "/dev/termination-log",
                      "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"})
            wl.containers.append(c)
            wl.images.append(img)
            wl.image_ids.append("%s@sha256:%064x" % (img.rsplit(":", 1)[0], r.getrandbits(256)))
        wl.qos = pod_defaults({"spec": {"containers": [{"resources": c["resources"], "image": "x:1"}
                                                       for c in wl.containers]}})["status"]["qosClass"]
        wl.spec_tpl = {"volumes": wl.volumes, "containers": wl.containers, "restartPolicy": "Always",
                       "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                       "serviceAccountName": "default", "serviceAccount": "default", "nodeName": None,
                       "securityContext": EMPTY, "schedulerName": "default-scheduler",
                       "tolerations": TOLERATIONS, "priority": 0, "enableServiceLinks": True,
                       "preemptionPolicy": "PreemptLowerPriority"}
        wl.running = {"running": {"startedAt": wl.t}}
        wl.conds_ok = self.conditions(wl.t, None)
        spec_fields = {"f:containers": {'k:{"name":"%s"}' % c["name"]: container_fields(c)
                                        for c in wl.containers}}
        for k in ("dnsPolicy", "enableServiceLinks", "restartPolicy", "schedulerName",
                  "securityContext", "terminationGracePeriodSeconds"):
            spec_fields["f:" + k] = EMPTY
        spec_fields["f:volumes"] = {".": EMPTY, 'k:{"name":"%s"}' % vol: {
            ".": EMPTY, "f:name": EMPTY, "f:projected": {".": EMPTY, "f:defaultMode": EMPTY,
                                                       "f:sources": EMPTY}}}
        wl.mf_kcm = managed_entry("kube-controller-manager", wl.t, {
            "f:metadata": {"f:generateName": EMPTY,
                           "f:labels": {".": EMPTY, "f:app": EMPTY, "f:pod-template-hash": EMPTY},
                           "f:ownerReferences": {".": EMPTY, 'k:{"uid":"%s"}' % rs_uid: EMPTY}},
            "f:spec": spec_fields})
        wl.mf_conds = {".": EMPTY, **{'k:{"type":"%s"}' % c: COND_FIELDS for c in (
            "ContainersReady", "Initialized", "PodScheduled", "Ready")}}
        wl.mf_conds_msg = dict(wl.mf_conds, **{'k:{"type":"%s"}' % c: COND_FIELDS_MSG
                                               for c in ("ContainersReady", "Ready")})
        return wl

    @staticmethod
    def conditions(t, not_ready, t_change=None):
        def c(ctype, ok, reason=None):
            d = {"type": ctype, "status": "True" if ok else "False", "lastProbeTime": None,
                 "lastTransitionTime": t if ok or t_change is None else t_change}
            if not ok:
                d["reason"] = reason
                d["message"] = "containers with unready status: " + go_list(not_ready)
            return d
        return [c("Initialized", True), c("Ready", not not_ready, "ContainersNotReady"),
                c("ContainersReady", not not_ready, "ContainersNotReady"), c("PodScheduled", True)]

    def pod(self, wl, ns, node, host_ip, kind):
        r = self.rng
        name = wl.gen_name + self.rand_str(5)
        uid = self.uid()
        spec = dict(wl.spec_tpl)
        t = wl.t
        if kind == "Unschedulable":
            del spec["nodeName"]
            t = self.ago(3600, 3 * 86400)
            nn = self.sim.populated_nodes or 1
            status = {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "lastProbeTime": None,
                "lastTransitionTime": t, "reason": "Unschedulable",
                "message": "0/%d nodes are available: %d Insufficient cpu. preemption: 0/%d nodes "
                           "are available: %d No preemption victims found for incoming pod."
                           % (nn, nn, nn, nn)}], "qosClass": wl.qos}
            mf_status = managed_entry("kube-scheduler", t, {"f:status": {"f:conditions": {
                ".": EMPTY, 'k:{"type":"PodScheduled"}': COND_FIELDS_MSG}}}, subresource="status")
            meta = {"name": name, "generateName": wl.gen_name, "namespace": ns, "uid": uid,
                    "resourceVersion": None, "creationTimestamp": t, "labels": wl.labels,
                    "ownerReferences": wl.owner,
                    "managedFields": [dict(wl.mf_kcm, time=t), mf_status]}
            return {"metadata": meta, "spec": spec, "status": status}
        spec["nodeName"] = node
        ip = ip4((10 << 24) + (128 << 16) + self.sim.next_pod_ip())
        statuses = []
        for c, img, iid in zip(wl.containers, wl.images, wl.image_ids):
            statuses.append({"name": c["name"], "state": wl.running, "lastState": EMPTY,
                             "ready": True, "restartCount": 0, "image": img, "imageID": iid,
                             "containerID": self.container_id(), "started": True})
        conds, phase, msg_fields = wl.conds_ok, "Running", False
        if kind is not None:
            j = r.randrange(len(statuses))
            cs = statuses[j]
            cname = cs["name"]
            recent = self.ago(30, 1800)
            if kind == "CrashLoopBackOff":
                old_id = cs["containerID"]
                cs.update(state={"waiting": {"reason": "CrashLoopBackOff", "message": (
                    "back-off 5m0s restarting failed container=%s pod=%s_%s(%s)"
                    % (cname, name, ns, uid))}},
                    lastState={"terminated": {"exitCode": 1, "reason": "Error", "startedAt": recent,
                                              "finishedAt": recent, "containerID": old_id}},
                    ready=False, restartCount=r.randint(3, 60), started=False)
            elif kind == "OOMKilled":
                cs.update(state={"running": {"startedAt": recent}},
                          lastState={"terminated": {"exitCode": 137, "reason": "OOMKilled",
                                                    "startedAt": t, "finishedAt": recent,
                                                    "containerID": self.container_id()}},
                          restartCount=r.randint(1, 12))
            elif kind == "ImagePullBackOff":
                phase = "Pending"
                cs.update(state={"waiting": {"reason": "ImagePullBackOff",
                                             "message": 'Back-off pulling image "%s"' % cs["image"]}},
                          ready=False, imageID="", started=False)
                del cs["containerID"]
            elif kind == "NotReady":
                cs.update(ready=False)
            if not cs["ready"]:
                conds = self.conditions(t, [cname], recent)
                msg_fields = True
        status = {"phase": phase, "conditions": conds, "hostIP": host_ip, "podIP": ip,
                  "podIPs": [{"ip": ip}], "startTime": t, "containerStatuses": statuses,
                  "qosClass": wl.qos}
        mf_kubelet = managed_entry("kubelet", t, {"f:status": {
            "f:conditions": wl.mf_conds_msg if msg_fields else wl.mf_conds,
            "f:containerStatuses": EMPTY, "f:hostIP": EMPTY, "f:phase": EMPTY, "f:podIP": EMPTY,
            "f:podIPs": {".": EMPTY, 'k:{"ip":"%s"}' % ip: IP_FIELDS}, "f:startTime": EMPTY}},
            subresource="status")
        meta = {"name": name, "generateName": wl.gen_name, "namespace": ns, "uid": uid,
                "resourceVersion": None, "creationTimestamp": t, "labels": wl.labels,
                "ownerReferences": wl.owner, "managedFields": [wl.mf_kcm, mf_kubelet]}
        return {"metadata": meta, "spec": spec, "status": status}

    def run(self, n_ns, n_nodes, n_pods, fraction, batch=2000):
        sim, st, r = self.sim, self.sim.store, self.rng
        created = {"namespaces": 0, "nodes": 0, "pods": 0}
        w_ns = max(5, len(str(max(n_ns - 1, 0))))
        ns_names = ["ns-%0*d" % (w_ns, i) for i in range(n_ns)]
        for i in range(0, n_ns, batch):
            created["namespaces"] += len(st.bulk_create(
                "namespaces", [self.namespace(nm) for nm in ns_names[i:i + batch]]))
        w_node = max(4, len(str(max(n_nodes - 1, 0))))
        nodes = []
        for i in range(0, n_nodes, batch):
            objs = []
            for j in range(i, min(n_nodes, i + batch)):
                n, ip = self.node(j, "node-%0*d" % (w_node, j))
                objs.append(n)
                nodes.append((n["metadata"]["name"], ip))
            created["nodes"] += len(st.bulk_create("nodes", objs))
        if n_pods:
            with st.lock:
                if not ns_names:
                    ns_names = sorted(k for k in st.live["namespaces"])
                if not nodes:
                    nodes = [(k, next((a["address"] for a in (o.get("status") or {}).get("addresses", [])
                                       if a.get("type") == "InternalIP"), "10.0.0.1"))
                             for k, o in sorted(st.live["nodes"].items())]
            if not ns_names or not nodes:
                raise ControlError(400, "pods need namespaces and nodes (create some, or ask for them)")
            sim.populated_nodes = len(nodes)
        n_bad = min(n_pods, int(round(n_pods * fraction)))
        bad = {}
        for j, idx in enumerate(r.sample(range(n_pods), n_bad) if n_bad else ()):
            bad[idx] = UNHEALTHY_KINDS[j % len(UNHEALTHY_KINDS)]
        unhealthy = {k: 0 for k in UNHEALTHY_KINDS}
        pending, idx = [], 0
        n_ns_used = len(ns_names) if n_pods else 0
        base, extra = (divmod(n_pods, n_ns_used) if n_ns_used else (0, 0))
        for k in range(n_ns_used):
            ns = ns_names[k]
            want = base + (1 if k < extra else 0)
            pods = []
            w = 0
            while len(pods) < want:
                word = APP_WORDS[(k + w) % len(APP_WORDS)]
                word = word if w < len(APP_WORDS) else "%s-%d" % (word, w // len(APP_WORDS))
                wl = self.workload(ns, word, r.choice((1, 1, 1, 1, 2, 2, 2, 3)))
                for _ in range(min(want - len(pods), r.choice((1, 2, 2, 3, 3, 4, 5, 6)))):
                    kind = bad.get(idx)
                    node, host_ip = nodes[r.randrange(len(nodes))]
                    pods.append(self.pod(wl, ns, node, host_ip, kind))
                    if kind:
                        unhealthy[kind] += 1
                    idx += 1
                w += 1
            pods.sort(key=lambda p: p["metadata"]["name"])
            pending += pods
            if len(pending) >= batch or k == n_ns_used - 1:
                created["pods"] += len(st.bulk_create("pods", pending))
                pending = []
        created["unhealthy"] = unhealthy
        return created


class Churner:
    """Status changes a kubelet makes: a container restarts, or its readiness flips."""

    def __init__(self, sim, rng):
        self.sim = sim
        self.rng = rng

    def change(self, old, restart):
        r = self.rng
        now = rfc3339()
        status = old.get("status") or {}
        css = status.get("containerStatuses") or []
        running = [j for j, c in enumerate(css) if "running" in (c.get("state") or {})]
        if not restart and not running:
            restart = True
        j = r.choice(running) if not restart else r.randrange(len(css))
        c = dict(css[j])
        if restart:
            c["restartCount"] = c.get("restartCount", 0) + 1
            state = c.get("state") or {}
            if "running" in state:
                term = {"exitCode": 1, "reason": "Error",
                        "startedAt": state["running"].get("startedAt"), "finishedAt": now}
                if c.get("containerID"):
                    term["containerID"] = c["containerID"]
                c["lastState"] = {"terminated": term}
                c["state"] = {"running": {"startedAt": now}}
                c["containerID"] = "containerd://%064x" % r.getrandbits(256)
            elif "waiting" in state and (c.get("lastState") or {}).get("terminated"):
                c["lastState"] = {"terminated": dict(c["lastState"]["terminated"], finishedAt=now)}
        else:
            c["ready"] = not c.get("ready", False)
        new_css = list(css)
        new_css[j] = c
        new_status = dict(status, containerStatuses=new_css)
        not_ready = [x["name"] for x in new_css if not x.get("ready")]
        conds = []
        for cond in status.get("conditions") or []:
            if cond.get("type") in ("Ready", "ContainersReady"):
                ok = not not_ready
                nc = {"type": cond["type"], "status": "True" if ok else "False",
                      "lastProbeTime": cond.get("lastProbeTime"),
                      "lastTransitionTime": cond.get("lastTransitionTime")
                      if (cond.get("status") == "True") == ok else now}
                if not ok:
                    nc["reason"] = "ContainersNotReady"
                    nc["message"] = "containers with unready status: " + go_list(not_ready)
                cond = nc
            conds.append(cond)
        new_status["conditions"] = conds
        new = dict(old, status=new_status)
        meta = dict(old["metadata"])
        mf = []
        for e in meta.get("managedFields") or []:
            if e.get("manager") == "kubelet" and e.get("subresource") == "status":
                e = dict(e, time=now)
            mf.append(e)
        meta["managedFields"] = mf
        new["metadata"] = meta
        return new

    def run(self, count):
        sim, st = self.sim, self.sim.store
        with st.lock:
            keys = [k for k, o in st.live["pods"].items()
                    if (o.get("status") or {}).get("phase") == "Running"
                    and (o.get("status") or {}).get("containerStatuses")]
        if not keys:
            raise ControlError(409, "no running pod with container statuses to change")
        first = last = None
        done = 0
        for _ in range(count):
            key = self.rng.choice(keys)
            with sim.lock:
                restart = sim.churn_seq % 2 == 0
                sim.churn_seq += 1
            try:
                new = st.update("pods", key, lambda old: self.change(old, restart))
            except NotFound:
                continue
            last = new["metadata"]["resourceVersion"]
            first = first or last
            done += 1
        with st.lock:
            rv = str(st.rv)
        return {"modified": done, "first_rv": first, "last_rv": last, "resourceVersion": rv}


# --------------------------------------------------------------------------
# The simulator: state shared by both servers

# metrics.k8s.io in aggregated discovery (when --metrics-api), as
# metrics-server's APIService publishes it
METRICS_DISCOVERY = {"metadata": {"name": "metrics.k8s.io", "creationTimestamp": None},
                     "versions": [{"version": "v1beta1", "resources": [
                         {"resource": "nodes", "responseKind": {"group": "", "version": "", "kind": "NodeMetrics"},
                          "scope": "Cluster", "singularResource": "", "verbs": ["get", "list"]},
                         {"resource": "pods", "responseKind": {"group": "", "version": "", "kind": "PodMetrics"},
                          "scope": "Namespaced", "singularResource": "", "verbs": ["get", "list"]}],
                         "freshness": "Current"}]}
METRICS_CONTINUE_V = "kubesim.metrics/v1"     # kubesim's own token (metrics-server has none)
METRICS_LIST_RE = re.compile(r"^/apis/metrics\.k8s\.io/v1beta1/(?:nodes|(?:namespaces/([^/]+)/)?pods)$")
# GET of one NodeMetrics (nodes/NAME) or PodMetrics (namespaces/NS/pods/NAME).
METRICS_GET_RE = re.compile(r"^/apis/metrics\.k8s\.io/v1beta1/(?:nodes/([^/]+)|namespaces/([^/]+)/pods/([^/]+))$")

STATUS_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                  405: "MethodNotAllowed", 409: "AlreadyExists", 410: "Expired",
                  429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
                  504: "Timeout"}

EXPIRED_CONTINUE_MSG = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this response "
    "to retrieve the remainder of the results. Continuing with the provided token results in an "
    "inconsistent list - objects that were created, modified, or deleted between the time the "
    "first chunk was returned and now may show up in the list.")


def status_obj(code, message, reason=None, details=None, metadata=None):
    s = {"kind": "Status", "apiVersion": "v1", "metadata": metadata or {}, "status": "Failure",
         "message": message}
    if reason != NO_REASON:
        s["reason"] = reason or STATUS_REASONS.get(code, "Unknown")
    if details is not None:
        s["details"] = details
    s["code"] = code
    return s


COORDINATION_GROUP = "coordination.k8s.io"
MICRO_TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")
SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class Fault:
    def __init__(self, spec):
        # "hang": S holds a matching request S seconds, then serves it
        # (or answers "status" when given too)
        self.hang = float(spec["hang"]) if spec.get("hang") else None
        self.status = int(spec["status"]) if spec.get("status") is not None else None
        if self.status is None and self.hang is None:
            raise ValueError("a fault needs status or hang")
        self.count = spec.get("count")
        self.until = time.monotonic() + float(spec["seconds"]) if spec.get("seconds") else None
        self.retry_after = spec.get("retry_after")
        self.path_prefix = spec.get("path_prefix")
        self.verb = spec.get("verb")
        if self.count is None and self.until is None:
            self.count = 1

    def matches(self, path, verb):
        if self.until is not None and time.monotonic() > self.until:
            return False
        if self.count is not None and self.count <= 0:
            return False
        if self.path_prefix and not path.startswith(self.path_prefix):
            return False
        if self.verb and self.verb != verb:
            return False
        return True

    @property
    def spent(self):
        return ((self.count is not None and self.count <= 0)
                or (self.until is not None and time.monotonic() > self.until))


def is_denied(ident, verb, group, resource, sub=None):
    """Whether a token's deny list ("verb resource" entries, "*" for any)
    refuses verb on group/resource[/sub]. A core resource is named by its
    plural ("pods", "pods/log"); one of another group by the group
    ("events.k8s.io") or plural.group ("events.events.k8s.io")."""
    denied = ident["deny"]
    if not denied:
        return False
    if group:
        names = {group, "%s.%s" % (resource, group)}
    else:
        names = {resource}
    if sub:
        names = {"%s/%s" % (resource, sub)} | ({"%s/%s.%s" % (resource, sub, group)} if group else set())
    for entry in denied:
        v, _, r = entry.partition(" ")
        if (v == "*" or v == verb or verb == "*") and (r == "*" or r in names or resource == "*"):
            return True
    return False


# the resources kubesim simulates, and the verbs it serves on them (it is
# read-only), for SelfSubjectRulesReview
SIMULATED_RULES = (("", "namespaces", None), ("", "nodes", None), ("", "pods", None),
                   ("", "pods", "log"), ("", "events", None), (EVENTS_GROUP, "events", None))
DISCOVERY_PATHS = ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                   "/openapi/*", "/readyz", "/version", "/version/"]
PUBLIC_RULE = {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version",
                                                     "/version/"]}
REVIEW_RULES = [{"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
                 "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]},
                {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"],
                 "resources": ["selfsubjectreviews"]}]


# The anonymous user, and what RBAC's system:public-info-viewer lets it read.
ANONYMOUS = {"user": "system:anonymous", "deny": frozenset(), "anonymous": True}
PUBLIC_PATHS = frozenset(("/healthz", "/livez", "/readyz", "/version", "/version/"))


class Sim:
    def __init__(self, args):
        self.args = args
        self.state_dir = os.path.abspath(args.state_dir)
        self.store = Store(args.history_limit, args.watch_queue_limit)
        self.factory = ObjectFactory(args.node_name)
        self.lock = threading.Lock()      # tokens, faults, stats
        self.tokens = {}                  # token -> {"user":..., "deny": set()}
        self.default_token = None
        self.faults = []
        self.leases = {}                  # (namespace, name) -> Lease; under store.lock
        self.stall = threading.Event()
        self.requests = collections.Counter()
        self.statuses = collections.Counter()
        self.recent = collections.deque(maxlen=2000)
        self.watches_total = 0
        self.watch_events_sent = 0
        # metrics.k8s.io: enabled = its APIService exists (the group is in
        # /apis); available = the aggregator reaches metrics-server (else 503);
        # paginate = LISTs honour limit/continue (metrics-server itself
        # ignores them and always answers with every item)
        self.metrics_api = args.metrics_api
        self.metrics_available = True
        self.metrics_paginate = args.metrics_api_paginate == "true"
        self.populate_lock = threading.Lock()    # one /populate at a time
        self.populated_nodes = 0
        self.pod_ips = itertools.count(1)        # populated pods' IPs, never reused
        self.churn_seq = 0                       # /churn alternates restart / readiness
        self.api_port = None
        self.control_port = None
        self.started = time.time()
        self.flowschema_uid = new_uid()
        self.prioritylevel_uid = new_uid()
        samples = args.samples_dir
        self.discovery = {}
        for name in ("api.json", "apis.json", "api-v1-resources.json",
                     "aggregated-discovery-api.json", "aggregated-discovery-apis.json",
                     "openapi-v3-index.json"):
            with open(os.path.join(samples, name)) as f:
                self.discovery[name] = json.load(f)
        self.columns = printers.load_columns(samples)
        # every resource the discovery documents list: (group, plural) ->
        # ResourceInfo; the ones kubesim does not simulate are served empty
        self.known = discovered_resources(self.discovery)
        self.openapi_lock = threading.Lock()
        self.openapi_docs = {}               # "api/v1" -> (bytes, hash)
        self.pod_logs = {}                   # (namespace, pod, container or None) -> text
        self.log_file = open(os.path.join(self.state_dir, "kubesim.log"), "a", buffering=1)

    # ---- tokens ----

    def new_token(self):
        return base64.urlsafe_b64encode(os.urandom(30)).decode().rstrip("=")

    def auth(self, header):
        """The identity behind an Authorization header; None for a bearer
        token nobody issued (401). Without a bearer token the request is
        anonymous, as with kube-apiserver's default --anonymous-auth=true
        (RBAC then lets it reach only PUBLIC_PATHS)."""
        if not header or not header.startswith("Bearer "):
            return ANONYMOUS if self.args.anonymous_auth == "true" else None
        tok = header[7:].strip()
        with self.lock:
            return self.tokens.get(tok)

    def setup_tokens(self):
        tok_path = os.path.join(self.state_dir, "token")
        tok = None
        if os.path.exists(tok_path):
            with open(tok_path) as f:
                tok = f.read().strip() or None
        tok = tok or self.new_token()
        self.default_token = tok
        self.tokens[tok] = {"user": "system:serviceaccount:default:collect-agent", "deny": set()}
        self.write_token_files()

    def write_token_files(self):
        os.makedirs(os.path.join(self.state_dir, "serviceaccount"), exist_ok=True)
        write_file(os.path.join(self.state_dir, "token"), self.default_token, 0o600)
        write_file(os.path.join(self.state_dir, "serviceaccount", "token"), self.default_token, 0o600)

    def rotate_token(self):
        with self.lock:
            old = self.default_token
            self.default_token = self.new_token()
            self.tokens[self.default_token] = self.tokens.pop(old)
            self.write_token_files()
            return self.default_token

    # ---- faults ----

    def take_fault(self, path, verb):
        with self.lock:
            for f in self.faults:
                if f.matches(path, verb):
                    if f.count is not None:
                        f.count -= 1
                    self.faults = [x for x in self.faults if not x.spent]
                    return f
            self.faults = [x for x in self.faults if not x.spent]
        return None

    def drop_watches(self, mid_line):
        with self.store.lock:
            ws = list(self.store.watchers)
        for w in ws:
            with w.cond:
                w.drop = "mid_line" if mid_line else "abrupt"
                w.cond.notify()
        deadline = time.monotonic() + 3
        for w in ws:
            if not w.closed.wait(max(0.0, deadline - time.monotonic())):
                # stuck in a blocking send: cut the TCP connection under it
                if w.sock is not None:
                    try:
                        socket.socket.shutdown(w.sock, socket.SHUT_RDWR)
                    except OSError:
                        pass
                w.closed.wait(2)
        return len(ws)

    def next_pod_ip(self):
        return next(self.pod_ips)

    # ---- kubectl: OpenAPI, logs, reviews ----

    def openapi_doc(self, name):
        """(bytes, hash) of a captured OpenAPI v3 document, decompressed on
        first use; the hash is the real server's (SHA-512, upper-case hex)."""
        with self.openapi_lock:
            doc = self.openapi_docs.get(name)
            if doc is None:
                path = os.path.join(self.args.samples_dir, "openapi-v2.pb.xz" if name == "v2" else
                                    "openapi-v3-%s.json.xz" % name.replace("/", "-"))
                with open(path, "rb") as f:
                    body = lzma.decompress(f.read())
                doc = self.openapi_docs[name] = (body, hashlib.sha512(body).hexdigest().upper())
            return doc

    def pod_log(self, ns, pod, container, previous=False):
        """The text kubelet would stream for a container: what POST /logs
        set (for the container, else for the pod), else a fixed text."""
        with self.lock:
            text = self.pod_logs.get((ns, pod, container))
            if text is None:
                text = self.pod_logs.get((ns, pod, None))
        if text is None:
            text = ("kubesim: %s container %s of pod %s/%s\n"
                    "kubesim: this is the log text kubesim serves for every container\n"
                    % ("previous instance of" if previous else "log of", container, ns, pod))
        return text

    def allow_reason(self, ident):
        user = ident["user"]
        if user.startswith("system:serviceaccount:"):
            who = 'ServiceAccount "%s"' % "/".join(user.split(":")[2:4])
        else:
            who = 'User "%s"' % user
        return 'RBAC: allowed by ClusterRoleBinding "kubesim" of ClusterRole "kubesim" to %s' % who

    def rules_review(self, ident):
        """SelfSubjectRulesReview status: everything for a token without a
        deny list (like cluster-admin); else one rule per simulated
        resource with the read verbs its deny list leaves."""
        if ident.get("anonymous"):
            return {"resourceRules": REVIEW_RULES[:1] + REVIEW_RULES[1:],
                    "nonResourceRules": [PUBLIC_RULE], "incomplete": False}
        if not ident["deny"]:
            return {"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]
                    + REVIEW_RULES,
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]},
                                         {"verbs": ["get"], "nonResourceURLs": DISCOVERY_PATHS},
                                         PUBLIC_RULE], "incomplete": False}
        rules = list(REVIEW_RULES)
        for group, res, sub in SIMULATED_RULES:
            verbs = [v for v in (("get",) if sub else ("get", "list", "watch"))
                     if not is_denied(ident, v, group, res, sub)]
            if verbs:
                rules.append({"verbs": verbs, "apiGroups": [group],
                              "resources": [res + ("/" + sub if sub else "")]})
        return {"resourceRules": rules,
                "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": DISCOVERY_PATHS},
                                     PUBLIC_RULE], "incomplete": False}

    # ---- stats ----

    def count(self, verb, resource, code, user, method, target, started):
        key = "%s %s" % (verb, resource)
        with self.lock:
            self.requests[key] += 1
            self.statuses[str(code)] += 1
            self.recent.append({"method": method, "url": target, "verb": verb,
                                "resource": resource, "code": code, "user": user,
                                "time": rfc3339_micro()})
        self.log_file.write("%s %s %s %d %s %.1fms\n" % (rfc3339_micro(), method, target, code,
                                                          user or "-",
                                                          (time.monotonic() - started) * 1000))

    def stats(self):
        with self.store.lock:
            open_w = len(self.store.watchers)
            rv = str(self.store.rv)
            comp = str(self.store.compacted)
            objs = {s: len(self.store.live[s]) for s in STORES}
            hist = len(self.store.log)
        with self.lock:
            return {"requests": dict(self.requests), "statuses": dict(self.statuses),
                    "open_watches": open_w, "resource_version": rv,
                    "compacted_resource_version": comp, "objects": objs, "history": hist,
                    "watches_total": self.watches_total,
                    "watch_events_sent": self.watch_events_sent,
                    "faults": len(self.faults), "stalled": self.stall.is_set()}

    # ---- seed ----

    def seed(self):
        if self.args.seed == "empty":
            return
        f = self.factory
        for name, uid in (("default", None), ("kube-node-lease", None), ("kube-public", None),
                          ("kube-system", "d5fba74e-51a6-4dfe-8564-d26d014c5e9a")):
            if name == "kube-node-lease" and not self.args.seed_node_lease:
                continue
            self.store.create("namespaces", f.namespace(name, uid))
        labels = {}
        if self.args.node_labels:
            for kv in self.args.node_labels.split(","):
                if kv.strip():
                    k, _, v = kv.partition("=")
                    labels[k.strip()] = v.strip()
        self.store.create("nodes", f.node(self.args.node_name, labels, self.args.node_provider_id,
                                          self.args.gitversion))


# --------------------------------------------------------------------------
# API server (HTTPS)

PRETTY_AGENTS = ("curl", "Wget", "Mozilla/")


# Go's net/http, which kube-apiserver answers through, writes a response body
# through a 2048-byte buffer (bufferBeforeChunkingSize): a body that fits in it
# when the handler returns gets a Content-Length; anything bigger goes out
# chunked, and each flush of the buffer (or a write bigger than its free space
# while it is empty) is one HTTP/1.1 chunk.
GO_BUFFER = 2048


class GoBodyWriter:
    """Chunked framing as Go's bufio.Writer over net/http's chunk writer
    makes it. A watch handler writes one event at a time and flushes only
    when no other event is waiting, so a burst of events (the initial ADDED
    objects, a replay, many changes at once) shares chunks and chunk
    boundaries fall inside lines; a single event on a quiet stream is one
    chunk of its own."""

    def __init__(self, wfile):
        self.wfile = wfile
        self.buf = bytearray()

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def write(self, p):
        p = memoryview(p)
        while len(p) > GO_BUFFER - len(self.buf):
            if not self.buf:
                self._chunk(bytes(p))       # a large write into an empty buffer: one chunk
                return
            n = GO_BUFFER - len(self.buf)
            self.buf += p[:n]
            p = p[n:]
            self.flush()
        self.buf += p

    def flush(self):
        if self.buf:
            self._chunk(bytes(self.buf))
            self.buf.clear()

    def end(self):
        self.flush()
        self.wfile.write(b"0\r\n\r\n")


class ApiHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = ""
    sys_version = ""
    timeout = 300

    sim = None  # set on the class by serve()

    def log_message(self, fmt, *args):
        pass

    def version_string(self):
        return ""

    # ---- response helpers ----

    def _start(self, code, content_type="application/json", apf=True, extra=None,
               length=None, chunked=False, cache_control="no-cache, private"):
        self.send_response_only(code)
        self.send_header("Audit-Id", new_uid())
        self.send_header("Cache-Control", cache_control)
        self.send_header("Content-Type", content_type)
        for k, v in (extra or []):
            self.send_header(k, v)
        if apf:
            self.send_header("X-Kubernetes-Pf-Flowschema-Uid", self.sim.flowschema_uid)
            self.send_header("X-Kubernetes-Pf-Prioritylevel-Uid", self.sim.prioritylevel_uid)
        self.send_header("Date", self.date_time_string())
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _pretty(self):
        q = self.query.get("pretty")
        if q is not None:
            return q in ("1", "t", "T", "true", "TRUE", "True")   # Go's strconv.ParseBool
        ua = self.headers.get("User-Agent", "")
        return ua.startswith(PRETTY_AGENTS)

    def send_body(self, code, body, content_type="application/json", apf=True, extra=None,
                  cache_control="no-cache, private"):
        """Content-Length up to GO_BUFFER bytes, else chunked (one chunk: the
        API server encodes an object and writes it at once)."""
        if len(body) > GO_BUFFER and self.command != "HEAD":
            self._start(code, content_type, apf=apf, extra=extra, chunked=True,
                        cache_control=cache_control)
            # what GoBodyWriter makes of one write into an empty buffer (a
            # single chunk, then the end), without copying a big body
            self.wfile.write(b"%x\r\n" % len(body))
            self.wfile.write(body)
            self.wfile.write(b"\r\n0\r\n\r\n")
        else:
            self._start(code, content_type, apf=apf, extra=extra, length=len(body),
                        cache_control=cache_control)
            if self.command != "HEAD":
                self.wfile.write(body)
        self.code = code

    def send_json(self, code, obj, apf=True, extra=None, pretty=None):
        if pretty is None:
            pretty = self._pretty()
        # json.Encoder ends a compact body with a newline; the indented
        # writer does not
        body = dumps_pretty(obj) if pretty else dumps_compact(obj) + "\n"
        self.send_body(code, body.encode(), apf=apf, extra=extra)

    def send_status(self, code, message, reason=None, details=None, apf=True, extra=None,
                    metadata=None):
        self.send_json(code, status_obj(code, message, reason, details, metadata), apf=apf,
                       extra=extra)

    def send_text(self, code, text, content_type="text/plain; charset=utf-8", apf=True):
        self.send_body(code, text.encode(), content_type, apf=apf,
                       extra=[("X-Content-Type-Options", "nosniff")])

    # ---- dispatch ----

    def do_GET(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def dispatch(self):
        started = time.monotonic()
        self.code = 0
        self.body = b""
        n = self.headers.get("Content-Length")
        if n:
            try:
                self.body = self.rfile.read(min(int(n), 16 << 20))
            except ValueError:
                pass
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        self.query = {}
        for k, v in urllib.parse.parse_qsl(url.query, keep_blank_values=True):
            self.query.setdefault(k, v)
        self.verb, self.resource_name = "get", path
        user = None
        try:
            route = self.route(path)
            ident = self.sim.auth(self.headers.get("Authorization"))
            if ident is None:
                self.send_status(401, "Unauthorized", apf=False)
                return
            user = ident["user"]
            fault = self.sim.take_fault(path, self.verb if route else (
                "list" if METRICS_LIST_RE.match(path.rstrip("/")) else "get"))
            if fault is not None and fault.hang:
                time.sleep(fault.hang)
            if fault is not None and fault.status is not None:
                self.send_fault(fault)
                return
            if route is None:
                if not self.forbidden_path(ident, path):
                    self.serve_nonresource(path)
                return
            self.serve_resource(route, ident)
        except ApiError as e:
            self.send_status(e.code, e.message, reason=e.reason, details=e.details)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout, OSError):
            self.close_connection = True
            if not self.code:
                self.code = 499
        finally:
            self.sim.count(self.verb, self.resource_name, self.code, user, self.command,
                           self.path, started)

    def send_fault(self, f):
        extra = []
        details = None
        if f.retry_after is not None:
            extra.append(("Retry-After", str(int(f.retry_after))))
            details = {"retryAfterSeconds": int(f.retry_after)}
        msg = {429: "Too many requests, please try again later.",
               500: "Internal error occurred: injected fault",
               503: "The server is currently unable to handle the request (injected fault)",
               504: "Timeout: request did not complete within requested timeout - context deadline exceeded"}
        if f.status == 500:
            details = dict(details or {}, causes=[{"message": "injected fault"}])
        self.send_status(f.status, msg.get(f.status, "injected fault"), details=details,
                         extra=extra)

    # ---- routing ----

    def route(self, path):
        """None for non-resource paths; else (ri, namespace, name, watch_path,
        subresource), or ("unknown", group) for a path under a known API
        prefix that names no resource."""
        parts = [p for p in path.split("/") if p]
        known = self.sim.known
        if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
            group, rest = CORE, parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis" and any(
                g == parts[1] and ri.version == parts[2] for (g, _), ri in known.items()):
            group, rest = parts[1], parts[3:]
        else:
            return None
        if not rest:
            return None
        watch_path = False
        if rest[0] == "watch":
            watch_path = True
            rest = rest[1:]
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            if ns is not None and not rest and group == CORE:
                # /api/v1/namespaces/NAME is a GET of the namespace itself
                rest = ["namespaces", ns]
                ns = None
            elif ns is not None and len(rest) == 1 and group == CORE and not watch_path:
                # /api/v1/namespaces/NAME/status|finalize: namespace subresources
                rest = ["namespaces", ns, rest[0]]
                ns = None
            else:
                return ("unknown", group)
        ri = known.get((group, rest[0]))
        if ri is None:
            return ("unknown", group)
        name = rest[1] if len(rest) >= 2 else None
        sub = rest[2] if len(rest) == 3 else None
        if ns is not None and not ri.namespaced:
            return ("unknown", group)
        if sub is not None and (watch_path or sub not in SUBRESOURCES.get((group, ri.name), ())
                                and sub not in getattr(ri, "subresources", ())):
            return ("unknown", group)
        watching = (watch_path or self.query.get("watch") in ("1", "true", "True")) and sub is None
        if self.command not in ("GET", "HEAD"):
            self.verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                         "DELETE": "delete" if name else "deletecollection"}.get(self.command, "get")
        else:
            self.verb = "watch" if watching else ("get" if name else "list")
        self.resource_name = ri.stat_name if ri.store is not None or ri.group else ri.name
        return (ri, ns, name, watch_path, sub)

    def serve_nonresource(self, path):
        self.verb, self.resource_name = "get", path
        if self.command not in ("GET", "HEAD"):
            self.send_status(405, "the server does not allow this method on the requested resource")
            return
        a = self.sim.args
        p = path.rstrip("/") or "/"
        accept = self.headers.get("Accept")
        if p == "/version" and not restful_accepts(accept, ("application/json",)):
            self.send_not_acceptable(NotAcceptable(
                "406: Not Acceptable\n\nAvailable representations: application/json", details={}))
            return
        if (p in ("/api", "/apis", "/api/v1") or self.is_group_path(p)) \
                and not restful_accepts(accept, PRODUCES_GET):
            self.send_not_acceptable(NotAcceptable(
                "406: Not Acceptable\n\nAvailable representations: " + ", ".join(PRODUCES_GET),
                details={}))
            return
        if p in ("/api", "/apis"):
            # aggregated discovery (apidiscovery.k8s.io/v2beta1 in v1.28;
            # v2 came with v1.30) or the legacy documents
            try:
                rep = negotiate(accept, {("APIGroupDiscoveryList", "apidiscovery.k8s.io", "v2beta1"):
                                         "aggregated"})
            except NotAcceptable as e:
                self.send_not_acceptable(e)
                return
            if rep == "aggregated":
                self.serve_aggregated(p)
                return
        elif p.startswith("/openapi/"):
            self.serve_openapi(p)
            return
        if p == "/version":
            major, minor = re.match(r"v?(\d+)\.(\d+)", a.gitversion).groups()
            # always indented, whoever asks (the real /version handler does so)
            self.send_json(200, {"major": major, "minor": minor, "gitVersion": a.gitversion,
                                 "gitCommit": "9258ab62ed50ee9f1715cbb078b1e760e823bfcb",
                                 "gitTreeState": "clean", "buildDate": "2024-02-14T10:32:40Z",
                                 "goVersion": "go1.21.7", "compiler": "gc",
                                 "platform": "linux/amd64"}, pretty=True)
        elif p == "/api":
            d = copy.deepcopy(self.sim.discovery["api.json"])
            for s in d.get("serverAddressByClientCIDRs", []):
                s["serverAddress"] = "127.0.0.1:%d" % self.sim.api_port
            self.send_json(200, d)
        elif p == "/apis":
            d = copy.deepcopy(self.sim.discovery["apis.json"])
            if self.sim.metrics_api:
                d["groups"].append({"name": "metrics.k8s.io",
                                    "versions": [{"groupVersion": "metrics.k8s.io/v1beta1",
                                                  "version": "v1beta1"}],
                                    "preferredVersion": {"groupVersion": "metrics.k8s.io/v1beta1",
                                                         "version": "v1beta1"}})
            self.send_json(200, d)
        elif p == "/api/v1":
            self.send_json(200, self.sim.discovery["api-v1-resources.json"])
        elif p == "/apis/events.k8s.io":
            gv = {"groupVersion": "events.k8s.io/v1", "version": "v1"}
            self.send_json(200, {"kind": "APIGroup", "apiVersion": "v1", "name": "events.k8s.io",
                                 "versions": [gv], "preferredVersion": gv})
        elif p == "/apis/events.k8s.io/v1":
            self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1",
                                 "groupVersion": "events.k8s.io/v1",
                                 "resources": [{"name": "events", "singularName": "event",
                                                "namespaced": True, "kind": "Event",
                                                "verbs": ["create", "delete", "deletecollection",
                                                          "get", "list", "patch", "update",
                                                          "watch"],
                                                "shortNames": ["ev"],
                                                "storageVersionHash": "r2yiGXH7wu8="}]})
        elif self.group_discovery(p):
            pass
        elif p in ("/healthz", "/livez", "/readyz"):
            self.send_text(200, "ok", apf=False)
        elif (p == "/apis/metrics.k8s.io" or p.startswith("/apis/metrics.k8s.io/")) \
                and self.sim.metrics_api:
            self.resource_name = "metrics.k8s.io"
            if METRICS_LIST_RE.match(p):
                self.verb = "list"
            if p != "/apis/metrics.k8s.io" and not self.sim.metrics_available:
                # The aggregator proxies /apis/metrics.k8s.io/v1beta1[/...] and,
                # while the APIService is not Available, answers with
                # http.Error(w, "service unavailable", 503) (handler_proxy.go):
                # text, not a Status. /apis/metrics.k8s.io itself is served by
                # the aggregator's own group handler, so it still answers.
                self.send_text(503, "service unavailable\n")
            else:
                self.serve_metrics(p)
        elif p.startswith("/api/") or (p.startswith("/apis/") and p.split("/")[2] in
                                       {g["name"] for g in self.sim.discovery["apis.json"]["groups"]}):
            self.send_status(404, "the server could not find the requested resource", details={})
        else:
            # unknown groups (metrics.k8s.io without metrics-server) and paths
            self.send_text(404, "404 page not found\n")

    def is_group_path(self, p):
        parts = [x for x in p.split("/") if x]
        return parts[:1] == ["apis"] and len(parts) in (2, 3) and any(
            g["name"] == parts[1] for g in self.sim.discovery["apis.json"]["groups"])

    def serve_aggregated(self, p):
        doc = self.sim.discovery["aggregated-discovery-api.json" if p == "/api"
                                 else "aggregated-discovery-apis.json"]
        if p == "/apis" and self.sim.metrics_api:
            doc = dict(doc, items=doc["items"] + [METRICS_DISCOVERY])
        body = dumps_compact(doc).encode() + b"\n"
        etag = '"%s"' % hashlib.sha512(body).hexdigest().upper()
        self.send_body(200, body, content_type=AGGREGATED_V2BETA1,
                       extra=[("Etag", etag), ("Vary", "Accept")], cache_control="public")

    def serve_openapi(self, p):
        """/openapi/v3 (the index) and /openapi/v3/api/v1 (core/v1's
        document, as captured): what `kubectl explain` reads. The other
        documents the index of a real server lists are not served (404)."""
        if p == "/openapi/v3":
            paths = {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=" + self.sim.openapi_doc("api/v1")[1]}}
            self.send_body(200, (dumps_compact({"paths": paths})).encode(),
                           content_type="text/plain; charset=utf-8",
                           extra=[("Accept-Ranges", "bytes"),
                                  ("Last-Modified", self.date_time_string(self.sim.started))])
            return
        if p == "/openapi/v2":
            # kubectl up to 1.29 reads it (protobuf) before `explain`; only
            # the captured protobuf form is served
            accept = self.headers.get("Accept") or ""
            if "application/com.github.proto-openapi.spec.v2" not in accept and "*/*" not in accept:
                self.send_not_acceptable(NotAcceptable(
                    "only the following media types are accepted: application/json, "
                    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"))
                return
            body, digest = self.sim.openapi_doc("v2")
            self.send_body(200, body, content_type=OPENAPI_V2_PB,
                           extra=[("Accept-Ranges", "bytes"), ("Etag", '"%s"' % digest),
                                  ("Last-Modified", self.date_time_string(self.sim.started)),
                                  ("Vary", "Accept-Encoding"), ("Vary", "Accept")])
            return
        if p == "/openapi/v3/api/v1":
            body, digest = self.sim.openapi_doc("api/v1")
            extra = [("Accept-Ranges", "bytes"), ("Etag", '"%s"' % digest),
                     ("Last-Modified", self.date_time_string(self.sim.started)), ("Vary", "Accept")]
            cache = "no-cache, private"
            if self.query.get("hash") == digest:
                cache = "public, immutable"
                extra.insert(2, ("Expires", (now_utc() + datetime.timedelta(days=365)).strftime(
                    "%a, %d %b %Y %H:%M:%S UTC")))
            self.send_body(200, body, extra=extra, cache_control=cache)
            return
        self.send_text(404, "404 page not found\n")

    def group_discovery(self, p):
        """/apis/GROUP and /apis/GROUP/VERSION for the groups /apis advertises
        (legacy discovery; the resources as the aggregated document lists
        them)."""
        parts = [x for x in p.split("/") if x]
        if parts[:1] != ["apis"] or len(parts) not in (2, 3):
            return False
        for g in self.sim.discovery["apis.json"]["groups"]:
            if g["name"] != parts[1]:
                continue
            if len(parts) == 2:
                self.send_json(200, {"kind": "APIGroup", "apiVersion": "v1", "name": g["name"],
                                     "versions": g["versions"],
                                     "preferredVersion": g["preferredVersion"]})
                return True
            agg = next((x for x in self.sim.discovery["aggregated-discovery-apis.json"]["items"]
                        if x["metadata"].get("name") == g["name"]), {"versions": []})
            for v in g["versions"]:
                if v["version"] == parts[2]:
                    self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1",
                                         "groupVersion": v["groupVersion"],
                                         "resources": legacy_resource_list(agg, v["version"])})
                    return True
        return False

    # ---- metrics.k8s.io (only with --metrics-api) ----

    def serve_metrics(self, p):
        self.resource_name = "metrics.k8s.io"
        now = rfc3339()
        st = self.sim.store
        if p == "/apis/metrics.k8s.io":
            gv = {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}
            self.send_json(200, {"kind": "APIGroup", "apiVersion": "v1", "name": "metrics.k8s.io",
                                 "versions": [gv], "preferredVersion": gv})
            return
        if p == "/apis/metrics.k8s.io/v1beta1":
            self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1",
                                 "groupVersion": "metrics.k8s.io/v1beta1", "resources": [
                                     {"name": "nodes", "singularName": "", "namespaced": False,
                                      "kind": "NodeMetrics", "verbs": ["get", "list"]},
                                     {"name": "pods", "singularName": "", "namespaced": True,
                                      "kind": "PodMetrics", "verbs": ["get", "list"]}]})
            return
        g = METRICS_GET_RE.match(p)
        if g:
            self.serve_metrics_get(g.group(1), g.group(2), g.group(3))
            return
        m = METRICS_LIST_RE.match(p)
        if not m:
            self.send_text(404, "404 page not found\n")
            return
        # metrics-server selects by the node's (the pod's) own labels.
        sel = parse_label_selector(self.query.get("labelSelector", ""))
        # NodeMetrics are cluster-scoped: there is no .../namespaces/NS/nodes.
        ns, what = m.group(1), p.rsplit("/", 1)[1]
        limit = self._int_param("limit")
        start = None
        if not self.sim.metrics_paginate or (limit is not None and limit <= 0):
            limit = None
        cont = self.query.get("continue") or None
        if cont and self.sim.metrics_paginate:
            try:
                tok = json.loads(base64.urlsafe_b64decode(cont + "=" * (-len(cont) % 4)))
                start = tok["start"]
                if tok.get("v") != METRICS_CONTINUE_V or not isinstance(start, str):
                    raise ValueError
            except Exception:
                raise BadRequest("invalid continue token") from None
        prefix = "%s/" % ns if ns is not None else ""
        if start is not None and not start.startswith(prefix):
            raise BadRequest("invalid continue token")
        picked, more = [], False
        with st.lock:
            keys, live = st.keys[what], st.live[what]
            i = bisect.bisect_left(keys, start if start is not None else prefix)
            n = len(keys)
            while i < n:
                k = keys[i]
                if prefix and not k.startswith(prefix):
                    break
                i += 1
                o = live.get(k)
                # metrics-server has metrics for running pods only
                if o is None or (what == "pods" and (o.get("status") or {}).get("phase") != "Running"):
                    continue
                if sel and not label_match(sel, o):
                    continue
                if limit is not None and len(picked) >= limit:
                    more = True
                    break
                picked.append(o)
        items = [metrics_item(what, o, now) for o in picked]
        kind = "NodeMetricsList" if what == "nodes" else "PodMetricsList"
        meta = {}
        if more:
            last = picked[-1]["metadata"]
            last_key = "%s/%s" % (last["namespace"], last["name"]) if what == "pods" else last["name"]
            meta["continue"] = base64.urlsafe_b64encode(dumps_compact(
                {"v": METRICS_CONTINUE_V, "start": last_key + "\u0000"}).encode()).decode().rstrip("=")
        self.send_json(200, {"kind": kind, "apiVersion": "metrics.k8s.io/v1beta1",
                             "metadata": meta, "items": items})

    def serve_metrics_get(self, node, ns, pod):
        """One NodeMetrics or PodMetrics, as metrics-server's Get: 404 (a
        Status) for a node or pod it has no metrics for."""
        what, key = ("nodes", node) if node is not None else ("pods", "%s/%s" % (ns, pod))
        with self.sim.store.lock:
            o = self.sim.store.live[what].get(key)
        if o is not None and what == "pods" and (o.get("status") or {}).get("phase") != "Running":
            o = None
        if o is None:
            name = node if node is not None else pod
            self.send_status(404, '%s.metrics.k8s.io "%s" not found' % (what, name),
                             details={"name": name, "group": "metrics.k8s.io", "kind": what})
            return
        item = metrics_item(what, o, rfc3339())
        item = dict({"kind": "NodeMetrics" if what == "nodes" else "PodMetrics",
                     "apiVersion": "metrics.k8s.io/v1beta1"}, **item)
        self.send_json(200, item)

    # ---- resources ----

    def forbidden(self, ident, ri, ns, name, sub=None):
        verb = self.verb
        if not ident.get("anonymous") and not is_denied(ident, verb, ri.group, ri.name, sub):
            return False
        if ri.name == "namespaces" and not ri.group and name:
            ns = name      # a namespace is authorized as an object in itself
        scope = ('in the namespace "%s"' % ns) if ns is not None else "at the cluster scope"
        who = '%s "%s"' % (ri.name if not ri.group else ri.qualified, name) if name else \
            (ri.name if not ri.group else ri.qualified)
        msg = '%s is forbidden: User "%s" cannot %s resource "%s" in API group "%s" %s' % (
            who, ident["user"], verb, ri.name + ("/" + sub if sub else ""), ri.group, scope)
        details = {}
        if name:
            details["name"] = name
        if ri.group:
            details["group"] = ri.group
        details["kind"] = ri.name
        self.send_status(403, msg, details=details, extra=[("X-Content-Type-Options", "nosniff")])
        return True

    def forbidden_path(self, ident, path):
        """403 for a non-resource path (only the anonymous user gets one)."""
        if not ident.get("anonymous") or path in PUBLIC_PATHS:
            return False
        verb = "get" if self.command in ("GET", "HEAD") else self.command.lower()
        self.send_status(403, 'forbidden: User "%s" cannot %s path "%s"' % (ident["user"], verb, path),
                         details={}, extra=[("X-Content-Type-Options", "nosniff")])
        return True

    def serve_resource(self, route, ident):
        if route[0] == "unknown":
            self.resource_name = "unknown"
            if self.forbidden_path(ident, urllib.parse.urlsplit(self.path).path):
                return     # authorization comes first (the real message names the resource)
            self.send_status(404, "the server could not find the requested resource", details={})
            return
        ri, ns, name, watch_path, sub = route
        review = (ri.group, ri.name) in REVIEWS
        if review and self.command == "POST" and name is None:
            if self.forbidden(ident, ri, ns, name):
                return
            self.serve_review(ri, ident)
            return
        if (ri.group, ri.name) == (COORDINATION_GROUP, "leases") and sub is None:
            if self.forbidden(ident, ri, ns, name, sub):
                return
            self.serve_lease(ri, ns, name)
            return
        if self.command not in ("GET", "HEAD") or review:
            self.send_status(405, "the server does not allow this method on the requested resource")
            return
        if self.forbidden(ident, ri, ns, name, sub):
            return
        if ri.store is None:
            self.serve_empty(ri, ns, name)
        elif sub == "log":
            self.serve_log(ri, ns, name)
        elif self.verb == "get":
            self.serve_get(ri, ns, name)
        elif self.verb == "list":
            self.serve_list(ri, ns)
        else:
            self.serve_watch(ri, ns, name)

    # ---- representations ----

    def representation(self, list_like=False, watch=False):
        """("json", None), ("table", version) or ("pom", version) for this
        request's Accept; a 406 (and None) when nothing acceptable."""
        try:
            rep = negotiate(self.headers.get("Accept"), object_conversions(list_like),
                            PRODUCES_LIST if (list_like or watch) else PRODUCES_GET)
        except NotAcceptable as e:
            self.send_not_acceptable(e)
            return None
        if rep == "json":
            return ("json", None)
        if rep[0] == "table":
            inc = self.query.get("includeObject", "")
            if inc not in ("", "Metadata", "Object", "None"):
                raise BadRequest("Unable to convert to Table as requested: includeObject: Invalid "
                                 "value: \"%s\": must be 'Metadata', 'Object', 'None', or empty" % inc)
        return rep

    def send_not_acceptable(self, e):
        """A 406 Status: compact when the Accept header allows plain JSON,
        else indented (the real server then writes it with WriteRawJSON)."""
        pretty = not accepts_plain_json(parse_accept(self.headers.get("Accept")))
        self.send_json(406, status_obj(406, e.message, reason="NotAcceptable", details=e.details),
                       pretty=pretty or None)

    def table_rows(self, ri, objs, version):
        now = now_utc()
        inc = self.query.get("includeObject") or "Metadata"
        store = ri.store if ri.store is not None else "default"
        return [printers.row(store, o, now, inc,
                             render(ri, o, True) if inc == "Object" else None, version)
                for o in objs]

    def table_columns(self, ri):
        return self.sim.columns.get(ri.store if ri.store is not None else "default")

    # ---- resources kubesim lists but does not simulate ----

    def serve_empty(self, ri, ns, name):
        """A resource of the discovery documents that holds nothing here:
        GET of one -> 404 NotFound, LIST -> no items, WATCH -> a stream that
        carries nothing until its timeout."""
        if ri.namespaced and ns is None and name is not None:
            self.send_status(404, "the server could not find the requested resource", details={})
            return
        if name is not None and self.verb == "get":
            details = {"name": name}
            if ri.group:
                details["group"] = ri.group
            details["kind"] = ri.name
            self.send_status(404, '%s "%s" not found' % (ri.qualified, name), details=details)
            return
        rep = self.representation(list_like=True, watch=self.verb == "watch")
        if rep is None:
            return
        with self.sim.store.lock:
            rv = str(self.sim.store.rv)
        if self.verb == "watch":
            timeout = self._int_param("timeoutSeconds") or self.sim.args.watch_max_timeout
            self._start(200, chunked=True)
            self.code = 200
            self.wfile.flush()
            time.sleep(min(timeout, self.sim.args.watch_max_timeout, 60))
            self.wfile.write(b"0\r\n\r\n")
            return
        meta = {"resourceVersion": rv}
        if rep[0] == "table":
            self.send_json(200, printers.table(self.table_columns(ri), [], meta, rep[1]))
        elif rep[0] == "pom":
            self.send_json(200, {"kind": "PartialObjectMetadataList",
                                 "apiVersion": "meta.k8s.io/" + rep[1], "metadata": meta,
                                 "items": []})
        else:
            self.send_json(200, {"kind": ri.kind + "List", "apiVersion": ri.api_version,
                                 "metadata": meta, "items": []})

    # ---- coordination.k8s.io/v1 leases (leader election) ----

    def lease_error(self, code, message, reason, name, kind="leases", causes=None):
        details = {"name": name, "group": COORDINATION_GROUP, "kind": kind}
        if causes:
            details["causes"] = causes
        self.send_status(code, message, reason=reason, details=details)

    def lease_invalid(self, name, field, value, why, kind="Lease"):
        """422 Invalid as the real validation writes it (kind "Lease" for
        spec and name checks, "leases" for the resourceVersion check)."""
        qualified = "Lease.coordination.k8s.io" if kind == "Lease" else "leases.coordination.k8s.io"
        msg = "Invalid value: %s: %s" % (value, why)
        self.lease_error(422, '%s "%s" is invalid: %s: %s' % (qualified, name, field, msg), "Invalid",
                         name, kind=kind,
                         causes=[{"reason": "FieldValueInvalid", "message": msg, "field": field}])

    def lease_body(self):
        """The request's Lease, or None after answering 400."""
        try:
            obj = json.loads(self.body or b"null")
        except ValueError as e:
            raise BadRequest("the body of the request was in an unknown format - accepted media "
                             "types include: application/json, application/yaml, "
                             "application/vnd.kubernetes.protobuf (%s)" % e)
        if not isinstance(obj, dict):
            raise BadRequest('Lease in version "v1" cannot be handled as a Lease: json: cannot '
                             'unmarshal %s into Go value of type v1.Lease' % type(obj).__name__)
        spec = obj.get("spec") or {}
        for f in ("acquireTime", "renewTime"):
            t = spec.get(f)
            if t is not None and not MICRO_TIME_RE.match(str(t)):
                m = re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(.*)$", str(t))
                rest = m.group(1) if m else str(t)
                raise BadRequest('Lease in version "v1" cannot be handled as a Lease: parsing time '
                                 '"%s" as "2006-01-02T15:04:05.000000Z07:00": cannot parse "%s" as '
                                 '"%s"' % (t, rest, ".000000" if m else "2006"))
        return obj

    def lease_validate(self, obj, name):
        if not SUBDOMAIN_RE.match(name) or len(name) > 253:
            self.lease_invalid(name, "metadata.name", '"%s"' % name,
                               "a lowercase RFC 1123 subdomain must consist of lower case "
                               "alphanumeric characters, '-' or '.', and must start and end with an "
                               "alphanumeric character (e.g. 'example.com', regex used for validation "
                               "is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
            return False
        spec = obj.get("spec") or {}
        for f in ("leaseDurationSeconds", "leaseTransitions"):
            v = spec.get(f)
            if v is None:
                continue
            if f == "leaseDurationSeconds" and v <= 0:
                self.lease_invalid(name, "spec." + f, v, "must be greater than 0")
                return False
            if f == "leaseTransitions" and v < 0:
                self.lease_invalid(name, "spec." + f, v, "must be greater than or equal to 0")
                return False
        return True

    def lease_store(self, ns, name, obj, old):
        """Fill the server's metadata and keep obj; the caller holds the lock."""
        sim = self.sim
        t = rfc3339()
        meta = obj.setdefault("metadata", {})
        meta["name"], meta["namespace"] = name, ns
        meta["uid"] = old["metadata"]["uid"] if old else new_uid()
        meta["creationTimestamp"] = old["metadata"]["creationTimestamp"] if old else t
        meta["resourceVersion"] = str(sim.store._next_rv())
        meta.pop("selfLink", None)
        manager = (self.headers.get("User-Agent") or "unknown").split("/")[0]
        fields = fields_of(obj)
        if meta.get("annotations"):
            fields = dict({"f:metadata": {"f:annotations": dict(
                {".": {}}, **{"f:" + k: {} for k in sorted(meta["annotations"])})}}, **fields)
        obj.setdefault("spec", {})
        meta.pop("managedFields", None)
        if obj["spec"] or meta.get("annotations") or meta.get("labels"):
            # an empty field set gets no entry (a Lease created with spec {})
            meta["managedFields"] = [managed_entry(manager, t, fields, "coordination.k8s.io/v1")]
        obj["kind"], obj["apiVersion"] = "Lease", "coordination.k8s.io/v1"
        ordered = {"kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
                   "metadata": order_meta(meta), "spec": obj["spec"]}
        sim.leases[(ns, name)] = ordered
        return ordered

    def serve_lease(self, ri, ns, name):
        sim = self.sim
        if ns is None:
            if name is not None or self.command != "GET":
                self.send_status(404, "the server could not find the requested resource", details={})
                return
        cmd = self.command
        if self.verb == "watch":
            self.serve_empty(ri, ns, name)
            return
        with sim.store.lock:
            if cmd in ("GET", "HEAD") and name is None:
                items = [dict((k, v) for k, v in o.items() if k not in ("kind", "apiVersion"))
                         for (n, _), o in sorted(sim.leases.items()) if ns is None or n == ns]
                self.send_json(200, {"kind": "LeaseList", "apiVersion": "coordination.k8s.io/v1",
                                     "metadata": {"resourceVersion": str(sim.store.rv)},
                                     "items": items})
                return
            old = sim.leases.get((ns, name)) if name else None
            if cmd in ("GET", "HEAD"):
                if old is None:
                    self.lease_error(404, 'leases.coordination.k8s.io "%s" not found' % name,
                                     "NotFound", name)
                    return
                self.send_json(200, old)
                return
            if cmd == "DELETE" and name:
                if old is None:
                    self.lease_error(404, 'leases.coordination.k8s.io "%s" not found' % name,
                                     "NotFound", name)
                    return
                del sim.leases[(ns, name)]
                sim.store._next_rv()
                self.send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                     "status": "Success",
                                     "details": {"name": name, "group": COORDINATION_GROUP,
                                                 "kind": "leases", "uid": old["metadata"]["uid"]}})
                return
            if cmd == "POST" and name is None:
                obj = self.lease_body()
                new_name = (obj.get("metadata") or {}).get("name") or ""
                if not self.lease_validate(obj, new_name):
                    return
                if ns not in sim.store.live["namespaces"]:
                    self.send_status(404, 'namespaces "%s" not found' % ns,
                                     details={"name": ns, "kind": "namespaces"})
                    return
                if (ns, new_name) in sim.leases:
                    self.lease_error(409, 'leases.coordination.k8s.io "%s" already exists' % new_name,
                                     "AlreadyExists", new_name)
                    return
                self.send_json(201, self.lease_store(ns, new_name, obj, None))
                return
            if cmd in ("PUT", "PATCH") and name:
                if cmd == "PATCH":
                    ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                    if ctype != "application/merge-patch+json":
                        self.send_status(415, 'the body of the request was in an unknown format - '
                                         'accepted media types include: application/json-patch+json, '
                                         'application/merge-patch+json, application/apply-patch+yaml, '
                                         'application/strategic-merge-patch+json',
                                         reason="UnsupportedMediaType")
                        return
                    if old is None:
                        self.lease_error(404, 'leases.coordination.k8s.io "%s" not found' % name,
                                         "NotFound", name)
                        return
                    try:
                        patch = json.loads(self.body or b"null")
                    except ValueError as e:
                        raise BadRequest("error decoding patch: %s" % e)
                    obj = merge_patch(json.loads(json.dumps(old)), patch)
                    obj["metadata"].pop("managedFields", None)
                else:
                    obj = self.lease_body()
                meta = obj.setdefault("metadata", {})
                if meta.get("name", name) != name:
                    raise BadRequest("the name of the object (%s) does not match the name on the URL "
                                     "(%s)" % (meta.get("name"), name))
                if not self.lease_validate(obj, name):
                    return
                if old is None:
                    # leases allow create on update (a client-go LeaseLock never relies on it)
                    self.send_json(201, self.lease_store(ns, name, obj, None))
                    return
                rv = meta.get("resourceVersion")
                if cmd == "PUT" and not rv:
                    self.lease_invalid(name, "metadata.resourceVersion", "0x0",
                                       "must be specified for an update", kind="leases")
                    return
                if rv and rv != old["metadata"]["resourceVersion"]:
                    self.lease_error(409, 'Operation cannot be fulfilled on leases.coordination.k8s.io '
                                     '"%s": the object has been modified; please apply your changes '
                                     'to the latest version and try again' % name, "Conflict", name)
                    return
                self.send_json(200, self.lease_store(ns, name, obj, old))
                return
        self.send_status(405, "the server does not allow this method on the requested resource")

    # ---- pods/log ----

    def serve_log(self, ri, ns, name):
        """GET pods/NAME/log: the API server's checks (pod, container), then
        what a kubelet would answer: a fixed or configured text
        (POST /logs on the control port), text/plain."""
        try:
            negotiate(self.headers.get("Accept"), {}, PRODUCES_GET)
        except NotAcceptable as e:
            self.send_not_acceptable(e)
            return
        with self.sim.store.lock:
            pod = self.sim.store.get("pods", "%s/%s" % (ns, name))
        if pod is None:
            self.send_status(404, 'pods "%s" not found' % name, details={"name": name, "kind": "pods"})
            return
        for k in ("tailLines", "limitBytes", "sinceSeconds"):
            v = self._int_param(k)
            if v is not None and v < (0 if k == "tailLines" else 1):
                raise ApiError(422, 'PodLogOptions "%s" is invalid: %s: Invalid value: %d: must be '
                               'greater than 0' % (name, k, v), reason="Invalid")
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        names = [c.get("name") for key in ("initContainers", "containers", "ephemeralContainers")
                 for c in spec.get(key) or []]
        container = self.query.get("container") or ""
        if not container:
            if len(spec.get("containers") or []) == 1:
                container = spec["containers"][0]["name"]
            elif not spec.get("containers"):
                raise BadRequest("a container name must be specified for pod %s" % name)
            else:
                raise BadRequest("a container name must be specified for pod %s, choose one of: [%s]"
                                 % (name, " ".join(names)))
        elif container not in names:
            raise BadRequest("container %s is not valid for pod %s" % (container, name))
        if not spec.get("nodeName"):
            # not scheduled: the API server has no kubelet to ask and
            # answers with an empty stream
            self.send_body(200, b"", content_type="text/plain")
            return
        # the kubelet's checks of the container's state (validateContainerLogStatus);
        # its 400 text becomes a BadRequest Status, newline included
        cs = next((c for key in ("initContainerStatuses", "containerStatuses",
                                 "ephemeralContainerStatuses")
                   for c in status.get(key) or [] if c.get("name") == container), None)
        previous = self.query.get("previous") in ("1", "true", "True")
        state = (cs or {}).get("state") or {}
        last_term = ((cs or {}).get("lastState") or {}).get("terminated")
        q = '"%s" in pod "%s"' % (container, name)
        if previous:
            if not last_term or not last_term.get("containerID"):
                raise BadRequest("previous terminated container %s not found\n" % q)
        elif state.get("running") is not None:
            pass
        elif state.get("terminated") is not None:
            if not state["terminated"].get("containerID") and not (last_term and last_term.get("containerID")):
                raise BadRequest("container %s is terminated\n" % q)
        elif last_term is not None:
            if not last_term.get("containerID"):
                raise BadRequest("container %s is terminated\n" % q)
        elif state.get("waiting") is not None:
            why = state["waiting"].get("reason") or ""
            why = {"ErrImagePull": "image can't be pulled",
                   "ImagePullBackOff": "trying and failing to pull image"}.get(why, why)
            raise BadRequest("container %s is waiting to start: %s\n" % (q, why))
        else:
            raise BadRequest("container %s is waiting to start - no logs yet\n" % q)
        text = self.sim.pod_log(ns, name, container, previous)
        lines = text.splitlines(keepends=True)
        tail = self._int_param("tailLines")
        if tail is not None:
            lines = lines[len(lines) - tail:] if tail else []
        if self.query.get("timestamps") in ("1", "true", "True"):
            stamp = (pod.get("metadata") or {}).get("creationTimestamp") or rfc3339()
            t = printers.parse_time(stamp) or now_utc()
            lines = ["%s %s" % ((t + datetime.timedelta(milliseconds=i)).strftime(
                "%Y-%m-%dT%H:%M:%S.%f000Z"), ln) for i, ln in enumerate(lines)]
        body = "".join(lines).encode()
        limit = self._int_param("limitBytes")
        if limit is not None:
            body = body[:limit]
        self.send_body(200, body, content_type="text/plain")

    # ---- reviews (POST) ----

    def serve_review(self, ri, ident):
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        try:
            if ctype == "application/vnd.kubernetes.protobuf":
                req = review_from_protobuf(self.body, ri.name)
            elif ctype in ("application/json", "application/yaml"):
                req = json.loads(self.body or b"{}")
                if not isinstance(req, dict):
                    raise ValueError("not an object")
            else:
                self.send_status(415, 'the body of the request was in an unknown format - accepted '
                                 'media types include: application/json, application/yaml, '
                                 'application/vnd.kubernetes.protobuf', reason="UnsupportedMediaType")
                return
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest("the object provided is unrecognized (error decoding: %s)" % e) from None
        try:
            negotiate(self.headers.get("Accept"), {}, PRODUCES_GET)
        except NotAcceptable as e:
            self.send_not_acceptable(e)
            return
        spec = req.get("spec") if isinstance(req.get("spec"), dict) else {}
        api_version = "%s/%s" % (ri.group, ri.version)
        kind = ri.kind
        if ri.name == "selfsubjectreviews":
            user = ident["user"]
            info = {"username": user}
            if user.startswith("system:serviceaccount:"):
                sa_ns = user.split(":")[2]
                info["uid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, user))
                info["groups"] = ["system:serviceaccounts", "system:serviceaccounts:" + sa_ns,
                                  "system:authenticated"]
            elif ident.get("anonymous"):
                info["groups"] = ["system:unauthenticated"]
            else:
                info["groups"] = ["system:authenticated"]
            self.send_json(201, {"kind": kind, "apiVersion": api_version,
                                 "metadata": {"creationTimestamp": None}, "status": {"userInfo": info}})
            return
        if ri.name == "selfsubjectrulesreviews":
            self.send_json(201, {"kind": kind, "apiVersion": api_version,
                                 "metadata": {"creationTimestamp": None}, "spec": {},
                                 "status": self.sim.rules_review(ident)})
            return
        ra, na = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        if bool(ra) == bool(na):
            bad = "resourceAttributes" if not ra else "nonResourceAttributes"
            msg = ("Invalid value: \"null\": exactly one of nonResourceAttributes or "
                   "resourceAttributes must be specified")
            self.send_status(422, '.%s "" is invalid: spec.%s: %s' % (ri.group, bad, msg),
                             reason="Invalid", details={"group": ri.group, "causes": [
                                 {"reason": "FieldValueInvalid", "message": msg,
                                  "field": "spec." + bad}]})
            return
        if ra:
            allowed = not ident.get("anonymous") and not is_denied(
                ident, ra.get("verb") or "", ra.get("group") or "", ra.get("resource") or "",
                ra.get("subresource") or None)
            fields = {"f:resourceAttributes": dict({".": {}}, **{"f:" + k: {} for k in sorted(ra) if ra[k]})}
        else:
            path = na.get("path") or ""
            allowed = (na.get("verb") == "get" and (path in PUBLIC_PATHS or not ident.get("anonymous"))
                       and not is_denied(ident, na.get("verb") or "", "", path, None))
            fields = {"f:nonResourceAttributes": dict({".": {}}, **{"f:" + k: {} for k in sorted(na) if na[k]})}
        manager = (self.headers.get("User-Agent") or "unknown").split("/")[0]
        status = {"allowed": allowed}
        if allowed:
            status["reason"] = self.sim.allow_reason(ident)
        meta = {"creationTimestamp": None,
                "managedFields": [{"manager": manager, "operation": "Update", "apiVersion": api_version,
                                   "time": rfc3339(), "fieldsType": "FieldsV1",
                                   "fieldsV1": {"f:spec": fields}}]}
        self.send_json(201, {"kind": kind, "apiVersion": api_version, "metadata": meta,
                             "spec": spec, "status": status})

    def _int_param(self, key):
        v = self.query.get(key)
        if v is None or v == "":
            return None
        try:
            return int(v)
        except ValueError:
            raise BadRequest('strconv.ParseInt: parsing "%s": invalid syntax' % v)

    def _rv_param(self, ri, watch):
        """The resourceVersion parameter as a number (None when absent). A
        value that is not one is refused as the real server refuses it: a
        LIST of a type without watch cache (events) gets 400; the watch
        cache (pods, nodes, namespaces), and every WATCH, answer 500 with a
        Status that has no reason."""
        v = self.query.get("resourceVersion")
        if v is None or v == "":
            return None
        if re.fullmatch(r"[0-9]{1,19}", v) and int(v) < 1 << 64:
            return int(v)
        why = 'resourceVersion: Invalid value: "%s": strconv.ParseUint: parsing "%s": %s' % (
            v, v, "invalid syntax" if not re.fullmatch(r"[0-9]+", v) else "value out of range")
        if watch or ri.cached:
            raise ApiError(500, why, reason=NO_REASON)
        raise BadRequest("invalid resource version: " + why)

    def _filter(self, ri, ns):
        return Filter(ri, ns, parse_field_selector(ri, self.query.get("fieldSelector", "")),
                      parse_label_selector(self.query.get("labelSelector", "")))

    def serve_get(self, ri, ns, name):
        st = self.sim.store
        if ri.namespaced and ns is None:
            self.send_status(404, "the server could not find the requested resource", details={})
            return
        rep = self.representation()
        if rep is None:
            return
        key = "%s/%s" % (ns, name) if ri.namespaced else name
        with st.lock:
            obj = st.get(ri.store, key)
        if obj is None:
            what = ri.name if not ri.group else ri.qualified
            details = {"name": name}
            if ri.group:
                details["group"] = ri.group
            details["kind"] = ri.name
            self.send_status(404, '%s "%s" not found' % (what, name), details=details)
            return
        if rep[0] == "table":
            meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            self.send_json(200, printers.table(self.table_columns(ri),
                                               self.table_rows(ri, [obj], rep[1]), meta, rep[1]))
        elif rep[0] == "pom":
            self.send_json(200, {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/" + rep[1],
                                 "metadata": obj.get("metadata") or {}})
        elif self._pretty():
            self.send_json(200, render(ri, obj, True))
        else:
            self.send_body(200, self.with_kind(ri, self.item_json(ri, obj, key)) + b"\n")

    def too_large(self, rv, cur, retry_after=True):
        details = {"causes": [{"reason": "ResourceVersionTooLarge",
                               "message": "Too large resource version"}]}
        if retry_after:
            details["retryAfterSeconds"] = 1
        self.send_status(504, "Timeout: Too large resource version: %d, current: %d" % (rv, cur),
                         reason="Timeout", details=details)

    def serve_list(self, ri, ns):
        st = self.sim.store
        rep = self.representation(list_like=True)
        if rep is None:
            return
        limit = self._int_param("limit")
        self._int_param("timeoutSeconds")
        flt = self._filter(ri, ns)
        validate_list_options(self.query, watch=False)
        cont = self.query.get("continue") or None
        rv = self._rv_param(ri, watch=False)
        rvm = self.query.get("resourceVersionMatch") or None
        prefix = ("%s/" % ns) if (ri.namespaced and ns is not None) else ""
        start = None
        at_rv = None
        if cont:
            bad = "invalid continue token: continue key is not valid: "
            try:
                raw = base64.urlsafe_b64decode(cont + "=" * (-len(cont) % 4))
                tok = json.loads(raw)
            except Exception:
                raise BadRequest(bad + "invalid character looking for beginning of value") from None
            if not isinstance(tok, dict) or tok.get("v") != "meta.k8s.io/v1":
                raise BadRequest(bad + "server does not recognize this encoded version %s"
                                 % (tok.get("v", "") if isinstance(tok, dict) else ""))
            try:
                start = tok["start"]
                tok_rv = int(tok["rv"])
                if not isinstance(start, str) or "/.." in start or start.startswith(".."):
                    raise ValueError
            except Exception:
                raise BadRequest(bad + "key provided is not valid") from None
            if rv not in (None, 0):
                raise BadRequest("specifying resource version is not allowed when using continue")
            rv = None
            with st.lock:
                if tok_rv != -1 and tok_rv < st.compacted:
                    newtok = base64.urlsafe_b64encode(dumps_compact(
                        {"v": "meta.k8s.io/v1", "rv": -1, "start": start}).encode()
                    ).decode().rstrip("=")
                    self.send_status(410, EXPIRED_CONTINUE_MSG, reason="Expired",
                                     metadata={"continue": newtok})
                    return
            at_rv = tok_rv if tok_rv != -1 else None
        if rv is not None and rv > 0:
            with st.lock:
                cur = st.rv
            # limit + resourceVersion without resourceVersionMatch keeps its
            # old meaning: a page read at exactly that revision, by etcd (the
            # watch cache hands such a LIST over), which fails for a
            # revision it has not reached.
            legacy_exact = rvm is None and limit is not None and limit > 0
            if legacy_exact and rv > cur:
                raise ApiError(500, "etcdserver: mvcc: required revision is a future revision",
                               reason=NO_REASON)
            # The watch cache waits up to 3 s for a resourceVersion it has
            # not reached; etcd (events) refuses it at once.
            if rv > cur and (not ri.cached or not st.wait_for_rv(rv, 3.0)):
                self.too_large(rv, cur, retry_after=ri.cached)
                return
            if rvm == "Exact" or legacy_exact:
                with st.lock:
                    if rv < st.compacted:
                        self.send_status(410, "The resourceVersion for the provided list is too old.",
                                         reason="Expired")
                        return
                at_rv = rv
        # the watch cache serves resourceVersion=0 (and ignores limit)
        if ri.cached and rv == 0 and not cont:
            limit = None
        if limit is not None and limit <= 0:
            limit = None
        items, list_rv, more, last_key, remaining = [], None, False, None, None
        with st.lock:
            list_rv = at_rv if at_rv is not None else st.rv
            keys = st.keys[ri.store]
            i = bisect.bisect_left(keys, prefix + start) if start is not None else \
                bisect.bisect_left(keys, prefix)
            n = len(keys)
            while i < n:
                k = keys[i]
                if prefix and not k.startswith(prefix):
                    break
                obj = st.at(ri.store, k, list_rv) if at_rv is not None else st.live[ri.store].get(k)
                i += 1
                if obj is None or not flt.match(obj):
                    continue
                if limit is not None and len(items) >= limit:
                    more = True
                    i -= 1
                    break
                items.append((k, obj))
                last_key = k
            if more and flt.empty and len(keys) == len(st.live[ri.store]) \
                    and list_rv >= st.membership_rv[ri.store]:
                # no tombstones, and no key came or went since list_rv: every
                # key left in the range is an item
                end = bisect.bisect_left(keys, prefix[:-1] + "0") if prefix else n
                remaining = end - i
            elif more and flt.empty:
                remaining = 0
                while i < n:
                    k = keys[i]
                    if prefix and not k.startswith(prefix):
                        break
                    obj = st.at(ri.store, k, list_rv) if at_rv is not None else st.live[ri.store].get(k)
                    if obj is not None:
                        remaining += 1
                    i += 1
        meta = {"resourceVersion": str(list_rv)}
        if more:
            rel = last_key[len(prefix):]
            meta["continue"] = base64.urlsafe_b64encode(dumps_compact(
                {"v": "meta.k8s.io/v1", "rv": list_rv, "start": rel + "\u0000"}).encode()
            ).decode().rstrip("=")
            if remaining is not None:
                meta["remainingItemCount"] = remaining
        if rep[0] == "table":
            self.send_json(200, printers.table(self.table_columns(ri),
                                               self.table_rows(ri, [o for _, o in items], rep[1]),
                                               meta, rep[1]))
            return
        if rep[0] == "pom":
            self.send_json(200, {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/" + rep[1],
                                 "metadata": meta,
                                 "items": [{"kind": "PartialObjectMetadata",
                                            "apiVersion": "meta.k8s.io/" + rep[1],
                                            "metadata": o.get("metadata") or {}} for _, o in items]})
            return
        if self._pretty():
            self.send_json(200, {"kind": ri.kind + "List", "apiVersion": ri.api_version,
                                 "metadata": meta, "items": [render(ri, o, False) for _, o in items]})
            return
        # compact: the items' cached JSON concatenated (the same bytes as
        # encoding the whole list)
        head = dumps_compact({"kind": ri.kind + "List", "apiVersion": ri.api_version,
                              "metadata": meta}).encode()
        body = b"".join((head[:-1], b',"items":[',
                         b",".join([self.item_json(ri, o, k) for k, o in items]), b"]}\n"))
        self.send_body(200, body)

    # ---- watch ----

    def item_json(self, ri, obj, key=None):
        """Compact JSON bytes of obj as an item of ri (no kind); the store's
        cached rendering when obj is the live object of key."""
        if ri.group == EVENTS_GROUP:
            return dumps_compact(render(ri, obj, False)).encode()
        if key is not None:
            return self.sim.store.item_json(ri.store, key, obj)
        return dumps_compact(obj).encode()

    @staticmethod
    def with_kind(ri, item):
        """The item with kind and apiVersion in front: render(ri, obj, True)."""
        return b'{"kind":"%s","apiVersion":"%s",%s' % (ri.kind.encode(), ri.api_version.encode(),
                                                        item[1:])

    def event_line(self, ri, etype, obj, key=None, item=None):
        rep = getattr(self, "watch_rep", None)
        if rep is not None and rep[0] != "json":
            return (dumps_compact({"type": etype, "object": self.watch_object(ri, obj)}) + "\n").encode()
        if item is None:
            item = self.item_json(ri, obj, key)
        return b'{"type":"%s","object":%s}\n' % (etype.encode(), self.with_kind(ri, item))

    def watch_object(self, ri, obj, bookmark=False):
        """A watch event's object as a Table of one row (the column
        definitions in the stream's first event only; null in a bookmark)
        or as PartialObjectMetadata."""
        kind, version = self.watch_rep
        meta = obj.get("metadata") or {}
        if kind == "pom":
            return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/" + version,
                    "metadata": meta}
        first = not self.watch_sent_columns and not bookmark
        if first:
            self.watch_sent_columns = True
        return printers.table(self.table_columns(ri), self.table_rows(ri, [obj], version),
                              {"resourceVersion": meta.get("resourceVersion", "")}, version,
                              with_columns=first)

    def entry_line(self, ri, ent, flt):
        """The line for a log entry as this watcher sees it, or None when filtered out."""
        if flt.empty:
            etype, obj = ent.type, ent.obj
        else:
            cur = ent.obj if ent.type != "DELETED" else None
            now_m = flt.match(ent.obj) if ent.type != "DELETED" else False
            was_m = flt.match(ent.prev) if ent.prev is not None else False
            if ent.type == "DELETED":
                if not flt.match(ent.obj):
                    return None
                etype, obj = "DELETED", ent.obj
            elif now_m and was_m:
                etype, obj = "MODIFIED", cur
            elif now_m:
                etype, obj = "ADDED", cur
            elif was_m:
                # left the selection: DELETED with the old object at the new rv
                obj = dict(ent.prev)
                obj["metadata"] = dict(ent.prev["metadata"], resourceVersion=ent.obj["metadata"]["resourceVersion"])
                return self.event_line(ri, "DELETED", obj)
            else:
                return None
        if getattr(self, "watch_rep", ("json",))[0] != "json":
            return self.event_line(ri, etype, obj)
        # cache the object's JSON (shared with the store's cache while it
        # is the live object), not the line: lines are cheap to assemble
        item = ent.cache.get(ri.group)
        if item is None:
            item = ent.cache[ri.group] = self.item_json(ri, obj, ent.key)
        return self.event_line(ri, etype, obj, item=item)

    def serve_watch(self, ri, ns, name):
        sim = self.sim
        st = sim.store
        flt = self._filter(ri, ns)
        if name is not None:
            if ri.namespaced and ns is None:
                self.send_status(404, "the server could not find the requested resource", details={})
                return
            flt.field_reqs.append(("metadata.name", True, name))
        self.watch_rep = self.representation(list_like=False, watch=True)
        if self.watch_rep is None:
            return
        self.watch_sent_columns = False
        timeout = self._int_param("timeoutSeconds")
        self._int_param("limit")
        validate_list_options(self.query, watch=True)
        rv = self._rv_param(ri, watch=True)
        bookmarks = self.query.get("allowWatchBookmarks") in ("1", "true", "True") and ri.cached
        max_t = sim.args.watch_max_timeout
        # --watch-max-timeout caps every watch (the real server's --min-request-timeout
        # only applies when the client sends no timeoutSeconds)
        if timeout is None or timeout <= 0:
            timeout = max_t
        timeout = min(timeout, max_t)
        w = Watcher(ri, flt, bookmarks)
        initial, replay, too_old = [], [], None
        with st.lock:
            if rv is not None and rv > st.rv:
                # A resourceVersion from the future is not an error on a
                # watch (cached or not): the stream opens and carries the
                # changes after it once the store gets there.
                w.after_rv = rv
            if rv is None or rv == 0:
                for k in st.keys[ri.store]:
                    o = st.live[ri.store].get(k)
                    if o is not None and flt.match(o):
                        initial.append((k, o))
            elif rv < st.compacted:
                too_old = st.compacted
            else:
                i = bisect.bisect_right(st.log_rvs, rv)
                replay = [e for e in st.log[i:] if e.store == ri.store]
            if too_old is None:
                st.watchers.add(w)
                with sim.lock:
                    sim.watches_total += 1
        self._start(200, chunked=True)
        self.code = 200
        w.sock = self.connection
        out = w.out = GoBodyWriter(self.wfile)
        sent = 0
        try:
            if too_old is not None:
                msg = ("The resourceVersion for the provided watch is too old." if not ri.cached
                       else "too old resource version: %d (%d)" % (rv, too_old))
                out.write((dumps_compact({"type": "ERROR", "object": status_obj(
                    410, msg, reason="Expired")}) + "\n").encode())
                out.end()
                return
            deadline = time.monotonic() + timeout
            freq = sim.args.bookmark_interval

            def next_bookmark(now):
                t = now + freq
                pre = deadline - 2
                if pre < t:
                    t = pre
                return t if t >= now else None

            bm_at = next_bookmark(time.monotonic()) if bookmarks else None
            was_stalled = False
            # The initial objects and a replay are one burst: they share
            # chunks, and the buffer is flushed once they are all written.
            for k, o in initial:
                if self._watch_interrupted(w):
                    return
                line = self.event_line(ri, "ADDED", o, key=k)
                out.write(line)
                w.last_line = line
                sent += 1
            for e in replay:
                if self._watch_interrupted(w):
                    return
                line = self.entry_line(ri, e, flt)
                if line is not None:
                    out.write(line)
                    w.last_line = line
                    sent += 1
            out.flush()
            while True:
                if self._watch_interrupted(w):
                    return
                now = time.monotonic()
                if sim.stall.is_set():
                    was_stalled = True
                if now >= deadline:
                    if sim.stall.is_set():
                        # a stalled stream (fault) stays silent, without its end chunk
                        deadline = now + 0.5
                    elif was_stalled and w.queue:
                        pass        # the stall ended: deliver what it held back, then end
                    else:
                        break
                with w.cond:
                    stalled = sim.stall.is_set()
                    if (not w.queue or stalled) and not w.drop and not w.overflow:
                        wait = deadline - now
                        if bm_at is not None:
                            wait = min(wait, max(0.0, bm_at - now))
                        w.cond.wait(min(wait, 1.0))
                    items = []
                    if not stalled:
                        while w.queue and len(items) < 256:
                            items.append(w.queue.popleft())
                    overflow = w.overflow and not w.queue and not stalled
                if self._watch_interrupted(w, items):
                    return
                for it in items:
                    if isinstance(it, tuple):        # ("BOOKMARK", rv)
                        if w.after_rv is not None and it[1] <= w.after_rv:
                            continue
                        bm = bookmark_object(ri, str(it[1]))
                        if self.watch_rep[0] != "json":
                            bm = self.watch_object(ri, bm, bookmark=True)
                        line = (dumps_compact({"type": "BOOKMARK", "object": bm}) + "\n").encode()
                    else:
                        if w.after_rv is not None and it.rv <= w.after_rv:
                            continue
                        line = self.entry_line(ri, it, flt)
                        if line is None:
                            continue
                    out.write(line)
                    w.last_line = line
                    sent += 1
                # Like the API server's watch handler: flush only when no
                # other event is waiting.
                with w.cond:
                    idle = not w.queue or sim.stall.is_set()
                if idle:
                    out.flush()
                if overflow:
                    break          # fell too far behind: end the stream (client resumes)
                if bm_at is not None and time.monotonic() >= bm_at and not sim.stall.is_set():
                    with st.lock:
                        # queued under the store lock: after every event up to st.rv
                        w.push(("BOOKMARK", st.rv), 1 << 62)
                    bm_at = next_bookmark(time.monotonic())
            out.end()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout, OSError):
            self.close_connection = True
        finally:
            with st.lock:
                st.watchers.discard(w)
            with sim.lock:
                sim.watch_events_sent += sent
            w.closed.set()

    def _watch_interrupted(self, w, pending=None):
        """Handle a drop fault; True when the stream is over."""
        if not w.drop:
            return False
        self.close_connection = True
        try:
            if w.out is not None:
                w.out.flush()      # what was written before the cut went out
            if w.drop == "mid_line":
                line = None
                for it in (pending or []):
                    if not isinstance(it, tuple):
                        line = self.entry_line(w.ri, it, w.filter)
                        if line:
                            break
                if line is None:
                    with w.cond:
                        while w.queue and line is None:
                            it = w.queue.popleft()
                            if not isinstance(it, tuple):
                                line = self.entry_line(w.ri, it, w.filter)
                line = line or w.last_line or b'{"type":"ADDED","object":{"kind":"%s","apiVersion":"%s","metadata":{}}}\n' % (
                    w.ri.kind.encode(), w.ri.api_version.encode())
                half = max(1, len(line) // 2)
                self.wfile.write(b"%x\r\n%s" % (len(line), line[:half]))
        except OSError:
            pass
        try:
            socket.socket.shutdown(self.connection, socket.SHUT_RDWR)
        except OSError:
            pass
        return True


class TLSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False      # open watches must not delay exit
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, ctx):
        self.ctx = ctx
        super().__init__(addr, handler)

    def finish_request(self, request, client_address):
        # TLS handshake in the connection's own thread, never in accept()
        try:
            request.settimeout(30)
            # Go's net package sets TCP_NODELAY on every TCP connection; without
            # it a body's small last write waits for the client's delayed ACK
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        pass


# --------------------------------------------------------------------------
# Control server (plain HTTP)

class ControlError(Exception):
    def __init__(self, code, msg):
        super().__init__(msg)
        self.code = code


class ControlHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sim = None

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, obj):
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 64 << 20:
            raise ControlError(413, "body too large")
        raw = self.rfile.read(n) if n else b""
        if not raw:
            return {}
        try:
            d = json.loads(raw)
        except ValueError as e:
            raise ControlError(400, "bad JSON: %s" % e)
        if not isinstance(d, dict):
            raise ControlError(400, "body must be a JSON object")
        return d

    def handle_method(self, method):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        try:
            body = self.body() if method in ("POST", "PUT") else {}
            code, out = self.sim_control(method, url.path.rstrip("/") or "/", q, body)
            self.reply(code, out)
        except ControlError as e:
            self.reply(e.code, {"error": str(e)})
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # keep the simulator alive; report the bug
            self.reply(500, {"error": "%s: %s" % (type(e).__name__, e)})

    def do_GET(self):
        self.handle_method("GET")

    def do_POST(self):
        self.handle_method("POST")

    def do_PUT(self):
        self.handle_method("PUT")

    def do_DELETE(self):
        self.handle_method("DELETE")

    @staticmethod
    def resource(name):
        ri = CONTROL_RESOURCES.get(name or "")
        if ri is None:
            raise ControlError(400, "unknown resource %r (namespaces, nodes, pods, events, "
                                    "events.k8s.io)" % name)
        return ri

    def sim_control(self, method, path, q, body):
        sim = self.sim
        st = sim.store
        if path == "/objects":
            if method == "GET":
                ri = self.resource(q.get("resource"))
                with st.lock:
                    objs = [st.live[ri.store][k] for k in st.keys[ri.store] if k in st.live[ri.store]]
                    rv = str(st.rv)
                ns = q.get("namespace")
                items = [render(ri, o, True) for o in objs
                         if ns is None or o["metadata"].get("namespace") == ns]
                return 200, {"items": items, "resourceVersion": rv}
            if method == "DELETE":
                ri = self.resource(q.get("resource"))
                key = self.key(ri, q.get("namespace"), q.get("name"))
                try:
                    return 200, render(ri, st.delete(ri.store, key), True)
                except NotFound:
                    raise ControlError(404, "%s %s not found" % (ri.name, key))
            ri = self.resource(body.get("resource"))
            obj = body.get("object")
            if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict) \
                    or not (obj["metadata"].get("name") or ri.store == "events"):
                raise ControlError(400, "object with metadata.name required")
            obj = copy.deepcopy(obj)
            obj.pop("kind", None)
            obj.pop("apiVersion", None)
            if method == "POST":
                if ri.store == "events":
                    if ri.group == EVENTS_GROUP:
                        obj = events_v1_to_core(obj)
                        obj = sim.factory.fill_event(obj, api_version="events.k8s.io/v1")
                    else:
                        obj = sim.factory.fill_event(obj)
                else:
                    obj = sim.factory.fill(ri.store, obj)
                if not ri.namespaced:
                    obj["metadata"].pop("namespace", None)
                try:
                    return 200, render(ri, st.create(ri.store, obj), True)
                except Conflict as e:
                    raise ControlError(409, str(e))
            if method == "PUT":
                meta = obj["metadata"]
                ns = meta.get("namespace") or ("default" if ri.namespaced else None)
                key = self.key(ri, ns, meta.get("name"))
                replace = bool(body.get("replace"))
                manager = body.get("manager") or "kubectl-patch"
                if ri.group == EVENTS_GROUP:
                    raise ControlError(400, "modify events through resource \"events\"")

                def fn(old):
                    if replace:
                        new = copy.deepcopy(obj)
                    else:
                        new = merge_patch(old, obj)
                    nm = dict(new.get("metadata") or {})
                    for k in ("uid", "creationTimestamp", "name", "namespace"):
                        if k in old["metadata"]:
                            nm[k] = old["metadata"][k]
                    if "managedFields" not in meta:
                        nm["managedFields"] = update_managed(old, new, manager)
                    new["metadata"] = nm
                    if ri.store == "events":
                        new = normalize_core_event(new)
                    return new
                try:
                    return 200, render(ri, st.update(ri.store, key, fn), True)
                except NotFound:
                    raise ControlError(404, "%s %s not found" % (ri.name, key))
        if path == "/emit-events" and method == "POST":
            ns = body.get("namespace") or "default"
            n = int(body.get("count", 1))
            if n < 0 or n > 1000000:
                raise ControlError(400, "count out of range")
            objs = [sim.factory.emitted_event(ns, i, body) for i in range(n)]
            created = st.create_many("events", objs)
            out = {"first_rv": created[0]["metadata"]["resourceVersion"] if created else None,
                   "last_rv": created[-1]["metadata"]["resourceVersion"] if created else None,
                   "count": len(created)}
            if body.get("uids", n <= 1000):
                out["uids"] = [o["metadata"]["uid"] for o in created]
                out["names"] = [o["metadata"]["name"] for o in created]
            return 200, out
        if path == "/faults" and method == "POST":
            if body.get("clear"):
                with sim.lock:
                    sim.faults = []
                sim.stall.clear()
                return 200, {"cleared": True}
            out = {}
            if "stall_watches" in body:
                (sim.stall.set if body["stall_watches"] else sim.stall.clear)()
                out["stalled"] = sim.stall.is_set()
            if body.get("drop_watches"):
                out["dropped"] = sim.drop_watches(bool(body.get("mid_line")))
            if body.get("status") is not None or body.get("hang"):
                try:
                    f = Fault(body)
                except (ValueError, TypeError, KeyError) as e:
                    raise ControlError(400, "bad fault: %s" % e)
                if f.verb not in (None, "get", "list", "watch", "create", "update", "patch",
                                  "delete"):
                    raise ControlError(400, "verb must be get, list, watch, create, update, "
                                       "patch, delete or null")
                with sim.lock:
                    sim.faults.append(f)
                out["installed"] = True
            if not out:
                raise ControlError(400, "nothing to do")
            return 200, out
        if path == "/populate" and method == "POST":
            counts = {}
            for k in ("namespaces", "nodes", "pods"):
                try:
                    counts[k] = int(body.get(k) or 0)
                except (TypeError, ValueError):
                    raise ControlError(400, "%s must be a number" % k)
                if not 0 <= counts[k] <= 2000000:
                    raise ControlError(400, "%s out of range" % k)
            try:
                fraction = float(body.get("unhealthy_fraction") or 0.0)
            except (TypeError, ValueError):
                raise ControlError(400, "unhealthy_fraction must be a number")
            if not 0.0 <= fraction <= 1.0:
                raise ControlError(400, "unhealthy_fraction must be within [0, 1]")
            t0 = time.monotonic()
            with sim.populate_lock:
                # The cyclic GC would walk every new object again and again
                # (a third of the time at 150,000 pods); the objects are
                # acyclic and freed by reference counting. Frozen afterwards,
                # they are left out of later collections too.
                gc_on = gc.isenabled()
                gc.disable()
                try:
                    out = Populator(sim, random.Random(body.get("seed"))).run(
                        counts["namespaces"], counts["nodes"], counts["pods"], fraction)
                finally:
                    if gc_on:
                        gc.enable()
                gc.freeze()
            with st.lock:
                out["resourceVersion"] = str(st.rv)
            out["seconds"] = round(time.monotonic() - t0, 3)
            return 200, out
        if path == "/churn" and method == "POST":
            if (body.get("resource") or "pods") != "pods":
                raise ControlError(400, "churn supports resource \"pods\" only")
            try:
                n = int(body.get("count", 1))
            except (TypeError, ValueError):
                raise ControlError(400, "count must be a number")
            if not 0 <= n <= 1000000:
                raise ControlError(400, "count out of range")
            return 200, Churner(sim, random.Random(body.get("seed"))).run(n)
        if path == "/compact" and method == "POST":
            return 200, {"compacted": str(st.compact())}
        if path == "/rotate-token" and method == "POST":
            return 200, {"token": sim.rotate_token()}
        if path == "/tokens" and method == "POST":
            tok = body.get("token")
            if not tok or not isinstance(tok, str):
                raise ControlError(400, "token required")
            deny = body.get("deny") or []
            user = body.get("user") or "system:serviceaccount:default:limited"
            with sim.lock:
                sim.tokens[tok] = {"user": user, "deny": set(deny)}
            return 200, {"token": tok, "user": user, "deny": deny}
        if path == "/logs" and method == "POST":
            ns, pod, text = body.get("namespace") or "default", body.get("pod"), body.get("text")
            if not pod or not isinstance(text, str):
                raise ControlError(400, "pod and text required")
            with sim.lock:
                sim.pod_logs[(ns, pod, body.get("container") or None)] = text
            return 200, {"namespace": ns, "pod": pod, "container": body.get("container"),
                         "bytes": len(text.encode())}
        if path == "/stats" and method == "GET":
            return 200, sim.stats()
        if path == "/requests" and method == "GET":
            with sim.lock:
                items = list(sim.recent)
            if q.get("limit"):
                items = items[-int(q["limit"]):]
            return 200, {"items": items}
        if path == "/metrics-api" and method == "POST":
            sim.metrics_api = bool(body.get("enabled", True))
            sim.metrics_available = bool(body.get("available", True))
            if body.get("paginate") is not None:
                sim.metrics_paginate = bool(body["paginate"])
            return 200, {"enabled": sim.metrics_api, "available": sim.metrics_available,
                         "paginate": sim.metrics_paginate}
        raise ControlError(404, "no such control endpoint: %s %s" % (method, path))

    @staticmethod
    def key(ri, ns, name):
        if not name:
            raise ControlError(400, "name required")
        if ri.namespaced:
            return "%s/%s" % (ns or "default", name)
        return name


def update_managed(old, new, manager):
    """managedFields after an Update by `manager`: it takes the top-level
    fields whose value changed from their previous owners."""
    changed = sorted(k for k in set(old) | set(new)
                     if k not in ("metadata",) and old.get(k) != new.get(k))
    entries = [dict(e) for e in (old["metadata"].get("managedFields") or [])]
    if not changed:
        return entries
    t = rfc3339()
    for e in entries:
        if e.get("manager") != manager and isinstance(e.get("fieldsV1"), dict):
            e["fieldsV1"] = {k: v for k, v in e["fieldsV1"].items()
                             if k[2:] not in changed}
    entries = [e for e in entries if e.get("manager") == manager or e.get("fieldsV1")]
    mine = None
    for e in entries:
        if e.get("manager") == manager and not e.get("subresource"):
            mine = e
    fields = {"f:" + k: {} for k in changed if k in new}
    if mine is None:
        entries.append(managed_entry(manager, t, fields))
    else:
        mine["time"] = t
        mine["fieldsV1"] = dict(sorted(dict(mine.get("fieldsV1") or {}, **fields).items()))
    return entries


class ControlServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


# --------------------------------------------------------------------------
# Start-up

def write_kubeconfig(sim, ca_crt):
    kc = """apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority: {ca}
    server: https://127.0.0.1:{port}
  name: kubesim
contexts:
- context:
    cluster: kubesim
    namespace: default
    user: kubesim
  name: kubesim
current-context: kubesim
preferences: {{}}
users:
- name: kubesim
  user:
    token: {token}
""".format(ca=ca_crt, port=sim.api_port, token=sim.default_token)
    write_file(os.path.join(sim.state_dir, "kubeconfig"), kc, 0o600)


def parse_args(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description="simulated kube-apiserver")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--control-port", type=int, default=0)
    p.add_argument("--seed", choices=("default", "empty"), default="default")
    p.add_argument("--seed-node-lease", action="store_true",
                   help="also create the kube-node-lease namespace")
    p.add_argument("--node-name", default="node-a")
    p.add_argument("--node-labels", default="")
    p.add_argument("--node-provider-id", default="")
    p.add_argument("--gitversion", default="v1.28.7")
    p.add_argument("--bookmark-interval", type=float, default=60.0)
    p.add_argument("--watch-max-timeout", type=float, default=1800.0)
    p.add_argument("--history-limit", type=int, default=50000,
                   help="changes kept for watch replay and continue tokens")
    p.add_argument("--watch-queue-limit", type=int, default=100000,
                   help="events queued for one watcher before it is closed as too slow")
    p.add_argument("--metrics-api", action="store_true",
                   help="serve metrics.k8s.io (enabled and available)")
    p.add_argument("--metrics-api-paginate", choices=("true", "false"), default="true",
                   help="metrics.k8s.io LISTs honour limit/continue (true) or ignore them and "
                        "answer with every item, as metrics-server does (false)")
    p.add_argument("--anonymous-auth", choices=("true", "false"), default="true",
                   help="requests without a bearer token are system:anonymous (true, kube-apiserver's "
                        "default: 403 except /version and the health paths) or refused with 401")
    p.add_argument("--samples-dir", default=os.path.join(here, "..", "fixtures", "kube-api-samples"),
                   help="responses captured from a real kube-apiserver (default: the repository's copy)")
    a = p.parse_args(argv)
    if not os.path.isdir(a.samples_dir):
        p.error(f"--samples-dir {a.samples_dir}: no such directory")
    if a.bookmark_interval <= 0 or a.watch_max_timeout <= 0 or a.history_limit < 10:
        p.error("intervals must be positive and --history-limit >= 10")
    if not re.match(r"^v?\d+\.\d+", a.gitversion):
        p.error("--gitversion must look like v1.28.7")
    return a


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.state_dir, exist_ok=True)
    sim = Sim(args)
    ca_crt, srv_crt, srv_key = make_certs(sim.state_dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(srv_crt, srv_key)
    ctx.set_alpn_protocols(["http/1.1"])

    ApiHandler.sim = sim
    ControlHandler.sim = sim
    api = TLSServer(("127.0.0.1", args.port), ApiHandler, ctx)
    ctl = ControlServer(("127.0.0.1", args.control_port), ControlHandler)
    sim.api_port = api.server_address[1]
    sim.control_port = ctl.server_address[1]

    sim.setup_tokens()
    sim.seed()
    sa = os.path.join(sim.state_dir, "serviceaccount")
    with open(ca_crt, "rb") as f:
        write_file(os.path.join(sa, "ca.crt"), f.read())
    write_file(os.path.join(sa, "namespace"), "default")
    write_kubeconfig(sim, ca_crt)
    write_file(os.path.join(sim.state_dir, "ports.json"),
               json.dumps({"api": sim.api_port, "control": sim.control_port}) + "\n")

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    for srv in (api, ctl):
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True).start()
    sys.stdout.write("READY https://127.0.0.1:%d http://127.0.0.1:%d\n" %
                     (sim.api_port, sim.control_port))
    sys.stdout.flush()
    while not stop.wait(1.0):
        pass
    for srv in (api, ctl):
        srv.shutdown()
        srv.server_close()
    sim.log_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
