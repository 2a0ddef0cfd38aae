"""A small memory-expansion topology for the hotplug tests, as TOML text (for `cxlsys run
--topology FILE`) or as a booted System (in-process): one PCIe host bridge, two root ports,
two 2 GiB ram memdevs, an 8 GiB window at 1 TiB on node ``window_node`` (1 = a CPU-less CXL
node, 0 = the DRAM node with CPUs 0-3 and 16 GiB), and a firmware-committed 2-way ram region
of ``region`` bytes at ``offset`` in the window."""

from __future__ import annotations

import tomllib

from cxlsys.system import System
from cxlsys.topology import parse_topology

GiB = 1 << 30
MiB = 1 << 20
HPA_BASE = 1 << 40


def topo_toml(block_size="128M", auto="offline", policy="contig-zones", memmap=False, window_node=1,
              ratio=301, numa_aware=True, movable_node=False, unmovable=False, region="4G",
              base=HPA_BASE, offset=0) -> str:
    return f'''
name = "hotplug-test"
description = "hotplug policy test box"

[acpi]
hpa_base = "{base:#x}"

[system]
block_size = "{block_size}"
auto_online_blocks = "{auto}"
online_policy = "{policy}"
memmap_on_memory = {str(memmap).lower()}
auto_movable_ratio = {ratio}
auto_movable_numa_aware = {str(numa_aware).lower()}
movable_node = {str(movable_node).lower()}
kernel_zone_unmovable = {str(unmovable).lower()}

[[node]]
id = 0
cpus = [0, 1, 2, 3]
memory = "16G"
distances = {{ "1" = 24 }}

[[node]]
id = 1
online = false
distances = {{ "0" = 24 }}

[[host_bridge]]
name = "pci0000:34"
uid = 0x34
kind = "pci"

[[root_port]]
name = "0000:34:00.0"
parent = "pci0000:34"
port_id = 0

[[root_port]]
name = "0000:34:01.0"
parent = "pci0000:34"
port_id = 1

[[memdev]]
name = "0000:35:00.0"
parent = "0000:34:00.0"
ram = "2G"
serial = 1

[[memdev]]
name = "0000:36:00.0"
parent = "0000:34:01.0"
ram = "2G"
serial = 2

[[window]]
size = "8G"
targets = [0x34]
restrictions = ["type3", "volatile"]
node = {window_node}

[[auto_region]]
window = 0
size = "{region}"
offset = "{offset:#x}"
members = ["0000:35:00.0", "0000:36:00.0"]
'''


def boot(**kw) -> System:
    return System.boot(parse_topology(tomllib.loads(topo_toml(**kw)), "hotplug-test"))


def write_topology(tmp_path, **kw) -> str:
    p = tmp_path / "hotplug.toml"
    p.write_text(topo_toml(**kw))
    return str(p)
