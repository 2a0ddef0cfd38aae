"""Kernel profiles: the behaviour that differs between kernel versions (and proposals), in one place.

The baseline is Linux 6.12 LTS — the kernel the golden data and ndctl v76.1's tests were checked
against.  Code that depends on a version asks ``sys.profile`` instead of hard-coding one answer.
"""

from __future__ import annotations

import errno

import attrs

# The HDM-DB Back-Invalidate proposal's user-visible names.  None is in a merged kernel (the series
# was read only in part), so they are declared here and the attribute tables use these constants:
BI_CREATE_ATTR = "create_ram_bi_region"   # root decoder: two-step name handshake, region marked BI
BI_DECODER_ATTR = "bi"                    # endpoint decoder: 0/1, written before attach/commit


@attrs.frozen
class BiUapi:
    """The HDM-DB Back-Invalidate proposal's user ABI besides its names (``BI_*_ATTR`` above):
    its errnos, switchable in one place."""

    # errno choices, following the closest existing CXL core conventions:
    err_not_capable: int = errno.ENXIO          # device or path cannot do BI (like the HDM capability check)
    err_mismatch: int = errno.EINVAL            # BI decoder in a non-BI region or the reverse (like mode mismatch)
    err_busy: int = errno.EBUSY                 # decoder committed or already in a region (like mode)
    err_timeout: int = errno.ETIMEDOUT          # explicit BI commit never completed (like HDM commit)
    err_commit: int = errno.EIO                 # BI commit reported error-not-committed


@attrs.frozen
class KernelProfile:
    name: str
    # hdm.c: dpa_size write while the decoder's mode/partition is unset (v6.15+: "partition not set")
    dpa_alloc_no_mode_errno: int = errno.EINVAL
    # region.c: which switch/host-bridge decoder a new region takes at a port
    #   "commit_order": only decoder commit_end+1, all lower ones enabled (v6.12+)
    #   "first_free":   lowest-id decoder without a region (<= v6.11)
    switch_decoder_choice: str = "commit_order"
    # hdm.c: resetting a decoder that is not the last committed one
    #   "reap": allowed, commit_end reaped later (v6.12+);  "ebusy": refused (<= v6.11)
    out_of_order_reset: str = "reap"
    # memdev.c: security/sanitize with no endpoint (v6.7+: EBUSY, v6.6: EINVAL)
    sanitize_no_endpoint_errno: int = errno.EBUSY
    # proposals (None = not in this kernel)
    bi: "BiUapi | None" = None


PROFILES = {
    "6.12": KernelProfile(name="6.12"),
    "6.11": KernelProfile(name="6.11", switch_decoder_choice="first_free", out_of_order_reset="ebusy"),
    "mainline": KernelProfile(name="mainline", dpa_alloc_no_mode_errno=errno.EBUSY),
    # 6.12 plus the Back-Invalidate series (RFC 2025-08 .. v4 2026-06) as modelled here
    "6.12-bi": KernelProfile(name="6.12-bi", bi=BiUapi()),
    "mainline-bi": KernelProfile(name="mainline-bi", dpa_alloc_no_mode_errno=errno.EBUSY, bi=BiUapi()),
}
DEFAULT = "6.12"
