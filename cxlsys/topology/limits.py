"""The limits a topology must keep within: how big, how many, how deep.

Every one is checked before anything is built, so that no file (and no dict handed to
``parse_topology``) can make cxlsys hang, eat memory or fail with a traceback: a file over a
limit is refused with one line ``<file>: <field>: <what is wrong> (limit <value>)``.

Most limits are the hardware's or the kernel's own (a 64-bit address space, 16 interleave ways,
MAX_NUMNODES, MODULE_NAME_LEN, the CXIMS 8-bit map count); the others are the model's, chosen
far above every shipped fixture (``large-2t``, the largest, implies 16384 memory blocks) and low
enough that a topology at every limit at once still boots in seconds.  ``LIMITS`` is the one
table of them; docs/topology-limits.md shows it to users (a test keeps the two equal).
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Limit:
    """One limit: the largest allowed ``value``, in ``unit``; ``applies`` names the fields it
    bounds and ``why`` where the number comes from."""

    value: int
    unit: str
    applies: str
    why: str

    def __str__(self) -> str:
        if self.unit == "bytes":
            return _fmt_bytes(self.value)
        return f"{self.value} {self.unit}".rstrip()


def _fmt_bytes(n: int) -> str:
    if n and n & (n - 1) == 0 and n.bit_length() > 50:
        return f"2^{n.bit_length() - 1} bytes"
    for unit, s in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n and n % (1 << s) == 0:
            return f"{n >> s}{unit}"
    return f"{n} bytes"


ADDRESS_SPACE = 1 << 64           # CFMWS base/size, HDM decoders and DPA are 64-bit


LIMITS: dict[str, Limit] = {
    # the file and its values
    "file_size": Limit(4 << 20, "bytes", "the topology file",
                       "the largest fixture is about 12K; the file is read whole"),
    "nesting": Limit(16, "levels", "any value (tables in lists in tables ...)",
                     "a topology needs 5 (switch[].downstream[].name)"),
    "values": Limit(1 << 20, "values", "the whole topology: every table, list and value counted once",
                    "model limit"),
    "integer_bits": Limit(128, "bits", "any integer value (a size, a number)",
                          "no field takes more than 64; a longer number is a typo"),
    "string_length": Limit(1024, "characters", "any string value or key", "model limit"),
    "name_length": Limit(64, "characters", "device names, module parameter names",
                         "each is a sysfs directory or file name; keeps paths within PATH_MAX at full depth"),
    "module_name_length": Limit(55, "characters", "module.name", "the kernel's MODULE_NAME_LEN (56, with the NUL)"),
    # how many
    "host_bridges": Limit(256, "[[host_bridge]] tables", "host_bridge", "model limit"),
    "root_ports": Limit(1024, "[[root_port]] tables", "root_port", "model limit"),
    "switches": Limit(1024, "[[switch]] tables", "switch", "model limit"),
    "downstream_ports": Limit(256, "ports per switch", "switch[].downstream",
                              "32 devices x 8 functions on a switch's internal bus"),
    "all_downstream_ports": Limit(4096, "ports", "switch[].downstream, all switches together", "model limit"),
    "switch_depth": Limit(8, "switches", "switches on one path from a root port to a memdev (cascaded)",
                          "model limit"),
    "memdevs": Limit(4096, "[[memdev]] tables", "memdev", "model limit (boot takes about 1 ms per memdev)"),
    "windows": Limit(256, "[[window]] tables", "window", "model limit"),
    "cxims": Limit(64, "[[cxims]] tables", "cxims", "model limit"),
    "xormaps": Limit(255, "maps", "cxims[].xormaps", "the CXIMS Number of Bitmap Entries is 8-bit"),
    "auto_regions": Limit(1024, "[[auto_region]] tables", "auto_region", "model limit"),
    "interleave_targets": Limit(16, "targets", "window[].targets, auto_region[].members",
                                "CXL interleaves at most 16 ways"),
    "nodes": Limit(1024, "[[node]] tables", "node", "MAX_NUMNODES (node ids are 0..1023)"),
    "cpus": Limit(8192, "CPUs", "node[].cpus (CPU numbers 0..8191, all nodes together)", "NR_CPUS at its largest"),
    # how big
    "memory_blocks": Limit(1 << 20, "memory blocks", "the window sizes together, in system.block_size blocks",
                           "each block is a /sys/devices/system/memory/memoryN; a million is 128T at 128M"),
    "block_size": Limit(64 << 30, "bytes", "system.block_size", "model limit (x86 allows up to 2G)"),
    "lsa_size": Limit(16 << 20, "bytes", "memdev[].lsa", "the model holds each label area in memory, twice"),
    "all_lsa_size": Limit(128 << 20, "bytes", "memdev[].lsa, all memdevs together", "the same"),
    "address_space": Limit(ADDRESS_SPACE, "bytes",
                           "acpi.hpa_base, window[].base + size (given or placed), memdev[].ram + pmem (DPA), "
                           "the end of node[].memory (boot memory, placed from 0), cxims[].xormaps",
                           "64-bit addresses"),
    "auto_movable_ratio": Limit(0xFFFFFFFF, "percent", "system.auto_movable_ratio",
                                "memory_hotplug.auto_movable_ratio is an unsigned int"),
    "port_id": Limit(0x7FFFFFFF, "", "root_port[].port_id, switch[].downstream[].port_id (pci: 255)",
                     "the kernel's int port_id"),
}
"""Every limit, by name; ``str(LIMITS[name])`` is how a message shows it."""


def limit(name: str) -> int:
    return LIMITS[name].value
