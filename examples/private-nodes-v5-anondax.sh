#!/bin/bash
# Private memory nodes v5: a ram region's dax device moved to anondax becomes a private node.
#   cxlsys run --topology qemu-hdm-db --kernel 7.3+private-nodes-v5 -- bash examples/private-nodes-v5-anondax.sh
set -e
d=/sys/bus/cxl/devices
dec() { cxl list -Di -d endpoint -m $1 | jq -r '.[0].decoder'; }
e1=$(dec $(cxl list -M | jq -r 'map(select(.serial == 1)) | .[0].memdev'))
e2=$(dec $(cxl list -M | jq -r 'map(select(.serial == 2)) | .[0].memdev'))
for e in $e1 $e2; do echo ram > $d/$e/mode; echo 0x10000000 > $d/$e/dpa_size; done
r=$(cat $d/decoder0.0/create_ram_region); echo $r > $d/decoder0.0/create_ram_region
echo 4096 > $d/$r/interleave_granularity; echo 2 > $d/$r/interleave_ways; echo 0x20000000 > $d/$r/size
echo $e1 > $d/$r/target0; echo $e2 > $d/$r/target1; echo 1 > $d/$r/commit
echo $r > /sys/bus/cxl/drivers/cxl_region/bind
dax=dax${r#region}.0; x=/sys/bus/dax/devices/$dax; n=/sys/devices/system/node
echo $dax > /sys/bus/dax/drivers/kmem/unbind
echo $dax > /sys/bus/dax/drivers/anondax/new_id
echo "bound $(basename $(readlink $x/driver)) $(cat $x/hotplug)"
echo 1 > $x/mempolicy; echo 1 > $x/reclaim
echo online_movable > $x/hotplug
echo "online private=$(cat $n/has_private_memory) memory=$(cat $n/has_memory)"
if echo 0 > $x/reclaim 2>/dev/null; then echo "cap accepted"; else echo "cap refused"; fi
if echo online_kernel > $x/hotplug 2>/dev/null; then echo "zone accepted"; else echo "zone refused"; fi
echo unplugged > $x/hotplug
echo "unplugged private=[$(cat $n/has_private_memory)] $(grep -c anondax /proc/iomem || true)"
