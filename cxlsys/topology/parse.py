"""The parse driver: pass 1 reads the tables in dependency order (module parameters before
the ``when`` conditions that name them, nodes before the windows on them, devices before
the namespace is complete), then pass 2 checks the cross references."""

from __future__ import annotations

from typing import Any

from cxlsys.topology.crossref import _CrossRef
from cxlsys.topology.devices import (
    _Dev,
    parse_host_bridges,
    parse_memdevs,
    parse_root_ports,
    parse_switches,
)
from cxlsys.topology.nodes import parse_nodes
from cxlsys.topology.reader import _Reader
from cxlsys.topology.toplevel import (
    Topology,
    parse_acpi,
    parse_module,
    parse_system,
    parse_top,
)
from cxlsys.topology.windows import check_address_space, parse_auto_regions, parse_cxims, parse_windows

# each list of tables and the limit on its length
_COUNTS = (("node", "nodes"), ("host_bridge", "host_bridges"), ("root_port", "root_ports"), ("switch", "switches"),
           ("memdev", "memdevs"), ("window", "windows"), ("cxims", "cxims"), ("auto_region", "auto_regions"))


class _Parser:
    def __init__(self, data: Any, src: str):
        self.r = _Reader(src)
        self.data = data
        self.devs: dict[str, _Dev] = {}            # name -> _Dev
        self.where: dict[int, str] = {}            # id(cfg) -> "window[3]"
        self.given_fields: dict[str, set[str]] = {}    # memdev name -> fields the file sets

    def run(self) -> Topology:
        r, devs, where = self.r, self.devs, self.where
        # pass 0: the limits any value has (depth, sizes, lengths), then the number of each table
        r.shape(self.data)
        t, top = parse_top(r, self.data)
        for key, name in _COUNTS:
            r.count(top.get(key, []), key, name)
        # pass 1: each table's own fields
        parse_module(r, t, top)
        parse_acpi(r, t, top, devs)
        parse_system(r, t, top)
        t.nodes = parse_nodes(r, top.get("node", []), where)
        t.host_bridges = parse_host_bridges(r, top.get("host_bridge", []), devs, where)
        t.root_ports = parse_root_ports(r, top.get("root_port", []), devs, where)
        t.switches = parse_switches(r, top.get("switch", []), devs, where)
        t.memdevs = parse_memdevs(r, top.get("memdev", []), devs, where, self.given_fields)
        t.windows = parse_windows(r, top.get("window", []), where, t.nodes, t.module, t.params)
        t.cxims = parse_cxims(r, top.get("cxims", []), where, t.module, t.params)
        t.auto_regions = parse_auto_regions(r, top.get("auto_region", []), where, t.module, t.params)
        check_address_space(r, t.windows, t.hpa_base, t.memory.get("block_size"), where)
        # pass 2: cross references
        x = _CrossRef(r, t, devs, where, self.given_fields)
        x.check_parents()
        x.resolve_kinds()
        x.check_pci_names()
        x.check_ports()
        x.check_windows()
        x.check_auto_regions()
        return t
