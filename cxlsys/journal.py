"""Durable state: ``cxlsys mount --state FILE`` and ``cxlsys run --state FILE``.

The model is deterministic: the same operations on the same topology, kernel profile and
parameters give the same state.  So the journal keeps the operations, not the state: every
*accepted* change that reaches the model from outside — a store (``write``), a truncate that does
something, mkdir/rmdir, an ioctl (with the bytes it read from the caller's memory), modprobe, a
chmod/chown, ``set_mempolicy`` — and every firing of delayed work (the timer's sequence number, so a
sanitize that completed before the crash completes at the same point of the replay).  A refused
operation changes nothing and is not kept.  On the next start with the same FILE the records are
replayed in order through the same projection entry points; the state after the replay is the
state the daemon had when it died.

File format, version :data:`FORMAT_VERSION`: UTF-8 text, one record per line, ``<json> <crc32>``
(the CRC-32 of the JSON text as 8 hex digits).  Line 1 is the header (``{"journal": "cxlsys",
"version": 1, "cxlsys": ..., "topology": ..., "kernel": ..., "params": ..., "fingerprint": ...}``);
record ``n`` (from 1) is ``{"n": n, "op": ..., ...}``.  Each record is written with one write(2)
and fsync'd before the operation's caller gets its answer.

Reading it back: a last line that is incomplete or fails its CRC is a *torn* record (the process
died while writing it): it is dropped, the file cut back to the last whole record, and a message
says so.  Damage anywhere else, a header of another format version or cxlsys version, or another
topology / kernel profile / parameter set is refused with one line (:class:`JournalError`): the
journal cannot be replayed into this model, and guessing would restore a different state.  A
replayed operation that the model refuses means the same: refused, naming the record.

The file is locked (``flock``) while a daemon uses it: two daemons never append to one journal.
This module does file I/O; it is an adapter's part (like :mod:`cxlsys.fakefs`), used by the CLI.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import zlib
from importlib import metadata
from typing import Callable, Optional

from cxlsys.base.module import params_text
from cxlsys.errors import KernelError

FORMAT_VERSION = 1
MAGIC = "cxlsys"


class JournalError(Exception):
    """The journal cannot be used: ``str(e)`` is the one-line message for the user."""


def cxlsys_version() -> str:
    try:
        return metadata.version("cxlsys")
    except metadata.PackageNotFoundError:      # a checkout that was never installed
        return "0+unknown"


def header_for(system) -> dict:
    """What a journal must have been written for, to be replayed into ``system`` (freshly booted)."""
    t = system.topology
    topo = repr(t) if t is not None else ""
    fp = hashlib.sha256(json.dumps([topo, system.profile.name, sorted(system.params.items())]).encode()).hexdigest()
    return {"journal": MAGIC, "version": FORMAT_VERSION, "cxlsys": cxlsys_version(),
            "topology": t.name if t is not None else None, "kernel": system.profile.name,
            "params": dict(sorted(system.params.items())), "fingerprint": fp[:32]}


def payload(data: bytes) -> dict:
    """How a write's bytes are kept: ``{"text": ...}`` when they are printable UTF-8 (what a shell's
    echo writes: a journal a developer can read), else ``{"data": <hex>}``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {"data": data.hex()}
    if all(c.isprintable() or c in "\n\t" for c in text):
        return {"text": text}
    return {"data": data.hex()}


def payload_bytes(rec: dict) -> bytes:
    return rec["text"].encode("utf-8") if "text" in rec else bytes.fromhex(rec["data"])


def _line(obj: dict) -> bytes:
    text = json.dumps(obj, separators=(",", ":"), sort_keys=True)
    return f"{text} {zlib.crc32(text.encode()):08x}\n".encode()


def _parse(line: bytes) -> Optional[dict]:
    """The record of one line (without its newline), or None if it is damaged."""
    text, sep, crc = line.rpartition(b" ")
    if not sep or len(crc) != 8:
        return None
    try:
        if int(crc, 16) != zlib.crc32(text):
            return None
        obj = json.loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def read_journal(path: str) -> tuple[dict, list, int, Optional[str]]:
    """(header, records, length of the good prefix, message about a dropped torn record or None)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise JournalError(f"{path}: cannot read the state journal: {e.strerror}") from e
    lines = data.split(b"\n")
    tail = lines.pop()                 # after the last newline: b"" if the file ends with a whole record
    parsed: list = []
    ends: list = []
    pos = 0
    for i, raw in enumerate(lines):
        pos += len(raw) + 1
        rec = _parse(raw)
        if rec is None:
            if i == len(lines) - 1 and not tail and i > 0:
                tail = raw             # the last line is damaged: torn like an incomplete one
                break
            what = "header" if i == 0 else f"record {i}"
            raise JournalError(f"{path}: line {i + 1} ({what}) is damaged and is not the last one: "
                               "the journal was corrupted; refusing to guess the state")
        parsed.append(rec)
        ends.append(pos)
    if not parsed:
        raise JournalError(f"{path}: not a cxlsys state journal (no header line)")
    header = parsed[0]
    if header.get("journal") != MAGIC:
        raise JournalError(f"{path}: not a cxlsys state journal")
    records = parsed[1:]
    for k, rec in enumerate(records, 1):
        if rec.get("n") != k or not isinstance(rec.get("op"), str):
            raise JournalError(f"{path}: record {k} is out of sequence (n={rec.get('n')!r}): the journal was "
                               "edited or corrupted; refusing to guess the state")
    msg = None
    good = ends[len(parsed) - 1]
    if tail:
        msg = (f"{path}: the last record (#{len(records) + 1}) is torn (the daemon died while writing it): "
               f"dropped; state restored up to record #{len(records)}")
    return header, records, good, msg


def check_header(path: str, header: dict, want: dict) -> None:
    if header.get("version") != FORMAT_VERSION:
        raise JournalError(f"{path}: journal format version {header.get('version')!r}; this cxlsys reads version "
                           f"{FORMAT_VERSION}: refused")
    if header.get("cxlsys") != want["cxlsys"]:
        raise JournalError(f"{path}: written by cxlsys {header.get('cxlsys')}, this is cxlsys {want['cxlsys']}: "
                           "refused (its model may replay differently)")
    if header.get("fingerprint") != want["fingerprint"]:
        def desc(h):
            params = h.get("params") or {}           # (a damaged header may hold anything)
            args = params_text(params) if isinstance(params, dict) else str(params)
            return f"topology {h.get('topology')} (kernel {h.get('kernel')}, params {args or 'none'})"
        same = header.get("topology") == want["topology"] and header.get("kernel") == want["kernel"] \
            and header.get("params") == want["params"]
        raise JournalError(f"{path}: written for {desc(header)}"
                           f"{' from a different topology file' if same else ''}; this start is {desc(want)}: "
                           "refused (give the same topology, or another --state file)")


class RecordingUserMemory:
    """The caller's memory as an ioctl sees it, keeping what it read (the journal replays those)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.reads: list = []

    def copy_from_user(self, addr: int, n: int) -> bytes:
        data = self.inner.copy_from_user(addr, n)
        self.reads.append([addr, bytes(data).hex()])
        return data

    def copy_to_user(self, addr: int, data: bytes) -> None:
        self.inner.copy_to_user(addr, data)


class ReplayUserMemory:
    """What a journaled ioctl read, in the order it read it; what it writes goes nowhere."""

    def __init__(self, reads: list) -> None:
        self.reads = list(reads)

    def copy_from_user(self, addr: int, n: int) -> bytes:
        if not self.reads:
            raise KernelError(errno.EFAULT, f"replay: the ioctl reads {n} bytes at {addr:#x} it did not read before")
        a, hexdata = self.reads.pop(0)
        data = bytes.fromhex(hexdata)
        if a != addr or len(data) != n:
            raise KernelError(errno.EFAULT, f"replay: the ioctl reads {n} bytes at {addr:#x}, "
                                            f"before it read {len(data)} at {a:#x}")
        return data

    def copy_to_user(self, addr: int, data: bytes) -> None:
        pass


def _describe(rec: dict) -> str:
    op = rec.get("op")
    if op == "write":
        return f"write {payload_bytes(rec)[:40]!r} to /sys/{rec.get('path')}"
    if op in ("truncate", "mkdir", "rmdir", "setattr"):
        return f"{op} /sys/{rec.get('path')}"
    if op == "ioctl":
        return f"ioctl {rec.get('cmd', 0):#x} on /dev/{rec.get('dev')}"
    if op == "modprobe":
        return "modprobe " + " ".join(rec.get("args", []))
    if op == "timer":
        return f"delayed work #{rec.get('seq')}"
    if op == "mm":
        return f"mm {rec.get('fn')}"
    return str(op)


def replay(system, records: list, path: str = "<journal>") -> None:
    """Apply ``records`` to a freshly booted ``system``, through the projection's entry points."""
    from cxlsys.kernel_api import mm_call
    from cxlsys.sysfs import Sysfs

    fs = Sysfs(system)
    timers = system.timers
    timers.hold = True                # delayed work runs where the journal says it ran, not by the clock
    try:
        for rec in records:
            op = rec["op"]
            try:
                if op == "write":
                    fs.write(rec["path"], payload_bytes(rec), int(rec.get("offset", 0)))
                elif op == "truncate":
                    fs.truncate(rec["path"])
                elif op == "mkdir":
                    fs.mkdir(rec["path"])
                elif op == "rmdir":
                    fs.rmdir(rec["path"])
                elif op == "setattr":
                    fs.setattr(rec["path"], mode=rec.get("mode"), uid=rec.get("uid"), gid=rec.get("gid"))
                elif op == "ioctl":
                    fs.ioctl(rec["dev"], int(rec["cmd"]), int(rec["arg"]), ReplayUserMemory(rec.get("reads", [])),
                             int(rec.get("f_flags", os.O_RDWR)))
                elif op == "modprobe":
                    with system.lock:
                        system.modprobe(list(rec["args"]))
                elif op == "timer":
                    with system.lock:
                        if not timers.fire(int(rec["seq"]),
                                           on_error=lambda e: system.klog.warn_exception("delayed work", e)):
                            raise KernelError(errno.ENOENT, f"no delayed work #{rec['seq']} is pending")
                        system.flush_work()
                        system.changes.values()
                elif op == "mm":
                    mm_call(system, rec["fn"], rec.get("args", []), rec.get("kwargs") or {})
                else:
                    raise JournalError(f"{path}: record {rec['n']}: unknown operation {op!r}")
            except (KernelError, ValueError, TypeError, KeyError) as e:
                why = f"{os.strerror(e.errno)} ({e.reason})" if isinstance(e, KernelError) else f"{e!r}"
                raise JournalError(f"{path}: record {rec['n']} ({_describe(rec)}) is refused on replay: {why}: "
                                   "the journal does not match this model") from e
    finally:
        timers.hold = False


class Journal:
    """An open journal: ``record(op, fields)`` appends one fsync'd line (the model calls it through
    :meth:`System.journal_record`)."""

    def __init__(self, path: str, fd: int, count: int, warn: Callable[[str], None]) -> None:
        self.path = path
        self.fd = fd
        self.count = count
        self.warn = warn
        self.broken: Optional[str] = None
        self.klog = None

    @classmethod
    def open(cls, path: str, system, warn: Callable[[str], None]) -> "Journal":
        """Restore ``system`` (freshly booted) from the journal at ``path`` if there is one, then
        journal what follows.  ``warn(line)`` gets the messages that do not stop the start
        (a torn record dropped, how many records were replayed).  JournalError otherwise."""
        want = header_for(system)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise JournalError(f"{path}: cannot open the state journal: {e.strerror}") from e
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                raise JournalError(f"{path}: the state journal is in use by another cxlsys") from e
            count = 0
            if os.fstat(fd).st_size == 0:
                os.write(fd, _line(want))
                os.fsync(fd)
            else:
                header, records, good, torn = read_journal(path)
                check_header(path, header, want)
                if torn is not None:
                    os.ftruncate(fd, good)
                    os.fsync(fd)
                    warn(torn)
                replay(system, records, path)
                count = len(records)
                if count:
                    warn(f"{path}: state restored: {count} journaled operations replayed")
        except BaseException:
            os.close(fd)
            raise
        j = cls(path, fd, count, warn)
        j.klog = system.klog
        system.journal = j
        system.timers.on_fire = lambda seq: system.journal_record("timer", seq=seq)
        if count:
            system.klog.log(f"cxlsys: state restored from {path} ({count} operations)")
        return j

    def record(self, op: str, fields: dict) -> None:
        if self.broken is not None:
            return
        rec = {"n": self.count + 1, "op": op, **fields}
        try:
            os.write(self.fd, _line(rec))
            os.fsync(self.fd)
        except OSError as e:           # the change is made; say loudly that it is not durable
            self.broken = e.strerror or str(e)
            msg = (f"{self.path}: cannot append to the state journal ({self.broken}): "
                   "changes from now on are not durable")
            if self.klog is not None:
                self.klog.log(f"cxlsys: {msg}", "err")
            self.warn(msg)
            return
        self.count += 1

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass
