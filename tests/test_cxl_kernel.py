"""The ``cxl_kernel`` fixture (cxlsys.pytest_plugin, cxlsys.kernel_api): the policy-test API.

Every test here that takes ``cxl_kernel`` runs in-process by default and through a real mount with
``pytest --cxl-backend=mount``; the answers must be the same, which the tests comparing against a
fresh in-process kernel (``_reference``) check in the mount run.  The example policy tests
(``examples/test_*.py``) run as a user runs them, once per backend: in-process with pytester's
in-process runner (milliseconds), through a mount as ``python -m pytest --cxl-backend=mount`` in a
subprocess.
"""

import errno
import inspect
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import attrs
import pytest

import cxlsys.pytest_plugin as plugin
from cxlsys.errors import KernelError
from cxlsys.kernel_api import InProcessKernel, _InProcessMm, mm_call, mm_raise
from cxlsys.testing import free_endpoint_decoders, provision_ram_region
from fuse_mount.control import dispatch

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(ROOT.glob("examples/test_*.py"))

pytest_plugins = ["pytester"]
D = "/sys/bus/cxl/devices"


def _reference(k) -> InProcessKernel:
    """A fresh in-process kernel booted like ``k``: what every backend must answer."""
    return InProcessKernel(k.topology, k.kernel, k.params)


def _outcome(fn, *args, **kwargs):
    """A call's result, or its exception as (type, errno, str): comparable across backends."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:   # recorded, compared
        return (type(e).__name__, getattr(e, "errno", None), str(e))


# ------------------------------------------------------------------ the fixture and its marker

def test_defaults_are_cxl_test_on_6_12(cxl_kernel, request):
    assert (cxl_kernel.topology, cxl_kernel.kernel, cxl_kernel.params) == ("cxl_test", "6.12", {})
    assert cxl_kernel.backend == request.config.getoption("cxl_backend")
    assert cxl_kernel.read(f"{D}/region0/size") == "0x20000000\n"
    assert len([n for n in cxl_kernel.listdir(D) if n.startswith("mem")]) == 11
    if cxl_kernel.backend == "inprocess":
        assert cxl_kernel.system.profile.name == "6.12"
    else:
        assert cxl_kernel.system is None


@pytest.mark.cxl(topology="cxl_test", kernel="7.3", params={"interleave_arithmetic": 1})
def test_the_marker_picks_topology_kernel_and_params(cxl_kernel):
    roots = sorted(n for n in cxl_kernel.listdir(f"{D}/root0") if n.startswith("decoder0."))   # (kernfs order)
    assert roots == ["decoder0.0", "decoder0.1", "decoder0.2"]             # the XOR windows
    assert [cxl_kernel.value(f"{D}/{r}/interleave_ways") for r in roots] == ["1", "2", "4"]
    if cxl_kernel.system is not None:
        assert cxl_kernel.system.profile.name == "7.3"


@pytest.mark.cxl("bi-direct", kernel=None)            # positional topology; None: the topology's own kernel
def test_marker_positional_topology_and_its_own_kernel(cxl_kernel):
    assert [n for n in cxl_kernel.listdir(D) if n.startswith("mem")] == ["mem0"]
    assert cxl_kernel.exists(f"{D}/decoder0.0/create_ram_bi_region")     # 6.12-bi, bi-direct's own


@pytest.mark.parametrize("cxl_kernel", [{"topology": "qemu-hdm-db"}], indirect=True)
def test_indirect_parametrization(cxl_kernel):
    assert sorted(n for n in cxl_kernel.listdir(D) if n.startswith("mem")) == ["mem0", "mem1", "mem2", "mem3"]


def test_marker_registered_and_fixture_documented(request):
    assert any(line.startswith("cxl(") for line in request.config.getini("markers"))
    doc = inspect.getdoc(plugin.cxl_kernel) or ""
    assert "@pytest.mark.cxl" in doc and "--cxl-backend=mount" in doc


# ------------------------------------------------------------------ the file API

def test_write_takes_str_and_bytes_as_given(cxl_kernel):
    e = "decoder9.0"
    assert cxl_kernel.write(f"{D}/{e}/mode", "pmem") == 4                  # no newline: echo -n
    assert cxl_kernel.read(f"{D}/{e}/mode") == "pmem\n"
    assert cxl_kernel.write(f"{D}/{e}/mode", "ram\n") == 4                 # echo
    assert cxl_kernel.read(f"{D}/{e}/mode") == "ram\n"
    assert cxl_kernel.write(f"{D}/{e}/dpa_size", b"0x10000000") == 10      # a program's write(2)
    assert cxl_kernel.value(f"{D}/{e}/dpa_size") == "0x0000000010000000"
    assert cxl_kernel.write("/sys/bus/cxl/flush", "") == 0                  # zero-length: a no-op
    with pytest.raises(TypeError):
        cxl_kernel.write("/sys/bus/cxl/flush", 1)


def test_errors_are_those_of_the_real_files(cxl_kernel):
    cases = [
        (cxl_kernel.write, ("/sys/bus/cxl/flush", "2"), OSError, errno.EINVAL),          # the store refuses
        (cxl_kernel.write, (f"{D}/decoder0.0/create_ram_region", "region9"), OSError, errno.EBUSY),  # not next
        (cxl_kernel.read, ("/sys/no/such/file",), FileNotFoundError, errno.ENOENT),
        (cxl_kernel.write, (f"{D}/mem99/serial", "1"), FileNotFoundError, errno.ENOENT),
        (cxl_kernel.listdir, ("/sys/bus/nope",), FileNotFoundError, errno.ENOENT),
        (cxl_kernel.readlink, (f"{D}/mem99",), FileNotFoundError, errno.ENOENT),
        (cxl_kernel.read, ("/sys/bus/cxl/flush",), PermissionError, errno.EACCES),        # write-only
        (cxl_kernel.write, (f"{D}/mem0/serial", "1"), PermissionError, errno.EACCES),     # read-only
        (cxl_kernel.read, ("/sys/bus",), IsADirectoryError, errno.EISDIR),
        (cxl_kernel.write, ("/sys/bus", "1"), IsADirectoryError, errno.EISDIR),
        (cxl_kernel.listdir, ("/sys/bus/cxl/flush",), NotADirectoryError, errno.ENOTDIR),
        (cxl_kernel.readlink, ("/sys/bus",), OSError, errno.EINVAL),                     # not a link
    ]
    for fn, args, exc, err in cases:
        with pytest.raises(exc) as e:
            fn(*args)
        assert (e.value.errno, e.value.strerror, e.value.filename) == (err, os.strerror(err), args[0]), args
    assert not cxl_kernel.exists("/sys/no/such/file") and cxl_kernel.exists(f"{D}/mem0")


def test_paths_are_absolute_below_sys_or_proc(cxl_kernel):
    for p in ("bus/cxl/devices", "/dev/cxl/mem0", "/system"):
        with pytest.raises(ValueError):
            cxl_kernel.read(p)


def test_links_and_listings(cxl_kernel):
    assert cxl_kernel.readlink(f"{D}/mem0").startswith("../../../devices/platform/")
    assert cxl_kernel.realpath(f"{D}/mem0").startswith("/sys/devices/platform/cxl_host_bridge.0/")
    assert cxl_kernel.realpath(f"{D}/mem0/serial") == cxl_kernel.realpath(f"{D}/mem0") + "/serial"
    assert cxl_kernel.realpath("/sys") == "/sys"
    with pytest.raises(FileNotFoundError):
        cxl_kernel.realpath(f"{D}/mem99")
    assert ".cxlsys" not in cxl_kernel.listdir("/sys")
    assert {"bus", "devices", "module"} <= set(cxl_kernel.listdir("/sys"))
    assert cxl_kernel.listdir("/sys/bus/cxl/drivers/cxl_region")[:0] == []


def test_proc_meminfo_and_iomem(cxl_kernel):
    assert sorted(cxl_kernel.listdir("/proc")) == ["iomem", "meminfo"]
    meminfo = cxl_kernel.read("/proc/meminfo")
    assert meminfo.startswith("MemTotal:") and cxl_kernel.meminfo_kb("MemTotal") > 0
    assert cxl_kernel.meminfo_kb("MemFree") <= cxl_kernel.meminfo_kb("MemTotal")
    with pytest.raises(KeyError):
        cxl_kernel.meminfo_kb("NoSuchField")
    iomem = cxl_kernel.read("/proc/iomem")
    assert "CXL Window 0" in iomem and "region0" in iomem
    assert cxl_kernel.realpath("/proc/iomem") == "/proc/iomem"
    with pytest.raises(FileNotFoundError):
        cxl_kernel.read("/proc/cpuinfo")


# ------------------------------------------------------------------ flows

def test_provision_and_online_block_by_block_before_7_3(cxl_kernel):
    before = cxl_kernel.meminfo_kb()
    region, dax = cxl_kernel.provision_ram_region()           # decoder0.1: 2 ways, 256 MiB each
    assert (region, dax) == ("region1", "dax1.0")
    assert cxl_kernel.value(f"{D}/{region}/size") == hex(512 << 20)
    assert not cxl_kernel.exists(f"/sys/bus/dax/devices/{dax}/state")
    blocks = cxl_kernel.dax_blocks(dax)
    mem = "/sys/devices/system/memory"
    assert blocks and {cxl_kernel.value(f"{mem}/{b}/state") for b in blocks} == {"offline"}
    assert cxl_kernel.meminfo_kb() == before
    cxl_kernel.online(dax)
    assert {cxl_kernel.value(f"{mem}/{b}/state") for b in blocks} == {"online"}
    assert {cxl_kernel.value(f"{mem}/{b}/valid_zones") for b in blocks} == {"Movable"}
    assert cxl_kernel.meminfo_kb() == before + (512 << 20 >> 10)
    cxl_kernel.online(dax)                                     # again: nothing left to do
    assert cxl_kernel.meminfo_kb() == before + (512 << 20 >> 10)


@pytest.mark.cxl(topology="qemu-hdm-db", kernel="7.3")
def test_provision_and_online_through_the_7_3_state(cxl_kernel):
    before = cxl_kernel.meminfo_kb()
    region, dax = cxl_kernel.provision_ram_region()           # decoder0.0: 1 way, 256 MiB
    state = f"/sys/bus/dax/devices/{dax}/state"
    assert (region, dax) == ("region0", "dax0.0") and cxl_kernel.read(state) == "offline\n"
    cxl_kernel.online(dax, zone="online_kernel")
    assert cxl_kernel.read(state) == "online_kernel\n"
    assert cxl_kernel.meminfo_kb() == before + (256 << 20 >> 10)
    mem = "/sys/devices/system/memory"
    assert {cxl_kernel.value(f"{mem}/{b}/valid_zones") for b in cxl_kernel.dax_blocks(dax)} == {"Normal"}
    cxl_kernel.online(dax, zone="online_kernel")               # already: no write
    assert cxl_kernel.read(state) == "online_kernel\n"


@pytest.mark.parametrize("cxl_kernel,roots", [
    ({"topology": "cxl_test"}, ["decoder0.1", "decoder0.0", "decoder0.5"]),
    ({"topology": "qemu-hdm-db"}, ["decoder0.0"]),
    ({"topology": "bi-direct"}, ["decoder0.0"]),
], indirect=["cxl_kernel"])
def test_decoder_choice_is_the_models(cxl_kernel, roots):
    """The file-based choice of free endpoint decoders is cxlsys.testing's, made on the model."""
    ref = _reference(cxl_kernel)
    for root in roots:
        assert cxl_kernel.free_endpoint_decoders(root) == free_endpoint_decoders(ref.system, root), root
    root = roots[0]
    size = len(free_endpoint_decoders(ref.system, root)) << 28
    assert cxl_kernel.provision_ram_region(root, size) == provision_ram_region(ref.sysfs, root, size)
    for r in roots:                                             # the decoders used are no longer free
        assert cxl_kernel.free_endpoint_decoders(r) == free_endpoint_decoders(ref.system, r), r


def test_provisioning_writes_what_the_testing_helper_writes(cxl_kernel):
    ref = _reference(cxl_kernel)
    got = cxl_kernel.provision_ram_region("decoder0.1", 1 << 30, bind=False)
    assert got == provision_ram_region(ref.sysfs, "decoder0.1", 1 << 30, bind=False)
    region = got[0]
    for name in ref.listdir(f"{D}/{region}"):
        p = f"{D}/{region}/{name}"
        assert _outcome(cxl_kernel.read, p) == _outcome(ref.read, p), name
    for e in free_endpoint_decoders(_reference(cxl_kernel).system):
        for attr in ("mode", "dpa_size", "dpa_resource", "region"):
            p = f"{D}/{e}/{attr}"
            assert _outcome(cxl_kernel.read, p) == _outcome(ref.read, p), p


# ------------------------------------------------------------------ the allocation oracle

def test_mm_alloc_candidates_is_the_models(cxl_kernel):
    ref = _reference(cxl_kernel)
    nodes = cxl_kernel.mm.alloc_candidates("GFP_HIGHUSER_MOVABLE")
    assert isinstance(nodes, list) and all(isinstance(n, int) for n in nodes) and 0 in nodes
    assert nodes == ref.system.mm.alloc_candidates("GFP_HIGHUSER_MOVABLE")
    for gfp, kw in [("GFP_KERNEL", {}), ("GFP_KERNEL|__GFP_THISNODE", {"nid": 0}), ("GFP_ATOMIC", {"interrupt": True}),
                    ("GFP_KERNEL", {"policy": "bind:0"}), ("GFP_USER", {"cpuset": [0]})]:
        assert cxl_kernel.mm.alloc_candidates(gfp, **kw) == ref.system.mm.alloc_candidates(gfp, **kw)


def test_mm_set_mempolicy_and_its_refusals(cxl_kernel):
    ref = _reference(cxl_kernel)
    with pytest.raises(OSError) as e:
        cxl_kernel.mm.set_mempolicy("bind:77")                 # no such node: the kernel's EINVAL
    assert type(e.value) is OSError and (e.value.errno, e.value.strerror) == (errno.EINVAL, os.strerror(errno.EINVAL))
    with pytest.raises(KernelError):
        ref.system.mm.set_mempolicy("bind:77")                 # the model's own form
    with pytest.raises(ValueError):
        cxl_kernel.mm.set_mempolicy("sometimes:0")             # not a policy: ValueError, as is
    with pytest.raises(ValueError):
        cxl_kernel.mm.alloc_candidates("GFP_NO_SUCH_FLAG")
    eff = cxl_kernel.mm.set_mempolicy("bind:0")
    assert eff == mm_call(ref.system, "set_mempolicy", ["bind:0"]) and eff["nodes"] == [0]
    assert cxl_kernel.mm.alloc_candidates("GFP_KERNEL") == ref.system.mm.alloc_candidates("GFP_KERNEL")
    cxl_kernel.mm.set_mempolicy("default")
    ref.system.mm.set_mempolicy("default")
    assert cxl_kernel.mm.alloc_candidates("GFP_KERNEL") == ref.system.mm.alloc_candidates("GFP_KERNEL")


@attrs.frozen
class _FakePolicy:
    mode: str
    nodes: tuple


class _FakeMm:
    """A tiny oracle with the real one's two functions: checks the wiring, not the rules."""

    def __init__(self):
        self.calls = []

    def alloc_candidates(self, gfp, *, nid=None, policy=None, interrupt=False, cpuset=None):
        self.calls.append((gfp, nid, policy, interrupt, cpuset))
        if gfp == "BAD":
            raise ValueError("gfp 'BAD': not a flag")
        return (1, 0) if interrupt else [0]

    def set_mempolicy(self, policy):
        if policy == "bind:9":
            raise KernelError(errno.EINVAL, "set_mempolicy: node 9 is not possible")
        return _FakePolicy("bind", (0,))


def test_mm_wiring_in_process_and_over_the_control_socket_agree():
    """The in-process wrapper and the control command + its client turn the oracle's answers into
    the same values and exceptions."""
    system = SimpleNamespace(lock=threading.RLock(), mm=_FakeMm(), journal_record=lambda op, **fields: None)
    local = _InProcessMm(system)

    def remote(fn, *args, **kwargs):
        return mm_raise(dispatch(system, {"cmd": "mm", "fn": fn, "args": list(args), "kwargs": kwargs},
                                 {"changed": lambda: None}))

    for via in (lambda fn, *a, **kw: getattr(local, fn)(*a, **kw), remote):
        assert via("alloc_candidates", "GFP_KERNEL", nid=0, policy=None, interrupt=True) == [1, 0]
        assert via("alloc_candidates", "GFP_USER", nid=None, policy="bind:0", interrupt=False, cpuset=[0]) == [0]
        assert via("set_mempolicy", "bind:0") == {"mode": "bind", "nodes": [0]}
        with pytest.raises(OSError) as e:
            via("set_mempolicy", "bind:9")
        assert type(e.value) is OSError and (e.value.errno, e.value.strerror) == (errno.EINVAL, "Invalid argument")
        with pytest.raises(ValueError, match="not a flag"):
            via("alloc_candidates", "BAD", nid=None, policy=None, interrupt=False)
        with pytest.raises(TypeError):
            via("set_mempolicy", "bind:0", bogus=1)
    assert system.mm.calls[-3:] == [("GFP_KERNEL", 0, None, True, None), ("GFP_USER", None, "bind:0", False, [0]),
                                    ("BAD", None, None, False, None)]
    rep = dispatch(system, {"cmd": "mm", "fn": "__init__"}, {"changed": lambda: None})
    assert rep["rc"] == 2 and "unknown function" in rep["err"]
    with pytest.raises(RuntimeError):
        mm_raise(rep)


# ------------------------------------------------------------------ both backends, one transcript

@pytest.mark.cxl(topology="qemu-hdm-db", kernel="7.3")
def test_same_answers_as_in_process(cxl_kernel):
    """One scripted session, answer by answer, against a fresh in-process kernel (the mount run is
    the one that compares two backends)."""
    def session(k):
        out = []
        for p in (D, f"{D}/root0", "/sys/bus/dax/devices", "/sys/devices/system/memory", "/proc"):
            out.append(_outcome(k.listdir, p))
        out.append(_outcome(k.read, f"{D}/decoder0.0/create_ram_region"))
        out.append(_outcome(k.write, f"{D}/decoder0.0/create_ram_region", "region7"))
        out.append(_outcome(k.provision_ram_region))
        out.append(_outcome(k.online, "dax0.0"))
        out.append(_outcome(k.write, "/sys/bus/dax/devices/dax0.0/state", "online_kernel"))
        for p in ("/proc/meminfo", "/proc/iomem", "/sys/bus/dax/devices/dax0.0/state", f"{D}/region0/size"):
            out.append(_outcome(k.read, p))
        out.append(_outcome(k.readlink, f"{D}/region0"))
        out.append(_outcome(k.mm.alloc_candidates, "GFP_HIGHUSER_MOVABLE"))
        out.append(_outcome(k.mm.alloc_candidates, "GFP_KERNEL", policy="bind:1"))
        out.append(_outcome(k.mm.set_mempolicy, "bind:1"))
        out.append(_outcome(k.mm.set_mempolicy, "interleave:0-1"))
        out.append(_outcome(k.mm.alloc_candidates, "GFP_HIGHUSER_MOVABLE"))
        return out

    assert session(cxl_kernel) == session(_reference(cxl_kernel))


# ------------------------------------------------------------------ the examples, as a user runs them

def test_there_are_examples():
    assert EXAMPLES and ROOT / "examples" / "test_policy_example.py" in EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_in_process(example, pytester):
    r = pytester.runpytest_inprocess(str(example), "-p", "no:cacheprovider")
    outcomes = r.parseoutcomes()
    assert r.ret == 0 and outcomes.get("passed") and set(outcomes) == {"passed"}, r.stdout.str()


@pytest.mark.mount
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_through_a_mount(example):
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(example),
                        "--cxl-backend=mount"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0 and " passed" in r.stdout and "skipped" not in r.stdout, r.stdout + r.stderr
