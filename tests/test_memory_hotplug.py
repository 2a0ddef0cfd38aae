"""Memory hotplug (drivers/base/memory.c, mm/memory_hotplug.c, drivers/base/node.c, mm/memory-tiers.c)
in-process: each policy combination against the block states and zones the kernel's rules give,
the zone-choice rules one by one, the run-time knobs, errno of every refused write, nodes and tiers."""

import errno
import itertools

import pytest
from hotplug_topo import HPA_BASE, GiB, MiB, boot

from cxlsys.base.node import nodelist
from cxlsys.errors import KernelError
from cxlsys.sysfs import Sysfs
from cxlsys.testing import read_text

MEM = "devices/system/memory"
NODE = "devices/system/node"
PARAMS = "module/memory_hotplug/parameters"
TIERS = "devices/virtual/memory_tiering"
BOOT_KB = 16 * GiB >> 10


def meminfo_total_kb(fs, nid) -> int:
    line = read_text(fs, f"{NODE}/node{nid}/meminfo").splitlines()[0]
    assert line.startswith(f"Node {nid} MemTotal:")
    return int(line.split()[3])


def blocks(s):
    return [s.memory.blocks[i] for i in sorted(s.memory.blocks)]


def expect_zone(auto, policy, node):
    """The zone every block of the 4 GiB region lands in at kmem probe, or None (offline)."""
    if auto == "offline":
        return None
    if auto == "online_kernel":
        return "Normal"
    if auto == "online_movable":
        return "Movable"
    if policy == "contig-zones":        # nothing on the node intersects: the kernel zone
        return "Normal"
    # auto-movable: all 4 GiB MOVABLE must fit 301% of the boot kernel memory, system-wide (16 GiB)
    # and, numa-aware, on the node itself: the CPU-less node has none
    return "Movable" if node == 0 else "Normal"


def expect_valid_zones_offline(policy, node):
    if policy == "auto-movable" and node == 0:
        return "Movable Normal"
    return "Normal Movable"


COMBOS = list(itertools.product(("offline", "online", "online_kernel", "online_movable"),
                                ("contig-zones", "auto-movable"), (False, True), ("128M", "2G")))


@pytest.mark.parametrize("node", [1, 0])
@pytest.mark.parametrize("auto,policy,memmap,bs", COMBOS)
def test_policy_combination(auto, policy, memmap, bs, node):
    s = boot(auto=auto, policy=policy, memmap=memmap, block_size=bs, window_node=node)
    fs = Sysfs(s)
    bsz = {"128M": 128 * MiB, "2G": 2 * GiB}[bs]
    bl = blocks(s)
    assert len(bl) == 4 * GiB // bsz
    assert [b.phys_index for b in bl] == list(range(HPA_BASE // bsz, (HPA_BASE + 4 * GiB) // bsz))
    assert read_text(fs, f"{MEM}/block_size_bytes") == f"{bsz:x}\n"
    assert read_text(fs, f"{MEM}/auto_online_blocks") == f"{auto}\n"
    zone = expect_zone(auto, policy, node)
    for b in bl:
        p = f"{MEM}/memory{b.phys_index}"
        assert read_text(fs, f"{p}/state") == ("offline\n" if zone is None else "online\n")
        assert read_text(fs, f"{p}/online") == ("0\n" if zone is None else "1\n")
        assert read_text(fs, f"{p}/valid_zones") == (f"{zone}\n" if zone
                                                     else expect_valid_zones_offline(policy, node) + "\n")
        assert read_text(fs, f"{p}/phys_index") == f"{b.phys_index:08x}\n"
        assert fs.readlink(f"{p}/node{node}") == f"../../node/node{node}"
        assert f"memory{b.phys_index}" in fs.listdir(f"{NODE}/node{node}")
    # memmap_on_memory: the device asks (CXL: 1); it is used only if the boot parameter allows it
    assert read_text(fs, "bus/dax/devices/dax0.0/memmap_on_memory") == "1\n"
    assert read_text(fs, f"{PARAMS}/memmap_on_memory") == ("Y\n" if memmap else "N\n")
    memmap_per_block = bsz // 4096 * 64 if memmap else 0
    online_kb = 0 if zone is None else len(bl) * (bsz - memmap_per_block) >> 10
    assert meminfo_total_kb(fs, node) == (BOOT_KB if node == 0 else 0) + online_kb
    # node masks: the CXL node is online (it has blocks) but has memory only once they are online
    assert read_text(fs, f"{NODE}/online") == ("0-1\n" if node == 1 else "0\n")
    assert read_text(fs, f"{NODE}/possible") == "0-1\n"
    assert read_text(fs, f"{NODE}/has_cpu") == "0\n"
    has_mem = {0} | ({node} if zone else set())
    has_normal = {0} | ({node} if zone == "Normal" else set())
    assert read_text(fs, f"{NODE}/has_memory") == nodelist(has_mem) + "\n"
    assert read_text(fs, f"{NODE}/has_normal_memory") == nodelist(has_normal) + "\n"
    # memory tiers: DRAM in tier 4; the kmem node in tier 22 while it has online memory
    tiers = sorted(x for x in fs.listdir(TIERS) if x.startswith("memory_tier"))
    if node == 1 and zone:
        assert tiers == ["memory_tier22", "memory_tier4"]
        assert read_text(fs, f"{TIERS}/memory_tier22/nodelist") == "1\n"
    else:
        assert tiers == ["memory_tier4"]
    assert read_text(fs, f"{TIERS}/memory_tier4/nodelist") == "0\n"


def test_trimming_unaligned_range_to_whole_blocks():
    """A 4 GiB region starting 256 MiB into a 2 GiB block: kmem hot-adds only the one whole 2 GiB
    block inside it; the rest of the device is not System RAM."""
    s = boot(block_size="2G", offset=256 * MiB)
    (b,) = blocks(s)
    assert b.start == HPA_BASE + 2 * GiB
    dd = s.dax_bus.find_device("dax0.0")
    assert dd.size == 4 * GiB and dd.driver.name == "kmem"


def test_device_without_a_whole_block_is_refused_by_kmem():
    s = boot(block_size="2G", region="2G", offset=256 * MiB)
    fs = Sysfs(s)
    dd = s.dax_bus.find_device("dax0.0")
    assert dd.driver is None and not s.memory.blocks
    with pytest.raises(KernelError) as e:
        fs.write("bus/dax/drivers/kmem/bind", b"dax0.0\0")
    assert e.value.errno == errno.EINVAL
    fs.write("bus/dax/drivers/device_dax/new_id", b"dax0.0\0")   # device_dax takes it as is
    assert dd.driver.name == "device_dax"


# ------------------------------------------------------------------ zone rules one by one

def _online(fs, b, how):
    fs.write(f"{MEM}/memory{b.phys_index}/state", how.encode() + b"\0")


def test_contig_zones_inherits_the_zone_a_block_sits_in():
    s = boot()
    fs = Sysfs(s)
    b = blocks(s)
    _online(fs, b[0], "online_movable")
    _online(fs, b[4], "online_movable")
    # b[1..3] lie inside the Movable span [b0, b4]: "online" stays Movable, and valid_zones says so
    assert read_text(fs, f"{MEM}/memory{b[2].phys_index}/valid_zones") == "Movable Normal\n"
    _online(fs, b[2], "online")
    assert b[2].zone == "Movable"
    # b[5] is beyond the span: nothing intersects, the kernel zone wins
    assert read_text(fs, f"{MEM}/memory{b[5].phys_index}/valid_zones") == "Normal Movable\n"
    _online(fs, b[5], "online")
    assert b[5].zone == "Normal"
    # explicit types are always honoured
    _online(fs, b[3], "online_kernel")
    assert b[3].zone == "Normal"
    # the Normal span now reaches over b[3]..b[5]: b[4] is online Movable, b[6] is outside both
    assert read_text(fs, f"{MEM}/memory{b[4].phys_index}/valid_zones") == "Movable\n"
    assert read_text(fs, f"{NODE}/has_normal_memory") == "0-1\n"


def test_movable_node_makes_online_movable():
    s = boot(movable_node=True, auto="online")
    assert {b.zone for b in blocks(s)} == {"Movable"}


def test_auto_movable_knobs_at_run_time():
    s = boot(policy="auto-movable")
    fs = Sysfs(s)
    b0 = blocks(s)[0]
    vz = f"{MEM}/memory{b0.phys_index}/valid_zones"
    assert read_text(fs, vz) == "Normal Movable\n"                 # CPU-less node: no kernel memory of its own
    fs.write(f"{PARAMS}/auto_movable_numa_aware", b"N\n")
    assert read_text(fs, f"{PARAMS}/auto_movable_numa_aware") == "N\n"
    assert read_text(fs, vz) == "Movable Normal\n"                 # system-wide: 4 GiB <= 301% of 16 GiB
    fs.write(f"{PARAMS}/auto_movable_ratio", b"20\n")       # 3.2 GiB allowed: the whole group does not fit
    assert read_text(fs, vz) == "Normal Movable\n"
    fs.write(f"{PARAMS}/auto_movable_ratio", b"25")         # 4 GiB: fits exactly
    assert read_text(fs, vz) == "Movable Normal\n"
    fs.write(f"{PARAMS}/auto_movable_ratio", b"0")          # 0 disables MOVABLE
    assert read_text(fs, vz) == "Normal Movable\n"
    fs.write(f"{PARAMS}/auto_movable_ratio", b"301")
    fs.write(f"{PARAMS}/online_policy", b"contig-zones\n")
    assert read_text(fs, f"{PARAMS}/online_policy") == "contig-zones\n"
    assert read_text(fs, vz) == "Normal Movable\n"


def test_auto_movable_group_goes_kernel_once_any_block_is_kernel():
    s = boot(policy="auto-movable", numa_aware=False)
    fs = Sysfs(s)
    b = blocks(s)
    _online(fs, b[0], "online_kernel")
    assert read_text(fs, f"{MEM}/memory{b[1].phys_index}/valid_zones") == "Normal Movable\n"
    _online(fs, b[1], "online")
    assert b[1].zone == "Normal"


def test_auto_movable_counts_what_is_already_movable():
    """The static group needs all its pages MOVABLE: blocks already online movable reduce the need."""
    s = boot(policy="auto-movable", numa_aware=False, ratio=12)   # 12% of 16 GiB = 1.92 GiB < 4 GiB
    fs = Sysfs(s)
    b = blocks(s)
    assert read_text(fs, f"{MEM}/memory{b[0].phys_index}/valid_zones") == "Normal Movable\n"
    for x in b[:17]:                                       # 2.125 GiB movable: 1.875 GiB still needed
        _online(fs, x, "online_movable")
    assert read_text(fs, f"{MEM}/memory{b[20].phys_index}/valid_zones") == "Normal Movable\n"
    fs.write(f"{PARAMS}/auto_movable_ratio", b"38")       # 38% of 16 GiB = 6.08 GiB >= 2.125 + 1.875
    assert read_text(fs, f"{MEM}/memory{b[20].phys_index}/valid_zones") == "Movable Normal\n"


def test_state_file_semantics_and_errno():
    s = boot()
    fs = Sysfs(s)
    b = blocks(s)[0]
    p = f"{MEM}/memory{b.phys_index}"
    before = fs.snapshot()
    for bad in (b"on\0", b"Online\0", b"online_movable\n\n", b"\0", b"offline \0"):
        with pytest.raises(KernelError) as e:
            fs.write(f"{p}/state", bad)
        assert e.value.errno == errno.EINVAL, bad
    with pytest.raises(KernelError) as e:
        fs.write(f"{p}/state", b"offline\n")           # already offline
    assert e.value.errno == errno.EINVAL
    assert fs.write(f"{p}/online", b"0\n") == 2          # the device-core file: a silent success
    assert read_text(fs, f"{p}/state") == "offline\n" and fs.snapshot() == before
    with pytest.raises(KernelError) as e:
        fs.write(f"{p}/online", b"maybe\n")
    assert e.value.errno == errno.EINVAL
    assert fs.write(f"{p}/state", b"online_movable\0") == len(b"online_movable\0")
    with pytest.raises(KernelError) as e:
        fs.write(f"{p}/state", b"online\n")            # already online
    assert e.value.errno == errno.EINVAL
    assert fs.write(f"{p}/online", b"1") == 1
    assert read_text(fs, f"{p}/valid_zones") == "Movable\n"
    fs.write(f"{p}/online", b"0")
    assert read_text(fs, f"{p}/state") == "offline\n"
    fs.write(f"{p}/online", b"y")                        # automatic zone choice
    assert b.zone == "Normal"


def test_root_and_parameter_errno():
    s = boot()
    fs = Sysfs(s)
    with pytest.raises(KernelError) as e:
        fs.write(f"{MEM}/auto_online_blocks", b"sometimes\n")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(KernelError) as e:
        fs.write(f"{MEM}/block_size_bytes", b"10000000\n")
    assert e.value.errno == errno.EACCES
    for v in ("offline", "online", "online_kernel", "online_movable"):
        fs.write(f"{MEM}/auto_online_blocks", v.encode() + b"\n")
        assert read_text(fs, f"{MEM}/auto_online_blocks") == v + "\n"
    cases = [("online_policy", b"auto_movable\n", errno.EINVAL), ("online_policy", b"\n", errno.EINVAL),
             ("auto_movable_ratio", b"-1\n", errno.EINVAL), ("auto_movable_ratio", b"4294967296", errno.ERANGE),
             ("auto_movable_ratio", b"12x", errno.EINVAL), ("auto_movable_numa_aware", b"2\n", errno.EINVAL),
             ("memmap_on_memory", b"Y\n", errno.EACCES)]
    for name, val, err in cases:
        before = read_text(fs, f"{PARAMS}/{name}")
        with pytest.raises(KernelError) as e:
            fs.write(f"{PARAMS}/{name}", val)
        assert e.value.errno == err, (name, val)
        assert read_text(fs, f"{PARAMS}/{name}") == before
    assert sorted(fs.listdir("module/memory_hotplug/parameters")) == [
        "auto_movable_numa_aware", "auto_movable_ratio", "memmap_on_memory", "online_policy"]
    assert "initstate" not in fs.listdir("module/memory_hotplug")       # built in
    assert fs.lookup(f"{PARAMS}/memmap_on_memory").mode == 0o444
    assert fs.lookup(f"{PARAMS}/online_policy").mode == 0o644


def test_auto_online_blocks_applies_to_memory_added_later():
    s = boot()
    fs = Sysfs(s)
    fs.write(f"{MEM}/auto_online_blocks", b"online_movable\n")
    assert not any(b.online for b in blocks(s))            # nothing changes for present blocks
    fs.write("bus/dax/drivers/kmem/unbind", b"dax0.0\0")
    assert not s.memory.blocks
    fs.write("bus/dax/drivers/kmem/bind", b"dax0.0\0")
    assert {(b.online, b.zone) for b in blocks(s)} == {(True, "Movable")}


# ------------------------------------------------------------------ unmovable pages

def test_offline_of_a_block_with_unmovable_pages_fails_ebusy():
    s = boot(auto="online")                                # contig-zones: ZONE_NORMAL
    fs = Sysfs(s)
    b = blocks(s)
    b[3].unmovable = True
    with pytest.raises(KernelError) as e:
        fs.write(f"{MEM}/memory{b[3].phys_index}/state", b"offline\0")
    assert e.value.errno == errno.EBUSY
    assert b[3].online and b[3].zone == "Normal"
    fs.write(f"{MEM}/memory{b[2].phys_index}/state", b"offline\0")   # its neighbour is fine
    with pytest.raises(KernelError) as e:
        fs.write(f"{MEM}/memory{b[3].phys_index}/online", b"0\n")
    assert e.value.errno == errno.EBUSY


def test_kernel_zone_unmovable_policy():
    s = boot(unmovable=True)
    fs = Sysfs(s)
    b = blocks(s)
    _online(fs, b[0], "online_kernel")
    _online(fs, b[1], "online_movable")
    with pytest.raises(KernelError) as e:
        fs.write(f"{MEM}/memory{b[0].phys_index}/state", b"offline\0")
    assert e.value.errno == errno.EBUSY
    fs.write(f"{MEM}/memory{b[1].phys_index}/state", b"offline\0")
    assert not b[1].online


# ------------------------------------------------------------------ nodes and teardown

def test_node_comes_and_goes_with_its_blocks():
    s = boot()
    fs = Sysfs(s)
    assert "node1" in fs.listdir(NODE) and read_text(fs, f"{NODE}/online") == "0-1\n"
    assert read_text(fs, f"{NODE}/node1/distance") == "24 10\n" and read_text(fs, f"{NODE}/node0/distance") == "10 24\n"
    assert read_text(fs, f"{NODE}/node1/cpulist") == "\n"
    fs.write("bus/dax/drivers/kmem/unbind", b"dax0.0\0")
    assert "node1" not in fs.listdir(NODE)
    assert read_text(fs, f"{NODE}/online") == "0\n" and read_text(fs, f"{NODE}/possible") == "0-1\n"
    assert read_text(fs, f"{NODE}/node0/distance") == "10\n"
    assert not [x for x in fs.listdir(MEM) if x.startswith("memory") and x[6:].isdigit()]
    assert not s.memory.groups and not s.memory.iomem.busy


def test_kmem_unbind_with_online_memory_leaks_until_reboot():
    s = boot()
    fs = Sysfs(s)
    b = blocks(s)
    for x in b:
        _online(fs, x, "online_movable")
    assert read_text(fs, f"{TIERS}/memory_tier22/nodelist") == "1\n"
    fs.write("bus/dax/drivers/kmem/unbind", b"dax0.0\0")   # never fails
    dd = s.dax_bus.find_device("dax0.0")
    assert dd.driver is None
    assert len(s.memory.blocks) == 32 and all(x.online and x.owner is None for x in b)   # still there, in use
    assert "node1" in fs.listdir(NODE) and read_text(fs, f"{NODE}/has_memory") == "0-1\n"
    assert any("cannot be hotremoved until the next reboot" in r.text for r in s.klog.records)
    assert s.memory.leaked == [(HPA_BASE, 4 * GiB, "dax0.0")]
    assert read_text(fs, "kernel/debug/cxlsys/memory/leaked") == f"{HPA_BASE:#x}-{HPA_BASE + 4 * GiB - 1:#x} dax0.0\n"
    # the range stays claimed: neither driver can take the device back
    fs.write("bus/dax/drivers/device_dax/new_id", b"dax0.0\0")   # its probe fails quietly here
    for drv in ("kmem", "device_dax"):
        with pytest.raises(KernelError) as e:
            fs.write(f"bus/dax/drivers/{drv}/bind", b"dax0.0\0")
        assert e.value.errno == errno.EBUSY, drv
    assert dd.driver is None
    # offlining the leaked blocks works (they are still memory blocks), but nothing removes them
    for x in b:
        _online(fs, x, "offline")
    assert len(s.memory.blocks) == 32 and read_text(fs, f"{NODE}/has_memory") == "0\n"
    assert "memory_tier22" not in fs.listdir(TIERS) and "node1" in fs.listdir(NODE)
    # the cxl region: disabling it takes the dax region away, re-enabling finds System RAM there
    fs.write("bus/cxl/drivers/cxl_region/unbind", b"region0\0")
    assert s.dax_bus.find_device("dax0.0") is None
    fs.write("bus/cxl/drivers/cxl_region/bind", b"region0\0")
    assert "dax_region0" not in fs.listdir("bus/cxl/devices/region0")
    # "reboot": a new machine
    s2 = boot()
    assert not s2.memory.leaked and s2.dax_bus.find_device("dax0.0").driver.name == "kmem"


def test_memmap_on_memory_device_flag():
    s = boot(memmap=True)
    fs = Sysfs(s)
    p = "bus/dax/devices/dax0.0/memmap_on_memory"
    with pytest.raises(KernelError) as e:
        fs.write(p, b"0\n")                                 # bound to kmem: no change
    assert e.value.errno == errno.EBUSY
    fs.write(p, b"1\n")                                     # same value: fine
    fs.write("bus/dax/drivers/kmem/unbind", b"dax0.0\0")
    fs.write(p, b"0\n")
    fs.write("bus/dax/drivers/kmem/bind", b"dax0.0\0")
    for x in blocks(s):
        _online(fs, x, "online_movable")
    assert meminfo_total_kb(fs, 1) == 4 * GiB >> 10        # no memmap carved out of the blocks
    s = boot(memmap=False)
    fs = Sysfs(s)
    fs.write("bus/dax/drivers/kmem/unbind", b"dax0.0\0")
    with pytest.raises(KernelError) as e:
        fs.write(p, b"1\n")                                 # the hotplug core cannot do it
    assert e.value.errno == errno.EOPNOTSUPP
    with pytest.raises(KernelError) as e:
        fs.write(p, b"x\n")
    assert e.value.errno == errno.EINVAL


def test_debugfs_unmovable_knobs():
    s = boot(auto="online_movable")
    fs = Sysfs(s)
    dbg = "kernel/debug/cxlsys/memory"
    b = blocks(s)
    i0 = b[0].phys_index
    assert read_text(fs, f"{dbg}/unmovable") == "\n" and read_text(fs, f"{dbg}/kernel_zone_unmovable") == "N\n"
    fs.write(f"{dbg}/unmovable", f"{i0},{i0 + 2}-{i0 + 3}\n".encode())
    assert read_text(fs, f"{dbg}/unmovable") == f"{i0},{i0 + 2}-{i0 + 3}\n"
    assert [x.unmovable for x in b[:5]] == [True, False, True, True, False]
    for bad in (b"x\n", f"{i0 + 3}-{i0}\n".encode(), b"5\n"):      # garbage, reversed, not present
        with pytest.raises(KernelError) as e:
            fs.write(f"{dbg}/unmovable", bad)
        assert e.value.errno == errno.EINVAL
    assert read_text(fs, f"{dbg}/unmovable") == f"{i0},{i0 + 2}-{i0 + 3}\n"
    with pytest.raises(KernelError) as e:          # even in ZONE_MOVABLE, if the knob says so
        fs.write(f"{MEM}/memory{i0}/state", b"offline\0")
    assert e.value.errno == errno.EBUSY
    fs.write(f"{MEM}/memory{i0 + 1}/state", b"offline\0")
    fs.write(f"{dbg}/unmovable", b"\n")
    fs.write(f"{MEM}/memory{i0}/state", b"offline\0")
    fs.write(f"{dbg}/kernel_zone_unmovable", b"Y\n")
    assert s.memory.policy.kernel_zone_unmovable
    fs.write(f"{MEM}/memory{i0}/state", b"online_kernel\0")
    with pytest.raises(KernelError) as e:
        fs.write(f"{MEM}/memory{i0}/state", b"offline\0")
    assert e.value.errno == errno.EBUSY
