"""drivers/cxl/type3_drivers/cxl_mempolicy of the private memory nodes v4 series (RFC 2026-02-22, patch 26,
``CONFIG_CXL_MEMPOLICY``; policy-proposals.md §A.3): a sample PCI driver that makes a CXL type-3
device's memory a private node that mbind()/set_mempolicy() can use.

Its id table has one entry, 8086:0d93 (QEMU's emulated type-3 device), the same functions cxl_pci
binds by class; it is used by a driver swap::

    echo $BDF > /sys/bus/pci/drivers/cxl_pci/unbind
    echo $BDF > /sys/bus/pci/drivers/cxl_mempolicy/bind

so it must never win a device on its own: it is not autoprobed (``Driver.autoprobe``), only an explicit
``bind`` write attaches it (not boot, not ``drivers_probe``, not its own registration).

Probe does what cxl_pci does (``memN``, cxl_mem and the endpoint), then:

1. takes a committed RAM region one of the device's endpoint decoders is in, or creates one: the
   device's RAM capacity rounded down to 256 MiB (less: ENOSPC; no RAM at all: logged, probe
   succeeds with nothing more), 1-way, on a 1-way root decoder window for RAM/type-3 whose target
   is the device's host bridge, through the region engine as the sysfs stores do (DPA, region,
   geometry, size, target, commit);
2. detaches the region driver (no dax_region: nothing else hot-adds the range);
3. ``devm_cxl_add_sysram(region, private=True, online_movable)``;
4. ``node_private_set_ops(nid, np, NP_OPS_MIGRATION | NP_OPS_MEMPOLICY)`` (the series' migrate
   callback, which adds __GFP_THISNODE | __GFP_PRIVATE, is not modelled).

Unbind undoes it in reverse (devres on the PCI device): the ops cleared, the sysram torn down
(offline + remove, the node unregistered; EBUSY from the unregistration — other private ranges
remain — is not an error), a region the driver created deleted and its DPA freed, then the memdev.

Interpretations [I]: a memdev without an endpoint fails the probe with ENXIO; no suitable window is
ENXIO; a region the driver took (rather than created) is left in place on unbind; the ops are
cleared before the memory goes.
"""

from __future__ import annotations

import errno
from typing import Optional

import attrs

from cxlsys.base.bus import Driver
from cxlsys.base.device import Device
from cxlsys.base.pci import PciDevice
from cxlsys.cxl import cxl as C
from cxlsys.cxl.core import hdm
from cxlsys.cxl.core.memdev import CxlMemdev
from cxlsys.cxl.core.port import CxlEndpointDecoder, CxlRootDecoder
from cxlsys.cxl.core.region import CxlRegion, devm_create_region, unregister_region
from cxlsys.cxl.core.region_attach import cxl_region_attach, hb_dport
from cxlsys.cxl.core.region_state import COMMIT
from cxlsys.cxl.core.region_sysram import CxlSysram, devm_cxl_add_sysram
from cxlsys.errors import KernelError
from cxlsys.mm.memory_hotplug import MMOP_ONLINE_MOVABLE
from cxlsys.mm.node_private import NP_OPS_MEMPOLICY, NP_OPS_MIGRATION

PCI_VENDOR_ID_INTEL = 0x8086
CXL_MEMPOLICY_IDS = ((PCI_VENDOR_ID_INTEL, 0x0d93),)     # cxl_mempolicy_pci_tbl[]
CXL_MEMPOLICY_OPS = NP_OPS_MIGRATION | NP_OPS_MEMPOLICY


@attrs.define(eq=False)
class MempolicyData:
    """What one bound device got (the driver's drvdata)."""

    memdev: CxlMemdev
    region: Optional[CxlRegion] = None
    created: bool = False                     # the driver created the region (deleted on unbind)
    sysram: Optional[CxlSysram] = None


@attrs.define(eq=False, kw_only=True)
class CxlMempolicyDriver(Driver):
    name: str = "cxl_mempolicy"
    module: str = "cxl_mempolicy"
    autoprobe: bool = False               # it never takes a device on its own: only an explicit bind
    bound: dict = attrs.field(factory=dict, repr=False)               # PCI device name -> MempolicyData

    def match(self, dev) -> bool:
        m = dev.sys.machine
        return isinstance(dev, PciDevice) and (dev.vendor, dev.device) in CXL_MEMPOLICY_IDS \
            and m is not None and dev.name in m.memdev_hosts

    # ----- probe -----------------------------------------------------------------------------
    def probe(self, pdev: Device) -> None:
        sys = pdev.sys
        assert sys.machine is not None                       # match() needs the machine's memdev hosts
        sys.machine.probe_memdev(pdev)                       # what cxl_pci does
        md = next((c for c in pdev.children.values() if isinstance(c, CxlMemdev)), None)
        if md is None:
            raise KernelError(errno.ENODEV, f"{pdev.name}: cxl_mempolicy: no memdev")
        ep = md.endpoint
        if ep is None or ep.driver is None:
            raise KernelError(errno.ENXIO, f"{pdev.name}: cxl_mempolicy: {md.name} has no endpoint")
        data = MempolicyData(memdev=md)
        self.bound[pdev.name] = data
        pdev.devm_add_action(lambda: self.bound.pop(pdev.name, None), "mempolicy:drvdata")
        if not md.ram_size:
            sys.klog.dev_info(pdev, f"{md.name} has no RAM capacity, nothing to do")
            return
        cxlr = self._committed_ram_region(ep)
        if cxlr is None:
            size = md.ram_size // C.SZ_256M * C.SZ_256M
            if not size:
                raise KernelError(errno.ENOSPC, f"{pdev.name}: cxl_mempolicy: {md.name} RAM {md.ram_size:#x} is "
                                                "less than 256 MiB")
            cxlr, cxled = self._create_region(md, size)
            data.region, data.created = cxlr, True
            pdev.devm_add_action(lambda: _delete_region(cxlr, cxled), f"mempolicy:region:{cxlr.name}")
        else:
            data.region = cxlr
        if cxlr.driver is not None:                          # device_release_driver(): no dax_region
            cxlr.driver.release(cxlr)
        sr = devm_cxl_add_sysram(cxlr, True, MMOP_ONLINE_MOVABLE, host=pdev)
        data.sysram = sr
        assert sr.np is not None                             # a private sysram has its node's record
        sys.memory.private.node_private_set_ops(sr.nid, sr.np, CXL_MEMPOLICY_OPS)
        pdev.devm_add_action(lambda: _clear_ops(sr), "mempolicy:ops")
        sys.klog.dev_info(pdev, f"{cxlr.name}: node {sr.nid} is a private node (migration, mempolicy)")

    # remove(): nothing of its own; everything probe set up is devres on the PCI device

    @staticmethod
    def _committed_ram_region(ep) -> Optional[CxlRegion]:
        for i in sorted(ep.decoders):
            d = ep.decoders[i]
            r = d.region if isinstance(d, CxlEndpointDecoder) else None
            if isinstance(r, CxlRegion) and r.registered and r.mode == C.MODE_RAM and r.state >= COMMIT:
                return r
        return None

    @staticmethod
    def _root_decoders(cxled: CxlEndpointDecoder) -> list:
        """1-way RAM/type-3 windows whose one target is the device's host bridge."""
        hb = hb_dport(cxled)
        want = C.CXL_DECODER_F_RAM | C.CXL_DECODER_F_TYPE3
        return [d for d in cxled.sys.cxl_bus.devices
                if isinstance(d, CxlRootDecoder) and hb is not None and d.port is hb.port
                and d.flags & want == want and d.interleave_ways == 1 and d.targets and d.targets[0] is hb]

    def _create_region(self, md: CxlMemdev, size: int) -> tuple:
        """A 1-way ram region of ``size`` over a free endpoint decoder of ``md``, committed."""
        ep = md.endpoint
        assert ep is not None
        cxled = ep.decoders.get(ep.hdm_end + 1)              # the DPA allocator's next decoder
        if not isinstance(cxled, CxlEndpointDecoder) or cxled.enabled or cxled.region is not None:
            raise KernelError(errno.EBUSY, f"{md.name}: cxl_mempolicy: no free endpoint decoder")
        roots = self._root_decoders(cxled)
        if not roots:
            raise KernelError(errno.ENXIO, f"{md.name}: cxl_mempolicy: no 1-way ram window routes to "
                                           f"{md.parent.name if md.parent else md.name}")
        hdm.cxl_dpa_set_mode(cxled, C.MODE_RAM)
        hdm.cxl_dpa_alloc(cxled, size)
        last: Optional[KernelError] = None
        for root in roots:
            cxlr = devm_create_region(root, root.next_region_id, C.MODE_RAM)
            try:
                cxlr.interleave_granularity_store(f"{root.interleave_granularity}\n")
                cxlr.interleave_ways_store("1\n")
                cxlr.size_store(f"{size:#x}\n")
                cxl_region_attach(cxlr, cxled, 0)
                cxlr.commit_store("1\n")
            except KernelError as e:
                _delete_region(cxlr, None)
                last = e
                if e.errno == errno.ERANGE:                  # no free HPA in this window: the next one
                    continue
                break
            return cxlr, cxled
        hdm.cxl_dpa_free(cxled)
        assert last is not None
        raise last


def _clear_ops(sr: CxlSysram) -> None:
    core = sr.sys.memory.private
    if sr.np is None or not core.is_private(sr.nid):
        return
    try:
        core.node_private_clear_ops(sr.nid, sr.np)
    except KernelError as e:                                 # another record on the node: not ours to clear
        sr.sys.klog.log(f"cxl_mempolicy {sr.name}: clear ops: {e.reason}", "debug")


def _delete_region(cxlr: CxlRegion, cxled: Optional[CxlEndpointDecoder]) -> None:
    """delete_region of a region the driver created, then its endpoint decoder's DPA."""
    if cxlr.registered:
        cxlr.root.port.devm_remove_action(f"region:{cxlr.name}")
        unregister_region(cxlr)
    if cxled is not None and cxled.registered and cxled.dpa_start is not None:
        try:
            hdm.cxl_dpa_free(cxled)
        except KernelError as e:
            cxled.sys.klog.log(f"cxl_mempolicy {cxled.name}: DPA not freed: {e.reason}", "warn")
