#!/bin/bash
# Run the kernel's own dax/kmem hotplug selftest, unmodified, against the model:
#   tools/kselftest-dax.sh SELFTESTS_DIR [KERNEL]
# SELFTESTS_DIR holds dax/dax-kmem-hotplug.sh and kselftest/ktap_helpers.sh (a kernel tree's
# tools/testing/selftests, or a copy of those two files; they are GPL kernel code and stay out of
# this repository).  KERNEL defaults to 7.3 (under 6.12 there is no daxX.Y/state: the test skips).
# Inside `cxlsys run --topology cxl_test`, a 2-way 1 GiB ram region is provisioned with sysfs writes
# and bound; its dax device (on kmem) is the device under test, with the destructive unbind test on.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(readlink -f "${1:?usage: tools/kselftest-dax.sh SELFTESTS_DIR [KERNEL]}")
kernel=${2:-7.3}
test -x "$dir/dax/dax-kmem-hotplug.sh" -o -f "$dir/dax/dax-kmem-hotplug.sh" || {
    echo "kselftest-dax: $dir/dax/dax-kmem-hotplug.sh not found" >&2; exit 2; }
exec .venv/bin/cxlsys run --topology cxl_test --kernel "$kernel" -- bash -c '
set -e
hb() { cxl list -M -p cxl_host_bridge.$1 | jq -r ".[$2].memdev"; }
d=/sys/bus/cxl/devices
m0=$(hb 0 1); m1=$(hb 1 1)
free() { cxl list -Di -d endpoint -m $1 | jq -r "map(select(.dpa_size == 0 or .dpa_size == null)) | .[0].decoder"; }
e0=$(free $m0); e1=$(free $m1)
for e in $e0 $e1; do echo ram > $d/$e/mode; echo 0x20000000 > $d/$e/dpa_size; done
r=$(cat $d/decoder0.1/create_ram_region); echo $r > $d/decoder0.1/create_ram_region
echo 4096 > $d/$r/interleave_granularity; echo 2 > $d/$r/interleave_ways; echo 0x40000000 > $d/$r/size
echo $e0 > $d/$r/target0; echo $e1 > $d/$r/target1; echo 1 > $d/$r/commit
echo $r > /sys/bus/cxl/drivers/cxl_region/bind
dev=dax${r#region}.0
echo "# provisioned $r, $dev on $(basename $(readlink /sys/bus/dax/devices/$dev/driver))"
DAX_KMEM_TEST_DEV=$dev DAX_KMEM_TEST_UNBIND=1 bash "$1/dax/dax-kmem-hotplug.sh"
' kselftest "$dir"
