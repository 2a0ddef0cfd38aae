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


def test_the_readme_policy_test_passes(tmp_path):
    """The README's 20-line policy test, run as a user would from a directory of their own."""
    import subprocess
    import sys

    text = (ROOT / "README.md").read_text()
    code = text.split("## A policy test in 20 lines", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 20
    (tmp_path / "test_policy.py").write_text(code)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_policy.py"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
