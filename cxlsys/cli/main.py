"""The ``cxlsys`` command."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import tomllib

from cxlsys.cli import mounts, nsrun, record
from cxlsys.cli import qemu as qemu_cli
from cxlsys.cli.output import emit_json, keep_log, write_output
from cxlsys.errors import KernelError
from cxlsys.journal import Journal, JournalError, cxlsys_version
from cxlsys.klog import dmesg_line
from cxlsys.kstrto import parse_size
from cxlsys.profile import ProfileError, known_specs
from cxlsys.snapshot import write_snapshot
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.topology import FIXTURES, TopologyError, load_topology, parse_topology
from cxlsys.topology.generate import GenerateError, GenSpec, generate
from cxlsys.treedump import GOLDEN_ROOTS, dump_model, walk_model
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
    if getattr(args, "dmesg", None) or getattr(args, "explain", False):
        keep_log(system, getattr(args, "dmesg", None), getattr(args, "explain", False))
    return system


def _fuse_usable(who: str) -> bool:
    """A mount needs /dev/fuse (and, for a user, fusermount3): if that cannot work, one line saying
    why and the fix, before anything starts."""
    why = mounts.fuse_unusable()
    if why:
        sys.stderr.write(f"cxlsys {who}: {why}\n")
    return why is None


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
    if args.explain and not args.foreground:
        sys.stderr.write("cxlsys mount: --explain needs --foreground (a daemon in the background has no terminal "
                         "to explain on; --dmesg FILE keeps the reasons)\n")
        return 2
    if not _fuse_usable("mount"):
        return 2
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
    kernel = os.path.join(mp, "kernel")          # the daemon's /sys/kernel mount (tracefs, debugfs) first
    if mounts.mount_state(kernel) is not None:
        subprocess.call(["fusermount3", "-u", kernel])
    rc = subprocess.call(["fusermount3", "-u", mp])
    deadline = time.time() + 10
    while mounts.mount_state(mp) is not None and time.time() < deadline:
        time.sleep(0.02)
    return rc


def cmd_run(args) -> int:
    cmd = args.cmd
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if cmd and not _fuse_usable("run"):
        return 2
    return nsrun.run(lambda: _system(args), cmd, cache=not args.no_cache, via=args.via, progress=args.progress)


def cmd_dmesg(args) -> int:
    ctl = os.environ.get("CXLSYS_CONTROL") if not args.mountpoint else control_path(args.mountpoint)
    if not ctl or not os.path.exists(ctl):
        sys.stderr.write("cxlsys dmesg: no running cxlsys (give the mount point, or run inside 'cxlsys run'; "
                         "'cxlsys run --dmesg FILE' keeps a run's log in FILE)\n")
        return 1
    try:
        if args.json or args.follow:
            return _dmesg_records(ctl, args.json, args.follow)
        rep = request(ctl, {"cmd": "dmesg"})
    except BrokenPipeError:            # our reader left (cxlsys dmesg -w | head): main() ends quietly
        raise
    except OSError as e:
        if not args.mountpoint:
            sys.stderr.write(f"cxlsys dmesg: no cxlsys answers at {ctl} ({e.strerror or e})\n")
        else:
            _stale_socket(ctl, "dmesg")
        return 1
    sys.stdout.write(rep["out"])
    return rep["rc"]


def _dmesg_records(ctl: str, as_json: bool, follow: bool) -> int:
    """The log as records: ``--json`` as util-linux ``dmesg --json`` prints it ({"dmesg": [...]}; with
    ``--follow`` one record per line), ``--follow`` waiting for new ones until the daemon goes away."""
    rep = request(ctl, {"cmd": "dmesg", "after": 0})
    while True:
        if rep.get("rc") != 0 or "records" not in rep:       # the daemon refused (or predates records)
            sys.stderr.write(rep.get("err") or f"cxlsys dmesg: the daemon answered {rep!r}\n")
            return 1
        if as_json and not follow:
            emit_json({"dmesg": rep["records"]})
            return 0
        for r in rep["records"]:
            sys.stdout.write(json.dumps(r) + "\n" if as_json else dmesg_line(r["time"], r["msg"]) + "\n")
        sys.stdout.flush()
        if not follow:
            return 0
        try:
            rep = request(ctl, {"cmd": "dmesg", "after": rep["seq"], "wait": 30}, timeout=60)
        except TimeoutError:
            sys.stderr.write(f"cxlsys dmesg: the daemon at {ctl} stopped answering\n")
            return 1
        except (ConnectionError, FileNotFoundError, ValueError):   # the run ended / the mount went away
            return 0


def cmd_snapshot(args) -> int:
    """The tree as plain files (cxlsys/snapshot.py): from a running daemon (``--from MOUNTPOINT``,
    or the ``cxlsys run`` this runs inside), else from a model booted here."""
    dest = os.path.abspath(args.dir)
    ctl = control_path(args.source) if args.source else os.environ.get("CXLSYS_CONTROL")
    if ctl:
        try:
            rep = request(ctl, {"cmd": "snapshot", "dir": dest, "root": args.root or ""})
        except OSError as e:
            sys.stderr.write(f"cxlsys snapshot: no cxlsys answers at {ctl} ({e.strerror or e})\n")
            return 1
        sys.stdout.write(rep["out"])
        sys.stderr.write(rep["err"])
        return rep["rc"]
    try:
        st = write_snapshot(Sysfs(_system(args)), dest, args.root or "")
    except OSError as e:
        sys.stderr.write(f"cxlsys snapshot: {e}\n")
        return 1
    print(st.summary())
    return 0


def _bytes(opt: str, text: str) -> int:
    try:
        return parse_size(text)
    except (TypeError, ValueError):
        sys.stderr.write(f"cxlsys generate: --{opt}: {text!r} is not a size (e.g. 256M, 8G, 1T)\n")
        raise SystemExit(2)


def cmd_generate(args) -> int:
    """A topology file for scale (cxlsys/topology/generate.py), checked by loading it."""
    spec = GenSpec(host_bridges=args.host_bridges, root_ports=args.root_ports, switch_ports=args.switch_ports,
                   memdevs=args.memdevs, ram=_bytes("ram", args.ram), pmem=_bytes("pmem", args.pmem),
                   block_size=_bytes("block-size", args.block_size), interleave=args.interleave,
                   auto_region=args.auto_region, auto_regions=args.auto_regions, name=args.name or "")
    try:
        text = generate(spec)
        t = parse_topology(tomllib.loads(text), args.output or "<generated>")
    except (GenerateError, TopologyError) as e:
        sys.stderr.write(f"cxlsys generate: {e}\n")
        return 2
    return write_output("generate", args.output, text, t.description)


def print_tree(system) -> None:
    """cxlsys/cli/show.py's rich tree; imported here so that the other commands do not pay for rich."""
    from cxlsys.cli.show import print_tree as show
    show(system)


def cmd_tree(args) -> int:
    if args.json:
        from cxlsys.cli.show import tree_data
        emit_json(tree_data(_system(args)))
        return 0
    print_tree(_system(args))
    return 0


def cmd_dump(args) -> int:
    fs = Sysfs(_system(args))
    roots = []
    for r in args.root or []:
        # a path below /sys, spelled with or without "/sys/"; a link is dumped where it points
        rel = r.strip("/")
        rel = "" if rel == "sys" else rel[4:] if rel.startswith("sys/") else rel
        real = fs.realpath(rel)
        if fs.lookup(real) is None:
            sys.stderr.write(f"cxlsys dump: --root {r}: no such path below /sys\n")
            return 2
        roots.append(f"/sys/{real}")
    if args.json:
        out = []
        for path, kind, mode, v in walk_model(fs, roots or list(GOLDEN_ROOTS)):
            e: dict = {"path": path, "type": kind}
            if kind == "link":
                e["target"] = v
            elif kind == "file":
                e["mode"] = f"{mode:o}"
                if isinstance(v, bytes):
                    e["value"] = v.decode("utf-8", "surrogateescape")
                else:
                    e["error"] = v.strip("<>")
            out.append(e)
        emit_json(out)
        return 0
    for line in dump_model(fs, roots or list(GOLDEN_ROOTS)):
        print(line)
    return 0


def cmd_topologies(args) -> int:
    found = [(p, load_topology(str(p))) for p in sorted(FIXTURES.glob("*.toml"))]
    if args.json:
        emit_json([{"name": p.stem, "description": t.description, "kernel": t.kernel or None,
                    "module": t.module} for p, t in found])
        return 0
    for p, t in found:
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
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except BrokenPipeError:            # `cxlsys dump | head`: the reader left, as for any tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # (no error at exit's flush)
        return 128 + 13                # what a shell shows for a SIGPIPE death
    except KeyboardInterrupt:          # Ctrl-C (how `cxlsys dmesg -w` ends): quietly, as a shell shows it
        return 128 + 2


def parser() -> argparse.ArgumentParser:
    """The command line: every subcommand, every option with its help."""
    ap = argparse.ArgumentParser(prog="cxlsys", description="The Linux CXL core as a mounted sysfs")
    ap.add_argument("--version", action="version", version=f"cxlsys {cxlsys_version()}")
    sub = ap.add_subparsers(dest="command", required=True)

    def topo(p):
        p.add_argument("--topology", "-t", default="cxl_test", help="preset name or TOML file (default cxl_test)")
        p.add_argument("--param", "-p", action="append",
                       help="module parameter key=value, e.g. interleave_arithmetic=1")
        p.add_argument("--kernel", default=None,
                       help=f"kernel behaviour profile, {known_specs()}; e.g. 7.3+private-nodes-v5 "
                            "(default: the topology's own)")

    def as_json(p, what):
        p.add_argument("--json", action="store_true", help=f"print {what} as JSON (for jq and scripts)")

    def logging(p):
        p.add_argument("--dmesg", metavar="FILE",
                       help="keep the model's kernel log in FILE (truncated first), each line written as it is "
                            "logged: it outlives the run and a kill -9 of the daemon")
        p.add_argument("--explain", action="store_true",
                       help="print each refused store's reason on this stderr as it happens, e.g. 'cxlsys: refused: "
                            "...[write ... to /sys/...: ENXIO]' before the shell's 'write error'")

    def durable(p):
        p.add_argument("--state", metavar="FILE",
                       help="journal every accepted change to FILE (append-only, fsync'd) and, if FILE exists, "
                            "restore the state it holds first (a restart after kill -9)")

    p = sub.add_parser("mount", help="mount the model at MOUNTPOINT (a directory)")
    topo(p)
    durable(p)
    logging(p)
    p.add_argument("--allow-system-dir", action="store_true",
                   help="allow a mount point inside the host's /proc, /sys or /dev")
    p.add_argument("--no-cache", action="store_true", help="disable kernel caching (every lookup reaches Python)")
    p.add_argument("-f", "--foreground", action="store_true", help="serve in this process until unmounted")
    p.add_argument("mountpoint", help="an empty directory that is not a mount point")
    p.set_defaults(fn=cmd_mount)
    p = sub.add_parser("umount", help="unmount a cxlsys mount")
    p.add_argument("mountpoint", help="where 'cxlsys mount' serves the model")
    p.set_defaults(fn=cmd_umount)
    p = sub.add_parser("run", help="run CMD with the model as /sys (private mount namespace, or umockdev)")
    topo(p)
    durable(p)
    logging(p)
    p.add_argument("--no-cache", action="store_true", help="disable kernel caching (every lookup reaches Python)")
    p.add_argument("--via", choices=("auto", "namespace", "umockdev"), default="auto",
                   help="namespace: bind over /sys in a private mount namespace (root); umockdev: LD_PRELOAD "
                        "path redirect, no root needed (default: namespace as root, else umockdev)")
    p.add_argument("--progress", action="store_true",
                   help="while CMD runs, a bar of the hot-added memory blocks online on this terminal (for a "
                        "script onlining a large region; not for an interactive shell)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="the command to run, after --, e.g. -- cxl list -M")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("dmesg", help="print the model's kernel log")
    p.add_argument("mountpoint", nargs="?",
                   help="a 'cxlsys mount' mount point (default inside 'cxlsys run': that run's daemon)")
    as_json(p, "the records (util-linux dmesg --json's form: pri, time, msg; with seq)")
    p.add_argument("-w", "--follow", action="store_true",
                   help="wait for new messages and print them until the daemon goes away")
    p.set_defaults(fn=cmd_dmesg)
    p = sub.add_parser("snapshot", help="write the tree as plain files, dirs and relative links into DIR")
    topo(p)
    durable(p)
    p.add_argument("--from", dest="source", metavar="MOUNTPOINT",
                   help="copy what a running mount serves (default inside 'cxlsys run': that one)")
    p.add_argument("--root", help="only this path below /sys (e.g. bus/cxl)")
    p.add_argument("dir", help="where to write the tree (DIR/... mirrors /sys/...)")
    p.set_defaults(fn=cmd_snapshot)
    p = sub.add_parser("generate", help="write a topology for scale: host bridges x root ports x switches x memdevs")
    p.add_argument("--host-bridges", type=int, default=1, help="CXL host bridges, one PCI domain each (default 1)")
    p.add_argument("--root-ports", type=int, default=2, help="root ports per host bridge (default 2)")
    p.add_argument("--switch-ports", type=int, default=0,
                   help="a switch below every root port with this many downstream ports (default 0: no switches)")
    p.add_argument("--memdevs", type=int, help="at most this many memdevs (default: one on every leaf port)")
    p.add_argument("--ram", default="256M", help="volatile capacity per memdev (default 256M)")
    p.add_argument("--pmem", default="0", help="persistent capacity per memdev (default 0)")
    p.add_argument("--block-size", default="128M", help="memory block size (default 128M)")
    p.add_argument("--interleave", action="store_true", help="also a ram window over all host bridges")
    p.add_argument("--auto-region", type=int, default=0, metavar="WAYS",
                   help="firmware commits a ram region over host bridge 0's first WAYS memdevs")
    p.add_argument("--auto-regions", choices=("first", "every"), default="first",
                   help="every: all the memory in WAYS-way auto regions (default first: one)")
    p.add_argument("--name", help="the topology's name (default: from its shape)")
    p.add_argument("-o", "--output", help="the file to write (default: standard output)")
    p.set_defaults(fn=cmd_generate)
    qemu_cli.add_parsers(sub)
    record.add_parser(sub)
    p = sub.add_parser("tree", help="print the CXL topology as a tree (colour on a terminal, plain when piped)")
    topo(p)
    as_json(p, "the tree (ports, decoders, regions; sizes in bytes)")
    p.set_defaults(fn=cmd_tree)
    p = sub.add_parser("dump", help="dump the projected tree in the golden-6.12 format")
    topo(p)
    p.add_argument("--root", action="append",
                   help="path below /sys to dump, e.g. bus/cxl/devices/mem0 or /sys/bus/cxl (a link is followed; "
                        "repeatable; default: the golden-6.12 roots)")
    as_json(p, "a list of entries (path, type, mode, value or target; values whole, not cut at 300 bytes)")
    p.set_defaults(fn=cmd_dump)
    p = sub.add_parser("topologies", help="list the preset topologies")
    as_json(p, "the presets (name, description, kernel, module)")
    p.set_defaults(fn=cmd_topologies)
    p = sub.add_parser("demo", help="the main job: real 'cxl list' on the model, then a tree")
    topo(p)
    p.set_defaults(fn=cmd_demo)
    return ap


if __name__ == "__main__":
    sys.exit(main())
