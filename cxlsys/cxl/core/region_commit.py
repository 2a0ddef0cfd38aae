"""drivers/cxl/core/region.c, commit and decommit: programming a region's decoders and resetting them.

cxl_region_decode_commit() commits every target's decoders from the endpoint up to the host
bridge, in position order, and on a failure resets what it committed; cxl_region_decode_reset()
resets them top position first.  :func:`region_decommit` is ``commit`` = 0 (and a detach from a
committed region): RESET_PENDING, unbind the region driver, reset, back to ACTIVE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxlsys.cxl.core import hdm
from cxlsys.cxl.core.port import CxlEndpointDecoder, ep_path
from cxlsys.cxl.core.region_state import ACTIVE, RESET_PENDING
from cxlsys.errors import KernelError

if TYPE_CHECKING:  # pragma: no cover - forward declaration (region.py sits above this file)
    from cxlsys.cxl.core.region import CxlRegion


def _commit_path(cxlr: CxlRegion, cxled: CxlEndpointDecoder):
    """Decoders from the endpoint up to the host bridge (bottom-up)."""
    return [p.regions[cxlr].decoder for p in ep_path(cxled)]


def cxl_region_decode_commit(cxlr: CxlRegion) -> None:
    """Commit each position's decoders, endpoint first; on a failure reset everything committed."""
    for i in range(cxlr.interleave_ways):
        cxled = cxlr.targets[i]
        path = _commit_path(cxlr, cxled)
        try:
            for dec in path:
                hdm.cxl_decoder_commit(dec)
        except KernelError as e:
            for dec in reversed(path):
                hdm.cxl_decoder_reset(dec)
            for j in range(i - 1, -1, -1):
                for dec in reversed(_commit_path(cxlr, cxlr.targets[j])):
                    hdm.cxl_decoder_reset(dec)
            cxlr.sys.klog.log(f"cxl_core {cxlr.name}: commit failed at target{i}: {e.reason}", "err")
            raise


def cxl_region_decode_reset(cxlr: CxlRegion) -> None:
    """Reset every attached position's decoders, the last position first, host bridge down."""
    for i in range(cxlr.interleave_ways - 1, -1, -1):
        cxled = cxlr.targets[i]
        if cxled is None:
            continue
        for dec in reversed(_commit_path(cxlr, cxled)):
            hdm.cxl_decoder_reset(dec)


def region_decommit(cxlr: CxlRegion) -> None:
    """commit = 0: RESET_PENDING, release the region driver, reset the decoders, back to ACTIVE."""
    cxlr.state = RESET_PENDING
    if cxlr.driver is not None:
        cxlr.driver.release(cxlr)
    cxl_region_decode_reset(cxlr)
    cxlr.state = ACTIVE
    cxlr.auto = False
