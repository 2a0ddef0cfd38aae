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
import ctypes.util
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

import attrs

from cxlsys.cli.interpose import ControlIoctl, Supervisor, install_filter
from cxlsys.cli.output import hotplug_progress
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


def have_preload() -> bool:
    """Whether the dynamic linker finds umockdev's preload library (where LD_PRELOAD can't, it
    only warns, and CMD would read the host's /sys)."""
    return ctypes.util.find_library("umockdev-preload") is not None
PROC_FILES = ("meminfo", "iomem")


def _start_daemon(system, work: str, mnt: str, ctl: str, cache: bool, allow_other: bool,
                  close: tuple = ()) -> int:
    """Fork the FUSE daemon (it shares the caller's mount namespace); its stderr goes to work/daemon.log.
    ``close``: descriptors the daemon must not hold (the watcher's pipe: its end of file is the signal)."""
    pid = os.fork()
    if pid:
        return pid
    try:
        for fd in close:
            os.close(fd)
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
            # the run's end unmounts (the loops end), then sends SIGTERM: blocked here, it cannot
            # cut the daemon short while it writes the profile (the exit discards it)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            profiler = cProfile.Profile()
            try:
                profiler.runcall(serve, system, mnt, **kw)
            finally:
                profiler.dump_stats(prof)
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


def _descendants(root: int) -> list:
    """``root`` and every process below it (from /proc's parent links), parents first."""
    kids: dict = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def _wait_gone(pid: int, timeout: float) -> None:
    """Wait (poll(2) on a pidfd: no sleeping) until ``pid`` has exited, at most ``timeout`` s."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def _remove_work(work: str) -> None:
    """Remove the work dir without ever descending into a mount point (a /dev bind left mounted
    must not lose the host's nodes): what is on another filesystem stays, and so does its parent."""
    top = os.lstat(work).st_dev

    def rm(d: str) -> None:
        for e in os.scandir(d):
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue                     # a dead FUSE mount: leave it
            if st.st_dev != top:
                continue
            if e.is_dir(follow_symlinks=False):
                rm(e.path)
                with contextlib.suppress(OSError):
                    os.rmdir(e.path)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(e.path)

    with contextlib.suppress(OSError):
        rm(work)
        os.rmdir(work)


class Watcher:
    """A process that cleans up after ``cxlsys run`` if it dies without doing so itself (SIGKILL):
    it kills the command and everything below it, and the daemon, unmounts what was mounted and
    removes the work dir.  ``cxlsys run`` tells it what exists over a pipe (``daemon PID``,
    ``child PID``, ``mount PATH``, ``fuse PATH``, ``done``); end of file without ``done`` means
    ``cxlsys run`` is gone.  It runs in its own session, so a signal to the terminal's process
    group does not reach it, and holds nothing open but the pipe."""

    def __init__(self, work: str) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                os.closerange(3, r)
                os.closerange(r + 1, 1 << 16)
                _watch(r, work)
            finally:
                os._exit(0)
        os.close(r)
        self.pid, self.w = pid, w

    def tell(self, *words) -> None:
        with contextlib.suppress(OSError):
            os.write(self.w, (" ".join(str(x) for x in words) + "\n").encode())

    def done(self) -> None:
        self.tell("done")
        os.close(self.w)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _watch(r: int, work: str) -> None:
    buf = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        buf += chunk
    said: dict = {}
    for line in buf.decode(errors="replace").splitlines():
        key, _, val = line.partition(" ")
        said.setdefault(key, []).append(val)
    if "done" in said:
        return
    for child in said.get("child", []):
        for p in _descendants(int(child)):
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
    for daemon in said.get("daemon", []):
        with contextlib.suppress(OSError):
            os.kill(int(daemon), signal.SIGKILL)
        _wait_gone(int(daemon), 10)
    for m in reversed(said.get("mount", [])):
        umount(m)
    for m in said.get("fuse", []):
        subprocess.call(["fusermount3", "-u", "-z", m], stderr=subprocess.DEVNULL)
    _remove_work(work)


def _run_child(cmd: list, env: dict, interpose: Optional[tuple] = None, watcher: Optional[Watcher] = None) -> int:
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
    if watcher is not None:
        watcher.tell("child", child)
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


@attrs.frozen
class Served:
    work: str          # the work dir (removed when the run ends, however it ends)
    mnt: str           # the FUSE mount of the model
    other: str         # the extra directory (the host's /dev bind, or umockdev's /dev)
    ctl: str           # the daemon's control socket
    daemon: int        # the daemon's pid (CXLSYS_DAEMON_PID in CMD's environment)
    watcher: Watcher


@contextlib.contextmanager
def _served(system_factory, prefix: str, extra: str, cache: bool, allow_other: bool):
    """A work dir with sys/ (the FUSE mount) and ``extra``/, the daemon serving the model there;
    yields a :class:`Served`, or None if the daemon did not come up.  The caller unmounts what it
    mounted (and tells the watcher about it first); the daemon is stopped and the work dir
    removed here — or by the watcher, if this process is killed."""
    system = system_factory()      # a bad topology, parameter or profile stops here, before any work dir exists
    work = tempfile.mkdtemp(prefix=prefix)
    watcher = Watcher(work)
    mnt, other, ctl = os.path.join(work, "sys"), os.path.join(work, extra), os.path.join(work, "control.sock")
    pid = 0
    try:
        os.mkdir(mnt)
        os.mkdir(other)
        pid = _start_daemon(system, work, mnt, ctl, cache, allow_other, close=(watcher.w,))
        watcher.tell("daemon", pid)
        up = _wait_mounted(pid, mnt, ctl, work)
        yield Served(work, mnt, other, ctl, pid, watcher) if up else None
    finally:
        if os.environ.get("CXLSYS_DEBUG"):
            _show_log(work)
        if pid:
            _stop_daemon(pid)
        shutil.rmtree(work, ignore_errors=True)
        watcher.done()


def _env(sv: Served) -> dict:
    env = dict(os.environ)
    env["PATH"] = write_shims(os.path.join(sv.work, "bin")) + ":" + env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    env["CXLSYS_CONTROL"] = sv.ctl
    env["CXLSYS_DAEMON_PID"] = str(sv.daemon)
    return env


def run(system_factory, cmd: list, cache: bool = True, via: str = "auto", progress: bool = False) -> int:
    """``via``: "namespace" (root), "umockdev" (no root needed), or "auto" (namespace if root);
    ``progress``: a bar of memory blocks online on the terminal while CMD runs."""
    if not cmd:
        sys.stderr.write("cxlsys run: no command given\n")
        return 2
    if via == "umockdev" or (via == "auto" and os.geteuid() != 0):
        return run_preload(system_factory, cmd, cache, progress)
    if os.geteuid() != 0:
        sys.stderr.write("cxlsys run: a private mount namespace needs root (or use --via umockdev)\n")
        return 126
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    with _served(system_factory, "cxlsys-run.", "hostdev", cache, allow_other=True) as sv:
        if sv is None:
            return 1
        mnt, hostdev, ctl = sv.mnt, sv.other, sv.ctl
        tracing: list = []
        # what the watcher unmounts (in reverse) if this process dies: the FUSE mount last
        for m in [mnt, hostdev, "/dev", "/sys"] + [TRACING, TRACING] + [f"/proc/{f}" for f in PROC_FILES]:
            sv.watcher.tell("mount", m)
        try:
            mount("/dev", hostdev, None, MS_BIND | MS_REC)
            mount("tmpfs", "/dev", "tmpfs", 0, "mode=755")
            _populate_dev(hostdev, "/dev")
            mount(mnt, "/sys", None, MS_BIND | MS_REC)     # with the /sys/kernel mount on it
            tracing = _mount_tracing(mnt)
            for f in PROC_FILES:         # the model's /proc/meminfo and /proc/iomem
                mount(os.path.join(mnt, CXLSYS_DIR, "proc", f), f"/proc/{f}", None, MS_BIND)
            request(ctl, {"cmd": "devsync", "root": "/dev"})
            with hotplug_progress(ctl, progress):
                return _run_child(cmd, _env(sv), _interpose(ctl, [("/dev", "/dev")]), sv.watcher)
        finally:
            for m in [f"/proc/{f}" for f in PROC_FILES] + tracing + ["/sys", "/dev", hostdev, mnt]:
                umount(m)


def run_preload(system_factory, cmd: list, cache: bool = True, progress: bool = False) -> int:
    """Without root: the FUSE tree at $T/sys, umockdev-style /dev nodes in $T/dev, and umockdev's
    LD_PRELOAD redirect (UMOCKDEV_DIR=$T) of CMD's /sys and /dev paths.  Works for dynamically
    linked programs that go through glibc (cxl, daxctl, bash builtins, coreutils); needs /dev/fuse
    usable by the caller and fusermount3."""
    if not have_preload():         # checked before the model boots: one line, as for /dev/fuse
        sys.stderr.write(f"cxlsys run: {UMOCKDEV_PRELOAD} is not installed (apt-get install umockdev): "
                         "without root the path redirect needs it; or run as root (a private mount namespace)\n")
        return 2
    with _served(system_factory, "cxlsys-umockdev.", "dev", cache, allow_other=False) as sv:
        if sv is None:
            return 1
        work, mnt, dev, ctl = sv.work, sv.mnt, sv.other, sv.ctl
        sv.watcher.tell("fuse", mnt)
        try:
            nodes = os.path.join(work, "nodes")      # the nodes that take ioctls: outside umockdev's /dev
            request(ctl, {"cmd": "devsync", "root": dev, "style": "umockdev", "ioctl_root": nodes})
            env = _env(sv)
            env["LD_PRELOAD"] = " ".join(x for x in (UMOCKDEV_PRELOAD, env.get("LD_PRELOAD")) if x)
            env["UMOCKDEV_DIR"] = work
            with hotplug_progress(ctl, progress):
                return _run_child(cmd, env, _interpose(ctl, [("/dev", nodes)], trap_open=True), sv.watcher)
        finally:
            subprocess.call(["fusermount3", "-u", "-z", mnt], stderr=subprocess.DEVNULL)
