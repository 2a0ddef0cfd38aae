"""Where the golden-6.12 reference data lives: ``$CXLSYS_GOLDEN_DIR``, else
``../shared/reference/golden-6.12`` beside the checkout (as CI lays it out)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def golden_dir() -> Path:
    env = os.environ.get("CXLSYS_GOLDEN_DIR")
    if env:
        return Path(env)
    return REPO.parent / "shared" / "reference" / "golden-6.12"


def golden_file(name: str) -> str:
    return str(golden_dir() / name)
