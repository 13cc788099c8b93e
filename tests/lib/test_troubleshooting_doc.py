"""docs/TROUBLESHOOTING.md cannot drift from the code:

- every reason of its table "Every 503 reason" (placeholders in <angle
  brackets>) is one the code can produce: it is built from the format
  strings of the sources that write probe reasons, the placeholders standing
  for their %s and numbers (recursively: "event watch <watch>: listing" is
  events.c's "event watch %s" around reflector.c's "%s: %s" and "listing");
- every reason the health functions can write is in the table (each of
  their format strings matches a row);
- every probe body captured in the doc (scripts/capture_troubleshooting_examples.py)
  is made of the table's reasons, and a /health/live body only of reasons
  the table says fail both probes;
- the command rejections of "Commands rejected because of the clock" are
  src/exec/exec.c's."""
import json
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(ROOT, "docs", "TROUBLESHOOTING.md")

# Where probe reasons are written, and the functions that write them.
HEALTH_SOURCES = {
    "src/agent/agent.c": ["modules_health"],
    "src/bus/bus.c": ["module_health"],
    "src/kube/client.c": ["module_health"],
    "src/kube/reflector.c": ["ca_reflector_ready"],
    "src/cluster/cluster.c": ["module_health"],
    "src/events/events.c": ["module_health"],
    "src/metrics/metrics.c": ["module_health"],
    "src/ha/ha.c": ["module_health"],
}
PLACEHOLDER = re.compile(r"<[^<>]+>")
SPEC = re.compile(r"%%|%[-+ #0]*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|z|j|t|L)?([sdiuxXfgc])")
STRING_RUN = re.compile(r'"(?:[^"\\\n]|\\.)*"(?:\s*(?:PRI\w+|"(?:[^"\\\n]|\\.)*"))*')


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def c_strings(code):
    """The string literals of C code, adjacent ones joined, PRI macros as %d."""
    code = re.sub(r"/\*.*?\*/", "", code, flags=re.S)
    out = []
    for run in STRING_RUN.findall(code):
        run = re.sub(r'"\s*PRI\w+\s*"', "%d", run)
        parts = re.findall(r'"((?:[^"\\\n]|\\.)*)"', run)
        text = "".join(parts)
        out.append(re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text))
    return out


def function_body(code, name):
    m = re.search(rf"^[a-z][^\n;]*\b{name}\([^;{{]*?\n\{{\n(.*?)^\}}\n", code, flags=re.S | re.M)
    assert m, f"no function {name}"
    return m.group(1)


def health_formats():
    out = []
    for path, funcs in HEALTH_SOURCES.items():
        code = read(path)
        for fn in funcs:
            out += [s for s in c_strings(function_body(code, fn)) if re.search(r"[A-Za-z]", s)]
    return out


def source_strings(paths):
    out = set()
    for path in paths:
        out.update(c_strings(read(path)))
    return out


def format_regex(fmt):
    """fmt as a regex: %s a lazy group (checked again), numbers digits or a placeholder."""
    pieces, pos, kinds = [], 0, []
    for m in SPEC.finditer(fmt):
        pieces.append(re.escape(fmt[pos:m.start()]))
        if m.group(0) == "%%":
            pieces.append("%")
        elif m.group(1) in "sc":
            pieces.append("(.*?)")
            kinds.append("s")
        else:
            pieces.append(r"(?:\d+(?:\.\d+)?|<[^<>]+>)")
        pos = m.end()
    pieces.append(re.escape(fmt[pos:]))
    return re.compile("".join(pieces), re.S), kinds


class Grammar:
    """What the sources can write: a literal, or a format whose %s hold more
    of the same (or a placeholder, or nothing)."""

    def __init__(self, strings):
        self.literals = {s for s in strings if not SPEC.search(s)}
        self.formats = []
        for s in strings:
            if SPEC.search(s) and SPEC.sub("", s).strip():
                self.formats.append((s, *format_regex(s)))

    def produces(self, text):
        if text == "" or PLACEHOLDER.fullmatch(text) or text in self.literals:
            return True
        for fmt, rx, _ in self.formats:
            m = rx.fullmatch(text)
            if m and all(len(g) < len(text) and self.produces(g) for g in m.groups()):
                return True
        return False


def doc_table():
    """[(reason pattern, probe)] of the table under "## Every 503 reason"."""
    text = read("docs/TROUBLESHOOTING.md")
    section = text.split("## Every 503 reason", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        m = re.match(r"\| `([^`]+)` \| (\w+) \|", line)
        if m:
            rows.append((m.group(1), m.group(2)))
    return rows


def pattern_regex(patterns):
    """One regex for a probe reason: table patterns joined by "; "."""
    alts = []
    for p in patterns:
        pieces = [re.escape(x) for x in PLACEHOLDER.split(p)]
        alts.append(".+?".join(pieces))
    one = "(?:" + "|".join(alts) + ")"
    return re.compile(f"{one}(?:; {one})*", re.S)


def captured_bodies():
    """[(region, path, status, reason)] of the probe bodies captured in the doc."""
    text = read("docs/TROUBLESHOOTING.md")
    out = []
    for name, body in re.findall(r"<!-- captured-health ([\w-]+) -->\n(.*?)<!-- /captured-health -->", text, re.S):
        m = re.search(r"localhost:8080(/health/\w+)\n(\{.*\}) (\d{3})\n", body)
        assert m, f"region {name} holds no probe body"
        out.append((name, m.group(1), int(m.group(3)), json.loads(m.group(2))["reason"]))
    return out


def test_table_is_there():
    rows = doc_table()
    assert len(rows) >= 20, rows
    assert {p for _, p in rows} == {"ready", "both"}, rows


@pytest.mark.parametrize("row", doc_table(), ids=lambda r: r[0][:60])
def test_every_reason_in_the_doc_is_one_the_code_writes(row):
    grammar = Grammar(health_formats() + list(source_strings(HEALTH_SOURCES)))
    assert grammar.produces(row[0]), f"no source writes the reason {row[0]!r}"


def test_every_reason_the_code_writes_is_in_the_doc():
    rows = [p for p, _ in doc_table()]
    missing = []
    for fmt in health_formats():
        rx, _ = format_regex(fmt)
        if SPEC.search(fmt):
            if not any(rx.fullmatch(p) for p in rows):
                missing.append(fmt)
        elif not any(fmt in p for p in rows):
            missing.append(fmt)
    assert not missing, f"reasons the code writes that {DOC} does not list: {missing}"


def test_captured_bodies_are_made_of_the_tables_reasons():
    rows = doc_table()
    bodies = captured_bodies()
    assert len(bodies) >= 6, bodies
    ready_rx = pattern_regex([p for p, _ in rows])
    live_rx = pattern_regex([p for p, probe in rows if probe == "both"])
    for name, path, status, reason in bodies:
        assert status == 503, (name, status)
        rx = live_rx if path == "/health/live" else ready_rx
        assert rx.fullmatch(reason), f"{name}: {path} said {reason!r}, which the table does not explain"


def test_clock_rejections_are_the_executors():
    text = read("docs/TROUBLESHOOTING.md")
    section = text.split("### Commands rejected because of the clock", 1)[1].split("\n### ", 1)[0]
    reasons = re.findall(r"- `(command [^`]+)`", section)
    assert len(reasons) == 3, reasons
    grammar = Grammar(source_strings(["src/exec/exec.c"]))
    for r in reasons:
        assert grammar.produces(r), f"src/exec/exec.c writes no rejection {r!r}"


def test_the_checks_can_fail():
    grammar = Grammar(health_formats() + list(source_strings(HEALTH_SOURCES)))
    assert grammar.produces("event watch <watch>: listing")
    assert not grammar.produces("event watch <watch>: lagging")
    assert not grammar.produces("NATS is not connected")
    assert not grammar.produces("more <kind> than metrics.limit_<kind>: samples are incomplete (raise it)")
    rx = pattern_regex(["NATS not connected", "Kubernetes API <last error>"])
    assert rx.fullmatch("NATS not connected; Kubernetes API 403 forbidden")
    assert not rx.fullmatch("NATS not connected; the API is sad")
