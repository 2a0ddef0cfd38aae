#!/bin/bash
# v7.3's whole-device dax/kmem hotplug (daxX.Y/state) on a ram region provisioned with sysfs writes,
# with the model's /proc/meminfo and /proc/iomem: the kernel selftest's checks, in our own words.
#   cxlsys run --topology cxl_test --kernel 7.3 -- bash examples/kmem-state.sh
set -e
hb() { cxl list -M -p cxl_host_bridge.$1 | jq -r ".[$2].memdev"; }
d=/sys/bus/cxl/devices
free() { cxl list -Di -d endpoint -m $1 | jq -r 'map(select(.dpa_size == 0 or .dpa_size == null)) | .[0].decoder'; }
e0=$(free $(hb 0 1)); e1=$(free $(hb 1 1))
for e in $e0 $e1; do echo ram > $d/$e/mode; echo 0x20000000 > $d/$e/dpa_size; done
r=$(cat $d/decoder0.1/create_ram_region); echo $r > $d/decoder0.1/create_ram_region
echo 4096 > $d/$r/interleave_granularity; echo 2 > $d/$r/interleave_ways; echo 0x40000000 > $d/$r/size
echo $e0 > $d/$r/target0; echo $e1 > $d/$r/target1
echo 1 > $d/$r/commit
echo $r > /sys/bus/cxl/drivers/cxl_region/bind
dev=dax${r#region}.0
hp=/sys/bus/dax/devices/$dev/state
mt() { awk '/^MemTotal:/ {print $2}' /proc/meminfo; }
echo unplugged > $hp; base=$(mt)
echo online_movable > $hp; on=$(mt); echo "online $(cat $hp) $((on > base))"
echo online_movable > $hp
if echo online_kernel > $hp 2>/dev/null; then echo "kernel accepted"; else echo "kernel refused $(cat $hp)"; fi
echo unplugged > $hp; echo "unplugged $(cat $hp) $(( $(mt) == base ))"
if echo bogus_state > $hp 2>/dev/null; then echo "bogus accepted"; else echo "bogus refused"; fi
echo online_movable > $hp
bs=$(cat /sys/devices/system/memory/block_size_bytes)
r0=$(grep -E " : $dev\$" /proc/iomem | head -1); r0=${r0%% :*}; r0=${r0// /}
blk=memory$(( 0x${r0%-*} / 0x$bs ))
echo offline > /sys/devices/system/memory/$blk/state
echo unplugged > $hp; echo "desync $(cat $hp) $(( $(mt) <= base ))"
echo $dev > /sys/bus/dax/drivers/kmem/unbind
echo offline > /sys/devices/system/memory/auto_online_blocks
echo $dev > /sys/bus/dax/drivers/kmem/bind
echo "bound $(cat $hp)"
echo unplugged > $hp; echo online_movable > $hp; mt_on=$(mt)
dmesg -C
echo $dev > /sys/bus/dax/drivers/kmem/unbind
echo "leak $(( $(mt) >= mt_on )) $(grep -c 'stuck online' <(dmesg)) $(grep -cE " : $dev\$" /proc/iomem)"
