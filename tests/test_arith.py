"""Unit tests of the arithmetic the region engine rests on."""

import errno

import pytest

from cxlsys.cxl import cxl as C
from cxlsys.cxl.core import hdm, region
from cxlsys.cxl.core.hdm import HdmCap
from cxlsys.cxl.core.port import CxlRootDecoder
from cxlsys.errors import KernelError
from cxlsys.system import System
from cxlsys.testing import devices, endpoint_decoders, memdev


@pytest.mark.parametrize("ways,eiw", [(1, 0), (2, 1), (4, 2), (8, 3), (16, 4), (3, 8), (6, 9), (12, 10)])
def test_ways_encoding_roundtrip(ways, eiw):
    assert C.ways_to_eiw(ways) == eiw and C.eiw_to_ways(eiw) == ways


@pytest.mark.parametrize("ways", [0, 5, 7, 9, 24, 32])
def test_ways_not_encodable(ways):
    with pytest.raises(KernelError) as e:
        C.ways_to_eiw(ways)
    assert e.value.errno == errno.EINVAL


@pytest.mark.parametrize("gran,eig", [(256, 0), (512, 1), (1024, 2), (2048, 3), (4096, 4), (8192, 5), (16384, 6)])
def test_granularity_encoding_roundtrip(gran, eig):
    assert C.granularity_to_eig(gran) == eig and C.eig_to_granularity(eig) == gran


@pytest.mark.parametrize("gran", [0, 128, 384, 32768])
def test_granularity_not_encodable(gran):
    with pytest.raises(KernelError):
        C.granularity_to_eig(gran)


def test_capability_masks():
    full = HdmCap()
    assert full.supports(16, 256) and full.supports(12, 256) and full.supports(8, 4096)
    assert not full.supports(16, 16384)          # needs address bits 14..17
    assert full.supports(1, 16384) and full.supports(3, 16384)   # x1/x3 use no address bits
    no_3 = HdmCap(ways_3_6_12=False, ways_16=False)
    assert not no_3.supports(3, 256) and not no_3.supports(6, 256) and not no_3.supports(16, 256)
    no_hi = HdmCap(addr_14_12=False)
    assert no_hi.supports(2, 2048) and not no_hi.supports(2, 4096)   # 4096 x2 decodes bit 12
    assert not no_hi.supports(8, 1024)                                # 1024 x8 needs bits 10..12
    assert HdmCap(count=0).supports(5, 100)                           # passthrough accepts everything


def test_modulo_host_bridge_positions():
    s = System.boot("cxl_test")
    x2 = devices(s, CxlRootDecoder)[1]
    assert [region.calc_hb(x2, p).port_id for p in range(8)] == [0, 1] * 4


def test_xor_host_bridge_positions():
    s = System.boot("cxl_test", {"interleave_arithmetic": 1})
    x1, x2, x4 = devices(s, CxlRootDecoder)
    assert x2.xormaps == (0x404100,) and x4.xormaps == (0x404100, 0x808200)
    for pos in range(8):
        hpa = x2.hpa_start + pos * 256
        expect = (hpa & 0x404100).bit_count() & 1
        assert region.calc_hb(x2, pos).port_id == [0, 1][expect]
        hpa4 = x4.hpa_start + pos * 256
        n = ((hpa4 & 0x404100).bit_count() & 1) | (((hpa4 & 0x808200).bit_count() & 1) << 1)
        assert region.calc_hb(x4, pos) is x4.targets[n]
    assert region.calc_hb(x1, 5).port_id == 0


def test_hpa_first_fit_and_erange():
    s = System.boot("cxl_test")
    root = devices(s, CxlRootDecoder)[3]      # 2G pmem window

    def mk(size):
        r = region.devm_create_region(root, root.next_region_id, C.MODE_PMEM)
        r.interleave_ways, r.interleave_granularity, r.uuid = 2, 4096, bytes(range(1, 17))
        region.alloc_hpa(r, size)
        return r
    a = mk(512 << 20)
    b = mk(512 << 20)
    c = mk(512 << 20)
    assert [x.hpa_start - root.hpa_start for x in (a, b, c)] == [0, 512 << 20, 1 << 30]
    region.free_hpa(b)
    d = mk(256 << 20)                         # first fit: the hole b left
    assert d.hpa_start - root.hpa_start == 512 << 20
    with pytest.raises(KernelError) as e:
        mk(1 << 30)                           # 256M + 512M free but not contiguous
    assert e.value.errno == errno.ERANGE
    e2 = mk(256 << 20)
    assert e2.hpa_start - root.hpa_start == 768 << 20


def test_dpa_stack_with_skip():
    s = System.boot("cxl_test")
    d = endpoint_decoders(memdev(s, "cxl_mem.1"))
    G, M = 1 << 30, 1 << 20
    hdm.cxl_dpa_set_mode(d[0], "ram")
    hdm.dpa_size_store(d[0], "0x10000000")                 # 256M of ram at DPA 0
    assert (d[0].dpa_start, d[0].dpa_size, d[0].skip) == (0, 256 * M, 0)
    with pytest.raises(KernelError) as e:                  # decoder 2 before decoder 1
        hdm.cxl_dpa_set_mode(d[2], "pmem") or hdm.dpa_size_store(d[2], "0x10000000")
    assert e.value.errno == errno.EBUSY
    hdm.cxl_dpa_set_mode(d[1], "pmem")
    hdm.dpa_size_store(d[1], "0x10000000")                 # pmem: skips the rest of ram
    assert (d[1].dpa_start, d[1].skip) == (G, 768 * M)
    hdm.cxl_dpa_set_mode(d[2], "ram")
    with pytest.raises(KernelError) as e:                  # ram after the skip: nothing left
        hdm.dpa_size_store(d[2], "0x10000000")
    assert e.value.errno == errno.ENOSPC
    hdm.cxl_dpa_set_mode(d[2], "pmem")
    hdm.dpa_size_store(d[2], "0x30000000")                 # the remaining 768M of pmem
    assert (d[2].dpa_start, d[2].skip) == (G + 256 * M, 0)
    with pytest.raises(KernelError) as e:
        hdm.dpa_size_store(d[1], "0")                      # not the top of the stack
    assert e.value.errno == errno.EBUSY
    hdm.dpa_size_store(d[2], "0")
    hdm.dpa_size_store(d[1], "0")                          # frees the skip too
    hdm.cxl_dpa_set_mode(d[1], "ram")
    hdm.dpa_size_store(d[1], "0x30000000")
    assert (d[1].dpa_start, d[1].skip) == (256 * M, 0)
    assert d[1].dpa_size_show() == "0x0000000030000000\n" and d[1].dpa_resource_show() == "0x10000000\n"


def test_interleave_position_calculator():
    s = System.boot("cxl_test")
    (r,) = [d for d in s.cxl_bus.devices if isinstance(d, region.CxlRegion)]
    assert [region.calc_interleave_pos(r, t) for t in r.targets[:2]] == [0, 1]
