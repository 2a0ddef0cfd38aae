"""cxlsys.invariants: the whole-model checker.

(a) every shipped topology boots consistent; (b) realistic provisioning and teardown stay consistent
at every step; (c) each rule, planted broken by mutating one model object, is reported by name;
(d) the opt-in of cxlsys.testing checks after each operation and names the break.
"""

import errno
import time

import attrs
import pytest

from cxlsys.cxl import cxl as C
from cxlsys.cxl.core.region import CxlRegion
from cxlsys.cxl.core.region_state import ACTIVE, INTERLEAVE_ACTIVE
from cxlsys.hazards import HAZARDS, unexplained
from cxlsys.invariants import RULES, assert_invariants, check_invariants
from cxlsys.kernel.resource import Resource
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.testing import (
    assert_refused,
    cxl_read,
    cxl_write,
    dax_blocks,
    endpoint_decoders,
    invariant_checks,
    memdev,
    provision_ram_region,
    read_value,
    write_text,
)
from cxlsys.topology import FIXTURES

PRESETS = sorted(p.stem for p in FIXTURES.glob("*.toml"))
UUID = "11111111-2222-3333-4444-555555555555"
REGION = "bus/cxl/drivers/cxl_region"
KMEM = "bus/dax/drivers/kmem"
DEVDAX = "bus/dax/drivers/device_dax"
MEM = "devices/system/memory"


def consistent(s: System) -> None:
    out = check_invariants(s)
    assert out == [], "\n".join(out)


# ------------------------------------------------------------------------------ (a) fresh boots

@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_boots_consistent(preset):
    s = System.boot(preset)
    consistent(s)
    assert s.cxl_bus.devices, preset          # the checker saw a topology, not an empty machine


@pytest.mark.parametrize("params", [{"interleave_arithmetic": 1}])
def test_cxl_test_xor_windows_and_a_reload_are_consistent(params):
    s = System.boot("cxl_test", params=params)
    consistent(s)
    s.modprobe(["-r", "cxl_test"])
    consistent(s)
    assert not [d for d in s.cxl_bus.devices if isinstance(d, CxlRegion)]
    s.modprobe(["cxl_test"])
    consistent(s)
    assert cxl_read(Sysfs(s), "region0/commit") == "1"      # the firmware region is back


def test_check_is_fast_on_cxl_test():
    """The budget for running after every operation: well under 10 ms on cxl_test (measured with a
    provisioned region, the best of 20 runs, so that a busy CI core does not decide it)."""
    s = System.boot("cxl_test")
    provision_ram_region(Sysfs(s))
    best = min(_timed(check_invariants, s) for _ in range(20))
    assert best < 0.010, f"check_invariants took {best * 1000:.1f} ms"


def _timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


# ------------------------------------------------------------------------------ (b) sequences

def _free_decoder(s: System, md: str) -> str:
    return next(e.name for e in endpoint_decoders(memdev(s, md)) if e.dpa_start is None)


def provision_pmem_x4(fs: Sysfs, step) -> str:
    """A 4-way pmem region on decoder0.2 (host bridge 0 alone): mem0, mem2, mem4, mem6 at positions
    0-3, so host bridge 0's decoder alternates its two switches and each switch its two endpoints."""
    s = fs.sys
    decs = [_free_decoder(s, m) for m in ("mem0", "mem2", "mem4", "mem6")]
    for e in decs:
        step(f"{e}/mode", "pmem")
        step(f"{e}/dpa_size", hex(256 << 20))
    r = cxl_read(fs, "decoder0.2/create_pmem_region")
    step("decoder0.2/create_pmem_region", r)
    step(f"{r}/uuid", UUID)
    step(f"{r}/interleave_granularity", 4096)
    step(f"{r}/interleave_ways", 4)
    step(f"{r}/size", hex(1 << 30))
    for i, e in enumerate(decs):
        step(f"{r}/target{i}", e)
    step(f"{r}/commit", 1)
    return r


class Steps:
    """Each operation followed by a full check; counts them."""

    def __init__(self, fs: Sysfs):
        self.fs, self.n = fs, 0

    def check(self) -> None:
        consistent(self.fs.sys)
        self.n += 1

    def __call__(self, path: str, value) -> None:
        cxl_write(self.fs, path, value)
        self.check()

    def raw(self, path: str, value) -> None:
        write_text(self.fs, path, value)
        self.check()


def test_provision_commit_bind_online_and_teardown_stay_consistent():
    s = System.boot("cxl_test")
    fs = Sysfs(s)
    step = Steps(fs)
    step.check()
    # a 2-way ram region through both host bridges, bound: dax_region1, dax1.0 on kmem
    ram, dax = provision_ram_region(fs)
    step.check()
    # memory onlined through kmem, block by block as daxctl does
    blocks = dax_blocks(fs, dax)
    assert len(blocks) == 8
    for b in blocks:
        step.raw(f"{MEM}/{b}/state", "online_movable")
    assert read_value(fs, f"{MEM}/{blocks[0]}/valid_zones") == "Movable"
    # a refused store in between changes nothing and breaks nothing
    assert_refused(fs, f"bus/cxl/devices/{ram}/size", "0", errno.EBUSY, unchanged=fs.snapshot)
    step.check()
    # a 4-way pmem region beside it, committed and bound (pmem_region, nvdimm region)
    pmem = provision_pmem_x4(fs, step)
    step.raw(f"{REGION}/bind", pmem)
    # the firmware region's dax device moved to device_dax (its iomem claims)
    step.raw(f"{KMEM}/unbind", "dax0.0")
    step.raw(f"{DEVDAX}/new_id", "dax0.0")
    assert fs.realpath("bus/dax/devices/dax0.0/driver") == DEVDAX
    # teardown, the way an admin undoes it
    for b in blocks:
        step.raw(f"{MEM}/{b}/state", "offline")
    step.raw(f"{KMEM}/unbind", dax)
    assert not any(b.nid == 0 and b.owner is not None and b.start >= s.cxl_bus.find_device(ram).hpa_start
                   for b in s.memory.blocks.values() if b.online)
    for r in (pmem, ram):              # DPA goes back newest first: mem2's pmem decoder before its ram one
        step.raw(f"{REGION}/unbind", r)
        step(f"{r}/commit", 0)
        for i in range(int(cxl_read(fs, f"{r}/interleave_ways")) - 1, -1, -1):
            dec = cxl_read(fs, f"{r}/target{i}")
            step(f"{r}/target{i}", "")
            step(f"{dec}/dpa_size", 0)
        step(f"{r}/size", 0)
    step("decoder0.1/delete_region", ram)
    step("decoder0.2/delete_region", pmem)
    # unload and load the topology
    s.modprobe(["-r", "cxl_test"])
    step.check()
    s.modprobe(["cxl_test"])
    step.check()
    assert step.n > 60


def test_auto_region_teardown_and_reassembly_stay_consistent():
    """The firmware-committed region: decommitted, its targets dropped and re-probed."""
    s = System.boot("cxl_test")
    fs = Sysfs(s)
    step = Steps(fs)
    step.raw(f"{KMEM}/unbind", "dax0.0")
    step.raw(f"{REGION}/unbind", "region0")
    step("region0/commit", 0)
    step("region0/target1", "")
    step("region0/target0", "")
    step("decoder0.0/delete_region", "region0")
    assert not [d for d in s.cxl_bus.devices if isinstance(d, CxlRegion)]
    # unbinding and rebinding an endpoint's memdev re-enumerates its decoders
    step.raw("bus/cxl/drivers/cxl_mem/unbind", "mem0")
    step.raw("bus/cxl/drivers/cxl_mem/bind", "mem0")
    step.raw("bus/cxl/flush", 1)
    assert step.n >= 8


# ------------------------------------------------------------------------------ (c) planted breaks

def rich() -> System:
    """cxl_test with most of what the checker looks at: region0 (firmware, ram) with dax0.0 on
    device_dax; region1 (2-way ram) bound, dax1.0 on kmem with its blocks online; region2 (4-way
    pmem on host bridge 0) committed; region3 an idle ram region on decoder0.1."""
    s = System.boot("cxl_test")
    fs = Sysfs(s)
    _, dax = provision_ram_region(fs)
    for b in dax_blocks(fs, dax):
        write_text(fs, f"{MEM}/{b}/state", "online_movable")
    provision_pmem_x4(fs, lambda p, v: cxl_write(fs, p, v))
    write_text(fs, f"{KMEM}/unbind", "dax0.0")
    write_text(fs, f"{DEVDAX}/new_id", "dax0.0")
    r = cxl_read(fs, "decoder0.1/create_ram_region")
    cxl_write(fs, "decoder0.1/create_ram_region", r)
    consistent(s)
    return s


def dev(s: System, name: str):
    for bus in s.buses.values():
        for d in bus.devices:
            if d.name == name:
                return d
    raise KeyError(name)


def region(s: System, n: int) -> CxlRegion:
    """The regions of :func:`rich` by role: 0 the firmware one, 1 the 2-way ram one, 2 the 4-way pmem
    one, 3 the idle one (their names are memregion ids: region0, region1, region2, region7)."""
    root, idle = {0: ("decoder0.0", False), 1: ("decoder0.1", False), 2: ("decoder0.2", False),
                  3: ("decoder0.1", True)}[n]
    return next(r for r in dev(s, root).children.values()
                if isinstance(r, CxlRegion) and (r.hpa_start is None) == idle)


def hpa(s: System, n: int) -> int:
    start = region(s, n).hpa_start
    assert start is not None
    return start


def _drop_last_target(s: System) -> None:
    r = region(s, 2)
    r.targets[3] = None
    r.nr_targets = 3


def hb_decoder(s: System, n: int, port: str = "port1"):
    """The decoder host bridge 0 (port1) gives region ``n``."""
    return dev(s, port).regions[region(s, n)].decoder


def block_of(s: System, dax: str):
    return next(b for b in s.memory.blocks.values() if getattr(b.owner, "name", None) == dax)


def _set(obj, **kw) -> None:
    for k, v in kw.items():
        setattr(obj, k, v)


def _swap_positions(s: System, n: int, a: int, b: int) -> None:
    r = region(s, n)
    r.targets[a], r.targets[b] = r.targets[b], r.targets[a]
    r.targets[a].pos, r.targets[b].pos = a, b


def _enable_out_of_order(s: System) -> None:
    """endpoint5: decoder5.0 reset and decoder5.1 committed (registers too), commit_end 1."""
    d0, d1 = dev(s, "decoder5.0"), dev(s, "decoder5.1")
    cap = dev(s, "endpoint5").hdm
    d0.flags &= ~C.CXL_DECODER_F_ENABLE
    cap.reg(0).committed = False
    d1.flags |= C.CXL_DECODER_F_ENABLE
    r = cap.reg(1)
    r.committed, r.base, r.size, r.ways, r.granularity, r.skip = (True, d1.hpa_start, d1.hpa_size, d1.interleave_ways,
                                                                  d1.interleave_granularity, d1.skip)
    dev(s, "endpoint5").commit_end = 1


def _sysram_v4() -> System:
    """qemu-hdm-db under private nodes v4: cxl_mempolicy takes the first device, its sysram_region0
    hot-adds the region as private memory."""
    s = System.boot("qemu-hdm-db", kernel="7.3+private-nodes-v4")
    fs = Sysfs(s)
    write_text(fs, "bus/pci/drivers/cxl_pci/unbind", "0000:0f:00.0")
    write_text(fs, "bus/pci/drivers/cxl_mempolicy/bind", "0000:0f:00.0")
    assert dev(s, "sysram_region0").added
    consistent(s)
    return s


def _qemu() -> System:
    s = System.boot("qemu-hdm-db")
    consistent(s)
    return s


def _bi() -> System:
    s = System.boot("bi-direct")
    assert any(getattr(m, "bi_id", None) is not None for m in s.cxl_bus.devices)
    consistent(s)
    return s


def _v611() -> System:
    s = System.boot("cxl_test", kernel="6.11")
    fs = Sysfs(s)
    d = _free_decoder(s, "mem0")
    cxl_write(fs, f"{d}/mode", "pmem")
    cxl_write(fs, f"{d}/dpa_size", hex(256 << 20))
    consistent(s)
    return s


BS = 128 << 20

# rule -> (what is planted, the system to plant it in, the mutation): each case breaks one object
PLANTS = [
    ("tree.child", "a child listed under another name",
     rich, lambda s: dev(s, "port1").children.__setitem__("decoderX", dev(s, "decoder1.0"))),
    ("tree.top", "a top-level device listed twice",
     rich, lambda s: s.top_devices.__setitem__("platform2", s.top_devices["platform"])),
    ("tree.bus", "a memdev missing from /sys/bus/cxl/devices",
     rich, lambda s: s.cxl_bus.devices.remove(dev(s, "mem9"))),
    ("tree.name", "a device twice on its bus",
     rich, lambda s: s.cxl_bus.devices.append(dev(s, "mem9"))),
    ("tree.driver", "a memdev bound to the kmem driver",
     rich, lambda s: _set(dev(s, "mem9"), driver=s.dax_bus.drivers["kmem"])),
    ("ids.port", "a port id allocated for nobody",
     rich, lambda s: s.cxl_port_ida.used.add(99)),
    ("ids.memdev", "a live memdev's id free in the IDA",
     rich, lambda s: s.cxl_memdev_ida.used.discard(9)),
    ("ids.memregion", "a memregion id leaked",
     rich, lambda s: s.memregion_ida.used.add(42)),
    ("ids.dax_minor", "a dax minor leaked",
     rich, lambda s: s.dax_minor_ida.used.add(77)),
    ("ids.nvdimm_bridge", "the bridge's id freed",
     rich, lambda s: s.nvdimm_bridge_ida.used.clear()),
    ("ids.bi", "a BI-ID leaked",
     _bi, lambda s: s.bi_id_ida.used.add(5)),
    ("ids.nd", "an nmem id freed",
     rich, lambda s: s.buses["nd"].dimm_ida.used.discard(0)),
    ("ids.decoder", "a decoder id allocated on a port for no decoder",
     rich, lambda s: dev(s, "endpoint17").decoder_ida_used.add(11)),
    ("ids.region", "a region whose id is not its name's",
     rich, lambda s: _set(region(s, 3), id=region(s, 3).id + 1)),
    ("ids.dax", "a dax device id allocated in its region for none",
     rich, lambda s: dev(s, "dax_region1").dax_region.dev_ida.add(4)),
    ("dpa.partitions", "pmem no longer right after ram",
     rich, lambda s: _set(dev(s, "mem0").mds.pmem_res, start=(1 << 30) + (256 << 20))),
    ("dpa.order", "hdm_end one past the allocated decoders",
     rich, lambda s: _set(dev(s, "endpoint14"), hdm_end=1)),
    ("dpa.stacked", "a skip in front of DPA 0",
     rich, lambda s: _set(dev(s, "decoder9.0"), skip=256 << 20)),
    ("dpa.size", "a 128 MiB allocation",
     rich, lambda s: _set(dev(s, "decoder14.0"), dpa_size=128 << 20)),
    ("dpa.capacity", "an allocation past the device's end",
     rich, lambda s: _set(dev(s, "decoder14.0"), dpa_size=2 << 30)),
    ("dpa.mode", "a ram allocation in the pmem partition",
     rich, lambda s: _set(dev(s, "decoder14.0"), mode=C.MODE_RAM)),
    ("dpa.free", "a size on a decoder without DPA",
     rich, lambda s: _set(dev(s, "decoder17.0"), dpa_size=256 << 20)),
    ("commit.end", "decoders_committed past the enabled decoders",
     rich, lambda s: _set(dev(s, "endpoint5"), commit_end=3)),
    ("commit.order", "decoder5.1 committed, decoder5.0 reset (6.11 refuses out-of-order reset)",
     _v611, _enable_out_of_order),
    ("commit.regs", "an enabled decoder whose registers are not committed",
     rich, lambda s: _set(dev(s, "endpoint9").hdm.reg(0), committed=False)),
    ("commit.regs", "registers programmed with another size",
     rich, lambda s: _set(dev(s, "port4").hdm.reg(0), size=256 << 20)),
    ("commit.passthrough", "a passthrough host bridge with committed decoders",
     rich, lambda s: _set(dev(s, "port1"), hdm=attrs.evolve(dev(s, "port1").hdm, count=0))),
    ("commit.dpa", "an enabled endpoint decoder with half its DPA",
     rich, lambda s: _set(dev(s, "decoder14.0"), dpa_size=128 << 20)),
    ("commit.orphan", "an enabled decoder that lost its region",
     rich, lambda s: _set(dev(s, "decoder9.0"), region=None)),
    ("hpa.windows", "two overlapping windows",
     rich, lambda s: _set(dev(s, "decoder0.5"), hpa_start=dev(s, "decoder0.4").hpa_start)),
    ("hpa.state", "an idle region with HPA",
     rich, lambda s: _set(region(s, 3), hpa_start=dev(s, "decoder0.1").hpa_start + (1 << 30), hpa_size=512 << 20)),
    ("hpa.window", "a region moved past its window",
     rich, lambda s: _set(region(s, 1), hpa_start=dev(s, "decoder0.1").hpa_start + (2 << 30))),
    ("hpa.align", "a region 4 KiB off 256 MiB alignment",
     rich, lambda s: _set(region(s, 1), hpa_start=hpa(s, 1) + 4096)),
    ("hpa.disjoint", "two regions on the same HPA",
     rich, lambda s: _set(region(s, 3), hpa_start=hpa(s, 1), hpa_size=512 << 20,
                          state=INTERLEAVE_ACTIVE, interleave_ways=2, interleave_granularity=4096)),
    ("iomem.disjoint", "a claim over another",
     rich, lambda s: s.memory.iomem.busy.append(Resource(hpa(s, 1), hpa(s, 1) + 4095, "overlap"))),
    ("iomem.owner", "a claim outside every region",
     rich, lambda s: s.memory.iomem.busy.append(Resource(0x100000, 0x1fffff, "stray"))),
    ("iomem.holder", "a claim in a dax device's name that nobody holds",
     rich, lambda s: s.memory.iomem.request_region(hpa(s, 2), 2 << 20, "dax1.0")),
    ("iomem.holder", "a device_dax claim dropped from the tree",
     rich, lambda s: s.memory.iomem.busy.remove(dev(s, "dax0.0").iomem[0])),
    ("region.parent", "a region claiming another root decoder",
     rich, lambda s: _set(region(s, 3), root=dev(s, "decoder0.0"))),
    ("region.mode", "a ram window's region in pmem mode",
     rich, lambda s: _set(region(s, 3), mode=C.MODE_PMEM)),
    ("region.geometry", "3 ways on a 2-way window",
     rich, lambda s: _set(region(s, 3), interleave_ways=3)),
    ("region.targets", "nr_targets off by one",
     rich, lambda s: _set(region(s, 1), nr_targets=1)),
    ("region.target", "a target that forgot its position",
     rich, lambda s: _set(dev(s, "decoder9.0"), pos=5)),
    ("region.state", "a committed region missing a position",
     rich, _drop_last_target),
    ("region.position", "the two host bridges' targets swapped",
     rich, lambda s: _swap_positions(s, 1, 0, 1)),
    ("region.commit", "a committed region with a host-bridge decoder not enabled",
     rich, lambda s: _set(hb_decoder(s, 1), flags=hb_decoder(s, 1).flags & ~C.CXL_DECODER_F_ENABLE)),
    ("region.decoders", "an active region whose decoders are enabled",
     rich, lambda s: _set(region(s, 2), state=ACTIVE)),
    ("region.refs", "a host bridge forgetting its region reference",
     rich, lambda s: dev(s, "port1").regions.pop(region(s, 1))),
    ("region.driver", "a bound region no longer committed",
     rich, lambda s: _set(region(s, 1), needs_reset=True)),
    ("switch.targets", "a host-bridge decoder targeting the wrong dport",
     rich, lambda s: hb_decoder(s, 1).targets.__setitem__(0, dev(s, "port1").dports[0])),
    ("switch.geometry", "a host-bridge decoder with the wrong granularity",
     rich, lambda s: _set(hb_decoder(s, 2), interleave_granularity=16384)),
    ("switch.interleave", "positions 2 and 3 of the 4-way region swapped",
     rich, lambda s: _swap_positions(s, 2, 2, 3)),
    ("mem.block", "a block its node does not list",
     rich, lambda s: s.memory.nodes[0].blocks.pop(block_of(s, "dax1.0").phys_index)),
    ("mem.zone", "an online block missing from its zone",
     rich, lambda s: s.memory.nodes[0].zones["Movable"].online.remove(block_of(s, "dax1.0").phys_index)),
    ("mem.zone_pages", "a zone's present bytes off by a block",
     rich, lambda s: _set(s.memory.nodes[0].zones["Movable"], present=s.memory.nodes[0].zones["Movable"].present + BS)),
    ("mem.group", "a memory group counting a block it does not have",
     rich, lambda s: _set(block_of(s, "dax1.0").group, blocks=block_of(s, "dax1.0").group.blocks + 1)),
    ("mem.group", "a memory group nobody holds",
     rich, lambda s: s.memory.register_static_group(0, BS // 4096)),
    ("mem.owner", "a block owned by nobody",
     rich, lambda s: _set(block_of(s, "dax1.0"), owner=None)),
    ("mem.kmem", "kmem's range released while its blocks stay",
     rich, lambda s: _set(dev(s, "dax1.0").drvdata.ranges[0], res=None)),
    ("mem.sysram", "a sysram that says it added nothing",
     _sysram_v4, lambda s: _set(dev(s, "sysram_region0"), added=False)),
    ("mem.meminfo", "a node's boot memory off by a page",
     rich, lambda s: _set(s.nodes[0], boot_memory=s.nodes[0].boot_memory + 4096)),
    ("mem.tiers", "a memory tier listing a node without memory",
     rich, lambda s: next(iter(s.memory.tiers.type_nodes.values())).add(7)),
    ("node.online", "a registered node marked offline",
     rich, lambda s: _set(s.nodes[0], online=False)),
    ("node.mask", "N_MEMORY on a node without memory",
     _qemu, lambda s: _set(s.memory.nodes[1].zones["Movable"], present=BS)),
    ("dax.region", "a dax device its region does not list",
     rich, lambda s: dev(s, "dax1.0").region.devs.clear()),
    ("dax.ranges", "a dax range before its region",
     rich, lambda s: _set(dev(s, "dax0.0"), ranges=[(hpa(s, 0) - (2 << 20), region(s, 0).hpa_size, 0)])),
    ("dax.align", "a dax range not a multiple of the device's align",
     rich, lambda s: _set(dev(s, "dax0.0"), align=1 << 30)),
    ("dax.mappings", "a mapping directory gone",
     rich, lambda s: dev(s, "dax1.0").children.pop("mapping0")),
    ("dax.bound", "a bound dax device without size",
     rich, lambda s: _set(dev(s, "dax1.0"), ranges=[])),
    ("dax.seed", "the seed is a bound device",
     rich, lambda s: _set(dev(s, "dax1.0").region, seed=dev(s, "dax1.0"))),
]


def test_every_rule_has_a_planted_break():
    assert {rule for rule, *_ in PLANTS} == set(RULES)


@pytest.mark.parametrize("rule, what, make, plant", PLANTS, ids=[f"{p[0]}:{p[1]}" for p in PLANTS])
def test_planted_break_is_reported(rule, what, make, plant):
    s = make()
    plant(s)
    out = check_invariants(s)
    assert any(f": {rule}: " in line for line in out), f"{what}: {rule} not reported; got {out}"
    with pytest.raises(AssertionError, match=rule.replace(".", r"\.")):
        assert_invariants(s)


def test_lines_name_object_and_rule():
    s = rich()
    _set(dev(s, "endpoint5"), commit_end=3)
    assert check_invariants(s) == ["endpoint5: commit.end: commit_end 3 (decoders_committed 4) but the highest "
                                   "enabled decoder is 1"]


def test_the_check_changes_nothing():
    s = rich()
    fs = Sysfs(s)
    before = fs.snapshot()
    gens = (s.changes.gen, s.changes.value_gen)
    for _ in range(3):
        consistent(s)
    assert (s.changes.gen, s.changes.value_gen) == gens       # no device field was even assigned
    assert fs.snapshot() == before


# ------------------------------------------------------------------------------ (d) the testing opt-in

@pytest.mark.no_invariants
def test_helpers_check_after_each_operation():
    s = System.boot("cxl_test")
    fs = Sysfs(s)
    s.cxl_port_ida.used.add(99)                      # broken before: nothing checks outside the block
    cxl_write(fs, "decoder9.0/mode", "ram")
    with invariant_checks():
        with pytest.raises(AssertionError, match=r"cxl_port_ida: ids\.port: ids \[99\]"):
            cxl_write(fs, "decoder9.0/mode", "pmem")
        # a refused store is checked too, and the AssertionError wins over the errno
        with pytest.raises(AssertionError, match=r"ids\.port"):
            assert_refused(fs, "bus/cxl/devices/decoder9.0/mode", "bogus", errno.EINVAL)
        with pytest.raises(AssertionError, match=r"ids\.port"):
            provision_ram_region(fs)
        s.cxl_port_ida.used.discard(99)
        assert cxl_write(fs, "decoder9.0/mode", "ram") == 4
        fs.write("bus/cxl/devices/decoder9.0/mode", b"pmem")     # a raw write: not the helpers' business
        s.cxl_port_ida.used.add(99)
        fs.write("bus/cxl/devices/decoder9.0/mode", b"ram")


@pytest.mark.no_invariants
def test_every_write_scope_wraps_any_write_and_unwraps_after():
    s = System.boot("cxl_test")
    fs = Sysfs(s)
    write = Sysfs.write
    with invariant_checks("every_write"):
        assert Sysfs.write is not write
        fs.write("bus/cxl/devices/decoder9.0/mode", b"pmem")
        s.memregion_ida.used.add(42)
        with pytest.raises(AssertionError, match=r"ids\.memregion"):
            fs.write("bus/cxl/devices/decoder9.0/mode", b"ram")
        with pytest.raises(AssertionError, match=r"ids\.memregion"):
            s.modprobe(["-r", "cxl_test"])
    assert Sysfs.write is write
    assert fs.write("bus/cxl/flush", b"1") == 1               # unwrapped: the break goes unnoticed


@pytest.mark.no_invariants
def test_end_scope_checks_touched_systems_once_at_the_end():
    s = System.boot("cxl_test")
    fs = Sysfs(s)
    with pytest.raises(AssertionError, match=r"ids\.dax_minor"):
        with invariant_checks("end"):
            fs.write("bus/cxl/devices/decoder9.0/mode", b"pmem")
            s.dax_minor_ida.used.add(77)                # no check yet: only when the block ends
            fs.write("bus/cxl/devices/decoder9.0/mode", b"ram")
    s.dax_minor_ida.used.discard(77)
    with invariant_checks("end"):
        fs.write("bus/cxl/devices/decoder9.0/mode", b"pmem")
    with pytest.raises(ValueError):
        with invariant_checks("sometimes"):
            pass


# ------------------------------------------------------------------------------ (e) what it found
# Sequences of plain sysfs writes, each accepted as Linux 6.12 accepts it, that leave the kernel's
# own state inconsistent.  The model reproduces them; the write that opens one notes a kernel hazard
# (cxlsys/hazards.py: system.hazards and a kernel log line), and the checker still names what breaks
# afterwards.  Marked kernel_hazard: the autouse check runs until the hazard, not after.

def _hazards(s: System) -> list:
    return [t.hazard.name for t in s.hazards]


def test_every_hazard_names_rules_the_checker_has():
    assert HAZARDS and all(h.rules and set(h.rules) <= set(RULES) for h in HAZARDS.values())


def test_a_hazard_fails_the_autouse_check_unless_the_test_says_so():
    """A test not marked kernel_hazard that reproduces one fails at that write, naming it."""
    s = System.boot("cxl_test")
    fs = Sysfs(s)
    decs = _ram_decoders(s, fs, ("mem2", "mem3"), 256 << 20)
    r = _ram_region(fs, 2, 512 << 20)
    cxl_write(fs, f"{r}/target0", decs[0])
    with pytest.raises(AssertionError, match=r"(?s)kernel hazard.*free-hpa-with-targets: region\d+: size 0 with 1"):
        cxl_write(fs, f"{r}/size", 0)
    assert _hazards(s) == ["free-hpa-with-targets"]
    assert "cxlsys: kernel hazard free-hpa-with-targets" in "\n".join(s.klog.lines())

def _ram_decoders(s: System, fs: Sysfs, mds, size: int) -> list:
    decs = [_free_decoder(s, m) for m in mds]
    for e in decs:
        cxl_write(fs, f"{e}/mode", "ram")
        cxl_write(fs, f"{e}/dpa_size", hex(size))
    return decs


def _ram_region(fs: Sysfs, ways: int, size: int) -> str:
    r = cxl_read(fs, "decoder0.1/create_ram_region")
    cxl_write(fs, "decoder0.1/create_ram_region", r)
    cxl_write(fs, f"{r}/interleave_granularity", 4096)
    cxl_write(fs, f"{r}/interleave_ways", ways)
    cxl_write(fs, f"{r}/size", hex(size))
    return r


@pytest.mark.kernel_hazard
def test_found_hpa_freed_under_an_attached_target_commits_a_stale_decoder():
    """size 0 frees the HPA below ACTIVE even with a target attached (free_hpa()); a new, larger
    size and the last target make the region ACTIVE: the early target keeps the old range and its
    DPA no longer covers the region, and commit programs its decoder with the old size."""
    s = System.boot("cxl_test")
    fs = Sysfs(s)
    big, small = _ram_decoders(s, fs, ("mem2",), 512 << 20) + _ram_decoders(s, fs, ("mem3",), 256 << 20)
    r = _ram_region(fs, 2, 512 << 20)
    cxl_write(fs, f"{r}/target1", small)
    consistent(s)
    cxl_write(fs, f"{r}/size", 0)
    assert _hazards(s) == ["free-hpa-with-targets"]
    cxl_write(fs, f"{r}/size", hex(1 << 30))
    cxl_write(fs, f"{r}/target0", big)
    cxl_write(fs, f"{r}/commit", 1)
    out = check_invariants(s)
    assert any(line.startswith(f"{small}: region.target: ") for line in out), out
    assert any(line.startswith(f"{small}: region.commit: committed for ") for line in out), out
    assert unexplained(s, out) == []                # what breaks is what the hazard names


@pytest.mark.kernel_hazard
def test_found_interleave_ways_shrunk_under_attached_targets_leaves_dangling_decoders():
    """interleave_ways is writable while IDLE, targets attached or not: positions 2 and 3 end up
    beyond the ways, and deleting the region detaches only positions below the ways
    (unregister_region()): their decoders and ports keep pointing at the deleted region."""
    s = System.boot("cxl_test")
    fs = Sysfs(s)
    decs = _ram_decoders(s, fs, ("mem2", "mem3", "mem6", "mem7"), 256 << 20)
    r = _ram_region(fs, 4, 1 << 30)
    cxl_write(fs, f"{r}/target2", decs[2])
    cxl_write(fs, f"{r}/target3", decs[3])
    cxl_write(fs, f"{r}/size", 0)
    assert _hazards(s) == ["free-hpa-with-targets"]
    cxl_write(fs, f"{r}/interleave_ways", 2)
    assert check_invariants(s) == [f"{r}: region.targets: targets at positions [2, 3], beyond interleave_ways 2"]
    cxl_write(fs, "decoder0.1/delete_region", r)
    out = check_invariants(s)
    assert f"{decs[2]}: region.refs: in {r}, which is not registered" in out, out
    assert unexplained(s, out) == []
    assert_refused(fs, f"bus/cxl/devices/{decs[2]}/dpa_size", "0", errno.EBUSY)     # stuck for good


@pytest.mark.kernel_hazard
def test_found_detaching_a_firmware_committed_target_of_an_incomplete_auto_region():
    """With autoprobe off, probing one memdev then the root assembles cxl_test's auto region with one
    of its two targets (INTERLEAVE_ACTIVE).  Detaching it does no decode reset (only a region above
    ACTIVE gets one): the decoder stays enabled with firmware's programming while its HPA range is
    cleared -- 6.12's cxl_region_detach()."""
    s = System.boot("cxl_test")
    fs = Sysfs(s)
    write_text(fs, "bus/platform/drivers_autoprobe", 0)
    s.modprobe(["-r", "cxl_test"])
    s.modprobe(["cxl_test"])
    write_text(fs, "bus/platform/drivers_probe", "cxl_mem.0")
    write_text(fs, "bus/platform/drivers_probe", "cxl_acpi.0")
    auto = [r for r in s.cxl_bus.devices if isinstance(r, CxlRegion)]
    assert len(auto) == 1 and auto[0].nr_targets == 1 and auto[0].state == INTERLEAVE_ACTIVE
    r, dec = auto[0], next(t for t in auto[0].targets if t is not None)
    assert check_invariants(s) == [] and not s.hazards
    cxl_write(fs, f"{r.name}/target{dec.pos}", "")
    assert _hazards(s) == ["detach-enabled-decoder"]
    assert read_value(fs, f"bus/cxl/devices/{dec.name}/size") == "0x0"
    out = check_invariants(s)
    assert any(line.startswith(f"{dec.name}: commit.regs: ") for line in out), out
    assert unexplained(s, out) == []


@pytest.mark.kernel_hazard
def test_after_a_hazard_the_rules_it_does_not_excuse_are_still_checked():
    s = System.boot("cxl_test")
    fs = Sysfs(s)
    decs = _ram_decoders(s, fs, ("mem2",), 256 << 20)
    r = _ram_region(fs, 2, 512 << 20)
    cxl_write(fs, f"{r}/target0", decs[0])
    cxl_write(fs, f"{r}/size", 0)
    assert _hazards(s) == ["free-hpa-with-targets"]
    s.memregion_ida.used.add(77)                    # ids.memregion: no hazard excuses it
    with pytest.raises(AssertionError, match=r"ids\.memregion"):
        cxl_write(fs, "decoder9.0/mode", "pmem")
    assert [line.split(": ")[1] for line in unexplained(s, check_invariants(s))] == ["ids.memregion"]
    s.memregion_ida.used.discard(77)


def _resized_and_bound(size: int, bind: str) -> tuple:
    """cxl_test with a ram region whose dax device is cut to ``size`` and bound again by a write of
    its name to ``bind``: (system, sysfs, dax name)."""
    s = System.boot("cxl_test")
    fs = Sysfs(s)
    _, dax = provision_ram_region(fs)
    write_text(fs, f"{KMEM}/unbind", dax)
    write_text(fs, f"bus/dax/devices/{dax}/size", size)
    write_text(fs, bind, dax)
    return s, fs, dax


def _map_after(fs: Sysfs, s: System, dax: str, size: int) -> None:
    """A ``mapping`` of ``size`` bytes right after the device's first range."""
    end = dev(s, dax).ranges[0][0] + dev(s, dax).ranges[0][1]
    write_text(fs, f"bus/dax/devices/{dax}/mapping", f"{end:x}-{end + size - 1:x}")


@pytest.mark.kernel_hazard
def test_mapping_added_to_a_kmem_device_stays_out_of_kmem_and_unbind_frees_the_group():
    """dax ``mapping`` has no bound check (as in the kernel): a hazard.  A range added while kmem
    holds the device is never hotplugged, kmem keeps the ranges it took at probe.  6.12's unbind
    loops to the device's nr_range: the late range has nothing to remove and counts as removed (the
    kernel then reads data->res[] past its end: said in the log), so the memory group goes."""
    s, fs, dax = _resized_and_bound(512 << 20, f"{KMEM}/bind")
    groups = dict(s.memory.groups)
    blocks = sum(1 for b in s.memory.blocks.values() if b.owner is dev(s, dax))
    _map_after(fs, s, dax, 128 << 20)
    assert len(dev(s, dax).ranges) == 2 and len(dev(s, dax).drvdata.ranges) == 1
    assert sum(1 for b in s.memory.blocks.values() if b.owner is dev(s, dax)) == blocks   # nothing hotplugged
    assert _hazards(s) == ["mapping-while-bound"] and check_invariants(s) == []
    for b in [b for b in s.memory.blocks.values() if b.owner is dev(s, dax)]:
        write_text(fs, f"devices/system/memory/memory{b.phys_index}/online", 0)
    write_text(fs, f"{KMEM}/unbind", dax)
    assert "1 range(s) mapped after probe were never hotplugged" in "\n".join(s.klog.lines())
    assert len(s.memory.groups) == len(groups) - 1
    assert check_invariants(s) == []


@pytest.mark.kernel_hazard
def test_found_mapping_added_to_a_device_dax_is_not_claimed():
    """The same store on a device_dax-bound device: device_dax claimed (and mapped) the ranges it had
    at probe; the new one is neither claimed in iomem nor in its pgmap."""
    s, fs, dax = _resized_and_bound(128 << 20, "bus/dax/drivers/device_dax/new_id")   # binds, as daxctl does
    _map_after(fs, s, dax, 2 << 20)
    assert _hazards(s) == ["mapping-while-bound"]
    out = check_invariants(s)
    assert [line.split(": ")[:2] for line in out] == [[dax, "dax.bound"]] and unexplained(s, out) == []


def test_a_range_smaller_than_a_memory_block_leaks_the_kmem_group_on_6_12():
    """A 2 MiB ``mapping`` next to a 128 MiB range: kmem hotplugs the first and skips the second
    (dax_kmem_range() finds no whole memory block).  6.12's unbind counts only removed ranges
    against nr_range, so the memory group stays registered with no blocks until reboot: leaked,
    said in the log, and consistent; v7.3 frees it."""
    for kernel, leaks in (("6.12", True), ("7.3", False)):
        s = System.boot("cxl_test", kernel=kernel)
        fs = Sysfs(s)
        d = "bus/dax/devices/dax0.0"
        write_text(fs, f"{KMEM}/unbind", "dax0.0")
        write_text(fs, f"{d}/size", 128 << 20)
        end = dev(s, "dax0.0").ranges[0][0] + (128 << 20)
        write_text(fs, f"{d}/mapping", f"{end:x}-{end + (2 << 20) - 1:x}")
        write_text(fs, f"{KMEM}/bind", "dax0.0")
        groups = set(s.memory.groups)
        write_text(fs, f"{KMEM}/unbind", "dax0.0")
        left = [g for g in s.memory.groups.values() if g.id in groups]
        assert [g.leaked for g in left] == ([True] if leaks else []), kernel
        assert ("left registered" in "\n".join(s.klog.lines())) == leaks
        assert check_invariants(s) == [] and not s.hazards


@pytest.mark.kernel_hazard
def test_found_a_reprobed_auto_decoder_builds_a_region_over_a_manual_one():
    """cxl_test's mock commits the auto region's endpoint decoder on every probe.  Delete the auto
    region, make a larger manual one at the same base, re-probe cxl_mem.0: no region has exactly
    firmware's range, so construct_region() builds one and insert_resource() nests it -- two
    regions on the same HPA."""
    s = System.boot("cxl_test")
    fs = Sysfs(s)
    cxl_write(fs, "decoder0.0/delete_region", "region0")
    r = cxl_read(fs, "decoder0.0/create_ram_region")
    cxl_write(fs, "decoder0.0/create_ram_region", r)
    cxl_write(fs, f"{r}/interleave_granularity", 4096)
    cxl_write(fs, f"{r}/interleave_ways", 1)
    cxl_write(fs, f"{r}/size", hex(1 << 30))
    write_text(fs, "bus/platform/drivers/cxl_mock_mem/unbind", "cxl_mem.0")
    assert not s.hazards
    write_text(fs, "bus/platform/drivers_probe", "cxl_mem.0")
    assert _hazards(s) == ["auto-region-overlaps"]
    out = check_invariants(s)
    assert any(f"{r}: hpa.disjoint: " in line for line in out), out
    assert unexplained(s, out) == []


@pytest.mark.kernel_hazard
def test_found_rebinding_an_auto_regions_endpoint_port_records_its_decoder_over_another():
    """Unbinding the endpoint port of the auto region's position-0 decoder detaches it (the region
    is decommitted: position 0 empty, one target left at position 1).  Binding the port again re-finds
    firmware's commit and cxl_region_attach_auto() records it at position nr_targets = 1, over the
    other target."""
    s = System.boot("cxl_test")
    fs = Sysfs(s)
    region = next(r for r in s.cxl_bus.devices if isinstance(r, CxlRegion))
    first, second = region.targets[0], region.targets[1]
    port = first.parent.name
    write_text(fs, "bus/cxl/drivers/cxl_port/unbind", port)
    assert region.targets[:2] == [None, second] and check_invariants(s) == []
    write_text(fs, "bus/cxl/drivers/cxl_port/bind", port)
    assert _hazards(s) == ["auto-attach-overwrites"]
    assert region.targets[1].name == first.name and second.region is region     # the overwritten one still points
    out = check_invariants(s)
    assert any(line.startswith(f"{region.name}: region.targets: ") for line in out), out
    assert unexplained(s, out) == []
