"""``[[node]]``: the NUMA nodes, their CPUs, boot memory and SLIT distances."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from cxlsys.topology.limits import limit
from cxlsys.topology.reader import Kind, _Reader

SZ_3G, SZ_4G = 3 << 30, 4 << 30


@attrs.define
class NodeCfg:
    FIELDS: ClassVar[dict[str, Kind]] = {"id": "uint", "cpus": "list", "memory": "size", "distances": "dict",
                                         "online": "bool"}
    REQUIRED: ClassVar[tuple[str, ...]] = ("id",)

    id: int
    cpus: list[int] = attrs.field(factory=list)
    memory: int = 0
    distances: dict[int, int] = attrs.field(factory=dict)
    online: bool = True


def parse_nodes(r: _Reader, raw: list[Any], where: dict[int, str]) -> list[NodeCfg]:
    """The ``[[node]]`` tables; without any, one node 0 with CPUs 0-1 and 4G."""
    nodes: list[NodeCfg] = []
    cpus_seen: dict[int, str] = {}
    for i, n in enumerate(raw):
        w = f"node[{i}]"
        d = r.table(n, w, NodeCfg.FIELDS, required=NodeCfg.REQUIRED)
        r.within(d["id"], f"{w}.id", 0, 1023, "MAX_NUMNODES")
        for o in nodes:
            if o.id == d["id"]:
                r.err(f"{w}.id", f"node {d['id']} is declared twice")
        r.count(d.get("cpus", []), f"{w}.cpus", "cpus")
        cpus = r.items(d.get("cpus", []), f"{w}.cpus", "uint")
        for j, c in enumerate(cpus):
            if c >= limit("cpus"):
                r.over(f"{w}.cpus[{j}]", f"cpu {c} is past the last CPU number {limit('cpus') - 1}", "cpus")
            if c in cpus_seen:
                r.err(f"{w}.cpus", f"cpu {c} is already in {cpus_seen[c]}")
            cpus_seen[c] = w
        dist = {}
        for k, v in d.get("distances", {}).items():
            try:
                nid = int(k, 0)
            except ValueError:
                r.err(f"{w}.distances.{k}", f"{k!r} is not a node id")
            dist[nid] = r.within(r.value(v, f"{w}.distances.{k}", "int"), f"{w}.distances.{k}", 10, 255,
                                 "SLIT distance")
        online = d.get("online", True)
        if not online and (cpus or d.get("memory", 0)):
            r.err(f"{w}.online", "a node with CPUs or boot memory is online at boot")
        node = NodeCfg(id=d["id"], cpus=cpus, memory=d.get("memory", 0), distances=dist, online=online)
        where[id(node)] = w
        nodes.append(node)
    _check_boot_memory(r, nodes, where)
    ids = {n.id for n in nodes}
    for n in nodes:
        for k in n.distances:
            if k not in ids:
                r.err(f"{where[id(n)]}.distances.{k}", f"no node {k} is declared")
    if not nodes:
        nodes.append(NodeCfg(id=0, cpus=[0, 1], memory=4 << 30))
    return nodes


def _check_boot_memory(r: _Reader, nodes: list[NodeCfg], where: dict[int, str]) -> None:
    """The boot memory, placed as the memory hotplug core places it (the lowest node id from 0,
    its first 3G below 4G, the rest and the other nodes from 4G up), ends inside 64 bits."""
    cursor = 0
    for n in sorted(nodes, key=lambda c: c.id):
        m = n.memory
        if not m:
            continue
        if cursor == 0:
            low = min(m, SZ_3G)
            cursor, m = SZ_4G, m - low
        r.fits(f"{where[id(n)]}.memory", "boot memory placed at", cursor, m)
        cursor += m
