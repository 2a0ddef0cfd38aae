"""``cxlsys generate``: every generated topology loads, boots as its spec says and is consistent."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from cxlsys.cxl.core.memdev import CxlMemdev
from cxlsys.cxl.core.port import CxlPort, CxlRootDecoder
from cxlsys.cxl.core.region import CxlRegion
from cxlsys.cxl.core.region_state import COMMIT
from cxlsys.invariants import check_invariants
from cxlsys.system import System
from cxlsys.topology import parse_topology
from cxlsys.topology.generate import GenerateError, GenSpec, generate

G = 1 << 30


def _boot(spec: GenSpec, tmp_path) -> System:
    f = tmp_path / "gen.toml"
    f.write_text(generate(spec))
    return System.boot(str(f))


def _count(s: System, cls) -> int:
    return sum(isinstance(d, cls) for d in s.cxl_bus.devices)


@pytest.mark.parametrize("spec, memdevs, switches, windows, regions", [
    (GenSpec(), 2, 0, 1, 0),
    (GenSpec(host_bridges=2, root_ports=2, switch_ports=4, auto_region=4), 16, 4, 2, 1),
    (GenSpec(host_bridges=4, root_ports=1, interleave=True, pmem=G), 4, 0, 1 + 4 * 2, 0),
    (GenSpec(host_bridges=3, root_ports=4, switch_ports=8, memdevs=37), 37, 5, 2, 0),    # 32 + 5: 2 used
    (GenSpec(root_ports=8, auto_region=8, ram=2 * G), 8, 0, 1, 1),
    (GenSpec(host_bridges=2, root_ports=2, switch_ports=4, auto_region=2, auto_regions="every"), 16, 4, 2, 8),
    (GenSpec(host_bridges=2, root_ports=4, auto_region=2, auto_regions="every", interleave=True), 8, 0, 3, 4),
], ids=["default", "switches+auto4", "interleave+pmem", "capped", "hb-x8-auto", "every-below-switches",
        "every-across-root-ports"])
def test_generated_topologies_boot_as_specified(spec, memdevs, switches, windows, regions, tmp_path):
    s = _boot(spec, tmp_path)
    assert _count(s, CxlMemdev) == memdevs
    ports = [d for d in s.cxl_bus.devices if isinstance(d, CxlPort)]
    assert sum(p.name.startswith("endpoint") for p in ports) == memdevs
    assert sum(p.kind == "port" and p.depth == 2 for p in ports) == switches      # depth 1: host bridges
    assert _count(s, CxlRootDecoder) == windows
    live = [r for r in s.cxl_bus.devices if isinstance(r, CxlRegion)]
    assert len(live) == regions
    for r in live:
        assert r.nr_targets == spec.auto_region and r.hpa_size == spec.auto_region * spec.ram
        assert r.state == COMMIT and r.driver is not None      # assembled at boot and bound, as BIOS left it
    assert len(s.memory.blocks) == regions * spec.auto_region * spec.ram // spec.block_size   # kmem added them
    assert check_invariants(s) == []


def test_scale_1024_memdevs_all_memory_in_regions_65536_blocks():
    """The scale the benchmarks use: 1 024 memdevs below 16 switches, 128 firmware regions of 8 ways
    (each host bridge commits 16 decoders, each switch 8), whose kmem devices add 65 536 blocks."""
    spec = GenSpec(host_bridges=8, root_ports=2, switch_ports=64, ram=8 * G, auto_region=8, auto_regions="every")
    t = parse_topology(tomllib.loads(generate(spec)), "gen")
    assert len(t.memdevs) == 1024 and len(t.switches) == 16 and len(t.auto_regions) == 128
    assert sum(w.size for w in t.windows) // (128 << 20) == 65536
    s = System.boot(t)
    assert _count(s, CxlMemdev) == 1024 and len(s.memory.blocks) == 65536
    assert check_invariants(s) == []


@pytest.mark.parametrize("spec, opt", [
    (GenSpec(host_bridges=0), "--host-bridges"),
    (GenSpec(root_ports=200, switch_ports=2), "--root-ports"),      # buses of one PCI domain
    (GenSpec(ram=100 << 20), "--ram"),
    (GenSpec(host_bridges=5, interleave=True), "--interleave"),
    (GenSpec(auto_region=4), "--auto-region"),                      # 2 root ports only
    (GenSpec(root_ports=4, memdevs=2, auto_region=4), "--auto-region"),
])
def test_impossible_specs_are_one_line_naming_the_option(spec, opt):
    with pytest.raises(GenerateError) as e:
        generate(spec)
    assert str(e.value).startswith(f"{opt}: ") and "\n" not in str(e.value)


def test_cli_writes_a_file_the_tools_take(tmp_path):
    out = tmp_path / "t.toml"
    r = subprocess.run([sys.executable, "-m", "cxlsys", "generate", "--host-bridges", "2", "--switch-ports", "2",
                        "--auto-region", "2", "-o", str(out)], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "8 memdevs" in r.stderr
    r = subprocess.run([sys.executable, "-m", "cxlsys", "tree", "-t", str(out)], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0 and "region0" in r.stdout
    r = subprocess.run([sys.executable, "-m", "cxlsys", "generate", "--ram", "lots"], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 2 and r.stderr.startswith("cxlsys generate: --ram: ") and "Traceback" not in r.stderr
