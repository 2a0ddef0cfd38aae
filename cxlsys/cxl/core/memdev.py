"""drivers/cxl/core/memdev.c: ``memN`` — a CXL memory device and its sysfs.

Memdevs have no devtype/modalias files (their uevent still names them), a char
device ``/dev/cxl/memN`` (major 245 here, minor = id), partition groups ``ram/``
and ``pmem/``, ``security/``, and a firmware-upload class device
``firmware/memN/``.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import attrs

from cxlsys.base.device import RO, RW, WO, Attr, AttrGroup, Device, device_add, device_del
from cxlsys.cxl import cxl as C
from cxlsys.errors import KernelError
from cxlsys.kstrto import kstrtobool

if TYPE_CHECKING:  # pragma: no cover - forward declarations (port.py and hdm.py sit above this file)
    from cxlsys.cxl.core.hdm import HdmCap
    from cxlsys.cxl.core.port import CxlPort

CXL_MEM_MAJOR = 245


@attrs.define(eq=False, kw_only=True)
class MemdevInfo:
    """What the device reports over its mailbox (IDENTIFY, partition info, ...)."""

    ram_size: int = 0
    pmem_size: int = 0
    serial: int = 0
    lsa_size: int = 0
    payload_max: int = 4096
    firmware_version: str = ""
    qos_class: int = -1
    hdm_db: bool = False           # device coherence: HDM-DB (back-invalidate) capable
    device_type: int = 3           # CXL type 2 or 3
    flit: int = 68                 # link flit mode, 68 or 256
    rcd: bool = False
    poison: bool = True
    sanitize: bool = True


@attrs.define(eq=False, kw_only=True)
class CxlMemdev(Device):
    has_uevent = True
    devtype = "cxl_memdev"
    id: int = 0
    info: MemdevInfo = attrs.field(factory=MemdevInfo, repr=False)
    endpoint: CxlPort | None = attrs.field(default=None, repr=False)
    hdm: HdmCap | None = attrs.field(default=None, repr=False)     # the device's HDM registers
    security_state: str = "disabled"
    bi_id: int | None = None               # Back-Invalidate ID (HDM-DB devices, BI profile)
    bi_enabled: bool = False
    bi_path_cache: list = attrs.field(factory=list, repr=False)

    groups = (
        AttrGroup([RO("serial"), RO("firmware_version"), RO("payload_max"), RO("label_storage_size"),
                   RO("numa_node"), WO("trigger_poison_list")], is_visible="memdev_visible"),
        AttrGroup([RO("size", "ram_size_show"), RO("qos_class", "ram_qos_class_show")], name="ram",
                  is_visible="ram_visible"),
        AttrGroup([RO("size", "pmem_size_show"), RO("qos_class", "pmem_qos_class_show")], name="pmem",
                  is_visible="pmem_visible"),
        AttrGroup([RO("state", "security_state_show"), WO("sanitize", "security_sanitize_store")], name="security"),
    )

    def modalias(self) -> str:
        return f"cxl:t{C.CXL_DEVICE_MEMORY_EXPANDER}"

    def release(self) -> None:
        self.sys.cxl_memdev_ida.free(self.id)

    @property
    def ram_size(self) -> int:
        return self.info.ram_size

    @property
    def pmem_size(self) -> int:
        return self.info.pmem_size

    def memdev_visible(self, attr: Attr) -> int:
        if attr.name == "trigger_poison_list" and (not self.info.poison or self.driver is None
                                                    or self.driver.name != "cxl_mem"):
            return 0      # a cxl_mem driver attribute: present only while bound
        return attr.mode

    def ram_visible(self, attr: Attr) -> int:
        if attr.name == "qos_class" and (self.info.qos_class < 0 or not self.ram_size):
            return 0
        return attr.mode

    def pmem_visible(self, attr: Attr) -> int:
        if attr.name == "qos_class" and (self.info.qos_class < 0 or not self.pmem_size):
            return 0
        return attr.mode

    def serial_show(self):
        return f"{self.info.serial:#x}\n" if self.info.serial else "0x0\n"

    def firmware_version_show(self):
        return f"{self.info.firmware_version[:16]}\n"

    def payload_max_show(self):
        return f"{self.info.payload_max}\n"

    def label_storage_size_show(self):
        return f"{self.info.lsa_size}\n"

    def numa_node_show(self):
        return f"{self.numa_node}\n"

    def ram_size_show(self):
        return f"{self.ram_size:#x}\n" if self.ram_size else "0x0\n"

    def pmem_size_show(self):
        return f"{self.pmem_size:#x}\n" if self.pmem_size else "0x0\n"

    def ram_qos_class_show(self):
        return f"{self.info.qos_class}\n"

    pmem_qos_class_show = ram_qos_class_show

    def security_state_show(self):
        return f"{self.security_state}\n"

    def security_sanitize_store(self, buf: str) -> None:
        if not kstrtobool(buf):
            raise KernelError(errno.EINVAL, f"{self.name}: sanitize: expected true")
        ep = self.endpoint
        if ep is None:
            raise KernelError(errno.EBUSY, f"{self.name}: sanitize: no endpoint")
        if ep.commit_end >= 0:
            raise KernelError(errno.EBUSY, f"{self.name}: sanitize: decoders are committed (region member)")
        raise KernelError(errno.EOPNOTSUPP, f"{self.name}: sanitize: mailbox emulation not implemented yet")

    def trigger_poison_list_store(self, buf: str) -> None:
        if not kstrtobool(buf):
            raise KernelError(errno.EINVAL, f"{self.name}: trigger_poison_list: expected true")
        if self.endpoint is None:
            raise KernelError(errno.EINVAL, f"{self.name}: trigger_poison_list: no endpoint")


@attrs.define(eq=False, kw_only=True)
class GlueDir(Device):
    """A class glue directory such as ``memN/firmware/`` (no files of its own)."""

    has_uevent = False


@attrs.define(eq=False, kw_only=True)
class FwUpload(Device):
    """drivers/base/firmware_loader/sysfs_upload.c: ``firmware/memN/``."""

    target: Device = attrs.field(repr=False)
    status: str = "idle"
    loading: int = 0
    remaining: int = 0

    groups = (AttrGroup([WO("cancel"), RW("data"), RO("error"), RW("loading"), RO("remaining_size"),
                         RO("status")]),)

    def links(self):
        return {"device": self.target}

    def cancel_store(self, buf):
        if not kstrtobool(buf):
            raise KernelError(errno.EINVAL, "cancel: expected true")
        if self.status == "idle":
            raise KernelError(errno.EBUSY, f"{self.name}: no upload in progress")

    def data_show(self):
        return ""

    def data_store(self, buf):
        if not self.loading:
            raise KernelError(errno.EINVAL, f"{self.name}: write 1 to loading first")

    def error_show(self):
        return ""

    def loading_show(self):
        return f"{self.loading}\n"

    def loading_store(self, buf):
        self.loading = int(kstrtobool(buf))

    def remaining_size_show(self):
        return f"{self.remaining}\n"

    def status_show(self):
        return f"{self.status}\n"


def devm_cxl_add_memdev(host: Device, info: MemdevInfo, hdm: HdmCap | None, numa_node: int) -> CxlMemdev:
    sys = host.sys
    mid = sys.cxl_memdev_ida.alloc()
    md = CxlMemdev(name=f"mem{mid}", parent=host, sys=sys, bus=sys.cxl_bus, id=mid, info=info, hdm=hdm,
                   numa_node=numa_node, devt=(CXL_MEM_MAJOR, mid), devname=f"cxl/mem{mid}")
    device_add(md)
    glue = GlueDir(name="firmware", parent=md, sys=sys)
    device_add(glue)
    device_add(FwUpload(name=md.name, parent=glue, sys=sys, target=md))

    host.devm_add_action(lambda: device_del(md), f"memdev:{md.name}")
    return md
