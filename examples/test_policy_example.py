"""A memory-policy test as a kernel developer writes one, with the ``cxl_kernel`` fixture of cxlsys's
pytest plugin (installed with the package: no conftest, no ``-p`` needed).

    pytest examples/test_policy_example.py                       # in-process: no root, milliseconds
    pytest examples/test_policy_example.py --cxl-backend=mount   # the same through a real FUSE mount

The marker picks the machine: QEMU's HDM-DB command line (a pxb-cxl host bridge, a switch, four
256 MiB type-3 devices) on a v7.3 kernel.
"""

import errno

import pytest

pytestmark = pytest.mark.cxl(topology="qemu-hdm-db", kernel="7.3")


def test_cxl_memory_goes_online_and_serves_movable_allocations(cxl_kernel):
    before = cxl_kernel.meminfo_kb("MemTotal")

    # the admin's flow: a 256 MiB ram region, its dax device bound to kmem, onlined movable
    region, dax = cxl_kernel.provision_ram_region(size=256 << 20)
    assert cxl_kernel.read(f"/sys/bus/cxl/devices/{region}/commit") == "1\n"
    cxl_kernel.online(dax, zone="online_movable")
    assert cxl_kernel.read(f"/sys/bus/dax/devices/{dax}/state") == "online_movable\n"

    # /proc/meminfo grew by exactly the region; /proc/iomem shows kmem's System RAM
    assert cxl_kernel.meminfo_kb("MemTotal") == before + (256 << 20 >> 10)
    assert "System RAM (kmem)" in cxl_kernel.read("/proc/iomem")

    # where a page-cache/anonymous allocation may come from: boot memory's node 0 among them
    nodes = cxl_kernel.mm.alloc_candidates("GFP_HIGHUSER_MOVABLE")
    assert isinstance(nodes, list) and all(isinstance(n, int) for n in nodes)
    assert 0 in nodes


def test_a_refused_store_raises_the_kernels_errno(cxl_kernel):
    region, dax = cxl_kernel.provision_ram_region(size=256 << 20)
    with pytest.raises(OSError) as e:                    # v7.3: "offline" can be read, not written
        cxl_kernel.write(f"/sys/bus/dax/devices/{dax}/state", "offline")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(FileNotFoundError):
        cxl_kernel.read("/sys/bus/dax/devices/dax9.9/state")
