"""Self-test of tests/lib/command_signing.py: the committed vectors, the
documented example and the timestamp flooring (no agent binary needed)."""
import base64
import importlib.util
import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import command_signing  # noqa: E402

FIXTURES = os.path.join(HERE, "..", "fixtures", "exec", "signing")


def load_generator():
    spec = importlib.util.spec_from_file_location("make_vectors", os.path.join(FIXTURES, "make_vectors.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_vectors_are_what_the_module_generates():
    with open(os.path.join(FIXTURES, "vectors.json"), encoding="utf-8") as f:
        assert f.read() == load_generator().render()


def test_signatures_verify():
    key = command_signing.load_private_key(os.path.join(FIXTURES, "private.pem"))
    with open(os.path.join(FIXTURES, "vectors.json"), encoding="utf-8") as f:
        vectors = json.load(f)["vectors"]
    assert len(vectors) >= 10
    for v in vectors:
        data = command_signing.canonical(v["command"])
        assert base64.b64encode(data).decode() == v["canonical"]
        key.public_key().verify(base64.b64decode(v["signature"]), data)


def test_documented_example():
    cmd = {"id": "cmd-42", "cluster_id": "*", "tool": "kubectl", "action": "get",
           "args": ["pods", "-o", "wide"], "namespace": "shop", "timeout_seconds": 30,
           "issued_at": "2026-11-22T00:26:30.123Z", "expires_at": "2026-11-22T00:27:30.123Z",
           "issuer": "ops@example.com", "signature": "ignored", "unknown": "ignored"}
    assert command_signing.canonical(cmd) == (
        b"collect-agent-command-v1\n"
        b"id=6:cmd-42\ncluster_id=1:*\ntool=7:kubectl\naction=3:get\nnamespace=4:shop\n"
        b"issuer=15:ops@example.com\ntimeout_seconds=30\nissued_at=1795307190123\n"
        b"expires_at=1795307250123\nargs=3\n4:pods\n2:-o\n4:wide\n")


@pytest.mark.parametrize("text,ms", [
    ("1970-01-01T00:00:00Z", 0),
    ("1970-01-01T00:00:00.0019Z", 1),
    ("1969-12-31T23:59:59.9999Z", -1),
    ("2026-11-22T01:26:30.123999+01:00", 1795307190123),
    ("2026-11-22t00:26:30.123z", 1795307190123),
    ("2026-11-22 00:26:30.1Z", 1795307190100),
    ("2016-12-31T23:59:60Z", 1483228800000),
    ("0001-01-01T00:00:00Z", -62135596800000),
])
def test_rfc3339_floor(text, ms):
    assert command_signing.rfc3339_to_ms(text) == ms


@pytest.mark.parametrize("text", ["2026-11-22", "2026-11-22T00:26:30", "2026-11-22T00:26:30.Z",
                                  "2026-13-01T00:00:00Z", "2026-11-22T00:26:30Zjunk"])
def test_rfc3339_refused(text):
    with pytest.raises(ValueError):
        command_signing.rfc3339_to_ms(text)


def test_generate_keypair(tmp_path):
    key, path = command_signing.generate_keypair(tmp_path)
    key2, path2 = command_signing.generate_keypair(tmp_path)
    assert path != path2
    with open(path, "rb") as f:
        assert f.read().startswith(b"-----BEGIN PUBLIC KEY-----\n")
    sig = command_signing.sign({"id": "a"}, key)
    assert len(sig) == 88 and sig.endswith("==")
    assert command_signing.signed({"id": "a"}, key)["signature"] == sig
