"""pytest plugin (registered by the ``pytest11`` entry point, so no ``-p`` is needed): fixtures that put
the model at a user's fingertips.

``cxl_sysfs`` — the cxl_test model projected at /sys inside pyfakefs.  Parametrize the topology,
module parameters or kernel profile indirectly::

    @pytest.mark.parametrize("cxl_sysfs", [{"topology": "bi-direct"}], indirect=True)
"""

import pytest

# the model is imported inside the fixtures: the plugin loads in every pytest run of the environment


@pytest.fixture
def cxl_sysfs(request):
    """The cxlsys model as /sys in a pyfakefs fake filesystem (in-process: no root, no FUSE).

    Plain ``open``/``os.listdir``/``os.readlink`` on /sys see the model; a write reaches the
    attribute's store, a refused one raises ``OSError`` with the kernel's errno.  Yields a
    ``FakeSysfs`` (``.system`` is the booted ``System``).  Default: the ``cxl_test`` topology on the
    6.12 profile; parametrize indirectly with ``{"topology": ..., "params": {...}, "kernel": ...}``.
    """
    from pyfakefs.fake_filesystem_unittest import Patcher

    from cxlsys.fakefs import FakeSysfs
    from cxlsys.system import System
    opts = getattr(request, "param", None) or {}
    # boot first: the topology file is read from the real filesystem
    system = System.boot(opts.get("topology", "cxl_test"), opts.get("params"), kernel=opts.get("kernel"))
    with Patcher() as patcher:
        yield FakeSysfs(patcher.fs, system)
