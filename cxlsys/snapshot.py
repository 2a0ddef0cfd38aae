"""``cxlsys snapshot DIR``: the projected tree as plain files, directories and relative links.

What :func:`write_snapshot` writes is what a static copy of the real ``/sys`` would hold: a
directory per directory, a symlink per link (relative, as sysfs's are, so the copy works wherever
it is put or bind-mounted), a regular file per attribute holding the value a read returns now, with
the attribute's mode.  An attribute that cannot be read (no show, 0200, or the show refuses) is an
empty file; a tracefs buffer (:func:`cxlsys.tracefs.volatile`) is left empty rather than consumed.
It is the floor every benchmark compares the mount with (the same tree on tmpfs) and a bug report's
attachment; a running mount is copied from its daemon (``cxlsys snapshot --from MOUNTPOINT``), under
the model's lock, so the copy is one state.
"""

from __future__ import annotations

import os

import attrs

from cxlsys.errors import KernelError
from cxlsys.sysfs import S_DIR, S_LINK, Sysfs
from cxlsys.tracefs import volatile

__all__ = ["SnapshotStats", "write_snapshot"]


@attrs.define
class SnapshotStats:
    dirs: int = 0
    files: int = 0
    links: int = 0
    unreadable: int = 0          # files written empty: no show, not readable, or the show refused
    bytes: int = 0

    def summary(self) -> str:
        return (f"{self.dirs} directories, {self.files} files ({self.unreadable} empty: unreadable), "
                f"{self.links} links, {self.bytes} bytes")


def write_snapshot(fs: Sysfs, dest: str, root: str = "") -> SnapshotStats:
    """Write the tree below ``root`` (a path below /sys; "" = all of it) into ``dest``, which must
    not exist or be an empty directory.  Returns what was written.  Reads hold the model's lock."""
    if os.path.lexists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise FileExistsError(f"{dest}: exists and is not an empty directory")
    os.makedirs(dest, exist_ok=True)
    st = SnapshotStats()
    base = root.strip("/")
    dir_modes = []
    with fs.sys.lock:
        for p, e in fs.walk(base):
            rel = p[len(base):].lstrip("/") if base else p
            if not rel:             # the root itself: dest
                continue
            out = os.path.join(dest, rel)
            if e.kind == S_DIR:
                os.mkdir(out, 0o755)
                dir_modes.append((out, e.mode))
                st.dirs += 1
            elif e.kind == S_LINK:
                target = fs.readlink(p)
                os.symlink(target, out)
                st.links += 1
            else:
                data = b""
                if e.readable and not volatile(p):
                    try:
                        data = fs.read_at(p, 0, None)
                    except KernelError:
                        st.unreadable += 1
                else:
                    st.unreadable += 1
                fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
                os.chmod(out, e.mode)
                st.files += 1
                st.bytes += len(data)
    for out, mode in reversed(dir_modes):       # deepest first: a read-only directory last
        os.chmod(out, mode)
    return st
