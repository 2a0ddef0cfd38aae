"""``cxlsys run``: CMD in a private mount namespace whose /sys is the model.

As root: unshare(CLONE_NEWNS), make every mount private, start the FUSE daemon (a
forked child sharing the namespace), bind the mount over /sys, put a tmpfs /dev
holding the host's device nodes plus ``/dev/cxl/memN`` and ``/dev/daxX.Y``, and
run CMD with shims for modprobe/udevadm/journalctl/dmesg first on PATH.  The
namespace dies with its processes, so nothing stays mounted on the host.
"""

from __future__ import annotations

import contextlib
import cProfile
import ctypes
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

from cxlsys.cli.interpose import ControlIoctl, Supervisor, install_filter
from cxlsys.sysfs import CXLSYS_DIR
from fuse_mount.client import request

CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def mount(src, dst, fstype, flags, data=None):
    _check(_libc.mount(src.encode() if src else None, dst.encode(), fstype.encode() if fstype else None,
                       ctypes.c_ulong(flags), data.encode() if data else None), f"mount {dst}")


def umount(dst, flags=MNT_DETACH):
    _libc.umount2(dst.encode(), flags)


def _populate_dev(hostdev: str, dev: str) -> None:
    for name in os.listdir(hostdev):
        src = os.path.join(hostdev, name)
        dst = os.path.join(dev, name)
        try:
            st = os.lstat(src)
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            os.mknod(dst, st.st_mode, st.st_rdev)
        elif stat.S_ISDIR(st.st_mode):
            if name in ("cxl",):
                continue
            os.mkdir(dst, stat.S_IMODE(st.st_mode))
            try:
                mount(src, dst, None, MS_BIND | MS_REC)
            except OSError:
                pass


def _show_log(work: str) -> None:
    try:
        with open(os.path.join(work, "daemon.log")) as f:
            for line in f:
                if "Ignoring invalid max threads" not in line:
                    sys.stderr.write("cxlsys daemon: " + line)
    except OSError:
        pass


def write_shims(d: str) -> str:
    os.makedirs(d, exist_ok=True)
    # the directory holding the cxlsys package (site-packages, or a checkout), for the shims' python
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for name in ("modprobe", "udevadm", "journalctl", "dmesg"):
        p = os.path.join(d, name)
        with open(p, "w") as f:
            f.write(f"#!/bin/sh\nPYTHONPATH={root}${{PYTHONPATH:+:$PYTHONPATH}} "
                    f"exec {sys.executable} -m cxlsys.cli.shim {name} \"$@\"\n")
        os.chmod(p, 0o755)
    return d


UMOCKDEV_PRELOAD = "libumockdev-preload.so.0"
PROC_FILES = ("meminfo", "iomem")


def _start_daemon(system, work: str, mnt: str, ctl: str, cache: bool, allow_other: bool) -> int:
    """Fork the FUSE daemon (it shares the caller's mount namespace); its stderr goes to work/daemon.log."""
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setsid()
        logfd = os.open(os.path.join(work, "daemon.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(logfd, 2)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        from fuse_mount.daemon import serve  # loads libfuse3 (ctypes): in the daemon child only
        kw: dict[str, Any] = dict(control_path=ctl, cache=cache, allow_other=allow_other)
        prof = os.environ.get("CXLSYS_PROFILE")
        if prof:
            cProfile.runctx("serve(system, mnt, **kw)", globals(), dict(serve=serve, system=system, mnt=mnt, kw=kw),
                            prof)
        else:
            serve(system, mnt, **kw)
    except BaseException as e:  # pragma: no cover - reported through the log
        sys.stderr.write(f"cxlsys daemon: {e}\n")
    os._exit(0)


def _wait_mounted(pid: int, mnt: str, ctl: str, work: str) -> bool:
    deadline = time.time() + 30
    while not (os.path.ismount(mnt) and os.path.exists(ctl)):
        if time.time() > deadline or os.waitpid(pid, os.WNOHANG) != (0, 0):
            sys.stderr.write("cxlsys run: the FUSE daemon did not come up\n")
            _show_log(work)
            return False
        time.sleep(0.02)
    return True


TRACING = "/sys/kernel/tracing"


def _mount_tracing(mnt: str) -> list:
    """libtracefs (``cxl list --media-errors``, ``cxl monitor``) finds tracing through a
    ``tracefs`` line in /proc/mounts, and mounts the real tracefs itself when there is none.  So
    mount one at /sys/kernel/tracing (hidden, never read) and bind the model's tracing tree on
    top: /proc/mounts names tracefs there, every path under it is the model's.  What to unmount."""
    out = []
    try:
        mount("nodev", TRACING, "tracefs", 0)
        out.append(TRACING)
    except OSError:
        pass                     # no tracefs in this kernel: libtracefs falls back to debugfs or gives up
    mount(os.path.join(mnt, "kernel", "tracing"), TRACING, None, MS_BIND)
    return [TRACING] + out


def _run_child(cmd: list, env: dict, interpose: Optional[tuple] = None) -> int:
    """Run CMD, forwarding INT/TERM/HUP/QUIT to it; its exit status (128+signal if killed).
    ``interpose = (control socket, [node roots], trap_open)`` (see :func:`_interpose`): CMD runs
    under the ioctl interposer's seccomp filter (:mod:`cxlsys.cli.interpose`), supervised from a
    thread here."""
    pair = socket.socketpair() if interpose else None
    trap_open = bool(interpose and interpose[2])
    child = os.fork()
    if child == 0:
        try:
            if pair is not None:
                pair[0].close()
                try:
                    listener = install_filter(no_new_privs=os.geteuid() != 0, trap_open=trap_open)
                    socket.send_fds(pair[1], [b"ok"], [listener])
                    os.close(listener)
                except OSError as e:
                    pair[1].sendall(f"cxlsys run: no ioctl interposer ({e.strerror}): ioctls on the model's "
                                    "/dev nodes will fail\n".encode())
                pair[1].close()
            os.execvpe(cmd[0], cmd, env)
        except OSError as e:
            sys.stderr.write(f"cxlsys run: {cmd[0]}: {e.strerror}\n")
        except BaseException as e:      # never unwind into the parent's cleanup from the forked child
            sys.stderr.write(f"cxlsys run: {type(e).__name__}: {e}\n")
        os._exit(127)
    if pair is not None and interpose is not None:
        pair[1].close()
        msg, fds, _, _ = socket.recv_fds(pair[0], 4096, 1)
        pair[0].close()
        if fds:
            link = ControlIoctl(interpose[0])
            Supervisor(fds[0], interpose[1], link.ioctl, link.devt, trap_open=trap_open).start()
        elif msg:
            sys.stderr.write(msg.decode(errors="replace"))

    def fwd(sig, _frame):
        os.kill(child, sig)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, fwd)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    rc = os.waitstatus_to_exitcode(status)
    return 128 - rc if rc < 0 else rc


def _interpose(ctl: str, roots: list, trap_open: bool = False) -> Optional[tuple]:
    """``roots``: (the /dev path CMD names, where the node files really are); ``trap_open``: the
    interposer opens those nodes for CMD (umockdev's path redirect cannot be used for them)."""
    return None if os.environ.get("CXLSYS_NO_INTERPOSE") else (ctl, roots, trap_open)


def _stop_daemon(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


@contextlib.contextmanager
def _served(system_factory, prefix: str, extra: str, cache: bool, allow_other: bool):
    """A work dir with sys/ (the FUSE mount) and ``extra``/, the daemon serving the model there;
    yields (work, mnt, extra dir, control socket), or None if the daemon did not come up.  The
    caller unmounts what it mounted; the daemon is stopped and the work dir removed here."""
    system = system_factory()      # a bad topology, parameter or profile stops here, before any work dir exists
    work = tempfile.mkdtemp(prefix=prefix)
    mnt, other, ctl = os.path.join(work, "sys"), os.path.join(work, extra), os.path.join(work, "control.sock")
    os.mkdir(mnt)
    os.mkdir(other)
    pid = _start_daemon(system, work, mnt, ctl, cache, allow_other)
    try:
        yield (work, mnt, other, ctl) if _wait_mounted(pid, mnt, ctl, work) else None
    finally:
        if os.environ.get("CXLSYS_DEBUG"):
            _show_log(work)
        _stop_daemon(pid)
        shutil.rmtree(work, ignore_errors=True)


def _env(work: str, ctl: str) -> dict:
    env = dict(os.environ)
    env["PATH"] = write_shims(os.path.join(work, "bin")) + ":" + env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    env["CXLSYS_CONTROL"] = ctl
    return env


def run(system_factory, cmd: list, cache: bool = True, via: str = "auto") -> int:
    """``via``: "namespace" (root), "umockdev" (no root needed), or "auto" (namespace if root)."""
    if not cmd:
        sys.stderr.write("cxlsys run: no command given\n")
        return 2
    if via == "umockdev" or (via == "auto" and os.geteuid() != 0):
        return run_preload(system_factory, cmd, cache)
    if os.geteuid() != 0:
        sys.stderr.write("cxlsys run: a private mount namespace needs root (or use --via umockdev)\n")
        return 126
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    with _served(system_factory, "cxlsys-run.", "hostdev", cache, allow_other=True) as served:
        if served is None:
            return 1
        work, mnt, hostdev, ctl = served
        tracing: list = []
        try:
            mount("/dev", hostdev, None, MS_BIND | MS_REC)
            mount("tmpfs", "/dev", "tmpfs", 0, "mode=755")
            _populate_dev(hostdev, "/dev")
            mount(mnt, "/sys", None, MS_BIND)
            tracing = _mount_tracing(mnt)
            for f in PROC_FILES:         # the model's /proc/meminfo and /proc/iomem
                mount(os.path.join(mnt, CXLSYS_DIR, "proc", f), f"/proc/{f}", None, MS_BIND)
            request(ctl, {"cmd": "devsync", "root": "/dev"})
            return _run_child(cmd, _env(work, ctl), _interpose(ctl, [("/dev", "/dev")]))
        finally:
            for m in [f"/proc/{f}" for f in PROC_FILES] + tracing + ["/sys", "/dev", hostdev, mnt]:
                umount(m)


def run_preload(system_factory, cmd: list, cache: bool = True) -> int:
    """Without root: the FUSE tree at $T/sys, umockdev-style /dev nodes in $T/dev, and umockdev's
    LD_PRELOAD redirect (UMOCKDEV_DIR=$T) of CMD's /sys and /dev paths.  Works for dynamically
    linked programs that go through glibc (cxl, daxctl, bash builtins, coreutils); needs /dev/fuse
    usable by the caller and fusermount3."""
    with _served(system_factory, "cxlsys-umockdev.", "dev", cache, allow_other=False) as served:
        if served is None:
            return 1
        work, mnt, dev, ctl = served
        try:
            nodes = os.path.join(work, "nodes")      # the nodes that take ioctls: outside umockdev's /dev
            request(ctl, {"cmd": "devsync", "root": dev, "style": "umockdev", "ioctl_root": nodes})
            env = _env(work, ctl)
            env["LD_PRELOAD"] = " ".join(x for x in (UMOCKDEV_PRELOAD, env.get("LD_PRELOAD")) if x)
            env["UMOCKDEV_DIR"] = work
            return _run_child(cmd, env, _interpose(ctl, [("/dev", nodes)], trap_open=True))
        finally:
            subprocess.call(["fusermount3", "-u", "-z", mnt], stderr=subprocess.DEVNULL)
