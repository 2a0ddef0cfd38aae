"""The README's layout table names only paths that exist (first column: a path, then file names
in the same directory, globs allowed)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _layout_rows():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        if line.startswith("| `"):
            yield line.split("|")[1]


def test_every_layout_path_exists():
    rows = list(_layout_rows())
    assert len(rows) > 15
    missing = []
    for cell in rows:
        base = None
        for tok in re.findall(r"`([^`]+)`", cell):
            p = Path(tok) if "/" in tok or base is None else base / tok
            if "/" in tok:
                base = p if tok.endswith("/") else p.parent
            if not list(ROOT.glob(str(p).rstrip("/"))):
                missing.append(tok)
    assert not missing, f"README layout names paths that do not exist: {missing}"
