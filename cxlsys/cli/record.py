"""``cxlsys record``: write the topology file of a sysfs tree (cxlsys/topology/record.py).

The root is ``/sys`` by default: inside ``cxlsys run`` that is the model, outside it the machine's
own, read only.  The file is checked by loading it before it is written; what the format cannot
represent is in the file's header and on standard error.
"""

from __future__ import annotations

import sys
import time
import tomllib

from cxlsys.cli.output import progress, write_output
from cxlsys.topology import TopologyError, parse_topology
from cxlsys.topology.record import RecordError, record


def cmd_record(args) -> int:
    root = args.root
    try:
        with progress("recording", None) as bar:      # a status line on a terminal's stderr, else nothing
            rec = record(root, name=args.name or "recorded",
                         progress=None if bar is None else lambda phase: bar(description=f"recording: {phase}"))
    except RecordError as e:
        sys.stderr.write(f"cxlsys record: {e}\n")
        return 2
    except OSError as e:
        sys.stderr.write(f"cxlsys record: {root}: {e.strerror or e}\n")
        return 2
    # anything else out of record() is a bug of it, not a bad tree: it goes out with its traceback
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    text = rec.text(when)
    out = args.output if args.output and args.output != "-" else None
    try:
        t = parse_topology(tomllib.loads(text), out or "<recorded>")
    except (TopologyError, tomllib.TOMLDecodeError) as e:     # record() promises a loadable file
        sys.stderr.write(f"cxlsys record: internal error (a bug of cxlsys record, please report it with the "
                         f"tree): the recording does not load: {e}\n")
        return 1
    for line in rec.not_represented:
        sys.stderr.write(f"cxlsys record: not represented: {line}\n")
    return write_output("record", out, text, t.description)


def add_parser(sub) -> None:
    p = sub.add_parser("record", help="write the topology file of a sysfs tree (the real /sys, a mount, a snapshot)")
    p.add_argument("--root", default="/sys",
                   help="the directory that plays /sys: the machine's /sys (read only), a 'cxlsys mount' mount "
                        "point or a 'cxlsys snapshot' directory (default /sys: inside 'cxlsys run', the model)")
    p.add_argument("-o", "--output", help="the file to write (default: standard output)")
    p.add_argument("--name", help="the topology's name (default: recorded)")
    p.set_defaults(fn=cmd_record)


__all__ = ["add_parser", "cmd_record"]
