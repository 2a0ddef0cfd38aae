"""drivers/nvdimm/dimm_devs.c: ``nmemN`` — struct nvdimm, its attributes (``state``, ``flags``,
``commands``, ``available_slots``, ``security``, ``frozen``, ``firmware/``, the generic
``modalias``/``devtype`` and the provider's groups such as ``cxl/``), ``__nvdimm_create()`` /
``nvdimm_delete()``, the label-area accessors the ``nvdimm`` driver uses (``nvdimm_init_nsarea()``,
``nvdimm_get_config_data()``, ``nvdimm_set_config_data()``) and ``nvdimm_security_freeze()``.

``/dev/nmemN`` (major 246 "dimmctl", minor = the dimm id) takes the ND_IOCTL_* dimm commands:
:meth:`Nvdimm.ioctl` is bus.c's ``dimm_ioctl()``.
"""

from __future__ import annotations

import errno
import os
import struct
from typing import Any, Optional

import attrs

from cxlsys.base.device import ADMIN_RO, Attr, AttrGroup
from cxlsys.errors import KernelError
from cxlsys.kernel.uaccess import UserMemory
from cxlsys.nvdimm import security
from cxlsys.nvdimm.bus import (
    DIMM_IOCTL,
    ND_SYNC,
    NdDevice,
    NvdimmBus,
    nd_device_attribute_group,
    nd_device_register,
    nd_device_unregister,
    nd_ioctl,
    nvdimm_bus_type,
    walk_to_nvdimm_bus,
)
from cxlsys.nvdimm.label import nd_label_nfree
from cxlsys.nvdimm.nd import (
    NDD_LABELING,
    NDD_LOCKED,
    NDD_REGISTER_SYNC,
    NDD_SECURITY_OVERWRITE,
    NDD_WORK_PENDING,
    NVDIMM_MASTER,
    NVDIMM_SECURITY_DISABLED,
    NVDIMM_SECURITY_FROZEN,
    NVDIMM_SECURITY_LOCKED,
    NVDIMM_SECURITY_OVERWRITE,
    NVDIMM_SECURITY_UNLOCKED,
    NVDIMM_USER,
    NvdimmDrvdata,
    NvdimmSecurityOps,
    export,
    nvdimm_security_flags,
    test_bit,
)
from cxlsys.uapi import ndctl as U


@attrs.define(eq=False, kw_only=True)
class Nvdimm(NdDevice):
    """struct nvdimm: a dimm on an nvdimm bus (``nmemN``)."""

    devtype = "nvdimm"
    nd_device_type = U.ND_DEVICE_DIMM

    id: int = 0
    provider_data: Any = attrs.field(default=None, repr=False)
    flags: int = 0                          # NDD_* bits
    cmd_mask: int = 0                       # ND_CMD_* bits the provider supports
    dimm_id: str = ""
    num_flush: int = 0
    sec_ops: Optional[NvdimmSecurityOps] = attrs.field(default=None, repr=False)
    sec_flags: int = 0                      # nvdimm->sec.flags (NVDIMM_SECURITY_* bits, user passphrase)
    sec_ext_flags: int = 0                  # nvdimm->sec.ext_flags (master passphrase)
    sec_overwrite_tmo: int = 0
    fw_ops: Optional[object] = attrs.field(default=None, repr=False)
    busy: int = 0                           # atomic busy: held by active regions
    provider_groups: tuple = attrs.field(default=(), repr=False)   # dev->groups from the provider
    drvdata: Optional[NvdimmDrvdata] = attrs.field(default=None, repr=False)   # the nvdimm driver's, while bound
    overwrite_work: Any = attrs.field(default=None, repr=False)

    def all_groups(self) -> tuple:
        return super().all_groups() + tuple(self.provider_groups)

    def release(self) -> None:
        nvdimm_bus_type(self.sys).dimm_ida.free(self.id)

    def ioctl(self, cmd: int, arg: int, uaccess: UserMemory, f_flags: int = os.O_RDWR) -> int:
        """dimm_ioctl(): ``f_flags`` are the open file's flags (O_RDONLY refuses write commands)."""
        assert self.devt is not None
        return nd_ioctl(nvdimm_bus_type(self.sys), self.devt[1], cmd, arg, uaccess, DIMM_IOCTL, f_flags)

    # ------------------------------------------------------------ nvdimm_attribute_group
    def commands_show(self) -> str:
        if not self.cmd_mask:
            return "\n"
        return "".join(f"{U.nvdimm_cmd_name(c)} " for c in range(64) if (self.cmd_mask >> c) & 1) + "\n"

    def flags_show(self) -> str:
        return (("label " if test_bit(NDD_LABELING, self.flags) else "")
                + ("lock " if test_bit(NDD_LOCKED, self.flags) else "") + "\n")

    def state_show(self) -> str:
        return "active\n" if self.busy else "idle\n"

    def available_slots_show(self) -> str:
        ndd = self.drvdata
        if ndd is None:
            raise KernelError(errno.ENXIO, f"{self.name}: available_slots: not bound to the nvdimm driver")
        nfree = nd_label_nfree(ndd)
        nfree = nfree - 1 if nfree > 0 else 0           # one slot is held back for label updates
        return f"{nfree}\n"

    def security_show(self) -> str:
        # the test build polls the "hardware" so unlock tests see the state change
        if security.CONFIG_NVDIMM_SECURITY_TEST:
            flags = nvdimm_security_flags(self, NVDIMM_USER)
            if flags != self.sec_flags:           # a show changes nothing unless the device did
                self.sec_flags = flags
        f = self.sec_flags
        for bit, text in ((NVDIMM_SECURITY_OVERWRITE, "overwrite"), (NVDIMM_SECURITY_DISABLED, "disabled"),
                          (NVDIMM_SECURITY_UNLOCKED, "unlocked"), (NVDIMM_SECURITY_LOCKED, "locked")):
            if test_bit(bit, f):
                return f"{text}\n"
        raise KernelError(errno.ENOTTY, f"{self.name}: security: no state")

    def security_store(self, buf: str) -> None:
        # security management only while probing is idle (the system lock) and the dimm not in use
        security.nvdimm_security_store(self, buf)

    def frozen_show(self) -> str:
        return f"{int(test_bit(NVDIMM_SECURITY_FROZEN, self.sec_flags))}\n"

    def nvdimm_visible(self, attr: Attr) -> int:
        if attr.name not in ("security", "frozen"):
            return attr.mode
        ops = self.sec_ops
        if not self.sec_flags or ops is None:
            return 0
        if attr.name == "security":
            # any state mutation ops: writable
            if ops.freeze or ops.disable or ops.change_key or ops.erase or ops.overwrite:
                return attr.mode
            return 0o444
        return attr.mode if ops.freeze else 0

    # ------------------------------------------------------------ firmware/ (activation)
    def activate_show(self) -> str:
        raise KernelError(errno.EOPNOTSUPP, f"{self.name}: no firmware activation ops")

    def activate_store(self, buf: str) -> None:
        raise KernelError(errno.EOPNOTSUPP, f"{self.name}: no firmware activation ops")

    def result_show(self) -> str:
        raise KernelError(errno.EOPNOTSUPP, f"{self.name}: no firmware activation ops")

    def nvdimm_firmware_visible(self, attr: Attr) -> int:
        nvdimm_bus = walk_to_nvdimm_bus(self)
        if nvdimm_bus is None or nvdimm_bus.nd_desc.fw_ops is None or self.fw_ops is None:
            return 0
        return attr.mode

    groups = (
        nd_device_attribute_group,
        AttrGroup([Attr("state", 0o444, "state_show"), Attr("flags", 0o444, "flags_show"),
                   Attr("commands", 0o444, "commands_show"), Attr("available_slots", 0o444, "available_slots_show"),
                   Attr("security", 0o644, "security_show", "security_store"), Attr("frozen", 0o444, "frozen_show")],
                  is_visible="nvdimm_visible"),
        AttrGroup([Attr("activate", 0o600, "activate_show", "activate_store"), ADMIN_RO("result")],
                  name="firmware", is_visible="nvdimm_firmware_visible"),
    )


def is_nvdimm(dev: Any) -> bool:
    return isinstance(dev, Nvdimm)


def to_nvdimm(dev: Any) -> Nvdimm:
    assert isinstance(dev, Nvdimm)
    return dev


def nvdimm_provider_data(nvdimm: Optional[Nvdimm]) -> Any:
    return nvdimm.provider_data if nvdimm is not None else None


def nvdimm_cmd_mask(nvdimm: Nvdimm) -> int:
    return nvdimm.cmd_mask


def __nvdimm_create(nvdimm_bus: NvdimmBus, provider_data: Any, groups: tuple, flags: int, cmd_mask: int,
                    num_flush: int, flush_wpq: Any, dimm_id: str, sec_ops: Optional[NvdimmSecurityOps],
                    fw_ops: Optional[object]) -> Nvdimm:
    """Register ``nmemN`` on ``nvdimm_bus`` (now with NDD_REGISTER_SYNC, else from the nd async
    domain); its security state is read first, since it decides which attributes it shows."""
    sys = nvdimm_bus.sys
    bt = nvdimm_bus_type(sys)
    nid = bt.dimm_ida.alloc()
    name = f"nmem{nid}"
    nvdimm = Nvdimm(name=name, parent=nvdimm_bus, sys=sys, id=nid, provider_data=provider_data, flags=flags,
                    cmd_mask=cmd_mask, dimm_id=dimm_id, num_flush=num_flush, sec_ops=sec_ops, fw_ops=fw_ops,
                    provider_groups=tuple(groups), devt=(bt.nvdimm_major, nid), devname=name)
    nvdimm.sec_flags = nvdimm_security_flags(nvdimm, NVDIMM_USER)
    nvdimm.sec_ext_flags = nvdimm_security_flags(nvdimm, NVDIMM_MASTER)
    try:
        nd_device_register(nvdimm, sync=test_bit(NDD_REGISTER_SYNC, flags))
    except KernelError:
        bt.dimm_ida.free(nid)
        raise
    return nvdimm


@export
def nvdimm_delete(nvdimm: Nvdimm) -> None:
    # shutting down: make the state frozen artificially
    nvdimm.sec_flags |= 1 << NVDIMM_SECURITY_FROZEN
    pending = test_bit(NDD_WORK_PENDING, nvdimm.flags)
    nvdimm.flags &= ~(1 << NDD_WORK_PENDING)
    if pending and nvdimm.overwrite_work is not None:
        nvdimm.overwrite_work.cancel()
    nd_device_unregister(nvdimm, ND_SYNC)


def nvdimm_in_overwrite(nvdimm: Nvdimm) -> bool:
    return test_bit(NDD_SECURITY_OVERWRITE, nvdimm.flags)


@export
def nvdimm_security_freeze(nvdimm: Nvdimm) -> int:
    ops = nvdimm.sec_ops
    if ops is None or ops.freeze is None:
        return -errno.EOPNOTSUPP
    if not nvdimm.sec_flags:
        return -errno.EIO
    if test_bit(NDD_SECURITY_OVERWRITE, nvdimm.flags):
        nvdimm.sys.klog.log(f"nvdimm {nvdimm.name}: Overwrite operation in progress.", "warn")
        return -errno.EBUSY
    rc = ops.freeze(nvdimm)
    nvdimm.sec_flags = nvdimm_security_flags(nvdimm, NVDIMM_USER)
    return rc


def nvdimm_security_setup_events(dev: Nvdimm) -> int:
    """The overwrite state's poll handle: only dimms with an overwrite op need one (none here)."""
    return 0


# ---------------------------------------------------------------- the label area (config data)
def nvdimm_check_config_data(dev: Nvdimm) -> int:
    if not dev.cmd_mask or not test_bit(U.ND_CMD_GET_CONFIG_DATA, dev.cmd_mask):
        return -errno.ENXIO if test_bit(NDD_LABELING, dev.flags) else -errno.ENOTTY
    return 0


def validate_dimm(ndd: Optional[NvdimmDrvdata]) -> None:
    if ndd is None:
        raise KernelError(errno.EINVAL, "no dimm driver data")
    rc = nvdimm_check_config_data(ndd.dev)
    if rc:
        ndd.dev.sys.klog.dev_dbg(ndd.dev, f"validate_dimm error: {rc}")
        raise KernelError(-rc, f"{ndd.dev.name}: no label commands")


def _ndctl(ndd: NvdimmDrvdata, cmd: int, buf: bytearray) -> None:
    nvdimm_bus = walk_to_nvdimm_bus(ndd.dev)
    assert nvdimm_bus is not None
    nd_desc = nvdimm_bus.nd_desc
    ndctl = nd_desc.ndctl
    assert ndctl is not None
    rc, cmd_rc = ndctl(nd_desc, ndd.dev, cmd, buf, len(buf))
    if rc < 0:
        raise KernelError(-rc, f"{ndd.dev.name}: {U.nvdimm_cmd_name(cmd)} failed")
    if cmd_rc < 0:
        raise KernelError(-cmd_rc, f"{ndd.dev.name}: {U.nvdimm_cmd_name(cmd)}: firmware error")


def nvdimm_init_nsarea(ndd: NvdimmDrvdata) -> None:
    """The label area's geometry (GET_CONFIG_SIZE), once."""
    validate_dimm(ndd)
    if ndd.config_size:
        return                                  # already valid
    buf = bytearray(U.SIZEOF_ND_CMD_GET_CONFIG_SIZE)
    ndd.nsarea_status, ndd.config_size, ndd.max_xfer = 0, 0, 0
    _ndctl(ndd, U.ND_CMD_GET_CONFIG_SIZE, buf)
    ndd.nsarea_status, ndd.config_size, ndd.max_xfer = struct.unpack(U.ND_CMD_GET_CONFIG_SIZE_FMT, buf)


@export
def nvdimm_get_config_data(ndd: NvdimmDrvdata, offset: int, length: int) -> bytes:
    """``length`` bytes of the label area at ``offset``, in max_xfer pieces (GET_CONFIG_DATA)."""
    validate_dimm(ndd)
    if offset + length > ndd.config_size:
        raise KernelError(errno.ENXIO, f"{ndd.dev.name}: label read {offset:#x}+{length:#x} past the area")
    max_cmd_size = min(length, ndd.max_xfer)
    out = bytearray()
    hdr = U.SIZEOF_ND_CMD_GET_CONFIG_DATA_HDR
    while len(out) < length:
        if max_cmd_size == 0:
            raise KernelError(errno.ENXIO, f"{ndd.dev.name}: label area max_xfer is 0")
        in_length = min(max_cmd_size, length - len(out))
        buf = bytearray(hdr + in_length)
        struct.pack_into(U.ND_CMD_GET_CONFIG_DATA_HDR_FMT, buf, 0, offset + len(out), in_length, 0)
        _ndctl(ndd, U.ND_CMD_GET_CONFIG_DATA, buf)
        out += buf[hdr:hdr + in_length]
    return bytes(out)


def nvdimm_set_config_data(ndd: NvdimmDrvdata, offset: int, data: bytes) -> None:
    """Write ``data`` into the label area at ``offset`` (SET_CONFIG_DATA, max_xfer pieces)."""
    validate_dimm(ndd)
    if offset + len(data) > ndd.config_size:
        raise KernelError(errno.ENXIO, f"{ndd.dev.name}: label write {offset:#x}+{len(data):#x} past the area")
    max_cmd_size = min(len(data), ndd.max_xfer)
    hdr = U.SIZEOF_ND_CMD_SET_CONFIG_HDR
    done = 0
    while done < len(data):
        if max_cmd_size == 0:
            raise KernelError(errno.ENXIO, f"{ndd.dev.name}: label area max_xfer is 0")
        in_length = min(max_cmd_size, len(data) - done)
        buf = bytearray(hdr + in_length + 4)       # the status follows the data
        struct.pack_into(U.ND_CMD_SET_CONFIG_HDR_FMT, buf, 0, offset + done, in_length)
        buf[hdr:hdr + in_length] = data[done:done + in_length]
        _ndctl(ndd, U.ND_CMD_SET_CONFIG_DATA, buf)
        done += in_length


def nvdimm_set_labeling(dev: Nvdimm) -> None:
    dev.flags |= 1 << NDD_LABELING


def nvdimm_set_locked(dev: Nvdimm) -> None:
    dev.flags |= 1 << NDD_LOCKED


def nvdimm_clear_locked(dev: Nvdimm) -> None:
    dev.flags &= ~(1 << NDD_LOCKED)

