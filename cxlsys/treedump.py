"""Dump a sysfs tree in the golden-6.12 format (one line per entry, tab separated):

``PATH dir`` | ``PATH link TARGET`` | ``PATH file MODE VALUE`` — VALUE is the first
300 bytes with newlines shown as ``|``, or ``<error text>`` when the read fails.
``power/``, ``subsystem`` and ``memoryN/`` are not descended, as in the golden data.
The same function dumps the model's projection or a real directory tree.
"""

from __future__ import annotations

import os
import re
import stat

from cxlsys.errors import KernelError
from cxlsys.sysfs import S_DIR, S_LINK, Sysfs

GOLDEN_ROOTS = ("/sys/bus/cxl", "/sys/bus/dax", "/sys/devices/platform/cxl_acpi.0")
SKIP = re.compile(r"(^|/)(power|subsystem)$|/memory/memory\d+$")
_NEVER = re.compile(r"(?!)")


def _fmt(v: bytes) -> str:
    return v[:300].decode("utf-8", "replace").replace("\n", "|")


def walk_model(fs: Sysfs, roots, skip=SKIP):
    """The model's projection below ``roots``, in dump order: ``(path, "dir", None, None)``,
    ``(path, "link", None, target)``, ``(path, "file", mode, bytes)`` or, for a read that fails,
    ``(path, "file", mode, "<error text>")``; ``skip=None`` descends everything."""
    skip = skip or _NEVER
    for root in roots:
        rel = root[len("/sys/"):]
        e = fs.lookup(rel)
        if e is None:
            continue
        stack = [(rel, e)]
        while stack:
            p, e = stack.pop()
            full = "/sys/" + p
            if e.kind == S_DIR:
                yield full, "dir", None, None
                if skip.search(p) and p != rel:
                    continue
                kids = fs.entries(p)
                for name in sorted(kids, reverse=True):
                    cp = f"{p}/{name}"
                    if skip.search(cp) and kids[name].kind != S_DIR:
                        continue
                    stack.append((cp, kids[name]))
            elif e.kind == S_LINK:
                yield full, "link", None, fs.readlink(p)
            else:
                v: bytes | str
                try:
                    v = fs.read(p) if e.readable else "<Permission denied>"
                except KernelError as err:
                    v = f"<{os.strerror(err.errno)}>"
                yield full, "file", e.mode, v


def dump_model(fs: Sysfs, roots, skip=SKIP) -> list:
    """The model's projection below ``roots`` as dump lines; ``skip=None`` descends everything."""
    out = []
    for full, kind, mode, v in walk_model(fs, roots, skip):
        if kind == "dir":
            out.append(f"{full}\tdir")
        elif kind == "link":
            out.append(f"{full}\tlink\t{v}")
        else:
            out.append(f"{full}\tfile\t{mode:o}\t{_fmt(v) if isinstance(v, bytes) else v}")
    return out


def dump_real(root_dir: str, roots, skip=SKIP) -> list:
    """The same format from a mounted tree (``root_dir`` plays /sys)."""
    skip = skip or _NEVER
    out = []
    for root in roots:
        base = os.path.join(root_dir, root[len("/sys/"):])
        if not os.path.lexists(base):
            continue
        stack = [base]
        while stack:
            p = stack.pop()
            rel = "/sys/" + os.path.relpath(p, root_dir)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out.append(f"{rel}\tlink\t{os.readlink(p)}")
            elif stat.S_ISDIR(st.st_mode):
                out.append(f"{rel}\tdir")
                if skip.search(rel) and p != base:
                    continue
                for name in sorted(os.listdir(p), reverse=True):
                    cp = os.path.join(p, name)
                    if skip.search("/sys/" + os.path.relpath(cp, root_dir)) and not os.path.isdir(cp):
                        continue
                    stack.append(cp)
            else:
                try:
                    with open(p, "rb") as f:
                        v = _fmt(f.read(4096))
                except OSError as e:
                    v = f"<{e.strerror}>"
                out.append(f"{rel}\tfile\t{stat.S_IMODE(st.st_mode):o}\t{v}")
    return out
