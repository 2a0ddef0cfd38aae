"""A small TOML writer for topology documents: the dict a topology file holds, as text.

Only what topology files use: strings, integers, booleans, lists of those, inline tables
(``{ name = ..., port_id = ... }`` in a list), top-level tables (``[acpi]``) and arrays of
tables (``[[memdev]]``).  Values that are :class:`Size` print as ``"256M"``, :class:`Hex` as
``0x1f``, so a written file reads as a hand-written one does.
"""

from __future__ import annotations

import re
from typing import Any

from cxlsys.topology.reader import _fmt_size

__all__ = ["Hex", "Size", "toml_text"]


class Size(int):
    """A size in bytes, written ``"256M"`` (or ``"0x490000000"`` when no unit divides it)."""


class Hex(int):
    """An integer written in hex (``0x1``)."""


def _val(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Size):
        return f'"{_fmt_size(int(v))}"'
    if isinstance(v, Hex):
        return f"{int(v):#x}"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):       # a TOML basic string: backslash, quote and control characters escaped
        return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else
                             "\\" + c if c in '\\"' else c for c in v) + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_val(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_val(x)}" for k, x in v.items()) + " }" if v else "{}"
    raise TypeError(f"no TOML form for {type(v).__name__}")


def _key(k: str) -> str:
    """A bare key where TOML allows one, else a quoted one."""
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _val(k)


def _table(d: dict) -> list[str]:
    out = []
    for k, v in d.items():
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            out.append(f"{_key(k)} = [\n" + "".join(f"    {_val(x)},\n" for x in v) + "]")
        else:
            out.append(f"{_key(k)} = {_val(v)}")
    return out


def toml_text(doc: dict, header: str = "") -> str:
    """``doc`` as TOML: its plain keys first, then its tables, then its arrays of tables;
    ``header`` (lines) as ``#`` comments on top."""
    out = [f"# {line}".rstrip() for line in header.splitlines()]
    plain = {k: v for k, v in doc.items()
             if not isinstance(v, dict) and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))}
    out += _table(plain)
    for k, v in doc.items():
        if isinstance(v, dict):
            out += ["", f"[{_key(k)}]"] + _table(v)
    for k, v in doc.items():
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for x in v:
                out += ["", f"[[{_key(k)}]]"] + _table(x)
    return "\n".join(out) + "\n"
