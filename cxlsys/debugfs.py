"""A small debugfs, served at /sys/kernel/debug (where debugfs is normally mounted).

``cxlsys/`` holds the simulator's own knobs: fault injection and component state that no
kernel sysfs file shows, e.g. ``cxlsys/bi/<component>/{state,nr_bi,inject}`` for the
Back-Invalidate proposal.  Trees are kernfs nodes (:mod:`cxlsys.kernfs`): ``VDir(entries)`` is a
directory whose ``entries()`` gives ``name -> node``, ``VFile(mode, show, store)`` a file with
plain callables (debugfs files belong to no device).

``cxl/`` is the CXL core's own debugfs (drivers/cxl/core/core.c ``cxl_debugfs_create_dir``):
``cxl/mbox/raw_allow_all`` (mbox.c) and, for each memdev bound to cxl_mem, ``cxl/memN/`` with
``dpamem`` and the poison injection files of drivers/cxl/mem.c (``inject_poison``/``clear_poison``,
write-only, a u64 DPA parsed with base 0, present when the device's CEL has the command).
"""

from __future__ import annotations

import errno
import functools

from cxlsys.errors import KernelError
from cxlsys.kernfs import KDir, KFile
from cxlsys.kstrto import kstrtobool_from_user, kstrtoull, strip_newline
from cxlsys.tracefs import tracefs_root

VFile = KFile      # a debugfs file: VFile(mode, show, store)
VDir = KDir        # a virtual directory: VDir(entries)


def debugfs_root(sys) -> VDir:
    return VDir(lambda: {"cxlsys": VDir(lambda: _cxlsys_entries(sys)), "cxl": VDir(lambda: _cxl_entries(sys)),
                 "tracing": tracefs_root(sys)})


def _cxl_entries(sys) -> dict:
    from cxlsys.cxl.core import mbox
    from cxlsys.cxl.core.memdev import CxlMemdev

    def raw_allow_all_store(buf: str) -> None:
        # debugfs_create_bool(): debugfs_write_file_bool() parses with kstrtobool_from_user() and
        # returns the count even when that fails (the value is then left as it is)
        try:
            val = kstrtobool_from_user(buf)
        except KernelError:
            return
        mbox.set_cxl_raw_allow_all(sys, val)

    out: dict = {"mbox": VDir(lambda: {
        "raw_allow_all": VFile(0o600, lambda: "Y\n" if mbox.cxl_raw_allow_all(sys) else "N\n", raw_allow_all_store),
    })}
    for d in sys.all_devices():
        if isinstance(d, CxlMemdev) and d.driver is not None and d.driver.name == "cxl_mem":
            out[d.name] = VDir(functools.partial(_cxl_memdev_dir, d))
    return out


def _cxl_memdev_dir(md) -> dict:
    """drivers/cxl/mem.c: what cxl_mem_probe() puts in debugfs for a memdev."""
    from cxlsys.cxl import cxlmem as M
    from cxlsys.cxl.core.memdev import cxl_clear_poison, cxl_dpa_debug, cxl_inject_poison

    def dpa_store(fn):
        # DEFINE_DEBUGFS_ATTRIBUTE: simple_attr_write() copies at most 23 bytes, then kstrtoull(, 0)
        return lambda buf: fn(md, kstrtoull(buf[:23], 0))

    out = {"dpamem": VFile(0o444, lambda: cxl_dpa_debug(md))}
    enabled = md.mds.poison.enabled_cmds
    if M.CXL_POISON_ENABLED_INJECT in enabled:
        out["inject_poison"] = VFile(0o200, None, dpa_store(cxl_inject_poison))
    if M.CXL_POISON_ENABLED_CLEAR in enabled:
        out["clear_poison"] = VFile(0o200, None, dpa_store(cxl_clear_poison))
    return out


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
