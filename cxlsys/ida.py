"""lib/idr.c's IDA as the CXL core uses it: hand out the lowest free id."""

from __future__ import annotations

import errno

import attrs

from cxlsys.errors import KernelError


@attrs.define
class IDA:
    name: str = "ida"
    max: int = (1 << 31) - 1
    used: set[int] = attrs.field(factory=set)

    def alloc(self, min_id: int = 0) -> int:
        i = min_id
        while i in self.used:
            i += 1
        if i > self.max:
            raise KernelError(errno.ENOSPC, f"{self.name}: no free id")
        self.used.add(i)
        return i

    def free(self, i: int) -> None:
        self.used.discard(i)
