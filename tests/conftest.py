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
