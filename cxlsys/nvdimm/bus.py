"""drivers/nvdimm/bus.c: the ``nd`` bus type, bus devices (``ndbusN``) and their control device
(``ndbusN/nd/ndctlN``, ``/dev/ndctlN``), device registration on the bus, the generic ``modalias``/
``devtype`` attributes, and the ioctl path of ``/dev/ndctlN`` and ``/dev/nmemN``
(``nd_ioctl()``/``__nd_ioctl()``: command descriptors, envelope sizes, the read-only rule,
``nd_cmd_clear_to_send()``, then the provider's ``ndctl()``).

The module globals of bus.c and dimm_devs.c (``nd_ida``, ``dimm_ida``, ``nvdimm_bus_list``, the two
char majors) live in the bus type object, ``sys.buses["nd"]`` (:class:`NvdimmBusType`), together
with the key source security.c looks keys up in (:mod:`cxlsys.nvdimm.keys`).
"""

from __future__ import annotations

import errno
import os
import struct
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import attrs

from cxlsys.base.bus import Bus, Driver
from cxlsys.base.device import Attr, AttrGroup, Device, device_add, device_del
from cxlsys.errors import KernelError
from cxlsys.ida import IDA
from cxlsys.kernel.uaccess import UserMemory
from cxlsys.nvdimm import core, nd
from cxlsys.nvdimm.keys import KeySource, ProcessKeyrings
from cxlsys.nvdimm.nd import ND_CMD_MAX_ENVELOPE, ND_IOCTL_MAX_BUFLEN, UINT_MAX, NvdimmBusDescriptor, test_bit
from cxlsys.uapi import ndctl as U

if TYPE_CHECKING:  # pragma: no cover
    from cxlsys.system import System

# the dynamic char majors of "ndctl" and "dimmctl" as Linux 6.12 hands them out on cxl_test
# (register_chrdev(0, ...) in nvdimm_bus_init(): ndctl first, 247, then dimmctl, 246)
NVDIMM_BUS_MAJOR = 247
NVDIMM_MAJOR = 246

ND_SYNC, ND_ASYNC = range(2)            # enum nd_async_mode
BUS_IOCTL, DIMM_IOCTL = range(2)        # enum nd_ioctl_mode


@attrs.define(eq=False, kw_only=True)
class NvdimmBusType(Bus):
    """``nvdimm_bus_type`` ("nd") and libnvdimm's module state."""

    nd_ida: IDA = attrs.field(factory=lambda: IDA("nd_ida"))
    dimm_ida: IDA = attrs.field(factory=lambda: IDA("dimm_ida"))
    nvdimm_bus_list: list = attrs.field(factory=list, repr=False)
    nvdimm_bus_major: int = NVDIMM_BUS_MAJOR
    nvdimm_major: int = NVDIMM_MAJOR
    keys: KeySource = attrs.field(factory=ProcessKeyrings, repr=False)


def nvdimm_bus_type(sys: "System") -> NvdimmBusType:
    bt = sys.buses.get("nd")
    if not isinstance(bt, NvdimmBusType):
        raise KernelError(errno.ENXIO, "libnvdimm is not loaded (no nd bus)")
    return bt


# ---------------------------------------------------------------- device types on the bus
def to_nd_device_type(dev: Any) -> int:
    """ND_DEVICE_* of a device (0 for a bus device): its class's ``nd_device_type``."""
    return int(getattr(dev, "nd_device_type", 0))


def nvdimm_bus_uevent_modalias(dev: Any) -> str:
    return f"nd:t{to_nd_device_type(dev)}"


def modalias_show(dev: Any) -> str:
    return f"{nvdimm_bus_uevent_modalias(dev)}\n"


def devtype_show(dev: Any) -> str:
    return f"{dev.devtype}\n"


# generic attributes of every device on an nd bus (dimms, regions, namespaces; not the bus device)
nd_device_attribute_group = AttrGroup([Attr("modalias", 0o444, modalias_show), Attr("devtype", 0o444, devtype_show)])


@attrs.define(eq=False, kw_only=True)
class NdDevice(Device):
    """A device on the nd bus: ``MODALIAS=nd:t<type>`` in its uevent (nvdimm_bus_uevent)."""

    nd_device_type: ClassVar[int] = 0

    def modalias(self) -> str:
        return nvdimm_bus_uevent_modalias(self)


@attrs.define(eq=False, kw_only=True)
class NvdimmBus(NdDevice):
    """struct nvdimm_bus: ``ndbusN`` below the provider's device."""

    id: int = 0
    nd_desc: NvdimmBusDescriptor = attrs.field(factory=NvdimmBusDescriptor, repr=False)
    probe_active: int = 0
    ioctl_active: int = 0

    groups = core.nvdimm_bus_attribute_groups

    def nvdimm_bus_firmware_visible(self, attr: Attr) -> int:
        return core.nvdimm_bus_firmware_visible(self, attr)

    def release(self) -> None:
        bt = self.bus
        if isinstance(bt, NvdimmBusType):
            bt.nd_ida.free(self.id)


def is_nvdimm_bus(dev: Any) -> bool:
    return isinstance(dev, NvdimmBus)


def walk_to_nvdimm_bus(dev: Optional[Device]) -> Optional[NvdimmBus]:
    d = dev
    while d is not None:
        if isinstance(d, NvdimmBus):
            return d
        d = d.parent
    return None


@attrs.define(eq=False, kw_only=True)
class NdClassDir(Device):
    """The class glue directory ``ndbusN/nd/`` that holds the bus's ``ndctlN``."""

    has_uevent = False


@attrs.define(eq=False, kw_only=True)
class NdctlDev(Device):
    """``ndctlN`` of class ``nd``: the bus's control node ``/dev/ndctlN`` (bus ioctls)."""

    dev_class: ClassVar[str] = "nd"
    nvdimm_bus: NvdimmBus = attrs.field(repr=False)

    def links(self) -> dict:
        return {"device": self.nvdimm_bus, "subsystem": f"class/{self.dev_class}"}

    def ioctl(self, cmd: int, arg: int, uaccess: UserMemory, f_flags: int = os.O_RDWR) -> int:
        assert self.devt is not None
        return nd_ioctl(nvdimm_bus_type(self.sys), self.devt[1], cmd, arg, uaccess, BUS_IOCTL, f_flags)


# ---------------------------------------------------------------- drivers on the bus
@attrs.define(eq=False, kw_only=True)
class NdDeviceDriver(Driver):
    """struct nd_device_driver: ``type`` is the ND_DRIVER_* mask of the device types it takes;
    probing goes through nvdimm_bus_probe() (the bus's probe_active count around ``nd_probe``)."""

    type: int = 0
    module: Optional[str] = "libnvdimm"

    def match(self, dev: Device) -> bool:
        return nvdimm_bus_match(dev, self)

    def probe(self, dev: Device) -> None:
        nvdimm_bus = walk_to_nvdimm_bus(dev)
        if nvdimm_bus is None:
            raise KernelError(errno.ENXIO, f"{dev.name}: not on an nvdimm bus")
        nvdimm_bus.probe_active += 1
        try:
            self.nd_probe(dev)
        finally:
            nvdimm_bus.probe_active -= 1

    def nd_probe(self, dev: Device) -> None:
        raise KernelError(errno.ENXIO, f"{self.name}: probe of {dev.name} is not modelled")


def nvdimm_bus_match(dev: Device, drv: NdDeviceDriver) -> bool:
    if is_nvdimm_bus(dev) and isinstance(drv, NdBusDriver):
        return True
    return test_bit(to_nd_device_type(dev), drv.type)


@attrs.define(eq=False, kw_only=True)
class NdBusDriver(NdDeviceDriver):
    """``nd_bus``: binds every bus device; creates its ``ndctlN`` and lists it for the ioctls."""

    name: str = "nd_bus"
    bindable: bool = False

    def nd_probe(self, dev: Device) -> None:
        assert isinstance(dev, NvdimmBus)
        nvdimm_bus_create_ndctl(dev)
        nvdimm_bus_type(dev.sys).nvdimm_bus_list.append(dev)

    def remove(self, dev: Device) -> None:
        assert isinstance(dev, NvdimmBus)
        nd_bus_remove(dev)


def nd_bus_remove(nvdimm_bus: NvdimmBus) -> None:
    bt = nvdimm_bus_type(nvdimm_bus.sys)
    if nvdimm_bus in bt.nvdimm_bus_list:
        bt.nvdimm_bus_list.remove(nvdimm_bus)
    for child in list(nvdimm_bus.children.values()):          # child_unregister()
        if isinstance(child, NdClassDir):
            continue                                            # the ndctl class device goes below
        if to_nd_device_type(child) == U.ND_DEVICE_DIMM:
            nd.nvdimm_delete(child)
        else:
            nd_device_unregister(child, ND_SYNC)
    nvdimm_bus_destroy_ndctl(nvdimm_bus)


def nvdimm_bus_create_ndctl(nvdimm_bus: NvdimmBus) -> None:
    sys = nvdimm_bus.sys
    bt = nvdimm_bus_type(sys)
    glue = nvdimm_bus.children.get("nd")
    if glue is None:
        glue = device_add(NdClassDir(name="nd", parent=nvdimm_bus, sys=sys))
    name = f"ndctl{nvdimm_bus.id}"
    device_add(NdctlDev(name=name, parent=glue, sys=sys, nvdimm_bus=nvdimm_bus,
                        devt=(bt.nvdimm_bus_major, nvdimm_bus.id), devname=name))


def nvdimm_bus_destroy_ndctl(nvdimm_bus: NvdimmBus) -> None:
    glue = nvdimm_bus.children.get("nd")
    if glue is None:
        return
    ndctl = glue.children.get(f"ndctl{nvdimm_bus.id}")
    if ndctl is not None:
        device_del(ndctl)
    if not glue.children:
        device_del(glue)


# ---------------------------------------------------------------- registration
def nvdimm_bus_register(parent: Device, nd_desc: NvdimmBusDescriptor) -> NvdimmBus:
    bt = nvdimm_bus_type(parent.sys)
    bid = bt.nd_ida.alloc()
    nvdimm_bus = NvdimmBus(name=f"ndbus{bid}", parent=parent, sys=parent.sys, bus=bt, id=bid, nd_desc=nd_desc)
    try:
        device_add(nvdimm_bus)
    except KernelError:
        bt.nd_ida.free(bid)
        raise
    return nvdimm_bus


def nvdimm_bus_unregister(nvdimm_bus: Optional[NvdimmBus]) -> None:
    if nvdimm_bus is not None:
        device_del(nvdimm_bus)


def nd_device_register(dev: Device, sync: bool = False) -> None:
    """__nd_device_register(): on the nd bus, the parent's NUMA node; ``sync`` adds it now (a
    dimm with NDD_REGISTER_SYNC), otherwise from the nd async domain (queued work)."""
    dev.bus = nvdimm_bus_type(dev.sys)
    if dev.parent is not None and dev.numa_node == -1:
        dev.numa_node = dev.parent.numa_node
    if sync:
        device_add(dev)
    else:
        dev.sys.queue_work(lambda: _nd_async_device_register(dev))


def _nd_async_device_register(dev: Device) -> None:
    device_add(dev)


def nd_device_unregister(dev: Device, mode: int = ND_SYNC) -> None:
    device_del(dev)


# ---------------------------------------------------------------- command descriptors
@attrs.frozen
class NdCmdDesc:
    """struct nd_cmd_desc: the sizes of a command's input and output fields (UINT_MAX: variable)."""

    in_num: int = 0
    in_sizes: tuple = ()
    out_num: int = 0
    out_sizes: tuple = ()


def _desc(in_sizes: tuple = (), out_sizes: tuple = ()) -> NdCmdDesc:
    return NdCmdDesc(len(in_sizes), in_sizes, len(out_sizes), out_sizes)


_ND_CMD_DIMM_DESCS = {
    U.ND_CMD_IMPLEMENTED: _desc(),
    U.ND_CMD_SMART: _desc((), (4, 128)),
    U.ND_CMD_SMART_THRESHOLD: _desc((), (4, 8)),
    U.ND_CMD_DIMM_FLAGS: _desc((), (4, 4)),
    U.ND_CMD_GET_CONFIG_SIZE: _desc((), (4, 4, 4)),
    U.ND_CMD_GET_CONFIG_DATA: _desc((4, 4), (4, UINT_MAX)),
    U.ND_CMD_SET_CONFIG_DATA: _desc((4, 4, UINT_MAX), (4,)),
    U.ND_CMD_VENDOR: _desc((4, 4, UINT_MAX), (4, 4, UINT_MAX)),
    U.ND_CMD_CALL: _desc((U.SIZEOF_ND_CMD_PKG, UINT_MAX), (UINT_MAX,)),
}
_ND_CMD_BUS_DESCS = {
    U.ND_CMD_IMPLEMENTED: _desc(),
    U.ND_CMD_ARS_CAP: _desc((8, 8), (4, 4, 4, 4)),
    U.ND_CMD_ARS_START: _desc((8, 8, 2, 1, 5), (4, 4)),
    U.ND_CMD_ARS_STATUS: _desc((), (4, 4, UINT_MAX)),
    U.ND_CMD_CLEAR_ERROR: _desc((8, 8), (4, 4, 8)),
    U.ND_CMD_CALL: _desc((U.SIZEOF_ND_CMD_PKG, UINT_MAX), (UINT_MAX,)),
}


def nd_cmd_dimm_desc(cmd: int) -> Optional[NdCmdDesc]:
    """The table has an (empty) entry for every command up to ND_CMD_CALL."""
    if 0 <= cmd <= U.ND_CMD_CALL:
        return _ND_CMD_DIMM_DESCS.get(cmd, NdCmdDesc())
    return None


def nd_cmd_bus_desc(cmd: int) -> Optional[NdCmdDesc]:
    if 0 <= cmd <= U.ND_CMD_CALL:
        return _ND_CMD_BUS_DESCS.get(cmd, NdCmdDesc())
    return None


def _u32(buf: bytes, off: int) -> int:
    return struct.unpack_from("<I", buf, off)[0]


def nd_cmd_in_size(nvdimm: Any, cmd: int, desc: NdCmdDesc, idx: int, buf: bytes) -> int:
    if idx >= desc.in_num:
        return UINT_MAX
    if desc.in_sizes[idx] < UINT_MAX:
        return int(desc.in_sizes[idx])
    if nvdimm is not None and cmd == U.ND_CMD_SET_CONFIG_DATA and idx == 2:
        return _u32(buf, 4)                     # nd_cmd_set_config_hdr.in_length
    if nvdimm is not None and cmd == U.ND_CMD_VENDOR and idx == 2:
        return _u32(buf, 4)                     # nd_cmd_vendor_hdr.in_length
    if cmd == U.ND_CMD_CALL:
        return _u32(buf, 16)                    # nd_cmd_pkg.nd_size_in
    return UINT_MAX


def nd_cmd_out_size(nvdimm: Any, cmd: int, desc: NdCmdDesc, idx: int, in_field: bytes, out_field: bytes,
                    remainder: int) -> int:
    if idx >= desc.out_num:
        return UINT_MAX
    if desc.out_sizes[idx] < UINT_MAX:
        return int(desc.out_sizes[idx])
    if nvdimm is not None and cmd == U.ND_CMD_GET_CONFIG_DATA and idx == 1:
        return _u32(in_field, 4)                # in_length
    if nvdimm is not None and cmd == U.ND_CMD_VENDOR and idx == 2:
        return _u32(out_field, 4)               # nd_cmd_vendor_tail.out_length
    if nvdimm is None and cmd == U.ND_CMD_ARS_STATUS and idx == 2:
        out_length = _u32(out_field, 4)
        if out_length < 4:
            return 0
        if out_length - 4 == remainder:
            return remainder
        return (out_length - 8) & UINT_MAX
    if cmd == U.ND_CMD_CALL:
        return _u32(in_field, 20)               # nd_cmd_pkg.nd_size_out
    return UINT_MAX


# ---------------------------------------------------------------- the ioctl path
def nd_cmd_clear_to_send(nvdimm_bus: NvdimmBus, nvdimm: Any, cmd: int, data: bytearray) -> int:
    nd_desc = nvdimm_bus.nd_desc
    if nd_desc.clear_to_send is not None:
        rc = nd_desc.clear_to_send(nd_desc, nvdimm, cmd, data)
        if rc:
            return int(rc)
    if nvdimm is None and cmd == U.ND_CMD_CLEAR_ERROR:
        return 0                                # no namespaces here to hold poison (nd_ns_forget_poison_check)
    if nvdimm is None or cmd != U.ND_CMD_SET_CONFIG_DATA:
        return 0
    # prevent label manipulation while the kernel owns label updates
    if nvdimm.busy:
        return -errno.EBUSY
    return 0


_WRITE_CMDS = (U.ND_CMD_VENDOR, U.ND_CMD_SET_CONFIG_DATA, U.ND_CMD_ARS_START, U.ND_CMD_CLEAR_ERROR, U.ND_CMD_CALL)


def __nd_ioctl(nvdimm_bus: NvdimmBus, nvdimm: Any, read_only: bool, ioctl_cmd: int, arg: int,
               um: UserMemory) -> int:
    nd_desc = nvdimm_bus.nd_desc
    cmd = U._IOC_NR(ioctl_cmd)
    klog = nvdimm_bus.sys.klog
    if nvdimm is not None:
        desc = nd_cmd_dimm_desc(cmd)
        cmd_name = U.nvdimm_cmd_name(cmd)
        cmd_mask = nvdimm.cmd_mask
        dimm_name = nvdimm.name
    else:
        desc = nd_cmd_bus_desc(cmd)
        cmd_name = U.nvdimm_bus_cmd_name(cmd)
        cmd_mask = nd_desc.cmd_mask
        dimm_name = "bus"
    where = f"{nvdimm_bus.name} {dimm_name}"

    func = cmd
    if cmd == U.ND_CMD_CALL:                 # validate the command family against the bus's support
        pkg = um.copy_from_user(arg, U.SIZEOF_ND_CMD_PKG)
        family, nd_command = struct.unpack_from("<QQ", pkg)
        if nvdimm is not None:
            if family > U.NVDIMM_FAMILY_MAX:
                raise KernelError(errno.EINVAL, f"{where}: cmd_call: family {family} out of range")
            mask = nd_desc.dimm_family_mask
        else:
            if family > U.NVDIMM_BUS_FAMILY_MAX:
                raise KernelError(errno.EINVAL, f"{where}: cmd_call: bus family {family} out of range")
            mask = nd_desc.bus_family_mask
        if not test_bit(family, mask):
            raise KernelError(errno.EINVAL, f"{where}: cmd_call: family {family} not supported")
        func = nd_command

    if desc is None or desc.in_num + desc.out_num == 0 or cmd > U.ND_CMD_CALL or not test_bit(cmd, cmd_mask):
        raise KernelError(errno.ENOTTY, f"{where}: command {cmd} ({cmd_name}) not supported")

    # fail write commands (when read-only); the numbers are shared by bus and dimm commands
    if read_only and cmd in _WRITE_CMDS:
        raise KernelError(errno.EPERM, f"{where}: '{cmd_name}' command while read-only")

    # the input envelope
    in_env = bytearray(ND_CMD_MAX_ENVELOPE)
    in_len = 0
    for i in range(desc.in_num):
        in_size = nd_cmd_in_size(nvdimm, cmd, desc, i, bytes(in_env))
        if in_size == UINT_MAX:
            klog.log(f"{where}: __nd_ioctl: unknown input size cmd: {cmd_name} field: {i}", "err")
            raise KernelError(errno.ENXIO, f"{where}: unknown input size cmd: {cmd_name} field: {i}")
        copy = min(ND_CMD_MAX_ENVELOPE - in_len, in_size) if in_len < ND_CMD_MAX_ENVELOPE else 0
        if copy:
            in_env[in_len:in_len + copy] = um.copy_from_user(arg + in_len, copy)
        in_len = (in_len + in_size) & UINT_MAX

    # the output envelope
    out_env = bytearray(ND_CMD_MAX_ENVELOPE)
    out_len = 0
    for i in range(desc.out_num):
        out_size = nd_cmd_out_size(nvdimm, cmd, desc, i, bytes(in_env), bytes(out_env), 0)
        if out_size == UINT_MAX:
            raise KernelError(errno.EFAULT, f"{where}: unknown output size cmd: {cmd_name} field: {i}")
        copy = min(ND_CMD_MAX_ENVELOPE - out_len, out_size) if out_len < ND_CMD_MAX_ENVELOPE else 0
        if copy:
            out_env[out_len:out_len + copy] = um.copy_from_user(arg + in_len + out_len, copy)
        out_len = (out_len + out_size) & UINT_MAX

    buf_len = out_len + in_len
    if buf_len > ND_IOCTL_MAX_BUFLEN:
        raise KernelError(errno.EINVAL, f"{where}: cmd: {cmd_name} buf_len: {buf_len} > {ND_IOCTL_MAX_BUFLEN}")
    buf = bytearray(um.copy_from_user(arg, buf_len))

    rc = nd_cmd_clear_to_send(nvdimm_bus, nvdimm, func, buf)
    if rc:
        raise KernelError(-rc, f"{where}: {cmd_name}: not clear to send")
    if nd_desc.ndctl is None:
        raise KernelError(errno.ENOTTY, f"{where}: the bus has no ndctl()")
    rc, _cmd_rc = nd_desc.ndctl(nd_desc, nvdimm, cmd, buf, buf_len)
    if rc < 0:
        raise KernelError(-rc, f"{where}: {cmd_name} failed")
    um.copy_to_user(arg, bytes(buf[:buf_len]))
    return rc


def nd_ioctl(bt: NvdimmBusType, minor: int, cmd: int, arg: int, um: UserMemory, mode: int,
             f_flags: int = os.O_RDWR) -> int:
    """The ``unlocked_ioctl`` of ``/dev/ndctlN`` (BUS_IOCTL) and ``/dev/nmemN`` (DIMM_IOCTL):
    the file's minor picks the bus, or the dimm with that id on any listed bus."""
    ro = (f_flags & os.O_ACCMODE) == os.O_RDONLY
    found: Optional[NvdimmBus] = None
    nvdimm = None
    for nvdimm_bus in bt.nvdimm_bus_list:
        if mode == DIMM_IOCTL:
            nvdimm = next((d for d in nvdimm_bus.children.values()
                           if to_nd_device_type(d) == U.ND_DEVICE_DIMM and getattr(d, "id", None) == minor), None)
            if nvdimm is None:
                continue
            found = nvdimm_bus
        elif nvdimm_bus.id == minor:
            found = nvdimm_bus
        if found is not None:
            break
    if found is None:
        raise KernelError(errno.ENXIO, f"nd_ioctl: no {'dimm' if mode == DIMM_IOCTL else 'bus'} with minor {minor}")
    found.ioctl_active += 1
    try:
        return __nd_ioctl(found, nvdimm, ro, cmd, arg, um)
    finally:
        found.ioctl_active -= 1


# ---------------------------------------------------------------- init
def nvdimm_bus_init(sys: "System") -> NvdimmBusType:
    """bus_register(nd), the two char majors, class nd, the ``nd_bus`` driver."""
    bt = NvdimmBusType(name="nd", sys=sys)
    sys.buses["nd"] = bt
    bt.register_driver(NdBusDriver())
    return bt
