"""The one error type a refused sysfs operation raises.

A store that the kernel would refuse raises ``KernelError(errno, reason)``; the
system records ``reason`` in the kernel log and the projection hands ``errno`` to
the caller.  Stores must validate before they mutate, so that a raised error
leaves the model exactly as it was.

``KernelError`` is an ``OSError``: the in-process API keeps the contract of the mount and the
pyfakefs tree — ``except OSError as e: e.errno`` works everywhere — while ``reason`` carries the
kernel log's line (``strerror`` is the errno's standard text, as a failed write(2) shows it).
"""

from __future__ import annotations

import errno as _errno
import os


class KernelError(OSError):
    """A refusal as the kernel gives it: ``errno`` (always set) and ``reason``, the kernel log's
    line; ``str(e)`` is ``[EINVAL] reason``."""

    errno: int          # always set (OSError's may be None)

    def __init__(self, err: int, reason: str = ""):
        super().__init__(err, os.strerror(err))
        self.reason = reason or os.strerror(err)

    def __str__(self) -> str:
        return f"[{_errno.errorcode.get(self.errno, self.errno)}] {self.reason}"

    def __reduce__(self):
        return (type(self), (self.errno, self.reason))


def fail(err: int, reason: str) -> KernelError:
    """Build an error; ``raise fail(errno.EBUSY, 'why')`` reads like the kernel's ``return -EBUSY``."""
    return KernelError(err, reason)
