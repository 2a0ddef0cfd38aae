"""Human output with rich: the CXL topology as a tree."""

from __future__ import annotations

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


def _port_label(p: CxlPort) -> str:
    st = "" if p.kind == "root" or p.driver is not None else " [dim](disabled)[/]"
    if p.kind == "endpoint":
        md = p.uport
        assert isinstance(md, CxlMemdev)
        host = md.parent.name if md.parent is not None else "-"
        extra = f", HDM-DB, {md.info.flit}B flit" if md.info.hdm_db else ""
        return (f"[green]{p.name}[/] {md.name} ({host}) ram {_size(md.ram_size)} pmem {_size(md.pmem_size)}"
                f" serial {md.info.serial:#x}{extra}{st}")
    return f"[cyan]{p.name}[/] host {p.uport.name}, {len(p.dports)} dports, {len(p.decoders)} decoders{st}"


def build_tree(system) -> Tree:
    t = system.topology
    tree = Tree(f"[bold]{t.name}[/] — {t.description}" if t else "cxlsys")
    roots = [d for d in system.cxl_bus.devices if isinstance(d, CxlPort) and d.kind == "root"]

    def add_port(node, port):
        n = node.add(_port_label(port))
        if port.kind == "root":
            for dec in port.decoders.values():
                if isinstance(dec, CxlRootDecoder):
                    caps = "/".join(c for c, f in (("ram", 1), ("pmem", 2)) if dec.flags & f)
                    dn = n.add(f"[yellow]{dec.name}[/] {_size(dec.hpa_size)} x{dec.interleave_ways} {caps} "
                               f"targets {','.join(hex(x.port_id) for x in dec.targets)}")  # ids as cxl list -u
                    for r in dec.children.values():
                        if isinstance(r, CxlRegion):
                            tg = ", ".join(x.name for x in r.targets[: r.interleave_ways] if x is not None)
                            dn.add(f"[magenta]{r.name}[/] {r.mode} {_size(r.hpa_size)} x{r.interleave_ways} "
                                   f"{STATE_NAMES[r.state]}{' bound' if r.driver else ''} " + escape(f"[{tg}]"))
        for child in port.children.values():
            if isinstance(child, CxlPort):
                add_port(n, child)

    for r in roots:
        add_port(tree, r)
    off = [m for m in system.cxl_bus.devices if isinstance(m, CxlMemdev) and m.driver is None]
    if off:
        d = tree.add("disabled memdevs")
        for m in off:
            d.add(f"{m.name} ({m.parent.name if m.parent is not None else '-'})")
    return tree


def print_tree(system) -> None:
    Console().print(build_tree(system))
