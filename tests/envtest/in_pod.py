"""Run a command the way a pod's container sees its ServiceAccount, on this
machine (needs root; Linux only):

    python3 in_pod.py --serviceaccount DIR [--uid N --gid N] -- COMMAND ARGS...

In a private mount namespace (nothing it mounts is seen outside, and it
all goes away with the process), DIR (token, ca.crt, namespace) is
bind-mounted read-only at /var/run/secrets/kubernetes.io/serviceaccount,
where the kubelet mounts the projected ServiceAccount volume. When that
path does not exist here, a tmpfs is mounted over its nearest existing
ancestor first (/run on most machines, which the command then sees empty),
so that the mount point can be made without touching the host's
filesystem. Then the command runs as uid/gid (supplementary group gid, as
a pod's fsGroup gives) with no_new_privs (allowPrivilegeEscalation: false).

Stdlib only (ctypes for unshare(2), mount(2), prctl(2)); exits 125 with
the reason on stderr when any step fails, before the command starts."""
import argparse
import ctypes
import os
import sys

SERVICEACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_SET_NO_NEW_PRIVS = 38
# Hiding one of these behind a tmpfs would take the command's libraries or
# configuration away: refuse instead.
NEVER_OVERMOUNT = {"/", "/var", "/etc", "/usr", "/lib", "/lib64", "/bin", "/sbin", "/tmp"}

_libc = ctypes.CDLL(None, use_errno=True)


class Failed(Exception):
    pass


def _check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise Failed(f"{what}: {os.strerror(e)}")


def _b(s):
    return s.encode() if s is not None else None


def mount(source, target, fstype, flags, data=None):
    _check(_libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
           f"mount {target}")


def nearest_existing(path):
    while not os.path.isdir(path):
        path = os.path.dirname(path)
    return path


def setup(sa_dir, uid, gid):
    for name in ("token", "ca.crt", "namespace"):
        if not os.path.isfile(os.path.join(sa_dir, name)):
            raise Failed(f"{sa_dir} has no {name}")
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    # Mounts made from here on must not propagate back to the host's namespace.
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    target = os.path.realpath(SERVICEACCOUNT_PATH)
    if not os.path.isdir(target):
        base = nearest_existing(target)
        if base in NEVER_OVERMOUNT:
            raise Failed(f"{SERVICEACCOUNT_PATH}: would have to hide {base} to make the mount point")
        mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
        os.makedirs(target, mode=0o755)
    mount(sa_dir, target, None, MS_BIND)
    mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    if gid is not None:
        os.setgroups([gid])
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serviceaccount", required=True, help="directory with token, ca.crt, namespace")
    p.add_argument("--uid", type=int)
    p.add_argument("--gid", type=int)
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        p.error("no command")
    try:
        setup(os.path.abspath(a.serviceaccount), a.uid, a.gid)
    except (Failed, OSError) as e:
        print(f"in_pod: {e}", file=sys.stderr)
        return 125
    try:
        os.execv(cmd[0], cmd)
    except OSError as e:
        print(f"in_pod: {cmd[0]}: {e}", file=sys.stderr)
        return 125


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
