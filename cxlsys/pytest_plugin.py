"""pytest plugin (registered by the ``pytest11`` entry point, so no ``-p`` is needed): fixtures that put
the model at a user's fingertips.

``cxl_kernel`` — a booted kernel behind a small file API and the allocation oracle, for policy tests
(:mod:`cxlsys.kernel_api`).  Choose the machine with a marker (defaults: ``cxl_test`` on ``6.12``)::

    @pytest.mark.cxl(topology="qemu-hdm-db", kernel="7.3", params={})
    def test_policy(cxl_kernel):
        region, dax = cxl_kernel.provision_ram_region()
        cxl_kernel.online(dax)
        assert 0 in cxl_kernel.mm.alloc_candidates("GFP_HIGHUSER_MOVABLE")

In-process by default (no root, no FUSE, milliseconds); ``pytest --cxl-backend=mount`` runs the same
tests through a real ``cxlsys mount`` (skipped where :func:`cxlsys.testing.can_mount` is false).

``cxl_sysfs`` — the cxl_test model projected at /sys inside pyfakefs.  Parametrize the topology,
module parameters or kernel profile indirectly::

    @pytest.mark.parametrize("cxl_sysfs", [{"topology": "bi-direct"}], indirect=True)
"""

import pytest

# the model is imported inside the fixtures: the plugin loads in every pytest run of the environment

BACKENDS = ("inprocess", "mount")
DEFAULT_TOPOLOGY = "cxl_test"
DEFAULT_KERNEL = "6.12"


def pytest_addoption(parser):
    group = parser.getgroup("cxlsys")
    group.addoption("--cxl-backend", choices=BACKENDS, default="inprocess",
                    help="where the cxl_kernel fixture's kernel runs: inprocess (default: the model in this "
                         "process) or mount (a real 'cxlsys mount' per test; needs root, /dev/fuse, fuse3)")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "cxl(topology='cxl_test', kernel='6.12', params=None): the machine the cxl_kernel fixture boots "
        "(a preset or TOML file, a kernel profile spec such as '7.3+private-nodes-v5' or None for the "
        "topology's own, module parameters)")


def _machine(request) -> dict:
    """topology/kernel/params from the closest ``cxl`` marker, then an indirect parameter."""
    opts = {"topology": DEFAULT_TOPOLOGY, "kernel": DEFAULT_KERNEL, "params": None}
    mark = request.node.get_closest_marker("cxl")
    if mark is not None:
        if mark.args:
            opts["topology"] = mark.args[0]
        unknown = set(mark.kwargs) - set(opts)
        if unknown:
            raise pytest.UsageError(f"@pytest.mark.cxl: unknown argument(s) {', '.join(sorted(unknown))}")
        opts.update(mark.kwargs)
    opts.update(getattr(request, "param", None) or {})
    return opts


@pytest.fixture
def cxl_kernel(request):
    """A booted cxlsys kernel for policy tests (``cxlsys.kernel_api.CxlKernel``), chosen by
    ``@pytest.mark.cxl(topology="cxl_test", kernel="6.12", params={...})`` (those are the defaults).

    Absolute paths as on a machine (``/sys/...``, ``/proc/meminfo``, ``/proc/iomem``):
    ``read(path) -> str``, ``write(path, str | bytes)`` (written as given: ``"1"`` and ``"1\\n"`` both
    work), ``exists``, ``listdir``, ``readlink``, ``realpath``; a refused store raises ``OSError`` with
    the kernel's errno, a missing path ``FileNotFoundError``.  ``.mm`` is the allocation oracle
    (``alloc_candidates(gfp, nid=, policy=, interrupt=) -> list[int]``, ``set_mempolicy(policy)``,
    refusals as ``OSError``); helpers ``provision_ram_region()``, ``online(dax)``, ``meminfo_kb()``,
    ``dax_blocks(dax)``.  In-process (no root, no FUSE; ``.system`` is the booted ``System``) unless
    ``pytest --cxl-backend=mount``: then through a real ``cxlsys mount`` (``.system`` is None).
    """
    opts = _machine(request)
    if request.config.getoption("cxl_backend", "inprocess") == "mount":
        from cxlsys.testing import MOUNT_SKIP_REASON, can_mount
        if not can_mount():
            pytest.skip(f"--cxl-backend=mount: {MOUNT_SKIP_REASON}")
        from cxlsys.kernel_api import MountedKernel
        kernel = MountedKernel(opts["topology"], opts["kernel"], opts["params"])
    else:
        from cxlsys.kernel_api import InProcessKernel
        kernel = InProcessKernel(opts["topology"], opts["kernel"], opts["params"])
    try:
        yield kernel
    finally:
        kernel.close()


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
