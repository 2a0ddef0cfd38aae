"""drivers/cxl/pmem.c + drivers/cxl/security.c (cxl_pmem.ko): CXL persistent memory on libnvdimm.

* ``cxl_nvdimm_bridge``: registers the nvdimm bus ``ndbusN`` below ``nvdimm-bridgeN`` with the
  descriptor whose ``ndctl()`` is :func:`cxl_pmem_ctl` (provider "CXL"; the cxl_test mock's
  ``__wrap_nvdimm_bus_register()`` renames it "cxl_test" when the bridge sits below the mock's
  ACPI0017 device — ``ndctl list -b cxl_test`` finds the bus by that name);
* ``cxl_nvdimm``: creates ``nmemN`` for ``pmemN`` with the label commands (get_size, get_data,
  set_data), the ``cxl/`` group (``id`` = the serial, ``provider`` = ``pmemN``), the
  ``cxl_security_ops`` and the memdev's serial as its dimm id; takes SET_LSA and
  SET_SHUTDOWN_STATE away from ``/dev/cxl/memN`` while bound;
* ``cxl_pmem_region``: registered, probe not modelled (no nd regions).

Label commands become GET_LSA/SET_LSA and security ops the security mailbox commands, sent with
:func:`cxlsys.cxl.core.mbox.cxl_internal_send_cmd` to the memdev's mailbox.
"""

from __future__ import annotations

import errno
import struct
from typing import Any, Optional

import attrs

from cxlsys.base.bus import Driver
from cxlsys.base.device import Attr, AttrGroup, Device
from cxlsys.cxl import cxlmem as M
from cxlsys.cxl.core import mbox as MB
from cxlsys.cxl.core.memdev import clear_exclusive_cxl_commands, set_exclusive_cxl_commands
from cxlsys.cxl.core.pmem import CxlNvdimm, CxlNvdimmBridge, CxlPmemRegion
from cxlsys.cxl.cxlmem import (
    CXL_DISABLE_PASS,
    CXL_GET_SECURITY_OUTPUT,
    CXL_MBOX_GET_LSA,
    CXL_PASS_ERASE,
    CXL_PMEM_SEC_PASS_MASTER,
    CXL_PMEM_SEC_PASS_USER,
    CXL_SET_PASS,
)
from cxlsys.errors import KernelError
from cxlsys.nvdimm.bus import nvdimm_bus_register, nvdimm_bus_unregister
from cxlsys.nvdimm.dimm_devs import Nvdimm, __nvdimm_create, nvdimm_delete, nvdimm_provider_data
from cxlsys.nvdimm.nd import (
    NDD_LABELING,
    NDD_REGISTER_SYNC,
    NVDIMM_MASTER,
    NVDIMM_PASSPHRASE_LEN,
    NVDIMM_SECURITY_DISABLED,
    NVDIMM_SECURITY_FROZEN,
    NVDIMM_SECURITY_LOCKED,
    NVDIMM_SECURITY_UNLOCKED,
    NvdimmBusDescriptor,
    NvdimmSecurityOps,
)
from cxlsys.uapi import cxl_mem as CU
from cxlsys.uapi import ndctl as U

# ---------------------------------------------------------------- payloads (drivers/cxl/cxlmem.h)
CXL_MBOX_SET_LSA = struct.Struct("<II")          # struct cxl_mbox_set_lsa: offset, reserved, then data[]

# cxl_pmem_init(): what the cxl_nvdimm driver holds for itself while bound
exclusive_cmds = frozenset({CU.CXL_MEM_COMMAND_ID_SET_SHUTDOWN_STATE, CU.CXL_MEM_COMMAND_ID_SET_LSA})


def to_cxl_memdev_state(cxlmd: Any) -> M.CxlMemdevState:
    return cxlmd.mds


def _send(mds: M.CxlMemdevState, cmd: M.CxlMboxCmd) -> int:
    """cxl_internal_send_cmd() as the C callers see it: 0 or -errno."""
    try:
        return MB.cxl_internal_send_cmd(mds, cmd)
    except KernelError as e:
        return -e.errno


def _mds_of(nvdimm: Nvdimm) -> M.CxlMemdevState:
    cxl_nvd = nvdimm_provider_data(nvdimm)
    return to_cxl_memdev_state(cxl_nvd.cxlmd)


# ---------------------------------------------------------------- the nmem's cxl/ group
def provider_show(nvdimm: Nvdimm) -> str:
    return f"{nvdimm_provider_data(nvdimm).name}\n"


def id_show(nvdimm: Nvdimm) -> str:
    return f"{_mds_of(nvdimm).serial}\n"           # "%lld" of cxlds->serial


cxl_dimm_attribute_group = AttrGroup([Attr("id", 0o444, id_show), Attr("provider", 0o444, provider_show)],
                                     name="cxl")
cxl_dimm_attribute_groups = (cxl_dimm_attribute_group,)


# ---------------------------------------------------------------- label commands
def cxl_pmem_get_config_size(mds: M.CxlMemdevState, buf: bytearray, buf_len: int) -> int:
    if U.SIZEOF_ND_CMD_GET_CONFIG_SIZE > buf_len:
        return -errno.EINVAL
    max_xfer = mds.payload_size - CXL_MBOX_SET_LSA.size
    struct.pack_into(U.ND_CMD_GET_CONFIG_SIZE_FMT, buf, 0, 0, mds.lsa_size, max_xfer)
    return 0


def cxl_pmem_get_config_data(mds: M.CxlMemdevState, buf: bytearray, buf_len: int) -> int:
    hdr = U.SIZEOF_ND_CMD_GET_CONFIG_DATA_HDR
    if hdr > buf_len:
        return -errno.EINVAL
    in_offset, in_length, _status = struct.unpack_from(U.ND_CMD_GET_CONFIG_DATA_HDR_FMT, buf)
    if hdr + in_length > buf_len:
        return -errno.EINVAL
    cmd = M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_GET_LSA, payload_in=CXL_MBOX_GET_LSA.pack(in_offset, in_length),
                       size_out=in_length)
    rc = _send(mds, cmd)
    if rc == 0:
        out = bytes(cmd.payload_out[:in_length])
        buf[hdr:hdr + len(out)] = out
    struct.pack_into("<I", buf, 8, 0)              # cmd->status = 0
    return rc


def cxl_pmem_set_config_data(mds: M.CxlMemdevState, buf: bytearray, buf_len: int) -> int:
    hdr = U.SIZEOF_ND_CMD_SET_CONFIG_HDR
    if hdr > buf_len:
        return -errno.EINVAL
    in_offset, in_length = struct.unpack_from(U.ND_CMD_SET_CONFIG_HDR_FMT, buf)
    # a 4-byte status follows the input data in the payload
    if hdr + in_length + 4 > buf_len:
        return -errno.EINVAL
    payload = CXL_MBOX_SET_LSA.pack(in_offset, 0) + bytes(buf[hdr:hdr + in_length])
    cmd = M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_SET_LSA, payload_in=payload)
    rc = _send(mds, cmd)
    struct.pack_into("<I", buf, hdr + in_length, 0)   # the "firmware" status
    return rc


def cxl_pmem_nvdimm_ctl(nvdimm: Nvdimm, cmd: int, buf: bytearray, buf_len: int) -> int:
    if not (nvdimm.cmd_mask >> cmd) & 1:
        return -errno.ENOTTY
    mds = _mds_of(nvdimm)
    if cmd == U.ND_CMD_GET_CONFIG_SIZE:
        return cxl_pmem_get_config_size(mds, buf, buf_len)
    if cmd == U.ND_CMD_GET_CONFIG_DATA:
        return cxl_pmem_get_config_data(mds, buf, buf_len)
    if cmd == U.ND_CMD_SET_CONFIG_DATA:
        return cxl_pmem_set_config_data(mds, buf, buf_len)
    return -errno.ENOTTY


def cxl_pmem_ctl(nd_desc: NvdimmBusDescriptor, nvdimm: Optional[Nvdimm], cmd: int, buf: bytearray,
                 buf_len: int) -> tuple[int, int]:
    """The bus descriptor's ndctl(): no firmware status to translate (cmd_rc 0), no bus commands."""
    if nvdimm is None:
        return -errno.ENOTTY, 0
    return cxl_pmem_nvdimm_ctl(nvdimm, cmd, buf, buf_len), 0


# ---------------------------------------------------------------- drivers/cxl/security.c
def cxl_pmem_get_security_flags(nvdimm: Nvdimm, ptype: int) -> int:
    cmd = M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_GET_SECURITY_STATE, size_out=CXL_GET_SECURITY_OUTPUT.size)
    if _send(_mds_of(nvdimm), cmd) < 0:
        return 0
    (sec_out,) = CXL_GET_SECURITY_OUTPUT.unpack(bytes(cmd.payload_out[:4]).ljust(4, b"\0"))
    flags = 0
    if ptype == NVDIMM_MASTER:
        flags |= 1 << (NVDIMM_SECURITY_UNLOCKED if sec_out & M.CXL_PMEM_SEC_STATE_MASTER_PASS_SET
                       else NVDIMM_SECURITY_DISABLED)
        if sec_out & M.CXL_PMEM_SEC_STATE_MASTER_PLIMIT:
            flags |= 1 << NVDIMM_SECURITY_FROZEN
        return flags
    if sec_out & M.CXL_PMEM_SEC_STATE_USER_PASS_SET:
        if sec_out & (M.CXL_PMEM_SEC_STATE_FROZEN | M.CXL_PMEM_SEC_STATE_USER_PLIMIT):
            flags |= 1 << NVDIMM_SECURITY_FROZEN
        flags |= 1 << (NVDIMM_SECURITY_LOCKED if sec_out & M.CXL_PMEM_SEC_STATE_LOCKED else NVDIMM_SECURITY_UNLOCKED)
    else:
        flags |= 1 << NVDIMM_SECURITY_DISABLED
    return flags


def _pass_type(ptype: int) -> int:
    return CXL_PMEM_SEC_PASS_MASTER if ptype == NVDIMM_MASTER else CXL_PMEM_SEC_PASS_USER


def _pass(data: bytes) -> bytes:
    return bytes(data[:NVDIMM_PASSPHRASE_LEN]).ljust(NVDIMM_PASSPHRASE_LEN, b"\0")


def cxl_pmem_security_change_key(nvdimm: Nvdimm, old_data: bytes, new_data: bytes, ptype: int) -> int:
    payload = CXL_SET_PASS.pack(_pass_type(ptype), _pass(old_data), _pass(new_data))
    return _send(_mds_of(nvdimm), M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_SET_PASSPHRASE, payload_in=payload))


def __cxl_pmem_security_disable(nvdimm: Nvdimm, key_data: bytes, ptype: int) -> int:
    payload = CXL_DISABLE_PASS.pack(_pass_type(ptype), _pass(key_data))
    return _send(_mds_of(nvdimm), M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_DISABLE_PASSPHRASE, payload_in=payload))


def cxl_pmem_security_disable(nvdimm: Nvdimm, key_data: bytes) -> int:
    return __cxl_pmem_security_disable(nvdimm, key_data, 0)


def cxl_pmem_security_disable_master(nvdimm: Nvdimm, key_data: bytes) -> int:
    return __cxl_pmem_security_disable(nvdimm, key_data, NVDIMM_MASTER)


def cxl_pmem_security_freeze(nvdimm: Nvdimm) -> int:
    return _send(_mds_of(nvdimm), M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_FREEZE_SECURITY))


def cxl_pmem_security_unlock(nvdimm: Nvdimm, key_data: bytes) -> int:
    rc = _send(_mds_of(nvdimm), M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_UNLOCK, payload_in=_pass(key_data)))
    return rc if rc < 0 else 0


def cxl_pmem_security_passphrase_erase(nvdimm: Nvdimm, key: bytes, ptype: int) -> int:
    payload = CXL_PASS_ERASE.pack(_pass_type(ptype), _pass(key))
    rc = _send(_mds_of(nvdimm), M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_PASSPHRASE_SECURE_ERASE, payload_in=payload))
    return rc if rc < 0 else 0


cxl_security_ops = NvdimmSecurityOps(
    get_flags=cxl_pmem_get_security_flags,
    change_key=cxl_pmem_security_change_key,
    disable=cxl_pmem_security_disable,
    freeze=cxl_pmem_security_freeze,
    unlock=cxl_pmem_security_unlock,
    erase=cxl_pmem_security_passphrase_erase,
    disable_master=cxl_pmem_security_disable_master,
)


# ---------------------------------------------------------------- drivers
def wrap_nvdimm_bus_register(cxl_nvb: CxlNvdimmBridge, nd_desc: NvdimmBusDescriptor):
    """tools/testing/cxl/test/mock.c's __wrap_nvdimm_bus_register(): a bridge of the mock (its
    grandparent is the mock's ACPI0017 platform device) registers as provider "cxl_test"."""
    m = cxl_nvb.sys.machine
    host = cxl_nvb.parent.parent if cxl_nvb.parent is not None else None
    if m is not None and m.topo.module == "cxl_test" and host is not None and host is m.acpi_dev:
        nd_desc.provider_name = "cxl_test"
    return nvdimm_bus_register(cxl_nvb, nd_desc)


@attrs.define(eq=False, kw_only=True)
class CxlNvdimmBridgeDriver(Driver):
    name: str = "cxl_nvdimm_bridge"
    module: Optional[str] = "cxl_pmem"
    bindable: bool = False

    def match(self, dev: Device) -> bool:
        return isinstance(dev, CxlNvdimmBridge)

    def probe(self, dev: Device) -> None:
        assert isinstance(dev, CxlNvdimmBridge)
        cxl_nvdimm_bridge_probe(dev)


def cxl_nvdimm_bridge_probe(cxl_nvb: CxlNvdimmBridge) -> None:
    cxl_nvb.nd_desc = NvdimmBusDescriptor(provider_name="CXL", module="cxl_pmem", ndctl=cxl_pmem_ctl)
    cxl_nvb.nvdimm_bus = wrap_nvdimm_bus_register(cxl_nvb, cxl_nvb.nd_desc)
    cxl_nvb.devm_add_action(lambda: unregister_nvdimm_bus(cxl_nvb), "unregister_nvdimm_bus")


def detach_nvdimm(dev: Device, cxl_nvb: CxlNvdimmBridge) -> None:
    if isinstance(dev, CxlNvdimm) and dev.driver is not None and dev.bridge is cxl_nvb:
        dev.driver.release(dev)


def unregister_nvdimm_bus(cxl_nvb: CxlNvdimmBridge) -> None:
    nvdimm_bus = cxl_nvb.nvdimm_bus
    for dev in list(cxl_nvb.sys.cxl_bus.devices):
        detach_nvdimm(dev, cxl_nvb)
    cxl_nvb.nvdimm_bus = None
    nvdimm_bus_unregister(nvdimm_bus)


@attrs.define(eq=False, kw_only=True)
class CxlNvdimmDriver(Driver):
    name: str = "cxl_nvdimm"
    module: Optional[str] = "cxl_pmem"
    bindable: bool = False

    def match(self, dev: Device) -> bool:
        return isinstance(dev, CxlNvdimm)

    def probe(self, dev: Device) -> None:
        assert isinstance(dev, CxlNvdimm)
        cxl_nvdimm_probe(dev)


def cxl_nvdimm_probe(cxl_nvd: CxlNvdimm) -> None:
    cxl_nvb = cxl_nvd.bridge
    if cxl_nvb is None or cxl_nvb.nvdimm_bus is None:
        raise KernelError(errno.ENXIO, f"{cxl_nvd.name}: the nvdimm bridge has no nvdimm bus")
    mds = to_cxl_memdev_state(cxl_nvd.cxlmd)
    set_exclusive_cxl_commands(mds, set(exclusive_cmds))
    cxl_nvd.devm_add_action(lambda: clear_exclusive_cxl_commands(mds, set(exclusive_cmds)), "clear_exclusive")
    flags = (1 << NDD_LABELING) | (1 << NDD_REGISTER_SYNC)
    cmd_mask = (1 << U.ND_CMD_GET_CONFIG_SIZE) | (1 << U.ND_CMD_GET_CONFIG_DATA) | (1 << U.ND_CMD_SET_CONFIG_DATA)
    nvdimm = __nvdimm_create(cxl_nvb.nvdimm_bus, cxl_nvd, cxl_dimm_attribute_groups, flags, cmd_mask, 0, None,
                             cxl_nvd.dev_id, cxl_security_ops, None)
    cxl_nvd.nvdimm = nvdimm
    cxl_nvd.devm_add_action(lambda: unregister_nvdimm(cxl_nvd, nvdimm), "unregister_nvdimm")


def unregister_nvdimm(cxl_nvd: CxlNvdimm, nvdimm: Nvdimm) -> None:
    cxl_nvd.nvdimm = None
    nvdimm_delete(nvdimm)


@attrs.define(eq=False, kw_only=True)
class CxlPmemRegionDriver(Driver):
    """Binds ``pmem_regionN``; nvdimm_pmem_region_create() (an nd region) is not modelled."""

    name: str = "cxl_pmem_region"
    module: Optional[str] = "cxl_pmem"
    bindable: bool = False

    def match(self, dev: Device) -> bool:
        return isinstance(dev, CxlPmemRegion)


def pmem_drivers() -> list:
    """cxl_pmem_init(): the bridge, nvdimm and pmem region drivers, in that order."""
    return [CxlNvdimmBridgeDriver(), CxlNvdimmDriver(), CxlPmemRegionDriver()]
