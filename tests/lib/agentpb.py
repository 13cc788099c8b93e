"""Protobuf helper for tests, independent of the agent's C codec.

Compiles proto/agent.proto with `protoc --python_out` (Debian packages
protobuf-compiler, libprotobuf-dev for google/protobuf/timestamp.proto, and
python3-protobuf for the runtime) once per process into a temporary
directory, and offers:

    decode(type_name, data) -> dict     protobuf bytes -> dict
    encode(type_name, d) -> bytes       dict -> protobuf bytes
    message_class(type_name)            the generated class

type_name is a message of the collectagent.v1 package: "AgentInfo",
"Heartbeat", "Event", "MetricsSample", "Command", "CommandResult" (or any
other message of agent.proto).

decode() is json_format.MessageToDict(preserving_proto_field_name=True), so
keys are the proto field names, exactly as in the agent's JSON, and
timestamps are RFC 3339 strings. By default (raw=False) the values are then
brought to the agent's JSON conventions (docs/MESSAGES.md), so a protobuf
payload and a JSON payload of the same message give equal dicts:
  - int64 fields are ints (proto3 JSON would write them as strings);
  - numbers, booleans, lists and nested messages are present even when zero
    or empty (but a metrics `usage`, absent when unknown); empty strings are
    omitted;
  - timestamps always carry milliseconds ("...T00:26:30.000Z"), so they
    compare correctly as strings.
decode(..., raw=True) returns MessageToDict's output untouched.
"""
import atexit
import functools
import importlib.util
import os
import shutil
import subprocess
import tempfile
import threading

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO = os.path.join(ROOT, "proto", "agent.proto")
PACKAGE = "collectagent.v1"

_lock = threading.Lock()

_INT64_TYPES = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
                FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}
_TIMESTAMP = "google.protobuf.Timestamp"
_ABSENT_WHEN_UNSET = {"usage"}


def _include_dirs():
    """Where protoc finds google/protobuf/timestamp.proto."""
    dirs = []
    for d in (os.environ.get("PROTOC_INCLUDE", ""), "/usr/include", "/usr/local/include"):
        if d and os.path.isfile(os.path.join(d, "google", "protobuf", "timestamp.proto")):
            dirs.append(d)
    return dirs


@functools.lru_cache(maxsize=None)
def _module():
    with _lock:
        outdir = tempfile.mkdtemp(prefix="agentpb-")
        atexit.register(shutil.rmtree, outdir, True)
        cmd = [os.environ.get("PROTOC", "protoc"), f"--proto_path={os.path.dirname(PROTO)}"]
        cmd += [f"--proto_path={d}" for d in _include_dirs()]
        cmd += [f"--python_out={outdir}", PROTO]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"protoc failed ({' '.join(cmd)}): {proc.stderr.strip()}")
        path = os.path.join(outdir, "agent_pb2.py")
        spec = importlib.util.spec_from_file_location("collectagent_agent_pb2", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


def message_class(type_name):
    """The generated class of collectagent.v1.<type_name>."""
    name = type_name.rsplit(".", 1)[-1]
    cls = getattr(_module(), name, None)
    if cls is None or not hasattr(cls, "DESCRIPTOR") or cls.DESCRIPTOR.full_name != f"{PACKAGE}.{name}":
        raise KeyError(f"no message {type_name!r} in {PROTO}")
    return cls


def _with_millis(ts):
    """'2026-11-22T00:26:30Z' -> '2026-11-22T00:26:30.000Z'; finer
    fractions keep their digits unless they are zeros after the millis."""
    if not ts.endswith("Z"):
        return ts
    body = ts[:-1]
    if "." not in body:
        return body + ".000Z"
    head, frac = body.split(".", 1)
    if len(frac) < 3:
        frac = frac.ljust(3, "0")
    elif len(frac) > 3 and frac[3:].strip("0") == "":
        frac = frac[:3]
    return f"{head}.{frac}Z"


def _normalize(msg, d):
    """Bring MessageToDict output (with defaults) to the agent's JSON form."""
    out = {}
    for field in msg.DESCRIPTOR.fields:
        key = field.name
        if key not in d:
            continue
        value = d[key]
        repeated = field.label == FieldDescriptor.LABEL_REPEATED
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.full_name == _TIMESTAMP:
                if repeated:
                    out[key] = [_with_millis(v) for v in value]
                elif value:
                    out[key] = _with_millis(value)
                continue
            if repeated:
                out[key] = [_normalize(sub, v) for sub, v in zip(getattr(msg, key), value)]
            else:
                out[key] = _normalize(getattr(msg, key), value)
        elif field.type in _INT64_TYPES:
            out[key] = [int(v) for v in value] if repeated else int(value)
        elif field.type == FieldDescriptor.TYPE_STRING and not repeated:
            if value != "":
                out[key] = value
        else:
            out[key] = value
    # Singular nested messages the sender left unset: the agent always
    # writes them, with zero values; except a metrics `usage`, which it
    # leaves out when metrics.k8s.io gave none (absent, not zero).
    for field in msg.DESCRIPTOR.fields:
        if (field.type == FieldDescriptor.TYPE_MESSAGE and field.label != FieldDescriptor.LABEL_REPEATED
                and field.message_type.full_name != _TIMESTAMP and field.name not in out
                and field.name not in _ABSENT_WHEN_UNSET):
            sub = getattr(msg, field.name)
            out[field.name] = _normalize(sub, _to_dict(sub))
    return {f.name: out[f.name] for f in msg.DESCRIPTOR.fields if f.name in out}


def _to_dict(msg):
    kwargs = dict(preserving_proto_field_name=True)
    try:
        return json_format.MessageToDict(msg, including_default_value_fields=True, **kwargs)
    except TypeError:  # protobuf >= 26 renamed the option
        return json_format.MessageToDict(msg, always_print_fields_with_no_presence=True, **kwargs)


def decode(type_name, data, raw=False):
    """Parse protobuf bytes as collectagent.v1.<type_name> into a dict."""
    msg = message_class(type_name)()
    msg.ParseFromString(bytes(data))
    if raw:
        return json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return _normalize(msg, _to_dict(msg))


def encode(type_name, d):
    """Serialize a dict (agent JSON form or proto3 JSON form) as
    collectagent.v1.<type_name>. Unknown keys raise ParseError."""
    msg = json_format.ParseDict(d, message_class(type_name)())
    return msg.SerializeToString()
