"""Kernel input parsers (Linux 6.12): the rules every store shares, each a twin of its kernel function.

lib/kstrtox.c
  * ``kstrtoull`` / ``kstrtou64`` / ``kstrtoul`` / ``kstrtouint`` / ``kstrtou16`` / ``kstrtou8``: an
    optional ``+``, base 0 auto-detection (``0x``/``0X`` followed by a hex digit: hex; a leading
    ``0``: octal; else decimal), at least one digit, one optional trailing newline, nothing else
    (no white space, no second newline).  Overflow of 64 bits while reading digits is ERANGE even
    when garbage follows (the digits are read first); any other refusal is EINVAL; a value that
    does not fit the narrower type is ERANGE.  ``-`` is EINVAL for the unsigned ones.
  * ``kstrtoll`` / ``kstrtol`` / ``kstrtoint`` / ``kstrtos16`` / ``kstrtos8``: as above with an
    optional ``-`` (then no ``+``); out of the type's range is ERANGE.
  * ``kstrtobool``: only the first one or two characters count: ``y Y t T 1`` true,
    ``n N f F 0`` false, ``o``/``O`` then ``n``/``N`` true, then ``f``/``F`` false; anything else
    (empty, ``o`` alone, ``e``/``d`` — "enable"/"disable" arrived only in 6.16) is EINVAL.
  * ``kstrtobool_from_user``: the same on the first 3 bytes written (debugfs bools).
lib/string.c
  * ``sysfs_streq``: equal, where either side may carry one trailing newline the other lacks.
  * ``sysfs_match_string``: the index of the first entry ``sysfs_streq`` matches, else EINVAL.
lib/vsprintf.c
  * ``simple_strtoull`` / ``simple_strtoul`` / ``simple_strtol`` / ``simple_strtoll``: the
    leading number (same radix rules as above, no white space skipped, ``-`` only for the signed
    ones, never ``+``), 0 when there is none, overflow wraps; they also return where they stopped.
  * ``vsscanf``: the conversions the stores use (``%d %u %x %i %s``, widths, literals, white
    space); returns the converted values (their count is what ``sscanf`` returns).
lib/cmdline.c
  * ``memparse``: ``simple_strtoull(s, 0)`` then one optional ``K M G T P E`` suffix (either case).
lib/uuid.c
  * ``uuid_is_valid`` / ``uuid_parse``: 36 characters 8-4-4-4-12, hex digits; what follows is not
    looked at.
lib/kobject_uevent.c
  * ``kobject_synth_uevent_parse``: a ``uevent`` write: an action word, optionally a UUID and
    ``KEY=value`` arguments; EINVAL otherwise.
drivers/base/driver.c
  * ``driver_set_override``: the override a ``driver_override`` write sets.
"""

from __future__ import annotations

import errno
from typing import Optional

from cxlsys.errors import KernelError

U64_MAX = (1 << 64) - 1
S64_MAX = (1 << 63) - 1
U32_MAX = (1 << 32) - 1
S32_MAX = (1 << 31) - 1
PAGE_SIZE = 4096
UUID_STRING_LEN = 36

_HEX = "0123456789abcdefABCDEF"
_SPACE = " \t\n\v\f\r"                 # isspace() of the kernel's ctype (ASCII)


def _einval(s: str, what: str = "not a number") -> KernelError:
    return KernelError(errno.EINVAL, f"{what}: {s!r}")


def _erange(s: str) -> KernelError:
    return KernelError(errno.ERANGE, f"number out of range: {s!r}")


def _digit(c: str) -> int:
    """_parse_integer()'s digit value (0-9, a-f either case), 99 for anything else."""
    if "0" <= c <= "9":
        return ord(c) - 48
    lc = c.lower()
    if len(lc) == 1 and "a" <= lc <= "f":
        return ord(lc) - 87
    return 99


def _fixup_radix(s: str, base: int) -> tuple:
    """_parse_integer_fixup_radix(): (characters of prefix skipped, base)."""
    if base == 0:
        if s[:1] == "0":
            base = 16 if s[1:2].lower() == "x" and s[2:3] != "" and s[2:3] in _HEX else 8
        else:
            base = 10
    if base == 16 and s[:1] == "0" and s[1:2].lower() == "x":
        return 2, base
    return 0, base


def _parse_integer(s: str, base: int, limit: Optional[int] = None) -> tuple:
    """_parse_integer(_limit)(): (value mod 2^64, digits consumed, overflowed)."""
    res, n, over = 0, 0, False
    for c in s if limit is None else s[:limit]:
        v = _digit(c)
        if v >= base:
            break
        res = res * base + v
        if res > U64_MAX:
            over = True
            res &= U64_MAX
        n += 1
    return res, n, over


def _kstrtoull(s: str, base: int) -> int:
    skip, base = _fixup_radix(s, base)
    t = s[skip:]
    val, n, over = _parse_integer(t, base)
    if over:
        raise _erange(s)
    if n == 0:
        raise _einval(s)
    rest = t[n:]
    if rest.startswith("\n"):
        rest = rest[1:]
    if rest:
        raise _einval(s)
    return val


def kstrtoull(s: str, base: int = 0, limit: int = U64_MAX) -> int:
    """kstrtoull(s, base): the value; KernelError EINVAL/ERANGE.  ``limit`` is the largest value
    the caller's type holds (ERANGE above it), for the narrower kstrtou* twins."""
    v = _kstrtoull(s[1:] if s.startswith("+") else s, base)
    if v > limit:
        raise _erange(s)
    return v


def kstrtou64(s: str, base: int = 0) -> int:
    return kstrtoull(s, base)


def kstrtoul(s: str, base: int = 0) -> int:
    """unsigned long: 64 bits (x86_64)."""
    return kstrtoull(s, base)


def kstrtouint(s: str, base: int = 0) -> int:
    return kstrtoull(s, base, U32_MAX)


def kstrtou16(s: str, base: int = 0) -> int:
    return kstrtoull(s, base, 0xFFFF)


def kstrtou8(s: str, base: int = 0) -> int:
    return kstrtoull(s, base, 0xFF)


def kstrtoll(s: str, base: int = 0, lo: int = -S64_MAX - 1, hi: int = S64_MAX) -> int:
    """kstrtoll(s, base); ``lo``/``hi`` the caller's type range (ERANGE outside) for kstrtoint &c."""
    if s.startswith("-"):
        v = _kstrtoull(s[1:], base)
        if v > S64_MAX + 1:
            raise _erange(s)
        v = -v
    else:
        v = kstrtoull(s, base)
        if v > S64_MAX:
            raise _erange(s)
    if v < lo or v > hi:
        raise _erange(s)
    return v


def kstrtol(s: str, base: int = 0) -> int:
    return kstrtoll(s, base)


def kstrtoint(s: str, base: int = 0) -> int:
    return kstrtoll(s, base, -S32_MAX - 1, S32_MAX)


def kstrtos16(s: str, base: int = 0) -> int:
    return kstrtoll(s, base, -0x8000, 0x7FFF)


def kstrtos8(s: str, base: int = 0) -> int:
    return kstrtoll(s, base, -0x80, 0x7F)


def kstrtobool(s: str) -> bool:
    """kstrtobool() of 6.12 (lib/kstrtox.c): the first character, or ``o`` and the second."""
    c = s[:1]
    if c != "" and c in "yYtT1":
        return True
    if c != "" and c in "nNfF0":
        return False
    if c in ("o", "O") and s[1:2] != "":
        if s[1] in "nN":
            return True
        if s[1] in "fF":
            return False
    raise _einval(s, "not a boolean")


def kstrtobool_from_user(s: str) -> bool:
    """kstrtobool_from_user(): kstrtobool() of the first 3 bytes of the write."""
    return kstrtobool(s[:3])


def kstrtobool_true(s: str) -> bool:
    """``kstrtobool(buf, &v) || !v`` as one refusal: true only for a true value; a parse error and
    a false value read the same (the stores that take only "1" treat both as EINVAL)."""
    try:
        return kstrtobool(s)
    except KernelError:
        return False


def sysfs_streq(s1: str, s2: str) -> bool:
    """lib/string.c sysfs_streq(): equal up to one trailing newline on one side."""
    i = 0
    while i < len(s1) and i < len(s2) and s1[i] == s2[i]:
        i += 1
    a, b = s1[i:], s2[i:]
    return a == b or (a == "" and b == "\n") or (a == "\n" and b == "")


def sysfs_match_string(options, s: str) -> int:
    """__sysfs_match_string(): the index of the first option ``sysfs_streq`` matches; EINVAL."""
    for i, opt in enumerate(options):
        if opt is not None and sysfs_streq(opt, s):
            return i
    raise _einval(s, "not one of " + ", ".join(o for o in options if o is not None))


def strip_newline(s: str) -> str:
    """The text without one trailing newline (what sysfs_streq ignores)."""
    return s[:-1] if s.endswith("\n") else s


# ------------------------------------------------------------------ lib/vsprintf.c

def simple_strntoull(s: str, base: int = 0, max_chars: int = 1 << 31) -> tuple:
    """simple_strntoull(): (value mod 2^64, index where parsing stopped)."""
    skip, base = _fixup_radix(s, base)
    if skip >= max_chars:
        return 0, max_chars
    val, n, _ = _parse_integer(s[skip:], base, max_chars - skip)
    return val, skip + n


def simple_strtoull(s: str, base: int = 0) -> tuple:
    """simple_strtoull(s, &end, base): (value, end index)."""
    return simple_strntoull(s, base)


def simple_strtoul(s: str, base: int = 0) -> tuple:
    return simple_strntoull(s, base)


def _s64(v: int) -> int:
    v &= U64_MAX
    return v - (1 << 64) if v > S64_MAX else v


def simple_strntoll(s: str, base: int = 0, max_chars: int = 1 << 31) -> tuple:
    if s.startswith("-") and max_chars > 0:
        v, end = simple_strntoull(s[1:], base, max_chars - 1)
        return _s64(-v), end + 1
    v, end = simple_strntoull(s, base, max_chars)
    return _s64(v), end


def simple_strtoll(s: str, base: int = 0) -> tuple:
    """simple_strtoll(s, &end, base): (value, end index)."""
    return simple_strntoll(s, base)


def simple_strtol(s: str, base: int = 10) -> int:
    """simple_strtol(s, NULL, base): the leading number as a signed long (0 if none)."""
    return simple_strntoll(s, base)[0]


def to_int(v: int) -> int:
    """A C ``int`` assignment of a wider value (truncation to 32 bits, two's complement)."""
    v &= U32_MAX
    return v - (1 << 32) if v > S32_MAX else v


def _skip_spaces(s: str, i: int) -> int:
    while i < len(s) and s[i] in _SPACE:
        i += 1
    return i


def vsscanf(buf: str, fmt: str) -> list:
    """lib/vsprintf.c vsscanf() for ``%d %i %u %x %o %s`` (with widths), literals and white space:
    the values converted, in order, until the first mismatch (``len()`` is sscanf's return)."""
    out: list = []
    si = fi = 0
    while fi < len(fmt):
        if fmt[fi] in _SPACE:
            fi = _skip_spaces(fmt, fi + 1)
            si = _skip_spaces(buf, si)
        if fi < len(fmt) and fmt[fi] != "%":
            if si >= len(buf) or fmt[fi] != buf[si]:
                break
            fi += 1
            si += 1
            continue
        if fi >= len(fmt):
            break
        fi += 1
        width = -1
        if fi < len(fmt) and fmt[fi].isdigit():
            j = fi
            while j < len(fmt) and fmt[j].isdigit():
                j += 1
            width = int(fmt[fi:j])
            fi = j
            if width <= 0:
                break
        if fi >= len(fmt) or si >= len(buf):
            break
        conv = fmt[fi]
        fi += 1
        if conv == "s":
            si = _skip_spaces(buf, si)
            j = si
            n = width if width >= 0 else 0x7FFF
            while j < len(buf) and buf[j] not in _SPACE and n > 0:
                j += 1
                n -= 1
            out.append(buf[si:j])
            si = j
            continue
        base = {"o": 8, "x": 16, "X": 16, "i": 0}.get(conv, 10)
        signed = conv in "di"
        if conv not in "oxXidu":
            break
        si = _skip_spaces(buf, si)
        digit = buf[si:si + 1]
        if signed and digit == "-":
            if width == 1:
                break
            digit = buf[si + 1:si + 2]
        if (digit == "" or (base == 16 and digit not in _HEX) or (base in (10, 0) and not "0" <= digit <= "9")
                or (base == 8 and not "0" <= digit <= "7")):
            break
        mc = width if width >= 0 else 1 << 31
        if signed:
            v, end = simple_strntoll(buf[si:], base, mc)
            out.append(to_int(v))
        else:
            v, end = simple_strntoull(buf[si:], base, mc)
            out.append(v & U32_MAX)
        si += end
    return out


# ------------------------------------------------------------------ lib/cmdline.c

def memparse(s: str) -> tuple:
    """memparse(s, &end): (bytes, end index): a number (base 0) and one optional size suffix."""
    v, end = simple_strtoull(s, 0)
    shift = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}.get(s[end:end + 1].lower())
    if shift is not None:
        v = (v << shift) & U64_MAX
        end += 1
    return v, end


# ------------------------------------------------------------------ lib/uuid.c

def uuid_is_valid(s: str) -> bool:
    if len(s) < UUID_STRING_LEN:
        return False
    for i in range(UUID_STRING_LEN):
        if i in (8, 13, 18, 23):
            if s[i] != "-":
                return False
        elif s[i] not in _HEX:
            return False
    return True


def uuid_parse(s: str) -> bytes:
    """uuid_parse(): the 16 bytes of the UUID the first 36 characters spell; EINVAL."""
    if not uuid_is_valid(s):
        raise _einval(s[:UUID_STRING_LEN], "not a UUID")
    return bytes.fromhex(s[:UUID_STRING_LEN].replace("-", ""))


# ------------------------------------------------------------------ lib/kobject_uevent.c

def _alnum(s: str) -> bool:
    """A non-empty word of ASCII letters and digits (action_arg_word_end())."""
    return s != "" and all(c.isascii() and c.isalnum() for c in s)


KOBJECT_ACTIONS = ("add", "remove", "change", "move", "online", "offline", "bind", "unbind")


def kobject_synth_uevent_parse(buf: str) -> tuple:
    """kobject_synth_uevent()'s parsing of a ``uevent`` write: (action, uuid or None, {key: value});
    EINVAL for an unknown action or malformed arguments."""
    t = buf[:-1] if buf.endswith(("\n", "\0")) else buf
    if not t:
        raise _einval(buf, "unknown uevent action string")
    word, sp, args = t.partition(" ")
    if word not in KOBJECT_ACTIONS:
        raise _einval(buf, "unknown uevent action string")
    if not sp:
        return word, None, {}
    # kobject_action_args(): a UUID, then " KEY=value" pairs
    a = args[:-1] if args.endswith(("\n", "\0")) else args
    if not a or len(a) < UUID_STRING_LEN or not uuid_is_valid(a):
        raise _einval(buf, "incorrect uevent action arguments")
    env: dict = {}
    rest = a[UUID_STRING_LEN:]
    while rest:
        if rest[0] != " " or len(rest) < 2:
            raise _einval(buf, "incorrect uevent action arguments")
        key, eq, tail = rest[1:].partition("=")
        value, sp2, tail2 = tail.partition(" ")
        if not eq or not _alnum(key) or not _alnum(value):
            raise _einval(buf, "incorrect uevent action arguments")
        env[key] = value
        rest = sp2 + tail2
    return word, a[:UUID_STRING_LEN], env


# ------------------------------------------------------------------ drivers/base/driver.c

def driver_set_override(buf: str, count: Optional[int] = None) -> Optional[str]:
    """driver_set_override(): the new override (None clears it) for a write of ``count`` bytes
    whose text up to the first NUL is ``buf``: EINVAL for a write of PAGE_SIZE - 1 bytes or more;
    the text up to its first newline is the name."""
    if (len(buf) if count is None else count) >= PAGE_SIZE - 1:
        raise KernelError(errno.EINVAL, f"driver_override: {count} bytes is too long")
    if not buf:
        return None
    name = buf.split("\n", 1)[0]
    return name or None


# ------------------------------------------------------------------ topology files (not a kernel parser)

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
