"""One simulated machine: buses and drivers, the device tree, the lock, the kernel log,
and loading/unloading a topology (``modprobe cxl_test`` / ``modprobe -r cxl_test``).

Every state change from outside goes through :meth:`System.store` or
:meth:`System.modprobe`, both under ``self.lock`` — the model's
``cxl_region_rwsem``: one writer at a time, reads consistent.
"""

from __future__ import annotations

import errno
import threading
from typing import Any, Callable, Optional

import attrs

from cxlsys.base.bus import Bus
from cxlsys.base.changes import ChangeTracker
from cxlsys.base.device import Device, device_add
from cxlsys.base.module import Module, params_text
from cxlsys.base.node import build_nodes
from cxlsys.cxl.acpi import CxlAcpiDriver
from cxlsys.cxl.core.port import CxlBus
from cxlsys.cxl.core.region import CxlRegionDriver
from cxlsys.cxl.mem import CxlMemDriver
from cxlsys.cxl.mempolicy import CxlMempolicyDriver
from cxlsys.cxl.pci import CxlPciDriver
from cxlsys.cxl.pmem import pmem_drivers
from cxlsys.cxl.port import CxlPortDriver
from cxlsys.cxl_test import CxlMockMemDriver
from cxlsys.dax.anon import AnonDaxDriver
from cxlsys.dax.bus import DaxBus, DaxDriver
from cxlsys.dax.cxl import CxlDaxRegionDriver
from cxlsys.dax.kmem import KmemDriver
from cxlsys.errors import KernelError
from cxlsys.ida import IDA
from cxlsys.kernel.timer import Timers
from cxlsys.kernel.trace import Tracing
from cxlsys.klog import KernelLog
from cxlsys.machine import Machine
from cxlsys.mm.memory_hotplug import MemoryHotplug, MemoryPolicy
from cxlsys.mm.mempolicy import Mm
from cxlsys.nvdimm import libnvdimm_init
from cxlsys.nvdimm.pmem import nd_pmem_init
from cxlsys.profile import DEFAULT, KernelProfile, resolve
from cxlsys.topology import NodeCfg, Topology, load_topology

# modules whose /sys/module/<name>/initstate reads "live" (libkmod must never load a real one)
BUILTIN_MODULES = ("cxl_core", "cxl_acpi", "cxl_port", "cxl_mem", "cxl_pmem", "cxl_pci", "dax_cxl",
                   "device_dax", "kmem", "dax", "dax_hmem", "libnvdimm", "nd_pmem", "nd_btt")


@attrs.define(eq=False)
class System:
    """One simulated machine.  Make one with :meth:`System.boot` (not the constructor, whose
    fields are the machine's parts):

    >>> from cxlsys.system import System
    >>> from cxlsys.sysfs import Sysfs
    >>> system = System.boot("cxl_test", kernel="7.3")          # a preset name or a TOML file
    >>> fs = Sysfs(system)                                      # its /sys, in-process
    >>> fs.read("bus/cxl/devices/decoder0.0/size")
    b'0x40000000\\n'

    What a caller uses: :meth:`boot`, :meth:`modprobe` (``["-r", "cxl_test"]``...), :attr:`mm`
    (the allocation oracle of the private-nodes proposals), :attr:`klog` (the kernel log:
    ``klog.lines()``), :attr:`lock` (the model's ``cxl_region_rwsem``: hold it to read several
    values in one state), :attr:`profile` and :attr:`topology`; every store goes through
    :class:`cxlsys.sysfs.Sysfs` (or the mount), which raises ``OSError`` with the kernel's errno for a
    refusal.  The rest is the model's own: buses, devices, ids, timers (see ``docs/api.md``)."""

    lock: threading.RLock = attrs.field(factory=threading.RLock, repr=False)
    klog: KernelLog = attrs.field(factory=KernelLog, repr=False)
    changes: ChangeTracker = attrs.field(factory=ChangeTracker, repr=False)   # what the projection must re-read
    _mm: Optional[Mm] = attrs.field(default=None, init=False, repr=False)
    top_devices: dict = attrs.field(factory=dict, repr=False)
    buses: dict = attrs.field(factory=dict, repr=False)
    nodes: dict = attrs.field(factory=dict, repr=False)
    memory: MemoryHotplug = attrs.field(default=None, repr=False)
    machine: Optional[Machine] = attrs.field(default=None, repr=False)
    topology: Optional[Topology] = None
    params: dict = attrs.field(factory=dict)
    modules: dict = attrs.field(factory=dict)        # name -> Module (/sys/module)
    work: list = attrs.field(factory=list, repr=False)
    timers: Timers = attrs.field(factory=Timers, repr=False)   # delayed work (cxlsys/kernel/timer.py)
    tracing: Tracing = attrs.field(init=False, repr=False, default=attrs.Factory(Tracing, takes_self=True))
    cxl_port_ida: IDA = attrs.field(factory=lambda: IDA("cxl_port_ida"))
    cxl_memdev_ida: IDA = attrs.field(factory=lambda: IDA("cxl_memdev_ida", max=65535))
    memregion_ida: IDA = attrs.field(factory=lambda: IDA("memregion_ida"))
    nvdimm_bridge_ida: IDA = attrs.field(factory=lambda: IDA("cxl_nvdimm_bridge_ida"))
    dax_minor_ida: IDA = attrs.field(factory=lambda: IDA("dax_minor_ida"))
    bi_id_ida: IDA = attrs.field(factory=lambda: IDA("cxl_bi_id_ida"))
    profile: KernelProfile = attrs.field(factory=lambda: resolve(DEFAULT))
    # where accepted changes are journaled (cxlsys/journal.py, ``--state FILE``); None: not durable
    journal: Optional[Any] = attrs.field(default=None, repr=False)
    # kernel hazards this state went through (cxlsys/hazards.py): bugs of Linux reproduced, like taints
    hazards: list = attrs.field(factory=list, repr=False)

    # ------------------------------------------------------------------ boot
    @classmethod
    def boot(cls, topology: "Topology | str | None" = None, params: Optional[dict] = None,
             kernel: Optional[str] = None) -> "System":
        """A machine with the drivers loaded and, if given, the topology plugged in.  ``kernel``
        is a profile spec, ``BASE[+PROPOSAL...]`` (cxlsys.profile; ProfileError if unknown); default:
        the topology's own, else the 6.12 baseline."""
        if isinstance(topology, str):
            topology = load_topology(topology)
        if kernel is None:
            kernel = (topology.kernel if topology is not None else None) or DEFAULT
        s = cls(profile=resolve(kernel))
        s._boot(topology)
        if s.topology is not None:
            s.load(params)
        return s

    def _boot(self, topology) -> None:
        if isinstance(topology, str):
            topology = load_topology(topology)
        self.topology = topology
        for name in ("platform", "system"):
            device_add(_Plain(name=name, sys=self))
        self.cxl_bus = CxlBus(name="cxl", sys=self)
        self.buses = {"cxl": self.cxl_bus, "platform": Bus(name="platform", sys=self),
                      "dax": DaxBus(name="dax", sys=self), "pci": Bus(name="pci", sys=self)}
        self.dax_bus = self.buses["dax"]
        mem_cfg = dict(topology.memory) if topology else {}
        pol = MemoryPolicy(**mem_cfg)
        self.memory = MemoryHotplug(self, pol)
        system = self.top_devices["system"]
        self.memory.setup(system)
        build_nodes(self, system, topology.nodes if topology else [NodeCfg(id=0, cpus=[0, 1], memory=4 << 30)])
        # drivers (modules), in the order the kernel's module init would register them
        nd_pmem_init(libnvdimm_init(self))        # libnvdimm (the nd bus), which cxl_pmem needs, and nd_pmem
        for drv in (CxlPortDriver(), CxlMemDriver(), CxlRegionDriver(), *pmem_drivers(), CxlDaxRegionDriver()):
            self.cxl_bus.register_driver(drv)
        self.buses["platform"].register_driver(CxlAcpiDriver())
        self.buses["platform"].register_driver(CxlMockMemDriver())
        self.buses["pci"].register_driver(CxlPciDriver())
        # private memory nodes v4 (proposal): the cxl_mempolicy sample driver, after cxl_pci, bound
        # only by an explicit bind (cxlsys/cxl/mempolicy.py)
        if self.profile.private_nodes is not None and self.profile.private_nodes.version == 4:
            self.buses["pci"].register_driver(CxlMempolicyDriver())
            self.modules.setdefault("cxl_mempolicy", Module("cxl_mempolicy"))
        self.dax_bus.register_driver(DaxDriver(name="device_dax", module="device_dax"))
        self.dax_bus.register_driver(KmemDriver())
        if self.profile.private_nodes is not None and self.profile.private_nodes.version == 5:
            self.dax_bus.register_driver(AnonDaxDriver())      # the v5 line's drivers/dax/anon.c
        for m in BUILTIN_MODULES:
            self.modules.setdefault(m, Module(m))

    # the cxl bus is used everywhere; keep a direct handle
    cxl_bus: CxlBus = attrs.field(default=None, repr=False)
    dax_bus: DaxBus = attrs.field(default=None, repr=False)

    # ------------------------------------------------------------------ topology load / unload
    def load(self, params: Optional[dict] = None) -> None:
        """modprobe <topology module> [params]: plug the machine in."""
        with self.lock:
            if self.machine is not None:
                return
            t = self.topology
            if t is None:
                raise KernelError(errno.ENODEV, "no topology to load")
            p = dict(t.params)
            for k, v in (params or {}).items():
                if k not in p:
                    raise KernelError(errno.EINVAL, f"{t.module or t.name}: unknown parameter '{k}'")
                p[k] = v
            self.params = p
            self.machine = Machine(self, t, p)
            self.machine.build()
            if t.module:
                self.modules[t.module] = Module.loaded(t.module, p)
            self.machine.plug()
            self.flush_work()
            self.machine.apply_dax_state()
            self.flush_work()
            self.klog.log(f"{t.module or 'cxlsys'}: topology {t.name} loaded {params_text(p)}".rstrip())
            self.changes.everything()

    def unload(self) -> None:
        """modprobe -r <topology module>: unplug the machine (drivers unbind, devices go, in the
        kernel's order); a topology without ``[module]`` stays."""
        with self.lock:
            t = self.topology
            if self.machine is None or t is None:
                return
            self.machine.unplug()
            self.flush_work()
            if t.module:
                self.modules.pop(t.module, None)
            self.machine = None
            self.klog.log(f"{t.module or 'cxlsys'}: topology {t.name} unloaded")
            self.changes.everything()

    def modprobe(self, args: list) -> None:
        """The modprobe shim: ``[-r] name [key=value ...]``; unknown modules are accepted silently."""
        remove = False
        rest = []
        for a in args:
            if a in ("-r", "--remove"):
                remove = True
            elif a.startswith("-"):
                continue
            else:
                rest.append(a)
        if not rest:
            raise KernelError(errno.EINVAL, "modprobe: no module name")
        name = rest[0].replace("-", "_")
        module = (self.topology.module or "").replace("-", "_") if self.topology else ""
        if name != module:
            return
        if remove:
            if self.machine is not None:
                self.unload()
                self.journal_record("modprobe", args=list(args))
            return
        params = {}
        for kv in rest[1:]:
            k, _, v = kv.partition("=")
            try:
                params[k] = int(v, 0)
            except ValueError:
                raise KernelError(errno.EINVAL, f"{name}: bad parameter {kv!r}")
        if self.machine is not None:
            return
        self.load(params)
        self.journal_record("modprobe", args=list(args))

    def journal_record(self, op: str, **fields) -> None:
        """An accepted change from outside (a store, an ioctl, modprobe, delayed work firing): what
        ``--state FILE`` keeps so a restart replays it (cxlsys/journal.py).  Called under the lock."""
        j = self.journal
        if j is not None:
            j.record(op, fields)

    # ------------------------------------------------------------------ helpers for the model
    @property
    def mm(self) -> Mm:
        """The allocation oracle and the task's memory policy (cxlsys.mm.mempolicy)."""
        if self._mm is None:
            self._mm = Mm(self)
        return self._mm

    def all_devices(self):
        """Every registered device, parents before children."""
        stack = list(reversed(self.top_devices.values()))
        while stack:
            d = stack.pop()
            yield d
            stack.extend(reversed(d.children.values()))

    def run_timers(self) -> int:
        """Run the delayed work that is due (under the lock), then the work it queued."""
        with self.lock:
            n = self.timers.run_due(on_error=lambda e: self.klog.warn_exception("delayed work", e))
            if n:
                self.flush_work()
            return n

    def queue_work(self, fn: Callable[[], None]) -> None:
        """Queue ``fn`` to run when the current operation ends (the kernel's schedule_work)."""
        self.work.append(fn)

    def flush_work(self) -> None:
        """Run the queued work, in order, including work it queues (flush_workqueue)."""
        while self.work:
            fn = self.work.pop(0)
            fn()

    def hdm_of(self, dev: Device):
        """The HDM decoder capability the topology gives ``dev`` (None: not a CXL component)."""
        return self.machine.hdm_caps.get(dev.name) if self.machine else None

    def target_node_of(self, hpa: int) -> int:
        """The NUMA node memory at ``hpa`` is onlined to (its window's ``node``, else 0)."""
        return self.machine.target_node_of(hpa) if self.machine else 0

    def hpa_busy_ranges(self, root) -> list:
        """HPA inside ``root``'s window that is not free: memory left online by a forced teardown."""
        out = []
        for s, n, _ in self.memory.leaked:
            if root.hpa_start <= s < root.hpa_start + root.hpa_size:
                out.append((s, s + n))
        return out

    def hpa_is_online_ram(self, start: int, size: int) -> bool:
        """The range holds hot-added System RAM (a busy "System RAM (kmem)" resource): any
        present memory block, online or not (e.g. left behind by a failed kmem removal)."""
        return self.memory.range_has_system_ram(start, size)

    def device_by_path(self, path: str) -> Optional[Device]:
        """The device at ``devices/...`` (a path below /sys), or None."""
        parts = path.strip("/").split("/")
        if not parts or parts[0] != "devices":
            return None
        d = self.top_devices.get(parts[1]) if len(parts) > 1 else None
        for p in parts[2:]:
            if d is None:
                return None
            d = d.children.get(p)
        return d


@attrs.define(eq=False, kw_only=True)
class _Plain(Device):
    """A bare directory device (/sys/devices/platform, /sys/devices/system)."""

    has_uevent = False
