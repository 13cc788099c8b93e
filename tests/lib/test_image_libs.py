"""The container image (Dockerfile) ships every shared library its binaries
need: each library `ldd` resolves for build/collect-agent and build/agentctl
(every binary the runtime stage copies from the build stage) belongs to a
Debian package that the runtime stage installs, or that one of those depends
on, or that the base image has (the Essential packages and what they depend
on). agentctl is in the image only because it links nothing the agent does
not. Build and runtime stages use the same Debian release as this machine
(Debian 12), so the package names and dependencies read here from dpkg are
the image's.

Also: .dockerignore keeps build directories and .git out of the context."""
import fnmatch
import functools
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKERFILE = os.path.join(ROOT, "Dockerfile")
DOCKERIGNORE = os.path.join(ROOT, ".dockerignore")


def agent_binary():
    return os.environ.get("AGENT_BIN", os.path.join(ROOT, "build", "collect-agent"))


def shipped_binaries(text):
    """{name: destination} of the files the last stage copies out of the build
    stage's meson build directory (/src/build/NAME)."""
    instrs = dockerfile_instructions(text)
    last_from = max(i for i, (w, _) in enumerate(instrs) if w == "FROM")
    out = {}
    for word, args in instrs[last_from + 1:]:
        tokens = args.split()
        if word != "COPY" or "--from=build" not in tokens:
            continue
        paths = [t for t in tokens if not t.startswith("--")]
        for src in paths[:-1]:
            if src.startswith("/src/build/"):
                out[src[len("/src/build/"):]] = paths[-1]
    return out


def built_targets(text):
    """The targets the build stage's `ninja -C build ...` names."""
    instrs = dockerfile_instructions(text)
    last_from = max(i for i, (w, _) in enumerate(instrs) if w == "FROM")
    targets = []
    for word, args in instrs[:last_from]:
        if word != "RUN":
            continue
        for cmd in re.split(r"&&|;|\|\|", args):
            tokens = cmd.split()
            if tokens[:3] == ["ninja", "-C", "build"]:
                targets += tokens[3:]
    return targets


def dockerfile_instructions(text):
    """[(INSTRUCTION, arguments)] with continuation lines joined and comments dropped."""
    out, cur = [], ""
    for line in text.splitlines():
        if not cur and line.lstrip().startswith("#"):
            continue
        if cur and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        if cur.strip():
            word, _, rest = cur.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        cur = ""
    if cur.strip():
        word, _, rest = cur.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def runtime_packages(text):
    """The packages `apt-get install` names in the Dockerfile's last stage."""
    instrs = dockerfile_instructions(text)
    last_from = max(i for i, (w, _) in enumerate(instrs) if w == "FROM")
    pkgs = []
    for word, args in instrs[last_from + 1:]:
        if word != "RUN":
            continue
        for cmd in re.split(r"&&|;|\|\|", args):
            tokens = cmd.split()
            if "apt-get" not in tokens or "install" not in tokens:
                continue
            after = tokens[tokens.index("install", tokens.index("apt-get")) + 1:]
            pkgs += [t.split("=")[0] for t in after if not t.startswith("-")]
    return pkgs


def ldd_libraries(binary):
    """{soname: resolved path} of every library the dynamic loader loads,
    the loader itself included; a library that does not resolve fails."""
    proc = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True)
    libs = {}
    for line in proc.stdout.splitlines():
        line = line.strip()
        if "=>" in line:
            name, _, rest = line.partition("=>")
            path = rest.split("(")[0].strip()
            assert path and path != "not found", f"ldd: {line}"
            libs[name.strip()] = path
        elif line.startswith("/"):
            path = line.split()[0]
            libs[os.path.basename(path)] = path
    return libs


def _candidates(path):
    """path as resolved, with and without /usr (merged /usr), and its real path."""
    real = os.path.realpath(path)
    out = []
    for p in (path, real, os.path.join(os.path.dirname(path), os.path.basename(real))):
        out.append(p)
        out.append(p[len("/usr"):] if p.startswith("/usr/") else "/usr" + p)
    return list(dict.fromkeys(out))


def owning_packages(paths):
    """{path: the Debian package that ships it, or None}, from one dpkg -S
    (each call reads the whole dpkg database)."""
    cands = {p: _candidates(p) for p in paths}
    every = sorted({c for cs in cands.values() for c in cs})
    proc = subprocess.run(["dpkg", "-S", *every], capture_output=True, text=True)
    owner = {}
    for line in proc.stdout.splitlines():
        pkgs, _, file = line.rpartition(": ")
        if pkgs.startswith("diversion by"):
            continue
        owner.setdefault(file, pkgs.split(",")[0].strip().split(":")[0])
    return {p: next((owner[c] for c in cs if c in owner), None) for p, cs in cands.items()}


@functools.lru_cache(maxsize=None)
def installed_packages():
    """{package: {"depends": [[alternatives]], "provides": [...], "essential": bool}}
    of every package installed on this machine."""
    fmt = "${Package}\\t${db:Status-Abbrev}\\t${Essential}\\t${Provides}\\t${Pre-Depends}, ${Depends}\\n"
    proc = subprocess.run(["dpkg-query", "-W", "-f", fmt], capture_output=True, text=True, check=True)
    out = {}

    def names(field):
        return [re.split(r"[ (:]", a.strip())[0] for a in field.split("|") if a.strip()]

    for line in proc.stdout.splitlines():
        pkg, status, essential, provides, depends = line.split("\t")
        if not status.startswith("ii"):
            continue
        out[pkg] = {
            "essential": essential == "yes",
            "provides": [re.split(r"[ (:]", p.strip())[0] for p in provides.split(",") if p.strip()],
            "depends": [names(group) for group in depends.split(",") if group.strip()],
        }
    return out


def dependency_closure(roots, db):
    """roots and every package they depend on, recursively (Pre-Depends and
    Depends; of alternatives the first that is installed here, as apt picks
    the first; a virtual package by the installed package that provides it)."""
    providers = {}
    for pkg, info in db.items():
        for v in info["provides"]:
            providers.setdefault(v, []).append(pkg)

    def resolve(name):
        if name in db:
            return name
        return (providers.get(name) or [None])[0]

    seen, todo = set(), list(roots)
    while todo:
        pkg = resolve(todo.pop())
        if pkg is None or pkg in seen:
            continue
        seen.add(pkg)
        for group in db[pkg]["depends"]:
            for alt in group:
                if resolve(alt):
                    todo.append(alt)
                    break
    return seen


@functools.lru_cache(maxsize=None)
def _owners(paths):
    return owning_packages(paths)


def check_image_libraries(binary, dockerfile_text):
    """[(soname, path, package)] of the libraries the image lacks."""
    runtime = runtime_packages(dockerfile_text)
    assert runtime, "no apt-get install in the Dockerfile's runtime stage"
    db = installed_packages()
    provided = dependency_closure(runtime, db)
    base = dependency_closure([p for p, info in db.items() if info["essential"]], db)
    missing = []
    libs = ldd_libraries(binary)
    owners = _owners(tuple(sorted(libs.values())))
    for soname, path in sorted(libs.items()):
        pkg = owners[path]
        assert pkg, f"{soname} ({path}) belongs to no Debian package: the image cannot install it"
        if pkg not in provided and pkg not in base:
            missing.append((soname, path, pkg))
    return missing


needs_tools = pytest.mark.skipif(not (shutil.which("ldd") and shutil.which("dpkg") and shutil.which("dpkg-query")),
                                 reason="needs ldd, dpkg and dpkg-query (a Debian machine)")


def binary_path(name):
    """build/NAME next to AGENT_BIN (the agent's build directory)."""
    return os.path.join(os.path.dirname(agent_binary()), name)


def release_build_binary(b):
    if not os.path.exists(b):
        pytest.skip(f"{b} is not built (meson setup build && ninja -C build)")
    libs = ldd_libraries(b)
    if any(n.startswith(("libasan", "libubsan", "libtsan")) for n in libs):
        pytest.skip(f"{b} is a sanitizer build: the image ships a release build")
    return b


@pytest.fixture
def binary():
    return release_build_binary(agent_binary())


@pytest.fixture(params=["collect-agent", "agentctl"])
def shipped(request):
    """Each binary the image ships, as built here."""
    return release_build_binary(binary_path(request.param))


def test_runtime_packages_parsed():
    with open(DOCKERFILE) as f:
        pkgs = runtime_packages(f.read())
    assert "ca-certificates" in pkgs and "libnats3.4" in pkgs
    assert not any(p.endswith("-dev") for p in pkgs), f"-dev packages in the runtime stage: {pkgs}"
    assert "gcc" not in pkgs and "meson" not in pkgs, "build-stage packages read as runtime ones"


def test_image_ships_both_binaries_built_and_stripped():
    with open(DOCKERFILE) as f:
        text = f.read()
    shipped = shipped_binaries(text)
    assert shipped == {"collect-agent": "/usr/bin/collect-agent", "agentctl": "/usr/bin/agentctl"}, shipped
    targets = built_targets(text)
    for name in shipped:
        assert name in targets, f"the build stage's ninja does not build {name}: {targets}"
        assert re.search(rf"strip [^&]*build/{name}\b", text), f"{name} is not stripped"
        assert f"build/{name} --version" in text, f"the build stage does not run {name} --version"


@needs_tools
def test_image_ships_every_linked_library(shipped):
    with open(DOCKERFILE) as f:
        text = f.read()
    assert os.path.basename(shipped) in shipped_binaries(text), f"the Dockerfile does not ship {shipped}"
    missing = check_image_libraries(shipped, text)
    assert not missing, f"the Dockerfile's runtime stage does not install, for {shipped}:\n" + "\n".join(
        f"  {pkg} (for {soname}, {path})" for soname, path, pkg in missing)


@needs_tools
def test_agentctl_links_nothing_beyond_the_agent(binary):
    """The condition for shipping agentctl in the agent's image: it adds a
    binary, never a library."""
    ctl = release_build_binary(binary_path("agentctl"))
    extra = sorted(set(ldd_libraries(ctl)) - set(ldd_libraries(binary)))
    assert not extra, f"agentctl links libraries the agent does not: {extra}"


@needs_tools
def test_check_finds_a_missing_package(shipped):
    """The check can fail: without libnats3.4 in the runtime stage's install
    list, libnats.so.3.4 (both binaries talk NATS) has no package in the
    image."""
    with open(DOCKERFILE) as f:
        text = f.read()
    assert "libnats3.4" in text
    broken = text.replace("libnats3.4", "")
    missing = check_image_libraries(shipped, broken)
    assert "libnats3.4" in [m[2] for m in missing], missing


def test_dockerignore_excludes_build_dirs_and_git():
    assert os.path.exists(DOCKERIGNORE), ".dockerignore is missing: the build context would hold build/ and .git"
    with open(DOCKERIGNORE) as f:
        patterns = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns if "build" in p or ".git" in p), patterns

    def ignored(path):
        return any(fnmatch.fnmatch(path, p.rstrip("/")) or fnmatch.fnmatch(path.split("/")[0], p.rstrip("/"))
                   for p in patterns)

    for path in [".git", ".git/HEAD", "build", "build/collect-agent", "build-asan", "build-release/x"]:
        assert ignored(path), f".dockerignore does not exclude {path}"
    for path in ["src/agent/main.c", "meson.build", "proto", "config/collect-agent.yaml", "scripts"]:
        assert not ignored(path), f".dockerignore excludes {path}, which the image build needs"
