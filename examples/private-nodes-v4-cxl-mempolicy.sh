#!/bin/bash
# Private memory nodes v4 (policy-proposals.md §A.7): the cxl_mempolicy sample driver takes a
# type-3 device from cxl_pci and makes its memory a private node (sysram_region0, MIGRATION|MEMPOLICY).
#   cxlsys run --topology qemu-hdm-db --kernel 7.3+private-nodes-v4 -- bash examples/private-nodes-v4-cxl-mempolicy.sh
set -e
BDF=0000:0f:00.0
n=/sys/devices/system/node
hp=/sys/bus/cxl/devices/sysram_region0/hotplug
echo $BDF > /sys/bus/pci/drivers/cxl_pci/unbind
echo $BDF > /sys/bus/pci/drivers/cxl_mempolicy/bind
echo "bound private=$(cat $n/has_private_memory) memory=$(cat $n/has_memory) $(grep -c 'System RAM (CXL)' /proc/iomem)"
if echo online_movable > $hp 2>/dev/null; then echo "add accepted"; else echo "add refused"; fi
echo offline > $hp
echo "offline private=[$(cat $n/has_private_memory)] memory=$(cat $n/has_memory)"
echo online_movable > $hp
echo "online private=$(cat $n/has_private_memory)"
echo $BDF > /sys/bus/pci/drivers/cxl_mempolicy/unbind
echo "unbound private=[$(cat $n/has_private_memory)] memory=$(cat $n/has_memory)"
