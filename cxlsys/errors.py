"""The one error type a refused sysfs operation raises.

A store that the kernel would refuse raises ``KernelError(errno, reason)``; the
system records ``reason`` in the kernel log and the projection hands ``errno`` to
the caller.  Stores must validate before they mutate, so that a raised error
leaves the model exactly as it was.
"""

from __future__ import annotations

import errno as _errno
import os


class KernelError(Exception):
    def __init__(self, err: int, reason: str = ""):
        self.errno = err
        self.reason = reason or os.strerror(err)
        super().__init__(f"[{_errno.errorcode.get(err, err)}] {self.reason}")


def fail(err: int, reason: str) -> KernelError:
    """Build an error; ``raise fail(errno.EBUSY, 'why')`` reads like the kernel's ``return -EBUSY``."""
    return KernelError(err, reason)
