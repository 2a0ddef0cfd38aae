"""``cxlsys tree``: the CXL topology as data (:func:`tree_data`, what ``--json`` prints) and as a
rich tree drawn from that data (colour on a terminal, plain text when piped)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from cxlsys.cxl.core.memdev import CxlMemdev
from cxlsys.cxl.core.port import CxlPort, CxlRootDecoder
from cxlsys.cxl.core.region import STATE_NAMES, CxlRegion


def _size(n: int) -> str:
    for unit, s in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n and n % (1 << s) == 0:
            return f"{n >> s}{unit}"
    return str(n)


def _region(r: CxlRegion) -> dict[str, Any]:
    return {"region": r.name, "mode": r.mode, "size": r.hpa_size, "interleave_ways": r.interleave_ways,
            "state": STATE_NAMES[r.state], "bound": r.driver is not None,
            "targets": [x.name for x in r.targets[: r.interleave_ways] if x is not None]}


def _port(p: CxlPort) -> dict[str, Any]:
    d: dict[str, Any] = {"port": p.name, "kind": p.kind, "host": p.uport.name,
                         "enabled": p.kind == "root" or p.driver is not None}
    if p.kind == "endpoint":
        md = p.uport
        assert isinstance(md, CxlMemdev)
        d.update(memdev=md.name, host=md.parent.name if md.parent is not None else None,
                 ram_size=md.ram_size, pmem_size=md.pmem_size, serial=md.info.serial,
                 hdm_db=bool(md.info.hdm_db), flit=md.info.flit)
        return d
    d.update(nr_dports=len(p.dports), nr_decoders=len(p.decoders))
    if p.kind == "root":
        decs = []
        for dec in p.decoders.values():
            if isinstance(dec, CxlRootDecoder):
                decs.append({"decoder": dec.name, "size": dec.hpa_size, "interleave_ways": dec.interleave_ways,
                             "ram": bool(dec.flags & 1), "pmem": bool(dec.flags & 2),
                             "targets": [x.port_id for x in dec.targets],
                             "regions": [_region(r) for r in dec.children.values() if isinstance(r, CxlRegion)]})
        d["decoders"] = decs
    d["ports"] = [_port(c) for c in p.children.values() if isinstance(c, CxlPort)]
    return d


def tree_data(system) -> dict[str, Any]:
    """The topology as plain data: root ports down to endpoints, root decoders with their regions,
    memdevs no driver bound.  Sizes in bytes, ids as integers."""
    t = system.topology
    roots = [d for d in system.cxl_bus.devices if isinstance(d, CxlPort) and d.kind == "root"]
    return {"topology": t.name if t else None, "description": t.description if t else "",
            "kernel": system.profile.name, "ports": [_port(r) for r in roots],
            "disabled_memdevs": [{"memdev": m.name, "host": m.parent.name if m.parent is not None else None}
                                 for m in system.cxl_bus.devices if isinstance(m, CxlMemdev) and m.driver is None]}


def _port_label(d: dict) -> str:
    st = "" if d["enabled"] else " [dim](disabled)[/]"
    if d["kind"] == "endpoint":
        extra = f", HDM-DB, {d['flit']}B flit" if d["hdm_db"] else ""
        return (f"[green]{d['port']}[/] {d['memdev']} ({d['host'] or '-'}) ram {_size(d['ram_size'])} "
                f"pmem {_size(d['pmem_size'])} serial {d['serial']:#x}{extra}{st}")
    return f"[cyan]{d['port']}[/] host {d['host']}, {d['nr_dports']} dports, {d['nr_decoders']} decoders{st}"


def build_tree(data: dict) -> Tree:
    """The rich tree of :func:`tree_data`'s data."""
    tree = Tree(f"[bold]{data['topology']}[/] — {data['description']}" if data["topology"] else "cxlsys")

    def add_port(node, d):
        n = node.add(_port_label(d))
        for dec in d.get("decoders", ()):
            caps = "/".join(c for c in ("ram", "pmem") if dec[c])
            dn = n.add(f"[yellow]{dec['decoder']}[/] {_size(dec['size'])} x{dec['interleave_ways']} {caps} "
                       f"targets {','.join(hex(x) for x in dec['targets'])}")   # ids in hex, as cxl list -u
            for r in dec["regions"]:
                dn.add(f"[magenta]{r['region']}[/] {r['mode']} {_size(r['size'])} x{r['interleave_ways']} "
                       f"{r['state']}{' bound' if r['bound'] else ''} " + escape(f"[{', '.join(r['targets'])}]"))
        for child in d.get("ports", ()):
            add_port(n, child)

    for r in data["ports"]:
        add_port(tree, r)
    if data["disabled_memdevs"]:
        off = tree.add("disabled memdevs")
        for m in data["disabled_memdevs"]:
            off.add(f"{m['memdev']} ({m['host'] or '-'})")
    return tree


def print_tree(system) -> None:
    """Colour on a terminal, lines wrapped to its width; piped, the same tree as plain text (no escape
    codes), a line per node however long (for grep)."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=1 << 16)
    console.print(build_tree(tree_data(system)))
