"""Exactness of the cached mount: after every write of a long provisioning scenario — a BI region
over HDM-DB devices, commit, its dax device on kmem, memory blocks onlined and offlined, kmem and
cxl_mem unbound and rebound, refused writes in between, teardown — what the FUSE mount serves (the
kernel's entry and attribute caches on, long timeouts) equals a fresh projection of the model
taken inside the daemon, and every path it served before and the model no longer has is gone.

Run with the default mode (the kernel keeps file contents in its page cache; the adapter drops a
file's pages when its value may have changed, per the attribute's declared scope), the same with
concurrent readers (two threads reading the memory blocks and CXL devices in a loop while the
writes and checks go on: reads racing invalidations), and ``CXLSYS_DIRECT_IO=1`` (every read asks
the daemon).
"""

import errno
import os
import re
import subprocess
import sys
import threading

import pytest

from cxlsys.cli.main import control_path
from cxlsys.system import System
from cxlsys.testing import endpoint_decoders, free_endpoint_decoders, memdevs
from cxlsys.treedump import dump_real
from fuse_mount.client import request

ROOTS = ["/sys/bus", "/sys/devices", "/sys/module", "/sys/kernel", "/sys/dev"]
# files whose value is the clock itself: tracefs per-CPU ``stats`` ("now ts: ...") reads differently
# at every read, on a kernel too; their lines are compared with the value left out
CLOCK_FILES = re.compile(r"/per_cpu/cpu\d+/stats\tfile\t")


def _untimed(line: str) -> str:
    m = CLOCK_FILES.search(line)
    return line[:m.end()] + line[m.end():].split("\t", 1)[0] if m else line


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _decoders():
    """memdev serial -> its first endpoint decoder, as the daemon will name them (same probe order)."""
    s = System.boot("qemu-hdm-db")
    return {m.info.serial: endpoint_decoders(m)[0].name for m in memdevs(s)}


class Mounted:
    def __init__(self, mp):
        self.mp = mp
        self.ctl = control_path(str(mp))
        self.seen: set = set()
        self.steps = 0

    def write(self, path: str, value, err=None):
        """``echo value > /sys/path`` through the mount, then check the mount against the model."""
        data = value if isinstance(value, bytes) else f"{value}\n".encode()
        try:
            fd = os.open(os.path.join(self.mp, path), os.O_WRONLY)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            got = None
        except OSError as e:
            got = e.errno
        assert got == err, f"write {value!r} > {path}: errno {got}, expected {err}"
        self.check(f"after {value!r} > {path}")

    def read(self, path: str) -> str:
        with open(os.path.join(self.mp, path)) as f:
            return f.read().strip()

    def listdir(self, path: str) -> list:
        return sorted(os.listdir(os.path.join(self.mp, path)))

    def check(self, what: str):
        self.steps += 1
        dump = request(self.ctl, {"cmd": "dump", "roots": ROOTS, "all": True})["out"]
        model = [_untimed(x) for x in dump.splitlines()]
        served = [_untimed(x) for x in dump_real(str(self.mp), ROOTS, skip=None)]
        if served != model:
            ms, ss = set(model), set(served)
            diff = [f"model only:  {x}" for x in sorted(ms - ss)[:20]] + \
                   [f"served only: {x}" for x in sorted(ss - ms)[:20]]
            pytest.fail(f"step {self.steps} ({what}): the mount differs from the model\n" + "\n".join(diff))
        paths = {line.split("\t", 1)[0] for line in model}
        for p in sorted(self.seen - paths):          # served before, gone now: no stale entry left
            with pytest.raises(FileNotFoundError):
                os.lstat(os.path.join(self.mp, p[len("/sys/"):]))
        self.seen = paths


    def control(self, cmd: str, *args):
        """A control-socket command (``modprobe``), then the same check as after a write."""
        rep = request(self.ctl, {"cmd": cmd, "args": list(args)})
        assert rep["rc"] == 0, rep
        self.check(f"after {cmd} {' '.join(args)}")


def _reader(mp, stop: threading.Event, counts: list) -> None:
    """Read every file below the memory blocks and the CXL devices, again and again, until told."""
    while not stop.is_set():
        for top in ("devices/system/memory", "bus/cxl/devices", "bus/dax/devices"):
            for dirpath, _dirs, files in os.walk(os.path.join(mp, top), followlinks=False):
                for f in files:
                    try:
                        with open(os.path.join(dirpath, f), "rb", buffering=0) as fh:
                            fh.read(4096)
                        counts[0] += 1
                    except OSError:
                        pass
                if stop.is_set():
                    return


@pytest.fixture(params=["kernel_cache", "kernel_cache+readers", "direct_io"])
def mount(request, tmp_path):
    """mount(topology) -> a checked Mounted; the contents mode is the parameter."""
    cli = [sys.executable, "-m", "cxlsys"]
    mps = []
    stop = threading.Event()
    readers: list = []
    counts = [0]

    def start(topology: str) -> Mounted:
        mp = tmp_path / f"sys{len(mps)}"
        mp.mkdir()
        env = dict(os.environ)
        env.pop("CXLSYS_DIRECT_IO", None)
        if request.param == "direct_io":
            env["CXLSYS_DIRECT_IO"] = "1"
        subprocess.run(cli + ["mount", "--topology", topology, str(mp)], cwd=REPO, env=env, check=True,
                       timeout=60)
        mps.append(mp)
        m = Mounted(mp)
        m.check("mounted")
        if request.param.endswith("+readers"):
            for _ in range(2):
                t = threading.Thread(target=_reader, args=(str(mp), stop, counts), daemon=True)
                t.start()
                readers.append(t)
        return m

    yield start
    stop.set()
    for t in readers:
        t.join(timeout=60)
    for mp in mps:
        subprocess.run(cli + ["umount", str(mp)], cwd=REPO, timeout=60)
    if readers:
        assert counts[0] > 0, "the concurrent readers read nothing"


@pytest.mark.mount
def test_bi_region_dax_and_hotplug(mount):
    m = mount("qemu-hdm-db")
    dec = _decoders()
    cxl = "bus/cxl/devices"
    # DPA and BI on the two HDM-DB devices; a refused BI write on a plain one changes nothing
    for serial in (1, 2):
        m.write(f"{cxl}/{dec[serial]}/mode", "ram")
        m.write(f"{cxl}/{dec[serial]}/bi", 1)
        m.write(f"{cxl}/{dec[serial]}/dpa_size", "0x10000000")
    m.write(f"{cxl}/{dec[3]}/bi", 1, err=errno.ENXIO)
    # a 2-way BI region: create, geometry, size (targetN appear), targets, commit, bind (dax region, kmem)
    r = m.read(f"{cxl}/decoder0.0/create_ram_bi_region")
    m.write(f"{cxl}/decoder0.0/create_ram_bi_region", r)
    m.write(f"{cxl}/{r}/interleave_granularity", 4096)
    m.write(f"{cxl}/{r}/interleave_ways", 3, err=errno.EINVAL)
    m.write(f"{cxl}/{r}/interleave_ways", 2)
    m.write(f"{cxl}/{r}/size", "0x20000000")
    m.write(f"{cxl}/{r}/target0", dec[1])
    m.write(f"{cxl}/{r}/target1", dec[3], err=errno.EINVAL)
    m.write(f"{cxl}/{r}/target1", dec[2])
    m.write(f"{cxl}/{r}/commit", 1)
    m.write("bus/cxl/drivers/cxl_region/bind", r)
    dax = m.listdir("bus/dax/devices")
    assert dax, "the committed ram region has a dax device"
    dd = dax[0]
    blocks = [b for b in m.listdir("devices/system/memory") if b.startswith("memory")]
    assert blocks, "kmem added memory blocks"
    # hotplug: online every block movable, offline one, online it again, a refused online
    for b in blocks:
        m.write(f"devices/system/memory/{b}/state", "online_movable")
    m.write(f"devices/system/memory/{blocks[0]}/state", "online", err=errno.EINVAL)
    m.write(f"devices/system/memory/{blocks[0]}/state", "offline")
    m.write(f"devices/system/memory/{blocks[0]}/online", 1)
    for b in blocks:
        m.write(f"devices/system/memory/{b}/state", "offline")
    # kmem unbound (blocks and the node go), device_dax bound, back to kmem
    m.write("bus/dax/drivers/kmem/unbind", dd)
    m.write(f"bus/dax/devices/{dd}/size", 0)
    m.write(f"bus/dax/devices/{dd}/size", 0x10000000)
    m.write("bus/dax/drivers/device_dax/new_id", dd)
    m.write("bus/dax/drivers/device_dax/unbind", dd)
    m.write("bus/dax/drivers/kmem/bind", dd)
    m.write("memory_hotplug/parameters/online_policy", "x", err=errno.ENOENT)
    m.write("module/memory_hotplug/parameters/online_policy", "auto-movable")
    m.write("devices/system/memory/auto_online_blocks", "online_movable")
    m.write("bus/dax/drivers/kmem/unbind", dd)
    m.write("bus/dax/drivers/kmem/bind", dd)
    m.write("devices/system/memory/auto_online_blocks", "offline")
    # teardown with memory online: the range leaks; the region decommits; an endpoint goes and comes
    m.write(f"{cxl}/{r}/commit", 0)
    m.write(f"{cxl}/{r}/target1", "")
    m.write("bus/cxl/drivers/cxl_mem/unbind", "mem1")
    m.write("bus/cxl/drivers/cxl_mem/bind", "mem1")
    m.write(f"{cxl}/decoder0.0/delete_region", r)
    m.write(f"{cxl}/{dec[1]}/dpa_size", 0)
    assert m.steps > 40


@pytest.mark.mount
def test_ram_region_on_a_cpu_node_and_module_reload(mount):
    """cxl_test: the window's node keeps its CPUs and boot memory, so nodeN/ stays while its memory
    block links come and go; then ``modprobe -r cxl_test`` / ``modprobe cxl_test``."""
    m = mount("cxl_test")
    cxl = "bus/cxl/devices"
    e0, e1 = free_endpoint_decoders(System.boot("cxl_test"), "decoder0.1")   # one below each host bridge
    for e in (e0, e1):
        m.write(f"{cxl}/{e}/mode", "ram")
        m.write(f"{cxl}/{e}/dpa_size", "0x20000000")
    r = m.read(f"{cxl}/decoder0.1/create_ram_region")
    m.write(f"{cxl}/decoder0.1/create_ram_region", r)
    m.write(f"{cxl}/{r}/interleave_granularity", 4096)
    m.write(f"{cxl}/{r}/interleave_ways", 2)
    m.write(f"{cxl}/{r}/size", "0x40000000")
    m.write(f"{cxl}/{r}/target0", e0)
    m.write(f"{cxl}/{r}/target1", e1)
    m.write(f"{cxl}/{r}/commit", 1)
    m.write("bus/cxl/drivers/cxl_region/bind", r)
    dd = "dax" + r[len("region"):] + ".0"
    nodes = [n for n in m.listdir("devices/system/node") if n.startswith("node")]
    for i in range(2):                                   # kmem off and on again: blocks re-created
        blocks = [b for b in m.listdir("devices/system/memory") if b.startswith("memory")]
        for b in blocks[-4:]:
            m.write(f"devices/system/memory/{b}/online", 1)
        for b in blocks[-4:]:
            m.write(f"devices/system/memory/{b}/online", 0)
        m.write("bus/dax/drivers/kmem/unbind", dd)
        m.write("bus/dax/drivers/kmem/bind", dd)
    assert [n for n in m.listdir("devices/system/node") if n.startswith("node")] == nodes
    m.write("bus/cxl/drivers/cxl_mem/unbind", "mem2")            # a region member goes: decoder killed
    m.control("modprobe", "-r", "cxl_test")
    m.control("modprobe", "cxl_test", "interleave_arithmetic=1")
    m.write("bus/cxl/flush", 2, err=errno.EINVAL)
