"""The dax bus (drivers/dax/bus.c, kmem.c, device.c) in-process on cxl_test: layout, formats,
driver choice, and the kernel's errno for every refused write, with the state left untouched."""

import errno

from cxlsys.sysfs import S_LINK
from cxlsys.testing import assert_refused, read_text

DR = "bus/cxl/devices/dax_region0/dax_region"
D = "bus/dax/devices"
KMEM = "bus/dax/drivers/kmem"
DEVDAX = "bus/dax/drivers/device_dax"
M = 1 << 20


def refused(fs, path, data, err):
    """The write fails with ``err`` and changes nothing visible: neither the tree nor the values."""
    assert_refused(fs, path, data, err, unchanged=lambda: (fs.snapshot(), _values(fs)))


def _values(fs):
    out = {}
    for d in fs.listdir(D):
        for a in ("size", "align", "resource", "memmap_on_memory"):
            out[f"{d}/{a}"] = fs.read(f"{D}/{d}/{a}")
    for a in ("available_size", "seed", "create"):
        out[a] = fs.read(f"{DR}/{a}")
    return out


def free_region(fs):
    """Take dax0.0 off kmem and give its capacity back to the region."""
    fs.write(f"{KMEM}/unbind", b"dax0.0\0")
    fs.write(f"{D}/dax0.0/size", b"0\n")
    assert read_text(fs, f"{DR}/available_size") == f"{512 * M}\n"


def test_layout_and_formats(fs, system):
    dd = "devices/platform/cxl_acpi.0/root0/decoder0.0/region0/dax_region0/dax0.0"
    assert fs.realpath(f"{D}/dax0.0") == dd
    modes = {a: fs.lookup(f"{DR}/{a}").mode for a in fs.listdir(DR)}
    assert modes == {"id": 0o444, "size": 0o444, "align": 0o400, "available_size": 0o444, "create": 0o644,
                     "seed": 0o444, "delete": 0o200}
    assert [read_text(fs, f"{DR}/{a}") for a in ("id", "size", "align", "available_size", "seed", "create")] == \
        ["0\n", f"{512 * M}\n", "2097152\n", "0\n", "\n", "\n"]
    want = {"modalias": (0o444, "dax:t0\n"), "size": (0o644, f"{512 * M}\n"), "target_node": (0o444, "0\n"),
            "align": (0o644, "2097152\n"), "numa_node": (0o444, "-1\n"), "memmap_on_memory": (0o644, "1\n"),
            "dev": (0o444, "254:0\n")}
    for a, (mode, val) in want.items():
        assert fs.lookup(f"{D}/dax0.0/{a}").mode == mode and read_text(fs, f"{D}/dax0.0/{a}") == val, a
    assert fs.lookup(f"{D}/dax0.0/resource").mode == 0o400
    start = system.dax_bus.find_device("dax0.0").ranges[0][0]
    assert read_text(fs, f"{D}/dax0.0/resource") == f"{start:#x}\n"
    assert fs.lookup(f"{D}/dax0.0/mapping").mode == 0o200
    assert [read_text(fs, f"{D}/dax0.0/mapping0/{a}") for a in ("start", "end", "page_offset")] == \
        [f"{start:#x}\n", f"{start + 512 * M - 1:#x}\n", "0x0\n"]
    assert {fs.lookup(f"{D}/dax0.0/mapping0/{a}").mode for a in ("start", "end", "page_offset")} == {0o400}
    assert read_text(fs, f"{D}/dax0.0/uevent") == "MAJOR=254\nMINOR=0\nDEVNAME=dax0.0\nDRIVER=kmem\nMODALIAS=dax:t0\n"
    # daxctl's bus-model test: /sys/dev/char/MAJ:MIN/subsystem resolves to exactly /sys/bus/dax
    assert fs.realpath("dev/char/254:0") == dd
    assert fs.realpath("dev/char/254:0/subsystem") == "bus/dax"
    assert fs.realpath(f"{D}/dax0.0/driver") == "bus/dax/drivers/kmem"
    assert "dax" not in fs.listdir("class")
    assert sorted(fs.listdir(KMEM)) == ["bind", "dax0.0", "module", "new_id", "remove_id", "uevent", "unbind"]
    for m in ("kmem", "device_dax", "dax_cxl"):
        assert read_text(fs, f"module/{m}/initstate") == "live\n"


def test_create_seed_and_youngest(fs, system):
    refused(fs, f"{DR}/create", b"1\0", errno.ENOSPC)           # dax0.0 owns the whole region
    free_region(fs)
    for bad in (b"0\n", b"2\0", b"yes\0", b"\n", b"-1"):
        refused(fs, f"{DR}/create", bad, errno.EINVAL)
    refused(fs, f"{DR}/create", b"99999999999\0", errno.ERANGE)
    assert fs.write(f"{DR}/create", b"1\0") == 2
    assert read_text(fs, f"{DR}/seed") == "dax0.1\n" and read_text(fs, f"{DR}/create") == "dax0.1\n"
    fs.write(f"{DR}/create", b"0x1\n")                        # base auto; the first unbound one stays seed
    assert read_text(fs, f"{DR}/seed") == "dax0.1\n" and read_text(fs, f"{DR}/create") == "dax0.2\n"
    assert read_text(fs, f"{D}/dax0.1/size") == "0\n" and read_text(fs, f"{D}/dax0.1/memmap_on_memory") == "0\n"
    assert read_text(fs, f"{D}/dax0.1/resource") == read_text(fs, f"{D}/dax0.0/resource")   # no range: the region start
    assert fs.realpath("dev/char/254:1").endswith("/dax0.1")
    assert "driver" not in fs.listdir(f"{D}/dax0.1")           # size 0: the probe failed (ENXIO)
    # a size and a bind: the seed is consumed
    fs.write(f"{D}/dax0.1/size", b"0x10000000\n")
    fs.write(f"{DEVDAX}/new_id", b"dax0.1\0")
    assert fs.realpath(f"{D}/dax0.1/driver") == "bus/dax/drivers/device_dax"
    assert read_text(fs, f"{DEVDAX}/dax0.1/size") == f"{256 * M}\n"
    assert read_text(fs, f"{DR}/seed") == "\n" and read_text(fs, f"{DR}/create") == "dax0.2\n"


def test_size_rules(fs, system):
    refused(fs, f"{D}/dax0.0/size", b"0\n", errno.EBUSY)        # bound to kmem
    refused(fs, f"{D}/dax0.0/size", b"1048576\n", errno.EINVAL)  # misaligned comes first
    free_region(fs)
    dd = system.dax_bus.find_device("dax0.0")
    base = system.dax_bus.find_device("dax0.0").region.start
    refused(fs, f"{D}/dax0.0/size", b"12ab\n", errno.EINVAL)
    refused(fs, f"{D}/dax0.0/size", b"0x40000000\n", errno.ENOSPC)
    refused(fs, f"{D}/dax0.0/size", b"99999999999999999999\n", errno.ERANGE)
    fs.write(f"{D}/dax0.0/size", b"0x8000000\n")                # 128M at the region start
    fs.write(f"{DR}/create", b"1")
    fs.write(f"{D}/dax0.1/size", b"0x8000000\n")                # the next 128M
    fs.write(f"{D}/dax0.0/size", b"0x18000000\n")               # grows into a second range after dax0.1
    assert dd.ranges == [(base, 128 * M, 0), (base + 256 * M, 256 * M, 128 * M // 4096)]
    assert sorted(x for x in fs.listdir(f"{D}/dax0.0") if x.startswith("mapping")) == \
        ["mapping", "mapping0", "mapping1"]
    assert read_text(fs, f"{D}/dax0.0/mapping1/page_offset") == f"{128 * M // 4096:#x}\n"   # in pages
    assert read_text(fs, f"{D}/dax0.0/mapping1/start") == f"{base + 256 * M:#x}\n"
    assert read_text(fs, f"{D}/dax0.0/size") == f"{384 * M}\n" and read_text(fs, f"{DR}/available_size") == "0\n"
    fs.write(f"{D}/dax0.1/size", b"0")
    fs.write(f"{D}/dax0.0/size", b"0x14000000\n")               # shrink trims the last range
    assert dd.ranges == [(base, 128 * M, 0), (base + 256 * M, 192 * M, 128 * M // 4096)]
    fs.write(f"{D}/dax0.0/size", b"0x6000000\n")                # and drops whole ranges
    assert dd.ranges == [(base, 96 * M, 0)] and "mapping1" not in fs.listdir(f"{D}/dax0.0")
    fs.write(f"{D}/dax0.0/size", b"0x8000000\n")                # extends the last range in place
    assert dd.ranges == [(base, 128 * M, 0)]


def test_mapping_rules(fs, system):
    free_region(fs)
    base = system.dax_bus.find_device("dax0.0").region.start
    fs.write(f"{DR}/create", b"1")
    refused(fs, f"{D}/dax0.1/mapping", b"nonsense\0", errno.EINVAL)
    refused(fs, f"{D}/dax0.1/mapping", f"{base:#x}\0".encode(), errno.EINVAL)
    refused(fs, f"{D}/dax0.1/mapping", f"{base:#x}-{base + M - 1:#x}\n\0".encode(), errno.ENXIO)
    refused(fs, f"{D}/dax0.1/mapping", f"{base - 2 * M:#x}-{base + 2 * M - 1:#x}\n".encode(), errno.ENOMEM)
    zero = f"{base + 4 * M:#x}-{base + 4 * M - 1:#x}\n".encode()      # END = START - 1: a 0-size range
    fs.write(f"{D}/dax0.1/mapping", zero)                                  # accepted as a no-op first
    assert read_text(fs, f"{D}/dax0.1/size") == "0\n"
    fs.write(f"{D}/dax0.1/mapping", f"{base + 64 * M:#x}-{base + 128 * M - 1:#x}\n\0".encode())
    refused(fs, f"{D}/dax0.1/mapping", zero, errno.EBUSY)                 # ... but not after a range
    refused(fs, f"{D}/dax0.1/mapping", f"{base + 126 * M:x}-{base + 130 * M - 1:x}\n".encode(), errno.ENOMEM)
    fs.write(f"{D}/dax0.1/mapping", f"{base:x}-{base + 2 * M - 1:x}".encode())   # 0x is optional
    dd1 = system.dax_bus.find_device("dax0.1")
    assert dd1.ranges == [(base + 64 * M, 64 * M, 0), (base, 2 * M, 64 * M // 4096)]
    assert read_text(fs, f"{D}/dax0.1/resource") == f"{base + 64 * M:#x}\n"


def test_align_rules(fs, system):
    refused(fs, f"{D}/dax0.0/align", b"abc\n", errno.ENXIO)     # parse errors are ENXIO
    refused(fs, f"{D}/dax0.0/align", b"8192\n", errno.EINVAL)
    refused(fs, f"{D}/dax0.0/align", b"4096\n", errno.EBUSY)    # bound
    fs.write(f"{KMEM}/unbind", b"dax0.0\0")
    refused(fs, f"{D}/dax0.0/align", b"0x40000000\n", errno.EINVAL)   # 512M is not a multiple of 1G
    fs.write(f"{D}/dax0.0/align", b"4096\n")
    assert read_text(fs, f"{D}/dax0.0/align") == "4096\n"
    refused(fs, f"{D}/dax0.0/size", b"0x1000\n", errno.EINVAL)   # still 2M granular (compat align)


def test_delete_rules(fs, system):
    refused(fs, f"{DR}/delete", b"dax0.9\0", errno.ENXIO)
    refused(fs, f"{DR}/delete", b"dax0.0\0", errno.EBUSY)       # bound
    free_region(fs)
    refused(fs, f"{DR}/delete", b"dax0.0\0", errno.EBUSY)       # id 0 is never deleted
    fs.write(f"{DR}/create", b"1")
    fs.write(f"{DR}/create", b"1")
    fs.write(f"{D}/dax0.2/size", b"0x200000")
    refused(fs, f"{DR}/delete", b"dax0.2\n", errno.EBUSY)       # sized
    fs.write(f"{D}/dax0.2/size", b"0")
    assert fs.write(f"{DR}/delete", b"dax0.1\n") == 7           # the seed: seed clears
    assert "dax0.1" not in fs.listdir(D) and "254:1" not in fs.listdir("dev/char")
    assert read_text(fs, f"{DR}/seed") == "\n" and read_text(fs, f"{DR}/create") == "dax0.2\n"
    fs.write(f"{DR}/delete", b"dax0.2")
    assert read_text(fs, f"{DR}/create") == "\n"
    fs.write(f"{DR}/create", b"1")                               # lowest free id and minor again
    assert read_text(fs, f"{DR}/create") == "dax0.1\n" and read_text(fs, f"{D}/dax0.1/dev") == "254:1\n"


def test_driver_files(fs, system):
    for f in ("new_id", "remove_id"):
        for bad in (b"dax0\0", b"dax0.0x\0", b"dax00.0\0", b"foo\0", b"dax0.0 \0", b"\0"):
            refused(fs, f"{DEVDAX}/{f}", bad, errno.EINVAL)
    assert fs.write(f"{DEVDAX}/remove_id", b"dax7.7\n") == 7     # absent: fine
    refused(fs, f"{DEVDAX}/bind", b"dax0.0\0", errno.ENODEV)     # a kmem-type region: no match
    refused(fs, f"{KMEM}/bind", b"dax0.0\0", errno.EBUSY)        # already bound
    refused(fs, f"{KMEM}/bind", b"dax9.9\0", errno.ENODEV)
    refused(fs, f"{DEVDAX}/unbind", b"dax0.0\0", errno.ENODEV)   # bound, but to kmem
    fs.write(f"{KMEM}/remove_id", b"dax0.0\0")
    fs.write(f"{KMEM}/unbind", b"dax0.0\0")
    fs.write(f"{DEVDAX}/new_id", b"dax0.0\0")                   # new_id binds at once
    assert fs.realpath(f"{D}/dax0.0/driver") == "bus/dax/drivers/device_dax"
    refused(fs, f"{DEVDAX}/bind", b"dax0.0\0", errno.EBUSY)      # what daxctl then ignores
    assert not system.memory.blocks
    fs.write(f"{DEVDAX}/remove_id", b"dax0.0\0")
    fs.write(f"{DEVDAX}/unbind", b"dax0.0\0")
    fs.write(f"{D}/dax0.0/size", b"0")
    fs.write(f"{KMEM}/new_id", b"dax0.0\0")                      # probe fails (size 0), swallowed
    refused(fs, f"{KMEM}/bind", b"dax0.0\0", errno.ENXIO)        # bind passes the probe error on
    link = fs.lookup(f"{KMEM}/module")
    assert link.kind == S_LINK and link.target == "module/kmem"
