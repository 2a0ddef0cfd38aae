"""Benchmark: memory hotplug at scale — the `large-2t` topology, a 2 TiB ram region = 16384 memory
blocks of 128 MiB on CPU-less node 2.

Part 1, in-process (no root needed): boot, online every block (sysfs state writes), offline them,
kmem unbind (remove 16384 blocks) and bind (add them again), a full projection snapshot.  Each
figure is also given per block and as a ratio to the same operation on `cxl_test` (4 blocks),
measured in the same run: a ratio near 1.0 per block means linear scaling.

Part 2, through the mount (root, `cxlsys run`): the real daxctl 76.1 — `list -D`, `online-memory`,
`offline-memory`, `reconfigure-device --mode=devdax` (kmem unbind: 16384 blocks vanish, the FUSE
adapter diffs the whole tree and invalidates what vanished) and back to `--mode=system-ram`
(add + online) — then the same list/online/offline on a static tmpfs copy of the tree (the floor:
the same syscalls without the model), with the ratio to it.

    .venv/bin/python bench/bench_hotplug.py [--topology large-2t] [--no-mount] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cxlsys.sysfs import Sysfs  # noqa: E402
from cxlsys.system import System  # noqa: E402


def _t(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def in_process(topology: str, runs: int) -> dict:
    res = {}
    sys_: System | None = None

    def boot():
        nonlocal sys_
        sys_ = System.boot(topology)

    res["boot"] = min(_t(boot) for _ in range(runs))
    assert sys_ is not None
    fs = Sysfs(sys_)
    blocks = [sys_.memory.blocks[i] for i in sorted(sys_.memory.blocks)]
    dd = next(d for d in sys_.dax_bus.devices if d.driver is not None and d.driver.name == "kmem")
    nid = blocks[0].nid
    paths = [f"devices/system/node/node{nid}/memory{b.phys_index}/state" for b in blocks]

    def online():
        for p in paths:
            fs.write(p, b"online_movable\0")

    def offline():
        for p in paths:
            fs.write(p, b"offline\0")

    def scan():
        for b in blocks:
            fs.read(f"devices/system/memory/memory{b.phys_index}/phys_index")
            fs.read(f"devices/system/memory/memory{b.phys_index}/valid_zones")

    def unbind():
        fs.write("bus/dax/drivers/kmem/unbind", dd.name.encode() + b"\0")

    def bind():
        fs.write("bus/dax/drivers/kmem/bind", dd.name.encode() + b"\0")

    res["scan (phys_index+valid_zones)"] = _t(scan)
    res["online all"] = _t(online)
    assert all(b.online for b in blocks)
    res["offline all"] = _t(offline)
    res["kmem unbind (remove)"] = _t(unbind)
    assert not sys_.memory.blocks
    res["kmem bind (add)"] = _t(bind)
    assert len(sys_.memory.blocks) == len(blocks)
    res["snapshot (whole tree)"] = _t(fs.snapshot)
    res["_blocks"] = len(blocks)
    res["_entries"] = len(fs.snapshot())
    return res


MOUNT_SCRIPT = r'''
set -e
dev=$(daxctl list -D | jq -r '.[0].chardev')
t() { local s=$(date +%s.%N); "$@" > /dev/null 2>&1; echo "$(date +%s.%N) - $s" | bc; }
echo "fuse list $(t daxctl list -D)"
echo "fuse online $(t daxctl online-memory $dev)"
echo "fuse check $(daxctl list -d $dev | jq -c '.[0] | [.online_memblocks, .total_memblocks, .movable]')"
echo "fuse offline $(t daxctl offline-memory $dev)"
echo "fuse devdax $(t daxctl reconfigure-device --mode=devdax $dev)"
echo "fuse system-ram $(t daxctl reconfigure-device --mode=system-ram $dev)"
echo "fuse check2 $(daxctl list -d $dev | jq -c '.[0] | [.online_memblocks, .total_memblocks, .movable]')"
daxctl offline-memory $dev > /dev/null 2>&1
s=$(date +%s.%N); mkdir -p /tmp/static && cp -a /sys/. /tmp/static/ 2>/dev/null || true
echo "copy $(echo "$(date +%s.%N) - $s" | bc)"
unshare -m bash -c "
  mount --bind /tmp/static /sys
  t() { local s=\$(date +%s.%N); \"\$@\" > /dev/null 2>&1; echo \"\$(date +%s.%N) - \$s\" | bc; }
  echo \"tmpfs list \$(t daxctl list -D)\"
  echo \"tmpfs online \$(t daxctl online-memory $dev)\"
  echo \"tmpfs offline \$(t daxctl offline-memory $dev)\"
"
'''


def through_mount(topology: str) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
        f.write(MOUNT_SCRIPT)
    try:
        out = subprocess.run([sys.executable, "-m", "cxlsys", "run", "--topology", topology, "--",
                              "bash", f.name], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    finally:
        os.unlink(f.name)
    if out.returncode:
        sys.exit(f"cxlsys run failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    res = {}
    for line in out.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3:
            res[(parts[0], parts[1])] = parts[2]
        elif len(parts) == 2:
            res[(parts[0], "")] = parts[1]
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--topology", default="large-2t")
    ap.add_argument("--baseline", default="cxl_test", help="small topology for the per-block ratio")
    ap.add_argument("--runs", type=int, default=1, help="boots to take the best of")
    ap.add_argument("--no-mount", action="store_true", help="skip part 2 (needs root and daxctl)")
    a = ap.parse_args()

    big = in_process(a.topology, a.runs)
    small = in_process(a.baseline, max(a.runs, 3))
    n, n0 = big["_blocks"], small["_blocks"]
    e, e0 = big["_entries"], small["_entries"]
    print(f"in-process: {a.topology} ({n} blocks, {e} sysfs entries) vs {a.baseline} ({n0} blocks, {e0} entries);"
          f" ratio = cost per unit on {a.topology} / cost per unit on {a.baseline} (1.0 = linear scaling)")
    for k, v in big.items():
        if k.startswith("_"):
            continue
        unit, u, u0 = ("entry", e, e0) if k in ("boot", "snapshot (whole tree)") else ("block", n, n0)
        ratio = (v / u) / (small[k] / u0) if small[k] else float("nan")
        print(f"  {k:<30} {v * 1000:10.1f} ms   {v / u * 1e6:8.2f} us/{unit:<5}   x{ratio:6.2f}")

    if a.no_mount:
        return
    if os.geteuid() != 0:
        print("through the mount: skipped (needs root)")
        return
    m = through_mount(a.topology)
    print(f"through the mount (daxctl 76.1, {n} blocks): fuse vs static tmpfs copy of the same tree")
    for op in ("list", "online", "offline"):
        f, t = float(m[("fuse", op)]), float(m[("tmpfs", op)])
        print(f"  daxctl {op:<28} fuse {f:7.2f} s   tmpfs {t:7.2f} s   x{f / t:6.2f}")
    for op in ("devdax", "system-ram"):
        print(f"  daxctl reconfigure --mode={op:<12} fuse {float(m[('fuse', op)]):7.2f} s")
    print(f"  cp -a of the tree to tmpfs          {float(m[('copy', '')]):7.2f} s")
    print(f"  checks: after online {m[('fuse', 'check')]}, after system-ram {m[('fuse', 'check2')]}")


if __name__ == "__main__":
    main()
