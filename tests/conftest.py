import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))       # the repository's tools/ (golden diff) for the golden tests

from cxlsys.sysfs import Sysfs  # noqa: E402
from cxlsys.system import System  # noqa: E402
from cxlsys.testing import MOUNT_SKIP_REASON, can_mount, invariant_checks  # noqa: E402


@pytest.fixture
def system():
    return System.boot("cxl_test")


@pytest.fixture
def fs(system):
    return Sysfs(system)


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.mount``: the test runs the real tools against a FUSE mount (``cxlsys run``);
    skipped where ``cxlsys.testing.can_mount()`` says that cannot work here."""
    marked = [item for item in items if item.get_closest_marker("mount") is not None]
    if marked and not can_mount():
        skip = pytest.mark.skip(reason=MOUNT_SKIP_REASON)
        for item in marked:
            item.add_marker(skip)


def pytest_runtest_setup(item):
    """``@pytest.mark.golden(*files)``: the golden-6.12 reference data must be there — a skip on a
    developer's machine without it, a failure in CI (``CI=true``), where it always is."""
    for mark in item.iter_markers("golden"):
        missing = [f for f in mark.args if not os.path.exists(f)]
        if missing:
            msg = f"golden-6.12 reference data not found: {', '.join(missing)} (set CXLSYS_GOLDEN_DIR)"
            if os.environ.get("CI") == "true":
                pytest.fail(msg, pytrace=False)
            pytest.skip(msg)


def pytest_configure(config):
    config.addinivalue_line("markers", "no_invariants: do not check the model's invariants after every "
                                       "operation (tests that break the model on purpose)")
    config.addinivalue_line("markers", "kernel_hazard: the test reproduces a kernel hazard (cxlsys.hazards) on "
                                       "purpose: the model is checked until it happens, not after")


# test modules whose models are too large to check after every write (large-2t: 16384 memory blocks,
# ~50 ms a check, tens of thousands of writes): checked once at the end of each test instead
INVARIANTS_AT_END = {"test_memory_large.py"}


@pytest.fixture(autouse=True)
def _model_invariants(request):
    """Every in-process test checks the model's invariants (cxlsys.invariants) after every operation:
    each Sysfs write and ioctl, timer run and topology load/unload raises AssertionError naming the
    broken rule (cxlsys.testing.invariant_checks("every_write")); the modules of INVARIANTS_AT_END
    once when the test ends.  Not for ``@pytest.mark.mount`` tests (the model runs in another
    process) nor ``@pytest.mark.no_invariants`` ones; ``CXLSYS_INVARIANTS=0`` turns it off."""
    if (os.environ.get("CXLSYS_INVARIANTS", "1") == "0" or request.node.get_closest_marker("mount") is not None
            or request.node.get_closest_marker("no_invariants") is not None):
        yield
        return
    scope = "end" if request.node.path.name in INVARIANTS_AT_END else "every_write"
    with invariant_checks(scope, allow_hazards=request.node.get_closest_marker("kernel_hazard") is not None):
        yield
