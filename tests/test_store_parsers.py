"""Every writable file of the model parses its input as its Linux 6.12 twin does: a table of
writable attributes (owner type and attribute, or a path pattern for debugfs/tracefs) -> the
parser its kernel store uses, and per parser the inputs it refuses and the errno it refuses them
with.  Each store is one test, named ``<key>[<parser>]``: every refused input must be refused with
that errno and leave the whole model unchanged (sysfs, debugfs, tracefs values); stores whose
parser refuses nothing get the inputs that show how they read.  ``test_every_writable_file_has_a
_parser`` walks the shipped topologies (and the states that make the other stores appear: a pmem
region, a v5 anondax device, a v4 sysram region, the 7.3 kmem state file) so a new store without a
declared parser fails.  The parsers themselves are tests/test_parsers.py.

Kernel sources (6.12) the table follows, by store:
  drivers/cxl/core/region.c  uuid (len == UUID_STRING_LEN + 1, uuid_parse), commit (kstrtobool),
      interleave_ways (kstrtouint 0), interleave_granularity (kstrtoint 0), size (kstrtou64 0),
      targetN (sysfs_streq(buf, "\\n") detaches, else bus_find_device_by_name: ENODEV, not an
      endpoint decoder: EINVAL), create_*_region (sscanf "region%d\\n" != 1: EINVAL, wrong id:
      EBUSY), delete_region (device_find_child + sysfs_streq: ENODEV)
  drivers/cxl/core/port.c    mode (sysfs_streq pmem/ram), dpa_size (kstrtoull 0), flush (sysfs_streq "1")
  drivers/cxl/core/memdev.c  security/sanitize (kstrtobool || !v: EINVAL); drivers/cxl/mem.c
      trigger_poison_list (same), debugfs inject/clear_poison (simple_attr_write: kstrtoull 0 of
      <= 23 bytes); drivers/cxl/core/mbox.c raw_allow_all (debugfs bool: kstrtobool_from_user,
      the write succeeds even when it does not parse)
  drivers/base/bus.c         bind/unbind/drivers_probe (bus_find_device_by_name: ENODEV),
      drivers_autoprobe (buf[0] == '0' ? 0 : 1, never refused), uevent (kobject_synth_uevent)
  drivers/base/core.c        uevent (kobject_synth_uevent), online (kstrtobool)
  drivers/base/memory.c      state, auto_online_blocks (mhp_online_type_from_str: sysfs_streq)
  drivers/base/platform.c    driver_override (driver_set_override)
  drivers/base/firmware_loader/sysfs.c loading (simple_strtol 10), sysfs_upload.c cancel (kstrtobool || !v)
  mm/compaction.c            node compact (any input)
  mm/memory_hotplug.c        online_policy (sysfs_match_string), auto_movable_ratio (param uint:
      kstrtouint 0), auto_movable_numa_aware (param bool: kstrtobool)
  drivers/dax/bus.c          create (kstrtoint 0, != 1: EINVAL), delete (device_find_child_by_name:
      ENXIO), size (kstrtoull 0), align (kstrtoul 0, any error: ENXIO), mapping (range_parse:
      kstrtoull 16 of each side, its errno), memmap_on_memory (kstrtobool), new_id/remove_id
      (sscanf "dax%d.%d" == 2 and sysfs_streq to its print: else EINVAL)
  drivers/nvdimm/security.c  security (sscanf "%32s %10s %10s", sysfs_streq op, kstrtouint 0 keys)
  tools/testing/cxl/test/mem.c security_lock, poison_inject_max (kstrtoint 0 < 0: EINVAL),
      sanitize_timeout (kstrtoul 0), event_trigger (any input)
  kernel/trace/trace.c, trace_events.c tracing_on, buffer_size_kb, saved_cmdlines_size, enable
      (kstrtoul_from_user base 10), current_tracer / trace_clock (strim + name), trace (any input)
"""

from __future__ import annotations

import errno
import functools
import re
from collections.abc import Callable

import pytest
from test_private_nodes import ram_region

from cxlsys.base.bus import Bus, Driver
from cxlsys.base.device import Device
from cxlsys.base.module import Module
from cxlsys.invariants import assert_invariants
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.testing import (
    SYSFS_TREE,
    assert_refused,
    cxl_read,
    cxl_write,
    read_value,
    write_text,
)
from cxlsys.treedump import dump_model

EINVAL, ERANGE, ENODEV, ENXIO, EBUSY = errno.EINVAL, errno.ERANGE, errno.ENODEV, errno.ENXIO, errno.EBUSY
UUID = b"6f1d3c0e-8a1b-4c5d-9e2f-0a1b2c3d4e5f"
def _boot(topology, kernel=None):
    s = System.boot(topology, kernel=kernel)
    return s, Sysfs(s)


def _pmem_region():
    s, fs = _boot("cxl_test")
    r = cxl_read(fs, "decoder0.2/create_pmem_region")
    cxl_write(fs, "decoder0.2/create_pmem_region", r)
    return s, fs


def _qemu_ram_region(kernel):
    s, fs, _ = ram_region(kernel)          # the same 2-way qemu-hdm-db region the private-node tests use
    return s, fs


def _anondax():
    s, fs = _qemu_ram_region("7.3+private-nodes-v5")
    write_text(fs, "bus/dax/drivers/kmem/unbind", "dax0.0")
    write_text(fs, "bus/dax/drivers/anondax/new_id", "dax0.0")
    return s, fs


def _sysram():
    s, fs = _boot("qemu-hdm-db", "7.3+private-nodes-v4")
    write_text(fs, "bus/pci/drivers/cxl_pci/unbind", "0000:0f:00.0")
    write_text(fs, "bus/pci/drivers/cxl_mempolicy/bind", "0000:0f:00.0")
    return s, fs


SCENARIOS = {
    "cxl_test": lambda: _boot("cxl_test"),
    "cxl_test+pmem_region": _pmem_region,
    "cxl_test@7.3": lambda: _boot("cxl_test", "7.3"),
    "qemu-hdm-db": lambda: _boot("qemu-hdm-db"),
    "bi-direct": lambda: _boot("bi-direct"),
    "qemu-hdm-db@v5+anondax": _anondax,
    "qemu-hdm-db@v4+sysram": _sysram,
}

_BDF = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")


def _owner_kind(owner) -> str:
    if isinstance(owner, Driver):
        return "driver"
    if isinstance(owner, Bus):
        return "bus"
    if isinstance(owner, Module):
        return f"module.{owner.name}"
    return type(owner).__name__


def key_of(fs, path: str) -> str:
    node = fs._file(path)
    owner = getattr(node, "owner", None)
    if isinstance(owner, Device) and path.startswith(owner.path + "/"):
        return f"{_owner_kind(owner)}:{_target_key(path[len(owner.path) + 1:])}"
    if owner is not None:
        return f"{_owner_kind(owner)}:{path.rsplit('/', 1)[1]}"
    p = path.replace("kernel/debug/tracing/", "kernel/tracing/")
    p = re.sub(r"(kernel/tracing/events/)[^/]+/[^/]+/(enable|filter)$", r"\1SYSTEM/EVENT/\2", p)
    p = re.sub(r"(kernel/tracing/events/)(?!SYSTEM/)[^/]+/(enable|filter)$", r"\1SYSTEM/\2", p)
    p = _BDF.sub("BDF", p)
    return re.sub(r"\d+", "N", p)


def writable_keys(fs) -> dict:
    out: dict = {}
    for p, e in fs.walk(""):
        if e.kind == "file" and e.writable:
            out.setdefault(key_of(fs, p), p)
    return out


def _target_key(attr: str) -> str:
    return re.sub(r"^target\d+$", "targetN", attr)


# ------------------------------------------------------------------------------ the parsers' tables

Rows = list  # [(payload bytes, errno)]

BOOL_REFUSED: Rows = [(b"\n", EINVAL), (b"maybe\n", EINVAL), (b"enable\n", EINVAL), (b"disable\n", EINVAL),
                      (b"o\n", EINVAL), (b"2\n", EINVAL), (b"-1\n", EINVAL), (b" 1\n", EINVAL), (b"\0", EINVAL),
                      (b"+1\n", EINVAL)]
FALSE_WORDS = [b"0\n", b"n\n", b"no\n", b"f\n", b"false\n", b"off\n", b"of\n", b"N"]
U64_REFUSED: Rows = [(b"\n", EINVAL), (b"x\n", EINVAL), (b"-1\n", EINVAL), (b" 1\n", EINVAL), (b"1 \n", EINVAL),
                     (b"0x\n", EINVAL), (b"08\n", EINVAL), (b"1\n\n", EINVAL), (b"0x1g\n", EINVAL),
                     (b"+-1\n", EINVAL), (b"1_0\n", EINVAL), (b"\0", EINVAL),
                     (b"18446744073709551616\n", ERANGE), (b"99999999999999999999x\n", ERANGE)]
U32_REFUSED: Rows = U64_REFUSED + [(b"4294967296\n", ERANGE)]
INT_REFUSED: Rows = [r for r in U64_REFUSED if r[0] != b"-1\n"] + [
    (b"2147483648\n", ERANGE), (b"-2147483649\n", ERANGE), (b"--1\n", EINVAL), (b"-+1\n", EINVAL), (b"-\n", EINVAL)]
DEC_REFUSED: Rows = [(b"0x1\n", EINVAL), (b" 1\n", EINVAL), (b"-1\n", EINVAL), (b"\n", EINVAL), (b"1.0\n", EINVAL),
                     (b"1\n\n", EINVAL), (b"18446744073709551616\n", ERANGE)]
UEVENT_REFUSED: Rows = [(b"bogus\n", EINVAL), (b" add\n", EINVAL), (b"add\n\n", EINVAL), (b"add junk\n", EINVAL),
                        (b"\n", EINVAL), (b"Add\n", EINVAL), (b"add " + UUID + b" A=\n", EINVAL)]


def _as(rows: Rows, err: int) -> Rows:
    return [(p, err) for p, _ in rows]


def _words(*words: str) -> Callable:
    """sysfs_streq against a fixed word list: what is not one of them, exactly, is EINVAL."""
    def rows(fs, path) -> Rows:
        w = words[0].encode()
        out = [(w + b"\n\n", EINVAL), (b" " + w, EINVAL), (w + b" ", EINVAL), (b"\n", EINVAL), (b"bogus\n", EINVAL),
               (w + b"x", EINVAL)]
        if w.upper() != w:
            out.append((w.upper(), EINVAL))
        return out
    return rows


def _bus_devices(fs, path) -> list:
    bus = path.split("/")[1]
    return fs.listdir(f"bus/{bus}/devices")


def _by_name(err: int, existing: Callable) -> Callable:
    """A name lookup (sysfs_streq against device names): no such name is ``err``."""
    def rows(fs, path) -> Rows:
        name = existing(fs, path).encode()
        return [(b"nosuchdevice0\n", err), (name + b"\n\n", err), (b" " + name, err), (name + b" ", err),
                (name.upper() + b"\n", err)]
    return rows


def _static(rows: Rows) -> Callable:
    return lambda fs, path: rows


def _never(fs, path) -> Rows:
    return []


PARSERS: dict[str, Callable] = {
    "kstrtobool": _static(BOOL_REFUSED),
    "kstrtobool||!v": _static(BOOL_REFUSED + [(w, EINVAL) for w in FALSE_WORDS]),
    "kstrtou64(0)": _static(U64_REFUSED),
    "kstrtoul(0)": _static(U64_REFUSED),
    "kstrtouint(0)": _static(U32_REFUSED),
    "kstrtoint(0)": _static(INT_REFUSED),
    "kstrtoint(0)<0:EINVAL": _static(_as(INT_REFUSED, EINVAL)),
    "kstrtoul(0):ENXIO": _static(_as(U64_REFUSED, ENXIO)),
    "simple_attr_write:kstrtoull(0)": _static(U64_REFUSED),
    "kstrtoul_from_user(10)": _static(DEC_REFUSED),
    "range_parse:kstrtoull(16)": _static([(b"\n", EINVAL), (b"1\n", EINVAL), (b"x-1\n", EINVAL), (b"1-x\n", EINVAL),
                                          (b"1-2-3\n", EINVAL), (b"-1\n", EINVAL), (b"1 - 2\n", EINVAL),
                                          (b"10000000000000000-1\n", ERANGE), (b"1-10000000000000000\n", ERANGE)]),
    "uuid_parse(len==37)": _static([(UUID, EINVAL), (UUID + b"\n\n", EINVAL), (b"x" * 36 + b"\n", EINVAL),
                                    (UUID.replace(b"-", b"_") + b"\n", EINVAL), (b"\n", EINVAL),
                                    (b"00000000-0000-0000-0000-000000000000\n", EINVAL)]),
    "sscanf(region%d)": _static([(b"\n", EINVAL), (b"region\n", EINVAL), (b"regionx\n", EINVAL),
                                 (b"Region1\n", EINVAL), (b"region+1\n", EINVAL), (b" region1\n", EINVAL),
                                 (b"region-1\n", EBUSY), (b"region 99999\n", EBUSY), (b"region99999junk\n", EBUSY)]),
    "sscanf(dax%d.%d)+sysfs_streq": _static([(b"\n", EINVAL), (b"dax0\n", EINVAL), (b"dax0.0 \n", EINVAL),
                                             (b"dax00.0\n", EINVAL), (b"dax0.0\n\n", EINVAL), (b" dax0.0\n", EINVAL),
                                             (b"dax0.x\n", EINVAL), (b"dax0.0x\n", EINVAL)]),
    "kobject_synth_uevent": _static(UEVENT_REFUSED),
    "bus_find_device_by_name:ENODEV": _by_name(ENODEV, lambda fs, p: _bus_devices(fs, p)[0]),
    "detach|bus_find_device_by_name:ENODEV": lambda fs, p: (_by_name(ENODEV, lambda fs, p: "decoder0.0")(fs, p)
                                                           + [(b"mem0\n", EINVAL)]),   # not an endpoint decoder
    "device_find_child(region):ENODEV": _by_name(ENODEV, lambda fs, p: "region0"),
    "device_find_child_by_name:ENXIO": _by_name(
        ENXIO, lambda fs, p: p.split("/")[-3].replace("dax_region", "dax") + ".0"),
    "driver_set_override": _static([(b"x" * 4095, EINVAL), (b"cxl_mock_mem\n" + b"\0" * 4090, EINVAL)]),
    "nvdimm_security:sscanf+sysfs_streq+kstrtouint(0)": _static([
        (b"\n", EINVAL), (b"bogus\n", EINVAL), (b"Freeze\n", EINVAL), (b"disable x\n", EINVAL),
        (b"disable 4294967296\n", ERANGE), (b"update 1 -1\n", EINVAL), (b"update 1 0x\n", EINVAL)]),
    "sysfs_streq(pmem|ram)": _words("pmem", "ram"),
    "sysfs_streq(1)": _words("1"),
    "sysfs_streq(online types)": _words("online_movable", "online_kernel", "online", "offline"),
    "sysfs_streq(online types|unplugged)": _words("online_movable", "online_kernel", "online", "unplugged"),
    "sysfs_match_string(online policies)": _words("contig-zones", "auto-movable"),
    "strim+tracer name": _static([(b"bogus\n", EINVAL), (b"nopx\n", EINVAL)]),
    "strstrip+clock name": _static([(b"bogus\n", EINVAL), (b"localx\n", EINVAL)]),
    "cpumask_parse_user": _static([(b"zz\n", EINVAL), (b"0x\n", EINVAL)]),
    "trace_event_filter": _static([(b"bogus\n", EINVAL), (b"common_pid ==\n", EINVAL)]),
    "ftrace_set_clr_event": _static([(b"nosuchsystem:nosuchevent\n", EINVAL)]),
    # the model's own debugfs knobs (no kernel twin): their own words
    "cxlsys:words(none|timeout|error)": _words("none", "timeout", "error"),
    "cxlsys:block list": _static([(b"x\n", EINVAL), (b"1-\n", EINVAL), (b"5-1\n", EINVAL)]),
    # parsers that refuse nothing: see ACCEPTED
    "buf[0]=='0'": _never,
    "simple_strtol(10)": _never,
    "kstrtobool_from_user(count returned)": _never,
    "any input": _never,
    "binary": _never,
}

# key -> parser.  A key is "<owner type>:<attribute>" (its path below the owner's directory), or for a
# file that belongs to no device (debugfs, tracefs) its path with numbers as N.
UEVENT_OWNERS = ("Cpu", "CxlDaxRegion", "CxlEndpointDecoder", "CxlMemdev", "CxlNvdimm", "CxlNvdimmBridge", "CxlPort",
                 "CxlRegion", "CxlRootDecoder", "CxlSwitchDecoder", "CxlSysram", "DaxMapping", "DevDax", "FwUpload",
                 "MemoryBlock", "MemoryRoot", "MemoryTier", "MemoryTieringRoot", "MockMemDevice", "NdctlDev",
                 "Node", "NodeRoot", "Nvdimm", "NvdimmBus", "PciDevice", "PciRoot", "PlatformDevice", "SubsysRoot",
                 "bus", "driver")
ANON_CAPS = ("hotunplug", "ltpin", "mempolicy", "reclaim", "tiering", "user_migrate")

STORES: dict[str, str] = {
    **{f"{o}:uevent": "kobject_synth_uevent" for o in UEVENT_OWNERS},
    # drivers/cxl
    "CxlRegion:commit": "kstrtobool",
    "CxlRegion:interleave_granularity": "kstrtoint(0)",
    "CxlRegion:interleave_ways": "kstrtouint(0)",
    "CxlRegion:size": "kstrtou64(0)",
    "CxlRegion:targetN": "detach|bus_find_device_by_name:ENODEV",
    "CxlRegion:uuid": "uuid_parse(len==37)",
    "CxlRootDecoder:create_pmem_region": "sscanf(region%d)",
    "CxlRootDecoder:create_ram_region": "sscanf(region%d)",
    "CxlRootDecoder:create_ram_bi_region": "sscanf(region%d)",
    "CxlRootDecoder:delete_region": "device_find_child(region):ENODEV",
    "CxlEndpointDecoder:mode": "sysfs_streq(pmem|ram)",
    "CxlEndpointDecoder:dpa_size": "kstrtou64(0)",
    "CxlEndpointDecoder:bi": "kstrtobool",
    "CxlMemdev:security/sanitize": "kstrtobool||!v",
    "CxlMemdev:trigger_poison_list": "kstrtobool||!v",
    "CxlSysram:hotplug": "sysfs_streq(online types)",
    "bus:flush": "sysfs_streq(1)",
    # drivers/base
    "bus:drivers_autoprobe": "buf[0]=='0'",
    "bus:drivers_probe": "bus_find_device_by_name:ENODEV",
    "driver:bind": "bus_find_device_by_name:ENODEV",
    "driver:unbind": "bus_find_device_by_name:ENODEV",
    "MemoryBlock:online": "kstrtobool",
    "MemoryBlock:state": "sysfs_streq(online types)",
    "MemoryRoot:auto_online_blocks": "sysfs_streq(online types)",
    "Node:compact": "any input",
    "PlatformDevice:driver_override": "driver_set_override",
    "MockMemDevice:driver_override": "driver_set_override",
    "FwUpload:loading": "simple_strtol(10)",
    "FwUpload:cancel": "kstrtobool||!v",
    "FwUpload:data": "binary",
    # mm
    "module.memory_hotplug:online_policy": "sysfs_match_string(online policies)",
    "module.memory_hotplug:auto_movable_ratio": "kstrtouint(0)",
    "module.memory_hotplug:auto_movable_numa_aware": "kstrtobool",
    # drivers/dax
    "CxlDaxRegion:dax_region/create": "kstrtoint(0)",
    "CxlDaxRegion:dax_region/delete": "device_find_child_by_name:ENXIO",
    "DevDax:size": "kstrtou64(0)",
    "DevDax:align": "kstrtoul(0):ENXIO",
    "DevDax:mapping": "range_parse:kstrtoull(16)",
    "DevDax:memmap_on_memory": "kstrtobool",
    "DevDax:state": "sysfs_streq(online types|unplugged)",
    "DevDax:hotplug": "sysfs_streq(online types|unplugged)",
    **{f"DevDax:{c}": "kstrtobool" for c in ANON_CAPS},
    "driver:new_id": "sscanf(dax%d.%d)+sysfs_streq",
    "driver:remove_id": "sscanf(dax%d.%d)+sysfs_streq",
    # drivers/nvdimm
    "Nvdimm:security": "nvdimm_security:sscanf+sysfs_streq+kstrtouint(0)",
    # tools/testing/cxl
    "MockMemDevice:security_lock": "kstrtoint(0)<0:EINVAL",
    "MockMemDevice:sanitize_timeout": "kstrtoul(0)",
    "MockMemDevice:event_trigger": "any input",
    "driver:poison_inject_max": "kstrtoint(0)<0:EINVAL",
    # debugfs
    "kernel/debug/cxl/mbox/raw_allow_all": "kstrtobool_from_user(count returned)",
    "kernel/debug/cxl/memN/inject_poison": "simple_attr_write:kstrtoull(0)",
    "kernel/debug/cxl/memN/clear_poison": "simple_attr_write:kstrtoull(0)",
    "kernel/debug/cxlsys/bi/BDF/inject": "cxlsys:words(none|timeout|error)",
    "kernel/debug/cxlsys/memory/kernel_zone_unmovable": "kstrtobool",
    "kernel/debug/cxlsys/memory/signal_pending": "kstrtobool",
    "kernel/debug/cxlsys/memory/unmovable": "cxlsys:block list",
    # tracefs
    "kernel/tracing/tracing_on": "kstrtoul_from_user(10)",
    "kernel/tracing/buffer_size_kb": "kstrtoul_from_user(10)",
    "kernel/tracing/per_cpu/cpuN/buffer_size_kb": "kstrtoul_from_user(10)",
    "kernel/tracing/saved_cmdlines_size": "kstrtoul_from_user(10)",
    "kernel/tracing/events/enable": "kstrtoul_from_user(10)",
    "kernel/tracing/events/SYSTEM/enable": "kstrtoul_from_user(10)",
    "kernel/tracing/events/SYSTEM/EVENT/enable": "kstrtoul_from_user(10)",
    "kernel/tracing/events/SYSTEM/filter": "trace_event_filter",
    "kernel/tracing/events/SYSTEM/EVENT/filter": "trace_event_filter",
    "kernel/tracing/current_tracer": "strim+tracer name",
    "kernel/tracing/trace_clock": "strstrip+clock name",
    "kernel/tracing/tracing_cpumask": "cpumask_parse_user",
    "kernel/tracing/set_event": "ftrace_set_clr_event",
    "kernel/tracing/trace": "any input",
    "kernel/tracing/per_cpu/cpuN/trace": "any input",
}


# ------------------------------------------------------------------------------ finding the files

@functools.lru_cache(maxsize=None)
def found() -> dict:
    """key -> (scenario, path): the first scenario (in SCENARIOS order) where the key's file exists."""
    out: dict = {}
    for name, build in SCENARIOS.items():
        _, fs = build()
        for k, p in writable_keys(fs).items():
            out.setdefault(k, (name, p))
    return out


_SHARED: dict = {}


def shared(scenario: str) -> tuple:
    """One booted scenario shared by the refusal tests (a refusal changes nothing) and its deep
    snapshot taken once; a failed test drops it (:func:`drop_shared`), so the next one starts clean."""
    if scenario not in _SHARED:
        s, fs = SCENARIOS[scenario]()
        _SHARED[scenario] = (s, fs, deep_snapshot(fs))
    return _SHARED[scenario]


def drop_shared(scenario: str) -> None:
    _SHARED.pop(scenario, None)


DEEP_ROOTS = SYSFS_TREE + ("/sys/kernel/debug/cxl", "/sys/kernel/debug/cxlsys", "/sys/kernel/tracing")
_DEEP_SKIP = re.compile(r"(^|/)(power|subsystem)$|trace_pipe|/stats$")


def deep_snapshot(fs) -> list:
    """Every value the model shows: sysfs, the cxl and cxlsys debugfs, tracefs (less the pipes and
    the per-CPU clock readings)."""
    return dump_model(fs, DEEP_ROOTS, _DEEP_SKIP)


def local_snapshot(fs, directory: str) -> dict:
    """The entries of one directory (not below it) with their values: cheap enough per write."""
    out: dict = {}
    for name, e in fs.entries(directory).items():
        p = f"{directory}/{name}"
        if e.kind == "file" and e.readable and not _DEEP_SKIP.search(p):
            try:
                out[name] = fs.read(p)
            except OSError as err:
                out[name] = err.errno
        else:
            out[name] = (e.kind, e.mode, e.target)
    return out


def _diff(a: list, b: list) -> list:
    sa, sb = set(a), set(b)
    return sorted(sa ^ sb)[:6]


# ------------------------------------------------------------------------------ the tests

def test_every_writable_file_has_a_parser():
    keys = set(found())
    missing = sorted(keys - set(STORES))
    assert not missing, f"writable files without a declared parser: {missing}"
    stale = sorted(set(STORES) - keys)
    assert not stale, f"table entries no shipped topology has: {stale}"
    assert set(STORES.values()) <= set(PARSERS), sorted(set(STORES.values()) - set(PARSERS))


def _ids(key: str) -> str:
    return f"{key}[{STORES[key]}]"


# no_invariants: the invariants are checked once per store below instead of after each of its ~10
# refused writes (the deep snapshot shows the model is the same after them as before)
@pytest.mark.no_invariants
@pytest.mark.parametrize("key", sorted(k for k, p in STORES.items() if PARSERS[p] is not _never), ids=_ids)
def test_store_refuses_what_its_parser_refuses(key):
    scenario, path = found()[key]
    _, fs, before = shared(scenario)
    rows = PARSERS[STORES[key]](fs, path)
    assert rows, f"{STORES[key]}: no refused inputs"
    here = path.rsplit("/", 1)[0]
    try:
        for payload, err in rows:
            assert_refused(fs, path, payload, err, unchanged=lambda: local_snapshot(fs, here))
        after = deep_snapshot(fs)
        assert after == before, f"{path}: a refused write changed the model: {_diff(before, after)}"
        assert_invariants(fs.sys)
    except BaseException:
        drop_shared(scenario)
        raise


# stores whose parser refuses nothing (or accepts more than one would guess): payload -> what the
# file (or another) reads after, on a fresh boot of the key's scenario
def _autoprobe(fs, path):
    for payload, want in ((b"0junk\n", "0"), (b"n\n", "1"), (b"0\n", "0"), (b"off\n", "1"), (b"\n", "1")):
        write_text(fs, path, payload)
        assert read_value(fs, path) == want, payload


def _loading(fs, path):
    for payload, want in ((b"1junk\n", "1"), (b"-1\n", "0"), (b"+1\n", "0"), (b" 1\n", "0"),
                          (b"4294967297\n", "1")):                 # int loading = simple_strtol(): truncated
        write_text(fs, path, payload)
        assert read_value(fs, path) == want, payload


def _raw_allow_all(fs, path):
    for payload, want in ((b"maybe\n", "N"), (b"yes\n", "Y"), (b"enable\n", "Y"), (b"of\n", "N"),
                          (b"1\n", "Y"), (b"o\n", "Y"), (b"offensive", "N")):
        write_text(fs, path, payload)                          # never refused
        assert read_value(fs, path) == want, payload


def _driver_override(fs, path):
    for payload, want in ((b"cxl_pci\nmore\n", "cxl_pci"), (b"\n", "(null)"), (b"x\0y", "x"), (b"\0", "(null)")):
        write_text(fs, path, payload)
        assert read_value(fs, path) == want, payload


def _anything(fs, path):
    for payload in (b"garbage\n", b"\n", b"0\n", b"-1\n"):
        assert write_text(fs, path, payload) == len(payload)


def _binary(fs, path):
    assert write_text(fs, path, b"\0\xff\n") == 3


def _bool_words(fs, path):
    for payload, want in ((b"yes\n", True), (b"no\n", False), (b"true\n", True), (b"false\n", False), (b"on\n", True),
                          (b"of\n", False), (b"T", True), (b"F", False), (b"1xyz", True), (b"0xyz", False)):
        write_text(fs, path, payload)
        assert read_value(fs, path) in (("1", "Y") if want else ("0", "N")), payload


def _numa_aware(fs, path):
    _bool_words(fs, path)


def _create_region_ws(fs, path):
    nxt = read_value(fs, path)
    write_text(fs, path, f"region  {nxt[len('region'):]}xyz".encode())    # %d skips white space; the rest is not read
    assert nxt in fs.listdir(path.rsplit("/", 1)[0])


def _dec(fs, path):
    for payload, want in ((b"010\n", "1"), (b"00\n", "0"), (b"2\n", "1"), (b"0\n", "0")):
        write_text(fs, path, payload)
        assert read_value(fs, path) == want, payload


ACCEPTED: dict[str, Callable] = {      # (the bool words of stores that change memory are shown on the knobs)
    "bus:drivers_autoprobe": _autoprobe,
    "FwUpload:loading": _loading,
    "kernel/debug/cxl/mbox/raw_allow_all": _raw_allow_all,
    "PlatformDevice:driver_override": _driver_override,
    "MockMemDevice:driver_override": _driver_override,
    "Node:compact": _anything,
    "MockMemDevice:event_trigger": _anything,
    "kernel/tracing/trace": _anything,
    "kernel/tracing/per_cpu/cpuN/trace": _anything,
    "FwUpload:data": _binary,
    "module.memory_hotplug:auto_movable_numa_aware": _numa_aware,
    "kernel/debug/cxlsys/memory/kernel_zone_unmovable": _bool_words,
    "kernel/debug/cxlsys/memory/signal_pending": _bool_words,
    "DevDax:reclaim": _bool_words,
    "CxlRootDecoder:create_ram_region": _create_region_ws,
    "kernel/tracing/tracing_on": _dec,
}


@pytest.mark.parametrize("key", sorted(ACCEPTED), ids=_ids)
def test_store_accepts_as_its_parser_reads(key):
    scenario, path = found()[key]
    _, fs = SCENARIOS[scenario]()
    ACCEPTED[key](fs, path)


def test_every_parser_that_refuses_nothing_has_an_acceptance_test():
    for key, parser in STORES.items():
        if PARSERS[parser] is _never:
            assert key in ACCEPTED, f"{key}: {parser} refuses nothing and nothing tests what it accepts"
