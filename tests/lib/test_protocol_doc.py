"""The JSON examples of docs/PROTOCOL.md (captured by
scripts/capture_protocol_examples.py) and docs/MESSAGES.md are messages of
proto/agent.proto in the agent's JSON form, so the docs cannot drift from
the schema: each example parses, has no field the schema lacks (at any
depth), has every field the agent always writes (numbers, booleans, lists,
nested objects), and survives a round trip through the protobuf encoding
unchanged (tests/lib/agentpb.py compiles the .proto with protoc)."""
import json
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import agentpb  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTOCOL = os.path.join(ROOT, "docs", "PROTOCOL.md")
MESSAGES = os.path.join(ROOT, "docs", "MESSAGES.md")
MESSAGE_TYPES = ("AgentInfo", "Heartbeat", "Event", "MetricsSample", "Command", "CommandResult")
SUBJECT_KIND = {"AgentInfo": "register", "Heartbeat": "heartbeat", "Event": "event",
                "MetricsSample": "metrics", "Command": "command", "CommandResult": "result"}
REGION = re.compile(r"<!-- captured (\w+) ([\w-]+) -->\n(.*?)<!-- /captured -->", re.S)
FENCE = re.compile(r"```(\w*)\n(.*?)\n```", re.S)


def protocol_examples():
    """[(type, name, {header: value}, payload dict)] of PROTOCOL.md's regions."""
    with open(PROTOCOL, encoding="utf-8") as f:
        text = f.read()
    out = []
    for mtype, name, body in REGION.findall(text):
        blocks = FENCE.findall(body)
        assert [lang for lang, _ in blocks] == ["", "json"], f"{name}: expected a header block and a JSON block"
        headers = dict(line.split(": ", 1) for line in blocks[0][1].splitlines())
        out.append((mtype, name, headers, json.loads(blocks[1][1])))
    return out


def messages_examples():
    """[(type, section, payload dict)] of every ```json block in MESSAGES.md,
    typed by the `## Type (...)` section it is in."""
    with open(MESSAGES, encoding="utf-8") as f:
        text = f.read()
    out, section = [], None
    for part in re.split(r"^(## .*)$", text, flags=re.M):
        if part.startswith("## "):
            section = part
            continue
        for lang, block in FENCE.findall(part):
            if lang == "json":
                mtype = section.split()[1] if section else None
                out.append((mtype, section, json.loads(block)))
    return out


def schema_problems(mtype, example, path=""):
    """What in example the schema of mtype does not allow, or the agent's
    JSON form would not omit: a list of readable strings, empty when fine."""
    from google.protobuf.descriptor import FieldDescriptor as F
    desc = agentpb.message_class(mtype).DESCRIPTOR
    fields = {f.name: f for f in desc.fields}
    problems = [f"{path}{k}: no such field in {desc.name}" for k in example if k not in fields]
    for name, f in fields.items():
        here = f"{path}{name}"
        repeated = f.label == F.LABEL_REPEATED
        is_msg = f.type == F.TYPE_MESSAGE
        timestamp = is_msg and f.message_type.full_name == "google.protobuf.Timestamp"
        if name not in example:
            always = repeated or (is_msg and not timestamp and name != "usage") or f.type not in (
                F.TYPE_STRING, F.TYPE_MESSAGE)
            if always:
                problems.append(f"{here}: missing (the agent always writes it)")
            continue
        if is_msg and not timestamp:
            values = example[name] if repeated else [example[name]]
            if repeated and not isinstance(example[name], list):
                problems.append(f"{here}: not a list")
                continue
            for i, v in enumerate(values):
                if not isinstance(v, dict):
                    problems.append(f"{here}: not an object")
                    continue
                sub = f"{here}[{i}]." if repeated else f"{here}."
                problems += schema_problems(f.message_type.name, v, sub)
    return problems


def check(mtype, example):
    assert mtype in MESSAGE_TYPES, mtype
    problems = schema_problems(mtype, example)
    assert not problems, f"{mtype} example vs proto/agent.proto:\n  " + "\n  ".join(problems)
    # Types, and the JSON conventions (int64 as numbers, timestamps with
    # milliseconds, empty strings omitted): the protobuf round trip of the
    # agent's JSON form is the same JSON.
    assert agentpb.decode(mtype, agentpb.encode(mtype, example)) == example


def test_protocol_doc_has_every_example():
    got = [(t, n) for t, n, _, _ in protocol_examples()]
    assert got == [("AgentInfo", "register"), ("Heartbeat", "heartbeat"), ("Event", "event"),
                   ("MetricsSample", "sample"), ("Command", "command"), ("CommandResult", "result-succeeded"),
                   ("CommandResult", "result-rejected"), ("CommandResult", "result-timeout")], got


@pytest.mark.parametrize("example", protocol_examples(), ids=lambda e: e[1])
def test_protocol_example_matches_the_schema(example):
    mtype, name, headers, body = example
    check(mtype, body)
    assert headers["Content-Type"] == "application/json"
    assert headers["Nats-Msg-Id"], name
    prefix, kind, cluster = headers["subject"].split(".")
    assert (prefix, kind) == ("agent", SUBJECT_KIND[mtype]), headers
    assert body["cluster_id"] == cluster, (body["cluster_id"], headers)
    if name.startswith("result-"):
        assert body["status"] == name[len("result-"):], body["status"]


@pytest.mark.parametrize("example", messages_examples(), ids=lambda e: e[0] or "?")
def test_messages_doc_example_matches_the_schema(example):
    mtype, section, body = example
    assert mtype in MESSAGE_TYPES, f"a JSON example outside a message's section: {section}"
    check(mtype, body)


def test_the_check_can_fail():
    ok = protocol_examples()[0][3]
    check("AgentInfo", ok)
    extra = dict(ok, agent_name="x")
    assert schema_problems("AgentInfo", extra) == ["agent_name: no such field in AgentInfo"]
    nested = json.loads(json.dumps(ok))
    nested["capabilities"]["shell"] = True
    assert schema_problems("AgentInfo", nested) == ["capabilities.shell: no such field in Capabilities"]
    missing = {k: v for k, v in ok.items() if k != "capabilities"}
    assert schema_problems("AgentInfo", missing) == ["capabilities: missing (the agent always writes it)"]
    with pytest.raises(Exception):
        check("AgentInfo", dict(ok, started_at="yesterday"))
