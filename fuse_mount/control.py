"""The daemon's control socket: modprobe, dmesg/journalctl and flush for shims and the CLI.

One JSON object per connection each way: ``{"cmd": "modprobe", "args": [...]}`` ->
``{"rc": 0, "out": "...", "err": "..."}``; the client is :func:`fuse_mount.client.request`.

``{"cmd": "ioctl", "dev": "cxl/mem0", "request": N, "arg": N}`` is a conversation: while the model's
ioctl runs, the daemon asks the caller for the process memory it touches —
``{"op": "read", "addr": A, "len": N}`` -> ``{"data": "<hex>"}`` or ``{"errno": 14}``, and
``{"op": "write", "addr": A, "data": "<hex>"}`` -> ``{"ok": true}`` or ``{"errno": 14}`` — and ends
with ``{"rc": 0, "ret": N}`` or ``{"rc": 1, "errno": E}``.  The caller is the ``cxlsys run``
interposer (:mod:`cxlsys.cli.interpose`), which reads and writes the traced process.
``{"cmd": "dmesg", "after": SEQ, "wait": S}`` -> ``{"rc": 0, "records": [{"pri", "time", "msg", "seq"}...],
"seq": newest}``: the log as data, the records after SEQ, waiting up to S seconds for one (``--follow``).
``{"cmd": "memory"}`` -> ``{"rc": 0, "present": N, "online": M}``: hot-added memory blocks (``--progress``).
``{"cmd": "chardev", "dev": "cxl/mem0"}`` -> ``{"rc": 0, "devt": [major, minor]}`` (rc 1 if gone).
``{"cmd": "snapshot", "dir": "/abs/dir", "root": ""}`` writes the tree as plain files there
(:func:`cxlsys.snapshot.write_snapshot`, one state under the lock) -> ``{"rc": 0, "out": summary}``.

``{"cmd": "mm", "fn": "alloc_candidates"|"set_mempolicy", "args": [...], "kwargs": {...}}`` calls the
allocation oracle (``system.mm``, :func:`cxlsys.kernel_api.mm_call`): ``{"rc": 0, "out": <the result
as JSON>}``, or ``rc`` 1 with ``"errno"`` (and ``"reason"``) for a kernel refusal, ``"exception"``
(``ValueError``/``TypeError``) and ``"message"`` for bad arguments; :func:`cxlsys.kernel_api.mm_raise`
turns a reply back into the result or the exception.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time

from cxlsys.errors import KernelError
from cxlsys.kernel_api import MM_FUNCTIONS, mm_call
from cxlsys.snapshot import write_snapshot
from cxlsys.sysfs import Sysfs
from cxlsys.treedump import SKIP, dump_model
from fuse_mount.client import recv_line, task_comm

_bound: dict = {}       # socket path -> (st_dev, st_ino) of the socket this process bound there


def serve(path: str, system, hooks: dict) -> threading.Thread:
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chmod(path, 0o600)
    st = os.stat(path)
    _bound[path] = (st.st_dev, st.st_ino)
    srv.listen(16)

    def handle(conn):
        conn.settimeout(120)     # a stalled peer (an ioctl conversation holds the lock) cannot wedge the model
        with conn:
            buf = recv_line(conn)
            try:
                req = json.loads(buf or b"{}")
                rep = ioctl(system, req, conn, hooks) if req.get("cmd") == "ioctl" else dispatch(system, req, hooks)
            except Exception as e:  # the daemon must keep serving
                rep = {"rc": 1, "out": "", "err": f"cxlsys: {type(e).__name__}: {e}\n"}
            conn.sendall(json.dumps(rep).encode() + b"\n")

    def loop():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    t = threading.Thread(target=loop, daemon=True, name="cxlsys-control")
    t.start()
    return t


def remove(path: str) -> None:
    """Remove the control socket this process bound at ``path`` (not one a newer daemon put there)."""
    mine = _bound.pop(path, None)
    try:
        st = os.stat(path)
        if mine == (st.st_dev, st.st_ino):
            os.unlink(path)
    except OSError:
        pass


class RemoteUserMemory:
    """The caller's process memory, reached by asking the caller over the connection."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn

    def _ask(self, msg: dict) -> dict:
        try:
            self.conn.sendall(json.dumps(msg).encode() + b"\n")
            rep = json.loads(recv_line(self.conn) or b"{}")
        except OSError as e:        # the caller went away or stalled: its memory is out of reach
            raise KernelError(errno.EFAULT, f"user memory: {msg['op']} at {msg['addr']:#x}: {e}") from e
        if "errno" in rep or not rep:
            raise KernelError(rep.get("errno", errno.EFAULT), f"user memory: {msg['op']} at {msg['addr']:#x} faulted")
        return rep

    def copy_from_user(self, addr: int, n: int) -> bytes:
        if n == 0:
            return b""
        return bytes.fromhex(self._ask({"op": "read", "addr": addr, "len": n})["data"])

    def copy_to_user(self, addr: int, data: bytes) -> None:
        if data:
            self._ask({"op": "write", "addr": addr, "data": bytes(data).hex()})


def ioctl(system, req: dict, conn: socket.socket, hooks: dict) -> dict:
    pid = int(req.get("pid") or 0)
    fs = Sysfs(system)
    try:
        with fs.as_task(pid, task_comm(pid)):
            ret = fs.ioctl(str(req["dev"]), int(req["request"]), int(req["arg"]), RemoteUserMemory(conn),
                           int(req.get("f_flags", os.O_RDWR)))
    except KernelError as e:
        rep = {"rc": 1, "errno": e.errno}
    else:
        rep = {"rc": 0, "ret": ret}
    hooks["changed"]()
    return rep


def dispatch(system, req: dict, hooks: dict) -> dict:
    after_change = hooks["changed"]
    cmd = req.get("cmd")
    args = req.get("args", [])
    if cmd == "modprobe":
        try:
            with system.lock:
                system.modprobe(args)
        except KernelError as e:
            return {"rc": 1, "out": "", "err": f"modprobe: ERROR: could not insert '{args[-1] if args else ''}': "
                                             f"{os.strerror(e.errno)} ({e.reason})\n"}
        after_change()
        return {"rc": 0, "out": "", "err": ""}
    if cmd == "dmesg" and "after" in req:
        # records as data (cxlsys dmesg --json / --follow): those after seq "after", waiting up to
        # "wait" seconds for one (outside the model lock: the log is written under it)
        recs, seq = system.klog.wait_after(int(req["after"]), float(req.get("wait", 0)))
        return {"rc": 0, "records": [r.as_json() for r in recs], "seq": seq, "err": ""}
    if cmd == "dmesg":
        with system.lock:
            lines = system.klog.lines(max_level=int(req.get("max_level", 7))) if req.get("show", True) else []
            if req.get("clear"):
                system.klog.clear()
        return {"rc": 0, "out": "".join(x + "\n" for x in lines), "err": ""}
    if cmd == "journal":
        since = req.get("since")
        with system.lock:
            level = int(req.get("max_level", 7))
            recs = [r for r in system.klog.records if (since is None or r.wall >= since) and r.level <= level]
        host = os.uname().nodename
        out = [f"{time.strftime('%b %d %H:%M:%S', time.localtime(r.wall))} {host} kernel: {r.text}" for r in recs]
        if req.get("reverse"):
            out.reverse()
        return {"rc": 0, "out": "".join(x + "\n" for x in out), "err": ""}
    if cmd == "flush":
        with system.lock:
            system.flush_work()
        after_change()
        return {"rc": 0, "out": "", "err": ""}
    if cmd == "devsync":
        hooks["devsync"](req.get("root", "/dev"), req.get("style", "mknod"), req.get("ioctl_root"))
        return {"rc": 0, "out": "", "err": ""}
    if cmd == "dump":
        # a fresh projection of the model (nothing memoized): what the mount must be serving
        with system.lock:
            lines = dump_model(Sysfs(system), req.get("roots") or ["/sys/bus", "/sys/devices"],
                               skip=None if req.get("all") else SKIP)
        return {"rc": 0, "out": "".join(x + "\n" for x in lines), "err": ""}
    if cmd == "mm":
        fn = req.get("fn")
        if fn not in MM_FUNCTIONS:
            return {"rc": 2, "out": None, "err": f"cxlsys: mm: unknown function {fn!r}\n"}
        try:
            return {"rc": 0, "out": mm_call(system, fn, args, req.get("kwargs") or {}), "err": ""}
        except KernelError as e:
            return {"rc": 1, "out": None, "errno": e.errno, "reason": e.reason,
                    "err": f"cxlsys: mm: {fn}: {os.strerror(e.errno)} ({e.reason})\n"}
        except (ValueError, TypeError) as e:
            return {"rc": 1, "out": None, "exception": type(e).__name__, "message": str(e),
                    "err": f"cxlsys: mm: {fn}: {type(e).__name__}: {e}\n"}
    if cmd == "chardev":
        devt = Sysfs(system).char_devices().get(str(req.get("dev")))
        return {"rc": 0, "devt": list(devt)} if devt else {"rc": 1, "devt": None}
    if cmd == "snapshot":
        try:
            st = write_snapshot(Sysfs(system), str(req.get("dir")), str(req.get("root") or ""))
        except OSError as e:
            return {"rc": 1, "out": "", "err": f"cxlsys snapshot: {e}\n"}
        return {"rc": 0, "out": st.summary() + "\n", "err": ""}
    if cmd == "memory":
        with system.lock:
            present, online = system.memory.block_counts()
        return {"rc": 0, "present": present, "online": online, "err": ""}
    if cmd == "ping":
        return {"rc": 0, "out": "pong\n", "err": ""}
    return {"rc": 2, "out": "", "err": f"cxlsys: unknown control command {cmd!r}\n"}
