"""Property-based fuzzing of every writable file: the operation generator and the runner that
checks the properties after each operation.  Shared by ``tests/test_fuzz.py`` (hypothesis, bounded
for CI), ``tools/fuzz.py`` (the long run) and the through-the-mount run (:func:`mount_inner`).

**Operations** (:class:`Op`) are writes to files of the live projection (``Sysfs.walk()`` entries
with a write bit, re-walked when the tree's shape changes), plus two rare non-writes:
``modprobe`` (``-r cxl_test`` / ``cxl_test``) and ``advance`` (the model's clock moves on, so
delayed work — sanitize, firmware upload — completes).  :class:`Generator` mixes

* *plans*: the valid sequences an admin runs, computed step by step from the live state (names are
  never guessed): DPA on endpoint decoders, ``create_*_region``, geometry, uuid, size, targets,
  commit, the cxl_region driver; dax reconfiguration (offline blocks, kmem <-> device_dax through
  bind/unbind/new_id); dax region splits (``create``, ``size``, ``mapping``); memory block
  ``state``/``online``; teardown (careful or careless); other plans' writes are interleaved;
* *valid-looking* writes to any writable file: values of the attribute's type around its current
  value, names of live objects, sizes aligned to 256 MiB;
* *hostile* writes: empty, whitespace, huge and negative numbers, words, NUL bytes, non-UTF-8,
  non-ASCII digits, names of objects that do not exist, long strings.

A :class:`Chooser` makes every choice from ``randint``: :class:`RandomChooser` (seeded
``random.Random``) for the long run, a hypothesis ``data.draw`` adapter in the test, so hypothesis
shrinks a failing sequence choice by choice.

**Properties** (:class:`Runner`, after every operation):

1. a refused write (``KernelError``, not an internal error) leaves the state unchanged: the *deep
   snapshot* (:func:`deep_snapshot`: ``Sysfs.snapshot()`` — every path's kind, mode and link
   target — plus the value or errno of every readable attribute, and the model's /proc/meminfo
   and /proc/iomem) is identical before and after, except for refusals the kernel itself makes
   with a side effect (:data:`KNOWN_SIDE_EFFECTS`).  Volatile files are not compared
   (:func:`volatile`): tracefs buffers and their readers (``trace``, ``trace_pipe``,
   ``trace_pipe_raw``, per-CPU ``stats`` with timestamps, ``saved_cmdlines``) — a read consumes
   or a refusal may legitimately append to them.  The deep snapshot costs ~30 ms on cxl_test, a
   write ~20 us, so :class:`Runner` takes it before every ``deep_every``-th operation (1: all, the
   test's setting) and, for the others, a *local* snapshot (the listing and readable values of the
   written file's directory and of its parent);
2. no internal error: a ``WARNING: cxlsys internal error`` record in the kernel log (an unexpected
   exception in a store, a show read by the snapshot, or delayed work; the write itself gets EIO),
   and no exception other than ``KernelError`` out of the projection;
3. ``cxlsys.invariants.check_invariants(system) == []`` every ``invariants_every`` operations
   (skipped, and said so in the summary, while that module does not exist).  An operation that
   reproduces a kernel hazard (:mod:`cxlsys.hazards`: a sequence Linux accepts and then holds
   inconsistent state after, which the model reproduces and names) is counted apart, is checked
   with the rules that hazard excuses left out (:func:`cxlsys.hazards.unexplained`), and ends the
   episode (through the mount, where the run is one episode, the checks go on that way).

A failure keeps its reproducer: the operations of its episode from boot (:func:`replay` runs them
again, :func:`shrink` cuts them down, :meth:`Op.to_json` / :meth:`Op.from_json` store them).
"""

from __future__ import annotations

import errno
import importlib
import os
import random
import re
import time
import traceback
import uuid as uuidlib
from collections import Counter
from typing import Any, Callable, Iterable, Iterator, Optional, Protocol, Sequence

import attrs

from cxlsys.errors import KernelError
from cxlsys.hazards import unexplained
from cxlsys.kernel.timer import FakeClock
from cxlsys.kernfs import ANY, CONST, OWN
from cxlsys.sysfs import S_FILE, Sysfs
from cxlsys.system import System
from cxlsys.tracefs import volatile

__all__ = [
    "HOSTILE",
    "KNOWN_SIDE_EFFECTS",
    "Chooser",
    "Failure",
    "FuzzStats",
    "Generator",
    "Op",
    "Outcome",
    "RandomChooser",
    "Runner",
    "SideEffect",
    "boot",
    "deep_snapshot",
    "diff_snapshots",
    "fuzz",
    "load_invariants",
    "mount_inner",
    "replay",
    "run_episode",
    "shrink",
    "volatile",
]

SZ_2M = 2 << 20
SZ_256M = 256 << 20
WARN_PREFIX = "WARNING: cxlsys internal error"
CXL = "bus/cxl/devices"
DAX = "bus/dax/devices"
MEM = "devices/system/memory"


# ------------------------------------------------------------------------------ operations

@attrs.frozen
class Op:
    """One operation: a write of ``data`` at ``offset`` to ``path`` (relative to /sys), or
    ``kind`` ``modprobe`` (``data`` the arguments, space separated) or ``advance`` (``data`` the
    seconds the clock moves on).  ``tag`` says where it came from (``plan:region``, ``valid``,
    ``hostile``...)."""

    path: str
    data: bytes = b""
    kind: str = "write"
    offset: int = 0
    tag: str = ""

    def show(self) -> str:
        if self.kind == "modprobe":
            return f"modprobe {self.data.decode()}"
        if self.kind == "advance":
            return f"advance {self.data.decode()}s"
        at = f" @{self.offset}" if self.offset else ""
        return f"write {self.data[:80]!r}{'...' if len(self.data) > 80 else ''} > /sys/{self.path}{at}"

    def to_json(self) -> dict:
        return {"path": self.path, "data": self.data.hex(), "kind": self.kind, "offset": self.offset, "tag": self.tag}

    @classmethod
    def from_json(cls, d: dict) -> "Op":
        return cls(d["path"], bytes.fromhex(d["data"]), d.get("kind", "write"), d.get("offset", 0), d.get("tag", ""))


def write(path: str, data: bytes | str | int, tag: str = "") -> Op:
    """A write as ``echo`` does it: ``str``/``int`` get a newline, ``bytes`` go as they are."""
    buf = data if isinstance(data, bytes) else f"{data}\n".encode()
    return Op(path, buf, tag=tag)


# ------------------------------------------------------------------------------ choices

class Chooser(Protocol):
    def randint(self, a: int, b: int) -> int:
        """An integer in [a, b]."""


class ChooserMixin:
    """Every other choice derived from ``randint`` (so a hypothesis adapter needs only that)."""

    def randint(self, a: int, b: int) -> int:   # pragma: no cover - provided by the subclass
        raise NotImplementedError

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[self.randint(0, len(seq) - 1)]

    def chance(self, p: float) -> bool:
        return self.randint(0, 9999) < int(p * 10000)

    def pick(self, weights: dict) -> Any:
        """A key of ``weights`` (name -> integer weight)."""
        total = sum(weights.values())
        r = self.randint(0, total - 1)
        for k, w in weights.items():
            if r < w:
                return k
            r -= w
        raise AssertionError("unreachable")  # pragma: no cover


class RandomChooser(ChooserMixin):
    def __init__(self, seed: int | str | None = None):
        self.rng = random.Random(seed)

    def randint(self, a: int, b: int) -> int:
        return self.rng.randint(a, b)


def _choices(c: Any) -> ChooserMixin:
    """Wrap a bare ``randint`` provider in the mixin's helpers."""
    if isinstance(c, ChooserMixin):
        return c

    class _Wrapped(ChooserMixin):
        def randint(self, a: int, b: int) -> int:
            return c.randint(a, b)
    return _Wrapped()


# ------------------------------------------------------------------------------ payloads

def _u(s: str) -> bytes:
    return s.encode("utf-8")


#: Payloads no careful user writes; every one goes to every kind of file.
HOSTILE: tuple = (
    b"", b"\n", b" ", b"\t\n", b" \n", b"\n\n", b"\0", b"\0\n", b"1\0garbage\n", b"\xff\xfe\xfd\n", b"\xc3\x28\n",
    b"\x80", b"-1\n", b"-0\n", b"+1\n", b"+\n", b"-\n", b"0x\n", b"0x-1\n", b"1e3\n", b"1.5\n", b"0b11\n", b"0o17\n",
    b"08\n", b"1_000\n", b" 1\n", b"1 \n", b"1\n1\n", b"1 2\n", b"18446744073709551615\n",
    b"18446744073709551616\n", b"0xffffffffffffffff\n", b"0x10000000000000000\n", b"-9223372036854775809\n",
    b"2147483648\n", b"4294967296\n", b"9" * 200 + b"\n", _u("\u0663\n"), _u("\uff11\n"), _u("\u00a0\n"),
    _u("\u00f6\n"),
    _u("region\u0663\n"), b"yes\n", b"no\n", b"on\n", b"off\n", b"true\n", b"false\n", b"Y\n", b"N\n", b"nonsense\n",
    b"%s%s%n\n", b"../../../etc/passwd\n", b"region\n", b"region-1\n", b"region99999\n", b"decoder\n",
    b"decoder99.99\n", b"dax99.99\n", b"dax0\n", b"mem999\n", b"memory0\n", b"endpoint99\n", b"port99\n",
    b"cxl_mem.99\n", b"nmem99\n", b"A" * 4095, b"A" * 4096, b"1" * 4096, b"A" * 5000,
    b"6f1d3c0e-8a1b-4c5d-9e2f-0a1b2c3d4e5f", b"00000000-0000-0000-0000-000000000000\n",
    b"6f1d3c0e-8a1b-4c5d-9e2f-0a1b2c3d4e5\n", b"add\0remove\n", b"online\n", b"offline\n", b"ram\n", b"pmem\n",
    b"RAM\n", b"ram\n\n", b"0x0-0x0\n", b"1-0\n", b"0x1000-\n",
)

WORDS = ("ram", "pmem", "online", "offline", "online_movable", "online_kernel", "add", "remove", "change", "1", "0")
UEVENTS = (b"add\n", b"change\n", b"remove\n", b"move\n", b"online\n", b"offline\n", b"bind\n", b"unbind\n",
           b"add 6f1d3c0e-8a1b-4c5d-9e2f-0a1b2c3d4e5f A=1 B=2\n", b"change\n\0")
BLOCK_STATES = ("online", "offline", "online_movable", "online_kernel")


def _sizes() -> list:
    return [0, SZ_256M, 2 * SZ_256M, 4 * SZ_256M, 8 * SZ_256M]


# ------------------------------------------------------------------------------ snapshots

PROC_FILES = (".cxlsys/proc/meminfo", ".cxlsys/proc/iomem")


def _read(fs: Sysfs, path: str) -> Any:
    try:
        return fs.read(path)
    except KernelError as e:
        return ("errno", e.errno)


def deep_snapshot(fs: Sysfs) -> dict:
    """path -> (kind, mode, link target, value): the whole tree and the value (bytes, or
    ``("errno", n)`` when the read fails) of every readable, non-volatile file, plus the model's
    /proc files."""
    out: dict = {}
    for p, e in fs.walk(""):
        value = _read(fs, p) if e.kind == S_FILE and e.readable and not volatile(p) else None
        out[p] = (e.kind, e.mode, e.target, value)
    for p in PROC_FILES:
        out[p] = (S_FILE, 0o444, None, _read(fs, p))
    return out


def scoped_values(fs: Sysfs) -> dict:
    """path -> (value, scope, owner) of every readable text attribute that declares a scope
    narrower than ANY (:meth:`Sysfs.value_scope`)."""
    out: dict = {}
    for p, e in fs.walk(""):
        if e.kind == S_FILE and e.readable and not e.binary and not volatile(p):
            scope, owner = fs.value_scope(p)
            if scope != ANY:
                out[p] = (_read(fs, p), scope, owner)
    return out


def scope_violations(before: dict, after: dict, owners: list, everything: bool) -> list:
    """What a cache trusting the declared scopes would serve stale after one operation whose change
    reports named ``owners``: a CONST file whose value moved while its owner lives on, an OWN file
    whose value moved while its owner was not reported."""
    if everything:
        return []
    reported = {id(o) for o in owners}
    out = []
    for p, (v, scope, owner) in before.items():
        now = after.get(p)
        if now is None or now[2] is not owner or now[0] == v or id(owner) in reported and scope == OWN:
            continue
        if scope == CONST and getattr(owner, "registered", True) is False:
            continue
        out.append(f"{p}: declared {scope} but {v!r} -> {now[0]!r} with its owner "
                   f"{'reported' if id(owner) in reported else 'not reported'}")
    return out


def local_snapshot(fs: Sysfs, path: str) -> dict:
    """The cheap check: the listing and readable values of the written file's directory and its
    parent directory (symlinks in ``path`` followed)."""
    out: dict = {}
    real = fs.realpath(path)
    d = real.rpartition("/")[0]
    for where in {d, d.rpartition("/")[0]}:
        try:
            ents = fs.entries(where)
        except KernelError:
            out[where] = None
            continue
        for name, e in ents.items():
            p = f"{where}/{name}" if where else name
            value = _read(fs, p) if e.kind == S_FILE and e.readable and not volatile(p) else None
            out[p] = (e.kind, e.mode, e.target, value)
    return out


def diff_snapshots(a: dict, b: dict, limit: int = 12) -> list:
    """What differs between two snapshots, one line per path (at most ``limit``)."""
    out = []
    for p in sorted(set(a) | set(b)):
        x, y = a.get(p), b.get(p)
        if x == y:
            continue
        if x is None:
            out.append(f"+ {p} {y!r:.120}")
        elif y is None:
            out.append(f"- {p} {x!r:.120}")
        else:
            out.append(f"~ {p}: {x!r:.100} -> {y!r:.100}")
        if len(out) >= limit:
            out.append("...")
            break
    return out


def _changed_paths(a: dict, b: dict) -> set:
    return {p for p in set(a) | set(b) if a.get(p) != b.get(p)}


# ------------------------------------------------------------------------------ refusals with a side effect

@attrs.frozen
class SideEffect:
    """A refusal the kernel makes after changing something, so the fuzzer must not flag it:
    ``match(op, errno, changed paths)``."""

    name: str
    why: str
    match: Callable[[Op, int, set], bool]


_TARGET = re.compile(r"(^|/)target\d+$")


_SETUP_LEFTOVERS = (
    re.compile(r"/region\d+/target\d+$"),                       # the target stays recorded
    re.compile(r"/decoder\d+\.\d+/region$"),                     # ports keep their region reference
    # switch / host-bridge decoders keep the ways, granularity and target slots setup programmed
    re.compile(r"/port\d+/(?:port\d+/)*decoder\d+\.\d+/(?:interleave_ways|interleave_granularity|target_list)$"),
)


def _target_setup_failed(op: Op, err: int, changed: set) -> bool:
    """cxl-core-abi §4.6 #14 and §4.6.2: the last target attaches, then "setup targets" fails; the
    error is returned but the target stays recorded, the ports on its path keep their region
    reference, and the switch decoders keep the ways, granularity and target slots it set."""
    if op.kind != "write" or not _TARGET.search(op.path) or err not in (errno.EINVAL, errno.ENXIO):
        return False
    return all(any(r.search(p) for r in _SETUP_LEFTOVERS) for p in changed)


def _dpa_freed_first(op: Op, err: int, changed: set) -> bool:
    """cxl-core-abi §2.5: ``dpa_size`` always frees the decoder's DPA before allocating the new
    size, so a refused allocation (ENOSPC, EBUSY, EINVAL) leaves the decoder with none."""
    if op.kind != "write" or not op.path.endswith("/dpa_size") or err not in (errno.ENOSPC, errno.EBUSY,
                                                                                 errno.EINVAL, errno.ENXIO):
        return False
    dec = op.path.rsplit("/", 2)[-2]
    return all(p.endswith((f"/{dec}/dpa_resource", f"/{dec}/dpa_size")) or
               re.fullmatch(r"kernel/debug/cxl/mem\d+/dpamem", p) for p in changed)


KNOWN_SIDE_EFFECTS: tuple = (
    SideEffect("target-setup-failed", "cxl-core-abi §4.6 #14, §4.6.2: a failed setup of targets keeps the last "
               "target and the switch decoders' programming",
               _target_setup_failed),
    SideEffect("dpa-freed-before-alloc", "cxl-core-abi §2.5: dpa_size frees the DPA before a new allocation that "
               "then fails", _dpa_freed_first),
)


# ------------------------------------------------------------------------------ results

@attrs.define
class Outcome:
    op: Op
    errno: Optional[int] = None         # None: accepted
    reason: str = ""
    internal: list = attrs.Factory(list)     # WARN lines / unexpected exceptions
    changed: list = attrs.Factory(list)      # a refusal changed this (diff lines)
    checked: str = ""                        # "deep" | "local" | "" (accepted: nothing to compare)
    side_effect: str = ""                    # a KNOWN_SIDE_EFFECTS name the change was allowed as
    invariants: list = attrs.Factory(list)   # check_invariants() messages
    dead: bool = False                       # through the mount: the daemon is gone
    hazards: list = attrs.Factory(list)      # kernel hazards this op opened (cxlsys.hazards): names

    @property
    def accepted(self) -> bool:
        return self.errno is None

    @property
    def failed(self) -> bool:
        return bool(self.internal or self.changed or self.invariants or self.dead)

    def problems(self) -> list:
        out = [f"internal error: {x}" for x in self.internal[:3]]
        if self.changed:
            out.append(f"state changed on refusal ({errno.errorcode.get(self.errno or 0, self.errno)}): "
                       + "; ".join(self.changed))
        out += [f"invariant broken: {x}" for x in self.invariants[:5]]
        if self.dead:
            out.append("daemon died")
        return out


@attrs.define
class Failure:
    kind: str              # internal | changed | invariant | dead
    op: Op
    detail: list
    topology: str
    seed: Any
    ops: list              # the episode from boot up to and including ``op``: the reproducer

    def to_json(self) -> dict:
        return {"kind": self.kind, "op": self.op.to_json(), "detail": self.detail, "topology": self.topology,
                "seed": self.seed, "ops": [o.to_json() for o in self.ops]}

    def key(self) -> tuple:
        """Failures with the same key are one bug (the file's name, the first detail line)."""
        first = self.detail[0] if self.detail else ""
        first = re.sub(r"0x[0-9a-f]+|\d+", "N", first.split(" [write")[0])[:160]
        return (self.kind, re.sub(r"\d+", "N", self.op.path.rpartition("/")[2]), first)


@attrs.define
class FuzzStats:
    ops: int = 0
    accepted: int = 0
    refused: Counter = attrs.Factory(Counter)     # errno name -> count
    internal: int = 0
    changed: int = 0
    allowed_side_effects: Counter = attrs.Factory(Counter)
    invariant_breaks: int = 0
    invariant_checks: int = 0
    invariants_available: bool = True
    deaths: int = 0
    hazards: Counter = attrs.Factory(Counter)      # kernel hazard name -> times reproduced
    deep_checks: int = 0
    local_checks: int = 0
    episodes: int = 0
    milestones: Counter = attrs.Factory(Counter)   # what the accepted operations reached
    tags: Counter = attrs.Factory(Counter)         # (tag, accepted?) -> count
    failures: dict = attrs.Factory(dict)         # Failure.key() -> the one with the shortest reproducer
    failure_counts: Counter = attrs.Factory(Counter)
    seconds: float = 0.0

    def record(self, f: "Failure") -> None:
        k = f.key()
        self.failure_counts[k] += 1
        old = self.failures.get(k)
        if old is None or len(f.ops) < len(old.ops):
            self.failures[k] = f

    def add(self, out: Outcome, fs: Optional[Sysfs] = None) -> None:
        self.ops += 1
        tag = out.op.tag.partition(":")[0] or "other"
        self.tags[(tag, out.accepted)] += 1
        if out.accepted:
            self.accepted += 1
            m = milestone(out.op, fs)
            if m:
                self.milestones[m] += 1
        else:
            self.refused[errno.errorcode.get(out.errno or 0, str(out.errno))] += 1
        if out.checked == "deep":
            self.deep_checks += 1
        elif out.checked == "local":
            self.local_checks += 1
        self.internal += bool(out.internal)
        self.changed += bool(out.changed)
        if out.side_effect:
            self.allowed_side_effects[out.side_effect] += 1
        self.invariant_breaks += bool(out.invariants)
        self.deaths += out.dead
        self.hazards.update(out.hazards)

    def merge(self, other: "FuzzStats") -> None:
        for f in attrs.fields(FuzzStats):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, bool):
                setattr(self, f.name, a and b)
            elif isinstance(a, (int, float)):
                setattr(self, f.name, a + b)
            elif isinstance(a, Counter):
                a.update(b)
            elif isinstance(a, dict):
                for k, v in b.items():
                    if k not in a or len(v.ops) < len(a[k].ops):
                        a[k] = v

    def summary(self, invariants_every: int = 1, deep_every: int = 1) -> list:
        """The summary lines (what the long-run command prints)."""
        rate = self.ops / self.seconds if self.seconds else 0.0
        refused = sum(self.refused.values())
        lines = [
            f"operations: {self.ops} in {self.seconds:.1f} s ({rate:.0f} ops/s), {self.episodes} episodes",
            f"accepted: {self.accepted}",
            f"refused: {refused} (" + ", ".join(f"{k} {v}" for k, v in self.refused.most_common()) + ")",
            f"refusals checked: {self.deep_checks} against the deep snapshot, {self.local_checks} against the local "
            f"one (deep snapshot before every {'' if deep_every == 1 else f'{deep_every}th '}operation)",
            f"state changed on refusal: {self.changed}"
            + (" (allowed kernel side effects: " + ", ".join(f"{k} {v}" for k, v in
                                                           self.allowed_side_effects.items()) + ")"
               if self.allowed_side_effects else ""),
            (f"invariant breaks: {self.invariant_breaks} ({self.invariant_checks} checks, every "
             f"{invariants_every} ops)" if self.invariants_available
             else "invariant breaks: not checked (cxlsys.invariants is not there yet)"),
            f"internal errors: {self.internal}",
            f"daemon deaths: {self.deaths}",
            f"kernel hazards reproduced: {sum(self.hazards.values())}"
            + (" (" + ", ".join(f"{k} {v}" for k, v in self.hazards.most_common()) + "; each ends its episode, "
               "checked without the rules it excuses)" if self.hazards else ""),
            "reached: " + ", ".join(f"{k} {v}" for k, v in sorted(self.milestones.items())),
        ]
        return lines


def milestone(op: Op, fs: Optional[Sysfs]) -> str:
    """What an accepted write reached, for the coverage line ("" for the rest)."""
    if op.kind != "write":
        return f"{op.kind}"
    base = op.path.rpartition("/")[2]
    text = op.data.split(b"\0", 1)[0].strip().decode("utf-8", "replace")
    parent = op.path.rpartition("/")[0]
    if base == "commit" and (text[:1] in ("1", "y", "Y", "t", "T", "e", "E") or text[:2].lower() == "on"):
        return "region committed"
    if base.startswith("create_") and base.endswith("_region"):
        return "region created"
    if base == "delete_region":
        return "region deleted"
    if parent.endswith("drivers/cxl_region") and base == "bind":
        return "region driver bound"
    if parent.endswith("drivers/kmem") and base in ("bind", "new_id") and fs is not None \
            and fs.lookup(f"bus/dax/drivers/kmem/{text}") is not None:
        return "dax bound to kmem"
    if parent.endswith("drivers/device_dax") and base in ("bind", "new_id") and fs is not None \
            and fs.lookup(f"bus/dax/drivers/device_dax/{text}") is not None:
        return "dax bound to device_dax"
    if parent.startswith(MEM + "/memory") and (base == "state" and text.startswith("online") or base == "online"
                                                 and text == "1"):
        return "memory block onlined"
    if parent.startswith(MEM + "/memory") and (base == "state" and text == "offline" or base == "online"
                                                 and text == "0"):
        return "memory block offlined"
    if base == "dpa_size" and text not in ("0", "0x0"):
        return "dpa allocated"
    if base == "create" and "dax_region" in parent:
        return "dax device created"
    return ""


# ------------------------------------------------------------------------------ the generator

#: Files the through-the-mount run leaves alone: their effect completes later on the daemon's
#: real clock, so the in-process mirror (whose clock does not move) would diverge.
TIMED_FILES = frozenset({"sanitize", "security", "loading", "data", "cancel"})


class Generator:
    """The next operation from the live state of ``fs`` (see the module doc).

    :meth:`next_op` picks a kind by ``weights`` (a plan under way continues with probability
    ``plan_stickiness``, so other writes interleave with it); the pieces are public for a driver
    that chooses the kind itself (the hypothesis machine): :meth:`start_plan` /
    :meth:`plan_step`, :meth:`valid_op`, :meth:`hostile_op`, :meth:`advance_op`,
    :meth:`modprobe_op`, and :meth:`maybe_refresh` (re-walk the tree if its shape changed).
    ``chooser`` provides ``randint``; it may be replaced between calls (``gen.c = ...``): plans
    read ``self.c`` at every step.  ``exclude(path)`` keeps files out; ``clock``/``modprobe``
    False drop those kinds (through the mount)."""

    WEIGHTS = {"plan": 140, "valid": 380, "hostile": 380, "advance": 30, "modprobe": 2}

    def __init__(self, fs: Sysfs, chooser: Any, *, weights: Optional[dict] = None,
                 exclude: Callable[[str], bool] = lambda p: False, clock: bool = True, modprobe: bool = True,
                 plan_stickiness: float = 0.85, refresh_every: int = 1):
        self.fs = fs
        self.c = _choices(chooser)
        self.weights = dict(weights or self.WEIGHTS)
        if not clock:
            self.weights.pop("advance", None)
        if not modprobe:
            self.weights.pop("modprobe", None)
        self.exclude = exclude
        self.stickiness = plan_stickiness
        self.plan: Optional[Iterator[Optional[Op]]] = None
        self.plan_name = ""
        self._files: dict = {}          # basename -> [(path, Entry)]
        self._fresh = False
        self._stale_for = 0             # operations generated since the tree changed shape
        self.refresh_every = refresh_every

    # ----------------------------------------------------------------- the live tree
    def refresh(self) -> None:
        self._files = {}
        for p, e in self.fs.walk(""):
            if e.kind == S_FILE and e.writable and not self.exclude(p):
                self._files.setdefault(p.rpartition("/")[2], []).append((p, e))
        self._fresh = True

    def maybe_refresh(self) -> None:
        """Re-walk when the tree changed shape: at once (``refresh_every`` 1), or after that many
        more operations (the long run: a walk costs ~100 writes; meanwhile a vanished file gets
        ENOENT, which is a fine hostile write too)."""
        s = self.fs.sync()
        if s.shape or s.devices or s.stale:
            self._fresh = False
        if not self._fresh:
            self._stale_for += 1
            if not self._files or self._stale_for >= self.refresh_every:
                self.refresh()
                self._stale_for = 0

    def _ls(self, path: str) -> list:
        try:
            return sorted(self.fs.listdir(path))
        except KernelError:
            return []

    def _val(self, path: str) -> str:
        try:
            return self.fs.read(path).decode("utf-8", "replace").strip()
        except KernelError:
            return ""

    def _exists(self, path: str) -> bool:
        return self.fs.stat(path) is not None

    def _driver(self, dev_path: str) -> str:
        real = self.fs.realpath(f"{dev_path}/driver")
        return real.rpartition("/")[2] if self.fs.stat(f"{dev_path}/driver") is not None else ""

    # ----------------------------------------------------------------- entry point
    def next_op(self) -> Op:
        self.maybe_refresh()
        if self.plan is not None and self.c.chance(self.stickiness):
            op = self.plan_step()
            if op is not None:
                return op
        for _ in range(20):
            kind = self.c.pick(self.weights)
            op = getattr(self, f"{kind}_op")()
            if op is not None:
                return op
        return self.hostile_op() or write("bus/cxl/flush", "1", "fallback")

    def plan_step(self) -> Optional[Op]:
        assert self.plan is not None
        for _ in range(8):              # a step that has nothing to do yields None: skip it
            try:
                op = next(self.plan)
            except StopIteration:
                self.plan = None
                return None
            if op is not None and not self.exclude(op.path):
                return op
        return None

    def start_plan(self, name: Optional[str] = None) -> None:
        plans = {"region": 6, "dax": 3, "split": 2, "memory": 3, "teardown": 3, "online_all": 1}
        name = name or self.c.pick(plans)
        self.plan_name = name
        self.plan = getattr(self, f"_plan_{name}")()

    def plan_op(self) -> Optional[Op]:
        self.start_plan()
        return self.plan_step()

    def advance_op(self) -> Op:
        secs = self.c.choice(("0.001", "0.05", "1", "5", "60"))
        return Op("advance", secs.encode(), kind="advance", tag="advance")

    def modprobe_op(self) -> Op:
        args = self.c.choice(("-r cxl_test", "cxl_test", "cxl_test", "-r cxl_test"))
        return Op("modprobe", args.encode(), kind="modprobe", tag="modprobe")

    def _random_file(self) -> Optional[tuple]:
        if not self._files:
            return None
        base = self.c.choice(sorted(self._files))
        return self.c.choice(self._files[base])

    def valid_op(self) -> Optional[Op]:
        f = self._random_file()
        if f is None:
            return None
        p, e = f
        if e.binary:
            n = self.c.choice((1, 16, 64, 4096))
            data = (bytes([self.c.randint(0, 255)]) + bytes(range(256))) * (n // 257 + 1)
            data = data[:n]
            return Op(p, data, offset=self.c.choice((0, 0, 16, 4096)), tag="valid:bin")
        cands = self.valid_payloads(p)
        if not cands:
            return None
        return Op(p, self.c.choice(cands), tag="valid")

    def hostile_op(self) -> Optional[Op]:
        f = self._random_file()
        if f is None:
            return None
        p, e = f
        pool = list(HOSTILE) + self.near_miss(p)
        data = self.c.choice(pool)
        off = self.c.choice((0, 0, 0, 1, 4095, 1 << 40)) if e.binary else 0
        return Op(p, data, offset=off, tag="hostile")

    # ----------------------------------------------------------------- payload tables
    def _names(self, bus: str) -> list:
        return self._ls(f"bus/{bus}/devices")

    def _live_names(self) -> list:
        return self._names("cxl") + self._names("dax") + self._names("nd")

    def _numbers(self, cur: str) -> list:
        try:
            v = int(cur, 0)
        except ValueError:
            return []
        out = {v, v + 1, max(v - 1, 0), v * 2, v // 2, 0, 1}
        return [f"{x}\n".encode() for x in sorted(out)] + [f"{v:#x}\n".encode()]

    def valid_payloads(self, path: str) -> list:
        """Values of the attribute's type: what a user who read the docs (or the file) writes."""
        base = path.rpartition("/")[2]
        parent = path.rpartition("/")[0]
        cur = self._val(path) if (e := self.fs.stat(path)) is not None and e.readable else ""
        enc: list = []
        c = self.c

        def words(*ws: Any) -> list:
            return [f"{w}\n".encode() for w in ws]

        def hexes(vals: Iterable[int]) -> list:
            return [f"{v:#x}\n".encode() for v in vals] + [f"{v}\n".encode() for v in vals]

        if base == "mode":
            enc = words("ram", "pmem")
        elif base == "dpa_size":
            enc = hexes(_sizes()[:4])
        elif base == "size" and "/dax" in path:
            avail = self._val(f"{parent.rpartition('/')[0]}/dax_region/available_size") or "0"
            enc = hexes([0, SZ_2M, 64 * SZ_2M, SZ_256M, int(avail) if avail.isdigit() else 0,
                         (int(cur) if cur.isdigit() else 0) + (int(avail) if avail.isdigit() else 0)])
        elif base == "size":
            ways = self._val(f"{parent}/interleave_ways")
            w = int(ways) if ways.isdigit() and int(ways) else 1
            enc = hexes([0, SZ_256M * w, 2 * SZ_256M * w, 4 * SZ_256M * w])
        elif base == "interleave_ways":
            enc = words(1, 2, 4, 8, 3, 16)
        elif base == "interleave_granularity":
            enc = words(256, 512, 1024, 4096, 16384)
        elif _TARGET.search(path):
            eps = [n for n in self._names("cxl") if n.startswith("decoder") and
                   self._exists(f"{CXL}/{n}/dpa_size")]
            enc = [b"\n"] + [f"{n}\n".encode() for n in eps]
        elif base == "commit":
            enc = words(0, 1)
        elif base.startswith("create_") and base.endswith("_region"):
            enc = [f"{cur}\n".encode()] if cur else []
            m = re.match(r"region(\d+)$", cur)
            if m:
                enc += words(f"region{int(m.group(1)) + 1}")
        elif base == "delete_region":
            enc = [f"{n}\n".encode() for n in self._names("cxl") if n.startswith("region")] or words("region0")
        elif base == "uuid":
            enc = [f"{self._uuid()}\n".encode(), f"{cur}\n".encode()]
        elif base in ("bind", "unbind"):
            bus = parent.split("/")[1] if parent.startswith("bus/") else "cxl"
            enc = [f"{n}\n".encode() for n in self._names(bus)] + [f"{n}\0".encode() for n in self._names(bus)][:3]
        elif base == "drivers_probe":
            bus = parent.split("/")[1] if parent.startswith("bus/") else "cxl"
            enc = [f"{n}\n".encode() for n in self._names(bus)]
        elif base in ("new_id", "remove_id"):
            enc = [f"{n}\n".encode() for n in self._names("dax")] + [f"{n}\0".encode() for n in self._names("dax")]
        elif base == "drivers_autoprobe":
            enc = words(0, 1)
        elif base == "uevent":
            enc = list(UEVENTS)
        elif base == "driver_override":
            drivers = self._ls("bus/platform/drivers")
            enc = [b"\n"] + words(*drivers)
        elif base == "create" and "dax_region" in parent:
            enc = words(1, "0x1")
        elif base == "delete" and "dax_region" in parent:
            enc = [f"{n}\n".encode() for n in self._names("dax")]
        elif base == "align":
            enc = words(4096, SZ_2M, 1 << 30)
        elif base == "mapping":
            enc = self._mappings(parent)
        elif base == "memmap_on_memory":
            enc = words(0, 1)
        elif base == "state" and parent.startswith(MEM):
            enc = words(*BLOCK_STATES)
        elif base == "online" and parent.startswith(MEM):
            enc = words(0, 1)
        elif base == "auto_online_blocks":
            enc = words(*BLOCK_STATES)
        elif base == "online_policy":
            enc = words("contig-zones", "auto-movable")
        elif base == "auto_movable_ratio":
            enc = words(0, 100, 301, 1000)
        elif base == "auto_movable_numa_aware":
            enc = words("Y", "N", 1, 0)
        elif base == "security":
            enc = words("update 0 0", "disable 0", "freeze", "erase 0", "overwrite 0", "master_update 0 0",
                        "master_erase 0")
        elif base in ("security_lock", "event_trigger", "trigger_poison_list", "sanitize", "cancel", "compact"):
            enc = words(1, 0)
        elif base == "sanitize_timeout":
            enc = words(0, 1, 10, 2000)
        elif base == "loading":
            enc = words(1, 0, -1)
        elif base == "poison_inject_max":
            enc = words(0, 1, 8, 128)
        elif base in ("inject_poison", "clear_poison"):
            enc = hexes([0, 0x40, 0x1000, SZ_256M, 1 << 30])
        elif base in ("raw_allow_all", "kernel_zone_unmovable", "signal_pending", "unmovable"):
            enc = words("Y", "N", 1, 0)
        elif base in ("tracing_on", "enable"):
            enc = words(0, 1)
        elif base == "buffer_size_kb":
            enc = words(1, 7, 1408, 4096)
        elif base == "current_tracer":
            enc = words("nop")
        elif base == "filter":
            enc = words("0", "1", "common_pid == 1", "common_pid != 0 && common_pid < 100")
        elif base == "set_event":
            enc = words("cxl:*", "cxl:cxl_poison", "!cxl:*", "cxl:cxl_general_media") + [b""]
        elif base == "trace":
            enc = [b"\n", b""]
        elif base == "trace_clock":
            enc = words("local", "global", "counter", "uptime", "mono")
        elif base == "tracing_cpumask":
            enc = words(1, 2, 3)
        elif base == "saved_cmdlines_size":
            enc = words(1, 128, 4096)
        enc = list(enc)
        if cur and not enc:
            enc = [f"{cur}\n".encode()]
        enc += self._numbers(cur)[:4] if cur and c.chance(0.3) else []
        return enc

    def near_miss(self, path: str) -> list:
        """Hostile values made from the live state: off-by-one sizes, live names bent."""
        cur = self._val(path) if (e := self.fs.stat(path)) is not None and e.readable else ""
        out = [f"{cur}x\n".encode(), f"{cur}\n\n".encode(), f" {cur}\n".encode(), cur.upper().encode() + b"\n"]
        try:
            v = int(cur, 0)
            out += [f"{v + 1:#x}\n".encode(), f"{(1 << 64) - SZ_256M:#x}\n".encode(), f"-{v}\n".encode(),
                    f"{v + SZ_256M + 4096:#x}\n".encode()]
        except ValueError:
            pass
        names = self._names("cxl")
        if names:
            n = self.c.choice(names)
            out += [f"{n}x\n".encode(), f"{n} {n}\n".encode(), f"{n[:-1]}\n".encode(), f"{n}.0\n".encode()]
        return out

    def _uuid(self) -> str:
        return str(uuidlib.UUID(int=self.c.randint(1, (1 << 122) - 1), version=4))

    def _mappings(self, dax_dir: str) -> list:
        """``mapping`` values: ranges of the dax region's resource."""
        region = self.fs.realpath(dax_dir).rsplit("/", 2)[0]
        start = self._val(f"{region}/resource")
        size = self._val(f"{region}/size")
        try:
            s, n = int(start, 0), int(size, 0)
        except ValueError:
            return [b"0x0-0x1fffff\n"]
        out = []
        for off, ln in ((0, SZ_2M), (n // 2, SZ_2M), (n - SZ_2M, SZ_2M), (0, n), (SZ_2M, 64 * SZ_2M)):
            if 0 <= off and off + ln <= n:
                out.append(f"{s + off:#x}-{s + off + ln - 1:#x}\n".encode())
        return out or [b"0x0-0x1fffff\n"]

    # ----------------------------------------------------------------- model facts for plans
    def _sys(self) -> Optional[System]:
        return self.fs.sys

    def _root_decoders(self) -> list:
        return [n for n in self._names("cxl") if n.startswith("decoder")
                and any(self._exists(f"{CXL}/{n}/create_{m}_region") for m in ("ram", "pmem"))]

    def _below(self, root_name: str, pos: int) -> list:
        """Memdevs below the host bridge that is ``root_name``'s target at interleave position
        ``pos``, from the model's objects."""
        from cxlsys.testing import memdevs
        s = self._sys()
        rd = s.cxl_bus.find_device(root_name) if s is not None else None
        targets = getattr(rd, "targets", None)
        if not targets:
            return []
        hb = targets[pos % max(1, len(targets))]
        out = []
        for md in memdevs(s):
            p = md.endpoint
            while p is not None and getattr(p, "parent_port", None) is not None and p.parent_port.kind != "root":
                p = p.parent_port
            if p is not None and getattr(p, "parent_dport", None) is hb:
                out.append(md)
        return out

    def _free_decoder(self, md: Any) -> Optional[str]:
        """The lowest endpoint decoder of ``md`` with no DPA (the only one DPA can go to)."""
        from cxlsys.testing import endpoint_decoders
        for e in endpoint_decoders(md):
            if e.dpa_start is None and not e.dpa_size:
                return e.name
        return None

    def _region_names(self, committed: Optional[bool] = None) -> list:
        out = []
        for n in self._names("cxl"):
            if re.fullmatch(r"region\d+", n):
                if committed is None or (self._val(f"{CXL}/{n}/commit") == "1") == committed:
                    out.append(n)
        return out

    def _dax_of(self, region: str) -> list:
        rid = region[len("region"):]
        return [d for d in self._names("dax") if d.startswith(f"dax{rid}.")]

    def _release_dax(self, dax: str, tag: str) -> Iterator[Op]:
        """Take ``dax`` from its driver: offline its blocks first if kmem holds it, then unbind."""
        drv = self._driver(f"{DAX}/{dax}")
        if drv == "kmem":
            for b in self._blocks_of(dax):
                yield write(f"{MEM}/{b}/state", "offline", tag)
        if drv:
            yield write(f"bus/dax/drivers/{drv}/unbind", dax, tag)

    def _blocks_of(self, dax: str) -> list:
        """The memory blocks backing ``dax`` (its ranges in /proc/iomem)."""
        try:
            bs = int(self._val(f"{MEM}/block_size_bytes"), 16)
            iomem = self.fs.read(".cxlsys/proc/iomem").decode()
        except (KernelError, ValueError):
            return []
        out = []
        for line in iomem.splitlines():
            rng, _, name = line.strip().partition(" : ")
            if name == dax:
                s, e = (int(x, 16) for x in rng.split("-"))
                out += [f"memory{i}" for i in range(s // bs, e // bs + 1)
                        if self._exists(f"{MEM}/memory{i}")]
        return out

    # ----------------------------------------------------------------- plans (generators of ops)
    def _plan_region(self) -> Iterator[Optional[Op]]:
        """DPA, create, geometry, size, targets, commit, bind: a region as an admin builds it."""
        tag = "plan:region"
        roots = self._root_decoders()
        if not roots:
            return
        root = self.c.choice(roots)
        mode = "ram" if self._exists(f"{CXL}/{root}/create_ram_region") else "pmem"
        rways = int(self._val(f"{CXL}/{root}/interleave_ways") or 1)
        rgran = int(self._val(f"{CXL}/{root}/interleave_granularity") or 256)
        ways = rways * (2 if self.c.chance(0.15) else 1)
        per = self.c.choice((SZ_256M, SZ_256M, 2 * SZ_256M))
        eps: list = []
        for i in range(ways):
            below = [m for m in self._below(root, i) if (m.ram_size if mode == "ram" else m.pmem_size)]
            free = [d for d in (self._free_decoder(m) for m in below) if d is not None and d not in eps]
            if not free:
                return
            eps.append(self.c.choice(free))
        for e in eps:
            yield write(f"{CXL}/{e}/mode", mode, tag)
            yield write(f"{CXL}/{e}/dpa_size", hex(per), tag)
        create = f"{CXL}/{root}/create_{mode}_region"
        name = self._val(create)
        if not name:
            return
        yield write(create, name, tag)
        r = f"{CXL}/{name}"
        if mode == "pmem":
            yield write(f"{r}/uuid", self._uuid(), tag)
        gran = rgran if rways > 1 else self.c.choice((256, 256, 4096, rgran))
        yield write(f"{r}/interleave_granularity", gran, tag)
        yield write(f"{r}/interleave_ways", ways, tag)
        yield write(f"{r}/size", hex(per * ways), tag)
        for i, e in enumerate(eps):
            yield write(f"{r}/target{i}", e, tag)
        yield write(f"{r}/commit", 1, tag)
        yield write("bus/cxl/drivers/cxl_region/bind", name, tag)
        if mode == "ram" and self.c.chance(0.5):
            self.plan_name = "dax"
            yield from self._plan_dax(self._dax_of(name))

    def _plan_dax(self, daxes: Optional[list] = None) -> Iterator[Optional[Op]]:
        """daxctl reconfigure-device: kmem <-> device_dax, offlining the memory first."""
        tag = "plan:dax"
        daxes = daxes if daxes is not None else self._names("dax")
        if not daxes:
            return
        d = self.c.choice(daxes)
        dp = f"{DAX}/{d}"
        drv = self._driver(dp)
        if drv in ("kmem", "device_dax"):
            new = "device_dax" if drv == "kmem" else "kmem"
            if drv == "kmem":
                for b in self._blocks_of(d):
                    yield write(f"{MEM}/{b}/state", "offline", tag)
            yield write(f"bus/dax/drivers/{drv}/unbind", d, tag)
            if self.c.chance(0.5):
                yield write(f"bus/dax/drivers/{new}/new_id", d, tag)
                yield write(f"bus/dax/drivers/{new}/remove_id", d, tag)
            else:
                yield write(f"bus/dax/drivers/{new}/bind", d, tag)
            if new == "kmem":
                state = self.c.choice(BLOCK_STATES)
                for b in self._blocks_of(d):
                    if self._val(f"{MEM}/{b}/state") == "offline":
                        yield write(f"{MEM}/{b}/state", state, tag)
        else:
            yield write(f"bus/dax/drivers/{self.c.choice(('kmem', 'device_dax'))}/bind", d, tag)

    def _plan_split(self) -> Iterator[Optional[Op]]:
        """Carve a dax region into devices: free the seed device, size it, create more."""
        tag = "plan:split"
        regions = [n for n in self._names("cxl") if n.startswith("dax_region")]
        if not regions:
            return
        dr = self.c.choice(regions)
        drp = f"{CXL}/{dr}/dax_region"
        rid = dr[len("dax_region"):]
        devs = self._dax_of(f"region{rid}")
        for d in devs:
            yield from self._release_dax(d, tag)
        if devs:
            yield write(f"{DAX}/{devs[0]}/size", hex(self.c.choice((0, SZ_256M, 64 * SZ_2M))), tag)
        for _ in range(self.c.randint(1, 3)):
            yield write(f"{drp}/create", 1, tag)
            new = self._val(f"{drp}/create")
            if not new:
                continue
            if self.c.chance(0.3):
                for m in self._mappings(f"{DAX}/{new}")[:1]:
                    yield Op(f"{DAX}/{new}/mapping", m, tag=tag)
            else:
                yield write(f"{DAX}/{new}/size", hex(self.c.choice((SZ_2M * 64, SZ_256M))), tag)
            yield write(f"bus/dax/drivers/{self.c.choice(('device_dax', 'kmem'))}/bind", new, tag)
        if self.c.chance(0.3):
            for d in self._names("dax"):
                if d.startswith(f"dax{rid}.") and d != f"dax{rid}.0":
                    drv = self._driver(f"{DAX}/{d}")
                    if drv:
                        yield write(f"bus/dax/drivers/{drv}/unbind", d, tag)
                    yield write(f"{DAX}/{d}/size", 0, tag)
                    yield write(f"{drp}/delete", d, tag)

    def _plan_memory(self) -> Iterator[Optional[Op]]:
        """Block states, one block or all of a device's, through ``state`` or ``online``."""
        tag = "plan:memory"
        blocks = [b for b in self._ls(MEM) if re.fullmatch(r"memory\d+", b)]
        if not blocks:
            return
        picked = blocks if self.c.chance(0.3) else [self.c.choice(blocks)]
        for b in picked:
            if self.c.chance(0.7):
                yield write(f"{MEM}/{b}/state", self.c.choice(BLOCK_STATES), tag)
            else:
                yield write(f"{MEM}/{b}/online", self.c.choice((0, 1)), tag)

    def _plan_online_all(self) -> Iterator[Optional[Op]]:
        """Every dax device to kmem and its blocks online (daxctl online-memory)."""
        tag = "plan:online_all"
        for d in self._names("dax"):
            drv = self._driver(f"{DAX}/{d}")
            if drv == "device_dax":
                yield write("bus/dax/drivers/device_dax/unbind", d, tag)
            if drv != "kmem":
                yield write("bus/dax/drivers/kmem/bind", d, tag)
            for b in self._blocks_of(d):
                if self._val(f"{MEM}/{b}/state") == "offline":
                    yield write(f"{MEM}/{b}/state", self.c.choice(("online", "online_movable")), tag)

    def _plan_teardown(self) -> Iterator[Optional[Op]]:
        """Tear a region down: carefully (offline, unbind, decommit, detach, delete, free DPA) or
        carelessly (a random step straight away)."""
        tag = "plan:teardown"
        regions = self._region_names()
        if not regions:
            return
        name = self.c.choice(regions)
        r = f"{CXL}/{name}"
        root = self.fs.realpath(r).rsplit("/", 2)[-2]
        eps = [self._val(f"{r}/target{i}") for i in range(16) if self._exists(f"{r}/target{i}")]
        eps = [e for e in eps if e]
        if self.c.chance(0.2):           # careless: skip straight to some step
            yield self.c.choice([write(f"{CXL}/{root}/delete_region", name, tag),
                            write("bus/cxl/drivers/cxl_region/unbind", name, tag),
                            write(f"{r}/commit", 0, tag)])
        for d in self._dax_of(name):
            yield from self._release_dax(d, tag)
        yield write("bus/cxl/drivers/cxl_region/unbind", name, tag)
        yield write(f"{r}/commit", 0, tag)
        for i in reversed(range(len(eps))):
            yield write(f"{r}/target{i}", "", tag)
        yield write(f"{r}/size", 0, tag)
        yield write(f"{CXL}/{root}/delete_region", name, tag)
        for e in reversed(eps):
            yield write(f"{CXL}/{e}/dpa_size", 0, tag)


# ------------------------------------------------------------------------------ the runner

def _warns_since(system: System, seq: int) -> list:
    """The WARN records the kernel log got after record ``seq`` (only the new tail is looked at)."""
    klog = system.klog
    new = klog.seq - seq
    if new <= 0:
        return []
    tail = []
    for r in reversed(klog.records):
        if r.seq <= seq:
            break
        tail.append(r.text)
    return [t for t in reversed(tail) if t.startswith(WARN_PREFIX)]


def load_invariants() -> Optional[Callable[[Any], list]]:
    """``cxlsys.invariants.check_invariants``, or None where that module is not there."""
    try:
        mod = importlib.import_module("cxlsys.invariants")
    except ImportError:
        return None
    return getattr(mod, "check_invariants", None)


class Runner:
    """Apply operations to an in-process model and check the properties (module doc).

    ``deep_every``: the deep snapshot before every k-th operation (chosen by a seeded sampler, 1:
    every one); ``invariants_every``: ``check_invariants`` after every k-th (0: never)."""

    def __init__(self, fs: Sysfs, *, deep_every: int = 1, invariants_every: int = 1, seed: Any = 0,
                 side_effects: Sequence[SideEffect] = KNOWN_SIDE_EFFECTS):
        self.fs = fs
        self.sys = fs.sys
        self.deep_every = max(1, deep_every)
        self.invariants_every = invariants_every      # 0: never
        self.side_effects = side_effects
        self.sampler = random.Random(f"deep:{seed}")
        self.check_invariants = load_invariants() if invariants_every else None
        self.n = 0
        self.invariant_checks = 0
        self._current: Optional[dict] = None    # a deep snapshot known to be the current state

    def _warns(self, seq: int) -> list:
        return _warns_since(self.sys, seq)

    def execute(self, op: Op) -> tuple:
        """Run ``op``: (errno or None, reason, unexpected exception text or "")."""
        try:
            if op.kind == "write":
                self.fs.write(op.path, op.data, op.offset)
            elif op.kind == "modprobe":
                self.sys.modprobe(op.data.decode().split())
            elif op.kind == "advance":
                clock = self.sys.timers.clock
                if isinstance(clock, FakeClock):
                    clock.advance(float(op.data.decode()))
                self.fs.run_timers()
            else:
                raise ValueError(f"unknown op kind {op.kind!r}")
        except KernelError as e:
            return e.errno, e.reason, ""
        except Exception as e:       # the projection must never let one through
            return errno.EIO, repr(e), "".join(traceback.format_exception(type(e), e, e.__traceback__))[-2000:]
        return None, "", ""

    def apply(self, op: Op) -> Outcome:
        self.n += 1
        deep = self.deep_every == 1 or self.sampler.randrange(self.deep_every) == 0
        seq = self.sys.klog.seq
        before: Optional[dict] = None
        if op.kind == "write":
            if deep:
                before = self._current if self._current is not None else deep_snapshot(self.fs)
            else:
                before = local_snapshot(self.fs, op.path)
        self._current = None
        warn_before = self._warns(seq)          # a show that WARNs while snapshotting: its own failure
        seq = self.sys.klog.seq
        tainted = len(self.sys.hazards)
        err, reason, exc = self.execute(op)
        out = Outcome(op, err, reason, hazards=[t.hazard.name for t in self.sys.hazards[tainted:]])
        out.internal += [f"read during snapshot: {w}" for w in warn_before]
        out.internal += self._warns(seq)
        if exc:
            out.internal.append(f"exception out of the projection: {exc}")
        if err is not None and before is not None and not (err == errno.EIO and out.internal):
            seq = self.sys.klog.seq
            after = deep_snapshot(self.fs) if deep else local_snapshot(self.fs, op.path)
            out.internal += [f"read during snapshot: {w}" for w in self._warns(seq)]
            out.checked = "deep" if deep else "local"
            if deep:
                self._current = after           # a refusal moves nothing on: the next op's "before"
            if after != before:
                changed = _changed_paths(before, after)
                allowed = next((s for s in self.side_effects if s.match(op, err, changed)), None)
                if allowed is not None:
                    out.side_effect = allowed.name
                else:
                    out.changed = diff_snapshots(before, after)
        if self.check_invariants is not None and (self.n % self.invariants_every == 0 or out.hazards):
            self.invariant_checks += 1
            try:     # after a kernel hazard: the rules it excuses aside
                out.invariants = unexplained(self.sys, list(self.check_invariants(self.sys)))
            except Exception as e:
                out.invariants = [f"check_invariants raised {e!r}"]
        return out


# ------------------------------------------------------------------------------ episodes

def boot(topology: str = "cxl_test") -> Sysfs:
    """A fresh model on a fake clock (delayed work runs only when an ``advance`` op says so, so a
    run is reproducible), through its projection."""
    s = System.boot(topology)
    s.timers.clock = FakeClock()
    return Sysfs(s)


def _failures(out: Outcome, topology: str, seed: Any, ops: list) -> list:
    res = []
    for kind, detail in (("internal", out.internal), ("changed", out.changed),
                         ("invariant", out.invariants), ("dead", ["daemon died"] if out.dead else [])):
        if detail:
            res.append(Failure(kind, out.op, list(detail), topology, seed, list(ops)))
    return res


def _only_new_breaks(out: Outcome, broken: set, runner: Runner, invariants_every: int) -> set:
    """Keep in ``out.invariants`` only the messages that were not broken at the last check (an
    invariant that stays broken counts once, at the operation that broke it); the new set."""
    if out.invariants or (invariants_every and runner.n % invariants_every == 0):
        now = set(out.invariants)
        out.invariants = [m for m in out.invariants if m not in broken]
        return now
    return broken


def run_episode(topology: str, seed: Any, n_ops: int, *, deep_every: int = 1, invariants_every: int = 1,
                refresh_every: int = 1, stats: Optional[FuzzStats] = None,
                on_op: Optional[Callable[[Outcome], None]] = None) -> FuzzStats:
    """Boot ``topology`` and apply ``n_ops`` generated operations; a failure records the episode
    up to it.  An invariant that stays broken counts once: at the operation that broke it."""
    stats = stats if stats is not None else FuzzStats()
    fs = boot(topology)
    gen = Generator(fs, RandomChooser(f"{seed}"), refresh_every=refresh_every)
    runner = Runner(fs, deep_every=deep_every, invariants_every=invariants_every, seed=seed)
    stats.invariants_available = runner.check_invariants is not None
    ops: list = []
    broken: set = set()
    for _ in range(n_ops):
        op = gen.next_op()
        ops.append(op)
        out = runner.apply(op)
        broken = _only_new_breaks(out, broken, runner, invariants_every)
        stats.add(out, fs)
        if out.failed:
            for f in _failures(out, topology, seed, ops):
                stats.record(f)
        if on_op is not None:
            on_op(out)
        if out.hazards:         # a kernel bug reproduced: what follows is not the model's to answer for
            break
    stats.invariant_checks += runner.invariant_checks
    stats.episodes += 1
    return stats


def _episode(topology: str, seed: str, n: int, deep_every: int, invariants_every: int,
             refresh_every: int) -> FuzzStats:
    """One episode in a worker process (what :func:`fuzz` hands out with ``jobs`` > 1)."""
    return run_episode(topology, seed, n, deep_every=deep_every, invariants_every=invariants_every,
                       refresh_every=refresh_every)


def fuzz(total_ops: int, *, topology: str = "cxl_test", seed: int = 0, episode_ops: int = 2000,
         deep_every: int = 100, invariants_every: int = 1, refresh_every: int = 20, jobs: int = 1,
         progress: Optional[Callable[[FuzzStats], None]] = None, progress_every: float = 10.0) -> FuzzStats:
    """The long run: episodes of up to ``episode_ops`` operations (a fresh boot each; one that
    reproduces a kernel hazard ends early) until ``total_ops``.  Episode ``k`` is seeded
    ``"<seed>.<k>"`` whatever ``jobs`` (worker processes) says, so a failure names its episode."""
    stats = FuzzStats()
    t0 = last = time.monotonic()
    ep = 0

    def tick() -> None:
        nonlocal last
        now = time.monotonic()
        stats.seconds = now - t0
        if progress is not None and now - last >= progress_every:
            last = now
            progress(stats)

    if jobs <= 1:
        while stats.ops < total_ops:
            run_episode(topology, f"{seed}.{ep}", min(episode_ops, total_ops - stats.ops), deep_every=deep_every,
                        invariants_every=invariants_every, refresh_every=refresh_every, stats=stats)
            ep += 1
            tick()
    else:
        import concurrent.futures as cf
        import multiprocessing
        # Episode k runs min(episode_ops, total - the operations of episodes 0..k-1), as in one
        # process: it is handed out early only when that is surely episode_ops (the episodes before
        # it can do no more than their budgets), else once they are all done.
        with cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            running: dict = {}          # future -> the budget it was given
            while stats.ops < total_ops or running:
                while len(running) < 2 * jobs:
                    ahead = stats.ops + sum(running.values())
                    if ahead + episode_ops <= total_ops:
                        n = episode_ops
                    elif not running and stats.ops < total_ops:
                        n = total_ops - stats.ops
                    else:
                        break
                    running[pool.submit(_episode, topology, f"{seed}.{ep}", n, deep_every, invariants_every,
                                        refresh_every)] = n
                    ep += 1
                if not running:
                    break
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for f in done:
                    del running[f]
                    stats.merge(f.result())
                tick()
    stats.seconds = time.monotonic() - t0
    return stats


def replay(topology: str, ops: Sequence[Op], *, check: str = "all") -> list:
    """Apply ``ops`` to a fresh model; the outcomes.  ``check``: ``all`` (every op with the deep
    snapshot) or ``last`` (only the last op is checked: what :func:`shrink` needs)."""
    fs = boot(topology)
    runner = Runner(fs, deep_every=1, invariants_every=1)
    outs = []
    for i, op in enumerate(ops):
        if check == "last" and i < len(ops) - 1:
            err, reason, exc = runner.execute(op)
            outs.append(Outcome(op, err, reason, internal=[exc] if exc else []))
        else:
            outs.append(runner.apply(op))
    return outs


def _details(out: Outcome, kind: str) -> list:
    return {"internal": out.internal, "changed": out.changed, "invariant": out.invariants,
            "dead": ["daemon died"] if out.dead else []}[kind]


def _norm(line: str) -> str:
    return re.sub(r"0x[0-9a-f]+|\d+", "N", line.split(" [write")[0])[:160]


def shrink(topology: str, ops: Sequence[Op], still_fails: Optional[Callable[[Outcome], bool]] = None,
           budget_s: float = 60.0, kind: Optional[str] = None) -> list:
    """Cut a failing episode down (delta debugging on the operations before the last): the
    shortest list found in ``budget_s`` whose last operation still fails (``still_fails``; by
    default: a failure of the same ``kind`` — the first one the last operation shows — whose
    first line reads the same, numbers aside)."""
    ops = list(ops)
    first = replay(topology, ops, check="last")[-1]
    kinds = [k for k in ("internal", "changed", "invariant") if _details(first, k)]
    if not kinds or (kind is not None and kind not in kinds):
        return ops
    kind = kind or kinds[0]
    want = _norm(_details(first, kind)[0])

    def default(out: Outcome) -> bool:
        d = _details(out, kind)
        return bool(d) and _norm(d[0]) == want
    test = still_fails or default
    deadline = time.monotonic() + budget_s
    prefix, last = ops[:-1], ops[-1]
    chunk = max(1, len(prefix) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        i = 0
        progressed = False
        while i < len(prefix) and time.monotonic() < deadline:
            cand = prefix[:i] + prefix[i + chunk:]
            if test(replay(topology, cand + [last], check="last")[-1]):
                prefix = cand
                progressed = True
            else:
                i += chunk
        if not progressed:
            chunk //= 2
    return prefix + [last]


# ------------------------------------------------------------------------------ through the mount

def _mount_write(root: str, op: Op) -> Optional[int]:
    """One write(2) through the mount: the errno, or None."""
    try:
        fd = os.open(os.path.join(root, op.path), os.O_WRONLY)
    except OSError as e:
        return e.errno
    try:
        if op.offset:
            os.pwrite(fd, op.data, op.offset)
        else:
            os.write(fd, op.data)
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)
    return None


def mount_inner(n_ops: int, *, topology: str = "cxl_test", seed: Any = 0, root: str = "/sys",
                deep_every: int = 100, invariants_every: int = 1) -> dict:
    """Run inside ``cxlsys run`` (``root`` is the mounted model): generate operations on an
    in-process mirror of the same topology, write each through the mount with ``os.write`` and
    apply it to the mirror with the :class:`Runner`'s checks, and compare the errnos (a difference
    is a divergence of the served tree from the model).  Skips the files whose effect completes on
    the clock (:data:`TIMED_FILES`), tracefs/debugfs, modprobe and advance.  A write that gets
    ENOTCONN (the daemon is gone) ends the run.  Returns counts (JSON-able) and the mirror's
    summary lines."""
    fs = boot(topology)
    gen = Generator(fs, RandomChooser(f"mount:{seed}"), clock=False, modprobe=False, refresh_every=20,
                    exclude=lambda p: p.rpartition("/")[2] in TIMED_FILES or p.startswith("kernel/"))
    runner = Runner(fs, deep_every=deep_every, invariants_every=invariants_every, seed=seed)
    stats = FuzzStats(invariants_available=runner.check_invariants is not None)
    res: dict = {"ops": 0, "accepted": 0, "refused": Counter(), "divergences": [], "divergent": 0, "dead": False}
    ops: list = []
    broken: set = set()
    t0 = time.monotonic()
    for _ in range(n_ops):
        op = gen.next_op()
        ops.append(op)
        got = _mount_write(root, op)
        if got == errno.ENOTCONN:
            res["dead"] = True
            break
        out = runner.apply(op)
        broken = _only_new_breaks(out, broken, runner, invariants_every)
        stats.add(out, fs)
        for f in _failures(out, topology, f"mount:{seed}", ops) if out.failed else ():
            stats.record(f)
        res["ops"] += 1
        if got is None:
            res["accepted"] += 1
        else:
            res["refused"][errno.errorcode.get(got, str(got))] += 1
        if got != out.errno:
            res["divergent"] += 1
            if len(res["divergences"]) < 20:
                res["divergences"].append(f"{op.show()}: mount {errno.errorcode.get(got or 0, 'ok')}, "
                                          f"model {errno.errorcode.get(out.errno or 0, 'ok')}")
    stats.seconds = res["seconds"] = time.monotonic() - t0
    stats.invariant_checks = runner.invariant_checks
    stats.episodes = 1
    try:
        res["alive"] = bool(os.listdir(os.path.join(root, "bus/cxl/devices")))
    except OSError:
        res["alive"] = False
    res["refused"] = dict(res["refused"])
    res["mirror"] = {"internal": stats.internal, "changed": stats.changed, "invariant_breaks": stats.invariant_breaks,
                     "summary": stats.summary(invariants_every=invariants_every, deep_every=deep_every),
                     "failures": [f.to_json() for f in stats.failures.values()][:5]}
    return res
