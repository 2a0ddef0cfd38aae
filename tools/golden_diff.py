"""Differential check: our ``cxl_test`` sysfs projection against a real Linux 6.12 dump.

The golden trees (``../shared/reference/golden-6.12`` beside the checkout, or
``$CXLSYS_GOLDEN_DIR``) come from a kernel whose memdev,
port, endpoint, decoder, pmem, region and nmem numbers follow asynchronous probe order, so
both trees are first renamed to canonical device names derived from each tree's own
structure, then compared entry by entry:

- ``memN``                -> ``mem@<host>`` (host: the platform device holding it, cxl_mem.3)
- ``rootN/portN/endpointN`` -> ``root@/port@/endpoint@<uport>`` (the uport link's basename;
  for an endpoint, its memdev's host)
- ``decoderP.K``          -> ``decoder@<its port's uport>.K``
- ``pmemN``/``nmemN``       -> ``pmem@<host>``/``nmem@<host>`` (an nmem via ``cxl/provider``)
- ``regionN``             -> ``region@<root decoder's uport>.K#i`` (i-th by HPA in it)
- ``dax_regionN``/``daxN.M`` follow their region.

Paths, link targets and values are rewritten with the same map. HPA values (decoder
``start``, region/dax ``resource``, dax ``mappingN/start|end``) only have to be hex on both
sides, and zero on both sides or neither. ``python -m tools.golden_diff [--xor] [-v]`` prints
the match figures and the mismatches.
"""

from __future__ import annotations

import argparse
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

from tools.golden import golden_file

GOLDEN = {"modulo": (golden_file("tree-cxl_test.txt"), None),
          "xor": (golden_file("tree-cxl_test-xor.txt"), {"interleave_arithmetic": 1})}

# the category of a canonical path: the first match wins
CATEGORIES = (
    ("nd/libnvdimm", re.compile(r"/ndbus\d+(/|$)")),
    ("node vm stats", re.compile(r"^/sys/devices/system/node/node\d+/(hugepages|meminfo|vmstat|numastat|compact)")),
    ("dax", re.compile(r"^/sys/bus/dax(/|$)|/dax_region@")),
    ("cxl bus", re.compile(r"^/sys/bus/cxl(/|$)")),
    ("cxl_acpi.0 tree", re.compile(r"^/sys/devices/platform/cxl_acpi\.0(/|$)")),
    ("host bridges", re.compile(r"^/sys/devices/platform/cxl_host_bridge\.|^/sys/bus/platform/")),
    ("node/memory", re.compile(r"^/sys/devices/system/")),
)
DISPLAY_ORDER = ("cxl bus", "cxl_acpi.0 tree", "host bridges", "dax", "node/memory",
                 "nd/libnvdimm", "node vm stats", "other")
OUT_OF_SCOPE = ("nd/libnvdimm", "node vm stats")   # not modelled (libnvdimm bus, mm counters)
# the golden dumper skipped every memoryN, including node0's memoryN links; ours lists them
IGNORED_EXTRA = re.compile(r"^/sys/devices/system/node/node\d+/memory\d+$")
HPA_FILE = re.compile(r"/(decoder|region|dax_region|dax|mapping)[^/]*/(start|end|resource)$")
HEX = re.compile(r"0x[0-9a-f]+\|")


class Entry(NamedTuple):
    kind: str                 # dir | link | file
    mode: str = ""
    value: str = ""           # link target or file content

    def __str__(self):
        return {"dir": "dir", "link": f"-> {self.value}"}.get(self.kind, f"{self.mode} {self.value!r}")


def parse(lines) -> dict:
    tree = {}
    for line in lines:
        if not line:
            continue
        path, kind, *rest = line.split("\t")
        if kind == "file":
            mode, _, value = "\t".join(rest).partition("\t")
            tree[path] = Entry(kind, mode, value)
        else:
            tree[path] = Entry(kind, "", "\t".join(rest))
    return tree


def roots_of(tree: dict) -> list:
    """The dump's top-level roots: entries whose parent is not in the tree."""
    return sorted(p for p in tree if os.path.dirname(p) not in tree)


# ---------------------------------------------------------------------------- renaming
def _host_of(target: str) -> str:
    """A uport link target's identity: its basename, or a memdev's host device."""
    parts = target.rstrip("/").split("/")
    return parts[-2] if re.fullmatch(r"mem\d+", parts[-1]) else parts[-1]


def canonical_names(tree: dict) -> dict:
    """Original device name -> canonical name, from the tree's own structure."""
    dirs = [p for p, e in tree.items() if e.kind == "dir"]
    names, port_ids = {}, {}
    for p in dirs:
        parent, base = p.rsplit("/", 1)
        if re.fullmatch(r"mem\d+", base) and re.search(r"/cxl_(mem|rcd)\.\d+$", parent):
            names[base] = f"mem@{os.path.basename(parent)}"
        elif re.fullmatch(r"(root|port|endpoint)\d+", base) and f"{p}/uport" in tree:
            port_ids[p] = _host_of(tree[f"{p}/uport"].value)
            names[base] = f"{base.rstrip('0123456789')}@{port_ids[p]}"
    for p in dirs:
        parent, base = p.rsplit("/", 1)
        m = re.fullmatch(r"decoder\d+\.(\d+)", base)
        if m and parent in port_ids:
            names[base] = f"decoder@{port_ids[parent]}.{m.group(1)}"
        elif re.fullmatch(r"pmem\d+", base) and os.path.basename(parent) in names:
            names[base] = f"pmem@{os.path.basename(os.path.dirname(parent))}"
    for p in dirs:
        base = os.path.basename(p)
        provider = tree.get(f"{p}/cxl/provider")
        if re.fullmatch(r"nmem\d+", base) and provider:
            names[base] = names.get(provider.value.rstrip("|"), base).replace("pmem@", "nmem@")
    regions = defaultdict(list)             # root decoder -> [(hpa, region number)]
    for p in dirs:
        parent, base = p.rsplit("/", 1)
        m = re.fullmatch(r"region(\d+)", base)
        if m and os.path.basename(parent) in names:
            res = tree.get(f"{p}/resource", Entry("file")).value.rstrip("|")
            hpa = int(res, 16) if HEX.fullmatch(res + "|") else -1
            regions[names[os.path.basename(parent)]].append((hpa, m.group(1)))
    for dec, found in regions.items():
        for i, (_, n) in enumerate(sorted(found)):
            rid = f"{dec.removeprefix('decoder@')}#{i}"
            names[f"region{n}"] = f"region@{rid}"
            names[f"dax_region{n}"] = f"dax_region@{rid}"
            for p in dirs:
                m = re.fullmatch(rf"dax{n}\.(\d+)", os.path.basename(p))
                if m:
                    names[m.group()] = f"dax@{rid}.{m.group(1)}"
    return names


_TOKEN = re.compile(r"[\w.-]+")


def canonicalize(tree: dict) -> dict:
    """The tree with every device name (paths, link targets, values) made canonical."""
    names = canonical_names(tree)

    def path(p):
        return "/".join(names.get(c, c) for c in p.split("/"))

    out = {}
    for p, e in tree.items():
        if e.kind == "link":
            e = e._replace(value=path(e.value))
        elif e.kind == "file":
            v = _TOKEN.sub(lambda m: names.get(m.group(), m.group()), e.value)
            # a char device's minor is its own id (memN: 245:N, nmemN: 246:N)
            own = re.fullmatch(r"n?mem(\d+)", os.path.basename(os.path.dirname(p)))
            if own and os.path.basename(p) in ("dev", "uevent"):
                v = re.sub(rf"(?<=[:=]){own.group(1)}(?=\|)", "#", v)
            e = e._replace(value=v)
        out[path(p)] = e
    return out


# ---------------------------------------------------------------------------- comparison
def category(path: str) -> str:
    return next((name for name, rx in CATEGORIES if rx.search(path)), "other")


def shape(path: str) -> str:
    """A path with device identities and numbers wildcarded, to group like mismatches."""
    return re.sub(r"\d+", "N", re.sub(r"@[^/]+", "@*", path))


KINDS = ("missing in ours", "extra in ours", "kind differs", "mode differs",
         "link target differs", "value differs")


class Mismatch(NamedTuple):
    kind: str
    path: str
    golden: Optional[Entry]
    ours: Optional[Entry]


def diff_entry(path: str, g: Entry, o: Optional[Entry]) -> list:
    if o is None:
        return ["missing in ours"]
    if g.kind != o.kind:
        return ["kind differs"]
    if g.kind == "link":
        return [] if g.value == o.value else ["link target differs"]
    if g.kind == "dir":
        return []
    out = [] if g.mode == o.mode else ["mode differs"]
    if HPA_FILE.search(path) and HEX.fullmatch(g.value) and HEX.fullmatch(o.value) \
            and (g.value == "0x0|") == (o.value == "0x0|"):
        return out                    # an HPA: any address, but programmed on both sides or neither
    return out + ([] if g.value == o.value else ["value differs"])


@dataclass
class Report:
    name: str
    golden: dict                      # canonical path -> Entry
    ours: dict
    mismatches: list = field(default_factory=list)
    figures: dict = field(default_factory=dict)   # category -> [equal, total golden]

    @property
    def overall(self) -> tuple:
        return tuple(map(sum, zip(*self.figures.values())))

    @property
    def in_scope_figure(self) -> tuple:
        return tuple(map(sum, zip(*(f for c, f in self.figures.items() if c not in OUT_OF_SCOPE))))

    def in_scope(self) -> list:
        """Mismatches in the categories the model is responsible for."""
        return [m for m in self.mismatches if category(m.path) not in OUT_OF_SCOPE]

    def format(self, verbose: bool = False) -> str:
        def pct(eq, tot):
            return f"{eq}/{tot} ({100.0 * eq / tot if tot else 100:.1f}%)"

        out = [f"== {self.name}: {pct(*self.overall)} golden entries equal"
               f" (modelled categories: {pct(*self.in_scope_figure)})"]
        for cat, (eq, tot) in self.figures.items():
            out.append(f"   {cat:<18} {pct(eq, tot)}{'   (not modelled)' if cat in OUT_OF_SCOPE else ''}")
        for kind in KINDS:
            ms = [m for m in self.mismatches if m.kind == kind]
            if not ms:
                continue
            out.append(f"\n-- {kind}: {len(ms)}")
            groups = defaultdict(list)
            for m in ms:
                groups[(category(m.path), shape(m.path))].append(m)
            for (cat, shp), group in sorted(groups.items(), key=lambda kv: (DISPLAY_ORDER.index(kv[0][0]), kv[0])):
                shown = group if verbose else group[:1]
                out.append(f"  [{cat}] {shp}  x{len(group)}")
                for m in shown:
                    out.append(f"      {m.path}\n        golden: {m.golden or '-'}\n        ours:   {m.ours or '-'}")
        return "\n".join(out)


def our_dump(params: Optional[dict], roots) -> list:
    from cxlsys.sysfs import Sysfs
    from cxlsys.system import System
    from cxlsys.treedump import dump_model
    return dump_model(Sysfs(System.boot("cxl_test", params)), roots)


def compare(golden_path: str, params: Optional[dict] = None, name: Optional[str] = None) -> Report:
    with open(golden_path) as f:
        raw = parse(f.read().splitlines())
    golden = canonicalize(raw)
    ours = canonicalize(parse(our_dump(params, roots_of(raw))))
    rep = Report(name or os.path.basename(golden_path), golden, ours)
    rep.figures = {cat: [0, 0] for cat in sorted({category(p) for p in golden}, key=DISPLAY_ORDER.index)}
    for path, g in golden.items():
        fig = rep.figures[category(path)]
        problems = diff_entry(path, g, ours.get(path))
        fig[0] += not problems
        fig[1] += 1
        rep.mismatches += [Mismatch(k, path, g, ours.get(path)) for k in problems]
    rep.mismatches += [Mismatch("extra in ours", p, None, o) for p, o in ours.items()
                       if p not in golden and not IGNORED_EXTRA.search(p)]
    return rep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.golden_diff", description=__doc__.split("\n\n")[0])
    ap.add_argument("--xor", action="store_true", help="compare the interleave_arithmetic=1 variant")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every mismatch, not one per group")
    args = ap.parse_args(argv)
    variant = "xor" if args.xor else "modulo"
    print(compare(*GOLDEN[variant], name=f"cxl_test ({variant})").format(args.verbose))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
