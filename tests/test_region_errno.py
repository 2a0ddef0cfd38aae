"""Refused writes, table driven: every row is one rule of cxl-core-abi.md (section in the id
comment), a setup that builds the state the rule needs, and one write the kernel refuses.

For each row we check
  1. ``KernelError`` with exactly the errno of the rule,
  2. the whole projected tree (``cxlsys.testing.sysfs_tree()``: /sys/bus, /sys/devices,
     /sys/module, /sys/dev) is identical before and after the refused write,
  3. the last kernel-log record is the refusal's reason and names the object.  Writes refused
     at open (EACCES on a read-only file, ENOENT on a hidden one) never reach a store, so for
     those the log must not grow at all.

Names are never guessed: endpoint decoders, memdevs and host-bridge ports come from the model
(``model_names``), region names from reading ``create_*_region``.  Root decoders are the ACPI
CFMWS windows of cxl_test, ``decoder0.0``..``decoder0.5`` in table order (checked in
``test_names_are_what_the_table_assumes``), and ``region0`` is the firmware auto region.

Template keys (``str.format``):
  e<N>_<k>  decoder k of the endpoint of cxl_mem.N / cxl_rcd.N      (e2_0 -> decoder9.0)
  m<N>      the memdev of cxl_mem.N                                  (m2 -> mem2)
  hb<N>     the cxl port of cxl_host_bridge.N, hb<N>d0 its decoder 0
  R, R2     regions created by the setup (see ``Var``)
  nx<K>     the name decoder0.K currently offers in create_*_region
"""

from __future__ import annotations

import difflib
import errno
import os
import shlex

import attrs
import pytest

from cxlsys.cxl.core.port import CxlEndpointDecoder, CxlPort, CxlRootDecoder
from cxlsys.errors import KernelError
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.testing import cxl_path, cxlsys_run, sysfs_tree

EINVAL, EBUSY, ENXIO, ENODEV, ERANGE, ENOSPC, EACCES, ENOENT = (
    errno.EINVAL, errno.EBUSY, errno.ENXIO, errno.ENODEV, errno.ERANGE, errno.ENOSPC, errno.EACCES, errno.ENOENT)

U1 = "6f1d3c0e-8a1b-4c5d-9e2f-0a1b2c3d4e5f"
U2 = "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d"
NULL_UUID = "00000000-0000-0000-0000-000000000000"
SZ256M, SZ512M, SZ1G = "0x10000000", "0x20000000", "0x40000000"


# ------------------------------------------------------------------------------ names

def model_names(system) -> dict:
    """Template keys -> device names, read from the model (never from probe-order guesses)."""
    n = {}
    for d in system.cxl_bus.devices:
        if isinstance(d, CxlEndpointDecoder):
            host = d.memdev.parent.name              # cxl_mem.N / cxl_rcd.N (the platform device)
            idx = host.rsplit(".", 1)[1]
            n[f"e{idx}_{d.id}"] = d.name
            n[f"m{idx}"] = d.memdev.name
        elif isinstance(d, CxlPort) and d.kind == "port" and d.parent_port is not None \
                and d.parent_port.kind == "root":
            idx = d.uport.name.rsplit(".", 1)[1]     # cxl_host_bridge.N
            n[f"hb{idx}"] = d.name
            n[f"hb{idx}d0"] = d.decoders[0].name
    return n


def offered_names(fs, system) -> dict:
    """nx<K>: what decoder0.K's create_*_region file reads right now."""
    out = {}
    for d in system.cxl_bus.devices:
        if isinstance(d, CxlRootDecoder):
            for f in ("create_pmem_region", "create_ram_region"):
                p = f"bus/cxl/devices/{d.name}/{f}"
                if fs.lookup(p) is not None:
                    out[f"nx{d.name.split('.')[1]}"] = fs.read(p).decode().strip()
                    break
    return out


# ------------------------------------------------------------------------------ setup language

@attrs.frozen
class Var:
    """Setup data meaning: read this create_*_region file, write its name back, call it ``name``."""
    name: str


def region(var="R", root="decoder0.2", mode="pmem", uuid=U1, gran="256", ways="1", size=None):
    """A region under ``root``; each of uuid/gran/ways/size is written only if given."""
    s = [(f"{root}/create_{mode}_region", Var(var))]
    if uuid:
        s.append((f"{{{var}}}/uuid", uuid + "\n"))
    if gran:
        s.append((f"{{{var}}}/interleave_granularity", gran + "\n"))
    if ways:
        s.append((f"{{{var}}}/interleave_ways", ways + "\n"))
    if size:
        s.append((f"{{{var}}}/size", size + "\n"))
    return s


def dpa(ep, size=SZ256M, mode="pmem"):
    """Set an endpoint decoder's mode and (if size) reserve DPA."""
    s = [(f"{{{ep}}}/mode", mode + "\n")]
    if size:
        s.append((f"{{{ep}}}/dpa_size", size + "\n"))
    return s


def target(n, ep, var="R"):
    return [(f"{{{var}}}/target{n}", f"{{{ep}}}\n")]


BIND = "/bus/cxl/drivers/cxl_region/bind"

# x1 pmem window decoder0.2 (host bridge 0); cxl_mem.2 sits below HB0 (switch port, then endpoint)
BARE = region(uuid=None, gran=None, ways=None)                  # just created
FRESH = region()                                                # uuid, granularity 256, ways 1
SIZED = region(size=SZ256M)                                     # INTERLEAVE_ACTIVE
ACTIVE = SIZED + dpa("e2_0") + target(0, "e2_0")                # ACTIVE
COMMITTED = ACTIVE + [("{R}/commit", "1\n")]                    # COMMIT
BOUND = COMMITTED + [(BIND, "{R}\n")]                           # COMMIT, cxl_region bound
# x2 pmem window decoder0.3 (targets HB0, HB1, granularity 4096)
X2 = region(root="decoder0.3", gran="4096", ways="2")
X2_SIZED = region(root="decoder0.3", gran="4096", ways="2", size=SZ512M)
# x2 region on the x1 window decoder0.2
X1_2WAY = region(ways="2", size=SZ512M)
# §4.6 #14 / §8.11: the last target attaches but setup targets fails (HB0's decoder gets
# granularity 16384 x 2 ways, so the switch below it would need 32768: EINVAL).  The target
# stays recorded; the region stays INTERLEAVE_ACTIVE with all its targets.
SETUP_FAILED = (region(gran="16384", ways="2", size=SZ512M) + dpa("e0_1") + dpa("e2_0") + target(0, "e0_1")
                + [("{R}/target1", "{e2_0}\n", EINVAL)])
# two regions in decoder0.2: R at the window start, R2 (uuid U2) right above it
TWO_SIZED = region(size=SZ256M) + region("R2", uuid=U2, size=SZ256M)


def run_setup(fs, system, setup) -> dict:
    v = model_names(system)
    for step in setup:
        path, data = step[0], step[1]
        p = cxl_path(path.format(**v))
        if isinstance(data, Var):
            name = fs.read(p).decode().strip()
            fs.write(p, (name + "\n").encode())
            v[data.name] = name
            continue
        buf = str(data).format(**v).encode()
        if len(step) == 3:             # a step that must fail (and leave its mark: §8.11)
            with pytest.raises(KernelError) as e:
                fs.write(p, buf)
            assert e.value.errno == step[2], e.value.reason
        else:
            try:
                fs.write(p, buf)
            except KernelError as e:   # pragma: no cover - a broken setup is a test bug, say so
                raise AssertionError(f"setup write {buf!r} > {p} failed: {e}") from e
    v.update(offered_names(fs, system))
    return v


# ------------------------------------------------------------------------------ the table

def case(cid, setup, path, data, err, who=None, bug=None):
    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
    return pytest.param(setup, path, data, err, who, id=cid, marks=marks)


RO_FILES = [  # §2.1, §4.2, §5, §6.1: read-only attributes; §3: a write fails at open with EACCES
    ("decoder0.0/size", "0\n"), ("decoder0.0/start", "0\n"), ("decoder0.0/target_list", "0\n"),
    ("decoder0.0/interleave_ways", "1\n"), ("decoder0.0/cap_pmem", "1\n"), ("decoder0.0/qos_class", "1\n"),
    ("{e2_0}/dpa_resource", "0\n"), ("{e2_0}/region", "region0\n"), ("{e2_0}/interleave_granularity", "256\n"),
    ("{hb0d0}/target_type", "expander\n"), ("region0/resource", "0\n"), ("region0/mode", "pmem\n"),
    ("region0/devtype", "x\n"), ("root0/decoders_committed", "0\n"), ("{m0}/serial", "1\n"),
    ("{m0}/ram/size", "0\n"),
]

CASES = [
    # ---- §2.4 endpoint decoder mode: EINVAL bad string, then EBUSY committed, then ENXIO capacity
    case("decoder.mode.einval_bad_string", [], "{e2_0}/mode", "bogus\n", EINVAL),
    case("decoder.mode.einval_none", [], "{e2_0}/mode", "none\n", EINVAL),
    case("decoder.mode.einval_mixed", [], "{e2_0}/mode", "mixed\n", EINVAL),
    case("decoder.mode.einval_two_newlines", [], "{e2_0}/mode", "pmem\n\n", EINVAL),       # §3: one \n
    case("decoder.mode.einval_uppercase", [], "{e2_0}/mode", "PMEM\n", EINVAL),
    case("decoder.mode.ebusy_committed_auto", [], "{e0_0}/mode", "ram\n", EBUSY),
    case("decoder.mode.ebusy_committed_manual", COMMITTED, "{e2_0}/mode", "ram\n", EBUSY),
    case("decoder.mode.einval_before_ebusy_committed", [], "{e0_0}/mode", "bogus\n", EINVAL),
    case("decoder.mode.enxio_no_pmem_capacity", [], "{e10_1}/mode", "pmem\n", ENXIO),     # the RCD: ram only
    # ---- §2.5 dpa_size (parse §3, 256M multiple, free then alloc)
    case("decoder.dpa_size.einval_not_256m_multiple", dpa("e2_0", None), "{e2_0}/dpa_size", "0x1000\n", EINVAL),
    case("decoder.dpa_size.einval_garbage", dpa("e2_0", None), "{e2_0}/dpa_size", "12abc\n", EINVAL),
    case("decoder.dpa_size.einval_empty", dpa("e2_0", None), "{e2_0}/dpa_size", "\n", EINVAL),
    case("decoder.dpa_size.einval_negative", dpa("e2_0", None), "{e2_0}/dpa_size", "-0x10000000\n", EINVAL),
    case("decoder.dpa_size.einval_octal_digit", dpa("e2_0", None), "{e2_0}/dpa_size", "08\n", EINVAL),
    case("decoder.dpa_size.erange_overflow_hex", dpa("e2_0", None), "{e2_0}/dpa_size", "0x10000000000000000\n", ERANGE),
    case("decoder.dpa_size.erange_overflow_decimal", dpa("e2_0", None), "{e2_0}/dpa_size",
         "18446744073709551616\n", ERANGE),
    case("decoder.dpa_size.einval_no_mode", [], "{e2_0}/dpa_size", SZ256M + "\n", EINVAL),
    case("decoder.dpa_size.ebusy_resize_not_top_of_stack", dpa("e2_0") + dpa("e2_1"), "{e2_0}/dpa_size",
         SZ512M + "\n", EBUSY),
    case("decoder.dpa_size.ebusy_free_not_top_of_stack", dpa("e2_0") + dpa("e2_1"), "{e2_0}/dpa_size", "0\n", EBUSY),
    case("decoder.dpa_size.ebusy_alloc_out_of_order", dpa("e2_1", None), "{e2_1}/dpa_size", SZ256M + "\n", EBUSY),
    case("decoder.dpa_size.enospc_before_ebusy_out_of_order", dpa("e2_1", None), "{e2_1}/dpa_size",
         "0x80000000\n", ENOSPC),
    case("decoder.dpa_size.ebusy_in_auto_region", [], "{e0_0}/dpa_size", "0\n", EBUSY),
    case("decoder.dpa_size.ebusy_same_size_in_region", [], "{e0_0}/dpa_size", SZ256M + "\n", EBUSY),  # frees first
    case("decoder.dpa_size.ebusy_in_active_region", ACTIVE, "{e2_0}/dpa_size", "0\n", EBUSY),
    case("decoder.dpa_size.ebusy_attached_to_incomplete_region",
         X2_SIZED + dpa("e2_0") + target(0, "e2_0"), "{e2_0}/dpa_size", "0\n", EBUSY),
    case("decoder.dpa_size.einval_before_ebusy_in_region", [], "{e0_0}/dpa_size", "0x1000\n", EINVAL),
    case("decoder.dpa_size.enospc_bigger_than_pmem", dpa("e2_0", None), "{e2_0}/dpa_size", "0x80000000\n", ENOSPC),
    case("decoder.dpa_size.enospc_ram_left_after_auto_region", dpa("e0_1", None, "ram"), "{e0_1}/dpa_size",
         SZ1G + "\n", ENOSPC),
    case("decoder.dpa_size.enospc_ram_after_pmem_skip", dpa("e2_0") + dpa("e2_1", None, "ram"), "{e2_1}/dpa_size",
         SZ256M + "\n", ENOSPC),
    case("decoder.dpa_size.enospc_rcd_ram", dpa("e10_0", None, "ram"), "{e10_0}/dpa_size", "0x100000000\n", ENOSPC),
    # ---- §4.1 create_*_region / delete_region (§8.5 lenient parse, mismatch EBUSY)
    case("root.create_pmem_region.einval_no_number", [], "decoder0.2/create_pmem_region", "region\n", EINVAL),
    case("root.create_pmem_region.einval_garbage", [], "decoder0.2/create_pmem_region", "garbage\n", EINVAL),
    case("root.create_pmem_region.einval_bare_number", [], "decoder0.2/create_pmem_region", "2\n", EINVAL),
    case("root.create_ram_region.einval_no_number", [], "decoder0.1/create_ram_region", "regionX\n", EINVAL),
    case("root.create_pmem_region.ebusy_mismatch", [], "decoder0.2/create_pmem_region", "region99\n", EBUSY),
    case("root.create_pmem_region.ebusy_mismatch_junk_suffix", [], "decoder0.2/create_pmem_region",
         "region99junk\n", EBUSY),
    case("root.create_pmem_region.ebusy_other_decoders_name", [], "decoder0.3/create_pmem_region", "{nx2}\n", EBUSY),
    case("root.create_ram_region.ebusy_stale_name", region(root="decoder0.1", mode="ram", uuid=None, gran=None,
                                                            ways=None),
         "decoder0.1/create_ram_region", "{R}\n", EBUSY),
    case("root.create_ram_region.enoent_hidden_on_pmem_window", [], "decoder0.2/create_ram_region", "{nx2}\n",
         ENOENT),  # §2.1 visibility + §3 hidden attribute
    case("root.delete_region.enodev_no_such", [], "decoder0.2/delete_region", "region99\n", ENODEV),
    case("root.delete_region.enodev_other_decoders_region", [], "decoder0.2/delete_region", "region0\n", ENODEV),
    case("root.delete_region.enodev_two_newlines", [], "decoder0.0/delete_region", "region0\n\n", ENODEV),
    case("root.delete_region.enodev_not_a_region", [], "decoder0.0/delete_region", "{m0}\n", ENODEV),
    case("root.delete_region.enodev_empty", [], "decoder0.0/delete_region", "\n", ENODEV),
    case("root.delete_region.enodev_region_of_sibling_window", region("R", root="decoder0.3", uuid=None,
                                                                      gran=None, ways=None),
         "decoder0.2/delete_region", "{R}\n", ENODEV),
    # ---- §4.4 uuid (§8.3: exactly 37 bytes), then state (§4.3), then duplicates
    case("region.uuid.einval_36_bytes_no_newline", BARE, "{R}/uuid", U2, EINVAL),
    case("region.uuid.einval_38_bytes", BARE, "{R}/uuid", U2 + "\n\n", EINVAL),
    case("region.uuid.einval_not_a_uuid", BARE, "{R}/uuid", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz\n", EINVAL),
    case("region.uuid.einval_null_uuid", BARE, "{R}/uuid", NULL_UUID + "\n", EINVAL),
    case("region.uuid.einval_misplaced_hyphens", BARE, "{R}/uuid", "0123456789abcdef0123456789abcdef----\n", EINVAL),
    case("region.uuid.einval_null_uuid_when_active", ACTIVE, "{R}/uuid", NULL_UUID + "\n", EINVAL),      # §8.7
    case("region.uuid.einval_no_newline_when_committed", COMMITTED, "{R}/uuid", U1, EINVAL),           # §8.7
    case("region.uuid.ebusy_active", ACTIVE, "{R}/uuid", U2 + "\n", EBUSY),
    case("region.uuid.ebusy_committed", COMMITTED, "{R}/uuid", U2 + "\n", EBUSY),
    case("region.uuid.ebusy_duplicate", FRESH + region("R2", root="decoder0.3", uuid=None, gran=None, ways=None),
         "{R2}/uuid", U1 + "\n", EBUSY),
    case("region.uuid.ebusy_duplicate_uppercase",
         FRESH + region("R2", root="decoder0.3", uuid=None, gran=None, ways=None), "{R2}/uuid", U1.upper() + "\n",
         EBUSY),
    case("region.uuid.eacces_auto_ram_region", [], "region0/uuid", U2 + "\n", EACCES),                # §8.3
    case("region.uuid.eacces_new_ram_region", region(root="decoder0.1", mode="ram", uuid=None, gran=None, ways=None),
         "{R}/uuid", U2 + "\n", EACCES),
    # ---- §4.4 interleave_ways: valid count (§4.10), root_ways x 2^k (§8.8), then state
    case("region.interleave_ways.einval_zero", BARE, "{R}/interleave_ways", "0\n", EINVAL),
    case("region.interleave_ways.einval_five", BARE, "{R}/interleave_ways", "5\n", EINVAL),
    case("region.interleave_ways.einval_nine", BARE, "{R}/interleave_ways", "9\n", EINVAL),
    case("region.interleave_ways.einval_24", BARE, "{R}/interleave_ways", "24\n", EINVAL),
    case("region.interleave_ways.einval_32", BARE, "{R}/interleave_ways", "32\n", EINVAL),
    case("region.interleave_ways.einval_three_on_x1_root", BARE, "{R}/interleave_ways", "3\n", EINVAL),
    case("region.interleave_ways.einval_three_on_x2_root", region(root="decoder0.3", uuid=None, gran=None, ways=None),
         "{R}/interleave_ways", "3\n", EINVAL),
    case("region.interleave_ways.einval_six_on_x2_root", region(root="decoder0.3", uuid=None, gran=None, ways=None),
         "{R}/interleave_ways", "6\n", EINVAL),
    case("region.interleave_ways.einval_one_on_x2_root", region(root="decoder0.3", uuid=None, gran=None, ways=None),
         "{R}/interleave_ways", "1\n", EINVAL),
    case("region.interleave_ways.einval_garbage", BARE, "{R}/interleave_ways", "two\n", EINVAL),
    case("region.interleave_ways.einval_negative", BARE, "{R}/interleave_ways", "-2\n", EINVAL),
    case("region.interleave_ways.erange_overflow", BARE, "{R}/interleave_ways", "4294967296\n", ERANGE),
    case("region.interleave_ways.ebusy_after_size", SIZED, "{R}/interleave_ways", "2\n", EBUSY),
    case("region.interleave_ways.ebusy_same_value_after_size", SIZED, "{R}/interleave_ways", "1\n", EBUSY),
    case("region.interleave_ways.einval_five_on_sized_region", SIZED, "{R}/interleave_ways", "5\n", EINVAL),  # §8.7
    case("region.interleave_ways.einval_zero_on_committed_auto", [], "region0/interleave_ways", "0\n", EINVAL),
    case("region.interleave_ways.ebusy_committed_auto", [], "region0/interleave_ways", "2\n", EBUSY),
    # ---- §4.4 interleave_granularity
    case("region.interleave_granularity.einval_not_power_of_2", BARE, "{R}/interleave_granularity", "768\n", EINVAL),
    case("region.interleave_granularity.einval_too_small", BARE, "{R}/interleave_granularity", "128\n", EINVAL),
    case("region.interleave_granularity.einval_too_big", BARE, "{R}/interleave_granularity", "32768\n", EINVAL),
    case("region.interleave_granularity.einval_zero", BARE, "{R}/interleave_granularity", "0\n", EINVAL),
    case("region.interleave_granularity.einval_negative", BARE, "{R}/interleave_granularity", "-256\n", EINVAL),
    case("region.interleave_granularity.erange_overflow", BARE, "{R}/interleave_granularity", "2147483648\n", ERANGE),
    case("region.interleave_granularity.einval_ne_root_gran_on_x2_root",
         region(root="decoder0.3", uuid=None, gran=None, ways=None), "{R}/interleave_granularity", "256\n", EINVAL),
    case("region.interleave_granularity.einval_8192_on_x2_root",
         region(root="decoder0.3", uuid=None, gran=None, ways=None), "{R}/interleave_granularity", "8192\n", EINVAL),
    case("region.interleave_granularity.ebusy_after_size", SIZED, "{R}/interleave_granularity", "512\n", EBUSY),
    case("region.interleave_granularity.einval_on_sized_region", SIZED, "{R}/interleave_granularity", "100\n",
         EINVAL),  # §8.7
    case("region.interleave_granularity.einval_ne_root_gran_on_sized_x2", X2_SIZED, "{R}/interleave_granularity",
         "256\n", EINVAL),  # §8.7
    case("region.interleave_granularity.ebusy_root_gran_on_sized_x2", X2_SIZED, "{R}/interleave_granularity",
         "4096\n", EBUSY),
    # ---- §4.4 size (checks in order), §4.5 HPA, §8.9 ERANGE
    case("region.size.enxio_no_ways", region(ways=None), "{R}/size", SZ256M + "\n", ENXIO),
    case("region.size.enxio_no_granularity", region(gran=None), "{R}/size", SZ256M + "\n", ENXIO),
    case("region.size.enxio_pmem_without_uuid", region(uuid=None), "{R}/size", SZ256M + "\n", ENXIO),
    case("region.size.enxio_ram_no_ways", region(root="decoder0.1", mode="ram", uuid=None, gran=None, ways=None),
         "{R}/size", SZ512M + "\n", ENXIO),
    case("region.size.enxio_before_einval", region(ways=None, gran=None), "{R}/size", "0x1000\n", ENXIO),
    case("region.size.einval_not_multiple_256m", FRESH, "{R}/size", "0x1000\n", EINVAL),
    case("region.size.einval_not_multiple_256m_x_ways", X2, "{R}/size", SZ256M + "\n", EINVAL),
    case("region.size.einval_garbage", FRESH, "{R}/size", "big\n", EINVAL),
    case("region.size.erange_u64_overflow", FRESH, "{R}/size", "0x10000000000000000\n", ERANGE),
    case("region.size.erange_bigger_than_window", FRESH, "{R}/size", "0x80000000\n", ERANGE),
    case("region.size.erange_x2_bigger_than_window", X2, "{R}/size", "0x100000000\n", ERANGE),
    case("region.size.erange_window_full", region(size=SZ1G) + region("R2", uuid=U2), "{R2}/size",
         SZ256M + "\n", ERANGE),
    case("region.size.erange_overlaps_auto_region", region(root="decoder0.0", mode="ram", uuid=None),
         "{R}/size", SZ1G + "\n", ERANGE),
    case("region.size.ebusy_different_size_already_set", SIZED, "{R}/size", SZ512M + "\n", EBUSY),
    case("region.size.ebusy_before_einval_when_sized", SIZED, "{R}/size", "0x1000\n", EBUSY),
    case("region.size.ebusy_zero_when_active", ACTIVE, "{R}/size", "0\n", EBUSY),
    case("region.size.ebusy_zero_when_committed", COMMITTED, "{R}/size", "0\n", EBUSY),
    case("region.size.ebusy_zero_when_committed_auto", [], "region0/size", "0\n", EBUSY),
    case("region.size.ebusy_new_size_when_committed_auto", [], "region0/size", SZ1G + "\n", EBUSY),
    # ---- §4.4 / §4.6 targetN (attach checks in table order), §4.2 / §8.20 visibility
    case("region.target.enoent_hidden_when_ways_zero", BARE + dpa("e2_0"), "{R}/target0", "{e2_0}\n", ENOENT),
    case("region.target.enoent_beyond_ways", FRESH + dpa("e2_0"), "{R}/target1", "{e2_0}\n", ENOENT),
    case("region.target.enodev_no_such_device", FRESH, "{R}/target0", "decoder99.9\n", ENODEV),
    case("region.target.enodev_two_newlines", SIZED + dpa("e2_0"), "{R}/target0", "{e2_0}\n\n", ENODEV),
    case("region.target.enodev_on_committed_auto", [], "region0/target1", "nosuch\n", ENODEV),
    case("region.target.einval_root_decoder", FRESH, "{R}/target0", "decoder0.2\n", EINVAL),
    case("region.target.einval_switch_decoder", FRESH, "{R}/target0", "{hb0d0}\n", EINVAL),
    case("region.target.einval_memdev", FRESH, "{R}/target0", "{m2}\n", EINVAL),
    case("region.target.einval_region", FRESH, "{R}/target0", "region0\n", EINVAL),
    case("region.target.enxio_no_size", FRESH + dpa("e2_0"), "{R}/target0", "{e2_0}\n", ENXIO),         # #4b
    case("region.target.einval_mode_mismatch_before_no_size", FRESH + dpa("e2_0", mode="ram"), "{R}/target0",
         "{e2_0}\n", EINVAL),                                                                             # #2 < #4b
    case("region.target.einval_mode_none", SIZED, "{R}/target0", "{e2_0}\n", EINVAL),
    case("region.target.einval_mode_mismatch", SIZED + dpa("e2_0", mode="ram"), "{R}/target0", "{e2_0}\n", EINVAL),
    case("region.target.ebusy_active", ACTIVE + dpa("e6_0", None), "{R}/target0", "{e6_0}\n", EBUSY),   # #4 < #5
    case("region.target.ebusy_committed_auto", dpa("e2_0", None, "ram"), "region0/target0", "{e2_0}\n", EBUSY),
    case("region.target.einval_mode_before_ebusy_committed", dpa("e2_0", None), "region0/target0", "{e2_0}\n",
         EINVAL),
    case("region.target.einval_all_targets_set", SETUP_FAILED + dpa("e6_0"), "{R}/target1", "{e6_0}\n", EINVAL),
    # cxl_mem.1 is below HB1, which root0 has as a dport (#6 passes) but decoder0.2 does not target (#11)
    case("region.target.enxio_host_bridge_not_in_window", SIZED + dpa("e1_0"), "{R}/target0", "{e1_0}\n", ENXIO),
    case("region.target.einval_dpa_size_before_host_bridge_position", SIZED + dpa("e1_0", SZ512M), "{R}/target0",
         "{e1_0}\n", EINVAL),                                                                            # #9 < #11
    case("region.target.ebusy_slot_taken_before_host_bridge_position",
         X2_SIZED + dpa("e2_0") + target(0, "e2_0") + dpa("e1_0"), "{R}/target0", "{e1_0}\n", EBUSY),   # #10 < #11
    case("region.target.enxio_rch_not_in_window",
         region(root="decoder0.0", mode="ram", uuid=None, size=SZ256M) + dpa("e10_0", mode="ram"), "{R}/target0",
         "{e10_0}\n", ENXIO),
    case("region.target.enxio_no_dpa", SIZED + dpa("e2_0", None), "{R}/target0", "{e2_0}\n", ENXIO),
    case("region.target.einval_dpa_size_x_ways_ne_size", SIZED + dpa("e2_0", SZ512M), "{R}/target0", "{e2_0}\n",
         EINVAL),
    case("region.target.einval_dpa_size_x2_ne_size", X2_SIZED + dpa("e2_0", SZ512M), "{R}/target0", "{e2_0}\n",
         EINVAL),
    case("region.target.ebusy_same_memdev_twice", X1_2WAY + dpa("e2_0") + dpa("e2_1") + target(0, "e2_0"),
         "{R}/target1", "{e2_1}\n", EBUSY),
    case("region.target.ebusy_slot_taken", X1_2WAY + dpa("e2_0") + dpa("e6_0") + target(0, "e2_0"),
         "{R}/target0", "{e6_0}\n", EBUSY),
    case("region.target.enxio_wrong_host_bridge_position0", X2_SIZED + dpa("e1_0"), "{R}/target0", "{e1_0}\n",
         ENXIO),                                                                                          # #11
    case("region.target.enxio_wrong_host_bridge_position1", X2_SIZED + dpa("e2_0"), "{R}/target1", "{e2_0}\n",
         ENXIO),
    case("region.target.ebusy_decoder_in_another_region", TWO_SIZED + dpa("e2_0") + target(0, "e2_0"),
         "{R2}/target0", "{e2_0}\n", EBUSY),                                                               # §4.6.1
    case("region.target.ebusy_hpa_order_at_switch", TWO_SIZED + dpa("e2_0") + target(0, "e2_0", "R2") + dpa("e6_0"),
         "{R}/target0", "{e6_0}\n", EBUSY),                                                                # §4.6.1
    case("region.target.ebusy_switch_decoder_reserved", TWO_SIZED + dpa("e2_0") + target(0, "e2_0") + dpa("e6_0"),
         "{R2}/target0", "{e6_0}\n", EBUSY),                                                               # §8.14
    case("region.target.ebusy_host_bridge_decoder_reserved",
         TWO_SIZED + dpa("e2_0") + target(0, "e2_0") + dpa("e0_1"), "{R2}/target0", "{e0_1}\n", EBUSY),    # §8.14
    # ---- §4.4 / §4.3 / §2.6 commit
    case("region.commit.enxio_idle", FRESH, "{R}/commit", "1\n", ENXIO),
    case("region.commit.enxio_interleave_active", SIZED, "{R}/commit", "1\n", ENXIO),
    case("region.commit.enxio_partial_targets", X2_SIZED + dpa("e2_0") + target(0, "e2_0"), "{R}/commit", "1\n",
         ENXIO),
    case("region.commit.enxio_after_failed_setup", SETUP_FAILED, "{R}/commit", "1\n", ENXIO),          # §8.11
    case("region.commit.einval_bad_bool", FRESH, "{R}/commit", "maybe\n", EINVAL),
    case("region.commit.einval_two", FRESH, "{R}/commit", "2\n", EINVAL),
    case("region.commit.einval_empty", FRESH, "{R}/commit", "\n", EINVAL),
    case("region.commit.einval_lone_o", FRESH, "{R}/commit", "o\n", EINVAL),
    case("region.commit.einval_bad_bool_on_committed", COMMITTED, "{R}/commit", "x\n", EINVAL),
    case("region.commit.einval_bad_bool_on_committed_auto", [], "region0/commit", "x\n", EINVAL),
    case("region.commit.ebusy_out_of_order_endpoint_decoder",
         TWO_SIZED + dpa("e2_0") + target(0, "e2_0") + [("{R}/commit", "1\n")] + dpa("e2_1") + target(0, "e2_1", "R2")
         + [("{R}/commit", "0\n")], "{R2}/commit", "1\n", EBUSY),                                         # §2.6
    # ---- §4.11 / §6.2 cxl_region driver
    case("driver.cxl_region.bind.enxio_idle", FRESH, BIND, "{R}\n", ENXIO, who="{R}"),
    case("driver.cxl_region.bind.enxio_active_not_committed", ACTIVE, BIND, "{R}\n", ENXIO, who="{R}"),
    case("driver.cxl_region.bind.enxio_after_decommit", COMMITTED + [("{R}/commit", "0\n")], BIND, "{R}\n", ENXIO,
         who="{R}"),
    case("driver.cxl_region.bind.enodev_memdev", [], BIND, "{m0}\n", ENODEV, who="{m0}"),
    case("driver.cxl_region.bind.enodev_root_decoder", [], BIND, "decoder0.0\n", ENODEV, who="decoder0.0"),
    case("driver.cxl_region.bind.enodev_no_such", [], BIND, "region99\n", ENODEV, who="region99"),
    case("driver.cxl_region.bind.ebusy_already_bound_auto", [], BIND, "region0\n", EBUSY, who="region0"),
    case("driver.cxl_region.bind.ebusy_already_bound", BOUND, BIND, "{R}\n", EBUSY, who="{R}"),
    case("driver.cxl_region.unbind.enodev_not_bound", FRESH, "/bus/cxl/drivers/cxl_region/unbind", "{R}\n", ENODEV,
         who="{R}"),
    case("driver.cxl_region.unbind.enodev_memdev", [], "/bus/cxl/drivers/cxl_region/unbind", "{m0}\n", ENODEV,
         who="{m0}"),
    # ---- §6.2 other drivers
    case("driver.cxl_mem.bind.ebusy_already_bound", [], "/bus/cxl/drivers/cxl_mem/bind", "{m0}\n", EBUSY, who="{m0}"),
    case("driver.cxl_mem.bind.enodev_two_newlines", [], "/bus/cxl/drivers/cxl_mem/bind", "{m0}\n\n", ENODEV,
         who="cxl_mem"),
    case("driver.cxl_mem.unbind.enodev_wrong_driver", [], "/bus/cxl/drivers/cxl_mem/unbind", "{hb0}\n", ENODEV,
         who="{hb0}"),
    case("driver.cxl_port.bind.enodev_type_mismatch", [], "/bus/cxl/drivers/cxl_port/bind", "{m0}\n", ENODEV,
         who="{m0}"),
    case("driver.cxl_port.bind.enodev_root_port", [], "/bus/cxl/drivers/cxl_port/bind", "root0\n", ENODEV,
         who="root0"),
    case("driver.cxl_port.bind.ebusy_already_bound", [], "/bus/cxl/drivers/cxl_port/bind", "{hb0}\n", EBUSY,
         who="{hb0}"),
    case("driver.cxl_port.unbind.enodev_root_never_bound", [], "/bus/cxl/drivers/cxl_port/unbind", "root0\n", ENODEV,
         who="root0"),
    # ---- §6.2 bus flush
    case("bus.cxl.flush.einval_2", [], "/bus/cxl/flush", "2\n", EINVAL, who="flush"),
    case("bus.cxl.flush.einval_empty", [], "/bus/cxl/flush", "\n", EINVAL, who="flush"),
    case("bus.cxl.flush.einval_11", [], "/bus/cxl/flush", "11\n", EINVAL, who="flush"),
    case("bus.cxl.flush.einval_two_newlines", [], "/bus/cxl/flush", "1\n\n", EINVAL, who="flush"),
    case("bus.cxl.flush.einval_leading_space", [], "/bus/cxl/flush", " 1\n", EINVAL, who="flush"),
    # ---- §5 memdev security / poison
    case("memdev.sanitize.einval_false", [], "{m2}/security/sanitize", "0\n", EINVAL),
    case("memdev.sanitize.einval_garbage", [], "{m2}/security/sanitize", "x\n", EINVAL),
    case("memdev.sanitize.ebusy_committed_auto", [], "{m0}/security/sanitize", "1\n", EBUSY),
    case("memdev.sanitize.ebusy_committed_manual", COMMITTED, "{m2}/security/sanitize", "1\n", EBUSY),
    case("memdev.sanitize.ebusy_no_endpoint", [("/bus/cxl/drivers/cxl_mem/unbind", "{m2}\n")],
         "{m2}/security/sanitize", "1\n", EBUSY),                                                        # v6.7+
    case("memdev.trigger_poison_list.einval_false", [], "{m2}/trigger_poison_list", "0\n", EINVAL),
    case("memdev.trigger_poison_list.einval_garbage", [], "{m2}/trigger_poison_list", "maybe\n", EINVAL),
    case("memdev.trigger_poison_list.enoent_when_unbound", [("/bus/cxl/drivers/cxl_mem/unbind", "{m2}\n")],
         "{m2}/trigger_poison_list", "1\n", ENOENT),
] + [
    case("readonly." + p.replace("{", "").replace("}", "").replace("/", ".") + ".eacces", [], p, d, EACCES)
    for p, d in RO_FILES
]


def _diff(a, b):
    return "\n".join(list(difflib.unified_diff(a, b, "before", "after", lineterm="", n=0))[:40])


@pytest.mark.parametrize("setup,path,data,err,who", CASES)
def test_refused_write(system, fs, setup, path, data, err, who):
    v = run_setup(fs, system, setup)
    p = cxl_path(path.format(**v))
    buf = str(data).format(**v).encode()
    if who is None:
        who = p.split("/")[3] if p.startswith("bus/cxl/devices/") else p.rsplit("/", 1)[1]
    else:
        who = who.format(**v)
    before = sysfs_tree(fs)
    seq = system.klog.seq
    with pytest.raises(KernelError) as ei:
        fs.write(p, buf)
    got = ei.value
    assert got.errno == err, f"errno {errno.errorcode.get(got.errno)} (want {errno.errorcode[err]}): {got.reason}"
    after = sysfs_tree(fs)
    assert after == before, "refused write changed the tree:\n" + _diff(before, after)
    if err in (EACCES, ENOENT):
        # refused at open(2): no store ran, nothing is logged
        assert system.klog.seq == seq
    else:
        rec = system.klog.records[-1]
        assert rec.seq > seq, "refusal not logged"
        assert rec.text.startswith(got.reason), rec.text
        assert who in rec.text, f"{who!r} not named in {rec.text!r}"


def test_table_is_big_enough():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 60


def test_names_are_what_the_table_assumes(system, fs):
    """The literals the table uses: root decoders in CFMWS order, the auto region, cxl_mem.0's decoder 0."""
    roots = [(d.name, d.interleave_ways, d.hpa_size >> 20) for d in system.cxl_bus.devices
             if isinstance(d, CxlRootDecoder)]
    assert roots == [("decoder0.0", 1, 1024), ("decoder0.1", 2, 2048), ("decoder0.2", 1, 1024),
                     ("decoder0.3", 2, 2048), ("decoder0.4", 1, 1024), ("decoder0.5", 1, 256)]
    n = model_names(system)
    assert fs.read(f"bus/cxl/devices/{n['e0_0']}/region") == b"region0\n"
    assert fs.read("bus/cxl/devices/region0/commit") == b"1\n"
    # the memdevs the table routes through HB0 and HB1
    r = "bus/cxl/devices/"
    assert fs.realpath(r + n["m2"]).split("/")[2] == "cxl_host_bridge.0"
    assert fs.realpath(r + n["m0"]).split("/")[2] == "cxl_host_bridge.0"
    assert fs.realpath(r + n["m1"]).split("/")[2] == "cxl_host_bridge.1"
    assert fs.read(r + n["m10"] + "/pmem/size") == b"0x0\n"


def test_failed_setup_keeps_target_but_not_decoder_geometry(system, fs):
    """§4.6 #14/#15, §8.11: the last attach fails in setup; target recorded, decoder geometry untouched."""
    n = model_names(system)
    e = "bus/cxl/devices/" + n["e2_0"]
    geometry = [fs.read(f"{e}/{f}") for f in ("interleave_ways", "interleave_granularity", "start", "size")]
    v = run_setup(fs, system, SETUP_FAILED)
    r = "bus/cxl/devices/" + v["R"]
    assert fs.read(f"{r}/target1") == (n["e2_0"] + "\n").encode()
    assert fs.read(f"{e}/region") == (v["R"] + "\n").encode()
    assert fs.read(f"{r}/commit") == b"0\n"
    assert [fs.read(f"{e}/{f}") for f in ("interleave_ways", "interleave_granularity", "start", "size")] == geometry


def test_setup_rejects_peer_at_wrong_distance(system, fs):
    """§4.6.2: x4 region on the x1 window decoder0.2 through HB0's two switches.  Valid orders alternate
    switches (§4.6.3: mem0, mem2, mem4, mem6); putting cxl_mem.0 and cxl_mem.4 (same switch) at
    positions 0 and 1 makes HB0's decoder see a repeated dport at pos 1 < distance 2: ENXIO."""
    order = ["e0_1", "e4_1", "e2_0", "e6_0"]
    setup = region(ways="4", size=SZ1G) + [s for e in order for s in dpa(e)]
    setup += [s for i, e in enumerate(order[:3]) for s in target(i, e)]
    v = run_setup(fs, system, setup)
    r = "bus/cxl/devices/" + v["R"]
    with pytest.raises(KernelError) as ei:
        fs.write(f"{r}/target3", (v[order[3]] + "\n").encode())
    assert ei.value.errno == ENXIO
    # §8.11: the target stays recorded, the region is not ACTIVE, so commit is refused
    assert fs.read(f"{r}/target3") == (v[order[3]] + "\n").encode()
    with pytest.raises(KernelError) as ei:
        fs.write(f"{r}/commit", b"1\n")
    assert ei.value.errno == ENXIO


def test_setup_accepts_alternating_switch_order(system, fs):
    """The §4.6.3 order for the same region is accepted and commits (control for the test above)."""
    order = ["e0_1", "e2_0", "e4_1", "e6_0"]
    setup = region(ways="4", size=SZ1G) + [s for e in order for s in dpa(e)]
    setup += [s for i, e in enumerate(order) for s in target(i, e)] + [("{R}/commit", "1\n")]
    v = run_setup(fs, system, setup)
    assert fs.read(f"bus/cxl/devices/{v['R']}/commit") == b"1\n"


# ------------------------------------------------------------------------------ through the mount

# One linear story, each refusal tagged with the table case whose state it reproduces.
# ("ok", path, data) | ("new", root, mode, var) | ("no", case id, path, data, errno)
MOUNT_STORY = [
    ("no", "bus.cxl.flush.einval_2", "/bus/cxl/flush", "2\n", EINVAL),
    ("no", "root.create_pmem_region.ebusy_mismatch", "decoder0.2/create_pmem_region", "region99\n", EBUSY),
    ("no", "root.create_pmem_region.einval_no_number", "decoder0.2/create_pmem_region", "region\n", EINVAL),
    ("no", "root.delete_region.enodev_no_such", "decoder0.2/delete_region", "region99\n", ENODEV),
    ("no", "root.delete_region.enodev_other_decoders_region", "decoder0.2/delete_region", "region0\n", ENODEV),
    ("no", "decoder.mode.einval_bad_string", "{e2_0}/mode", "bogus\n", EINVAL),
    ("no", "decoder.mode.ebusy_committed_auto", "{e0_0}/mode", "ram\n", EBUSY),
    ("no", "decoder.mode.enxio_no_pmem_capacity", "{e10_1}/mode", "pmem\n", ENXIO),
    ("no", "decoder.dpa_size.ebusy_in_auto_region", "{e0_0}/dpa_size", "0\n", EBUSY),
    ("no", "decoder.dpa_size.einval_no_mode", "{e2_0}/dpa_size", SZ256M + "\n", EINVAL),
    ("no", "region.uuid.eacces_auto_ram_region", "region0/uuid", U2 + "\n", EACCES),
    ("no", "readonly.decoder0.0.size.eacces", "decoder0.0/size", "0\n", EACCES),
    ("no", "region.size.ebusy_zero_when_committed_auto", "region0/size", "0\n", EBUSY),
    ("no", "driver.cxl_region.bind.ebusy_already_bound_auto", BIND, "region0\n", EBUSY),
    ("no", "driver.cxl_port.bind.enodev_type_mismatch", "/bus/cxl/drivers/cxl_port/bind", "{m0}\n", ENODEV),
    ("new", "decoder0.2", "pmem", "R"),
    ("no", "region.uuid.einval_36_bytes_no_newline", "{R}/uuid", U2, EINVAL),
    ("no", "region.uuid.einval_null_uuid", "{R}/uuid", NULL_UUID + "\n", EINVAL),
    ("no", "region.interleave_ways.einval_zero", "{R}/interleave_ways", "0\n", EINVAL),
    ("no", "region.interleave_ways.einval_five", "{R}/interleave_ways", "5\n", EINVAL),
    ("no", "region.interleave_granularity.einval_not_power_of_2", "{R}/interleave_granularity", "768\n", EINVAL),
    ("ok", "{R}/uuid", U1 + "\n"),
    ("ok", "{R}/interleave_granularity", "256\n"),
    ("no", "region.size.enxio_no_ways", "{R}/size", SZ256M + "\n", ENXIO),
    ("ok", "{R}/interleave_ways", "1\n"),
    ("no", "region.commit.enxio_idle", "{R}/commit", "1\n", ENXIO),
    ("no", "driver.cxl_region.bind.enxio_idle", BIND, "{R}\n", ENXIO),
    ("no", "region.target.enodev_no_such_device", "{R}/target0", "decoder99.9\n", ENODEV),
    ("no", "region.target.einval_root_decoder", "{R}/target0", "decoder0.2\n", EINVAL),
    ("no", "region.size.erange_bigger_than_window", "{R}/size", "0x80000000\n", ERANGE),
    ("no", "region.size.einval_not_multiple_256m", "{R}/size", "0x1000\n", EINVAL),
    ("ok", "{e2_0}/mode", "pmem\n"),
    ("no", "decoder.dpa_size.einval_not_256m_multiple", "{e2_0}/dpa_size", "0x1000\n", EINVAL),
    ("no", "decoder.dpa_size.einval_garbage", "{e2_0}/dpa_size", "12abc\n", EINVAL),
    ("no", "decoder.dpa_size.erange_overflow_hex", "{e2_0}/dpa_size", "0x10000000000000000\n", ERANGE),
    ("no", "decoder.dpa_size.enospc_bigger_than_pmem", "{e2_0}/dpa_size", "0x80000000\n", ENOSPC),
    ("ok", "{e2_1}/mode", "pmem\n"),
    ("no", "decoder.dpa_size.ebusy_alloc_out_of_order", "{e2_1}/dpa_size", SZ256M + "\n", EBUSY),
    ("ok", "{e2_0}/dpa_size", SZ256M + "\n"),
    ("no", "region.target.enxio_no_size", "{R}/target0", "{e2_0}\n", ENXIO),
    ("ok", "{R}/size", SZ256M + "\n"),
    ("no", "region.size.ebusy_different_size_already_set", "{R}/size", SZ512M + "\n", EBUSY),
    ("no", "region.interleave_ways.ebusy_after_size", "{R}/interleave_ways", "2\n", EBUSY),
    ("no", "region.interleave_ways.einval_five_on_sized_region", "{R}/interleave_ways", "5\n", EINVAL),
    ("no", "region.interleave_granularity.ebusy_after_size", "{R}/interleave_granularity", "512\n", EBUSY),
    ("no", "region.commit.enxio_interleave_active", "{R}/commit", "1\n", ENXIO),
    ("ok", "{R}/target0", "{e2_0}\n"),
    ("no", "region.uuid.ebusy_active", "{R}/uuid", U2 + "\n", EBUSY),
    ("no", "region.size.ebusy_zero_when_active", "{R}/size", "0\n", EBUSY),
    ("no", "decoder.dpa_size.ebusy_in_active_region", "{e2_0}/dpa_size", "0\n", EBUSY),
    ("no", "driver.cxl_region.bind.enxio_active_not_committed", BIND, "{R}\n", ENXIO),
    ("ok", "{R}/commit", "1\n"),
    ("no", "decoder.mode.ebusy_committed_manual", "{e2_0}/mode", "ram\n", EBUSY),
    ("no", "region.commit.einval_bad_bool_on_committed", "{R}/commit", "x\n", EINVAL),
    ("ok", BIND, "{R}\n"),
    ("no", "driver.cxl_region.bind.ebusy_already_bound", BIND, "{R}\n", EBUSY),
]


def _sh(s: str) -> str:
    """A shell word for ``s`` with {R} turned into "$R" (and nothing else expanded)."""
    parts = s.split("{R}")
    return '"$R"'.join(shlex.quote(p) if p else "" for p in parts) or "''"


def _echo(data: str) -> str:
    if data.endswith("\n") and "\n" not in data[:-1]:
        return f"echo {_sh(data[:-1])}"
    if "\n" not in data:
        return f"echo -n {_sh(data)}"
    return f"printf %s {_sh(data)}"


def mount_script(names: dict) -> str:
    v = dict(names)
    v["R"] = "{R}"                       # kept for the shell, see _sh
    lines = ["err=$(mktemp)", "alive=/sys/bus/cxl/devices/root0/devtype"]
    for step in MOUNT_STORY:
        if step[0] == "new":
            _, root, mode, var = step
            f = f"/sys/bus/cxl/devices/{root}/create_{mode}_region"
            lines += [f"{var}=$(cat {f})", f'echo "${var}" > {f}']
            continue
        if step[0] == "ok":
            _, path, data = step
            lines.append(f"{_echo(str(data).format(**v))} > {_sh('/sys/' + cxl_path(str(path).format(**v)))}")
            continue
        _, cid, path, data, _err = step
        f = _sh("/sys/" + cxl_path(str(path).format(**v)))
        lines += [
            f"f={f}",
            'b=$(cat "$f" 2>/dev/null || echo "<unreadable>")',
            (f'if ( {_echo(str(data).format(**v))} > "$f" ) 2>"$err"; then r=SUCCEEDED; '
             "else r=$(sed 's/.*: //' \"$err\"); fi"),
            'a=$(cat "$f" 2>/dev/null || echo "<unreadable>")',
            f'echo "RESULT {cid}|$r|$([ "$a" = "$b" ] && echo same || echo changed)|$(cat $alive)"',
        ]
    lines.append('echo "DONE $(cat /sys/bus/cxl/devices/$R/commit) $(readlink /sys/bus/cxl/devices/$R/driver)"')
    return "\n".join(lines) + "\n"


def test_mount_story_cases_are_in_the_table():
    ids = {c.id for c in CASES}
    refusals = [s for s in MOUNT_STORY if s[0] == "no"]
    assert len(refusals) >= 20
    assert [s[1] for s in refusals if s[1] not in ids] == []
    # and carry the table's errno
    table = {c.id: c.values[3] for c in CASES}
    assert [s[1] for s in refusals if table[s[1]] != s[4]] == []


def test_mount_story_in_process():
    """The same story against the in-process model: every refusal has its errno, no state change."""
    system = System.boot("cxl_test")
    fs = Sysfs(system)
    v = model_names(system)
    for step in MOUNT_STORY:
        if step[0] == "new":
            _, root, mode, var = step
            v.update(run_setup(fs, system, [(f"{root}/create_{mode}_region", Var(var))]))
            v.update(model_names(system))
            continue
        if step[0] == "ok":
            fs.write(cxl_path(step[1].format(**v)), step[2].format(**v).encode())
            continue
        _, cid, path, data, err = step
        before = sysfs_tree(fs)
        with pytest.raises(KernelError) as ei:
            fs.write(cxl_path(path.format(**v)), str(data).format(**v).encode())
        assert ei.value.errno == err, (cid, ei.value.reason)
        assert sysfs_tree(fs) == before, cid


@pytest.mark.mount
def test_refused_writes_through_the_mount():
    names = model_names(System.boot("cxl_test"))
    r = cxlsys_run(mount_script(names))
    results = {}
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            cid, text, same, alive = line[len("RESULT "):].split("|")
            results[cid] = (text, same, alive)
    want = {s[1]: os.strerror(s[4]) for s in MOUNT_STORY if s[0] == "no"}
    assert set(results) == set(want), r.stdout + r.stderr
    wrong = {cid: (results[cid][0], want[cid]) for cid in want if results[cid][0] != want[cid]}
    assert wrong == {}, r.stderr
    assert [cid for cid, (_, same, _) in results.items() if same != "same"] == []
    assert {alive for _, _, alive in results.values()} == {"cxl_port"}
    region_name = None
    for line in r.stdout.splitlines():
        if line.startswith("DONE "):
            region_name = line
    assert region_name is not None and region_name.startswith("DONE 1 ") and region_name.endswith("/cxl_region")
