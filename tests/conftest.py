import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))       # the repository's tools/ (golden diff) for the golden tests

from cxlsys.sysfs import Sysfs  # noqa: E402
from cxlsys.system import System  # noqa: E402
from cxlsys.testing import MOUNT_SKIP_REASON, can_mount  # noqa: E402


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
