"""Every attribute that declares a value scope narrower than ANY keeps it.

A mount that lets the kernel keep file contents (fuse_mount, the default) asks the model again
about a held CONST file only when its owner goes, about an OWN file only when its owner was
reported changed (cxlsys.base.changes); a wrong declaration is a stale read.  So: generated
operations (the fuzzer's, on several topologies), and after each one every scoped value is
compared with the change reports it made."""

from __future__ import annotations

import pytest

from cxlsys import fuzz
from cxlsys.fuzz import Generator, RandomChooser, Runner, scope_violations, scoped_values, write
from cxlsys.kernfs import CONST, OWN

CASES = [("cxl_test", 0, 150), ("cxl_test", 1, 150), ("cxl_test", 2, 150), ("qemu-hdm-db", 0, 100),
         ("bi-direct", 0, 100)]


def _run(fs, ops) -> list:
    runner = Runner(fs, invariants_every=0)
    before = scoped_values(fs)
    bad: list = []
    for op in ops:
        gen0 = fs.sys.changes.gen
        runner.execute(op)
        cs = fs.sys.changes.since(gen0)
        after = scoped_values(fs)
        bad += [f"after {op.show()}: {v}" for v in scope_violations(before, after, cs.owners, cs.everything)]
        before = after
    return bad


@pytest.mark.parametrize("topology,seed,n", CASES)
def test_declared_scopes_hold_under_generated_operations(topology, seed, n):
    fs = fuzz.boot(topology)
    gen = Generator(fs, RandomChooser(f"scopes.{seed}"))
    done = []

    def generated():         # lazily: each operation is chosen from the state the one before left
        for _ in range(n):
            done.append(gen.next_op())
            yield done[-1]
    bad = _run(fs, generated())
    assert not bad, "\n".join(bad[:20])
    assert len(done) == n


def test_hotplug_scopes_hold_block_by_block():
    """The files daxctl reads per block (phys_index CONST, state and online OWN) through an online
    and an offline of every block of cxl_test's kmem device, and a reconfigure back to devdax."""
    fs = fuzz.boot("cxl_test")
    blocks = [p.rpartition("/")[0] for p, _ in fs.walk("devices/system/memory") if p.endswith("/phys_index")]
    assert blocks
    ops = [write(f"{b}/state", "online_movable") for b in blocks] + [write(f"{b}/state", "offline") for b in blocks]
    assert not _run(fs, ops)
    assert fs.value_scope(f"{blocks[0]}/phys_index")[0] == CONST
    assert fs.value_scope(f"{blocks[0]}/state")[0] == OWN


def test_a_wrong_declaration_is_caught(monkeypatch):
    """The check itself: a block's state declared CONST is reported stale after an online."""
    fs = fuzz.boot("cxl_test")
    blk = next(p.rpartition("/")[0] for p, _ in fs.walk("devices/system/memory") if p.endswith("/phys_index"))
    real = fs.value_scope

    def lying(path):
        scope, owner = real(path)
        return (CONST, owner) if path.endswith("/state") else (scope, owner)
    monkeypatch.setattr(fs, "value_scope", lying)
    bad = _run(fs, [write(f"{blk}/state", "online_movable")])
    assert any(f"{blk}/state: declared const" in b for b in bad), bad
