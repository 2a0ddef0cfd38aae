"""kernel/resource.c: the iomem resource tree (/proc/iomem), as far as the dax drivers claim it.

The model keeps only the busy (claimed) ranges below ``iomem_resource``: device_dax and kmem
claim each range of a dev_dax with :meth:`IomemResource.request_region` under the device's
name and give it back with :meth:`IomemResource.release_region`.  A request that overlaps a
claimed range fails with EBUSY, as ``__request_region()`` does when it meets a conflict.
"""

from __future__ import annotations

import errno

import attrs

from cxlsys.errors import KernelError


@attrs.define(eq=False)
class Resource:
    """struct resource: a claimed range, ``end`` inclusive as in the kernel, with its owner's name."""

    start: int
    end: int
    name: str
    child: str = "System RAM (kmem)"     # the busy System RAM resource hot-add puts below it


@attrs.define(eq=False)
class IomemResource:
    """iomem_resource: the root of /proc/iomem and its busy children."""

    busy: list = attrs.field(factory=list)      # [Resource]

    def conflict(self, start: int, size: int) -> Resource | None:
        """The claimed resource that [start, start + size) overlaps (__request_resource()'s conflict)."""
        end = start + size - 1
        return next((r for r in self.busy if start <= r.end and end >= r.start), None)

    def request_region(self, start: int, size: int, name: str) -> Resource:
        """__request_region(): claim [start, start + size) for ``name``; EBUSY if any of it is claimed."""
        if self.conflict(start, size) is not None:
            raise KernelError(errno.EBUSY, f"{name}: {start:#x}-{start + size - 1:#x} is busy")
        res = Resource(start, start + size - 1, name)
        self.busy.append(res)
        return res

    def release_region(self, res: Resource) -> None:
        """__release_region(): give the claim back (one that is no longer held is ignored)."""
        if res in self.busy:
            self.busy.remove(res)
