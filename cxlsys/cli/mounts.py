"""What is mounted where, for ``cxlsys mount``/``umount``: /proc/self/mountinfo, not stat(2).

A FUSE mount whose daemon died (kill -9) answers every stat with ENOTCONN, so
``os.path.ismount`` says False and a second mount would be stacked on the dead one; mountinfo
still lists it, with its fstype (``fuse.cxlsys``).
"""

from __future__ import annotations

import ctypes
import errno
import grp
import os
import pwd
import shutil
import stat
import subprocess
from typing import Optional

LIVE_CXLSYS = "a cxlsys mount"
DEAD_CXLSYS = "a dead cxlsys mount"
FSTYPE = "fuse.cxlsys"
HOST_DIRS = ("/proc", "/sys", "/dev")
MNT_DETACH = 2


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _resolve(path: str) -> str:
    """The absolute path with symlinks of the parents resolved, the last component kept (a dead
    mount cannot be stat'ed, so realpath of it must not be needed)."""
    path = os.path.abspath(path)
    parent, name = os.path.split(path)
    return os.path.join(os.path.realpath(parent), name) if name else path


def fstypes_at(path: str) -> list:
    """The fstypes mounted exactly at ``path``, bottom first."""
    want = _resolve(path)
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) >= 5 and _unescape(fields[4]) == want:
                    out.append(right.split()[0] if right else "?")
    except OSError:
        pass
    return out


def mount_state(path: str) -> Optional[str]:
    """None if nothing is mounted at ``path``; else LIVE_CXLSYS, DEAD_CXLSYS or ``"a <fstype> mount"``
    (the topmost one)."""
    types = fstypes_at(path)
    if not types:
        return None
    top = types[-1]
    if top != FSTYPE:
        return f"a {top} mount"
    try:
        os.statvfs(path)           # FUSE_STATFS always reaches the daemon (a stat may be answered from cache)
    except OSError as e:
        if e.errno == errno.ENOTCONN:
            return DEAD_CXLSYS
    return LIVE_CXLSYS


def detach(path: str) -> None:
    """Lazily unmount the topmost mount at ``path`` (umount2(MNT_DETACH) as root, else fusermount3 -uz)."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.umount2(_resolve(path).encode(), MNT_DETACH) == 0:
            return
    subprocess.call(["fusermount3", "-u", "-z", _resolve(path)], stderr=subprocess.DEVNULL)


def host_system_dir(path: str) -> Optional[str]:
    """``/proc``, ``/sys`` or ``/dev`` if ``path`` is that directory of the host or below it."""
    p = _resolve(path)
    for d in HOST_DIRS:
        if p == d or p.startswith(d + "/"):
            return d
    return None


FUSE_DEV = "/dev/fuse"
WITHOUT_FUSE = ("without it: cxlsys tree/dump/snapshot, and in Python System.boot() with cxlsys.sysfs.Sysfs "
                "or the cxl_sysfs pytest fixture (no mount)")


def _mode_text(st: os.stat_result) -> str:
    def name(fn, ident):
        try:
            return fn(ident)[0]
        except KeyError:
            return str(ident)
    return f"{stat.filemode(st.st_mode)} {name(pwd.getpwuid, st.st_uid)}:{name(grp.getgrgid, st.st_gid)}"


def fuse_unusable(dev: str = FUSE_DEV) -> Optional[str]:
    """Why this process cannot mount with FUSE, as one line with the fix, or None if it can: a
    missing ``/dev/fuse``, one whose mode or group keeps this user out, no setuid ``fusermount3``
    (what mounts for a user who is not root)."""
    try:
        st = os.stat(dev)
    except OSError:
        return (f"{dev} does not exist: load the module (as root: modprobe fuse); in a container, give it the "
                f"device (docker run --device {dev}); {WITHOUT_FUSE}")
    if not stat.S_ISCHR(st.st_mode):
        return f"{dev} is not a character device ({_mode_text(st)}); {WITHOUT_FUSE}"
    if not os.access(dev, os.R_OK | os.W_OK):
        if os.geteuid() == 0:
            return f"{dev} cannot be opened even by root (a container without the device?); {WITHOUT_FUSE}"
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        if st.st_mode & 0o060 == 0o060 and st.st_gid != 0:
            fix = f"join its group (sudo usermod -aG {group} $USER, then log in again)"
        else:
            fix = ("open it to users with a udev rule (as root: echo 'KERNEL==\"fuse\", MODE=\"0666\"' > "
                   "/etc/udev/rules.d/99-fuse.rules; udevadm trigger --name-match=fuse)")
        return (f"{dev} is {_mode_text(st)}: you (uid {os.getuid()}) may not open it; {fix}, "
                f"or run as root (sudo); {WITHOUT_FUSE}")
    if os.geteuid() != 0:
        fm = shutil.which("fusermount3")
        if fm is None:
            return f"no fusermount3 (what mounts FUSE for a user): install fuse3; {WITHOUT_FUSE}"
        if not os.stat(fm).st_mode & stat.S_ISUID:
            return (f"{fm} is not setuid root, so it cannot mount for you: reinstall fuse3, or run as root; "
                    f"{WITHOUT_FUSE}")
    return None
