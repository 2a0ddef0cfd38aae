"""The package as a user installs it: a wheel built from the tree, installed (not editable) into a
fresh venv, run from a directory outside the repository, so nothing of the checkout is on sys.path."""

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PRESETS = sorted(p.stem for p in (ROOT / "cxlsys" / "fixtures").glob("*.toml"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin dir, an empty working directory outside the repo, the wheel)."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    # build from a copy: setuptools writes build/ and *.egg-info into the source tree
    src = base / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src)],
                   check=True, capture_output=True, timeout=600)
    (whl,) = dist.glob("cxlsys-*.whl")
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    subprocess.run([str(bin_dir / "pip"), "install", "-q", f"cxlsys[test] @ {whl.as_uri()}"],
                   check=True, capture_output=True, timeout=600)
    work = base / "elsewhere"
    work.mkdir()
    return bin_dir, work, whl


def _run(installed, *argv, check=True, timeout=120):
    bin_dir, work, _ = installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    return subprocess.run(list(argv), cwd=work, env=env, capture_output=True, text=True, timeout=timeout,
                          check=check)


def test_wheel_ships_the_presets_and_no_repository_scripts(installed):
    names = zipfile.ZipFile(installed[2]).namelist()
    assert {f"cxlsys/fixtures/{p}.toml" for p in PRESETS} <= set(names)
    assert not [n for n in names if n.startswith(("tools/", "tests/", "bench/"))]


def test_topologies_lists_every_preset(installed):
    out = _run(installed, "cxlsys", "topologies").stdout
    assert sorted(line.split()[0] for line in out.splitlines()) == PRESETS


def test_repository_packages_are_not_importable(installed):
    r = _run(installed, "python", "-c", "import tools", check=False)
    assert r.returncode != 0 and "No module named 'tools'" in r.stderr
    r = _run(installed, "python", "-c", "import cxlsys, sys; print(cxlsys.__file__)")
    assert "site-packages" in r.stdout and str(ROOT) not in r.stdout


def test_pytest_plugin_registered_without_p(installed):
    out = _run(installed, "python", "-m", "pytest", "--fixtures", "-q").stdout
    assert "cxl_sysfs" in out
    assert "pyfakefs" in out.split("cxl_sysfs", 1)[1].split("\n\n", 1)[0]      # its docstring


def test_plugin_fixture_works_from_a_users_test(installed):
    _, work, _ = installed
    (work / "test_user.py").write_text(
        "def test_region0(cxl_sysfs):\n"
        "    with open('/sys/bus/cxl/devices/region0/mode') as f:\n"
        "        assert f.read() == 'ram\\n'\n")
    r = _run(installed, "python", "-m", "pytest", "-q", "test_user.py", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.mount
def test_run_cxl_list_from_the_wheel(installed):
    r = _run(installed, "cxlsys", "run", "--", "cxl", "list", "-M", timeout=300)
    assert len(json.loads(r.stdout)) == 11


def test_version_is_the_distributions():
    import tomllib
    want = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    r = subprocess.run([sys.executable, "-m", "cxlsys", "--version"], capture_output=True, text=True, check=False)
    assert (r.returncode, r.stdout) == (0, f"cxlsys {want}\n"), r.stderr


def test_dump_root_takes_a_path_below_sys_and_refuses_a_missing_one():
    def dump(*roots):
        args = [a for r in roots for a in ("--root", r)]
        return subprocess.run([sys.executable, "-m", "cxlsys", "dump", *args], capture_output=True, text=True,
                              check=False)
    r = dump("bus/cxl/devices/mem0")                    # a link: dumped where it points
    first = r.stdout.splitlines()[0]
    assert r.returncode == 0 and first.endswith("/cxl_mem.0/mem0\tdir") and first.startswith("/sys/devices/")
    assert dump("/sys/bus/cxl/devices/mem0").stdout == r.stdout
    r = dump("/sys/bus/cxl/devices/nosuch")
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == "cxlsys dump: --root /sys/bus/cxl/devices/nosuch: no such path below /sys\n"


def test_every_option_of_every_command_has_help():
    import argparse

    from cxlsys.cli.main import parser
    ap = parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}" for name, p in sub.choices.items()
               for a in p._actions if not isinstance(a, argparse._HelpAction) and not a.help]
    assert missing == []
    assert all(c.help for c in sub._choices_actions)          # and every command


def test_a_reader_that_leaves_early_gets_no_traceback():
    p = subprocess.Popen([sys.executable, "-m", "cxlsys", "dump"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.readline()
    p.stdout.close()                                   # `| head -1`
    err = p.stderr.read()
    assert (p.wait(timeout=60), err) == (141, b"")


def test_tree_prints_target_ids_as_cxl_list_u_does():
    r = subprocess.run([sys.executable, "-m", "cxlsys", "tree"], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "decoder0.1 2G x2 ram targets 0x0,0x1" in r.stdout
