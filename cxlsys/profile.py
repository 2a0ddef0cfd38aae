"""Kernel profiles: the behaviour that differs between kernel versions (and proposals), in one place.

The baseline is Linux 6.12 LTS — the kernel the golden data and ndctl v76.1's tests were checked
against.  Code that depends on a version asks ``sys.profile`` instead of hard-coding one answer.
"""

from __future__ import annotations

import errno
from typing import Any

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
class PrivateNodes:
    """Which private-memory-nodes design a profile carries (kernel-now.md §2.1, policy-proposals.md §A)."""

    version: int                                # 4: the ops/NP_OPS design; 5: the caps design


@attrs.frozen
class KernelProfile:
    """What one kernel (a base version plus proposals) does where versions differ.  Build one with
    :func:`resolve` from a spec such as ``"7.3+private-nodes-v5"``."""

    name: str
    base: str = "6.12"
    proposals: tuple = ()
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
    # dax/kmem.c: the whole-device daxX.Y/state attribute (merged in v7.3-rc1)
    kmem_state: bool = False
    # proposals (None = not in this kernel)
    bi: "BiUapi | None" = None
    private_nodes: "PrivateNodes | None" = None


class ProfileError(ValueError):
    """A kernel spec that names no known base or proposal, or an impossible combination: ``str(e)``
    is the one-line message."""


# the base kernels, each what differs from the 6.12 defaults above
BASES: dict[str, dict[str, Any]] = {
    "6.11": dict(switch_decoder_choice="first_free", out_of_order_reset="ebusy"),
    "6.12": dict(),
    "7.3": dict(dpa_alloc_no_mode_errno=errno.EBUSY, kmem_state=True),
}
BASE_ALIASES = {"mainline": "7.3"}             # mainline = the newest base modelled

# the proposals, each one change to a profile, with the bases it applies to
PROPOSALS = {
    # HDM-DB Back-Invalidate (RFC 2025-08 .. v4 2026-06), on any base
    "bi": (lambda p: attrs.evolve(p, bi=BiUapi()), tuple(BASES)),
    # private memory nodes: v5 (caps, 2026-07) and v4 (ops); both build on the v7.3 dax/kmem work
    "private-nodes-v5": (lambda p: attrs.evolve(p, private_nodes=PrivateNodes(5)), ("7.3",)),
    "private-nodes-v4": (lambda p: attrs.evolve(p, private_nodes=PrivateNodes(4)), ("7.3",)),
}
PROPOSAL_ALIASES = {"private-nodes": "private-nodes-v5"}   # the newest modelled version
EXCLUSIVE = ({"private-nodes-v4", "private-nodes-v5"},)    # two versions of one series
# the names of profiles before they composed (kept working)
SPEC_ALIASES = {"6.12-bi": "6.12+bi", "mainline-bi": "mainline+bi"}
DEFAULT = "6.12"


def resolve(spec: str) -> KernelProfile:
    """``BASE[+PROPOSAL...]`` -> the profile; ProfileError (one line) for anything else."""
    spec = SPEC_ALIASES.get(spec.strip(), spec.strip())
    base, *props = spec.split("+")
    base = BASE_ALIASES.get(base, base)
    if base not in BASES:
        known = ", ".join([*BASES, *BASE_ALIASES])
        raise ProfileError(f"kernel {spec!r}: unknown base {base!r} (known: {known})")
    p = KernelProfile(name=base, base=base, **BASES[base])
    seen: list = []
    for raw in props:
        name = PROPOSAL_ALIASES.get(raw, raw)
        if name not in PROPOSALS:
            known = ", ".join([*PROPOSALS, *PROPOSAL_ALIASES])
            raise ProfileError(f"kernel {spec!r}: unknown proposal {raw!r} (known: {known})")
        if name in seen:
            raise ProfileError(f"kernel {spec!r}: proposal {name!r} given twice")
        apply, bases = PROPOSALS[name]
        if base not in bases:
            raise ProfileError(f"kernel {spec!r}: {name} applies to {', '.join(bases)}, not {base}")
        for group in EXCLUSIVE:
            clash = group & set(seen)
            if name in group and clash:
                raise ProfileError(f"kernel {spec!r}: {name} and {clash.pop()} are versions of one series; pick one")
        seen.append(name)
        p = apply(p)
    return attrs.evolve(p, name="+".join([base, *seen]), proposals=tuple(seen))


def known_specs() -> str:
    """For help texts: the bases and proposals."""
    return (f"BASE[+PROPOSAL...]; bases {', '.join([*BASES, *BASE_ALIASES])}; proposals "
            f"{', '.join([*PROPOSALS, *PROPOSAL_ALIASES])}")
