"""The ``cxlsys`` command."""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time

from cxlsys.cli import mounts, nsrun
from cxlsys.cli.show import print_tree
from cxlsys.errors import KernelError
from cxlsys.journal import Journal, JournalError
from cxlsys.profile import ProfileError, known_specs
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.topology import FIXTURES, TopologyError, load_topology
from cxlsys.treedump import GOLDEN_ROOTS, dump_model
from fuse_mount.client import request


def _params(items) -> dict:
    out = {}
    for kv in items or []:
        k, _, v = kv.partition("=")
        try:
            out[k] = int(v, 0)
        except ValueError:
            sys.stderr.write(f"cxlsys: --param {kv!r}: expected key=integer\n")
            raise SystemExit(2)
    return out


def _system(args):
    try:
        system = System.boot(args.topology, _params(args.param), kernel=args.kernel)
    except (TopologyError, ProfileError) as e:
        sys.stderr.write(f"cxlsys: {e}\n")
        raise SystemExit(2)
    except KernelError as e:   # from loading the topology (a bad parameter)
        sys.stderr.write(f"cxlsys: {e.reason}\n")
        raise SystemExit(2)
    state = getattr(args, "state", None)
    if state:
        try:
            Journal.open(state, system, warn=lambda line: sys.stderr.write(f"cxlsys: {line}\n"))
        except JournalError as e:
            sys.stderr.write(f"cxlsys: {e}\n")
            raise SystemExit(2)
    return system


def control_path(mountpoint: str) -> str:
    base = "/run/cxlsys" if os.geteuid() == 0 else os.path.join(os.environ.get("XDG_RUNTIME_DIR") or "/tmp",
                                                                  f"cxlsys-{os.getuid()}")
    os.makedirs(base, mode=0o700, exist_ok=True)
    h = hashlib.sha1(os.path.realpath(mountpoint).encode()).hexdigest()[:12]
    return os.path.join(base, f"{h}.sock")


def _stale_socket(ctl: str, who: str) -> None:
    """``ctl`` exists but nobody answers there: its daemon is gone.  Remove it, say so in one line."""
    try:
        os.unlink(ctl)
    except OSError:
        return
    sys.stderr.write(f"cxlsys {who}: removed a stale control socket {ctl} (its daemon is gone)\n")


def _answers(ctl: str) -> bool:
    try:
        return request(ctl, {"cmd": "ping"}).get("rc") == 0
    except (OSError, ValueError):
        return False


def cmd_mount(args) -> int:
    mp = args.mountpoint
    ctl = control_path(mp)
    state = mounts.mount_state(mp)
    if state == mounts.DEAD_CXLSYS:
        # a daemon that died (kill -9) leaves its mount answering ENOTCONN: take it away, do not stack on it
        mounts.detach(mp)
        sys.stderr.write(f"cxlsys mount: {mp}: a dead cxlsys mount was there (its daemon is gone): unmounted it\n")
        state = mounts.mount_state(mp)
    if state is not None:
        what = "a running cxlsys (cxlsys umount it first)" if state == mounts.LIVE_CXLSYS else f"{state}"
        sys.stderr.write(f"cxlsys mount: {mp}: already a mount point ({what})\n")
        return 2
    if not os.path.isdir(mp):
        sys.stderr.write(f"cxlsys mount: {mp}: not a directory\n")
        return 2
    host = mounts.host_system_dir(mp)
    if host and not args.allow_system_dir:
        sys.stderr.write(f"cxlsys mount: {mp}: inside the host's {host}: a mount there hides the host's own files "
                         "(--allow-system-dir to do it anyway)\n")
        return 2
    if os.listdir(mp):
        sys.stderr.write(f"cxlsys mount: {mp}: not empty (a mount would hide its files)\n")
        return 2
    if os.path.exists(ctl) and not _answers(ctl):
        _stale_socket(ctl, "mount")
    system = _system(args)
    from fuse_mount.daemon import serve  # loads libfuse3 (ctypes): only the commands that mount need it
    if args.foreground:
        serve(system, mp, control_path=ctl, cache=not args.no_cache, allow_other=os.geteuid() == 0)
        return 0
    pid = os.fork()
    if pid == 0:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        try:
            serve(system, mp, control_path=ctl, cache=not args.no_cache, allow_other=os.geteuid() == 0)
        finally:
            os._exit(0)
    deadline = time.time() + 30
    while not os.path.ismount(mp):
        if time.time() > deadline or os.waitpid(pid, os.WNOHANG) != (0, 0):
            sys.stderr.write(f"cxlsys mount: {mp}: the FUSE daemon did not come up\n")
            return 1
        time.sleep(0.02)
    return 0


def cmd_umount(args) -> int:
    mp = args.mountpoint
    state = mounts.mount_state(mp)
    ctl = control_path(mp)
    if state is None:
        sys.stderr.write(f"cxlsys umount: {mp}: not mounted\n")
        return 1
    if state == mounts.DEAD_CXLSYS:
        mounts.detach(mp)
        if os.path.exists(ctl):
            _stale_socket(ctl, "umount")
        return 0
    rc = subprocess.call(["fusermount3", "-u", mp])
    deadline = time.time() + 10
    while mounts.mount_state(mp) is not None and time.time() < deadline:
        time.sleep(0.02)
    return rc


def cmd_run(args) -> int:
    cmd = args.cmd
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    return nsrun.run(lambda: _system(args), cmd, cache=not args.no_cache, via=args.via)


def cmd_dmesg(args) -> int:
    ctl = os.environ.get("CXLSYS_CONTROL") if not args.mountpoint else control_path(args.mountpoint)
    if not ctl or not os.path.exists(ctl):
        sys.stderr.write("cxlsys dmesg: no running cxlsys (give the mount point, or run inside 'cxlsys run')\n")
        return 1
    try:
        rep = request(ctl, {"cmd": "dmesg"})
    except OSError as e:
        if not args.mountpoint:
            sys.stderr.write(f"cxlsys dmesg: no cxlsys answers at {ctl} ({e.strerror or e})\n")
        else:
            _stale_socket(ctl, "dmesg")
        return 1
    sys.stdout.write(rep["out"])
    return rep["rc"]


def cmd_tree(args) -> int:
    print_tree(_system(args))
    return 0


def cmd_dump(args) -> int:
    roots = args.root or list(GOLDEN_ROOTS)
    for line in dump_model(Sysfs(_system(args)), roots):
        print(line)
    return 0


def cmd_topologies(args) -> int:
    for p in sorted(FIXTURES.glob("*.toml")):
        t = load_topology(str(p))
        print(f"{p.stem:16} {t.description}")
    return 0


def cmd_demo(args) -> int:
    """The main job: the topology through the real cxl tool inside 'cxlsys run', then a rich tree."""
    exe = [sys.executable, "-m", "cxlsys"]
    rc = subprocess.call(exe + ["run", "--topology", args.topology, "--", "cxl", "list", "-BPEMDTR", "-i"])
    if rc != 0:
        return rc
    print_tree(_system(args))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="cxlsys", description="The Linux CXL core as a mounted sysfs")
    sub = ap.add_subparsers(dest="command", required=True)

    def topo(p):
        p.add_argument("--topology", "-t", default="cxl_test", help="preset name or TOML file (default cxl_test)")
        p.add_argument("--param", "-p", action="append",
                       help="module parameter key=value, e.g. interleave_arithmetic=1")
        p.add_argument("--kernel", default=None,
                       help=f"kernel behaviour profile, {known_specs()}; e.g. 7.3+private-nodes-v5 "
                            "(default: the topology's own)")

    def durable(p):
        p.add_argument("--state", metavar="FILE",
                       help="journal every accepted change to FILE (append-only, fsync'd) and, if FILE exists, "
                            "restore the state it holds first (a restart after kill -9)")

    p = sub.add_parser("mount", help="mount the model at MOUNTPOINT (a directory)")
    topo(p)
    durable(p)
    p.add_argument("--allow-system-dir", action="store_true",
                   help="allow a mount point inside the host's /proc, /sys or /dev")
    p.add_argument("--no-cache", action="store_true", help="disable kernel caching (every lookup reaches Python)")
    p.add_argument("-f", "--foreground", action="store_true")
    p.add_argument("mountpoint")
    p.set_defaults(fn=cmd_mount)
    p = sub.add_parser("umount", help="unmount a cxlsys mount")
    p.add_argument("mountpoint")
    p.set_defaults(fn=cmd_umount)
    p = sub.add_parser("run", help="run CMD with the model as /sys (private mount namespace, or umockdev)")
    topo(p)
    durable(p)
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--via", choices=("auto", "namespace", "umockdev"), default="auto",
                   help="namespace: bind over /sys in a private mount namespace (root); umockdev: LD_PRELOAD "
                        "path redirect, no root needed (default: namespace as root, else umockdev)")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("dmesg", help="print the model's kernel log")
    p.add_argument("mountpoint", nargs="?")
    p.set_defaults(fn=cmd_dmesg)
    p = sub.add_parser("tree", help="print the CXL topology as a tree")
    topo(p)
    p.set_defaults(fn=cmd_tree)
    p = sub.add_parser("dump", help="dump the projected tree in the golden-6.12 format")
    topo(p)
    p.add_argument("--root", action="append", help="path below /sys to dump (repeatable)")
    p.set_defaults(fn=cmd_dump)
    p = sub.add_parser("topologies", help="list the preset topologies")
    p.set_defaults(fn=cmd_topologies)
    p = sub.add_parser("demo", help="the main job: real 'cxl list' on the model, then a tree")
    topo(p)
    p.set_defaults(fn=cmd_demo)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
