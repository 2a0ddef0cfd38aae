"""A sysfs directory lists in kernfs's order — by name hash (``kernfs_name_hash``), not in the
order its entries were made — as a real kernel's does; the tools that scan directories (libcxl,
libdaxctl) then list in the kernel's order.  The external truth: the child lists of a real 6.12
``cxl list`` (golden-6.12), which libcxl builds by prepending each entry its readdir gives."""

from __future__ import annotations

import json

import pytest

from cxlsys.kernfs import kernfs_name_hash
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.testing import cxlsys_run
from tools.golden_list import GOLDEN, load_golden


def _child_lists(doc) -> list[list[str]]:
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k.startswith(("ports:", "endpoints:")):
                out.append([x.get("port") or x.get("endpoint") for x in v])
            out += _child_lists(v)
    elif isinstance(doc, list):
        for x in doc:
            out += _child_lists(x)
    return out


@pytest.mark.golden(GOLDEN)
def test_a_real_kernels_cxl_list_comes_in_name_hash_order():
    lists = [x for x in _child_lists(load_golden()) if len(x) > 1]
    assert len(lists) >= 8
    for names in lists:                  # readdir ascending, each prepended: descending in the output
        assert names == sorted(names, key=kernfs_name_hash, reverse=True), names


def test_the_hash_is_the_kernels():
    # values of fs/kernfs/dir.c kernfs_name_hash(name, NULL) on x86-64
    assert [kernfs_name_hash(n) for n in ("port1", "port2", "port3")] == [1777696412, 600952597, 1571692429]
    assert all(2 <= kernfs_name_hash(n) < 0x7FFFFFFF for n in ("", ".", "a" * 300, "m\u00e9m"))


def test_sysfs_lists_by_hash_tracefs_does_not():
    fs = Sysfs(System.boot("cxl_test"))
    for d in ("devices/platform/cxl_acpi.0/root0", "bus/cxl/devices", "devices/system/memory", "bus/dax/drivers"):
        names = fs.listdir(d)
        assert names == sorted(names, key=lambda n: (kernfs_name_hash(n), n)), d
    events = fs.listdir("kernel/tracing/events/cxl")       # tracefs: its own order, not kernfs's
    assert set(events) >= {"cxl_poison", "enable"}
    assert events != sorted(events, key=lambda n: (kernfs_name_hash(n), n))


@pytest.mark.mount
def test_ls_f_through_the_mount_is_kernfs_order():
    r = cxlsys_run("ls -f /sys/bus/cxl/devices; echo; cxl list -BP")
    listing, _, listed = r.stdout.partition("\n\n")
    names = [n for n in listing.split() if n not in (".", "..")]
    assert names == sorted(names, key=lambda n: (kernfs_name_hash(n), n))
    ports = [p["port"] for p in json.loads(listed)[0]["ports:root0"]]     # below the bus object
    assert ports == ["port1", "port3", "port2"]            # as the real 6.12 cxl list has them
