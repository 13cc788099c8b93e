#!/usr/bin/env python3
"""Run a program the way the Deployment runs the agent's container: the root
filesystem read-only, writable only where deploy/base/deployment.yaml mounts an
emptyDir (/tmp, /var/lib/collect-agent), as user and group 65534.

    unshare --mount --propagation private readonly_root.py [--uid N] -- PROGRAM ARGS...

Inside the new mount namespace (nothing changes outside it): /tmp is bound
onto itself so it stays writable; a tmpfs holds /var/lib/collect-agent;
every other writable mount but /proc, /sys and /dev (which a container
runtime sets up itself) is remounted read-only. It checks that /, /etc,
/var/tmp and the program's own directory refuse writes with EROFS, drops to
the user, and execs the program (same pid: signals reach it directly).
Needs root (CAP_SYS_ADMIN) and util-linux's mount."""
import errno
import os
import subprocess
import sys

WRITABLE = ["/tmp", "/var/lib/collect-agent"]
RUNTIME_MOUNTS = ("/proc", "/sys", "/dev")


def mount(*args):
    subprocess.run(["mount", *args], check=True, stdout=subprocess.DEVNULL)


def mount_points():
    """(mount point, options) of every mount, in mount order."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            out.append((point, fields[5].split(",")))
    return out


def under(path, roots):
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def make_read_only():
    mount("--bind", "/tmp", "/tmp")
    # /var/lib/collect-agent need not exist on this machine: a tmpfs on
    # /var/lib holds the mount point and is made read-only with the rest.
    mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/var/lib")
    os.mkdir("/var/lib/collect-agent")
    mount("-t", "tmpfs", "-o", "mode=0755,uid=65534,gid=65534", "tmpfs", "/var/lib/collect-agent")
    for point, opts in mount_points():
        if "rw" not in opts or under(point, RUNTIME_MOUNTS) or under(point, WRITABLE):
            continue
        mount("-o", "remount,bind,ro", point)


def refuses_writes(directory):
    path = os.path.join(directory, f".readonly-root-probe-{os.getpid()}")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        return e.errno == errno.EROFS
    os.close(fd)
    os.unlink(path)
    return False


def main():
    argv = sys.argv[1:]
    uid = 65534
    if argv[:1] == ["--uid"]:
        uid, argv = int(argv[1]), argv[2:]
    if argv[:1] != ["--"] or len(argv) < 2:
        sys.exit("usage: readonly_root.py [--uid N] -- PROGRAM ARGS...")
    program = argv[1:]
    make_read_only()
    # In the image the program is on the read-only root; a checkout under
    # /tmp (CI clones there) would leave it writable: make its directory
    # read-only as well, in this mount namespace only.
    bindir = os.path.dirname(os.path.abspath(program[0]))
    if under(bindir, WRITABLE):
        mount("--bind", bindir, bindir)
        mount("-o", "remount,bind,ro", bindir)
    for d in ("/", "/etc", "/var/tmp", os.path.dirname(os.path.abspath(program[0]))):
        if not refuses_writes(d):
            sys.exit(f"readonly_root.py: {d} is still writable")
    for d in WRITABLE:
        if refuses_writes(d):
            sys.exit(f"readonly_root.py: {d} is not writable")
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    os.execv(program[0], program)


if __name__ == "__main__":
    main()
