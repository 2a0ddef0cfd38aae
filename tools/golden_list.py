"""Differential check: ``cxl list -BPEMDTRi -vv`` against a real Linux 6.12 capture.

The golden document (``list-cxl_test.json`` of the golden-6.12 data, see tools/golden.py) comes from a
kernel whose memdev, port, endpoint, decoder and region numbers follow asynchronous probe
order, so both documents are flattened into ``{canonical field path: value}`` maps whose names
are derived from each document's own structure:

- bus ``rootN``           -> ``root@<provider>``
- ``portN``               -> ``port@<host>``            (``cxl_switch_uport.0``)
- ``memN``                -> ``mem@<host>``             (``cxl_mem.3``)
- ``endpointN``           -> ``endpoint@<memdev host>``
- ``decoderP.K``          -> ``decoder@<owner's host>.K`` (an endpoint's owner: its memdev's
  host; the root's: the bus provider)
- ``regionN``             -> ``region@<root decoder's owner>.K#i`` (i-th by HPA in that window)

Every value naming one of those is rewritten with the same map. Where an object sits in the
listing (which ``ports:``/``endpoints:``/``decoders:``/``regions:`` array holds it) becomes a
``parent`` field; probe-order dependent lists (dports) are keyed by dport name, position-bearing
ones (decoder targets, region mappings) by ``position``.

HPA values (decoder and region ``resource``) come from different address pools: a root
decoder's window base only has to be present on both sides, everything else is compared as an
offset from the base of the root window that contains it.

Fields that ``cxl`` fills from mailbox ioctls on ``/dev/cxl/memN`` (health, partition info,
alert config, firmware) are classified ``ioctl`` (an expected gap: cxlsys has no ioctls) rather
than ``missing``. ``python -m tools.golden_list [-v] [ours.json]`` prints the figures.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tools.golden import golden_file

GOLDEN = golden_file("list-cxl_test.json")
LIST_ARGS = ("cxl", "list", "-BPEMDTRi", "-vv")
ROOT = Path(__file__).resolve().parent.parent

# memdev sub-objects / fields that cxl(1) only gets through mailbox ioctls on /dev/cxl/memN
IOCTL_KEYS = frozenset({"health", "partition_info", "alert_config", "firmware", "label_storage_size"})
HPA_KEYS = frozenset({"resource"})
# keys whose value names a device (rewritten through the canonical map)
NAME_KEYS = frozenset({"bus", "port", "endpoint", "decoder", "memdev", "region", "host"})
# keys that hold a nested object or list handled structurally (never compared as values)
CHILD_LIST = re.compile(r"^(ports|endpoints|decoders|regions|memdevs|dports|targets|mappings)(:.*)?$")

HPA_PRESENT = "<hpa>"
KINDS = ("bus", "port", "endpoint", "decoder", "region", "memdev")   # an object's identifying key


class Canon:
    """One document's canonical name map plus its root windows."""

    def __init__(self, doc: list):
        self.names: dict[str, str] = {}
        self.windows: list[tuple[int, int, str]] = []     # (base, size, canonical root decoder)
        self.root_decoders: set[str] = set()
        self._build(doc)

    def name(self, raw: Any) -> Any:
        return self.names.get(raw, raw) if isinstance(raw, str) else raw

    # ---- the map -------------------------------------------------------------------------------
    def _build(self, doc: list):
        owner: dict[str, str] = {}         # raw root/port/endpoint name -> its owner id
        dicts = list(_dicts(doc))

        for d in dicts:                     # memdevs first: endpoints are named after them
            if isinstance(d.get("memdev"), str) and "host" in d:
                self.names[d["memdev"]] = f"mem@{d['host']}"
        for d in dicts:
            if isinstance(d.get("bus"), str):
                owner[d["bus"]] = d.get("provider", d["bus"])
                self.names[d["bus"]] = f"root@{owner[d['bus']]}"
            elif isinstance(d.get("port"), str) and "host" in d:
                owner[d["port"]] = d["host"]
                self.names[d["port"]] = f"port@{d['host']}"
            elif isinstance(d.get("endpoint"), str) and "host" in d:
                owner[d["endpoint"]] = self.names.get(d["host"], d["host"]).removeprefix("mem@")
                self.names[d["endpoint"]] = f"endpoint@{owner[d['endpoint']]}"
        roots = {k for k, v in self.names.items() if v.startswith("root@")}
        for d in dicts:                     # decoderP.K -> decoder@<owner of the listing port>.K
            for k, v in d.items():
                if k.startswith("decoders:") and isinstance(v, list):
                    port_raw = k.split(":", 1)[1]
                    for dec in v:
                        idx = dec["decoder"].rsplit(".", 1)[1]
                        self.names[dec["decoder"]] = f"decoder@{owner.get(port_raw, port_raw)}.{idx}"
                        if port_raw in roots and "resource" in dec and "size" in dec:
                            self.windows.append((dec["resource"], dec["size"], self.names[dec["decoder"]]))
        self.root_decoders = {w[2] for w in self.windows}
        by_window: dict[str, list] = {}     # regions: i-th by HPA in their root decoder's window
        for d in dicts:
            for k, v in d.items():
                if k.startswith("regions:") and isinstance(v, list):
                    for r in v:
                        nest = self.names.get(k.split(":", 1)[1])
                        win = nest if nest in self.root_decoders else self._window(r.get("resource"))
                        by_window.setdefault(win or "?", []).append(r)
        for win, regions in by_window.items():
            for i, r in enumerate(sorted(regions, key=lambda r: (r.get("resource", 1 << 64), r["region"]))):
                self.names[r["region"]] = f"region@{win.removeprefix('decoder@')}#{i}"

    def _window(self, value) -> Optional[str]:
        for base, size, dn in self.windows:
            if isinstance(value, int) and base <= value < base + size:
                return dn
        return None

    def hpa(self, value: int) -> str:
        for base, size, dn in self.windows:
            if base <= value < base + size:
                return f"{dn}+{value - base:#x}"
        return HPA_PRESENT + "(outside every window)"


def flatten(doc: list) -> dict[str, Any]:
    """The document as {canonical field path: canonical value}."""
    c = Canon(doc)
    out: dict[str, Any] = {}
    seen: dict[str, int] = {}

    def obj(o: dict, kind: str, parent: Optional[str]):
        oid = c.name(o[kind])
        seen[oid] = seen.get(oid, 0) + 1
        if seen[oid] > 1:                   # two devices canonicalized alike: keep both visible
            oid = f"{oid}(duplicate {seen[oid]})"
        if parent is not None:
            out[f"{oid}/parent"] = parent
        for k, v in o.items():
            if k == kind:
                continue
            if CHILD_LIST.match(k):
                child_list(oid, k, v)
            elif k == "memdev" and isinstance(v, dict):
                obj(v, "memdev", oid)
            elif isinstance(v, dict):
                for sk, sv in _leaves(v):
                    out[f"{oid}/{k}/{sk}"] = sv
            elif k in HPA_KEYS and isinstance(v, int):
                out[f"{oid}/{k}"] = HPA_PRESENT if oid in c.root_decoders else c.hpa(v)
            elif k in NAME_KEYS:
                out[f"{oid}/{k}"] = c.name(v)
            else:
                out[f"{oid}/{k}"] = v

    def child_list(oid: str, k: str, v: list):
        base = k.split(":", 1)[0]
        if base in ("ports", "endpoints", "decoders", "regions", "memdevs"):
            kind = {"ports": "port", "endpoints": "endpoint", "decoders": "decoder",
                    "regions": "region", "memdevs": "memdev"}[base]
            for child in v:
                obj(child, kind, oid)
        elif base == "dports":
            for d in v:
                for sk, sv in d.items():
                    if sk != "dport":
                        out[f"{oid}/dports{{{d['dport']}}}/{sk}"] = sv
                out.setdefault(f"{oid}/dports{{{d['dport']}}}/", True)
        elif base in ("targets", "mappings"):
            for t in v:
                pos = t.get("position")
                for sk, sv in t.items():
                    if sk != "position":
                        out[f"{oid}/{base}[{pos}]/{sk}"] = c.name(sv) if sk in NAME_KEYS else sv

    def top_level(items: list, where: str):
        for i, top in enumerate(items):
            kind = next((k for k in KINDS if isinstance(top, dict) and isinstance(top.get(k), str)), None)
            if kind:
                obj(top, kind, None)
            elif isinstance(top, dict):     # a wrapper such as {"anon memdevs": [...]}
                for k, v in top.items():
                    if isinstance(v, list):
                        top_level(v, f"{where}{k}/")
                    else:
                        out[f"unrecognized/{where}{k}"] = v
            else:
                out[f"unrecognized/{where}[{i}]"] = top

    top_level(doc if isinstance(doc, list) else [doc], "")
    return out


def _dicts(x):
    if isinstance(x, dict):
        yield x
        for v in x.values():
            yield from _dicts(v)
    elif isinstance(x, list):
        for v in x:
            yield from _dicts(v)


def _leaves(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}/")
        else:
            yield f"{prefix}{k}", v


# ---- comparison ------------------------------------------------------------------------------

@dataclass
class Diff:
    kind: str            # mismatch | missing | extra | ioctl
    path: str
    golden: Any = None
    ours: Any = None

    def __str__(self):
        return f"{self.kind}: {self.path}\n    golden: {_fmt(self.golden)}\n    ours:   {_fmt(self.ours)}"


def _fmt(v):
    return "-" if v is None else json.dumps(v)


@dataclass
class Report:
    golden: dict
    ours: dict
    equal: int = 0
    diffs: list = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.golden)

    @property
    def comparable(self) -> int:
        return self.total - sum(1 for d in self.diffs if d.kind == "ioctl")

    def by_kind(self, kind: str) -> list:
        return [d for d in self.diffs if d.kind == kind]

    def figure(self) -> str:
        ioctl = len(self.by_kind("ioctl"))
        return (f"cxl list -BPEMDTRi -vv vs golden-6.12: {self.equal}/{self.total} golden fields equal "
                f"({100.0 * self.equal / max(self.total, 1):.1f}%); excluding {ioctl} ioctl-backed: "
                f"{self.equal}/{self.comparable} ({100.0 * self.equal / max(self.comparable, 1):.1f}%); "
                f"mismatch {len(self.by_kind('mismatch'))}, missing {len(self.by_kind('missing'))}, "
                f"extra {len(self.by_kind('extra'))}, ioctl-backed gaps {ioctl}")


def is_ioctl(path: str) -> bool:
    return any(seg in IOCTL_KEYS for seg in path.split("/"))


def compare(golden_doc: list, ours_doc: list) -> Report:
    g, o = flatten(golden_doc), flatten(ours_doc)
    rep = Report(g, o)
    for p, gv in sorted(g.items()):
        if p not in o:
            rep.diffs.append(Diff("ioctl" if is_ioctl(p) else "missing", p, gv, None))
        elif o[p] != gv:
            rep.diffs.append(Diff("mismatch", p, gv, o[p]))
        else:
            rep.equal += 1
    for p in sorted(set(o) - set(g)):
        rep.diffs.append(Diff("extra", p, None, o[p]))
    return rep


def load_golden(path: str = GOLDEN) -> list:
    with open(path) as f:
        return json.load(f)


def ours_live(topology: str = "cxl_test") -> list:
    """Run the real cxl tool in ``cxlsys run`` (needs root, /dev/fuse)."""
    r = subprocess.run([sys.executable, "-m", "cxlsys", "run", "--topology", topology, "--", *LIST_ARGS],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(r.stdout)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ours", nargs="?", help="our cxl list JSON (default: run it in cxlsys run)")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every difference")
    a = ap.parse_args(argv)
    if a.ours:
        with open(a.ours) as f:
            ours = json.load(f)
    else:
        ours = ours_live()
    rep = compare(load_golden(), ours)
    print(rep.figure())
    if a.verbose:
        for d in rep.diffs:
            print(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
