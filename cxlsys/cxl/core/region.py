"""drivers/cxl/core/region.c: regions — create/configure/attach/commit/delete.

State machine IDLE < INTERLEAVE_ACTIVE < ACTIVE < RESET_PENDING < COMMIT, with
validation errors before state errors (cxl-core-abi.md §4).  Every refusal raises
``KernelError`` before anything is modified; the reason names the rule.
"""

from __future__ import annotations

import errno
import uuid as uuidlib
from typing import Optional

import attrs

from cxlsys.base.bus import Driver
from cxlsys.base.device import Attr, AttrGroup, RO, RW, device_add, device_del
from cxlsys.cxl import cxl as C
from cxlsys.cxl.core import hdm
from cxlsys.cxl.core.port import (CxlDevice, CxlEndpointDecoder, CxlPort, CxlRootDecoder, CxlSwitchDecoder)
from cxlsys.errors import KernelError
from cxlsys.kstrto import kstrtobool, kstrtoint, kstrtouint, kstrtoull, strip_newline

IDLE, INTERLEAVE_ACTIVE, ACTIVE, RESET_PENDING, COMMIT = range(5)
STATE_NAMES = ["idle", "interleave_active", "active", "reset_pending", "commit"]
MAX_TARGETS = 16


@attrs.define(eq=False)
class RegionRef:
    """struct cxl_region_ref: one region's use of one port."""

    decoder: object
    nr_eps: int = 0
    nr_targets: int = 0
    nr_targets_set: int = 0
    eps: dict = attrs.field(factory=dict)     # memdev name -> (child port below, dport at this port)


@attrs.define(eq=False, kw_only=True)
class CxlRegion(CxlDevice):
    devtype = "cxl_region"
    cxl_type = C.CXL_DEVICE_REGION
    id: int = 0
    root: CxlRootDecoder = attrs.field(repr=False)
    mode: str = C.MODE_PMEM
    uuid: bytes = bytes(16)
    interleave_ways: int = 0
    interleave_granularity: int = 0
    hpa_start: Optional[int] = None
    hpa_size: int = 0
    state: int = IDLE
    targets: list = attrs.field(factory=lambda: [None] * MAX_TARGETS, repr=False)
    nr_targets: int = 0
    auto: bool = False
    needs_reset: bool = False
    bi: bool = False
    child: Optional[object] = attrs.field(default=None, repr=False)   # dax_region / pmem_region
    leaked: bool = False
    id_released: bool = False
    # access coordinates (access0: any initiator, access1: CPU); a zero value hides the file
    coords: tuple = ({}, {})

    def release(self) -> None:
        if not self.id_released:
            self.sys.memregion_ida.free(self.id)
            self.id_released = True

    groups = (
        AttrGroup([RW("uuid"), RW("commit"), RW("interleave_ways"), RW("interleave_granularity"), RW("size"),
                   RO("resource"), RO("mode")] +
                  [Attr(f"target{i}", 0o644, f"target{i}_show", f"target{i}_store") for i in range(MAX_TARGETS)],
                  is_visible="region_visible"),
    ) + tuple(
        AttrGroup([RO(f"{k}", f"access{n}_{k}_show") for k in ("read_bandwidth", "write_bandwidth",
                                                                "read_latency", "write_latency")],
                  name=f"access{n}", is_visible=f"access{n}_visible")
        for n in (0, 1))

    def __getattr__(self, name):
        # accessN_<coordinate>_show
        if name.startswith("access") and name.endswith("_show"):
            n, key = int(name[6]), name[8:-5]
            return lambda: f"{self.coords[n].get(key, 0)}\n"
        # targetN_show / targetN_store
        if name.startswith("target") and name.endswith(("_show", "_store")):
            num = name[6:].split("_")[0]
            if num.isdigit():
                n = int(num)
                if name.endswith("_show"):
                    return lambda: self.target_show(n)
                return lambda buf: target_store(self, n, buf)
        raise AttributeError(name)

    def _access_visible(self, n: int, attr: Attr) -> int:
        return attr.mode if self.coords[n].get(attr.name, 0) else 0

    def access0_visible(self, attr: Attr) -> int:
        return self._access_visible(0, attr)

    def access1_visible(self, attr: Attr) -> int:
        return self._access_visible(1, attr)

    def region_visible(self, attr: Attr) -> int:
        if attr.name == "uuid" and self.mode == C.MODE_RAM:
            return 0o444
        if attr.name.startswith("target") and attr.name[6:].isdigit():
            return attr.mode if int(attr.name[6:]) < self.interleave_ways else 0
        return attr.mode

    # ----- shows ----------------------------------------------------------------
    def uuid_show(self):
        if self.mode == C.MODE_RAM:
            return "\n"
        return f"{uuidlib.UUID(bytes=self.uuid)}\n"

    def commit_show(self):
        return f"{int(self.state >= COMMIT)}\n"

    def interleave_ways_show(self):
        return f"{self.interleave_ways}\n"

    def interleave_granularity_show(self):
        return f"{self.interleave_granularity}\n"

    def size_show(self):
        return f"{self.hpa_size:#x}\n" if self.hpa_size else "0x0\n"

    def resource_show(self):
        return f"{self.hpa_start:#x}\n" if self.hpa_start is not None else "0xffffffffffffffff\n"

    def mode_show(self):
        return f"{self.mode}\n"

    def target_show(self, n: int):
        if n >= self.interleave_ways:
            raise KernelError(errno.ENXIO, f"{self.name}: target{n} beyond interleave_ways")
        t = self.targets[n]
        return f"{t.name}\n" if t is not None else "\n"

    # ----- stores ------------------------------------------------------------------
    def uuid_store(self, buf: str):
        if self.mode == C.MODE_RAM:
            raise KernelError(errno.EACCES, f"{self.name}: uuid is read-only on ram regions")
        count = getattr(buf, "count_", len(buf))
        if count != 37:
            raise KernelError(errno.EINVAL, f"{self.name}: uuid: write exactly 36 characters and a newline ({count} bytes given)")
        u = uuid_parse(buf[:36])
        if u is None:
            raise KernelError(errno.EINVAL, f"{self.name}: uuid: {buf[:36]!r} is not a UUID")
        if u.int == 0:
            raise KernelError(errno.EINVAL, f"{self.name}: uuid: the null uuid is not allowed")
        if u.bytes == self.uuid:
            return
        if self.state >= ACTIVE:
            raise KernelError(errno.EBUSY, f"{self.name}: uuid: region is {STATE_NAMES[self.state]}")
        for other in all_regions(self.sys):
            if other is not self and other.uuid == u.bytes:
                raise KernelError(errno.EBUSY, f"{self.name}: uuid: already used by {other.name}")
        self.uuid = u.bytes

    def interleave_ways_store(self, buf: str):
        val = kstrtouint(buf)
        try:
            C.ways_to_eiw(val)
        except KernelError:
            raise KernelError(errno.EINVAL, f"{self.name}: interleave_ways {val} is not a valid way count")
        rw = self.root.interleave_ways
        q, r = divmod(val, rw)
        if r or q & (q - 1) or q == 0:
            raise KernelError(errno.EINVAL, f"{self.name}: interleave_ways {val} is not {self.root.name} ways ({rw}) x 2^k")
        if self.state >= INTERLEAVE_ACTIVE:
            raise KernelError(errno.EBUSY, f"{self.name}: interleave_ways: region is {STATE_NAMES[self.state]} (free size first)")
        self.interleave_ways = val
        self.sys.changed()

    def interleave_granularity_store(self, buf: str):
        val = kstrtoint(buf)
        if val < 256 or val > 16384 or val & (val - 1):
            raise KernelError(errno.EINVAL, f"{self.name}: interleave_granularity {val} not a power of 2 in 256..16384")
        if self.root.interleave_ways > 1 and val != self.root.interleave_granularity:
            raise KernelError(errno.EINVAL, f"{self.name}: interleave_granularity {val} != {self.root.name} granularity {self.root.interleave_granularity}")
        if self.state >= INTERLEAVE_ACTIVE:
            raise KernelError(errno.EBUSY, f"{self.name}: interleave_granularity: region is {STATE_NAMES[self.state]}")
        self.interleave_granularity = val

    def size_store(self, buf: str):
        val = kstrtoull(buf)
        if val == 0:
            if self.hpa_start is None:
                return
            if self.state >= ACTIVE:
                raise KernelError(errno.EBUSY, f"{self.name}: size: region is {STATE_NAMES[self.state]}")
            free_hpa(self)
            return
        if self.hpa_start is not None:
            if self.hpa_size == val:
                return
            raise KernelError(errno.EBUSY, f"{self.name}: size: HPA already allocated ({self.hpa_size:#x}), write 0 first")
        if self.state >= INTERLEAVE_ACTIVE:
            raise KernelError(errno.EBUSY, f"{self.name}: size: region is {STATE_NAMES[self.state]}")
        if not self.interleave_ways or not self.interleave_granularity:
            raise KernelError(errno.ENXIO, f"{self.name}: size: set interleave_ways and interleave_granularity first")
        if self.mode == C.MODE_PMEM and self.uuid == bytes(16):
            raise KernelError(errno.ENXIO, f"{self.name}: size: set uuid first")
        if val % (C.SZ_256M * self.interleave_ways):
            raise KernelError(errno.EINVAL, f"{self.name}: size {val:#x} not a multiple of 256MiB x {self.interleave_ways} ways")
        alloc_hpa(self, val)

    def commit_store(self, buf: str):
        commit = kstrtobool(buf)
        if commit and self.state >= COMMIT:
            return
        if not commit and self.state < COMMIT:
            return
        if commit and self.state < ACTIVE:
            raise KernelError(errno.ENXIO, f"{self.name}: commit: region is {STATE_NAMES[self.state]}, not active (targets missing?)")
        if commit:
            region_decode_commit(self)
            self.state = COMMIT
            self.needs_reset = False
        else:
            region_decommit(self)
        self.sys.changed()


def uuid_parse(text: str):
    """lib/uuid.c uuid_parse(): exactly 8-4-4-4-12 hex digits; None if malformed."""
    if len(text) != 36 or any(text[i] != "-" for i in (8, 13, 18, 23)):
        return None
    digits = text.replace("-", "")
    if len(digits) != 32 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        return None
    return uuidlib.UUID(hex=digits)


def all_regions(sys):
    return [d for d in sys.cxl_bus.devices if isinstance(d, CxlRegion)]


# ------------------------------------------------------------------ create/delete

def create_region_store(root: CxlRootDecoder, buf: str, mode: str, bi: bool = False) -> None:
    t = strip_newline(buf)
    if not t.startswith("region"):
        raise KernelError(errno.EINVAL, f"{root.name}: expected regionN, got {t!r}")
    digits = ""
    for ch in t[6:]:
        if not ch.isdigit():
            break
        digits += ch
    if not digits:
        raise KernelError(errno.EINVAL, f"{root.name}: expected regionN, got {t!r}")
    rid = int(digits)
    if rid != root.next_region_id:
        raise KernelError(errno.EBUSY, f"{root.name}: region{rid} is not the next region id (region{root.next_region_id})")
    devm_create_region(root, rid, mode, bi=bi)


def devm_create_region(root: CxlRootDecoder, rid: int, mode: str, auto: bool = False, bi: bool = False) -> CxlRegion:
    sys = root.sys
    if rid != root.next_region_id:
        raise KernelError(errno.EBUSY, f"{root.name}: region{rid} is not the next region id")
    new_id = sys.memregion_ida.alloc()
    root.next_region_id = new_id
    cxlr = CxlRegion(name=f"region{rid}", parent=root, sys=sys, bus=sys.cxl_bus, id=rid, root=root, mode=mode,
                     auto=auto, bi=bi)
    device_add(cxlr)
    root.port.devm_add_action(lambda: unregister_region(cxlr), f"region:{cxlr.name}")
    sys.klog.log(f"cxl_core {root.name}: created {cxlr.name} ({mode}{', bi' if bi else ''})", "debug")
    return cxlr


def delete_region_store(root: CxlRootDecoder, buf: str) -> None:
    name = strip_newline(buf)
    cxlr = root.children.get(name)
    if not isinstance(cxlr, CxlRegion):
        raise KernelError(errno.ENODEV, f"{root.name}: delete_region: no region {name!r} under this decoder")
    root.port.devm_remove_action(f"region:{cxlr.name}")
    unregister_region(cxlr)


def unregister_region(cxlr: CxlRegion) -> None:
    if not cxlr.registered:
        return
    root = cxlr.root
    sys = cxlr.sys
    if cxlr.driver is not None:
        cxlr.driver.release(cxlr)
    for i in range(cxlr.interleave_ways):
        if cxlr.targets[i] is not None:
            detach_target(cxlr, i)
    if cxlr.hpa_start is not None:
        cxlr.hpa_start, cxlr.hpa_size = None, 0
    # memregion id: hand the lower id back to the root decoder
    if cxlr.id < root.next_region_id and root.registered:
        sys.memregion_ida.free(root.next_region_id)
        root.next_region_id = cxlr.id
        cxlr.id_released = True
    device_del(cxlr)


# ------------------------------------------------------------------ HPA

def alloc_hpa(cxlr: CxlRegion, size: int, start: Optional[int] = None) -> None:
    root = cxlr.root
    busy = sorted((r.hpa_start, r.hpa_start + r.hpa_size) for r in root.children.values()
                  if isinstance(r, CxlRegion) and r is not cxlr and r.hpa_start is not None)
    busy += cxlr.sys.hpa_busy_ranges(root)
    wstart, wend = root.hpa_start, root.hpa_start + root.hpa_size
    if start is None:
        a = (wstart + C.SZ_256M - 1) // C.SZ_256M * C.SZ_256M
        while a + size <= wend:
            if all(a + size <= s or a >= e for s, e in busy):
                start = a
                break
            a += C.SZ_256M
        if start is None:
            raise KernelError(errno.ERANGE, f"{cxlr.name}: no {size:#x} of free HPA in {root.name} window")
    cxlr.hpa_start, cxlr.hpa_size = start, size
    cxlr.state = INTERLEAVE_ACTIVE
    cxlr.sys.changed()


def free_hpa(cxlr: CxlRegion) -> None:
    cxlr.hpa_start, cxlr.hpa_size = None, 0
    cxlr.state = IDLE
    cxlr.sys.changed()


# ------------------------------------------------------------------ paths

def ep_path(cxled: CxlEndpointDecoder) -> list:
    """Ports from the endpoint port up to, not including, the root."""
    out = []
    p = cxled.port
    while p is not None and p.kind != "root":
        out.append(p)
        p = p.parent_port
    return out


def hb_dport(cxled: CxlEndpointDecoder):
    """The root dport (host bridge) above this endpoint."""
    path = ep_path(cxled)
    return path[-1].parent_dport


def calc_hb(root: CxlRootDecoder, pos: int):
    """The root target that region position ``pos`` routes through (cxl_hb_modulo / cxl_hb_xor)."""
    ways = root.interleave_ways
    if root.interleave_arithmetic == C.ARITH_XOR and ways > 1:
        hpa = root.hpa_start + pos * root.interleave_granularity
        n = 0
        for i, m in enumerate(root.xormaps):
            n |= (bin(hpa & m).count("1") & 1) << i
        if ways & (ways - 1):
            # x3/x6/x12: the remaining position is a modulo-3 of the address above the map bits
            gran_bits = root.interleave_granularity.bit_length() - 1
            n |= ((hpa >> (gran_bits + len(root.xormaps))) % 3) << len(root.xormaps)
        return root.targets[n] if n < len(root.targets) else None
    return root.targets[pos % ways]


# ------------------------------------------------------------------ attach

def _cap_check(port: CxlPort, ways: int, gran: int) -> bool:
    cap = port.hdm
    if cap is None:
        return True
    try:
        return cap.supports(ways, gran)
    except KernelError:
        return False


def port_attach_region(port: CxlPort, cxlr: CxlRegion, cxled: CxlEndpointDecoder, child: Optional[CxlPort]) -> None:
    ref = port.regions.get(cxlr)
    md = cxled.memdev
    if ref is None:
        for other in port.regions:
            if other.hpa_start is not None and cxlr.hpa_start is not None and other.hpa_start > cxlr.hpa_start and not cxlr.auto:
                raise KernelError(errno.EBUSY, f"{cxlr.name}: {port.name}: {other.name} at higher HPA already attached here (attach in HPA order)")
        if port.kind == "endpoint":
            dec = cxled
        else:
            dec = None
            if port.hdm is not None and port.hdm.passthrough:
                dec = port.decoders.get(0)
            elif cxlr.auto:
                for d in port.decoders.values():
                    if d.region is None and d.enabled and d.hpa_start == cxlr.hpa_start and d.hpa_size == cxlr.hpa_size:
                        dec = d
                        break
            elif port.sys.profile.switch_decoder_choice == "first_free":
                dec = next((d for d in port.decoders.values() if d.region is None and not d.enabled), None)
            else:
                cand = port.decoders.get(port.commit_end + 1)
                if cand is not None and cand.region is None and all(port.decoders[i].enabled for i in range(cand.id)):
                    dec = cand
            if dec is None:
                raise KernelError(errno.EBUSY, f"{cxlr.name}: {port.name}: no free decoder (next in commit order is decoder{port.port_id}.{port.commit_end + 1})")
            if dec.region is not None:
                raise KernelError(errno.EBUSY, f"{cxlr.name}: {port.name}: {dec.name} already in {dec.region.name}")
        ref = RegionRef(decoder=dec, nr_targets=1)
        port.regions[cxlr] = ref
        dec.region = cxlr
        if port.kind != "endpoint":
            dec.target_type = C.CXL_DECODER_HOSTONLYMEM
    else:
        new_target = child is None or child.kind == "endpoint" or all(c is not child for c, _ in ref.eps.values())
        if new_target:
            ref.nr_targets += 1
        dec = ref.decoder
        if port.kind != "endpoint" and isinstance(dec, CxlSwitchDecoder) and ref.nr_targets > dec.nr_targets:
            ref.nr_targets -= 1 if new_target else 0
            raise KernelError(errno.ENXIO, f"{cxlr.name}: {port.name}: {dec.name} has {dec.nr_targets} target slots, region needs more")
    ref.eps[md.name] = (child, child.parent_dport if child is not None else None)
    ref.nr_eps += 1
    cxlr.sys.changed()


def port_detach_region(port: CxlPort, cxlr: CxlRegion, cxled: CxlEndpointDecoder) -> None:
    ref = port.regions.get(cxlr)
    if ref is None:
        return
    ent = ref.eps.pop(cxled.memdev.name, None)
    if ent is None:
        return
    ref.nr_eps -= 1
    child = ent[0]
    if port.kind != "endpoint":
        shared = child is not None and child.kind != "endpoint" and any(c is child for c, _ in ref.eps.values())
        if not shared:
            ref.nr_targets -= 1
    if ref.nr_eps == 0:
        del port.regions[cxlr]
        if ref.decoder.region is cxlr:
            ref.decoder.region = None
    cxlr.sys.changed()


def attach_target(cxlr: CxlRegion, cxled: CxlEndpointDecoder, pos: int, auto: bool = False) -> None:
    root = cxlr.root
    ep_port = cxled.port
    if not _cap_check(ep_port, cxlr.interleave_ways, cxlr.interleave_granularity) or cxlr.interleave_ways == 0:
        raise KernelError(errno.ENXIO, f"{cxlr.name}: {cxled.name}: endpoint cannot decode {cxlr.interleave_ways} ways x {cxlr.interleave_granularity}")
    if cxled.mode != cxlr.mode:
        raise KernelError(errno.EINVAL, f"{cxlr.name}: {cxled.name}: decoder mode {cxled.mode} != region mode {cxlr.mode}")
    bi_uapi = cxlr.sys.profile.bi
    if bi_uapi is not None and cxled.bi != cxlr.bi:
        raise KernelError(bi_uapi.err_mismatch,
                          f"{cxlr.name}: {cxled.name}: {'non-' if not cxled.bi else ''}BI decoder in a "
                          f"{'BI' if cxlr.bi else 'non-BI'} region")
    if cxled.mode == C.MODE_DEAD:
        raise KernelError(errno.ENODEV, f"{cxlr.name}: {cxled.name}: decoder is being removed")
    if cxlr.state > INTERLEAVE_ACTIVE:
        raise KernelError(errno.EBUSY, f"{cxlr.name}: {cxled.name}: region is {STATE_NAMES[cxlr.state]}")
    if cxlr.state < INTERLEAVE_ACTIVE:
        raise KernelError(errno.ENXIO, f"{cxlr.name}: {cxled.name}: region has no size yet")
    if cxlr.nr_targets >= cxlr.interleave_ways:
        raise KernelError(errno.EINVAL, f"{cxlr.name}: {cxled.name}: all {cxlr.interleave_ways} targets already set")
    hb = hb_dport(cxled)
    if hb is None or hb.port is not root.port or root.port.dports.get(hb.port_id) is not hb:
        raise KernelError(errno.ENXIO, f"{cxlr.name}: {cxled.name}: not below {root.port.name}")
    if cxled.target_type != C.CXL_DECODER_HOSTONLYMEM:
        raise KernelError(errno.ENXIO, f"{cxlr.name}: {cxled.name}: decoder target type is not expander")
    if cxled.dpa_start is None:
        raise KernelError(errno.ENXIO, f"{cxlr.name}: {cxled.name}: no DPA allocated (write dpa_size)")
    if cxled.dpa_size * cxlr.interleave_ways != cxlr.hpa_size:
        raise KernelError(errno.EINVAL, f"{cxlr.name}: {cxled.name}: dpa_size {cxled.dpa_size:#x} x {cxlr.interleave_ways} ways != region size {cxlr.hpa_size:#x}")
    if not auto:
        if pos < 0 or pos >= cxlr.interleave_ways:
            raise KernelError(errno.ENXIO, f"{cxlr.name}: position {pos} out of range")
        if cxlr.targets[pos] is not None and cxlr.targets[pos] is not cxled:
            raise KernelError(errno.EBUSY, f"{cxlr.name}: target{pos} already holds {cxlr.targets[pos].name}")
        for i, t in enumerate(cxlr.targets[: cxlr.interleave_ways]):
            if t is not None and t.memdev is cxled.memdev and i != pos:
                raise KernelError(errno.EBUSY, f"{cxlr.name}: {cxled.memdev.name} already mapped at target{i}")
        want = calc_hb(root, pos)
        if want is not hb:
            raise KernelError(errno.ENXIO, f"{cxlr.name}: target{pos}: {cxled.name} host bridge {hb.name} (dport{hb.port_id}) is not {root.name} target for position {pos} ({want.name if want else None})")
    if cxled.region is not None:
        raise KernelError(errno.EBUSY, f"{cxlr.name}: {cxled.name} already in {cxled.region.name}")
    # climb: endpoint port first
    done = []
    path = ep_path(cxled)
    try:
        child = None
        for port in path:
            port_attach_region(port, cxlr, cxled, child)
            done.append(port)
            child = port
    except KernelError:
        for port in reversed(done):
            port_detach_region(port, cxlr, cxled)
        cxled.region = None
        raise
    if auto:
        pos = cxlr.nr_targets
    cxlr.targets[pos] = cxled
    cxled.pos = pos
    cxlr.nr_targets += 1
    cxled.region = cxlr
    cxlr.sys.changed()
    if cxlr.nr_targets == cxlr.interleave_ways and not auto:
        # a failed setup leaves the target recorded (later attaches: EINVAL "full") but the
        # decoder keeps its old geometry: the region values are copied only after success
        region_setup_targets(cxlr)
        cxlr.state = ACTIVE
    cxled.interleave_ways = cxlr.interleave_ways
    cxled.interleave_granularity = cxlr.interleave_granularity
    cxled.hpa_start, cxled.hpa_size = cxlr.hpa_start, cxlr.hpa_size


def detach_target(cxlr: CxlRegion, pos: int) -> None:
    cxled = cxlr.targets[pos]
    if cxled is None:
        return
    if cxlr.state > ACTIVE:
        region_decommit(cxlr)
    for port in ep_path(cxled):
        port_detach_region(port, cxlr, cxled)
    if cxlr.state == ACTIVE:
        cxlr.state = INTERLEAVE_ACTIVE
        region_teardown_targets(cxlr)
    cxlr.targets[pos] = None
    cxlr.nr_targets -= 1
    cxled.region = None
    cxled.pos = -1
    cxled.hpa_start, cxled.hpa_size = 0, 0
    if cxlr.driver is not None:
        cxlr.driver.release(cxlr)
    cxlr.sys.changed()


def target_store(cxlr: CxlRegion, n: int, buf: str) -> None:
    name = strip_newline(buf)
    if name == "":
        if n >= cxlr.interleave_ways:
            raise KernelError(errno.ENXIO, f"{cxlr.name}: target{n} beyond interleave_ways")
        detach_target(cxlr, n)
        return
    dev = cxlr.sys.cxl_bus.find_device(name)
    if dev is None:
        raise KernelError(errno.ENODEV, f"{cxlr.name}: target{n}: no device {name!r}")
    if not isinstance(dev, CxlEndpointDecoder):
        raise KernelError(errno.EINVAL, f"{cxlr.name}: target{n}: {name} is not an endpoint decoder")
    attach_target(cxlr, dev, n)


def cxl_decoder_kill_region(dec) -> None:
    """A decoder is going away: detach it (and decommit its region) first."""
    cxlr = dec.region
    if cxlr is None or not isinstance(dec, CxlEndpointDecoder):
        return
    if dec.pos >= 0 and cxlr.targets[dec.pos] is dec:
        detach_target(cxlr, dec.pos)


# ------------------------------------------------------------------ target setup

def _region_ref_chain(cxlr: CxlRegion, cxled: CxlEndpointDecoder):
    """(port, ref, dport-at-port) from the host bridge port down to the port above the endpoint."""
    path = ep_path(cxled)
    out = []
    for i in range(len(path) - 1, 0, -1):
        port = path[i]
        below = path[i - 1]
        out.append((port, port.regions[cxlr], below.parent_dport))
    return out


def region_setup_targets(cxlr: CxlRegion, verify: bool = False) -> None:
    root = cxlr.root
    touched = []
    try:
        for pos in range(cxlr.interleave_ways):
            cxled = cxlr.targets[pos]
            for port, ref, dport in _region_ref_chain(cxlr, cxled):
                dec = ref.decoder
                if port not in touched:
                    touched.append(port)
                if ref.nr_targets & (ref.nr_targets - 1):
                    raise KernelError(errno.EINVAL, f"{cxlr.name}: {port.name}: {ref.nr_targets} targets is not a power of 2")
                if ref.nr_targets_set:
                    if any(t is dport for t in dec.targets[: ref.nr_targets_set]):
                        _check_last_peer(cxlr, port, ref, cxled, pos, dport)
                        continue
                else:
                    parent = port.parent_port
                    if parent.kind == "root":
                        parent_ig = cxlr.interleave_granularity
                        parent_iw = root.interleave_ways
                        if parent_iw & (parent_iw - 1):
                            parent_iw //= 3
                    else:
                        pdec = parent.regions[cxlr].decoder
                        parent_ig, parent_iw = pdec.interleave_granularity, pdec.interleave_ways
                    iw = ref.nr_targets
                    ig = parent_ig * parent_iw
                    if ig > 16384 or ig < 256:
                        raise KernelError(errno.EINVAL, f"{cxlr.name}: {port.name}: granularity {ig} not encodable")
                    if iw > 8 or (isinstance(dec, CxlSwitchDecoder) and iw > dec.nr_targets):
                        raise KernelError(errno.ENXIO, f"{cxlr.name}: {port.name}: ways {iw} overflows {dec.name} targets {dec.nr_targets}")
                    if not verify and not _cap_check(port, iw, ig):
                        raise KernelError(errno.ENXIO, f"{cxlr.name}: {port.name}: {dec.name} cannot decode {iw} ways x {ig}")
                    if verify:
                        if dec.interleave_ways != iw or dec.interleave_granularity != ig or \
                                dec.hpa_start != cxlr.hpa_start or dec.hpa_size != cxlr.hpa_size:
                            raise KernelError(errno.ENXIO, f"{cxlr.name}: {dec.name}: firmware programming does not match the region")
                    else:
                        if not (port.hdm is not None and port.hdm.passthrough):
                            dec.interleave_ways, dec.interleave_granularity = iw, ig
                        dec.hpa_start, dec.hpa_size = cxlr.hpa_start, cxlr.hpa_size
                if ref.nr_targets_set >= ref.nr_targets:
                    raise KernelError(errno.ENXIO, f"{cxlr.name}: {port.name}: {dec.name} targets full")
                if verify:
                    if dec.targets[ref.nr_targets_set] is not dport:
                        raise KernelError(errno.ENXIO, f"{cxlr.name}: {dec.name}: firmware target order does not match")
                else:
                    while len(dec.targets) <= ref.nr_targets_set:
                        dec.targets.append(None)
                    dec.targets[ref.nr_targets_set] = dport
                ref.nr_targets_set += 1
    except KernelError:
        region_teardown_targets(cxlr, touched)
        raise


def _check_last_peer(cxlr: CxlRegion, port: CxlPort, ref: RegionRef, cxled, pos: int, dport) -> None:
    """A port's dport repeats every ``distance`` positions: the endpoint ``distance`` positions back
    must have come through the same dport (check_last_peer)."""
    distance, it = 1, port
    while it is not None and it.kind != "root":
        distance *= it.regions[cxlr].nr_targets
        it = it.parent_port
    distance *= cxlr.root.interleave_ways
    if pos < distance:
        raise KernelError(errno.ENXIO, f"{cxlr.name}: {port.name}: {cxled.name} at position {pos}: invalid "
                                       f"distance {distance} (position {pos} cannot reuse {dport.name})")
    peer = cxlr.targets[pos - distance]
    peer_dport = ref.eps.get(peer.memdev.name, (None, None))[1]
    if peer_dport is not dport:
        raise KernelError(errno.ENXIO, f"{cxlr.name}: {port.name}: {cxled.name} position {pos} goes through "
                                       f"{dport.name}, its peer {peer.name} at {pos - distance} through "
                                       f"{peer_dport.name if peer_dport else None}")


def region_teardown_targets(cxlr: CxlRegion, ports=None) -> None:
    if cxlr.auto:
        return
    if ports is None:
        ports = [p for p in cxlr.sys.cxl_bus.devices if isinstance(p, CxlPort) and cxlr in p.regions and p.kind == "port"]
    for port in ports:
        ref = port.regions.get(cxlr)
        if ref is None:
            continue
        ref.nr_targets_set = 0
        if not ref.decoder.enabled:
            ref.decoder.hpa_start, ref.decoder.hpa_size = 0, 0


# ------------------------------------------------------------------ commit

def _commit_path(cxlr: CxlRegion, cxled: CxlEndpointDecoder):
    """Decoders from the endpoint up to the host bridge (bottom-up)."""
    return [p.regions[cxlr].decoder for p in ep_path(cxled)]


def region_decode_commit(cxlr: CxlRegion) -> None:
    done = []
    for i in range(cxlr.interleave_ways):
        cxled = cxlr.targets[i]
        path = _commit_path(cxlr, cxled)
        try:
            for dec in path:
                hdm.cxl_decoder_commit(dec)
        except KernelError as e:
            for dec in reversed(path):
                hdm.cxl_decoder_reset(dec)
            for j in range(i - 1, -1, -1):
                for dec in reversed(_commit_path(cxlr, cxlr.targets[j])):
                    hdm.cxl_decoder_reset(dec)
            cxlr.sys.klog.log(f"cxl_core {cxlr.name}: commit failed at target{i}: {e.reason}", "err")
            raise
        done.append(i)


def region_decommit(cxlr: CxlRegion) -> None:
    cxlr.state = RESET_PENDING
    if cxlr.driver is not None:
        cxlr.driver.release(cxlr)
    for i in range(cxlr.interleave_ways - 1, -1, -1):
        cxled = cxlr.targets[i]
        if cxled is None:
            continue
        for dec in reversed(_commit_path(cxlr, cxled)):
            hdm.cxl_decoder_reset(dec)
    cxlr.state = ACTIVE
    cxlr.auto = False
    cxlr.sys.changed()


# ------------------------------------------------------------------ auto regions

def calc_interleave_pos(cxlr: CxlRegion, cxled: CxlEndpointDecoder) -> int:
    pos = 0
    for port in ep_path(cxled):
        parent = port.parent_port
        if parent.kind == "root":
            d = cxlr.root
        else:
            d = next((x for x in parent.decoders.values()
                      if x.hpa_start == cxlr.hpa_start and x.hpa_size == cxlr.hpa_size), None)
        if d is None:
            return -1
        try:
            idx = [t for t in d.targets].index(port.parent_dport)
        except ValueError:
            return -1
        pos = pos * d.interleave_ways + idx
    return pos


def cxl_add_to_region(cxled: CxlEndpointDecoder) -> None:
    """Assemble a region from a firmware-committed (auto) endpoint decoder."""
    sys = cxled.sys
    root = None
    for d in sys.cxl_bus.devices:
        if isinstance(d, CxlRootDecoder) and d.window_contains(cxled.hpa_start, cxled.hpa_size):
            root = d
            break
    if root is None:
        raise KernelError(errno.ENXIO, f"{cxled.name}: no root decoder covers {cxled.hpa_start:#x}")
    cxlr = None
    for r in root.children.values():
        if isinstance(r, CxlRegion) and r.hpa_start == cxled.hpa_start and r.hpa_size == cxled.hpa_size:
            cxlr = r
            break
    if cxlr is None:
        cxlr = devm_create_region(root, root.next_region_id, cxled.mode, auto=True)
        cxlr.interleave_ways = cxled.interleave_ways
        cxlr.interleave_granularity = cxled.interleave_granularity
        cxlr.bi = cxled.bi
        alloc_hpa(cxlr, cxled.hpa_size, cxled.hpa_start)
    attach_target(cxlr, cxled, -1, auto=True)
    if cxlr.nr_targets < cxlr.interleave_ways:
        return
    # sort by calculated position, then verify the programming
    ts = sorted(cxlr.targets[: cxlr.interleave_ways], key=lambda t: calc_interleave_pos(cxlr, t))
    for i, t in enumerate(ts):
        cxlr.targets[i] = t
        t.pos = i
    region_setup_targets(cxlr, verify=True)
    cxlr.state = COMMIT
    sys.cxl_bus.probe_device(cxlr)


# ------------------------------------------------------------------ cxl_region driver

@attrs.define(eq=False, kw_only=True)
class CxlRegionDriver(Driver):
    name: str = "cxl_region"
    module: str = "cxl_core"

    def match(self, dev) -> bool:
        return isinstance(dev, CxlRegion)

    def probe(self, cxlr: CxlRegion) -> None:
        if cxlr.state < COMMIT or cxlr.needs_reset:
            raise KernelError(errno.ENXIO, f"{cxlr.name}: cannot bind: region is {STATE_NAMES[cxlr.state]}, commit it first")
        if cxlr.mode == C.MODE_PMEM:
            from cxlsys.cxl.core.pmem import devm_cxl_add_pmem_region
            devm_cxl_add_pmem_region(cxlr)
        else:
            if cxlr.sys.hpa_is_online_ram(cxlr.hpa_start, cxlr.hpa_size):
                return
            from cxlsys.dax.cxl import devm_cxl_add_dax_region
            devm_cxl_add_dax_region(cxlr)
