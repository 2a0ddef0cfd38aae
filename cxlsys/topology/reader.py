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
from cxlsys.topology.limits import LIMITS, limit


class TopologyError(Exception):
    """A topology file is wrong: ``str(e)`` is the user-facing message."""


Kind: TypeAlias = str | tuple[Any, ...]

SZ_256M = 256 << 20

_NAME = re.compile(r"[^\s/]+")

_MAX_WHERE = 160          # a message's field path and text are cut (in the middle) past these
_MAX_MSG = 400
_MAX_LIT = 60             # a value quoted in a message


def one_line(text: str) -> str:
    """``text`` as one printable line: control characters (newlines too) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n // 2 - 2] + " ... " + text[-(n // 2 - 3):]


def _fmt_size(n: int) -> str:
    for unit, s in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n and n % (1 << s) == 0:
            return f"{n >> s}{unit}"
    return f"{n:#x}"


class _Reader:
    def __init__(self, src: str):
        self.src = src

    def err(self, where: str, msg: str) -> NoReturn:
        src = _cut(one_line(self.src), 4 * _MAX_WHERE)
        raise TopologyError(f"{src}: {_cut(one_line(where), _MAX_WHERE)}: {_cut(one_line(msg), _MAX_MSG)}")

    def over(self, where: str, what: str, name: str) -> NoReturn:
        """Refuse a value past the limit ``LIMITS[name]``: the message ends ``(limit ...)``."""
        self.err(where, f"{what} (limit {LIMITS[name]})")

    def count(self, raw: list[Any], where: str, name: str) -> list[Any]:
        """A list of tables (or values) no longer than the limit ``name``."""
        if len(raw) > limit(name):
            self.over(where, f"too many: {len(raw)}", name)
        return raw

    def fits(self, where: str, what: str, start: int, size: int) -> None:
        """``[start, start + size)`` must end inside the 64-bit address space."""
        if start + size > limit("address_space"):
            self.over(where, f"{what} {start:#x} + {size:#x} passes the end of the 64-bit address space",
                      "address_space")

    def shape(self, data: Any) -> None:
        """The whole value against the limits any value has: nesting depth, number of values,
        string and key lengths and integer sizes (iterative: a value nested too deeply, or a dict
        from code that holds itself, must not exhaust the stack)."""
        todo: list[tuple[Any, str, int]] = [(data, "", 1)]
        seen = 0
        while todo:
            v, path, depth = todo.pop()
            seen += 1
            if seen > limit("values"):
                self.over(path or "topology", "too many values", "values")
            if isinstance(v, (dict, list)):
                if depth > limit("nesting"):
                    self.over(path or "topology", "nested too deeply", "nesting")
                if isinstance(v, dict):
                    for k, x in v.items():
                        sk = str(k)
                        where = f"{path}.{sk}" if path else sk
                        if len(sk) > limit("string_length"):
                            self.over(where, f"a key of {len(sk)} characters is too long", "string_length")
                        todo.append((x, where, depth + 1))
                else:
                    todo.extend((x, f"{path}[{j}]", depth + 1) for j, x in enumerate(v))
            elif isinstance(v, str) and len(v) > limit("string_length"):
                self.over(path or "topology", f"a string of {len(v)} characters is too long", "string_length")
            elif isinstance(v, int) and not isinstance(v, bool) and abs(v).bit_length() > limit("integer_bits"):
                self.over(path or "topology", f"a number of {abs(v).bit_length()} bits is too large",
                          "integer_bits")

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
                self.err(where, f"{_num(n)} must not be negative")
            return n
        if kind == "str":
            if not isinstance(v, str):
                self.err(where, f"{_lit(v)} is not a string")
            if len(v) > limit("string_length"):
                self.over(where, f"a string of {len(v)} characters is too long", "string_length")
            return v
        if kind == "name":
            if not isinstance(v, str):
                self.err(where, f"{_lit(v)} is not a string")
            if not _NAME.fullmatch(v) or v in (".", "..") or not v.isprintable():
                self.err(where, f"{_lit(v)} is not a name (non-empty, printable, no '/' or spaces)")
            if len(v) > limit("name_length"):
                self.over(where, f"{_lit(v)} is too long a name ({len(v)} characters)", "name_length")
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
            self.err(where, f"{_num(v)} is out of range {_num(lo)}..{top}" + (f" ({what})" if what else ""))
        return v


def _lit(v: Any) -> str:
    """A value as the user wrote it in TOML (the start of it, if it is long)."""
    return _cut(_lit_full(v, [4 * _MAX_LIT]), _MAX_LIT)


def _lit_full(v: Any, budget: list[int]) -> str:
    budget[0] -= 1
    if budget[0] < 0:                   # a value too large or deep to show (or a dict that holds itself)
        return "..."
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_lit_full(x, budget) for x in v[:_MAX_LIT]) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_lit_full(x, budget)}" for k, x in list(v.items())[:_MAX_LIT]) + " }"
    if isinstance(v, int) and v.bit_length() > 4 * _MAX_LIT:
        return f"{v:#x}"                # no decimal conversion of a huge number
    return repr(v)


def _num(n: int) -> str:
    """An integer for a message: decimal, or hex when it is huge."""
    return str(n) if abs(n) < 1 << 64 else f"{n:#x}"


def _tname(v: Any) -> str:
    return {dict: "table", list: "list", str: "string", bool: "boolean", int: "integer",
            float: "float"}.get(type(v), type(v).__name__)
