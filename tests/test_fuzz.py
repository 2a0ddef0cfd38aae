"""Property-based fuzzing (issue 11 item 3), bounded for CI: hypothesis drives cxlsys.fuzz's
generator through a stateful machine (provisioning plans, valid-looking writes, hostile writes,
teardown) over cxl_test; after every operation a refusal must leave the deep snapshot unchanged,
no internal error may appear and the model's invariants must hold.  The long run is
``python -m tools.fuzz``; these tests are its CI-sized share, plus the engine's own checks and a
short run through the mount."""

from __future__ import annotations

import errno
import json
import os
import sys

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from cxlsys import fuzz
from cxlsys.dax.bus import DevDax
from cxlsys.errors import KernelError
from cxlsys.fuzz import ChooserMixin, FuzzStats, Generator, Op, Runner, SideEffect, boot, deep_snapshot, write
from cxlsys.testing import CXL_DEVICES as CXL
from cxlsys.testing import cxlsys_run, endpoint_decoders, memdev, read_value

SZ = 256 << 20
U1 = "6f1d3c0e-8a1b-4c5d-9e2f-0a1b2c3d4e5f"
check_invariants = fuzz.load_invariants()     # None until cxlsys/invariants.py exists


class DataChooser(ChooserMixin):
    """Every choice of the generator is a hypothesis draw: a failure shrinks choice by choice."""

    def __init__(self, data):
        self.data = data

    def randint(self, a: int, b: int) -> int:
        return self.data.draw(st.integers(a, b))


def _fmt(ops) -> str:
    return "\n".join(f"  {i:3}: {o.show()}  [{o.tag}]" for i, o in enumerate(ops))


class FuzzMachine(RuleBasedStateMachine):
    """One model per example; every rule applies operations from the shared generator and checks
    each (the deep snapshot before every write)."""

    stats = FuzzStats()

    @initialize()
    def boot_model(self):
        self.fs = boot("cxl_test")
        self.gen = Generator(self.fs, DataChooser(None))
        self.runner = Runner(self.fs, deep_every=1, invariants_every=0)   # invariants: the @invariant below
        self.ops: list = []

    def _apply(self, op: Op | None) -> None:
        if op is None:
            return
        self.ops.append(op)
        out = self.runner.apply(op)
        self.stats.add(out, self.fs)
        assert not out.failed, "\n".join(out.problems()) + "\nreproducer (from boot):\n" + _fmt(self.ops)

    def _steps(self, data, n: int) -> None:
        for _ in range(n):
            if self.gen.plan is None:
                return
            self.gen.c = DataChooser(data)
            self.gen.maybe_refresh()
            self._apply(self.gen.plan_step())

    @rule(data=st.data(), steps=st.integers(1, 16),
          plan=st.sampled_from(["region", "memory", "dax", "region", "split", "online_all", "memory"]))
    def provision(self, data, plan, steps):
        """Start a plan (if none is under way) and run some of its steps."""
        self.gen.c = DataChooser(data)
        if self.gen.plan is None:
            self.gen.start_plan(plan)
        self._steps(data, steps)

    @rule(data=st.data(), clock=st.integers(0, 9))
    def valid_write(self, data, clock):
        """A valid-looking write to any writable file (now and then: the clock moves on instead)."""
        self.gen.c = DataChooser(data)
        self.gen.maybe_refresh()
        self._apply(self.gen.advance_op() if clock == 9 else self.gen.valid_op())

    @rule(data=st.data())
    def hostile_write(self, data):
        self.gen.c = DataChooser(data)
        self.gen.maybe_refresh()
        self._apply(self.gen.hostile_op())

    @rule(data=st.data())
    def tear_down_region(self, data):
        self.gen.c = DataChooser(data)
        self.gen.start_plan("teardown")
        self._steps(data, 32)

    @invariant()
    def model_invariants(self):
        """check_invariants() == [] -- until a kernel hazard (cxlsys.hazards): after one, the state
        is the buggy kernel's (the runner stops checking too)."""
        if check_invariants is not None and hasattr(self, "fs") and not self.fs.sys.hazards:
            broken = check_invariants(self.fs.sys)
            assert broken == [], "\n".join(broken) + "\nreproducer (from boot):\n" + _fmt(self.ops)


# CI's bounded size: derandomized (the same examples every run), no database.  Shrinking re-runs the
# model thousands of times (tens of minutes): off in CI, where a failure prints its whole
# reproducer anyway; CXLSYS_FUZZ_SHRINK=1 turns it on to get a minimal one.
CI = settings(max_examples=6, stateful_step_count=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), print_blob=False,
              phases=[Phase.explicit, Phase.generate] + ([Phase.shrink] if os.environ.get("CXLSYS_FUZZ_SHRINK")
                                                         else []))


@pytest.mark.kernel_hazard
def test_stateful_fuzz_reaches_deep_state_and_holds():
    """The bounded run: every property holds, and the run got deep — regions committed and bound,
    dax devices bound, memory blocks onlined (what the accepted writes reached)."""
    FuzzMachine.stats = FuzzStats()
    run_state_machine_as_test(FuzzMachine, settings=CI)
    s = FuzzMachine.stats
    reached = set(s.milestones)
    assert {"region created", "region committed", "region driver bound", "dpa allocated"} <= reached, s.milestones
    assert {"dax bound to kmem", "dax bound to device_dax"} & reached, s.milestones
    assert {"memory block onlined", "memory block offlined"} & reached, s.milestones
    assert s.deep_checks == sum(s.refused.values()) > 0        # every refusal compared deep
    assert s.internal == s.changed == s.invariant_breaks == 0


def test_long_run_engine_is_reproducible():
    """The long run's episodes are a function of the seed (fake clock, seeded choices): the same
    seed gives the same operations, accepted and refused alike."""
    seen = []
    for _ in range(2):
        got: list = []
        fuzz.run_episode("cxl_test", "repro", 150, deep_every=25, on_op=lambda o: got.append((o.op, o.errno)))
        seen.append(got)
    assert seen[0] == seen[1]
    assert any(e is None for _, e in seen[0]) and any(e is not None for _, e in seen[0])


@pytest.mark.kernel_hazard
def test_long_run_in_worker_processes_is_the_same_run():
    """--jobs: episodes in worker processes, seeded by their index, give the run one process gives;
    the seed reproduces a kernel hazard, which ends its episode early and is counted apart."""
    kw = dict(seed=7, episode_ops=300, deep_every=50, refresh_every=20)
    one, two = fuzz.fuzz(1500, jobs=1, **kw), fuzz.fuzz(1500, jobs=2, **kw)
    assert one.ops == two.ops == 1500
    for f in ("accepted", "refused", "milestones", "tags", "hazards", "episodes", "invariant_checks"):
        assert getattr(one, f) == getattr(two, f), f
    assert one.hazards and one.episodes > 5
    assert one.internal == one.changed == one.invariant_breaks == 0


def test_a_refusal_that_changes_state_is_caught(monkeypatch):
    """The property has teeth: a store that changes something and then refuses is reported with a
    diff naming the file, and an exception in a store (EIO, a WARN traceback) is an internal error."""
    real = DevDax.memmap_on_memory_store
    bug = {"kind": None}

    def store(self, buf):                        # the real store, or a (simulated) bug
        if bug["kind"] == "change":
            self.memmap_on_memory = not self.memmap_on_memory
            raise KernelError(errno.EBUSY, "refused after a change")
        if bug["kind"] == "raise":
            raise ZeroDivisionError("bug")
        return real(self, buf)
    monkeypatch.setattr(DevDax, "memmap_on_memory_store", store)    # bound when the tree is built
    fs = boot("cxl_test")
    runner = Runner(fs, invariants_every=0)
    r = "bus/dax/devices/dax0.0/memmap_on_memory"
    out = runner.apply(write(r, "bogus"))        # refused by the model: nothing changes
    assert out.errno == errno.EINVAL and out.checked == "deep" and not out.failed

    bug["kind"] = "change"
    out = runner.apply(write(r, "0"))
    assert out.errno == errno.EBUSY and out.checked == "deep"
    assert any("dax0.0/memmap_on_memory" in line for line in out.changed), out.changed
    assert out.failed and "state changed on refusal" in out.problems()[0]

    bug["kind"] = "raise"
    out = runner.apply(write(r, "256"))
    assert out.errno == errno.EIO and out.internal and "ZeroDivisionError" in out.internal[0]
    assert not out.changed and out.failed


def test_known_kernel_side_effects_are_named_not_hidden():
    """A refusal the kernel makes after changing something — the last target of a region whose
    "setup targets" fails (cxl-core-abi §4.6 #14, §4.6.2: HB0's decoder would need 16384 x 2, the
    switch below it 32768) stays recorded, with the switch decoders' programming — is allowed
    only as that named side effect; any other change in the same refusal is still a failure."""
    fs = boot("cxl_test")
    e01 = endpoint_decoders(memdev(fs.sys, "cxl_mem.0"))[1].name
    e20 = endpoint_decoders(memdev(fs.sys, "cxl_mem.2"))[0].name
    r = read_value(fs, f"{CXL}/decoder0.2/create_pmem_region")
    ops = [write(f"{CXL}/{e}/{a}", v) for e in (e01, e20) for a, v in (("mode", "pmem"), ("dpa_size", "0x10000000"))]
    ops += [write(f"{CXL}/decoder0.2/create_pmem_region", r), write(f"{CXL}/{r}/uuid", U1),
            write(f"{CXL}/{r}/interleave_granularity", 16384), write(f"{CXL}/{r}/interleave_ways", 2),
            write(f"{CXL}/{r}/size", "0x20000000"), write(f"{CXL}/{r}/target0", e01)]
    runner = Runner(fs)
    assert all(runner.apply(op).accepted for op in ops)
    out = runner.apply(write(f"{CXL}/{r}/target1", e20))
    assert out.errno == errno.EINVAL and out.side_effect == "target-setup-failed" and not out.failed
    assert read_value(fs, f"{CXL}/{r}/target1") == e20
    se: SideEffect = fuzz.KNOWN_SIDE_EFFECTS[0]
    op = write(f"{CXL}/{r}/target1", e20)
    assert se.match(op, errno.EINVAL, {f"devices/platform/cxl_acpi.0/root0/decoder0.2/{r}/target1"})
    assert not se.match(op, errno.EINVAL, {f"devices/platform/cxl_acpi.0/root0/decoder0.2/{r}/size"})
    assert not se.match(write(f"{CXL}/{r}/size", "0"), errno.EINVAL, set())


def test_dpa_size_frees_before_a_failed_allocation():
    """cxl-core-abi §2.5: dpa_size frees first, so a refused larger allocation (ENOSPC) leaves the
    decoder without DPA — the kernel's behaviour, allowed as "dpa-freed-before-alloc"."""
    fs = boot("cxl_test")
    e0, e1, e2 = (e.name for e in endpoint_decoders(memdev(fs.sys, "cxl_mem.3"))[:3])
    ops = [write(f"{CXL}/{e}/{a}", v) for e, m, n in ((e0, "ram", SZ), (e1, "ram", SZ), (e2, "pmem", 2 * SZ))
           for a, v in (("mode", m), ("dpa_size", hex(n)))]
    runner = Runner(fs)
    assert all(runner.apply(op).accepted for op in ops)
    out = runner.apply(write(f"{CXL}/{e2}/dpa_size", 16 * SZ))
    assert out.errno == errno.ENOSPC and out.side_effect == "dpa-freed-before-alloc" and not out.failed
    assert read_value(fs, f"{CXL}/{e2}/dpa_size") == "0x0000000000000000"
    assert [s.name for s in fuzz.KNOWN_SIDE_EFFECTS] == ["target-setup-failed", "dpa-freed-before-alloc"]


def test_deep_snapshot_skips_only_volatile_files():
    fs = boot("cxl_test")
    snap = deep_snapshot(fs)
    skipped = {p for p, (kind, _, _, value) in snap.items() if kind == "file" and value is None
               and fs.lookup(p).readable}
    assert skipped and all(fuzz.volatile(p) for p in skipped)
    assert {p.rpartition("/")[2] for p in skipped} <= {"trace", "trace_pipe", "trace_pipe_raw", "stats",
                                                       "saved_cmdlines"}
    assert snap[".cxlsys/proc/iomem"][3].startswith(b"00001000-")      # the /proc files are in it
    assert snap == deep_snapshot(fs)                                  # reading changes nothing


def test_failure_reproducer_round_trips_and_replays():
    ops = [write("bus/cxl/devices/decoder5.1/mode", "ram"), Op("advance", b"1", kind="advance"),
           Op("bus/cxl/devices/decoder5.1/dpa_size", b"\xff\0\n", tag="hostile")]
    back = [Op.from_json(json.loads(json.dumps(o.to_json()))) for o in ops]
    assert back == ops
    outs = fuzz.replay("cxl_test", back)
    assert [o.errno for o in outs] == [None, None, errno.EINVAL] and not any(o.failed for o in outs)


@pytest.mark.mount
def test_fuzz_through_the_mount():
    """A few hundred generated writes with os.write through ``cxlsys run``: the daemon keeps
    answering, and its kernel log has no internal error."""
    script = (f"{sys.executable} -c 'import json; from cxlsys.fuzz import mount_inner; "
              "print(json.dumps(mount_inner(300, seed=3)))'\n"
              "echo WARNS=$(dmesg | grep -c 'WARNING: cxlsys internal error' || true)\n")
    r = cxlsys_run(script, timeout=600)
    lines = r.stdout.splitlines()
    res = json.loads(lines[0])
    assert res["ops"] == 300 and not res["dead"] and res["alive"], res
    assert res["accepted"] > 0 and sum(res["refused"].values()) > 0
    assert lines[-1] == "WARNS=0", r.stdout
    assert res["mirror"]["internal"] == res["mirror"]["changed"] == 0, res["mirror"]
    assert res["divergent"] == 0, res["divergences"]      # the mount answers as the model does
