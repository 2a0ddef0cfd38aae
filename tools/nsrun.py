"""``cxlsys run``: CMD in a private mount namespace whose /sys is the model.

As root: unshare(CLONE_NEWNS), make every mount private, start the FUSE daemon (a
forked child sharing the namespace), bind the mount over /sys, put a tmpfs /dev
holding the host's device nodes plus ``/dev/cxl/memN`` and ``/dev/daxX.Y``, and
run CMD with shims for modprobe/udevadm/journalctl/dmesg first on PATH.  The
namespace dies with its processes, so nothing stays mounted on the host.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import stat
import sys
import tempfile
import time

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
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in ("modprobe", "udevadm", "journalctl", "dmesg"):
        p = os.path.join(d, name)
        with open(p, "w") as f:
            f.write(f"#!/bin/sh\nPYTHONPATH={root}${{PYTHONPATH:+:$PYTHONPATH}} exec {sys.executable} -m tools.shim {name} \"$@\"\n")
        os.chmod(p, 0o755)
    return d


def run(system_factory, cmd: list, cache: bool = True) -> int:
    if os.geteuid() != 0:
        sys.stderr.write("cxlsys run: needs root for a private mount namespace "
                         "(without root use 'cxlsys mount' on a user-owned directory, see README)\n")
        return 126
    if not cmd:
        sys.stderr.write("cxlsys run: no command given\n")
        return 2
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    work = tempfile.mkdtemp(prefix="cxlsys-run.")
    mnt = os.path.join(work, "sys")
    hostdev = os.path.join(work, "hostdev")
    os.mkdir(mnt)
    os.mkdir(hostdev)
    ctl = os.path.join(work, "control.sock")
    system = system_factory()

    pid = os.fork()
    if pid == 0:  # the daemon
        try:
            os.setsid()
            logfd = os.open(os.path.join(work, "daemon.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(logfd, 2)
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            from fuse_mount.daemon import serve
            prof = os.environ.get("CXLSYS_PROFILE")
            if prof:
                import cProfile
                cProfile.runctx("serve(system, mnt, control_path=ctl, dev_root=None, cache=cache, allow_other=True)",
                                globals(), dict(serve=serve, system=system, mnt=mnt, ctl=ctl, cache=cache), prof)
            else:
                serve(system, mnt, control_path=ctl, dev_root=None, cache=cache, allow_other=True)
        except BaseException as e:  # pragma: no cover - reported to the parent through the pipe closing
            sys.stderr.write(f"cxlsys daemon: {e}\n")
        os._exit(0)
    child = None
    rc = 1
    try:
        deadline = time.time() + 30
        while not (os.path.ismount(mnt) and os.path.exists(ctl)):
            if time.time() > deadline or os.waitpid(pid, os.WNOHANG) != (0, 0):
                sys.stderr.write("cxlsys run: the FUSE daemon did not come up\n")
                _show_log(work)
                return 1
            time.sleep(0.02)
        mount("/dev", hostdev, None, MS_BIND | MS_REC)
        mount("tmpfs", "/dev", "tmpfs", 0, "mode=755")
        _populate_dev(hostdev, "/dev")
        mount(mnt, "/sys", None, MS_BIND)
        from fuse_mount.control import request
        request(ctl, {"cmd": "devsync", "root": "/dev"})
        env = dict(os.environ)
        shims = write_shims(os.path.join(work, "bin"))
        env["PATH"] = shims + ":" + env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        env["CXLSYS_CONTROL"] = ctl
        child = os.fork()
        if child == 0:
            try:
                os.execvpe(cmd[0], cmd, env)
            except OSError as e:
                sys.stderr.write(f"cxlsys run: {cmd[0]}: {e.strerror}\n")
                os._exit(127)

        def fwd(sig, _frame):
            if child:
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
        if rc < 0:
            rc = 128 - rc
    finally:
        if os.environ.get("CXLSYS_DEBUG"):
            _show_log(work)
        umount("/sys")
        umount("/dev")
        umount(hostdev)
        umount(mnt)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        shutil.rmtree(work, ignore_errors=True)
    return rc
