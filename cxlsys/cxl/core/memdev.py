"""drivers/cxl/core/memdev.c (Linux 6.12): ``memN`` — a CXL memory device, its sysfs, its char
device ``/dev/cxl/memN`` and the memdev halves of poison, sanitize and firmware update.

What the files show comes from the driver's :class:`~cxlsys.cxl.cxlmem.CxlMemdevState` (what the
device answered over its mailbox at probe); :class:`MemdevInfo` is the device model's
configuration (what a mock answers) plus the properties no mailbox command reports.

cxl's fw_upload ops (prepare/write/poll_complete/cancel over TRANSFER_FW and ACTIVATE_FW) are
here; the upload class device ``firmware/memN/`` they plug into is
:mod:`cxlsys.base.firmware_loader`.  Also here, for want of their own module: the DPA-to-region/HPA
translation and the per-endpoint poison walk of drivers/cxl/core/region.c
  (``cxl_dpa_to_region``, ``cxl_dpa_to_hpa``, ``cxl_get_poison_by_endpoint``).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Optional

import attrs

from cxlsys.base.device import RO, WO, Attr, AttrGroup, Device, device_add, device_del
from cxlsys.base.firmware_loader import (
    FW_UPLOAD_ERR_CANCELED,
    FW_UPLOAD_ERR_HW_ERROR,
    FW_UPLOAD_ERR_INVALID_SIZE,
    FW_UPLOAD_ERR_NONE,
    FW_UPLOAD_ERR_RW_ERROR,
    FwUploadOps,
    firmware_upload_register,
    firmware_upload_unregister,
)
from cxlsys.cxl import cxl as C
from cxlsys.cxl import cxlmem as M
from cxlsys.cxl.core import mbox as MB
from cxlsys.errors import KernelError
from cxlsys.kstrto import kstrtobool_true
from cxlsys.uapi import cxl_mem as U

if TYPE_CHECKING:  # pragma: no cover - forward declarations (port.py and hdm.py sit above this file)
    from cxlsys.cxl.core.hdm import HdmCap
    from cxlsys.cxl.core.port import CxlPort
    from cxlsys.kernel.uaccess import UserMemory

CXL_MEM_MAJOR = 245
ULLONG_MAX = (1 << 64) - 1


@attrs.define(eq=False, kw_only=True)
class MemdevInfo:
    """The memory device as the topology describes it.

    ``qos_class``, ``hdm_db``, ``device_type``, ``flit`` and ``rcd`` are properties the mailbox does
    not report (CDAT/QTG, DVSEC, link state).  The rest configure the device model — what its
    IDENTIFY, partition info and CEL answer (``ram_size``/``pmem_size``, ``serial``, ``lsa_size``,
    ``payload_max``, ``firmware_version``, ``poison``, ``sanitize``); the kernel's view of them
    is the memdev's :class:`~cxlsys.cxl.cxlmem.CxlMemdevState`."""

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
    poison: bool = True            # the device lists the poison commands in its CEL
    sanitize: bool = True          # ... and Sanitize


@attrs.define(eq=False, kw_only=True)
class CxlMemdev(Device):
    has_uevent = True
    devtype = "cxl_memdev"
    id: int = 0
    info: MemdevInfo = attrs.field(factory=MemdevInfo, repr=False)
    mds: M.CxlMemdevState = attrs.field(factory=M.CxlMemdevState, repr=False)
    cxlds: Optional[M.CxlMemdevState] = attrs.field(default=None, repr=False)   # None once shut down
    endpoint: CxlPort | None = attrs.field(default=None, repr=False)
    hdm: HdmCap | None = attrs.field(default=None, repr=False)     # the device's HDM registers
    bi_id: int | None = None               # Back-Invalidate ID (HDM-DB devices, BI profile)
    bi_enabled: bool = False
    bi_path_cache: list = attrs.field(factory=list, repr=False)

    groups = (
        AttrGroup([RO("serial"), RO("firmware_version"), RO("payload_max"), RO("label_storage_size"),
                   RO("numa_node")]),
        AttrGroup([RO("size", "ram_size_show"), RO("qos_class", "ram_qos_class_show")], name="ram",
                  is_visible="ram_visible"),
        AttrGroup([RO("size", "pmem_size_show"), RO("qos_class", "pmem_qos_class_show")], name="pmem",
                  is_visible="pmem_visible"),
        AttrGroup([RO("state", "security_state_show"), WO("sanitize", "security_sanitize_store"),
                   WO("erase", "security_erase_store")], name="security",
                  is_visible="cxl_memdev_security_visible"),
    )

    def modalias(self) -> str:
        return f"cxl:t{C.CXL_DEVICE_MEMORY_EXPANDER}"

    def release(self) -> None:
        self.sys.cxl_memdev_ida.free(self.id)

    @property
    def ram_size(self) -> int:
        return self.mds.ram_res.size

    @property
    def pmem_size(self) -> int:
        return self.mds.pmem_res.size

    # ----- visibility
    def ram_visible(self, attr: Attr) -> int:
        if attr.name == "qos_class" and (self.info.qos_class < 0 or not self.ram_size):
            return 0
        return attr.mode

    def pmem_visible(self, attr: Attr) -> int:
        if attr.name == "qos_class" and (self.info.qos_class < 0 or not self.pmem_size):
            return 0
        return attr.mode

    def cxl_memdev_security_visible(self, attr: Attr) -> int:
        sec = self.mds.security.enabled_cmds
        if attr.name == "sanitize" and M.CXL_SEC_ENABLED_SANITIZE not in sec:
            return 0
        if attr.name == "erase" and M.CXL_SEC_ENABLED_SECURE_ERASE not in sec:
            return 0
        return attr.mode

    # ----- shows
    def serial_show(self) -> str:
        return f"{self.mds.serial:#x}\n" if self.mds.serial else "0x0\n"

    def firmware_version_show(self) -> str:
        return self.mds.firmware_version[:16].split(b"\0", 1)[0].decode("latin-1") + "\n"     # "%.16s"

    def payload_max_show(self) -> str:
        return f"{self.mds.payload_size}\n"

    def label_storage_size_show(self) -> str:
        return f"{self.mds.lsa_size}\n"

    def numa_node_show(self) -> str:
        return f"{self.numa_node}\n"

    def ram_size_show(self) -> str:
        return f"{self.ram_size:#x}\n" if self.ram_size else "0x0\n"

    def pmem_size_show(self) -> str:
        return f"{self.pmem_size:#x}\n" if self.pmem_size else "0x0\n"

    def ram_qos_class_show(self) -> str:
        return f"{self.info.qos_class}\n"

    pmem_qos_class_show = ram_qos_class_show

    def security_state_show(self) -> str:
        """sanitize while one runs, else from the security state bits: disabled (no user
        passphrase), frozen (frozen or a passphrase retry limit hit), locked, unlocked."""
        sec = self.mds.security
        if sec.sanitize_active:
            return "sanitize\n"
        state = sec.state
        if not state & M.CXL_PMEM_SEC_STATE_USER_PASS_SET:
            return "disabled\n"
        if state & (M.CXL_PMEM_SEC_STATE_FROZEN | M.CXL_PMEM_SEC_STATE_MASTER_PLIMIT
                    | M.CXL_PMEM_SEC_STATE_USER_PLIMIT):
            return "frozen\n"
        if state & M.CXL_PMEM_SEC_STATE_LOCKED:
            return "locked\n"
        return "unlocked\n"

    # ----- stores
    def security_sanitize_store(self, buf: str) -> None:
        if not kstrtobool_true(buf):
            raise KernelError(errno.EINVAL, f"{self.name}: sanitize: expected a true value")
        MB.cxl_mem_sanitize(self, M.CXL_MBOX_OP_SANITIZE)

    def security_erase_store(self, buf: str) -> None:
        if not kstrtobool_true(buf):
            raise KernelError(errno.EINVAL, f"{self.name}: erase: expected a true value")
        MB.cxl_mem_sanitize(self, M.CXL_MBOX_OP_SECURE_ERASE)

    # ----- the char device
    def ioctl(self, cmd: int, arg: int, uaccess: UserMemory, f_flags: int = 0o2) -> int:
        """cxl_memdev_ioctl(): ENXIO once the memdev is shut down, ENOTTY for an unknown ioctl."""
        cxlds = self.cxlds
        if cxlds is None or cxlds.type != M.CXL_DEVTYPE_CLASSMEM:
            raise KernelError(errno.ENXIO, f"{self.name}: device is gone")
        if cmd == U.CXL_MEM_QUERY_COMMANDS:
            return MB.cxl_query_cmd(self, arg, uaccess)
        if cmd == U.CXL_MEM_SEND_COMMAND:
            return MB.cxl_send_cmd(self, arg, uaccess)
        raise KernelError(errno.ENOTTY, f"{self.name}: unknown ioctl {cmd:#x}")



def set_exclusive_cxl_commands(mds: M.CxlMemdevState, cmds: set) -> None:
    """Take command ids away from user space (CXL_MEM_SEND_COMMAND answers EBUSY for them)."""
    mds.mbox.exclusive_cmds |= set(cmds)


def clear_exclusive_cxl_commands(mds: M.CxlMemdevState, cmds: set) -> None:
    mds.mbox.exclusive_cmds -= set(cmds)


# ============================================================================ region.c: DPA -> region/HPA

def _ep_decoders(port) -> list:
    from cxlsys.cxl.core.port import CxlEndpointDecoder

    return sorted((d for d in port.decoders.values() if isinstance(d, CxlEndpointDecoder)), key=lambda d: d.id)


def cxl_dpa_to_region(cxlmd: CxlMemdev, dpa: int):
    """The region of the endpoint decoder whose DPA range holds ``dpa`` (None: unmapped, or the
    decoder has no region yet); only looked for while some decoder is committed."""
    port = cxlmd.endpoint
    if port is None or MB.cxl_num_decoders_committed(port) == 0:
        return None
    for dec in _ep_decoders(port):
        if dec.dpa_start is None or not dec.dpa_size:
            continue
        if dec.dpa_start <= dpa <= dec.dpa_start + dec.dpa_size - 1:
            return dec.region
    return None


def cxl_xor_hpa_to_spa(root, hpa: int) -> int:
    """acpi.c's hpa_to_spa for XOR windows: restore each map's position bit to the XOR of the bits
    the map selects (no maps for host-bridge ways 1 and 3)."""
    hbiw = root.interleave_ways
    if hbiw in (1, 3):
        return hpa
    for m in root.xormaps:
        if not m:
            continue
        pos = (m & -m).bit_length() - 1
        val = bin(hpa & m).count("1") & 1
        hpa = (hpa & ~(1 << pos)) | (val << pos)
    return hpa


def cxl_dpa_to_hpa(cxlr, cxlmd: CxlMemdev, dpa: int) -> int:
    """The host physical address of ``dpa`` of ``cxlmd`` in region ``cxlr`` (CXL 3.0 8.2.4.19.13
    device decode, reversed); ULLONG_MAX when the memdev is no target of the region or the result
    falls outside it."""
    if cxlr is None or cxlr.hpa_start is None:
        return ULLONG_MAX
    cxled = next((t for t in cxlr.targets[: cxlr.nr_targets] if t is not None and t.memdev is cxlmd), None)
    if cxled is None or cxled.dpa_start is None:
        return ULLONG_MAX
    pos = cxled.pos
    ways, gran = cxlr.interleave_ways, cxlr.interleave_granularity
    try:
        eiw, eig = C.ways_to_eiw(ways), C.granularity_to_eig(gran)
    except KernelError:
        return ULLONG_MAX
    dpa_offset = dpa - cxled.dpa_start
    mask_upper = ((1 << 52) - 1) & ~((1 << (eig + 8)) - 1)         # GENMASK_ULL(51, eig + 8)
    if eiw < 8:
        hpa_offset = (dpa_offset & mask_upper) << eiw
        hpa_offset |= pos << (eig + 8)
    else:
        bits_upper = ((dpa_offset & mask_upper) >> (eig + 8)) * 3
        hpa_offset = ((bits_upper << (eiw - 8)) + pos) << (eig + 8)
    hpa_offset |= dpa_offset & ((1 << (eig + 8)) - 1)
    hpa = hpa_offset + cxlr.hpa_start
    xor = cxlr.root.interleave_arithmetic == C.ARITH_XOR
    if xor:
        hpa = cxl_xor_hpa_to_spa(cxlr.root, hpa)
    if hpa < cxlr.hpa_start or hpa > cxlr.hpa_start + cxlr.hpa_size - 1:
        return ULLONG_MAX
    if not xor:           # cxl_is_hpa_in_chunk(): the chunk of the address is the target's
        off = (hpa - cxlr.hpa_start) % (gran * ways)
        if not pos * gran <= off < (pos + 1) * gran:
            return ULLONG_MAX
    return hpa


def cxl_get_poison_unmapped(cxlmd: CxlMemdev, mode: str, offset: int) -> None:
    """Poison of what no committed decoder maps: the rest of ram then pmem (after a ram decoder),
    or the rest of pmem (after a pmem decoder)."""
    mds = cxlmd.mds
    if mode == C.MODE_RAM:
        try:
            MB.cxl_mem_get_poison(cxlmd, offset, mds.ram_res.size - offset, None)
        except KernelError as e:
            if e.errno != errno.EFAULT:
                raise
    if mode == C.MODE_PMEM:
        length = mds.dpa_res.size - offset
        if not length:
            return
    elif mds.pmem_res.size:
        offset, length = mds.pmem_res.start, mds.pmem_res.size
    else:
        return
    MB.cxl_mem_get_poison(cxlmd, offset, length, None)


def cxl_get_poison_by_endpoint(port) -> None:
    """Poison per endpoint decoder (each with its region), up to the last committed one, then of
    the DPA no decoder maps."""
    cxlmd = port.uport
    ctx: Optional[tuple[str, int]] = None
    for dec in _ep_decoders(port):
        if dec.dpa_start is None or not dec.dpa_size:
            continue
        if dec.mode == C.MODE_MIXED:       # ram and pmem must be read separately
            cxlmd.sys.klog.dev_dbg(dec, "poison list read unsupported in mixed mode")
            continue

        def get(offset: int, length: int, cxlr) -> None:
            try:
                MB.cxl_mem_get_poison(cxlmd, offset, length, cxlr)
            except KernelError as e:
                if not (e.errno == errno.EFAULT and dec.mode == C.MODE_RAM):
                    raise

        if dec.skip:
            get(dec.dpa_start - dec.skip, dec.skip, None)
        get(dec.dpa_start, dec.dpa_size, dec.region)
        if dec.id == port.commit_end:
            ctx = (dec.mode, dec.dpa_start + dec.dpa_size)
            break
    if ctx is not None:
        cxl_get_poison_unmapped(cxlmd, *ctx)


def cxl_get_poison_by_memdev(cxlmd: CxlMemdev) -> None:
    """Poison of the whole device, pmem and ram read separately (CXL 3.0 8.2.9.8.4.1)."""
    mds = cxlmd.mds
    if mds.pmem_res.size:
        MB.cxl_mem_get_poison(cxlmd, mds.pmem_res.start, mds.pmem_res.size, None)
    if mds.ram_res.size:
        try:
            MB.cxl_mem_get_poison(cxlmd, mds.ram_res.start, mds.ram_res.size, None)
        except KernelError as e:
            if e.errno != errno.EFAULT:      # an invalid physical address is fine for volatile DPA
                raise


def cxl_trigger_poison_list(cxlmd: CxlMemdev) -> None:
    """``trigger_poison_list``: trace the poison list, by decoder when regions are mapped."""
    port = cxlmd.endpoint
    if port is None:
        raise KernelError(errno.EINVAL, f"{cxlmd.name}: trigger_poison_list: no endpoint")
    if MB.cxl_num_decoders_committed(port) == 0:
        cxl_get_poison_by_memdev(cxlmd)
    else:
        cxl_get_poison_by_endpoint(port)


def cxl_validate_poison_dpa(cxlmd: CxlMemdev, dpa: int) -> None:
    mds = cxlmd.mds
    if not mds.dpa_res.size:
        raise KernelError(errno.EINVAL, f"{cxlmd.name}: device has no dpa resource")
    if dpa < mds.dpa_res.start or dpa > mds.dpa_res.end:
        raise KernelError(errno.EINVAL, f"{cxlmd.name}: dpa:{dpa:#x} not in resource "
                                        f"[mem {mds.dpa_res.start:#x}-{mds.dpa_res.end:#x}]")
    if dpa % 64:
        raise KernelError(errno.EINVAL, f"{cxlmd.name}: dpa:{dpa:#x} is not 64-byte aligned")


def _poison_cmd(cxlmd: CxlMemdev, dpa: int, opcode: int, payload: bytes, trace_type: int, what: str) -> None:
    cxl_validate_poison_dpa(cxlmd, dpa)
    MB.cxl_internal_send_cmd(cxlmd.mds, M.CxlMboxCmd(opcode=opcode, payload_in=payload))
    cxlr = cxl_dpa_to_region(cxlmd, dpa)
    if cxlr is not None:
        MB._host_log(cxlmd.mds.mbox, f"poison {what} dpa:{dpa:#x} region: {cxlr.name}", "warn")
    record = M.CXL_POISON_RECORD.pack(dpa, 1, 0)
    MB.trace_poison(cxlmd, cxlr, record, 0, 0, trace_type)


def cxl_inject_poison(cxlmd: CxlMemdev, dpa: int) -> None:
    """debugfs ``inject_poison``: INJECT_POISON at ``dpa`` (EINVAL: outside the device or not
    64-byte aligned), traced as an inject."""
    _poison_cmd(cxlmd, dpa, M.CXL_MBOX_OP_INJECT_POISON, M.CXL_MBOX_INJECT_POISON.pack(dpa),
                MB.CXL_POISON_TRACE_INJECT, "inject")


def cxl_clear_poison(cxlmd: CxlMemdev, dpa: int) -> None:
    """debugfs ``clear_poison``: CLEAR_POISON at ``dpa`` with zeroes as the write data."""
    _poison_cmd(cxlmd, dpa, M.CXL_MBOX_OP_CLEAR_POISON,
                M.CXL_MBOX_CLEAR_POISON.pack(dpa, bytes(M.CXL_POISON_LEN_MULT)), MB.CXL_POISON_TRACE_CLEAR, "clear")


def cxl_dpa_debug(cxlmd: CxlMemdev) -> str:
    """debugfs ``dpamem``: the DPA resource tree, partitions then the decoders' (and skips')
    allocations inside them."""
    mds = cxlmd.mds
    out = []
    allocs: list[tuple[int, int, str]] = []
    if cxlmd.endpoint is not None:
        for d in _ep_decoders(cxlmd.endpoint):
            if d.dpa_start is not None and d.dpa_size:
                if d.skip:
                    allocs.append((d.dpa_start - d.skip, d.skip, d.name))
                allocs.append((d.dpa_start, d.dpa_size, d.name))
    for part in sorted((r for r in (mds.ram_res, mds.pmem_res) if r.size), key=lambda r: r.start):
        out.append(f"{part.start:08x}-{part.end:08x} : {part.name}\n")
        for s, n, name in sorted(allocs):
            if part.start <= s and s + n - 1 <= part.end:
                out.append(f"  {s:08x}-{s + n - 1:08x} : {name}\n")
    return "".join(out)


# ============================================================================ cxl's fw_upload ops
def cxl_mem_get_fw_info(mds: M.CxlMemdevState) -> None:
    cmd = M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_GET_FW_INFO, size_out=M.CXL_MBOX_GET_FW_INFO.size)
    MB.cxl_internal_send_cmd(mds, cmd)
    info = M.CXL_MBOX_GET_FW_INFO.unpack(MB._out(cmd, M.CXL_MBOX_GET_FW_INFO.size))
    mds.fw.num_slots = info[0]
    mds.fw.cur_slot = info[1] & M.CXL_FW_INFO_SLOT_INFO_CUR_MASK


def cxl_mem_activate_fw(mds: M.CxlMemdevState, slot: int) -> None:
    """Activate FW, offline (at the next reset): the only mode the driver uses."""
    if slot == 0 or slot > mds.fw.num_slots:
        raise KernelError(errno.EINVAL, f"activate firmware: slot {slot} of {mds.fw.num_slots}")
    cmd = M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_ACTIVATE_FW,
                       payload_in=M.CXL_MBOX_ACTIVATE_FW.pack(M.CXL_FW_ACTIVATE_OFFLINE, slot))
    MB.cxl_internal_send_cmd(mds, cmd)


def _transfer_cmd(action: int, slot: int, offset_units: int, data: bytes) -> M.CxlMboxCmd:
    payload = M.CXL_MBOX_TRANSFER_FW.pack(action, slot, bytes(2), offset_units, bytes(0x78)) + data
    return M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_TRANSFER_FW, payload_in=payload, poll_interval_ms=1000, poll_count=30)


def cxl_mem_abort_fw_xfer(mds: M.CxlMemdevState) -> None:
    MB.cxl_internal_send_cmd(mds, _transfer_cmd(M.CXL_FW_TRANSFER_ACTION_ABORT, 0, 0, b""))


@attrs.define(eq=False)
class CxlFwUploadOps(FwUploadOps):
    """cxl_memdev_fw_ops: TRANSFER_FW in payload-size slices (one FULL transfer when it fits),
    then ACTIVATE_FW (offline) of the next slot; cancel is a flag the next step acts on."""

    mds: M.CxlMemdevState

    def _log(self, text: str) -> None:
        cxlmd = self.mds.cxlmd
        if isinstance(cxlmd, CxlMemdev):
            cxlmd.sys.klog.dev_err(cxlmd, text)

    def _do_cancel(self) -> int:
        try:
            cxl_mem_abort_fw_xfer(self.mds)
        except KernelError as e:
            self._log(f"Error aborting FW transfer: {-e.errno}")
        return FW_UPLOAD_ERR_CANCELED

    def device_time(self) -> float:
        return self.mds.mbox.device_time()

    def prepare(self, data: bytes, size: int) -> int:
        mds = self.mds
        if not size:
            return FW_UPLOAD_ERR_INVALID_SIZE
        mds.fw.oneshot = M.CXL_MBOX_TRANSFER_FW.size + size < mds.payload_size
        try:
            cxl_mem_get_fw_info(mds)
        except KernelError:
            return FW_UPLOAD_ERR_HW_ERROR
        if M.CXL_FW_CANCEL in mds.fw.state:
            mds.fw.state.discard(M.CXL_FW_CANCEL)
            return FW_UPLOAD_ERR_CANCELED
        return FW_UPLOAD_ERR_NONE

    def write(self, data: bytes, offset: int, size: int) -> tuple[int, int]:
        mds = self.mds
        if offset % M.CXL_FW_TRANSFER_ALIGNMENT:
            self._log(f"misaligned offset for FW transfer slice ({offset})")
            return FW_UPLOAD_ERR_RW_ERROR, 0
        # payload sizes are powers of two from 256 and the header is 128 bytes: slices stay aligned
        cur_size = min(size, mds.payload_size - M.CXL_MBOX_TRANSFER_FW.size)
        remaining = size - cur_size
        if M.CXL_FW_CANCEL in mds.fw.state:
            mds.fw.state.discard(M.CXL_FW_CANCEL)
            return self._do_cancel(), 0
        if not mds.fw.num_slots:
            return FW_UPLOAD_ERR_HW_ERROR, 0
        # slots are 1-based: the slot after the current one, wrapping
        mds.fw.next_slot = (mds.fw.cur_slot % mds.fw.num_slots) + 1
        chunk = bytes(data[offset:offset + cur_size])
        units = offset // M.CXL_FW_TRANSFER_ALIGNMENT
        if mds.fw.oneshot:
            action, slot = M.CXL_FW_TRANSFER_ACTION_FULL, mds.fw.next_slot
        elif offset == 0:
            action, slot = M.CXL_FW_TRANSFER_ACTION_INITIATE, 0
        elif remaining == 0:
            action, slot = M.CXL_FW_TRANSFER_ACTION_END, mds.fw.next_slot
        else:
            action, slot = M.CXL_FW_TRANSFER_ACTION_CONTINUE, 0
        try:
            MB.cxl_internal_send_cmd(mds, _transfer_cmd(action, slot, units, chunk))
        except KernelError:
            return FW_UPLOAD_ERR_RW_ERROR, 0
        if mds.fw.oneshot or remaining == 0:
            try:
                cxl_mem_activate_fw(mds, mds.fw.next_slot)
            except KernelError as e:
                self._log(f"Error activating firmware: {-e.errno}")
                return FW_UPLOAD_ERR_HW_ERROR, cur_size
        return FW_UPLOAD_ERR_NONE, cur_size

    def poll_complete(self) -> int:
        # transfers complete synchronously: only a cancel can still be pending
        if M.CXL_FW_CANCEL in self.mds.fw.state:
            self.mds.fw.state.discard(M.CXL_FW_CANCEL)
            return self._do_cancel()
        return FW_UPLOAD_ERR_NONE

    def cancel(self) -> None:
        self.mds.fw.state.add(M.CXL_FW_CANCEL)

    def cleanup(self) -> None:
        self.mds.fw.next_slot = 0


def devm_cxl_setup_fw_upload(host: Device, mds: M.CxlMemdevState) -> None:
    """Register ``firmware/memN/`` when the device has GET_FW_INFO; removed with the host's driver."""
    if U.CXL_MEM_COMMAND_ID_GET_FW_INFO not in mds.enabled_cmds:
        return
    cxlmd = mds.cxlmd
    assert isinstance(cxlmd, CxlMemdev)         # devm_cxl_add_memdev() ran first
    fw = firmware_upload_register(cxlmd, cxlmd.name, CxlFwUploadOps(mds))
    host.devm_add_action(lambda: firmware_upload_unregister(fw), f"fw_upload:{cxlmd.name}")


# ============================================================================ sanitize notifier

def devm_cxl_sanitize_setup_notifier(host: Device, cxlmd: CxlMemdev) -> None:
    """Let the end of a sanitize wake pollers of ``security/state`` (devices with Sanitize)."""
    mds = cxlmd.mds
    if M.CXL_SEC_ENABLED_SANITIZE not in mds.security.enabled_cmds:
        return
    mds.security.sanitize_node = f"{cxlmd.path}/security/state"

    def sanitize_teardown_notifier() -> None:
        mds.security.sanitize_node = None

    host.devm_add_action(sanitize_teardown_notifier, f"sanitize_notifier:{cxlmd.name}")


# ============================================================================ add / remove

def cxl_memdev_shutdown(cxlmd: CxlMemdev) -> None:
    """Stop the ioctl path: from now on it answers ENXIO."""
    cxlmd.cxlds = None


def cxl_memdev_unregister(cxlmd: CxlMemdev) -> None:
    cxl_memdev_shutdown(cxlmd)
    device_del(cxlmd)


def devm_cxl_add_memdev(host: Device, mds: M.CxlMemdevState, hdm: HdmCap | None, numa_node: int,
                        info: MemdevInfo | None = None) -> CxlMemdev:
    """Register ``memN`` below ``host`` for the device state ``mds`` (its char device live at once);
    unregistered when the host's driver goes."""
    sys = host.sys
    mid = sys.cxl_memdev_ida.alloc()
    md = CxlMemdev(name=f"mem{mid}", parent=host, sys=sys, bus=sys.cxl_bus, id=mid, info=info or MemdevInfo(),
                   mds=mds, cxlds=mds, hdm=hdm, numa_node=numa_node, devt=(CXL_MEM_MAJOR, mid),
                   devname=f"cxl/mem{mid}")
    mds.cxlmd = md
    device_add(md)
    host.devm_add_action(lambda: cxl_memdev_unregister(md), f"memdev:{md.name}")
    return md
