"""drivers/nvdimm/nd.h + nd-core.h + include/linux/libnvdimm.h: what the libnvdimm files share —
flag bits, limits, the bus descriptor a provider registers, the security ops a dimm provider
supplies, the dimm driver's per-dimm data — and the slots for calls that point up the import tree
(the C files call each other freely; Python imports must form a tree, see
:mod:`cxlsys.cxl.core.core`).  This module imports nothing of libnvdimm.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import attrs

from cxlsys.cxl.core.core import Extern

# include/linux/libnvdimm.h: nvdimm->flags bits
NDD_UNARMED = 1            # unarmed memory devices may not persist writes
NDD_LOCKED = 2             # locked memory devices should not be accessed
NDD_SECURITY_OVERWRITE = 3  # memory under security wipes should not be accessed
NDD_WORK_PENDING = 4       # a pending device reference (overwrite query)
NDD_LABELING = 6           # the dimm supports namespace labels
NDD_INCOHERENT = 7         # contents changed: invalidate CPU caches before a region activates
NDD_REGISTER_SYNC = 8      # the provider wants synchronous registration by __nvdimm_create()

ND_IOCTL_MAX_BUFLEN = 4 << 20
ND_CMD_MAX_ELEM = 5
ND_CMD_MAX_ENVELOPE = 256
ND_MAX_MAPPINGS = 32

NVDIMM_PASSPHRASE_LEN = 32
NVDIMM_KEY_DESC_LEN = 22

# enum nvdimm_security_bits
NVDIMM_SECURITY_DISABLED = 0
NVDIMM_SECURITY_UNLOCKED = 1
NVDIMM_SECURITY_LOCKED = 2
NVDIMM_SECURITY_FROZEN = 3
NVDIMM_SECURITY_OVERWRITE = 4

# enum nvdimm_passphrase_type
NVDIMM_USER = 0
NVDIMM_MASTER = 1

UINT_MAX = 0xFFFFFFFF


def test_bit(nr: int, mask: int) -> bool:
    return nr >= 0 and bool((mask >> nr) & 1)


@attrs.define(eq=False, kw_only=True)
class NvdimmBusDescriptor:
    """struct nvdimm_bus_descriptor.  ``ndctl(nd_desc, nvdimm, cmd, buf, buf_len)`` returns
    ``(rc, cmd_rc)``: the transport's 0/-errno and the firmware status (``*cmd_rc``); ``buf`` is a
    bytearray the callback edits in place."""

    provider_name: Optional[str] = None
    module: Optional[str] = None
    cmd_mask: int = 0
    dimm_family_mask: int = 0
    bus_family_mask: int = 0
    ndctl: Optional[Callable[..., tuple[int, int]]] = None
    flush_probe: Optional[Callable[..., int]] = None
    clear_to_send: Optional[Callable[..., int]] = None
    fw_ops: Optional[object] = None
    attr_groups: tuple = ()


@attrs.frozen
class NvdimmSecurityOps:
    """struct nvdimm_security_ops: every op takes the nvdimm first and returns 0 or -errno, except
    ``get_flags(nvdimm, ptype)``, which returns the NVDIMM_SECURITY_* bitmask.  Key data are the
    32-byte passphrases (``struct nvdimm_key_data``)."""

    get_flags: Callable[[Any, int], int]
    freeze: Optional[Callable[[Any], int]] = None
    change_key: Optional[Callable[[Any, bytes, bytes, int], int]] = None
    unlock: Optional[Callable[[Any, bytes], int]] = None
    disable: Optional[Callable[[Any, bytes], int]] = None
    erase: Optional[Callable[[Any, bytes, int], int]] = None
    overwrite: Optional[Callable[[Any, bytes], int]] = None
    query_overwrite: Optional[Callable[[Any], int]] = None
    disable_master: Optional[Callable[[Any, bytes], int]] = None


def nvdimm_security_flags(nvdimm: Any, ptype: int) -> int:
    """nd-core.h: the provider's view of the dimm's security state (0 without security ops)."""
    ops = nvdimm.sec_ops
    if ops is None:
        return 0
    return int(ops.get_flags(nvdimm, ptype))


@attrs.define(eq=False, kw_only=True)
class NvdimmDrvdata:
    """struct nvdimm_drvdata: what the ``nvdimm`` driver keeps while bound — the label area's
    geometry (``nsarea``: status, config_size, max_xfer), a copy of the label area, the current and
    next namespace index and the label size found by validation."""

    dev: Any = attrs.field(repr=False)
    nsarea_status: int = 0
    config_size: int = 0
    max_xfer: int = 0
    data: Optional[bytearray] = attrs.field(default=None, repr=False)
    nslabel_size: int = 0
    ns_current: int = -1
    ns_next: int = -1


def nd_label_next_nsindex(index: int) -> int:
    if index < 0:
        return -1
    return (index + 1) % 2


# ---------------------------------------------------------------- calls up the import tree
def export(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: ``fn`` is the definition of the :class:`Extern` of the same name below."""
    slot = globals().get(fn.__name__)
    if not isinstance(slot, Extern):
        raise AssertionError(f"{fn.__name__} is not declared in cxlsys.nvdimm.nd")
    slot.fn = fn
    return fn


# dimm_devs.c: the label area reads label.c needs, the freeze security.c calls, the delete bus.c calls
nvdimm_get_config_data = Extern("nvdimm_get_config_data", "cxlsys.nvdimm.dimm_devs")
nvdimm_security_freeze = Extern("nvdimm_security_freeze", "cxlsys.nvdimm.dimm_devs")
nvdimm_delete = Extern("nvdimm_delete", "cxlsys.nvdimm.dimm_devs")
