"""The user-memory side of an ioctl: what ``copy_from_user``/``copy_to_user`` reach.

A char device's ``ioctl(cmd, arg, uaccess)`` (the model's ``unlocked_ioctl``) gets ``arg`` as the
caller's raw argument (usually a user pointer) and a :class:`UserMemory` to read and write the
caller's memory with.  Adapters supply one: the ``cxlsys run`` interposer reads and writes the
traced process; in-process tests use :class:`BufferUserMemory`.  A bad address raises
``KernelError(EFAULT)`` as ``copy_*_user`` returning non-zero makes the kernel do.
"""

from __future__ import annotations

import errno
from typing import Protocol

from cxlsys.errors import KernelError


class UserMemory(Protocol):
    def copy_from_user(self, addr: int, n: int) -> bytes:
        """``n`` bytes at ``addr`` of the caller; KernelError(EFAULT) if not all readable."""

    def copy_to_user(self, addr: int, data: bytes) -> None:
        """Write ``data`` at ``addr``; KernelError(EFAULT) if not all writable."""


class BufferUserMemory:
    """A fake address space of separate allocations, for in-process ioctl calls.

    ``addr = um.alloc(b"...")`` (or ``um.alloc(size)`` for zeroes) returns a user pointer;
    ``um.read(addr, n)`` reads back what the kernel side wrote.  Address 0 and anything outside an
    allocation fault."""

    def __init__(self) -> None:
        self._maps: dict[int, bytearray] = {}
        self._next = 0x10000

    def alloc(self, data: bytes | int) -> int:
        buf = bytearray(data) if isinstance(data, (bytes, bytearray)) else bytearray(data)
        addr = self._next
        self._maps[addr] = buf
        self._next += (len(buf) + 0xFFF) // 0x1000 * 0x1000 + 0x1000    # a guard gap between maps
        return addr

    def _find(self, addr: int, n: int) -> tuple[bytearray, int]:
        for base, buf in self._maps.items():
            if base <= addr and addr + n <= base + len(buf):
                return buf, addr - base
        raise KernelError(errno.EFAULT, f"bad user address {addr:#x} (+{n})")

    def copy_from_user(self, addr: int, n: int) -> bytes:
        if n == 0:
            return b""
        buf, off = self._find(addr, n)
        return bytes(buf[off:off + n])

    def copy_to_user(self, addr: int, data: bytes) -> None:
        if not data:
            return
        buf, off = self._find(addr, len(data))
        buf[off:off + len(data)] = data

    def read(self, addr: int, n: int) -> bytes:
        return self.copy_from_user(addr, n)
