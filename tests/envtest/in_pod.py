"""Run a command with the filesystem a pod's container sees, on this
machine (needs root; Linux only):

    python3 in_pod.py --scratch DIR --serviceaccount DIR \\
        [--mount SRC:DST[:ro] ...] [--uid N --gid N] -- COMMAND ARGS...

In a private mount namespace (nothing mounted here is seen outside, and it
all goes away with the process):

- the ServiceAccount directory (token, ca.crt, namespace) is bind-mounted
  read-only at /var/run/secrets/kubernetes.io/serviceaccount, where the
  kubelet mounts the projected ServiceAccount volume;
- each --mount binds SRC (a directory, or a file as for a volumeMount's
  subPath) at DST, read-only with `:ro`, as the container's volumeMounts;
- a mount point that does not exist here is made inside an overlay of its
  nearest existing ancestor (/etc, /var/lib, /run...), whose upper layer is
  a tmpfs on --scratch: the host's directories are never written and the
  command still sees everything they hold;
- the command runs as uid/gid (supplementary group gid, as a pod's fsGroup
  gives) with no_new_privs (allowPrivilegeEscalation: false).

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
# An overlay over these would stand between the command and its own
# libraries or the mounts below them: refuse instead.
NEVER_OVERLAY = {"/", "/usr", "/lib", "/lib64", "/bin", "/sbin", "/proc", "/sys", "/dev"}

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


class Namespace:
    def __init__(self, scratch):
        self.scratch = scratch
        self.overlaid = []          # directories with a private writable layer

    def enter(self):
        _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        # Mounts made from here on must not propagate back to the host's namespace.
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        mount("tmpfs", self.scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700,size=16m")

    def _overlay(self, base):
        """base as itself plus a private writable layer."""
        if base in NEVER_OVERLAY:
            raise Failed(f"a mount point below {base} would need an overlay of {base}")
        self.overlaid.append(base)
        upper = os.path.join(self.scratch, f"upper{len(self.overlaid)}")
        work = os.path.join(self.scratch, f"work{len(self.overlaid)}")
        os.mkdir(upper, 0o755)
        os.mkdir(work, 0o700)
        mount("overlay", base, "overlay", 0, f"lowerdir={base},upperdir={upper},workdir={work}")

    def mount_point(self, target, is_dir):
        """target exists (made in an overlay when it did not)."""
        if os.path.isdir(target) if is_dir else os.path.isfile(target):
            return
        if os.path.lexists(target):
            raise Failed(f"{target} exists and is not a {'directory' if is_dir else 'file'}")
        if not any(target.startswith(b.rstrip("/") + "/") for b in self.overlaid):
            base = os.path.dirname(target)
            while not os.path.isdir(base):
                base = os.path.dirname(base)
            self._overlay(base)
        if is_dir:
            os.makedirs(target, mode=0o755)
        else:
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            with open(target, "x"):
                pass

    def bind(self, source, target, read_only):
        self.mount_point(target, os.path.isdir(source))
        mount(source, target, None, MS_BIND)
        if read_only:
            mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def parse_mount(text):
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "ro") or not all(parts[:2]):
        raise argparse.ArgumentTypeError(f"--mount {text!r}: expected SRC:DST or SRC:DST:ro")
    if not os.path.isabs(parts[1]):
        raise argparse.ArgumentTypeError(f"--mount {text!r}: DST must be an absolute path")
    return os.path.abspath(parts[0]), os.path.normpath(parts[1]), len(parts) == 3


def setup(args):
    sa_dir = os.path.abspath(args.serviceaccount)
    for name in ("token", "ca.crt", "namespace"):
        if not os.path.isfile(os.path.join(sa_dir, name)):
            raise Failed(f"{sa_dir} has no {name}")
    mounts = [(sa_dir, os.path.realpath(SERVICEACCOUNT_PATH), True)] + list(args.mount)
    for src, _, _ in mounts:
        if not os.path.exists(src):
            raise Failed(f"{src} does not exist")
    # A mount over a directory that holds another mount's source (an
    # emptyDir over /tmp, say) goes last: a bind keeps its source even
    # when the path to it is hidden afterwards.
    mounts.sort(key=lambda m: any(s == m[1] or s.startswith(m[1].rstrip("/") + "/") for s, _, _ in mounts))
    ns = Namespace(os.path.abspath(args.scratch))
    ns.enter()
    for src, dst, ro in mounts:
        ns.bind(src, dst, ro)
    if args.gid is not None:
        os.setgroups([args.gid])
        os.setgid(args.gid)
    if args.uid is not None:
        os.setuid(args.uid)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scratch", required=True, help="an existing directory for the overlays' private layers")
    p.add_argument("--serviceaccount", required=True, help="directory with token, ca.crt, namespace")
    p.add_argument("--mount", type=parse_mount, action="append", default=[], help="SRC:DST[:ro]")
    p.add_argument("--uid", type=int)
    p.add_argument("--gid", type=int)
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        p.error("no command")
    try:
        # Opened before the mounts: an emptyDir over /tmp hides a program
        # that lives there (CI clones under /tmp); exec'd by descriptor.
        program = os.open(cmd[0], os.O_RDONLY)
        setup(a)
    except (Failed, OSError) as e:
        print(f"in_pod: {e}", file=sys.stderr)
        return 125
    try:
        os.execve(program, cmd, os.environ)
    except OSError as e:
        print(f"in_pod: {cmd[0]}: {e}", file=sys.stderr)
        return 125


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
