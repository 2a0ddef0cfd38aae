"""In-process tests of the object model: enumeration, ids, lifecycle (bind/unbind), parsers."""

import errno

import pytest

from cxlsys.cxl.core.memdev import CxlMemdev
from cxlsys.cxl.core.port import CxlPort, CxlRootDecoder
from cxlsys.cxl.core.region import COMMIT, CxlRegion
from cxlsys.errors import KernelError
from cxlsys.ida import IDA
from cxlsys.kstrto import kstrtobool, kstrtoint, kstrtoull, parse_size, sysfs_streq
from cxlsys.system import System
from cxlsys.testing import devices, ports

# ----------------------------------------------------------------- parsers

@pytest.mark.parametrize("text,val", [("0x10", 16), ("010", 8), ("10\n", 10), ("+5", 5), ("0", 0),
                                      ("0x10000000\n", 1 << 28)])
def test_kstrtoull_accepts(text, val):
    assert kstrtoull(text) == val


@pytest.mark.parametrize("text,err", [("", errno.EINVAL), ("x", errno.EINVAL), ("-1", errno.EINVAL),
                                      ("1 ", errno.EINVAL), ("0x", errno.EINVAL), ("08", errno.EINVAL),
                                      ("18446744073709551616", errno.ERANGE), ("1\n\n", errno.EINVAL)])
def test_kstrtoull_refuses(text, err):
    with pytest.raises(KernelError) as e:
        kstrtoull(text)
    assert e.value.errno == err


def test_kstrtoint_sign_and_range():
    assert kstrtoint("-256") == -256
    with pytest.raises(KernelError) as e:
        kstrtoint("2147483648")
    assert e.value.errno == errno.ERANGE


@pytest.mark.parametrize("text,val", [("1", True), ("y", True), ("Yes", True), ("on", True), ("0", False),
                                      ("n", False), ("off", False), ("false", False)])
def test_kstrtobool(text, val):
    assert kstrtobool(text) is val


def test_kstrtobool_refuses_garbage():
    with pytest.raises(KernelError) as e:
        kstrtobool("maybe")
    assert e.value.errno == errno.EINVAL


def test_sysfs_streq_and_sizes():
    assert sysfs_streq("ram\n", "ram") and not sysfs_streq("ram\n\n", "ram")
    assert parse_size("256M") == 256 << 20 and parse_size("0x10") == 16 and parse_size(4096) == 4096
    assert parse_size("2G") == 2 << 30


def test_ida_lowest_free():
    ida = IDA("t")
    assert [ida.alloc() for _ in range(3)] == [0, 1, 2]
    ida.free(1)
    assert ida.alloc() == 1 and ida.alloc() == 3


# ----------------------------------------------------------------- enumeration

def test_cxl_test_enumeration(system):
    root = ports(system, "root")
    assert [p.name for p in root] == ["root0"]
    assert root[0].uport.name == "cxl_acpi.0"
    assert sorted(root[0].dports) == [0, 1, 2, 3]
    hb = [p for p in ports(system, "port") if p.parent_port.kind == "root"]
    assert sorted(p.uport.name for p in hb) == ["cxl_host_bridge.0", "cxl_host_bridge.1", "cxl_host_bridge.2"]
    assert {p.uport.name: len(p.dports) for p in hb} == {"cxl_host_bridge.0": 2, "cxl_host_bridge.1": 2,
                                                         "cxl_host_bridge.2": 1}
    sw = [p for p in ports(system, "port") if p.parent_port.kind != "root"]
    assert len(sw) == 5 and all(len(p.dports) == 2 for p in sw)
    eps = ports(system, "endpoint")
    assert len(eps) == 11
    rcd_ep = [e for e in eps if e.uport.parent.name == "cxl_rcd.10"]
    assert len(rcd_ep) == 1 and rcd_ep[0].parent_port is root[0]
    mds = devices(system, CxlMemdev)
    assert len(mds) == 11 and all(m.driver is not None for m in mds)
    assert sorted(m.info.serial for m in mds) == list(range(11))
    # one id space for root/port/endpoint
    ids = sorted(p.port_id for p in devices(system, CxlPort))
    assert ids == list(range(len(ids)))


def test_root_decoders(system):
    rds = devices(system, CxlRootDecoder)
    assert [d.name for d in rds] == [f"decoder0.{i}" for i in range(6)]
    assert [d.hpa_size >> 20 for d in rds] == [1024, 2048, 1024, 2048, 1024, 256]
    assert [d.interleave_ways for d in rds] == [1, 2, 1, 2, 1, 1]
    assert [d.interleave_granularity for d in rds] == [256, 4096, 256, 4096, 256, 256]
    assert [d.qos_class for d in rds] == [42] * 6
    # every window reserved a region id; region0 took decoder0.0's, which moved to the lowest free id
    assert [d.next_region_id for d in rds] == [6, 1, 2, 3, 4, 5]


def test_xor_windows():
    s = System.boot("cxl_test", {"interleave_arithmetic": 1})
    rds = devices(s, CxlRootDecoder)
    assert [(d.hpa_size >> 30, d.interleave_ways, d.interleave_granularity) for d in rds] == \
        [(2, 1, 256), (2, 2, 256), (4, 4, 256)]     # 6.12's cfmws8: x4 over host bridges 0,1,0,1
    assert [t.port_id for t in rds[2].targets] == [0, 1, 0, 1]
    assert rds[1].xormaps == (0x404100,) and rds[2].xormaps == (0x404100, 0x808200)   # log2(ways) maps
    # the mock still commits the auto decoders, at the unpublished window 0 base (HPA 0): no region
    assert not devices(s, CxlRegion)
    (ep,) = [p for p in ports(s, "endpoint") if p.uport.parent.name == "cxl_mem.0"]
    assert ep.decoders[0].enabled and ep.decoders[0].hpa_start == 0 and ep.decoders[0].hpa_size == 512 << 20


def test_auto_region_assembled(system):
    (r,) = devices(system, CxlRegion)
    assert r.name == "region0" and r.state == COMMIT and r.driver is not None
    assert r.interleave_ways == 2 and r.interleave_granularity == 4096 and r.hpa_size == 512 << 20
    hosts = [t.memdev.parent.name for t in r.targets[:2]]
    assert hosts == ["cxl_mem.0", "cxl_mem.4"]
    assert [t.dpa_size for t in r.targets[:2]] == [256 << 20] * 2
    dax = r.children["dax_region0"]
    assert dax.driver is not None and dax.dax_region.size == 512 << 20
    (dd,) = dax.dax_region.devs
    assert dd.name == "dax0.0" and dd.driver.name == "kmem"
    blocks = [b for b in system.memory.blocks.values() if b.owner is dd]
    assert len(blocks) == 4 and not any(b.online for b in blocks)


# ----------------------------------------------------------------- lifecycle (cxl-topology.sh's checks)

def _memdevs_below(system, switch_host):
    return [m for m in devices(system, CxlMemdev)
            if any(a.name == switch_host for a in m.ancestors())]


def _switch(system, host):
    return [p for p in ports(system, "port") if p.uport.name == host]


def test_memdev_unbind_removes_endpoint_then_switch(system):
    m0, m1 = _memdevs_below(system, "cxl_switch_uport.1")
    drv = system.cxl_bus.drivers["cxl_mem"]
    system.cxl_bus.unbind_store(drv, m0.name)
    system.flush_work()
    assert m0.endpoint is None and len(_switch(system, "cxl_switch_uport.1")) == 1
    system.cxl_bus.unbind_store(drv, m1.name + "\n")
    system.flush_work()
    assert _switch(system, "cxl_switch_uport.1") == []
    system.cxl_bus.bind_store(drv, m0.name)
    system.cxl_bus.bind_store(drv, m1.name)
    (sw,) = _switch(system, "cxl_switch_uport.1")
    assert sw.driver is not None and m0.endpoint is not None and m1.endpoint.parent is sw


def test_switch_port_unbind_detaches_memdevs_and_port_goes(system):
    (sw,) = _switch(system, "cxl_switch_uport.3")
    mems = _memdevs_below(system, "cxl_switch_uport.3")
    system.cxl_bus.unbind_store(system.cxl_bus.drivers["cxl_port"], sw.name)
    system.flush_work()
    assert all(m.driver is None for m in mems)
    assert _switch(system, "cxl_switch_uport.3") == []
    for m in mems:
        system.cxl_bus.bind_store(system.cxl_bus.drivers["cxl_mem"], m.name)
    assert len(_switch(system, "cxl_switch_uport.3")) == 1


def test_host_bridge_unbind_and_enable_port_with_memdevs(system):
    (hb,) = [p for p in ports(system, "port") if p.uport.name == "cxl_host_bridge.0"]
    mems = _memdevs_below(system, "cxl_host_bridge.0")
    assert len(mems) == 4
    drv = system.cxl_bus.drivers["cxl_port"]
    system.cxl_bus.unbind_store(drv, hb.name)
    system.flush_work()
    assert hb.registered and hb.driver is None and not hb.dports and not hb.decoders
    assert all(m.driver is None for m in mems)
    # the auto region lost its members: detached, decommitted, unbound
    (r,) = devices(system, CxlRegion)
    assert r.nr_targets == 0 and r.driver is None
    # binding a memdev while its host bridge port is disabled fails like the kernel (ENXIO)
    with pytest.raises(KernelError) as e:
        system.cxl_bus.bind_store(system.cxl_bus.drivers["cxl_mem"], mems[0].name)
    assert e.value.errno == errno.ENXIO
    system.cxl_bus.bind_store(drv, hb.name)
    assert sorted(hb.dports) == [0, 2] and len(hb.decoders) == 8
    for m in mems:
        system.cxl_bus.bind_store(system.cxl_bus.drivers["cxl_mem"], m.name)
    assert all(m.driver is not None for m in mems)


def test_bind_errors(system):
    bus = system.cxl_bus
    with pytest.raises(KernelError) as e:
        bus.bind_store(bus.drivers["cxl_port"], "mem0")
    assert e.value.errno == errno.ENODEV
    with pytest.raises(KernelError) as e:
        bus.bind_store(bus.drivers["cxl_mem"], "mem0")
    assert e.value.errno == errno.EBUSY
    with pytest.raises(KernelError) as e:
        bus.unbind_store(bus.drivers["cxl_port"], "mem0")
    assert e.value.errno == errno.ENODEV
    with pytest.raises(KernelError) as e:
        bus.bind_store(bus.drivers["cxl_mem"], "nosuchdev")
    assert e.value.errno == errno.ENODEV


def test_disable_bus_and_reload(system):
    acpi = system.machine.acpi_dev
    acpi.driver.release(acpi)
    system.flush_work()
    assert not ports(system, "root") and not devices(system, CxlRootDecoder)
    mds = devices(system, CxlMemdev)
    assert len(mds) == 11 and all(m.driver is None for m in mds)
    system.modprobe(["-r", "cxl_test"])
    assert system.cxl_bus.devices == [] and not system.cxl_port_ida.used and not system.memregion_ida.used
    system.modprobe(["cxl_test"])
    assert [p.name for p in ports(system, "root")] == ["root0"]
    assert len(devices(system, CxlMemdev)) == 11


def test_modprobe_params_and_unknown_modules(system):
    system.modprobe(["-r", "cxl-test"])
    system.modprobe(["cxl_test", "interleave_arithmetic=1"])
    assert len(devices(system, CxlRootDecoder)) == 3
    system.modprobe(["some_other_module"])   # accepted, no effect
    with pytest.raises(KernelError) as e:
        system.modprobe(["-r", "cxl_test"]) or system.modprobe(["cxl_test", "bogus=1"])
    assert e.value.errno == errno.EINVAL
    assert system.machine is None
