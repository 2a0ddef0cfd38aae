"""v7.3's dax/kmem ``daxX.Y/state`` next to 6.12, the same scenario on both kernels: on 7.3 a whole
device goes unplugged and online as one write, on 6.12 the file does not exist.
``pytest examples/test_example_kmem_state.py [--cxl-backend=mount]``."""

import errno

import pytest


@pytest.mark.cxl(topology="cxl_test", kernel="7.3")
def test_whole_device_hotplug_on_7_3(cxl_kernel):
    k = cxl_kernel
    region, dax = k.provision_ram_region()
    state = f"/sys/bus/dax/devices/{dax}/state"
    assert k.read(state) == "offline\n"                   # bound under auto_online_blocks=offline
    base = k.meminfo_kb("MemTotal")
    k.write(state, "unplugged")
    k.write(state, "online_movable")
    assert k.meminfo_kb("MemTotal") > base
    with pytest.raises(OSError) as e:
        k.write(state, "online_kernel")                   # only from unplugged
    assert e.value.errno == errno.EBUSY
    k.write(state, "unplugged")
    assert k.meminfo_kb("MemTotal") == base and f" : {dax}\n" not in k.read("/proc/iomem")


@pytest.mark.cxl(topology="cxl_test", kernel="6.12")
def test_no_state_file_on_6_12(cxl_kernel):
    region, dax = cxl_kernel.provision_ram_region()
    assert not cxl_kernel.exists(f"/sys/bus/dax/devices/{dax}/state")
    assert cxl_kernel.exists(f"/sys/bus/dax/devices/{dax}/driver")
