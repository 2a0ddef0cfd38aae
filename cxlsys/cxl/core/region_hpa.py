"""drivers/cxl/core/region.c, HPA allocation: alloc_hpa() and free_hpa(), behind a region's ``size``.

A region's host physical address range is taken from its root decoder's window: 256 MiB
aligned, first fit, around the other regions' ranges and any memory a forced teardown left
online there.  Allocating moves the region to INTERLEAVE_ACTIVE, freeing back to IDLE.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from cxlsys.cxl import cxl as C
from cxlsys.cxl.core.region_state import IDLE, INTERLEAVE_ACTIVE, is_cxl_region
from cxlsys.errors import KernelError
from cxlsys.hazards import note_hazard

if TYPE_CHECKING:  # pragma: no cover - forward declaration (region.py sits above this file)
    from cxlsys.cxl.core.region import CxlRegion


def alloc_hpa(cxlr: CxlRegion, size: int, start: int | None = None) -> None:
    """Give ``cxlr`` ``size`` bytes of its root decoder's window (at ``start`` when firmware placed it)."""
    root = cxlr.root
    busy = sorted((r.hpa_start, r.hpa_start + r.hpa_size) for r in root.children.values()
                  if is_cxl_region(r) and r is not cxlr and r.hpa_start is not None)
    busy += cxlr.sys.hpa_busy_ranges(root)
    wstart, wend = root.hpa_start, root.hpa_start + root.hpa_size
    if start is None:
        a = (wstart + C.SZ_256M - 1) // C.SZ_256M * C.SZ_256M
        while a + size <= wend:
            if all(a + size <= s or a >= e for s, e in busy):
                start = a
                break
            a += C.SZ_256M
        if start is None:
            raise KernelError(errno.ERANGE, f"{cxlr.name}: no {size:#x} of free HPA in {root.name} window")
    cxlr.hpa_start, cxlr.hpa_size = start, size
    cxlr.state = INTERLEAVE_ACTIVE


def free_hpa(cxlr: CxlRegion) -> None:
    """Give the region's HPA back (``size`` = 0).  As in 6.12 even with targets attached: a hazard."""
    if cxlr.nr_targets:
        note_hazard(cxlr.sys, "free-hpa-with-targets",
                    f"{cxlr.name}: size 0 with {cxlr.nr_targets} target(s) attached", cxlr,
                    *(t for t in cxlr.targets if t is not None))
    cxlr.hpa_start, cxlr.hpa_size = None, 0
    cxlr.state = IDLE
