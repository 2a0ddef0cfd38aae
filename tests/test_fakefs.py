"""The pyfakefs projection: Python code using plain file calls on /sys, in-process."""

import errno
import os
import re

import pytest

from cxlsys.cxl.core.region import COMMIT, CxlRegion


def provision_pmem_region(decoder: str, memdevs: list, size: int) -> str:
    """A user's provisioning helper written against /sys, as it would run on a kernel."""
    base = "/sys/bus/cxl/devices"
    name = open(f"{base}/{decoder}/create_pmem_region").read().strip()
    with open(f"{base}/{decoder}/create_pmem_region", "w") as f:
        f.write(name + "\n")
    r = f"{base}/{name}"
    gran = open(f"{base}/{decoder}/interleave_granularity").read().strip()
    for attr, val in (("interleave_granularity", gran), ("interleave_ways", str(len(memdevs))),
                      ("uuid", "6d0a7c4b-0b9e-4d4f-8a58-3f8a1b2c3d4e"), ("size", hex(size))):
        with open(f"{r}/{attr}", "w") as f:
            f.write(val + "\n")
    for pos, mem in enumerate(memdevs):
        ep = os.path.basename(os.readlink(f"{base}/{mem}"))
        port = [p for p in os.listdir("/sys/bus/cxl/devices") if p.startswith("endpoint")
                and os.path.basename(os.readlink(f"{base}/{p}/uport")) == ep][0]
        dec = sorted(d for d in os.listdir(f"{base}/{port}") if re.fullmatch(r"decoder\d+\.\d+", d)
                     and open(f"{base}/{port}/{d}/dpa_size").read().strip() == "0x0000000000000000")[0]
        for attr, val in (("mode", "pmem"), ("dpa_size", hex(size // len(memdevs)))):
            with open(f"{base}/{dec}/{attr}", "w") as f:
                f.write(val + "\n")
        with open(f"{r}/target{pos}", "w") as f:
            f.write(dec + "\n")
    with open(f"{r}/commit", "w") as f:
        f.write("1\n")
    return name


def test_python_provisioning_against_fake_sys(cxl_sysfs):
    assert "root0" in os.listdir("/sys/bus/cxl/devices")
    assert open("/sys/bus/cxl/devices/region0/size").read() == "0x20000000\n"
    name = provision_pmem_region("decoder0.2", ["mem0"], 1 << 30)
    r = next(d for d in cxl_sysfs.system.cxl_bus.devices if isinstance(d, CxlRegion) and d.name == name)
    assert r.state == COMMIT and r.hpa_size == 1 << 30
    assert open(f"/sys/bus/cxl/devices/{name}/commit").read() == "1\n"
    assert open("/sys/bus/cxl/devices/decoder0.2/create_pmem_region").read() != name + "\n"
    with open("/sys/bus/cxl/devices/decoder0.2/delete_region", "w") as f:
        f.write(name + "\n")
    assert not os.path.exists(f"/sys/bus/cxl/devices/{name}")
    assert name not in os.listdir("/sys/devices/platform/cxl_acpi.0/root0/decoder0.2")


def test_refused_write_raises_kernel_errno(cxl_sysfs):
    with pytest.raises(OSError) as e:
        with open("/sys/bus/cxl/flush", "w") as f:
            f.write("2\n")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        with open("/sys/bus/cxl/devices/decoder0.0/create_ram_region", "w") as f:
            f.write("region9\n")
    assert e.value.errno == errno.EBUSY
    assert "region9" not in os.listdir("/sys/bus/cxl/devices")


def test_entries_follow_the_model(cxl_sysfs):
    assert os.path.islink("/sys/bus/cxl/devices/mem3/driver")
    with open("/sys/bus/cxl/drivers/cxl_mem/unbind", "w") as f:
        f.write("mem3")
    assert not os.path.lexists("/sys/bus/cxl/devices/mem3/driver")
    with open("/sys/bus/cxl/drivers/cxl_mem/bind", "w") as f:
        f.write("mem3\n")
    assert os.path.islink("/sys/bus/cxl/devices/mem3/driver")


FLOW_LINES = [ln for ln in open(os.path.join(os.path.dirname(__file__), "..", "examples",
                                             "lpc2025-hdm-db-flow.sh")).read().splitlines()
              if ln.startswith("echo ")]


@pytest.mark.parametrize("cxl_sysfs", [{"topology": "bi-direct"}], indirect=True)
def test_bi_flow_in_fakefs(cxl_sysfs):
    for val, path in (ln[5:].split(" > ") for ln in FLOW_LINES):
        with open(path, "w") as f:
            f.write(val + "\n")
    assert open("/sys/bus/cxl/devices/region0/commit").read() == "1\n"
    assert open("/sys/bus/cxl/devices/decoder2.0/bi").read() == "1\n"
