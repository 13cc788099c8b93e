#!/usr/bin/env python3
"""Fails when src/ calls a function our conventions ban (unbounded copies,
non-reentrant time functions, unchecked conversions, anything that runs a
shell). Comments and string literals are ignored. Prints one line per hit."""
import os
import re
import sys

BANNED = ["sprintf", "vsprintf", "strcpy", "strcat", "strtok", "gmtime", "localtime", "atoi", "atol",
          "system", "popen", "gets", "strncpy"]
CALL = re.compile(r"\b(" + "|".join(BANNED) + r")\s*\(")


def strip(text):
    """Remove comments and string/char literals, keeping line breaks."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def main(root):
    hits = 0
    for dirpath, _, files in os.walk(os.path.join(root, "src")):
        for name in sorted(files):
            if not name.endswith((".c", ".h")):
                continue
            path = os.path.join(dirpath, name)
            with open(path, encoding="utf-8", errors="replace") as f:
                code = strip(f.read())
            for lineno, line in enumerate(code.splitlines(), 1):
                for m in CALL.finditer(line):
                    # a member or a longer identifier (snprintf, ca_strlcpy) is fine
                    before = line[:m.start()]
                    if before.endswith((".", "->")) or re.search(r"[A-Za-z0-9_]$", before):
                        continue
                    print(f"{os.path.relpath(path, root)}:{lineno}: banned call {m.group(1)}()")
                    hits += 1
    print(f"banned calls: {hits}")
    return 1 if hits else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
