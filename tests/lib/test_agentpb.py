"""Self-test of tests/lib/agentpb.py (protoc-generated Python, no C code)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import agentpb  # noqa: E402

COMMAND = {
    "id": "cmd-42",
    "cluster_id": "*",
    "tool": "kubectl",
    "action": "get",
    "args": ["pods", "-o", "wide", "caf\u00e9 \"q\" \\"],
    "namespace": "shop",
    "timeout_seconds": 30,
    "issued_at": "2026-11-22T00:26:30.123Z",
    "expires_at": "2026-11-22T00:27:30Z",
    "issuer": "ops@example.com",
}


def test_command_round_trip():
    data = agentpb.encode("Command", COMMAND)
    assert isinstance(data, bytes) and data
    got = agentpb.decode("Command", data)
    want = dict(COMMAND, expires_at="2026-11-22T00:27:30.000Z")
    assert got == want
    assert list(got) == list(want)  # proto field order, as the agent writes JSON


def test_command_wire_bytes():
    # Field 1 (id) = "x", field 7 (timeout_seconds) = 5: hand-written wire.
    assert agentpb.encode("Command", {"id": "x", "timeout_seconds": 5}) == b"\x0a\x01x\x38\x05"
    got = agentpb.decode("Command", b"\x0a\x01x\x38\x05")
    assert got == {"id": "x", "args": [], "timeout_seconds": 5}


def test_raw_decode_is_plain_message_to_dict():
    data = agentpb.encode("Command", {"id": "x", "timeout_seconds": 5, "issued_at": "2026-11-22T00:26:30Z"})
    assert agentpb.decode("Command", data, raw=True) == {
        "id": "x", "timeout_seconds": "5", "issued_at": "2026-11-22T00:26:30Z"}


def test_defaults_and_nested_messages_match_agent_json():
    hb = agentpb.decode("Heartbeat", agentpb.encode("Heartbeat", {"agent_id": "a", "status": "ok"}))
    assert hb == {"agent_id": "a", "uptime_seconds": 0, "status": "ok", "kube_api_ok": False,
                  "nats_connected": False,
                  "queues": {"events": 0, "metrics": 0, "commands": 0, "results": 0},
                  "events_published_total": 0, "events_dropped_total": 0}


def test_unknown_type_and_field():
    with pytest.raises(KeyError):
        agentpb.message_class("Nope")
    with pytest.raises(Exception):
        agentpb.encode("Command", {"id": "x", "no_such_field": 1})


def test_docs_examples_match_the_schema():
    """Every JSON example of docs/MESSAGES.md names only schema fields and is
    already in the agent's JSON form (what decode() returns)."""
    import json
    import re
    md = open(os.path.join(agentpb.ROOT, "docs", "MESSAGES.md"), encoding="utf-8").read()
    examples = re.findall(r"^## (\w+) .*?```json\n(.*?)\n```", md, re.S | re.M)
    assert {name for name, _ in examples} == {"AgentInfo", "Heartbeat", "Event", "MetricsSample", "Command",
                                               "CommandResult"}
    for name, text in examples:
        d = json.loads(text)
        assert agentpb.decode(name, agentpb.encode(name, d)) == d, name
        assert json.dumps(d, separators=(",", ":"), ensure_ascii=False) == text, f"{name} example is not compact"
