"""The banned-call check finds calls in code and ignores comments, strings
and longer names."""
import os
import subprocess

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "scripts", "check_banned.py")


def run(tmp_path, code):
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "x.c").write_text(code)
    return subprocess.run(["/usr/bin/python3", SCRIPT, str(tmp_path)], capture_output=True, text=True)


def test_finds_a_banned_call(tmp_path):
    r = run(tmp_path, "void f(char *a) {\n\tstrcpy(a, \"x\");\n}\n")
    assert r.returncode == 1
    assert "src/x.c:2: banned call strcpy()" in r.stdout


def test_ignores_comments_strings_and_longer_names(tmp_path):
    r = run(tmp_path, "/* strcpy(a, b) */\n// sprintf(x)\nconst char *s = \"system(\";\n"
                      "int g(void) { char b[4]; return snprintf(b, 4, \"x\") + ca_strlcpy(b, \"y\", 4); }\n")
    assert r.returncode == 0, r.stdout
