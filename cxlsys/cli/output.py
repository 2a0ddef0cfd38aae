"""Output for machines and for people: JSON, the kernel log kept in a file or echoed, progress.

* :func:`emit_json` — what every ``--json`` prints (indented on a terminal, one line when piped);
* :func:`write_output` — a command's ``-o FILE`` (or standard output), one line if it cannot;
* :func:`keep_log` — ``--dmesg FILE`` and ``--explain``: sinks on the model's kernel log
  (:class:`cxlsys.klog.KernelLog`) that the daemon, forked after this, writes to as it logs;
* :func:`progress` — a rich progress bar on standard error when it is a terminal (fuzz, bench, record);
  :func:`hotplug_progress` — ``cxlsys run --progress``: memory blocks online while CMD runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from typing import Any, Callable, Iterator, Optional

from cxlsys.klog import Record


def emit_json(obj: Any, stream=None) -> None:
    out = stream or sys.stdout
    out.write(json.dumps(obj, indent=2 if out.isatty() else None) + "\n")


def write_output(who: str, path: Optional[str], text: str, said: str = "") -> int:
    """A command's file (``-o PATH``; none or ``-``: standard output): 0, or 2 with one line if it
    cannot be written.  ``said``: what was written, on stderr after the path."""
    if not path or path == "-":
        sys.stdout.write(text)
        return 0
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        sys.stderr.write(f"cxlsys {who}: {path}: {e.strerror or e}\n")
        return 2
    if said:
        sys.stderr.write(f"cxlsys {who}: {path}: {said}\n")
    return 0


def _writer(fd: int) -> Callable[[str], None]:
    def write(text: str) -> None:
        data = text.encode("utf-8", "replace")
        while data:
            data = data[os.write(fd, data):]
    return write


def keep_log(system, dmesg_file: Optional[str] = None, explain: bool = False) -> None:
    """``dmesg_file``: every record of the model's kernel log, as ``cxlsys dmesg`` prints it, appended
    to the file (truncated first) the moment it is logged, so that it outlives the run and a
    ``kill -9`` of the daemon.  ``explain``: each refused store's reason on this process's standard
    error as it happens (a descriptor duplicated now: the daemon's own stderr is its log file)."""
    log = system.klog
    if dmesg_file:
        try:
            fd = os.open(dmesg_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError as e:
            sys.stderr.write(f"cxlsys: --dmesg {dmesg_file}: {e.strerror}\n")
            raise SystemExit(2)
        write = _writer(fd)

        def dmesg_file_sink(rec: Record) -> None:
            write(rec.line() + "\n")
        try:
            log.add_sink(dmesg_file_sink)          # the boot's lines first
        except OSError as e:
            sys.stderr.write(f"cxlsys: --dmesg {dmesg_file}: {e.strerror or e}\n")
            raise SystemExit(2)
    if explain:
        err = _writer(os.dup(sys.stderr.fileno()))     # not inherited by exec'd programs (PEP 446)

        def explain_sink(rec: Record) -> None:
            if rec.tag == "store":
                err(f"cxlsys: refused: {rec.text}\n")
        log.add_sink(explain_sink, replay=False)


@contextlib.contextmanager
def progress(description: str, total: Optional[int], stream=None) -> Iterator[Optional[Callable[..., None]]]:
    """``with progress("fuzz", 20000) as bar:`` — ``bar(done=N)`` (or ``bar(description=...)``) moves
    a rich progress bar on ``stream`` (standard error) when that is a terminal; otherwise ``bar`` is
    None and the caller prints what it prints for a log (a line now and then)."""
    out = stream or sys.stderr
    if not out.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(file=out), transient=True) as rich_bar:
        task = rich_bar.add_task(description, total=total)

        def update(done: Optional[int] = None, description: Optional[str] = None, total: Optional[int] = None) -> None:
            rich_bar.update(task, completed=done, description=description, total=total)
        yield update


@contextlib.contextmanager
def hotplug_progress(ctl: str, enabled: bool, stream=None, every: float = 0.25) -> Iterator[None]:
    """``cxlsys run --progress``: while CMD runs, a bar on the terminal (standard error) of the
    hot-added memory blocks online out of those present, asked of the daemon (``{"cmd": "memory"}``)
    every ``every`` seconds — a display refresh, nothing waits on it.  For a script that onlines a
    large region (daxctl's per-block loop); not for an interactive shell, whose prompt it would
    redraw over.  Nothing when ``enabled`` is false or the stream is not a terminal."""
    out = stream or sys.stderr
    if not enabled or not out.isatty():
        yield
        return
    from fuse_mount.client import request
    stop = threading.Event()

    def loop() -> None:
        with progress("memory blocks online", None, out) as bar:
            assert bar is not None
            while True:
                try:
                    rep = request(ctl, {"cmd": "memory"}, timeout=5)
                except (OSError, ValueError):          # the daemon is gone: the run is ending
                    return
                bar(done=rep.get("online", 0), total=rep.get("present", 0) or None)
                if stop.wait(every):
                    return

    t = threading.Thread(target=loop, daemon=True, name="cxlsys-progress")
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(5)
