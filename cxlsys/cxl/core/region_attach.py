"""drivers/cxl/core/region.c, targets: attaching endpoint decoders and setting up the decoders between.

* position math: which host bridge a region position routes through (calc_hb: cxl_hb_modulo /
  cxl_hb_xor) and the position an auto-assembled target sits at (cxl_calc_interleave_pos);
* attach/detach: cxl_region_attach() validates an endpoint decoder for a position and claims a
  decoder on every port from the endpoint up to the host bridge (cxl_port_attach_region(), one
  struct cxl_region_ref per port); cxl_region_detach() undoes it; cxl_decoder_kill_region() is
  the detach of a decoder going away;
* target setup: once all positions are filled, cxl_region_setup_targets() gives each switch and
  host-bridge decoder its ways, granularity, range and target list (checking that dports repeat
  as the interleave requires, check_last_peer()), or verifies what firmware programmed.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import attrs

from cxlsys.cxl import cxl as C
from cxlsys.cxl.core import core
from cxlsys.cxl.core.port import CxlDecoder, CxlEndpointDecoder, CxlPort, CxlRootDecoder, CxlSwitchDecoder, ep_path
from cxlsys.cxl.core.region_commit import region_decommit
from cxlsys.cxl.core.region_state import ACTIVE, INTERLEAVE_ACTIVE, STATE_NAMES
from cxlsys.errors import KernelError
from cxlsys.hazards import note_hazard

if TYPE_CHECKING:  # pragma: no cover - forward declaration (region.py sits above this file)
    from cxlsys.cxl.core.region import CxlRegion


@attrs.define(eq=False)
class RegionRef:
    """struct cxl_region_ref: one region's use of one port."""

    decoder: object
    nr_eps: int = 0
    nr_targets: int = 0
    nr_targets_set: int = 0
    eps: dict = attrs.field(factory=dict)     # memdev name -> (child port below, dport at this port)


# ------------------------------------------------------------------ position math

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


def calc_interleave_pos(cxlr: CxlRegion, cxled: CxlEndpointDecoder) -> int:
    """cxl_calc_interleave_pos(): the region position of ``cxled`` from the dport order of the
    (firmware-programmed) decoders on its path, root first; -1 if the path does not decode the region."""
    pos = 0
    for port in ep_path(cxled):
        parent = port.parent_port
        d: CxlSwitchDecoder | None
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


# ------------------------------------------------------------------ attach / detach

def check_interleave_cap(port: CxlPort, ways: int, gran: int) -> bool:
    """Whether ``port``'s HDM decoders can decode ``ways`` x ``gran`` (no HDM capability: any)."""
    cap = port.hdm
    if cap is None:
        return True
    try:
        return cap.supports(ways, gran)
    except KernelError:
        return False


def cxl_port_attach_region(port: CxlPort, cxlr: CxlRegion, cxled: CxlEndpointDecoder, child: CxlPort | None) -> None:
    """Record ``cxled``'s use of ``port`` (reached from ``child``): the first endpoint claims a
    decoder there (struct cxl_region_ref), later ones count the targets it fans out to."""
    ref = port.regions.get(cxlr)
    md = cxled.memdev
    if ref is None:
        for other in port.regions:
            if (other.hpa_start is not None and cxlr.hpa_start is not None and other.hpa_start > cxlr.hpa_start
                    and not cxlr.auto):
                raise KernelError(errno.EBUSY, f"{cxlr.name}: {port.name}: {other.name} at higher HPA already "
                                  "attached here (attach in HPA order)")
        dec: CxlDecoder | None
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
                raise KernelError(errno.EBUSY, f"{cxlr.name}: {port.name}: no free decoder (next in commit order is "
                                  f"decoder{port.port_id}.{port.commit_end + 1})")
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
            raise KernelError(errno.ENXIO, f"{cxlr.name}: {port.name}: {dec.name} has {dec.nr_targets} target slots, "
                              "region needs more")
    ref.eps[md.name] = (child, child.parent_dport if child is not None else None)
    ref.nr_eps += 1


def cxl_port_detach_region(port: CxlPort, cxlr: CxlRegion, cxled: CxlEndpointDecoder) -> None:
    """Undo cxl_port_attach_region(); the last endpoint gone releases the port's decoder."""
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


def cxl_region_attach(cxlr: CxlRegion, cxled: CxlEndpointDecoder, pos: int, auto: bool = False) -> None:
    """Attach ``cxled`` at position ``pos`` (``auto``: the next free one, the position is sorted out
    once all are there); the last target runs cxl_region_setup_targets() and makes the region ACTIVE."""
    root = cxlr.root
    ep_port = cxled.port
    if not check_interleave_cap(ep_port, cxlr.interleave_ways, cxlr.interleave_granularity) \
            or cxlr.interleave_ways == 0:
        raise KernelError(errno.ENXIO, f"{cxlr.name}: {cxled.name}: endpoint cannot decode {cxlr.interleave_ways} "
                          f"ways x {cxlr.interleave_granularity}")
    if cxled.mode != cxlr.mode:
        raise KernelError(errno.EINVAL,
                          f"{cxlr.name}: {cxled.name}: decoder mode {cxled.mode} != region mode {cxlr.mode}")
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
        raise KernelError(errno.EINVAL, f"{cxlr.name}: {cxled.name}: dpa_size {cxled.dpa_size:#x} x "
                          f"{cxlr.interleave_ways} ways != region size {cxlr.hpa_size:#x}")
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
            raise KernelError(errno.ENXIO, f"{cxlr.name}: target{pos}: {cxled.name} host bridge {hb.name} "
                              f"(dport{hb.port_id}) is not {root.name} target for position {pos} "
                              f"({want.name if want else None})")
    if cxled.region is not None:
        raise KernelError(errno.EBUSY, f"{cxlr.name}: {cxled.name} already in {cxled.region.name}")
    # climb: endpoint port first
    done = []
    path = ep_path(cxled)
    try:
        child = None
        for port in path:
            cxl_port_attach_region(port, cxlr, cxled, child)
            done.append(port)
            child = port
    except KernelError:
        for port in reversed(done):
            cxl_port_detach_region(port, cxlr, cxled)
        cxled.region = None
        raise
    if auto:
        pos = cxlr.nr_targets       # cxl_region_attach_auto(): "temporarily" at the next count
        held = cxlr.targets[pos]
        if held is not None and held is not cxled:
            note_hazard(cxlr.sys, "auto-attach-overwrites",
                        f"{cxlr.name}: {cxled.name} recorded at target{pos} over {held.name} ({cxlr.nr_targets} of "
                        f"{cxlr.interleave_ways} targets, a lower position empty)", cxlr, cxled, held)
    cxlr.targets[pos] = cxled
    cxled.pos = pos
    cxlr.nr_targets += 1
    cxled.region = cxlr
    if cxlr.nr_targets == cxlr.interleave_ways and not auto:
        # a failed setup leaves the target recorded (later attaches: EINVAL "full") but the
        # decoder keeps its old geometry: the region values are copied only after success
        cxl_region_setup_targets(cxlr)
        cxlr.state = ACTIVE
    cxled.interleave_ways = cxlr.interleave_ways
    cxled.interleave_granularity = cxlr.interleave_granularity
    assert cxlr.hpa_start is not None     # INTERLEAVE_ACTIVE or later (checked above): the HPA is allocated
    cxled.hpa_start, cxled.hpa_size = cxlr.hpa_start, cxlr.hpa_size


def cxl_region_detach(cxlr: CxlRegion, pos: int, *, by_user: bool = False) -> None:
    """Detach the target at ``pos`` (detach_target()): decommit a committed region first.
    ``by_user``: a ``targetN`` or ``delete_region`` store, where the decoder stays registered."""
    cxled = cxlr.targets[pos]
    if cxled is None:
        return
    if by_user and cxlr.state <= ACTIVE and cxled.flags & C.CXL_DECODER_F_ENABLE:
        note_hazard(cxlr.sys, "detach-enabled-decoder",
                    f"{cxlr.name}: {cxled.name} detached from a region that is {STATE_NAMES[cxlr.state]} while "
                    "firmware's commit of it stands", cxlr, cxled)
    if cxlr.state > ACTIVE:
        region_decommit(cxlr)
    for port in ep_path(cxled):
        cxl_port_detach_region(port, cxlr, cxled)
    if cxlr.state == ACTIVE:
        cxlr.state = INTERLEAVE_ACTIVE
        cxl_region_teardown_targets(cxlr)
    cxlr.targets[pos] = None
    cxlr.nr_targets -= 1
    cxled.region = None
    cxled.pos = -1
    cxled.hpa_start, cxled.hpa_size = 0, 0
    if cxlr.driver is not None:
        cxlr.driver.release(cxlr)


@core.export
def cxl_decoder_kill_region(dec) -> None:
    """A decoder is going away: detach it (and decommit its region) first."""
    cxlr = dec.region
    if cxlr is None or not isinstance(dec, CxlEndpointDecoder):
        return
    if dec.pos >= 0 and cxlr.targets[dec.pos] is dec:
        cxl_region_detach(cxlr, dec.pos)


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


def cxl_region_setup_targets(cxlr: CxlRegion, verify: bool = False) -> None:
    """cxl_port_setup_targets() for every port of every position: program each switch and host-bridge
    decoder's geometry, range and target list; ``verify``: check firmware's programming instead."""
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
                    raise KernelError(errno.EINVAL,
                                      f"{cxlr.name}: {port.name}: {ref.nr_targets} targets is not a power of 2")
                if ref.nr_targets_set:
                    if any(t is dport for t in dec.targets[: ref.nr_targets_set]):
                        check_last_peer(cxlr, port, ref, cxled, pos, dport)
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
                        raise KernelError(errno.ENXIO, f"{cxlr.name}: {port.name}: ways {iw} overflows {dec.name} "
                                          f"targets {dec.nr_targets}")
                    if not verify and not check_interleave_cap(port, iw, ig):
                        raise KernelError(errno.ENXIO,
                                          f"{cxlr.name}: {port.name}: {dec.name} cannot decode {iw} ways x {ig}")
                    if verify:
                        if dec.interleave_ways != iw or dec.interleave_granularity != ig or \
                                dec.hpa_start != cxlr.hpa_start or dec.hpa_size != cxlr.hpa_size:
                            raise KernelError(errno.ENXIO, f"{cxlr.name}: {dec.name}: firmware programming does not "
                                              "match the region")
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
        cxl_region_teardown_targets(cxlr, touched)
        raise


def check_last_peer(cxlr: CxlRegion, port: CxlPort, ref: RegionRef, cxled, pos: int, dport) -> None:
    """A port's dport repeats every ``distance`` positions: the endpoint ``distance`` positions back
    must have come through the same dport (check_last_peer)."""
    distance = 1
    it: CxlPort | None = port
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


def cxl_region_teardown_targets(cxlr: CxlRegion, ports=None) -> None:
    """Forget the target lists set up on ``ports`` (default: every switch port of the region)."""
    if cxlr.auto:
        return
    if ports is None:
        ports = [p for p in cxlr.sys.cxl_bus.devices
                 if isinstance(p, CxlPort) and cxlr in p.regions and p.kind == "port"]
    for port in ports:
        ref = port.regions.get(cxlr)
        if ref is None:
            continue
        ref.nr_targets_set = 0
        if not ref.decoder.enabled:
            ref.decoder.hpa_start, ref.decoder.hpa_size = 0, 0
