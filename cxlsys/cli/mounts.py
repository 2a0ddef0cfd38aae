"""What is mounted where, for ``cxlsys mount``/``umount``: /proc/self/mountinfo, not stat(2).

A FUSE mount whose daemon died (kill -9) answers every stat with ENOTCONN, so
``os.path.ismount`` says False and a second mount would be stacked on the dead one; mountinfo
still lists it, with its fstype (``fuse.cxlsys``).
"""

from __future__ import annotations

import ctypes
import errno
import os
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
