"""drivers/nvdimm/core.c: the bus device's attributes (``commands``, ``wait_probe``, ``provider``,
``firmware/``), the bus lock, ``nd_fletcher64()``.  ``libnvdimm_init()`` (this file's module init)
is :func:`cxlsys.nvdimm.libnvdimm_init`, where every file it calls is already imported.
"""

from __future__ import annotations

import errno
import struct
from typing import Any

from cxlsys.base.device import Attr, AttrGroup
from cxlsys.errors import KernelError
from cxlsys.uapi.ndctl import nvdimm_bus_cmd_name


def nvdimm_bus_lock(dev: Any) -> None:
    """The bus's reconfig_mutex: every model operation already runs under the system lock."""


def nvdimm_bus_unlock(dev: Any) -> None:
    """See :func:`nvdimm_bus_lock`."""


def nd_fletcher64(data: bytes, le: bool = True) -> int:
    """The Fletcher-64 checksum of namespace labels and indexes (32-bit words)."""
    lo32 = 0
    hi32 = 0
    n = len(data) // 4
    words = struct.unpack_from(f"{'<' if le else '='}{n}I", data)
    for w in words:
        lo32 = (lo32 + w) & 0xFFFFFFFF
        hi32 = (hi32 + lo32) & 0xFFFFFFFF
    return (hi32 << 32) | lo32


# ---------------------------------------------------------------- nvdimm_bus_attribute_group
def commands_show(nvdimm_bus: Any) -> str:
    mask = nvdimm_bus.nd_desc.cmd_mask
    return "".join(f"{nvdimm_bus_cmd_name(c)} " for c in range(64) if (mask >> c) & 1) + "\n"


def nvdimm_bus_provider(nvdimm_bus: Any) -> str:
    nd_desc = nvdimm_bus.nd_desc
    if nd_desc.provider_name:
        return nd_desc.provider_name
    if nvdimm_bus.parent is not None:
        return nvdimm_bus.parent.name
    return "unknown"


def provider_show(nvdimm_bus: Any) -> str:
    return f"{nvdimm_bus_provider(nvdimm_bus)}\n"


def wait_probe_show(nvdimm_bus: Any) -> str:
    """Flush the provider's probing and the nd async domain (registration here is synchronous)."""
    nd_desc = nvdimm_bus.nd_desc
    if nd_desc.flush_probe is not None:
        rc = nd_desc.flush_probe(nd_desc)
        if rc:
            raise KernelError(-rc, f"{nvdimm_bus.name}: wait_probe: flush_probe failed")
    return "1\n"


nvdimm_bus_attribute_group = AttrGroup([Attr("commands", 0o444, commands_show),
                                        Attr("wait_probe", 0o444, wait_probe_show),
                                        Attr("provider", 0o444, provider_show)])


# ---------------------------------------------------------------- firmware activation (bus level)
def capability_show(nvdimm_bus: Any) -> str:
    raise KernelError(errno.EOPNOTSUPP, f"{nvdimm_bus.name}: no firmware activation ops")


def activate_show(nvdimm_bus: Any) -> str:
    raise KernelError(errno.EOPNOTSUPP, f"{nvdimm_bus.name}: no firmware activation ops")


def activate_store(nvdimm_bus: Any, buf: str) -> None:
    raise KernelError(errno.EOPNOTSUPP, f"{nvdimm_bus.name}: no firmware activation ops")


def nvdimm_bus_firmware_visible(nvdimm_bus: Any, attr: Attr) -> int:
    """Both files disappear without the provider's firmware-activate ops (CXL has none)."""
    if nvdimm_bus.nd_desc.fw_ops is None:
        return 0
    return attr.mode


nvdimm_bus_firmware_attribute_group = AttrGroup(
    [Attr("activate", 0o600, activate_show, activate_store), Attr("capability", 0o400, capability_show)],
    name="firmware", is_visible="nvdimm_bus_firmware_visible")

nvdimm_bus_attribute_groups = (nvdimm_bus_attribute_group, nvdimm_bus_firmware_attribute_group)
