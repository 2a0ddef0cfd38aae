"""Debian's daxctl 76.1 (and cxl 76.1) against the mount in `cxlsys run`: the dax bus, kmem and the
memory hotplug policies as a real user drives them."""

import itertools
import json

import pytest
from hotplug_topo import GiB, MiB, write_topology

from cxlsys.testing import RAM_REGION_SETUP, cxlsys_run

pytestmark = pytest.mark.mount

# a 2-way ram region on decoder0.1 made with sysfs writes (cxl 76.1 refuses create-region -t ram),
# committed, then enabled with cxl; $r is the region, $dev its dax device
MAKE_RAM_REGION = RAM_REGION_SETUP + r'''
echo 1 > $d/$r/commit
cxl enable-region $r 2>/dev/null
dev=dax${r#region}.0
'''

STATE = r'''
st() {  # one line of JSON: the device as daxctl sees it, and the kernel's view of node 0
  l=$(daxctl list -d $dev | jq -c '.[0] | {mode, on: .online_memblocks, total: .total_memblocks, movable}')
  z=$(for m in $(ls /sys/devices/system/node/node0 | grep '^memory[0-9]'); do
        p=/sys/devices/system/memory/$m; idx=$((0x$(cat $p/phys_index)))
        [ $((idx * 0x8000000)) -ge $(($(cat /sys/bus/dax/devices/$dev/resource))) ] && cat $p/valid_zones
      done | sort | uniq -c | awk '{printf "%s:%s,", $2, $1}')
  t=$(awk '/MemTotal/ {print $4}' /sys/devices/system/node/node0/meminfo)
  echo "{\"$1\": {\"dax\": $l, \"zones\": \"$z\", \"memtotal\": $t, "\
"\"has_memory\": \"$(cat /sys/devices/system/node/has_memory)\"}}"
}
'''


def lines_json(out: str) -> dict:
    res = {}
    for line in out.splitlines():
        if line.startswith("{"):
            res.update(json.loads(line))
    return res


def test_done_when_ram_region_through_daxctl():
    """The issue's acceptance script: cxl_test, a 2-way ram region on decoder0.1, daxctl flows, teardown."""
    script = MAKE_RAM_REGION + STATE + r'''
    cat /sys/devices/system/memory/auto_online_blocks /sys/devices/system/memory/block_size_bytes
    daxctl list -RDM -r ${r#region} | jq -c '.[0] | [.size, .align, (.devices | length), .devices[0].mappings[0].size]'
    st bound
    daxctl online-memory $dev > /dev/null 2>&1; st online
    daxctl offline-memory $dev > /dev/null 2>&1; st offline
    daxctl reconfigure-device --mode=devdax $dev > /dev/null 2>&1; st devdax
    test -e /dev/$dev && echo "chardev $(stat -c %t:%T /dev/$dev)"
    daxctl reconfigure-device --mode=system-ram $dev > /dev/null 2>&1; st sysram
    daxctl reconfigure-device --mode=devdax -f $dev > /dev/null 2>&1; st devdax_forced
    daxctl reconfigure-device --mode=system-ram --no-online $dev > /dev/null 2>&1; st sysram_no_online
    daxctl reconfigure-device --mode=devdax $dev > /dev/null 2>&1; st devdax2
    daxctl reconfigure-device --mode=system-ram --no-movable $dev > /dev/null 2>&1; st sysram_no_movable
    daxctl offline-memory $dev > /dev/null 2>&1
    cxl disable-region $r 2>/dev/null; cxl destroy-region $r 2>/dev/null
    echo "regions $(cxl list -R | jq length) dax $(daxctl list -D | jq length) devnode $(ls /dev | grep -c "^$dev\$")"
    ls /sys/devices/system/memory | grep -c '^memory[0-9]'
    '''
    out = cxlsys_run(script).stdout
    lines = out.splitlines()
    assert lines[:3] == ["offline", "8000000", f"[{GiB},2097152,1,{GiB}]"]
    st = lines_json(out)
    boot_kb = 4 * GiB >> 10                # node 0: 4 GiB of DRAM (the auto region's blocks stay offline)
    sysram = {"mode": "system-ram", "total": 8}
    assert st["bound"] == {"dax": {**sysram, "on": 0, "movable": None}, "zones": "Normal:8,",
                           "memtotal": boot_kb, "has_memory": "0"}
    # online-memory: ZONE_MOVABLE, every block online, MemTotal + 1 GiB
    assert st["online"] == {"dax": {**sysram, "on": 8, "movable": True}, "zones": "Movable:8,",
                            "memtotal": boot_kb + (GiB >> 10), "has_memory": "0"}
    assert st["offline"] == st["bound"]
    assert st["devdax"]["dax"] == {"mode": "devdax", "on": None, "total": None, "movable": None}
    assert st["devdax"]["zones"] == "" and st["devdax"]["memtotal"] == boot_kb
    assert "chardev fe:" in out
    assert st["sysram"] == st["online"]                     # reconfigure onlines movable by default
    assert st["devdax_forced"] == st["devdax"]              # -f offlines first
    assert st["sysram_no_online"] == st["bound"]
    assert st["devdax2"] == st["devdax"]
    # --no-movable writes "online": the automatic choice, ZONE_NORMAL for a block nothing surrounds
    assert st["sysram_no_movable"] == {"dax": {**sysram, "on": 8, "movable": False}, "zones": "Normal:8,",
                                       "memtotal": boot_kb + (GiB >> 10), "has_memory": "0"}
    assert lines[-2] == "regions 1 dax 1 devnode 0"
    assert lines[-1] == "4"                                  # only the auto region's blocks remain


def test_auto_online_policy_makes_daxctl_refuse_without_force():
    script = MAKE_RAM_REGION + r'''
    echo online > /sys/devices/system/memory/auto_online_blocks
    daxctl reconfigure-device --mode=devdax -f $dev > /dev/null 2>&1
    set +e
    daxctl reconfigure-device --mode=system-ram $dev; echo "rc=$?"
    set -e
    readlink /sys/bus/dax/devices/$dev/driver | xargs basename
    daxctl reconfigure-device --mode=system-ram -f $dev 2>/dev/null | jq -c '.[0] | [.online_memblocks, .movable]'
    # the kernel onlined at bind (auto_online_blocks=online, contig-zones: ZONE_NORMAL); daxctl found
    # everything online already
    cat /sys/bus/dax/devices/$dev/target_node
    '''
    r = cxlsys_run(script)
    assert "kernel policy will auto-online memory, aborting" in r.stdout + r.stderr
    lines = r.stdout.split()
    assert "rc=240" in lines                             # -EBUSY
    assert lines[lines.index("rc=240") + 1] == "device_dax"   # nothing changed
    assert lines[-2:] == ["[8,false]", "0"]


def test_forced_region_teardown_leaks_online_memory_until_reboot():
    script = MAKE_RAM_REGION + r'''
    daxctl online-memory $dev > /dev/null 2>&1
    cxl disable-region $r 2>/dev/null
    echo "disabled $(test -e /sys/bus/cxl/devices/$r/dax_region${r#region} && echo dax_region || echo gone)"
    echo "blocks $(ls /sys/devices/system/memory | grep -c '^memory[0-9]')"
    echo "online $(cat /sys/devices/system/memory/memory*/state | grep -c '^online')"
    dmesg | grep -c "cannot be hotremoved until the next reboot"
    cat /sys/kernel/debug/cxlsys/memory/leaked | wc -l
    cxl destroy-region $r 2>/dev/null
    # the leaked HPA stays busy: a new region on the same window gets the next free range
    r2=$(cat $d/decoder0.1/create_ram_region); echo $r2 > $d/decoder0.1/create_ram_region
    echo 4096 > $d/$r2/interleave_granularity; echo 2 > $d/$r2/interleave_ways; echo 0x40000000 > $d/$r2/size
    echo "hpa $(cat $d/$r2/resource)"
    '''
    out = cxlsys_run(script).stdout.split("\n")
    assert out[:5] == ["disabled gone", "blocks 12", "online 8", "1", "1"]
    first = int(out[5].split()[1], 16)
    # "reboot": a fresh machine has the window free again
    again = cxlsys_run(MAKE_RAM_REGION + 'cat $d/$r/resource\n').stdout.split()
    assert int(again[-1], 16) < first


def test_offline_fails_ebusy_on_unmovable_pages(tmp_path):
    topo = write_topology(tmp_path, unmovable=True, window_node=0)
    script = r'''
    set +e
    daxctl online-memory --no-movable dax0.0 > /dev/null 2>&1; echo "online rc=$?"
    daxctl offline-memory dax0.0; echo "offline rc=$?"
    daxctl reconfigure-device --mode=devdax -f dax0.0; echo "devdax rc=$?"
    daxctl list -d dax0.0 | jq -c '.[0] | [.mode, .online_memblocks, .movable]'
    # the per-block knob: one ZONE_MOVABLE block with unmovable pages (a long-term pin, say)
    echo N > /sys/kernel/debug/cxlsys/memory/kernel_zone_unmovable
    daxctl offline-memory dax0.0 > /dev/null 2>&1; echo "offline2 rc=$?"
    daxctl online-memory dax0.0 > /dev/null 2>&1
    # the block daxctl reaches last: it walks node0's directory in readdir (kernfs hash) order
    bs=$((0x$(cat /sys/devices/system/memory/block_size_bytes)))
    s=$(( $(cat /sys/bus/dax/devices/dax0.0/resource) / bs )); e=$(( s + $(cat /sys/bus/dax/devices/dax0.0/size) / bs ))
    b=$(ls -f /sys/devices/system/node/node0 | sed -n 's/^memory//p' | awk -v s=$s -v e=$e '$1>=s && $1<e' | tail -1)
    echo $b > /sys/kernel/debug/cxlsys/memory/unmovable
    daxctl offline-memory dax0.0 > /dev/null 2>&1; echo "offline3 rc=$?"
    daxctl list -d dax0.0 | jq -c '.[0] | [.online_memblocks, .movable]'
    '''
    r = cxlsys_run(script, topology=topo)
    lines = r.stdout.split("\n")
    assert lines[0] == "online rc=0"
    assert "offline rc=240" in lines and "devdax rc=240" in lines
    assert lines[lines.index("devdax rc=240") + 1] == '["system-ram",32,false]'
    assert "Device or resource busy" in r.stderr
    assert "offline2 rc=0" in lines and "offline3 rc=240" in lines
    assert lines[lines.index("offline3 rc=240") + 1] == "[1,null]"


def _matrix_script():
    return r'''
P=/sys/module/memory_hotplug/parameters
for pol in contig-zones auto-movable; do
 echo $pol > $P/online_policy
 for ao in offline online online_kernel online_movable; do
  echo $ao > /sys/devices/system/memory/auto_online_blocks
  daxctl reconfigure-device -f --mode=devdax dax0.0 > /dev/null 2>&1
  daxctl reconfigure-device -f --no-online --mode=system-ram dax0.0 > /dev/null 2>&1
  first=$(ls -d /sys/devices/system/node/node1/memory[0-9]* | sort -V | head -1)
  echo "$pol $ao $(daxctl list -d dax0.0 | jq -c '.[0] | [.online_memblocks, .total_memblocks, .movable]') "\
"$(cat $first/valid_zones | tr ' ' _) $(awk '/MemTotal/ {print $4}' /sys/devices/system/node/node1/meminfo) "\
"$(ls /sys/devices/virtual/memory_tiering | grep -c memory_tier22)"
 done
done
'''


@pytest.mark.parametrize("bs,memmap", list(itertools.product(("128M", "2G"), (False, True))))
def test_policy_combinations_through_daxctl(tmp_path, bs, memmap):
    """auto_online_blocks x online_policy switched at run time (sysfs + module parameters), memmap_on_memory
    x block size per boot; kmem re-added for each combination by daxctl reconfigure-device."""
    from test_memory_hotplug import expect_valid_zones_offline, expect_zone
    topo = write_topology(tmp_path, block_size=bs, memmap=memmap)
    out = cxlsys_run(_matrix_script(), topology=topo).stdout.strip().split("\n")
    bsz = {"128M": 128 * MiB, "2G": 2 * GiB}[bs]
    n = 4 * GiB // bsz
    per_block = bsz - (bsz // 4096 * 64 if memmap else 0)
    want = []
    for pol in ("contig-zones", "auto-movable"):
        for ao in ("offline", "online", "online_kernel", "online_movable"):
            z = expect_zone(ao, pol, 1)
            on = n if z else 0
            mov = {None: "null", "Normal": "false", "Movable": "true"}[z]
            vz = z if z else expect_valid_zones_offline(pol, 1).replace(" ", "_")
            want.append(f"{pol} {ao} [{on},{n},{mov}] {vz} {on * per_block >> 10} {1 if z else 0}")
    assert out == want


def test_create_and_destroy_devices_with_sizes():
    script = r'''
    set +e
    daxctl reconfigure-device --mode=devdax dax0.0 > /dev/null 2>&1
    daxctl destroy-device -f dax0.0 > /dev/null 2>&1; echo "destroy0 rc=$?"
    daxctl create-device -r 0 -s 256M 2>/dev/null | jq -c '.[0] | [.chardev, .size, .mode]'
    daxctl create-device -r 0 -s 128M -a 4096 2>/dev/null | jq -c '.[0] | [.chardev, .size, .align]'
    daxctl create-device -r 0 -s 1G > /dev/null 2>&1; echo "too big rc=$?"
    cat /sys/bus/cxl/devices/dax_region0/dax_region/available_size
    daxctl create-device -r 0 2>/dev/null | jq -c '.[0] | [.chardev, .size]'
    cat /sys/bus/cxl/devices/dax_region0/dax_region/available_size
    daxctl destroy-device dax0.1 > /dev/null 2>&1; echo "not forced rc=$?"
    daxctl destroy-device -f dax0.1 > /dev/null 2>&1; echo "destroy1 rc=$?"
    daxctl list -D -i | jq -c 'map([.chardev, .size]) | sort'
    ls /dev | grep '^dax' | tr '\n' ' '; echo
    ls /sys/dev/char | grep '^254:' | sort | tr '\n' ' '; echo
    '''
    out = cxlsys_run(script).stdout.split("\n")
    assert out[0] == "destroy0 rc=240"          # id 0 cannot be deleted (v76.1 reports EBUSY); size is 0 now
    assert out[1] == f'["dax0.1",{256 * MiB},"devdax"]'
    assert out[2] == f'["dax0.2",{128 * MiB},4096]'
    assert out[3] == "too big rc=250"            # the failed size write is reported as ENXIO
    assert out[4] == f"{128 * MiB}"
    # daxctl writes create (making dax0.4) but then sizes the region's seed: dax0.3, which the
    # failed attempt left behind; dax0.4 stays as an empty leftover, as on a kernel
    assert out[5] == f'["dax0.3",{128 * MiB}]'
    assert out[6] == "0"
    assert out[7] == "not forced rc=250" and out[8] == "destroy1 rc=0"
    assert out[9] == f'[["dax0.0",0],["dax0.2",{128 * MiB}],["dax0.3",{128 * MiB}],["dax0.4",0]]'
    assert out[10].split() == ["dax0.0", "dax0.2", "dax0.3", "dax0.4"]
    assert out[11].split() == ["254:0", "254:2", "254:3", "254:4"]


def test_memory_hotplug_parameters_and_tiers_through_the_mount(tmp_path):
    topo = write_topology(tmp_path, auto="online_movable")
    script = r'''
    cd /sys/module/memory_hotplug/parameters
    cat online_policy auto_movable_ratio auto_movable_numa_aware memmap_on_memory
    echo auto-movable > online_policy; echo 120 > auto_movable_ratio; echo N > auto_movable_numa_aware
    cat online_policy auto_movable_ratio auto_movable_numa_aware
    set +e; echo Y > memmap_on_memory; echo "memmap rc=$?"; echo bogus > online_policy; echo "policy rc=$?"; set -e
    ls /sys/devices/virtual/memory_tiering | tr '\n' ' '; echo
    cat /sys/devices/virtual/memory_tiering/memory_tier22/nodelist \
        /sys/devices/virtual/memory_tiering/memory_tier4/nodelist
    readlink -f /sys/bus/memory_tiering/devices/memory_tier22
    cat /sys/devices/system/node/has_memory /sys/devices/system/node/has_normal_memory /sys/devices/system/node/online
    cat /sys/devices/system/node/node1/distance
    daxctl offline-memory dax0.0 > /dev/null 2>&1
    ls /sys/devices/virtual/memory_tiering | tr '\n' ' '; echo
    cat /sys/devices/system/node/has_memory
    '''
    out = cxlsys_run(script, topology=topo).stdout.split("\n")
    assert out[:4] == ["contig-zones", "301", "Y", "N"]
    assert out[4:7] == ["auto-movable", "120", "N"]
    assert out[7].startswith("memmap rc=1") and out[8] == "policy rc=1"
    assert out[9].split() == ["memory_tier22", "memory_tier4", "uevent"]
    assert out[10:12] == ["1", "0"]
    assert out[12] == "/sys/devices/virtual/memory_tiering/memory_tier22"
    assert out[13:17] == ["0-1", "0", "0-1", "24 10"]
    assert out[17].split() == ["memory_tier4", "uevent"]
    assert out[18] == "0"
