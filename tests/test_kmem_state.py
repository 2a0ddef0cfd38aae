"""v7.3's whole-device dax/kmem hotplug, ``/sys/bus/dax/devices/daxX.Y/state`` (profile 7.3), with
/proc/meminfo and /proc/iomem from the model: the rules of kmem.c's state_store() and of
offline_and_remove_memory_ranges(), probe under each auto_online_blocks value, unbind that does
not trust the state, and the checks of the kernel's own selftest (dax-kmem-hotplug.sh) expressed
in-process and through ``cxlsys run``."""

import errno
from pathlib import Path

import pytest

from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.testing import (
    assert_refused,
    cxlsys_run,
    dax_blocks,
    meminfo_kb,
    provision_ram_region,
    read_value,
    sysfs_tree,
    write_text,
)

DAX = "bus/dax/devices"
MEM = "devices/system/memory"


def boot(kernel="7.3", auto="offline"):
    s = System.boot("cxl_test", kernel=kernel)
    fs = Sysfs(s)
    write_text(fs, f"{MEM}/auto_online_blocks", auto)
    r, dd = provision_ram_region(fs)
    return s, fs, dd


def state(fs, dd):
    return read_value(fs, f"{DAX}/{dd}/state")


def set_state(fs, dd, v):
    write_text(fs, f"{DAX}/{dd}/state", v)


def block_states(fs, dd):
    return {b: read_value(fs, f"{MEM}/{b}/state") for b in dax_blocks(fs, dd)
            if fs.lookup(f"{MEM}/{b}") is not None}


def test_state_exists_only_on_7_3_and_only_while_kmem_is_bound():
    for kernel in ("6.12", "6.11", "6.12+bi"):
        _, fs, dd = boot(kernel)
        assert fs.lookup(f"{DAX}/{dd}/state") is None
    _, fs, dd = boot("mainline")                           # mainline is 7.3 today
    e = fs.lookup(f"{DAX}/{dd}/state")
    assert e is not None and e.mode == 0o644
    write_text(fs, "bus/dax/drivers/kmem/unbind", dd)
    assert fs.lookup(f"{DAX}/{dd}/state") is None
    write_text(fs, "bus/dax/drivers/device_dax/new_id", dd)
    assert fs.lookup(f"{DAX}/{dd}/state") is None
    write_text(fs, "bus/dax/drivers/device_dax/unbind", dd)
    write_text(fs, "bus/dax/drivers/kmem/bind", dd)
    assert state(fs, dd) == "offline"


@pytest.mark.parametrize("auto", ["offline", "online", "online_kernel", "online_movable"])
def test_probe_takes_the_online_type_of_auto_online_blocks(auto):
    _, fs, dd = boot(auto=auto)
    assert state(fs, dd) == auto
    states = set(block_states(fs, dd).values())
    assert states == ({"offline"} if auto == "offline" else {"online"})


def test_state_store_rules():
    s, fs, dd = boot()
    base = meminfo_kb(fs)
    snap = lambda: sysfs_tree(fs)                          # noqa: E731
    assert_refused(fs, f"{DAX}/{dd}/state", "bogus_state", errno.EINVAL, unchanged=snap)
    assert_refused(fs, f"{DAX}/{dd}/state", "offline", errno.EINVAL, unchanged=snap)   # even when offline
    assert_refused(fs, f"{DAX}/{dd}/state", "online_movable", errno.EBUSY, unchanged=snap)  # not unplugged
    set_state(fs, dd, "unplugged")                          # offline blocks: removed
    assert state(fs, dd) == "unplugged" and block_states(fs, dd) == {} and not dax_blocks(fs, dd)
    set_state(fs, dd, "unplugged")                          # same state: a no-op
    set_state(fs, dd, b"online_movable")                    # no newline at all is fine too
    assert state(fs, dd) == "online_movable" and meminfo_kb(fs) == base + (1 << 30 >> 10)
    assert set(block_states(fs, dd).values()) == {"online"}
    zones = {read_value(fs, f"{MEM}/{b}/valid_zones") for b in dax_blocks(fs, dd)}
    assert zones == {"Movable"}
    assert_refused(fs, f"{DAX}/{dd}/state", "online_kernel", errno.EBUSY, unchanged=snap)
    assert_refused(fs, f"{DAX}/{dd}/state", "online", errno.EBUSY, unchanged=snap)
    set_state(fs, dd, "online_movable")                     # idempotent
    set_state(fs, dd, "unplugged")
    assert meminfo_kb(fs) == base and f" : {dd}" not in fs.read(".cxlsys/proc/iomem").decode()
    set_state(fs, dd, "online_kernel")
    zones = {read_value(fs, f"{MEM}/{b}/valid_zones") for b in dax_blocks(fs, dd)}
    assert zones == {"Normal"}


@pytest.mark.parametrize("knob,value,err", [("unmovable", None, errno.EBUSY),
                                             ("signal_pending", "Y", errno.EINTR)])
def test_unplug_is_all_or_nothing(knob, value, err):
    """A block that will not offline (unmovable pages, a pending signal) fails the unplug; every block
    offlined before it comes back online in its zone, the state stays."""
    s, fs, dd = boot()
    set_state(fs, dd, "unplugged")
    set_state(fs, dd, "online_movable")
    blocks = dax_blocks(fs, dd)
    before = sysfs_tree(fs)
    mt = meminfo_kb(fs)
    write_text(fs, f"kernel/debug/cxlsys/memory/{knob}", value or blocks[-1][len("memory"):])
    assert_refused(fs, f"{DAX}/{dd}/state", "unplugged", err)
    assert state(fs, dd) == "online_movable" and meminfo_kb(fs) == mt
    assert set(block_states(fs, dd).values()) == {"online"}
    assert [x for x in sysfs_tree(fs) if "/debug/" not in x] == [x for x in before if "/debug/" not in x]
    assert {read_value(fs, f"{MEM}/{b}/valid_zones") for b in blocks} == {"Movable"}
    assert "hotremove failed, device left online" in "\n".join(s.klog.lines())
    write_text(fs, f"kernel/debug/cxlsys/memory/{knob}", "N" if value else "")
    set_state(fs, dd, "unplugged")
    assert state(fs, dd) == "unplugged"


def test_online_from_unplugged_with_the_range_busy_is_ebusy():
    s, fs, dd = boot()
    set_state(fs, dd, "unplugged")
    blocker = s.memory.iomem.request_region(*_first_range(s, dd), "someone else")
    assert_refused(fs, f"{DAX}/{dd}/state", "online_movable", errno.EBUSY)
    assert state(fs, dd) == "unplugged" and not dax_blocks(fs, dd)
    s.memory.iomem.release_region(blocker)
    set_state(fs, dd, "online_movable")
    assert state(fs, dd) == "online_movable"


def _first_range(s, dd):
    dev = s.dax_bus.find_device(dd)
    start, size, _ = dev.ranges[0]
    return start, size


def test_unbind_ignores_a_stale_state():
    """Every block offlined through memoryN/state: the state still reads online_movable, unbind
    removes the memory anyway (no leak); unbinding with memory online leaks it, logged."""
    s, fs, dd = boot()
    base = meminfo_kb(fs)
    set_state(fs, dd, "unplugged")
    set_state(fs, dd, "online_movable")
    for b in dax_blocks(fs, dd):
        write_text(fs, f"{MEM}/{b}/state", "offline")
    assert state(fs, dd) == "online_movable"
    write_text(fs, "bus/dax/drivers/kmem/unbind", dd)
    assert meminfo_kb(fs) <= base and f" : {dd}" not in fs.read(".cxlsys/proc/iomem").decode()
    assert not s.memory.leaked
    write_text(fs, "bus/dax/drivers/kmem/bind", dd)
    set_state(fs, dd, "unplugged")
    set_state(fs, dd, "online_movable")
    mt = meminfo_kb(fs)
    write_text(fs, "bus/dax/drivers/kmem/unbind", dd)
    assert meminfo_kb(fs) == mt and s.memory.leaked
    log = "\n".join(s.klog.lines())
    assert "stuck online until reboot" in log and "Hotplug regions stuck online until reboot" in log


def test_proc_files():
    s, fs, dd = boot()
    set_state(fs, dd, "unplugged")
    set_state(fs, dd, "online_movable")
    iomem = fs.read(".cxlsys/proc/iomem").decode().splitlines()
    (win,) = [i for i, line in enumerate(iomem) if line.endswith(" : CXL Window 1")]
    assert iomem[win + 1].endswith(" : region1") and iomem[win + 1].startswith("  ")
    assert iomem[win + 2].endswith(f" : {dd}") and iomem[win + 2].startswith("    ")
    assert iomem[win + 3].endswith(" : System RAM (kmem)") and iomem[win + 3].startswith("      ")
    mi = fs.read(".cxlsys/proc/meminfo").decode().splitlines()
    assert mi[0] == f"MemTotal:       {meminfo_kb(fs):>8} kB" and mi[1].startswith("MemFree:")
    assert ".cxlsys" not in fs.listdir("")                 # not a sysfs name: never listed


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.mount
def test_state_through_cxlsys_run():
    """examples/kmem-state.sh: the kernel selftest's checks as our own script (the selftest itself
    stays out of this repository: tools/kselftest-dax.sh runs it from a kernel tree)."""
    script = (EXAMPLES / "kmem-state.sh").read_text()
    out = cxlsys_run(script, kernel="7.3").stdout.splitlines()
    assert out == ["online online_movable 1", "kernel refused online_movable", "unplugged unplugged 1",
                   "bogus refused", "desync unplugged 1", "bound offline", "leak 1 2 1"]


def test_online_from_unplugged_is_a_partial_success_past_the_first_range():
    """§1.5: a later range that cannot be reserved is skipped, the write succeeds with what was added;
    the first range failing fails the write (test_online_from_unplugged_with_the_range_busy_is_ebusy)."""
    s, fs, dd = boot()
    dev = s.dax_bus.find_device(dd)
    start, size, _ = dev.ranges[0]
    write_text(fs, "bus/dax/drivers/kmem/unbind", dd)
    write_text(fs, f"{DAX}/{dd}/size", 0)
    quarter = size // 4
    for lo in (start, start + 2 * quarter):                  # two disjoint ranges: mapping0, mapping1
        write_text(fs, f"{DAX}/{dd}/mapping", f"{lo:x}-{lo + quarter - 1:x}")
    write_text(fs, "bus/dax/drivers/kmem/bind", dd)
    assert [r[:2] for r in dev.ranges] == [(start, quarter), (start + 2 * quarter, quarter)]
    set_state(fs, dd, "unplugged")
    base = meminfo_kb(fs)
    blocker = s.memory.iomem.request_region(start + 2 * quarter, quarter, "someone else")
    set_state(fs, dd, "online_movable")
    assert state(fs, dd) == "online_movable"
    assert meminfo_kb(fs) == base + (quarter >> 10)         # only mapping0 went in
    assert [line for line in fs.read(".cxlsys/proc/iomem").decode().splitlines() if line.endswith(f" : {dd}")] \
        == [f"    {start:08x}-{start + quarter - 1:08x} : {dd}"]     # window > region > dax
    set_state(fs, dd, "unplugged")
    s.memory.iomem.release_region(blocker)
    set_state(fs, dd, "online_movable")                      # both ranges this time
    assert meminfo_kb(fs) == base + (2 * quarter >> 10)
