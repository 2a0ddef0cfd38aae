"""fs/kernfs's node types: what a sysfs (or debugfs) tree is made of.

The objects that own a directory build its nodes — a device its attribute files, group
directories, child devices and links (:meth:`cxlsys.base.device.Device.kernfs_dir`), a bus or a
driver its files (:mod:`cxlsys.base.bus`), a module its ``parameters/``
(:mod:`cxlsys.base.module`), debugfs its virtual directories (:mod:`cxlsys.debugfs`).  The
projection (:mod:`cxlsys.sysfs`) only walks them: there is no dispatch on tags.

* :class:`KDir` — a directory; ``children()`` computes ``name -> node`` from the owner's
  current state (attribute visibility, bound driver, child devices), so a listing always
  follows the model.
* :class:`KFile` — an attribute: ``show() -> str``, ``store(buf)``; either may be missing.
* :class:`KBinFile` — a binary attribute (``struct bin_attribute``): ``read(offset, size)``,
  ``write(data, offset)``, raw bytes both ways.
* :class:`KLink` — a symlink to a path below /sys.

Nodes compare by :meth:`sig` — kind, mode, link target and which directions are served — which
is what a VFS can cache about an entry; two nodes with the same signature are interchangeable
for a cache.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional, Union

import attrs

S_DIR, S_FILE, S_LINK = "dir", "file", "link"

# What an attribute's value depends on — how long a cache of its contents (the kernel's page cache
# behind the FUSE mount) may keep it without asking again.  Declared next to the attribute
# (``RO("phys_index", scope=CONST)``); tests/test_scopes.py checks every declaration against the
# model's change reports after each operation of a fuzz run.
CONST = "const"     # never changes while the file exists (it goes with its owner)
OWN = "own"         # changes only with a field of its owner device (every such change is reported)
ANY = "any"         # may change with anything: compared again after every change (the default)


@attrs.frozen(eq=False)
class KDir:
    """A directory.  ``owner`` is the model object it shows (for change tracking and debugging)."""

    children: Callable[[], dict]
    owner: object = None
    mode: int = 0o755
    # optional: a cheap value that changes whenever children() would list differently (names,
    # modes, link targets, child objects); lets the projection keep a listing it already built
    shape: Optional[Callable[[], object]] = None
    # optional: entries a lookup finds but a listing never shows (the projection's own ``.cxlsys``)
    hidden: Optional[Callable[[], dict]] = None
    kind = S_DIR

    def sig(self) -> tuple:
        return (S_DIR, self.mode)


@attrs.frozen(eq=False)
class KFile:
    """An attribute file; ``pure`` marks a store that changes no value anywhere (uevent, flush)."""

    mode: int
    show: Optional[Callable[[], str]] = None
    store: Optional[Callable[[str], None]] = None
    pure: bool = False
    owner: object = None
    scope: str = ANY
    kind = S_FILE

    @property
    def readable(self) -> bool:
        return self.show is not None

    @property
    def writable(self) -> bool:
        return self.store is not None and bool(self.mode & 0o222)

    def sig(self) -> tuple:
        return (S_FILE, self.mode, self.readable, self.writable)


@attrs.frozen(eq=False)
class KBinFile:
    """A binary attribute: contents are bytes, reads and writes carry an offset."""

    mode: int
    read: Optional[Callable[[int, int], bytes]] = None
    write: Optional[Callable[[bytes, int], int]] = None
    size: int = 0
    owner: object = None
    kind = S_FILE

    @property
    def readable(self) -> bool:
        return self.read is not None

    @property
    def writable(self) -> bool:
        return self.write is not None and bool(self.mode & 0o222)

    def sig(self) -> tuple:
        return (S_FILE, self.mode, self.readable, self.writable, "bin")


@attrs.frozen(eq=False)
class KLink:
    """A symlink; ``target`` is a path below /sys (``devices/platform/cxl_acpi.0``)."""

    target: str
    mode: int = 0o777
    kind = S_LINK

    def sig(self) -> tuple:
        return (S_LINK, self.target)


KNode = Union[KDir, KFile, KBinFile, KLink]


def pure(fn):
    """Mark a store function as changing no attribute value (``uevent``, ``flush``)."""
    fn.pure = True
    return fn


def is_pure(fn) -> bool:
    return bool(getattr(fn, "pure", False))


_GOLDEN_RATIO_64 = 0x61C8864680B583EB
_U64 = (1 << 64) - 1
_INT_MAX = 0x7FFFFFFF


@functools.lru_cache(maxsize=1 << 17)
def kernfs_name_hash(name: str) -> int:
    """fs/kernfs/dir.c ``kernfs_name_hash(name, NULL)`` on a 64-bit kernel: the key a kernfs
    directory keeps its entries sorted by (then the name), so readdir — ``ls -f``, libcxl's and
    libdaxctl's scans — lists in this order, not in creation order.  ``partial_name_hash`` over the
    name's chars (signed, as ``char`` is on x86), ``end_name_hash`` = ``hash_long(h, 32)``; 0, 1 and
    INT_MAX are kept for "." and ".." and the end."""
    h = 0                                                  # init_name_hash(NULL)
    for c in name.encode("utf-8", "surrogateescape"):
        c = c if c < 0x80 else (c - 0x100) & _U64          # a char is signed: sign-extended
        h = ((h + (c << 4) + (c >> 4)) * 11) & _U64
    h = ((h * _GOLDEN_RATIO_64) & _U64) >> 32 & _INT_MAX
    return h + 2 if h < 2 else min(h, _INT_MAX - 1)


def kernfs_readdir_order(kids: dict) -> dict:
    """``name -> node`` in the order kernfs's readdir gives them: by name hash, then name."""
    return dict(sorted(kids.items(), key=lambda kv: (kernfs_name_hash(kv[0]), kv[0])))


def kernfs_target_path(link_dir: str, target: str) -> str:
    """kernfs_get_target_path(): climb from the link's directory until it is an ancestor of the
    target's parent, then spell the target out from there (so a link to an ancestor still names it)."""
    base = [p for p in link_dir.split("/") if p]
    t = [p for p in target.split("/") if p]
    tparent = t[:-1]
    ups = 0
    while base and base != tparent[: len(base)]:
        base = base[:-1]
        ups += 1
    return "../" * ups + "/".join(t[len(base):])
