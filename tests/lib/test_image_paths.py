"""The agent runs with a read-only root filesystem (deploy/base/deployment.yaml):
every file it writes must land on a writable mount, an emptyDir that is not
mounted readOnly. What it writes, and which configuration key says where:

    exec.work_dir       commands' private directories, their kubeconfig and
                        output spools (src/exec/exec.c, src/exec/sandbox.c)
    events.state_file   the last resourceVersion, through a temporary file in
                        the same directory (src/events/state.c)

Checked for the documented defaults (config/collect-agent.yaml) and for the
configuration the Deployment mounts (deploy/base/configmap.yaml). A new source
file that creates files fails test_every_writer_is_known until it is added
here with its key, so a new writer cannot ship pointing at the read-only
root."""
import os
import re

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# source file -> the config keys naming where it writes (a directory, or a
# file whose directory takes a temporary file beside it)
WRITERS = {
    "src/exec/exec.c": ["exec.work_dir"],
    "src/exec/sandbox.c": ["exec.work_dir"],
    "src/events/state.c": ["events.state_file"],
    "src/events/spool.c": ["events.spool_dir"],
    # ca_check_writable_dir: --check-config makes a missing spool_dir (and removes it)
    "src/core/file.c": ["events.spool_dir"],
}
FILE_KEYS = {"events.state_file"}

# Calls that create a file or directory (open with O_CREAT or O_TMPFILE, the
# mk*temp family, mkdir, rename into place, fopen for writing, creat,
# tmpfile, fifos, nodes and links).
CREATES = re.compile(r"O_CREAT|O_TMPFILE|\bmk(?:o?s?temp|dtemp|ostemps?)\s*\(|\bmkdir(?:at)?\s*\(|"
                     r"\brename(?:at2?)?\s*\(|\bfopen\s*\([^;]*\"[wa]|\b(?:creat|tmpfile|mkfifo|mknod)\s*\(|"
                     r"\b(?:sym)?link(?:at)?\s*\(")


def load_yaml(path):
    with open(os.path.join(ROOT, path)) as f:
        return list(yaml.safe_load_all(f))


def deployment():
    (dep,) = [d for d in load_yaml("deploy/base/deployment.yaml") if d and d.get("kind") == "Deployment"]
    return dep


def agent_container(dep):
    (c,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "collect-agent"]
    return c


def writable_mounts(dep):
    """Mount paths of emptyDir volumes the agent's container mounts read-write."""
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    out = []
    for m in agent_container(dep).get("volumeMounts", []):
        if m.get("readOnly") or m.get("subPath"):
            continue
        if "emptyDir" in volumes[m["name"]]:
            out.append(m["mountPath"].rstrip("/"))
    return out


def configs():
    """(name, config dict) of the documented default and the ConfigMap's."""
    (default,) = load_yaml("config/collect-agent.yaml")
    cms = [d for d in load_yaml("deploy/base/configmap.yaml") if d and d.get("kind") == "ConfigMap"]
    (cm,) = [yaml.safe_load(c["data"]["collect-agent.yaml"]) for c in cms
             if "collect-agent.yaml" in c.get("data", {})]
    return [("config/collect-agent.yaml", default), ("deploy/base/configmap.yaml", cm)]


def key(cfg, path):
    """The value at a dotted path, None when the file does not set it."""
    node = cfg
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def under(path, mounts):
    path = os.path.normpath(path)
    return any(path == m or path.startswith(m + "/") for m in mounts)


def test_root_filesystem_is_read_only_and_user_65534():
    c = agent_container(deployment())
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["runAsUser"] == 65534, sc
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = f.read()
    assert re.search(r"^USER 65534:65534$", text, re.M), "the image does not run as 65534"


@pytest.mark.parametrize("name,cfg", configs(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_written_path_is_on_a_writable_mount(name, cfg):
    mounts = writable_mounts(deployment())
    assert "/tmp" in mounts, mounts
    default = configs()[0][1]
    for path_key in sorted({k for keys in WRITERS.values() for k in keys}):
        value = key(cfg, path_key)
        if value is None:  # the ConfigMap leaves it at the default
            value = key(default, path_key)
        assert value is not None, f"{path_key} is not in config/collect-agent.yaml"
        if value == "":
            continue  # "" is "off" for state_file
        where = os.path.dirname(value) if path_key in FILE_KEYS else value
        assert under(where, mounts), (
            f"{name}: {path_key}={value!r} writes to {where}, which is not a writable emptyDir "
            f"of deploy/base/deployment.yaml (writable: {mounts}): the read-only root refuses it")


def test_check_can_fail():
    """A state file on the root filesystem is refused by the check above."""
    mounts = writable_mounts(deployment())
    assert not under(os.path.dirname("/etc/collect-agent/events.state"), mounts)
    assert not under("/tmpfoo", mounts) and under("/tmp/x/..", mounts)


def test_every_writer_is_known():
    found = set()
    for top, _, files in os.walk(os.path.join(ROOT, "src")):
        for f in files:
            if not f.endswith(".c"):
                continue
            path = os.path.join(top, f)
            with open(path) as fh:
                text = re.sub(r"/\*.*?\*/", "", fh.read(), flags=re.S)
            if CREATES.search(text):
                found.add(os.path.relpath(path, ROOT))
    # agentctl writes nothing either; a writer there would be listed too.
    unknown = sorted(found - set(WRITERS))
    assert not unknown, (f"{unknown} create files: add each to WRITERS in {__file__} with the config key "
                         "that names where, and make sure deploy/base/deployment.yaml mounts it writable")
    gone = sorted(set(WRITERS) - found)
    assert not gone, f"{gone} no longer create files: remove them from WRITERS"
