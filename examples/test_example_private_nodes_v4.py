"""Private memory nodes v4 (unmerged RFC, the ops design), policy-proposals.md §A.7: the
cxl_mempolicy sample driver takes a type-3 device and makes its memory a private node that only
mbind()/set_mempolicy() users reach.  ``pytest examples/test_example_private_nodes_v4.py [--cxl-backend=mount]``."""

import errno

import pytest

pytestmark = pytest.mark.cxl(topology="qemu-hdm-db", kernel="7.3+private-nodes-v4")
BDF = "0000:0f:00.0"                                     # the first HDM-DB type-3 device (8086:0d93)
NODE = "/sys/devices/system/node"
HOTPLUG = "/sys/bus/cxl/devices/sysram_region0/hotplug"


def test_cxl_mempolicy_flow(cxl_kernel):
    k = cxl_kernel
    k.write("/sys/bus/pci/drivers/cxl_pci/unbind", BDF)
    k.write("/sys/bus/pci/drivers/cxl_mempolicy/bind", BDF)
    # node 1 is private, and (v4) listed in has_memory because it opted into mempolicy
    assert (k.read(f"{NODE}/has_private_memory"), k.read(f"{NODE}/has_memory")) == ("1\n", "0-1\n")
    assert "System RAM (CXL)" in k.read("/proc/iomem")
    assert k.mm.node_allows(1, "user_migrate") and k.mm.node_allows(1, "mempolicy")   # MIGRATION|MEMPOLICY
    assert not k.mm.node_allows(1, "reclaim") and not k.mm.node_allows(1, "ltpin")
    assert k.mm.alloc_candidates("GFP_HIGHUSER_MOVABLE") == [0]              # ./app: never node 1
    assert k.mm.alloc_candidates("GFP_HIGHUSER_MOVABLE|GFP_PRIVATE", nid=1) == [1]   # a driver's own
    assert k.mm.set_mempolicy("bind:1")["private"]                           # numactl --membind=1
    assert k.mm.alloc_candidates("GFP_HIGHUSER_MOVABLE") == [1]
    k.mm.set_mempolicy("default")
    with pytest.raises(OSError) as e:
        k.write(HOTPLUG, "online_movable")                                   # already added
    assert e.value.errno == errno.EBUSY
    k.write(HOTPLUG, "offline")                                              # offline + remove
    assert k.read(f"{NODE}/has_private_memory") == "\n"
    k.write(HOTPLUG, "online_movable")
    assert k.read(f"{NODE}/has_private_memory") == "1\n"
    k.write("/sys/bus/pci/drivers/cxl_mempolicy/unbind", BDF)
    assert (k.read(f"{NODE}/has_private_memory"), k.read(f"{NODE}/has_memory")) == ("\n", "0\n")
