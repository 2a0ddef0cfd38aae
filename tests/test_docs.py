"""The docs say what the code does: docs/api.md is generated from the code and current, every
public name has a docstring whose examples run, and the user guide's commands parse and its
Python runs."""

from __future__ import annotations

import doctest
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cxlsys.cli.main import parser
from tools import apidoc

ROOT = Path(__file__).resolve().parent.parent
GUIDE = (ROOT / "docs" / "guide.md").read_text()


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def test_api_page_is_current():
    assert (ROOT / "docs" / "api.md").read_text() == apidoc.render(), "docs/api.md is stale: python -m tools.apidoc"


def test_every_public_name_has_a_docstring():
    missing = [f"{m}.{n}" for m, names in apidoc.API.items() for n in names
               if not apidoc.docstring(apidoc.resolve_name(m, n))]
    assert not missing, f"public names without a docstring: {missing}"


def test_docstring_examples_run():
    finder, runner = doctest.DocTestFinder(recurse=False), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    ran = 0
    for module, names in apidoc.API.items():
        for name in names:
            obj = apidoc.resolve_name(module, name)
            for t in finder.find(obj, f"{module}.{name}", globs={}):
                ran += len(t.examples)
                runner.run(t)
    assert ran >= 4                        # System's own example at least
    assert runner.failures == 0


def _guide_commands() -> list[str]:
    out = []
    for block in _blocks(GUIDE, "sh"):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith(".venv/bin/"):
                line = line[len(".venv/bin/"):]
            if line.startswith("cxlsys "):
                out.append(line)
    return out


def test_guide_commands_parse():
    cmds = _guide_commands()
    assert len(cmds) >= 20
    ap = parser()
    for c in cmds:
        argv = shlex.split(c)[1:]
        if argv == ["--version"]:
            continue
        try:
            ap.parse_args(argv)
        except SystemExit as e:                    # argparse's usage error
            pytest.fail(f"docs/guide.md: {c!r} is not a valid command line ({e})")


def test_guide_names_every_command():
    sub = next(a for a in parser()._actions if a.dest == "command")   # argparse keeps subparsers there
    said = {shlex.split(c)[1] for c in _guide_commands()}
    assert not set(sub.choices) - said, f"the guide never shows: {set(sub.choices) - said}"


def test_guide_python_runs(tmp_path):
    blocks = _blocks(GUIDE, "python")
    assert len(blocks) == 2
    plain, test = blocks
    exec(compile(plain, "docs/guide.md", "exec"), {})
    (tmp_path / "test_guide.py").write_text(test)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_guide.py"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout
