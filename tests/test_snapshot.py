"""``cxlsys snapshot``: the tree as plain files.  In-process, the copy dumps (tools' format) exactly
as the projection does; through a real mount, the real ``cxl list`` on the copy bound over /sys
answers what it answers on the mount, after a provisioned change too."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys

import pytest

from cxlsys.snapshot import write_snapshot
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.testing import cxlsys_run, provision_ram_region
from cxlsys.treedump import dump_model, dump_real

ROOTS = ["/sys/bus", "/sys/devices", "/sys/class", "/sys/module"]


def test_snapshot_dumps_as_the_projection_does(tmp_path):
    s = System.boot("cxl_test")
    fs = Sysfs(s)
    provision_ram_region(fs)
    st = write_snapshot(fs, str(tmp_path / "sys"))
    assert st.dirs > 400 and st.links > 700 and st.files > 2000
    real, model = dump_real(str(tmp_path / "sys"), ROOTS, skip=None), dump_model(fs, ROOTS, skip=None)
    assert len(real) == len(model)
    empty = 0
    for a, b in zip(real, model):
        if a != b:          # what reads fail with on the model is an empty file in the copy
            head, _, err = b.rpartition("\t")
            assert a == head + "\t" and err.startswith("<") and err.endswith(">"), (a, b)
            empty += 1
    assert 0 < empty <= st.unreadable
    # relative links, as sysfs's: the copy resolves inside itself
    link = tmp_path / "sys/bus/cxl/devices/mem0"
    assert not os.readlink(link).startswith("/") and (link / "serial").read_text() == "0x0\n"
    # an unreadable attribute is an empty file with the attribute's mode
    e = fs.lookup("bus/cxl/flush")
    assert e is not None and not e.readable
    f = tmp_path / "sys/bus/cxl/flush"
    assert f.read_bytes() == b"" and stat.S_IMODE(f.lstat().st_mode) == e.mode


def test_snapshot_of_a_subtree_and_refusals(tmp_path):
    fs = Sysfs(System.boot("cxl_test"))
    st = write_snapshot(fs, str(tmp_path / "cxl"), "bus/cxl")
    assert (tmp_path / "cxl/devices/region0").is_symlink() and st.dirs >= 3
    (tmp_path / "full").mkdir()
    (tmp_path / "full/x").write_text("")
    with pytest.raises(FileExistsError):
        write_snapshot(fs, str(tmp_path / "full"))
    r = subprocess.run([sys.executable, "-m", "cxlsys", "snapshot", str(tmp_path / "full")],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 1 and r.stderr.startswith("cxlsys snapshot: ") and "Traceback" not in r.stderr


@pytest.mark.mount
def test_cxl_list_on_the_snapshot_answers_as_on_the_mount(tmp_path):
    """Inside ``cxlsys run``: provision a region with the real cxl tool, snapshot the running
    daemon, then ``cxl list`` on the copy bound over /sys (a nested namespace) equals the mount's."""
    w = tmp_path
    script = f"""
    hb() {{ cxl list -M -p cxl_host_bridge.$1 | jq -r ".[$2].memdev"; }}
    cxl create-region -d decoder0.3 -m $(hb 0 0) $(hb 1 0) >/dev/null
    cxl list -BPEMDTR -i > {w}/mount.json
    {sys.executable} -m cxlsys snapshot {w}/snap >&2
    unshare -m sh -c "mount --bind {w}/snap /sys && cxl list -BPEMDTR -i" > {w}/snap.json
    """
    r = cxlsys_run(script, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    mount = json.loads((w / "mount.json").read_text())
    assert _canon(json.loads((w / "snap.json").read_text())) == _canon(mount)   # readdir order aside
    assert len(set(re.findall(r'"region(\d+)"', (w / "mount.json").read_text()))) == 2   # the new one too
    assert "directories" in r.stderr


def _canon(x):
    """The same JSON with every list sorted: cxl list orders by readdir, which tmpfs orders its own way."""
    if isinstance(x, dict):
        return {k: _canon(v) for k, v in x.items()}
    if isinstance(x, list):
        return sorted((_canon(v) for v in x), key=lambda v: json.dumps(v, sort_keys=True))
    return x
