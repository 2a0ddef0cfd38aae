"""The large-2t fixture: a 2 TiB ram region = 16384 memory blocks of 128 MiB on CPU-less node 2.
Correctness at scale (counts), in-process and with the real daxctl through the mount; the timings are
in bench/bench_hotplug.py, not here."""

import json

import pytest

from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.testing import cxlsys_run, read_text

TiB = 1 << 40
BS = 128 << 20
N = 2 * TiB // BS
MEM = "devices/system/memory"
NODE = "devices/system/node"
PARAMS = "module/memory_hotplug/parameters"


def test_large_region_onlines_all_blocks_in_process():
    s = System.boot("large-2t")
    fs = Sysfs(s)
    assert N == 16384
    dd = s.dax_bus.find_device("dax0.0")
    assert dd.size == 2 * TiB and dd.driver.name == "kmem" and dd.target_node == 2
    start = dd.ranges[0][0]
    idx = sorted(s.memory.blocks)
    assert idx == list(range(start // BS, start // BS + N))
    node2 = [x for x in fs.listdir(f"{NODE}/node2") if x.startswith("memory")]
    assert len(node2) == N
    assert len([x for x in fs.listdir("bus/memory/devices")]) == N
    assert read_text(fs, f"{NODE}/online") == "0-2\n" and read_text(fs, f"{NODE}/has_memory") == "0-1\n"
    # what daxctl online-memory does: online_movable into every offline block of the device
    for i in idx:
        fs.write(f"{NODE}/node2/memory{i}/state", b"online_movable\0")
    states = [read_text(fs, f"{MEM}/memory{i}/state") for i in idx]
    zones = [read_text(fs, f"{MEM}/memory{i}/valid_zones") for i in idx]
    assert states.count("online\n") == N and zones.count("Movable\n") == N
    total_kb = int(read_text(fs, f"{NODE}/node2/meminfo").split()[3])
    assert total_kb == 2 * TiB >> 10
    assert read_text(fs, f"{NODE}/has_memory") == "0-2\n" and read_text(fs, f"{NODE}/has_normal_memory") == "0-1\n"
    assert read_text(fs, "devices/virtual/memory_tiering/memory_tier22/nodelist") == "2\n"
    # the automatic choice for such a block: 2 TiB do not fit 301% of the 128 GiB of boot memory
    for i in idx[:3]:
        fs.write(f"{MEM}/memory{i}/state", b"offline\0")
    fs.write(f"{PARAMS}/online_policy", b"auto-movable\0")
    # auto-movable: the group's 3 missing blocks would be MOVABLE on top of ~2 TiB, far beyond 301%
    # of the 128 GiB of boot memory (and node 2 has none of its own): ZONE_NORMAL
    assert read_text(fs, f"{MEM}/memory{idx[0]}/valid_zones") == "Normal Movable\n"
    for i in idx:
        if read_text(fs, f"{MEM}/memory{i}/state") == "online\n":
            fs.write(f"{MEM}/memory{i}/state", b"offline\0")
    assert read_text(fs, f"{NODE}/has_memory") == "0-1\n"
    assert "memory_tier22" not in fs.listdir("devices/virtual/memory_tiering")
    fs.write("bus/dax/drivers/kmem/unbind", b"dax0.0\0")
    assert not s.memory.blocks and "node2" not in fs.listdir(NODE)
    assert read_text(fs, f"{NODE}/online") == "0-1\n"


@pytest.mark.mount
def test_large_region_onlines_through_daxctl():
    script = r'''
    daxctl list -D | jq -c '.[0] | [.chardev, .size, .target_node, .mode, .online_memblocks, .total_memblocks]'
    daxctl online-memory dax0.0 2>&1
    daxctl list -D | jq -c '.[0] | [.online_memblocks, .total_memblocks, .movable]'
    awk '/MemTotal/ {print $4}' /sys/devices/system/node/node2/meminfo
    cat /sys/devices/system/node/has_memory
    cat /sys/devices/system/memory/memory*/state | sort | uniq -c | awk '{print $2 ":" $1}'
    '''
    out = cxlsys_run(script, topology="large-2t", timeout=1800).stdout.split("\n")
    assert json.loads(out[0]) == ["dax0.0", 2 * TiB, 2, "system-ram", 0, N]
    assert out[1] == "onlined memory for 1 device"
    assert json.loads(out[2]) == [N, N, True]
    assert out[3:6] == [str(2 * TiB >> 10), "0-2", f"online:{N}"]
