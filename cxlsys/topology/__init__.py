"""Topologies as data: the TOML format a user writes, validated with messages that name
the file, the field and what is wrong (never a traceback).

A topology describes the *hardware and firmware*: host devices (platform or PCI),
host bridges with their ACPI UIDs, root ports, switches, memory devices, CFMWS
windows, and decoders firmware already committed (auto regions).  The kernel model
(``cxlsys.cxl``) then enumerates it exactly as the kernel would.  See
``fixtures/README.md`` for the format.

Validation happens in two passes: each table's own fields (types, ranges, units),
then the cross references (parents, PCI naming and bus numbers, port ids, window
targets, auto regions), rejecting what the kernel or QEMU would reject.  Every
message has the form ``<file>: <field>: <what is wrong>``, on one line.

The package, one module per concern (imports form a tree, in this order):

* ``limits``   - ``LIMITS``, the table of every limit (sizes, counts, depths, lengths).
* ``reader``   - the value reader: field kinds, sizes and integers, the message form, the
  limits every value has (``shape``).
* ``nodes``, ``devices``, ``windows``, ``toplevel`` - each config class with its
  table's fields (``FIELDS``, ``REQUIRED``) and the function reading that table.
* ``crossref`` - pass 2, the cross references.
* ``parse``    - the driver: the tables in order, then pass 2.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from cxlsys.topology.devices import (
    DECODER_COUNTS,
    FLITS,
    KINDS,
    TARGET_COUNTS,
    HostBridgeCfg,
    MemdevCfg,
    PortCfg,
    SwitchCfg,
)
from cxlsys.topology.limits import LIMITS, Limit, limit
from cxlsys.topology.nodes import NodeCfg
from cxlsys.topology.parse import _Parser
from cxlsys.topology.reader import SZ_256M, TopologyError, _cut, one_line
from cxlsys.topology.toplevel import MEMDEV_DRIVERS, Topology
from cxlsys.topology.windows import (
    INTERLEAVE_WAYS,
    RESTRICTIONS,
    AutoRegionCfg,
    CximsCfg,
    WindowCfg,
)

__all__ = [
    "DECODER_COUNTS",
    "FIXTURES",
    "FLITS",
    "INTERLEAVE_WAYS",
    "KINDS",
    "LIMITS",
    "MEMDEV_DRIVERS",
    "RESTRICTIONS",
    "SZ_256M",
    "TARGET_COUNTS",
    "AutoRegionCfg",
    "CximsCfg",
    "HostBridgeCfg",
    "Limit",
    "MemdevCfg",
    "NodeCfg",
    "PortCfg",
    "SwitchCfg",
    "Topology",
    "TopologyError",
    "WindowCfg",
    "load_topology",
    "parse_topology",
]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"    # the presets: package data (cxlsys/fixtures)


def load_topology(name_or_path: str) -> Topology:
    """A preset name from fixtures/ (``cxl_test``) or a path to a TOML file."""
    try:
        p, raw = _read(name_or_path)
    except (OSError, ValueError) as e:      # ValueError: a NUL in the path
        raise _failed(name_or_path, f"cannot read: {e.strerror if isinstance(e, OSError) and e.strerror else e}")
    if len(raw) > limit("file_size"):
        raise _failed(p, f"file: too large (limit {LIMITS['file_size']})")
    try:
        data = tomllib.loads(raw.decode())
    except UnicodeDecodeError:
        raise _failed(p, "not valid TOML: not UTF-8 text")
    except ValueError as e:             # TOMLDecodeError, or an integer of more digits than int() takes
        raise _failed(p, f"not valid TOML: {e}")
    except RecursionError:              # tomllib recurses per nesting level
        raise _failed(p, f"topology: nested too deeply (limit {LIMITS['nesting']})")
    return parse_topology(data, str(p))


def _failed(p: Path | str, msg: str) -> TopologyError:
    return TopologyError(_cut(one_line(f"{p}"), 640) + ": " + _cut(one_line(msg), 400))


def _read(name_or_path: str) -> tuple[Path, bytes]:
    """The file a preset name or path names, and its first ``file_size`` + 1 bytes (not
    read_text(): a device or a FIFO may never end)."""
    p = Path(name_or_path)
    if not p.suffix and not p.exists():
        p = FIXTURES / f"{name_or_path}.toml"
        if not p.exists():
            names = ", ".join(sorted(x.stem for x in FIXTURES.glob("*.toml")))
            raise _failed(name_or_path, f"no such topology file or preset (presets: {names})")
    if not p.exists():
        raise _failed(p, "no such file")
    with p.open("rb") as f:
        return p, f.read(limit("file_size") + 1)


def parse_topology(data: dict, src: str = "<topology>") -> Topology:
    """A topology built in code (the dict a TOML file loads to): checked as a file is, a
    :class:`TopologyError` naming ``src``, the field and the problem if it is wrong."""
    return _Parser(data, src).run()
