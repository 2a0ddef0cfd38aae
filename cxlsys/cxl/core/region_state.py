"""The region declarations of drivers/cxl/cxl.h that every part of region.c uses.

``enum cxl_config_state``: a region moves IDLE -> INTERLEAVE_ACTIVE (it has HPA) -> ACTIVE (all
targets attached and set up) -> COMMIT (decoders programmed), through RESET_PENDING on the way
back down; ``CXL_DECODER_MAX_INTERLEAVE`` bounds its targets.
"""

from __future__ import annotations

IDLE, INTERLEAVE_ACTIVE, ACTIVE, RESET_PENDING, COMMIT = range(5)
STATE_NAMES = ["idle", "interleave_active", "active", "reset_pending", "commit"]
MAX_TARGETS = 16            # CXL_DECODER_MAX_INTERLEAVE


def is_cxl_region(dev) -> bool:
    """is_cxl_region(): ``dev`` is a regionN device (its device type is cxl_region)."""
    return dev.devtype == "cxl_region"
