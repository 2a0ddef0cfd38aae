"""Benchmark: `cxl list -BPEMDTR -i` through the cxlsys mount vs. a static tmpfs copy of the same
tree (the floor), measured in the same run.  Needs root (uses `cxlsys run`).

    .venv/bin/python bench/bench_cxl_list.py [--runs N] [--topology cxl_test] [--no-cache]

Prints the per-run times and the ratio to the tmpfs baseline (goal: within 1.5x).
"""

import argparse
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LOOP = r'''
s=$(date +%s.%N); for i in $(seq $1); do cxl list -BPEMDTR -i > /dev/null; done; echo "$(date +%s.%N) - $s" | bc
'''
INNER = r'''
set -e
N=$1; LOOP=$2
echo "fuse $(bash $LOOP $N)"
mkdir -p /tmp/static && cp -a /sys/. /tmp/static/ 2>/dev/null || true
echo "tmpfs $(unshare -m bash -c "mount --bind /tmp/static /sys && bash $LOOP $N")"
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--topology", default="cxl_test")
    ap.add_argument("--no-cache", action="store_true")
    a = ap.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
        f.write(INNER)
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as lp:
        lp.write(LOOP)
    cmd = [sys.executable, "-m", "cxlsys", "run", "--topology", a.topology]
    if a.no_cache:
        cmd.append("--no-cache")
    out = subprocess.run(cmd + ["--", "bash", f.name, str(a.runs), lp.name], cwd=ROOT, capture_output=True,
                         text=True)
    os.unlink(f.name)
    os.unlink(lp.name)
    if out.returncode:
        sys.exit(out.stderr)
    res = dict(line.split() for line in out.stdout.split("\n") if line.strip())
    fuse, tmpfs = float(res["fuse"]) / a.runs, float(res["tmpfs"]) / a.runs
    print(f"cxl list -BPEMDTR -i on {a.topology}, {a.runs} runs each")
    print(f"  tmpfs (static copy) {tmpfs * 1000:8.1f} ms/run   1.00x")
    print(f"  cxlsys FUSE         {fuse * 1000:8.1f} ms/run   {fuse / tmpfs:5.2f}x")


if __name__ == "__main__":
    main()
