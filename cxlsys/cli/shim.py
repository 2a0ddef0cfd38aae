"""Stand-ins for modprobe, udevadm, journalctl and dmesg inside ``cxlsys run``.

ndctl's test scripts call these; they talk to the cxlsys daemon over
``$CXLSYS_CONTROL`` so that ``modprobe cxl_test`` reloads the topology and
``journalctl -k`` prints the model's kernel log.  Nothing on the host is touched.
"""

from __future__ import annotations

import os
import re
import sys
import time

from fuse_mount.client import request


def _ctl(req: dict) -> int:
    path = os.environ.get("CXLSYS_CONTROL")
    if not path:
        sys.stderr.write("cxlsys shim: CXLSYS_CONTROL is not set (run inside 'cxlsys run')\n")
        return 1
    rep = request(path, req)
    sys.stdout.write(rep.get("out", ""))
    sys.stderr.write(rep.get("err", ""))
    return rep.get("rc", 1)


def modprobe(argv) -> int:
    return _ctl({"cmd": "modprobe", "args": argv})


def udevadm(argv) -> int:
    if argv[:1] == ["settle"]:
        return _ctl({"cmd": "flush"})
    return 0


def _since(spec: str):
    m = re.fullmatch(r"-(\d+)s?", spec.strip())
    if m:
        return time.time() - int(m.group(1))
    return None


def journalctl(argv) -> int:
    since = None
    reverse = False
    it = iter(argv)
    for a in it:
        if a in ("-r", "--reverse"):
            reverse = True
        elif a in ("-S", "--since"):
            since = _since(next(it, ""))
        elif a.startswith("--since="):
            since = _since(a.split("=", 1)[1])
    return _ctl({"cmd": "journal", "since": since, "reverse": reverse, "max_level": _console_level()})


def dmesg(argv) -> int:
    """``dmesg`` prints the log, ``-C``/``--clear`` clears it, ``-c``/``--read-clear`` does both."""
    clear = any(a in ("-C", "--clear", "-c", "--read-clear") for a in argv)
    show = not any(a in ("-C", "--clear") for a in argv)
    return _ctl({"cmd": "dmesg", "clear": clear, "show": show, "max_level": _console_level()})


def _console_level() -> int:
    """What a kernel without dynamic debug has in its log: everything but dev_dbg()/pr_debug()
    (level 7).  ``CXLSYS_DYNDBG=1`` shows those too (``cxlsys dmesg`` always does)."""
    return 7 if os.environ.get("CXLSYS_DYNDBG") else 6


SHIMS = {"modprobe": modprobe, "udevadm": udevadm, "journalctl": journalctl, "dmesg": dmesg}


def main() -> int:
    name = sys.argv[1]
    return SHIMS[name](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
