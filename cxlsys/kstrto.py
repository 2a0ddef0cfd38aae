"""Kernel input parsers (lib/kstrtox.c, lib/string.c): the rules every store shares.

* integers: base 0 auto-detection (``0x`` hex, leading ``0`` octal), optional ``+``,
  one trailing newline; garbage -> EINVAL, overflow -> ERANGE.
* booleans: first character decides (``1yYtTeE`` / ``0nNfFdD``, ``on``/``of``).
* ``sysfs_streq``: equal ignoring one trailing newline on either side.
"""

from __future__ import annotations

import errno

from cxlsys.errors import KernelError

U64_MAX = (1 << 64) - 1


def _strip_nl(s: str) -> str:
    return s[:-1] if s.endswith("\n") else s


def kstrtoull(s: str, base: int = 0, limit: int = U64_MAX) -> int:
    t = _strip_nl(s)
    if t.startswith("+"):
        t = t[1:]
    if not t:
        raise KernelError(errno.EINVAL, f"not a number: {s!r}")
    b = base
    body = t
    if base in (0, 16) and body[:2].lower() == "0x":
        b, body = 16, body[2:]
    elif base == 0 and body.startswith("0") and len(body) > 1:
        b, body = 8, body[1:]
    elif base == 0:
        b = 10
    if not body:
        raise KernelError(errno.EINVAL, f"not a number: {s!r}")
    digits = "0123456789abcdef"[:b]
    if any(c not in digits for c in body.lower()):
        raise KernelError(errno.EINVAL, f"not a number: {s!r}")
    v = int(body, b)
    if v > limit:
        raise KernelError(errno.ERANGE, f"number out of range: {s!r}")
    return v


def kstrtouint(s: str, base: int = 0) -> int:
    return kstrtoull(s, base, (1 << 32) - 1)


def kstrtoint(s: str, base: int = 0) -> int:
    t = _strip_nl(s)
    neg = t.startswith("-")
    v = kstrtoull(t[1:] if neg else t, base, (1 << 31) if neg else (1 << 31) - 1)
    return -v if neg else v


def kstrtobool(s: str) -> bool:
    if not s:
        raise KernelError(errno.EINVAL, "empty boolean")
    c = s[0]
    if c in "1yYtTeE":
        return True
    if c in "0nNfFdD":
        return False
    if c in "oO" and len(s) > 1:
        if s[1] in "nN":
            return True
        if s[1] in "fF":
            return False
    raise KernelError(errno.EINVAL, f"not a boolean: {s!r}")


def kstrtobool_true(s: str) -> bool:
    """``kstrtobool(buf, &v) || !v`` as one refusal: true only for a true value; a parse error and
    a false value read the same (the stores that take only "1" treat both as EINVAL)."""
    try:
        return kstrtobool(s)
    except KernelError:
        return False


def sysfs_streq(a: str, b: str) -> bool:
    return _strip_nl(a) == _strip_nl(b)


def strip_newline(s: str) -> str:
    return _strip_nl(s)


def parse_size(v) -> int:
    """Topology-file sizes: ints, or strings like '256M', '1G', '0x10000000'."""
    if isinstance(v, int):
        return v
    t = str(v).strip()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if t and t[-1].upper() in mult and not t.lower().startswith("0x"):
        return int(t[:-1], 0) * mult[t[-1].upper()]
    if t.lower().endswith(("kib", "mib", "gib", "tib")):
        return int(t[:-3], 0) * mult[t[-3].upper()]
    return int(t, 0)


def simple_strtol(buf: str) -> int:
    """lib/vsprintf.c simple_strtol(s, NULL, 10): the leading decimal number, 0 if none."""
    s = buf.lstrip()
    neg = s.startswith("-")
    if neg or s.startswith("+"):
        s = s[1:]
    digits = ""
    for ch in s:
        if not ch.isdigit():
            break
        digits += ch
    v = int(digits) if digits else 0
    return -v if neg else v
