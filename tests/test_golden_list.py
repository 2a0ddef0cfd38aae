"""Differential test: ``cxl list -BPEMDTRi -vv`` (the real cxl 76.1 in ``cxlsys run``) against
the same command captured on a real Linux 6.12 with cxl_test (golden-6.12/list-cxl_test.json).

See tools/golden_list.py for the canonicalization (device numbers -> host-derived names,
probe-ordered lists keyed by name, targets/mappings keyed by position, HPA as an offset in its
root window; window bases only "present on both sides").

Categories:
- ``mismatch``/``missing``/``extra``: model bugs; a known one goes in KNOWN_BUGS, which turns the
  objects it touches into strict xfails.
- ``ioctl``: golden fields that cxl(1) fills through mailbox ioctls on /dev/cxl/memN (health,
  partition info, alert config, firmware). cxlsys has no ioctls yet: reported in the match
  figure, never failed on. (``-vv`` does not turn on --health/--partition, so the 6.12 capture
  holds none today.)

The offline tests (no mount needed) check the canonicalization itself: renumbering devices,
reordering lists and moving the address pool leave the flattened document unchanged, and real
changes do not.
"""

import copy
import functools
import json
import os
import random
import re
import time

import pytest

from cxlsys.testing import cxlsys_run
from tools.golden_list import GOLDEN, LIST_ARGS, compare, flatten, load_golden

pytestmark = pytest.mark.golden(GOLDEN)

# Genuine model bugs found by this comparison: canonical field-path regex -> what is wrong.
# Every golden object with a field path matching one becomes a strict xfail.
KNOWN_BUGS: dict = {}
# the match figure: equal golden fields / golden fields not backed by mailbox ioctls, in percent
FLOOR = 100.0


@functools.cache
def _golden():
    return load_golden() if os.path.exists(GOLDEN) else []


@functools.cache
def _golden_flat():
    return flatten(_golden())


def _golden_objects():
    return sorted({p.split("/", 1)[0] for p in _golden_flat()})


@functools.cache
def _ours():
    t0 = time.monotonic()
    r = cxlsys_run(" ".join(LIST_ARGS))
    return json.loads(r.stdout), time.monotonic() - t0, r.stderr


@functools.cache
def _report():
    return compare(_golden(), _ours()[0])


def _listing(diffs) -> str:
    return "\n".join(str(d) for d in diffs)


def _known(path: str) -> bool:
    return any(re.search(rx, path) for rx in KNOWN_BUGS)


def _object_param(oid):
    reasons = sorted({why for rx, why in KNOWN_BUGS.items()
                      for p in _golden_flat() if p.startswith(oid + "/") and re.search(rx, p)})
    marks = [pytest.mark.xfail(strict=True, reason="; ".join(reasons))] if reasons else []
    return pytest.param(oid, marks=marks, id=oid)


def _bugs(diffs):
    return [d for d in diffs if d.kind != "ioctl"]


# ---- against the live model -------------------------------------------------------------------

@pytest.mark.mount
@pytest.mark.parametrize("oid", [_object_param(o) for o in _golden_objects()])
def test_golden_object_matches(oid):
    """Every non-ioctl field of this golden object is in ours with an equal value, and ours has
    no field on it the golden lacks."""
    bad = _bugs(d for d in _report().diffs if d.path.split("/", 1)[0] == oid)
    assert not bad, f"{len(bad)} differences on {oid}:\n{_listing(bad)}"


@pytest.mark.mount
def test_nothing_beyond_known_bugs():
    """Whatever KNOWN_BUGS xfails, any other difference (including whole extra objects) fails."""
    new = [d for d in _bugs(_report().diffs) if not _known(d.path)]
    assert not new, f"{len(new)} differences not in KNOWN_BUGS:\n{_listing(new)}"


@pytest.mark.mount
def test_no_libcxl_complaints():
    """-vv reads sysfs only: libcxl must not have logged a failure (e.g. a mailbox ioctl attempt)."""
    complaints = [ln for ln in _ours()[2].splitlines() if ln.startswith("libcxl")]
    assert not complaints, "\n".join(complaints[:20])


@pytest.mark.mount
def test_match_figure(capsys, record_property, request):
    """Print and record the match figure; it must not fall below FLOOR."""
    rep = _report()
    pct = 100.0 * rep.equal / max(rep.comparable, 1)
    ioctl = rep.by_kind("ioctl")
    lines = [rep.figure(), f"  (cxlsys run + cxl list took {_ours()[1]:.2f}s)"]
    if ioctl:
        lines.append("  expected ioctl-backed gaps: " + ", ".join(sorted({d.path.split('/', 1)[1] for d in ioctl})))
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    record_property("golden_list_match", f"{rep.equal}/{rep.comparable}")
    record_property("golden_list_ioctl_gaps", len(ioctl))
    request.config.cache.set("golden_list/figure", {"equal": rep.equal, "comparable": rep.comparable,
                                                    "golden": rep.total, "ioctl": len(ioctl),
                                                    "summary": rep.figure()})
    assert pct >= FLOOR, rep.figure() + "\n" + _listing(_bugs(rep.diffs))


# ---- the canonicalization itself (offline) ----------------------------------------------------

def _renumber(doc, seed=1):
    """The same document as another boot's probe order would number it, lists reordered and the
    HPA pool moved."""
    text = json.dumps(doc)
    rng = random.Random(seed)

    def perm(prefix_re, keep=()):
        nums = sorted({int(n) for n in re.findall(prefix_re, text)} - set(keep))
        new = rng.sample(range(100, 100 + 3 * len(nums)), len(nums))
        return dict(zip(nums, new)) | {k: k for k in keep}

    ports = perm(r"\b(?:port|endpoint)(\d+)\b", keep=(0,))
    mems, regions = perm(r"\bmem(\d+)\b"), perm(r"\bregion(\d+)\b")
    text = re.sub(r"\b(port|endpoint)(\d+)\b", lambda m: f"{m[1]}{ports[int(m[2])]}", text)
    text = re.sub(r"\bdecoder(\d+)\.", lambda m: f"decoder{ports.get(int(m[1]), int(m[1]))}.", text)
    text = re.sub(r"\bmem(\d+)\b", lambda m: f"mem{mems[int(m[1])]}", text)
    text = re.sub(r"\bregion(\d+)\b", lambda m: f"region{regions[int(m[1])]}", text)
    out = json.loads(text)

    def walk(x):
        if isinstance(x, dict):
            if isinstance(x.get("resource"), int):
                x["resource"] += 0x3_0000_0000
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            rng.shuffle(x)
            for v in x:
                walk(v)
    walk(out)
    return out


def test_canonical_form_ignores_probe_order_and_hpa_pool():
    g = _golden()
    moved = _renumber(g)
    assert json.dumps(moved) != json.dumps(g)
    rep = compare(g, moved)
    assert not rep.diffs, _listing(rep.diffs)
    assert rep.equal == rep.total == len(flatten(g))


def test_every_device_is_canonicalized():
    flat = _golden_flat()
    numbered = re.compile(r"\b(mem|port|endpoint|root|decoder|region)\d+(\.\d+)?\b")
    leftover = [(p, v) for p, v in flat.items() if numbered.search(p) or (isinstance(v, str) and numbered.search(v))]
    assert not leftover
    text = json.dumps(_golden())
    raw = set(re.findall(r'"((?:mem|port|endpoint|decoder|region)\d+(?:\.\d+)?)"', text))
    kinds = {o.split("@")[0] for o in _golden_objects()}
    assert kinds == {"root", "port", "endpoint", "mem", "decoder", "region"}
    # injective: one canonical object per numbered device of the golden listing
    assert len(_golden_objects()) == len(raw) + 1   # + the bus (root0 is only a key suffix)


def _find(doc, pred):
    stack = [doc]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            if pred(x):
                return x
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    raise LookupError


def _mutated(fn):
    doc = copy.deepcopy(_golden())
    fn(doc)
    return compare(_golden(), doc).diffs


def test_real_differences_are_caught():
    def region(doc):
        return _find(doc, lambda x: "region" in x and "mappings" in x)

    def serial(doc):
        _find(doc, lambda x: x.get("serial") == 3)["serial"] = 99

    def swap_positions(doc):
        a, b = region(doc)["mappings"][:2]
        a["position"], b["position"] = b["position"], a["position"]

    def region_offset(doc):
        region(doc)["resource"] += 0x1000_0000

    def drop_state(doc):
        del _find(doc, lambda x: x.get("state") == "disabled")["state"]

    def extra_field(doc):
        _find(doc, lambda x: "memdev" in x and "serial" in x)["ram_qos_class"] = 42

    def move_endpoint(doc):
        def has_endpoints(x):
            return "port" in x and f"endpoints:{x['port']}" in x
        src = _find(doc, has_endpoints)
        dst = _find(doc, lambda x: has_endpoints(x) and x is not src)
        dst[f"endpoints:{dst['port']}"].append(src[f"endpoints:{src['port']}"].pop())

    for fn, kind in ((serial, "mismatch"), (swap_positions, "mismatch"), (region_offset, "mismatch"),
                     (drop_state, "missing"), (extra_field, "extra"), (move_endpoint, "mismatch")):
        diffs = _mutated(fn)
        assert diffs and {d.kind for d in diffs} == {kind}, (fn.__name__, _listing(diffs))


def test_ioctl_backed_fields_are_a_separate_category():
    def add_health(doc):
        m = _find(doc, lambda x: "memdev" in x and "serial" in x)
        m["health"] = {"maintenance_needed": False, "life_used_percent": 0}
        m["partition_info"] = {"total_size": 1 << 31}
    doc = copy.deepcopy(_golden())
    add_health(doc)
    rep = compare(doc, _golden())          # golden with mailbox fields vs ours without
    assert {d.kind for d in rep.diffs} == {"ioctl"} and len(rep.diffs) == 3
    assert rep.comparable == rep.equal
