"""The value reader: one table or value of the TOML checked against a field kind, and the
``<file>: <field>: <what is wrong>`` message when it does not fit.

A field *kind* is one of ``size`` (bytes, 0x..., 256M/1G/2T), ``int``, ``uint``, ``str``,
``name`` (a device name), ``bool``, ``list``, ``dict``, ``when`` (a table of module
parameter conditions), or a tuple of the allowed values.
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn, TypeAlias

from cxlsys.kstrto import parse_size


class TopologyError(Exception):
    """A topology file is wrong: ``str(e)`` is the user-facing message."""


Kind: TypeAlias = str | tuple[Any, ...]

SZ_256M = 256 << 20

_NAME = re.compile(r"[^\s/]+")


def _fmt_size(n: int) -> str:
    for unit, s in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n and n % (1 << s) == 0:
            return f"{n >> s}{unit}"
    return f"{n:#x}"


class _Reader:
    def __init__(self, src: str):
        self.src = src

    def err(self, where: str, msg: str) -> NoReturn:
        line = f"{self.src}: {where}: {msg}"
        raise TopologyError("".join(c if c.isprintable() else repr(c)[1:-1] for c in line))

    def table(self, data: Any, where: str, spec: dict[str, Kind], required: tuple[str, ...] = ()) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.err(where, f"expected a table, got {_tname(data)}")
        out = {}
        for k in data:
            if k not in spec:
                self.err(f"{where}.{k}", f"unknown field (known: {', '.join(sorted(spec))})")
        for k in required:
            if k not in data:
                self.err(f"{where}.{k}", "missing required field")
        for k, kind in spec.items():
            if k in data:
                out[k] = self.value(data[k], f"{where}.{k}", kind)
        return out

    def value(self, v: Any, where: str, kind: Kind) -> Any:
        if kind == "size":
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                self.err(where, f"{_lit(v)} is not a size (use bytes, 0x..., or 256M/1G/2T)")
            try:
                n = parse_size(v)
            except (ValueError, TypeError):
                self.err(where, f"{_lit(v)} is not a size (use bytes, 0x..., or 256M/1G/2T)")
            if n < 0:
                self.err(where, f"{_lit(v)}: a size must not be negative")
            return n
        if kind in ("int", "uint"):
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                self.err(where, f"{_lit(v)} is not an integer")
            try:
                n = v if isinstance(v, int) else int(v.strip(), 0)
            except ValueError:
                self.err(where, f"{_lit(v)} is not an integer")
            if kind == "uint" and n < 0:
                self.err(where, f"{n} must not be negative")
            return n
        if kind == "str":
            if not isinstance(v, str):
                self.err(where, f"{_lit(v)} is not a string")
            return v
        if kind == "name":
            if not isinstance(v, str):
                self.err(where, f"{_lit(v)} is not a string")
            if not _NAME.fullmatch(v) or v in (".", ".."):
                self.err(where, f"{_lit(v)} is not a device name (non-empty, no '/' or spaces)")
            return v
        if kind == "bool":
            if not isinstance(v, bool):
                self.err(where, f"{_lit(v)} is not true/false")
            return v
        if kind == "list":
            if not isinstance(v, list):
                self.err(where, f"{_lit(v)} is not a list")
            return v
        if kind == "dict":
            if not isinstance(v, dict):
                self.err(where, f"{_lit(v)} is not a table")
            return v
        if kind == "when":
            if not isinstance(v, dict):
                self.err(where, f"{_lit(v)} is not a table of module parameters")
            return {k: self.value(x, f"{where}.{k}", "int") for k, x in v.items()}
        if isinstance(kind, tuple):
            if all(isinstance(c, int) for c in kind) and (isinstance(v, bool) or not isinstance(v, int)):
                self.err(where, f"{_lit(v)} is not one of {', '.join(map(str, kind))}")
            if not isinstance(v, (str, int)) or v not in kind:
                self.err(where, f"{_lit(v)} is not one of {', '.join(map(repr, kind))}")
            return v
        raise AssertionError(kind)

    def items(self, v: list[Any], where: str, kind: Kind) -> list[Any]:
        return [self.value(x, f"{where}[{j}]", kind) for j, x in enumerate(v)]

    def within(self, v: int, where: str, lo: int, hi: int, what: str = "") -> int:
        if not lo <= v <= hi:
            top = f"{hi:#x}" if hi > 0xFFFF else str(hi)
            self.err(where, f"{v} is out of range {lo}..{top}" + (f" ({what})" if what else ""))
        return v


def _lit(v: Any) -> str:
    """A value as the user wrote it in TOML."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_lit(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_lit(x)}" for k, x in v.items()) + " }"
    return repr(v)


def _tname(v: Any) -> str:
    return {dict: "table", list: "list", str: "string", bool: "boolean", int: "integer",
            float: "float"}.get(type(v), type(v).__name__)
