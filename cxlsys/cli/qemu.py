"""``cxlsys import-qemu`` and ``cxlsys export-qemu`` (the model: cxlsys/topology/qemu.py)."""

from __future__ import annotations

import argparse
import os
import sys
import tomllib

from cxlsys.cli.output import write_output
from cxlsys.topology import TopologyError, load_topology, parse_topology
from cxlsys.topology.qemu import QemuError, format_command_line, parse_qemu_argv, split_command_line, to_qemu_argv
from cxlsys.topology.tomltext import toml_text


def _fail(cmd: str, msg: str) -> int:
    sys.stderr.write(f"cxlsys {cmd}: {msg}\n")
    return 2


MAX_COMMAND_LINE = 1 << 20      # a QEMU command line file, at most (Linux's ARG_MAX is far below)


def _read(f, where: str) -> str:
    data = f.read(MAX_COMMAND_LINE + 1)
    if len(data) > MAX_COMMAND_LINE:
        raise QemuError(f"{where}: over {MAX_COMMAND_LINE >> 20} MiB: not a QEMU command line")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise QemuError(f"{where}: not UTF-8 text (byte {e.start})") from None


def _source(args) -> tuple[list[str], str, str]:
    """(argv, its name for messages, the default topology name) from the positional arguments."""
    src = list(args.source)
    if src and src[0] == "--":
        return src[1:], "<argv>", "qemu"
    if src and (src[0] == "-" or not src[0].startswith("-")):
        path = src[0]
        if len(src) > 1:                    # options after the file: import-qemu's own
            more = argparse.ArgumentParser(prog="cxlsys import-qemu", add_help=False)
            more.add_argument("-o", "--output")
            more.add_argument("--name")
            rest, unknown = more.parse_known_args(src[1:])
            if unknown:
                raise QemuError(f"{' '.join(unknown)}: give one FILE, or -- and the QEMU arguments")
            args.output = rest.output or args.output
            args.name = rest.name or args.name
        if path == "-":
            return split_command_line(_read(sys.stdin.buffer, "<stdin>")), "<stdin>", "qemu"
        try:
            with open(path, "rb") as f:
                text = _read(f, path)
        except OSError as e:
            raise QemuError(f"{path}: cannot read: {e.strerror or e}") from None
        stem = os.path.splitext(os.path.basename(path))[0] or "qemu"
        return split_command_line(text), path, stem
    if not src:
        return split_command_line(_read(sys.stdin.buffer, "<stdin>")), "<stdin>", "qemu"
    return src, "<argv>", "qemu"           # argparse took the "--" away


def cmd_import_qemu(args) -> int:
    """A QEMU command line -> a topology file, checked by loading it."""
    try:
        argv, where, stem = _source(args)
        doc = parse_qemu_argv(argv, args.name or stem)
        header = f"imported by cxlsys import-qemu from {where}:\n" + format_command_line(["qemu-system-x86_64", *argv])
        text = toml_text(doc, header)
        t = parse_topology(tomllib.loads(text), args.output or "<imported>")
    except (QemuError, TopologyError) as e:
        return _fail("import-qemu", str(e))
    return write_output("import-qemu", args.output, text, t.description)


def cmd_export_qemu(args) -> int:
    """A topology -> the QEMU command line whose guest sees it."""
    try:
        text = format_command_line(to_qemu_argv(load_topology(args.topology)))
    except (QemuError, TopologyError) as e:
        return _fail("export-qemu", str(e))
    return write_output("export-qemu", args.output, text)


def add_parsers(sub) -> None:
    """Register both commands on ``cxlsys``'s subparsers."""
    p = sub.add_parser("import-qemu", help="write a topology file from a QEMU command line (pxb-cxl, cxl-rp, "
                                           "cxl-upstream/-downstream, cxl-type3, cxl-fmw)")
    p.add_argument("-o", "--output", help="the topology file to write (default: standard output)")
    p.add_argument("--name", help="the topology's name (default: the file's name, or qemu)")
    p.add_argument("source", nargs=argparse.REMAINDER,
                   help="a file holding the QEMU command line (- or nothing: standard input), or -- and the "
                        "QEMU arguments themselves; options of import-qemu go before it")
    p.set_defaults(fn=cmd_import_qemu)
    p = sub.add_parser("export-qemu", help="print the QEMU command line of a topology QEMU can express")
    p.add_argument("--topology", "-t", default="qemu-hdm-db", help="preset name or TOML file (default qemu-hdm-db)")
    p.add_argument("-o", "--output", help="the file to write (default: standard output)")
    p.set_defaults(fn=cmd_export_qemu)
