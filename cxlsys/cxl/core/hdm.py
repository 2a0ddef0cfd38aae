"""drivers/cxl/core/hdm.c: HDM decoder enumeration, the DPA allocator, commit/reset.

The "hardware" is :class:`HdmCap` — the HDM decoder capability of one upstream
port device (host bridge, switch upstream port, or memdev).  Its registers
(:class:`HdmRegs`) outlive the CXL port objects built on top of them, exactly like
real registers outlive a driver unbind.
"""

from __future__ import annotations

import errno
from typing import Any

import attrs

from cxlsys.cxl import cxl as C
from cxlsys.cxl.core import core
from cxlsys.cxl.core.port import CxlEndpointDecoder, CxlPort, CxlSwitchDecoder, add_decoder
from cxlsys.errors import KernelError
from cxlsys.kstrto import kstrtoull, strip_newline


@attrs.define
class HdmRegs:
    """One HDM decoder's register block."""

    base: int = 0
    size: int = 0
    ways: int = 1
    granularity: int = 256
    committed: bool = False
    locked: bool = False
    targets: tuple | None = None       # dport ids (switch/host bridge); None = the port's dports in order
    skip: int = 0                      # endpoint DPA skip
    target_type: int = C.CXL_DECODER_HOSTONLYMEM
    bi: bool = False


@attrs.define
class HdmCap:
    """The HDM decoder capability of an upstream port device."""

    count: int = 8
    nr_targets: int = 2
    regs: dict = attrs.field(factory=dict)        # decoder id -> HdmRegs (live registers)
    firmware: dict = attrs.field(factory=dict)    # decoder id -> HdmRegs programmed by "firmware"
    reprogram_on_enumerate: bool = False          # cxl_test's mock re-applies firmware state each probe
    commit_fault: str | None = None               # injected failure: 'timeout' | 'error'
    # HDM Decoder Capability register: interleave support
    ways_3_6_12: bool = True
    ways_16: bool = True
    addr_11_8: bool = True
    addr_14_12: bool = True

    def supports(self, ways: int, granularity: int) -> bool:
        """cxl_region's endpoint/switch capability check: ways mask and address-bit mask."""
        if self.passthrough:
            return True
        ok_ways = {1, 2, 4, 8} | ({3, 6, 12} if self.ways_3_6_12 else set()) | ({16} if self.ways_16 else set())
        if ways not in ok_ways:
            return False
        eiw = C.ways_to_eiw(ways)
        if eiw in (0, 8):
            return True
        eig = C.granularity_to_eig(granularity)
        low = eig + 8
        high = eiw + eig + 7 if eiw < 8 else eiw + eig - 1
        mask = (0xF00 if self.addr_11_8 else 0) | (0x7000 if self.addr_14_12 else 0)
        return all(mask & (1 << b) for b in range(low, high + 1))

    def reg(self, i: int) -> HdmRegs:
        return self.regs.setdefault(i, HdmRegs())

    @property
    def passthrough(self) -> bool:
        return self.count == 0


# ------------------------------------------------------------------ enumeration

def devm_cxl_enumerate_decoders(port: CxlPort) -> None:
    cap = port.hdm
    sys = port.sys
    if cap is None:
        raise KernelError(errno.ENXIO, f"{port.name}: no HDM decoder capability")
    port.commit_end = -1
    port.hdm_end = -1
    if cap.reprogram_on_enumerate:
        for i, fw in cap.firmware.items():
            cap.regs[i] = attrs.evolve(fw)
    if port.kind != "endpoint" and cap.passthrough:
        # a single-dport host bridge without HDM registers: one passthrough decoder
        if len(port.dports) != 1:
            raise KernelError(errno.ENXIO, f"{port.name}: passthrough needs exactly one dport")
        dp = next(iter(port.dports.values()))
        add_decoder(port, CxlSwitchDecoder, nr_targets=1, targets=[dp], interleave_granularity=4096)
        return
    committed_ids = sorted(i for i in range(cap.count) if cap.reg(i).committed)
    if committed_ids and committed_ids != list(range(len(committed_ids))):
        raise KernelError(errno.ENXIO, f"{port.name}: committed decoders are not contiguous from 0")
    for i in range(cap.count):
        r = cap.reg(i)
        flags = 0
        kw: dict[str, Any] = dict(interleave_ways=r.ways, interleave_granularity=r.granularity,
                                  target_type=r.target_type)
        if r.committed:
            flags |= C.CXL_DECODER_F_ENABLE | (C.CXL_DECODER_F_LOCK if r.locked else 0)
            kw.update(hpa_start=r.base, hpa_size=r.size)
        if port.kind == "endpoint":
            dec = add_decoder(port, CxlEndpointDecoder, flags=flags, **kw)
            if r.committed:
                dpa = r.size // max(r.ways, 1)
                try:
                    cxl_dpa_reserve(dec, dpa, r.skip)
                except KernelError as e:
                    sys.klog.log(f"cxl_port {port.name}: {dec.name}: failed to reserve DPA: {e.reason}", "err")
                    raise KernelError(errno.ENXIO, f"{dec.name}: DPA reservation failed")
                dec.auto = True
                dec.bi = r.bi
                port.commit_end = i
        else:
            ids = r.targets if r.targets is not None else tuple(port.dports)
            targets = [port.dports.get(t) for t in ids][: cap.nr_targets]
            add_decoder(port, CxlSwitchDecoder, flags=flags, nr_targets=cap.nr_targets, targets=targets, **kw)
            if r.committed:
                port.commit_end = i


# ------------------------------------------------------------------ DPA allocator

def _partitions(memdev):
    """(name, start, size) of the device's DPA partitions, in DPA order."""
    return [(C.MODE_RAM, 0, memdev.ram_size), (C.MODE_PMEM, memdev.ram_size, memdev.pmem_size)]


def _mode_of_range(memdev, start: int, size: int) -> str:
    modes = set()
    for name, pstart, psize in _partitions(memdev):
        if psize and start < pstart + psize and start + size > pstart:
            modes.add(name)
    return modes.pop() if len(modes) == 1 else C.MODE_MIXED


def _ep_decoders(port: CxlPort):
    return [d for d in port.decoders.values() if isinstance(d, CxlEndpointDecoder)]


def cxl_dpa_reserve(dec: CxlEndpointDecoder, size: int, skip: int) -> None:
    """__cxl_dpa_reserve(): place ``size`` bytes right after the previous decoder (+skip)."""
    port = dec.port
    if dec.dpa_start is not None:
        raise KernelError(errno.EBUSY, f"{dec.name}: DPA already reserved")
    if port.hdm_end + 1 != dec.id:
        raise KernelError(errno.EBUSY,
                          f"{dec.name}: expected decoder{port.port_id}.{port.hdm_end + 1} to be allocated first")
    prev_end = 0
    for d in _ep_decoders(port):
        if d.dpa_start is not None:
            prev_end = max(prev_end, d.dpa_start + d.dpa_size)
    start = prev_end + skip
    total = dec.memdev.ram_size + dec.memdev.pmem_size
    if start + size > total:
        raise KernelError(errno.ENOSPC, f"{dec.name}: DPA range beyond device capacity")
    dec.dpa_start, dec.dpa_size, dec.skip = start, size, skip
    dec.mode = _mode_of_range(dec.memdev, start, size)
    port.hdm_end += 1


def cxl_dpa_free(dec: CxlEndpointDecoder) -> None:
    port = dec.port
    if dec.dpa_start is None:
        return
    if dec.region is not None:
        raise KernelError(errno.EBUSY, f"{dec.name}: assigned to {dec.region.name}")
    if dec.enabled:
        raise KernelError(errno.EBUSY, f"{dec.name}: decoder is committed")
    if dec.id != port.hdm_end:
        raise KernelError(errno.EBUSY,
                          f"{dec.name}: not the last decoder with DPA (decoder{port.port_id}.{port.hdm_end} is)")
    dec.dpa_start, dec.dpa_size, dec.skip = None, 0, 0
    port.hdm_end -= 1


def cxl_dpa_alloc(dec: CxlEndpointDecoder, size: int) -> None:
    port = dec.port
    memdev = dec.memdev
    if dec.region is not None:
        raise KernelError(errno.EBUSY, f"{dec.name}: assigned to {dec.region.name}")
    if dec.enabled:
        raise KernelError(errno.EBUSY, f"{dec.name}: decoder is committed")
    if dec.mode not in (C.MODE_RAM, C.MODE_PMEM):
        raise KernelError(dec.sys.profile.dpa_alloc_no_mode_errno,
                          f"{dec.name}: mode not set (write ram or pmem to mode first)")
    parts = _partitions(memdev)
    idx = [p[0] for p in parts].index(dec.mode)
    pname, pstart, psize = parts[idx]
    # occupied DPA: every allocation and the skip in front of it (skips are reserved too)
    occupied = []
    for d in _ep_decoders(port):
        if d.dpa_start is not None:
            if d.skip:
                occupied.append((d.dpa_start - d.skip, d.dpa_start))
            occupied.append((d.dpa_start, d.dpa_start + d.dpa_size))

    def used_end(lo, n):
        ends = [min(e, lo + n) for s_, e in occupied if s_ < lo + n and e > lo]
        return max(ends) if ends else None

    end_here = used_end(pstart, psize)
    start = end_here if end_here is not None else pstart
    avail = pstart + psize - start
    # skip: free space left in lower partitions that this allocation jumps over
    skip_start = pstart
    for lname, lstart, lsize in reversed(parts[:idx]):
        e = used_end(lstart, lsize)
        if e is not None:
            skip_start = e
            break
        skip_start = lstart
    skip = pstart - skip_start if idx > 0 and end_here is None else 0
    if size > avail:
        raise KernelError(errno.ENOSPC, f"{dec.name}: {pname} partition has {avail:#x} free, {size:#x} requested")
    if port.hdm_end + 1 != dec.id:
        raise KernelError(errno.EBUSY,
                          f"{dec.name}: expected decoder{port.port_id}.{port.hdm_end + 1} to be allocated first")
    dec.dpa_start, dec.dpa_size, dec.skip = start, size, skip
    port.hdm_end += 1


@core.export
def dpa_size_store(dec: CxlEndpointDecoder, buf: str) -> None:
    """The endpoint decoder's dpa_size store: free the decoder's DPA, then allocate ``buf`` bytes."""
    size = kstrtoull(buf)
    if size % C.SZ_256M:
        raise KernelError(errno.EINVAL, f"{dec.name}: dpa_size {size:#x} is not a multiple of 256MiB")
    cxl_dpa_free(dec)
    if size == 0:
        return
    cxl_dpa_alloc(dec, size)


@core.export
def cxl_dpa_set_mode(dec: CxlEndpointDecoder, buf: str) -> None:
    """The endpoint decoder's mode store: the partition (ram or pmem) its DPA will come from."""
    mode = strip_newline(buf)
    if mode not in (C.MODE_RAM, C.MODE_PMEM):
        raise KernelError(errno.EINVAL, f"{dec.name}: mode must be ram or pmem, not {mode!r}")
    if dec.enabled:
        raise KernelError(errno.EBUSY, f"{dec.name}: decoder is committed")
    memdev = dec.memdev
    if (memdev.ram_size if mode == C.MODE_RAM else memdev.pmem_size) == 0:
        raise KernelError(errno.ENXIO, f"{dec.name}: {memdev.name} has no {mode} capacity")
    dec.mode = mode


# ------------------------------------------------------------------ commit / reset

def cxl_decoder_commit(dec) -> None:
    """Program and enable one decoder (switch or endpoint)."""
    port = dec.port
    cap = port.hdm
    if dec.enabled:
        return
    if cap is None or cap.passthrough:
        return
    if port.commit_end + 1 != dec.id:
        raise KernelError(errno.EBUSY,
                          f"{dec.name}: out of order commit, expected decoder{port.port_id}.{port.commit_end + 1}")
    r = cap.reg(dec.id)
    r.base, r.size, r.ways, r.granularity = dec.hpa_start, dec.hpa_size, dec.interleave_ways, dec.interleave_granularity
    if isinstance(dec, CxlEndpointDecoder):
        r.skip = dec.skip
        r.bi = dec.bi
    else:
        r.targets = tuple(t.port_id for t in dec.targets if t is not None)
    port.commit_end += 1
    if cap.commit_fault:
        fault = cap.commit_fault
        r.committed = False
        port.commit_end -= 1
        if fault == "timeout":
            raise KernelError(errno.ETIMEDOUT, f"{dec.name}: commit timed out")
        raise KernelError(errno.EIO, f"{dec.name}: commit error")
    r.committed = True
    dec.flags |= C.CXL_DECODER_F_ENABLE


def cxl_decoder_reset(dec) -> None:
    port = dec.port
    cap = port.hdm
    if not dec.enabled:
        return
    if dec.sys.profile.out_of_order_reset == "ebusy" and port.commit_end != dec.id:
        raise KernelError(errno.EBUSY, f"{dec.name}: out of order reset, decoder{port.port_id}.{port.commit_end} is "
                          "the last committed")
    if cap is not None and not cap.passthrough:
        cap.reg(dec.id).committed = False
    if port.commit_end == dec.id:
        port.commit_end -= 1
        while port.commit_end >= 0:
            d = port.decoders.get(port.commit_end)
            if d is not None and d.enabled:
                break
            port.commit_end -= 1
    dec.flags &= ~C.CXL_DECODER_F_ENABLE
    if isinstance(dec, CxlEndpointDecoder):
        dec.auto = False
