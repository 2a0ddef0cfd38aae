"""Bad topology input (issue 11, item 7): every limit of ``cxlsys.topology.LIMITS`` refuses one
past it with one line ``<file>: <field>: <what> (limit ...)``; every address or size ends inside
64 bits; and no input at all - generated TOML, mutated fixtures, mangled text - gets anything
but a booted system that keeps its invariants, or a one-line ``TopologyError``."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxlsys.cxl.core.region import CxlRegion
from cxlsys.system import System
from cxlsys.testing import devices
from cxlsys.topology import (
    FIXTURES,
    LIMITS,
    AutoRegionCfg,
    CximsCfg,
    HostBridgeCfg,
    MemdevCfg,
    NodeCfg,
    PortCfg,
    SwitchCfg,
    Topology,
    TopologyError,
    WindowCfg,
    load_topology,
    parse_topology,
)
from cxlsys.topology.reader import one_line

ROOT = Path(__file__).resolve().parent.parent
SZ_256M = 256 << 20
SRC = "bad.toml"


# ------------------------------------------------------------------ helpers

def toml_text(doc: dict) -> str:
    """Any dict of TOML values as TOML text: every top-level key one ``"key" = value`` line,
    tables and arrays inline (valid at any depth, for any key)."""
    return "".join(f"{_key(k)} = {_toml(v)}\n" for k, v in doc.items())


def _key(k: Any) -> str:
    return _str(str(k))


def _str(s: str) -> str:
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(repr(v), repr(v))
    if isinstance(v, str):
        return _str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def check_message(e: TopologyError, src: str) -> str:
    msg = str(e)
    assert msg.startswith(src), msg
    assert "\n" not in msg and "\r" not in msg and msg.isprintable(), repr(msg)
    assert len(msg) < 1500, msg
    return msg


def _invariants():
    try:
        from cxlsys.invariants import check_invariants
    except ImportError:            # not there yet: booting without a traceback is the check
        return None
    return check_invariants


def outcome(load, src: str) -> str:
    """Load (a thunk), then boot what loads with each set of module parameters its ``when``
    conditions name; any exception but a one-line TopologyError fails the test."""
    try:
        t = load()
    except TopologyError as e:
        check_message(e, src)
        return "refused"
    check = _invariants()
    for params in _param_sets(t):
        s = System.boot(t, params)
        if check is not None:
            assert check(s) == [], (params, check(s))
    return "booted"


def _param_sets(t: Topology) -> list[dict[str, int]]:
    sets: list[dict[str, int]] = [{}]
    whens = [x.when for x in t.windows] + [x.when for x in t.cxims] + [x.when for x in t.auto_regions]
    for when in whens:
        if when and when not in sets:
            sets.append(dict(when))
    return sets[:3]


def parse(d: dict) -> Topology:
    return parse_topology(d, SRC)


def refused(d: Any) -> str:
    with pytest.raises(TopologyError) as e:
        parse(d)
    return check_message(e.value, SRC)


FIXTURE_DATA = {p.stem: tomllib.loads(p.read_text()) for p in sorted(FIXTURES.glob("*.toml"))}


def skeleton(hbs: int = 1, rps: int = 1, windows: int = 1, memdevs: bool = True, **memdev: Any) -> dict:
    """A small valid cxl_test-style (platform) topology: ``hbs`` host bridges with ``rps`` root
    ports each, one memdev below each root port, ``windows`` 1-way windows on host bridge 0."""
    d: dict[str, Any] = {"name": "limits", "module": {"name": "cxl_test"}, "host_bridge": [], "root_port": [],
                         "memdev": [], "window": []}
    for h in range(hbs):
        d["host_bridge"].append({"name": f"hb.{h}", "uid": h})
        for r in range(rps):
            d["root_port"].append({"name": f"rp.{h}.{r}", "parent": f"hb.{h}", "port_id": r})
            if memdevs:
                d["memdev"].append({"name": f"mem.{h}.{r}", "parent": f"rp.{h}.{r}", "ram": "256M", **memdev})
    for _ in range(windows):
        d["window"].append({"size": "256M", "targets": [0]})
    return d


def chain(depth: int) -> dict:
    """``depth`` switches cascaded below one root port, a memdev at the bottom."""
    d = skeleton(memdevs=False)
    parent = "rp.0.0"
    for i in range(depth):
        d.setdefault("switch", []).append({"name": f"usp.{i}", "parent": parent,
                                           "downstream": [{"name": f"dsp.{i}", "port_id": 0}]})
        parent = f"dsp.{i}"
    d["memdev"].append({"name": "mem.x", "parent": parent, "ram": "256M"})
    return d


# ------------------------------------------------------------------ the limits table

def test_limits_table_is_documented():
    """docs/topology-limits.md has one row per limit, with the value LIMITS holds."""
    doc = (ROOT / "docs" / "topology-limits.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| ([^|]+?) \|", doc, re.M)}
    assert set(rows) == set(LIMITS)
    for name, lim in LIMITS.items():
        assert rows[name] == str(lim), name


_COUNT_LIMITS = {"node": "nodes", "host_bridge": "host_bridges", "root_port": "root_ports", "switch": "switches",
                 "memdev": "memdevs", "window": "windows", "cxims": "cxims", "auto_region": "auto_regions"}


@pytest.mark.parametrize("name", sorted(FIXTURE_DATA))
def test_fixtures_keep_well_inside_the_limits(name):
    """Every shipped fixture loads, and ten times its memory blocks and its tables still would."""
    t = load_topology(name)
    bs = t.memory.get("block_size", 128 << 20)
    assert sum(w.size for w in t.windows) // bs * 10 <= LIMITS["memory_blocks"].value
    for key, lim in _COUNT_LIMITS.items():
        assert len(FIXTURE_DATA[name].get(key, [])) * 10 <= LIMITS[lim].value, key


def test_large_2t_is_its_16384_blocks():
    t = load_topology("large-2t")
    assert sum(w.size for w in t.windows) // t.memory["block_size"] == 16384


def _n(name: str) -> int:
    return LIMITS[name].value


# id, topology past the limit, field the message names, the limit it names
OVER = [
    ("host_bridges", lambda: skeleton(hbs=_n("host_bridges") + 1, rps=0, windows=0), "host_bridge"),
    ("root_ports", lambda: skeleton(hbs=5, rps=_n("root_ports") // 5 + 1, memdevs=False), "root_port"),
    ("switches", lambda: {**skeleton(), "switch": [{"name": f"s{i}", "parent": "rp.0.0", "downstream": []}
                                                  for i in range(_n("switches") + 1)]}, "switch"),
    ("downstream_ports", lambda: {**skeleton(memdevs=False), "switch": [
        {"name": "s", "parent": "rp.0.0",
         "downstream": [{"name": f"d{i}", "port_id": i} for i in range(_n("downstream_ports") + 1)]}]},
     "switch[0].downstream"),
    ("all_downstream_ports", lambda: {**skeleton(rps=20, memdevs=False), "switch": [
        {"name": f"s{j}", "parent": f"rp.0.{j}",
         "downstream": [{"name": f"d{j}.{i}", "port_id": i} for i in range(_n("downstream_ports"))]}
        for j in range(_n("all_downstream_ports") // _n("downstream_ports") + 1)]},
     f"switch[{_n('all_downstream_ports') // _n('downstream_ports')}].downstream"),
    ("switch_depth", lambda: chain(_n("switch_depth") + 1), f"switch[{_n('switch_depth')}].parent"),
    ("memdevs", lambda: {**skeleton(), "memdev": [{"name": f"m{i}", "parent": "rp.0.0", "ram": "256M"}
                                                 for i in range(_n("memdevs") + 1)]}, "memdev"),
    ("windows", lambda: skeleton(windows=_n("windows") + 1), "window"),
    ("cxims", lambda: {**skeleton(), "cxims": [{"granularity": 256, "xormaps": [1 << 8]}] * (_n("cxims") + 1)},
     "cxims"),
    ("xormaps", lambda: {**skeleton(), "cxims": [{"granularity": 256, "xormaps": [1 << 8] * (_n("xormaps") + 1)}]},
     "cxims[0].xormaps"),
    ("auto_regions", lambda: {**skeleton(), "auto_region": [{"window": 0, "size": "256M", "members": ["mem.0.0"]}]
                              * (_n("auto_regions") + 1)}, "auto_region"),
    ("interleave_targets", lambda: {**skeleton(), "window": [{"size": "16G", "targets": list(range(17))}]},
     "window[0].targets"),
    ("interleave_targets", lambda: {**skeleton(), "auto_region": [
        {"window": 0, "size": "256M", "members": ["mem.0.0"] * 17}]}, "auto_region[0].members"),
    ("nodes", lambda: {**skeleton(), "node": [{"id": i} for i in range(_n("nodes") + 1)]}, "node"),
    ("cpus", lambda: {**skeleton(), "node": [{"id": 0, "cpus": list(range(_n("cpus") + 1))}]}, "node[0].cpus"),
    ("cpus", lambda: {**skeleton(), "node": [{"id": 0, "cpus": [_n("cpus")]}]}, "node[0].cpus[0]"),
    ("memory_blocks", lambda: {**skeleton(), "window": [{"size": hex(1 << 63), "targets": [0]}],
                               "system": {"block_size": "256M"}}, "window[0].size"),
    ("memory_blocks", lambda: {**skeleton(), "window": [{"size": "64T", "targets": [0]}] * 3}, "window[2].size"),
    ("block_size", lambda: {**skeleton(), "system": {"block_size": "128G"}}, "system.block_size"),
    ("lsa_size", lambda: skeleton(lsa="32M"), "memdev[0].lsa"),
    ("all_lsa_size", lambda: skeleton(rps=9, lsa="16M"), "memdev[8].lsa"),
    ("address_space", lambda: {**skeleton(), "acpi": {"hpa_base": hex((1 << 64) - SZ_256M)},
                               "window": [{"size": "512M", "targets": [0]}]}, "window[0].size"),
    ("address_space", lambda: {**skeleton(), "acpi": {"hpa_base": hex(1 << 64)}}, "acpi.hpa_base"),
    ("address_space", lambda: {**skeleton(), "window": [{"size": "256M", "targets": [0]},
                                                        {"size": hex((1 << 64) - SZ_256M), "targets": [0]}],
                               "system": {"block_size": "64G"}}, "window[1].size"),
    ("address_space", lambda: {**skeleton(), "window": [{"size": "512M", "targets": [0],
                                                         "base": hex((1 << 64) - SZ_256M)}]}, "window[0].base"),
    ("address_space", lambda: skeleton(ram=hex((1 << 64) + SZ_256M)), "memdev[0].ram"),
    ("address_space", lambda: skeleton(ram=hex((1 << 64) - SZ_256M), pmem="512M"), "memdev[0].pmem"),
    ("address_space", lambda: {**skeleton(), "node": [{"id": 0, "cpus": [0], "memory": hex(1 << 64)}]},
     "node[0].memory"),
    ("address_space", lambda: {**skeleton(), "node": [{"id": 0, "cpus": [0], "memory": "1T"},
                                                      {"id": 1, "memory": hex((1 << 64) - (1 << 40))}]},
     "node[1].memory"),
    ("address_space", lambda: {**skeleton(), "cxims": [{"granularity": 256, "xormaps": [1 << 64]}]},
     "cxims[0].xormaps[0]"),
    ("auto_movable_ratio", lambda: {**skeleton(), "system": {"auto_movable_ratio": 1 << 32}},
     "system.auto_movable_ratio"),
    ("name_length", lambda: {**skeleton(), "host_bridge": [{"name": "h" * 65, "uid": 0}]}, "host_bridge[0].name"),
    ("name_length", lambda: {**skeleton(), "module": {"name": "cxl_test", "params": {"p" * 65: 0}}},
     "module.params." + "p" * 65),
    ("module_name_length", lambda: {**skeleton(), "module": {"name": "m" * 56}}, "module.name"),
    ("string_length", lambda: {**skeleton(), "description": "d" * 1025}, "description"),
    ("string_length", lambda: {**skeleton(), "k" * 1025: 1}, "k" * 1025),
    ("nesting", lambda: {**skeleton(), "window": [{"size": "256M", "targets": [0],
                                                   "when": _nest(15)}]}, "window[0].when" + ".a" * 13),
    ("values", lambda: {**skeleton(), "description": [0] * _n("values")}, "description"),
    ("integer_bits", lambda: skeleton(serial=1 << 200), "memdev[0].serial"),
    ("port_id", lambda: {**skeleton(), "root_port": [{"name": "rp.0.0", "parent": "hb.0", "port_id": 1 << 31}]},
     "root_port[0].port_id"),
]


def _nest(n: int) -> dict:
    d: dict = {}
    for _ in range(n):
        d = {"a": d}
    return d


def test_every_limit_has_a_case():
    assert {o[0] for o in OVER} == set(LIMITS) - {"file_size"}      # file_size: test_file_too_large


@pytest.mark.parametrize("name,make,field", OVER, ids=[f"{o[0]}-{i}" for i, o in enumerate(OVER)])
def test_past_a_limit_is_refused(name, make, field):
    msg = refused(make())
    assert msg.startswith(f"{SRC}: {field}: ") or msg.startswith(f"{SRC}: {field[:70]}"), msg
    if name not in ("port_id",):
        assert msg.endswith(f"(limit {LIMITS[name]})"), msg


@pytest.mark.parametrize("make", [
    lambda: skeleton(windows=_n("windows")),
    lambda: chain(_n("switch_depth")),
    lambda: {**skeleton(), "window": [{"size": "64T", "targets": [0]}] * 2},       # 2^20 blocks of 128M
    lambda: skeleton(rps=8, lsa="16M"),
    lambda: {**skeleton(), "window": [{"size": hex(1 << 56), "targets": [0], "base": hex((1 << 64) - (1 << 56))}],
             "system": {"block_size": "64G"}},                                     # 2^20 blocks of 64G
    lambda: skeleton(ram=hex((1 << 64) - SZ_256M), pmem="256M"),
    lambda: {**skeleton(), "host_bridge": [{"name": "h" * 64, "uid": 0}],
             "root_port": [{"name": "rp.0.0", "parent": "h" * 64, "port_id": 0x7FFFFFFF}]},
], ids=["windows", "switch_depth", "memory_blocks", "all_lsa_size", "window-end", "dpa-end", "names"])
def test_at_a_limit_is_accepted(make):
    parse(make())


def test_at_the_depth_limit_boots():
    s = System.boot(parse(chain(_n("switch_depth"))))
    assert "mem.x" in s.machine.devices


def test_file_too_large(tmp_path):
    p = tmp_path / "big.toml"
    p.write_text('name = "big"\n' + "#" * _n("file_size") + "\n")
    with pytest.raises(TopologyError) as e:
        load_topology(str(p))
    assert check_message(e.value, str(p)) == f"{p}: file: too large (limit {LIMITS['file_size']})"


def test_a_file_that_never_ends_is_read_only_up_to_the_limit():
    with pytest.raises(TopologyError) as e:
        load_topology("/dev/zero")
    assert "too large" in check_message(e.value, "/dev/zero")


@pytest.mark.parametrize("text,problem", [
    ("x = " + "9" * 5000, "not valid TOML"),                 # more digits than int() converts
    ("x = " + "[" * 3000 + "]" * 3000, "nested too deeply"),
    ('name = "a"\nname = "b"\n', "not valid TOML"),           # a duplicate key
    ("[a" + ".a" * 40 + "]\nx = 1\n", "nested too deeply"),   # dotted tables: deep without recursion
    ('name = "x\\u0000y"\n[module]\nname = "m\\u000ax"\n', "module.name"),
])
def test_bad_text(tmp_path, text, problem):
    p = tmp_path / "t.toml"
    p.write_text(text)
    with pytest.raises(TopologyError) as e:
        load_topology(str(p))
    assert problem in check_message(e.value, str(p))


@pytest.mark.parametrize("path,problem", [("a\0b.toml", "no such file"), ("x" * 5000 + ".toml", "cannot read"),
                                          ("/", "cannot read"), ("/dev/null", "missing required field")])
def test_unreadable_paths(path, problem):
    with pytest.raises(TopologyError) as e:
        load_topology(path)
    assert problem in check_message(e.value, one_line(path)[:10])


def test_dict_that_holds_itself():
    d = skeleton()
    d["window"][0]["when"] = d
    assert "nested too deeply" in refused(d)


def test_shared_lists_count_every_use():
    """A list from code that holds one list 2000 times: its values count 2000 times."""
    assert "too many values" in refused({**skeleton(), "description": [[0] * 1000] * 2000})


def test_messages_stay_short():
    msg = refused({**skeleton(), "window": [{"size": "256M", "targets": [0], "colour" * 150: 1}]})
    assert len(msg) < 600 and "unknown field" in msg
    msg = refused({**skeleton(), "window": [{"size": "1" * 1000, "targets": [0]}]})
    assert len(msg) < 600


def _auto(window: dict, **memdev: Any) -> dict:
    d = skeleton(hbs=2, **memdev)
    d["window"] = [window]
    d["auto_region"] = [{"window": 0, "size": "512M", "members": ["mem.0.0", "mem.1.0"][:len(window["targets"])],
                         "granularity": 4096}]
    return d


@pytest.mark.parametrize("doc,field,problem", [
    (_auto({"size": "1G", "targets": [0, 1], "granularity": 256, "restrictions": ["volatile"]}, ram="512M"),
     "auto_region[0].granularity", "the region's granularity is the window's"),
    (_auto({"size": "1G", "targets": [0], "restrictions": ["volatile"]}, ram="256M", pmem="512M"),
     "auto_region[0].size", "across the end of its 256M ram partition"),
    (_auto({"size": "1G", "targets": [0], "restrictions": ["type3"]}, ram="512M"),
     "auto_region[0].window", "no 'volatile' restriction"),
    (_auto({"size": "1G", "targets": [0], "restrictions": ["volatile"]}, ram="0M", pmem="512M"),
     "auto_region[0].window", "no 'pmem' restriction"),
], ids=["granularity", "straddles-partitions", "ram-in-no-volatile-window", "pmem-in-no-pmem-window"])
def test_firmware_regions_the_model_could_not_assemble(doc, field, problem):
    """Found by the fuzzer: firmware-committed decoders that parsed but booted into regions that
    break the model's invariants are refused up front."""
    for m in doc["memdev"]:
        if m.get("ram") == "0M":
            del m["ram"]
    msg = refused(doc)
    assert msg.startswith(f"{SRC}: {field}: ") and problem in msg, msg


def test_xor_window_needs_its_cxims_whenever_it_exists():
    """Found by the fuzzer: cxl_test's x4 XOR window without its ``when`` exists with
    interleave_arithmetic=0 too, where its CXIMS does not (cxl_acpi would fail the window)."""
    d = copy.deepcopy(FIXTURE_DATA["cxl_test"])
    del d["window"][8]["when"]
    msg = refused(d)
    assert msg.startswith(f"{SRC}: window[8].arithmetic: ") and "whenever it exists" in msg, msg
    d["cxims"][0]["xormaps"] = d["cxims"][0]["xormaps"][:1]
    d["window"][8]["when"] = {"interleave_arithmetic": 1}
    assert "needs 2 xormaps" in refused(d)


def test_firmware_region_in_the_right_window_boots():
    doc = _auto({"size": "1G", "targets": [0, 1], "granularity": 4096, "restrictions": ["volatile"]}, ram="512M")
    s = System.boot(parse(doc))
    (region,) = devices(s, CxlRegion)
    assert (region.interleave_ways, region.interleave_granularity, region.hpa_size) == (2, 4096, 512 << 20)
    assert outcome(lambda: parse(doc), SRC) == "booted"


# ------------------------------------------------------------------ through the command line

def _cxlsys(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cxlsys", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False, stdin=subprocess.DEVNULL)


def test_cli_one_line_and_exit_2(tmp_path):
    """A file past a limit: exactly one stderr line and exit status 2, for the commands that
    boot a topology (mount and run refuse before mounting anything)."""
    bad = tmp_path / "bad.toml"
    bad.write_text(toml_text({**skeleton(), "window": [{"size": hex(1 << 63), "targets": [0]}]}))
    want = (f"cxlsys: {bad}: window[0].size: the windows up to this one are {(1 << 63) // (128 << 20)} memory "
            f"blocks of 128M (limit {LIMITS['memory_blocks']})")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for args in (["tree", "-t", str(bad)], ["dump", "-t", str(bad)], ["mount", "-t", str(bad), str(mnt)],
                 ["run", "--via", "umockdev", "-t", str(bad), "--", "true"]):
        r = _cxlsys(*args)
        assert (r.returncode, r.stderr, r.stdout) == (2, want + "\n", ""), args
    assert not os.listdir(mnt)


def test_cli_garbage_file(tmp_path):
    bad = tmp_path / "garbage.toml"
    bad.write_bytes(b"\xff\xfe name = \x00\n")
    r = _cxlsys("tree", "-t", str(bad))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr == f"cxlsys: {bad}: not valid TOML: not UTF-8 text\n"


# ------------------------------------------------------------------ fuzz: generated input

# CI: a fixed, bounded set of examples.  A longer search, new examples each run:
#   CXLSYS_TOPOLOGY_FUZZ_SCALE=50 .venv/bin/python -m pytest -q tests/test_topology_limits.py -k fuzz
SCALE = int(os.environ.get("CXLSYS_TOPOLOGY_FUZZ_SCALE", "1"))
FUZZ = settings(derandomize=SCALE == 1, database=None, deadline=None, print_blob=False, max_examples=100 * SCALE,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

ALL_FIELDS = sorted({*Topology.FIELDS, *Topology.MODULE_FIELDS, *Topology.ACPI_FIELDS, *Topology.SYSTEM_FIELDS,
                     *NodeCfg.FIELDS, *HostBridgeCfg.FIELDS, *PortCfg.FIELDS, *SwitchCfg.FIELDS, *MemdevCfg.FIELDS,
                     *WindowCfg.FIELDS, *CximsCfg.FIELDS, *AutoRegionCfg.FIELDS, "interleave_arithmetic"})
FIXTURE_NAMES = sorted({v for d in FIXTURE_DATA.values() for k in ("host_bridge", "root_port", "switch", "memdev")
                        for x in d.get(k, []) for v in [x.get("name"), x.get("parent")] if v})

INTERESTING = [0, 1, -1, 2, 3, 6, 8, 16, 17, 255, 256, 1023, 1024, 4096, 16384, 1 << 20, SZ_256M, 1 << 30,
               1 << 40, (1 << 31) - 1, 1 << 31, 1 << 32, (1 << 63) - 1, -(1 << 63), (1 << 64) - 1, 1 << 64,
               1 << 70, -(1 << 70), 1 << 127, 1 << 128, 1 << 200]
ints = st.sampled_from(INTERESTING) | st.integers(-(1 << 66), 1 << 66)
sizes = (st.builds(lambda n, u: f"{n}{u}", st.sampled_from(INTERESTING) | st.integers(-3, 1 << 44),
                   st.sampled_from(["", "K", "M", "G", "T", "KiB", "GiB", "E", " ", "x"]))
         | st.builds(hex, st.sampled_from(INTERESTING) | st.integers(0, 1 << 70)))
names = st.sampled_from(FIXTURE_NAMES + ["", ".", "..", "a/b", "a b", "\x00", "h" * 65, "é" * 64, "x" * 2000])
text = st.text(max_size=16)
leaf = (ints | sizes | names | text | st.booleans() | st.floats()
        | st.sampled_from(["platform", "pci", "modulo", "xor", "type3", "volatile", "pmem", "cxl_test",
                           "offline", "online_movable", "6.12", "7.3+bi"]))
keys = st.sampled_from(ALL_FIELDS) | text
values = st.recursive(leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(keys, c, max_size=4),
                      max_leaves=12)


def _near(v: Any) -> st.SearchStrategy:
    """Values like ``v``: the same kind, off by a little or a lot."""
    if isinstance(v, bool):
        return st.sampled_from([not v, 1, "true"])
    if isinstance(v, int):
        return st.sampled_from([v + 1, v - 1, -v, v * 2, v << 32, v << 64, v * 3, str(v), hex(v)]) | ints
    if isinstance(v, str):
        return (st.sampled_from([v + "x", v[:-1], v.upper(), v * 2, v + "/", " " + v, v + "\n"]) | sizes | names)
    return values


def _containers(v: Any, path: tuple = ()) -> list[tuple]:
    """Every (path, container) in ``v``: the dicts and lists a mutation can work on."""
    out: list[tuple] = []
    todo: list[tuple] = [(path, v)]
    while todo:
        p, x = todo.pop()
        if isinstance(x, dict):
            out.append((p, x))
            todo.extend((p + (k,), y) for k, y in x.items())
        elif isinstance(x, list):
            out.append((p, x))
            todo.extend((p + (i,), y) for i, y in enumerate(x))
    return sorted(out, key=lambda px: repr(px[0]))


@st.composite
def mutated(draw, base: dict) -> dict:
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        spots = _containers(doc)
        _, c = draw(st.sampled_from(spots))
        keys_of = list(c) if isinstance(c, dict) else list(range(len(c)))
        op = draw(st.sampled_from(["near", "near", "set", "delete", "add", "dup", "multiply", "deepen"]))
        if op == "add" or not keys_of:
            if isinstance(c, dict):
                c[draw(keys)] = draw(values)
            else:
                c.append(draw(values))
            continue
        k = draw(st.sampled_from(keys_of))
        if op == "near":
            c[k] = draw(_near(c[k]))
        elif op == "set":
            c[k] = draw(values)
        elif op == "delete":
            del c[k]
        elif op == "dup" and isinstance(c, list):
            c.append(copy.deepcopy(c[k]))
        elif op == "multiply":
            c[k] = [c[k]] * draw(st.sampled_from([2, 17, 300, 5000]))
        else:
            for _ in range(draw(st.integers(1, 20))):
                c[k] = draw(st.sampled_from([[c[k]], {"a": c[k]}]))
    return doc


# the fixtures to mutate: large-2t (16384 blocks to boot) less often
MUTANT_BASES = ["cxl_test", "qemu-hdm-db", "bi-direct", "cxl_test", "qemu-hdm-db", "bi-direct", "large-2t"]


@st.composite
def fixture_mutants(draw) -> dict:
    return draw(mutated(FIXTURE_DATA[draw(st.sampled_from(MUTANT_BASES))]))


@st.composite
def valid_platform(draw) -> dict:
    """A valid cxl_test-style topology: host bridges, root ports, cascaded switches, memdevs,
    windows over the host bridges, maybe a firmware-committed region."""
    hbs = draw(st.integers(1, 3))
    d: dict[str, Any] = {"name": "gen", "module": {"name": "cxl_test", "params": {"p": 0}}, "host_bridge": [],
                         "root_port": [], "switch": [], "memdev": [], "window": [], "auto_region": []}
    if draw(st.booleans()):
        d["system"] = {"block_size": draw(st.sampled_from(["128M", "256M", "2G"])),
                       "auto_online_blocks": draw(st.sampled_from(["offline", "online", "online_movable"]))}
    under: dict[int, list[str]] = {}          # host bridge uid -> its memdevs
    n = 0
    for h in range(hbs):
        rps = draw(st.integers(1, 2))
        d["host_bridge"].append({"name": f"hb.{h}", "uid": h,
                                 "decoders": draw(st.sampled_from([1, 4, 8] + ([0] if rps == 1 else []))),
                                 "targets": draw(st.sampled_from([1, 2, 4, 8]))})
        for r in range(rps):
            parent = f"rp.{h}.{r}"
            d["root_port"].append({"name": parent, "parent": f"hb.{h}", "port_id": r})
            leaves = [parent]
            for level in range(draw(st.integers(0, 2))):
                nxt = []
                for j, leaf_port in enumerate(leaves):
                    sw = f"sw.{h}.{r}.{level}.{j}"
                    ds = [{"name": f"{sw}.d{i}", "port_id": i} for i in range(draw(st.integers(1, 2)))]
                    d["switch"].append({"name": sw, "parent": leaf_port, "downstream": ds,
                                        "decoders": draw(st.sampled_from([0, 8])) if len(ds) == 1 else 8})
                    nxt += [str(x["name"]) for x in ds]
                leaves = nxt
            for port in leaves:
                m = {"name": f"mem.{n}", "parent": port, "ram": f"{draw(st.integers(0, 4)) * 256}M",
                     "pmem": f"{draw(st.integers(0, 2)) * 256}M", "lsa": draw(st.sampled_from([0, "128K"])),
                     "serial": n, "decoders": draw(st.sampled_from([1, 4, 8]))}
                if m["ram"] == "0M" and m["pmem"] == "0M":
                    m["ram"] = "256M"
                d["memdev"].append(m)
                under.setdefault(h, []).append(m["name"])
                n += 1
    for _ in range(draw(st.integers(1, 3))):
        ways = draw(st.sampled_from([w for w in (1, 2) if w <= hbs]))
        d["window"].append({"size": f"{draw(st.integers(1, 8)) * 256 * ways}M",
                            "targets": draw(st.permutations(range(hbs)))[:ways],
                            "granularity": draw(st.sampled_from([256, 4096])),
                            "restrictions": draw(st.lists(st.sampled_from(["type3", "volatile", "pmem"]),
                                                          unique=True)),
                            "when": draw(st.sampled_from([{}, {"p": 0}, {"p": 1}]))})
    w0 = d["window"][0]
    if len(w0["targets"]) == 1 and draw(st.booleans()):
        md = next(m for m in d["memdev"] if m["name"] == under[w0["targets"][0]][0])
        need = "volatile" if md["ram"] != "0M" else "pmem"        # decoder 0 decodes DPA 0: ram, if any
        if need not in w0["restrictions"]:
            w0["restrictions"].append(need)
        d["auto_region"].append({"window": 0, "size": "256M", "members": [md["name"]]})
    return d


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _through_text(doc: dict, workdir: Path, tag: str) -> str:
    p = workdir / f"{tag}.toml"
    p.write_text(toml_text(doc))
    return outcome(lambda: load_topology(str(p)), str(p))


@FUZZ
@given(valid_platform())
def test_fuzz_valid_topologies_boot(doc):
    """Generated valid topologies load (the limits refuse none of them) and boot clean."""
    assert outcome(lambda: parse(doc), SRC) == "booted"


@FUZZ
@given(st.data())
def test_fuzz_mutated_valid_topologies(data):
    doc = data.draw(valid_platform())
    outcome(lambda: parse(data.draw(mutated(doc))), SRC)


@settings(FUZZ, max_examples=150 * SCALE)
@given(fixture_mutants(), st.booleans())
def test_fuzz_mutated_fixtures(workdir, doc, as_text):
    if as_text:
        _through_text(doc, workdir, "mutant")
    else:
        outcome(lambda: parse(doc), SRC)


def _table(spec: dict) -> st.SearchStrategy:
    """A table with some of the fields of ``spec`` (values of about the right kind) and maybe others."""
    def value_for(kind: Any) -> st.SearchStrategy:
        if kind == "size":
            return sizes | ints
        if kind in ("int", "uint"):
            return ints | sizes
        if kind == "name":
            return names
        if isinstance(kind, tuple):
            return st.sampled_from(kind) | leaf
        if kind == "list":
            return st.lists(leaf | st.dictionaries(keys, leaf, max_size=3), max_size=5)
        return values
    return st.fixed_dictionaries({}, optional={k: value_for(v) for k, v in spec.items()}) | \
        st.dictionaries(keys, values, max_size=3)


from_scratch = st.fixed_dictionaries(
    {"name": st.just("scratch") | leaf},
    optional={"module": _table(Topology.MODULE_FIELDS), "acpi": _table(Topology.ACPI_FIELDS),
              "system": _table(Topology.SYSTEM_FIELDS), "kernel": text | st.just("6.12"),
              "node": st.lists(_table(NodeCfg.FIELDS), max_size=3),
              "host_bridge": st.lists(_table(HostBridgeCfg.FIELDS), max_size=3),
              "root_port": st.lists(_table(PortCfg.FIELDS), max_size=3),
              "switch": st.lists(_table(SwitchCfg.FIELDS), max_size=2),
              "memdev": st.lists(_table(MemdevCfg.FIELDS), max_size=3),
              "window": st.lists(_table(WindowCfg.FIELDS), max_size=3),
              "cxims": st.lists(_table(CximsCfg.FIELDS), max_size=2),
              "auto_region": st.lists(_table(AutoRegionCfg.FIELDS), max_size=2),
              "extra": values})


@settings(FUZZ, max_examples=150 * SCALE)
@given(from_scratch, st.booleans())
def test_fuzz_from_scratch(workdir, doc, as_text):
    if as_text:
        _through_text(doc, workdir, "scratch")
    else:
        outcome(lambda: parse(doc), SRC)


_JUNK = [b"", b"[", b"]]", b"[[memdev]]", b"x = ", b"name = 1", b"= 1", b"\x00", b"\xff\xfe", b'"\\u0000"',
         b"a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q = 1", b"x = " + b"[" * 600 + b"]" * 600, b"x = 1979-02-30",
         b"x = 9" + b"9" * 5000, b"ram = \"16E\"", b"size = 0x" + b"f" * 40, b"[window.when]",
         "naïve = \"ü\"".encode(), b"\r\n", b"x = inf", b"y = nan", b"[[switch.downstream]]"]


@settings(FUZZ, max_examples=100 * SCALE)
@given(st.sampled_from(MUTANT_BASES[:-1]), st.data())
def test_fuzz_mangled_text(workdir, name, data):
    """The fixtures' text with lines dropped, repeated, cut or junk put in (duplicate keys and
    tables, bad bytes, deep nesting, huge numbers); large-2t's only in the structured mutations
    (each of its boots is 16384 blocks)."""
    lines = (FIXTURES / f"{name}.toml").read_bytes().split(b"\n")
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["drop", "repeat", "cut", "junk", "digits"]))
        if op == "drop":
            del lines[i]
        elif op == "repeat":
            lines.insert(i, lines[i])
        elif op == "cut":
            lines[i] = lines[i][:data.draw(st.integers(0, max(0, len(lines[i]))))]
        elif op == "junk":
            lines.insert(i, data.draw(st.sampled_from(_JUNK)))
        else:
            lines[i] = re.sub(rb"\d+", data.draw(st.sampled_from([b"0", b"99999999999999999999", b"-1",
                                                                   b"18446744073709551616"])), lines[i], count=1)
    p = workdir / "mangled.toml"
    p.write_bytes(b"\n".join(lines))
    outcome(lambda: load_topology(str(p)), str(p))
