"""The host physical address space: ``[[window]]`` (CFMWS), ``[[cxims]]`` (the XOR maps of
XOR windows) and ``[[auto_region]]`` (decoders firmware already committed), each of which
may hold only ``when`` some module parameters have given values."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from cxlsys.topology.limits import limit
from cxlsys.topology.nodes import NodeCfg
from cxlsys.topology.reader import SZ_256M, Kind, _lit, _num, _Reader

RESTRICTIONS = {"type2": 1 << 0, "type3": 1 << 1, "volatile": 1 << 2, "ram": 1 << 2, "pmem": 1 << 3,
                "fixed": 1 << 4, "bi": 1 << 5}
INTERLEAVE_WAYS = (1, 2, 4, 8, 16, 3, 6, 12)
DAX_MODES = ("system-ram", "devdax")        # daxctl's names for kmem and device_dax
ONLINE_STATES = ("offline", "online_kernel", "online_movable")
DEFAULT_BLOCK_SIZE = 128 << 20      # /sys/devices/system/memory/block_size_bytes without [system] block_size
_S64 = (-(1 << 63), (1 << 64) - 1)   # a module parameter: any 64-bit value, signed or not


def check_when(r: _Reader, d: dict[str, Any], where: str, module: str | None,
               params: dict[str, int]) -> dict[str, int]:
    """A table's ``when`` conditions, each naming a parameter the ``[module]`` table declares."""
    w: dict[str, int] = d.get("when", {})
    for k, v in w.items():
        r.within(v, f"{where}.when.{k}", *_S64, "a 64-bit module parameter")
        if module is None:
            r.err(f"{where}.when.{k}", "conditions need a [module] table declaring that parameter")
        if k not in params:
            known = ", ".join(sorted(params)) or "none"
            r.err(f"{where}.when.{k}", f"{k!r} is not a parameter of module {module!r} "
                                       f"(declared: {known})")
    return w


# ----------------------------------------------------------------------- [[window]]

@attrs.define
class WindowCfg:
    FIELDS: ClassVar[dict[str, Kind]] = {"size": "size", "targets": "list", "ways": "int", "granularity": "int",
                                         "restrictions": "list", "qtg_id": "int", "arithmetic": ("modulo", "xor"),
                                         "base": "size", "node": "uint", "when": "when"}
    REQUIRED: ClassVar[tuple[str, ...]] = ("size", "targets")

    size: int
    targets: list[int]
    ways: int = 1
    granularity: int = 256
    restrictions: int = 0
    qtg_id: int = -1
    arithmetic: str = "modulo"
    base: int | None = None
    node: int | None = None
    when: dict[str, int] = attrs.field(factory=dict)


def parse_windows(r: _Reader, raw: list[Any], where: dict[int, str], nodes: list[NodeCfg], module: str | None,
                  params: dict[str, int]) -> list[WindowCfg]:
    windows: list[WindowCfg] = []
    for i, h in enumerate(raw):
        w = f"window[{i}]"
        d = r.table(h, w, WindowCfg.FIELDS, required=WindowCfg.REQUIRED)
        rs = 0
        for j, x in enumerate(d.pop("restrictions", [])):
            if not isinstance(x, str) or x not in RESTRICTIONS:
                r.err(f"{w}.restrictions[{j}]", f"{_lit(x)} is not one of {', '.join(RESTRICTIONS)}")
            rs |= RESTRICTIONS[x]
        r.count(d["targets"], f"{w}.targets", "interleave_targets")
        d["targets"] = r.items(d["targets"], f"{w}.targets", "uint")
        if not d["targets"]:
            r.err(f"{w}.targets", "a window needs at least one host bridge uid")
        d.setdefault("ways", len(d["targets"]))
        if d["ways"] != len(d["targets"]):
            r.err(f"{w}.ways", f"{d['ways']} ways but {len(d['targets'])} targets")
        if d["ways"] not in INTERLEAVE_WAYS:
            r.err(f"{w}.ways", f"{d['ways']} is not a valid interleave (1,2,4,8,16,3,6,12)")
        g = d.get("granularity", 256)
        if g < 256 or g > 16384 or g & (g - 1):
            r.err(f"{w}.granularity", f"{_num(g)} is not a power of two in 256..16384")
        if d["size"] == 0 or d["size"] % SZ_256M:
            r.err(f"{w}.size", f"{d['size']:#x} is not a non-zero multiple of 256M")
        if d.get("base") is not None and d["base"] % SZ_256M:
            r.err(f"{w}.base", f"{d['base']:#x} is not 256M aligned (CFMWS base HPA alignment)")
        if d["size"] >= limit("address_space"):      # CFMWS Window Size and Base HPA are 64-bit fields
            r.over(f"{w}.size", f"{d['size']:#x} does not fit the CFMWS's 64-bit window size", "address_space")
        if d.get("base") is not None:
            r.fits(f"{w}.base", "base", d["base"], d["size"])
        r.within(d.get("qtg_id", -1), f"{w}.qtg_id", -1, 0xFFFF, "-1 = none")
        if "node" in d and not any(n.id == d["node"] for n in nodes):
            r.err(f"{w}.node", f"no [[node]] has id {d['node']} (declare the window's NUMA node)")
        d["when"] = check_when(r, d, w, module, params)
        win = WindowCfg(restrictions=rs, **d)
        where[id(win)] = w
        windows.append(win)
    return windows


# ----------------------------------------------------------------------- [[cxims]]

@attrs.define
class CximsCfg:
    FIELDS: ClassVar[dict[str, Kind]] = {"granularity": "int", "xormaps": "list", "when": "when"}
    REQUIRED: ClassVar[tuple[str, ...]] = ("granularity", "xormaps")

    granularity: int
    xormaps: list[int]
    when: dict[str, int] = attrs.field(factory=dict)


def parse_cxims(r: _Reader, raw: list[Any], where: dict[int, str], module: str | None,
                params: dict[str, int]) -> list[CximsCfg]:
    cxims: list[CximsCfg] = []
    for i, h in enumerate(raw):
        w = f"cxims[{i}]"
        d = r.table(h, w, CximsCfg.FIELDS, required=CximsCfg.REQUIRED)
        g = d["granularity"]
        if g < 256 or g > 16384 or g & (g - 1):
            r.err(f"{w}.granularity", f"{_num(g)} is not a power of two in 256..16384")
        r.count(d["xormaps"], f"{w}.xormaps", "xormaps")
        d["xormaps"] = r.items(d["xormaps"], f"{w}.xormaps", "uint")
        if not d["xormaps"] or any(x == 0 for x in d["xormaps"]):
            r.err(f"{w}.xormaps", "needs one or more non-zero XOR bitmaps")
        for j, x in enumerate(d["xormaps"]):
            if x >= limit("address_space"):
                r.over(f"{w}.xormaps[{j}]", f"{x:#x} is not a 64-bit XOR bitmap of HPA bits", "address_space")
        d["when"] = check_when(r, d, w, module, params)
        cx = CximsCfg(**d)
        where[id(cx)] = w
        cxims.append(cx)
    return cxims


# ----------------------------------------------------------------------- [[auto_region]]

@attrs.define
class AutoRegionCfg:
    FIELDS: ClassVar[dict[str, Kind]] = {"window": "uint", "size": "size", "members": "list", "granularity": "int",
                                         "offset": "size", "decoder": "uint", "when": "when",
                                         "dax_mode": DAX_MODES, "online": ONLINE_STATES}
    REQUIRED: ClassVar[tuple[str, ...]] = ("window", "size", "members")

    window: int
    size: int
    members: list[str]
    granularity: int = 4096
    offset: int = 0
    decoder: int = 0
    when: dict[str, int] = attrs.field(factory=dict)
    dax_mode: str | None = None         # the region's daxN.0 after boot: "system-ram" (kmem) or "devdax"
    online: str | None = None           # its memory blocks after boot (kmem): offline / online_kernel / online_movable


def parse_auto_regions(r: _Reader, raw: list[Any], where: dict[int, str], module: str | None,
                       params: dict[str, int]) -> list[AutoRegionCfg]:
    """The ``[[auto_region]]`` tables; what they refer to is checked in the cross-reference pass."""
    auto_regions: list[AutoRegionCfg] = []
    for i, h in enumerate(raw):
        w = f"auto_region[{i}]"
        d = r.table(h, w, AutoRegionCfg.FIELDS, required=AutoRegionCfg.REQUIRED)
        r.count(d["members"], f"{w}.members", "interleave_targets")
        d["members"] = r.items(d["members"], f"{w}.members", "name")
        d["when"] = check_when(r, d, w, module, params)
        ar = AutoRegionCfg(**d)
        where[id(ar)] = w
        auto_regions.append(ar)
    return auto_regions


# ----------------------------------------------------------------------- the address space

def check_address_space(r: _Reader, windows: list[WindowCfg], hpa_base: int, block_size: int | None,
                        where: dict[int, str]) -> None:
    """Every window ends inside the 64-bit address space, also those placed one after another
    from ``acpi.hpa_base`` (checked with all of them present, whatever ``when`` says: any set
    of them then fits), and all of them together are a bounded number of memory blocks."""
    base = hpa_base
    for win in windows:
        if win.base is None:
            base = (base + SZ_256M - 1) // SZ_256M * SZ_256M
            r.fits(f"{where[id(win)]}.size", "placed after acpi.hpa_base and the windows before it at",
                   base, win.size)
            base += win.size
    bs = block_size or DEFAULT_BLOCK_SIZE
    total = 0
    for win in windows:
        total += win.size
        if total // bs > limit("memory_blocks"):
            r.over(f"{where[id(win)]}.size", f"the windows up to this one are {total // bs} memory blocks of "
                                             f"{bs >> 20}M", "memory_blocks")
