"""The kernel's input parsers (cxlsys.kstrto), one table per parser: input -> value or errno, each
row a rule of the Linux 6.12 function it twins (lib/kstrtox.c, lib/string.c, lib/vsprintf.c,
lib/cmdline.c, lib/uuid.c, lib/kobject_uevent.c, drivers/base/driver.c).  What a store does with
these is tests/test_store_parsers.py."""

from __future__ import annotations

import errno

import pytest

from cxlsys import kstrto as K
from cxlsys.errors import KernelError

EINVAL, ERANGE = errno.EINVAL, errno.ERANGE
U64 = (1 << 64) - 1

# Rows: (input, expected) where expected is a value, or an errno wrapped in Err.


class Err(int):
    """An expected refusal: the errno."""


E, R = Err(EINVAL), Err(ERANGE)

# ---------------------------------------------------------------------------- lib/kstrtox.c

KSTRTOULL_BASE0 = [
    ("0", 0), ("1", 1), ("10", 10), ("10\n", 10), ("+5", 5), ("+0", 0),
    ("0x10", 16), ("0X10", 16), ("0xAbC", 0xABC), ("010", 8), ("0777", 0o777), ("00", 0),
    (str(U64), U64), (hex(U64), U64), ("0" * 30 + "1", 1),
    # refused
    ("", E), ("\n", E), ("+", E), ("-", E), ("-1", E), ("-0", E), ("++1", E), ("+-1", E),
    (" 1", E), ("1 ", E), ("\t1", E), ("1\n\n", E), ("1\n ", E), ("\n1", E),
    ("0x", E), ("0x\n", E), ("0xg", E), ("0x1g", E), ("08", E), ("09", E), ("0b1", E),
    ("1_000", E), ("1e3", E), ("abc", E), ("x", E), ("١", E),
    # overflow is found while reading digits, before any garbage after them
    (str(U64 + 1), R), ("0x1" + "0" * 16, R), ("99999999999999999999x", R), ("99999999999999999999\n\n", R),
]

KSTRTOULL_BASE16 = [
    ("10", 16), ("0x10", 16), ("0X1f\n", 31), ("ff", 255), ("FF", 255), ("+a", 10),
    ("", E), ("0x", E), ("g", E), ("-1", E), ("1 ", E), ("1" * 17, R),
]

KSTRTOUL_BASE10 = [
    ("10", 10), ("010", 10), ("0", 0), ("1\n", 1),
    ("0x10", E), ("1.0", E), ("", E), (" 1", E), ("-1", E), (str(U64 + 1), R),
]

KSTRTOUINT = [
    ("4294967295", (1 << 32) - 1), ("0xffffffff", (1 << 32) - 1), ("7\n", 7),
    ("4294967296", R), ("0x100000000", R), ("-1", E), ("", E), (str(U64 + 1), R),
]

KSTRTOINT = [
    ("0", 0), ("-0", 0), ("-1", -1), ("+1", 1), ("2147483647", 2**31 - 1), ("-2147483648", -2**31),
    ("-0x10", -16), ("-010", -8), ("-1\n", -1),
    ("2147483648", R), ("-2147483649", R), ("0x80000000", R), ("-", E), ("--1", E), ("-+1", E),
    ("+-1", E), (" -1", E), ("- 1", E), ("", E),
]

KSTRTOLL = [
    ("9223372036854775807", 2**63 - 1), ("-9223372036854775808", -2**63),
    ("9223372036854775808", R), ("-9223372036854775809", R), ("-18446744073709551616", R),
]

# 6.12 kstrtobool: y Y t T 1 / n N f F 0, o[nN] / o[fF]; "enable"/"disable" only from 6.16
KSTRTOBOOL = [
    ("1", True), ("y", True), ("Y", True), ("yes", True), ("t", True), ("T", True), ("true", True),
    ("on", True), ("ON", True), ("On", True), ("oN", True), ("1\n", True), ("10", True), ("1abc", True),
    ("0", False), ("n", False), ("N", False), ("no", False), ("f", False), ("F", False),
    ("false", False), ("off", False), ("OFF", False), ("of", False), ("0\n", False), ("nope", False),
    ("", E), ("\n", E), ("o", E), ("O", E), ("o\n", E), ("ox", E), ("enable", E), ("enabled", E),
    ("disable", E), ("e", E), ("d", E), ("2", E), ("-1", E), (" 1", E), ("\t0", E), ("maybe", E),
    ("+1", E),
]


def _check(fn, text, want):
    if isinstance(want, Err):
        with pytest.raises(KernelError) as e:
            fn(text)
        assert e.value.errno == want, f"{text!r}: errno {errno.errorcode[e.value.errno]}"
    else:
        got = fn(text)
        assert got == want and type(got) is type(want), f"{text!r}: {got!r}, want {want!r}"


@pytest.mark.parametrize("text,want", KSTRTOULL_BASE0, ids=repr)
def test_kstrtoull_base0(text, want):
    _check(K.kstrtoull, text, want)
    _check(K.kstrtou64, text, want)
    _check(K.kstrtoul, text, want)


@pytest.mark.parametrize("text,want", KSTRTOULL_BASE16, ids=repr)
def test_kstrtoull_base16(text, want):
    _check(lambda s: K.kstrtoull(s, 16), text, want)


@pytest.mark.parametrize("text,want", KSTRTOUL_BASE10, ids=repr)
def test_kstrtoul_base10(text, want):
    _check(lambda s: K.kstrtoul(s, 10), text, want)


@pytest.mark.parametrize("text,want", KSTRTOUINT, ids=repr)
def test_kstrtouint(text, want):
    _check(K.kstrtouint, text, want)


@pytest.mark.parametrize("text,want", KSTRTOINT, ids=repr)
def test_kstrtoint(text, want):
    _check(K.kstrtoint, text, want)


@pytest.mark.parametrize("text,want", KSTRTOLL, ids=repr)
def test_kstrtoll(text, want):
    _check(K.kstrtoll, text, want)


def test_narrow_unsigned_and_signed():
    assert K.kstrtou8("255") == 255 and K.kstrtou16("0xffff") == 0xFFFF
    assert K.kstrtos8("-128") == -128 and K.kstrtos16("32767") == 32767
    for fn, text in ((K.kstrtou8, "256"), (K.kstrtou16, "65536"), (K.kstrtos8, "128"), (K.kstrtos16, "-32769")):
        _check(fn, text, R)


@pytest.mark.parametrize("text,want", KSTRTOBOOL, ids=repr)
def test_kstrtobool(text, want):
    _check(K.kstrtobool, text, want)


@pytest.mark.parametrize("text,want", [("1", True), ("of", False), ("offensive", False), ("o", E), ("", E)],
                         ids=repr)
def test_kstrtobool_from_user_reads_three_bytes(text, want):
    _check(K.kstrtobool_from_user, text, want)


# ---------------------------------------------------------------------------- lib/string.c

@pytest.mark.parametrize("a,b,want", [
    ("ram", "ram", True), ("ram\n", "ram", True), ("ram", "ram\n", True), ("ram\n", "ram\n", True),
    ("", "", True), ("\n", "", True), ("", "\n", True),
    ("ram\n\n", "ram", False), ("ram\n\n", "ram\n", True),      # one newline left on one side only
    ("ram ", "ram", False), (" ram", "ram", False), ("RAM", "ram", False), ("ra", "ram", False),
    ("ramx", "ram", False), ("\n\n", "", False),
], ids=repr)
def test_sysfs_streq(a, b, want):
    assert K.sysfs_streq(a, b) is want and K.sysfs_streq(b, a) is want


def test_sysfs_match_string():
    opts = ("offline", "online", "online_kernel", "online_movable")
    assert K.sysfs_match_string(opts, "online_kernel\n") == 2 and K.sysfs_match_string(opts, "offline") == 0
    for bad in ("online ", "Online", "", "online\n\n"):
        _check(lambda s: K.sysfs_match_string(opts, s), bad, E)


# ---------------------------------------------------------------------------- lib/vsprintf.c

@pytest.mark.parametrize("text,base,want", [
    ("12", 10, (12, 2)), ("12abc", 10, (12, 2)), ("", 10, (0, 0)), ("abc", 10, (0, 0)),
    (" 12", 10, (0, 0)), ("+12", 10, (0, 0)), ("0x1f", 0, (31, 4)), ("0x", 0, (0, 1)), ("0xg", 0, (0, 1)),
    ("017", 0, (15, 3)), ("08", 0, (0, 1)), ("0x1f", 16, (31, 4)), ("0x", 16, (0, 2)),
    ("18446744073709551616", 10, (0, 20)), ("18446744073709551617", 10, (1, 20)),   # overflow wraps
], ids=repr)
def test_simple_strtoull(text, base, want):
    assert K.simple_strtoull(text, base) == want


@pytest.mark.parametrize("text,want", [
    ("1", 1), ("-1", -1), ("1abc", 1), ("-", 0), ("--1", 0), ("+1", 0), (" 1", 0), ("", 0), ("x", 0),
    ("9223372036854775808", -2**63), ("18446744073709551615", -1),     # simple_strtoul cast to long
], ids=repr)
def test_simple_strtol(text, want):
    assert K.simple_strtol(text, 10) == want


def test_simple_strtoll_and_int_truncation():
    assert K.simple_strtoll("-0x10", 0) == (-16, 5)
    assert K.to_int(2**32 + 1) == 1 and K.to_int(2**31) == -2**31 and K.to_int(-1) == -1


@pytest.mark.parametrize("buf,fmt,want", [
    ("region5", "region%d\n", [5]), ("region5\n", "region%d\n", [5]), ("region 5", "region%d\n", [5]),
    ("region\t\n7", "region%d\n", [7]), ("region-1", "region%d\n", [-1]), ("region5junk", "region%d\n", [5]),
    ("region007", "region%d\n", [7]), ("region0x5", "region%d\n", [0]),
    ("region4294967297", "region%d\n", [1]),                  # int truncation
    ("region", "region%d\n", []), ("region+5", "region%d\n", []), ("regionx", "region%d\n", []),
    ("Region5", "region%d\n", []), (" region5", "region%d\n", []), ("", "region%d\n", []),
    ("region-", "region%d\n", []),
    ("dax1.0", "dax%d.%d", [1, 0]), ("dax1.", "dax%d.%d", [1]), ("dax-1.-2", "dax%d.%d", [-1, -2]),
    ("dax 1. 2", "dax%d.%d", [1, 2]),
    ("erase 12 34", "%32s %10s %10s", ["erase", "12", "34"]), ("  x", "%32s %10s %10s", ["x"]),
    ("abcdef", "%3s%3s", ["abc", "def"]), ("ff", "%x", [255]), ("0x1f", "%i", [31]), ("-3", "%u", []),
    ("7", "%u", [7]),
], ids=repr)
def test_vsscanf(buf, fmt, want):
    assert K.vsscanf(buf, fmt) == want


# ---------------------------------------------------------------------------- lib/cmdline.c

@pytest.mark.parametrize("text,want", [
    ("4096", (4096, 4)), ("4k", (4096, 2)), ("4K", (4096, 2)), ("1M", (1 << 20, 2)), ("2g", (2 << 30, 2)),
    ("1T", (1 << 40, 2)), ("1p", (1 << 50, 2)), ("1E", (1 << 60, 2)), ("0x10M", (16 << 20, 5)),
    ("010k", (8 << 10, 4)), ("1KB", (1024, 2)), ("1x", (1, 1)), ("", (0, 0)), ("k", (0, 1)),   # bare suffix
], ids=repr)
def test_memparse(text, want):
    assert K.memparse(text) == want


# ---------------------------------------------------------------------------- lib/uuid.c

UUID = "6f1d3c0e-8a1b-4c5d-9e2f-0a1b2c3d4e5f"


@pytest.mark.parametrize("text,ok", [
    (UUID, True), (UUID.upper(), True), (UUID + "\n", True), (UUID + "trailing", True),
    (UUID[:-1], False), (UUID.replace("-", ""), False), ("g" + UUID[1:], False), (UUID.replace("-", "_"), False),
    (UUID[:8] + "-" + UUID[9:13] + UUID[14:] + "0", False), ("", False), (" " + UUID[:-1], False),
], ids=repr)
def test_uuid_parse(text, ok):
    assert K.uuid_is_valid(text) is ok
    if ok:
        assert K.uuid_parse(text).hex() == UUID.replace("-", "")
    else:
        _check(K.uuid_parse, text, E)


# ---------------------------------------------------------------------------- lib/kobject_uevent.c

@pytest.mark.parametrize("text,want", [
    ("add", ("add", None, {})), ("change\n", ("change", None, {})), ("unbind", ("unbind", None, {})),
    (f"add {UUID}", ("add", UUID, {})), (f"add {UUID}\n", ("add", UUID, {})),
    (f"move {UUID} A=1 b2=xyz", ("move", UUID, {"A": "1", "b2": "xyz"})),
    ("", E), ("\n", E), ("bogus", E), ("Add", E), (" add", E), ("add\n\n", E), ("add ", E), ("add junk", E),
    (f"add {UUID} ", E), (f"add {UUID} A", E), (f"add {UUID} A=", E), (f"add {UUID} =1", E),
    (f"add {UUID} A-B=1", E), (f"add {UUID} A=1-2", E), (f"add {UUID}x", E),
], ids=repr)
def test_kobject_synth_uevent(text, want):
    _check(K.kobject_synth_uevent_parse, text, want if isinstance(want, Err) else tuple(want))


# ---------------------------------------------------------------------------- drivers/base/driver.c

@pytest.mark.parametrize("text,count,want", [
    ("cxl_pci", None, "cxl_pci"), ("cxl_pci\n", None, "cxl_pci"), ("a\nb", None, "a"), ("", None, None),
    ("\n", None, None), ("\nx", None, None), (" x ", None, " x "), ("x", 4094, "x"),
], ids=repr)
def test_driver_set_override(text, count, want):
    assert K.driver_set_override(text, count) == want


def test_driver_set_override_length_limit():
    _check(lambda s: K.driver_set_override(s, len(s)), "x" * 4095, E)
    _check(lambda s: K.driver_set_override(s, 5000), "x", E)      # the write's count, not the text's
