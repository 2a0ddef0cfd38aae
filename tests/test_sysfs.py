"""The projection: paths, links, modes, formats, write semantics and errno (in-process)."""

import errno

import pytest

from cxlsys.testing import assert_refused, sysfs_tree


def test_bus_links_are_relative_and_resolve(fs):
    assert fs.readlink("bus/cxl/devices/root0") == "../../../devices/platform/cxl_acpi.0/root0"
    assert fs.readlink("bus/cxl/devices/root0/uport") == "../../cxl_acpi.0"
    assert fs.realpath("bus/cxl/devices/mem0").endswith("cxl_switch_dport.0/cxl_mem.0/mem0")
    assert fs.readlink("bus/cxl/devices/root0/port1/driver") == "../../../../../bus/cxl/drivers/cxl_port"
    assert fs.readlink("devices/platform/cxl_host_bridge.0/physical_node") == "../cxl_host_bridge.0"
    assert fs.readlink("devices/platform/cxl_host_bridge.3/firmware_node") == "../cxl_host_bridge.3"
    assert fs.readlink("bus/cxl/drivers/cxl_mem/module") == "../../../../module/cxl_mem"
    assert fs.read("module/cxl_mem/initstate") == b"live\n"
    assert fs.read("module/cxl_test/parameters/interleave_arithmetic") == b"0\n"


@pytest.mark.parametrize("path,mode,value", [
    ("bus/cxl/devices/decoder0.0/start", 0o400, None),
    ("bus/cxl/devices/decoder0.0/size", 0o444, b"0x40000000\n"),
    ("bus/cxl/devices/decoder0.0/create_ram_region", 0o644, b"region6\n"),
    ("bus/cxl/devices/decoder0.0/delete_region", 0o200, None),
    ("bus/cxl/devices/decoder0.2/create_pmem_region", 0o644, b"region2\n"),
    ("bus/cxl/devices/decoder0.1/target_list", 0o444, b"0,1\n"),
    ("bus/cxl/devices/decoder0.0/interleave_granularity", 0o444, b"256\n"),
    ("bus/cxl/devices/region0/uuid", 0o444, b"\n"),
    ("bus/cxl/devices/region0/size", 0o644, b"0x20000000\n"),
    ("bus/cxl/devices/region0/commit", 0o644, b"1\n"),
    ("bus/cxl/devices/region0/mode", 0o444, b"ram\n"),
    ("bus/cxl/devices/mem0/serial", 0o444, b"0x0\n"),
    ("bus/cxl/devices/mem10/pmem/size", 0o444, b"0x0\n"),
    ("bus/cxl/devices/mem10/ram/size", 0o444, b"0x80000000\n"),
    ("bus/cxl/devices/mem0/firmware_version", 0o444, b"mock fw v1 \n"),
    ("bus/cxl/devices/mem0/label_storage_size", 0o444, b"131072\n"),
    ("bus/cxl/devices/mem0/dev", 0o444, b"245:0\n"),
    ("bus/cxl/devices/mem0/uevent", 0o644,
     b"MAJOR=245\nMINOR=0\nDEVNAME=cxl/mem0\nDEVTYPE=cxl_memdev\nDRIVER=cxl_mem\nMODALIAS=cxl:t5\n"),
    ("bus/cxl/devices/decoder5.1/dpa_size", 0o644, b"0x0000000000000000\n"),
    ("bus/cxl/devices/decoder5.1/dpa_resource", 0o444, b"0xffffffffffffffff\n"),
    ("bus/cxl/devices/decoder5.1/mode", 0o644, b"none\n"),
    ("bus/cxl/devices/decoder5.0/dpa_size", 0o644, b"0x0000000010000000\n"),
    ("bus/cxl/devices/decoder5.0/region", 0o444, b"region0\n"),
    ("bus/cxl/devices/decoder5.1/region", 0o444, b"\n"),
    ("bus/cxl/devices/root0/decoders_committed", 0o444, b"0\n"),
    ("bus/cxl/devices/port1/decoders_committed", 0o444, b"1\n"),
    ("bus/cxl/devices/port1/modalias", 0o444, b"cxl:t3\n"),
    ("bus/cxl/devices/root0/modalias", 0o444, b"cxl:t4\n"),
    ("bus/cxl/flush", 0o200, None),
    ("bus/cxl/drivers_autoprobe", 0o644, b"1\n"),
    ("bus/cxl/drivers/cxl_mem/bind", 0o200, None),
    ("devices/platform/cxl_acpi.0/driver_override", 0o644, b"(null)\n"),
    ("devices/system/memory/block_size_bytes", 0o444, b"8000000\n"),
    ("devices/system/memory/auto_online_blocks", 0o644, b"offline\n"),
    ("bus/dax/devices/dax0.0/size", 0o644, b"536870912\n"),
    ("bus/dax/devices/dax0.0/target_node", 0o444, b"0\n"),
])
def test_modes_and_formats(fs, path, mode, value):
    e = fs.lookup(path) if not path.startswith("bus/cxl/devices/") else fs.stat(path)
    assert e is not None and e.mode == mode
    if value is not None:
        assert fs.read(path) == value


def test_memdev_has_no_devtype_and_no_power_dirs(fs):
    names = fs.listdir("bus/cxl/devices/mem0")
    assert "devtype" not in names and "modalias" not in names and "power" not in names
    assert {"ram", "pmem", "security", "firmware", "pmem0", "driver", "subsystem"} <= set(names)


def test_driver_dirs(fs):
    assert set(fs.listdir("bus/cxl/drivers")) >= {"cxl_port", "cxl_mem", "cxl_region", "cxl_nvdimm_bridge",
                                                  "cxl_nvdimm", "cxl_pmem_region", "cxl_dax_region"}
    assert "bind" in fs.listdir("bus/cxl/drivers/cxl_region")
    assert "bind" not in fs.listdir("bus/cxl/drivers/cxl_dax_region")
    assert "mem0" in fs.listdir("bus/cxl/drivers/cxl_mem")


def test_write_semantics_nul_newline_and_count(fs, system):
    # libcxl writes strlen+1 (the NUL), shells write a newline: both are the same store
    assert fs.write("bus/cxl/flush", b"1\n\0") == 3
    assert fs.write("bus/cxl/flush", b"1\0") == 2
    drv = "bus/cxl/drivers/cxl_mem/unbind"
    assert fs.write(drv, b"mem3\0") == 5
    assert fs.lookup("bus/cxl/devices/mem3/driver") is None
    assert fs.write("bus/cxl/drivers/cxl_mem/bind", b"mem3\n") == 5
    assert fs.lookup("bus/cxl/devices/mem3/driver").kind == "link"


def test_write_to_read_only_is_eacces(fs):
    assert_refused(fs, "bus/cxl/devices/decoder0.0/size", b"0\n", errno.EACCES, unchanged=lambda: sysfs_tree(fs))


@pytest.mark.parametrize("path,data,err", [
    ("bus/cxl/flush", b"2\n", errno.EINVAL),
    ("bus/cxl/drivers/cxl_mem/bind", b"mem0\n", errno.EBUSY),
    ("bus/cxl/drivers/cxl_port/bind", b"mem0\n", errno.ENODEV),
    ("bus/cxl/drivers/cxl_mem/unbind", b"port1\n", errno.ENODEV),
    ("bus/cxl/drivers/cxl_region/bind", b"nosuch\n", errno.ENODEV),
    ("bus/cxl/devices/decoder5.1/mode", b"bogus\n", errno.EINVAL),
    ("bus/cxl/devices/decoder19.0/mode", b"pmem\n", errno.ENXIO),      # the RCD has no pmem
    ("bus/cxl/devices/decoder5.0/mode", b"pmem\n", errno.EBUSY),       # committed auto decoder
    ("bus/cxl/devices/decoder5.1/dpa_size", b"0x1000\n", errno.EINVAL),
    ("bus/cxl/devices/decoder5.1/dpa_size", b"0x10000000\n", errno.EINVAL),   # mode not set
    ("bus/cxl/devices/decoder5.0/dpa_size", b"0\n", errno.EBUSY),      # in a region
    ("bus/cxl/devices/decoder0.0/create_ram_region", b"region7\n", errno.EBUSY),
    ("bus/cxl/devices/decoder0.0/create_ram_region", b"garbage\n", errno.EINVAL),
    ("bus/cxl/devices/decoder0.0/delete_region", b"region9\n", errno.ENODEV),
    ("bus/cxl/devices/region0/interleave_ways", b"3\n", errno.EINVAL),
    ("bus/cxl/devices/region0/interleave_ways", b"4\n", errno.EBUSY),
    ("bus/cxl/devices/region0/size", b"0\n", errno.EBUSY),
    ("bus/cxl/devices/region0/commit", b"maybe\n", errno.EINVAL),
    ("devices/system/memory/auto_online_blocks", b"sometimes\n", errno.EINVAL),
    ("bus/cxl/devices/mem0/security/sanitize", b"1\n", errno.EBUSY),
])
def test_refused_writes_leave_state_untouched(fs, path, data, err):
    e = assert_refused(fs, path, data, err, unchanged=lambda: sysfs_tree(fs))
    assert fs.sys.klog.records[-1].text.startswith(e.reason)


def test_visibility_follows_state(fs):
    # write-only and hidden attributes
    assert fs.lookup("bus/cxl/devices/decoder0.0/create_pmem_region") is None
    assert fs.lookup("bus/cxl/devices/decoder0.2/create_ram_region") is None
    assert fs.lookup("bus/cxl/devices/region0/target2") is None
    name = fs.read("bus/cxl/devices/decoder0.3/create_pmem_region").decode()
    fs.write("bus/cxl/devices/decoder0.3/create_pmem_region", name.encode())
    r = name.strip()
    assert fs.lookup(f"bus/cxl/devices/{r}/target0") is None
    fs.write(f"bus/cxl/devices/{r}/interleave_ways", b"4\n")
    assert [n for n in fs.listdir(f"bus/cxl/devices/{r}") if n.startswith("target")] == \
        ["target0", "target1", "target2", "target3"]
    assert fs.read(f"bus/cxl/devices/{r}/uuid") == b"00000000-0000-0000-0000-000000000000\n"
    assert fs.stat(f"bus/cxl/devices/{r}/uuid").mode == 0o644
