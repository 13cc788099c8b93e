"""Signing collect-agent commands, as docs/MESSAGES.md "Signing commands"
specifies: the canonical bytes of a Command and an ed25519 signature over
them, base64 (standard alphabet, padded) in the `signature` field.

A command is a dict with the JSON field names (proto/agent.proto Command):
id, cluster_id, tool, action, namespace, issuer (strings; absent or None is
""), timeout_seconds (int, or the proto3 JSON decimal string), issued_at and
expires_at (RFC 3339 strings, floored to milliseconds exactly as the agent's
decoder does, or int Unix milliseconds; absent or None is 0), args (list of
strings). `signature` and unknown keys are not covered.

    key, pub_path = generate_keypair(tmp_path)   # exec.public_key_files: [pub_path]
    cmd["signature"] = sign(cmd, key)

Only python3-cryptography is needed. Used by the integration tests and to
generate tests/fixtures/exec/signing/vectors.json.
"""
import base64
import os
import re
import tempfile

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

MAGIC = b"collect-agent-command-v1\n"
STRING_FIELDS = ("id", "cluster_id", "tool", "action", "namespace", "issuer")
INT_FIELDS = ("timeout_seconds", "issued_at", "expires_at")


def _days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
    algorithm, the one src/core/timeutil.c uses, so out-of-range days such as
    Feb 31 roll over the same way)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _digits(s, at, n):
    part = s[at:at + n]
    if len(part) != n or not all("0" <= c <= "9" for c in part):
        raise ValueError(f"not an RFC 3339 timestamp: {s!r}")
    return int(part)


def rfc3339_to_ms(s):
    """Unix milliseconds of an RFC 3339 timestamp, as ca_parse_rfc3339 reads
    it: digits beyond the millisecond are dropped (floor, also before 1970),
    numeric offsets and a leap second :60 are accepted."""
    bad = ValueError(f"not an RFC 3339 timestamp: {s!r}")
    if len(s) < 20:
        raise bad
    y, mo, d = _digits(s, 0, 4), _digits(s, 5, 2), _digits(s, 8, 2)
    h, mi, sec = _digits(s, 11, 2), _digits(s, 14, 2), _digits(s, 17, 2)
    if s[4] != "-" or s[7] != "-" or s[10] not in "Tt " or s[13] != ":" or s[16] != ":":
        raise bad
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59 and sec <= 60):
        raise bad
    p, ms = 19, 0
    if s[p:p + 1] == ".":
        p += 1
        frac = ""
        while p < len(s) and "0" <= s[p] <= "9":
            frac += s[p]
            p += 1
        if not frac:
            raise bad
        ms = int((frac + "00")[:3])
    offset_min = 0
    if s[p:p + 1] in ("Z", "z"):
        p += 1
    elif s[p:p + 1] in ("+", "-"):
        oh, om = _digits(s, p + 1, 2), _digits(s, p + 4, 2)
        if s[p + 3:p + 4] != ":":
            raise bad
        offset_min = oh * 60 + om
        if s[p] == "-":
            offset_min = -offset_min
        p += 6
    else:
        raise bad
    if p != len(s):
        raise bad
    secs = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset_min * 60
    return secs * 1000 + ms


def _int_field(cmd, name):
    v = cmd.get(name)
    if v is None:
        return 0
    if isinstance(v, bool):
        raise TypeError(f"{name} must be an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        if name == "timeout_seconds":  # the proto3 JSON form of int64, as the agent reads it
            if not re.fullmatch(r"-?[0-9]+", v):
                raise ValueError(f"timeout_seconds is not a decimal integer: {v!r}")
            return int(v, 10)
        return rfc3339_to_ms(v)
    raise TypeError(f"{name} must be an integer or a string, not {type(v).__name__}")


def _length_prefixed(data):
    return str(len(data)).encode("ascii") + b":" + data + b"\n"


def canonical(cmd):
    """The bytes a command's signature covers (docs/MESSAGES.md)."""
    out = [MAGIC]
    for name in STRING_FIELDS:
        v = cmd.get(name)
        if v is None:
            v = ""
        if not isinstance(v, str):
            raise TypeError(f"{name} must be a string")
        out.append(name.encode("ascii") + b"=" + _length_prefixed(v.encode("utf-8")))
    for name in INT_FIELDS:
        out.append(b"%s=%d\n" % (name.encode("ascii"), _int_field(cmd, name)))
    args = cmd.get("args") or []
    out.append(b"args=%d\n" % len(args))
    for a in args:
        if not isinstance(a, str):
            raise TypeError("args must be strings")
        out.append(_length_prefixed(a.encode("utf-8")))
    return b"".join(out)


def sign(cmd, private_key):
    """Base64 (standard alphabet, padded) ed25519 signature of canonical(cmd)."""
    return base64.b64encode(private_key.sign(canonical(cmd))).decode("ascii")


def signed(cmd, private_key):
    """A copy of cmd with its `signature` set."""
    return dict(cmd, signature=sign(cmd, private_key))


def public_pem(private_key):
    """SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----") of the key."""
    return private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path):
    """An unencrypted PKCS#8 PEM ed25519 private key (the fixture's)."""
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def generate_keypair(directory):
    """A fresh ed25519 key: returns (private_key, path of its public PEM),
    the path being new in directory (a str or path-like), mode 0644, ready
    for exec.public_key_files."""
    key = Ed25519PrivateKey.generate()
    fd, path = tempfile.mkstemp(prefix="command-signing-", suffix=".pub.pem", dir=str(directory))
    with os.fdopen(fd, "wb") as f:
        f.write(public_pem(key))
    os.chmod(path, 0o644)
    return key, path
