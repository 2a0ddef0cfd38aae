"""The file itself: its top-level fields and ``[module]``, ``[acpi]`` and ``[system]``
tables, which ``Topology`` holds together with the lists of the other tables."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import attrs

from cxlsys.profile import ProfileError, resolve
from cxlsys.topology.devices import (
    HostBridgeCfg,
    MemdevCfg,
    PortCfg,
    SwitchCfg,
    _Dev,
    claim,
)
from cxlsys.topology.limits import limit
from cxlsys.topology.nodes import NodeCfg
from cxlsys.topology.reader import SZ_256M, Kind, _Reader
from cxlsys.topology.windows import AutoRegionCfg, CximsCfg, WindowCfg

MEMDEV_DRIVERS = ("cxl_mock_mem", "cxl_pci")

_Conditional = TypeVar("_Conditional", WindowCfg, CximsCfg, AutoRegionCfg)


@attrs.define
class Topology:
    FIELDS: ClassVar[dict[str, Kind]] = {
        "name": "str", "description": "str", "module": "dict", "acpi": "dict", "system": "dict",
        "node": "list", "host_bridge": "list", "root_port": "list", "switch": "list", "memdev": "list",
        "window": "list", "cxims": "list", "auto_region": "list", "kernel": "str",
    }
    REQUIRED: ClassVar[tuple[str, ...]] = ("name",)
    MODULE_FIELDS: ClassVar[dict[str, Kind]] = {"name": "name", "params": "dict"}
    MODULE_REQUIRED: ClassVar[tuple[str, ...]] = ("name",)
    ACPI_FIELDS: ClassVar[dict[str, Kind]] = {"device": "name", "parent": ("platform", ""), "driver": ("cxl_acpi",),
                                              "memdev_driver": MEMDEV_DRIVERS, "hpa_base": "size"}
    SYSTEM_FIELDS: ClassVar[dict[str, Kind]] = {
        "block_size": "size", "auto_online_blocks": ("offline", "online", "online_kernel", "online_movable"),
        "online_policy": ("contig-zones", "auto-movable"), "auto_movable_ratio": "uint",
        "auto_movable_numa_aware": "bool", "memmap_on_memory": "bool", "movable_node": "bool",
        "kernel_zone_unmovable": "bool"}

    name: str
    source: str = ""
    description: str = ""
    kernel: str | None = None             # default kernel profile (cxlsys.profile), e.g. "6.12-bi"
    module: str | None = None
    params: dict[str, int] = attrs.field(factory=dict)
    acpi_device: str = "ACPI0017:00"
    acpi_parent: str = "platform"
    acpi_driver: str = "cxl_acpi"
    memdev_driver: str | None = None
    hpa_base: int = 0xF010000000
    nodes: list[NodeCfg] = attrs.field(factory=list)
    memory: dict[str, Any] = attrs.field(factory=dict)
    host_bridges: list[HostBridgeCfg] = attrs.field(factory=list)
    root_ports: list[PortCfg] = attrs.field(factory=list)
    switches: list[SwitchCfg] = attrs.field(factory=list)
    memdevs: list[MemdevCfg] = attrs.field(factory=list)
    windows: list[WindowCfg] = attrs.field(factory=list)
    cxims: list[CximsCfg] = attrs.field(factory=list)
    auto_regions: list[AutoRegionCfg] = attrs.field(factory=list)

    def active(self, items: list[_Conditional], params: dict[str, int]) -> list[_Conditional]:
        return [x for x in items if all(params.get(k) == v for k, v in x.when.items())]


def parse_top(r: _Reader, data: Any) -> tuple[Topology, dict[str, Any]]:
    """The top-level table: a ``Topology`` with its name, description and kernel, and the
    validated table the other tables are read from."""
    top = r.table(data, "topology", Topology.FIELDS, required=Topology.REQUIRED)
    if not top["name"].strip():
        r.err("topology.name", "must not be empty")
    t = Topology(name=top["name"], source=r.src, description=top.get("description", ""))
    if "kernel" in top:
        try:
            resolve(top["kernel"])
        except ProfileError as e:
            r.err("kernel", str(e))
        t.kernel = top["kernel"]
    return t, top


def parse_module(r: _Reader, t: Topology, top: dict[str, Any]) -> None:
    if "module" not in top:
        return
    m = r.table(top["module"], "module", Topology.MODULE_FIELDS, required=Topology.MODULE_REQUIRED)
    if len(m["name"]) > limit("module_name_length"):
        r.over("module.name", f"a module name of {len(m['name'])} characters is too long", "module_name_length")
    t.module = m["name"]
    for k, v in m.get("params", {}).items():
        w = f"module.params.{k}"
        r.value(k, w, "name")           # /sys/module/<name>/parameters/<k>
        t.params[k] = r.within(r.value(v, w, "int"), w, -(1 << 63), (1 << 64) - 1, "a 64-bit module parameter")


def parse_acpi(r: _Reader, t: Topology, top: dict[str, Any], devs: dict[str, _Dev]) -> None:
    """``[acpi]``, and the ACPI0017 device's name claimed in the device namespace."""
    if "acpi" in top:
        a = r.table(top["acpi"], "acpi", Topology.ACPI_FIELDS)
        t.acpi_device = a.get("device", t.acpi_device)
        t.acpi_parent = a.get("parent", t.acpi_parent)
        t.acpi_driver = a.get("driver", t.acpi_driver)
        t.memdev_driver = a.get("memdev_driver")
        t.hpa_base = a.get("hpa_base", t.hpa_base)
        if t.hpa_base % SZ_256M:
            r.err("acpi.hpa_base", f"{t.hpa_base:#x} is not 256M aligned (CFMWS base HPA alignment)")
        r.fits("acpi.hpa_base", "hpa_base", t.hpa_base, SZ_256M)
    claim(r, devs, t.acpi_device, _Dev("acpi", "acpi.device", None))


def parse_system(r: _Reader, t: Topology, top: dict[str, Any]) -> None:
    if "system" not in top:
        return
    t.memory = r.table(top["system"], "system", Topology.SYSTEM_FIELDS)
    bs = t.memory.get("block_size")
    if bs is not None and (bs < (128 << 20) or bs & (bs - 1)):
        r.err("system.block_size", f"{bs:#x} must be a power of two >= 128M")
    if bs is not None and bs > limit("block_size"):
        r.over("system.block_size", f"{bs:#x} is too large", "block_size")
    ratio = t.memory.get("auto_movable_ratio", 0)
    if ratio > limit("auto_movable_ratio"):
        r.over("system.auto_movable_ratio", f"{ratio} does not fit an unsigned int", "auto_movable_ratio")
