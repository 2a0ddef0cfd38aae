"""Pass 2, the cross references: parents, PCI naming and bus numbers, port ids, window
targets and auto regions, checked once every table has been read (pass 1)."""

from __future__ import annotations

from typing import NoReturn

from cxlsys.topology.devices import (
    _PCI_FN,
    _PCI_ROOT,
    _ROLE_TEXT,
    HostBridgeCfg,
    MemdevCfg,
    PortCfg,
    SwitchCfg,
    _Dev,
)
from cxlsys.topology.limits import limit
from cxlsys.topology.reader import SZ_256M, _fmt_size, _Reader
from cxlsys.topology.toplevel import Topology
from cxlsys.topology.windows import INTERLEAVE_WAYS, RESTRICTIONS, AutoRegionCfg, WindowCfg


def _compatible(a: dict[str, int], b: dict[str, int]) -> bool:
    """Can two ``when`` conditions hold at the same time?"""
    return all(b[k] == v for k, v in a.items() if k in b)


def _ilog2(n: int) -> int:
    return n.bit_length() - 1


class _CrossRef:
    """The checks of pass 2 over what pass 1 read: ``devs`` (name -> _Dev), ``where``
    (id(cfg) -> "window[3]") and ``given_fields`` (memdev name -> fields the file sets)."""

    def __init__(self, r: _Reader, t: Topology, devs: dict[str, _Dev], where: dict[int, str],
                 given_fields: dict[str, set[str]]):
        self.r = r
        self.t = t
        self.devs = devs
        self.where = where
        self.given_fields = given_fields

    def err(self, where: str, msg: str) -> NoReturn:
        self.r.err(where, msg)

    def over(self, where: str, what: str, name: str) -> NoReturn:
        self.r.over(where, what, name)

    def dev_of(self, name: str) -> _Dev | None:
        return self.devs.get(name)

    def check_parents(self) -> None:
        """Each device hangs where the hardware allows it, and the chain reaches a host bridge."""
        t = self.t
        for rp in t.root_ports:
            w = self.where[id(rp)]
            p = self.dev_of(rp.parent)
            if p is None:
                self.err(f"{w}.parent", f"no device named {rp.parent!r}")
            if p.role != "host_bridge":
                self.err(f"{w}.parent", f"{rp.parent!r} is {_ROLE_TEXT[p.role]}, not a host bridge "
                                        "(root ports sit directly on a host bridge)")
            if p.bridge.rch:
                self.err(f"{w}.parent", f"{rp.parent!r} is an RCH host bridge (rch = true): it has no root "
                                        "ports; attach an RCD (memdev rcd = true) to it directly")
        for sw in t.switches:
            w = self.where[id(sw)]
            p = self.dev_of(sw.parent)
            if p is None:
                self.err(f"{w}.parent", f"no device named {sw.parent!r}")
            if p.role not in ("root_port", "downstream"):
                self.err(f"{w}.parent", f"{sw.parent!r} is {_ROLE_TEXT[p.role]}: a switch's upstream port "
                                        "links to a root port or a switch downstream port")
        for md in t.memdevs:
            w = self.where[id(md)]
            p = self.dev_of(md.parent)
            if p is None:
                self.err(f"{w}.parent", f"no device named {md.parent!r}")
            if md.rcd:
                if p.role != "host_bridge" or not p.bridge.rch:
                    self.err(f"{w}.parent", f"{md.parent!r} is {_ROLE_TEXT[p.role]}: an RCD (rcd = true) "
                                            "attaches directly to an RCH host bridge (rch = true)")
            elif p.role == "host_bridge":
                hint = ("only an RCD (rcd = true) attaches to an RCH host bridge" if p.bridge.rch else
                        "a memdev links to a root port or a switch downstream port")
                self.err(f"{w}.parent", f"{md.parent!r} is a host bridge: {hint}")
            elif p.role not in ("root_port", "downstream"):
                self.err(f"{w}.parent", f"{md.parent!r} is {_ROLE_TEXT[p.role]}: a memdev links to a root port "
                                        "or a switch downstream port")
        # switch chains must end at a host bridge (no loops through downstream ports), through
        # no more than the limit of cascaded switches
        depth: dict[str, int] = {}          # switch name -> switches from its root port down to it
        for sw in t.switches:
            seen = set()
            chain = []
            name = sw.name
            while name not in depth:
                dev = self.devs[name]
                if dev.role == "host_bridge":
                    break
                if name in seen:
                    self.err(f"{self.where[id(sw)]}.parent", "the parent chain loops back to "
                                                             f"{name!r} and never reaches a host bridge")
                seen.add(name)
                if dev.role == "switch":
                    chain.append(name)
                name = dev.node.parent
            n = depth.get(name, 0)
            for s in reversed(chain):
                n += 1
                depth[s] = n
            if depth[sw.name] > limit("switch_depth"):
                self.over(f"{self.where[id(sw)]}.parent", f"{depth[sw.name]} switches cascaded from the root port "
                                                          f"down to {sw.name!r}", "switch_depth")

    def parent_name(self, name: str) -> str:
        dev = self.devs[name]
        return dev.node.parent if dev.role != "host_bridge" else ""

    def host_bridge_of(self, name: str) -> HostBridgeCfg:
        while self.devs[name].role != "host_bridge":
            name = self.parent_name(name)
        return self.devs[name].bridge

    def resolve_kinds(self) -> None:
        """A missing ``kind`` is inherited from the parent; a child's kind must match its parent's."""
        t = self.t
        order: list[PortCfg | SwitchCfg | MemdevCfg] = [*t.root_ports, *self._switches_top_down(), *t.memdevs]
        for cfg in order:
            dev = self.devs[cfg.name]
            pdev = self.devs[cfg.parent]
            pkind = pdev.node.kind
            kind = dev.kind_given or pkind
            if kind != pkind:
                self.err(f"{dev.where}.kind", f"kind {kind!r} below {pkind} device {cfg.parent!r}: "
                                              f"everything below a {pkind} host bridge is {pkind}")
            cfg.kind = kind
            if isinstance(cfg, SwitchCfg):
                for dp in cfg.downstream:
                    ddev = self.devs[dp.name]
                    dkind = ddev.kind_given or kind
                    if dkind != kind:
                        self.err(f"{ddev.where}.kind", f"kind {dkind!r} in a {kind} switch {cfg.name!r}")
                    dp.kind = dkind
        driver = t.memdev_driver or ("cxl_mock_mem" if t.module == "cxl_test" else "cxl_pci")
        for md in t.memdevs:
            w = self.where[id(md)]
            given = self.given_fields.get(md.name, set())
            if md.kind == "platform" and driver != "cxl_mock_mem":
                self.err(f"{w}.kind", "a platform memdev is bound by cxl_mock_mem: declare [module] "
                                      "name = \"cxl_test\" or acpi.memdev_driver = \"cxl_mock_mem\" "
                                      "(or make the device kind = \"pci\")")
            if md.kind == "pci":
                if md.mock:
                    self.err(f"{w}.mock", "mock attributes exist only on cxl_test platform memdevs")
            else:
                for k in ("vendor", "device"):
                    if k in given:
                        self.err(f"{w}.{k}", "PCI ids apply to kind = \"pci\" memdevs only")

    def _switches_top_down(self) -> list[SwitchCfg]:
        depth: dict[str, int] = {}

        def d(name: str) -> int:
            if name not in depth:
                dev = self.devs[name]
                depth[name] = 0 if dev.role == "host_bridge" else d(self.parent_name(name)) + 1
            return depth[name]

        return sorted(self.t.switches, key=lambda s: d(s.name))

    def check_pci_names(self) -> None:
        """PCI devices carry the kernel's names; bus numbers follow the PCI hierarchy."""
        t = self.t
        roots: dict[str, tuple[int, int]] = {}          # host bridge name -> (domain, bus)
        for hb in t.host_bridges:
            if hb.kind != "pci":
                continue
            m = _PCI_ROOT.fullmatch(hb.name)
            assert m is not None, hb.name                 # parse_host_bridges checked it
            roots[hb.name] = (int(m.group(1), 16), int(m.group(2), 16))
        fns: dict[str, tuple[int, ...]] = {}            # function name -> (domain, bus, dev, fn)
        for name, dev in self.devs.items():
            if dev.role in ("host_bridge", "acpi") or dev.node.kind != "pci":
                continue
            m = _PCI_FN.fullmatch(name)
            if not m or int(m.group(3), 16) > 0x1f:
                self.err(f"{dev.where}.name", f"{name!r} is not a PCI function name: the kernel names them "
                                              "DDDD:BB:DD.F (lowercase hex, device <= 1f), e.g. 0000:0c:00.0")
            fns[name] = tuple(int(x, 16) for x in m.groups())
        # the bus below each parent: a host bridge's root bus, a bridge's secondary bus
        bus_owner: dict[tuple[int, int], str] = {}
        for hbname, (dom, bus) in roots.items():
            bus_owner[(dom, bus)] = hbname
        for name, (dom, bus, devno, fn) in fns.items():
            dev = self.devs[name]
            parent = self.parent_name(name)
            pdev = self.devs[parent]
            hb = self.host_bridge_of(name)
            hdom, hbus = roots[hb.name]
            if dom != hdom:
                self.err(f"{dev.where}.name", f"{name!r} is in PCI domain {dom:04x} but its host bridge "
                                              f"{hb.name!r} is domain {hdom:04x}")
            if pdev.role == "host_bridge":
                if bus != hbus:
                    self.err(f"{dev.where}.name", f"{name!r} sits on the root bus of {hb.name!r}, "
                                                  f"so its bus must be {hbus:02x}")
            else:
                pbus = fns[parent][1]
                if bus <= pbus:
                    self.err(f"{dev.where}.name", f"{name!r} is below {parent!r} (bus {pbus:02x}): its bus "
                                                  "number must be greater (a bridge's secondary bus)")
                if pdev.role in ("root_port", "downstream") and devno != 0:
                    self.err(f"{dev.where}.name", f"{name!r}: below a PCIe root or downstream port the only "
                                                  "device number is 00 (QEMU: only slot 0 is valid)")
                owner = bus_owner.setdefault((dom, bus), parent)
                if owner != parent:
                    self.err(f"{dev.where}.name", f"bus {bus:02x} of {name!r} (below {parent!r}) is already the "
                                                  f"bus below {owner!r}")

    def check_ports(self) -> None:
        """Port ids are unique per upstream port; a passthrough port has exactly one dport."""
        t = self.t
        by_parent: dict[str, list[PortCfg]] = {}
        for rp in t.root_ports:
            by_parent.setdefault(rp.parent, []).append(rp)
        for sw in t.switches:
            by_parent[sw.name] = list(sw.downstream)
        for parent, ports in by_parent.items():
            seen: dict[int, str] = {}
            for p in ports:
                w = self.where[id(p)]
                if p.kind == "pci":
                    self.r.within(p.port_id, f"{w}.port_id", 0, 255, "PCIe Link Capabilities port number")
                if p.port_id in seen:
                    self.err(f"{w}.port_id", f"port_id {p.port_id} is already used by {seen[p.port_id]} "
                                             f"below {parent!r} (the kernel refuses a second dport{p.port_id})")
                seen[p.port_id] = f"{w} ({p.name})"
        for hb in t.host_bridges:
            n = len(by_parent.get(hb.name, []))
            if hb.decoders == 0 and not hb.rch and n != 1:
                self.err(f"{self.where[id(hb)]}.decoders", f"0 (passthrough, no HDM decoders) needs exactly one "
                                                           f"root port, {hb.name!r} has {n}")
        for sw in t.switches:
            if sw.decoders == 0 and len(sw.downstream) != 1:
                self.err(f"{self.where[id(sw)]}.decoders", f"0 (passthrough, no HDM decoders) needs exactly one "
                                                           f"downstream port, {sw.name!r} has {len(sw.downstream)}")
        below: dict[str, list[SwitchCfg]] = {}
        for sw in t.switches:
            below.setdefault(sw.parent, []).append(sw)
        memdevs_below: dict[str, list[MemdevCfg]] = {}
        for md in t.memdevs:
            memdevs_below.setdefault(md.parent, []).append(md)
        for port, sws in below.items():
            if len(sws) > 1:
                self.err(f"{self.where[id(sws[1])]}.parent", f"{port!r} already links to switch {sws[0].name!r}")
            mds = memdevs_below.get(port, [])
            if mds:
                self.err(f"{self.where[id(mds[0])]}.parent", f"{port!r} already links to switch {sws[0].name!r}")

    def check_windows(self) -> None:
        t = self.t
        by_uid = {hb.uid: hb for hb in t.host_bridges}
        for win in t.windows:
            w = self.where[id(win)]
            for uid in win.targets:
                hb = by_uid.get(uid)
                if hb is None:
                    self.err(f"{w}.targets", f"no host bridge has uid {uid}")
                if hb.rch and win.ways > 1:
                    self.err(f"{w}.targets", f"uid {uid} is an RCH host bridge ({hb.name}): RCH/RCD memory "
                                             "cannot be interleaved, give it a window of its own")
            if win.arithmetic == "xor" and win.ways not in (1, 3):
                need = _ilog2(win.ways if win.ways & (win.ways - 1) == 0 else win.ways // 3)
                same_g = [c for c in t.cxims if c.granularity == win.granularity]
                # a CXIMS there whenever the window is (its conditions among the window's) ...
                if not any(c.when.items() <= win.when.items() for c in same_g):
                    self.err(f"{w}.arithmetic", f"an XOR window of {win.ways} ways needs a [[cxims]] with "
                                                f"granularity {win.granularity} whenever it exists (cxl_acpi: No "
                                                "CXIMS for HBIG)")
                # ... and none that may be there beside it with too few maps (cxl_acpi: -ENXIO)
                for c in same_g:
                    if _compatible(c.when, win.when) and len(c.xormaps) < need:
                        self.err(f"{w}.arithmetic", f"an XOR window of {win.ways} ways needs {need} xormaps in its "
                                                    f"[[cxims]], {self.where[id(c)]} has {len(c.xormaps)}")
        fixed = [(x, x.base) for x in t.windows if x.base is not None]
        for i, (a, abase) in enumerate(fixed):
            for b, bbase in fixed[i + 1:]:
                if _compatible(a.when, b.when) and abase < bbase + b.size and bbase < abase + a.size:
                    self.err(f"{self.where[id(b)]}.base", f"[{bbase:#x}, {bbase + b.size:#x}) overlaps "
                                                          f"{self.where[id(a)]}")

    def window_of(self, ar: AutoRegionCfg, w: str) -> WindowCfg:
        """The window an auto region names: its index among all [[window]] tables, in file order."""
        t = self.t
        if ar.window >= len(t.windows):
            self.err(f"{w}.window", f"no window {ar.window}: the file has {len(t.windows)} [[window]] table(s), "
                                    "numbered from 0")
        return t.windows[ar.window]

    def check_auto_regions(self) -> None:
        t = self.t
        mds = {m.name: m for m in t.memdevs}
        uses: dict[str, list[tuple[AutoRegionCfg, int]]] = {}     # memdev name -> [(ar, per-device size)]
        through: dict[str, dict[int, AutoRegionCfg]] = {}          # switch/host bridge -> auto regions via it
        for ar in t.auto_regions:
            w = self.where[id(ar)]
            win = self.window_of(ar, w)
            ways = len(ar.members)
            if ways == 0:
                self.err(f"{w}.members", "needs at least one memdev")
            if ways not in INTERLEAVE_WAYS:
                self.err(f"{w}.members", f"{ways} members is not a valid interleave (1,2,4,8,16,3,6,12)")
            if ways % win.ways:
                self.err(f"{w}.members", f"{ways} members cannot spread over the {win.ways} host bridges of "
                                         f"{self.where[id(win)]}")
            g = ar.granularity
            if g < 256 or g > 16384 or g & (g - 1):
                self.err(f"{w}.granularity", f"{g} is not a power of two in 256..16384")
            if win.ways > 1 and g != win.granularity:
                self.err(f"{w}.granularity", f"{g} in a window that interleaves {win.ways} host bridges at "
                                             f"{win.granularity} ({self.where[id(win)]}): the region's granularity "
                                             "is the window's")
            if ar.size == 0 or ar.size % (SZ_256M * ways):
                self.err(f"{w}.size", f"{_fmt_size(ar.size)} is not a non-zero multiple of {ways} x 256M "
                                      "(each member decodes a 256M multiple)")
            if ar.offset % SZ_256M:
                self.err(f"{w}.offset", f"{ar.offset:#x} is not 256M aligned (HDM decoder base)")
            if ar.offset + ar.size > win.size:
                self.err(f"{w}.size", f"offset {_fmt_size(ar.offset)} + size {_fmt_size(ar.size)} does not fit "
                                      f"in the {_fmt_size(win.size)} of {self.where[id(win)]}")
            seen = set()
            for m in ar.members:
                if m not in mds:
                    self.err(f"{w}.members", f"no memdev named {m!r}")
                if m in seen:
                    self.err(f"{w}.members", f"{m!r} is listed twice")
                seen.add(m)
                md = mds[m]
                hb = self.host_bridge_of(m)
                if hb.uid not in win.targets:
                    self.err(f"{w}.members", f"{m!r} is below host bridge {hb.name} (uid {hb.uid}), which "
                                             f"{self.where[id(win)]} does not target")
                if ar.decoder >= md.decoders:
                    self.err(f"{w}.decoder", f"{m!r} has only {md.decoders} HDM decoders")
                name = md.parent
                while True:
                    dev = self.devs[name]
                    cfg = dev.node
                    if isinstance(cfg, (SwitchCfg, HostBridgeCfg)) and cfg.decoders:
                        through.setdefault(cfg.name, {})[id(ar)] = ar
                    if dev.role == "host_bridge":
                        break
                    name = cfg.parent
                uses.setdefault(m, []).append((ar, ar.size // ways))
        # a switch or host bridge commits one decoder per auto region through it, in file order
        counts = {c.name: c.decoders for c in t.switches} | {c.name: c.decoders for c in t.host_bridges}
        for pname, ars in through.items():
            via = list(ars.values())
            for k, ar in enumerate(via):
                n = 1 + sum(1 for o in via[:k] if _compatible(o.when, ar.when))
                if n > counts[pname]:
                    self.err(f"{self.where[id(ar)]}.members", f"{pname!r} has {counts[pname]} HDM decoders, "
                                                             f"and this is auto region {n} through it")
        for m, lst in uses.items():
            md = mds[m]
            cap = md.ram + md.pmem
            for ar, per in lst:
                w = self.where[id(ar)]
                peers = [(o, p) for o, p in lst if _compatible(o.when, ar.when)]
                same = [o for o, _ in peers if o is not ar and o.decoder == ar.decoder]
                if same:
                    self.err(f"{w}.decoder", f"decoder {ar.decoder} of {m!r} is already committed by "
                                             f"{self.where[id(same[0])]}")
                below = {o.decoder for o, _ in peers}
                missing = [k for k in range(ar.decoder) if k not in below]
                if missing:
                    self.err(f"{w}.decoder", f"firmware commits decoders in order: decoder {missing[0]} of {m!r} "
                                             "is not committed by any auto region")
                used = sum(p for o, p in peers if o.decoder <= ar.decoder)
                if used > cap:
                    self.err(f"{w}.size", f"{m!r} would need {_fmt_size(used)} of DPA for its auto regions up to "
                                          f"decoder {ar.decoder}, it has {_fmt_size(cap)}")
                self.check_partition(ar, w, m, md, used - per, per)

    def check_partition(self, ar: AutoRegionCfg, w: str, m: str, md: MemdevCfg, dpa: int, size: int) -> None:
        """The DPA a firmware decoder takes (after the lower decoders', from 0) lies in one partition,
        ram (from 0) or pmem (after ram), and the auto region's window may hold that kind of memory."""
        if dpa < md.ram < dpa + size:
            self.err(f"{w}.size", f"decoder {ar.decoder} of {m!r} would decode DPA {_fmt_size(dpa)}.."
                                  f"{_fmt_size(dpa + size)}, across the end of its {_fmt_size(md.ram)} ram "
                                  "partition: a region is all ram or all pmem")
        mode, flag = ("ram", "volatile") if dpa < md.ram else ("pmem", "pmem")
        win = self.t.windows[ar.window]
        if mode == "pmem":
            for f in ("dax_mode", "online"):
                if getattr(ar, f) is not None:
                    self.err(f"{w}.{f}", f"decoder {ar.decoder} of {m!r} decodes pmem: only a ram region has a dax "
                                         "device at boot")
        if ar.online not in (None, "offline") and ar.dax_mode == "devdax":
            self.err(f"{w}.online", f"{ar.online!r} with dax_mode = 'devdax': a devdax device has no memory blocks")
        if not win.restrictions & RESTRICTIONS[flag]:
            self.err(f"{w}.window", f"{self.where[id(win)]} has no {flag!r} restriction: it cannot hold the "
                                    f"{mode} of {m!r} (decoder {ar.decoder})")
