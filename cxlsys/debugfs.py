"""A small debugfs, served at /sys/kernel/debug (where debugfs is normally mounted).

``cxlsys/`` holds the simulator's own knobs: fault injection and component state that no
kernel sysfs file shows, e.g. ``cxlsys/bi/<component>/{state,nr_bi,inject}`` for the
Back-Invalidate proposal.  Trees are kernfs nodes (:mod:`cxlsys.kernfs`): ``VDir(entries)`` is a
directory whose ``entries()`` gives ``name -> node``, ``VFile(mode, show, store)`` a file with
plain callables (debugfs files belong to no device).
"""

from __future__ import annotations

import errno

from cxlsys.errors import KernelError
from cxlsys.kernfs import KDir, KFile
from cxlsys.kstrto import strip_newline

VFile = KFile      # a debugfs file: VFile(mode, show, store)
VDir = KDir        # a virtual directory: VDir(entries)


def debugfs_root(sys) -> VDir:
    return VDir(lambda: {"cxlsys": VDir(lambda: _cxlsys_entries(sys))})


def _cxlsys_entries(sys) -> dict:
    out = {}
    if sys.memory is not None:      # memory hotplug knobs (cxlsys/mm/memory_hotplug.py)
        out["memory"] = VDir(sys.memory.debugfs_entries)
    m = sys.machine
    if m is not None and m.bi_components:
        out["bi"] = VDir(lambda: {name: _bi_dir(sys, c) for name, c in m.bi_components.items()})
    return out


def _bi_dir(sys, comp) -> VDir:
    def inject_store(buf: str) -> None:
        v = strip_newline(buf)
        if v not in ("none", "timeout", "error"):
            raise KernelError(errno.EINVAL, f"{comp.name}: inject: expected none, timeout or error")
        comp.fault = None if v == "none" else v

    return VDir(lambda: {
        "kind": VFile(0o444, lambda: f"{comp.kind}\n"),
        "state": VFile(0o444, lambda: f"{comp.state}\n"),
        "nr_bi": VFile(0o444, lambda: f"{comp.nr_bi}\n"),
        "inject": VFile(0o644, lambda: f"{comp.fault or 'none'}\n", inject_store),
    })
