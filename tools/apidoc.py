"""docs/api.md from the code: the public Python API, each entry its signature and docstring.

    .venv/bin/python -m tools.apidoc            # rewrite docs/api.md
    .venv/bin/python -m tools.apidoc --check    # exit 1 if docs/api.md is not what the code says

``API`` names what is public (what a user's test or script imports); ``tests/test_docs.py`` fails
when docs/api.md is stale, when a name here has no docstring, or when a docstring's example fails.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "api.md"

# module -> the names it exports to users, in reading order ("Class.member" for a member)
API: dict[str, list[str]] = {
    "cxlsys.system": ["System", "System.boot", "System.modprobe", "System.load", "System.unload", "System.mm",
                      "System.run_timers", "System.flush_work", "System.all_devices", "System.device_by_path"],
    "cxlsys.sysfs": ["Sysfs", "Sysfs.read", "Sysfs.read_at", "Sysfs.write", "Sysfs.lookup", "Sysfs.stat",
                     "Sysfs.entries", "Sysfs.listdir", "Sysfs.readlink", "Sysfs.realpath", "Sysfs.walk",
                     "Sysfs.mkdir", "Sysfs.rmdir", "Sysfs.setattr", "Sysfs.ioctl", "Sysfs.as_task", "Sysfs.sync",
                     "Sysfs.run_timers", "Sysfs.snapshot", "Sysfs.char_devices"],
    "cxlsys.errors": ["KernelError"],
    "cxlsys.kernel_api": ["CxlKernel", "CxlKernel.read", "CxlKernel.write", "CxlKernel.exists", "CxlKernel.listdir",
                          "CxlKernel.readlink", "CxlKernel.realpath", "CxlKernel.value", "CxlKernel.meminfo_kb",
                          "CxlKernel.dax_blocks", "CxlKernel.free_endpoint_decoders",
                          "CxlKernel.provision_ram_region", "CxlKernel.online", "CxlKernel.close",
                          "InProcessKernel", "MountedKernel"],
    "cxlsys.pytest_plugin": ["cxl_kernel", "cxl_sysfs"],
    "cxlsys.testing": ["read_text", "read_value", "write_text", "cxl_path", "cxl_read", "cxl_write", "assert_refused",
                       "sysfs_tree", "invariant_checks", "devices", "ports", "memdevs", "memdev", "endpoint_decoders",
                       "free_endpoint_decoders", "provision_ram_region", "meminfo_kb", "dax_blocks", "can_mount",
                       "cxlsys_run", "wait_for_line"],
    "cxlsys.topology": ["load_topology", "parse_topology", "TopologyError"],
    "cxlsys.topology.generate": ["GenSpec", "generate"],
    "cxlsys.topology.qemu": ["parse_qemu_argv", "to_qemu_argv", "split_command_line", "format_command_line",
                             "QemuError"],
    "cxlsys.topology.record": ["record", "Recording", "Recording.text", "RecordError"],
    "cxlsys.profile": ["resolve", "known_specs", "ProfileError"],
    "cxlsys.klog": ["KernelLog", "KernelLog.log", "KernelLog.lines", "KernelLog.add_sink", "KernelLog.wait_after",
                    "Record"],
    "cxlsys.snapshot": ["write_snapshot"],
    "cxlsys.treedump": ["dump_model", "walk_model", "dump_real"],
}


def resolve_name(module: str, name: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = inspect.getattr_static(obj, part) if inspect.isclass(obj) else getattr(obj, part)
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    return obj


def _param(p: inspect.Parameter) -> str:
    text = p.name
    if p.kind == p.VAR_POSITIONAL:
        text = "*" + text
    elif p.kind == p.VAR_KEYWORD:
        text = "**" + text
    if p.annotation is not p.empty:
        ann = p.annotation if isinstance(p.annotation, str) else inspect.formatannotation(p.annotation)
        text += f": {ann.strip(chr(39)).strip(chr(34))}"
    if p.default is not p.empty:
        d = p.default
        text += f" = {d.__name__ if callable(d) and hasattr(d, '__name__') else repr(d)}"   # no addresses
    return text


def _signature(obj: Any, name: str) -> str:
    if isinstance(obj, property):
        return f"{name}  (property)"
    if type(obj).__name__.startswith("Fixture"):          # a pytest fixture (the plugin's)
        return f"fixture {name}"
    target = getattr(obj, "__wrapped__", obj)
    if inspect.isclass(target):
        return f"class {name}"
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return name
    params, star = [], False
    for p in sig.parameters.values():
        if p.name in ("self", "cls"):
            continue
        if p.kind == p.KEYWORD_ONLY and not star:
            params.append("*")
            star = True
        star = star or p.kind == p.VAR_POSITIONAL
        params.append(_param(p))
    return f"{name}({', '.join(params)})"


def docstring(obj: Any) -> str:
    target = obj.fget if isinstance(obj, property) else obj
    return inspect.cleandoc(getattr(target, "__doc__", None) or "")


def render() -> str:
    out = ["# Python API",
           "",
           "Generated from the code by `python -m tools.apidoc` (`tests/test_docs.py` fails when this page",
           "is stale): what a test or a script imports, each with its signature and docstring. The user",
           "guide is `docs/guide.md`.",
           ""]
    for module, names in API.items():
        mod = importlib.import_module(module)
        out += [f"## `{module}`", ""]
        first = (inspect.cleandoc(mod.__doc__ or "").split("\n\n")[0]).strip()
        if first:
            out += [first, ""]
        for name in names:
            obj = resolve_name(module, name)
            out += [f"### `{_signature(obj, name)}`", ""]
            doc = docstring(obj)
            if doc:
                out += [doc, ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.apidoc", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare with docs/api.md (exit 1 if it differs)")
    a = ap.parse_args(argv)
    text = render()
    if a.check:
        if not OUT.exists() or OUT.read_text() != text:
            sys.stderr.write(f"{OUT.relative_to(ROOT)} is stale: run python -m tools.apidoc\n")
            return 1
        return 0
    OUT.write_text(text)
    print(f"written: {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
