"""drivers/cxl/acpi.c: the cxl_acpi platform driver — root port, root dports (CHBS),
root decoders (CFMWS, with CXIMS for XOR), host-bridge ports, the nvdimm bridge."""

from __future__ import annotations

import errno

import attrs

from cxlsys.base.platform import PlatformDriver
from cxlsys.cxl import cxl as C
from cxlsys.cxl.core.pmem import devm_cxl_add_nvdimm_bridge
from cxlsys.cxl.core.port import CxlRootDecoder, add_decoder, cxl_port_add_dport, devm_cxl_add_port
from cxlsys.errors import KernelError


def add_root_decoder(root, pdev, win) -> CxlRootDecoder:
    sys = root.sys
    targets = []
    for uid in win.targets:
        dp = root.dports.get(uid)
        if dp is None:
            raise KernelError(errno.ENXIO, f"CFMWS target uid {uid} has no CHBS")
        targets.append(dp)
    xormaps = ()
    if win.arithmetic == "xor" and win.ways not in (1, 3):
        # CXIMS for this window's granularity; x2/4/8/16 use log2(ways) maps, x6/12 log2(ways/3)
        nr_maps = ((win.ways if win.ways & (win.ways - 1) == 0 else win.ways // 3).bit_length() - 1)
        for cx in sys.machine.cxims:
            if cx.granularity == win.granularity:
                if len(cx.xormaps) < nr_maps:
                    raise KernelError(errno.ENXIO, f"CXIMS has {len(cx.xormaps)} xormaps, {nr_maps} needed")
                xormaps = tuple(cx.xormaps[:nr_maps])
        if not xormaps:
            raise KernelError(errno.EINVAL, f"No CXIMS for HBIG {win.granularity}")
    flags = C.restrictions_to_flags(win.restrictions)
    # cxl_root_decoder_alloc() took the region id before the CXIMS checks, and put_device() of the
    # refused decoder gave it back: allocated after them here, with the same ids either way
    next_id = sys.memregion_ida.alloc()
    dec = add_decoder(root, CxlRootDecoder, host=pdev, hpa_start=win.base, hpa_size=win.size,
                      interleave_ways=win.ways,
                      interleave_granularity=256 if win.ways == 1 else win.granularity,
                      flags=flags, qos_class=win.qtg_id, nr_targets=win.ways, targets=targets,
                      next_region_id=next_id,
                      interleave_arithmetic=C.ARITH_XOR if win.arithmetic == "xor" else C.ARITH_MODULO,
                      xormaps=xormaps, window_index=win.index, bi_capable=bool(win.restrictions & (1 << 5)))

    def _free_id():
        sys.memregion_ida.free(dec.next_region_id)

    pdev.devm_add_action(_free_id, f"root_decoder_id:{dec.name}")
    return dec


@attrs.define(eq=False, kw_only=True)
class CxlAcpiDriver(PlatformDriver):
    name: str = "cxl_acpi"
    module: str = "cxl_acpi"

    def match(self, dev) -> bool:
        m = dev.sys.machine
        return m is not None and dev is m.acpi_dev

    def probe(self, pdev) -> None:
        sys = pdev.sys
        m = sys.machine
        root = devm_cxl_add_port(pdev, pdev, None, kind="root")
        for hb in m.host_bridges:
            cxl_port_add_dport(root, m.devices[hb.name], hb.uid, host=pdev, rch=hb.rch)
        for win in m.windows:
            add_root_decoder(root, pdev, win)
        for hb in m.host_bridges:
            if hb.rch:
                continue
            devm_cxl_add_port(pdev, m.devices[hb.name], root.dports[hb.uid], kind="port", hdm=m.hdm_caps.get(hb.name))
        if any(w.restrictions & (1 << 3) for w in m.windows):
            devm_cxl_add_nvdimm_bridge(pdev, root)
        # cxl_bus_rescan(): memdevs waiting for a topology may probe now
        for d in list(sys.cxl_bus.devices):
            if d.driver is None and d.registered:
                sys.cxl_bus.probe_device(d)
