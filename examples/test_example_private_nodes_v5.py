"""Private memory nodes v5 (unmerged, the "caps" design) as a kernel developer tests it: a ram
region's dax device moved to the anondax driver becomes a private NUMA node, and default
allocations never land there.  ``pytest examples/test_example_private_nodes_v5.py [--cxl-backend=mount]``."""

import errno

import pytest

pytestmark = pytest.mark.cxl(topology="qemu-hdm-db", kernel="7.3+private-nodes-v5")
NODE = "/sys/devices/system/node"


def test_anondax_makes_a_private_node(cxl_kernel):
    k = cxl_kernel
    region, dax = k.provision_ram_region()                 # 256 MiB on the window's node 1
    x = f"/sys/bus/dax/devices/{dax}"
    k.write("/sys/bus/dax/drivers/kmem/unbind", dax)
    k.write("/sys/bus/dax/drivers/anondax/new_id", dax)
    assert k.read(f"{x}/hotplug") == "unplugged\n"
    k.write(f"{x}/mempolicy", "1")                          # caps, before the memory goes in
    k.write(f"{x}/reclaim", "1")
    k.write(f"{x}/hotplug", "online_movable")
    assert (k.read(f"{NODE}/has_private_memory"), k.read(f"{NODE}/has_memory")) == ("1\n", "0\n")
    for path, value, err in ((f"{x}/reclaim", "0", errno.EBUSY),              # caps: only while unplugged
                             (f"{x}/hotplug", "online_kernel", errno.EBUSY),  # no zone switch while online
                             (f"{x}/hotplug", "online", errno.EINVAL)):       # and no plain "online"
        with pytest.raises(OSError) as e:
            k.write(path, value)
        assert e.value.errno == err
    assert [s for s in ("reclaim", "mempolicy", "user_migrate", "hotunplug", "tiering", "ltpin")
            if k.mm.node_allows(1, s)] == ["reclaim", "mempolicy"]           # what the caps gate
    assert k.mm.alloc_candidates("GFP_HIGHUSER_MOVABLE") == [0]              # default: never node 1
    assert k.mm.alloc_candidates("GFP_HIGHUSER_MOVABLE|__GFP_THISNODE", nid=1) == []
    k.mm.set_mempolicy("bind:1")                                             # MEMPOLICY cap: allowed
    assert k.mm.alloc_candidates("GFP_HIGHUSER_MOVABLE") == [1]
    k.mm.set_mempolicy("default")
    k.write(f"{x}/hotplug", "unplugged")
    assert k.read(f"{NODE}/has_private_memory") == "\n"
