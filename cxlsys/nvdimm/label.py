"""drivers/nvdimm/label.c (and label.h), as far as the ``nvdimm`` driver's probe and
``available_slots`` reach: the namespace index geometry, index validation, reading the label area
into the driver's copy (``nd_label_data_init()``) and counting free label slots.

On media: two index blocks (``struct nd_namespace_index``, each ``sizeof_namespace_index()``
bytes) then ``nslot`` labels.  A zeroed (or random) label area has no valid index: every slot is
free — cxl_test's 128 KiB LSA gives 510 slots of 256 bytes, ``available_slots`` 509.
Namespace labels themselves (DPA reservation, ``nd_label_reserve_dpa()``) are not modelled:
the model has no nd regions or namespaces.
"""

from __future__ import annotations

import errno
import struct
from typing import Optional

from cxlsys.errors import KernelError
from cxlsys.nvdimm import nd
from cxlsys.nvdimm.core import nd_fletcher64
from cxlsys.nvdimm.nd import NvdimmDrvdata, nd_label_next_nsindex

NSINDEX_SIGNATURE = b"NAMESPACE_INDEX\0"
NSINDEX_SIG_LEN = 16
NSINDEX_ALIGN = 256
NSINDEX_SEQ_MASK = 0x3
ND_LABEL_MIN_SIZE = 256 * 4

# struct nd_namespace_index: sig[16], flags[3], labelsize, seq, myoff, mysize, otheroff, labeloff,
# nslot, major, minor, checksum, then the free-slot bitmap free[]
ND_NAMESPACE_INDEX = struct.Struct("<16s3sBIQQQQIHHQ")
SIZEOF_ND_NAMESPACE_INDEX = ND_NAMESPACE_INDEX.size            # 72
(NSI_SIG, NSI_FLAGS, NSI_LABELSIZE, NSI_SEQ, NSI_MYOFF, NSI_MYSIZE, NSI_OTHEROFF, NSI_LABELOFF, NSI_NSLOT,
 NSI_MAJOR, NSI_MINOR, NSI_CHECKSUM) = range(12)
NSI_CHECKSUM_OFFSET = 64


def nd_inc_seq(seq: int) -> int:
    return (0, 2, 3, 1)[seq & 3]


def best_seq(a: int, b: int) -> int:
    a &= NSINDEX_SEQ_MASK
    b &= NSINDEX_SEQ_MASK
    if a == 0 or a == b:
        return b
    if b == 0:
        return a
    if nd_inc_seq(a) == b:
        return b
    return a


def _div_round_up(n: int, d: int) -> int:
    return (n + d - 1) // d


def _align(n: int, a: int) -> int:
    return _div_round_up(n, a) * a


def sizeof_namespace_label(ndd: NvdimmDrvdata) -> int:
    return ndd.nslabel_size


def __sizeof_namespace_index(nslot: int) -> int:
    return _align(SIZEOF_ND_NAMESPACE_INDEX + _div_round_up(nslot, 8), NSINDEX_ALIGN)


def __nvdimm_num_label_slots(ndd: NvdimmDrvdata, index_size: int) -> int:
    return (ndd.config_size - index_size * 2) // sizeof_namespace_label(ndd)


def nvdimm_num_label_slots(ndd: NvdimmDrvdata) -> int:
    tmp_nslot = ndd.config_size // sizeof_namespace_label(ndd)
    n = __sizeof_namespace_index(tmp_nslot) // NSINDEX_ALIGN
    return __nvdimm_num_label_slots(ndd, NSINDEX_ALIGN * n)


def sizeof_namespace_index(ndd: NvdimmDrvdata) -> int:
    """The size of one index block (0, and an error logged, if the area cannot hold 2 indexes and
    2 labels)."""
    nslot = nvdimm_num_label_slots(ndd)
    space = ndd.config_size - nslot * sizeof_namespace_label(ndd)
    size = __sizeof_namespace_index(nslot) * 2
    if size <= space and nslot >= 2:
        return size // 2
    ndd.dev.sys.klog.dev_err(ndd.dev, f"label area ({ndd.config_size}) too small to host "
                                      f"({sizeof_namespace_label(ndd)} byte) labels")
    return 0


def to_namespace_index(ndd: NvdimmDrvdata, i: int) -> Optional[int]:
    """The offset of index block ``i`` in the driver's copy (None for -1: no index)."""
    if i < 0:
        return None
    return sizeof_namespace_index(ndd) * i


def to_current_namespace_index(ndd: NvdimmDrvdata) -> Optional[int]:
    return to_namespace_index(ndd, ndd.ns_current)


def to_next_namespace_index(ndd: NvdimmDrvdata) -> Optional[int]:
    return to_namespace_index(ndd, ndd.ns_next)


def _index(ndd: NvdimmDrvdata, off: int) -> tuple:
    assert ndd.data is not None
    return ND_NAMESPACE_INDEX.unpack_from(ndd.data, off)


def __nd_label_validate(ndd: NvdimmDrvdata) -> int:
    """Which of the two index blocks is current (-1: neither is valid), at the label size set."""
    assert ndd.data is not None
    dev = ndd.dev
    dbg = dev.sys.klog.dev_dbg
    size_idx = sizeof_namespace_index(ndd)
    valid = [False, False]
    seqs = [0, 0]
    for i in range(2):
        off = i * size_idx
        if off + SIZEOF_ND_NAMESPACE_INDEX > len(ndd.data):
            continue
        f = _index(ndd, off)
        seqs[i] = f[NSI_SEQ]
        if f[NSI_SIG] != NSINDEX_SIGNATURE:
            dbg(dev, f"nsindex{i} signature invalid")
            continue
        # label sizes larger than 128 arrived with v1.2
        version = f[NSI_MAJOR] * 100 + f[NSI_MINOR]
        labelsize = 1 << (7 + f[NSI_LABELSIZE]) if version >= 102 else 128
        if labelsize != sizeof_namespace_label(ndd):
            dbg(dev, f"nsindex{i} labelsize {f[NSI_LABELSIZE]} invalid")
            continue
        block = bytearray(ndd.data[off:off + size_idx])
        block[NSI_CHECKSUM_OFFSET:NSI_CHECKSUM_OFFSET + 8] = bytes(8)
        if nd_fletcher64(bytes(block), True) != f[NSI_CHECKSUM]:
            dbg(dev, f"nsindex{i} checksum invalid")
            continue
        if (f[NSI_SEQ] & NSINDEX_SEQ_MASK) == 0:
            dbg(dev, f"nsindex{i} sequence: {f[NSI_SEQ]:#x} invalid")
            continue
        # sanity check the index against expected values
        if f[NSI_MYOFF] != i * size_idx:
            dbg(dev, f"nsindex{i} myoff: {f[NSI_MYOFF]:#x} invalid")
            continue
        if f[NSI_OTHEROFF] != (0 if i else 1) * size_idx:
            dbg(dev, f"nsindex{i} otheroff: {f[NSI_OTHEROFF]:#x} invalid")
            continue
        if f[NSI_LABELOFF] != 2 * size_idx:
            dbg(dev, f"nsindex{i} labeloff: {f[NSI_LABELOFF]:#x} invalid")
            continue
        if f[NSI_MYSIZE] > size_idx or f[NSI_MYSIZE] < SIZEOF_ND_NAMESPACE_INDEX:
            dbg(dev, f"nsindex{i} mysize: {f[NSI_MYSIZE]:#x} invalid")
            continue
        if f[NSI_NSLOT] * sizeof_namespace_label(ndd) + 2 * size_idx > ndd.config_size:
            dbg(dev, f"nsindex{i} nslot: {f[NSI_NSLOT]} invalid, config_size: {ndd.config_size:#x}")
            continue
        valid[i] = True
    if valid == [True, True]:                   # pick the best index...
        seq = best_seq(seqs[0], seqs[1])
        return 1 if seq == (seqs[1] & NSINDEX_SEQ_MASK) else 0
    if valid[0]:
        return 0
    if valid[1]:
        return 1
    return -1


def nd_label_validate(ndd: NvdimmDrvdata) -> int:
    """Probe the known label sizes (128, then 256 — where a failed search leaves it)."""
    for label_size in (128, 256):
        ndd.nslabel_size = label_size
        rc = __nd_label_validate(ndd)
        if rc >= 0:
            return rc
    return -1


def nd_label_copy(ndd: NvdimmDrvdata, dst: Optional[int], src: Optional[int]) -> None:
    if dst is None or src is None or ndd.data is None:
        return
    n = sizeof_namespace_index(ndd)
    ndd.data[dst:dst + n] = ndd.data[src:src + n]


def _test_bit_le(data: bytearray, base: int, nr: int) -> bool:
    return bool(data[base + nr // 8] >> (nr % 8) & 1)


def nd_label_data_init(ndd: NvdimmDrvdata) -> None:
    """Read the index blocks, validate them, then read the labels in use (KernelError on a
    failed read; an area without a valid index leaves every label invalid)."""
    if ndd.data is not None:
        return
    if ndd.nsarea_status or ndd.max_xfer == 0:
        ndd.dev.sys.klog.dev_dbg(ndd.dev, f"failed to init config data area: ({ndd.max_xfer}:{ndd.config_size})")
        raise KernelError(errno.ENXIO, f"{ndd.dev.name}: no label area")
    # the largest index area is the one of 128-byte labels: read and validate that first
    ndd.nslabel_size = 128
    read_size = sizeof_namespace_index(ndd) * 2
    if not read_size:
        raise KernelError(errno.ENXIO, f"{ndd.dev.name}: label area too small")
    config_size = ndd.config_size
    ndd.data = bytearray(config_size)

    # as few reads as possible: trim the transfer size so the last read wastes the least
    max_xfer = min(ndd.max_xfer, config_size)
    if read_size < max_xfer:
        max_xfer -= ((max_xfer - 1) - (config_size - 1) % max_xfer) // _div_round_up(config_size, max_xfer)
        if max_xfer < read_size:            # read the indexes in exactly one read
            max_xfer = read_size
    read_size = min(_div_round_up(read_size, max_xfer) * max_xfer, config_size)

    ndd.data[0:read_size] = nd.nvdimm_get_config_data(ndd, 0, read_size)

    ndd.ns_current = nd_label_validate(ndd)
    if ndd.ns_current < 0:
        return
    ndd.ns_next = nd_label_next_nsindex(ndd.ns_current)
    cur = to_current_namespace_index(ndd)
    assert cur is not None
    nd_label_copy(ndd, to_next_namespace_index(ndd), cur)
    f = _index(ndd, cur)
    offset = f[NSI_LABELOFF]
    free_base = cur + SIZEOF_ND_NAMESPACE_INDEX
    for i in range(f[NSI_NSLOT]):
        if _test_bit_le(ndd.data, free_base, i):             # zero out the unused labels
            ndd.data[offset:offset + ndd.nslabel_size] = bytes(ndd.nslabel_size)
        elif offset + ndd.nslabel_size > read_size:
            if read_size < offset:
                read_size = offset
            label_read_size = _div_round_up(offset + ndd.nslabel_size - read_size, max_xfer) * max_xfer
            if read_size + label_read_size > config_size:
                label_read_size = config_size - read_size
            ndd.data[read_size:read_size + label_read_size] = nd.nvdimm_get_config_data(ndd, read_size,
                                                                                         label_read_size)
            read_size += label_read_size
        offset += ndd.nslabel_size


def nd_label_nfree(ndd: NvdimmDrvdata) -> int:
    """Free label slots: the next index's free bitmap, or every slot when there is no index."""
    nxt = to_next_namespace_index(ndd)
    if nxt is None or ndd.data is None:
        return nvdimm_num_label_slots(ndd)
    nslot = _index(ndd, nxt)[NSI_NSLOT]
    base = nxt + SIZEOF_ND_NAMESPACE_INDEX
    return sum(1 for i in range(nslot) if base + i // 8 < len(ndd.data) and _test_bit_le(ndd.data, base, i))
