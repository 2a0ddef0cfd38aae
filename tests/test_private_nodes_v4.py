"""Private memory nodes v4, the CXL side (policy-proposals.md §A.3, A.5-A.7): the ``cxl_sysram`` region
child (``sysram_regionN/hotplug``) and the ``cxl_mempolicy`` sample PCI driver, in-process on
``qemu-hdm-db`` (the window is node 1, CPU-less, offline at boot); and the node-private core's errno
table (§A.3) called directly, as a driver would.  The v5 line and the allocation oracle are
tests/test_private_nodes.py."""

import errno
from importlib.resources import files
from pathlib import Path

import pytest

from cxlsys.cxl.core.region_sysram import CXL_DEVICE_SYSRAM, CxlSysram, devm_cxl_add_sysram
from cxlsys.cxl.mempolicy import CXL_MEMPOLICY_OPS, CxlMempolicyDriver
from cxlsys.errors import KernelError
from cxlsys.mm.node_private import NP_OPS_MEMPOLICY, NP_OPS_MIGRATION, NodePrivate
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.testing import (
    assert_refused,
    cxl_read,
    cxl_write,
    cxlsys_run,
    endpoint_decoders,
    memdev,
    read_value,
    write_text,
)

V4 = "7.3+private-nodes-v4"
BDF = "0000:0f:00.0"                      # the first HDM-DB type-3 device (8086:0d93, 256 MiB RAM)
NODE = "devices/system/node"
MEMORY = "devices/system/memory"
PCI = "bus/pci/drivers"
HOTPLUG = "bus/cxl/devices/sysram_region0/hotplug"
FIXTURES = files("cxlsys") / "fixtures"     # the presets (package data)


def boot(kernel: str = V4, topology: str = "qemu-hdm-db"):
    s = System.boot(topology, kernel=kernel)
    return s, Sysfs(s)


def masks(fs) -> tuple:
    """(has_memory, has_private_memory)."""
    return read_value(fs, f"{NODE}/has_memory"), read_value(fs, f"{NODE}/has_private_memory")


def blocks(fs) -> dict:
    """memoryN -> (state, valid_zones)."""
    return {b: (read_value(fs, f"{MEMORY}/{b}/state"), read_value(fs, f"{MEMORY}/{b}/valid_zones"))
            for b in fs.listdir(MEMORY) if b.startswith("memory")}


def swap_to_mempolicy(fs, bdf: str = BDF) -> None:
    write_text(fs, f"{PCI}/cxl_pci/unbind", bdf)
    write_text(fs, f"{PCI}/cxl_mempolicy/bind", bdf)


def driver_of(fs, dev: str) -> str:
    return fs.readlink(f"bus/pci/devices/{dev}/driver").rsplit("/", 1)[-1]


# --------------------------------------------------------------------------- §A.7: the story

def test_mempolicy_story():
    s, fs = boot()
    assert masks(fs) == ("0", "")
    swap_to_mempolicy(fs)
    assert driver_of(fs, BDF) == "cxl_mempolicy"
    # the device's RAM became region0 (1-way, 256 MiB, committed) without a dax region, hot-added privately
    assert cxl_read(fs, "region0/commit") == "1" and cxl_read(fs, "region0/size") == "0x10000000"
    assert cxl_read(fs, "region0/interleave_ways") == "1"
    assert "dax_region0" not in fs.listdir("bus/cxl/devices/region0") and fs.listdir("bus/dax/devices") == []
    assert cxl_read(fs, "sysram_region0/devtype") == "cxl_sysram"
    assert cxl_read(fs, "sysram_region0/modalias") == f"cxl:t{CXL_DEVICE_SYSRAM}" == "cxl:t10"
    assert fs.stat(HOTPLUG).mode == 0o200 and not fs.stat(HOTPLUG).readable
    assert "sysram_region0" in fs.listdir("bus/cxl/devices/region0")
    # node 1: N_MEMORY_PRIVATE, and listed in has_memory too (v4: NP_OPS_MEMPOLICY opt-in)
    assert masks(fs) == ("0-1", "1")
    assert s.memory.private.np(1) is not None and s.memory.private.np(1).ops == NP_OPS_MIGRATION | NP_OPS_MEMPOLICY
    assert blocks(fs) == {"memory146": ("online", "Movable"), "memory147": ("online", "Movable")}
    assert fs.lookup(f"{NODE}/node1") is not None and fs.lookup(f"{MEMORY}/memory146/node1") is not None
    iomem = fs.read(".cxlsys/proc/iomem").decode()
    assert "490000000-49fffffff : cxl_sysram0\n" in iomem and "490000000-49fffffff : System RAM (CXL)\n" in iomem
    assert s.mm.set_mempolicy("bind:1").private                          # numactl --membind=1: allowed
    # the hotplug file
    assert_refused(fs, HOTPLUG, "online_movable", errno.EBUSY, unchanged=fs.snapshot)   # already added
    write_text(fs, HOTPLUG, "offline")
    assert masks(fs) == ("0", "") and blocks(fs) == {} and not s.memory.private.is_private(1)
    assert "cxl_sysram0" not in fs.read(".cxlsys/proc/iomem").decode()
    write_text(fs, HOTPLUG, "offline")                                    # nothing added: no-op [I]
    write_text(fs, HOTPLUG, "online_movable")
    assert masks(fs) == ("0-1", "1")                                      # the same record, ops kept
    assert set(blocks(fs).values()) == {("online", "Movable")}
    assert_refused(fs, HOTPLUG, "bogus", errno.EINVAL, unchanged=fs.snapshot)
    assert_refused(fs, HOTPLUG, "unplugged", errno.EINVAL)                # the dax ABI's word, not this one's
    # unbind: clean
    write_text(fs, f"{PCI}/cxl_mempolicy/unbind", BDF)
    assert masks(fs) == ("0", "") and blocks(fs) == {}
    assert not s.memory.private.is_private(1) and s.memory.leaked == [] and s.memory.groups == {}
    assert read_value(fs, "kernel/debug/cxlsys/memory/leaked") == ""
    assert "region0" not in fs.listdir("bus/cxl/devices/decoder0.0")     # the region it created is gone
    assert "node1" not in fs.listdir(NODE)
    assert "driver" not in fs.listdir(f"bus/pci/devices/{BDF}")
    # and back to cxl_pci: the device's endpoint decoder has no DPA left behind
    write_text(fs, f"{PCI}/cxl_pci/bind", BDF)
    dec = endpoint_decoders(memdev(s, BDF))[0].name
    assert cxl_read(fs, f"{dec}/dpa_size") == "0x0000000000000000" and cxl_read(fs, f"{dec}/region") == ""


def test_hotplug_add_busy_when_the_range_is_claimed_and_online_kernel():
    """Offline the sysram, let the cxl_region driver's dax/kmem claim the range: an online word is EBUSY
    (the region request fails); once kmem lets go, online_kernel adds it to ZONE_NORMAL."""
    s, fs = boot()
    swap_to_mempolicy(fs)
    write_text(fs, HOTPLUG, "offline")
    write_text(fs, "bus/cxl/drivers/cxl_region/bind", "region0")
    assert fs.listdir("bus/dax/devices") == ["dax0.0"]
    assert_refused(fs, HOTPLUG, "online_movable", errno.EBUSY)
    assert s.memory.private.np(1) is None
    write_text(fs, "bus/cxl/drivers/cxl_region/unbind", "region0")
    write_text(fs, HOTPLUG, "online_kernel")
    assert set(blocks(fs).values()) == {("online", "Normal")} and masks(fs) == ("0-1", "1")
    write_text(fs, "bus/cxl/drivers/cxl_region/bind", "region0")        # System RAM there: no dax_region
    assert fs.listdir("bus/dax/devices") == []
    write_text(fs, f"{PCI}/cxl_mempolicy/unbind", BDF)
    assert masks(fs) == ("0", "") and blocks(fs) == {} and s.memory.leaked == [] and s.memory.iomem.busy == []


def test_hotplug_errors_pass_through_and_teardown_leaks_what_stays_online():
    s, fs = boot()
    swap_to_mempolicy(fs)
    write_text(fs, "kernel/debug/cxlsys/memory/unmovable", "147")
    assert_refused(fs, HOTPLUG, "offline", errno.EBUSY)                  # offline_pages(): isolation failed
    assert masks(fs) == ("0-1", "1") and set(blocks(fs).values()) == {("online", "Movable")}   # rolled back
    write_text(fs, "kernel/debug/cxlsys/memory/signal_pending", "Y")
    assert_refused(fs, HOTPLUG, "offline", errno.EINTR)
    write_text(fs, "kernel/debug/cxlsys/memory/signal_pending", "N")
    # unbind with memory that cannot go offline: it leaks (logged), the rest is torn down
    write_text(fs, f"{PCI}/cxl_mempolicy/unbind", BDF)
    assert read_value(fs, "kernel/debug/cxlsys/memory/leaked") == "0x490000000-0x49fffffff sysram_region0"
    assert set(blocks(fs)) == {"memory146", "memory147"}
    assert any("sysram_region0: 0x490000000-0x49fffffff stuck online until reboot" in line
               for line in s.klog.lines())
    assert "sysram_region0" not in fs.listdir("bus/cxl/devices")


def test_mempolicy_never_wins_on_its_own():
    s, fs = boot()
    devs = [d for d in fs.listdir("bus/pci/devices") if d in s.machine.memdev_hosts]
    assert len(devs) == 4 and {driver_of(fs, d) for d in devs} == {"cxl_pci"}
    assert sorted(fs.listdir(f"{PCI}/cxl_mempolicy")) == ["bind", "module", "uevent", "unbind"]
    assert fs.readlink(f"{PCI}/cxl_mempolicy/module").endswith("module/cxl_mempolicy")
    assert read_value(fs, "module/cxl_mempolicy/initstate") == "live"
    assert_refused(fs, f"{PCI}/cxl_mempolicy/bind", BDF, errno.EBUSY)    # cxl_pci holds it
    assert_refused(fs, f"{PCI}/cxl_mempolicy/bind", "0000:0c:00.0", errno.ENODEV)   # a root port: no match
    write_text(fs, f"{PCI}/cxl_pci/unbind", BDF)
    write_text(fs, "bus/pci/drivers_probe", BDF)                          # a re-probe: cxl_pci again
    assert driver_of(fs, BDF) == "cxl_pci"
    write_text(fs, f"{PCI}/cxl_pci/unbind", BDF)
    s.buses["pci"].register_driver(CxlMempolicyDriver(name="cxl_mempolicy2"))   # registration probes nothing
    assert "driver" not in fs.listdir(f"bus/pci/devices/{BDF}")
    write_text(fs, f"{PCI}/cxl_mempolicy/bind", BDF)
    assert driver_of(fs, BDF) == "cxl_mempolicy"
    assert_refused(fs, f"{PCI}/cxl_pci/unbind", BDF, errno.ENODEV)


def test_without_the_proposal():
    for kernel in ("7.3", "6.12", "7.3+private-nodes-v5"):
        s, fs = boot(kernel)
        assert "cxl_mempolicy" not in fs.listdir(PCI), kernel
        assert (fs.lookup(f"{NODE}/has_private_memory") is not None) == kernel.endswith("-v5")
        write_text(fs, f"{PCI}/cxl_pci/unbind", BDF)
        assert fs.lookup(f"{PCI}/cxl_mempolicy/bind") is None
        write_text(fs, f"{PCI}/cxl_pci/bind", BDF)
        assert driver_of(fs, BDF) == "cxl_pci"
    s, fs = boot("7.3")
    assert fs.lookup(f"{NODE}/has_private_memory") is None and "cxl_mempolicy" not in fs.listdir("module")


def test_mempolicy_takes_a_committed_region(tmp_path):
    """A firmware-committed RAM region of the device (bound by cxl_region: dax0.0 on kmem) is taken:
    the region driver is detached (dax gone), sysram goes on it; unbind leaves the region to the core."""
    topo = tmp_path / "auto.toml"
    topo.write_text((FIXTURES / "qemu-hdm-db.toml").read_text() +
                    f'\n[[auto_region]]\nwindow = 0\nsize = "256M"\nmembers = ["{BDF}"]\n')
    s, fs = boot(topology=str(topo))
    s.unload()                                     # plug the machine in again with PCI autoprobe off,
    write_text(fs, "bus/pci/drivers_autoprobe", 0)  # so that cxl_pci does not take (and reset) it first
    s.load()
    swap = f"{PCI}/cxl_mempolicy/bind"
    write_text(fs, swap, BDF)
    assert cxl_read(fs, "region0/commit") == "1" and fs.listdir("bus/dax/devices") == []
    assert fs.lookup("bus/cxl/devices/region0/driver") is None
    assert masks(fs) == ("0-1", "1") and set(blocks(fs).values()) == {("online", "Movable")}
    data = s.buses["pci"].drivers["cxl_mempolicy"].bound[BDF]
    assert data.region.name == "region0" and data.region.auto and not data.created
    write_text(fs, f"{PCI}/cxl_mempolicy/unbind", BDF)
    assert masks(fs) == ("0", "") and blocks(fs) == {} and s.memory.leaked == []
    assert "region0" in fs.listdir("bus/cxl/devices")                   # not the driver's to delete [I]


def test_mempolicy_probe_refusals(tmp_path):
    """A device the mailbox reports no whole 256 MiB unit of RAM for (made 128 MiB after boot: the
    capacity fields are in 256 MiB units, so it reads as none): logged, bound, nothing onlined —
    the proposal's below-256-MiB ENOSPC refusal cannot be reached through a CXL mailbox; a
    pmem-only device from the topology: the same."""
    s, fs = boot()
    write_text(fs, f"{PCI}/cxl_pci/unbind", BDF)
    s.machine.memdev_hosts[BDF].ram = 128 << 20
    write_text(fs, f"{PCI}/cxl_mempolicy/bind", BDF)
    assert driver_of(fs, BDF) == "cxl_mempolicy" and masks(fs) == ("0", "")
    md = next(m for m in fs.listdir(f"bus/pci/devices/{BDF}") if m.startswith("mem"))
    assert fs.read(f"bus/pci/devices/{BDF}/{md}/ram/size") == b"0x0\n"
    assert "region0" not in fs.listdir("bus/cxl/devices")
    assert any("has no RAM capacity, nothing to do" in line for line in s.klog.lines())
    write_text(fs, f"{PCI}/cxl_mempolicy/unbind", BDF)
    text = (FIXTURES / "qemu-hdm-db.toml").read_text()
    head, sep, tail = text.partition(f'name = "{BDF}"\nparent = "0000:0e:00.0"\nkind = "pci"\nram = "256M"')
    assert sep
    topo = tmp_path / "pmem-only.toml"
    topo.write_text(head + f'name = "{BDF}"\nparent = "0000:0e:00.0"\nkind = "pci"\npmem = "256M"' + tail)
    s, fs = boot(topology=str(topo))
    swap_to_mempolicy(fs)
    assert driver_of(fs, BDF) == "cxl_mempolicy" and masks(fs) == ("0", "")
    assert "region0" not in fs.listdir("bus/cxl/devices")
    assert any("has no RAM capacity, nothing to do" in line for line in s.klog.lines())
    write_text(fs, f"{PCI}/cxl_mempolicy/unbind", BDF)


# --------------------------------------------------------------------------- devm_cxl_add_sysram directly

def _region(fs, size: int = 0x10000000) -> str:
    """A committed, unbound 1-way ram region on the first device (the sysfs stores)."""
    s = fs.sys
    md = next(m for m in s.cxl_bus.devices if m.name.startswith("mem") and m.parent.name == BDF)
    dec = md.endpoint.decoders[0].name
    cxl_write(fs, f"{dec}/mode", "ram")
    cxl_write(fs, f"{dec}/dpa_size", hex(size))
    r = cxl_read(fs, "decoder0.0/create_ram_region")
    cxl_write(fs, "decoder0.0/create_ram_region", r)
    cxl_write(fs, f"{r}/interleave_granularity", 4096)
    cxl_write(fs, f"{r}/interleave_ways", 1)
    cxl_write(fs, f"{r}/size", hex(size))
    cxl_write(fs, f"{r}/target0", dec)
    cxl_write(fs, f"{r}/commit", 1)
    return r


def test_sysram_shared_and_its_teardown():
    """private=False: ordinary System RAM (N_MEMORY, the low memory tier); the region's driver unbinding
    (the default devres host) removes the child and offlines and removes its memory."""
    s, fs = boot()
    r = _region(fs)
    cxlr = s.cxl_bus.find_device(r)
    write_text(fs, "bus/cxl/drivers/cxl_region/bind", r)            # dax_region0, dax0.0 on kmem
    write_text(fs, "bus/dax/drivers/kmem/unbind", "dax0.0")         # kmem lets the range go
    sr = devm_cxl_add_sysram(cxlr, False, "online")
    assert isinstance(sr, CxlSysram) and sr.np is None
    assert masks(fs) == ("0-1", "") and set(blocks(fs).values()) == {("online", "Normal")}
    assert "memory_tier22" in fs.listdir("devices/virtual/memory_tiering")
    assert_refused(fs, HOTPLUG, "online", errno.EBUSY)
    write_text(fs, HOTPLUG, "offline")
    write_text(fs, HOTPLUG, "online_movable")
    assert set(blocks(fs).values()) == {("online", "Movable")}
    write_text(fs, "bus/cxl/drivers/cxl_region/unbind", r)         # devres: the sysram goes, memory too
    assert "sysram_region0" not in fs.listdir(f"bus/cxl/devices/{r}") and blocks(fs) == {}
    assert s.memory.leaked == [] and s.memory.groups == {} and masks(fs) == ("0", "")
    assert "memory_tier22" not in fs.listdir("devices/virtual/memory_tiering")


def test_sysram_not_added_at_creation_and_region_deletion():
    s, fs = boot()
    r = _region(fs)
    cxlr = s.cxl_bus.find_device(r)
    sr = devm_cxl_add_sysram(cxlr, True, None)                      # no online type: nothing added [I]
    assert blocks(fs) == {} and sr.np is not None and not s.memory.private.is_private(1)
    write_text(fs, HOTPLUG, "online_movable")
    assert masks(fs) == ("0", "1")                                  # private, no MEMPOLICY: not in has_memory
    cxl_write(fs, "decoder0.0/delete_region", r)                     # the region goes with its child
    assert blocks(fs) == {} and masks(fs) == ("0", "") and not s.memory.private.is_private(1)
    assert s.memory.leaked == [] and s.memory.groups == {}


def test_sysram_refusals(monkeypatch):
    s, fs = boot()
    r = _region(fs)
    cxlr = s.cxl_bus.find_device(r)
    s.memory.policy.block_size = 1 << 30                             # a 256 MiB region holds no 1 GiB block
    with pytest.raises(KernelError) as e:
        devm_cxl_add_sysram(cxlr, True, "online_movable")
    assert e.value.errno == errno.ENOSPC
    s.memory.policy.block_size = 128 << 20
    monkeypatch.setattr(s.machine.windows[0], "node", 5)            # the window's node is not possible
    with pytest.raises(KernelError) as e:
        devm_cxl_add_sysram(cxlr, True, "online_movable")
    assert e.value.errno == errno.EINVAL
    monkeypatch.undo()
    s.memory.iomem.request_region(cxlr.hpa_start, 4096, "squatter")   # the region request fails: EBUSY
    with pytest.raises(KernelError) as e:
        devm_cxl_add_sysram(cxlr, True, "online_movable")
    assert e.value.errno == errno.EBUSY
    assert "sysram_region0" not in fs.listdir(f"bus/cxl/devices/{r}") and s.memory.groups == {}
    assert not s.memory.private.is_private(1)


# --------------------------------------------------------------------------- the core's errno table (§A.3)

def test_v4_core_errno_table():
    s, fs = boot()
    core = s.memory.private

    def refused(err, fn, *args):
        with pytest.raises(KernelError) as e:
            fn(*args)
        assert e.value.errno == err, e.value.reason

    a, b = NodePrivate("a"), NodePrivate("b")
    refused(errno.EBUSY, core.node_private_register, 0, a)             # node 0 has N_MEMORY
    refused(errno.EINVAL, core.node_private_register, 9, a)            # not possible
    refused(errno.EINVAL, core.node_private_register, 1, None)
    refused(errno.ENODEV, core.node_private_set_ops, 1, a, NP_OPS_MIGRATION)     # nothing registered
    refused(errno.ENODEV, core.node_private_clear_ops, 1, a)
    core.node_private_unregister(1)                                     # nothing registered: 0
    core.node_private_register(1, a)
    core.node_private_register(1, a)                                    # the same record again: 0
    refused(errno.EBUSY, core.node_private_register, 1, b)             # a different record
    refused(errno.EINVAL, core.node_private_set_ops, 1, a, NP_OPS_MEMPOLICY)     # MEMPOLICY needs MIGRATION
    refused(errno.ENODEV, core.node_private_set_ops, 1, b, NP_OPS_MIGRATION)     # not this node's record
    core.node_private_set_ops(1, a, CXL_MEMPOLICY_OPS)
    refused(errno.EINVAL, core.node_private_clear_ops, 1, b)           # not the installed ops
    start = s.machine.windows[0].base
    core.add_private_memory_driver_managed(1, start, 256 << 20, a, "online_movable")
    assert masks(fs) == ("0-1", "1")
    refused(errno.EBUSY, core.node_private_unregister, 1)              # still N_MEMORY_PRIVATE
    core.node_private_clear_ops(1, a)
    assert masks(fs) == ("0", "1")
    core.offline_and_remove_private_memory(1, start, 256 << 20)
    assert masks(fs) == ("0", "") and not core.is_private(1)


@pytest.mark.mount
def test_v4_story_through_cxlsys_run():
    script = (Path(__file__).resolve().parent.parent / "examples" / "private-nodes-v4-cxl-mempolicy.sh").read_text()
    out = cxlsys_run(script, topology="qemu-hdm-db", kernel="7.3+private-nodes-v4").stdout.splitlines()
    assert out == ["bound private=1 memory=0-1 1", "add refused", "offline private=[] memory=0", "online private=1",
                   "unbound private=[] memory=0"]
