"""Kernel hazards: sequences Linux accepts that leave its own state inconsistent, reproduced.

The model follows the kernel, bugs included: where a store the kernel accepts breaks what the
kernel otherwise maintains (a decoder committed with a geometry its region no longer has, a
reference left to a deleted region), cxlsys does the same -- a kernel developer can then see the
bug here before writing the fix.  What it adds is the diagnosis: the operation that opens the
hazard calls :func:`note_hazard`, which

* appends a :class:`Taint` to ``system.hazards`` (like the kernel's ``add_taint()``: from then on
  the state is what a buggy kernel would hold, and the consistency checker's findings on it are
  the kernel's, not the model's), and
* logs one ``warn`` line naming the hazard, the objects and the kernel function.

:data:`HAZARDS` lists each hazard with its source and the invariant rules
(:mod:`cxlsys.invariants`) it can leave broken.  After a hazard only those rules are excused
(:func:`unexplained`): the fuzzer counts hazards apart from model breaks, still reports a break of
any other rule and starts a fresh episode; the model tests fail on a hazard unless marked
``@pytest.mark.kernel_hazard``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:  # pragma: no cover
    from cxlsys.system import System

__all__ = ["HAZARDS", "Hazard", "Taint", "note_hazard", "unexplained"]


@attrs.frozen
class Hazard:
    name: str
    source: str          # the kernel function (Linux 6.12) that lets it through
    effect: str          # what goes wrong afterwards
    rules: tuple         # invariant rules it can leave broken


HAZARDS = {h.name: h for h in (
    Hazard("free-hpa-with-targets",
           "drivers/cxl/core/region.c: free_hpa() (size_store() with 0), no check of p->nr_targets",
           "the targets attached stay attached while the region's HPA goes back to IDLE; the checks "
           "cxl_region_attach() made against the old size and interleave_ways are not made again: a new "
           "size commits a target whose DPA no longer covers its share, a smaller interleave_ways leaves "
           "targets beyond the ways that unregister_region() never detaches",
           ("region.target", "region.targets", "region.commit", "region.refs", "region.decoders",
            "commit.regs", "commit.dpa", "switch.targets", "switch.geometry")),
    Hazard("detach-enabled-decoder",
           "drivers/cxl/core/region.c: cxl_region_detach(), cxl_region_decode_reset() only above ACTIVE",
           "an endpoint decoder firmware committed, attached to an auto region still short of targets, is "
           "detached (targetN, delete_region) without a decode reset: it stays enabled in its registers while "
           "cxld.hpa_range is cleared, and no region can take it again",
           ("commit.regs", "commit.dpa", "commit.orphan", "region.refs")),
    Hazard("auto-region-overlaps",
           "drivers/cxl/core/region.c: construct_region(), insert_resource() into the root decoder's window",
           "an endpoint decoder found committed (cxl_test's mock commits its auto region's decoder again on "
           "every probe) whose range is not exactly an existing region's (match_region_by_range()) builds a "
           "new region; insert_resource() nests instead of refusing an overlap, so two regions share HPA",
           ("hpa.disjoint", "iomem.disjoint", "iomem.owner")),
    Hazard("auto-attach-overwrites",
           "drivers/cxl/core/region.c: cxl_region_attach_auto(), p->targets[p->nr_targets] = cxled",
           "an auto region that lost a lower target (an endpoint port unbound: the decoder detached) gets it "
           "back when the port is bound again and firmware's commit re-found: it is recorded at position "
           "nr_targets, over the target already there, which keeps pointing at the region; once the count is "
           "full, 6.12's cxl_region_sort_targets() walks a NULL target (an oops; the model stops short)",
           ("region.targets", "region.refs", "region.decoders", "region.position", "region.state")),
    Hazard("mapping-while-bound",
           "drivers/dax/bus.c: mapping_store(), no check of dev->driver (size_store() has one)",
           "a range is appended to a dax device its driver already probed: device_dax neither claims it nor "
           "has it in its pgmap (a fault there finds no struct page), kmem never hotplugs it and at unbind "
           "6.12 reads data->res[] past the array it sized at probe",
           ("dax.bound", "mem.kmem", "mem.group")),
)}


@attrs.frozen
class Taint:
    hazard: Hazard
    objects: tuple       # names of the objects involved
    detail: str


def note_hazard(system: "System", name: str, detail: str, *objects: Any) -> Taint:
    """The operation running now opens hazard ``name`` (a key of :data:`HAZARDS`): record it on
    ``system.hazards`` and say so in the kernel log.  Called under the lock by the model."""
    h = HAZARDS[name]
    names = tuple(o if isinstance(o, str) else getattr(o, "name", repr(o)) for o in objects)
    t = Taint(h, names, detail)
    system.hazards.append(t)
    system.klog.log(f"cxlsys: kernel hazard {name}: {detail} (Linux 6.12 {h.source.partition(':')[0]} lets "
                    f"this through: {h.effect.partition(';')[0]})", "warn")
    return t


def unexplained(system: "System", lines: list) -> list:
    """The lines of :func:`cxlsys.invariants.check_invariants` no hazard on ``system.hazards``
    accounts for (their rule is not one of those hazards' ``rules``): after a hazard, what is still
    the model's to answer for."""
    covered = {r for t in system.hazards for r in t.hazard.rules}
    return [line for line in lines if line.split(": ", 2)[1:2] and line.split(": ", 2)[1] not in covered]
