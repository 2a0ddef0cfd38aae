import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cxlsys.system import System  # noqa: E402
from cxlsys.sysfs import Sysfs  # noqa: E402


@pytest.fixture
def system():
    return System.boot("cxl_test")


@pytest.fixture
def fs(system):
    return Sysfs(system)


def can_mount() -> bool:
    return os.geteuid() == 0 and os.path.exists("/dev/fuse") and shutil.which("cxl") is not None \
        and shutil.which("fusermount3") is not None


needs_mount = pytest.mark.skipif(not can_mount(), reason="needs root, /dev/fuse, fuse3 and the cxl tool")


def cxlsys_run(script: str, topology: str = "cxl_test", params=(), timeout: int = 300, check: bool = True):
    """Run a bash script inside `cxlsys run`; returns CompletedProcess."""
    cmd = [sys.executable, "-m", "tools.cli", "run", "--topology", topology]
    for p in params:
        cmd += ["--param", p]
    cmd += ["--", "bash", "-c", "set -e\n" + script]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"cxlsys run failed ({r.returncode}):\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


# A 2-way ram region on decoder0.1 of cxl_test built with plain sysfs writes (cxl 76.1 refuses
# `create-region -t ram`): one free endpoint decoder on the 2nd memdev of each of host bridges 0
# and 1, 512M of DPA each, the region sized and targeted but not committed.  Leaves $d, $r, $e0, $e1.
RAM_REGION_SETUP = r'''
hb() { cxl list -M -p cxl_host_bridge.$1 | jq -r ".[$2].memdev"; }
d=/sys/bus/cxl/devices
m0=$(hb 0 1); m1=$(hb 1 1)
e0=$(cxl list -Di -d endpoint -m $m0 | jq -r 'map(select(.dpa_size == 0 or .dpa_size == null)) | .[0].decoder')
e1=$(cxl list -Di -d endpoint -m $m1 | jq -r 'map(select(.dpa_size == 0 or .dpa_size == null)) | .[0].decoder')
for e in $e0 $e1; do echo ram > $d/$e/mode; echo 0x20000000 > $d/$e/dpa_size; done
r=$(cat $d/decoder0.1/create_ram_region); echo $r > $d/decoder0.1/create_ram_region
echo 4096 > $d/$r/interleave_granularity; echo 2 > $d/$r/interleave_ways
echo 0x40000000 > $d/$r/size
echo $e0 > $d/$r/target0; echo $e1 > $d/$r/target1
'''
