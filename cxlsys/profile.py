"""Kernel profiles: the behaviour that differs between kernel versions (and proposals), in one place.

The baseline is Linux 6.12 LTS — the kernel the golden data and ndctl v76.1's tests were checked
against.  Code that depends on a version asks ``sys.profile`` instead of hard-coding one answer.
"""

from __future__ import annotations

import errno

import attrs


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


PROFILES = {
    "6.12": KernelProfile(name="6.12"),
    "6.11": KernelProfile(name="6.11", switch_decoder_choice="first_free", out_of_order_reset="ebusy"),
    "mainline": KernelProfile(name="mainline", dpa_alloc_no_mode_errno=errno.EBUSY),
}
DEFAULT = "6.12"
