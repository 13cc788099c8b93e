#!/usr/bin/env python3
"""Rewrite the memory-budget table in docs/ARCHITECTURE.md from what the
built agent reports (`collect-agent --check-config` prints the rows for the
default configuration). tests/unit/test_agent.c checks the doc's total against
the code, so run this after changing a budget row:

    ninja -C build && scripts/update_budget_doc.py [build/collect-agent]
"""
import os
import subprocess
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build", "collect-agent")
env = dict(os.environ, COLLECT_AGENT_KUBERNETES_ALLOW_INSECURE_HTTP="true")
res = subprocess.run([binary, "--check-config"], capture_output=True, text=True, env=env)
rows = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("|")]
if not rows or not rows[0].startswith("| what | set by | MiB |"):
    sys.exit(f"{binary} --check-config printed no budget table:\n{res.stdout}{res.stderr}")
path = os.path.join(root, "docs", "ARCHITECTURE.md")
lines = open(path, encoding="utf-8").read().split("\n")
start = next(i for i, line in enumerate(lines) if line.startswith("| what | set by | MiB |"))
end = start
while end < len(lines) and lines[end].startswith("|"):
    end += 1
lines[start:end] = rows
with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines))
print(f"{path}: {len(rows)} rows")
