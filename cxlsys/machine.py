"""The fake hardware and firmware a topology describes: host devices (platform or PCI),
ACPI tables (CHBS, CFMWS, CXIMS), HDM decoder registers, and what firmware committed.

``Machine.plug()`` registers the host devices in the order cxl_test does (bridges and
ports, then the ACPI0017 device, then memory devices), which lets the drivers build
the CXL topology exactly as the kernel enumerates it.  ``Machine.unplug()`` is the
module unload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import attrs

from cxlsys.base.device import Device, device_add, device_del
from cxlsys.base.pci import PciDevice, PciRoot
from cxlsys.base.platform import PlatformDevice
from cxlsys.cxl.core.bi import FLIT_256, BiComponent
from cxlsys.cxl.core.hdm import HdmCap, HdmRegs
from cxlsys.cxl.core.memdev import MemdevInfo
from cxlsys.cxl_test import MockMemDevice
from cxlsys.cxl_test.mem import cxl_mock_mem_probe
from cxlsys.errors import KernelError
from cxlsys.procfs import iomem_dax_blocks
from cxlsys.topology import Topology

if TYPE_CHECKING:  # pragma: no cover - the System owns the machine (system.py imports this file)
    from cxlsys.system import System

SZ_256M = 256 << 20


@attrs.define
class Window:
    index: int
    base: int
    size: int
    ways: int
    granularity: int
    targets: list
    restrictions: int
    qtg_id: int
    arithmetic: str
    node: Optional[int]
    cfg: object = None


@attrs.define(eq=False)
class Machine:
    sys: System = attrs.field(repr=False)
    topo: Topology
    params: dict
    devices: dict = attrs.field(factory=dict)        # host device name -> Device
    order: list = attrs.field(factory=list)          # registration order
    hdm_caps: dict = attrs.field(factory=dict)       # uport device name -> HdmCap
    windows: list = attrs.field(factory=list)
    cxims: list = attrs.field(factory=list)
    host_bridges: list = attrs.field(factory=list)
    memdev_hosts: dict = attrs.field(factory=dict)   # host name -> MemdevCfg
    acpi_dev: Optional[Device] = None
    memdev_driver: str = "cxl_mock_mem"
    bi_components: dict = attrs.field(factory=dict)   # host device name -> BiComponent (BI profile)
    _parents: dict = attrs.field(factory=dict, init=False, repr=False)
    _port_ids: dict = attrs.field(factory=dict, init=False, repr=False)

    # ------------------------------------------------------------------ build
    def build(self) -> None:
        t = self.topo
        mock = t.module == "cxl_test"
        self.memdev_driver = t.memdev_driver or ("cxl_mock_mem" if mock else "cxl_pci")
        self.host_bridges = list(t.host_bridges)
        base = t.hpa_base
        for i, w in enumerate(t.active(t.windows, self.params)):
            if w.base is not None:
                wb = w.base
            else:
                wb = (base + SZ_256M - 1) // SZ_256M * SZ_256M
                base = wb + w.size
            self.windows.append(Window(i, wb, w.size, w.ways, w.granularity, list(w.targets), w.restrictions,
                                       w.qtg_id, w.arithmetic, w.node, w))
        self.cxims = t.active(t.cxims, self.params)
        for hb in t.host_bridges:
            self.hdm_caps[hb.name] = HdmCap(count=hb.decoders, nr_targets=hb.targets, reprogram_on_enumerate=mock)
        for sw in t.switches:
            self.hdm_caps[sw.name] = HdmCap(count=sw.decoders, nr_targets=sw.targets, reprogram_on_enumerate=mock)
        for md in t.memdevs:
            self.hdm_caps[md.name] = HdmCap(count=md.decoders, nr_targets=0, reprogram_on_enumerate=mock)
            self.memdev_hosts[md.name] = md
        self._index()
        self._program_firmware()
        if self.sys.profile.bi is not None:
            self._bi_components()

    def _bi_components(self) -> None:
        """BI Decoders on root ports, switch DSPs and HDM-DB devices; BI Route Tables on 256B-flit USPs."""
        t = self.topo
        for rp in t.root_ports:
            self.bi_components[rp.name] = BiComponent(rp.name, "decoder", explicit_commit=False)
        for sw in t.switches:
            if sw.flit == FLIT_256:
                self.bi_components[sw.name] = BiComponent(sw.name, "rt", explicit_commit=True)
            for d in sw.downstream:
                self.bi_components[d.name] = BiComponent(d.name, "decoder", explicit_commit=True)
        for md in t.memdevs:
            if md.hdm_db:
                self.bi_components[md.name] = BiComponent(md.name, "decoder", explicit_commit=False)

    def _index(self) -> None:
        """name -> parent name and name -> dport id, for every host device of the topology."""
        t = self.topo
        self._parents, self._port_ids = {}, {}
        for x in t.root_ports:
            self._parents[x.name], self._port_ids[x.name] = x.parent, x.port_id
        for sw in t.switches:
            self._parents[sw.name] = sw.parent
            for d in sw.downstream:
                self._parents[d.name], self._port_ids[d.name] = sw.name, d.port_id
        for md in t.memdevs:
            self._parents[md.name] = md.parent

    def _parent_of(self, name: str) -> str:
        return self._parents.get(name, "")

    def _port_id(self, name: str) -> int:
        return self._port_ids[name]

    def _program_firmware(self) -> None:
        """Decoders committed by firmware for each auto region, at every level of the path: decoder
        ``ar.decoder`` of each member, the next decoder of each switch and host bridge on the way (the
        auto regions through a port take its decoders 0, 1, ... in file order, as BIOS commits them)."""
        t = self.topo
        for ar in t.active(t.auto_regions, self.params):
            wcfg = t.windows[ar.window]
            win = next((w for w in self.windows if w.cfg is wcfg), None)
            if win is None:   # window not published with these parameters: its base was never set
                win = Window(-1, 0, wcfg.size, wcfg.ways, wcfg.granularity, list(wcfg.targets),
                             wcfg.restrictions, wcfg.qtg_id, wcfg.arithmetic, wcfg.node, wcfg)
            start = win.base + ar.offset
            ways = len(ar.members)
            # per uport: ordered distinct child dports used by the members
            levels: dict = {}
            order: list = []
            for m in ar.members:
                dport = self._parent_of(m)
                while dport and dport not in {hb.name for hb in t.host_bridges}:
                    uport = self._parent_of(dport)
                    if uport not in levels:
                        levels[uport] = []
                        order.append(uport)
                    if dport not in levels[uport]:
                        levels[uport].append(dport)
                    dport = self._parent_of(uport)
            # top-down: a host bridge's parent is the root
            depth_sorted = sorted(order, key=lambda u: self._depth(u))
            ig_of: dict[str, tuple[int, int]] = {}       # uport -> (granularity, ways) programmed
            for u in depth_sorted:
                parent_dport = self._parent_of(u)
                parent_uport = self._parent_of(parent_dport) if parent_dport else ""
                if u in {hb.name for hb in t.host_bridges}:
                    piw = win.ways if win.ways & (win.ways - 1) == 0 else win.ways // 3
                    pig = ar.granularity
                else:
                    pig, piw = ig_of[parent_uport]
                iw = len(levels[u])
                ig = pig * piw
                ig_of[u] = (ig, iw)
                fw = self.hdm_caps[u].firmware     # a switch or host bridge: its next decoder, in file order
                fw[len(fw)] = HdmRegs(
                    base=start, size=ar.size, ways=iw, granularity=ig, committed=True,
                    targets=tuple(self._port_id(d) for d in levels[u]))
            for m in ar.members:
                self.hdm_caps[m].firmware[ar.decoder] = HdmRegs(base=start, size=ar.size, ways=ways,
                                                                  granularity=ar.granularity, committed=True)
        for cap in self.hdm_caps.values():
            for i, fw in cap.firmware.items():
                cap.regs[i] = attrs.evolve(fw)

    def _depth(self, name: str) -> int:
        d = 0
        while name:
            name = self._parent_of(name)
            d += 1
        return d

    # ------------------------------------------------------------------ host devices
    def _new_device(self, name: str, parent: Optional[Device], kind: str, **kw: Any) -> Device:
        sys = self.sys
        dev: Device
        if kind == "pci":
            if parent is None or parent.name == "platform":
                dev = PciRoot(name=name, parent=None, sys=sys, **kw)
            else:
                dev = PciDevice(name=name, parent=parent, sys=sys, bus=sys.buses["pci"], **kw)
        else:
            base = name.rsplit(".", 1)[0]
            cls = kw.pop("cls", PlatformDevice)
            dev = cls(name=name, parent=parent, sys=sys, bus=sys.buses["platform"], base_name=base, **kw)
        self.devices[name] = dev
        self.order.append(dev)
        return dev

    def plug(self) -> None:
        t, sys = self.topo, self.sys
        platform = sys.top_devices["platform"]

        def parent_dev(name):
            return self.devices.get(name)

        for hb in t.host_bridges:
            par = platform if hb.parent == "platform" else None
            kw: dict[str, Any] = {"cfg": hb}
            if hb.kind == "platform":
                kw = dict(fw_companion=hb.companion, waiting_for_supplier=True)
            dev = self._new_device(hb.name, par, hb.kind, **kw)
            device_add(dev)
        for rp in t.root_ports:
            dev = self._new_device(rp.name, parent_dev(rp.parent), rp.kind, dport_id=rp.port_id, cfg=rp)
            if rp.kind == "pci":
                dev.pci_class = 0x060400
            device_add(dev)
        for sw in t.switches:
            dev = self._new_device(sw.name, parent_dev(sw.parent), sw.kind, cfg=sw)
            device_add(dev)
            for d in sw.downstream:
                device_add(self._new_device(d.name, dev, d.kind, dport_id=d.port_id, cfg=d))
        acpi_parent = platform if t.acpi_parent == "platform" else None
        self.acpi_dev = self._new_device(t.acpi_device, acpi_parent, "platform")
        device_add(self.acpi_dev)
        for md in t.memdevs:
            kw = dict(numa_node=md.numa_node, cfg=md)
            if md.kind == "pci":
                kw.update(vendor=md.vendor, device=md.device, pci_class=0x050210)
            else:
                kw["cls"] = MockMemDevice if md.mock else PlatformDevice
            device_add(self._new_device(md.name, parent_dev(md.parent), md.kind, **kw))

    def unplug(self) -> None:
        for dev in reversed(self.order):
            if dev.registered:
                device_del(dev)
        self.devices.clear()
        self.order.clear()

    def probe_memdev(self, pdev) -> None:
        """What cxl_pci (or cxl_test's cxl_mock_mem) does at probe: talk to the device over its
        mailbox, then add ``memN``.  The device model is cxl_test's mock memory device for every
        topology for now (a cxl_pci host too: its mailbox answers like the mock's)."""
        info, cap = self.memdev_info(pdev.name)
        cxl_mock_mem_probe(pdev, info, cap)

    def memdev_info(self, host: str):
        """The topology's description of the memory device at ``host`` (what the device model
        answers, and what no mailbox command reports), and its HDM decoder registers."""
        md = self.memdev_hosts[host]
        info = MemdevInfo(ram_size=md.ram, pmem_size=md.pmem, serial=md.serial, lsa_size=md.lsa,
                          payload_max=md.payload_max, firmware_version=md.firmware_version,
                          qos_class=md.qos_class, hdm_db=md.hdm_db, device_type=md.device_type, flit=md.flit,
                          rcd=md.rcd)
        return info, self.hdm_caps[host]

    def apply_dax_state(self) -> None:
        """``[[auto_region]] dax_mode``/``online``: once the regions are assembled and their dax devices
        probed, put each one the way a boot-time udev rule running daxctl (daxctl.conf's
        reconfigure-device) would: ``devdax`` unbinds kmem and binds device_dax (new_id), an online
        state is written to every memory block of the device, as ``daxctl online-memory`` does.
        Through the sysfs files those tools write, so the kernel's checks and logs are the same."""
        from cxlsys.sysfs import Sysfs  # the projection imports the system; this runs after boot

        t = self.topo
        todo = [ar for ar in t.active(t.auto_regions, self.params) if ar.dax_mode or ar.online]
        if not todo:
            return
        journal, self.sys.journal = self.sys.journal, None     # part of boot: a restart's load redoes it
        try:
            self._apply_dax_state(Sysfs(self.sys), todo)
        finally:
            self.sys.journal = journal

    def _apply_dax_state(self, fs: Any, todo: list) -> None:
        t = self.topo
        starts = {}
        for w in self.windows:
            starts[id(w.cfg)] = w.base
        regions = {}
        for d in self.sys.cxl_bus.devices:
            if d.name.startswith("region"):
                try:
                    regions[int(fs.read(f"bus/cxl/devices/{d.name}/resource").decode(), 16)] = d.name
                except (KernelError, ValueError):
                    continue
        bs = int(fs.read("devices/system/memory/block_size_bytes").decode(), 16)
        for ar in todo:
            base = starts.get(id(t.windows[ar.window]))
            r = regions.get(base + ar.offset) if base is not None else None
            if r is None:
                self.sys.klog.log(f"cxlsys: auto region at window {ar.window} + {ar.offset:#x}: no region "
                                  "assembled there: dax_mode/online not applied")
                continue
            dax = f"dax{r[len('region'):]}.0"
            if fs.lookup(f"bus/dax/devices/{dax}") is None:
                self.sys.klog.log(f"cxlsys: {r}: no {dax} (its dax region did not probe): dax_mode/online not "
                                  "applied")
                continue
            blocks = iomem_dax_blocks(fs.read(".cxlsys/proc/iomem").decode(), dax, bs)
            if ar.dax_mode == "devdax":
                # daxctl reconfigure-device -f -m devdax: offline what auto_online_blocks onlined
                # first (kmem's unbind cannot take online memory away), then kmem -> device_dax
                for i in blocks:
                    path = f"devices/system/memory/memory{i}/state"
                    if fs.read(path).decode().strip() != "offline":
                        fs.write(path, b"offline")
                fs.write("bus/dax/drivers/kmem/unbind", dax.encode())
                fs.write("bus/dax/drivers/device_dax/new_id", dax.encode())
                continue
            if ar.online and not blocks:
                self.sys.klog.log(f"cxlsys: {dax}: no memory blocks (kmem added none): online not applied")
            for i in blocks if ar.online else ():
                path = f"devices/system/memory/memory{i}/state"
                if fs.read(path).decode().strip() != ("offline" if ar.online == "offline" else "online"):
                    fs.write(path, str(ar.online).encode())

    def target_node_of(self, hpa: int) -> int:
        for w in self.windows:
            if w.base <= hpa < w.base + w.size:
                return w.node if w.node is not None else 0
        return 0
