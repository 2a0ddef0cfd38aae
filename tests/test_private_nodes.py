"""Private memory nodes (v5 caps design and its ``anondax`` driver; v4 through the core API acting as a
driver) and the allocation oracle per profile: what reaches a private node, and what each version
lets a mempolicy do.  The v4 CXL side (cxl_sysram, cxl_mempolicy) is tests/test_private_nodes_v4.py."""

import errno
from pathlib import Path

import pytest

from cxlsys.errors import KernelError
from cxlsys.mm.node_private import (
    CAP_MEMPOLICY,
    CAP_RECLAIM,
    CAP_TIERING,
    NP_OPS_MEMPOLICY,
    NP_OPS_MIGRATION,
    NodePrivate,
)
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.testing import (
    assert_refused,
    cxl_read,
    cxl_write,
    cxlsys_run,
    endpoint_decoders,
    memdevs,
    meminfo_kb,
    read_value,
    sysfs_tree,
    write_text,
)

DAX = "bus/dax/devices"
NODE = "devices/system/node"
MOVABLE = "GFP_HIGHUSER_MOVABLE"


def ram_region(kernel: str):
    """qemu-hdm-db: a 2-way 512 MiB ram region over the two HDM-DB devices, bound; dax0.0 on kmem
    (blocks offline: auto_online_blocks=offline).  The window is on node 1, CPU-less."""
    s = System.boot("qemu-hdm-db", kernel=kernel)
    fs = Sysfs(s)
    dec = {m.info.serial: endpoint_decoders(m)[0].name for m in memdevs(s)}
    for serial in (1, 2):
        cxl_write(fs, f"{dec[serial]}/mode", "ram")
        cxl_write(fs, f"{dec[serial]}/dpa_size", "0x10000000")
    r = cxl_read(fs, "decoder0.0/create_ram_region")
    cxl_write(fs, "decoder0.0/create_ram_region", r)
    cxl_write(fs, f"{r}/interleave_granularity", 4096)
    cxl_write(fs, f"{r}/interleave_ways", 2)
    cxl_write(fs, f"{r}/size", "0x20000000")
    cxl_write(fs, f"{r}/target0", dec[1])
    cxl_write(fs, f"{r}/target1", dec[2])
    cxl_write(fs, f"{r}/commit", 1)
    write_text(fs, "bus/cxl/drivers/cxl_region/bind", r)
    return s, fs, "dax0.0"


def to_anondax(fs, dd="dax0.0"):
    write_text(fs, "bus/dax/drivers/kmem/unbind", dd)
    write_text(fs, "bus/dax/drivers/anondax/new_id", dd)


def masks(fs):
    return read_value(fs, f"{NODE}/has_memory"), read_value(fs, f"{NODE}/has_private_memory")


# ----------------------------------------------------------------------------- v5: anondax story

def test_v5_anondax_story():
    s, fs, dd = ram_region("7.3+private-nodes-v5")
    to_anondax(fs, dd)
    hp = f"{DAX}/{dd}/hotplug"
    assert read_value(fs, hp) == "unplugged" and read_value(fs, f"{DAX}/{dd}/target_node") == "1"
    caps = {c: read_value(fs, f"{DAX}/{dd}/{c}") for c in
            ("reclaim", "mempolicy", "hotunplug", "tiering", "ltpin", "user_migrate")}
    assert set(caps.values()) == {"0"}
    write_text(fs, f"{DAX}/{dd}/mempolicy", 1)
    write_text(fs, f"{DAX}/{dd}/reclaim", "y")
    base = meminfo_kb(fs)
    write_text(fs, hp, "online_movable")
    assert read_value(fs, hp) == "online_movable"
    assert masks(fs) == ("0", "1")                          # private: has_private_memory, not has_memory
    assert meminfo_kb(fs) == base + (512 << 10)
    assert " : System RAM (anondax)" in fs.read(".cxlsys/proc/iomem").decode()
    np = s.memory.private.np(1)
    assert np is not None and np.caps == CAP_MEMPOLICY | CAP_RECLAIM
    before = sysfs_tree(fs)
    assert_refused(fs, f"{DAX}/{dd}/reclaim", "0", errno.EBUSY)           # caps only while unplugged
    assert_refused(fs, hp, "online_kernel", errno.EBUSY)                   # no zone switch while online
    assert_refused(fs, hp, "online", errno.EINVAL)                         # no plain "online"
    assert_refused(fs, hp, "offline", errno.EINVAL)
    assert sysfs_tree(fs) == before
    write_text(fs, hp, "online_movable")                                   # same state: no-op
    write_text(fs, hp, "unplugged")
    assert masks(fs) == ("0", "") and meminfo_kb(fs) == base and s.memory.private.np(1) is None
    write_text(fs, "kernel/debug/cxlsys/memory/signal_pending", "Y")
    assert_refused(fs, hp, "online_kernel", errno.EINTR)
    write_text(fs, "kernel/debug/cxlsys/memory/signal_pending", "N")
    write_text(fs, hp, "online_kernel")
    assert masks(fs) == ("0", "1")


def test_v5_anondax_is_no_default_and_absent_elsewhere():
    s, fs, dd = ram_region("7.3+private-nodes-v5")
    assert read_value(fs, f"{DAX}/{dd}/state") == "offline"                # kmem still takes ram regions
    for kernel in ("7.3", "6.12", "7.3+private-nodes-v4"):
        s2, fs2, _ = ram_region(kernel)
        assert "anondax" not in fs2.listdir("bus/dax/drivers")
        assert (fs2.lookup(f"{NODE}/has_private_memory") is not None) == kernel.endswith("-v4")


def test_v5_register_errno():
    s, fs, dd = ram_region("7.3+private-nodes-v5")
    core = s.memory.private
    with pytest.raises(KernelError) as e:
        core.node_private_register(0, NodePrivate("t"))                   # node 0 has N_MEMORY
    assert e.value.errno == errno.EBUSY
    with pytest.raises(KernelError) as e:
        core.node_private_register(1, NodePrivate("t", caps=CAP_TIERING))  # TIERING needs RECLAIM
    assert e.value.errno == errno.EINVAL
    with pytest.raises(KernelError) as e:
        core.node_private_register(7, NodePrivate("t"))                   # not possible
    assert e.value.errno == errno.EINVAL
    a = NodePrivate("a")
    core.node_private_register(1, a)
    core.node_private_register(1, a)                                        # same record again: 0
    with pytest.raises(KernelError) as e:
        core.node_private_register(1, NodePrivate("b"))
    assert e.value.errno == errno.EBUSY
    with pytest.raises(KernelError) as e:
        core.node_private_set_ops(1, a, NP_OPS_MIGRATION)                   # removed in v5
    assert e.value.errno == errno.ENOSYS
    core.node_private_unregister(1)
    core.node_private_unregister(1)                                         # nothing registered: 0


# --------------------------------------------------------------------------- v4 via the core API

def v4_private_node(ops=NP_OPS_MIGRATION | NP_OPS_MEMPOLICY):
    """v4: a test acting as the driver: kmem off, the region's range hot-added as private memory on
    node 1 (add_private_memory_driver_managed), ops installed."""
    s, fs, dd = ram_region("7.3+private-nodes-v4")
    write_text(fs, "bus/dax/drivers/kmem/unbind", dd)
    start, size, _ = s.dax_bus.find_device(dd).ranges[0]
    np = NodePrivate("test-driver")
    s.memory.private.add_private_memory_driver_managed(1, start, size, np, "online_movable")
    if ops:
        s.memory.private.node_private_set_ops(1, np, ops)
    return s, fs, np, (start, size)


def test_v4_node_states_and_has_memory_switch():
    s, fs, np, _ = v4_private_node()
    assert masks(fs) == ("0-1", "1")                       # v4: has_memory lists MEMPOLICY private nodes
    s.memory.private.node_private_clear_ops(1, np)
    assert masks(fs) == ("0", "1")
    with pytest.raises(KernelError) as e:
        s.memory.private.node_private_set_ops(1, np, NP_OPS_MEMPOLICY)     # MEMPOLICY needs MIGRATION
    assert e.value.errno == errno.EINVAL
    with pytest.raises(KernelError) as e:
        s.memory.private.node_private_unregister(1)                         # still N_MEMORY_PRIVATE
    assert e.value.errno == errno.EBUSY


def test_v4_offline_and_remove_private_memory():
    s, fs, np, (start, size) = v4_private_node()
    s.memory.private.offline_and_remove_private_memory(1, start, size)
    assert masks(fs) == ("0", "") and s.memory.private.np(1) is None


# --------------------------------------------------------------------------------- the oracle

def test_default_allocations_never_reach_a_private_node():
    s5, fs5, dd = ram_region("7.3+private-nodes-v5")
    to_anondax(fs5, dd)
    write_text(fs5, f"{DAX}/{dd}/mempolicy", 1)
    write_text(fs5, f"{DAX}/{dd}/hotplug", "online_movable")
    s4, _, _, _ = v4_private_node()
    for s in (s4, s5):
        mm = s.mm
        for gfp in ("GFP_KERNEL", "GFP_USER", MOVABLE, "GFP_ATOMIC", "GFP_NOWAIT", "GFP_KERNEL|__GFP_THISNODE"):
            assert 1 not in mm.alloc_candidates(gfp), (s.profile.name, gfp)
        assert mm.alloc_candidates(MOVABLE, nid=1) == [0]                  # the preferred node is skipped
        assert mm.alloc_candidates(MOVABLE, interrupt=True, policy="bind:1") == [0]   # interrupt: N_MEMORY


def test_what_each_version_lets_a_mempolicy_and_gfp_do():
    # v4: __GFP_PRIVATE unlocks the node (with fallback), GFP_PRIVATE pins to it; cpusets partition it
    s4, _, np, _ = v4_private_node()
    mm = s4.mm
    assert mm.alloc_candidates(MOVABLE + "|__GFP_PRIVATE", nid=1) == [1, 0]
    assert mm.alloc_candidates(MOVABLE + "|GFP_PRIVATE", nid=1) == [1]
    assert mm.set_mempolicy("bind:1").private
    assert mm.alloc_candidates(MOVABLE) == [1]
    assert mm.alloc_candidates(MOVABLE, cpuset=[0]) == []               # a cpuset without node 1 denies it
    s4.memory.private.node_private_clear_ops(1, np)
    with pytest.raises(KernelError) as e:
        mm.set_mempolicy("bind:0-1")                                        # a private node without MEMPOLICY
    assert e.value.errno == errno.EINVAL
    # v5: no GFP flag reaches it, not even __GFP_THISNODE; only a bind with CAP_MEMPOLICY; cpuset ignores it
    s5, fs5, dd = ram_region("7.3+private-nodes-v5")
    to_anondax(fs5, dd)
    write_text(fs5, f"{DAX}/{dd}/hotplug", "online_movable")
    mm = s5.mm
    with pytest.raises(ValueError):
        mm.alloc_candidates("GFP_PRIVATE")                                  # not a v5 flag
    assert mm.alloc_candidates(MOVABLE + "|__GFP_THISNODE", nid=1) == []
    with pytest.raises(KernelError) as e:
        mm.set_mempolicy("bind:1")                                          # no CAP_MEMPOLICY
    assert e.value.errno == errno.EINVAL
    write_text(fs5, f"{DAX}/{dd}/hotplug", "unplugged")
    write_text(fs5, f"{DAX}/{dd}/mempolicy", 1)
    write_text(fs5, f"{DAX}/{dd}/hotplug", "online_movable")
    assert mm.set_mempolicy("bind:0-1").private
    assert mm.alloc_candidates(MOVABLE) == [0, 1]
    assert mm.alloc_candidates(MOVABLE, cpuset=[0]) == [0, 1]           # cpuset neither grants nor denies
    assert mm.alloc_candidates("GFP_KERNEL") == [0]                      # ZONE_MOVABLE only: no kernel allocs


def test_oracle_on_merged_kernels():
    s, fs, dd = ram_region("7.3")
    mm = s.mm
    with pytest.raises(KernelError) as e:
        mm.set_mempolicy("bind:1")                                          # node 1 has no memory yet
    assert e.value.errno == errno.EINVAL
    write_text(fs, f"{DAX}/{dd}/state", "unplugged")
    write_text(fs, f"{DAX}/{dd}/state", "online_movable")
    assert mm.alloc_candidates(MOVABLE) == [0, 1]                        # node 1 is ordinary N_MEMORY
    assert mm.alloc_candidates("GFP_KERNEL") == [0]                      # movable-only memory
    assert mm.alloc_candidates(MOVABLE, nid=1) == [1, 0]
    assert mm.alloc_candidates(MOVABLE + "|__GFP_THISNODE", nid=1) == [1]
    assert mm.alloc_candidates(MOVABLE, policy="preferred:1") == [1, 0]
    assert mm.alloc_candidates(MOVABLE, policy="interleave:0-1") == [0, 1]
    assert mm.alloc_candidates(MOVABLE, cpuset=[1]) == [1]               # hardwall: cpuset mems
    assert mm.alloc_candidates("GFP_KERNEL", cpuset=[1]) == [0]          # not hardwall
    with pytest.raises(ValueError):
        mm.alloc_candidates("GFP_BOGUS")
    with pytest.raises(ValueError):
        mm.set_mempolicy("weighted:1")
    mm.set_mempolicy("bind:1")
    assert mm.alloc_candidates(MOVABLE) == [1]
    assert mm.alloc_candidates(MOVABLE, interrupt=True) == [0, 1]        # interrupt: no task policy
    mm.set_mempolicy("default")
    assert s.mm.alloc_candidates("GFP_DMA32") == [0]
    s612, _, _ = ram_region("6.12")
    assert s612.mm.alloc_candidates(MOVABLE) == [0]                     # 6.12: blocks still offline


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.mount
def test_v5_story_through_cxlsys_run():
    script = (EXAMPLES / "private-nodes-v5-anondax.sh").read_text()
    out = cxlsys_run(script, topology="qemu-hdm-db", kernel="7.3+private-nodes-v5").stdout.splitlines()
    assert out == ["bound anondax unplugged", "online private=1 memory=0", "cap refused", "zone refused",
                   "unplugged private=[] 0"]


@pytest.mark.parametrize("cap", ["reclaim", "mempolicy", "hotunplug", "tiering", "ltpin", "user_migrate"])
def test_v5_each_cap_gates_its_service(cap):
    s, fs, dd = ram_region("7.3+private-nodes-v5")
    to_anondax(fs, dd)
    if cap == "tiering":                                    # TIERING needs RECLAIM at registration
        write_text(fs, f"{DAX}/{dd}/reclaim", 1)
    write_text(fs, f"{DAX}/{dd}/{cap}", 1)
    write_text(fs, f"{DAX}/{dd}/hotplug", "online_movable")
    allowed = {svc for svc in ("reclaim", "mempolicy", "user_migrate", "hotunplug", "tiering", "ltpin")
               if s.mm.node_allows(1, svc)}
    assert allowed == ({cap, "reclaim"} if cap == "tiering" else {cap})
    assert all(s.mm.node_allows(0, svc) for svc in allowed | {"ltpin"})     # node 0 is ordinary memory


def test_v5_tiering_without_reclaim_is_refused_at_hotplug():
    s, fs, dd = ram_region("7.3+private-nodes-v5")
    to_anondax(fs, dd)
    write_text(fs, f"{DAX}/{dd}/tiering", 1)
    assert_refused(fs, f"{DAX}/{dd}/hotplug", "online_movable", errno.EINVAL)
    assert read_value(fs, f"{DAX}/{dd}/hotplug") == "unplugged" and masks(fs) == ("0", "")


def test_v4_ops_gate_services():
    s, fs, np, _ = v4_private_node(ops=NP_OPS_MIGRATION | NP_OPS_MEMPOLICY)
    assert {svc for svc in ("reclaim", "mempolicy", "user_migrate", "hotunplug", "tiering", "ltpin")
            if s.mm.node_allows(1, svc)} == {"mempolicy", "user_migrate", "hotunplug"}
    with pytest.raises(ValueError):
        s.mm.node_allows(1, "compaction")
