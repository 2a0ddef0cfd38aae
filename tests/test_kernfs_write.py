"""kernfs_fop_write_iter's framing of a store (fs/kernfs/file.c, fs/sysfs/file.c): an empty write
never reaches the store; a store sees at most a page and the write(2) is short."""

import errno

import pytest

from cxlsys.sysfs import PAGE_SIZE, Sysfs
from cxlsys.system import System


@pytest.fixture
def fs():
    return Sysfs(System.boot("cxl_test"))


def test_an_empty_write_is_0_and_calls_no_store(fs):
    before = fs.sys.klog.seq
    assert fs.write("bus/cxl/flush", b"") == 0             # "2" would be EINVAL: the store never ran
    assert fs.write("bus/cxl/devices/decoder0.0/create_ram_region", b"") == 0
    assert fs.sys.klog.seq == before                       # nothing refused, nothing logged


def test_a_store_sees_at_most_a_page(fs):
    seen = []
    node = fs._file("bus/cxl/devices/decoder9.0/mode")
    store = node.store
    object.__setattr__(node, "store", lambda buf: (seen.append((len(buf), buf.count_)), store("ram\n")))
    assert fs.write("bus/cxl/devices/decoder9.0/mode", b"r" * (PAGE_SIZE + 100)) == PAGE_SIZE
    assert seen == [(PAGE_SIZE, PAGE_SIZE)]


def test_a_long_refused_write_is_the_stores_errno(fs):
    with pytest.raises(OSError) as e:
        fs.write("bus/cxl/devices/decoder9.0/mode", b"x" * (PAGE_SIZE + 1))
    assert e.value.errno == errno.EINVAL
