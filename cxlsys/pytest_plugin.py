"""pytest plugin: ``cxl_sysfs`` — the cxl_test model projected at /sys inside pyfakefs.

Enable with ``-p cxlsys.pytest_plugin`` (or ``pytest_plugins = ["cxlsys.pytest_plugin"]``).
Parametrize the topology, module parameters or kernel profile indirectly::

    @pytest.mark.parametrize("cxl_sysfs", [{"topology": "bi-direct"}], indirect=True)
"""

import pytest

from cxlsys.fakefs import FakeSysfs
from cxlsys.system import System


@pytest.fixture
def cxl_sysfs(request):
    from pyfakefs.fake_filesystem_unittest import Patcher
    opts = getattr(request, "param", None) or {}
    # boot first: the topology file is read from the real filesystem
    system = System.boot(opts.get("topology", "cxl_test"), opts.get("params"), kernel=opts.get("kernel"))
    with Patcher() as patcher:
        yield FakeSysfs(patcher.fs, system)
