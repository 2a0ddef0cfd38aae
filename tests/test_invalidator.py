"""fuse_mount.ops.Invalidator: the request loop never waits for ever on a page lock.

Invalidations run on helper threads; the loop waits for them at most ``patience`` seconds.  A
fake libfuse stands in: one path's invalidation blocks (as ``fuse_invalidate_path`` does while a
READ of that page waits in the loop's own queue) until the test releases it."""

from __future__ import annotations

import threading
import time

import pytest

ops = pytest.importorskip("fuse_mount.ops")


class FakeLib:
    def __init__(self, blocked: bytes = b""):
        self.done: list = []
        self.blocked = blocked
        self.release = threading.Event()

    def fuse_invalidate_path(self, ptr, path: bytes) -> int:
        if path == self.blocked:
            self.release.wait(30)
        self.done.append(path)
        return 0


def test_every_path_is_invalidated_before_run_returns(monkeypatch):
    lib = FakeLib()
    monkeypatch.setattr(ops, "_lib", lib)
    inv = ops.Invalidator(lambda: 1, threads=3)
    inv.run([f"devices/d{i}" for i in range(20)])
    assert sorted(lib.done) == sorted(f"/devices/d{i}".encode() for i in range(20))
    assert inv.count == 20 and inv.late == 0


def test_a_blocked_invalidation_costs_patience_not_a_hang(monkeypatch):
    lib = FakeLib(blocked=b"/devices/locked")
    monkeypatch.setattr(ops, "_lib", lib)
    inv = ops.Invalidator(lambda: 1, threads=2, patience=0.05)
    inv.run(["devices/locked", "devices/other"])          # returns: the lock holder is the loop's next request
    assert inv.late == 1 and b"/devices/other" in lib.done and b"/devices/locked" not in lib.done
    lib.release.set()                                     # the READ was served: the helper finishes on its own
    inv.run(["devices/after"])
    assert b"/devices/after" in lib.done


def test_a_big_batch_is_waited_for_whatever_it_takes(monkeypatch):
    """Unbinding kmem from a 2 TiB device forgets ~100 000 entries: patience bounds a wait that
    makes no progress, not the batch (daxctl checks the driver link right after its unbind)."""
    lib = FakeLib()
    slow = lib.fuse_invalidate_path

    def each(ptr, path):
        time.sleep(0.001)               # a notify that takes its time in the kernel
        return slow(ptr, path)
    monkeypatch.setattr(lib, "fuse_invalidate_path", each)
    monkeypatch.setattr(ops, "_lib", lib)
    inv = ops.Invalidator(lambda: 1, threads=2, patience=0.05)
    inv.run([f"devices/system/memory/memory{i}" for i in range(300)])
    assert inv.late == 0 and len(lib.done) == 300


def test_a_mount_below_a_prefix_gets_its_own_paths_only(monkeypatch):
    lib = FakeLib()
    monkeypatch.setattr(ops, "_lib", lib)
    inv = ops.Invalidator(lambda: 1, prefix="kernel")
    inv.run(["kernel/tracing/instances/foo", "devices/system/memory/memory0", "kernelx/y", "kernel"])
    assert sorted(lib.done) == [b"/", b"/tracing/instances/foo"]
